//! End-to-end scenarios: the real `kring-api serve` binary on a real socket, on SQLite files and
//! on PostgreSQL, driven only through its public HTTP API.
//!
//! - `life`: the full life of a class, on SQLite and on PostgreSQL;
//! - `lifecycle`: access ends the moment a relation ends, on every route it opened;
//! - `matrix`: every route × every kind of caller → the expected status, no personal data of
//!   others in any answer;
//! - `openapi`: `/openapi.json` is OpenAPI 3.1 and lists every route of the contract;
//! - `sign_in`: single sign-on identities and revoked tokens, with the command line beside
//!   the server;
//! - `faults`: `kill -9` of the server and of the active projector, PostgreSQL restarted and
//!   the SQLite file system full under concurrent writes: nothing acknowledged is lost;
//! - `delivery`: `kill -9` of the server while it e-mails invitations; after the restart every
//!   mail arrives, each idempotency key at least once and all of a key's copies alike;
//! - `deployment`: a school board's deployment — two `serve --no-projectors` instances behind a
//!   round-robin balancer and a `projector` worker, each with its own data directory, on one
//!   PostgreSQL database with shared keys and media: every write read back through the other
//!   instance at its position, a removal and an erasure honoured by the other at once, each
//!   mail delivered once;
//! - `bad_input`: malformed, mistyped, missing and huge input on every write → a 4xx
//!   problem+json with a code, and nothing written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod delivery;
mod deployment;
mod faults;
mod harness;
mod life;
mod lifecycle;
mod matrix;
mod openapi;
mod routes;
mod school;
mod sign_in;
