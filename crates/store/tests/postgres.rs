//! The PostgreSQL adapter: the conformance suite (with one writer, and again with appends
//! spread over two writer processes), tamper evidence (the shared tamper scenarios of
//! `tamper/mod.rs`), a gap-free global order while several
//! processes append, and live wake-ups across processes through LISTEN/NOTIFY.
//!
//! Each `PostgresStore` below stands for one API process: its own pools, writer and listener.

#![allow(clippy::unwrap_used)]

mod tamper;

use kring_store::conformance::{event, stream};
use kring_store::postgres::PostgresStore;
use kring_store::{EventStore, EventStoreExt, ExpectedVersion, NewEvent, Position};
use kring_testkit::{fresh_postgres_database, PgTestDatabase};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

async fn make() -> (PostgresStore, PgTestDatabase) {
    let db = fresh_postgres_database("store").await;
    let store = PostgresStore::connect(db.url()).await.unwrap();
    (store, db)
}

/// `n` processes on one fresh database, connected at the same time (migrations included).
async fn processes(label: &str, n: usize) -> (Vec<PostgresStore>, PgTestDatabase) {
    let db = fresh_postgres_database(label).await;
    let connecting = (0..n).map(|_| PostgresStore::connect(db.url()));
    let stores = futures::future::try_join_all(connecting).await.unwrap();
    (stores, db)
}

kring_store::conformance_suite!(make);

async fn tamperable() -> (PostgresStore, tamper::Db, PgTestDatabase) {
    let (store, db) = make().await;
    let attacker = tamper::Db::postgres(db.url()).await;
    (store, attacker, db)
}

async fn reopen(db: &PgTestDatabase) -> PostgresStore {
    PostgresStore::connect(db.url()).await.unwrap()
}

tamper::tamper_suite!(tamperable, reopen);

/// The conformance suite with every append going to the other of two processes in turn, and
/// reads and wake-ups coming from the first: the checks must hold across processes too.
mod two_processes {
    use super::processes;
    use async_trait::async_trait;
    use kring_domain::StreamName;
    use kring_store::postgres::PostgresStore;
    use kring_store::{
        AppendOutcome, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError,
        StoredId,
    };
    use kring_testkit::PgTestDatabase;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::watch;

    #[derive(Clone)]
    struct TwoProcesses {
        stores: [PostgresStore; 2],
        turn: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl EventStore for TwoProcesses {
        async fn append(
            &self,
            stream: &StreamName,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
        ) -> Result<AppendOutcome, StoreError> {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed) % 2;
            self.stores[turn].append(stream, expected, events).await
        }

        async fn read_stream(
            &self,
            stream: &StreamName,
            from: u64,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            self.stores[0].read_stream(stream, from, limit).await
        }

        async fn read_all(
            &self,
            after: Position,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            self.stores[0].read_all(after, limit).await
        }

        async fn head(&self) -> Result<Position, StoreError> {
            self.stores[0].head().await
        }

        fn watch_head(&self) -> watch::Receiver<Position> {
            self.stores[0].watch_head()
        }

        fn keeps_global_chain(&self) -> bool {
            self.stores[0].keeps_global_chain()
        }

        async fn locate(&self, event_id: uuid::Uuid) -> Result<Option<StoredId>, StoreError> {
            self.stores[0].locate(event_id).await
        }
    }

    async fn make() -> (TwoProcesses, PgTestDatabase) {
        let (stores, db) = processes("two", 2).await;
        let [a, b]: [PostgresStore; 2] = stores.try_into().ok().unwrap();
        let store = TwoProcesses {
            stores: [a, b],
            turn: Arc::default(),
        };
        (store, db)
    }

    kring_store::conformance_suite!(make);
}

#[tokio::test]
async fn tampering_with_a_stored_payload_is_named_by_verify() {
    let (store, _db) = make().await;
    let s = stream();
    store
        .append(
            &s,
            ExpectedVersion::NoStream,
            vec![event(0), event(1), event(2)],
        )
        .await
        .unwrap();
    let other = stream();
    store
        .append(&other, ExpectedVersion::NoStream, vec![event(9)])
        .await
        .unwrap();
    let victim = store.read_stream(&s, 1, 1).await.unwrap().remove(0);
    sqlx::query("UPDATE events SET payload = '{\"n\":1000}' WHERE position = $1")
        .bind(i64::try_from(victim.position).unwrap())
        .execute(store.pool())
        .await
        .unwrap();
    let report = store.verify().await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert_eq!(
        (failure.stream, failure.version, failure.event_id),
        (s, 1, victim.event_id)
    );
}

/// Two writer processes append concurrently from 16 tasks, pairs of tasks sharing a stream
/// across the two processes, while a subscriber in a third process follows the log. Every
/// round: each event delivered exactly once, positions strictly increasing and gap-free. At the
/// end every shared stream is gap-free and every hash chain intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writer_processes_keep_one_gap_free_order_for_a_subscriber_in_a_third() {
    let (stores, _db) = processes("order", 3).await;
    let (writers, subscriber) = (&stores[..2], stores[2].clone());
    let shared: Vec<_> = (0..8).map(|_| stream()).collect();
    let mut appended_per_stream = vec![0_usize; shared.len()];
    for round in 0..5_u64 {
        let start = subscriber.head().await.unwrap();
        let mut subscription = subscriber.subscribe(start);
        let mut tasks = Vec::new();
        for task in 0..16_usize {
            let store = writers[task % 2].clone();
            let s = shared[task / 2];
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25_u64 {
                    let size = 1 + (i + task as u64) % 3;
                    let events: Vec<NewEvent> = (0..size)
                        .map(|k| event(round * 10_000 + i * 10 + k))
                        .collect();
                    ids.extend(events.iter().map(|e| e.event_id));
                    store
                        .append(&s, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                }
                (task / 2, ids)
            }));
        }
        let mut written = HashSet::new();
        let mut total = 0;
        for t in tasks {
            let (stream_index, ids) = t.await.unwrap();
            appended_per_stream[stream_index] += ids.len();
            total += ids.len();
            written.extend(ids);
        }
        let mut seen = Vec::with_capacity(total);
        let mut last: Position = start;
        while seen.len() < total {
            let e = tokio::time::timeout(Duration::from_secs(30), subscription.next())
                .await
                .expect("subscriber stalled")
                .unwrap();
            assert_eq!(
                e.position,
                last + 1,
                "round {round}: positions strictly increasing, without gaps"
            );
            last = e.position;
            seen.push(e.event_id);
        }
        let seen_set: HashSet<Uuid> = seen.iter().copied().collect();
        assert_eq!(seen_set.len(), seen.len(), "an event was delivered twice");
        assert_eq!(seen_set, written, "round {round}: delivered ≠ written");
        assert_eq!(subscriber.head().await.unwrap(), last, "nothing beyond");
    }
    for (s, appended) in shared.iter().zip(appended_per_stream) {
        let events = writers[0].read_stream_to_end(s).await.unwrap();
        assert_eq!(events.len(), appended);
        assert!(events
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == i as u64));
    }
    let report = subscriber.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.failures);
}

/// A process learns of another's commit by notification: nothing else moves its head watch
/// (the safety poll is the subscription's, not the watch's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_one_process_moves_the_head_watch_of_another() {
    let (stores, _db) = processes("notify", 2).await;
    let mut watch = stores[1].watch_head();
    let outcome = stores[0]
        .append(&stream(), ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        watch.wait_for(|head| *head >= outcome.position),
    )
    .await
    .expect("no notification arrived")
    .unwrap();
}

/// When the listening connection is killed, the listener listens again on a new one and
/// wake-ups keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_connection_is_replaced_and_wake_ups_resume() {
    let (stores, _db) = processes("relisten", 2).await;
    let pool = stores[0].pool();
    let old: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'kring-store listener'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(old.len(), 2, "one listener per process");
    for pid in &old {
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(killed);
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let listening: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() \
                   AND application_name = 'kring-store listener' \
                   AND query LIKE 'LISTEN%' AND state = 'idle' AND pid <> ALL($1)",
            )
            .bind(&old)
            .fetch_one(pool)
            .await
            .unwrap();
            if listening == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the listeners did not come back");
    let mut watch = stores[1].watch_head();
    let outcome = stores[0]
        .append(&stream(), ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        watch.wait_for(|head| *head >= outcome.position),
    )
    .await
    .expect("no notification arrived after the listener came back")
    .unwrap();
}

/// A row inserted without the global-order lock (a foreign writer) that takes the version an
/// append planned: the batch is planned again, so an `Any` append lands after it and a
/// `NoStream` append is refused as a conflict naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_taken_past_the_lock_is_a_conflict_not_a_failure() {
    let (store, db) = make().await;
    let s = stream();
    let mut foreign = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut foreign).await.unwrap();
    sqlx::query(
        "INSERT INTO events VALUES (1000000, $1, $2, 0, 'Foreign', 1, now(), now(), 'system', \
         $1, NULL, '{}', decode(repeat('00', 32), 'hex'))",
    )
    .bind(Uuid::now_v7())
    .bind(s.to_string())
    .execute(&mut foreign)
    .await
    .unwrap();
    // The writer cannot see the uncommitted row: it plans version 0 and blocks on it.
    let any = tokio::spawn({
        let store = store.clone();
        async move { store.append(&s, ExpectedVersion::Any, vec![event(1)]).await }
    });
    let fresh = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append(&s, ExpectedVersion::NoStream, vec![event(2)])
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let blocked: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE datname = current_database() \
                   AND application_name = 'kring-store writer' AND wait_event = 'transactionid')",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            if blocked {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the writer never reached the foreign row");
    sqlx::query("COMMIT").execute(&mut foreign).await.unwrap();
    let any = any.await.unwrap().unwrap();
    assert_eq!(any.stream_version, 1);
    assert!(any.position > 1_000_000);
    let fresh = fresh.await.unwrap().unwrap_err();
    assert!(
        matches!(
            fresh,
            kring_store::StoreError::Concurrency {
                actual: Some(_),
                ..
            }
        ),
        "{fresh:?}"
    );
}

/// The guards of `kring_store::postgres::link` with their default values, as `SHOW` reports them.
const DEFAULT_GUARDS: [(&str, &str); 6] = [
    ("statement_timeout", "30s"),
    ("lock_timeout", "15s"),
    ("idle_in_transaction_session_timeout", "1min"),
    ("tcp_keepalives_idle", "30"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "3"),
];

/// Every reader connection reports the default guards; a URL that sets one keeps its own value,
/// and a statement that outlasts the statement timeout is cancelled with PostgreSQL's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_connections_carry_the_guards_and_a_runaway_statement_is_cancelled() {
    let (store, db) = make().await;
    for (name, expected) in DEFAULT_GUARDS {
        let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(value, expected, "{name}");
    }
    let impatient =
        PostgresStore::connect(&format!("{}?options[statement_timeout]=200ms", db.url()))
            .await
            .unwrap();
    let value: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(impatient.pool())
        .await
        .unwrap();
    assert_eq!(value, "200ms");
    let lock: String = sqlx::query_scalar("SHOW lock_timeout")
        .fetch_one(impatient.pool())
        .await
        .unwrap();
    assert_eq!(
        lock, "15s",
        "the guards the URL does not set keep their defaults"
    );
    let slept = tokio::time::timeout(
        Duration::from_secs(60),
        sqlx::query("SELECT pg_sleep(30)").execute(impatient.pool()),
    )
    .await
    .expect("the statement timeout did not cancel the statement");
    let error = slept.unwrap_err();
    let database = error.as_database_error().expect("a database error");
    assert_eq!(database.code().as_deref(), Some("57014"), "{error}");
    assert!(error.to_string().contains("statement timeout"), "{error}");
}

/// The writer's connection has a lock timeout: while another session holds the global-order
/// lock the append fails with an error naming the lock timeout instead of waiting without end,
/// and once the lock is free the writer appends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_kept_from_the_global_order_lock_fails_clearly_and_then_appends_again() {
    let db = fresh_postgres_database("lock_timeout").await;
    let store = PostgresStore::connect(&format!("{}?options[lock_timeout]=300ms", db.url()))
        .await
        .unwrap();
    let mut holder = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(kring_store::postgres::GLOBAL_ORDER_LOCK)
        .execute(&mut holder)
        .await
        .unwrap();
    let s = stream();
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        store.append(&s, ExpectedVersion::NoStream, vec![event(1)]),
    )
    .await
    .expect("the writer waited for the lock without end")
    .unwrap_err();
    assert!(
        matches!(&refused, kring_store::StoreError::Unavailable(m) if m.contains("lock timeout")),
        "{refused:?}"
    );
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let outcome = store
        .append(&s, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    assert_eq!(
        outcome.stream_version, 0,
        "the refused append wrote nothing"
    );
}

/// What one append asked and what it was told.
struct Attempt {
    stream: kring_domain::StreamName,
    ids: Vec<Uuid>,
    outcome: Result<kring_store::AppendOutcome, String>,
}

/// Appends `rounds` times to `s` from one task: with exact expected versions on a stream of its
/// own (re-reading the head after a failure, whose outcome may be either), `Any` on a shared one.
async fn append_through_a_storm(
    store: PostgresStore,
    s: kring_domain::StreamName,
    own: bool,
    seed: u64,
    rounds: u64,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut expected = ExpectedVersion::NoStream;
    for i in 0..rounds {
        let events: Vec<NewEvent> = (0..=((seed + i) % 3))
            .map(|k| event(seed * 100_000 + i * 10 + k))
            .collect();
        let ids = events.iter().map(|e| e.event_id).collect();
        let asked = if own { expected } else { ExpectedVersion::Any };
        let outcome = store.append(&s, asked, events).await;
        match &outcome {
            Ok(done) => expected = ExpectedVersion::Exact(done.stream_version),
            Err(_) => {
                // The append may have committed: the stream says where it stands.
                let head = loop {
                    if let Ok(events) = store.read_stream_to_end(&s).await {
                        break events.last().map(|e| e.version);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                expected = head.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            }
        }
        attempts.push(Attempt {
            stream: s,
            ids,
            outcome: outcome.map_err(|e| e.to_string()),
        });
    }
    attempts
}

/// Terminates every writer backend of the database it finds, every 20 ms, until `stop`; returns
/// how many it terminated and how many of those were inside a transaction (a group commit).
async fn terminate_writers(url: String, stop: tokio::sync::watch::Receiver<bool>) -> (u64, u64) {
    let mut killer = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (mut terminated, mut mid_commit) = (0, 0);
    while !*stop.borrow() {
        let hits: Vec<(bool, bool)> = sqlx::query_as(
            "SELECT xact_start IS NOT NULL, pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'kring-store writer'",
        )
        .fetch_all(&mut killer)
        .await
        .unwrap();
        for (in_transaction, killed) in hits {
            if killed {
                terminated += 1;
                mid_commit += u64::from(in_transaction);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (terminated, mid_commit)
}

/// Two writer processes append from eight tasks — four on streams of their own with exact
/// expected versions, four sharing two streams — while their writer backends are terminated
/// every 20 ms, mostly in the middle of a group commit. The writers neither wedge nor write
/// anything twice: every acknowledged append is in the log exactly once, where its outcome
/// says; a failed one is wholly there or wholly absent; event ids are unique, positions dense,
/// stream versions contiguous, both hash chains intact; and after the storm both processes
/// append again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_writer_backends_lose_no_acknowledged_append_and_write_none_twice() {
    let (stores, db) = processes("storm", 2).await;
    let shared: Vec<_> = (0..2).map(|_| stream()).collect();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let killer = tokio::spawn(terminate_writers(db.url().to_owned(), stopped));
    let mut tasks = Vec::new();
    for task in 0..8_u64 {
        let store = stores[usize::try_from(task % 2).unwrap()].clone();
        let (s, own) = if task < 4 {
            (stream(), true)
        } else {
            (shared[usize::try_from(task % 2).unwrap()], false)
        };
        tasks.push(tokio::spawn(append_through_a_storm(
            store, s, own, task, 60,
        )));
    }
    let attempts: Vec<Attempt> = tokio::time::timeout(
        Duration::from_secs(300),
        futures::future::try_join_all(tasks),
    )
    .await
    .expect("appends stopped returning: a writer wedged")
    .unwrap()
    .into_iter()
    .flatten()
    .collect();
    stop.send(true).unwrap();
    let (terminated, mid_commit) = killer.await.unwrap();
    let failed = attempts.iter().filter(|a| a.outcome.is_err()).count();
    eprintln!(
        "{terminated} writer backends terminated, {mid_commit} inside a transaction; \
         {failed} of {} appends failed",
        attempts.len()
    );
    assert!(
        mid_commit > 0,
        "no termination hit a group commit: the test proved nothing"
    );
    for store in &stores {
        tokio::time::timeout(
            Duration::from_secs(60),
            store.append(&stream(), ExpectedVersion::NoStream, vec![event(7)]),
        )
        .await
        .expect("the writer wedged after the storm")
        .expect("an append after the storm");
    }

    let log = stores[0].read_all(0, usize::MAX).await.unwrap();
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1, "positions are dense");
    }
    let mut where_stored = std::collections::HashMap::new();
    let mut failed_but_stored = 0;
    for e in &log {
        assert!(
            where_stored.insert(e.event_id, e).is_none(),
            "event {} stored twice",
            e.event_id
        );
    }
    for attempt in &attempts {
        let found: Vec<_> = attempt
            .ids
            .iter()
            .filter_map(|id| where_stored.get(id))
            .collect();
        match &attempt.outcome {
            Ok(outcome) => {
                assert_eq!(
                    found.len(),
                    attempt.ids.len(),
                    "an acknowledged append is lost"
                );
                let last = found.last().unwrap();
                assert_eq!(
                    (last.position, last.version, last.stream),
                    (outcome.position, outcome.stream_version, attempt.stream),
                    "an acknowledged append is not where its outcome says"
                );
            }
            Err(message) => {
                assert!(
                    found.is_empty() || found.len() == attempt.ids.len(),
                    "a failed append ({message}) is partly stored"
                );
                failed_but_stored += usize::from(!found.is_empty());
            }
        }
    }
    eprintln!("{failed_but_stored} of the failed appends had committed");
    let mut streams: Vec<_> = attempts.iter().map(|a| a.stream).collect();
    streams.sort_unstable_by_key(ToString::to_string);
    streams.dedup();
    for s in &streams {
        let events = stores[1].read_stream_to_end(s).await.unwrap();
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(i, e)| e.version == i as u64),
            "{s}: versions contiguous from 0"
        );
    }
    let report = stores[1].verify().await.unwrap();
    assert!(report.ok, "{:?}", report.failures);
}
