//! Full rebuild of every projection from a generated school-year log, into SQLite.
//!
//! `cargo bench -p kring-projections --bench rebuild [-- --events N]` (default 1,000,000;
//! `--quick` = 100,000). Phase 1 generates the log through the real deciders and the key
//! vault; phase 2 runs in a child process so that its peak RSS is the rebuild's alone.

#![allow(clippy::unwrap_used)]

use kring_domain::simulation::workload::{Workload, WorkloadConfig};
use kring_projections::{models, Projector, ReadDb};
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{KeyVault, MasterKey};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::path::Path;
use std::time::Instant;

/// The allocator the shipped binaries use (kring-api, replay-tool), so that the figure is theirs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn flush(
    chunk: Vec<kring_domain::simulation::Recorded>,
    store: &SqliteStore,
    vault: &KeyVault,
) {
    let mut pending: Vec<(kring_domain::StreamName, kring_store::NewEvent)> = Vec::new();
    for r in chunk {
        let meta = Metadata::new(r.at, r.actor);
        pending.push((r.stream, vault.seal(&r.event, meta).await.unwrap()));
    }
    // Consecutive events of one stream go in one append; appends run concurrently in groups.
    let mut appends: Vec<(kring_domain::StreamName, Vec<kring_store::NewEvent>)> = Vec::new();
    for (stream, event) in pending {
        match appends.last_mut() {
            Some((s, events)) if *s == stream => events.push(event),
            _ => appends.push((stream, vec![event])),
        }
    }
    for (stream, events) in appends {
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
}

/// School years (`kring_domain::simulation::workload`): classes post photos with tagged
/// children, parents change consent, talk with teachers, report absences and volunteer.
async fn generate(dir: &Path, target: u64) {
    let db = dir.join("events.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let vault = KeyVault::open_sqlite(&db, &MasterKey::from_env_or_data_dir(dir).unwrap())
        .await
        .unwrap();
    let mut workload = Workload::new(WorkloadConfig::school_years(target));
    for chunk in workload.by_ref() {
        flush(chunk, &store, &vault).await;
    }
    eprintln!(
        "generated {} events of {} schools",
        workload.emitted(),
        workload.schools()
    );
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn rebuild(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("read.db"));
    let store = SqliteStore::open(dir.join("events.db")).await.unwrap();
    let db = ReadDb::sqlite(&dir.join("read.db")).await.unwrap();
    let projector = Projector::new(store.clone(), db, models::all())
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let start = Instant::now();
    let read = projector.rebuild(&[]).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    for status in projector.board().all() {
        assert_eq!(
            status.position, head,
            "{} did not finish: {:?}",
            status.name, status.failure
        );
    }
    println!(
        "rebuild of {} projections from {read} events into SQLite: {secs:.1} s, {:.0} events/s, peak RSS {} MiB",
        projector.board().all().len(),
        read as f64 / secs,
        peak_rss_kib() / 1024
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rebuild-only") {
        rebuild(Path::new(&args[i + 1])).await;
        return;
    }
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if args.iter().any(|a| a == "--quick") {
            100_000
        } else {
            1_000_000
        });
    // `--keep DIR` writes the log there and keeps it, for `--rebuild-only DIR` under a profiler.
    let temp = tempfile::tempdir().unwrap();
    let dir = args
        .iter()
        .position(|a| a == "--keep")
        .map_or_else(|| temp.path().to_path_buf(), |i| args[i + 1].clone().into());
    std::fs::create_dir_all(&dir).unwrap();
    let start = Instant::now();
    generate(&dir, events).await;
    eprintln!("log written in {:.1} s", start.elapsed().as_secs_f64());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--rebuild-only")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
}
