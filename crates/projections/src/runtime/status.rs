//! The projectors' status board: where each projection stands, for health checks and waits.

use kring_store::Position;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use tokio::sync::watch;

/// Where a projection stands, for health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: String,
    /// The active generation of its tables.
    pub generation: i64,
    /// The last position applied.
    pub position: u64,
    /// Why it stopped, if it did.
    pub failure: Option<String>,
}

/// The projectors' shared status: positions to wait for, failures for health.
#[derive(Debug)]
pub struct StatusBoard {
    statuses: RwLock<HashMap<String, ProjectionStatus>>,
    positions: HashMap<String, watch::Sender<Position>>,
    /// The last passing failure of the projector (store or database), until a batch succeeds.
    error: RwLock<Option<String>>,
    /// Whether this process's projector is the one that applies events now.
    leading: AtomicBool,
}

impl StatusBoard {
    pub(super) fn new(names: &[&'static str]) -> Self {
        Self {
            statuses: RwLock::new(HashMap::new()),
            positions: names
                .iter()
                .map(|n| ((*n).to_owned(), watch::channel(0).0))
                .collect(),
            error: RwLock::new(None),
            leading: AtomicBool::new(false),
        }
    }

    pub(super) fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }

    /// Whether this process's projector applies events now (on PostgreSQL, it holds the
    /// leader's lock; on SQLite, it runs).
    #[must_use]
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    pub(super) fn set_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.error.write() {
            *e = error;
        }
    }

    /// The projector's last passing failure (the store or the database did not answer), while
    /// it waits to try again; `None` once a batch went through.
    #[must_use]
    pub fn error(&self) -> Option<String> {
        self.error.read().ok().and_then(|e| e.clone())
    }

    pub(super) fn set(&self, status: ProjectionStatus) {
        if let Some(tx) = self.positions.get(&status.name) {
            tx.send_replace(status.position);
        }
        if let Ok(mut map) = self.statuses.write() {
            map.insert(status.name.clone(), status);
        }
    }

    /// Every projection's status, by name.
    #[must_use]
    pub fn all(&self) -> Vec<ProjectionStatus> {
        let mut all: Vec<ProjectionStatus> = self
            .statuses
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Where projection `name` stands, as (generation, position), if this process's projector
    /// applies events now ([`StatusBoard::leading`]): set after each commit, so the read model
    /// holds at least this much. `None` when another process projects (this board then lags).
    #[must_use]
    pub fn at(&self, name: &str) -> Option<(i64, Position)> {
        if !self.leading() {
            return None;
        }
        let statuses = self.statuses.read().ok()?;
        statuses.get(name).map(|s| (s.generation, s.position))
    }

    /// A watch on a projection's position.
    #[must_use]
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<Position>> {
        self.positions.get(name).map(watch::Sender::subscribe)
    }
}
