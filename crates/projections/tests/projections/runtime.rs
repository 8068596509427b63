//! The projector runtime on PostgreSQL: one active projector per database, take-over, and
//! read-your-writes waits.

#![allow(clippy::unwrap_used)]

use crate::common;

use kring_domain::simulation::World;
use kring_domain::Purpose;
use kring_projections::models::consent::{self, consent_history};
use kring_projections::{Checkpoints, Projector};
use kring_store::EventStore;
use std::sync::Arc;
use std::time::Duration;

async fn reach(projector: &Projector<impl EventStore + Clone>, position: u64) -> bool {
    for _ in 0..200 {
        if projector
            .board()
            .all()
            .iter()
            .all(|s| s.position >= position)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// One more projector of the consent read model, over the harness's log and read models.
async fn consent_projector<S: EventStore + Clone>(h: &common::Harness<S>) -> Arc<Projector<S>> {
    Arc::new(
        Projector::new(
            h.store.clone(),
            h.db.clone(),
            vec![Arc::new(consent::ConsentProjection::default())],
        )
        .await
        .unwrap(),
    )
}

/// Runs `projector` in a task of its own, until aborted.
fn spawn_run<S: EventStore + Clone + 'static>(
    projector: &Arc<Projector<S>>,
) -> tokio::task::JoinHandle<Result<(), kring_projections::ProjectionError>> {
    let projector = Arc::clone(projector);
    tokio::spawn(async move { projector.run().await })
}

/// Writes `world`'s new events; `leader` applies them and `waiting`, given time, does not.
async fn only_the_leader_follows(
    h: &mut common::Harness<kring_store::postgres::PostgresStore>,
    world: &World,
    leader: &Projector<kring_store::postgres::PostgresStore>,
    waiting: &Projector<kring_store::postgres::PostgresStore>,
) {
    h.write(world).await;
    let head = h.store.head().await.unwrap();
    assert!(reach(leader, head).await, "the leader follows live");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        waiting.board().all()[0].position < head,
        "the waiting projector applies nothing while the other leads"
    );
}

/// Two projectors of the consent read model on one PostgreSQL database, over a log with one
/// consent decision of `guardian` for `child`; neither runs yet.
struct Race {
    h: common::Harness<kring_store::postgres::PostgresStore>,
    world: World,
    child: kring_domain::ChildId,
    guardian: kring_domain::PersonId,
    first: Arc<Projector<kring_store::postgres::PostgresStore>>,
    second: Arc<Projector<kring_store::postgres::PostgresStore>>,
}

async fn race() -> Race {
    let mut h = common::postgres(vec![Arc::new(consent::ConsentProjection::default())]).await;
    let mut world = World::with_classes(1, 1, 1);
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
    h.write(&world).await;
    let first = consent_projector(&h).await;
    let second = consent_projector(&h).await;
    Race {
        h,
        world,
        child,
        guardian,
        first,
        second,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_projector_runs_and_a_waiting_one_takes_over_when_it_dies() {
    let Race {
        mut h,
        mut world,
        child,
        guardian,
        first,
        second,
    } = race().await;
    let running = spawn_run(&first);
    let head = h.store.head().await.unwrap();
    assert!(reach(&first, head).await, "the first projector catches up");
    let waiting = spawn_run(&second);
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, false)
        .unwrap();
    only_the_leader_follows(&mut h, &world, &first, &second).await;

    running.abort(); // the leader dies without a goodbye
    let _ = running.await;
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
    h.write(&world).await;
    let head = h.store.head().await.unwrap();
    assert!(reach(&second, head).await, "the second takes over");
    let history = consent_history(&h.db, child, None, None, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 3, "each decision exactly once");
    assert_eq!(
        history.iter().map(|e| e.granted).collect::<Vec<_>>(),
        vec![true, false, true]
    );
    waiting.abort();
}

/// Waits until `check` holds (up to 10 s).
async fn eventually(check: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_session_ends_stops_applying_and_waits_while_the_other_leads() {
    let Race {
        mut h,
        mut world,
        child,
        guardian,
        first,
        second,
    } = race().await;
    let first_run = spawn_run(&first);
    assert!(
        eventually(|| first.board().leading()).await,
        "the first leads"
    );
    let second_run = spawn_run(&second);
    let head = h.store.head().await.unwrap();
    assert!(reach(&first, head).await);
    assert!(!second.board().leading(), "the second waits");

    // The session holding the leader's lock ends (as in a database restart): the lock is free.
    // Only this test's database: the cluster's other databases belong to tests running beside
    // this one, whose projectors hold the same key there.
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(h.db.pool())
    .await
    .unwrap();
    assert_eq!(ended, vec![true], "one session held the lock");
    assert!(
        eventually(|| second.board().leading() && !first.board().leading()).await,
        "the second leads and the first stepped down"
    );

    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, false)
        .unwrap();
    only_the_leader_follows(&mut h, &world, &second, &first).await;
    assert!(!first.board().leading());
    let history = consent_history(&h.db, child, None, None, None)
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|e| e.granted).collect::<Vec<_>>(),
        vec![true, false],
        "each decision exactly once"
    );
    first_run.abort();
    second_run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_can_wait_for_its_own_write() {
    let mut h = common::sqlite(vec![Arc::new(consent::ConsentProjection::default())]).await;
    let mut world = World::with_classes(1, 1, 1);
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    let projector = consent_projector(&h).await;
    let checkpoints = Checkpoints::new(h.db.clone(), Some(projector.board()));
    let running = spawn_run(&projector);
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
    h.write(&world).await;
    let position = h.store.head().await.unwrap();
    checkpoints
        .wait_for(consent::NAME, position, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(checkpoints
        .has_reached(consent::NAME, position)
        .await
        .unwrap());
    assert_eq!(
        consent_history(&h.db, child, None, None, None)
            .await
            .unwrap()
            .len(),
        1,
        "the write is visible after the wait"
    );
    let too_far = checkpoints
        .wait_for(consent::NAME, position + 1000, Duration::from_millis(200))
        .await;
    assert!(matches!(
        too_far,
        Err(kring_projections::ProjectionError::NotCaughtUp { .. })
    ));
    running.abort();
}

/// A lost database connection is a passing failure: the projector waits, reconnects and goes
/// on from its checkpoint; it neither stops the projection nor dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_survives_its_connections_being_killed() {
    let mut h = common::postgres(vec![Arc::new(consent::ConsentProjection::default())]).await;
    let mut world = World::with_classes(1, 2, 2);
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
    h.write(&world).await;
    let projector = consent_projector(&h).await;
    let running = spawn_run(&projector);
    let head = h.store.head().await.unwrap();
    assert!(reach(&projector, head).await, "caught up");
    // Kill every other session of this database: the read models', the store's, the listener's.
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(h.db.pool())
    .await
    .unwrap_or(0);
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, false)
        .unwrap();
    // The harness's own pooled connections are among the killed: seal once, then append the
    // same event (same id: a retry is idempotent) until the store has reconnected.
    let r = world.log.last().unwrap().clone();
    let meta = kring_store::Metadata::new(r.at, r.actor);
    let mut sealed = None;
    for attempt in 0.. {
        if sealed.is_none() {
            sealed = h.vault.seal(&r.event, meta).await.ok();
        }
        if let Some(event) = &sealed {
            let appended = h
                .store
                .append(
                    &r.stream,
                    kring_store::ExpectedVersion::Any,
                    vec![event.clone()],
                )
                .await;
            if appended.is_ok() {
                break;
            }
        }
        assert!(attempt < 50, "the store never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let head = h.store.head().await.unwrap();
    assert!(
        reach(&projector, head).await,
        "the projector reconnects and applies what came after ({killed} sessions killed)"
    );
    assert!(!running.is_finished(), "the projector is still running");
    assert!(projector.board().all()[0].failure.is_none());
    let history = consent_history(&h.db, child, None, None, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "each decision exactly once");
    running.abort();
}

/// Lock contention is a passing failure (the batch is tried again); a constraint violation is
/// about the data (the projection stops there, naming the event). Real SQLite errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_is_transient_and_a_constraint_violation_is_not() {
    use kring_projections::runtime::is_transient;
    use kring_projections::ProjectionError;
    use sqlx::{Connection, Executor};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
    holder
        .execute(
            "CREATE TABLE t (k INTEGER PRIMARY KEY); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)",
        )
        .await
        .unwrap();
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    other.execute("PRAGMA busy_timeout = 0").await.unwrap();
    let busy = other.execute("BEGIN IMMEDIATE").await.unwrap_err();
    assert!(is_transient(&ProjectionError::Database(busy)));
    holder.execute("COMMIT").await.unwrap();
    let duplicate = other.execute("INSERT INTO t VALUES (1)").await.unwrap_err();
    assert!(!is_transient(&ProjectionError::Database(duplicate)));
    assert!(!is_transient(&ProjectionError::Invalid("bad row".into())));
}

/// The read models' connections carry the guards of `kring_store::postgres::link`, as the event
/// log's do: `SHOW` reports each default on a pooled connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_model_connections_carry_the_statement_lock_and_keepalive_guards() {
    let pg = kring_testkit::fresh_postgres_database("guards").await;
    let db = kring_projections::ReadDb::connect(pg.url()).await.unwrap();
    for (name, expected) in [
        ("statement_timeout", "30s"),
        ("lock_timeout", "15s"),
        ("idle_in_transaction_session_timeout", "1min"),
        ("tcp_keepalives_idle", "30"),
        ("tcp_keepalives_interval", "10"),
        ("tcp_keepalives_count", "3"),
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(value, expected, "{name}");
    }
}
