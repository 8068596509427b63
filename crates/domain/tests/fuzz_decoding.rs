//! Hostile bytes against the decoders of stored events: the payload decoders (the fast path
//! from text and the upcasting path from a JSON value), the upcaster of `ChildEnrolled` v1,
//! sealed fields (`$sealed` envelopes and `$plain` markers), stream names and ids.
//!
//! The inputs start from real events (a generated school year) in their stored shape, and are
//! mutated: bytes flipped, cut, spliced, invalid UTF-8, a JSON node replaced by a value of
//! another type or a huge number, keys removed or added, deep nesting; arbitrary bytes too.
//! Nothing may panic, every refusal is a typed error, and what is accepted decodes the same
//! again from its own encoding. Longer runs: `PROPTEST_CASES=100000 cargo test -p kring-domain
//! --test fuzz_decoding`.

#![allow(clippy::expect_used)]

use kring_domain::event::current_schema_version;
use kring_domain::sealed::{Envelope, Sealed, PLAIN_KEY, SEALED_KEY};
use kring_domain::simulation::hostile::{
    deeply_nested_text, fuzz_config, mutated_json, mutated_json_text, mutated_text,
};
use kring_domain::simulation::workload::{Workload, WorkloadConfig};
use kring_domain::{DecodeError, Event, StreamName};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A stored event: type, schema version, payload.
type Stored = (String, u16, Value);

/// Replaces every `$plain` marker with a `$sealed` envelope, as the vault does before a write.
fn sealed_shape(v: Value) -> Value {
    match v {
        Value::Object(mut o) => {
            if let Some(Value::Object(plain)) = o.remove(PLAIN_KEY) {
                let subject = plain.get("subject").cloned().unwrap_or(Value::Null);
                return json!({ SEALED_KEY: {
                    "subject": subject,
                    "key_id": "0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6",
                    "nonce": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX",
                    "ciphertext": "3q2+7w==",
                }});
            }
            Value::Object(o.into_iter().map(|(k, v)| (k, sealed_shape(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sealed_shape).collect()),
        other => other,
    }
}

/// Up to three stored events of every type a generated school year produces, and a
/// `ChildEnrolled` of schema version 1 (what the upcaster reads).
fn corpus() -> &'static [Stored] {
    static CORPUS: OnceLock<Vec<Stored>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let config = WorkloadConfig {
            events: 4_000,
            schools_at_once: 1,
            groups: 2,
            children_per_group: 4,
            chunk: 1_000,
            ..WorkloadConfig::school_years(4_000)
        };
        let mut by_type: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        for chunk in Workload::new(config) {
            for recorded in chunk {
                let samples = by_type.entry(recorded.event.event_type()).or_default();
                if samples.len() < 3 {
                    let payload = recorded.event.to_payload().expect("events are JSON");
                    samples.push(sealed_shape(payload));
                }
            }
        }
        let mut out: Vec<Stored> = by_type
            .into_iter()
            .flat_map(|(t, samples)| {
                samples
                    .into_iter()
                    .map(move |p| (t.to_owned(), current_schema_version(t), p))
            })
            .collect();
        out.push((
            "ChildEnrolled".to_owned(),
            1,
            json!({
                "child_id": "0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6",
                "school_id": "0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f7",
                "group_id": "0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f8",
                "first_name": "Sanne",
                "last_name": "de Vries",
            }),
        ));
        assert!(
            out.len() > 30,
            "the school year should produce many event types"
        );
        out
    })
}

fn stored() -> impl Strategy<Value = Stored> {
    prop::sample::select(corpus())
}

/// The schema version a stored row may claim: its own, an older or newer one, nonsense.
fn version(own: u16) -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => Just(own),
        1 => prop::sample::select(vec![0, 1, 2, 3, own.saturating_add(1), u16::MAX]),
    ]
}

/// An event type a stored row may claim: every known one, a near miss, nonsense.
fn event_type(own: String) -> impl Strategy<Value = String> {
    let known: Vec<String> = Event::all_types().map(str::to_owned).collect();
    prop_oneof![
        4 => Just(own),
        2 => prop::sample::select(known),
        1 => prop_oneof![
            Just(String::new()),
            Just("childenrolled".to_owned()),
            Just("ChildEnrolled\0".to_owned()),
            "\\PC{0,16}",
        ],
    ]
}

/// Decoding, checked for what must hold whatever the input: an accepted payload decodes to
/// the same event again from its own (current-version) encoding; a refusal is typed and names
/// the type it was asked about.
fn check(event_type: &str, version: u16, result: Result<Event, DecodeError>) {
    match result {
        Ok(event) => {
            assert_eq!(event.event_type(), event_type);
            let again = Event::decode(
                event_type,
                event.schema_version(),
                event.to_payload().expect("a decoded event is JSON"),
            )
            .expect("what was accepted is accepted again from its own encoding");
            assert_eq!(again, event);
        }
        Err(DecodeError::UnknownType(t)) => assert_eq!(t, event_type),
        Err(DecodeError::FutureVersion {
            event_type: t,
            found,
            current,
        }) => {
            assert_eq!(t, event_type);
            assert_eq!(found, version);
            assert!(found > current);
        }
        Err(DecodeError::Payload {
            event_type: t,
            version: v,
            ..
        }) => {
            assert_eq!(t, event_type);
            assert_eq!(v, version);
        }
    }
}

proptest! {
    #![proptest_config(fuzz_config(384))]

    #[test]
    fn every_stored_event_of_the_corpus_decodes(index in 0..corpus().len()) {
        let (t, v, payload) = &corpus()[index];
        let event = Event::decode_str(t, *v, &payload.to_string());
        prop_assert!(event.is_ok(), "{t} v{v}: {event:?}");
        check(t, *v, event);
    }

    #[test]
    fn mutated_payload_text_is_decoded_or_refused_with_a_type(
        (t, v, text) in stored().prop_flat_map(|(t, v, p)| {
            (event_type(t), version(v), mutated_json_text(p))
        })
    ) {
        check(&t, v, Event::decode_str(&t, v, &text));
    }

    #[test]
    fn mutated_payload_values_are_decoded_or_refused_with_a_type(
        (t, v, value) in stored().prop_flat_map(|(t, v, p)| {
            (event_type(t), version(v), mutated_json(p))
        })
    ) {
        check(&t, v, Event::decode(&t, v, value.clone()));
        check(&t, v, Event::decode_str(&t, v, &value.to_string()));
    }

    #[test]
    fn arbitrary_bytes_under_any_type_and_version_are_refused_with_a_type(
        t in event_type("ChildEnrolled".to_owned()),
        v in version(1),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        check(&t, v, Event::decode_str(&t, v, &text));
    }

    #[test]
    fn mutated_child_enrolled_v1_is_upcast_or_refused(
        value in mutated_json(corpus().last().map(|s| s.2.clone()).unwrap_or_default())
    ) {
        check("ChildEnrolled", 1, Event::decode("ChildEnrolled", 1, value.clone()));
        check("ChildEnrolled", 1, Event::decode_str("ChildEnrolled", 1, &value.to_string()));
    }

    #[test]
    fn mutated_sealed_fields_are_read_or_refused(
        text in mutated_json_text(json!({ SEALED_KEY: {
            "subject": {"kind": "child", "id": "0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6"},
            "key_id": "0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6",
            "nonce": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX",
            "ciphertext": "3q2+7w==",
        }}))
    ) {
        if let Ok(sealed) = serde_json::from_str::<Sealed<String>>(&text) {
            // What reads back writes the same way again.
            let again: Sealed<String> =
                serde_json::from_value(serde_json::to_value(&sealed).expect("JSON")).expect("reads back");
            prop_assert_eq!(again, sealed);
        }
        let _ = serde_json::from_str::<Sealed<Value>>(&text);
        let _ = serde_json::from_str::<Envelope>(&text);
    }

    #[test]
    fn mutated_stream_names_parse_only_in_their_canonical_form(
        text in mutated_text("child-0190f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6")
    ) {
        if let Ok(name) = text.parse::<StreamName>() {
            prop_assert_eq!(name.to_string(), text);
        }
    }
}

#[test]
fn payloads_nested_beyond_the_parsers_limit_are_refused() {
    for t in ["ChildEnrolled", "PostPublished", "ConsentDecided"] {
        for v in [1, 2] {
            let deep = deeply_nested_text(100_000);
            assert!(Event::decode_str(t, v, &deep).is_err());
            let object = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
            assert!(Event::decode_str(t, v, &object).is_err());
        }
    }
}
