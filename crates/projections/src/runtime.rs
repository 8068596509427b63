//! The projector runtime.
//!
//! - One read of the global log feeds every projection. Each batch is applied to every
//!   projection in one read-model transaction (a `Unit`) that also advances their checkpoints
//!   (exactly once). A checkpoint update is conditional on the position it started from, so even
//!   two projectors racing on one database cannot apply a batch twice. Catching up and
//!   rebuilding put several batches in one transaction. When a projection fails, the
//!   transaction is rolled back and the same events applied again with a savepoint for each
//!   projection, so that the failing one stops alone.
//! - Catch up in large batches, then follow live, woken by the store's subscription.
//! - A projection that cannot handle an event stops at it — the events before it committed,
//!   that one named by position, stream and type — and the others keep running.
//! - A rebuild fills a fresh generation of tables from position 0 while the current one keeps
//!   serving, then switches the views to it in one transaction.
//! - On PostgreSQL one process at a time runs the projectors (a session advisory lock); another
//!   waits and takes over when the first dies.

use crate::bulk::Cell;
use crate::db::{to_i64, to_u64, Backend, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use crate::writer::{Failure, Fault, Tag, Tx};
use kring_domain::Event;
use kring_store::{EventStore, EventStoreExt, Position, RecordedEvent};
use serde::Serialize;
use sqlx::{Acquire, AnyConnection, Executor, Row};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Mutex};

/// Events read from the log per batch when following it live: small enough that a batch's
/// transaction keeps the projection lag low when the projector falls a little behind.
pub const BATCH: usize = 2000;
/// Events read from the log per batch when catching up and rebuilding. Larger batches mean
/// fewer statements and fewer rewrites of the same rows (a school's roster state, a child's
/// consents), but every event of a batch is held decoded, and buffered by the projections that
/// need it. 8,000 is as fast as larger batches and keeps a rebuild under its 256 MiB budget
/// with the pipelined writer (`docs/decisions/0007-pipelined-projector-writes.md`). Several
/// batches share a transaction ([`UNIT_EVENTS`]).
pub const CATCH_UP_BATCH: usize = 8_000;
/// The first and the longest wait before following the log again after a passing failure.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const LEADER_LOCK_KEY: i64 = 0x6b72_696e_6700_0001;

/// Where a projection stands, for health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: String,
    /// The active generation of its tables.
    pub generation: i64,
    /// The last position applied.
    pub position: u64,
    /// Why it stopped, if it did.
    pub failure: Option<String>,
}

/// The projectors' shared status: positions to wait for, failures for health.
#[derive(Debug)]
pub struct StatusBoard {
    statuses: RwLock<HashMap<String, ProjectionStatus>>,
    positions: HashMap<String, watch::Sender<Position>>,
    /// The last passing failure of the projector (store or database), until a batch succeeds.
    error: RwLock<Option<String>>,
}

impl StatusBoard {
    fn new(names: &[&'static str]) -> Self {
        Self {
            statuses: RwLock::new(HashMap::new()),
            positions: names
                .iter()
                .map(|n| ((*n).to_owned(), watch::channel(0).0))
                .collect(),
            error: RwLock::new(None),
        }
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.error.write() {
            *e = error;
        }
    }

    /// The projector's last passing failure (the store or the database did not answer), while
    /// it waits to try again; `None` once a batch went through.
    #[must_use]
    pub fn error(&self) -> Option<String> {
        self.error.read().ok().and_then(|e| e.clone())
    }

    fn set(&self, status: ProjectionStatus) {
        if let Some(tx) = self.positions.get(&status.name) {
            tx.send_replace(status.position);
        }
        if let Ok(mut map) = self.statuses.write() {
            map.insert(status.name.clone(), status);
        }
    }

    /// Every projection's status, by name.
    #[must_use]
    pub fn all(&self) -> Vec<ProjectionStatus> {
        let mut all: Vec<ProjectionStatus> = self
            .statuses
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// A watch on a projection's position.
    #[must_use]
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<Position>> {
        self.positions.get(name).map(watch::Sender::subscribe)
    }
}

struct Slot {
    projection: Arc<dyn Projection>,
    tables: Tables,
    position: u64,
    failed: bool,
    /// The active generation was made by another version of the read model (another
    /// [`Projection::fingerprint`]): never written to; [`Projector::run`] rebuilds it.
    foreign: bool,
}

/// Why a slot whose active generation another version made does not go on.
fn foreign_failure(name: &str, generation: i64, fingerprint: Option<&str>, own: &str) -> String {
    format!(
        "projection {name} stopped: its active generation {generation} was made by another version of the read model (fingerprint {}, this process has {own}); it keeps serving unchanged until a projector of this version rebuilds it (on start, after taking the lead) or the version that made it runs again",
        fingerprint.unwrap_or("none"),
    )
}

impl Slot {
    /// Forgets what the projection buffered and takes its active generation and position from
    /// the database (another projector or a rebuild may have moved them). A generation made by
    /// another version of the read model (a process of that version rebuilt it) is never
    /// written to: the slot stops, and the reason is returned for the status board.
    async fn reload(
        &mut self,
        conn: &mut AnyConnection,
    ) -> Result<Option<String>, ProjectionError> {
        self.projection.reset();
        let Some((generation, position, fingerprint)) =
            active(conn, self.projection.name()).await?
        else {
            return Ok(None);
        };
        Ok(self.adopt(generation, position, fingerprint.as_deref()))
    }

    /// A slot on the active `generation` of `projection`, at `position`, made by the code of
    /// `fingerprint`; with the reason it is stopped when another version made it.
    fn open(
        projection: Arc<dyn Projection>,
        generation: i64,
        position: u64,
        fingerprint: Option<&str>,
    ) -> (Self, Option<String>) {
        let mut slot = Self {
            tables: Tables::new(projection.tables(), generation),
            projection,
            position,
            failed: false,
            foreign: false,
        };
        let failure = slot.adopt(generation, position, fingerprint);
        (slot, failure)
    }

    /// Takes `generation` at `position` as the active one. Made by another fingerprint, it is
    /// foreign: the slot stops (never writing to it) and the reason is returned.
    fn adopt(
        &mut self,
        generation: i64,
        position: u64,
        fingerprint: Option<&str>,
    ) -> Option<String> {
        if generation != self.tables.generation() {
            self.tables = Tables::new(self.projection.tables(), generation);
        }
        self.position = position;
        let own = self.projection.fingerprint();
        self.foreign = fingerprint != Some(own.as_str());
        if !self.foreign {
            return None;
        }
        self.failed = true;
        Some(foreign_failure(
            self.projection.name(),
            generation,
            fingerprint,
            &own,
        ))
    }
}

/// Runs a set of projections against one read-model database.
pub struct Projector<S> {
    store: S,
    db: ReadDb,
    slots: Mutex<Vec<Slot>>,
    board: Arc<StatusBoard>,
}

const STATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS projection_generations (
    name TEXT NOT NULL,
    generation BIGINT NOT NULL,
    position BIGINT NOT NULL,
    active BIGINT NOT NULL,
    failure TEXT,
    fingerprint TEXT,
    PRIMARY KEY (name, generation)
)";

/// Adds `fingerprint` to a state table made before it existed (its rows get NULL, which no
/// projection's fingerprint equals: their generations are replaced).
async fn add_fingerprint_column(conn: &mut AnyConnection) -> Result<(), ProjectionError> {
    let sql = if Backend::of(conn) == Backend::Sqlite {
        "SELECT COUNT(*) FROM pragma_table_info('projection_generations') WHERE name = 'fingerprint'"
    } else {
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'projection_generations' AND column_name = 'fingerprint'"
    };
    let present: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
    if present == 0 {
        conn.execute("ALTER TABLE projection_generations ADD COLUMN fingerprint TEXT")
            .await?;
    }
    Ok(())
}

impl<S: EventStore + Clone> Projector<S> {
    /// Prepares the projections: creates the state table and, for a projection seen for the
    /// first time, generation 1 of its tables with their views. A projection whose active
    /// generation was made by another version of it ([`Projection::fingerprint`]) is left
    /// as it is, stopped, with the reason on the status board: [`Projector::run`] rebuilds it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn new(
        store: S,
        db: ReadDb,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Result<Self, ProjectionError> {
        let names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
        let board = Arc::new(StatusBoard::new(&names));
        let mut conn = db.pool().acquire().await?;
        {
            // Several processes may start at once: on PostgreSQL, prepare under a lock.
            let mut tx = begin_write(&mut conn).await?;
            if db.backend() == Backend::Postgres {
                tx.execute("SELECT pg_advisory_xact_lock(7077345)").await?;
            }
            tx.execute(STATE_TABLE).await?;
            add_fingerprint_column(&mut tx).await?;
            tx.commit().await?;
        }
        let mut slots = Vec::new();
        for projection in projections {
            let (generation, position, fingerprint) =
                current_generation(&mut conn, projection.as_ref()).await?;
            let (slot, failure) =
                Slot::open(projection, generation, position, fingerprint.as_deref());
            board.set(ProjectionStatus {
                name: slot.projection.name().to_owned(),
                generation,
                position,
                failure,
            });
            slots.push(slot);
        }
        drop(conn);
        Ok(Self {
            store,
            db,
            slots: Mutex::new(slots),
            board,
        })
    }

    /// The status board (positions, failures).
    #[must_use]
    pub fn board(&self) -> Arc<StatusBoard> {
        Arc::clone(&self.board)
    }

    /// Runs forever: waits to be the leader (PostgreSQL), rebuilds the read models another
    /// version made, catches up, then follows live.
    ///
    /// # Errors
    /// Store or database failures that persist; a failing projection is not an error here.
    pub async fn run(&self) -> Result<(), ProjectionError> {
        let _leader = self.lead().await?;
        // A process that waited for the lock holds positions from when it started.
        self.refresh().await?;
        let mut backoff = RETRY_MIN;
        self.rebuild_foreign(&mut backoff).await?;
        // Catch up in large units first: following the subscription batch by batch, one
        // transaction each, catches up at about half the speed.
        loop {
            match self.catch_up().await {
                Ok(_) => break,
                Err(e) if is_transient(&e) => self.back_off(&e, &mut backoff).await,
                Err(e) => return Err(e),
            }
        }
        if backoff != RETRY_MIN {
            self.board.set_error(None);
            backoff = RETRY_MIN;
        }
        loop {
            let mut subscription = self
                .store
                .subscribe(self.low_water().await)
                .with_batch_size(BATCH);
            loop {
                let step = match subscription.next_batch().await {
                    Ok(batch) => self.apply_batch(&batch).await,
                    Err(e) => Err(e.into()),
                };
                match step {
                    Ok(false) => {
                        if backoff != RETRY_MIN {
                            self.board.set_error(None);
                        }
                        backoff = RETRY_MIN;
                    }
                    // A checkpoint had moved under us: follow the log from where it is now.
                    Ok(true) => break,
                    // The store or the database failed (nothing of the batch committed): wait
                    // and follow the log again from the checkpoints, which are still right.
                    Err(e) if is_transient(&e) => {
                        self.back_off(&e, &mut backoff).await;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// After a passing failure: shows it on the board, waits `backoff` (doubling it for the next
    /// time, up to [`RETRY_MAX`]) and reloads the positions, which are still right.
    async fn back_off(&self, error: &ProjectionError, backoff: &mut Duration) {
        self.board.set_error(Some(error.to_string()));
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(RETRY_MAX);
        self.refresh().await.ok();
    }

    /// Rebuilds the read models whose active generation another version made (see
    /// [`Projection::fingerprint`]), as `rebuild` does: the old generation keeps serving
    /// until the fresh one is filled and switched to. Only the projector that leads does this,
    /// so that a process that merely opens a projector (a replay tool, a waiting instance)
    /// never touches a live read model. A passing failure is retried; a read model that fails
    /// on an event stays stopped, on the status board, while the others go on.
    async fn rebuild_foreign(&self, backoff: &mut Duration) -> Result<(), ProjectionError> {
        let foreign: Vec<&'static str> = {
            let slots = self.slots.lock().await;
            slots
                .iter()
                .filter(|s| s.foreign)
                .map(|s| s.projection.name())
                .collect()
        };
        if foreign.is_empty() {
            return Ok(());
        }
        loop {
            match self.rebuild(&foreign).await {
                Ok(_) => break,
                Err(e) if is_transient(&e) => self.back_off(&e, backoff).await,
                Err(e) => {
                    for status in self.board.all() {
                        if foreign.contains(&status.name.as_str()) {
                            self.board.set(ProjectionStatus {
                                failure: Some(format!("rebuilding for this version: {e}")),
                                ..status
                            });
                        }
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Reloads every projection's generation and position from the database.
    async fn refresh(&self) -> Result<(), ProjectionError> {
        let mut conn = self.db.pool().acquire().await?;
        let mut slots = self.slots.lock().await;
        for slot in slots.iter_mut() {
            if let Some(failure) = slot.reload(&mut conn).await? {
                self.board.set(ProjectionStatus {
                    name: slot.projection.name().to_owned(),
                    generation: slot.tables.generation(),
                    position: slot.position,
                    failure: Some(failure),
                });
            }
        }
        Ok(())
    }

    /// Applies everything up to the log's current head, then returns how many events of the
    /// log it went through. Several batches go in one transaction (a `Unit`); the projections
    /// are held only for one unit at a time, so a rebuild's switch or a live batch can come in
    /// between.
    ///
    /// # Errors
    /// Store or database failures.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        if self.slots.lock().await.iter().all(|s| s.failed) {
            // Nothing to apply the log to (every read model stopped, or made by another
            // version): not even a read.
            return Ok(0);
        }
        let head = self.store.head().await?;
        let mut read = 0;
        let mut batch = self
            .store
            .read_all(self.low_water().await, CATCH_UP_BATCH)
            .await?;
        let mut careful_until = None;
        // One connection for every unit: its page cache keeps the pages the next unit writes
        // again (the pool hands out its idle connections in turn).
        let mut tx = self.long_tx().await?;
        while !batch.is_empty() {
            let mut slots = self.slots.lock().await;
            let next = self
                .unit(
                    &mut tx,
                    &mut slots,
                    &mut batch,
                    head,
                    careful_until,
                    Some(&self.board),
                )
                .await?;
            drop(slots);
            careful_until = None;
            match next {
                Next::Go(n) => read += n,
                Next::Reread { applied, careful } => {
                    read += applied;
                    careful_until = careful;
                    batch = self
                        .store
                        .read_all(self.low_water().await, CATCH_UP_BATCH)
                        .await?;
                }
            }
        }
        tx.finish().await?;
        Ok(read)
    }

    /// The lowest position any healthy projection has reached.
    async fn low_water(&self) -> Position {
        let slots = self.slots.lock().await;
        slots
            .iter()
            .filter(|s| !s.failed)
            .map(|s| s.position)
            .min()
            .unwrap_or(0)
    }

    /// Applies one batch of the log to every healthy projection that has not seen it, in one
    /// transaction. Returns whether a projection's checkpoint had moved under it (another
    /// projector, a rebuild): its position was reloaded, and the caller must read on from the
    /// low-water mark.
    ///
    /// # Errors
    /// Database failures other than a projection's own (those stop only that projection);
    /// nothing of the batch is then committed.
    pub async fn apply_batch(&self, batch: &[RecordedEvent]) -> Result<bool, ProjectionError> {
        let Some(last) = batch.last() else {
            return Ok(false);
        };
        let mut slots = self.slots.lock().await;
        if slots
            .iter()
            .all(|s| s.failed || s.position >= last.position)
        {
            return Ok(false);
        }
        let mut careful_until = None;
        let mut tx = Tx::start(self.db.pool().acquire().await?);
        let reread = loop {
            let mut unit = Unit::begin(&mut tx, &slots, careful_until).await?;
            let applied = async {
                unit.apply(&mut slots, batch).await?;
                unit.settle().await
            }
            .await;
            if let Err(e) = applied {
                unit.abandon(&mut slots).await;
                return Err(e);
            }
            if unit.spoiled.is_some() {
                // A projection failed in the optimistic unit: again, each in a savepoint.
                unit.abandon(&mut slots).await;
                careful_until = Some(last.position);
                continue;
            }
            break unit.commit(&self.db, &mut slots, Some(&self.board)).await?;
        };
        tx.finish().await?;
        Ok(reread)
    }

    /// Rebuilds the named projections (all when `names` is empty) from position 0 into a fresh
    /// generation of tables while the current one keeps serving, then switches to it
    /// atomically. Returns the number of events read.
    ///
    /// # Errors
    /// An unknown name; store or database failures; a projection failing on an event.
    pub async fn rebuild(&self, names: &[&str]) -> Result<u64, ProjectionError> {
        let projections: Vec<Arc<dyn Projection>> = {
            let slots = self.slots.lock().await;
            for name in names {
                if !slots.iter().any(|s| s.projection.name() == *name) {
                    return Err(ProjectionError::UnknownProjection((*name).to_owned()));
                }
            }
            slots
                .iter()
                .filter(|s| names.is_empty() || names.contains(&s.projection.name()))
                .map(|s| Arc::clone(&s.projection))
                .collect()
        };
        let mut conn = self.db.pool().acquire().await?;
        let mut fresh = Vec::new();
        for projection in &projections {
            let mut tx = begin_write(&mut conn).await?;
            if self.db.backend() == Backend::Postgres {
                tx.execute("SELECT pg_advisory_xact_lock(7077345)").await?;
            }
            let generation = next_generation(&mut tx, projection.name()).await?;
            let tables = Tables::new(projection.tables(), generation);
            create_generation(&mut tx, projection.as_ref(), &tables, generation, false).await?;
            tx.commit().await?;
            fresh.push(Slot {
                projection: Arc::clone(projection),
                tables,
                position: 0,
                failed: false,
                foreign: false,
            });
        }
        drop(conn);
        // Fill the fresh generation while the live one keeps serving, then index it for its
        // queries (the live projector still runs meanwhile).
        let mut read = 0;
        let filled = async {
            self.fill(&mut fresh, &mut read).await?;
            let mut conn = self.db.pool().acquire().await?;
            for slot in &fresh {
                create_query_indexes(&mut conn, slot.projection.as_ref(), &slot.tables).await?;
            }
            Ok::<_, ProjectionError>(())
        }
        .await;
        if let Err(e) = filled {
            self.discard(&fresh).await;
            return Err(e);
        }
        // Switch: hold the live projector, finish the last events, swap views and activity.
        let mut live = self.slots.lock().await;
        if let Err(e) = self.fill(&mut fresh, &mut read).await {
            self.discard(&fresh).await;
            return Err(e);
        }
        let mut conn = self.db.pool().acquire().await?;
        for slot in fresh {
            let name = slot.projection.name();
            let old: Option<i64> = sqlx::query_scalar(
                "SELECT generation FROM projection_generations WHERE name = $1 AND active = 1",
            )
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
            let mut tx = begin_write(&mut conn).await?;
            sqlx::query("UPDATE projection_generations SET active = 0 WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE projection_generations SET active = 1 WHERE name = $1 AND generation = $2",
            )
            .bind(name)
            .bind(slot.tables.generation())
            .execute(&mut *tx)
            .await?;
            switch_views(&mut tx, &slot.tables).await?;
            tx.commit().await?;
            if let Some(old) = old {
                drop_generation(&mut conn, slot.projection.as_ref(), old).await?;
            }
            if let Some(l) = live.iter_mut().find(|l| l.projection.name() == name) {
                l.projection.reset();
                l.tables = Tables::new(l.projection.tables(), slot.tables.generation());
                l.position = slot.position;
                l.failed = false;
                l.foreign = false;
            }
            self.board.set(ProjectionStatus {
                name: name.to_owned(),
                generation: slot.tables.generation(),
                position: slot.position,
                failure: None,
            });
        }
        Ok(read)
    }

    /// Drops the fresh generations of a rebuild that failed before its switch, so that they do
    /// not stay behind (a filled generation is as large as the live one). Best effort: the
    /// rebuild's own error is what the caller gets; a generation this cannot drop (the database
    /// is gone too) stays, inactive, until dropped by hand.
    async fn discard(&self, fresh: &[Slot]) {
        let Ok(mut conn) = self.db.pool().acquire().await else {
            return;
        };
        for slot in fresh {
            let _ = drop_generation(
                &mut conn,
                slot.projection.as_ref(),
                slot.tables.generation(),
            )
            .await;
        }
    }

    /// Applies the log up to its head to the fresh generations, from where they stand.
    async fn fill(&self, fresh: &mut [Slot], read: &mut u64) -> Result<(), ProjectionError> {
        let head = self.store.head().await?;
        let after = fresh.iter().map(|s| s.position).min().unwrap_or(0);
        let mut batch = self.store.read_all(after, CATCH_UP_BATCH).await?;
        // One connection for every unit, as in `catch_up`.
        let mut tx = self.long_tx().await?;
        while !batch.is_empty() {
            match self
                .unit(&mut tx, fresh, &mut batch, head, None, None)
                .await?
            {
                Next::Go(n) => *read += n,
                // Without a board a stop or a lost checkpoint is an error, never a reread.
                Next::Reread { .. } => {
                    return Err(ProjectionError::Invalid(
                        "a rebuild's checkpoint moved under it".into(),
                    ))
                }
            }
        }
        tx.finish().await
    }

    /// Applies the log to `slots` in one [`Unit`], starting with `batch` (already read) and
    /// reading each next batch while the current one is applied, until the unit is full, the
    /// log's `head` is reached, or the unit is spoiled or lost a checkpoint; then commits it (or
    /// abandons a spoiled one). Leaves in `batch` the next batch to apply (empty at the head)
    /// and says how to go on.
    ///
    /// Without a `board` (a rebuild's fresh generations) a projection that stops or loses its
    /// checkpoint fails the whole: the unit is abandoned and the error returned.
    async fn unit(
        &self,
        tx: &mut Tx,
        slots: &mut [Slot],
        batch: &mut Vec<RecordedEvent>,
        head: Position,
        careful_until: Option<Position>,
        board: Option<&StatusBoard>,
    ) -> Result<Next, ProjectionError> {
        let mut unit = Unit::begin(tx, slots, careful_until).await?;
        let strict = board.is_none();
        let applied = async {
            while let Some(last) = batch.last() {
                let after = last.position;
                // The log and the read models are different connections (and threads), so
                // reading the next batch overlaps applying this one.
                let (next, applied) = tokio::join!(
                    async {
                        if after < head {
                            self.store.read_all(after, CATCH_UP_BATCH).await
                        } else {
                            Ok(Vec::new())
                        }
                    },
                    unit.apply(slots, batch)
                );
                applied?;
                *batch = next?;
                let done = batch.is_empty() || unit.is_full() || !unit.lost.is_empty();
                if done || unit.tx.is_poisoned() {
                    // Before the commit, and as soon as a queued write has failed: wait for
                    // the queue, charging a failure to the projection that queued it.
                    unit.settle().await?;
                }
                // A rebuild's units are never careful: a stop spoils them, and is its error.
                if let Some((at, spoiled)) = unit.spoiled.take() {
                    return if strict { Err(spoiled) } else { Ok(Some(at)) };
                }
                if done {
                    break;
                }
            }
            Ok(None)
        }
        .await;
        match applied {
            Ok(None) => {
                let applied = unit.events as u64;
                if unit.commit(&self.db, slots, board).await? {
                    Ok(Next::Reread {
                        applied,
                        careful: None,
                    })
                } else {
                    Ok(Next::Go(applied))
                }
            }
            Ok(Some(at)) => {
                unit.abandon(slots).await;
                Ok(Next::Reread {
                    applied: 0,
                    careful: Some(at),
                })
            }
            Err(e) => {
                unit.abandon(slots).await;
                Err(e)
            }
        }
    }

    /// On PostgreSQL, waits until this process holds the projector lock and returns the
    /// connection holding it. The connection is detached from the pool: when the projector
    /// stops (or its task is dropped) the session closes and the lock goes with it, so a
    /// waiting process takes over.
    async fn lead(&self) -> Result<Option<AnyConnection>, ProjectionError> {
        if self.db.backend() != Backend::Postgres {
            return Ok(None);
        }
        let mut conn = self.db.pool().acquire().await?.detach();
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK_KEY)
                .fetch_one(&mut conn)
                .await?;
            if got {
                return Ok(Some(conn));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The connection for a long run of units (catching up, rebuilding), with the WAL
    /// checkpointed beside it on SQLite.
    async fn long_tx(&self) -> Result<Tx, ProjectionError> {
        let conn = self.db.pool().acquire().await?;
        Ok(match self.db.checkpoint_connection().await {
            Some(checkpoints) => Tx::start_with_checkpoints(conn, checkpoints),
            None => Tx::start(conn),
        })
    }

    /// Which database the read models live in.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }
}

/// Decodes a batch once for every projection; an undecodable event fails each projection on it.
fn decode_all(batch: &[RecordedEvent]) -> Vec<Result<Event, String>> {
    batch
        .iter()
        .map(|e| e.decode().map_err(|err| err.to_string()))
        .collect()
}

/// How catching up goes on after a unit.
enum Next {
    /// The unit committed this many events: go on with the next batch.
    Go(u64),
    /// Read the log again from the low-water mark: the unit committed `applied` events and
    /// reloaded a slot whose checkpoint had moved, or it was spoiled and abandoned (`applied`
    /// 0), and the events up to `careful` are to be applied again in a careful unit.
    Reread {
        applied: u64,
        careful: Option<Position>,
    },
}

/// One read-model transaction shared by every projection of a projector, over one or more
/// batches of the log.
///
/// A unit is optimistic or careful:
///
/// - **Optimistic** (the usual one): every projection writes straight into the transaction. If
///   one cannot handle an event, or its checkpoint moved under it, the unit is *spoiled*: its
///   partial writes cannot be taken out alone, so the caller abandons the unit and applies the
///   same events again in a careful one.
/// - **Careful**: each projection applies the batch inside a savepoint together with its
///   checkpoint advance. One that fails is rolled back to its savepoint alone, the events before
///   the failing one are applied again, and it stops there while the others go on. A failure
///   in `flush` surfaces at the batch's last event; the failing event is then found by
///   bisecting ([`Unit::first_failure`]).
///
/// Savepoints are not free: SQLite copies every page a savepoint changes into a sub-journal
/// first, which slows a rebuild measurably; hence optimism, with the careful path for the rare
/// failure.
///
/// Nothing is durable, and no slot's position is anyone else's to see, until the unit commits;
/// a unit that fails is rolled back whole ([`Unit::abandon`]) and every slot goes back to where
/// it was. Catching up and rebuilding put several batches in one unit, so that a page many
/// batches touch (an index page, a child's consent state) is written to the WAL once per unit.
struct Unit<'c> {
    /// The projector's connection, in the unit's transaction; writes are queued on it (see
    /// [`Tx`]), so a failure may be known only when the unit settles ([`Unit::settle`]).
    tx: &'c mut Tx,
    /// A careful unit goes on until it has applied the event at this position (the one that
    /// spoiled an optimistic unit), then commits.
    careful_until: Option<Position>,
    /// The last position applied.
    last: Position,
    /// Each slot's position and health when the unit began, to go back to on a rollback.
    committed: Vec<(u64, bool)>,
    /// Events applied in this unit.
    events: usize,
    began: Instant,
    /// Slots whose checkpoint moved under them (another projector, a switch of generations):
    /// nothing of theirs is in the unit; they are reloaded after it commits. Careful units only.
    lost: Vec<usize>,
    /// Slots that stopped in this unit, with the error naming the event. Careful units only.
    stopped: Vec<(usize, ProjectionError)>,
    /// Why an optimistic unit cannot be committed: a projection stopped (the error names the
    /// event) or lost its checkpoint; with the position to be careful up to.
    spoiled: Option<(Position, ProjectionError)>,
}

/// Events after which a catch-up or rebuild unit commits.
pub const UNIT_EVENTS: usize = 50_000;
/// Time after which a catch-up or rebuild unit commits: bounds how long a reader waits to see
/// progress, and how long SQLite's write lock is held at a stretch. Other writers of the
/// read-model file (the notification delivery worker, a second projector) wait for it with
/// SQLite's busy handler, which polls: a commit every half second gives them a chance far more
/// often than their 10 s `busy_timeout`. Longer units were not measurably faster.
const UNIT_TIME: Duration = Duration::from_millis(500);

impl<'c> Unit<'c> {
    /// Begins a unit for `slots` on `tx`. On SQLite it takes the write lock at once, see
    /// [`Tx::begin_write`].
    async fn begin(
        tx: &'c mut Tx,
        slots: &[Slot],
        careful_until: Option<Position>,
    ) -> Result<Self, ProjectionError> {
        tx.begin_write().await?;
        Ok(Self {
            tx,
            careful_until,
            last: 0,
            committed: slots.iter().map(|s| (s.position, s.failed)).collect(),
            events: 0,
            began: Instant::now(),
            lost: Vec::new(),
            stopped: Vec::new(),
            spoiled: None,
        })
    }

    /// Whether the unit has done enough to commit before the next batch. A careful unit, the
    /// slow path after a failure, ends once past the event that failed.
    fn is_full(&self) -> bool {
        match self.careful_until {
            Some(until) => self.last >= until,
            None => self.events >= UNIT_EVENTS || self.began.elapsed() >= UNIT_TIME,
        }
    }

    /// Applies `batch` to every healthy slot that has not seen it, until the unit is spoiled.
    ///
    /// # Errors
    /// Database failures other than a projection's own: the unit must be abandoned.
    async fn apply(
        &mut self,
        slots: &mut [Slot],
        batch: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let decoded = decode_all(batch);
        // Each healthy slot that has not seen the whole batch, with the events it has not seen.
        let mut due = Vec::new();
        for (index, slot) in slots.iter().enumerate() {
            if slot.failed || self.lost.contains(&index) {
                continue;
            }
            let from = batch.partition_point(|e| e.position <= slot.position);
            if from < batch.len() {
                due.push((index, from));
            }
        }
        if self.careful_until.is_some() {
            for (index, from) in due {
                let (events, decoded) = (&batch[from..], &decoded[from..]);
                self.apply_carefully(index, &mut slots[index], events, decoded)
                    .await?;
            }
        } else {
            // Every projection flushes at once, each through a lane of the one transaction:
            // their queries queue together, so the connection answers one while the projector
            // computes another's rows (`docs/decisions/0008-concurrent-flushes.md`).
            let view: &[Slot] = slots;
            let results = futures::future::join_all(due.iter().map(|&(index, from)| {
                let mut lane = self.tx.lane();
                let (events, decoded) = (&batch[from..], &decoded[from..]);
                async move { project(&mut lane, index, &view[index], events, decoded).await }
            }))
            .await;
            for (&(index, from), result) in due.iter().zip(results) {
                let events = &batch[from..];
                let slot = &mut slots[index];
                match result {
                    Ok(last) => slot.position = last,
                    Err(failed) => {
                        // A write queued before (by this projection or another) may be what
                        // failed, and is then what this failure follows from.
                        if let Some(failure) = self.tx.sync().await? {
                            return self.charge(failure);
                        }
                        match failed {
                            TxError::Db(Some(at), e) if !is_transient(&e) => {
                                let tag = tag(index, slot, &events[at]);
                                self.spoiled = Some((tag.position, stopped(&tag, &e)));
                                return Ok(());
                            }
                            TxError::Lost => {
                                let tag = tag(index, slot, &events[events.len() - 1]);
                                self.spoiled = Some((tag.position, lost(&tag)));
                                return Ok(());
                            }
                            TxError::Db(_, e) => return Err(e),
                        }
                    }
                }
            }
        }
        self.events += batch.len();
        self.last = batch.last().map_or(self.last, |e| e.position);
        Ok(())
    }

    /// Applies `events` to one slot in a savepoint; a failure stops that slot alone.
    async fn apply_carefully(
        &mut self,
        index: usize,
        slot: &mut Slot,
        events: &[RecordedEvent],
        decoded: &[Result<Event, String>],
    ) -> Result<(), ProjectionError> {
        let (failed_at, error) = match self.savepoint(index, slot, events, decoded, false).await? {
            Ok(()) => return Ok(()),
            Err(TxError::Lost) => {
                self.lost.push(index);
                return Ok(());
            }
            Err(TxError::Db(None, e)) => return Err(e),
            // A passing failure (a lock, a lost connection) says nothing about the event: the
            // unit is abandoned and the batch tried again.
            Err(TxError::Db(Some(_), e)) if is_transient(&e) => return Err(e),
            Err(TxError::Db(Some(at), e)) => (at, e),
        };
        let (failed_at, error) = match self
            .first_failure(index, slot, events, decoded, failed_at, error)
            .await?
        {
            Ok(found) => found,
            Err(TxError::Lost) => {
                self.lost.push(index);
                return Ok(());
            }
            Err(TxError::Db(_, e)) => return Err(e),
        };
        // Keep everything before the failing event, then stop there.
        if failed_at > 0 {
            match self
                .savepoint(
                    index,
                    slot,
                    &events[..failed_at],
                    &decoded[..failed_at],
                    false,
                )
                .await?
            {
                Ok(()) => {}
                Err(TxError::Lost) => {
                    self.lost.push(index);
                    return Ok(());
                }
                Err(TxError::Db(_, e)) => return Err(e),
            }
        }
        let stopped = stopped(&tag(index, slot, &events[failed_at]), &error);
        self.tx.set_tag(None);
        self.tx
            .execute(
                "UPDATE projection_generations SET failure = $1 WHERE name = $2 AND generation = $3",
                vec![
                    Cell::Text(stopped.to_string()),
                    slot.projection.name().into(),
                    Cell::Int(slot.tables.generation()),
                ],
            )
            .await?;
        slot.failed = true;
        self.stopped.push((index, stopped));
        Ok(())
    }

    /// The event that `slot` cannot apply, given that applying `events` failed at index
    /// `failed_at` with `error`. A read model that writes in its `flush` (most do, in bulk)
    /// reports a failure there at the batch's last event, whichever event caused it; the first
    /// failing event is then found by bisecting: the longest prefix of `events` that applies,
    /// each try a trial savepoint. Deterministic failures make "the prefix applies" monotonic.
    ///
    /// The outer error is a failure of a savepoint itself; the inner one a try that lost its
    /// checkpoint or failed on no event.
    async fn first_failure(
        &mut self,
        index: usize,
        slot: &mut Slot,
        events: &[RecordedEvent],
        decoded: &[Result<Event, String>],
        failed_at: usize,
        error: ProjectionError,
    ) -> Result<Result<(usize, ProjectionError), TxError>, ProjectionError> {
        if failed_at + 1 < events.len() {
            // Not at the last event, so not in `flush`: `apply` named the event itself.
            return Ok(Ok((failed_at, error)));
        }
        // Prefixes of `good` events apply; of `bad` they do not.
        let (mut good, mut bad, mut error) = (0, failed_at + 1, error);
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            match self
                .savepoint(index, slot, &events[..mid], &decoded[..mid], true)
                .await?
            {
                Ok(()) => good = mid,
                Err(TxError::Db(Some(at), e)) if !is_transient(&e) => {
                    bad = at + 1;
                    error = e;
                }
                Err(failure) => return Ok(Err(failure)),
            }
        }
        Ok(Ok((good, error)))
    }

    /// Applies `events` to `slot` and advances its checkpoint in a savepoint. On success it is
    /// released (moving `slot.position`), unless `trial`; otherwise, and for a trial always, it
    /// is rolled back and the projection forgets what it kept of the events. The outer error is
    /// a failure of the savepoint itself: the unit must be abandoned.
    async fn savepoint(
        &mut self,
        index: usize,
        slot: &mut Slot,
        events: &[RecordedEvent],
        decoded: &[Result<Event, String>],
        trial: bool,
    ) -> Result<Result<(), TxError>, ProjectionError> {
        self.tx.savepoint().await?;
        let mut result = project(self.tx, index, slot, events, decoded).await;
        // What was queued must have run before the savepoint is kept or judged; a queued
        // write that failed came first, so it is the failure.
        if let Some(Failure { tag, fault }) = self.tx.sync().await? {
            result = Err(match fault {
                Fault::NotOne => TxError::Lost,
                Fault::Error(e) => {
                    let at = tag.and_then(|t| events.iter().position(|e| e.position == t.position));
                    TxError::Db(at, e)
                }
            });
        }
        match result {
            Ok(last) if !trial => {
                self.tx.commit().await?;
                slot.position = last;
                Ok(Ok(()))
            }
            result => {
                slot.projection.reset();
                self.tx.rollback().await?;
                Ok(result.map(|_| ()))
            }
        }
    }

    /// Waits for the writes queued so far; a failed one spoils the unit (see
    /// [`Unit::charge`]). Nothing to do once the unit is spoiled.
    ///
    /// # Errors
    /// A passing failure, or the connection task stopped: the unit must be abandoned.
    async fn settle(&mut self) -> Result<(), ProjectionError> {
        if self.spoiled.is_some() {
            return Ok(());
        }
        match self.tx.sync().await? {
            Some(failure) => self.charge(failure),
            None => Ok(()),
        }
    }

    /// Spoils the unit with a queued write's failure, charged to the projection and batch that
    /// queued it: careful units then find the event.
    ///
    /// # Errors
    /// A passing failure, or a failure of the runtime's own statements: the unit must be
    /// abandoned.
    fn charge(&mut self, Failure { tag, fault }: Failure) -> Result<(), ProjectionError> {
        let Some(tag) = tag else {
            return Err(match fault {
                Fault::Error(e) => e,
                Fault::NotOne => {
                    ProjectionError::Invalid("a runtime statement changed no row".into())
                }
            });
        };
        let error = match fault {
            Fault::Error(e) if is_transient(&e) => return Err(e),
            Fault::Error(e) => stopped(&tag, &e),
            Fault::NotOne => lost(&tag),
        };
        self.spoiled = Some((tag.position, error));
        Ok(())
    }

    /// Commits the unit, reloads the slots that lost their checkpoint and tells the `board`
    /// where the others stand. Returns whether any slot was reloaded: the caller must then read
    /// on from the low-water mark.
    ///
    /// # Errors
    /// Database failures; the slots are then back where the unit began.
    async fn commit(
        self,
        db: &ReadDb,
        slots: &mut [Slot],
        board: Option<&StatusBoard>,
    ) -> Result<bool, ProjectionError> {
        let Self {
            tx,
            committed,
            lost,
            stopped,
            ..
        } = self;
        // The callers settle first; a failure here is not the projections' to be charged.
        let committing = match tx.sync().await {
            Ok(None) => tx.commit().await,
            Ok(Some(failure)) => Err(match failure.fault {
                Fault::Error(e) => e,
                Fault::NotOne => ProjectionError::Invalid(
                    "a checkpoint moved under a unit about to commit".into(),
                ),
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = committing {
            restore(slots, &committed);
            let _ = tx.rollback().await;
            return Err(e);
        }
        let mut replaced = Vec::new();
        if !lost.is_empty() {
            let mut conn = db.pool().acquire().await?;
            for &index in &lost {
                if let Some(failure) = slots[index].reload(&mut conn).await? {
                    replaced.push((index, failure));
                }
            }
        }
        if let Some(board) = board {
            for (index, slot) in slots.iter().enumerate() {
                let failure = stopped
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map(|(_, e)| e.to_string())
                    .or_else(|| {
                        replaced
                            .iter()
                            .find(|(i, _)| *i == index)
                            .map(|(_, f)| f.clone())
                    });
                if committed[index] != (slot.position, slot.failed) || failure.is_some() {
                    board.set(ProjectionStatus {
                        name: slot.projection.name().to_owned(),
                        generation: slot.tables.generation(),
                        position: slot.position,
                        failure,
                    });
                }
            }
        }
        Ok(!lost.is_empty())
    }

    /// Rolls the unit back: every slot goes back to where it was when the unit began. If the
    /// rollback fails, the next unit's `BEGIN` rolls back what is left open.
    async fn abandon(self, slots: &mut [Slot]) {
        restore(slots, &self.committed);
        let _ = self.tx.rollback().await;
    }
}

/// What a statement queued by `slot` (at `index`) while applying a batch ending at `event` is
/// charged to.
fn tag(index: usize, slot: &Slot, event: &RecordedEvent) -> Tag {
    Tag {
        slot: index,
        projection: slot.projection.name(),
        generation: slot.tables.generation(),
        position: event.position,
        stream: event.stream,
        event_type: event.event_type.clone(),
    }
}

/// The error of a projection that cannot handle the event of `tag`.
fn stopped(tag: &Tag, error: &ProjectionError) -> ProjectionError {
    ProjectionError::Stopped {
        projection: tag.projection.to_owned(),
        position: tag.position,
        stream: tag.stream,
        event_type: tag.event_type.clone(),
        reason: error.to_string(),
    }
}

/// The error of a projection whose checkpoint another process moved.
fn lost(tag: &Tag) -> ProjectionError {
    ProjectionError::Invalid(format!(
        "another process moved the checkpoint of {} generation {}",
        tag.projection, tag.generation
    ))
}

fn restore(slots: &mut [Slot], committed: &[(u64, bool)]) {
    for (slot, &(position, failed)) in slots.iter_mut().zip(committed) {
        slot.position = position;
        slot.failed = failed;
        slot.projection.reset();
    }
}

/// Whether a failure is passing (retrying the same batch later may succeed) rather than
/// something about the event: lost connections, timeouts, lock contention, serialization
/// failures, a database shutting down or out of resources, a full disk.
pub fn is_transient(e: &ProjectionError) -> bool {
    use kring_store::StoreError as S;
    let sql = match e {
        ProjectionError::Database(e) => e,
        ProjectionError::Store(S::Backend(_) | S::Unavailable(_) | S::StorageFull(_)) => {
            return true
        }
        ProjectionError::Vault(kring_store::vault::VaultError::Database(e)) => e,
        ProjectionError::RolledBack(_) => return true,
        _ => return false,
    };
    // Out of reach or out of space (a full disk under SQLite's files included): the same
    // events apply once it passes.
    if kring_store::outage(sql).is_some() {
        return true;
    }
    match sql {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // SQLite: BUSY (5) and LOCKED (6) with their extended codes (e.g. 517).
            // PostgreSQL: classes 08 connection, 40 rollback (serialization, deadlock),
            // 53 insufficient resources, 57 operator intervention.
            if code.len() == 5 {
                ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c))
            } else {
                code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
            }
        }
        _ => false,
    }
}

enum TxError {
    /// The checkpoint moved under us: nothing of the batch stands.
    Lost,
    /// A failure, at the event of that index if it was an event's.
    Db(Option<usize>, ProjectionError),
}

/// Applies `events` to one projection (the slot at `index`), flushes it and queues its
/// checkpoint advance, conditional on the position it started from. Its writes, queued on
/// `tx`, are charged to it and to the batch's last event if they fail.
async fn project(
    tx: &mut Tx,
    index: usize,
    slot: &Slot,
    events: &[RecordedEvent],
    decoded: &[Result<Event, String>],
) -> Result<Position, TxError> {
    let Some(last) = events.last() else {
        return Ok(slot.position);
    };
    tx.set_tag(Some(tag(index, slot, last)));
    for (i, (recorded, event)) in events.iter().zip(decoded).enumerate() {
        let result = match event {
            Ok(event) => {
                slot.projection
                    .apply(tx, &slot.tables, Projected { recorded, event })
                    .await
            }
            Err(reason) => Err(ProjectionError::Invalid(format!("cannot decode: {reason}"))),
        };
        if let Err(e) = result {
            return Err(TxError::Db(Some(i), e));
        }
    }
    if let Err(e) = slot.projection.flush(tx, &slot.tables).await {
        return Err(TxError::Db(Some(events.len() - 1), e));
    }
    // Another projector that moved the checkpoint makes this change no row: `Fault::NotOne`.
    tx.execute_one(
        "UPDATE projection_generations SET position = $1 WHERE name = $2 AND generation = $3 AND position = $4",
        vec![
            Cell::Int(to_i64(last.position)),
            slot.projection.name().into(),
            Cell::Int(slot.tables.generation()),
            Cell::Int(to_i64(slot.position)),
        ],
    )
    .await
    .map_err(|e| TxError::Db(None, e))?;
    Ok(last.position)
}

/// Begins a transaction that writes read-model tables. On SQLite it takes the write lock at
/// once (`BEGIN IMMEDIATE`). A deferred transaction that reads before it writes — as a batch
/// does (projections load state, then write) — is refused the upgrade to a writer with
/// "database is locked" (`SQLITE_BUSY`, or `SQLITE_BUSY_SNAPSHOT` once another connection has
/// committed since its read) without the busy handler waiting. That failed a rebuild, or the
/// live catch-up beside it, whenever the two wrote at the same moment (found by the oracle test,
/// `tests/oracle.rs`). Taken up front, the lock is waited for (`busy_timeout`) like any other.
async fn begin_write(
    conn: &mut AnyConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    if Backend::of(conn) == Backend::Sqlite {
        sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await
    } else {
        conn.begin().await
    }
}

/// The active generation of a projection: its number, position and fingerprint.
async fn active(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<(i64, u64, Option<String>)>, ProjectionError> {
    let row = sqlx::query(
        "SELECT generation, position, fingerprint FROM projection_generations WHERE name = $1 AND active = 1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok((
            r.try_get::<i64, _>(0)?,
            to_u64(r.try_get(1)?)?,
            r.try_get::<Option<String>, _>(2)?,
        ))
    })
    .transpose()
}

/// The active generation of `projection`, its position and the fingerprint of the code that
/// made it ([`Projection::fingerprint`]); when there is none, generation 1 is created for this
/// code and made active.
/// In one write transaction (under a lock on PostgreSQL), so that two processes starting
/// together agree.
async fn current_generation(
    conn: &mut AnyConnection,
    projection: &dyn Projection,
) -> Result<(i64, u64, Option<String>), ProjectionError> {
    let mut tx = begin_write(conn).await?;
    if Backend::of(&tx) != Backend::Sqlite {
        tx.execute("SELECT pg_advisory_xact_lock(7077345)").await?;
    }
    let name = projection.name();
    if let Some((generation, position, fingerprint)) = active(&mut tx, name).await? {
        tx.commit().await?;
        return Ok((generation, position, fingerprint));
    }
    let generation = next_generation(&mut tx, name).await?;
    let tables = Tables::new(projection.tables(), generation);
    create_generation(&mut tx, projection, &tables, generation, true).await?;
    switch_views(&mut tx, &tables).await?;
    sqlx::query("UPDATE projection_generations SET active = 1 WHERE name = $1 AND generation = $2")
        .bind(name)
        .bind(generation)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((generation, 0, Some(projection.fingerprint())))
}

/// The number for a new generation of `name`, inside the write transaction that creates it (on
/// PostgreSQL under the preparation lock): two processes creating generations at once (a
/// rebuild and a first start, two rebuilds) never pick the same number, so neither drops the
/// other's tables.
async fn next_generation(tx: &mut AnyConnection, name: &str) -> Result<i64, ProjectionError> {
    let latest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(generation) FROM projection_generations WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    Ok(latest.unwrap_or(0) + 1)
}

/// Drops the tables of `generation` of `projection` and forgets it.
async fn drop_generation(
    conn: &mut AnyConnection,
    projection: &dyn Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    for (_, physical) in Tables::new(projection.tables(), generation).pairs() {
        conn.execute(format!("DROP TABLE IF EXISTS {physical}").as_str())
            .await?;
    }
    sqlx::query("DELETE FROM projection_generations WHERE name = $1 AND generation = $2")
        .bind(projection.name())
        .bind(generation)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates `generation` of `projection`'s tables (dropping any left over under the same names),
/// inactive and at position 0. A generation that serves at once gets its query indexes now; a
/// rebuild's gets them from [`create_query_indexes`] after its fill.
async fn create_generation(
    tx: &mut AnyConnection,
    projection: &dyn Projection,
    tables: &Tables,
    generation: i64,
    query_indexes: bool,
) -> Result<(), ProjectionError> {
    for (_, physical) in tables.pairs() {
        tx.execute(format!("DROP TABLE IF EXISTS {physical}").as_str())
            .await?;
    }
    execute_ddl(tx, tables, projection.schema()).await?;
    if query_indexes {
        execute_ddl(tx, tables, projection.query_indexes()).await?;
    }
    sqlx::query("DELETE FROM projection_generations WHERE name = $1 AND generation = $2")
        .bind(projection.name())
        .bind(generation)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO projection_generations (name, generation, position, active, fingerprint) VALUES ($1, $2, 0, 0, $3)")
        .bind(projection.name())
        .bind(generation)
        .bind(projection.fingerprint())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Creates the query indexes of a filled generation, in one transaction.
///
/// On SQLite the sort spills to temporary files while it runs: with the connection's
/// `temp_store = MEMORY` the runs of sorted keys stay in memory, and sorting a large table
/// takes a rebuild's peak memory up to its 256 MiB budget.
async fn create_query_indexes(
    conn: &mut AnyConnection,
    projection: &dyn Projection,
    tables: &Tables,
) -> Result<(), ProjectionError> {
    let sqlite = Backend::of(conn) == Backend::Sqlite;
    if sqlite {
        conn.execute("PRAGMA temp_store = FILE").await?;
    }
    let created = async {
        let mut tx = begin_write(conn).await?;
        if !sqlite {
            // Indexing a whole generation takes as long as it takes; the connection's statement
            // timeout (`kring_store::postgres::link`) applies again after this transaction.
            tx.execute("SET LOCAL statement_timeout = 0").await?;
        }
        execute_ddl(&mut tx, tables, projection.query_indexes()).await?;
        tx.commit().await?;
        Ok::<_, ProjectionError>(())
    }
    .await;
    if sqlite {
        conn.execute("PRAGMA temp_store = MEMORY").await?;
    }
    created
}

/// Runs `ddl` (statements separated by `;`, tables as `{name}`, `{without_rowid}` after a
/// table that SQLite should keep in its primary key's order; see [`Projection::schema`]) for
/// `tables`.
async fn execute_ddl(
    tx: &mut AnyConnection,
    tables: &Tables,
    ddl: &str,
) -> Result<(), ProjectionError> {
    let clustered = match Backend::of(tx) {
        Backend::Sqlite => " WITHOUT ROWID",
        Backend::Postgres => "",
    };
    for statement in tables
        .render(ddl)
        .replace("{without_rowid}", clustered)
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        tx.execute(statement).await?;
    }
    Ok(())
}

async fn switch_views(tx: &mut AnyConnection, tables: &Tables) -> Result<(), ProjectionError> {
    for (logical, physical) in tables.pairs() {
        tx.execute(format!("DROP VIEW IF EXISTS {logical}").as_str())
            .await?;
        tx.execute(format!("CREATE VIEW {logical} AS SELECT * FROM {physical}").as_str())
            .await?;
    }
    Ok(())
}

/// Read-your-writes: the position a projection has reached, and a bounded wait for one.
#[derive(Clone)]
pub struct Checkpoints {
    db: ReadDb,
    board: Option<Arc<StatusBoard>>,
}

impl Checkpoints {
    /// Checkpoints read from `db`; with the in-process projectors' `board`, waits wake at once.
    #[must_use]
    pub const fn new(db: ReadDb, board: Option<Arc<StatusBoard>>) -> Self {
        Self { db, board }
    }

    /// The position projection `name` has reached.
    ///
    /// # Errors
    /// An unknown projection; database failures.
    pub async fn position(&self, name: &str) -> Result<Position, ProjectionError> {
        let position: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM projection_generations WHERE name = $1 AND active = 1",
        )
        .bind(name)
        .fetch_optional(self.db.pool())
        .await?;
        to_u64(position.ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))?)
    }

    /// Whether projection `name` has applied everything up to `position`.
    ///
    /// # Errors
    /// As [`Checkpoints::position`].
    pub async fn has_reached(
        &self,
        name: &str,
        position: Position,
    ) -> Result<bool, ProjectionError> {
        Ok(self.position(name).await? >= position)
    }

    /// Waits up to `timeout` for projection `name` to reach `position`.
    ///
    /// # Errors
    /// [`ProjectionError::NotCaughtUp`] when the time runs out.
    pub async fn wait_for(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watch = self.board.as_ref().and_then(|b| b.watch(name));
        loop {
            let reached = self.position(name).await?;
            if reached >= position {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ProjectionError::NotCaughtUp {
                    projection: name.to_owned(),
                    position,
                    reached,
                });
            }
            // Woken by the in-process projector, or poll (another process projects).
            let nap = (deadline - now).min(Duration::from_millis(50));
            match watch.as_mut() {
                Some(w) => {
                    let _ = tokio::time::timeout(nap, w.changed()).await;
                }
                None => tokio::time::sleep(nap).await,
            }
        }
    }
}
