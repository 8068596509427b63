//! Invitations and consent over real HTTP, on SQLite and on PostgreSQL: nobody joins uninvited
//! or unapproved; only guardians decide consent; the history and past consent answer the
//! auditor's questions.

#![allow(clippy::unwrap_used)]

use crate::school_server;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use kring_api::routes::invitations::{code_digest, new_code};
use kring_domain::invitation::{self, InvitationAction, InvitationContext};
use kring_domain::{Actor, Command, InvitationId, PersonId, StreamName};
use kring_projections::models::memberships;
use kring_store::EventStoreExt;
use school_server::{Api, School};
use serde_json::{json, Value};
use uuid::Uuid;

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: Api::postgres;
    invited_parent_is_linked_only_after_staff_approve,
    wrong_expired_revoked_or_used_codes_link_nobody,
    only_staff_of_the_childs_group_invite_approve_revoke_and_list,
    bad_invitation_input_is_refused_and_writes_nothing,
    consent_by_anyone_but_a_guardian_is_refused_and_writes_nothing,
    consent_history_lists_decisions_in_order_with_the_effect_after_each,
    consent_as_of_two_moments_differs,
    consent_policy_is_shown_to_the_schools_people,
);

fn child_ids(me: &Value) -> Vec<String> {
    me["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["child_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn guardians_of(api: &Api, child: kring_domain::ChildId) -> Vec<PersonId> {
    api.caught_up().await;
    memberships::child(&api.running.state.system.db, child)
        .await
        .unwrap()
        .unwrap()
        .guardian_ids
}

async fn invited_parent_is_linked_only_after_staff_approve(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let teacher = api.person(s.teacher);
    let (invitation, code) = s.invite(&api, s.child_a, "ouder@home.example").await;
    assert!(code.starts_with(&format!("{invitation}.")), "{code}");

    // Only a digest of the code is kept: the secret is nowhere in the log.
    let secret = code.split_once('.').unwrap().1;
    let stream = StreamName::invitation(InvitationId::from_uuid(invitation));
    let events = api
        .running
        .state
        .system
        .store
        .read_stream_to_end(&stream)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert!(!events[0].payload.contains(secret));
    assert!(!events[0].payload.contains("ouder@home.example"));
    assert!(events[0].payload.contains(&code_digest(&code)));

    let listed = api
        .get_fresh(&format!("/v1/groups/{}/invitations", s.group), &teacher)
        .await
        .expect(200);
    assert_eq!(listed.body["invitations"][0]["status"], "pending");
    assert!(
        !listed.text.contains("ouder@home.example"),
        "no e-mail address in the staff's list: {}",
        listed.text
    );

    let accepted = api
        .post(
            "/v1/invitations/accept",
            None,
            json!({"code": code, "display_name": "Mama van Sanne"}),
        )
        .await
        .expect(200);
    assert_eq!(accepted.body["invitation_id"], json!(invitation));
    let parent = PersonId::from_uuid(
        accepted.body["person_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    );
    let me = api
        .get_fresh("/v1/me", &api.person(parent))
        .await
        .expect(200);
    assert_eq!(me.body["display_name"], "Mama van Sanne");
    assert_eq!(me.body["email"], "ouder@home.example", "their own profile");
    assert!(
        child_ids(&me.body).is_empty(),
        "accepting alone links nobody"
    );
    assert!(guardians_of(&api, s.child_a).await.is_empty());
    let listed = api
        .get_fresh(&format!("/v1/groups/{}/invitations", s.group), &teacher)
        .await
        .expect(200);
    assert_eq!(listed.body["invitations"][0]["status"], "accepted");
    assert_eq!(
        listed.body["invitations"][0]["display_name"], "Mama van Sanne",
        "staff verify whom they approve"
    );

    let approved = api
        .post(
            &format!("/v1/invitations/{invitation}/approve"),
            Some(&teacher),
            json!({}),
        )
        .await
        .expect(200);
    assert!(approved.position() > accepted.position());
    let me = api
        .get_fresh("/v1/me", &api.person(parent))
        .await
        .expect(200);
    assert_eq!(child_ids(&me.body), vec![s.child_a.to_string()]);
    let groups: Vec<&str> = me.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group_id"].as_str().unwrap())
        .collect();
    assert!(groups.contains(&s.group.to_string().as_str()));
    assert!(groups.contains(&s.school_group.to_string().as_str()));
    assert_eq!(guardians_of(&api, s.child_a).await, vec![parent]);

    // Approving again changes nothing (it only completes an interrupted link).
    let head = api.head().await;
    api.post(
        &format!("/v1/invitations/{invitation}/approve"),
        Some(&teacher),
        json!({}),
    )
    .await
    .expect(200);
    assert_eq!(api.head().await, head);
    let listed = api
        .get_fresh(&format!("/v1/groups/{}/invitations", s.group), &teacher)
        .await
        .expect(200);
    assert_eq!(listed.body["invitations"][0]["status"], "approved");

    // Approving with a correction links the parent to the right child.
    let (second, code2) = s.invite(&api, s.child_a, "vader@home.example").await;
    let a = api
        .post(
            "/v1/invitations/accept",
            None,
            json!({"code": code2, "display_name": "Papa van Daan"}),
        )
        .await
        .expect(200);
    let dad = PersonId::from_uuid(a.body["person_id"].as_str().unwrap().parse().unwrap());
    api.post(
        &format!("/v1/invitations/{second}/approve"),
        Some(&teacher),
        json!({"child_id": s.child_b}),
    )
    .await
    .expect(200);
    assert_eq!(guardians_of(&api, s.child_b).await, vec![dad]);
    assert_eq!(guardians_of(&api, s.child_a).await, vec![parent]);
}

async fn accept(api: &Api, code: &str) -> school_server::Answer {
    api.post(
        "/v1/invitations/accept",
        None,
        json!({"code": code, "display_name": "Iemand"}),
    )
    .await
}

async fn wrong_expired_revoked_or_used_codes_link_nobody(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let teacher = api.person(s.teacher);
    let (invitation, code) = s.invite(&api, s.child_a, "ouder@home.example").await;

    // Wrong codes: a wrong secret for a real invitation, garbage, an unknown invitation.
    let wrong_secret = format!("{invitation}.{}", "A".repeat(43));
    let unknown = new_code(InvitationId::generate()).unwrap();
    for bad in [wrong_secret.as_str(), "not-a-code", "", unknown.as_str()] {
        let r = accept(&api, bad).await.expect(404);
        assert_eq!(r.code(), "not_found", "{bad:?}");
    }

    // Revoked.
    let (revoked, revoked_code) = s.invite(&api, s.child_a, "tweede@home.example").await;
    api.post(
        &format!("/v1/invitations/{revoked}/revoke"),
        Some(&teacher),
        json!({}),
    )
    .await
    .expect(200);
    let r = accept(&api, &revoked_code).await.expect(422);
    assert_eq!(r.code(), "rule_violated");
    assert!(
        r.body["detail"].as_str().unwrap().contains("revoked"),
        "{}",
        r.text
    );
    // A wrong code for the revoked invitation tells nothing about its status.
    let r = accept(&api, &format!("{revoked}.{}", "B".repeat(43)))
        .await
        .expect(404);
    assert!(!r.text.contains("revoked"));

    // Expired: an invitation sent fifteen days ago (the school's default is fourteen).
    let state = &api.running.state;
    let roster = state.exec.school(s.school_id).await.unwrap();
    let old = InvitationId::generate();
    let old_code = new_code(old).unwrap();
    let digest = code_digest(&old_code);
    let teacher_actor = Actor::Person(s.teacher);
    state
        .exec
        .run::<invitation::Invitation, _>(
            StreamName::invitation(old),
            teacher_actor,
            Uuid::now_v7(),
            |inv, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: inv,
                        school: &roster.state,
                    },
                    Command::new(
                        teacher_actor,
                        InvitationAction::Invite {
                            invitation_id: old,
                            child_id: s.child_a,
                            email: "laat@home.example".into(),
                            invitee_id: PersonId::generate(),
                            code_digest: digest.clone(),
                            mail_code: None,
                        },
                    ),
                    now - Duration::days(15),
                )
            },
        )
        .await
        .unwrap();
    let r = accept(&api, &old_code).await.expect(422);
    assert_eq!(r.code(), "rule_violated");
    assert!(
        r.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        r.text
    );
    let listed = api
        .get_fresh(&format!("/v1/groups/{}/invitations", s.group), &teacher)
        .await
        .expect(200);
    let status_of = |id: Uuid| {
        listed.body["invitations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["invitation_id"] == json!(id))
            .map(|i| i["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status_of(old.as_uuid()), "expired");
    assert_eq!(status_of(revoked), "revoked");
    assert_eq!(
        status_of(invitation),
        "pending",
        "wrong codes change nothing"
    );

    // Used: the right code accepts once.
    accept(&api, &code).await.expect(200);
    let r = accept(&api, &code).await.expect(422);
    assert_eq!(r.code(), "rule_violated");

    // Neither revoked nor expired invitations can be approved; nobody was linked.
    for id in [revoked, old.as_uuid()] {
        let r = api
            .post(
                &format!("/v1/invitations/{id}/approve"),
                Some(&teacher),
                json!({}),
            )
            .await
            .expect(422);
        assert_eq!(r.code(), "rule_violated");
    }
    assert!(guardians_of(&api, s.child_a).await.is_empty());
    for id in [revoked, old.as_uuid()] {
        let stream = StreamName::invitation(InvitationId::from_uuid(id));
        let types: Vec<String> = state
            .system
            .store
            .read_stream_to_end(&stream)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        assert!(
            !types.iter().any(|t| t == "InvitationAccepted"),
            "{types:?}"
        );
    }
}

async fn only_staff_of_the_childs_group_invite_approve_revoke_and_list(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let other_school = School::build(&api, "Het Anker").await;
    let parent = s.guardian(&api, s.child_a, "Ouder").await;
    let invite = |child| json!({"child_id": child, "email": "x@home.example"});

    // Another group's teacher: 403; a parent of the child: 403; staff of another school: 404.
    let r = api
        .post(
            "/v1/invitations",
            Some(&api.person(s.teacher2)),
            invite(s.child_a),
        )
        .await
        .expect(403);
    assert_eq!(r.code(), "forbidden");
    api.post(
        "/v1/invitations",
        Some(&api.person(parent)),
        invite(s.child_a),
    )
    .await
    .expect(403);
    api.post(
        "/v1/invitations",
        Some(&api.person(other_school.teacher)),
        invite(s.child_a),
    )
    .await
    .expect(404);
    api.post("/v1/invitations", None, invite(s.child_a))
        .await
        .expect(401);
    // The director oversees every group.
    api.post(
        "/v1/invitations",
        Some(&api.person(s.director)),
        invite(s.child_a),
    )
    .await
    .expect(201);

    let (invitation, code) = s.invite(&api, s.child_a, "tweede@home.example").await;
    accept(&api, &code).await.expect(200);
    let approve = format!("/v1/invitations/{invitation}/approve");
    for who in [s.teacher2, parent, other_school.director] {
        let r = api
            .post(&approve, Some(&api.person(who)), json!({}))
            .await
            .expect(403);
        assert_eq!(r.code(), "forbidden");
    }
    api.post(
        &format!("/v1/invitations/{}/approve", Uuid::now_v7()),
        Some(&api.person(s.teacher)),
        json!({}),
    )
    .await
    .expect(404);
    let revoke = format!("/v1/invitations/{invitation}/revoke");
    for who in [s.teacher2, parent] {
        api.post(&revoke, Some(&api.person(who)), json!({}))
            .await
            .expect(403);
    }
    assert_eq!(guardians_of(&api, s.child_a).await, vec![parent]);
    api.post(&revoke, Some(&api.operator()), json!({}))
        .await
        .expect(200);

    let list = format!("/v1/groups/{}/invitations", s.group);
    api.get_fresh(&list, &api.person(s.teacher))
        .await
        .expect(200);
    api.get_fresh(&list, &api.person(s.director))
        .await
        .expect(200);
    let r = api.get_fresh(&list, &api.person(parent)).await.expect(403);
    assert_eq!(r.code(), "forbidden");
    // A group's existence is not private: 403 for anyone not its staff.
    api.get_fresh(&list, &api.person(s.teacher2))
        .await
        .expect(403);
    api.get_fresh(&list, &api.person(other_school.director))
        .await
        .expect(403);
}

async fn bad_invitation_input_is_refused_and_writes_nothing(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let teacher = api.person(s.teacher);
    let head = api.head().await;
    for (body, status) in [
        (json!({"child_id": s.child_a, "email": "geen-adres"}), 422),
        (json!({"child_id": s.child_a}), 422),
        (
            json!({"child_id": "niet-een-id", "email": "a@b.example"}),
            422,
        ),
        (
            json!({"child_id": Uuid::now_v7(), "email": "a@b.example"}),
            404,
        ),
    ] {
        let r = api
            .post("/v1/invitations", Some(&teacher), body.clone())
            .await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text);
        assert!(r.body["code"].is_string(), "problem+json: {}", r.text);
    }
    let r = api
        .call(
            reqwest::Method::POST,
            "/v1/invitations",
            Some(&teacher),
            None,
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text);
    assert_eq!(api.head().await, head, "nothing written");

    let (invitation, code) = s.invite(&api, s.child_a, "ouder@home.example").await;
    let head = api.head().await;
    let r = api
        .post(
            "/v1/invitations/accept",
            None,
            json!({"code": code, "display_name": "  "}),
        )
        .await
        .expect(422);
    assert_eq!(r.code(), "validation_failed");
    api.post("/v1/invitations/accept", None, json!({"code": code}))
        .await
        .expect(422);
    let r = api
        .post(
            &format!("/v1/invitations/{invitation}/approve"),
            Some(&teacher),
            json!({"child_id": 12}),
        )
        .await
        .expect(422);
    assert_eq!(r.code(), "validation_failed");
    api.post(
        "/v1/invitations/niet-een-id/approve",
        Some(&teacher),
        json!({}),
    )
    .await
    .expect(400);
    // Approving a pending (not yet accepted) invitation is refused.
    let r = api
        .post(
            &format!("/v1/invitations/{invitation}/approve"),
            Some(&teacher),
            json!({}),
        )
        .await
        .expect(422);
    assert_eq!(r.code(), "rule_violated");
    assert_eq!(api.head().await, head, "nothing written");
}

async fn consent_by_anyone_but_a_guardian_is_refused_and_writes_nothing(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let other_school = School::build(&api, "Het Anker").await;
    let _guardian = s.guardian(&api, s.child_a, "Ouder").await;
    let other_parent = s.guardian(&api, s.child_c, "Buur").await;
    let path = format!("/v1/children/{}/consents/group_communication", s.child_a);
    let grant = json!({"granted": true});
    let head = api.head().await;
    for who in [s.teacher, s.director, s.officer] {
        let r = api
            .put(&path, &api.person(who), grant.clone())
            .await
            .expect(403);
        assert_eq!(r.code(), "forbidden");
    }
    // A parent of another child may not even know the child exists.
    let r = api
        .put(&path, &api.person(other_parent), grant.clone())
        .await
        .expect(404);
    assert_eq!(r.code(), "not_found");
    api.put(&path, &api.operator(), grant.clone())
        .await
        .expect(403);
    // Whoever is not at the school may not even know the child exists.
    api.put(&path, &api.person(other_school.director), grant.clone())
        .await
        .expect(404);
    api.put(&path, &api.person(PersonId::generate()), grant.clone())
        .await
        .expect(404);
    assert_eq!(api.head().await, head, "nothing written");
    let child_stream = StreamName::child(s.child_a);
    assert!(api
        .running
        .state
        .system
        .store
        .read_stream_to_end(&child_stream)
        .await
        .unwrap()
        .is_empty());
    let history = api
        .get_fresh(
            &format!("/v1/children/{}/consents/history", s.child_a),
            &api.person(s.director),
        )
        .await
        .expect(200);
    assert_eq!(history.body["entries"], json!([]));
}

fn entries(history: &Value) -> Vec<(String, bool, String, bool)> {
    history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["purpose"].as_str().unwrap().to_owned(),
                e["granted"].as_bool().unwrap(),
                e["guardian_id"].as_str().unwrap().to_owned(),
                e["effective_after"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn consent_history_lists_decisions_in_order_with_the_effect_after_each(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_a, "Papa").await;
    let decide = |purpose: &str, granted: bool| {
        (
            format!("/v1/children/{}/consents/{purpose}", s.child_a),
            json!({"granted": granted}),
        )
    };
    let (path, body) = decide("group_communication", true);
    let r = api.put(&path, &api.person(mum), body).await.expect(200);
    assert_eq!(r.body["effective"], true, "one grant and no withdrawal");
    let (path, _) = decide("group_communication", false);
    let r = api
        .put(
            &path,
            &api.person(dad),
            json!({"granted": false, "method": "paper"}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["effective"], false, "one guardian withdrew");
    let (path, body) = decide("school_communication", true);
    api.put(&path, &api.person(dad), body).await.expect(200);
    let (path, body) = decide("group_communication", true);
    let r = api.put(&path, &api.person(dad), body).await.expect(200);
    assert_eq!(r.body["effective"], true);

    // Bad input writes nothing.
    let head = api.head().await;
    let r = api
        .put(
            &format!("/v1/children/{}/consents/photos", s.child_a),
            &api.person(mum),
            json!({"granted": true}),
        )
        .await
        .expect(422);
    assert_eq!(r.code(), "validation_failed");
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("group_communication"));
    api.put(&path, &api.person(mum), json!({"granted": "ja"}))
        .await
        .expect(422);
    api.put(
        &path,
        &api.person(mum),
        json!({"granted": true, "method": "fax"}),
    )
    .await
    .expect(422);
    assert_eq!(api.head().await, head);

    let history_path = format!("/v1/children/{}/consents/history", s.child_a);
    let history = api
        .get_fresh(&history_path, &api.person(mum))
        .await
        .expect(200);
    let (mum, dad) = (mum.to_string(), dad.to_string());
    assert_eq!(
        entries(&history.body),
        vec![
            ("group_communication".into(), true, mum.clone(), true),
            ("group_communication".into(), false, dad.clone(), false),
            ("school_communication".into(), true, dad.clone(), true),
            ("group_communication".into(), true, dad.clone(), true),
        ]
    );
    let e = history.body["entries"].as_array().unwrap();
    assert!(e
        .windows(2)
        .all(|w| w[0]["position"].as_u64() < w[1]["position"].as_u64()));
    assert!(e.iter().all(|e| e["policy_version"] == 1));
    assert_eq!(e[1]["method"], "paper");
    assert_eq!(e[0]["method"], "app");
    let only = api
        .get_fresh(
            &format!("{history_path}?purpose=school_communication"),
            &api.person(s.director),
        )
        .await
        .expect(200);
    assert_eq!(only.body["entries"].as_array().unwrap().len(), 1);
    api.get_fresh(&history_path, &api.person(s.officer))
        .await
        .expect(200);
    let r = api
        .get_fresh(&history_path, &api.person(s.teacher))
        .await
        .expect(403);
    assert_eq!(r.code(), "forbidden");
    api.get_fresh(
        &format!("{history_path}?purpose=photos"),
        &api.person(s.director),
    )
    .await
    .expect(422);

    // Current consent: the teacher sees it, a stranger does not know the child.
    let now = api
        .get_fresh(
            &format!("/v1/children/{}/consents", s.child_a),
            &api.person(s.teacher),
        )
        .await
        .expect(200);
    let group = now.body["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "group_communication")
        .unwrap();
    assert_eq!(group["effective"], true);
    assert_eq!(group["decisions"].as_array().unwrap().len(), 2);
    api.get_fresh(
        &format!("/v1/children/{}/consents", s.child_a),
        &api.person(PersonId::generate()),
    )
    .await
    .expect(404);
}

fn effective(consents: &Value, purpose: &str) -> (bool, usize) {
    let p = consents["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == purpose)
        .unwrap();
    (
        p["effective"].as_bool().unwrap(),
        p["decisions"].as_array().unwrap().len(),
    )
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn consent_as_of_two_moments_differs(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let path = format!("/v1/children/{}/consents/group_communication", s.child_a);
    api.put(&path, &api.person(mum), json!({"granted": true}))
        .await
        .expect(200);
    api.put(&path, &api.person(mum), json!({"granted": false}))
        .await
        .expect(200);
    let history = api
        .get_fresh(
            &format!("/v1/children/{}/consents/history", s.child_a),
            &api.person(mum),
        )
        .await
        .expect(200);
    let times: Vec<DateTime<Utc>> = history.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 2);
    let consents = format!("/v1/children/{}/consents", s.child_a);
    let granted = api
        .get_fresh(
            &format!("{consents}?as_of={}", at(times[0])),
            &api.person(mum),
        )
        .await
        .expect(200);
    assert_eq!(effective(&granted.body, "group_communication"), (true, 1));
    assert_eq!(
        granted.body["as_of"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        times[0]
    );
    let withdrawn = api
        .get_fresh(
            &format!("{consents}?as_of={}", at(times[1])),
            &api.person(mum),
        )
        .await
        .expect(200);
    assert_eq!(
        effective(&withdrawn.body, "group_communication"),
        (false, 1)
    );
    let before = api
        .get_fresh(
            &format!("{consents}?as_of={}", at(times[0] - Duration::seconds(1))),
            &api.person(mum),
        )
        .await
        .expect(200);
    assert_eq!(effective(&before.body, "group_communication"), (false, 0));
    let now = api.get_fresh(&consents, &api.person(mum)).await.expect(200);
    assert_eq!(effective(&now.body, "group_communication"), (false, 1));
    let r = api
        .get_fresh(&format!("{consents}?as_of=gisteren"), &api.person(mum))
        .await
        .expect(400);
    assert_eq!(r.code(), "bad_request");
}

async fn consent_policy_is_shown_to_the_schools_people(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let other_school = School::build(&api, "Het Anker").await;
    let parent = s.guardian(&api, s.child_a, "Ouder").await;
    let path = format!("/v1/schools/{}/consent-policy", s.school_id);
    for token in [api.person(parent), api.person(s.teacher), api.operator()] {
        let r = api.get_fresh(&path, &token).await.expect(200);
        assert_eq!(r.body["version"], 1);
        let purposes = r.body["purposes"].as_array().unwrap();
        assert_eq!(purposes.len(), 7);
        assert!(purposes
            .iter()
            .all(|p| !p["description"].as_str().unwrap().is_empty()));
    }
    api.get_fresh(&path, &api.person(other_school.director))
        .await
        .expect(404);
    api.get_fresh(
        &format!("/v1/schools/{}/consent-policy", Uuid::now_v7()),
        &api.operator(),
    )
    .await
    .expect(404);
}
