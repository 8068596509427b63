//! Append throughput of the event-store adapters: single-event appends from 32 concurrent
//! writers (group commit), and 100-event batches. Run with `scripts/bench` (starts a durable
//! throwaway PostgreSQL unless `DATABASE_URL` is set); SQLite always runs.
//!
//! Prints one line per (store, scenario) with events/s.

#![allow(clippy::unwrap_used)]

use kring_store::sqlite::SqliteStore;
use kring_store::{EventStore, ExpectedVersion, Metadata, NewEvent};
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;

/// Ids inside payloads (the event ids themselves are fresh UUID v7s).
const IDS: [Uuid; 3] = [
    Uuid::from_u128(0x0190_a6f2_7c3e_7000_8000_0000_0000_0001),
    Uuid::from_u128(0x0190_a6f2_7c3e_7000_8000_0000_0000_0002),
    Uuid::from_u128(0x0190_a6f2_7c3e_7000_8000_0000_0000_0003),
];

/// A payload shaped like a real `ConsentDecided` (about 300 bytes).
fn consent_event(n: u64) -> NewEvent {
    let meta = Metadata {
        occurred_at: chrono::Utc::now(),
        actor: kring_domain::Actor::Person(kring_domain::PersonId::from_uuid(IDS[2])),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    };
    let payload = json!({
        "child_id": IDS[0], "school_id": IDS[1], "guardian_id": IDS[2],
        "purpose": "group_communication", "granted": !n.is_multiple_of(3), "policy_version": 1,
        "method": "app", "at": meta.occurred_at,
    });
    NewEvent::new("ConsentDecided", 1, &payload, meta)
}

fn stream() -> kring_domain::StreamName {
    kring_domain::StreamName::child(kring_domain::ChildId::generate())
}

async fn single_event_writers<S: EventStore + Clone>(
    store: &S,
    writers: u64,
    per_writer: u64,
) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream();
            for i in 0..per_writer {
                let expected = if i == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(i - 1)
                };
                store
                    .append(&s, expected, vec![consent_event(i)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (writers * per_writer) as f64 / start.elapsed().as_secs_f64()
}

async fn batched<S: EventStore + Clone>(store: &S, writers: u64, batches: u64, size: u64) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream();
            for b in 0..batches {
                let events = (0..size).map(|i| consent_event(b * size + i)).collect();
                store
                    .append(&s, ExpectedVersion::Any, events)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (writers * batches * size) as f64 / start.elapsed().as_secs_f64()
}

async fn run<S: EventStore + Clone>(name: &str, store: &S, quick: bool) {
    let per_writer = if quick { 300 } else { 1500 };
    let batches = if quick { 100 } else { 500 };
    // Warm up: create the file/tables' pages and the prepared statements.
    single_event_writers(store, 4, 50).await;
    let single = single_event_writers(store, 32, per_writer).await;
    println!(
        "{name:<10} 32 writers, single-event appends : {single:>9.0} events/s ({} events)",
        32 * per_writer
    );
    let one = batched(store, 1, batches, 100).await;
    println!(
        "{name:<10} 1 writer, 100-event batches     : {one:>9.0} events/s ({} events)",
        batches * 100
    );
    let four = batched(store, 4, batches / 2, 100).await;
    println!(
        "{name:<10} 4 writers, 100-event batches    : {four:>9.0} events/s ({} events)",
        2 * batches * 100
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    run("sqlite", &sqlite, quick).await;
    match std::env::var("DATABASE_URL") {
        Ok(_) => {
            let db = kring_testkit::fresh_postgres_database("bench_append").await;
            let pg = kring_store::postgres::PostgresStore::connect(db.url())
                .await
                .unwrap();
            run("postgres", &pg, quick).await;
        }
        Err(_) => println!("postgres   skipped: DATABASE_URL is not set (use scripts/bench)"),
    }
}
