//! What can go wrong with the event log, and how a caller should react.

use crate::envelope::ExpectedVersion;
use kring_domain::StreamName;
use uuid::Uuid;

/// An event-store failure. Every variant but [`StoreError::Backend`] is the caller's to handle;
/// none of them wrote anything.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the expected version: someone else appended first. Reload the
    /// aggregate, decide again, and retry if the command still makes sense.
    #[error("concurrency conflict on {stream}: expected {expected}, but the stream is at {}", describe(*.actual))]
    Concurrency {
        /// The stream.
        stream: StreamName,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's last version, or `None` when it does not exist.
        actual: Option<u64>,
    },
    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// One event's payload exceeds the limit.
    #[error("event {event_id} is {size} bytes; the limit is {limit} bytes")]
    EventTooLarge {
        /// The event.
        event_id: Uuid,
        /// Its payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A stream name is not `<category>-<uuid>`.
    #[error(transparent)]
    MalformedStreamName(#[from] kring_domain::stream::MalformedStreamName),
    /// Some events of an append were stored before and others not, or a stored id is reused
    /// for another stream: the retry is not the same append.
    #[error("event {event_id} was already stored as part of a different append; not the same append retried")]
    IdempotencyMismatch {
        /// The first event id that differs.
        event_id: Uuid,
    },
    /// A payload still holds a plain personal value: events must be sealed by the key vault
    /// (`KeyVault::seal`) before they are stored, so that no personal data rests in the log.
    #[error("event {event_id} holds unsealed personal data; seal it with the key vault first")]
    UnsealedPersonalData {
        /// The event.
        event_id: Uuid,
    },
    /// Two events of one append share an id.
    #[error("event id {event_id} appears twice in one append")]
    DuplicateEventId {
        /// The id.
        event_id: Uuid,
    },
    /// A stored row cannot be read back (corrupted or written by an incompatible version).
    #[error("stored event at position {position} is unreadable: {reason}")]
    Corrupt {
        /// Its global position.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store is shutting down or its writer stopped; nothing was acknowledged.
    #[error("the event store is closed")]
    Closed,
    /// The database or server failed (I/O, connection, …). The append may be retried with the
    /// same event ids: a retry of an append that did commit is recognised and not written twice.
    #[error("event store backend error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Backend(format!("migration failed: {e}"))
    }
}

fn describe(actual: Option<u64>) -> String {
    actual.map_or_else(|| "no stream".to_owned(), |v| format!("version {v}"))
}
