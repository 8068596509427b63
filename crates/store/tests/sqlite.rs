//! The SQLite adapter: the conformance suite, durability across a crash, tamper evidence (the
//! shared tamper scenarios of `tamper/mod.rs`, on the real file).

#![allow(clippy::unwrap_used)]

mod tamper;

use kring_store::conformance::{event, stream};
use kring_store::sqlite::SqliteStore;
use kring_store::{EventStore, EventStoreExt, ExpectedVersion};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

async fn make() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    (store, dir)
}

kring_store::conformance_suite!(make);

async fn tamperable() -> (SqliteStore, tamper::Db, tempfile::TempDir) {
    let (store, dir) = make().await;
    let db = tamper::Db::sqlite(store.path()).await;
    (store, db, dir)
}

async fn reopen(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap()
}

tamper::tamper_suite!(tamperable, reopen);

#[tokio::test]
async fn tampering_with_a_stored_payload_is_named_by_verify() {
    let (store, _dir) = make().await;
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
    let url = format!("sqlite://{}", store.path().display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET payload = '{\"n\":1000}' WHERE position = ?")
        .bind(i64::try_from(victim.position).unwrap())
        .execute(&mut conn)
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

/// Set in the child process of the crash test: append until killed, printing each
/// acknowledged append.
const CRASH_CHILD: &str = "KRING_SQLITE_CRASH_CHILD_DB";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_a_killed_writer() {
    if let Ok(path) = std::env::var(CRASH_CHILD) {
        crash_child(&path).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_appends_survive_a_killed_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ACK ") {
            acknowledged.push(id.parse::<uuid::Uuid>().unwrap());
            if acknowledged.len() == 400 {
                child.kill().unwrap(); // SIGKILL, mid-load: no clean shutdown.
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 400, "the child stopped before the kill");
    let store = SqliteStore::open(&db).await.unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 1000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        stored.extend(batch.into_iter().map(|e| e.event_id));
    }
    for id in &acknowledged {
        assert!(
            stored.contains(id),
            "acknowledged event {id} lost in the crash"
        );
    }
    assert!(store.verify().await.unwrap().ok);
}

async fn crash_child(path: &str) {
    let store = SqliteStore::open(path).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..8 {
        let store = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let s = stream();
            loop {
                let e = event(1);
                let id = e.event_id;
                if store
                    .append(&s, ExpectedVersion::Any, vec![e])
                    .await
                    .is_ok()
                {
                    let _ = tx.send(id);
                }
            }
        });
    }
    while let Some(id) = rx.recv().await {
        println!("ACK {id}");
    }
}
