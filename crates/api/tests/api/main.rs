//! The API's integration tests over real HTTP and real databases, one test binary (one link and
//! one copy of the shared fixtures instead of one per file; the tests of all files run side by
//! side). Each file is a module: `cargo test -p kring-api --test api meetings::` runs one.
//! The media store's conformance suite stays a binary of its own (`--test media_store`): its
//! large-file case measures the process's resident memory, which other tests would disturb.

mod oidc_provider;
mod school_server;
mod sinks;

mod administration;
mod backup;
mod console;
mod console_contrast;
mod console_oidc;
mod conversations_life;
mod delivery;
mod demo;
mod executor;
mod fuzz_inputs;
mod idempotency;
mod invitations_consent;
mod meetings;
mod notification_preferences;
mod ops;
mod posts_media;
mod reads;
mod rights;
mod sign_in;
