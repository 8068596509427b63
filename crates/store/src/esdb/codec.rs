//! The pure half of the KurrentDB adapter: connection strings, expected versions, the envelope
//! in event metadata, and the mapping between `$all` log positions and the port's [`Position`].
//! Nothing here talks to a server, so all of it is unit-tested without one.

use crate::{
    actor_from_str, actor_to_string, EventHash, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StoreError,
};
use chrono::{DateTime, SubsecRound, Utc};
use eventstore as es;
use kring_domain::StreamName;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Low bits of a port position that number an event within its append (see the module docs of
/// [`super`]).
const SLOT_BITS: u32 = 16;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;

/// The most events one append may carry: an event's slot is its index in the append plus one,
/// and slot 0 stands for "before the append's first event".
pub const MAX_EVENTS_PER_APPEND: usize = (1 << SLOT_BITS) - 1;

/// The largest `$all` log position (in bytes of the transaction log) that the position encoding
/// can carry: 2^47 − 1 (128 TiB), so that every port position stays below 2^63 and fits a signed
/// 64-bit column.
pub const MAX_LOG_POSITION: u64 = (1 << 47) - 1;

/// The value of the `kring` metadata key: the version of this metadata format.
const FORMAT: u8 = 1;

/// The port position of the event at `index` in an append whose first event sits at log position
/// `first`. `None` when the log has outgrown the encoding or the index its slots.
#[must_use]
pub fn encode_position(first: u64, index: u64) -> Option<Position> {
    if first > MAX_LOG_POSITION || index >= SLOT_MASK {
        return None;
    }
    Some((first << SLOT_BITS) | (index + 1))
}

/// Splits a port position into the log position of an append's first event (where a read of
/// `$all` can start) and the slot within that append (0: before its first event).
#[must_use]
pub const fn decode_position(position: Position) -> (u64, u64) {
    (position >> SLOT_BITS, position & SLOT_MASK)
}

/// Accepts `esdb://` and `esdb+discover://` as they are and maps the KurrentDB schemes
/// (`kurrentdb://`, `kurrent://`, `kdb://`, each optionally `+discover`) onto them, which is what
/// the `eventstore` client parses. Scheme names are case-insensitive.
///
/// # Errors
/// [`StoreError::Backend`] for any other scheme (the message never repeats the URL, which may
/// hold a password).
pub fn normalise_url(url: &str) -> Result<String, StoreError> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(StoreError::Backend(
            "a KurrentDB connection string starts with esdb:// or kurrentdb://".to_owned(),
        ));
    };
    let lower = scheme.to_ascii_lowercase();
    let (base, discover) = match lower.strip_suffix("+discover") {
        Some(base) => (base, true),
        None => (lower.as_str(), false),
    };
    match base {
        "esdb" | "kurrentdb" | "kurrent" | "kdb" => {}
        other => {
            return Err(StoreError::Backend(format!(
                "unsupported KurrentDB connection scheme {other:?}: use esdb://, esdb+discover://, \
                 kurrentdb:// or kurrentdb+discover://"
            )))
        }
    }
    let scheme = if discover { "esdb+discover" } else { "esdb" };
    Ok(format!("{scheme}://{rest}"))
}

/// Whether the caller's expectation holds for a stream whose last version is `actual`.
#[must_use]
pub const fn expectation_met(expected: ExpectedVersion, actual: Option<u64>) -> bool {
    match (expected, actual) {
        (ExpectedVersion::Any, _) | (ExpectedVersion::NoStream, None) => true,
        (ExpectedVersion::Exact(v), Some(a)) => v == a,
        _ => false,
    }
}

/// The expected revision the adapter sends: always the exact state it read and chained from, so
/// that any append racing between its read and its write is refused by the server.
#[must_use]
pub const fn revision_for(read: Option<u64>) -> es::ExpectedRevision {
    match read {
        Some(revision) => es::ExpectedRevision::Exact(revision),
        None => es::ExpectedRevision::NoStream,
    }
}

/// The caller's expectation as the server's (for messages and for callers that append with the
/// client directly).
#[must_use]
pub const fn expected_revision(expected: ExpectedVersion) -> es::ExpectedRevision {
    match expected {
        ExpectedVersion::Any => es::ExpectedRevision::Any,
        ExpectedVersion::NoStream => es::ExpectedRevision::NoStream,
        ExpectedVersion::Exact(v) => es::ExpectedRevision::Exact(v),
    }
}

/// The stream's last version as a wrong-expected-version error reports it (`None`: no stream).
#[must_use]
pub const fn actual_version(current: es::CurrentRevision) -> Option<u64> {
    match current {
        es::CurrentRevision::Current(v) => Some(v),
        es::CurrentRevision::NoStream => None,
    }
}

/// What an event read from `$all` is to the Kring log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A system event (`$`-prefixed stream or type: stats, links, projections, metadata).
    System,
    /// An event in a stream that is not a Kring stream name: not part of the Kring log.
    Foreign,
    /// An event of the Kring log, in this stream.
    Kring(StreamName),
}

/// Classifies an event by its stream and type.
#[must_use]
pub fn classify(stream_id: &str, event_type: &str) -> Kind {
    if stream_id.starts_with('$') || event_type.starts_with('$') {
        return Kind::System;
    }
    stream_id.parse().map_or(Kind::Foreign, Kind::Kring)
}

/// The envelope fields that are not native to an EventStoreDB event, stored as the event's
/// (custom) metadata. The event id, stream, version (revision), type and payload (data) are the
/// server's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeMeta {
    /// Format version of this metadata (1).
    pub kring: u8,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// When the command was decided, in microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// `person:<uuid>`, `operator` or `system`.
    pub actor: String,
    /// The correlation id, under the key EventStoreDB's own tooling reads.
    #[serde(rename = "$correlationId")]
    pub correlation_id: Uuid,
    /// The causation id, under the key EventStoreDB's own tooling reads.
    #[serde(
        rename = "$causationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub causation_id: Option<Uuid>,
    /// The chain hash, lower-case hex.
    pub hash: String,
    /// The event's index within the append that wrote it (0 for its first event).
    pub append_index: u64,
}

impl EnvelopeMeta {
    /// The metadata of `event`, written as the `append_index`th event of its append, with its
    /// chain hash.
    #[must_use]
    pub fn new(event: &NewEvent, hash: &EventHash, append_index: u64) -> Self {
        Self {
            kring: FORMAT,
            schema_version: event.schema_version,
            occurred_at: event.occurred_at.timestamp_micros(),
            actor: actor_to_string(&event.actor),
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            hash: hex::encode(hash.0),
            append_index,
        }
    }

    /// Parses stored metadata.
    ///
    /// # Errors
    /// A description of what is wrong, for a [`StoreError::Corrupt`].
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let meta: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("event metadata is not a Kring envelope: {e}"))?;
        if meta.kring != FORMAT {
            return Err(format!("unknown envelope format {}", meta.kring));
        }
        Ok(meta)
    }

    /// The stored chain hash.
    ///
    /// # Errors
    /// A description of what is wrong, for a [`StoreError::Corrupt`].
    pub fn event_hash(&self) -> Result<EventHash, String> {
        hex::decode(&self.hash)
            .ok()
            .and_then(|bytes| EventHash::from_slice(&bytes))
            .ok_or_else(|| format!("hash {:?} is not 32 bytes of hex", self.hash))
    }
}

/// The event to send for `event`: its id, type and payload bytes unchanged (JSON content type
/// when the payload is JSON, as it always is when built through [`NewEvent::new`]), and the rest
/// of the envelope in the metadata.
///
/// # Errors
/// Only if the metadata cannot be serialised, which does not happen for this struct.
pub fn event_data(
    event: &NewEvent,
    hash: &EventHash,
    append_index: u64,
) -> Result<es::EventData, StoreError> {
    let data = match serde_json::value::RawValue::from_string(event.payload.clone()) {
        // Serialising a raw value writes its bytes as they are: the canonical payload stays
        // byte-for-byte what was hashed.
        Ok(raw) => es::EventData::json(&event.event_type, &raw)
            .map_err(|e| StoreError::Backend(format!("cannot encode event payload: {e}")))?,
        Err(_) => {
            es::EventData::binary(&event.event_type, event.payload.clone().into_bytes().into())
        }
    };
    data.id(event.event_id)
        .metadata_as_json(&EnvelopeMeta::new(event, hash, append_index))
        .map_err(|e| StoreError::Backend(format!("cannot encode event metadata: {e}")))
}

/// The event type of an event-id claim (see "Idempotency" in the module docs of [`super`]).
pub const CLAIM_EVENT_TYPE: &str = "kring-event-id-claimed";

/// The stream that claims `event_id` for one Kring stream: `kring-event-id-<uuid>`. Not a Kring
/// stream name, so reads of the Kring log pass over it ([`classify`] calls it foreign).
#[must_use]
pub fn claim_stream(event_id: Uuid) -> String {
    format!("kring-event-id-{event_id}")
}

/// The body of a claim: the stream that owns the event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The Kring stream the event id belongs to, e.g. `child-<uuid>`.
    pub stream: String,
}

/// The first event of a claim stream: a fresh event id of its own, so that the server's own
/// deduplication (by event id) never takes two claims for different streams as one.
///
/// # Errors
/// [`StoreError::Backend`] when the claim cannot be encoded (it always can).
pub fn claim_data(stream: &StreamName) -> Result<es::EventData, StoreError> {
    es::EventData::json(
        CLAIM_EVENT_TYPE,
        &Claim {
            stream: stream.to_string(),
        },
    )
    .map(|data| data.id(Uuid::new_v4()))
    .map_err(|e| StoreError::Backend(format!("cannot encode event-id claim: {e}")))
}

/// Whether an append to `stream` may carry `event_id`, given the claim stored first for it.
///
/// # Errors
/// [`StoreError::IdempotencyMismatch`] when the id belongs to another stream;
/// [`StoreError::Corrupt`] when the stored claim cannot be read.
pub fn check_claim(event_id: Uuid, stored: &[u8], stream: &StreamName) -> Result<(), StoreError> {
    let claim: Claim = serde_json::from_slice(stored).map_err(|e| StoreError::Corrupt {
        position: 0,
        reason: format!("{}: unreadable claim: {e}", claim_stream(event_id)),
    })?;
    if claim.stream == stream.to_string() {
        Ok(())
    } else {
        Err(StoreError::IdempotencyMismatch { event_id })
    }
}

/// When the server recorded `event`: its `created` ticks (100 ns since the Unix epoch), to the
/// microsecond. The client's own `created` field is truncated to whole seconds, so it is only
/// the fallback.
#[must_use]
pub fn recorded_at(event: &es::RecordedEvent) -> DateTime<Utc> {
    event
        .metadata
        .get("created")
        .and_then(|ticks| ticks.parse::<i64>().ok())
        .and_then(|ticks| DateTime::from_timestamp_micros(ticks / 10))
        .unwrap_or(event.created)
        .trunc_subsecs(6)
}

/// The recorded event of the Kring log that `event` (of `stream`, carrying `meta`) is, at port
/// position `position`.
///
/// # Errors
/// [`StoreError::Corrupt`] when a stored field cannot be read back.
pub fn recorded_event(
    stream: StreamName,
    event: &es::RecordedEvent,
    meta: &EnvelopeMeta,
    position: Position,
) -> Result<RecordedEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { position, reason };
    let payload = std::str::from_utf8(&event.data)
        .map_err(|e| corrupt(format!("payload is not UTF-8: {e}")))?
        .to_owned();
    Ok(RecordedEvent {
        event_id: event.id,
        stream,
        version: event.revision,
        position,
        event_type: event.event_type.clone(),
        schema_version: meta.schema_version,
        occurred_at: DateTime::from_timestamp_micros(meta.occurred_at)
            .ok_or_else(|| corrupt(format!("bad time {}", meta.occurred_at)))?,
        recorded_at: recorded_at(event),
        actor: actor_from_str(&meta.actor)
            .ok_or_else(|| corrupt(format!("bad actor {:?}", meta.actor)))?,
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        payload,
        hash: meta.event_hash().map_err(corrupt)?,
        // Positions are assigned by the server after the write: no global chain here.
        log_hash: None,
    })
}

/// Follows consecutive events of one read (of `$all` or of a stream, in either direction's
/// natural order) to tell the log position of the first event of each event's append without
/// another read: an append's events are contiguous in the log, so the event at index `i > 0`
/// directly follows index `i − 1` of the same stream.
#[derive(Debug, Default)]
pub struct AppendTracker {
    last: Option<Tracked>,
}

#[derive(Debug)]
struct Tracked {
    stream: String,
    revision: u64,
    index: u64,
    first: u64,
}

impl AppendTracker {
    /// The log position of the first event of the append that the event at `commit`
    /// (`revision` of `stream`, `index` within its append) belongs to, and remembers it for the
    /// next event. `None` when this read has not seen that first event: the caller looks it up
    /// (revision `revision − index`) and tells the tracker with [`AppendTracker::remember`].
    pub fn first_of(
        &mut self,
        stream: &str,
        revision: u64,
        index: u64,
        commit: u64,
    ) -> Option<u64> {
        let first = if index == 0 {
            Some(commit)
        } else {
            self.last
                .as_ref()
                .filter(|t| {
                    t.stream == stream && t.revision + 1 == revision && t.index + 1 == index
                })
                .map(|t| t.first)
        };
        if let Some(first) = first {
            self.remember(stream, revision, index, first);
        }
        first
    }

    /// Records the first-event position of an event that [`AppendTracker::first_of`] could not
    /// tell.
    pub fn remember(&mut self, stream: &str, revision: u64, index: u64, first: u64) {
        self.last = Some(Tracked {
            stream: stream.to_owned(),
            revision,
            index,
            first,
        });
    }
}

/// An event of the stream being appended to, seen while scanning its tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Its id.
    pub id: Uuid,
    /// Its revision.
    pub revision: u64,
    /// Its index within its append.
    pub index: u64,
}

/// Where a re-appended batch was stored: its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAppend {
    /// The last event's revision.
    pub revision: u64,
    /// The last event's index within the append that stored it.
    pub index: u64,
}

/// Whether the events with `ids` were stored before, judging by the `scanned` events of the
/// target stream: `None` when none was, their last event when all were (in order, at
/// consecutive revisions), and [`StoreError::IdempotencyMismatch`] when only some were, or not
/// as one run: then the retry is not the same append. The same rule as the SQL adapters', but
/// per stream.
///
/// # Errors
/// [`StoreError::IdempotencyMismatch`] naming the first event that differs.
pub fn match_stored(ids: &[Uuid], scanned: &[Scanned]) -> Result<Option<StoredAppend>, StoreError> {
    let lookup = |id: &Uuid| scanned.iter().find(|s| s.id == *id);
    if ids.iter().all(|id| lookup(id).is_none()) {
        return Ok(None);
    }
    let mut last: Option<&Scanned> = None;
    for id in ids {
        match lookup(id) {
            Some(s) if last.is_none_or(|l| s.revision == l.revision + 1) => last = Some(s),
            _ => return Err(StoreError::IdempotencyMismatch { event_id: *id }),
        }
    }
    Ok(last.map(|s| StoredAppend {
        revision: s.revision,
        index: s.index,
    }))
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::conformance;
    use kring_domain::{Actor, ChildId, PersonId};
    use std::collections::HashMap;

    #[test]
    fn an_event_id_claim_admits_its_own_stream_only() {
        let id = Uuid::new_v4();
        let owner = conformance::stream();
        let other = conformance::stream();
        let stored = serde_json::to_vec(&Claim {
            stream: owner.to_string(),
        })
        .unwrap();
        check_claim(id, &stored, &owner).unwrap();
        let err = check_claim(id, &stored, &other).unwrap_err();
        assert!(
            matches!(err, StoreError::IdempotencyMismatch { event_id } if event_id == id),
            "{err:?}"
        );
        let err = check_claim(id, b"not json", &owner).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn claim_streams_are_not_part_of_the_kring_log() {
        let name = claim_stream(Uuid::new_v4());
        assert_eq!(classify(&name, CLAIM_EVENT_TYPE), Kind::Foreign);
        let a = claim_data(&conformance::stream()).unwrap();
        let b = claim_data(&conformance::stream()).unwrap();
        assert_ne!(
            format!("{a:?}"),
            format!("{b:?}"),
            "every claim carries its own event id"
        );
    }

    #[test]
    fn positions_are_contiguous_within_an_append_and_increase_across_appends() {
        let a: Vec<Position> = (0..3).map(|i| encode_position(4_096, i).unwrap()).collect();
        assert_eq!(a[1], a[0] + 1);
        assert_eq!(a[2], a[1] + 1);
        let next = encode_position(4_097, 0).unwrap();
        assert!(
            next > a[2],
            "a later append sorts after every event of an earlier one"
        );
        assert!(
            encode_position(0, 0).unwrap() > 0,
            "0 stays 'nothing processed'"
        );
        assert!(i64::try_from(encode_position(MAX_LOG_POSITION, SLOT_MASK - 1).unwrap()).is_ok());
        assert_eq!(encode_position(MAX_LOG_POSITION + 1, 0), None);
        assert_eq!(encode_position(1, SLOT_MASK), None);
        assert_eq!(MAX_EVENTS_PER_APPEND as u64, SLOT_MASK);
    }

    #[test]
    fn a_position_and_the_one_before_it_start_a_read_at_the_same_append() {
        let p = encode_position(123_456, 0).unwrap();
        assert_eq!(decode_position(p), (123_456, 1));
        assert_eq!(
            decode_position(p - 1),
            (123_456, 0),
            "`position - 1` is readable"
        );
        let third = encode_position(123_456, 2).unwrap();
        assert_eq!(decode_position(third - 1), (123_456, 2));
        assert_eq!(decode_position(0), (0, 0));
    }

    #[test]
    fn kurrentdb_schemes_map_to_what_the_client_parses() {
        for (given, expected) in [
            (
                "esdb://localhost:2113?tls=false",
                "esdb://localhost:2113?tls=false",
            ),
            (
                "kurrentdb://admin:changeit@localhost:2113?tls=false",
                "esdb://admin:changeit@localhost:2113?tls=false",
            ),
            (
                "KurrentDB+Discover://cluster.example:2113",
                "esdb+discover://cluster.example:2113",
            ),
            ("kdb://a:2113,b:2113", "esdb://a:2113,b:2113"),
            ("kurrent://localhost", "esdb://localhost"),
            (" esdb+discover://x ", "esdb+discover://x"),
        ] {
            assert_eq!(normalise_url(given).unwrap(), expected, "{given}");
            let parsed: Result<es::ClientSettings, _> = expected.parse();
            assert!(parsed.is_ok(), "{expected} parses: {parsed:?}");
        }
        for bad in ["postgres://secret@host", "localhost:2113", "https://x"] {
            let err = normalise_url(bad).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn expected_versions_map_to_revisions_and_back() {
        assert_eq!(
            expected_revision(ExpectedVersion::Any),
            es::ExpectedRevision::Any
        );
        assert_eq!(
            expected_revision(ExpectedVersion::NoStream),
            es::ExpectedRevision::NoStream
        );
        assert_eq!(
            expected_revision(ExpectedVersion::Exact(7)),
            es::ExpectedRevision::Exact(7)
        );
        assert_eq!(revision_for(None), es::ExpectedRevision::NoStream);
        assert_eq!(revision_for(Some(3)), es::ExpectedRevision::Exact(3));
        assert_eq!(actual_version(es::CurrentRevision::Current(4)), Some(4));
        assert_eq!(actual_version(es::CurrentRevision::NoStream), None);

        assert!(expectation_met(ExpectedVersion::Any, None));
        assert!(expectation_met(ExpectedVersion::Any, Some(9)));
        assert!(expectation_met(ExpectedVersion::NoStream, None));
        assert!(!expectation_met(ExpectedVersion::NoStream, Some(0)));
        assert!(expectation_met(ExpectedVersion::Exact(2), Some(2)));
        assert!(!expectation_met(ExpectedVersion::Exact(2), Some(3)));
        assert!(!expectation_met(ExpectedVersion::Exact(0), None));
    }

    fn stored(
        stream: StreamName,
        event: &NewEvent,
        revision: u64,
        meta: &EnvelopeMeta,
        created_ticks: i64,
    ) -> es::RecordedEvent {
        let mut system = HashMap::new();
        system.insert("type".to_owned(), event.event_type.clone());
        system.insert("created".to_owned(), created_ticks.to_string());
        es::RecordedEvent {
            stream_id: stream.to_string(),
            id: event.event_id,
            revision,
            event_type: event.event_type.clone(),
            data: event.payload.clone().into_bytes().into(),
            metadata: system,
            custom_metadata: serde_json::to_vec(meta).unwrap().into(),
            is_json: true,
            position: es::Position {
                commit: 99,
                prepare: 99,
            },
            created: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_envelope_round_trips_through_event_metadata() {
        let stream = StreamName::child(ChildId::generate());
        let event = NewEvent {
            actor: Actor::Person(PersonId::generate()),
            causation_id: Some(Uuid::now_v7()),
            ..conformance::event(7)
        };
        let hash = event.chain_hash(&stream, 0, &EventHash::GENESIS);
        let meta = EnvelopeMeta::new(&event, &hash, 0);
        let bytes = serde_json::to_vec(&meta).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"$correlationId\""), "{text}");
        assert_eq!(EnvelopeMeta::parse(&bytes).unwrap(), meta);

        let ticks = 17_000_000_001_234_567_i64; // 100 ns ticks since the epoch
        let es_event = stored(stream, &event, 0, &meta, ticks);
        let read = recorded_event(stream, &es_event, &meta, 42).unwrap();
        assert_eq!(read.event_id, event.event_id);
        assert_eq!(read.stream, stream);
        assert_eq!((read.version, read.position), (0, 42));
        assert_eq!(read.event_type, event.event_type);
        assert_eq!(read.schema_version, event.schema_version);
        assert_eq!(read.occurred_at, event.occurred_at);
        assert_eq!(read.actor, event.actor);
        assert_eq!(read.correlation_id, event.correlation_id);
        assert_eq!(read.causation_id, event.causation_id);
        assert_eq!(read.payload, event.payload);
        assert_eq!(read.hash, hash);
        assert_eq!(read.expected_hash(&EventHash::GENESIS), read.hash);
        assert_eq!(read.recorded_at.timestamp_micros(), ticks / 10);

        let no_cause = EnvelopeMeta::new(&conformance::event(1), &hash, 3);
        let text = serde_json::to_string(&no_cause).unwrap();
        assert!(!text.contains("causation"), "{text}");
        assert_eq!(EnvelopeMeta::parse(text.as_bytes()).unwrap(), no_cause);
    }

    #[test]
    fn unreadable_metadata_is_reported_not_guessed() {
        assert!(EnvelopeMeta::parse(b"{}").is_err());
        assert!(EnvelopeMeta::parse(b"").is_err());
        let mut meta = EnvelopeMeta::new(&conformance::event(1), &EventHash::GENESIS, 0);
        meta.kring = 2;
        assert!(EnvelopeMeta::parse(&serde_json::to_vec(&meta).unwrap()).is_err());
        meta.kring = FORMAT;
        meta.hash = "abcd".to_owned();
        assert!(meta.event_hash().is_err());
    }

    #[test]
    fn event_data_is_built_for_json_and_other_payloads() {
        let event = conformance::event(1);
        assert!(event_data(&event, &EventHash::GENESIS, 0).is_ok());
        let odd = NewEvent {
            payload: "not json".to_owned(),
            ..event
        };
        assert!(event_data(&odd, &EventHash::GENESIS, 0).is_ok());
    }

    #[test]
    fn system_and_foreign_events_are_not_part_of_the_kring_log() {
        let stream = StreamName::child(ChildId::generate());
        assert_eq!(
            classify(&stream.to_string(), "TestHappened"),
            Kind::Kring(stream)
        );
        assert_eq!(
            classify("$stats-127.0.0.1:2113", "$statsCollected"),
            Kind::System
        );
        assert_eq!(classify("$$child-x", "$metadata"), Kind::System);
        assert_eq!(classify(&stream.to_string(), "$>"), Kind::System);
        assert_eq!(classify("orders-1", "OrderPlaced"), Kind::Foreign);
    }

    #[test]
    fn the_tracker_follows_an_append_and_asks_when_it_starts_mid_way() {
        let mut t = AppendTracker::default();
        assert_eq!(t.first_of("child-a", 5, 0, 1_000), Some(1_000));
        assert_eq!(t.first_of("child-a", 6, 1, 1_100), Some(1_000));
        assert_eq!(t.first_of("child-a", 7, 2, 1_200), Some(1_000));
        assert_eq!(t.first_of("child-b", 0, 0, 1_300), Some(1_300));
        // A read that starts at the second event of an append cannot tell its first.
        let mut t = AppendTracker::default();
        assert_eq!(t.first_of("child-a", 6, 1, 1_100), None);
        t.remember("child-a", 6, 1, 1_000);
        assert_eq!(t.first_of("child-a", 7, 2, 1_200), Some(1_000));
        // Another stream's event at index 1 is not a continuation.
        assert_eq!(t.first_of("child-b", 8, 3, 1_300), None);
    }

    #[test]
    fn re_appends_match_whole_appends_only() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let scanned: Vec<Scanned> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Scanned {
                id: *id,
                revision: 4 + i as u64,
                index: i as u64,
            })
            .rev()
            .collect();
        assert_eq!(match_stored(&[Uuid::now_v7()], &scanned).unwrap(), None);
        assert_eq!(
            match_stored(&ids, &scanned).unwrap(),
            Some(StoredAppend {
                revision: 6,
                index: 2
            })
        );
        let fresh = Uuid::now_v7();
        assert!(matches!(
            match_stored(&[ids[1], fresh], &scanned),
            Err(StoreError::IdempotencyMismatch { event_id }) if event_id == fresh
        ));
        assert!(matches!(
            match_stored(&[fresh, ids[0]], &scanned),
            Err(StoreError::IdempotencyMismatch { event_id }) if event_id == fresh
        ));
        assert!(matches!(
            match_stored(&[ids[2], ids[0]], &scanned),
            Err(StoreError::IdempotencyMismatch { event_id }) if event_id == ids[0]
        ));
    }
}
