//! Tamper evidence: walk every stream's hash chain.

use crate::{EventHash, EventStore, Position, StoreError, DEFAULT_BATCH};
use kring_domain::StreamName;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// One event that breaks its stream's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyFailure {
    /// The stream.
    pub stream: StreamName,
    /// The event's version in it.
    pub version: u64,
    /// The event.
    pub event_id: Uuid,
    /// Its global position.
    pub position: Position,
    /// What is wrong.
    pub problem: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Streams seen.
    pub streams_checked: u64,
    /// Events seen.
    pub events_checked: u64,
    /// Whether every chain is intact.
    pub ok: bool,
    /// The first broken event of each broken stream, in log order.
    pub failures: Vec<VerifyFailure>,
}

struct Tail {
    next_version: u64,
    hash: EventHash,
    broken: bool,
}

pub(crate) async fn verify<S: EventStore + ?Sized>(store: &S) -> Result<VerifyReport, StoreError> {
    let mut tails: HashMap<StreamName, Tail> = HashMap::new();
    let mut report = VerifyReport::default();
    let mut after = 0;
    loop {
        let batch = store.read_all(after, DEFAULT_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in batch {
            report.events_checked += 1;
            let tail = tails.entry(event.stream).or_insert(Tail {
                next_version: 0,
                hash: EventHash::GENESIS,
                broken: false,
            });
            if tail.broken {
                continue;
            }
            let problem = if event.version != tail.next_version {
                Some(format!(
                    "version {} follows version {} of its stream",
                    event.version,
                    tail.next_version as i128 - 1
                ))
            } else if event.expected_hash(&tail.hash) != event.hash {
                Some("hash does not match the event's content and its predecessor".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                tail.broken = true;
                report.failures.push(VerifyFailure {
                    stream: event.stream,
                    version: event.version,
                    event_id: event.event_id,
                    position: event.position,
                    problem,
                });
                continue;
            }
            tail.next_version += 1;
            tail.hash = event.hash;
        }
    }
    report.streams_checked = tails.len() as u64;
    report.ok = report.failures.is_empty();
    Ok(report)
}
