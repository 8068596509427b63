//! The bulk import keeps the generated order: the global log holds the events exactly as the
//! deciders produced them, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)]

use kring_domain::simulation::workload::{Workload, WorkloadConfig};
use kring_projections::{Config, Mode, System};
use kring_store::EventStore;

async fn import_and_compare(system: &System) {
    let config = WorkloadConfig {
        events_per_school: 4_000,
        chunk: 1_500,
        ..WorkloadConfig::school_years(6_000)
    };
    let chunks: Vec<_> = Workload::new(config).collect();
    let expected: Vec<_> = chunks
        .iter()
        .flatten()
        .map(|r| (r.stream.to_string(), r.event.event_type().to_owned()))
        .collect();
    let written = kring_bench::import::write(system, futures::stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(written, expected.len() as u64);
    let mut got = Vec::new();
    let mut after = 0;
    loop {
        let batch = system.store.read_all(after, 1000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        got.extend(
            batch
                .iter()
                .map(|r| (r.stream.to_string(), r.event_type.clone())),
        );
    }
    assert_eq!(got.len(), expected.len());
    let first = expected.iter().zip(&got).position(|(e, g)| e != g);
    assert_eq!(first, None, "the log differs from the generated order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_the_log_order_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().into(),
        database_url: None,
        eventstore_url: None,
    };
    let system = System::open(config, Mode::CreateIfMissing).await.unwrap();
    import_and_compare(&system).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_the_log_order_on_postgres() {
    let db = kring_testkit::fresh_postgres_database("bench_import").await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().into(),
        database_url: Some(db.url().to_owned()),
        eventstore_url: None,
    };
    let system = System::open(config, Mode::CreateIfMissing).await.unwrap();
    import_and_compare(&system).await;
}
