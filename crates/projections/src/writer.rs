//! The read-model transaction a projector writes through ([`Tx`]): a task of its own runs the
//! statements on the connection, in order, while the projector goes on computing the next ones.
//!
//! # Why
//!
//! A projection's batch is loads, computation and writes. Awaited one statement at a time, the
//! async side and the database (SQLite's worker thread, or the PostgreSQL server) take turns,
//! and a rebuild uses one core where it could use two
//! (`docs/decisions/0007-pipelined-projector-writes.md`). Here a write is queued and
//! its caller goes on; a query waits for everything queued before it (one connection, in order),
//! so a projection always reads its own writes, and the next projection computes its rows while
//! this one's are written.
//!
//! # Failures
//!
//! A queued write that fails cannot fail its caller, which has moved on. The first failure is
//! kept with the [`Tag`] in force when the write was queued (which projection, which batch);
//! from then on the transaction is *poisoned*: later statements are skipped, later queries and
//! writes fail at once, and a commit is refused. [`Tx::sync`] waits for the queue and hands the
//! kept failure over; a rollback (of the transaction or of the savepoint) clears the poison. The
//! projector runtime syncs before every commit and after every savepoint, so nothing is
//! committed past a failed write, and every failure is charged to the projection that caused it.
//!
//! # WAL checkpoints
//!
//! A long run of units on SQLite (catching up, rebuilding; [`Tx::start_with_checkpoints`])
//! copies the WAL back into the database on a connection of its own, beside the writer, instead
//! of inside the writer's commits; see `WalCheckpoints` in the source.
//!
//! # Threads
//!
//! On a multi-threaded runtime the task runs on a thread of its own (tokio's blocking pool,
//! driving the futures with `Handle::block_on`): queued on a worker thread, it could sit in that
//! worker's LIFO slot behind the busy projector, where no other worker can take it. On a
//! current-thread runtime (tests) it is an ordinary task: the same order, no overlap.

use crate::bulk::{bind_cells, Cell};
use crate::db::{Backend, BEGIN_IMMEDIATE};
use crate::error::ProjectionError;
use kring_domain::StreamName;
use sqlx::any::{AnyRow, AnyTransactionManager};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Executor, Row, TransactionManager};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

const WAL_CHECKPOINT_PASSIVE: &str = include_str!("sql/sqlite/wal_checkpoint_passive.sql");
const WAL_AUTOCHECKPOINT_OFF: &str = include_str!("sql/sqlite/wal_autocheckpoint_off.sql");

/// Statements and queries queued ahead of the connection. Enough for one projection's batch of
/// bulk writes (a few dozen statements) to be queued while the next projection computes; each
/// holds at most a few thousand parameters, so the queue stays within a few MiB.
const QUEUE: usize = 16;

/// Which projection, at which batch, queued a statement: a failure is charged to it.
#[derive(Debug, Clone)]
pub struct Tag {
    /// The projection's index among the projector's slots.
    pub slot: usize,
    /// Its name.
    pub projection: &'static str,
    /// The generation of its tables being written.
    pub generation: i64,
    /// The position of the last event of the batch being applied.
    pub position: u64,
    /// That event's stream.
    pub stream: StreamName,
    /// That event's type.
    pub event_type: String,
}

/// A queued write that failed.
#[derive(Debug)]
pub struct Failure {
    /// What was in force when it was queued.
    pub tag: Option<Arc<Tag>>,
    /// What went wrong.
    pub fault: Fault,
}

/// What went wrong with a queued write.
#[derive(Debug)]
pub enum Fault {
    /// A statement queued with `Tx::execute_one` changed no row (or several): for a checkpoint
    /// update conditional on its old position, another process moved it.
    NotOne,
    /// The database refused the statement.
    Error(ProjectionError),
}

enum Op {
    Execute {
        sql: String,
        cells: Vec<Cell>,
        persistent: bool,
        one: bool,
        tag: Option<Arc<Tag>>,
    },
    Fetch {
        sql: String,
        cells: Vec<Cell>,
        persistent: bool,
        tag: Option<Arc<Tag>>,
        reply: oneshot::Sender<Result<Vec<AnyRow>, ProjectionError>>,
    },
    Begin {
        /// A transaction (rolling back one left open, if any), not a savepoint.
        top: bool,
        statement: Option<&'static str>,
        reply: oneshot::Sender<Result<(), ProjectionError>>,
    },
    Commit(oneshot::Sender<Result<(), ProjectionError>>),
    Rollback(oneshot::Sender<Result<(), ProjectionError>>),
    Sync(oneshot::Sender<Option<Failure>>),
}

/// The connection a projector writes through; see the module's documentation.
#[derive(Debug)]
pub struct Tx {
    ops: Option<mpsc::Sender<Op>>,
    poisoned: Arc<AtomicBool>,
    backend: Backend,
    tag: Option<Arc<Tag>>,
    driver: Option<JoinHandle<()>>,
}

/// The connection the task owns.
enum Owned {
    Pooled(PoolConnection<Any>),
    Detached(AnyConnection),
}

impl Owned {
    fn conn(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Detached(c) => c,
        }
    }
}

/// Rolls back whatever transaction is still open when the task ends, however it ends (a
/// panic included): a connection must not go back to the pool inside a transaction, where
/// the next `BEGIN` would only make a savepoint. Nor with its automatic checkpoints off
/// ([`WalCheckpoints`]): if the task could not turn them back on, the connection is closed.
struct Guard {
    owned: Owned,
    settings_changed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let conn = self.owned.conn();
        for _ in 0..AnyTransactionManager::get_transaction_depth(conn) {
            AnyTransactionManager::start_rollback(conn);
        }
        if let (true, Owned::Pooled(conn)) = (self.settings_changed, &mut self.owned) {
            conn.close_on_drop();
        }
    }
}

/// WAL frames (16 KiB pages) after which the writer lets the checkpoints catch up before its
/// next transaction, so that SQLite starts the WAL over instead of growing it: 256 MiB, a wait
/// every few units of a rebuild instead of a checkpoint inside every commit; less was slower,
/// more no faster (`docs/decisions/0009-checkpoints-beside-the-writer.md`).
const WAL_RESTART_FRAMES: i64 = 16_384;

/// Commits the checkpoints may fall behind before the writer waits for them: what they report
/// of the WAL is never older than this.
const MAX_CHECKPOINT_LAG: u64 = 4;

/// Checkpoints of a SQLite WAL on a connection of their own, beside the writer.
///
/// With SQLite's automatic checkpoints the writer copies the WAL into the database inside a
/// commit, `fsync`s included, and everything queued waits
/// (`docs/decisions/0009-checkpoints-beside-the-writer.md`). Here the writer's automatic
/// checkpoints are off while the run lasts; after each commit this task checkpoints
/// (`PASSIVE`: it neither waits for nor blocks the writer, which goes on with its next unit).
///
/// SQLite starts the WAL over only when a writer begins a transaction while every frame has
/// been copied back (and no reader still reads from the WAL). A writer that never waits would
/// grow the WAL without end, so once it holds [`WAL_RESTART_FRAMES`] the writer waits, before
/// its next transaction, for the checkpoint of its last commit. If a checkpoint fails, the
/// writer turns its automatic checkpoints back on and goes on as usual.
struct WalCheckpoints {
    asked: watch::Sender<u64>,
    /// The last checkpoint done: which commit it followed, and the WAL's frames then (`None`:
    /// it failed).
    done: watch::Receiver<(u64, Option<i64>)>,
    /// How long the WAL may grow before the writer waits.
    limit: i64,
    /// WAL frames as of the last checkpoint reported since the WAL last started over.
    frames: i64,
    /// Checkpoints asked for (one per commit).
    commits: u64,
    /// The first checkpoint whose report counts (those asked before a restart report the
    /// frames of the WAL as it was).
    counts_from: u64,
}

/// What the writer does before its next transaction.
enum Before {
    Go,
    /// A checkpoint failed: checkpoint as usual again.
    FallBack,
}

impl WalCheckpoints {
    fn start(mut conn: AnyConnection, limit: i64) -> Self {
        let (asked, mut requests) = watch::channel(0_u64);
        let (report, done) = watch::channel((0_u64, Some(0_i64)));
        tokio::spawn(async move {
            while requests.changed().await.is_ok() {
                let commit = *requests.borrow_and_update();
                // (busy, frames in the WAL, frames copied back)
                let frames = sqlx::query(WAL_CHECKPOINT_PASSIVE)
                    .fetch_one(&mut conn)
                    .await
                    .and_then(|row| row.try_get::<i64, _>(1))
                    .ok();
                if report.send((commit, frames)).is_err() || frames.is_none() {
                    break;
                }
            }
            let _ = sqlx::Connection::close(conn).await;
        });
        Self {
            asked,
            done,
            limit,
            frames: 0,
            commits: 0,
            counts_from: 1,
        }
    }

    /// After a commit: checkpoint it.
    fn committed(&mut self) {
        self.commits += 1;
        let _ = self.asked.send(self.commits);
    }

    /// Before a transaction: if the WAL is long, wait until the last commit is checkpointed, so
    /// that SQLite starts it over as this transaction begins.
    async fn before_begin(&mut self) -> Before {
        // The frames known are those of the last checkpoint done; one that lags far behind
        // (a busy machine) would let the WAL grow unseen: keep it within a few commits.
        let behind = self.commits.saturating_sub(MAX_CHECKPOINT_LAG);
        if self.done.borrow().0 < behind
            && self
                .done
                .wait_for(|(c, f)| *c >= behind || f.is_none())
                .await
                .is_err()
        {
            return Before::FallBack;
        }
        let (checkpoint, frames) = *self.done.borrow();
        match frames {
            None => return Before::FallBack,
            Some(frames) if checkpoint >= self.counts_from => self.frames = frames,
            Some(_) => {}
        }
        if self.frames < self.limit || self.commits == 0 {
            return Before::Go;
        }
        let commits = self.commits;
        let Ok(done) = self
            .done
            .wait_for(|(c, f)| *c >= commits || f.is_none())
            .await
        else {
            return Before::FallBack;
        };
        if done.1.is_none() {
            return Before::FallBack;
        }
        self.frames = 0;
        self.counts_from = commits + 1;
        Before::Go
    }
}

fn gone() -> ProjectionError {
    ProjectionError::Invalid("the projector's connection task has stopped".into())
}

fn poisoned_error() -> ProjectionError {
    ProjectionError::Invalid(
        "an earlier statement of this read-model transaction failed; it must be rolled back".into(),
    )
}

impl Tx {
    /// Starts the task on a connection from the pool (it goes back when the task ends).
    #[must_use]
    pub fn start(conn: PoolConnection<Any>) -> Self {
        Self::spawn(Owned::Pooled(conn))
    }

    /// Starts the task on a connection of its own (closed when the task ends).
    #[must_use]
    pub fn start_detached(conn: AnyConnection) -> Self {
        Self::spawn(Owned::Detached(conn))
    }

    /// Starts the task on a connection from the pool, for a long run of units (catching up,
    /// rebuilding): on SQLite the WAL is checkpointed beside it, on `checkpoints` (a connection
    /// of its own to the same file), instead of inside its commits (see `WalCheckpoints` in the
    /// source). The connection's automatic checkpoints are back on when it returns to the pool.
    #[must_use]
    pub fn start_with_checkpoints(conn: PoolConnection<Any>, checkpoints: AnyConnection) -> Self {
        Self::spawn_with(Owned::Pooled(conn), Some((checkpoints, WAL_RESTART_FRAMES)))
    }

    fn spawn(conn: Owned) -> Self {
        Self::spawn_with(conn, None)
    }

    fn spawn_with(mut conn: Owned, checkpoints: Option<(AnyConnection, i64)>) -> Self {
        let backend = Backend::of(conn.conn());
        let (ops, queue) = mpsc::channel(QUEUE);
        let poisoned = Arc::new(AtomicBool::new(false));
        let checkpoints = checkpoints.filter(|_| backend == Backend::Sqlite);
        let task = drive(
            Guard {
                owned: conn,
                settings_changed: false,
            },
            queue,
            Arc::clone(&poisoned),
            checkpoints,
        );
        let handle = Handle::current();
        let driver = match handle.runtime_flavor() {
            RuntimeFlavor::CurrentThread => tokio::spawn(task),
            _ => tokio::task::spawn_blocking(move || handle.block_on(task)),
        };
        Self {
            ops: Some(ops),
            poisoned,
            backend,
            tag: None,
            driver: Some(driver),
        }
    }

    /// Which database it writes to.
    #[must_use]
    pub const fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether it writes to SQLite.
    #[must_use]
    pub fn is_sqlite(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Another handle on the same queue and transaction, for one projection to flush through
    /// while others flush through theirs (the projector runs a batch's flushes concurrently).
    /// Its statements are queued in the order it sends them, interleaved with the other
    /// handles' ones; it queues statements and queries only, never transaction control, and
    /// is dropped before [`Tx::finish`] (which waits for every handle).
    pub(crate) fn lane(&self) -> Self {
        Self {
            ops: self.ops.clone(),
            poisoned: Arc::clone(&self.poisoned),
            backend: self.backend,
            tag: None,
            driver: None,
        }
    }

    /// Another handle on the same queue, charged to the same projection and batch as this
    /// one: for a projection to send independent queries at once. A query waits for the
    /// statements queued before it, so queries sent together wait once, not once each.
    pub(crate) fn fork(&self) -> Self {
        Self {
            tag: self.tag.clone(),
            ..self.lane()
        }
    }

    /// Charges the statements queued from now on to `tag`.
    pub(crate) fn set_tag(&mut self, tag: Option<Tag>) {
        self.tag = tag.map(Arc::new);
    }

    async fn send(&mut self, op: Op) -> Result<(), ProjectionError> {
        let ops = self.ops.as_ref().ok_or_else(gone)?;
        ops.send(op).await.map_err(|_| gone())
    }

    async fn ask<T>(
        &mut self,
        op: impl FnOnce(oneshot::Sender<T>) -> Op,
    ) -> Result<T, ProjectionError> {
        let (reply, answer) = oneshot::channel();
        self.send(op(reply)).await?;
        answer.await.map_err(|_| gone())
    }

    /// Queues a statement (kept prepared, for texts that recur).
    ///
    /// # Errors
    /// The transaction is poisoned by an earlier failure, or the task has stopped. A failure of
    /// this statement itself comes later, from [`Tx::sync`] (and poisons the transaction).
    pub async fn execute(
        &mut self,
        sql: impl Into<String>,
        cells: Vec<Cell>,
    ) -> Result<(), ProjectionError> {
        self.queue(sql.into(), cells, true, false).await
    }

    /// Like [`Tx::execute`], for a text that will not recur: not kept prepared.
    ///
    /// # Errors
    /// As [`Tx::execute`].
    pub async fn execute_once(
        &mut self,
        sql: impl Into<String>,
        cells: Vec<Cell>,
    ) -> Result<(), ProjectionError> {
        self.queue(sql.into(), cells, false, false).await
    }

    /// Like [`Tx::execute`], for a statement that must change exactly one row; otherwise it
    /// fails with [`Fault::NotOne`].
    ///
    /// # Errors
    /// As [`Tx::execute`].
    pub(crate) async fn execute_one(
        &mut self,
        sql: impl Into<String>,
        cells: Vec<Cell>,
    ) -> Result<(), ProjectionError> {
        self.queue(sql.into(), cells, true, true).await
    }

    /// Queues `sql`, prepared to be kept (`persistent`) or not.
    pub(crate) async fn queue(
        &mut self,
        sql: String,
        cells: Vec<Cell>,
        persistent: bool,
        one: bool,
    ) -> Result<(), ProjectionError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(poisoned_error());
        }
        let tag = self.tag.clone();
        self.send(Op::Execute {
            sql,
            cells,
            persistent,
            one,
            tag,
        })
        .await
    }

    /// Runs a query after everything queued before it and returns its rows.
    ///
    /// # Errors
    /// The query fails (and poisons the transaction), the transaction is poisoned already, or
    /// the task has stopped.
    pub async fn fetch_all(
        &mut self,
        sql: impl Into<String>,
        cells: Vec<Cell>,
    ) -> Result<Vec<AnyRow>, ProjectionError> {
        self.fetch_with(sql.into(), cells, true).await
    }

    /// Like [`Tx::fetch_all`], prepared to be kept (`persistent`) or not.
    pub(crate) async fn fetch_with(
        &mut self,
        sql: String,
        cells: Vec<Cell>,
        persistent: bool,
    ) -> Result<Vec<AnyRow>, ProjectionError> {
        let tag = self.tag.clone();
        self.ask(|reply| Op::Fetch {
            sql,
            cells,
            persistent,
            tag,
            reply,
        })
        .await?
    }

    /// Begins a transaction that writes (rolling back one left open, if any): on SQLite
    /// `BEGIN IMMEDIATE`, which takes the write lock at once (why: `begin_write` in the runtime).
    ///
    /// # Errors
    /// The database refuses, or the task has stopped.
    pub async fn begin_write(&mut self) -> Result<(), ProjectionError> {
        let statement = self.is_sqlite().then_some(BEGIN_IMMEDIATE);
        self.begin_with(true, statement).await
    }

    /// Begins a savepoint inside the transaction.
    ///
    /// # Errors
    /// The transaction is poisoned, the database refuses, or the task has stopped.
    pub async fn savepoint(&mut self) -> Result<(), ProjectionError> {
        self.begin_with(false, None).await
    }

    async fn begin_with(
        &mut self,
        top: bool,
        statement: Option<&'static str>,
    ) -> Result<(), ProjectionError> {
        self.ask(|reply| Op::Begin {
            top,
            statement,
            reply,
        })
        .await?
    }

    /// Commits the transaction (or releases the savepoint) once everything queued has run. If
    /// the database refuses, the transaction stays open: roll it back.
    ///
    /// # Errors
    /// The transaction is poisoned (nothing is committed; roll it back), the database refuses,
    /// or the task has stopped.
    pub async fn commit(&mut self) -> Result<(), ProjectionError> {
        self.ask(Op::Commit).await?
    }

    /// Rolls the transaction (or the savepoint) back and clears the poison.
    ///
    /// # Errors
    /// The database refuses, or the task has stopped.
    pub async fn rollback(&mut self) -> Result<(), ProjectionError> {
        self.ask(Op::Rollback).await?
    }

    /// Waits until everything queued has run and hands over the first failure since the last
    /// sync, if any (the transaction stays poisoned until rolled back).
    ///
    /// # Errors
    /// The task has stopped.
    pub async fn sync(&mut self) -> Result<Option<Failure>, ProjectionError> {
        self.ask(Op::Sync).await
    }

    /// Whether a failure has poisoned the transaction (known without waiting for the queue).
    #[must_use]
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Lets the queue run out and ends the task; a transaction still open is rolled back, and
    /// the connection goes back to the pool (or is closed, if detached).
    ///
    /// # Errors
    /// The task panicked.
    pub async fn finish(mut self) -> Result<(), ProjectionError> {
        self.ops = None;
        if let Some(driver) = self.driver.take() {
            driver.await.map_err(|e| {
                ProjectionError::Invalid(format!("the projector's connection task failed: {e}"))
            })?;
        }
        Ok(())
    }
}

/// The next op to run: the first one, unless a query of a projection none of whose writes is
/// queued before it can go first (see [`drive`]).
fn next(pending: &mut VecDeque<Op>) -> Option<Op> {
    let mut writing: Vec<usize> = Vec::new();
    let mut jump = None;
    for (i, op) in pending.iter().enumerate() {
        match op {
            Op::Execute { tag: Some(t), .. } => {
                if !writing.contains(&t.slot) {
                    writing.push(t.slot);
                }
            }
            Op::Fetch { tag: Some(t), .. } if !writing.contains(&t.slot) => {
                jump = Some(i);
                break;
            }
            Op::Fetch { tag: Some(_), .. } => {}
            // Untagged statements and transaction control keep their place, and nothing
            // passes them.
            _ => break,
        }
    }
    match jump {
        Some(i) if i > 0 => pending.remove(i),
        _ => pending.pop_front(),
    }
}

/// The task: runs the queue on the connection until every [`Tx`] handle is gone.
///
/// Ops run in the order queued, with one exception: a projection's query goes ahead of the
/// writes other projections queued before it (not its own, nor anything untagged). A
/// projection's statements read and write only its own tables, so the query's answer is the
/// same; and the projection waiting for it computes its rows while the others' are written,
/// instead of after.
async fn drive(
    mut guard: Guard,
    mut ops: mpsc::Receiver<Op>,
    flag: Arc<AtomicBool>,
    checkpoints: Option<(AnyConnection, i64)>,
) {
    // The first failure not yet handed over by a sync.
    let mut kept: Option<Failure> = None;
    let mut poisoned = false;
    let mut checkpoints = match checkpoints {
        Some((other, limit)) => {
            guard.settings_changed = true;
            let off = guard.owned.conn().execute(WAL_AUTOCHECKPOINT_OFF).await;
            off.is_ok().then(|| WalCheckpoints::start(other, limit))
        }
        None => None,
    };
    let mut pending = VecDeque::with_capacity(QUEUE);
    loop {
        if pending.is_empty() {
            match ops.recv().await {
                Some(op) => pending.push_back(op),
                None => break,
            }
        }
        while pending.len() < QUEUE {
            match ops.try_recv() {
                Ok(op) => pending.push_back(op),
                Err(_) => break,
            }
        }
        let Some(op) = next(&mut pending) else {
            continue;
        };
        let conn = guard.owned.conn();
        match op {
            Op::Execute {
                sql,
                cells,
                persistent,
                one,
                tag,
            } => {
                if poisoned {
                    continue;
                }
                let done = bind_cells(sqlx::query(&sql).persistent(persistent), &cells)
                    .execute(&mut *conn)
                    .await;
                let fault = match done {
                    Ok(done) if one && done.rows_affected() != 1 => Some(Fault::NotOne),
                    Ok(_) => None,
                    Err(e) => Some(Fault::Error(e.into())),
                };
                if let Some(fault) = fault {
                    poisoned = true;
                    flag.store(true, Ordering::Release);
                    kept = Some(Failure { tag, fault });
                }
            }
            Op::Fetch {
                sql,
                cells,
                persistent,
                reply,
                ..
            } => {
                let rows = if poisoned {
                    Err(poisoned_error())
                } else {
                    let rows = bind_cells(sqlx::query(&sql).persistent(persistent), &cells)
                        .fetch_all(&mut *conn)
                        .await;
                    // The caller gets the error itself; on PostgreSQL the transaction is
                    // aborted after it, so nothing more runs until a rollback.
                    if rows.is_err() {
                        poisoned = true;
                        flag.store(true, Ordering::Release);
                    }
                    rows.map_err(ProjectionError::from)
                };
                let _ = reply.send(rows);
            }
            Op::Begin {
                top,
                statement,
                reply,
            } => {
                let begun = if top {
                    // A transaction left open (its rollback failed) is abandoned: a `BEGIN`
                    // inside it would only make a savepoint.
                    kept = None;
                    poisoned = false;
                    flag.store(false, Ordering::Release);
                    if let Some(beside) = &mut checkpoints {
                        if let Before::FallBack = beside.before_begin().await {
                            checkpoints = None;
                            if conn
                                .execute(crate::db::SQLITE_WAL_AUTOCHECKPOINT)
                                .await
                                .is_ok()
                            {
                                guard.settings_changed = false;
                            }
                        }
                    }
                    let conn = guard.owned.conn();
                    begin_top(conn, statement).await
                } else if poisoned {
                    Err(poisoned_error())
                } else {
                    AnyTransactionManager::begin(conn, None)
                        .await
                        .map_err(ProjectionError::from)
                };
                let _ = reply.send(begun);
            }
            Op::Commit(reply) => {
                let committed = if poisoned {
                    Err(poisoned_error())
                } else {
                    let top = AnyTransactionManager::get_transaction_depth(conn) == 1;
                    let committed = AnyTransactionManager::commit(conn).await;
                    if let (Ok(()), true, Some(checkpoints)) = (&committed, top, &mut checkpoints) {
                        checkpoints.committed();
                    }
                    committed.map_err(ProjectionError::from)
                };
                let _ = reply.send(committed);
            }
            Op::Rollback(reply) => {
                kept = None;
                poisoned = false;
                flag.store(false, Ordering::Release);
                let _ = reply.send(rollback_one(conn).await);
            }
            Op::Sync(reply) => {
                let _ = reply.send(kept.take());
            }
        }
    }
    // Every handle is gone: leave no transaction open on the connection, and its automatic
    // checkpoints on (they also copy back what the last checkpoints here did not reach).
    let conn = guard.owned.conn();
    let _ = roll_back_all(conn).await;
    if guard.settings_changed
        && conn
            .execute(crate::db::SQLITE_WAL_AUTOCHECKPOINT)
            .await
            .is_ok()
    {
        guard.settings_changed = false;
    }
}

async fn roll_back_all(conn: &mut AnyConnection) -> Result<(), ProjectionError> {
    while AnyTransactionManager::get_transaction_depth(conn) > 0 {
        match rollback_one(conn).await {
            // Nothing is open any more.
            Ok(()) | Err(ProjectionError::RolledBack(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Rolls back one level: the transaction, or its innermost savepoint.
///
/// SQLite rolls a whole transaction back by itself when a statement fails for want of space
/// (`SQLITE_FULL`) or on some I/O errors, while sqlx still counts it open; its `ROLLBACK` then
/// fails ("no transaction is active", or "no such savepoint" for a savepoint), and so would
/// every later one — the projector used to stop on that error, and `serve` with it. Here the
/// levels sqlx counts are opened again and rolled back, so the connection is clean, and
/// [`ProjectionError::RolledBack`] says that nothing of the transaction stands (a passing
/// failure: the unit is applied again later).
async fn rollback_one(conn: &mut AnyConnection) -> Result<(), ProjectionError> {
    let e = match AnyTransactionManager::rollback(conn).await {
        Ok(()) => return Ok(()),
        Err(e) if rolled_back_by_sqlite(&e) => e,
        Err(e) => return Err(e.into()),
    };
    let depth = AnyTransactionManager::get_transaction_depth(conn);
    if depth > 0 {
        conn.execute("BEGIN").await?;
        for level in 1..depth {
            conn.execute(format!("SAVEPOINT _sqlx_savepoint_{level}").as_str())
                .await?;
        }
        while AnyTransactionManager::get_transaction_depth(conn) > 0 {
            AnyTransactionManager::rollback(conn).await?;
        }
    }
    Err(ProjectionError::RolledBack(e.to_string()))
}

/// Whether a failed rollback says SQLite has no transaction (or savepoint) open any more.
fn rolled_back_by_sqlite(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("1")
            && (d.message().contains("no transaction is active")
                || d.message().contains("no such savepoint"))
    })
}

async fn begin_top(
    conn: &mut AnyConnection,
    statement: Option<&'static str>,
) -> Result<(), ProjectionError> {
    roll_back_all(conn).await?;
    AnyTransactionManager::begin(conn, statement.map(Cow::Borrowed)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{next, Fault, Op, Tag, Tx};
    use crate::bulk::Cell;
    use kring_domain::StreamName;
    use sqlx::Row;
    use std::collections::VecDeque;
    use std::sync::Arc;

    fn tag(slot: usize) -> Arc<Tag> {
        Arc::new(Tag {
            slot,
            projection: "p",
            generation: 1,
            position: 1,
            stream: StreamName::access(uuid::Uuid::nil()),
            event_type: "E".into(),
        })
    }

    fn write(slot: Option<usize>, sql: &str) -> Op {
        Op::Execute {
            sql: sql.into(),
            cells: vec![],
            persistent: false,
            one: false,
            tag: slot.map(tag),
        }
    }

    fn read(slot: usize, sql: &str) -> Op {
        Op::Fetch {
            sql: sql.into(),
            cells: vec![],
            persistent: false,
            tag: Some(tag(slot)),
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    fn sql(op: &Op) -> &str {
        match op {
            Op::Execute { sql, .. } | Op::Fetch { sql, .. } => sql,
            _ => "control",
        }
    }

    #[test]
    fn a_query_passes_other_projections_writes_but_never_its_own_or_a_barrier() {
        let mut pending: VecDeque<Op> = VecDeque::from([
            write(Some(0), "w0"),
            write(Some(1), "w1"),
            read(0, "r0"),
            read(2, "r2"),
            write(None, "barrier"),
            read(3, "r3"),
            write(Some(2), "w2"),
        ]);
        let mut order = Vec::new();
        while let Some(op) = next(&mut pending) {
            order.push(sql(&op).to_owned());
        }
        // r2 goes first (no write of projection 2 before it); r0 waits for w0 (its own write),
        // then passes w1; r3 does not pass the untagged statement.
        assert_eq!(order, ["r2", "w0", "r0", "w1", "barrier", "r3", "w2"]);
    }

    #[test]
    fn transaction_control_keeps_its_place() {
        let mut pending: VecDeque<Op> = VecDeque::from([
            write(Some(0), "w0"),
            Op::Commit(tokio::sync::oneshot::channel().0),
            read(1, "r1"),
        ]);
        let order: Vec<String> = std::iter::from_fn(|| next(&mut pending))
            .map(|op| sql(&op).to_owned())
            .collect();
        assert_eq!(order, ["w0", "control", "r1"]);
    }

    #[tokio::test]
    async fn lanes_share_one_transaction_and_a_failure_is_charged_to_the_lane_that_queued_it() {
        sqlx::any::install_default_drivers();
        let conn = <sqlx::AnyConnection as sqlx::Connection>::connect("sqlite::memory:")
            .await
            .unwrap();
        let mut tx = Tx::start_detached(conn);
        tx.begin_write().await.unwrap();
        for table in ["a", "b"] {
            tx.execute(
                format!("CREATE TABLE {table} (k BIGINT PRIMARY KEY)"),
                vec![],
            )
            .await
            .unwrap();
        }
        let lane = |slot: usize| {
            let mut lane = tx.lane();
            lane.set_tag(Some((*tag(slot)).clone()));
            lane
        };
        let (mut a, mut b) = (lane(0), lane(1));
        // Each lane reads its own writes, while the other's are queued beside them.
        let count = |table: &'static str| format!("SELECT count(*) FROM {table}");
        let (in_a, in_b) = tokio::join!(
            async {
                for k in 0..3 {
                    a.execute("INSERT INTO a VALUES ($1)", vec![Cell::Int(k)])
                        .await
                        .unwrap();
                }
                a.fetch_all(count("a"), vec![]).await.unwrap()[0].get::<i64, _>(0)
            },
            async {
                b.execute("INSERT INTO b VALUES ($1)", vec![Cell::Int(7)])
                    .await
                    .unwrap();
                b.fetch_all(count("b"), vec![]).await.unwrap()[0].get::<i64, _>(0)
            }
        );
        assert_eq!((in_a, in_b), (3, 1));
        // Lane b writes its row again: the failure is b's, and poisons the one transaction.
        b.execute("INSERT INTO b VALUES ($1)", vec![Cell::Int(7)])
            .await
            .unwrap();
        drop((a, b));
        let failure = tx.sync().await.unwrap().expect("the duplicate fails");
        assert_eq!(failure.tag.map(|t| t.slot), Some(1));
        assert!(matches!(failure.fault, Fault::Error(_)));
        assert!(tx.is_poisoned());
        assert!(
            tx.commit().await.is_err(),
            "a poisoned transaction is not committed"
        );
        tx.rollback().await.unwrap();
        assert!(!tx.is_poisoned());
        tx.finish().await.unwrap();
    }

    #[tokio::test]
    async fn checkpoints_beside_the_writer_keep_the_wal_short_and_hand_the_connection_back_as_it_was(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read.db");
        let db = crate::db::ReadDb::sqlite(&path).await.unwrap();
        let other = db.checkpoint_connection().await.expect("a SQLite file");
        // A limit of 64 frames (1 MiB); each unit below writes ~50 (100 rows of 8 kB).
        let conn = super::Owned::Pooled(db.pool().acquire().await.unwrap());
        let mut tx = Tx::spawn_with(conn, Some((other, 64)));
        tx.begin_write().await.unwrap();
        tx.execute(
            "CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT NOT NULL)",
            vec![],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let value = "x".repeat(8_000);
        for unit in 0..40 {
            tx.begin_write().await.unwrap();
            for k in 0..100 {
                let row = vec![Cell::Int(unit * 100 + k), Cell::Text(value.clone())];
                tx.execute("INSERT INTO t (k, v) VALUES ($1, $2)", row)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
        tx.finish().await.unwrap();

        // ~32 MB went through the WAL; with the writer's own checkpoints off and nothing
        // starting it over it would hold all of it.
        let wal = std::fs::metadata(path.with_extension("db-wal"))
            .unwrap()
            .len();
        assert!(wal < 8 << 20, "the WAL grew to {wal} bytes");
        let mut conn = db.pool().acquire().await.unwrap();
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(rows, 4_000);
        let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            autocheckpoint, 4_096,
            "the pooled connection checkpoints again"
        );
    }
}
