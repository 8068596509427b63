//! Catching up puts several batches of the log in one read-model transaction (a unit), every
//! projection writing straight into it; when one fails, the unit is rolled back and the same
//! events are applied again in a careful unit, each projection in a savepoint. These tests pin
//! what that must not change: a projection that stops keeps the events before the failing one
//! and the others go on, and a passing failure rolls the whole unit back so that the retry
//! applies every event exactly once. On SQLite and on PostgreSQL, with a log longer than two
//! read batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use async_trait::async_trait;
use common::Harness;
use kring_domain::simulation::World;
use kring_domain::Purpose;
use kring_projections::bulk::{Cell, Deferred, Statement};
use kring_projections::runtime::CATCH_UP_BATCH;
use kring_projections::{Projected, Projection, ProjectionError, Projector, ReadDb, Tables, Tx};
use kring_store::{EventStore, ExpectedVersion, Metadata, Position};
use std::sync::{Arc, Mutex};

/// A read model that writes down the position of every event it is given, keyed by position:
/// an event applied twice is a constraint violation, one lost is a missing row. It refuses the
/// event at `refuse` (a permanent failure) and fails once, as a dropped connection would, at
/// `drop_once` (a position, and how many times to let it pass first). With `deferred` it writes in its flush, as the bulk read models do, and the
/// event at `poison` makes the flush fail (its row written twice) rather than `apply`.
struct Ledger {
    name: &'static str,
    tables: &'static [&'static str],
    schema: &'static str,
    insert: &'static str,
    refuse: Option<Position>,
    drop_once: Mutex<Option<(Position, usize)>>,
    deferred: Option<Deferred>,
    poison: Option<Position>,
}

impl Ledger {
    fn a() -> Self {
        Self {
            name: "ledger_a",
            tables: &["ledger_a"],
            schema: "CREATE TABLE {ledger_a} (position BIGINT PRIMARY KEY)",
            insert: "INSERT INTO {ledger_a} (position) VALUES ($1)",
            refuse: None,
            drop_once: Mutex::new(None),
            deferred: None,
            poison: None,
        }
    }

    fn b() -> Self {
        Self {
            name: "ledger_b",
            tables: &["ledger_b"],
            schema: "CREATE TABLE {ledger_b} (position BIGINT PRIMARY KEY)",
            insert: "INSERT INTO {ledger_b} (position) VALUES ($1)",
            ..Self::a()
        }
    }

    /// Ledger a writing in its flush, which fails on a batch holding the event at `position`.
    fn a_deferred_poisoned(position: Position) -> Self {
        Self {
            deferred: Some(Deferred::default()),
            poison: Some(position),
            ..Self::a()
        }
    }

    /// Ledger a, refusing the event at `position`.
    fn a_refusing(position: Position) -> Self {
        Self {
            refuse: Some(position),
            ..Self::a()
        }
    }
}

#[async_trait]
impl Projection for Ledger {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tables(&self) -> &'static [&'static str] {
        self.tables
    }

    fn schema(&self) -> &'static str {
        self.schema
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let position = e.recorded.position;
        if self.refuse == Some(position) {
            return Err(ProjectionError::Invalid(
                "the ledger refuses this one".into(),
            ));
        }
        let drop_now = {
            let mut drop_once = self.drop_once.lock().unwrap();
            match &mut *drop_once {
                Some((at, passes)) if *at == position && *passes > 0 => {
                    *passes -= 1;
                    false
                }
                Some((at, _)) if *at == position => drop_once.take().is_some(),
                _ => false,
            }
        };
        if drop_now {
            return Err(ProjectionError::Database(sqlx::Error::Io(
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset"),
            )));
        }
        let row = || Cell::Int(i64::try_from(position).unwrap());
        if let Some(deferred) = &self.deferred {
            let mut statements = vec![Statement::new(self.insert, vec![row()])];
            if self.poison == Some(position) {
                statements.push(Statement::new(self.insert, vec![row()]));
            }
            deferred.push(t, position, statements);
            return Ok(());
        }
        tx.execute(t.sql(self.insert), vec![row()]).await
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        match &self.deferred {
            Some(deferred) => deferred.flush(tx, t).await,
            None => Ok(()),
        }
    }

    fn reset(&self) {}
}

/// Writes a school and enough consent decisions for the log to span more than two read
/// batches, appending a stream's consecutive events together. Returns every position in order.
async fn long_log<S: EventStore + Clone>(h: &Harness<S>) -> Vec<Position> {
    let mut world = World::with_classes(1, 1, 1);
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    for i in 0..2 * CATCH_UP_BATCH + 1_000 {
        world
            .decide_consent(guardian, child, Purpose::GroupCommunication, i % 2 == 0)
            .unwrap();
    }
    let mut i = 0;
    while i < world.log.len() {
        let stream = &world.log[i].stream;
        let mut events = Vec::new();
        while i < world.log.len() && world.log[i].stream == *stream && events.len() < 1_000 {
            let r = &world.log[i];
            events.push(
                h.vault
                    .seal(&r.event, Metadata::new(r.at, r.actor))
                    .await
                    .unwrap(),
            );
            i += 1;
        }
        h.store
            .append(stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let all = h.store.read_all(0, 1_000_000).await.unwrap();
    assert!(all.len() > 2 * CATCH_UP_BATCH);
    all.iter().map(|e| e.position).collect()
}

/// The positions in a ledger, in order.
async fn ledger(db: &ReadDb, table: &str) -> Vec<Position> {
    sqlx::query_scalar::<_, i64>(&format!("SELECT position FROM {table} ORDER BY position"))
        .fetch_all(db.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|p| u64::try_from(p).unwrap())
        .collect()
}

/// A projector of ledgers `a` and `b` over the harness's log and read models.
async fn ledgers<S: EventStore + Clone>(h: &Harness<S>, a: Ledger, b: Ledger) -> Projector<S> {
    Projector::new(
        h.store.clone(),
        h.db.clone(),
        vec![Arc::new(a), Arc::new(b)],
    )
    .await
    .unwrap()
}

/// The positions before `position`.
fn positions_before(positions: &[Position], position: Position) -> Vec<Position> {
    positions
        .iter()
        .copied()
        .filter(|p| *p < position)
        .collect()
}

/// Each projection's committed position, as a projector opened afresh on the database sees it.
async fn committed<S: EventStore + Clone>(h: &Harness<S>) -> Vec<(String, Position)> {
    ledgers(h, Ledger::a(), Ledger::b())
        .await
        .board()
        .all()
        .into_iter()
        .map(|s| (s.name, s.position))
        .collect()
}

async fn a_projection_that_stops_inside_a_unit_keeps_what_came_before_and_the_others_go_on<
    S: EventStore + Clone,
>(
    h: Harness<S>,
) {
    let positions = long_log(&h).await;
    // In the second read batch, so that the unit has already applied a whole batch before.
    let refused = positions[CATCH_UP_BATCH + 100];
    let before = positions_before(&positions, refused);
    let head = *positions.last().unwrap();
    let projector = ledgers(&h, Ledger::a_refusing(refused), Ledger::b()).await;

    assert_eq!(projector.catch_up().await.unwrap(), positions.len() as u64);

    let board = projector.board().all();
    let failure = board[0].failure.clone().expect("ledger_a reports its stop");
    assert!(failure.contains(&refused.to_string()), "{failure}");
    assert_eq!(board[0].position, *before.last().unwrap());
    assert_eq!((board[1].position, board[1].failure.clone()), (head, None));
    assert_eq!(
        ledger(&h.db, "ledger_a").await,
        before,
        "up to the refused event"
    );
    assert_eq!(
        ledger(&h.db, "ledger_b").await,
        positions,
        "every event once"
    );
    assert_eq!(
        committed(&h).await,
        vec![
            ("ledger_a".to_owned(), *before.last().unwrap()),
            ("ledger_b".to_owned(), head)
        ],
        "what the board says is what was committed"
    );
}

async fn a_projection_whose_flush_fails_stops_at_the_event_that_broke_it<S: EventStore + Clone>(
    h: Harness<S>,
) {
    let positions = long_log(&h).await;
    // Mid-batch: the flush fails for the batch as a whole, and reports its last event.
    let poisoned = positions[CATCH_UP_BATCH + 1_234];
    let before = positions_before(&positions, poisoned);
    let head = *positions.last().unwrap();
    let projector = ledgers(&h, Ledger::a_deferred_poisoned(poisoned), Ledger::b()).await;

    assert_eq!(projector.catch_up().await.unwrap(), positions.len() as u64);

    let board = projector.board().all();
    let failure = board[0].failure.clone().expect("ledger_a reports its stop");
    assert!(
        failure.contains(&format!("at event {poisoned} ")),
        "names the poisoned event: {failure}"
    );
    assert_eq!(board[0].position, *before.last().unwrap());
    assert_eq!((board[1].position, board[1].failure.clone()), (head, None));
    assert_eq!(
        ledger(&h.db, "ledger_a").await,
        before,
        "up to the poisoned event, each once"
    );
    assert_eq!(ledger(&h.db, "ledger_b").await, positions);
}

async fn a_passing_failure_inside_a_unit_rolls_it_back_and_the_retry_applies_each_event_once<
    S: EventStore + Clone,
>(
    h: Harness<S>,
) {
    let positions = long_log(&h).await;
    let dropped = positions[CATCH_UP_BATCH + 100];
    let projector = ledgers(
        &h,
        Ledger {
            drop_once: Mutex::new(Some((dropped, 0))),
            ..Ledger::a()
        },
        Ledger::b(),
    )
    .await;

    let error = projector.catch_up().await.unwrap_err();
    assert!(kring_projections::runtime::is_transient(&error), "{error}");
    // Whatever units committed before the failing one stand; nothing of that one does, for
    // either projection, and the board says no more than was committed.
    let after_failure = committed(&h).await;
    let board: Vec<(String, Position)> = projector
        .board()
        .all()
        .into_iter()
        .map(|s| (s.name, s.position))
        .collect();
    assert_eq!(board, after_failure);
    for (name, position) in &after_failure {
        assert!(*position < dropped, "{name} kept part of the failed unit");
        let expected: Vec<Position> = positions
            .iter()
            .copied()
            .filter(|p| p <= position)
            .collect();
        assert_eq!(ledger(&h.db, name).await, expected, "{name}");
    }

    assert!(projector.catch_up().await.unwrap() > 0);
    let head = *positions.last().unwrap();
    for status in projector.board().all() {
        assert_eq!((status.position, status.failure), (head, None));
    }
    assert_eq!(
        ledger(&h.db, "ledger_a").await,
        positions,
        "every event once"
    );
    assert_eq!(
        ledger(&h.db, "ledger_b").await,
        positions,
        "every event once"
    );
}

async fn a_stop_inside_a_rolled_back_unit_is_met_again_on_the_retry<S: EventStore + Clone>(
    h: Harness<S>,
) {
    let positions = long_log(&h).await;
    // ledger_a's refusal spoils the optimistic unit; in the careful one that follows, ledger_a
    // stops and ledger_b then fails in passing in the same batch, which rolls the careful unit
    // back, ledger_a's stop with it. (Every projection flushes in the optimistic unit too, so
    // ledger_b meets the dropped event there first and lets it pass.)
    let refused = positions[100];
    let dropped = positions[200];
    let projector = ledgers(
        &h,
        Ledger::a_refusing(refused),
        Ledger {
            drop_once: Mutex::new(Some((dropped, 1))),
            ..Ledger::b()
        },
    )
    .await;

    projector.catch_up().await.unwrap_err();
    assert!(
        projector.board().all().iter().all(|s| s.failure.is_none()),
        "the stop was rolled back with its unit"
    );

    projector.catch_up().await.unwrap();
    let board = projector.board().all();
    let failure = board[0].failure.clone().expect("ledger_a stops again");
    assert!(failure.contains(&refused.to_string()), "{failure}");
    let before = positions_before(&positions, refused);
    assert_eq!(ledger(&h.db, "ledger_a").await, before);
    assert_eq!(ledger(&h.db, "ledger_b").await, positions);
}

async fn a_stop_in_a_live_batch_keeps_the_other_projection_going<S: EventStore + Clone>(
    h: Harness<S>,
) {
    let positions = long_log(&h).await;
    let refused = positions[1_000];
    let projector = ledgers(&h, Ledger::a_refusing(refused), Ledger::b()).await;
    // As the live projector does: one batch at a time, each in one transaction.
    let batch = h.store.read_all(0, 2_000).await.unwrap();
    assert!(!projector.apply_batch(&batch).await.unwrap());
    let batch_end = batch[batch.len() - 1].position;
    let board = projector.board().all();
    let failure = board[0].failure.clone().expect("ledger_a reports its stop");
    assert!(failure.contains(&refused.to_string()), "{failure}");
    assert_eq!(
        (board[1].position, board[1].failure.clone()),
        (batch_end, None)
    );
    let before = positions_before(&positions, refused);
    assert_eq!(ledger(&h.db, "ledger_a").await, before);
    assert_eq!(
        ledger(&h.db, "ledger_b").await,
        positions
            .iter()
            .copied()
            .filter(|p| *p <= batch_end)
            .collect::<Vec<_>>()
    );
    // The next batch goes to ledger_b alone.
    let next = h.store.read_all(batch_end, 2_000).await.unwrap();
    assert!(!projector.apply_batch(&next).await.unwrap());
    assert_eq!(
        ledger(&h.db, "ledger_a").await,
        before,
        "a stopped projection stays"
    );
    assert_eq!(
        projector.board().all()[1].position,
        next[next.len() - 1].position
    );
}

async fn a_rebuild_that_fails_leaves_no_generation_behind<S: EventStore + Clone>(h: Harness<S>) {
    let positions = long_log(&h).await;
    let live = ledgers(&h, Ledger::a(), Ledger::b()).await;
    live.catch_up().await.unwrap();
    // The same ledgers, except that a refuses an event of the second read batch.
    let refused = positions[CATCH_UP_BATCH + 100];
    let rebuilding = ledgers(&h, Ledger::a_refusing(refused), Ledger::b()).await;

    let error = rebuilding.rebuild(&[]).await.unwrap_err().to_string();
    assert!(error.contains(&refused.to_string()), "{error}");
    for table in ["ledger_a_g2", "ledger_b_g2"] {
        assert!(
            sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(h.db.pool())
                .await
                .is_err(),
            "{table} was dropped"
        );
    }
    let generations: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT name, generation, active FROM projection_generations ORDER BY name, generation",
    )
    .fetch_all(h.db.pool())
    .await
    .unwrap();
    assert_eq!(
        generations,
        vec![("ledger_a".into(), 1, 1), ("ledger_b".into(), 1, 1)],
        "only the live generations are left"
    );
    assert_eq!(
        ledger(&h.db, "ledger_a").await,
        positions,
        "the live one still serves"
    );
}

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![]), postgres: |_| common::postgres(vec![]);

    a_projection_that_stops_inside_a_unit_keeps_what_came_before_and_the_others_go_on,
    a_projection_whose_flush_fails_stops_at_the_event_that_broke_it,
    a_passing_failure_inside_a_unit_rolls_it_back_and_the_retry_applies_each_event_once,
    a_stop_inside_a_rolled_back_unit_is_met_again_on_the_retry,
    a_stop_in_a_live_batch_keeps_the_other_projection_going,
    a_rebuild_that_fails_leaves_no_generation_behind,
);
