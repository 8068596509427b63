//! Kring's benchmark harness, as a library for the `kring-bench` binary and its tests: the
//! scenarios, the installations they run on, and the report.
#![forbid(unsafe_code)]

pub mod commands;
#[cfg(feature = "compare-cqrs-es")]
pub mod compare;
pub mod delivery;
pub mod http;
pub mod import;
pub mod install;
pub mod lag;
pub mod meetings;
pub mod rebuild;
pub mod report;
pub mod soak;
pub mod stats;
pub mod uploads;
