//! The embedded default: the event log in one SQLite file (WAL, `synchronous = FULL`, so an
//! acknowledged append survives a crash or power loss).
//!
//! One writer task owns the only write connection. Appends queue to it; it takes everything
//! queued (up to [`MAX_GROUP`] appends), plans them together with [`crate::plan`] — each
//! append keeping its own concurrency check and outcome — and commits them in one transaction:
//! one fsync for many appends (group commit). Readers use a separate pool and never block it.
//!
//! The hot path is one round trip: stream heads come from the writer's cache (missing ones in
//! one query), and the whole batch is one multi-row `INSERT` in its own implicit transaction.
//! Re-appended event ids are rare, so they are not looked up in advance: the `UNIQUE`
//! constraints refuse the statement (writing nothing), and the batch is redone on the slow
//! path, in an explicit transaction that reads stored ids and heads from the file first. The
//! same constraints make a second process appending to the file safe: a stale cache only
//! costs a trip down the slow path.
//!
//! The writer also keeps the log's last position and global hash in memory, and chains each
//! batch's global hashes from it (`log_hash`, see [`crate::log_hash`]): no extra read per batch.
//!
//! The write connection's settings ([`writer_options`]) are for long runs of large groups (a
//! bulk import): a bulk job's groups are large ([`MAX_GROUP`]), so that the index pages a group
//! dirties are shared by more of its events; hot pages stay in a 16 MiB cache; the statement
//! journals of a group's several `INSERT`s stay in memory instead of temporary files; and the
//! WAL is copied into the database once per 64 MiB instead of once per 4 MiB, so a hot page is
//! copied once per checkpoint instead of at nearly every group.

use crate::plan::{self, AppendRequest, LogHead, StoredId, StreamHead};
use crate::queue::{self, Appender, Job};
use crate::{
    actor_from_str, actor_to_string, AppendOutcome, EventHash, EventStore, ExpectedVersion,
    NewEvent, Position, RecordedEvent, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::StreamName;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// The most appends one group commit takes. Commands never come near it (a group holds one
/// append per waiting command); a bulk import's batches do, and larger groups share more of the
/// index pages they dirty (PostgreSQL's writer, which ships its rows in one call, keeps 512).
pub const MAX_GROUP: usize = 8192;
/// Jobs that may wait for the writer before appenders wait to queue.
const QUEUE_CAPACITY: usize = 2048;
/// Rows per multi-row INSERT (14 parameters each, well under SQLite's limit of 32766).
const ROWS_PER_INSERT: usize = 500;
/// Stream heads the writer remembers before it starts over.
const HEAD_CACHE_LIMIT: usize = 200_000;

const READ_ALL: &str = include_str!("sql/read_all_packed.sql");
const READ_STREAM: &str = include_str!("sql/read_stream_packed.sql");
const READ_ALL_ROWS: &str = include_str!("sql/read_all.sql");
const READ_STREAM_ROWS: &str = include_str!("sql/read_stream.sql");
const STREAM_HEADS: &str = include_str!("sql/stream_heads.sql");
const INSERT_PREFIX: &str = include_str!("sql/insert_prefix.sql");
const LOG_HEAD: &str = include_str!("sql/log_head.sql");
const FIRST_WITHOUT_LOG_HASH: &str = include_str!("sql/first_without_log_hash.sql");
const LOG_HASH_BEFORE: &str = include_str!("sql/log_hash_before.sql");
const CHAIN_HASHES: &str = include_str!("sql/chain_hashes.sql");
const SET_LOG_HASH: &str = include_str!("sql/set_log_hash.sql");
/// Rows the backfill of the global chain reads at a time.
const BACKFILL_BATCH: i64 = 10_000;

struct Inner {
    readers: SqlitePool,
    jobs: Appender,
    head: watch::Receiver<Position>,
    path: PathBuf,
}

/// The SQLite event store. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
}

/// The write connection's settings: [`options`], with a 16 MiB page cache (SQLite's default is
/// 2 MiB), statement journals in memory, and a checkpoint per 16,384 WAL pages (64 MiB; the
/// default is 1,000). See the module's documentation.
fn writer_options(path: &Path) -> SqliteConnectOptions {
    options(path)
        .pragma("cache_size", "-16384")
        .pragma("temp_store", "MEMORY")
        .pragma("wal_autocheckpoint", "16384")
}

impl SqliteStore {
    /// Opens (creating if needed) the event log in the SQLite file at `path`.
    ///
    /// # Errors
    /// The file cannot be opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut writer = SqliteConnection::connect_with(&writer_options(&path)).await?;
        sqlx::migrate!("migrations/sqlite").run(&mut writer).await?;
        backfill_log_hashes(&mut writer).await?;
        let last = log_head(&mut writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options(&path).read_only(true))
            .await?;
        let (jobs, queue) = queue::channel(QUEUE_CAPACITY, MAX_GROUP);
        let (head_tx, head) = watch::channel(last.position);
        tokio::spawn(
            Writer {
                conn: writer,
                heads: HashMap::new(),
                last,
                head: head_tx,
            }
            .run(queue),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                readers,
                jobs,
                head,
                path,
            }),
        })
    }

    /// The file this store lives in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The read pool, for tools that inspect the file directly.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.readers
    }

    /// Reads up to `limit` events from `from` on — of one stream (`stream`, by version) or of
    /// the whole log (after a position) — as one packed row (`packed`), or row by row
    /// (`rows`, the same query unpacked) when the packed batch exceeds SQLite's value size.
    async fn read_batch(
        &self,
        packed: &str,
        rows: &str,
        stream: Option<&str>,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut query = sqlx::query_scalar::<_, String>(packed);
        if let Some(stream) = stream {
            query = query.bind(stream);
        }
        match query
            .bind(from)
            .bind(limit)
            .fetch_one(&self.inner.readers)
            .await
        {
            Ok(packed) => unpack(&packed),
            Err(e) if too_big(&e) => {
                let mut query = sqlx::query(rows);
                if let Some(stream) = stream {
                    query = query.bind(stream);
                }
                query
                    .bind(from)
                    .bind(limit)
                    .fetch_all(&self.inner.readers)
                    .await?
                    .iter()
                    .map(decode_row)
                    .collect()
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl EventStore for SqliteStore {
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
        let stream = stream.to_string();
        self.read_batch(READ_STREAM, READ_STREAM_ROWS, Some(&stream), from, limit)
            .await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_batch(READ_ALL, READ_ALL_ROWS, None, after, limit)
            .await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&self.inner.readers)
            .await?;
        Ok(u64::try_from(last).unwrap_or_default())
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.inner.head.clone()
    }

    async fn locate(&self, event_id: Uuid) -> Result<Option<StoredId>, StoreError> {
        let row = sqlx::query("SELECT stream, version, position FROM events WHERE event_id = ?1")
            .bind(event_id)
            .fetch_optional(&self.inner.readers)
            .await?;
        row.map(|r| StoredId::from_row(r.try_get::<&str, _>(0)?, r.try_get(1)?, r.try_get(2)?))
            .transpose()
    }

    fn keeps_global_chain(&self) -> bool {
        true
    }
}

/// The log's last event (position 0 and the genesis hash when empty).
async fn log_head(conn: &mut SqliteConnection) -> Result<LogHead, StoreError> {
    let Some(row) = sqlx::query(LOG_HEAD).fetch_optional(&mut *conn).await? else {
        return Ok(LogHead::default());
    };
    let position = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or_default();
    let hash: Option<Vec<u8>> = row.try_get(1)?;
    // A head without a global hash cannot be: the backfill on open fills every one.
    let log_hash = hash
        .as_deref()
        .and_then(EventHash::from_slice)
        .ok_or_else(|| StoreError::Corrupt {
            position,
            reason: "the log's last event has no global hash".into(),
        })?;
    Ok(LogHead { position, log_hash })
}

/// Fills in the global hash of every row stored without one (written before the global chain
/// existed), in position order, from the first such row to the end, in one transaction.
async fn backfill_log_hashes(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let first: Option<i64> = sqlx::query_scalar(FIRST_WITHOUT_LOG_HASH)
        .fetch_one(&mut *conn)
        .await?;
    if first.is_none() {
        return Ok(());
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    // Again under the write lock: another process may have filled them in meanwhile.
    let first: Option<i64> = sqlx::query_scalar(FIRST_WITHOUT_LOG_HASH)
        .fetch_one(&mut *tx)
        .await?;
    let Some(first) = first else { return Ok(()) };
    let before: Option<Vec<u8>> = sqlx::query_scalar(LOG_HASH_BEFORE)
        .bind(first)
        .fetch_optional(&mut *tx)
        .await?;
    let mut previous = before
        .as_deref()
        .and_then(EventHash::from_slice)
        .unwrap_or(EventHash::GENESIS);
    let mut from = first;
    loop {
        let rows = sqlx::query(CHAIN_HASHES)
            .bind(from)
            .bind(BACKFILL_BATCH)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else { break };
        from = last.try_get::<i64, _>(0)? + 1;
        for row in &rows {
            let raw: i64 = row.try_get(0)?;
            let (position, hash) =
                crate::plan::position_and_hash(raw, row.try_get::<&[u8], _>(1)?)?;
            previous = crate::log_hash(&previous, position, &hash);
            sqlx::query(SET_LOG_HASH)
                .bind(&previous.0[..])
                .bind(raw)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(position: u64, m: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| StoreError::Corrupt {
        position,
        reason: format!("bad time {m}"),
    })
}

/// Whether SQLite refused to build a value over its size limit (`SQLITE_TOOBIG`): a packed
/// batch of very large events. Such a batch is read row by row instead.
fn too_big(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|c| c == "18")
}

fn decode_row(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or_default();
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
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
        schema_version: u16::try_from(row.try_get::<i64, _>(5)?)
            .map_err(|e| corrupt(e.to_string()))?,
        occurred_at: from_micros(position, row.try_get(6)?)?,
        recorded_at: from_micros(position, row.try_get(7)?)?,
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

/// The events of a packed batch (see `read_all_packed.sql`: events separated by char(30),
/// fields by char(31)), in order.
fn unpack(packed: &str) -> Result<Vec<RecordedEvent>, StoreError> {
    if packed.is_empty() {
        return Ok(Vec::new());
    }
    let mut events = packed
        .split('\u{1e}')
        .map(unpack_one)
        .collect::<Result<Vec<_>, _>>()?;
    // The packed queries leave the concatenation's order to SQLite (see read_all_packed.sql).
    // Within a stream, positions rise with versions, so one order serves both reads.
    events.sort_by_key(|e| e.position);
    Ok(events)
}

/// One packed event: its 14 fields, in the order `read_all_packed.sql` writes them.
fn unpack_one(event: &str) -> Result<RecordedEvent, StoreError> {
    // Into an array, not a Vec: this runs once per event read (a million per rebuild).
    let mut fields = [""; 14];
    let mut count = 0;
    for field in event.split('\u{1f}') {
        if let Some(slot) = fields.get_mut(count) {
            *slot = field;
        }
        count += 1;
    }
    let position = fields[0].parse().unwrap_or_default();
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    if count != fields.len() {
        return Err(corrupt("a packed event does not have 14 fields".into()));
    }
    let [p, event_id, stream, version, event_type, schema, occurred, recorded, actor, correlation, causation, payload, hash, log_hash] =
        fields;
    let int = |field: &str, name: &str| -> Result<i64, StoreError> {
        field
            .parse()
            .map_err(|e| corrupt(format!("a packed event's {name} {field:?}: {e}")))
    };
    // `hex(id)`: 32 hex digits, which the uuid crate parses directly.
    let uuid = |hex_text: &str| -> Result<Uuid, StoreError> {
        Uuid::try_parse(hex_text).map_err(|e| corrupt(format!("bad id {hex_text:?}: {e}")))
    };
    int(p, "position")?;
    let mut hash_bytes = [0_u8; 32];
    hex::decode_to_slice(hash, &mut hash_bytes).map_err(|e| corrupt(format!("bad hash: {e}")))?;
    let log_hash = if log_hash.is_empty() {
        None
    } else {
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(log_hash, &mut bytes)
            .map_err(|e| corrupt(format!("bad global hash: {e}")))?;
        Some(EventHash(bytes))
    };
    Ok(RecordedEvent {
        position,
        event_id: uuid(event_id)?,
        stream: stream.parse().map_err(|e| corrupt(format!("{e}")))?,
        version: u64::try_from(int(version, "version")?).map_err(|e| corrupt(e.to_string()))?,
        event_type: event_type.to_owned(),
        schema_version: u16::try_from(int(schema, "schema version")?)
            .map_err(|e| corrupt(e.to_string()))?,
        occurred_at: from_micros(position, int(occurred, "occurrence time")?)?,
        recorded_at: from_micros(position, int(recorded, "recording time")?)?,
        actor: actor_from_str(actor).ok_or_else(|| corrupt(format!("bad actor {actor:?}")))?,
        correlation_id: uuid(correlation)?,
        causation_id: if causation.is_empty() {
            None
        } else {
            Some(uuid(causation)?)
        },
        payload: payload.to_owned(),
        hash: EventHash(hash_bytes),
        log_hash,
    })
}

/// Inserts the planned rows. With `autocommit` the caller holds no transaction: a batch that
/// fits one statement is then its own atomic transaction (one round trip, one fsync), a larger
/// one gets an explicit transaction. A `UNIQUE` violation (a re-appended id, or another process
/// appended) is [`InsertError::Collided`], with nothing written.
async fn insert(
    conn: &mut SqliteConnection,
    rows: &[plan::PlannedRow<'_>],
    autocommit: bool,
) -> Result<(), InsertError> {
    if rows.is_empty() {
        return Ok(());
    }
    let explicit = autocommit && rows.len() > ROWS_PER_INSERT;
    if explicit {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    }
    let recorded_at = micros(Utc::now());
    let mut result = Ok(());
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::with_capacity(INSERT_PREFIX.len() + chunk.len() * 30);
        sql.push_str(INSERT_PREFIX);
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            } else {
                ",(?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            });
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let e = row.event;
            query = query
                .bind(i64::try_from(row.position).unwrap_or(i64::MAX))
                .bind(e.event_id)
                .bind(row.stream.to_string())
                .bind(i64::try_from(row.version).unwrap_or(i64::MAX))
                .bind(e.event_type.as_str())
                .bind(i64::from(e.schema_version))
                .bind(micros(e.occurred_at))
                .bind(recorded_at)
                .bind(actor_to_string(&e.actor))
                .bind(e.correlation_id)
                .bind(e.causation_id)
                .bind(e.payload.as_str())
                .bind(&row.hash.0[..])
                .bind(&row.log_hash.0[..]);
        }
        if let Err(e) = query.execute(&mut *conn).await {
            result = Err(match &e {
                sqlx::Error::Database(db) if db.is_unique_violation() => InsertError::Collided,
                _ => InsertError::Store(StoreError::from(e)),
            });
            break;
        }
    }
    if explicit {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await?;
    }
    result
}

/// The heads of those of `streams` that exist, in one query.
async fn load_heads(
    conn: &mut SqliteConnection,
    streams: &[StreamName],
) -> Result<HashMap<StreamName, StreamHead>, StoreError> {
    let mut heads = HashMap::new();
    if streams.is_empty() {
        return Ok(heads);
    }
    let names: Vec<String> = streams.iter().map(ToString::to_string).collect();
    let names = serde_json::to_string(&names).map_err(|e| StoreError::Backend(e.to_string()))?;
    for row in sqlx::query(STREAM_HEADS)
        .bind(names)
        .fetch_all(&mut *conn)
        .await?
    {
        let stream: String = row.try_get(0)?;
        let hash: Vec<u8> = row.try_get(2)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            position: 0,
            reason,
        };
        heads.insert(
            stream.parse().map_err(|e| corrupt(format!("{e}")))?,
            StreamHead {
                version: u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or_default(),
                hash: EventHash::from_slice(&hash)
                    .ok_or_else(|| corrupt(format!("hash of {stream} is not 32 bytes")))?,
            },
        );
    }
    Ok(heads)
}

/// Why an insert failed.
enum InsertError {
    /// A `UNIQUE` constraint refused the rows; nothing was written.
    Collided,
    /// Anything else.
    Store(StoreError),
}

impl From<sqlx::Error> for InsertError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

struct Writer {
    conn: SqliteConnection,
    heads: HashMap<StreamName, StreamHead>,
    last: LogHead,
    head: watch::Sender<Position>,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        while let Some((requests, replies)) = queue::next_group(&mut queue, MAX_GROUP).await {
            match self.commit(&requests).await {
                Ok(outcomes) => replies.send(outcomes),
                Err(e) => {
                    // Nothing of the batch is acknowledged; start over from the file.
                    self.heads.clear();
                    if let Ok(last) = log_head(&mut self.conn).await {
                        self.last = last;
                    }
                    replies.fail(&e);
                }
            }
        }
    }

    async fn commit(
        &mut self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        if self.heads.len() > HEAD_CACHE_LIMIT {
            self.heads.clear();
        }
        let missing: Vec<StreamName> = requests
            .iter()
            .map(|r| r.stream)
            .filter(|s| !self.heads.contains_key(s))
            .collect();
        let loaded = load_heads(&mut self.conn, &missing).await?;
        self.heads.extend(loaded);
        let heads = requests
            .iter()
            .filter_map(|r| self.heads.get(&r.stream).map(|h| (r.stream, *h)))
            .collect();
        let mut plan = plan::plan(requests, heads, &HashMap::new(), self.last);
        // A retried append whose first try committed fails its version check: only for such
        // appends look up stored ids, and re-plan if some are retries.
        let suspects: Vec<Uuid> = requests
            .iter()
            .zip(&plan.outcomes)
            .filter(|(_, outcome)| matches!(outcome, Err(StoreError::Concurrency { .. })))
            .flat_map(|(r, _)| r.events.iter().map(|e| e.event_id))
            .collect();
        if !suspects.is_empty() {
            let stored = self.stored_ids(&suspects).await?;
            if !stored.is_empty() {
                let heads = requests
                    .iter()
                    .filter_map(|r| self.heads.get(&r.stream).map(|h| (r.stream, *h)))
                    .collect();
                plan = plan::plan(requests, heads, &stored, self.last);
            }
        }
        match insert(&mut self.conn, &plan.rows, true).await {
            Ok(()) => Ok(self.applied(plan)),
            Err(InsertError::Collided) => self.commit_slowly(requests).await,
            Err(InsertError::Store(e)) => Err(e),
        }
    }

    /// The careful path: an explicit transaction that reads everything from the file.
    async fn commit_slowly(
        &mut self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        self.heads.clear();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut self.conn)
            .await?;
        let result = async {
            self.last = log_head(&mut self.conn).await?;
            let ids: Vec<Uuid> = requests
                .iter()
                .flat_map(|r| r.events.iter().map(|e| e.event_id))
                .collect();
            let stored = self.stored_ids(&ids).await?;
            let streams: Vec<StreamName> = requests.iter().map(|r| r.stream).collect();
            let heads = load_heads(&mut self.conn, &streams).await?;
            let plan = plan::plan(requests, heads, &stored, self.last);
            insert(&mut self.conn, &plan.rows, false)
                .await
                .map_err(|e| match e {
                    InsertError::Collided => StoreError::Backend(
                        "a stored row collided with the batch on the careful path".into(),
                    ),
                    InsertError::Store(e) => e,
                })?;
            sqlx::query("COMMIT").execute(&mut self.conn).await?;
            Ok::<_, StoreError>(plan)
        }
        .await;
        match result {
            Ok(plan) => Ok(self.applied(plan)),
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
                Err(e)
            }
        }
    }

    fn applied(&mut self, plan: plan::Plan<'_>) -> Vec<Result<AppendOutcome, StoreError>> {
        self.heads.extend(plan.heads);
        self.last = plan.last;
        self.head.send_replace(self.last.position);
        plan.outcomes
    }

    async fn stored_ids(&mut self, ids: &[Uuid]) -> Result<HashMap<Uuid, StoredId>, StoreError> {
        let mut stored = HashMap::new();
        for chunk in ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT event_id, stream, version, position FROM events WHERE event_id IN ({placeholders})");
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut self.conn).await? {
                stored.insert(
                    row.try_get::<Uuid, _>(0)?,
                    StoredId::from_row(
                        row.try_get::<&str, _>(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                    )?,
                );
            }
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed_event(position: u64, causation: &str, payload: &str) -> String {
        [
            position.to_string(),
            "0190F5A1B2C37D4E8F90A1B2C3D4E5F6".into(),
            format!("child-{}", Uuid::nil()),
            "0".into(),
            "ConsentDecided".into(),
            "1".into(),
            "1700000000000000".into(),
            "1700000000000001".into(),
            "system".into(),
            "0190F5A1B2C37D4E8F90A1B2C3D4E5F7".into(),
            causation.into(),
            payload.into(),
            "AB".repeat(32),
            "CD".repeat(32),
        ]
        .join("\u{1f}")
    }

    #[test]
    fn a_packed_batch_unpacks_field_by_field_with_payloads_as_they_are() {
        let payload = r#"{"text":"a \"quoted\" word\n","n":1}"#;
        let packed = [
            packed_event(7, "", payload),
            packed_event(8, "0190F5A1B2C37D4E8F90A1B2C3D4E5F8", "{}"),
        ]
        .join("\u{1e}");
        let events = unpack(&packed).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].position, 7);
        assert_eq!(events[0].payload, payload);
        assert_eq!(events[0].causation_id, None);
        assert_eq!(events[0].actor, kring_domain::Actor::System);
        assert_eq!(events[1].position, 8);
        assert!(events[1].causation_id.is_some());
        assert!(unpack("").unwrap().is_empty(), "an empty batch");
        assert_eq!(
            events[0].event_id,
            Uuid::parse_str("0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6").unwrap()
        );
        assert_eq!(events[0].hash.0, [0xAB; 32]);
        assert_eq!(events[0].log_hash, Some(EventHash([0xCD; 32])));
    }

    #[test]
    fn a_packed_batch_comes_back_in_position_order_whatever_order_sqlite_gave() {
        let packed = [
            packed_event(12, "", "{}"),
            packed_event(10, "", "{}"),
            packed_event(11, "", "{}"),
        ]
        .join("\u{1e}");
        let positions: Vec<u64> = unpack(&packed)
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(positions, vec![10, 11, 12]);
    }

    #[test]
    fn a_packed_event_with_a_bad_id_or_hash_is_corrupt() {
        let whole = packed_event(9, "", "{}");
        for bad in [
            whole.replace(
                "0190F5A1B2C37D4E8F90A1B2C3D4E5F6",
                "0190F5A1B2C37D4E8F90A1B2C3D4E5",
            ),
            whole.replace(
                "0190F5A1B2C37D4E8F90A1B2C3D4E5F6",
                "0190F5A1B2C37D4E8F90A1B2C3D4E5GG",
            ),
            whole.replace(&"AB".repeat(32), &"AB".repeat(31)),
        ] {
            assert!(
                matches!(unpack(&bad), Err(StoreError::Corrupt { .. })),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn a_packed_event_without_fourteen_fields_is_corrupt() {
        let whole = packed_event(9, "", "{}");
        let short = whole.rsplit_once('\u{1f}').unwrap().0.to_owned();
        let long = format!("{whole}\u{1f}extra");
        for bad in [short, long, "not a batch".to_owned()] {
            assert!(
                matches!(unpack(&bad), Err(StoreError::Corrupt { .. })),
                "{bad:?} is refused"
            );
        }
    }
}
