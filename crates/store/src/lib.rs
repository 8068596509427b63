//! The event log: the store port and its adapters (built out in the event-store issue).
#![forbid(unsafe_code)]
