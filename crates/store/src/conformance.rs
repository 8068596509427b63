//! The conformance suite: one set of checks every adapter must pass.
//!
//! An adapter's test file calls [`conformance_suite!`](crate::conformance_suite) with an async
//! factory returning `(store, guard)`; the guard keeps the store's backing resources (a temp
//! dir, a database) alive for the test. Each check below becomes one `#[tokio::test]`.

#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

use crate::{
    AppendRequest, EventStore, EventStoreExt, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StoreError, MAX_EVENT_BYTES,
};
use chrono::Utc;
use kring_domain::{Actor, ChildId, PersonId, StreamName};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// Stamps out the conformance suite for an adapter. `$make` is an async fn returning
/// `(store, guard)`; optional attributes (e.g. `#[ignore = "…"]`) are put on every test.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path $(, #[$attr:meta])*) => {
        $crate::conformance_suite!(@tests $make, [$(#[$attr])*]
            stale_expected_version_fails_and_writes_nothing
            expectations_on_missing_and_existing_streams
            concurrent_appenders_to_one_stream_exactly_one_wins_per_version
            live_subscriber_sees_every_event_once_in_order_with_16_writers
            read_your_append
            envelope_fields_round_trip
            unicode_and_large_payloads_round_trip
            reappending_stored_event_ids_is_idempotent
            limits_are_refused_with_clear_errors
            global_log_reads_in_bounded_batches
            subscription_resumes_from_its_checkpoint
            verify_passes_on_an_intact_log
            append_many_keeps_the_order_and_each_outcome
        );
    };
    (@tests $make:path, $attrs:tt $($name:ident)*) => {
        $( $crate::conformance_suite!(@one $make, $attrs $name); )*
    };
    (@one $make:path, [$(#[$attr:meta])*] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            let (store, _guard) = $make().await;
            $crate::conformance::$name(store).await;
        }
    };
}

/// Metadata for test events.
#[must_use]
pub fn meta() -> Metadata {
    Metadata {
        occurred_at: Utc::now(),
        actor: Actor::System,
        correlation_id: Uuid::now_v7(),
        causation_id: None,
    }
}

/// A small test event.
#[must_use]
pub fn event(n: u64) -> NewEvent {
    NewEvent::new("TestHappened", 1, &json!({ "n": n }), meta())
}

/// A fresh stream.
#[must_use]
pub fn stream() -> StreamName {
    StreamName::child(ChildId::generate())
}

/// Stale expectation: a typed conflict naming both versions, and nothing written.
pub async fn stale_expected_version_fails_and_writes_nothing<S: EventStore + Clone>(store: S) {
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(0), event(1)])
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let err = store
        .append(&s, ExpectedVersion::Exact(0), vec![event(2)])
        .await
        .unwrap_err();
    match err {
        StoreError::Concurrency {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream, s);
            assert_eq!(expected, ExpectedVersion::Exact(0));
            assert_eq!(actual, Some(1));
        }
        other => panic!("expected a concurrency error, got {other:?}"),
    }
    assert_eq!(store.read_stream_to_end(&s).await.unwrap().len(), 2);
    assert_eq!(store.head().await.unwrap(), head, "nothing was written");
}

/// `NoStream` on an existing stream and `Exact` on a missing one fail; `Any` always appends.
pub async fn expectations_on_missing_and_existing_streams<S: EventStore + Clone>(store: S) {
    let s = stream();
    let err = store
        .append(&s, ExpectedVersion::Exact(0), vec![event(0)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Concurrency { actual: None, .. }),
        "{err:?}"
    );
    let first = store
        .append(&s, ExpectedVersion::Any, vec![event(0)])
        .await
        .unwrap();
    assert_eq!(first.stream_version, 0);
    let err = store
        .append(&s, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Concurrency {
                actual: Some(0),
                ..
            }
        ),
        "{err:?}"
    );
    let second = store
        .append(&s, ExpectedVersion::Any, vec![event(1), event(2)])
        .await
        .unwrap();
    assert_eq!(second.stream_version, 2);
    assert!(second.position > first.position);
}

/// Many appenders racing on one stream with exact expectations: one winner per version.
pub async fn concurrent_appenders_to_one_stream_exactly_one_wins_per_version<
    S: EventStore + Clone,
>(
    store: S,
) {
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..16_u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            for attempt in 0..10_u64 {
                let events = store.read_stream_to_end(&s).await.unwrap();
                let version = events.last().unwrap().version;
                match store
                    .append(
                        &s,
                        ExpectedVersion::Exact(version),
                        vec![event(writer * 100 + attempt)],
                    )
                    .await
                {
                    Ok(outcome) => {
                        assert_eq!(outcome.stream_version, version + 1);
                        wins.push(outcome.stream_version);
                    }
                    Err(StoreError::Concurrency {
                        actual: Some(actual),
                        ..
                    }) => assert!(actual > version),
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            wins
        }));
    }
    let mut won: Vec<u64> = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    won.sort_unstable();
    let expected: Vec<u64> = (1..=won.len() as u64).collect();
    assert_eq!(
        won, expected,
        "exactly one winner for every version, no gaps"
    );
    let events = store.read_stream_to_end(&s).await.unwrap();
    assert_eq!(events.len(), won.len() + 1);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.version, i as u64);
    }
}

/// 16 writers on different streams while a live subscriber runs: each event exactly once, in
/// strictly increasing position order, none skipped. Repeated to shake out races.
pub async fn live_subscriber_sees_every_event_once_in_order_with_16_writers<
    S: EventStore + Clone,
>(
    store: S,
) {
    fn expected_total() -> usize {
        // 16 writers × 20 appends of 1, 2 or 3 events: per writer the sizes cycle with i + writer.
        (0..16_usize)
            .map(|w| (0..20_usize).map(|i| 1 + (i + w) % 3).sum::<usize>())
            .sum()
    }

    for round in 0..5_u64 {
        let start = store.head().await.unwrap();
        let mut subscription = store.subscribe(start);
        let mut writers = Vec::new();
        for writer in 0..16_u64 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let s = stream();
                let mut ids = Vec::new();
                for i in 0..20_u64 {
                    // Mix single-event and batched appends.
                    let events: Vec<NewEvent> = (0..=((i + writer) % 3))
                        .map(|k| event(round * 10_000 + i * 10 + k))
                        .collect();
                    ids.extend(events.iter().map(|e| e.event_id));
                    store
                        .append(&s, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                }
                ids
            }));
        }
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last: Position = start;
            loop {
                let e = tokio::time::timeout(Duration::from_secs(30), subscription.next())
                    .await
                    .expect("subscriber stalled")
                    .unwrap();
                assert!(e.position > last, "position {} after {}", e.position, last);
                last = e.position;
                seen.push(e.event_id);
                if seen.len() == expected_total() {
                    return seen;
                }
            }
        });
        let mut written = HashSet::new();
        for w in writers {
            written.extend(w.await.unwrap());
        }
        let seen = reader.await.unwrap();
        let seen_set: HashSet<Uuid> = seen.iter().copied().collect();
        assert_eq!(seen_set.len(), seen.len(), "an event was delivered twice");
        assert_eq!(
            seen_set, written,
            "round {round}: delivered events differ from written ones"
        );
    }
}

/// An append is readable at once, by stream and in the global log at its position.
pub async fn read_your_append<S: EventStore + Clone>(store: S) {
    let s = stream();
    let e = event(7);
    let id = e.event_id;
    let outcome = store
        .append(&s, ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();
    let by_stream = store.read_stream(&s, 0, 10).await.unwrap();
    assert_eq!(by_stream.len(), 1);
    assert_eq!(by_stream[0].event_id, id);
    let global = store.read_all(outcome.position - 1, 1).await.unwrap();
    assert_eq!(global[0].event_id, id);
    assert_eq!(global[0].position, outcome.position);
    assert!(store.head().await.unwrap() >= outcome.position);
}

/// Every envelope field survives the round trip.
pub async fn envelope_fields_round_trip<S: EventStore + Clone>(store: S) {
    let s = stream();
    let person = PersonId::generate();
    let cause = Uuid::now_v7();
    let m = Metadata {
        occurred_at: Utc::now(),
        actor: Actor::Person(person),
        correlation_id: Uuid::now_v7(),
        causation_id: Some(cause),
    };
    let a = NewEvent::new("ConsentDecided", 1, &json!({"b": 2, "a": [1, 2]}), m);
    let b = NewEvent::new(
        "ChildEnrolled",
        2,
        &json!({}),
        Metadata {
            actor: Actor::Operator,
            causation_id: None,
            ..m
        },
    );
    store
        .append(&s, ExpectedVersion::NoStream, vec![a.clone(), b.clone()])
        .await
        .unwrap();
    let read = store.read_stream_to_end(&s).await.unwrap();
    for (stored, sent) in read.iter().zip([&a, &b]) {
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.stream, s);
        assert_eq!(stored.event_type, sent.event_type);
        assert_eq!(stored.schema_version, sent.schema_version);
        assert_eq!(stored.occurred_at, sent.occurred_at);
        assert_eq!(stored.actor, sent.actor);
        assert_eq!(stored.correlation_id, sent.correlation_id);
        assert_eq!(stored.causation_id, sent.causation_id);
        assert_eq!(stored.payload, sent.payload);
        assert!(stored.recorded_at >= sent.occurred_at - chrono::Duration::seconds(5));
    }
    assert_eq!((read[0].version, read[1].version), (0, 1));
    assert_eq!(
        read[1].position,
        read[0].position + 1,
        "one append is contiguous in the log"
    );
    assert_eq!(
        read[0].hash,
        read[0].expected_hash(&crate::EventHash::GENESIS)
    );
    assert_eq!(read[1].hash, read[1].expected_hash(&read[0].hash));
    assert_eq!(
        read[0].payload, r#"{"a":[1,2],"b":2}"#,
        "payloads are stored canonically"
    );
}

/// Unicode and payloads close to the limit.
pub async fn unicode_and_large_payloads_round_trip<S: EventStore + Clone>(store: S) {
    let s = stream();
    let text = "Juf Ærøskøbing — “groep 5b” 👩‍🏫🧒🏽 ĳsje café \u{1F600} 中文 עברית";
    let big = "x".repeat(MAX_EVENT_BYTES - 100);
    let events = vec![
        NewEvent::new("TestHappened", 1, &json!({ "text": text }), meta()),
        NewEvent::new("TestHappened", 1, &json!({ "big": big }), meta()),
    ];
    store
        .append(&s, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    let read = store.read_stream_to_end(&s).await.unwrap();
    let first: serde_json::Value = serde_json::from_str(&read[0].payload).unwrap();
    assert_eq!(first["text"], text);
    let second: serde_json::Value = serde_json::from_str(&read[1].payload).unwrap();
    assert_eq!(second["big"].as_str().unwrap().len(), big.len());
}

/// Re-appending stored ids returns the original outcome and writes nothing twice.
pub async fn reappending_stored_event_ids_is_idempotent<S: EventStore + Clone>(store: S) {
    let s = stream();
    let events = vec![event(1), event(2)];
    let first = store
        .append(&s, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    let again = store
        .append(&s, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert_eq!(first, again, "same result");
    assert_eq!(
        store.read_stream_to_end(&s).await.unwrap().len(),
        2,
        "nothing written twice"
    );
    let mixed = vec![events[1].clone(), event(3)];
    let err = store
        .append(&s, ExpectedVersion::Any, mixed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyMismatch { .. }),
        "{err:?}"
    );
    let elsewhere = store
        .append(&stream(), ExpectedVersion::Any, vec![events[0].clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(elsewhere, StoreError::IdempotencyMismatch { .. }),
        "an id belongs to one stream: {elsewhere:?}"
    );
}

/// Oversized events, empty appends and malformed stream names are refused clearly.
pub async fn limits_are_refused_with_clear_errors<S: EventStore + Clone>(store: S) {
    let s = stream();
    let huge = NewEvent::new(
        "TestHappened",
        1,
        &json!({ "big": "x".repeat(MAX_EVENT_BYTES + 1) }),
        meta(),
    );
    let id = huge.event_id;
    let err = store
        .append(&s, ExpectedVersion::Any, vec![event(0), huge])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::EventTooLarge { event_id, limit: MAX_EVENT_BYTES, .. } if event_id == id),
        "{err:?}"
    );
    assert!(err.to_string().contains("limit"));
    let err = store
        .append(&s, ExpectedVersion::Any, vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EmptyAppend));
    let e = event(1);
    let err = store
        .append(&s, ExpectedVersion::Any, vec![e.clone(), e])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateEventId { .. }));
    assert!(
        store.read_stream_to_end(&s).await.unwrap().is_empty(),
        "nothing of a refused append is written"
    );
    let err: StoreError = "child-42".parse::<StreamName>().unwrap_err().into();
    assert!(matches!(err, StoreError::MalformedStreamName(_)));
    assert!(err.to_string().contains("child-42"));
}

/// The global log is read in batches of at most the requested size, in order, to the end.
pub async fn global_log_reads_in_bounded_batches<S: EventStore + Clone>(store: S) {
    let start = store.head().await.unwrap();
    let s = stream();
    for chunk in 0..5_u64 {
        let events: Vec<NewEvent> = (0..100).map(|i| event(chunk * 100 + i)).collect();
        store
            .append(&s, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let mut after = start;
    let mut total = 0;
    loop {
        let batch = store.read_all(after, 64).await.unwrap();
        assert!(batch.len() <= 64);
        let Some(last) = batch.last() else { break };
        assert!(batch.windows(2).all(|w| w[0].position < w[1].position));
        after = last.position;
        total += batch.iter().filter(|e| e.stream == s).count();
    }
    assert_eq!(total, 500);
}

/// A subscription started from a checkpoint delivers exactly what came after it.
pub async fn subscription_resumes_from_its_checkpoint<S: EventStore + Clone>(store: S) {
    let s = stream();
    let first = store
        .append(&s, ExpectedVersion::NoStream, vec![event(0), event(1)])
        .await
        .unwrap();
    let mut sub = store.subscribe(first.position - 1);
    let e = sub.next().await.unwrap();
    assert_eq!(e.position, first.position);
    assert_eq!(sub.checkpoint(), first.position);
    let later = store
        .append(&s, ExpectedVersion::Exact(1), vec![event(2)])
        .await
        .unwrap();
    let mut resumed = store.subscribe(sub.checkpoint());
    let next = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.position, later.position);
}

/// `verify` passes on a log written only through the port.
pub async fn verify_passes_on_an_intact_log<S: EventStore + Clone>(store: S) {
    for _ in 0..3 {
        let s = stream();
        store
            .append(&s, ExpectedVersion::NoStream, vec![event(0), event(1)])
            .await
            .unwrap();
        store
            .append(&s, ExpectedVersion::Exact(1), vec![event(2)])
            .await
            .unwrap();
    }
    let head = store.head().await.unwrap();
    let report = store.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.findings);
    assert!(report.streams_checked >= 3);
    assert!(report.events_checked >= 9);
    assert!(report.head >= head, "verify read the log to its head");
    let expected = if store.keeps_global_chain() {
        crate::GlobalChain::Checked
    } else {
        crate::GlobalChain::NotAvailable
    };
    assert_eq!(report.global_chain, expected);
    assert_eq!(report.head_hash.is_some(), store.keeps_global_chain());
}

/// `append_many`: every append its own outcome (a refused one leaves the others to commit, a
/// later one may build on an earlier one of the same list), the log in the order asked, also
/// for more appends than a writer's group takes at once.
pub async fn append_many_keeps_the_order_and_each_outcome<S: EventStore + Clone>(store: S) {
    let start = store.head().await.unwrap();
    let (a, b, c) = (stream(), stream(), stream());
    let request = |stream, expected, events| AppendRequest {
        stream,
        expected,
        events,
    };
    let mixed = vec![
        request(a, ExpectedVersion::NoStream, vec![event(0), event(1)]),
        request(b, ExpectedVersion::Exact(5), vec![event(2)]),
        request(a, ExpectedVersion::Exact(1), vec![event(3)]),
        request(c, ExpectedVersion::Any, vec![]),
        request(c, ExpectedVersion::NoStream, vec![event(4)]),
    ];
    let outcomes = store.append_many(mixed).await;
    assert_eq!(outcomes.len(), 5);
    assert_eq!(outcomes[0].as_ref().unwrap().stream_version, 1);
    assert!(
        matches!(&outcomes[1], Err(StoreError::Concurrency { stream, actual: None, .. }) if *stream == b),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2].as_ref().unwrap().stream_version, 2);
    assert!(matches!(outcomes[3], Err(StoreError::EmptyAppend)));
    assert_eq!(outcomes[4].as_ref().unwrap().stream_version, 0);
    let positions: Vec<Position> = [0, 2, 4]
        .iter()
        .map(|&i| outcomes[i].as_ref().unwrap().position)
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let ns = |events: Vec<RecordedEvent>| -> Vec<u64> {
        events
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(ns(store.read_stream_to_end(&a).await.unwrap()), [0, 1, 3]);
    assert!(store.read_stream_to_end(&b).await.unwrap().is_empty());
    assert_eq!(ns(store.read_stream_to_end(&c).await.unwrap()), [4]);

    // More appends than one group commit takes (SQLite's writer takes up to 8,192, PostgreSQL's
    // 512): the log keeps the order asked.
    let streams: Vec<StreamName> = (0..9_000).map(|_| stream()).collect();
    let asked: std::collections::HashSet<StreamName> = streams.iter().copied().collect();
    let many = streams
        .iter()
        .enumerate()
        .map(|(i, s)| request(*s, ExpectedVersion::NoStream, vec![event(i as u64)]))
        .collect();
    let outcomes = store.append_many(many).await;
    assert!(outcomes.iter().all(Result::is_ok));
    let mut logged = Vec::new();
    let mut after = start;
    loop {
        let batch = store.read_all(after, 500).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        logged.extend(batch);
    }
    let order: Vec<StreamName> = logged
        .iter()
        .map(|e| e.stream)
        .filter(|s| asked.contains(s))
        .collect();
    assert_eq!(order, streams);
}
