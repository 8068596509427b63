//! Tamper evidence: walk every stream's hash chain and the global chain over the log in position
//! order, and hold the log against signed anchors.

use crate::anchor::{Anchor, Anchors};
use crate::{EventHash, EventStore, Position, StoreError, DEFAULT_BATCH};
use kring_domain::StreamName;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
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

/// Whether the global chain was checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalChain {
    /// Every event's global hash and the density of positions were checked.
    #[default]
    Checked,
    /// The backend keeps no global chain (EventStoreDB): only the streams' chains were checked,
    /// so a deleted stream or a deleted last event of a stream goes unnoticed there.
    NotAvailable,
}

/// One thing `verify` found wrong, each kind named apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The first broken event of a stream's chain (a changed, missing or inserted event).
    StreamChainBroken(VerifyFailure),
    /// The event at `position` does not chain to the event at the previous position: an event
    /// before it was deleted or changed, or it was itself.
    GlobalChainBroken {
        /// The position.
        position: Position,
        /// The event there.
        event_id: Uuid,
        /// What is wrong.
        problem: String,
    },
    /// Positions `first..=last` hold no event, where positions are dense.
    MissingPositions {
        /// The first missing position.
        first: Position,
        /// The last missing position.
        last: Position,
    },
    /// The log no longer holds the anchored global hash at the anchored position: an event at
    /// or before it was changed, deleted or rehashed since the anchor was signed.
    AnchorMismatch {
        /// The line of the anchors file.
        line: usize,
        /// The anchored position.
        position: Position,
        /// The hash the anchor signed.
        anchored: EventHash,
        /// The global hash the log holds there (`None`: no event there, or no global hash).
        found: Option<EventHash>,
    },
    /// The log ends before an anchored position: its tail was cut off after the anchor.
    LogEndsBeforeAnchor {
        /// The line of the anchors file.
        line: usize,
        /// The anchored position.
        position: Position,
        /// The log's last position.
        head: Position,
    },
    /// An anchor whose signature does not check out with the given key: forged or changed.
    AnchorBadSignature {
        /// The line of the anchors file.
        line: usize,
        /// The position it claims.
        position: Position,
        /// What is wrong.
        problem: String,
    },
    /// A line of the anchors file that is not an anchor.
    AnchorUnreadable {
        /// The line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StreamChainBroken(v) => write!(
                f,
                "hash chain broken at event {} (position {}, {} version {}): {}",
                v.event_id, v.position, v.stream, v.version, v.problem
            ),
            Self::GlobalChainBroken {
                position,
                event_id,
                problem,
            } => write!(
                f,
                "global chain broken at position {position} (event {event_id}): {problem}"
            ),
            Self::MissingPositions { first, last } if first == last => {
                write!(f, "position {first} is missing from the log")
            }
            Self::MissingPositions { first, last } => {
                write!(f, "positions {first} to {last} are missing from the log")
            }
            Self::AnchorMismatch {
                line,
                position,
                anchored,
                found: Some(found),
            } => write!(
                f,
                "anchor at line {line}: the log's global hash at position {position} is {found}, \
                 the anchor signed {anchored}"
            ),
            Self::AnchorMismatch { line, position, .. } => write!(
                f,
                "anchor at line {line}: the log holds no global hash at the anchored position {position}"
            ),
            Self::LogEndsBeforeAnchor {
                line,
                position,
                head,
            } => write!(
                f,
                "anchor at line {line}: the log ends at position {head}, before the anchored position {position}"
            ),
            Self::AnchorBadSignature {
                line,
                position,
                problem,
            } => write!(
                f,
                "anchor at line {line} (position {position}) has a bad signature: {problem}"
            ),
            Self::AnchorUnreadable { line, problem } => {
                write!(f, "anchors file line {line}: {problem}")
            }
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Streams seen.
    pub streams_checked: u64,
    /// Events seen.
    pub events_checked: u64,
    /// Whether nothing was found: every chain intact, no position missing, every anchor
    /// signed and held.
    pub ok: bool,
    /// The first broken event of each broken stream, in log order (the stream-chain findings
    /// alone; [`VerifyReport::findings`] has them too).
    pub failures: Vec<VerifyFailure>,
    /// Whether the global chain was checked.
    pub global_chain: GlobalChain,
    /// The log's last position read.
    pub head: Position,
    /// The global hash stored at the head, where the backend keeps one.
    pub head_hash: Option<EventHash>,
    /// Anchors with a good signature that were held against the log.
    pub anchors_checked: u64,
    /// Every finding, in the order met: the log in position order, then the anchors.
    pub findings: Vec<Finding>,
}

struct Tail {
    next_version: u64,
    hash: EventHash,
    broken: bool,
}

/// The anchors to hold against the log, by position, each with its line.
type Pending = BTreeMap<Position, Vec<(usize, Anchor)>>;

pub(crate) async fn verify<S: EventStore + ?Sized>(
    store: &S,
    anchors: Option<&Anchors>,
) -> Result<VerifyReport, StoreError> {
    let global = store.keeps_global_chain();
    let mut report = VerifyReport {
        global_chain: if global {
            GlobalChain::Checked
        } else {
            GlobalChain::NotAvailable
        },
        ..VerifyReport::default()
    };
    let mut anchor_findings = Vec::new();
    let mut pending = anchors
        .map(|a| signed(a, &mut report.anchors_checked, &mut anchor_findings))
        .unwrap_or_default();
    let mut tails: HashMap<StreamName, Tail> = HashMap::new();
    let mut previous = (0, EventHash::GENESIS);
    let mut after = 0;
    loop {
        let batch = store.read_all(after, DEFAULT_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in batch {
            report.events_checked += 1;
            // Anchored positions the walk passed without meeting an event.
            let passed: Vec<Position> = pending.range(..event.position).map(|(p, _)| *p).collect();
            for position in passed {
                for (line, anchor) in pending.remove(&position).unwrap_or_default() {
                    anchor_findings.push(Finding::AnchorMismatch {
                        line,
                        position,
                        anchored: anchor.log_hash,
                        found: None,
                    });
                }
            }
            for (line, anchor) in pending.remove(&event.position).unwrap_or_default() {
                if event.log_hash != Some(anchor.log_hash) {
                    anchor_findings.push(Finding::AnchorMismatch {
                        line,
                        position: event.position,
                        anchored: anchor.log_hash,
                        found: event.log_hash,
                    });
                }
            }
            if global {
                let (before, before_hash) = previous;
                if event.position > before + 1 {
                    report.findings.push(Finding::MissingPositions {
                        first: before + 1,
                        last: event.position - 1,
                    });
                }
                let expected = event.expected_log_hash(&before_hash);
                let problem = match event.log_hash {
                    None => Some("the event has no global hash".to_owned()),
                    Some(stored) if stored != expected => Some(format!(
                        "its global hash does not follow from position {before}'s and its own chain hash"
                    )),
                    Some(_) => None,
                };
                if let Some(problem) = problem {
                    report.findings.push(Finding::GlobalChainBroken {
                        position: event.position,
                        event_id: event.event_id,
                        problem,
                    });
                }
                // Go on from what is stored, so that each break is named once, where it is.
                previous = (event.position, event.log_hash.unwrap_or(expected));
            }
            report.head = event.position;
            report.head_hash = event.log_hash;
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
                    i128::from(tail.next_version) - 1
                ))
            } else if event.expected_hash(&tail.hash) != event.hash {
                Some("hash does not match the event's content and its predecessor".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem {
                tail.broken = true;
                let failure = VerifyFailure {
                    stream: event.stream,
                    version: event.version,
                    event_id: event.event_id,
                    position: event.position,
                    problem,
                };
                report.failures.push(failure.clone());
                report.findings.push(Finding::StreamChainBroken(failure));
                continue;
            }
            tail.next_version += 1;
            tail.hash = event.hash;
        }
    }
    for (position, anchors) in pending {
        for (line, _) in anchors {
            anchor_findings.push(Finding::LogEndsBeforeAnchor {
                line,
                position,
                head: report.head,
            });
        }
    }
    anchor_findings.sort_by_key(anchor_line);
    report.findings.extend(anchor_findings);
    report.streams_checked = tails.len() as u64;
    report.ok = report.findings.is_empty();
    Ok(report)
}

/// The anchors with a good signature, by position, counted in `checked`; the others become
/// `findings`.
fn signed(anchors: &Anchors, checked: &mut u64, findings: &mut Vec<Finding>) -> Pending {
    let mut pending = Pending::new();
    for line in &anchors.lines {
        match &line.anchor {
            Err(problem) => findings.push(Finding::AnchorUnreadable {
                line: line.line,
                problem: problem.clone(),
            }),
            Ok(anchor) => match anchor.check_signature(&anchors.key) {
                Err(problem) => findings.push(Finding::AnchorBadSignature {
                    line: line.line,
                    position: anchor.position,
                    problem,
                }),
                Ok(()) => {
                    *checked += 1;
                    pending
                        .entry(anchor.position)
                        .or_default()
                        .push((line.line, anchor.clone()));
                }
            },
        }
    }
    pending
}

fn anchor_line(finding: &Finding) -> usize {
    match finding {
        Finding::AnchorMismatch { line, .. }
        | Finding::LogEndsBeforeAnchor { line, .. }
        | Finding::AnchorBadSignature { line, .. }
        | Finding::AnchorUnreadable { line, .. } => *line,
        _ => 0,
    }
}
