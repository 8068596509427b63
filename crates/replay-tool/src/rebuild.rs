//! `rebuild`: read models from zero, into a fresh generation that replaces the serving one.

use crate::error::ToolError;
use crate::output::{Report, Rows};
use crate::progress;
use kring_projections::{models, System};
use kring_store::EventStore;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Every read model's name, as `--projection` takes it.
#[must_use]
pub fn projection_names() -> Vec<&'static str> {
    models::all().iter().map(|p| p.name()).collect()
}

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    /// The read models rebuilt.
    pub projections: Vec<String>,
    /// Events read from the log.
    pub events: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_second: f64,
}

/// Rebuilds the named read models (all when `names` is empty) from position 0 with the
/// projector runtime: a fresh generation of tables fills while the current one keeps serving,
/// then the views switch to it in one transaction.
///
/// # Errors
/// [`ToolError::Usage`] for an unknown name; store and database failures; a projection that
/// fails on an event.
pub async fn rebuild(system: &System, names: &[String]) -> Result<Rebuilt, ToolError> {
    let known = projection_names();
    let mut chosen: Vec<&str> = Vec::new();
    for name in names {
        let Some(k) = known.iter().find(|k| **k == name.as_str()) else {
            return Err(ToolError::Usage(format!(
                "unknown projection {name:?}; known: {}",
                known.join(", ")
            )));
        };
        if !chosen.contains(k) {
            chosen.push(k);
        }
    }
    let projector = system.projector().await?;
    let head = system.store.head().await?;
    let bar = progress::events(head, "rebuilding");
    let started = Instant::now();
    let names: Vec<String> = if chosen.is_empty() { &known } else { &chosen }
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let work = projector.rebuild(&chosen);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let events = loop {
        tokio::select! {
            done = &mut work => break done?,
            _ = tick.tick(), if !bar.is_hidden() => {
                // The fresh generations' checkpoints say how far the rebuild is.
                let reached: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(position) FROM projection_generations WHERE active = 0",
                )
                .fetch_one(system.db.pool())
                .await
                .ok()
                .flatten();
                if let Some(p) = reached {
                    bar.set_position(u64::try_from(p).unwrap_or_default());
                }
            }
        }
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    Ok(Rebuilt {
        projections: names,
        events,
        seconds,
        events_per_second: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
    })
}

impl Report for Rebuilt {
    fn summary(&self) -> Vec<String> {
        vec![format!(
            "Rebuilt {} read model(s): {} events in {:.2} s ({:.0} events/s)",
            self.projections.len(),
            self.events,
            self.seconds,
            self.events_per_second
        )]
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&["projection", "events", "seconds", "events_per_second"]);
        for p in &self.projections {
            rows.push(vec![
                p.clone(),
                self.events.to_string(),
                format!("{:.3}", self.seconds),
                format!("{:.0}", self.events_per_second),
            ]);
        }
        rows
    }
}
