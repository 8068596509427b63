//! Kring's HTTP API (axum): the contract (`docs/api.md`, the served OpenAPI document) over the domain deciders, the event store
//! and the read models.
//!
//! - [`exec`]: commands — load event-sourced state, decide, seal, append (retrying once on a
//!   concurrency conflict);
//! - [`routes`]: one module per area of the contract, each with its OpenAPI part;
//! - [`auth`]: JWT bearer tokens (local key or an OpenID Connect issuer's JWKS);
//! - [`console`]: the compliance console (server-rendered HTML at `/console`);
//! - [`app`]: the router, middleware and the operational endpoints;
//! - [`server`]: `serve`, `projector` and `token`, as the binary runs them;
//! - [`backup`]: `backup` and `restore` of the embedded installation, with the erasure ledger;
//! - [`retention`]: the job that expires content after its school's retention period;
//! - [`invitation_expiry`]: the job that records invitations past their date as expired;
//! - [`delivery`]: the worker that e-mails and pushes notifications and invitations.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod console;
pub mod delivery;
pub mod demo;
pub mod erasure;
pub mod error;
pub mod exec;
pub mod idempotency;
pub mod invitation_expiry;
pub mod listener;
pub mod media;
pub mod media_store;
pub mod metrics;
pub mod retention;
pub mod routes;
pub mod server;
pub mod state;
pub mod throttle;

pub use app::{openapi, router};
pub use auth::{Auth, Caller};
pub use error::{ApiError, ApiResult, Code, Problem};
pub use state::{AppState, Limits};
