//! The event log: the store port and its adapters.
//!
//! - [`EventStore`] is the port: append with an expected version, read a stream, read the
//!   global log in batches, and a watch on the log's head that wakes subscribers.
//! - [`EventStoreExt`] builds on it, the same for every adapter: [`Subscription`] (catch up,
//!   then follow live, in position order) and [`verify`](EventStoreExt::verify) (walk every
//!   stream's hash chain and the global chain, and hold the log against signed [`anchor`]s).
//! - Adapters: [`sqlite::SqliteStore`] (the embedded default, group commit),
//!   [`postgres::PostgresStore`] and [`esdb::EsdbStore`] (EventStoreDB / KurrentDB).
//! - [`conformance`] is the one suite every adapter passes.
#![forbid(unsafe_code)]

pub mod anchor;
pub mod conformance;
mod envelope;
mod error;
pub mod esdb;
pub mod plan;
pub mod postgres;
mod queue;
pub mod sqlite;
mod subscription;
pub mod vault;
mod verify;

pub use envelope::{
    actor_from_str, actor_to_string, canonical_json, log_hash, EventHash, ExpectedVersion,
    Metadata, NewEvent, Position, RecordedEvent, MAX_EVENT_BYTES,
};
pub use error::{outage, Outage, StoreError};
pub use plan::{AppendOutcome, AppendRequest, StoredId};
pub use subscription::Subscription;
pub use verify::{Finding, GlobalChain, VerifyFailure, VerifyReport};

use async_trait::async_trait;
use kring_domain::StreamName;
use tokio::sync::watch;

/// How many events one read of the global log returns at most, by default.
pub const DEFAULT_BATCH: usize = 1000;

/// The event-log port. Every adapter is held to the [`conformance`] suite.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it is at `expected`: all of them or none.
    ///
    /// # Errors
    /// [`StoreError::Concurrency`] when the stream moved on; the limits of [`StoreError`].
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Appends each of `appends` as [`EventStore::append`] would, in their order: each is
    /// all or nothing on its own and gets its own outcome (one refused leaves the others to
    /// commit), and an append's events come after those of the appends before it in the log.
    /// The group-committing adapters (SQLite, PostgreSQL) take the whole list to their writer
    /// at once instead of one append at a time: a bulk import's way in.
    async fn append_many(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, StoreError>> {
        let mut outcomes = Vec::with_capacity(appends.len());
        for a in appends {
            outcomes.push(self.append(&a.stream, a.expected, a.events).await);
        }
        outcomes
    }

    /// Up to `limit` events of `stream` from version `from` on, in order.
    ///
    /// # Errors
    /// Backend failures and unreadable rows.
    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events of the global log after position `after`, in position order.
    /// Never returns an event while an event with a lower position may still commit.
    ///
    /// # Errors
    /// Backend failures and unreadable rows.
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The last position in the log (0 when empty).
    ///
    /// # Errors
    /// Backend failures.
    async fn head(&self) -> Result<Position, StoreError>;

    /// Where the event `event_id` is stored: its stream, version and position (`None`: not
    /// stored, or a backend that cannot look events up by id — EventStoreDB).
    ///
    /// # Errors
    /// Backend failures.
    async fn locate(&self, event_id: uuid::Uuid) -> Result<Option<StoredId>, StoreError>;

    /// A watch that changes whenever new events may have been committed, by this process or
    /// (where the backend can tell) another.
    fn watch_head(&self) -> watch::Receiver<Position>;

    /// Whether every event carries a global hash ([`RecordedEvent::log_hash`]) chaining it to
    /// the event at the previous position, and positions are dense (the SQL adapters); `false`
    /// where the backend cannot store one (EventStoreDB).
    fn keeps_global_chain(&self) -> bool;
}

/// What every store can do on top of the port.
#[async_trait]
pub trait EventStoreExt: EventStore + Clone {
    /// Follows the global log from checkpoint `after`: catch up, then live.
    fn subscribe(&self, after: Position) -> Subscription<Self> {
        Subscription::new(self.clone(), after)
    }

    /// Every event of `stream`, read in batches.
    ///
    /// # Errors
    /// Backend failures and unreadable rows.
    async fn read_stream_to_end(
        &self,
        stream: &StreamName,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut all = Vec::new();
        loop {
            let batch = self
                .read_stream(stream, all.len() as u64, DEFAULT_BATCH)
                .await?;
            let done = batch.len() < DEFAULT_BATCH;
            all.extend(batch);
            if done {
                return Ok(all);
            }
        }
    }

    /// Walks every stream's hash chain and the global chain over the whole log, in batches,
    /// and checks that positions are dense.
    ///
    /// # Errors
    /// Backend failures (a broken chain is a finding in the report, not an error).
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        verify::verify(self, None).await
    }

    /// [`verify`](Self::verify), and holds the log against signed anchors: every anchor's
    /// signature must check out with the anchors' key, and the log must still hold each
    /// anchored global hash at its anchored position.
    ///
    /// # Errors
    /// Backend failures (a mismatch is a finding in the report, not an error).
    async fn verify_anchored(&self, anchors: &anchor::Anchors) -> Result<VerifyReport, StoreError> {
        verify::verify(self, Some(anchors)).await
    }
}

impl<S: EventStore + Clone> EventStoreExt for S {}

/// A store chosen at run time (SQLite, PostgreSQL or EventStoreDB), as the binaries hold it.
pub type DynStore = std::sync::Arc<dyn EventStore>;

#[async_trait]
impl<T: EventStore + ?Sized> EventStore for std::sync::Arc<T> {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        (**self).append(stream, expected, events).await
    }

    async fn append_many(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, StoreError>> {
        (**self).append_many(appends).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        (**self).read_stream(stream, from, limit).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        (**self).read_all(after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        (**self).head().await
    }

    async fn locate(&self, event_id: uuid::Uuid) -> Result<Option<StoredId>, StoreError> {
        (**self).locate(event_id).await
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        (**self).watch_head()
    }

    fn keeps_global_chain(&self) -> bool {
        (**self).keeps_global_chain()
    }
}
