//! `Idempotency-Key`: a write retried after its answer was lost writes nothing twice and answers
//! what it answered the first time — after a restart too; the same key with another body is
//! refused. On SQLite and on PostgreSQL.

use crate::school_server;
use reqwest::Method;
use school_server::{Answer, Api, School};
use serde_json::{json, Value};

async fn with_key(api: &Api, path: &str, token: &str, body: Value, key: &str) -> Answer {
    api.call_with(
        Method::POST,
        path,
        Some(token),
        Some(body),
        &[("Idempotency-Key", key)],
    )
    .await
}

async fn a_retried_write_answers_the_first_answer_and_writes_nothing(mut api: Api) {
    let school = School::build(&api, "De Linde").await;
    let director = api.person(school.director);
    let staff = format!("/v1/schools/{}/staff", school.school_id);
    let body = json!({"display_name": "Juf Eva", "email": "eva@linde.example", "role": "teacher"});

    let first = with_key(&api, &staff, &director, body.clone(), "add-eva-1")
        .await
        .expect(201);
    let head = api.head().await;
    // The answer was lost; the client sends the same request again, with the same key — once
    // to this process, once to the next one after a crash.
    let again = with_key(&api, &staff, &director, body.clone(), "add-eva-1")
        .await
        .expect(201);
    assert_eq!(again.body, first.body);
    assert_eq!(api.head().await, head, "nothing written twice");
    api.restart().await;
    let after_restart = with_key(&api, &staff, &director, body.clone(), "add-eva-1")
        .await
        .expect(201);
    assert_eq!(after_restart.body, first.body);
    assert_eq!(api.head().await, head);
    // The same key with another body is another request: refused, nothing written.
    let other = json!({"display_name": "Juf Ida", "email": "ida@linde.example", "role": "teacher"});
    let reused = with_key(&api, &staff, &director, other.clone(), "add-eva-1")
        .await
        .expect(422);
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(api.head().await, head);
    // Another key is a new request; a key is the caller's own (another caller's identical key
    // is theirs).
    let ida = with_key(&api, &staff, &director, other, "add-ida-1")
        .await
        .expect(201);
    assert_ne!(ida.body["person_id"], first.body["person_id"]);
    let operator_same_key = with_key(&api, &staff, &api.operator(), body, "add-eva-1")
        .await
        .expect(201);
    assert_ne!(operator_same_key.body["person_id"], first.body["person_id"]);

    // A malformed key is refused before anything runs.
    let head = api.head().await;
    for bad in ["", &"k".repeat(256), "two words"] {
        let refused = with_key(&api, &staff, &director, json!({}), bad).await;
        assert_eq!(refused.status.as_u16(), 422, "{bad:?}: {}", refused.text);
    }
    assert_eq!(api.head().await, head);
}

async fn a_retried_invitation_hands_out_the_same_code(api: Api) {
    let school = School::build(&api, "De Linde").await;
    let teacher = api.person(school.teacher);
    let body = json!({"child_id": school.child_a, "email": "opa@home.example"});
    let first = with_key(
        &api,
        "/v1/invitations",
        &teacher,
        body.clone(),
        "invite-opa",
    )
    .await
    .expect(201);
    let head = api.head().await;
    let again = with_key(&api, "/v1/invitations", &teacher, body, "invite-opa")
        .await
        .expect(201);
    assert_eq!(again.body, first.body, "same invitation, same code");
    assert_eq!(api.head().await, head);
    // The code handed out twice is the one that works.
    api.post(
        "/v1/invitations/accept",
        None,
        json!({"code": first.body["code"], "display_name": "Opa"}),
    )
    .await
    .expect(200);
    // Without a key, the same request is a new invitation with a new code.
    let fresh = api
        .post(
            "/v1/invitations",
            Some(&teacher),
            json!({"child_id": school.child_a, "email": "oma@home.example"}),
        )
        .await
        .expect(201);
    assert_ne!(fresh.body["code"], first.body["code"]);
}

async fn concurrent_requests_with_one_key_write_once(api: Api) {
    let school = School::build(&api, "De Linde").await;
    let director = api.person(school.director);
    let staff = format!("/v1/schools/{}/staff", school.school_id);
    let body =
        json!({"display_name": "Meester Bas", "email": "bas@linde.example", "role": "teacher"});
    let head = api.head().await;
    let answers = futures::future::join_all(
        (0..6).map(|_| with_key(&api, &staff, &director, body.clone(), "add-bas")),
    )
    .await;
    let created: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status.as_u16() == 201)
        .collect();
    assert!(!created.is_empty());
    for a in &answers {
        assert!(
            matches!(a.status.as_u16(), 201 | 409),
            "{}: {}",
            a.status,
            a.text
        );
    }
    for a in &created {
        assert_eq!(a.body["person_id"], created[0].body["person_id"]);
    }
    // One StaffJoined: the roster gained one event.
    assert_eq!(api.head().await, head + 1);
}

/// A consent decision answers whether consent holds right after it; a retry answers that same
/// moment, not whatever later decisions made of it.
async fn a_retried_consent_decision_answers_the_consent_of_its_own_moment(api: Api) {
    let s = School::build(&api, "De Linde").await;
    let mum = api.person(s.guardian(&api, s.child_a, "Mama").await);
    let path = format!("/v1/children/{}/consents/public_communication", s.child_a);
    let decide = |granted: bool, key: &'static str| {
        let (api, path, mum) = (&api, path.clone(), mum.clone());
        async move {
            api.call_with(
                Method::PUT,
                &path,
                Some(&mum),
                Some(json!({ "granted": granted })),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let granted = decide(true, "grant-1").await.expect(200);
    assert_eq!(granted.body["effective"], true, "{}", granted.text);
    let withdrawn = decide(false, "withdraw-1").await.expect(200);
    assert_eq!(withdrawn.body["effective"], false, "{}", withdrawn.text);
    let head = api.head().await;
    let again = decide(true, "grant-1").await.expect(200);
    assert_eq!(again.body, granted.body);
    assert_eq!(api.head().await, head, "nothing written twice");
}

/// A write without credentials answers `401` whatever its key: a key reused with another body
/// is not `422` before the missing token is.
async fn a_write_without_a_token_answers_401_before_its_key_is_checked(api: Api) {
    let school = School::build(&api, "De Wilg").await;
    let staff = format!("/v1/schools/{}/staff", school.school_id);
    let head = api.head().await;
    for name in ["Juf Eva", "Juf Ida"] {
        let body = json!({"display_name": name, "email": "x@wilg.example", "role": "teacher"});
        let answer = api
            .call_with(
                Method::POST,
                &staff,
                None,
                Some(body),
                &[("Idempotency-Key", "no-token-1")],
            )
            .await
            .expect(401);
        assert_eq!(answer.code(), "unauthenticated");
    }
    assert_eq!(api.head().await, head);
}

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: Api::postgres;
    a_write_without_a_token_answers_401_before_its_key_is_checked,
    a_retried_write_answers_the_first_answer_and_writes_nothing,
    a_retried_consent_decision_answers_the_consent_of_its_own_moment,
    a_retried_invitation_hands_out_the_same_code,
    concurrent_requests_with_one_key_write_once,
);
