//! The event log on PostgreSQL, for deployments with several API processes on one database.
//!
//! Each process runs one writer task. Appends queue to it; it takes everything queued (up to
//! [`MAX_GROUP`] appends), plans them together with [`crate::plan`] — each append keeping its
//! own concurrency check and outcome — and commits them in one transaction (group commit).
//!
//! Every batch transaction takes one transaction-level advisory lock before it reads the log's
//! last position and the stream heads, and holds it until COMMIT. Batches of all processes
//! therefore assign positions and commit one at a time, in position order: an event that
//! commits later never appears behind a position a reader has passed, and `read_all` simply
//! reads past its checkpoint. Why this and not a snapshot filter or a high-water mark:
//! `docs/decisions/0002-postgres-global-order.md`.
//!
//! The batch's global hashes (`log_hash`, see [`crate::log_hash`]) chain from the last event's,
//! which the writer reads in the same query as the last position, under the lock: other
//! processes append too, so it cannot be kept in memory.
//!
//! The lock is transaction-level, so a writer whose backend is terminated, or whose client
//! vanished (noticed by the server's TCP keepalives, see [`link`]), gives it up with its
//! transaction. A batch whose connection was lost is tried again on a fresh connection: under the
//! lock, which the lost transaction held until it committed or rolled back, planning finds by
//! event id whatever of the batch had committed and answers those appends with their original
//! outcome rather than writing them twice. Why: `docs/decisions/0014-the-database-link.md`.
//!
//! Each commit sends a notification on [`CHANNEL`]; a listener task in every process turns
//! them into [`EventStore::watch_head`] wake-ups, so live subscribers in one process follow
//! appends made by another.

pub mod link;
mod listener;
mod writer;

pub use writer::FULL_PATH_ENV;

use crate::queue::{self, Appender};
use crate::{
    actor_from_str, AppendOutcome, AppendRequest, EventHash, EventStore, ExpectedVersion, NewEvent,
    Position, RecordedEvent, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::StreamName;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgExecutor, Row};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use writer::Writer;

/// The most appends one group commit takes.
pub const MAX_GROUP: usize = 512;
/// The notification channel every commit notifies, with the last position as payload.
pub const CHANNEL: &str = "kring_events";
/// The key of the transaction-level advisory lock that orders commits ("kring-ev"). Every
/// process writing to the log must take it; a writer that does not can break the global order.
pub const GLOBAL_ORDER_LOCK: i64 = i64::from_be_bytes(*b"kring-ev");
/// Read connections per process.
const READERS: u32 = 8;

const READ_ALL: &str = include_str!("sql/read_all.sql");
const READ_STREAM: &str = include_str!("sql/read_stream.sql");
const LAST_POSITION: &str = include_str!("sql/last_position.sql");

struct Inner {
    readers: PgPool,
    jobs: Appender,
    head: watch::Receiver<Position>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The writer stops by itself once the job queue closes; the listener would wait forever.
        self.listener.abort();
    }
}

/// The PostgreSQL event store. Cheap to clone; all clones share one writer and one listener.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…`), brings its schema up to date, and
    /// starts this process's writer and notification listener.
    ///
    /// Every connection gets the guards of [`link`] (statement and lock timeouts, keepalives).
    ///
    /// # Errors
    /// The URL is invalid, the server cannot be reached, or the migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = link::connect_options(url)?.options([
            // Plan every execution with its parameters and the table as it is now. A generic
            // plan cached while `events` was small keeps scanning the whole table after it has
            // grown, until autovacuum happens to analyse it: stored-id look-ups went from
            // microseconds to tens of milliseconds, under the global-order lock.
            ("plan_cache_mode", "force_custom_plan"),
        ]);
        let readers = PgPoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(link::ACQUIRE_TIMEOUT)
            .connect_with(options.clone().application_name("kring-store reader"))
            .await?;
        migrate(&options).await?;
        // Listen before reading the head, so no commit falls between the two unnoticed.
        let listening = listener::Listening::start(&options).await?;
        let conn = writer::connect(&options).await?;
        let last = last_position(&readers).await?;
        let (head_tx, head) = watch::channel(last);
        let listener = tokio::spawn(listening.follow(head_tx.clone()));
        let (jobs, queue) = queue::channel(4 * MAX_GROUP, MAX_GROUP);
        tokio::spawn(Writer::new(options, conn, head_tx).run(queue));
        Ok(Self {
            inner: Arc::new(Inner {
                readers,
                jobs,
                head,
                listener,
            }),
        })
    }

    /// The read pool, for tools that inspect the database directly.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.inner.readers
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.jobs.append(stream, expected, events).await
    }

    async fn append_many(
        &self,
        appends: Vec<AppendRequest>,
    ) -> Vec<Result<AppendOutcome, StoreError>> {
        self.inner.jobs.append_many(appends).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(READ_STREAM)
            .bind(stream.to_string())
            .bind(i64::try_from(from).unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(READ_ALL)
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.readers)
            .await?;
        rows.iter().map(decode_row).collect()
    }

    async fn head(&self) -> Result<Position, StoreError> {
        last_position(&self.inner.readers).await
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.inner.head.clone()
    }

    async fn locate(&self, event_id: uuid::Uuid) -> Result<Option<crate::StoredId>, StoreError> {
        let row = sqlx::query("SELECT stream, version, position FROM events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&self.inner.readers)
            .await?;
        row.map(|r| {
            crate::StoredId::from_row(r.try_get::<&str, _>(0)?, r.try_get(1)?, r.try_get(2)?)
        })
        .transpose()
    }

    fn keeps_global_chain(&self) -> bool {
        true
    }
}

/// Brings the schema up to date and fills in the global chain where it is missing, on a
/// connection of its own without statement or lock timeouts: a migration over a large log may
/// take minutes, and waits for another process's migration (sqlx serialises them with an
/// advisory lock of its own).
async fn migrate(options: &PgConnectOptions) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect_with(
        &link::unbounded(options.clone()).application_name("kring-store migrations"),
    )
    .await?;
    sqlx::migrate!("migrations/postgres").run(&mut conn).await?;
    writer::backfill_log_hashes(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// The log's last position (0 when empty).
async fn last_position<'e>(conn: impl PgExecutor<'e>) -> Result<Position, StoreError> {
    let last: i64 = sqlx::query_scalar(LAST_POSITION).fetch_one(conn).await?;
    u64::try_from(last).map_err(|_| StoreError::Corrupt {
        position: 0,
        reason: format!("the log's last position is {last}"),
    })
}

/// Raises the watched head to `position` (never lowers it), waking subscribers if it moved.
fn advance(head: &watch::Sender<Position>, position: Position) {
    head.send_if_modified(|current| {
        let moved = position > *current;
        if moved {
            *current = position;
        }
        moved
    });
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A stored `timestamptz`, decoded by hand: sqlx's chrono decoding panics on a value beyond
/// chrono's range (`infinity`, a year after 262143), which only a changed row can hold. In the
/// binary format a `timestamptz` is microseconds since 2000-01-01 UTC.
fn stored_time(row: &PgRow, index: usize, position: Position) -> Result<DateTime<Utc>, StoreError> {
    let micros: i64 = row.try_get_unchecked(index)?;
    micros
        .checked_add(PG_EPOCH_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| StoreError::Corrupt {
            position,
            reason: format!("bad time: {micros} µs after 2000-01-01"),
        })
}

fn decode_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let raw_position: i64 = row.try_get(0)?;
    let position = u64::try_from(raw_position).unwrap_or_default();
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    if position == 0 {
        return Err(corrupt(format!("position {raw_position}")));
    }
    let stream: String = row.try_get(2)?;
    let actor: String = row.try_get(8)?;
    let hash: Vec<u8> = row.try_get(12)?;
    let log_hash: Option<Vec<u8>> = row.try_get(13)?;
    Ok(RecordedEvent {
        position,
        event_id: row.try_get(1)?,
        stream: stream.parse().map_err(|e| corrupt(format!("{e}")))?,
        version: u64::try_from(row.try_get::<i64, _>(3)?).map_err(|e| corrupt(e.to_string()))?,
        event_type: row.try_get(4)?,
        schema_version: u16::try_from(row.try_get::<i32, _>(5)?)
            .map_err(|e| corrupt(e.to_string()))?,
        occurred_at: stored_time(row, 6, position)?,
        recorded_at: stored_time(row, 7, position)?,
        actor: actor_from_str(&actor).ok_or_else(|| corrupt(format!("bad actor {actor:?}")))?,
        correlation_id: row.try_get(9)?,
        causation_id: row.try_get(10)?,
        payload: row.try_get(11)?,
        hash: EventHash::from_slice(&hash).ok_or_else(|| corrupt("hash is not 32 bytes".into()))?,
        log_hash: log_hash
            .map(|h| {
                EventHash::from_slice(&h)
                    .ok_or_else(|| corrupt("global hash is not 32 bytes".into()))
            })
            .transpose()?,
    })
}
