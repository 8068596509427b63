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
    /// The database cannot be reached now: the connection was refused or lost, the server is
    /// shutting down or starting up, or no connection came free in time. Passing: retry later.
    /// Nothing was acknowledged; an append whose connection was lost at its commit may have
    /// committed, so it is retried with the same event ids (a committed retry is recognised).
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The disk (or the database server's storage) is full. Nothing of the append was
    /// written; retry once space is freed.
    #[error("event store storage is full: {0}")]
    StorageFull(String),
    /// The database or server failed (I/O, connection, …). The append may be retried with the
    /// same event ids: a retry of an append that did commit is recognised and not written twice.
    #[error("event store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// The same failure again, for each append of a group commit that failed as a whole: the
    /// kind is kept (a caller branches on it), the details as text.
    #[must_use]
    pub fn for_each_append(&self) -> Self {
        match self {
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::StorageFull(m) => Self::StorageFull(m.clone()),
            Self::Backend(m) => Self::Backend(m.clone()),
            Self::Closed => Self::Closed,
            other => Self::Backend(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match outage(&e) {
            Some(Outage::Unreachable) => Self::Unavailable(e.to_string()),
            Some(Outage::StorageFull) => Self::StorageFull(e.to_string()),
            None => Self::Backend(e.to_string()),
        }
    }
}

/// A database failure that says nothing about the request: the database is out of reach for
/// now, or out of space. Both pass; the same request may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The connection was refused or lost, the server is shutting down, starting up or out of
    /// connections, a lock or a free pooled connection did not come in time.
    Unreachable,
    /// No space left: SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full` (53100), `ENOSPC`.
    StorageFull,
}

/// Which [`Outage`] a database error is, if any (else it is about the statement or the data).
#[must_use]
pub fn outage(e: &sqlx::Error) -> Option<Outage> {
    /// `ENOSPC` on Linux and the BSDs.
    const ENOSPC: i32 = 28;
    match e {
        sqlx::Error::Io(io)
            if io.raw_os_error() == Some(ENOSPC)
                || io.kind() == std::io::ErrorKind::StorageFull =>
        {
            Some(Outage::StorageFull)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Outage::Unreachable),
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            if code.len() == 5 {
                // PostgreSQL: 53100 disk_full; class 08 connection exception, 53 insufficient
                // resources, 57P01–57P03 shutdown, crash, not yet accepting connections,
                // 55P03 lock not available (a lock_timeout).
                match &*code {
                    "53100" => Some(Outage::StorageFull),
                    c if c.starts_with("08")
                        || c.starts_with("53")
                        || matches!(c, "57P01" | "57P02" | "57P03" | "55P03") =>
                    {
                        Some(Outage::Unreachable)
                    }
                    _ => None,
                }
            } else {
                // SQLite: FULL (13); BUSY (5) and LOCKED (6), with their extended codes.
                match code.parse::<i32>().map(|n| n & 0xff) {
                    Ok(13) => Some(Outage::StorageFull),
                    Ok(5 | 6) => Some(Outage::Unreachable),
                    _ => None,
                }
            }
        }
        _ => None,
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
