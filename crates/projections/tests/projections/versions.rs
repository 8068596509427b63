//! A read model whose layout changed between versions of the code: the new version's leading
//! projector rebuilds it while the old tables keep serving; no process writes to tables another
//! version made.

#![allow(clippy::unwrap_used)]

use crate::common;

use async_trait::async_trait;
use common::Harness;
use kring_domain::simulation::World;
use kring_domain::Purpose;
use kring_projections::models::{self, access_log, consent::consent_history};
use kring_projections::{
    Backend, Projected, Projection, ProjectionError, ProjectionStatus, Projector, ReadDb, Tables,
    Tx,
};
use kring_store::EventStore;
use std::sync::Arc;
use std::time::Duration;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(models::all()), postgres: |_| common::postgres(models::all());
    a_new_version_of_a_read_model_rebuilds_it_while_the_old_tables_serve,
    a_process_of_the_old_version_stops_instead_of_writing_to_the_new_tables,
    read_models_made_before_fingerprints_are_rebuilt,
);

/// A read model as the next version of the code has it: the same tables and rows under another
/// [`Projection::revision`], as if what a row holds had changed.
struct NextVersion(Arc<dyn Projection>);

#[async_trait]
impl Projection for NextVersion {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.0.tables()
    }
    fn schema(&self) -> &'static str {
        self.0.schema()
    }
    fn query_indexes(&self) -> &'static str {
        self.0.query_indexes()
    }
    fn revision(&self) -> u32 {
        self.0.revision() + 1
    }
    async fn apply(
        &self,
        tx: &mut Tx,
        tables: &Tables,
        event: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        self.0.apply(tx, tables, event).await
    }
    async fn flush(&self, tx: &mut Tx, tables: &Tables) -> Result<(), ProjectionError> {
        self.0.flush(tx, tables).await
    }
    fn reset(&self) {
        self.0.reset();
    }
}

fn next_version() -> Vec<Arc<dyn Projection>> {
    models::all()
        .into_iter()
        .map(|p| Arc::new(NextVersion(p)) as Arc<dyn Projection>)
        .collect()
}

/// Rows in each logical table (the views over the active generations), by table.
async fn rows(db: &ReadDb) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for p in models::all() {
        for table in p.tables() {
            let n: i64 =
                sqlx::query_scalar(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"))
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
            out.push((*table, n));
        }
    }
    out
}

async fn table_exists(db: &ReadDb, table: &str) -> bool {
    let sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM sqlite_master WHERE type = 'table' AND name = $1"
        }
        Backend::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1"
        }
    };
    let n: i64 = sqlx::query_scalar(sql)
        .bind(table)
        .fetch_one(db.pool())
        .await
        .unwrap();
    n == 1
}

/// Runs `projector` until every read model is in generation `generation` at `head`, healthy;
/// then stops it.
async fn run_until<S: EventStore + Clone>(
    projector: Projector<S>,
    generation: i64,
    head: u64,
) -> Projector<S> {
    let projector = Arc::new(projector);
    let running = {
        let projector = Arc::clone(&projector);
        tokio::spawn(async move { projector.run().await })
    };
    let mut done = false;
    for _ in 0..600 {
        done =
            projector.board().all().iter().all(|s| {
                (s.generation, s.position, s.failure.is_none()) == (generation, head, true)
            });
        if done || running.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.abort();
    let _ = running.await;
    assert!(
        done,
        "every read model rebuilt: {:?}",
        projector.board().all()
    );
    Arc::into_inner(projector).unwrap()
}

/// A world with a consent decision on record, projected by the harness (the current version).
/// Asserts that every read model of `projector` stands at `generation` and `position`, and
/// returns their statuses.
fn all_at<S: EventStore + Clone>(
    projector: &Projector<S>,
    generation: i64,
    position: u64,
) -> Vec<ProjectionStatus> {
    let all = projector.board().all();
    for status in &all {
        assert_eq!(
            (status.generation, status.position),
            (generation, position),
            "{}",
            status.name
        );
    }
    all
}

async fn synced<S: EventStore + Clone>(h: &mut Harness<S>) -> World {
    let mut world = World::with_classes(1, 2, 2);
    grant(&mut world, 0);
    h.sync(&world).await;
    world
}

/// A guardian of the world's `i`th child grants group communication.
fn grant(world: &mut World, i: usize) {
    let child = world.child_ids[i];
    let guardian = world.guardians_of(child)[0];
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
}

async fn a_new_version_of_a_read_model_rebuilds_it_while_the_old_tables_serve<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let world = synced(&mut h).await;
    let child = world.child_ids[0];
    let head = h.store.head().await.unwrap();
    let before = rows(&h.db).await;
    let history = consent_history(&h.db, child, None, None, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        before.iter().any(|(_, n)| *n > 0),
        "the world filled some tables"
    );

    // Opening a projector of the next version (as a replay tool or a waiting instance does)
    // changes nothing: the read models are stopped for it, and still serve.
    let next = Projector::new(h.store.clone(), h.db.clone(), next_version())
        .await
        .unwrap();
    for status in all_at(&next, 1, head) {
        assert!(
            status
                .failure
                .unwrap()
                .contains("another version of the read model"),
            "{} says why it stopped",
            status.name
        );
    }
    next.catch_up().await.unwrap();
    assert_eq!(rows(&h.db).await, before, "nothing is applied to them");
    all_at(&next, 1, head);

    // Its run rebuilds them into generation 2 and switches.
    let next = run_until(next, 2, head).await;
    for p in models::all() {
        for (_, old) in Tables::new(p.tables(), 1).pairs() {
            assert!(!table_exists(&h.db, old).await, "{old} is dropped");
        }
    }
    assert_eq!(rows(&h.db).await, before, "filled again from the log");
    assert_eq!(
        consent_history(&h.db, child, None, None, None)
            .await
            .unwrap(),
        history
    );
    drop(next);

    // Started again, the same version keeps what it has.
    let again = Projector::new(h.store.clone(), h.db.clone(), next_version())
        .await
        .unwrap();
    for status in again.board().all() {
        assert_eq!(
            (status.generation, status.position, status.failure),
            (2, head, None),
            "{}",
            status.name
        );
    }
}

async fn a_process_of_the_old_version_stops_instead_of_writing_to_the_new_tables<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = synced(&mut h).await;
    let head = h.store.head().await.unwrap();
    let next = Projector::new(h.store.clone(), h.db.clone(), next_version())
        .await
        .unwrap();
    let next = run_until(next, 2, head).await;
    let filled = rows(&h.db).await;

    // The old process (the harness's projector) is still running when more happens.
    grant(&mut world, 1);
    let child = world.child_ids[1];
    h.write(&world).await;
    h.projector.catch_up().await.unwrap();

    for status in h.projector.board().all() {
        assert!(
            status.failure.is_some(),
            "{} of the old version stopped",
            status.name
        );
    }
    // The access log ignores consent decisions, so it wrote nothing before its checkpoint
    // update found the generation gone: it stopped on reloading, because the active
    // generation is the new version's.
    let access = h
        .projector
        .board()
        .all()
        .into_iter()
        .find(|s| s.name == access_log::NAME)
        .unwrap();
    assert!(
        access
            .failure
            .unwrap()
            .contains("another version of the read model"),
        "the old process says why it stopped"
    );
    assert_eq!(
        rows(&h.db).await,
        filled,
        "it wrote nothing to the new tables"
    );
    for status in next.board().all() {
        assert_eq!(status.position, head);
    }

    // The new version goes on from where it was.
    next.catch_up().await.unwrap();
    assert_eq!(
        consent_history(&h.db, child, None, None, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn read_models_made_before_fingerprints_are_rebuilt<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    synced(&mut h).await;
    let head = h.store.head().await.unwrap();
    let before = rows(&h.db).await;
    // The state table as the code before fingerprints made it.
    sqlx::query("ALTER TABLE projection_generations DROP COLUMN fingerprint")
        .execute(h.db.pool())
        .await
        .unwrap();

    let current = Projector::new(h.store.clone(), h.db.clone(), models::all())
        .await
        .unwrap();
    for status in current.board().all() {
        assert_eq!(status.generation, 1, "{}", status.name);
        assert!(
            status.failure.is_some(),
            "{} is stopped until rebuilt",
            status.name
        );
    }
    run_until(current, 2, head).await;
    assert_eq!(rows(&h.db).await, before);
}
