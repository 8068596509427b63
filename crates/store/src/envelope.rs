//! The recorded envelope of every event, the hash that chains each event to the previous
//! event of its stream, and the global hash that chains it to the event at the previous position.

use chrono::{DateTime, SubsecRound, Utc};
use kring_domain::{Actor, StreamName};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

/// A position in the global log: 1 for the first event, strictly increasing, never reused.
/// A checkpoint of `0` means "nothing processed yet".
pub type Position = u64;

/// The largest payload one event may carry, in bytes of canonical JSON.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The expected state of a stream for an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this (0-based) version.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A SHA-256 digest: an event's chain hash (to its stream's previous event) or its global hash
/// (to the event at the previous position of the log).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventHash(pub [u8; 32]);

impl EventHash {
    /// The "previous hash" of a stream's first event.
    pub const GENESIS: Self = Self([0; 32]);

    /// From stored bytes; `None` unless exactly 32.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl serde::Serialize for EventHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for EventHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(text.as_ref(), &mut bytes)
            .map_err(|_| serde::de::Error::custom("a hash is 64 hex digits"))?;
        Ok(Self(bytes))
    }
}

/// An event to append, before the store gives it a version, position and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique id; re-appending a stored id is idempotent.
    pub event_id: Uuid,
    /// Stable type name.
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// When the command was decided (microsecond precision).
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The request or process this event belongs to.
    pub correlation_id: Uuid,
    /// The event or command that caused it, if any.
    pub causation_id: Option<Uuid>,
    /// The payload as canonical JSON (sorted keys, no insignificant white space).
    pub payload: String,
}

/// Metadata every event of one command shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// When the command was decided.
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The request or process.
    pub correlation_id: Uuid,
    /// What caused it.
    pub causation_id: Option<Uuid>,
}

impl Metadata {
    /// The metadata of work with no cause of its own (an import, a generated history): decided
    /// at `occurred_at` by `actor`, under a fresh UUID v7 correlation id.
    #[must_use]
    pub fn new(occurred_at: DateTime<Utc>, actor: Actor) -> Self {
        Self {
            occurred_at,
            actor,
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        }
    }
}

impl NewEvent {
    /// An event with a fresh UUID v7 id; the payload is canonicalised here, once.
    #[must_use]
    pub fn new(event_type: &str, schema_version: u16, payload: &Value, meta: Metadata) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version,
            occurred_at: meta.occurred_at.trunc_subsecs(6),
            actor: meta.actor,
            correlation_id: meta.correlation_id,
            causation_id: meta.causation_id,
            payload: canonical_json(payload),
        }
    }

    /// A domain event, encoded at its current schema version.
    ///
    /// # Errors
    /// Only if the payload cannot be represented as JSON.
    pub fn from_domain(
        event: &kring_domain::Event,
        meta: Metadata,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::new(
            event.event_type(),
            event.schema_version(),
            &event.to_payload()?,
            meta,
        ))
    }

    /// The hash of this event as the `version`th of `stream`, after `previous`.
    #[must_use]
    pub fn chain_hash(&self, stream: &StreamName, version: u64, previous: &EventHash) -> EventHash {
        chain_hash(&HashInput {
            previous,
            event_id: self.event_id,
            stream,
            version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            actor: &self.actor,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload: &self.payload,
        })
    }
}

/// An event as recorded in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Unique id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream: StreamName,
    /// 0-based, gap-free version within the stream.
    pub version: u64,
    /// Global position.
    pub position: Position,
    /// Stable type name.
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// When it was decided.
    pub occurred_at: DateTime<Utc>,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The request or process.
    pub correlation_id: Uuid,
    /// What caused it.
    pub causation_id: Option<Uuid>,
    /// Canonical JSON payload.
    pub payload: String,
    /// Chains it to the previous event of its stream.
    pub hash: EventHash,
    /// Chains it to the event at the previous position of the log ([`log_hash`]); `None` where
    /// the backend keeps no global chain (EventStoreDB), or on a row that lost it.
    pub log_hash: Option<EventHash>,
}

impl RecordedEvent {
    /// Recomputes this event's hash from its content and the previous event's hash.
    #[must_use]
    pub fn expected_hash(&self, previous: &EventHash) -> EventHash {
        chain_hash(&HashInput {
            previous,
            event_id: self.event_id,
            stream: &self.stream,
            version: self.version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            actor: &self.actor,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload: &self.payload,
        })
    }

    /// Recomputes this event's global hash from its position, its stored chain hash and the
    /// global hash of the event at the previous position.
    #[must_use]
    pub fn expected_log_hash(&self, previous: &EventHash) -> EventHash {
        log_hash(previous, self.position, &self.hash)
    }

    /// The payload as a domain event (upcast to the current schema).
    ///
    /// # Errors
    /// An unknown type, a future schema version, or a payload that does not match.
    pub fn decode(&self) -> Result<kring_domain::Event, kring_domain::DecodeError> {
        kring_domain::Event::decode_str(&self.event_type, self.schema_version, &self.payload)
    }
}

struct HashInput<'a> {
    previous: &'a EventHash,
    event_id: Uuid,
    stream: &'a StreamName,
    version: u64,
    event_type: &'a str,
    schema_version: u16,
    occurred_at: DateTime<Utc>,
    actor: &'a Actor,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    payload: &'a str,
}

/// SHA-256 over a length-prefixed binary encoding of every envelope field the writer decides,
/// preceded by the previous event's hash. Position and recorded-at are left out: they are the
/// store's, and an EventStoreDB position is only known after the write.
fn chain_hash(input: &HashInput<'_>) -> EventHash {
    fn text(h: &mut Sha256, s: &str) {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    let mut h = Sha256::new();
    h.update(b"kring-event-hash-v1");
    h.update(input.previous.0);
    h.update(input.event_id.as_bytes());
    text(&mut h, &input.stream.to_string());
    h.update(input.version.to_be_bytes());
    text(&mut h, input.event_type);
    h.update(input.schema_version.to_be_bytes());
    h.update(input.occurred_at.timestamp_micros().to_be_bytes());
    text(&mut h, &actor_to_string(input.actor));
    h.update(input.correlation_id.as_bytes());
    match input.causation_id {
        Some(id) => {
            h.update([1]);
            h.update(id.as_bytes());
        }
        None => h.update([0]),
    }
    text(&mut h, input.payload);
    EventHash(h.finalize().into())
}

/// The global hash of the event at `position` whose chain hash is `event_hash`, after the event
/// at the previous position had global hash `previous` ([`EventHash::GENESIS`] for position 1).
///
/// The chain hash already covers every field the writer decides, so the global hash needs only
/// that and the position: deleting, inserting or renumbering an event anywhere breaks the link
/// at the next position.
#[must_use]
pub fn log_hash(previous: &EventHash, position: Position, event_hash: &EventHash) -> EventHash {
    let mut h = Sha256::new();
    h.update(b"kring-log-hash-v1");
    h.update(previous.0);
    h.update(position.to_be_bytes());
    h.update(event_hash.0);
    EventHash(h.finalize().into())
}

/// `person:<uuid>`, `operator` or `system`: how an actor is stored.
#[must_use]
pub fn actor_to_string(actor: &Actor) -> String {
    match actor {
        Actor::Person(p) => format!("person:{p}"),
        Actor::Operator => "operator".to_owned(),
        Actor::System => "system".to_owned(),
    }
}

/// Parses a stored actor.
#[must_use]
pub fn actor_from_str(s: &str) -> Option<Actor> {
    match s {
        "operator" => Some(Actor::Operator),
        "system" => Some(Actor::System),
        _ => s
            .strip_prefix("person:")
            .and_then(|id| id.parse().ok())
            .map(Actor::Person),
    }
}

/// JSON with object keys sorted at every level and no insignificant white space, so that the
/// same value always has the same bytes (and the same hash). It stays hand-written because the
/// hash chains are computed over these exact bytes: a serializer's output may change between
/// versions, and a stored hash must not.
#[must_use]
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": "é"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":"é","y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    #[test]
    fn actors_round_trip_through_their_stored_form() {
        for actor in [
            Actor::Operator,
            Actor::System,
            Actor::Person(kring_domain::PersonId::generate()),
        ] {
            assert_eq!(actor_from_str(&actor_to_string(&actor)), Some(actor));
        }
        assert_eq!(actor_from_str("person:nope"), None);
    }
}
