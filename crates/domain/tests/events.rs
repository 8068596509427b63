//! The stored form of events: stable names, schema versions, upcasting.

use kring_domain::event::current_schema_version;
use kring_domain::school::SchoolEvent;
use kring_domain::{DecodeError, Event};
use serde_json::json;
use std::collections::BTreeSet;

#[test]
fn event_type_names_are_unique_across_aggregates() {
    let all: Vec<&str> = Event::all_types().collect();
    let unique: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "a type name is used twice: {all:?}"
    );
    assert!(all.len() >= 40, "the catalogue shrank to {}", all.len());
}

#[test]
fn child_enrolled_v1_upcasts_to_first_name_and_initial() {
    let school_id = uuid::Uuid::now_v7();
    let child_id = uuid::Uuid::now_v7();
    let group_id = uuid::Uuid::now_v7();
    // As written by schema version 1, which kept the full last name.
    let v1 = json!({
        "school_id": school_id, "child_id": child_id, "group_id": group_id,
        "first_name": "Sanne", "last_name": "van der Berg"
    });
    let event = Event::decode("ChildEnrolled", 1, v1).expect("v1 decodes");
    let Event::School(SchoolEvent::ChildEnrolled(enrolled)) = &event else {
        panic!("decoded to {event:?}");
    };
    assert_eq!(
        enrolled.first_name.plain().map(String::as_str),
        Some("Sanne")
    );
    assert_eq!(enrolled.last_initial.plain().map(String::as_str), Some("V"));
    assert_eq!(
        enrolled.last_initial.subject(),
        kring_domain::access::Subject::Child(kring_domain::ChildId::from_uuid(child_id))
    );
    // Written back, it is the current version and round-trips without the full name.
    assert_eq!(
        event.schema_version(),
        current_schema_version("ChildEnrolled")
    );
    assert_eq!(event.schema_version(), 2);
    let payload = event.to_payload().expect("payload");
    assert!(payload.get("last_name").is_none());
    assert_eq!(
        Event::decode("ChildEnrolled", 2, payload).expect("v2 decodes"),
        event
    );
}

#[test]
fn decoding_refuses_unknown_types_future_versions_and_bad_payloads() {
    assert!(
        matches!(Event::decode("PhotoLiked", 1, json!({})), Err(DecodeError::UnknownType(t)) if t == "PhotoLiked")
    );
    assert!(matches!(
        Event::decode("ConsentDecided", 9, json!({})),
        Err(DecodeError::FutureVersion {
            found: 9,
            current: 1,
            ..
        })
    ));
    assert!(matches!(
        Event::decode("ConsentDecided", 1, json!({"granted": "yes"})),
        Err(DecodeError::Payload { .. })
    ));
}

#[test]
fn payloads_use_snake_case_purposes_and_roles() {
    let school_id = kring_domain::SchoolId::generate();
    let person_id = kring_domain::PersonId::generate();
    let subject = kring_domain::access::Subject::Person(person_id);
    let event = Event::from(SchoolEvent::from(kring_domain::school::StaffJoined {
        school_id,
        person_id,
        role: kring_domain::school::StaffRole::ComplianceOfficer,
        display_name: kring_domain::Sealed::new(subject, "Mr. Jansen".into()),
        email: kring_domain::Sealed::new(subject, "jansen@school.example".into()),
        identity: None,
    }));
    assert_eq!(event.event_type(), "StaffJoined");
    let payload = event.to_payload().expect("payload");
    assert_eq!(payload["role"], "compliance_officer");
    // Staff added without a single sign-on identity store no field for it: events written
    // before identities existed and after read the same.
    assert!(payload.get("identity").is_none(), "{payload}");
}

#[test]
fn decoding_from_text_matches_decoding_from_values() {
    let world = kring_domain::simulation::World::with_classes(1, 2, 1);
    for r in &world.log {
        let payload = r.event.to_payload().unwrap();
        let text = payload.to_string();
        let from_text =
            Event::decode_str(r.event.event_type(), r.event.schema_version(), &text).unwrap();
        assert_eq!(from_text, r.event);
    }
    let v1 = r#"{"school_id":"0190a6f2-7c3e-7000-8000-000000000001","child_id":"0190a6f2-7c3e-7000-8000-000000000002","group_id":"0190a6f2-7c3e-7000-8000-000000000003","first_name":"Sanne","last_name":"de Boer"}"#;
    let Event::School(SchoolEvent::ChildEnrolled(e)) =
        Event::decode_str("ChildEnrolled", 1, v1).unwrap()
    else {
        panic!()
    };
    assert_eq!(e.last_initial.plain().map(String::as_str), Some("D"));
}

/// Removals of schema version 1 kept the reason as plain text. Read now, a person's text is
/// their sealed text (plain until a vault seals it: shown while they exist, `[erased]` after),
/// the system's texts are their fixed values, and the operator's free text is not kept.
#[test]
fn removal_reasons_of_v1_upcast_to_a_sealed_text_or_a_fixed_value() {
    use kring_domain::access::Subject;
    use kring_domain::post::{
        PostEvent, RemovalReason, INTERRUPTED_REMOVAL, SHOWS_AN_ERASED_CHILD,
    };
    let post_id = uuid::Uuid::now_v7();
    let media_id = uuid::Uuid::now_v7();
    let person = uuid::Uuid::now_v7();
    let reason_of = |event_type: &str, reason: &str, by: serde_json::Value| {
        let v1 = json!({ "post_id": post_id, "media_id": media_id, "reason": reason, "by": by });
        match Event::decode(event_type, 1, v1).expect("v1 decodes") {
            Event::Post(PostEvent::PostRemoved(e)) => e.reason,
            Event::Post(PostEvent::MediaRemoved(e)) => e.reason,
            other => panic!("decoded to {other:?}"),
        }
    };
    let by_person = json!({"kind": "person", "person_id": person});
    for event_type in ["PostRemoved", "MediaRemoved"] {
        let RemovalReason::Given { text } =
            reason_of(event_type, "Sam's ouders", by_person.clone())
        else {
            panic!("a person's text stays theirs");
        };
        assert_eq!(
            text.subject(),
            Subject::Person(kring_domain::PersonId::from_uuid(person))
        );
        assert_eq!(text.plain().map(String::as_str), Some("Sam's ouders"));
        let system = json!({"kind": "system"});
        assert_eq!(
            reason_of(event_type, SHOWS_AN_ERASED_CHILD, system.clone()),
            RemovalReason::ShowsAnErasedChild
        );
        assert_eq!(
            reason_of(event_type, INTERRUPTED_REMOVAL, system.clone()),
            RemovalReason::InterruptedRemoval
        );
        assert_eq!(
            reason_of(event_type, "iets anders", system),
            RemovalReason::NotKept
        );
        assert_eq!(
            reason_of(
                event_type,
                "Juridische grond: Sam",
                json!({"kind": "operator"})
            ),
            RemovalReason::NotKept
        );
        assert_eq!(current_schema_version(event_type), 2);
    }
}

/// Access-log entries of schema version 1 kept the reason as text; read now, the route is a typed
/// value that shows as the same text, and any other text is not kept.
#[test]
fn access_reasons_of_v1_upcast_to_the_route_or_not_kept() {
    use kring_domain::access::{AccessEvent, AccessReason};
    let post_id = uuid::Uuid::now_v7();
    let decode = |subject: serde_json::Value, reason: &str| {
        let v1 = json!({ "subject": subject, "accessor": {"kind": "operator"}, "reason": reason,
            "at": "2026-01-05T10:00:00Z" });
        match Event::decode("AccessLogged", 1, v1).expect("v1 decodes") {
            Event::Access(AccessEvent::AccessLogged(e)) => {
                (e.reason, e.reason.describe(&e.subject))
            }
            other => panic!("decoded to {other:?}"),
        }
    };
    let post = json!({"kind": "post", "id": post_id});
    let child = json!({"kind": "child", "id": post_id});
    let route = format!("GET /v1/posts/{post_id}");
    assert_eq!(
        decode(post.clone(), &route),
        (AccessReason::ReadPost, route.clone())
    );
    let history = "GET /v1/children/{child_id}/consents/history";
    assert_eq!(
        decode(child, history),
        (AccessReason::ReadConsentHistory, history.to_owned())
    );
    assert_eq!(decode(post, "support ticket: Sam").0, AccessReason::NotKept);
    assert_eq!(current_schema_version("AccessLogged"), 2);
}

/// A meeting round opened before its place was sealed (schema version 1) kept the room's name
/// or the link in the clear; read now, the words are the sealed text of who opened the round,
/// and the kind stays as it was.
#[test]
fn a_meeting_rounds_place_of_v1_upcasts_to_the_openers_sealed_text() {
    use kring_domain::access::Subject;
    use kring_domain::meeting::{MeetingEvent, SealedPlace};
    let by = uuid::Uuid::now_v7();
    let opened = |place: serde_json::Value| {
        let v1 = json!({
            "round_id": uuid::Uuid::now_v7(), "school_id": uuid::Uuid::now_v7(),
            "group_ids": [uuid::Uuid::now_v7()], "title": "Tienminutengesprekken",
            "per": "child", "place": place, "book_until": "2026-12-01T17:00:00Z",
            "slots": [], "by": by,
        });
        match Event::decode("MeetingRoundOpened", 1, v1).expect("v1 decodes") {
            Event::Meeting(MeetingEvent::MeetingRoundOpened(e)) => e.place,
            other => panic!("decoded to {other:?}"),
        }
    };
    let room = opened(json!({"kind": "room", "name": "Lokaal 4"}));
    let link = opened(json!({"kind": "online", "url": "https://meet.example/abc"}));
    assert!(matches!(room, SealedPlace::Room { .. }));
    assert!(matches!(link, SealedPlace::Online { .. }));
    for (place, text) in [(room, "Lokaal 4"), (link, "https://meet.example/abc")] {
        assert_eq!(
            place.text().subject(),
            Subject::Person(kring_domain::PersonId::from_uuid(by))
        );
        assert_eq!(place.text().plain().map(String::as_str), Some(text));
    }
    assert_eq!(current_schema_version("MeetingRoundOpened"), 2);
}
