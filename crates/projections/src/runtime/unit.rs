//! Units: the read-model transactions batches are applied in, optimistic or with a savepoint
//! per projection.

use super::is_transient;
use super::slot::Slot;
use super::status::{ProjectionStatus, StatusBoard};
use crate::bulk::Cell;
use crate::db::{to_i64, ReadDb};
use crate::error::ProjectionError;
use crate::projection::Projected;
use crate::writer::{Failure, Fault, Tag, Tx};
use kring_domain::Event;
use kring_store::{Position, RecordedEvent};
use std::time::{Duration, Instant};

const SET_FAILURE: &str = include_str!("sql/set_failure.sql");
const ADVANCE: &str = include_str!("sql/advance.sql");

/// Decodes a batch once for every projection; an undecodable event fails each projection on it.
fn decode_all(batch: &[RecordedEvent]) -> Vec<Result<Event, String>> {
    batch
        .iter()
        .map(|e| e.decode().map_err(|err| err.to_string()))
        .collect()
}

/// How catching up goes on after a unit.
pub(super) enum Next {
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
pub(super) struct Unit<'c> {
    /// The projector's connection, in the unit's transaction; writes are queued on it (see
    /// [`Tx`]), so a failure may be known only when the unit settles ([`Unit::settle`]).
    pub(super) tx: &'c mut Tx,
    /// A careful unit goes on until it has applied the event at this position (the one that
    /// spoiled an optimistic unit), then commits.
    careful_until: Option<Position>,
    /// The last position applied.
    last: Position,
    /// Each slot's position and health when the unit began, to go back to on a rollback.
    committed: Vec<(u64, bool)>,
    /// Events applied in this unit.
    pub(super) events: usize,
    began: Instant,
    /// Slots whose checkpoint moved under them (another projector, a switch of generations):
    /// nothing of theirs is in the unit; they are reloaded after it commits. Careful units only.
    pub(super) lost: Vec<usize>,
    /// Slots that stopped in this unit, with the error naming the event. Careful units only.
    stopped: Vec<(usize, ProjectionError)>,
    /// Why an optimistic unit cannot be committed: a projection stopped (the error names the
    /// event) or lost its checkpoint; with the position to be careful up to.
    pub(super) spoiled: Option<(Position, ProjectionError)>,
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
    pub(super) async fn begin(
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
    pub(super) fn is_full(&self) -> bool {
        match self.careful_until {
            Some(until) => self.last >= until,
            None => self.events >= UNIT_EVENTS || self.began.elapsed() >= UNIT_TIME,
        }
    }

    /// Applies `batch` to every healthy slot that has not seen it, until the unit is spoiled.
    ///
    /// # Errors
    /// Database failures other than a projection's own: the unit must be abandoned.
    pub(super) async fn apply(
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
                SET_FAILURE,
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
    pub(super) async fn settle(&mut self) -> Result<(), ProjectionError> {
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
    pub(super) async fn commit(
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
    pub(super) async fn abandon(self, slots: &mut [Slot]) {
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
        ADVANCE,
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
