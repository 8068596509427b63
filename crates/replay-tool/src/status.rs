//! `status`: where each read model stands, optionally with content checksums.

use crate::checksum;
use crate::error::ToolError;
use crate::output::{Report, Rows};
use kring_projections::{models, System};
use kring_store::EventStore;
use serde::Serialize;

/// One read model's state.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionState {
    /// The projection.
    pub name: String,
    /// Its active generation (a rebuild makes a new one).
    pub generation: i64,
    /// The last position applied.
    pub position: u64,
    /// Events of the log not applied yet.
    pub lag: u64,
    /// Why it stopped, if it did.
    pub failure: Option<String>,
    /// Its content checksum, when asked for.
    pub checksum: Option<String>,
    /// Rows in its tables, when checksums were asked for.
    pub rows: Option<u64>,
}

/// The installation's state.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The log's last position.
    pub head: u64,
    /// Whether the read models were ever built.
    pub built: bool,
    /// Each read model.
    pub projections: Vec<ProjectionState>,
}

/// The log's head and each read model's generation, position and (with `checksums`) content
/// checksum, read in one snapshot. Read-only.
///
/// # Errors
/// Store and database failures.
pub async fn status(system: &System, checksums: bool) -> Result<Status, ToolError> {
    let head = system.store.head().await?;
    let snapshot = checksum::snapshot(&system.db, &models::all(), checksums).await?;
    let built = snapshot.is_some();
    let projections = snapshot
        .unwrap_or_default()
        .into_iter()
        .map(|a| ProjectionState {
            lag: head.saturating_sub(a.position),
            checksum: a.sum.as_ref().map(|s| s.checksum.clone()),
            rows: a
                .sum
                .as_ref()
                .map(|s| s.tables.iter().map(|t| t.rows).sum()),
            name: a.name,
            generation: a.generation,
            position: a.position,
            failure: a.failure,
        })
        .collect();
    Ok(Status {
        head,
        built,
        projections,
    })
}

impl Report for Status {
    fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!("Event log head: position {}", self.head)];
        if !self.built {
            lines.push("The read models were never built (run `replay-tool rebuild`).".into());
        }
        lines
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&[
            "projection",
            "generation",
            "position",
            "lag",
            "rows",
            "checksum",
            "failure",
        ]);
        for p in &self.projections {
            rows.push(vec![
                p.name.clone(),
                p.generation.to_string(),
                p.position.to_string(),
                p.lag.to_string(),
                p.rows.map(|r| r.to_string()).unwrap_or_default(),
                p.checksum.clone().unwrap_or_default(),
                p.failure.clone().unwrap_or_default(),
            ]);
        }
        rows
    }
}
