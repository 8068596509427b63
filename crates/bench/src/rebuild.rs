//! Full rebuild of every read model from the imported log, in a child process so that its
//! peak RSS is the rebuild's alone.

use kring_projections::{Config, Mode, System};
use kring_store::EventStore;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the child process reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rebuilt {
    /// Read models rebuilt.
    pub projections: usize,
    /// Events read.
    pub events: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// The child process's peak resident set, KiB.
    pub peak_rss_kib: u64,
}

/// The peak resident set of this process, KiB (0 where `/proc` is missing).
#[must_use]
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// In the child: opens the installation, rebuilds every read model from position 0, checks
/// that each reached the head without failing, and prints the result as one JSON line.
///
/// # Errors
/// The installation, the projector, or a read model that stopped, as text.
pub async fn child(data_dir: PathBuf, database_url: Option<String>) -> Result<(), String> {
    let config = Config {
        data_dir,
        database_url,
        eventstore_url: None,
    };
    let system = System::open(config, Mode::MustExist)
        .await
        .map_err(|e| e.to_string())?;
    let projector = system.projector().await.map_err(|e| e.to_string())?;
    let head = system.store.head().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    let events = projector.rebuild(&[]).await.map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    let statuses = projector.board().all();
    for status in &statuses {
        if status.position != head || status.failure.is_some() {
            return Err(format!(
                "read model {} stopped at {} of {head}: {:?}",
                status.name, status.position, status.failure
            ));
        }
    }
    let rebuilt = Rebuilt {
        projections: statuses.len(),
        events,
        seconds,
        peak_rss_kib: peak_rss_kib(),
    };
    println!(
        "{}",
        serde_json::to_string(&rebuilt).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// In the parent: runs the child on the installation at `dir` (and `database_url`).
///
/// # Errors
/// The child failed or printed no result, as text.
pub async fn run(dir: &Path, database_url: Option<&str>) -> Result<Rebuilt, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(exe);
    command.arg("rebuild-child").arg("--data-dir").arg(dir);
    if let Some(url) = database_url {
        command.arg("--database-url").arg(url);
    }
    // `output()` captures both streams (tokio's sets them piped, whatever was asked): what the
    // child said on stderr goes into the error, or the reason it failed is lost.
    let output = command.output().await.map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "rebuild child failed: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or("rebuild child printed nothing")?;
    serde_json::from_str(line).map_err(|e| format!("rebuild child said {line:?}: {e}"))
}
