//! What can go wrong on the read side.

use kring_domain::StreamName;

/// A read-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read-model database failed.
    #[error("read-model database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event log failed.
    #[error("event store: {0}")]
    Store(#[from] kring_store::StoreError),
    /// A stored row or event is not what this build expects.
    #[error("{0}")]
    Invalid(String),
    /// A projection cannot handle an event; it stopped there and did not advance.
    #[error(
        "projection {projection} stopped at event {position} ({event_type} on {stream}): {reason}"
    )]
    Stopped {
        /// The projection.
        projection: String,
        /// The event's global position.
        position: u64,
        /// Its stream.
        stream: StreamName,
        /// Its type.
        event_type: String,
        /// Why.
        reason: String,
    },
    /// No such projection.
    #[error("unknown projection {0:?}")]
    UnknownProjection(String),
    /// A wait for a position ran out of time.
    #[error("projection {projection} did not reach position {position} within the wait (it is at {reached})")]
    NotCaughtUp {
        /// The projection.
        projection: String,
        /// The position waited for.
        position: u64,
        /// Where it is.
        reached: u64,
    },
    /// The database rolled the read models' transaction back by itself (SQLite does on a full
    /// disk); nothing of it stands. Passing: the same events are applied again.
    #[error("read-model database rolled the transaction back: {0}")]
    RolledBack(String),
    /// A sealed field could not be opened.
    #[error("key vault: {0}")]
    Vault(#[from] kring_store::vault::VaultError),
}

impl From<serde_json::Error> for ProjectionError {
    fn from(e: serde_json::Error) -> Self {
        Self::Invalid(e.to_string())
    }
}
