//! `verify`: the log's hash chains (every stream's, and the global chain), the signed anchors,
//! and every read model against a fresh replay of the log.
//!
//! The fresh replay runs the projector runtime over the log into a temporary SQLite read
//! database, each read model up to exactly the position its serving copy has reached, then
//! the two are compared by content checksum ([`crate::checksum`]). The serving read models are
//! only read, in one snapshot per check.

use crate::checksum::{self, Active, ProjectionSum};
use crate::error::ToolError;
use crate::output::{yes_no, Report, Rows};
use crate::progress;
use kring_projections::{models, Projection, Projector, ReadDb, System};
use kring_store::anchor::Anchors;
use kring_store::{DynStore, EventStore, EventStoreExt, Finding, GlobalChain, VerifyReport};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One read model compared with a fresh replay.
#[derive(Debug, Clone, Serialize)]
pub struct ReadModelCheck {
    /// The projection.
    pub name: String,
    /// The position its serving copy has reached (and the replay was taken to).
    pub position: u64,
    /// The serving copy's content checksum.
    pub checksum: Option<String>,
    /// The fresh replay's content checksum.
    pub replay_checksum: Option<String>,
    /// Whether they are equal.
    pub ok: bool,
    /// What differs, if anything.
    pub problem: Option<String>,
}

/// The outcome of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Whether every chain is intact, every anchor signed and held, and every read model equals
    /// its replay.
    pub ok: bool,
    /// The hash chains and anchors, as the store's verify reports them.
    pub chain: VerifyReport,
    /// Each read model.
    pub read_models: Vec<ReadModelCheck>,
    /// Every finding, one line each, the first mismatch first.
    pub findings: Vec<String>,
}

/// Checks every stream's hash chain, the global chain, the `anchors` if given, and that each
/// read model equals a fresh replay.
///
/// # Errors
/// Store and database failures (a mismatch is a finding in the answer, not an error).
pub async fn verify(system: &System, anchors: Option<&Anchors>) -> Result<Verification, ToolError> {
    let spinner = progress::spinner("checking the hash chains");
    let chain = match anchors {
        Some(anchors) => system.store.verify_anchored(anchors).await?,
        None => system.store.verify().await?,
    };
    spinner.finish_and_clear();
    let mut findings: Vec<String> = chain.findings.iter().map(ToString::to_string).collect();

    let projections = models::all();
    let serving = checksum::snapshot(&system.db, &projections, true).await?;
    let read_models = match serving {
        None => projections
            .iter()
            .map(|p| ReadModelCheck {
                name: p.name().to_owned(),
                position: 0,
                checksum: None,
                replay_checksum: None,
                ok: false,
                problem: Some(
                    "never built: the read-model database holds no read models (run `replay-tool rebuild`)".into(),
                ),
            })
            .collect(),
        Some(serving) => compare(system, &projections, &serving).await?,
    };
    for check in &read_models {
        if let Some(problem) = &check.problem {
            findings.push(format!("read model {}: {problem}", check.name));
        }
    }
    Ok(Verification {
        ok: findings.is_empty(),
        chain,
        read_models,
        findings,
    })
}

async fn compare(
    system: &System,
    projections: &[Arc<dyn Projection>],
    serving: &[Active],
) -> Result<Vec<ReadModelCheck>, ToolError> {
    let targets: Vec<(Arc<dyn Projection>, u64)> = projections
        .iter()
        .filter_map(|p| {
            serving
                .iter()
                .find(|a| a.name == p.name())
                .map(|a| (Arc::clone(p), a.position))
        })
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("kring-verify-")
        .tempdir()
        .map_err(|e| ToolError::Io(format!("temporary replay database: {e}")))?;
    let replay_db = ReadDb::sqlite(&dir.path().join("replay.db")).await?;
    replay(&system.store, &replay_db, &targets).await?;
    let replayed = checksum::snapshot(&replay_db, projections, true)
        .await?
        .unwrap_or_default();
    replay_db.pool().close().await;

    let head = system.store.head().await?;
    let mut checks = Vec::new();
    for p in projections {
        let name = p.name();
        let Some(live) = serving.iter().find(|a| a.name == name) else {
            checks.push(ReadModelCheck {
                name: name.to_owned(),
                position: 0,
                checksum: None,
                replay_checksum: None,
                ok: false,
                problem: Some("never built in this read-model database".into()),
            });
            continue;
        };
        let fresh = replayed.iter().find(|a| a.name == name);
        let problem = if let Some(failure) = &live.failure {
            Some(format!("stopped while projecting: {failure}"))
        } else if let Some(failure) = fresh.and_then(|f| f.failure.as_ref()) {
            Some(format!("a fresh replay stops: {failure}"))
        } else if fresh.map(|f| f.position) != Some(live.position) {
            Some(format!(
                "it is at position {}, but a fresh replay of the log (head {head}) reaches only {}",
                live.position,
                fresh.map_or(0, |f| f.position)
            ))
        } else {
            differ(live.sum.as_ref(), fresh.and_then(|f| f.sum.as_ref()))
        };
        checks.push(ReadModelCheck {
            name: name.to_owned(),
            position: live.position,
            checksum: live.sum.as_ref().map(|s| s.checksum.clone()),
            replay_checksum: fresh
                .and_then(|f| f.sum.as_ref())
                .map(|s| s.checksum.clone()),
            ok: problem.is_none(),
            problem,
        });
    }
    drop(dir);
    Ok(checks)
}

/// Replays the log into `db`, each projection up to its target position.
async fn replay(
    store: &DynStore,
    db: &ReadDb,
    targets: &[(Arc<dyn Projection>, u64)],
) -> Result<(), ToolError> {
    let mut by_position: BTreeMap<u64, Vec<Arc<dyn Projection>>> = BTreeMap::new();
    for (p, position) in targets {
        by_position
            .entry(*position)
            .or_default()
            .push(Arc::clone(p));
    }
    let mut projectors = Vec::new();
    for (position, group) in by_position {
        projectors.push((
            position,
            Projector::new(store.clone(), db.clone(), group).await?,
        ));
    }
    let last = projectors.iter().map(|(p, _)| *p).max().unwrap_or(0);
    let bar = progress::events(last, "replaying");
    let mut after = 0;
    while after < last {
        let batch = store
            .read_all(after, kring_projections::runtime::BATCH)
            .await?;
        let Some(end) = batch.last() else { break };
        after = end.position;
        for (position, projector) in &projectors {
            let upto = batch.partition_point(|e| e.position <= *position);
            if upto > 0 {
                projector.apply_batch(&batch[..upto]).await?;
            }
        }
        bar.set_position(after.min(last));
    }
    bar.finish_and_clear();
    Ok(())
}

/// What differs between two checksummed copies of a read model, if anything.
fn differ(live: Option<&ProjectionSum>, fresh: Option<&ProjectionSum>) -> Option<String> {
    let (Some(live), Some(fresh)) = (live, fresh) else {
        return Some("its content could not be read".into());
    };
    if live.checksum == fresh.checksum {
        return None;
    }
    for (a, b) in live.tables.iter().zip(&fresh.tables) {
        if a.checksum == b.checksum {
            continue;
        }
        let ours: BTreeSet<&[u8; 32]> = a.row_hashes.iter().map(|(h, _)| h).collect();
        let theirs: BTreeSet<&[u8; 32]> = b.row_hashes.iter().map(|(h, _)| h).collect();
        let only_live = a
            .row_hashes
            .iter()
            .filter(|(h, _)| !theirs.contains(h))
            .count();
        let only_fresh = b
            .row_hashes
            .iter()
            .filter(|(h, _)| !ours.contains(h))
            .count();
        let example = a
            .row_hashes
            .iter()
            .find(|(h, _)| !theirs.contains(h))
            .map(|(_, key)| format!("; first: {key} (not in the replay)"))
            .or_else(|| {
                b.row_hashes
                    .iter()
                    .find(|(h, _)| !ours.contains(h))
                    .map(|(_, key)| format!("; first: {key} (missing from the read model)"))
            })
            .unwrap_or_default();
        return Some(format!(
            "table {} differs from a fresh replay ({} rows vs {}; {only_live} only in the read model, {only_fresh} only in the replay{example})",
            a.table, a.rows, b.rows
        ));
    }
    Some("checksums differ".into())
}

impl Report for Verification {
    fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "Hash chains: {} streams, {} events checked, {}",
            self.chain.streams_checked,
            self.chain.events_checked,
            if self.chain.failures.is_empty() {
                "intact".to_owned()
            } else {
                format!("{} broken", self.chain.failures.len())
            }
        )];
        lines.push(match self.chain.global_chain {
            GlobalChain::Checked => format!(
                "Global chain: checked to position {}{}",
                self.chain.head,
                self.chain
                    .head_hash
                    .map(|h| format!(" (hash {h})"))
                    .unwrap_or_default()
            ),
            GlobalChain::NotAvailable => {
                "Global chain: not available for this backend (EventStoreDB keeps none)".into()
            }
        });
        lines.push(format!(
            "Anchors: {} with a good signature held against the log",
            self.chain.anchors_checked
        ));
        lines.push(format!(
            "Read models: {} of {} equal a fresh replay",
            self.read_models.iter().filter(|c| c.ok).count(),
            self.read_models.len()
        ));
        lines.extend(self.findings.iter().map(|f| format!("FINDING: {f}")));
        lines
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&["check", "ok", "position", "checksum", "detail"]);
        rows.push(vec![
            "hash chains".into(),
            yes_no(self.chain.ok),
            String::new(),
            String::new(),
            format!(
                "{} streams, {} events",
                self.chain.streams_checked, self.chain.events_checked
            ),
        ]);
        for f in &self.chain.findings {
            let (check, position) = match f {
                Finding::StreamChainBroken(f) => (f.stream.to_string(), f.position),
                Finding::GlobalChainBroken { position, .. } => ("global chain".into(), *position),
                Finding::MissingPositions { first, .. } => ("positions".into(), *first),
                Finding::AnchorMismatch { position, .. }
                | Finding::LogEndsBeforeAnchor { position, .. }
                | Finding::AnchorBadSignature { position, .. } => ("anchor".into(), *position),
                Finding::AnchorUnreadable { .. } => ("anchor".into(), 0),
            };
            rows.push(vec![
                check,
                "no".into(),
                position.to_string(),
                String::new(),
                f.to_string(),
            ]);
        }
        for c in &self.read_models {
            rows.push(vec![
                format!("read model {}", c.name),
                yes_no(c.ok),
                c.position.to_string(),
                c.checksum
                    .as_deref()
                    .map(|s| s.chars().take(16).collect())
                    .unwrap_or_default(),
                c.problem.clone().unwrap_or_default(),
            ]);
        }
        rows
    }
}
