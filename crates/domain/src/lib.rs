//! Kring's pure domain core.
//!
//! Every fact is an event. Each aggregate module holds its commands (`…Action`), events, state,
//! a pure `decide(&state, command, now)` and `evolve(state, &event)`. `decide` never reads a
//! clock (`now` is an argument) nor a database: facts that span aggregates come from
//! event-sourced state handed to it (a `…Context` with the school roster).
//!
//! | module | stream | what |
//! |---|---|---|
//! | [`school`] | `school-<id>` | roster: staff, groups, children, guardianships, consent policy, settings |
//! | [`invitation`] | `invitation-<id>` | invite, accept, approve (with correction), revoke, expire |
//! | [`child`] | `child-<id>` | consent decisions, planned absences, erasure requests |
//! | [`person`] | `person-<id>` | quiet hours, erasure requests, push subscriptions ([`push`]), reads (read receipts) |
//! | [`post`] | `post-<id>` | posts, media, tags, removal, retention expiry |
//! | [`conversation`] | `conversation-<id>` | staff ↔ guardians of one child |
//! | [`activity`] | `activity-<id>` | activities with volunteer slots |
//! | [`access`] | `access-<subject id>` | who read whose data |
//! | [`meeting`] | `meeting-<id>` | meeting rounds: parent–teacher conversations in booked slots |
//! | [`calendar`] | `calendar-<person id>` | the digest of a person's calendar feed key |
//!
//! [`visibility::who_may_see`] answers "who may see this photo", with reasons.
#![forbid(unsafe_code)]

pub mod access;
pub mod activity;
pub mod actor;
pub mod aggregate;
pub mod calendar;
pub mod child;
pub mod consent;
pub mod conversation;
pub mod error;
pub mod event;
pub mod ids;
pub mod invitation;
pub mod meeting;
pub mod person;
pub mod post;
pub mod purpose;
pub mod push;
pub mod school;
pub mod sealed;
#[cfg(feature = "simulation")]
pub mod simulation;
pub mod stream;
mod validate;
pub mod visibility;

pub use actor::{Actor, Command};
pub use aggregate::Aggregate;
pub use error::DomainError;
pub use event::{DecodeError, Event};
pub use ids::*;
pub use purpose::Purpose;
pub use sealed::{Opened, Sealed};
pub use stream::{Category, StreamName};
