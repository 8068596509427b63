//! Notification preferences over real HTTP, on SQLite and on PostgreSQL: every signed-in
//! person's own choices, the school's defaults under them, the built-in ones under both; bad
//! input refused with nothing written; and notifications carrying the channel chosen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::school_server;
use reqwest::Method;
use school_server::{Api, School};
use serde_json::{json, Value};

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: Api::postgres;
    everyone_starts_with_the_built_in_defaults_and_sets_their_own,
    bad_preferences_are_refused_and_change_nothing,
    the_schools_defaults_fill_in_what_a_person_did_not_choose,
    a_post_reaches_a_guardian_on_the_channel_they_chose,
    an_acknowledged_absence_notifies_the_guardian_who_reported_it,
);

const PREFS: &str = "/v1/me/notification-preferences";

fn all_push() -> Value {
    json!({
        "post": "push", "message": "push", "activity_created": "push",
        "activity_reminder": "push", "invitation_approved": "push", "consent_needed": "push",
        "absence_acknowledged": "push", "absence_reported": "push",
        "meeting_booked": "push", "meeting_changed": "push", "meeting_reminder": "push"
    })
}

async fn everyone_starts_with_the_built_in_defaults_and_sets_their_own(api: Api) {
    let s = School::build(&api, "De Linde").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    for person in [mum, s.teacher] {
        let p = api.get_fresh(PREFS, &api.person(person)).await.expect(200);
        assert_eq!(p.body["kinds"], all_push(), "{}", p.body);
        assert_eq!(p.body["timezone"], "Europe/Amsterdam");
        assert_eq!(p.body["digest_at"], "18:00");
        assert_eq!(p.body["quiet_hours"], Value::Null);
        assert_eq!(p.body["own"], Value::Null);
        assert_eq!(p.body["school_id"], json!(s.school_id));
    }
    // A guardian sets their own, quiet hours included.
    let quiet = json!({"timezone": "Europe/Amsterdam", "weekly": [{"day": "monday", "start": "21:00", "end": "07:00"}]});
    let mine = json!({
        "kinds": {"post": "digest", "activity_created": "off", "message": "email"},
        "digest_at": "07:30",
        "timezone": "Europe/London",
        "quiet_hours": quiet,
    });
    api.put(PREFS, &api.person(mum), mine.clone())
        .await
        .expect(200);
    let p = api.get_fresh(PREFS, &api.person(mum)).await.expect(200);
    assert_eq!(p.body["kinds"]["post"], "digest");
    assert_eq!(p.body["kinds"]["activity_created"], "off");
    assert_eq!(p.body["kinds"]["message"], "email");
    assert_eq!(p.body["kinds"]["consent_needed"], "push");
    assert_eq!(p.body["digest_at"], "07:30");
    assert_eq!(p.body["timezone"], "Europe/London");
    assert_eq!(p.body["quiet_hours"], quiet);
    assert_eq!(p.body["own"], mine);
    // The staff quiet-hours route shows the same schedule.
    let q = api
        .get_fresh("/v1/me/quiet-hours", &api.person(mum))
        .await
        .expect(200);
    assert_eq!(q.body["quiet_hours"], quiet);
    // Replaced as a whole: without quiet hours, none of their own.
    api.put(PREFS, &api.person(mum), json!({"kinds": {}}))
        .await
        .expect(200);
    let p = api.get_fresh(PREFS, &api.person(mum)).await.expect(200);
    assert_eq!(p.body["quiet_hours"], Value::Null);
    assert_eq!(p.body["kinds"], all_push());
    // The operator is no person.
    api.get(PREFS, &api.operator()).await.expect(403);
}

async fn bad_preferences_are_refused_and_change_nothing(api: Api) {
    let s = School::build(&api, "De Eik").await;
    let teacher = api.person(s.teacher);
    let head = api.head().await;
    let bad = [
        json!({"kinds": {}, "timezone": "Mars/Olympus"}),
        json!({"kinds": {}, "digest_at": "25:00"}),
        json!({"kinds": {}, "digest_at": "zes uur"}),
        json!({"kinds": {"meeting": "push"}}),
        json!({"kinds": {"post": "fax"}}),
        json!({"kinds": {}, "quiet_hours": {"timezone": "Europe/Amsterdam", "weekly": [{"day": "monday", "start": "08:00", "end": "08:00"}]}}),
        json!({"kinds": {}, "quiet_hours": {"timezone": "Nowhere", "weekly": []}}),
    ];
    for body in bad {
        let a = api.put(PREFS, &teacher, body.clone()).await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
    }
    assert_eq!(api.head().await, head, "nothing written");
    let settings = format!("/v1/schools/{}/settings", s.school_id);
    let dir = api.person(s.director);
    for body in [
        json!({"default_digest_at": "24:30"}),
        json!({"default_channels": {"post": "pigeon"}}),
    ] {
        let a = api
            .call(Method::PATCH, &settings, Some(&dir), Some(body.clone()))
            .await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
    }
    // Only the director changes the school's defaults.
    api.call(
        Method::PATCH,
        &settings,
        Some(&teacher),
        Some(json!({"default_channels": {"post": "email"}})),
    )
    .await
    .expect(403);
    assert_eq!(api.head().await, head, "nothing written");
}

async fn the_schools_defaults_fill_in_what_a_person_did_not_choose(api: Api) {
    let s = School::build(&api, "De Beuk").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let settings = format!("/v1/schools/{}/settings", s.school_id);
    api.call(
        Method::PATCH,
        &settings,
        Some(&api.person(s.director)),
        Some(json!({"default_channels": {"post": "email", "message": "digest"}, "default_digest_at": "06:45"})),
    )
    .await
    .expect(200);
    let shown = api
        .get_fresh(&settings, &api.person(s.teacher))
        .await
        .expect(200);
    assert_eq!(
        shown.body["default_channels"],
        json!({"post": "email", "message": "digest"})
    );
    assert_eq!(shown.body["default_digest_at"], "06:45");
    api.put(PREFS, &api.person(mum), json!({"kinds": {"post": "off"}}))
        .await
        .expect(200);
    let teacher = api
        .get_fresh(PREFS, &api.person(s.teacher))
        .await
        .expect(200);
    assert_eq!(teacher.body["kinds"]["post"], "email", "the school's");
    assert_eq!(teacher.body["kinds"]["message"], "digest", "the school's");
    assert_eq!(
        teacher.body["kinds"]["absence_reported"], "push",
        "built in"
    );
    assert_eq!(teacher.body["digest_at"], "06:45");
    let mums = api.get_fresh(PREFS, &api.person(mum)).await.expect(200);
    assert_eq!(mums.body["kinds"]["post"], "off", "her own");
    assert_eq!(mums.body["kinds"]["message"], "digest", "the school's");
}

async fn a_post_reaches_a_guardian_on_the_channel_they_chose(api: Api) {
    let s = School::build(&api, "De Wilg").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_b, "Papa").await;
    let other = s.guardian(&api, s.child_c, "Oma").await;
    api.put(PREFS, &api.person(mum), json!({"kinds": {"post": "email"}}))
        .await
        .expect(200);
    api.put(PREFS, &api.person(dad), json!({"kinds": {"post": "off"}}))
        .await
        .expect(200);
    let post = api
        .post(
            &format!("/v1/groups/{}/posts", s.group),
            Some(&api.person(s.teacher)),
            json!({"body": "Morgen gym"}),
        )
        .await
        .expect(201);
    let post_id = post.body["post_id"].clone();
    let of = |body: &Value| -> Vec<Value> {
        body["due"]
            .as_array()
            .unwrap()
            .iter()
            .chain(body["held"].as_array().unwrap())
            .filter(|n| n["kind"] == "post" && n["post_id"] == post_id)
            .cloned()
            .collect()
    };
    let mums = api
        .get_fresh("/v1/me/notifications", &api.person(mum))
        .await
        .expect(200);
    let mine = of(&mums.body);
    assert_eq!(mine.len(), 1, "{}", mums.body);
    assert_eq!(mine[0]["channel"], "email");
    assert_eq!(mine[0]["group_id"], json!(s.group));
    let dads = api
        .get_fresh("/v1/me/notifications", &api.person(dad))
        .await
        .expect(200);
    let his = of(&dads.body);
    assert_eq!(his.len(), 1, "off: still listed");
    assert_eq!(his[0]["channel"], "off");
    let others = api
        .get_fresh("/v1/me/notifications", &api.person(other))
        .await
        .expect(200);
    assert!(
        of(&others.body).is_empty(),
        "another group's guardian is not told"
    );
}

async fn an_acknowledged_absence_notifies_the_guardian_who_reported_it(api: Api) {
    let s = School::build(&api, "De Es").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let day = chrono::Utc::now().date_naive() + chrono::Duration::days(7);
    let absence = api
        .post(
            &format!("/v1/children/{}/absences", s.child_a),
            Some(&api.person(mum)),
            json!({"from": day, "to": day, "reason": "Bruiloft"}),
        )
        .await
        .expect(201);
    let absence_id = absence.body["absence_id"].clone();
    let ack = format!(
        "/v1/children/{}/absences/{}/acknowledgement",
        s.child_a,
        absence_id.as_str().unwrap()
    );
    // The teacher is told of the report.
    let teachers = api
        .get_fresh("/v1/me/notifications", &api.person(s.teacher))
        .await
        .expect(200);
    assert!(teachers.body["due"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["kind"] == "absence_reported" && n["absence_id"] == absence_id));
    let head = api.head().await;
    api.post(&ack, Some(&api.person(s.teacher2)), json!({}))
        .await
        .expect(403);
    api.post(&ack, Some(&api.person(mum)), json!({}))
        .await
        .expect(403);
    assert_eq!(api.head().await, head, "refusals write nothing");
    api.post(&ack, Some(&api.person(s.teacher)), json!({}))
        .await
        .expect(200);
    api.post(&ack, Some(&api.person(s.teacher)), json!({}))
        .await
        .expect(409);
    let mums = api
        .get_fresh("/v1/me/notifications", &api.person(mum))
        .await
        .expect(200);
    let acknowledged: Vec<&Value> = mums.body["due"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "absence_acknowledged")
        .collect();
    assert_eq!(acknowledged.len(), 1, "{}", mums.body);
    assert_eq!(acknowledged[0]["absence_id"], absence_id);
    assert_eq!(acknowledged[0]["child_id"], json!(s.child_a));
}
