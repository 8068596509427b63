//! Data-subject rights and audit over real HTTP, on SQLite and on PostgreSQL: export, erasure
//! (also when interrupted), the hash-chain verification and the access log.

#![allow(clippy::unwrap_used)]

use crate::school_server;
use kring_api::erasure::{sweep, SweepReport};
use kring_domain::access::Subject;
use kring_domain::invitation::{self, InvitationAction, InvitationContext};
use kring_domain::person::{self, PersonAction, PersonContext};
use kring_domain::school::SchoolAction;
use kring_domain::{Actor, Command, InvitationId, PersonId, StreamName};
use kring_store::EventStore;
use school_server::{Api, School};
use serde_json::{json, Value};
use uuid::Uuid;

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: Api::postgres;
    erasure_shows_erased_everywhere_and_keeps_the_consent_history,
    only_the_operator_and_the_schools_director_erase,
    an_interrupted_erasure_or_approval_is_completed_by_repeating_or_by_the_sweep,
    export_holds_the_callers_data_opened_and_nothing_of_other_parents,
    an_export_reads_old_events_as_every_reader_does,
    a_removal_reason_is_sealed_for_its_remover_shown_in_their_export_and_erased_with_them,
    an_old_plain_removal_reason_is_read_as_sealed_for_its_remover,
    verify_walks_every_chain_for_compliance_officers_and_the_operator,
    reads_by_compliance_officers_and_the_operator_are_in_the_access_log,
);

fn find<'a>(list: &'a Value, key: &str, id: impl ToString) -> &'a Value {
    let id = id.to_string();
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v[key].as_str() == Some(id.as_str()))
        .unwrap_or_else(|| panic!("{key} {id} not in {list}"))
}

async fn erasure_shows_erased_everywhere_and_keeps_the_consent_history(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_a, "Papa").await;
    let consent = format!("/v1/children/{}/consents/group_communication", s.child_a);
    api.put(&consent, &api.person(mum), json!({"granted": true}))
        .await
        .expect(200);
    api.put(&consent, &api.person(mum), json!({"granted": false}))
        .await
        .expect(200);

    let r = api
        .post(
            &format!("/v1/people/{mum}/erasure"),
            Some(&api.person(s.director)),
            json!({}),
        )
        .await
        .expect(202);
    let erased_at = r.position();
    assert_eq!(
        api.event_types(StreamName::person(mum)).await,
        vec!["PersonErasureRequested", "PersonErased"]
    );
    assert_eq!(
        api.event_types(StreamName::school(s.school_id))
            .await
            .last()
            .map(String::as_str),
        Some("GuardianUnlinked"),
        "the erasure ended her guardianship"
    );
    let me = api
        .get(
            &format!("/v1/me?min_position={erased_at}"),
            &api.person(mum),
        )
        .await
        .expect(200);
    assert_eq!(me.body["display_name"], "[erased]");
    assert_eq!(me.body["email"], "[erased]");
    assert!(!me.text.contains("mama@home.example"));
    let group = api
        .get_fresh(&format!("/v1/groups/{}", s.group), &api.person(s.teacher))
        .await
        .expect(200);
    // The erasure ended every link of hers: she is no longer among the group's guardians.
    assert!(!group.text.contains(&mum.to_string()));
    assert!(!group.text.contains("Mama"));

    // Repeating is harmless: nothing more is written.
    let head = api.head().await;
    api.post(
        &format!("/v1/people/{mum}/erasure"),
        Some(&api.operator()),
        json!({}),
    )
    .await
    .expect(202);
    assert_eq!(api.head().await, head);

    let r = api
        .post(
            &format!("/v1/children/{}/erasure", s.child_a),
            Some(&api.operator()),
            json!({}),
        )
        .await
        .expect(202);
    assert_eq!(
        api.event_types(StreamName::child(s.child_a)).await,
        vec![
            "ConsentDecided",
            "ConsentDecided",
            "ChildErasureRequested",
            "ChildErased"
        ]
    );
    let group = api
        .get(
            &format!("/v1/groups/{}?min_position={}", s.group, r.position()),
            &api.person(s.teacher),
        )
        .await
        .expect(200);
    let child = find(&group.body["children"], "child_id", s.child_a);
    assert_eq!(
        (&child["first_name"], &child["last_initial"]),
        (&json!("[erased]"), &json!("[erased]"))
    );
    assert_eq!(
        find(&group.body["children"], "child_id", s.child_b)["first_name"],
        "Daan",
        "only the erased child"
    );
    let me = api.get_fresh("/v1/me", &api.person(dad)).await.expect(200);
    assert_eq!(me.body["children"][0]["first_name"], "[erased]");

    // The school can still demonstrate who decided what, when.
    let history = api
        .get_fresh(
            &format!("/v1/children/{}/consents/history", s.child_a),
            &api.person(s.officer),
        )
        .await
        .expect(200);
    let entries = history.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["guardian_id"] == json!(mum)));
    assert_eq!(
        entries
            .iter()
            .map(|e| e["granted"].clone())
            .collect::<Vec<_>>(),
        vec![json!(true), json!(false)]
    );
    let verify = api
        .get("/v1/audit/verify", &api.person(s.officer))
        .await
        .expect(200);
    assert_eq!(verify.body["ok"], true, "erasure leaves every chain intact");
}

async fn only_the_operator_and_the_schools_director_erase(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let other_school = School::build(&api, "Het Anker").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let head = api.head().await;
    let person = format!("/v1/people/{mum}/erasure");
    let child = format!("/v1/children/{}/erasure", s.child_a);
    for who in [s.teacher, s.officer, mum, other_school.director] {
        let r = api
            .post(&person, Some(&api.person(who)), json!({}))
            .await
            .expect(403);
        assert_eq!(r.code(), "forbidden");
    }
    for who in [s.teacher, s.officer, mum] {
        api.post(&child, Some(&api.person(who)), json!({}))
            .await
            .expect(403);
    }
    // The child's existence is private to its school.
    api.post(&child, Some(&api.person(other_school.director)), json!({}))
        .await
        .expect(404);
    api.post(&child, None, json!({})).await.expect(401);
    api.post(
        &format!("/v1/people/{}/erasure", PersonId::generate()),
        Some(&api.operator()),
        json!({}),
    )
    .await
    .expect(404);
    api.post(
        "/v1/people/niet-een-id/erasure",
        Some(&api.operator()),
        json!({}),
    )
    .await
    .expect(400);
    assert_eq!(api.head().await, head, "nothing written");
    assert!(!api
        .running
        .state
        .system
        .vault
        .is_erased(Subject::Person(mum))
        .await
        .unwrap());
    api.post(&child, Some(&api.person(s.director)), json!({}))
        .await
        .expect(202);
    assert!(api
        .running
        .state
        .system
        .vault
        .is_erased(Subject::Child(s.child_a))
        .await
        .unwrap());
}

async fn an_interrupted_erasure_or_approval_is_completed_by_repeating_or_by_the_sweep(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_b, "Papa").await;
    let state = &api.running.state;
    let roster = state.exec.school(s.school_id).await.unwrap().state;

    // A process that stopped right after recording the requests: keys still there.
    for p in [mum, dad] {
        state
            .exec
            .run::<person::Person, _>(
                StreamName::person(p),
                Actor::Operator,
                Uuid::now_v7(),
                |st, now| {
                    person::decide(
                        &PersonContext {
                            person: st,
                            school: &roster,
                        },
                        Command::new(
                            Actor::Operator,
                            PersonAction::RequestErasure { person_id: p },
                        ),
                        now,
                    )
                },
            )
            .await
            .unwrap();
    }
    // …and one that stopped between approving an invitation and linking the guardian.
    let (invitation, code) = s.invite(&api, s.child_c, "opa@home.example").await;
    let accepted = api
        .post(
            "/v1/invitations/accept",
            None,
            json!({"code": code, "display_name": "Opa"}),
        )
        .await
        .expect(200);
    let grandpa: PersonId = accepted.body["person_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let teacher2 = Actor::Person(s.teacher2);
    let roster = state.exec.school(s.school_id).await.unwrap().state;
    state
        .exec
        .run::<invitation::Invitation, _>(
            StreamName::invitation(InvitationId::from_uuid(invitation)),
            teacher2,
            Uuid::now_v7(),
            |inv, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: inv,
                        school: &roster,
                    },
                    Command::new(teacher2, InvitationAction::Approve { child_id: None }),
                    now,
                )
            },
        )
        .await
        .unwrap();
    // A third, whose child left the school before the link: it cannot be completed, and it
    // must not keep the others from completing.
    let (stranded, code) = s.invite(&api, s.child_b, "oma@home.example").await;
    api.post(
        "/v1/invitations/accept",
        None,
        json!({"code": code, "display_name": "Oma"}),
    )
    .await
    .expect(200);
    let teacher = Actor::Person(s.teacher);
    state
        .exec
        .run::<invitation::Invitation, _>(
            StreamName::invitation(InvitationId::from_uuid(stranded)),
            teacher,
            Uuid::now_v7(),
            |inv, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: inv,
                        school: &roster,
                    },
                    Command::new(teacher, InvitationAction::Approve { child_id: None }),
                    now,
                )
            },
        )
        .await
        .unwrap();
    let director = Actor::Person(s.director);
    state
        .exec
        .run_school(s.school_id, director, Uuid::now_v7(), |school, now| {
            kring_domain::school::decide(
                school,
                Command::new(
                    director,
                    SchoolAction::UnenrollChild {
                        child_id: s.child_b,
                    },
                ),
                now,
            )
        })
        .await
        .unwrap();
    let me = api
        .get_fresh("/v1/me", &api.person(grandpa))
        .await
        .expect(200);
    assert_eq!(
        me.body["children"],
        json!([]),
        "approved but not linked yet"
    );
    assert_eq!(
        api.get_fresh("/v1/me", &api.person(mum)).await.body["display_name"],
        "Mama",
        "requested but not erased yet"
    );

    // Repeating the request completes one erasure…
    api.post(
        &format!("/v1/people/{mum}/erasure"),
        Some(&api.operator()),
        json!({}),
    )
    .await
    .expect(202);
    assert_eq!(
        api.event_types(StreamName::person(mum)).await,
        vec!["PersonErasureRequested", "PersonErased"]
    );
    assert_eq!(
        api.event_types(StreamName::school(s.school_id))
            .await
            .last()
            .map(String::as_str),
        Some("GuardianUnlinked"),
        "the erasure ended her guardianship"
    );
    // …and the start-up sweep completes the rest.
    let report = sweep(state).await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            people_erased: 1,
            children_erased: 0,
            guardians_linked: 1,
            erasures_from_the_ledger: 0,
            removals_recorded: 0,
            failed: 1
        }
    );
    assert!(state
        .system
        .vault
        .is_erased(Subject::Person(dad))
        .await
        .unwrap());
    assert_eq!(
        api.event_types(StreamName::person(dad)).await,
        vec!["PersonErasureRequested", "PersonErased"]
    );
    let me = api.get_fresh("/v1/me", &api.person(dad)).await.expect(200);
    assert_eq!(me.body["display_name"], "[erased]");
    let me = api
        .get_fresh("/v1/me", &api.person(grandpa))
        .await
        .expect(200);
    assert_eq!(
        me.body["children"][0]["child_id"],
        json!(s.child_c),
        "the sweep linked the approved guardian"
    );
    assert_eq!(
        sweep(state).await.unwrap(),
        SweepReport {
            failed: 1,
            ..SweepReport::default()
        },
        "only the stranded link is left, tried again at every start"
    );
}

/// Publishes a text-only post to the teacher's group: its id.
async fn publish(api: &Api, s: &School, body: &str) -> Uuid {
    let r = api
        .post(
            &format!("/v1/groups/{}/posts", s.group),
            Some(&api.person(s.teacher)),
            json!({"body": body, "media": []}),
        )
        .await
        .expect(201);
    r.body["post_id"].as_str().unwrap().parse().unwrap()
}

/// The stored payload of the last event of `event_type` in `stream`: (schema version, text).
async fn stored(api: &Api, stream: StreamName, event_type: &str) -> (u16, String) {
    use kring_store::EventStoreExt;
    let events = api
        .running
        .state
        .system
        .store
        .read_stream_to_end(&stream)
        .await
        .unwrap();
    let e = events
        .into_iter()
        .rev()
        .find(|e| e.event_type == event_type)
        .unwrap_or_else(|| panic!("no {event_type} in {stream}"));
    (e.schema_version, e.payload)
}

/// The payload of the last event of `event_type` in `stream` as every reader reads it: decoded
/// (an older schema version upcast), every sealed field opened through the vault.
async fn as_read(api: &Api, stream: StreamName, event_type: &str) -> Value {
    let (version, text) = stored(api, stream, event_type).await;
    let event = kring_domain::Event::decode_str(event_type, version, &text).unwrap();
    let mut payload = event.to_payload().unwrap();
    api.running
        .state
        .system
        .vault
        .open_value(&mut payload)
        .await
        .unwrap();
    payload
}

/// Free text typed when removing a post can name a child: it rests sealed for the person who
/// typed it, is theirs to read in their export, and is erased with them. The operator, no data
/// subject, gives no free text.
async fn a_removal_reason_is_sealed_for_its_remover_shown_in_their_export_and_erased_with_them(
    api: Api,
) {
    let s = School::build(&api, "De Regenboog").await;
    let first = publish(&api, &s, "Uitje naar het bos").await;
    let second = publish(&api, &s, "Schoolreis").await;
    let reason = "Sam's ouders vroegen het";
    let delete = |post: Uuid, token: String, body: Value| {
        let api = &api;
        async move {
            api.call(
                reqwest::Method::DELETE,
                &format!("/v1/posts/{post}"),
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    // Refused, changing nothing: a person without a reason, the operator with free text.
    let refused = delete(first, api.person(s.teacher), json!({}))
        .await
        .expect(422);
    assert_eq!(refused.code(), "validation_failed");
    let refused = delete(
        second,
        api.operator(),
        json!({"reason": "Juridisch verzoek over Sam"}),
    )
    .await
    .expect(422);
    assert_eq!(refused.code(), "validation_failed", "{}", refused.text);
    assert!(refused.text.contains("operator"), "{}", refused.text);
    assert_eq!(
        api.event_types(StreamName::post(first.into())).await,
        vec!["PostPublished"]
    );

    delete(first, api.person(s.teacher), json!({"reason": reason}))
        .await
        .expect(200);
    delete(second, api.operator(), json!({})).await.expect(200);

    // At rest: sealed for the teacher, never the text.
    let (version, text) = stored(&api, StreamName::post(first.into()), "PostRemoved").await;
    assert_eq!(version, 2);
    assert!(!text.contains(reason), "{text}");
    let payload: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(payload["reason"]["kind"], "given");
    assert_eq!(
        payload["reason"]["text"]["$sealed"]["subject"],
        json!({"kind": "person", "id": s.teacher})
    );
    assert_eq!(
        as_read(&api, StreamName::post(second.into()), "PostRemoved").await["reason"],
        json!({"kind": "by_the_operator"})
    );

    // Readable by the teacher, in their export; in no one else's.
    let export = api
        .get_fresh("/v1/me/export", &api.person(s.teacher))
        .await
        .expect(200);
    let removed = events_of_type(&export.body, "PostRemoved");
    assert_eq!(removed.len(), 1, "{}", export.text);
    assert_eq!(removed[0]["stream"], format!("post-{first}"));
    assert_eq!(
        removed[0]["payload"]["reason"],
        json!({"kind": "given", "text": reason})
    );
    assert_eq!(
        removed[0]["payload"]["by"],
        json!({"kind": "person", "person_id": s.teacher})
    );
    for other in [s.director, s.teacher2] {
        let export = api
            .get_fresh("/v1/me/export", &api.person(other))
            .await
            .expect(200);
        assert!(events_of_type(&export.body, "PostRemoved").is_empty());
        assert!(!export.text.contains(reason));
    }

    // The teacher is erased: the reason is gone for every reader; the removal stays.
    api.post(
        &format!("/v1/people/{}/erasure", s.teacher),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    let read = as_read(&api, StreamName::post(first.into()), "PostRemoved").await;
    assert_eq!(read["reason"], json!({"kind": "given", "text": "[erased]"}));
    assert_eq!(read["post_id"], json!(first));
}

/// A removal written before reasons were sealed kept its reason in plain text. It is read as
/// the sealed text of its remover: in their export while they exist, `[erased]` after.
async fn an_old_plain_removal_reason_is_read_as_sealed_for_its_remover(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let post = publish(&api, &s, "Uitje naar het bos").await;
    let reason = "Sam's ouders vroegen het";
    let v1 = json!({
        "post_id": post, "reason": reason,
        "by": {"kind": "person", "person_id": s.teacher}
    });
    api.running
        .state
        .system
        .store
        .append(
            &StreamName::post(post.into()),
            kring_store::ExpectedVersion::Any,
            vec![kring_store::NewEvent::new(
                "PostRemoved",
                1,
                &v1,
                kring_store::Metadata::new(
                    chrono::Utc::now(),
                    kring_domain::Actor::Person(s.teacher),
                ),
            )],
        )
        .await
        .unwrap();
    api.caught_up().await;
    let gone = api
        .get_fresh(&format!("/v1/posts/{post}"), &api.person(s.teacher))
        .await;
    assert_eq!(gone.status.as_u16(), 404, "the old removal counts");

    let export = api
        .get_fresh("/v1/me/export", &api.person(s.teacher))
        .await
        .expect(200);
    let removed = events_of_type(&export.body, "PostRemoved");
    assert_eq!(removed.len(), 1, "{}", export.text);
    assert_eq!(removed[0]["schema_version"], 2);
    assert_eq!(
        removed[0]["payload"]["reason"],
        json!({"kind": "given", "text": reason})
    );
    assert!(!export.text.contains("$plain"), "{}", export.text);

    api.post(
        &format!("/v1/people/{}/erasure", s.teacher),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    assert_eq!(
        as_read(&api, StreamName::post(post.into()), "PostRemoved").await["reason"],
        json!({"kind": "given", "text": "[erased]"})
    );
}

fn events_of_type<'a>(export: &'a Value, event_type: &str) -> Vec<&'a Value> {
    export["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .collect()
}

/// An event written in an older schema version is exported as every reader reads it: upcast to
/// the current shape (`ChildEnrolled` v1 kept the full last name in the clear; the export shows
/// the initial only, and `[erased]` once the child is erased), never the stored text.
async fn an_export_reads_old_events_as_every_reader_does(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    api.caught_up().await;
    // As a build of schema version 1 wrote it, for the same child.
    let v1 = json!({
        "school_id": s.school_id, "child_id": s.child_a, "group_id": s.group,
        "first_name": "Sanne", "last_name": "Oudeboom"
    });
    let store = &api.running.state.system.store;
    store
        .append(
            &kring_domain::StreamName::school(s.school_id),
            kring_store::ExpectedVersion::Any,
            vec![kring_store::NewEvent::new(
                "ChildEnrolled",
                1,
                &v1,
                kring_store::Metadata::new(chrono::Utc::now(), kring_domain::Actor::Operator),
            )],
        )
        .await
        .unwrap();
    // The export reads the log itself (the read models refuse an upcast plain field: they
    // never store plaintext).
    let export = api.get("/v1/me/export", &api.person(mum)).await.expect(200);
    let enrolled = events_of_type(&export.body, "ChildEnrolled");
    assert_eq!(enrolled.len(), 2, "{}", export.text);
    let old = &enrolled[1];
    assert_eq!(old["schema_version"], 2);
    assert_eq!(old["payload"]["first_name"], "Sanne");
    assert_eq!(old["payload"]["last_initial"], "O");
    assert!(old["payload"].get("last_name").is_none());
    assert!(!export.text.contains("Oudeboom"), "{}", export.text);
    assert!(!export.text.contains("$plain"), "{}", export.text);
}

async fn export_holds_the_callers_data_opened_and_nothing_of_other_parents(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let _dad = s.guardian(&api, s.child_a, "Papa").await;
    let _neighbour = s.guardian(&api, s.child_b, "Buurvrouw").await;
    let consent = format!("/v1/children/{}/consents/group_communication", s.child_a);
    api.put(&consent, &api.person(mum), json!({"granted": true}))
        .await
        .expect(200);

    let export = api
        .get_fresh("/v1/me/export", &api.person(mum))
        .await
        .expect(200);
    let body = &export.body;
    assert_eq!(body["person_id"], json!(mum));
    assert_eq!(body["profile"]["email"], "mama@home.example");
    assert_eq!(body["profile"]["children"][0]["first_name"], "Sanne");
    let invited = events_of_type(body, "Invited");
    assert_eq!(invited.len(), 1);
    assert_eq!(invited[0]["payload"]["email"], "mama@home.example");
    assert_eq!(
        events_of_type(body, "InvitationAccepted")[0]["payload"]["display_name"],
        "Mama"
    );
    assert_eq!(events_of_type(body, "ConsentDecided").len(), 1);
    let enrolled = events_of_type(body, "ChildEnrolled");
    assert_eq!(enrolled.len(), 1, "only their own child's enrolment");
    assert_eq!(enrolled[0]["payload"]["first_name"], "Sanne");
    assert_eq!(
        events_of_type(body, "GuardianLinked").len(),
        2,
        "both guardians of their child"
    );
    let positions: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in log order");
    for other in [
        "papa@home.example",
        "Papa",
        "buurvrouw@home.example",
        "Buurvrouw",
        "Daan",
        "juf@school.example",
        "$sealed",
    ] {
        assert!(!export.text.contains(other), "{other} in the export");
    }

    // The operator is no data subject.
    api.get_fresh("/v1/me/export", &api.operator())
        .await
        .expect(403);
    api.call(reqwest::Method::GET, "/v1/me/export", None, None)
        .await
        .expect(401);

    // After erasure the export shows the fields as erased, and the facts remain.
    api.post(
        &format!("/v1/people/{mum}/erasure"),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    let export = api
        .get_fresh("/v1/me/export", &api.person(mum))
        .await
        .expect(200);
    assert!(!export.text.contains("mama@home.example"));
    assert_eq!(
        events_of_type(&export.body, "Invited")[0]["payload"]["email"],
        "[erased]"
    );
    // Her links ended with the erasure: the child's stream is no longer hers to read (the
    // school keeps her decisions in the consent history).
    assert_eq!(events_of_type(&export.body, "ConsentDecided").len(), 0);
    assert_eq!(events_of_type(&export.body, "PersonErased").len(), 1);
}

async fn verify_walks_every_chain_for_compliance_officers_and_the_operator(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let all = api
        .running
        .state
        .system
        .store
        .read_all(0, 100_000)
        .await
        .unwrap();
    let streams: std::collections::BTreeSet<_> = all.iter().map(|e| e.stream).collect();
    for token in [api.person(s.officer), api.operator()] {
        let r = api.get("/v1/audit/verify", &token).await.expect(200);
        assert_eq!(r.body["ok"], true);
        assert_eq!(r.body["failures"], json!([]));
        assert_eq!(r.body["findings"], json!([]));
        assert_eq!(r.body["global_chain"], "checked");
        assert_eq!(r.body["head"], json!(all.last().unwrap().position));
        assert_eq!(r.body["events_checked"], json!(all.len()));
        // The school's roster and the guardian's invitation.
        assert_eq!(r.body["streams_checked"], json!(streams.len()));
        assert_eq!(streams.len(), 2);
    }
    for who in [s.teacher, s.director, mum] {
        let r = api
            .get("/v1/audit/verify", &api.person(who))
            .await
            .expect(403);
        assert_eq!(r.code(), "forbidden");
    }
}

async fn reads_by_compliance_officers_and_the_operator_are_in_the_access_log(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let other_school = School::build(&api, "Het Anker").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let consent = format!("/v1/children/{}/consents/group_communication", s.child_a);
    api.put(&consent, &api.person(mum), json!({"granted": true}))
        .await
        .expect(200);
    let history = format!("/v1/children/{}/consents/history", s.child_a);
    let consents = format!("/v1/children/{}/consents", s.child_a);
    // Not audited: a guardian, a director, a teacher.
    api.get_fresh(&history, &api.person(mum)).await.expect(200);
    api.get_fresh(&history, &api.person(s.director))
        .await
        .expect(200);
    api.get_fresh(&consents, &api.person(s.teacher))
        .await
        .expect(200);
    let log = format!("/v1/audit/access-log?subject=child:{}", s.child_a);
    let before = api
        .get_fresh(&log, &api.person(s.officer))
        .await
        .expect(200);
    assert_eq!(before.body["entries"], json!([]));

    // Audited: the compliance officer's and the operator's reads.
    api.get_fresh(&history, &api.person(s.officer))
        .await
        .expect(200);
    api.get_fresh(&consents, &api.person(s.officer))
        .await
        .expect(200);
    api.get_fresh(&consents, &api.operator()).await.expect(200);
    let after = api
        .get_fresh(&log, &api.person(s.officer))
        .await
        .expect(200);
    let entries = after.body["entries"].as_array().unwrap();
    let seen: Vec<(Value, Value, Value)> = entries
        .iter()
        .map(|e| {
            (
                e["accessor"]["kind"].clone(),
                e["accessor"]["person_id"].clone(),
                e["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                json!("person"),
                json!(s.officer),
                json!("GET /v1/children/{child_id}/consents/history")
            ),
            (
                json!("person"),
                json!(s.officer),
                json!("GET /v1/children/{child_id}/consents")
            ),
            (
                json!("operator"),
                Value::Null,
                json!("GET /v1/children/{child_id}/consents")
            ),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e["subject"] == json!({"kind": "child", "id": s.child_a})));
    assert_eq!(after.body["next_after"], Value::Null);
    assert_eq!(
        api.event_types(StreamName::access(s.child_a.as_uuid()))
            .await
            .len(),
        3,
        "each read is an event in the child's access stream"
    );

    // Paging: one at a time.
    let first = api
        .get_fresh("/v1/audit/access-log?limit=1", &api.person(s.officer))
        .await
        .expect(200);
    assert_eq!(first.body["entries"].as_array().unwrap().len(), 1);
    let cursor = first.body["next_after"].as_u64().unwrap();
    let rest = api
        .get_fresh(
            &format!("/v1/audit/access-log?after={cursor}"),
            &api.person(s.officer),
        )
        .await
        .expect(200);
    assert_eq!(rest.body["entries"].as_array().unwrap().len(), 2);

    // Another school's compliance officer sees none of it; others may not read the log.
    let theirs = api
        .get_fresh("/v1/audit/access-log", &api.person(other_school.officer))
        .await
        .expect(200);
    assert_eq!(theirs.body["entries"], json!([]));
    api.get_fresh(&log, &api.person(other_school.officer))
        .await
        .expect(404);
    for token in [
        api.person(s.teacher),
        api.person(s.director),
        api.person(mum),
        api.operator(),
    ] {
        let r = api.get_fresh(&log, &token).await.expect(403);
        assert_eq!(r.code(), "forbidden");
    }
    for bad in [
        "/v1/audit/access-log?subject=kind:1",
        "/v1/audit/access-log?subject=child:niet-een-id",
        "/v1/audit/access-log?limit=0",
    ] {
        let r = api.get_fresh(bad, &api.person(s.officer)).await.expect(422);
        assert_eq!(r.code(), "validation_failed");
    }
    // Reading the log itself is not logged.
    assert_eq!(
        api.event_types(StreamName::access(s.child_a.as_uuid()))
            .await
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_the_invitation_consent_and_rights_routes() {
    let api = Api::sqlite().await;
    let doc = api
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    for (path, method) in [
        ("/v1/invitations", "post"),
        ("/v1/invitations/accept", "post"),
        ("/v1/invitations/{invitation_id}/approve", "post"),
        ("/v1/invitations/{invitation_id}/revoke", "post"),
        ("/v1/groups/{group_id}/invitations", "get"),
        ("/v1/schools/{school_id}/consent-policy", "get"),
        ("/v1/children/{child_id}/consents/{purpose}", "put"),
        ("/v1/children/{child_id}/consents", "get"),
        ("/v1/children/{child_id}/consents/history", "get"),
        ("/v1/me/export", "get"),
        ("/v1/people/{person_id}/erasure", "post"),
        ("/v1/children/{child_id}/erasure", "post"),
        ("/v1/audit/access-log", "get"),
        ("/v1/audit/verify", "get"),
    ] {
        assert!(
            doc.body["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    assert!(
        doc.body["paths"]["/v1/invitations/accept"]["post"]["security"].is_null(),
        "accepting needs no token"
    );
    for schema in [
        "InvitationSent",
        "ConsentsDoc",
        "HistoryDoc",
        "ExportDoc",
        "VerifyDoc",
    ] {
        assert!(
            doc.body["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}

/// A reader holding the vault's WAL back makes the erasure answer 503 `erasure_incomplete`
/// (never a silent 202); repeating it once the reader is gone completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_whose_secure_deletion_is_held_back_says_so_and_a_repeat_completes_it() {
    use sqlx::Connection;
    let api = Api::sqlite().await;
    let s = School::build(&api, "De Regenboog").await;
    let vault_file = api.running.state.system.config.vault_file();
    let mut reader = sqlx::SqliteConnection::connect(&format!("sqlite://{}", vault_file.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_keys")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    let path = format!("/v1/children/{}/erasure", s.child_a);
    let r = api.post(&path, Some(&api.operator()), json!({})).await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.text);
    assert_eq!(r.code(), "erasure_incomplete");
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    api.post(&path, Some(&api.operator()), json!({}))
        .await
        .expect(202);
    assert_eq!(
        api.event_types(StreamName::child(s.child_a)).await,
        vec!["ChildErasureRequested", "ChildErased"]
    );
}
