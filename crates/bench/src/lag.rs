//! Projection lag: from an acknowledged command to its effect in every read model.
//!
//! The projector runs in-process (`Projector::run`, as `kring-api serve` runs it). Commands
//! start at a fixed rate, each on its own task (an open loop: a slow command does not slow the
//! rate). A watcher per read model notes when the status board moves, and each command's lag is
//! the time from its acknowledgement until the last read model has reached its position — what
//! a read with `?min_position=` waits for. A read model that got there before the
//! acknowledgement counts as no lag.

use crate::commands::{run_one, Decision};
use crate::stats::Latencies;
use kring_api::exec::Executor;
use kring_domain::SchoolId;
use kring_projections::{Checkpoints, System};
use kring_store::EventStore;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Positions a read model reached, and when.
type Moves = Mutex<Vec<(u64, Instant)>>;

/// What a lag run measured.
#[derive(Debug, Clone, Default)]
pub struct Lag {
    /// Commands acknowledged.
    pub commands: u64,
    /// The rate achieved, commands per second.
    pub rate: f64,
    /// Lag per command.
    pub lags: Latencies,
}

/// Why a lag run failed.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    /// The projector could not start or catch up.
    #[error("projector: {0}")]
    Projection(#[from] kring_projections::ProjectionError),
    /// The installation failed.
    #[error(transparent)]
    System(#[from] kring_projections::SystemError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] kring_store::StoreError),
}

/// Runs the projector, lets it catch up, then sends `decisions` at `rate` per second for
/// `seconds`, cycling through them.
///
/// # Errors
/// [`LagError`].
pub async fn measure(
    system: &System,
    school_id: SchoolId,
    decisions: Vec<Decision>,
    rate: u32,
    seconds: u64,
) -> Result<Lag, LagError> {
    let projector = Arc::new(system.projector().await?);
    let board = projector.board();
    let names: Vec<String> = board.all().into_iter().map(|s| s.name).collect();
    let running = {
        let projector = Arc::clone(&projector);
        tokio::spawn(async move { projector.run().await })
    };
    let checkpoints = Checkpoints::new(system.db.clone(), Some(Arc::clone(&board)));
    let head = system.store.head().await?;
    for name in &names {
        checkpoints
            .wait_for(name, head, Duration::from_secs(600))
            .await?;
    }

    // Each read model's moves: (position, when).
    let moves: Arc<Vec<Moves>> = Arc::new(names.iter().map(|_| Mutex::new(Vec::new())).collect());
    let watchers: Vec<_> = names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let mut rx = board.watch(name)?;
            let moves = Arc::clone(&moves);
            Some(tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let position = *rx.borrow_and_update();
                    if let Ok(mut m) = moves[i].lock() {
                        m.push((position, Instant::now()));
                    }
                }
            }))
        })
        .collect();

    let exec = Executor::new(system.store.clone(), Arc::clone(&system.vault));
    let acks: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let total = u64::from(rate) * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or_default());
    for i in 0..total {
        tick.tick().await;
        let decision = decisions[usize::try_from(i).unwrap_or_default() % decisions.len()];
        let exec = exec.clone();
        let acks = Arc::clone(&acks);
        tasks.push(tokio::spawn(async move {
            if let Ok((position, _)) = run_one(&exec, school_id, decision).await {
                let at = Instant::now();
                if let Ok(mut a) = acks.lock() {
                    a.push((position, at));
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let sent_for = start.elapsed();
    let head = system.store.head().await?;
    for name in &names {
        checkpoints
            .wait_for(name, head, Duration::from_secs(60))
            .await?;
    }
    // Let the watchers note the last moves.
    tokio::time::sleep(Duration::from_millis(20)).await;
    running.abort();
    for w in watchers {
        w.abort();
    }

    let acks = acks.lock().map(|a| a.clone()).unwrap_or_default();
    let moves: Vec<Vec<(u64, Instant)>> = moves
        .iter()
        .map(|m| m.lock().map(|m| m.clone()).unwrap_or_default())
        .collect();
    let lags = acks
        .iter()
        .map(|(position, acked)| {
            moves
                .iter()
                .filter_map(|m| {
                    // Positions only grow: the first move at or past the command's position.
                    let i = m.partition_point(|(p, _)| p < position);
                    m.get(i).map(|(_, at)| *at)
                })
                .max()
                .map_or(Duration::ZERO, |reached| {
                    reached.saturating_duration_since(*acked)
                })
        })
        .collect();
    Ok(Lag {
        commands: acks.len() as u64,
        rate: acks.len() as f64 / sent_for.as_secs_f64().max(1e-9),
        lags: Latencies::new(lags),
    })
}
