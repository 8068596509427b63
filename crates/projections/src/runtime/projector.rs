//! The projector loop: leading, catching up, following the log live, and rebuilding.

use super::generations::{
    add_fingerprint_column, begin_write, create_generation, create_query_indexes,
    current_generation, drop_generation, next_generation, switch_views, ACTIVATE, LOCK_GENERATIONS,
    STATE_TABLE,
};
use super::slot::Slot;
use super::status::{ProjectionStatus, StatusBoard};
use super::unit::{Next, Unit};
use super::{is_transient, BATCH, CATCH_UP_BATCH};
use crate::db::{Backend, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Projection, Tables};
use crate::writer::Tx;
use kring_store::{EventStore, EventStoreExt, Position, RecordedEvent};
use sqlx::{AnyConnection, Executor};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const ACTIVE_GENERATION: &str = include_str!("sql/active_generation.sql");
const DEACTIVATE: &str = include_str!("sql/deactivate.sql");
const TRY_LEAD: &str = include_str!("sql/postgres/try_lead.sql");

/// The first and the longest wait before following the log again after a passing failure.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
const LEADER_LOCK_KEY: i64 = 0x6b72_696e_6700_0001;

/// Runs a set of projections against one read-model database.
pub struct Projector<S> {
    store: S,
    db: ReadDb,
    slots: Mutex<Vec<Slot>>,
    board: Arc<StatusBoard>,
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
                tx.execute(LOCK_GENERATIONS).await?;
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
    /// version made, catches up, then follows live. A leader whose lock's connection is lost
    /// (the database restarted, the session was ended) stops applying and waits to lead again:
    /// another process may hold the lock by then.
    ///
    /// # Errors
    /// Store or database failures that persist; a failing projection is not an error here.
    pub async fn run(&self) -> Result<(), ProjectionError> {
        loop {
            let watch = LeaderWatch::start(self.lead().await?);
            // The database answered: a failure shown while waiting for it is over.
            self.board.set_error(None);
            self.board.set_leading(true);
            let led = self.lead_while(&watch).await;
            self.board.set_leading(false);
            led?;
        }
    }

    /// Applies events while `watch` says the lock is held; `Ok` once it is lost.
    async fn lead_while(&self, watch: &LeaderWatch) -> Result<(), ProjectionError> {
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
            if watch.lost() {
                return Ok(());
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
                // The checkpoints refuse a batch applied twice; this keeps a former leader from
                // even trying, and from waiting for events it will not apply.
                let next = tokio::select! {
                    next = subscription.next_batch() => next,
                    () = watch.until_lost() => return Ok(()),
                };
                let step = match next {
                    Ok(_) if watch.lost() => return Ok(()),
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
                        if watch.lost() {
                            return Ok(());
                        }
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
        self.tell_head(&self.slots.lock().await, head).await?;
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
                tx.execute(LOCK_GENERATIONS).await?;
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
            let old: Option<i64> = sqlx::query_scalar(ACTIVE_GENERATION)
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
            let mut tx = begin_write(&mut conn).await?;
            sqlx::query(DEACTIVATE).bind(name).execute(&mut *tx).await?;
            sqlx::query(ACTIVATE)
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
        self.tell_head(fresh, head).await?;
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

    /// Tells the projections of `slots` that are more than a batch behind `head` the recorded
    /// time of the event there ([`Projection::log_head`]): one read of one event. A live
    /// projection a batch or less behind is not told (it would cost that read on every wake-up
    /// and spare little); it ends in the same rows either way.
    async fn tell_head(&self, slots: &[Slot], head: Position) -> Result<(), ProjectionError> {
        let batch = CATCH_UP_BATCH as u64;
        let behind: Vec<&Slot> = slots
            .iter()
            .filter(|s| !s.failed && s.position.saturating_add(batch) < head)
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        let newest = self.store.read_all(head.saturating_sub(1), 1).await?;
        if let Some(event) = newest.first() {
            for slot in behind {
                slot.projection.log_head(&slot.tables, event.occurred_at);
            }
        }
        Ok(())
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
        let mut backoff = RETRY_MIN;
        let mut held: Option<AnyConnection> = None;
        loop {
            // The database may be away (a restart that took the last leader's lock with it):
            // wait for it as for any passing failure, on a fresh connection.
            let tried = async {
                let mut conn = match held.take() {
                    Some(conn) => conn,
                    None => self.db.pool().acquire().await?.detach(),
                };
                let got: bool = sqlx::query_scalar(TRY_LEAD)
                    .bind(LEADER_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await?;
                Ok::<_, ProjectionError>((got, conn))
            }
            .await;
            match tried {
                Ok((true, conn)) => return Ok(Some(conn)),
                Ok((false, conn)) => {
                    held = Some(conn);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) if is_transient(&e) => self.back_off(&e, &mut backoff).await,
                Err(e) => return Err(e),
            }
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

/// How often a leader checks that its lock's connection is alive.
const LEADER_CHECK: Duration = Duration::from_secs(1);

/// The leader's lock connection, held and checked by a task of its own. Dropping the watch
/// closes the connection, which releases the lock.
struct LeaderWatch {
    lost: tokio::sync::watch::Receiver<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaderWatch {
    /// Watches `lock` (`None`: no lock to lose, on SQLite).
    fn start(lock: Option<AnyConnection>) -> Self {
        let (tell, lost) = tokio::sync::watch::channel(false);
        let task = lock.map(|mut conn| {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEADER_CHECK).await;
                    // A session lock lives as long as its session: an answering connection
                    // still holds it.
                    if conn.execute("SELECT 1").await.is_err() {
                        tell.send_replace(true);
                        return;
                    }
                }
            })
        });
        Self { lost, task }
    }

    fn lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves once the lock is lost (never, without a lock).
    async fn until_lost(&self) {
        let mut lost = self.lost.clone();
        // An error means the watching task ended without losing the lock: it never will.
        if lost.wait_for(|l| *l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
