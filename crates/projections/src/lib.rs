//! The read side: a projector runtime and the read models the API and the replay-tool query,
//! on SQLite (embedded default) and PostgreSQL.
#![forbid(unsafe_code)]

pub mod bulk;
pub mod db;
pub mod error;
pub mod models;
pub mod projection;
pub mod runtime;
pub mod system;
pub mod writer;

pub use db::{Backend, ReadDb};
pub use error::ProjectionError;
pub use projection::{Projected, Projection, Tables};
pub use runtime::{Checkpoints, ProjectionStatus, Projector, StatusBoard};
pub use system::{Config, Mode, System, SystemError};
pub use writer::Tx;
