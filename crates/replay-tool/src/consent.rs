//! `consent-history` and `consent-as-of`: the audit trail from the event log alone.

use crate::error::ToolError;
use crate::locate;
use crate::output::{yes_no, Report, Rows};
use crate::replay::{self, HistoryEntry, PurposeAsOf};
use crate::time::format_time;
use chrono::{DateTime, Utc};
use kring_domain::{ChildId, Purpose, StreamName};
use kring_projections::System;
use serde::Serialize;
use std::fmt::Write as _;

/// A child's consent audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentHistory {
    /// The child.
    pub child_id: ChildId,
    /// Only this purpose, if asked.
    pub purpose: Option<Purpose>,
    /// Decisions at or after this time, if asked.
    pub from: Option<DateTime<Utc>>,
    /// Decisions before this time, if asked.
    pub to: Option<DateTime<Utc>>,
    /// The decisions, in log order.
    pub entries: Vec<HistoryEntry>,
}

/// Every consent decision about `child_id`, in order, with the effective consent after each;
/// optionally one purpose and a period (`from` inclusive, `to` exclusive, on the decision
/// time). Read from the child's stream alone; no read model is consulted for the answer.
///
/// # Errors
/// [`ToolError::NotFound`] for a child this log never enrolled; [`ToolError::Usage`] for an
/// empty period; store failures.
pub async fn history(
    system: &System,
    child_id: ChildId,
    purpose: Option<Purpose>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<ConsentHistory, ToolError> {
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ToolError::Usage(format!(
                "--from {} is not before --to {}",
                format_time(f),
                format_time(t)
            )));
        }
    }
    let events = known_child_stream(system, child_id).await?;
    let entries = replay::consent_trail(child_id, &events)
        .into_iter()
        .filter(|e| purpose.is_none_or(|p| e.purpose == p))
        .filter(|e| from.is_none_or(|f| e.occurred_at >= f))
        .filter(|e| to.is_none_or(|t| e.occurred_at < t))
        .collect();
    Ok(ConsentHistory {
        child_id,
        purpose,
        from,
        to,
        entries,
    })
}

/// The child's stream and its school's (whose consent policy decides which decisions count),
/// in log order; an error when the child is unknown to the log.
async fn known_child_stream(
    system: &System,
    child_id: ChildId,
) -> Result<Vec<replay::Decoded>, ToolError> {
    let mut events = replay::load(&system.store, &StreamName::child(child_id)).await?;
    let school = locate::school_of_child(system, child_id).await?;
    match school {
        Some(school) => {
            events.extend(replay::load(&system.store, &StreamName::school(school)).await?);
            events.sort_by_key(|d| d.recorded.position);
        }
        None if events.is_empty() => {
            return Err(ToolError::NotFound(format!(
                "no child {child_id} in this log (no stream child-{child_id} and no enrolment)"
            )))
        }
        None => {}
    }
    Ok(events)
}

impl Report for ConsentHistory {
    fn summary(&self) -> Vec<String> {
        let mut scope = String::new();
        if let Some(p) = self.purpose {
            let _ = write!(scope, ", purpose {p}");
        }
        if let Some(f) = self.from {
            let _ = write!(scope, ", from {}", format_time(f));
        }
        if let Some(t) = self.to {
            let _ = write!(scope, ", before {}", format_time(t));
        }
        vec![format!(
            "Consent history of child {}{scope}: {} decision(s), replayed from the event log",
            self.child_id,
            self.entries.len()
        )]
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&[
            "occurred_at",
            "purpose",
            "decision",
            "guardian_id",
            "policy_version",
            "method",
            "effective_after",
            "position",
            "event_id",
        ]);
        for e in &self.entries {
            rows.push(vec![
                format_time(e.occurred_at),
                e.purpose.to_string(),
                decision(e.granted),
                e.guardian_id.to_string(),
                e.policy_version.to_string(),
                method(e.method),
                yes_no(e.effective_after),
                e.position.to_string(),
                e.event_id.to_string(),
            ]);
        }
        rows
    }
}

/// Effective consent of a child per purpose at a moment.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentAsOf {
    /// The child.
    pub child_id: ChildId,
    /// The moment.
    pub as_of: DateTime<Utc>,
    /// Every purpose, with the decisions in force.
    pub purposes: Vec<PurposeAsOf>,
}

/// Effective consent of `child_id` per purpose at `at`, with each guardian's decision in
/// force then, replayed from the child's stream.
///
/// # Errors
/// [`ToolError::NotFound`] for a child this log never enrolled; store failures.
pub async fn as_of(
    system: &System,
    child_id: ChildId,
    at: DateTime<Utc>,
) -> Result<ConsentAsOf, ToolError> {
    let events = known_child_stream(system, child_id).await?;
    Ok(ConsentAsOf {
        child_id,
        as_of: at,
        purposes: replay::consent_as_of(child_id, &events, at),
    })
}

impl Report for ConsentAsOf {
    fn summary(&self) -> Vec<String> {
        let effective: Vec<String> = self
            .purposes
            .iter()
            .filter(|p| p.effective)
            .map(|p| p.purpose.to_string())
            .collect();
        vec![format!(
            "Consent of child {} as of {}: effective for {}",
            self.child_id,
            format_time(self.as_of),
            if effective.is_empty() {
                "no purpose".to_owned()
            } else {
                effective.join(", ")
            }
        )]
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&[
            "purpose",
            "effective",
            "guardian_id",
            "decision",
            "decided_at",
            "policy_version",
            "method",
            "position",
            "event_id",
        ]);
        for p in &self.purposes {
            if p.decisions.is_empty() {
                rows.push(vec![
                    p.purpose.to_string(),
                    yes_no(p.effective),
                    String::new(),
                    "(none)".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
            for d in &p.decisions {
                rows.push(vec![
                    p.purpose.to_string(),
                    yes_no(p.effective),
                    d.guardian_id.to_string(),
                    decision(d.granted),
                    format_time(d.at),
                    d.policy_version.to_string(),
                    method(d.method),
                    d.position.to_string(),
                    d.event_id.to_string(),
                ]);
            }
        }
        rows
    }
}

fn decision(granted: bool) -> String {
    if granted { "granted" } else { "withdrawn" }.to_owned()
}

fn method(m: kring_domain::consent::ConsentMethod) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
