//! The read models' integration tests on real databases (SQLite files, and PostgreSQL when
//! `DATABASE_URL` is set), one test binary: one link and one copy of the shared harness instead
//! of one per file; the tests of all files run side by side. Each file is a module:
//! `cargo test -p kring-projections --test projections visibility::` runs one.

mod common;

mod absences;
mod access_log;
mod activities;
mod consent;
mod conversations;
mod indexes;
mod meeting_notifications;
mod meetings;
mod memberships;
mod notification_retention;
mod notifications;
mod oracle;
mod outbox;
mod packed;
mod reads;
mod runtime;
mod script;
mod units;
mod upcasting;
mod versions;
mod visibility;
