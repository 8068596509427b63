//! Group commit: plans one transaction for a batch of appends while each append keeps its own
//! concurrency check and its own outcome. Shared by the SQL adapters; pure, so it is tested
//! without a database.

use crate::envelope::{log_hash, EventHash, ExpectedVersion, NewEvent, Position, MAX_EVENT_BYTES};
use crate::error::StoreError;
use kring_domain::StreamName;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One append as asked.
#[derive(Debug)]
pub struct AppendRequest {
    /// The stream.
    pub stream: StreamName,
    /// Its expected version.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append (the last event's version).
    pub stream_version: u64,
    /// The global position of the last event.
    pub position: Position,
}

/// The last event of a stream: its version and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    /// Version of the last event.
    pub version: u64,
    /// Hash of the last event.
    pub hash: EventHash,
}

/// The last event of the log: its position and global hash (position 0 and
/// [`EventHash::GENESIS`] for an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogHead {
    /// The log's last position.
    pub position: Position,
    /// The global hash of the event there.
    pub log_hash: EventHash,
}

/// Where an already stored event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredId {
    /// Its stream.
    pub stream: StreamName,
    /// Its version.
    pub version: u64,
    /// Its position.
    pub position: Position,
}

/// A row's position and chain hash, as the global chain is computed from them.
///
/// # Errors
/// [`StoreError::Corrupt`] for a hash that is not 32 bytes.
pub(crate) fn position_and_hash(
    position: i64,
    hash: &[u8],
) -> Result<(Position, EventHash), StoreError> {
    let position = u64::try_from(position).unwrap_or_default();
    let hash = EventHash::from_slice(hash).ok_or_else(|| StoreError::Corrupt {
        position,
        reason: "hash is not 32 bytes".into(),
    })?;
    Ok((position, hash))
}

impl StoredId {
    /// From a row's stream, version and position columns.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a stream name or number this build cannot read.
    pub(crate) fn from_row(stream: &str, version: i64, position: i64) -> Result<Self, StoreError> {
        let position = u64::try_from(position).unwrap_or_default();
        let corrupt = |reason: String| StoreError::Corrupt { position, reason };
        Ok(Self {
            stream: stream.parse().map_err(|e| corrupt(format!("{e}")))?,
            version: u64::try_from(version).map_err(|e| corrupt(e.to_string()))?,
            position,
        })
    }
}

/// A row to insert.
#[derive(Debug)]
pub struct PlannedRow<'a> {
    /// The event.
    pub event: &'a NewEvent,
    /// Its stream.
    pub stream: &'a StreamName,
    /// Its version.
    pub version: u64,
    /// Its position.
    pub position: Position,
    /// Its chain hash.
    pub hash: EventHash,
    /// Its global hash.
    pub log_hash: EventHash,
}

/// Checks that do not need the database — empty appends, sizes, unsealed personal data,
/// duplicate ids — and truncates `occurred_at` to the microseconds that are hashed and stored.
/// Every adapter calls it once, before the append is queued; [`plan`] trusts it.
///
/// # Errors
/// The first limit the request breaks.
pub fn validate(request: &mut AppendRequest) -> Result<(), StoreError> {
    for e in &mut request.events {
        e.occurred_at = chrono::SubsecRound::trunc_subsecs(e.occurred_at, 6);
    }
    let request = &*request;
    if request.events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    let mut ids = HashSet::with_capacity(request.events.len());
    for e in &request.events {
        if e.payload.len() > MAX_EVENT_BYTES {
            return Err(StoreError::EventTooLarge {
                event_id: e.event_id,
                size: e.payload.len(),
                limit: MAX_EVENT_BYTES,
            });
        }
        if crate::vault::holds_plain(&e.payload) {
            return Err(StoreError::UnsealedPersonalData {
                event_id: e.event_id,
            });
        }
        if !ids.insert(e.event_id) {
            return Err(StoreError::DuplicateEventId {
                event_id: e.event_id,
            });
        }
    }
    Ok(())
}

/// The plan for one batch: the rows to insert and each request's outcome, in request order.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Rows to insert, in position order.
    pub rows: Vec<PlannedRow<'a>>,
    /// Each request's outcome.
    pub outcomes: Vec<Result<AppendOutcome, StoreError>>,
    /// The stream heads after the batch, for the writer's cache.
    pub heads: HashMap<StreamName, StreamHead>,
    /// The log's last event after the batch.
    pub last: LogHead,
}

/// Plans a batch. `heads` holds the current head of every stream the batch touches (absent:
/// the stream is empty); `stored` holds the requests' event ids that are already in the log;
/// `last` is the log's last event, which the batch's global hashes chain from.
#[must_use]
#[allow(
    clippy::implicit_hasher,
    reason = "the writers' own std maps; `heads` comes back in the `Plan`"
)]
pub fn plan<'a>(
    requests: &'a [AppendRequest],
    mut heads: HashMap<StreamName, StreamHead>,
    stored: &HashMap<Uuid, StoredId>,
    last: LogHead,
) -> Plan<'a> {
    let mut rows = Vec::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut position = last.position;
    let mut global = last.log_hash;
    let mut claimed: HashSet<Uuid> = HashSet::new();
    for request in requests {
        let outcome = (|| {
            if let Some(done) = already_stored(request, stored)? {
                return Ok(done);
            }
            // An id used earlier in this same batch: the second append is a retry racing the
            // first; it gets the first's outcome once that commits, so refuse it as a conflict.
            if let Some(e) = request
                .events
                .iter()
                .find(|e| claimed.contains(&e.event_id))
            {
                return Err(StoreError::IdempotencyMismatch {
                    event_id: e.event_id,
                });
            }
            let head = heads.get(&request.stream).copied();
            let actual = head.map(|h| h.version);
            let matches = match request.expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => actual.is_none(),
                ExpectedVersion::Exact(v) => actual == Some(v),
            };
            if !matches {
                return Err(StoreError::Concurrency {
                    stream: request.stream,
                    expected: request.expected,
                    actual,
                });
            }
            let mut previous = head.map_or(EventHash::GENESIS, |h| h.hash);
            let mut version = actual.map_or(0, |v| v + 1);
            for event in &request.events {
                position += 1;
                let hash = event.chain_hash(&request.stream, version, &previous);
                global = log_hash(&global, position, &hash);
                rows.push(PlannedRow {
                    event,
                    stream: &request.stream,
                    version,
                    position,
                    hash,
                    log_hash: global,
                });
                claimed.insert(event.event_id);
                previous = hash;
                version += 1;
            }
            let last = StreamHead {
                version: version - 1,
                hash: previous,
            };
            heads.insert(request.stream, last);
            Ok(AppendOutcome {
                stream_version: last.version,
                position,
            })
        })();
        outcomes.push(outcome);
    }
    Plan {
        rows,
        outcomes,
        heads,
        last: LogHead {
            position,
            log_hash: global,
        },
    }
}

/// A retried append whose events are all stored already gets its original outcome.
fn already_stored(
    request: &AppendRequest,
    stored: &HashMap<Uuid, StoredId>,
) -> Result<Option<AppendOutcome>, StoreError> {
    let found: Vec<Option<&StoredId>> = request
        .events
        .iter()
        .map(|e| stored.get(&e.event_id))
        .collect();
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut last: Option<&StoredId> = None;
    for (event, hit) in request.events.iter().zip(&found) {
        match hit {
            Some(s)
                if s.stream == request.stream
                    && last.is_none_or(|l| s.version == l.version + 1) =>
            {
                last = Some(s);
            }
            _ => {
                return Err(StoreError::IdempotencyMismatch {
                    event_id: event.event_id,
                })
            }
        }
    }
    Ok(last.map(|s| AppendOutcome {
        stream_version: s.version,
        position: s.position,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Metadata;
    use kring_domain::{Actor, ChildId};

    fn event() -> NewEvent {
        let meta = Metadata {
            occurred_at: chrono::Utc::now(),
            actor: Actor::System,
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        };
        NewEvent::new("Test", 1, &serde_json::json!({"n": 1}), meta)
    }

    #[test]
    fn validation_truncates_times_to_microseconds_and_refuses_unsealed_payloads() {
        let mut e = event();
        e.occurred_at =
            chrono::DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap_or_default();
        let mut request = AppendRequest {
            stream: StreamName::child(ChildId::generate()),
            expected: ExpectedVersion::Any,
            events: vec![e],
        };
        validate(&mut request).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            request.events[0].occurred_at.timestamp_subsec_nanos(),
            123_456_000
        );
        request.events[0].payload =
            r#"{"name":{"$plain":{"subject":{"kind":"child","id":"x"},"value":"Sanne"}}}"#.into();
        assert!(matches!(
            validate(&mut request),
            Err(StoreError::UnsealedPersonalData { .. })
        ));
    }

    #[test]
    fn each_append_of_a_batch_keeps_its_own_concurrency_check() {
        let stream = StreamName::child(ChildId::generate());
        let requests = vec![
            AppendRequest {
                stream,
                expected: ExpectedVersion::NoStream,
                events: vec![event()],
            },
            AppendRequest {
                stream,
                expected: ExpectedVersion::NoStream,
                events: vec![event()],
            },
            AppendRequest {
                stream,
                expected: ExpectedVersion::Exact(0),
                events: vec![event(), event()],
            },
        ];
        let last = LogHead {
            position: 41,
            log_hash: EventHash([7; 32]),
        };
        let plan = plan(&requests, HashMap::new(), &HashMap::new(), last);
        assert_eq!(
            plan.outcomes[0].as_ref().ok(),
            Some(&AppendOutcome {
                stream_version: 0,
                position: 42
            })
        );
        assert!(matches!(
            plan.outcomes[1],
            Err(StoreError::Concurrency {
                actual: Some(0),
                ..
            })
        ));
        assert_eq!(
            plan.outcomes[2].as_ref().ok(),
            Some(&AppendOutcome {
                stream_version: 2,
                position: 44
            })
        );
        assert_eq!(plan.rows.len(), 3, "the refused append wrote nothing");
        assert_eq!(
            plan.rows[1].hash,
            requests[2].events[0].chain_hash(&stream, 1, &plan.rows[0].hash)
        );
    }

    #[test]
    fn the_global_hashes_of_a_batch_chain_from_the_log_head_across_appends() {
        let requests: Vec<AppendRequest> = (0..2)
            .map(|_| AppendRequest {
                stream: StreamName::child(ChildId::generate()),
                expected: ExpectedVersion::NoStream,
                events: vec![event(), event()],
            })
            .collect();
        let last = LogHead {
            position: 9,
            log_hash: EventHash([7; 32]),
        };
        let plan = plan(&requests, HashMap::new(), &HashMap::new(), last);
        let mut previous = last.log_hash;
        for (i, row) in plan.rows.iter().enumerate() {
            assert_eq!(row.position, 10 + i as u64);
            previous = log_hash(&previous, row.position, &row.hash);
            assert_eq!(row.log_hash, previous);
        }
        assert_eq!(
            plan.last,
            LogHead {
                position: 13,
                log_hash: previous
            }
        );
    }
}
