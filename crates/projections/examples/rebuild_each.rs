//! Rebuilds each projection alone from an existing log, to see where rebuild time goes.
//! `cargo run --release -p kring-projections --example rebuild_each -- DIR [NAME|all|run]` (DIR
//! holds events.db): each projection alone, one of them, or all of them in one projector; `run`:
//! all of them caught up from zero by `Projector::run`, as a server starting on a fresh read-model
//! database does. Each projection alone runs in a child process of its own, so that the peak
//! RSS printed (`VmHWM`) is its rebuild's alone. With `DATABASE_URL` set (a PostgreSQL server),
//! the read models go into a fresh database on that server for each run; the log stays in
//! `DIR/events.db`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kring_projections::{models, Projection, Projector, ReadDb};
use kring_store::sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::args().nth(1).expect("DIR");
    let dir = Path::new(&dir);
    let store = SqliteStore::open(dir.join("events.db")).await.unwrap();
    let only = std::env::args().nth(2);
    if only.as_deref() == Some("run") {
        run(&store, dir).await;
        return;
    }
    if only.as_deref() == Some("all") {
        catch_up(&store, dir, "all", models::all()).await;
        return;
    }
    if only.is_none() {
        // Each in a child process of its own: its peak RSS is then that model's alone.
        for projection in models::all() {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .arg(dir)
                .arg(projection.name())
                .status()
                .unwrap();
            assert!(status.success());
        }
        return;
    }
    for projection in models::all() {
        let name = projection.name();
        if only.as_deref() == Some(name) {
            catch_up(&store, dir, name, vec![projection]).await;
        }
    }
}

/// The read-model database of a run labelled `label`: a fresh database on the PostgreSQL server
/// of `DATABASE_URL`, else a fresh `DIR/each-<label>.db`.
async fn read_db(dir: &Path, label: &str) -> ReadDb {
    if let Ok(server) = std::env::var("DATABASE_URL") {
        let pg = kring_testkit::fresh_postgres_database_on(&server, &format!("each_{label}")).await;
        return ReadDb::connect(pg.url()).await.unwrap();
    }
    let file = dir.join(format!("each-{label}.db"));
    let _ = std::fs::remove_file(&file);
    ReadDb::sqlite(&file).await.unwrap()
}

/// This process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

/// Catches `projections` up from zero into a fresh `DIR/each-<label>.db` and prints the rate.
async fn catch_up(
    store: &SqliteStore,
    dir: &Path,
    label: &str,
    projections: Vec<Arc<dyn Projection>>,
) {
    let db = read_db(dir, label).await;
    let projector = Projector::new(store.clone(), db, projections)
        .await
        .unwrap();
    let start = Instant::now();
    let read = projector.rebuild(&[]).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:>14}: {read} events in {secs:.2} s = {:.0} ev/s, peak RSS {} MiB",
        read as f64 / secs,
        peak_rss_mib()
    );
}

/// Runs every projection from zero into a fresh `DIR/each-run.db` with `Projector::run` until
/// all of them reach the log's head, and prints the rate.
async fn run(store: &SqliteStore, dir: &Path) {
    use kring_store::EventStore;
    let db = read_db(dir, "run").await;
    let head = store.head().await.unwrap();
    let projector = Arc::new(
        Projector::new(store.clone(), db, models::all())
            .await
            .unwrap(),
    );
    let board = projector.board();
    let start = Instant::now();
    let running = {
        let projector = Arc::clone(&projector);
        tokio::spawn(async move { projector.run().await })
    };
    while !board.all().iter().all(|s| s.position >= head) {
        assert!(!running.is_finished(), "the projector stopped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    running.abort();
    println!(
        "           run: {head} events in {secs:.2} s = {:.0} ev/s, peak RSS {} MiB",
        head as f64 / secs,
        peak_rss_mib()
    );
}
