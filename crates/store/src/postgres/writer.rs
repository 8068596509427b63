//! The writer task: group commit under the global-order lock.

use super::{advance, CHANNEL, GLOBAL_ORDER_LOCK, MAX_GROUP};
use crate::plan::{self, AppendRequest, LogHead, Plan, PlannedRow, StoredId, StreamHead};
use crate::queue::{self, Job};
use crate::{actor_to_string, AppendOutcome, EventHash, Position, StoreError};
use chrono::{DateTime, SubsecRound, Utc};
use kring_domain::StreamName;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgExecutor, Row};
use std::collections::{HashMap, HashSet};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// How the writer's connection shows in `pg_stat_activity`.
const APPLICATION: &str = "kring-store writer";
/// Payload bytes per INSERT statement: a batch of large events is split so that no statement
/// comes near PostgreSQL's 1 GiB message limit.
const BYTES_PER_INSERT: usize = 32 * 1024 * 1024;
/// How often a batch is planned again when a row written past the lock took a version it chose.
const ATTEMPTS: usize = 3;
/// How often a batch is tried again on a fresh connection after its connection was lost.
const RECONNECTS: usize = 3;

const BEGIN: &str = include_str!("sql/begin.sql");
const LOCK_GLOBAL_ORDER: &str = include_str!("sql/lock_global_order.sql");
const STREAM_HEADS: &str = include_str!("sql/stream_heads.sql");
const BATCH_STATE: &str = include_str!("sql/batch_state.sql");
const INSERT: &str = include_str!("sql/insert.sql");
const FIRST_WITHOUT_LOG_HASH: &str = include_str!("sql/first_without_log_hash.sql");
const LOG_HASH_BEFORE: &str = include_str!("sql/log_hash_before.sql");
const CHAIN_HASHES: &str = include_str!("sql/chain_hashes.sql");
const SET_LOG_HASHES: &str = include_str!("sql/set_log_hashes.sql");
const UNBOUNDED_STATEMENTS: &str = include_str!("sql/unbounded_statements.sql");
const APPEND_PLANNED: &str = include_str!("sql/append_planned.sql");
/// Stream heads the writer remembers from its own commits before it starts over.
const KNOWN_HEADS: usize = 100_000;
/// Set to `1`, every batch takes the full path of BEGIN, lock, read, INSERT, COMMIT (ADR 0002)
/// instead of `kring_append_planned` (ADR 0022): to compare the two, or to step around the
/// function should it ever misbehave.
pub const FULL_PATH_ENV: &str = "KRING_PG_APPEND_FULL_PATH";
static ONE_ROUND_TRIP: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var(FULL_PATH_ENV).map_or(true, |v| v != "1"));
/// Rows the backfill of the global chain reads and updates at a time.
const BACKFILL_BATCH: i64 = 10_000;
/// `BEGIN` and taking the global-order lock in one round trip: two statements in one
/// simple-protocol message. The lock is a statement of its own, so every statement after it
/// (in READ COMMITTED, each with a fresh snapshot) sees everything committed before it was
/// granted.
static BEGIN_LOCKED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{BEGIN};\n{}",
        LOCK_GLOBAL_ORDER.replace("$1", &GLOBAL_ORDER_LOCK.to_string())
    )
});

/// Why a batch did not commit (or may not have).
enum Failure {
    /// A row written outside this writer's lock holds a (stream, version) the plan chose.
    /// Carries the outcomes to give if planning again does not help.
    VersionTaken(Vec<Result<AppendOutcome, StoreError>>),
    /// The connection is gone — its backend was terminated, the server restarted, the network
    /// dropped. The batch may have committed if this came from COMMIT.
    ConnectionLost(sqlx::Error),
    /// Anything else (a statement refused, timed out or failed to decode): nothing of the batch
    /// is acknowledged.
    Backend(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        if is_connection_lost(&e) {
            Self::ConnectionLost(e)
        } else {
            Self::Backend(e.into())
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Backend(e)
    }
}

/// Whether `e` means the connection is gone rather than that a statement was refused: I/O,
/// protocol and TLS failures, and the server ending the session (SQLSTATE class 08, connection
/// exception; 57P01–57P03, administrator shutdown or termination, crash, not accepting
/// connections yet).
fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Owns this process's write connection; stream heads are read afresh for every batch, since
/// other processes append too.
pub(super) struct Writer {
    options: PgConnectOptions,
    conn: Option<PgConnection>,
    head: watch::Sender<Position>,
    /// The log's last event and the stream heads as this writer's last commit left them: a
    /// guess, checked under the lock by `kring_append_planned` (another process may have
    /// appended since).
    known: Option<Known>,
}

/// What the writer's own commits left behind.
struct Known {
    last: LogHead,
    heads: HashMap<StreamName, StreamHead>,
}

/// The state a batch is planned from: the log's last event and the heads of its streams.
struct Planned {
    last: LogHead,
    heads: HashMap<StreamName, StreamHead>,
}

impl Writer {
    pub(super) fn new(
        options: PgConnectOptions,
        conn: PgConnection,
        head: watch::Sender<Position>,
    ) -> Self {
        Self {
            options,
            conn: Some(conn),
            head,
            known: None,
        }
    }

    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        while let Some((requests, replies)) = queue::next_group(&mut queue, MAX_GROUP).await {
            replies.send(self.commit(&requests).await);
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Commits a batch; one outcome per request, in order.
    ///
    /// A batch whose connection was lost is tried again, on a fresh connection, up to
    /// [`RECONNECTS`] times — even when the loss came from COMMIT and the batch may have
    /// committed. That retry cannot write it twice: it takes the global-order lock first, which
    /// the lost transaction holds until PostgreSQL has committed or rolled it back, and then
    /// plans the batch from what is stored, where an append whose event ids are all in the log
    /// gets its original outcome ([`plan::plan`]) instead of being written again. (The unique
    /// event id would refuse a second copy in any case.)
    async fn commit(
        &mut self,
        requests: &[AppendRequest],
    ) -> Vec<Result<AppendOutcome, StoreError>> {
        let mut attempt = 1;
        let mut reconnects = 0;
        loop {
            let failure = match self.try_commit(requests).await {
                Ok(outcomes) => return outcomes,
                // Planning again under the lock reads the heads that row moved.
                Err(Failure::VersionTaken(_)) if attempt < ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Err(Failure::VersionTaken(refused)) => return refused,
                Err(Failure::ConnectionLost(_)) if reconnects < RECONNECTS => {
                    self.conn = None;
                    reconnects += 1;
                    continue;
                }
                Err(Failure::ConnectionLost(e)) => StoreError::Unavailable(format!(
                    "the connection to PostgreSQL was lost ({e}); the append may have been \
                     committed: read the stream, or retry it with the same event ids"
                )),
                Err(Failure::Backend(e)) => e,
            };
            // The connection may be broken or mid-transaction: the next batch starts on a
            // fresh one.
            self.conn = None;
            return requests
                .iter()
                .map(|_| Err(failure.for_each_append()))
                .collect();
        }
    }

    async fn try_commit(
        &mut self,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, Failure> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                self.known = None;
                connect(&self.options).await?
            }
        };
        let conn = self.conn.insert(conn);
        if *ONE_ROUND_TRIP {
            if let Some(outcomes) = fast_commit(conn, &mut self.known, &self.head, requests).await?
            {
                return Ok(outcomes);
            }
        }
        self.known = None;
        let mut tx = conn.begin_with(BEGIN_LOCKED.as_str()).await?;
        // From here on nobody else commits: what these reads see stays true until COMMIT.
        let (last, stored, heads) = batch_state(&mut *tx, requests).await?;
        let last = match last {
            Ok(last) => last,
            // Written by a process that keeps no global chain: fill it in first, under the lock.
            Err(position) => fill_log_hashes(&mut tx).await?.unwrap_or(LogHead {
                position,
                log_hash: EventHash::GENESIS,
            }),
        };
        let plan = plan::plan(requests, heads, &stored, last);
        if plan.rows.is_empty() {
            tx.rollback().await?;
            // A retry of a batch that did commit ends here: its commit is the log's head.
            advance(&self.head, plan.last.position);
            return Ok(plan.outcomes);
        }
        if let Err(e) = insert(&mut tx, &plan.rows).await {
            if !is_version_taken(&e) {
                return Err(e.into());
            }
            tx.rollback().await?;
            let heads = stream_heads(&mut *conn, requests).await?;
            return Err(Failure::VersionTaken(refuse(requests, plan, &heads)));
        }
        tx.commit().await?;
        advance(&self.head, plan.last.position);
        self.known = Some(Known {
            last: plan.last,
            heads: plan.heads,
        });
        Ok(plan.outcomes)
    }
}

/// Commits a batch in one round trip where it can: planned from what the writer's last commit
/// left (`known`), or else from a read without the lock, and handed to `kring_append_planned`,
/// which checks that state under the global-order lock and inserts in the same statement
/// (`migrations/postgres/0003_append_planned.sql`). `None` when the batch needs the full path
/// under an explicit transaction: a batch whose plan writes nothing (refusals are only given
/// from state read under the lock), event ids already stored (a retry), a log without global
/// hashes, a batch too large for one statement, or a state that kept moving.
async fn fast_commit(
    conn: &mut PgConnection,
    known: &mut Option<Known>,
    head: &watch::Sender<Position>,
    requests: &[AppendRequest],
) -> Result<Option<Vec<Result<AppendOutcome, StoreError>>>, Failure> {
    for attempt in 0..2 {
        let guessed = if attempt == 0 {
            known.as_ref().and_then(|k| {
                let heads = requests
                    .iter()
                    .map(|r| k.heads.get(&r.stream).map(|h| (r.stream, *h)))
                    .collect::<Option<HashMap<_, _>>>()?;
                Some(Planned {
                    last: k.last,
                    heads,
                })
            })
        } else {
            None
        };
        let state = match guessed {
            Some(state) => state,
            None => {
                // A snapshot without the lock: only a guess, checked under it.
                let (last, stored, heads) = batch_state(&mut *conn, requests).await?;
                let Ok(last) = last else { return Ok(None) };
                if !stored.is_empty() {
                    return Ok(None);
                }
                Planned { last, heads }
            }
        };
        let plan = plan::plan(requests, state.heads.clone(), &HashMap::new(), state.last);
        if plan.rows.is_empty() || chunks(&plan.rows).nth(1).is_some() {
            return Ok(None);
        }
        match append_planned(&mut *conn, &state, requests, &plan.rows).await {
            Ok(true) => {
                advance(head, plan.last.position);
                let mut heads = match known.take() {
                    Some(k) if k.heads.len() < KNOWN_HEADS => k.heads,
                    _ => HashMap::new(),
                };
                heads.extend(plan.heads);
                *known = Some(Known {
                    last: plan.last,
                    heads,
                });
                return Ok(Some(plan.outcomes));
            }
            Ok(false) => *known = None,
            // Written past the lock: the full path reads and refuses.
            Err(e) if is_version_taken(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Calls `kring_append_planned` with the state the rows were planned from.
async fn append_planned(
    conn: &mut PgConnection,
    state: &Planned,
    requests: &[AppendRequest],
    rows: &[PlannedRow<'_>],
) -> Result<bool, sqlx::Error> {
    let mut streams: Vec<StreamName> = requests.iter().map(|r| r.stream).collect();
    streams.sort_unstable_by_key(ToString::to_string);
    streams.dedup();
    let head_versions: Vec<i64> = streams
        .iter()
        .map(|s| {
            state
                .heads
                .get(s)
                .map_or(-1, |h| i64::try_from(h.version).unwrap_or(i64::MAX))
        })
        .collect();
    let head_streams: Vec<String> = streams.iter().map(ToString::to_string).collect();
    let (last_position, last_hash) = if state.last.position == 0 {
        (None, None)
    } else {
        (
            Some(i64::try_from(state.last.position).unwrap_or(i64::MAX)),
            Some(state.last.log_hash.0.to_vec()),
        )
    };
    let columns = Columns::of(rows);
    sqlx::query_scalar(APPEND_PLANNED)
        .bind(super::GLOBAL_ORDER_LOCK)
        .bind(last_position)
        .bind(last_hash)
        .bind(head_streams)
        .bind(head_versions)
        .bind(columns.positions)
        .bind(columns.event_ids)
        .bind(columns.streams)
        .bind(columns.versions)
        .bind(columns.event_types)
        .bind(columns.schema_versions)
        .bind(columns.occurred)
        .bind(columns.actors)
        .bind(columns.correlations)
        .bind(columns.causations)
        .bind(columns.payloads)
        .bind(columns.hashes)
        .bind(columns.log_hashes)
        .bind(CHANNEL)
        .fetch_one(conn)
        .await
}

/// Planned rows as parallel arrays, one per column.
struct Columns<'r> {
    positions: Vec<i64>,
    event_ids: Vec<Uuid>,
    streams: Vec<String>,
    versions: Vec<i64>,
    event_types: Vec<&'r str>,
    schema_versions: Vec<i32>,
    occurred: Vec<DateTime<Utc>>,
    actors: Vec<String>,
    correlations: Vec<Uuid>,
    causations: Vec<Option<Uuid>>,
    payloads: Vec<&'r str>,
    hashes: Vec<&'r [u8]>,
    log_hashes: Vec<&'r [u8]>,
}

impl<'r> Columns<'r> {
    fn of(rows: &'r [PlannedRow<'_>]) -> Self {
        let n = rows.len();
        let mut c = Self {
            positions: Vec::with_capacity(n),
            event_ids: Vec::with_capacity(n),
            streams: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            occurred: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            correlations: Vec::with_capacity(n),
            causations: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            log_hashes: Vec::with_capacity(n),
        };
        for row in rows {
            let e = row.event;
            c.positions
                .push(i64::try_from(row.position).unwrap_or(i64::MAX));
            c.event_ids.push(e.event_id);
            c.streams.push(row.stream.to_string());
            c.versions
                .push(i64::try_from(row.version).unwrap_or(i64::MAX));
            c.event_types.push(e.event_type.as_str());
            c.schema_versions.push(i32::from(e.schema_version));
            c.occurred.push(stored_time(e.occurred_at));
            c.actors.push(actor_to_string(&e.actor));
            c.correlations.push(e.correlation_id);
            c.causations.push(e.causation_id);
            c.payloads.push(e.payload.as_str());
            c.hashes.push(&row.hash.0[..]);
            c.log_hashes.push(&row.log_hash.0[..]);
        }
        c
    }
}

/// A new write connection.
///
/// Its implicit transactions (`kring_append_planned`'s) are READ COMMITTED, whatever the
/// database's default is: each statement of the function sees what committed before the lock.
pub(super) async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut conn =
        PgConnection::connect_with(&options.clone().application_name(APPLICATION)).await?;
    sqlx::query("SET default_transaction_isolation = 'read committed'")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// A (stream, version) unique violation: someone wrote past the global-order lock.
fn is_version_taken(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.is_unique_violation() && d.constraint() == Some("events_stream_version_key")
    })
}

/// The outcomes when planning again keeps colliding with rows written past the lock: every
/// append that was to write is refused as a conflict (the caller reloads and retries), with
/// the stream's head as it is now; the others keep their outcome.
fn refuse(
    requests: &[AppendRequest],
    plan: Plan<'_>,
    heads: &HashMap<StreamName, StreamHead>,
) -> Vec<Result<AppendOutcome, StoreError>> {
    let planned: HashSet<Uuid> = plan.rows.iter().map(|r| r.event.event_id).collect();
    requests
        .iter()
        .zip(plan.outcomes)
        .map(|(request, outcome)| match outcome {
            Ok(_) if request.events.iter().any(|e| planned.contains(&e.event_id)) => {
                Err(StoreError::Concurrency {
                    stream: request.stream,
                    expected: request.expected,
                    actual: heads.get(&request.stream).map(|h| h.version),
                })
            }
            other => other,
        })
        .collect()
}

/// Splits the planned rows so that no INSERT carries much more than [`BYTES_PER_INSERT`] of
/// payload; ordinary batches are one statement.
fn chunks<'p, 'a>(rows: &'p [PlannedRow<'a>]) -> impl Iterator<Item = &'p [PlannedRow<'a>]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut end = 0;
        while end < rest.len()
            && (end == 0 || bytes + rest[end].event.payload.len() <= BYTES_PER_INSERT)
        {
            bytes += rest[end].event.payload.len();
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// Inserts the planned rows, one statement per chunk.
async fn insert(conn: &mut PgConnection, rows: &[PlannedRow<'_>]) -> Result<(), sqlx::Error> {
    for chunk in chunks(rows) {
        insert_chunk(&mut *conn, chunk).await?;
    }
    Ok(())
}

/// Inserts rows with one statement of parallel arrays, and queues the commit notification.
async fn insert_chunk<'e>(
    conn: impl PgExecutor<'e>,
    rows: &[PlannedRow<'_>],
) -> Result<(), sqlx::Error> {
    let c = Columns::of(rows);
    sqlx::query(INSERT)
        .bind(c.positions)
        .bind(c.event_ids)
        .bind(c.streams)
        .bind(c.versions)
        .bind(c.event_types)
        .bind(c.schema_versions)
        .bind(c.occurred)
        .bind(c.actors)
        .bind(c.correlations)
        .bind(c.causations)
        .bind(c.payloads)
        .bind(c.hashes)
        .bind(c.log_hashes)
        .bind(CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// The instant as stored: TIMESTAMPTZ keeps microseconds, and the hash covers exactly those.
/// Truncated here rather than rounded by the server.
fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The current head of every stream the batch touches, in one query.
async fn stream_heads<'e>(
    conn: impl PgExecutor<'e>,
    requests: &[AppendRequest],
) -> Result<HashMap<StreamName, StreamHead>, Failure> {
    let mut streams: Vec<String> = requests.iter().map(|r| r.stream.to_string()).collect();
    streams.sort_unstable();
    streams.dedup();
    let rows = sqlx::query(STREAM_HEADS)
        .bind(streams)
        .fetch_all(conn)
        .await?;
    let mut heads = HashMap::with_capacity(rows.len());
    for row in rows {
        let stream: String = row.try_get(0)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            position: 0,
            reason: format!("head of {stream}: {reason}"),
        };
        let version: i64 = row.try_get(1)?;
        let hash: Vec<u8> = row.try_get(2)?;
        let head = StreamHead {
            version: u64::try_from(version).map_err(|e| corrupt(e.to_string()))?,
            hash: EventHash::from_slice(&hash)
                .ok_or_else(|| corrupt("hash is not 32 bytes".into()))?,
        };
        heads.insert(stream.parse().map_err(|e| corrupt(format!("{e}")))?, head);
    }
    Ok(heads)
}

/// The log's last event (`Err(position)` when it has no global hash), the heads of the streams
/// the batch touches, and where its event ids are already stored: one query (see
/// `sql/batch_state.sql`).
async fn batch_state<'e>(
    conn: impl PgExecutor<'e>,
    requests: &[AppendRequest],
) -> Result<
    (
        Result<LogHead, Position>,
        HashMap<Uuid, StoredId>,
        HashMap<StreamName, StreamHead>,
    ),
    Failure,
> {
    let mut streams: Vec<String> = requests.iter().map(|r| r.stream.to_string()).collect();
    streams.sort_unstable();
    streams.dedup();
    let ids: Vec<Uuid> = requests
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.event_id))
        .collect();
    let rows = sqlx::query(BATCH_STATE)
        .bind(streams)
        .bind(ids)
        .fetch_all(conn)
        .await?;
    let mut last = Ok(LogHead::default());
    let mut stored = HashMap::new();
    let mut heads = HashMap::new();
    for row in rows {
        let kind: i32 = row.try_get(0)?;
        let position = row
            .try_get::<Option<i64>, _>(5)?
            .map(|p| u64::try_from(p).unwrap_or_default())
            .unwrap_or_default();
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        match kind {
            0 => {
                let hash: Option<Vec<u8>> = row.try_get(3)?;
                last = match hash {
                    Some(hash) => Ok(LogHead {
                        position,
                        log_hash: EventHash::from_slice(&hash)
                            .ok_or_else(|| corrupt("global hash is not 32 bytes".into()))?,
                    }),
                    None if position == 0 => Ok(LogHead::default()),
                    None => Err(position),
                };
            }
            1 => {
                let stream: String = row.try_get(1)?;
                let version: i64 = row.try_get(2)?;
                let hash: Vec<u8> = row.try_get(3)?;
                heads.insert(
                    stream.parse().map_err(|e| corrupt(format!("{e}")))?,
                    StreamHead {
                        version: u64::try_from(version).map_err(|e| corrupt(e.to_string()))?,
                        hash: EventHash::from_slice(&hash)
                            .ok_or_else(|| corrupt("hash is not 32 bytes".into()))?,
                    },
                );
            }
            _ => {
                let stream: String = row.try_get(1)?;
                stored.insert(
                    row.try_get::<Uuid, _>(4)?,
                    StoredId {
                        stream: stream.parse().map_err(|e| corrupt(format!("{e}")))?,
                        version: u64::try_from(row.try_get::<i64, _>(2)?)
                            .map_err(|e| corrupt(e.to_string()))?,
                        position,
                    },
                );
            }
        }
    }
    Ok((last, stored, heads))
}

/// Fills in the global hash of every row stored without one (written before the global chain
/// existed), under the global-order lock, in one transaction. Run by every process as it
/// connects; a no-op (one index probe) once done.
pub(super) async fn backfill_log_hashes(conn: &mut PgConnection) -> Result<(), StoreError> {
    let missing: Option<i64> = sqlx::query_scalar(FIRST_WITHOUT_LOG_HASH)
        .fetch_one(&mut *conn)
        .await?;
    if missing.is_none() {
        return Ok(());
    }
    let mut tx = conn.begin_with(BEGIN_LOCKED.as_str()).await?;
    fill_log_hashes(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Computes the global hashes from the first row without one to the end of the log, in position
/// order; the caller holds the global-order lock, in a transaction. Returns the log's last
/// event, if it changed any row.
async fn fill_log_hashes(conn: &mut PgConnection) -> Result<Option<LogHead>, StoreError> {
    let first: Option<i64> = sqlx::query_scalar(FIRST_WITHOUT_LOG_HASH)
        .fetch_one(&mut *conn)
        .await?;
    let Some(first) = first else { return Ok(None) };
    // Filling in a long log takes as long as it takes; the lift ends with the transaction.
    sqlx::query(UNBOUNDED_STATEMENTS)
        .execute(&mut *conn)
        .await?;
    let before: Option<Vec<u8>> = sqlx::query_scalar(LOG_HASH_BEFORE)
        .bind(first)
        .fetch_optional(&mut *conn)
        .await?;
    let mut head = LogHead {
        position: 0,
        log_hash: before
            .as_deref()
            .and_then(EventHash::from_slice)
            .unwrap_or(EventHash::GENESIS),
    };
    let mut from = first;
    loop {
        let rows = sqlx::query(CHAIN_HASHES)
            .bind(from)
            .bind(BACKFILL_BATCH)
            .fetch_all(&mut *conn)
            .await?;
        if rows.is_empty() {
            break;
        }
        let mut positions = Vec::with_capacity(rows.len());
        let mut hashes = Vec::with_capacity(rows.len());
        for row in &rows {
            let raw: i64 = row.try_get(0)?;
            let (position, hash) =
                crate::plan::position_and_hash(raw, row.try_get::<&[u8], _>(1)?)?;
            head = LogHead {
                position,
                log_hash: crate::log_hash(&head.log_hash, position, &hash),
            };
            positions.push(raw);
            hashes.push(head.log_hash.0.to_vec());
            from = raw + 1;
        }
        sqlx::query(SET_LOG_HASHES)
            .bind(positions)
            .bind(hashes)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(head))
}
