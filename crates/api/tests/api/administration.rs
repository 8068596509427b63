//! School administration over real HTTP, on SQLite and on PostgreSQL: roles, corrections, moves,
//! the school's settings (time zone included), a new consent-policy version, paper consent
//! recorded by staff, and a child's absence list.

#![allow(clippy::unwrap_used)]

use crate::school_server;
use chrono::{Duration, Utc};
use reqwest::Method;
use school_server::{Api, School};
use serde_json::{json, Value};

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: Api::postgres;
    staff_record_a_guardians_paper_form_and_the_history_names_who_recorded_it,
    the_director_changes_settings_and_absence_notice_counts_days_in_the_schools_time_zone,
    a_new_policy_version_is_published_by_the_director_only,
    roles_corrections_and_moves_change_the_roster,
    a_childs_absences_are_listed_to_its_guardians_and_the_staff_of_its_group,
    invitations_past_their_date_are_recorded_expired_and_sent_again_with_a_new_code,
    a_year_transition_of_sixteen_groups_of_twenty_five_is_previewed_then_applied_once,
    the_schools_default_quiet_hours_hold_staff_notifications_unless_they_set_their_own,
    guardians_are_told_when_a_new_policy_version_asks_them_to_decide_again,
);

async fn staff_record_a_guardians_paper_form_and_the_history_names_who_recorded_it(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let path = format!("/v1/children/{}/consents/public_communication", s.child_a);
    let teacher = api.person(s.teacher);
    let head = api.head().await;
    // Refused, writing nothing: no paper method, another group's teacher, the parent naming
    // herself, and someone who is no guardian of the child.
    let refusals = [
        (
            api.person(s.teacher),
            json!({"granted": true, "guardian_id": mum}),
            422,
        ),
        (
            api.person(s.teacher2),
            json!({"granted": true, "method": "paper", "guardian_id": mum}),
            403,
        ),
        (
            api.person(mum),
            json!({"granted": true, "method": "paper", "guardian_id": mum}),
            403,
        ),
        (
            api.person(s.teacher),
            json!({"granted": true, "method": "paper", "guardian_id": s.officer}),
            404,
        ),
    ];
    for (token, body, status) in refusals {
        api.put(&path, &token, body).await.expect(status);
    }
    assert_eq!(api.head().await, head);

    let recorded = api
        .put(
            &path,
            &teacher,
            json!({"granted": true, "method": "paper", "guardian_id": mum}),
        )
        .await
        .expect(200);
    assert_eq!(recorded.body["effective"], true);
    api.put(&path, &api.person(mum), json!({"granted": false}))
        .await
        .expect(200);
    let history = api
        .get_fresh(
            &format!(
                "/v1/children/{}/consents/history?purpose=public_communication",
                s.child_a
            ),
            &api.person(s.officer),
        )
        .await
        .expect(200);
    let entries = history.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["guardian_id"], json!(mum));
    assert_eq!(entries[0]["method"], "paper");
    assert_eq!(entries[0]["recorded_by"], json!(s.teacher));
    assert_eq!(entries[1]["method"], "app");
    assert_eq!(entries[1]["recorded_by"], Value::Null);
}

async fn the_director_changes_settings_and_absence_notice_counts_days_in_the_schools_time_zone(
    api: Api,
) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let settings = format!("/v1/schools/{}/settings", s.school_id);
    let director = api.person(s.director);
    let shown = api.get(&settings, &api.person(mum)).await.expect(200);
    assert_eq!(
        shown.body,
        json!({"retention_days": 365, "absence_notice_days": 1, "invitation_valid_days": 14,
               "timezone": "Europe/Amsterdam", "default_quiet_hours": null,
               "default_channels": {}, "default_digest_at": "18:00"})
    );
    let head = api.head().await;
    for (token, body, status) in [
        (api.person(s.teacher), json!({"retention_days": 30}), 403),
        (director.clone(), json!({"timezone": "Mars/Olympus"}), 422),
        (director.clone(), json!({"retention_days": 0}), 422),
        (
            director.clone(),
            json!({"default_quiet_hours": {"timezone": "Europe/Amsterdam", "weekly": [{"day": "monday", "start": "25:00", "end": "07:00"}]}}),
            422,
        ),
    ] {
        api.call(Method::PATCH, &settings, Some(&token), Some(body))
            .await
            .expect(status);
    }
    assert_eq!(api.head().await, head, "a refused change writes nothing");

    // 25 hours apart: "today" in Kiritimati is always after today in Pago Pago, so the first
    // day a one-day notice allows in Pago Pago is too soon in Kiritimati.
    let day = Utc::now()
        .with_timezone(&chrono_tz::Pacific::Pago_Pago)
        .date_naive()
        + Duration::days(1);
    let absence = format!("/v1/children/{}/absences", s.child_a);
    let report = json!({"from": day, "to": day, "reason": "Tandarts"});
    api.call(
        Method::PATCH,
        &settings,
        Some(&director),
        Some(json!({"timezone": "Pacific/Kiritimati", "retention_days": 200})),
    )
    .await
    .expect(200);
    let refused = api
        .post(&absence, Some(&api.person(mum)), report.clone())
        .await
        .expect(422);
    assert_eq!(refused.code(), "rule_violated");
    let changed = api
        .call(
            Method::PATCH,
            &settings,
            Some(&director),
            Some(json!({"timezone": "Pacific/Pago_Pago",
                        "default_quiet_hours": {"timezone": "Europe/Amsterdam", "weekly": [{"day": "friday", "start": "18:00", "end": "07:00"}]}})),
        )
        .await
        .expect(200);
    api.post(&absence, Some(&api.person(mum)), report)
        .await
        .expect(201);
    let shown = api
        .get(
            &format!("{settings}?min_position={}", changed.position()),
            &api.person(s.teacher),
        )
        .await
        .expect(200);
    assert_eq!(shown.body["timezone"], "Pacific/Pago_Pago");
    assert_eq!(shown.body["retention_days"], 200, "an earlier change stays");
    assert_eq!(
        shown.body["default_quiet_hours"]["weekly"][0],
        json!({"day": "friday", "start": "18:00", "end": "07:00"})
    );
    // The operator may change settings; someone outside the school does not learn they exist.
    api.call(
        Method::PATCH,
        &settings,
        Some(&api.operator()),
        Some(json!({"absence_notice_days": 2})),
    )
    .await
    .expect(200);
    let stranger = School::build(&api, "Het Anker").await;
    api.get(&settings, &api.person(stranger.teacher))
        .await
        .expect(404);
}

async fn a_new_policy_version_is_published_by_the_director_only(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let path = format!("/v1/schools/{}/consent-policy", s.school_id);
    let head = api.head().await;
    let purposes = json!([
        {"purpose": "group_communication", "description": "Foto's in de klassengroep."},
        {"purpose": "school_communication", "description": "Foto's voor de hele school."},
    ]);
    api.post(
        &path,
        Some(&api.person(s.teacher)),
        json!({"purposes": purposes}),
    )
    .await
    .expect(403);
    api.post(&path, Some(&api.operator()), json!({"purposes": purposes}))
        .await
        .expect(403);
    for bad in [
        json!([]),
        json!([{"purpose": "group_communication", "description": "a"}, {"purpose": "group_communication", "description": "b"}]),
        json!([{"purpose": "photos", "description": "a"}]),
    ] {
        api.post(
            &path,
            Some(&api.person(s.director)),
            json!({"purposes": bad}),
        )
        .await
        .expect(422);
    }
    assert_eq!(api.head().await, head);
    let published = api
        .post(
            &path,
            Some(&api.person(s.director)),
            json!({"purposes": purposes}),
        )
        .await
        .expect(201);
    assert_eq!(published.body["version"], 2);
    let shown = api
        .get_fresh(&path, &api.person(s.teacher))
        .await
        .expect(200);
    assert_eq!(shown.body["version"], 2);
    assert_eq!(
        shown.body["purposes"][0]["description"],
        "Foto's in de klassengroep."
    );
    // A purpose the new version no longer asks for cannot be decided.
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let refused = api
        .put(
            &format!("/v1/children/{}/consents/internal_research", s.child_a),
            &api.person(mum),
            json!({"granted": true}),
        )
        .await
        .expect(422);
    assert_eq!(refused.code(), "rule_violated");
}

async fn roles_corrections_and_moves_change_the_roster(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let director = api.person(s.director);
    let role = format!("/v1/schools/{}/staff/{}/role", s.school_id, s.teacher2);
    // A teacher made director creates groups; the same role twice is a conflict.
    api.put(&role, &director, json!({"role": "director"}))
        .await
        .expect(200);
    api.put(&role, &director, json!({"role": "director"}))
        .await
        .expect(409);
    api.post(
        &format!("/v1/schools/{}/groups", s.school_id),
        Some(&api.person(s.teacher2)),
        json!({"name": "Groep 8"}),
    )
    .await
    .expect(201);

    // A correction of the first name keeps the initial.
    let corrected = api
        .call(
            Method::PATCH,
            &format!("/v1/children/{}", s.child_b),
            Some(&api.person(s.teacher)),
            Some(json!({"first_name": "Daniël"})),
        )
        .await
        .expect(200);
    let group = api
        .get(
            &format!(
                "/v1/groups/{}?min_position={}",
                s.group,
                corrected.position()
            ),
            &api.person(s.teacher),
        )
        .await
        .expect(200);
    let child = group.body["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["child_id"] == json!(s.child_b))
        .unwrap()
        .clone();
    assert_eq!(
        (child["first_name"].as_str(), child["last_initial"].as_str()),
        (Some("Daniël"), Some("J"))
    );
    api.call(
        Method::PATCH,
        &format!("/v1/children/{}", s.child_b),
        Some(&api.person(s.teacher)),
        Some(json!({})),
    )
    .await
    .expect(422);

    // The teacher of the child's group moves the child; a move to the school group is refused.
    let moved = api
        .post(
            &format!("/v1/children/{}/move", s.child_b),
            Some(&api.person(s.teacher)),
            json!({"group_id": s.group2}),
        )
        .await
        .expect(200);
    let group2 = api
        .get(
            &format!("/v1/groups/{}?min_position={}", s.group2, moved.position()),
            &api.person(s.teacher2),
        )
        .await
        .expect(200);
    assert!(group2.text.contains(&s.child_b.to_string()));
    api.post(
        &format!("/v1/children/{}/move", s.child_a),
        Some(&api.person(s.teacher)),
        json!({"group_id": s.school_group}),
    )
    .await
    .expect(422);
    // Unenrolment names the child's group: another group's path does not find it.
    api.call(
        Method::DELETE,
        &format!("/v1/groups/{}/children/{}", s.group, s.child_b),
        Some(&director),
        None,
    )
    .await
    .expect(404);
    api.call(
        Method::DELETE,
        &format!("/v1/groups/{}/children/{}", s.group2, s.child_b),
        Some(&director),
        None,
    )
    .await
    .expect(200);
    // Staff removed from the school: a second removal finds nobody.
    let remove = format!("/v1/schools/{}/staff/{}", s.school_id, s.teacher);
    api.call(Method::DELETE, &remove, Some(&director), None)
        .await
        .expect(200);
    api.call(Method::DELETE, &remove, Some(&director), None)
        .await
        .expect(404);
}

async fn a_childs_absences_are_listed_to_its_guardians_and_the_staff_of_its_group(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let other_parent = s.guardian(&api, s.child_c, "Papa").await;
    let path = format!("/v1/children/{}/absences", s.child_a);
    let day = Utc::now().date_naive() + Duration::days(5);
    let reported = api
        .post(
            &path,
            Some(&api.person(mum)),
            json!({"from": day, "to": day + Duration::days(1), "reason": "Bruiloft"}),
        )
        .await
        .expect(201);
    for who in [mum, s.teacher, s.director] {
        let listed = api.get_fresh(&path, &api.person(who)).await.expect(200);
        let absences = listed.body["absences"].as_array().unwrap();
        assert_eq!(absences.len(), 1, "{who}");
        assert_eq!(absences[0]["absence_id"], reported.body["absence_id"]);
        assert_eq!(absences[0]["reason"], "Bruiloft");
        assert_eq!(absences[0]["cancelled"], false);
    }
    api.get_fresh(&path, &api.person(s.teacher2))
        .await
        .expect(403);
    api.get_fresh(&path, &api.person(other_parent))
        .await
        .expect(404);
}

async fn invitations_past_their_date_are_recorded_expired_and_sent_again_with_a_new_code(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let (invitation, code) = s.invite(&api, s.child_a, "laat@home.example").await;
    let resend = format!("/v1/invitations/{invitation}/resend");
    // Still open: nothing to send again.
    api.post(&resend, Some(&api.person(s.teacher)), json!({}))
        .await
        .expect(409);
    let state = &api.running.state;
    let later = Utc::now() + Duration::days(15);
    api.caught_up().await;
    let expired = kring_api::invitation_expiry::expire_due(state, later)
        .await
        .unwrap();
    assert_eq!(expired, [kring_domain::InvitationId::from_uuid(invitation)]);
    api.caught_up().await;
    assert!(
        kring_api::invitation_expiry::expire_due(state, later)
            .await
            .unwrap()
            .is_empty(),
        "expired once"
    );
    let listed = api
        .get_fresh(
            &format!("/v1/groups/{}/invitations", s.group),
            &api.person(s.teacher),
        )
        .await
        .expect(200);
    assert_eq!(listed.body["invitations"][0]["status"], "expired");
    // The code's holder is told it expired, and to ask for a new one.
    let late = api
        .post(
            "/v1/invitations/accept",
            None,
            json!({"code": code, "display_name": "Te Laat"}),
        )
        .await
        .expect(422);
    assert!(late.body["detail"].as_str().unwrap().contains("expired"));

    // Staff of another group, and parents, send nothing.
    let head = api.head().await;
    api.post(&resend, Some(&api.person(s.teacher2)), json!({}))
        .await
        .expect(403);
    assert_eq!(api.head().await, head);
    let again = api
        .post(&resend, Some(&api.person(s.teacher)), json!({}))
        .await
        .expect(201);
    let new_code = again.body["code"].as_str().unwrap().to_owned();
    assert_ne!(new_code, code);
    assert_ne!(again.body["invitation_id"], json!(invitation));
    let accepted = api
        .post(
            "/v1/invitations/accept",
            None,
            json!({"code": new_code, "display_name": "Op Tijd"}),
        )
        .await
        .expect(200);
    api.post(
        &format!(
            "/v1/invitations/{}/approve",
            again.body["invitation_id"].as_str().unwrap()
        ),
        Some(&api.person(s.teacher)),
        json!({}),
    )
    .await
    .expect(200);
    let me = api
        .get_fresh(
            "/v1/me",
            &api.person(kring_domain::PersonId::from_uuid(
                accepted.body["person_id"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )),
        )
        .await
        .expect(200);
    assert_eq!(me.body["email"], "laat@home.example", "the same address");
    assert_eq!(me.body["children"][0]["child_id"], json!(s.child_a));
}

/// Seals and appends a simulated school's log into the server's store, as if it had been
/// written through the API.
async fn seed(api: &Api, world: &kring_domain::simulation::World) {
    use kring_store::{EventStore, ExpectedVersion, Metadata};
    let system = &api.running.state.system;
    for r in &world.log {
        let sealed = system
            .vault
            .seal(&r.event, Metadata::new(r.at, r.actor))
            .await
            .unwrap();
        system
            .store
            .append(&r.stream, ExpectedVersion::Any, vec![sealed])
            .await
            .unwrap();
    }
    api.caught_up().await;
}

async fn a_year_transition_of_sixteen_groups_of_twenty_five_is_previewed_then_applied_once(
    api: Api,
) {
    let world = kring_domain::simulation::World::with_classes(16, 25, 2);
    seed(&api, &world).await;
    let director = api.person(world.director);
    let path = format!("/v1/schools/{}/year-transition", world.school_id);
    let last = world.groups.len() - 1;
    let groups: Vec<Value> = world
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                let leavers: Vec<_> = world.school.audience_children(*g).collect();
                json!({"group_id": g, "leavers": leavers, "archive": true})
            } else {
                json!({"group_id": g, "children_to_new": format!("Groep {} (2027)", i + 2), "archive": true})
            }
        })
        .collect();
    let new_groups: Vec<Value> = (0..last)
        .map(|i| json!({"name": format!("Groep {} (2027)", i + 2)}))
        .collect();
    let body = |dry_run: bool| json!({"dry_run": dry_run, "effective_on": "2027-08-30", "groups": groups, "new_groups": new_groups});
    api.post(&path, Some(&api.person(world.staff[1])), body(true))
        .await
        .expect(403);
    let head = api.head().await;
    let preview = api
        .post(&path, Some(&director), body(true))
        .await
        .expect(200);
    assert_eq!(api.head().await, head, "a dry run writes nothing");
    assert_eq!(preview.body["position"], Value::Null);
    let changes = preview.body["changes"].as_array().unwrap();
    let count = |kind: &str| changes.iter().filter(|c| c["kind"] == kind).count();
    assert_eq!(
        (
            count("group_created"),
            count("child_moved"),
            count("child_left"),
            count("group_archived")
        ),
        (15, 375, 25, 16)
    );
    let leaver = changes.iter().find(|c| c["kind"] == "child_left").unwrap();
    assert_eq!(
        leaver["guardians_losing_access"].as_array().unwrap().len(),
        2
    );

    let applied = api
        .post(&path, Some(&director), body(false))
        .await
        .expect(200);
    assert_eq!(applied.body["changes"], preview.body["changes"]);
    let at = applied.position();
    assert_eq!(at, head + 431, "one event per change");

    // The new groups hold the moved classes; the old ones are archived and take no posts.
    let created = changes
        .iter()
        .find(|c| c["kind"] == "group_created")
        .unwrap();
    let group = api
        .get(
            &format!(
                "/v1/groups/{}?min_position={at}",
                created["group_id"].as_str().unwrap()
            ),
            &director,
        )
        .await
        .expect(200);
    assert_eq!(group.body["children"].as_array().unwrap().len(), 25);
    let old = api
        .get(&format!("/v1/groups/{}", world.groups[0]), &director)
        .await
        .expect(200);
    assert_eq!(old.body["archived"], true);
    assert!(old.body["children"].as_array().unwrap().is_empty());
    let teacher = *world.school.groups[&world.groups[0]]
        .staff
        .iter()
        .next()
        .unwrap();
    let refused = api
        .post(
            &format!("/v1/groups/{}/posts", world.groups[0]),
            Some(&api.person(teacher)),
            json!({"body": "Nog een bericht"}),
        )
        .await
        .expect(422);
    assert_eq!(refused.code(), "rule_violated");

    // Applying the same request again changes nothing.
    let again = api
        .post(&path, Some(&director), body(false))
        .await
        .expect(200);
    assert_eq!(again.body["changes"], json!([]));
    assert_eq!(api.head().await, at);
}

async fn the_schools_default_quiet_hours_hold_staff_notifications_unless_they_set_their_own(
    api: Api,
) {
    use chrono::Datelike;
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    // Quiet all week, in two halves a day.
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let weekly: Vec<Value> = days
        .iter()
        .flat_map(|d| {
            [
                json!({"day": d, "start": "00:00", "end": "12:00"}),
                json!({"day": d, "start": "12:00", "end": "24:00"}),
            ]
        })
        .collect();
    api.call(
        Method::PATCH,
        &format!("/v1/schools/{}/settings", s.school_id),
        Some(&api.person(s.director)),
        Some(json!({"default_quiet_hours": {"timezone": "Europe/Amsterdam", "weekly": weekly}})),
    )
    .await
    .expect(200);
    let availability = format!("/v1/people/{}/availability", s.teacher);
    let shown = api
        .get_fresh(&availability, &api.person(mum))
        .await
        .expect(200);
    assert_eq!(shown.body["in_quiet_hours"], true, "{}", shown.text);
    let started = api
        .post(
            "/v1/conversations",
            Some(&api.person(mum)),
            json!({"child_id": s.child_a, "body": "Een vraag."}),
        )
        .await
        .expect(201);
    let held = api
        .get_fresh("/v1/me/notifications", &api.person(s.teacher))
        .await
        .expect(200);
    assert_eq!(held.body["due"], json!([]));
    assert_eq!(
        held.body["held"][0]["conversation_id"],
        started.body["conversation_id"]
    );
    // Her own schedule (an hour on another day) replaces the default.
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Amsterdam)
        .weekday();
    let other_day = days[(today.num_days_from_monday() as usize + 3) % 7];
    api.put(
        "/v1/me/quiet-hours",
        &api.person(s.teacher),
        json!({"timezone": "Europe/Amsterdam", "weekly": [{"day": other_day, "start": "10:00", "end": "11:00"}]}),
    )
    .await
    .expect(200);
    let shown = api
        .get_fresh(&availability, &api.person(mum))
        .await
        .expect(200);
    assert_eq!(shown.body["in_quiet_hours"], false);
    api.post(
        &format!(
            "/v1/conversations/{}/messages",
            started.body["conversation_id"].as_str().unwrap()
        ),
        Some(&api.person(mum)),
        json!({"body": "Nog een vraag."}),
    )
    .await
    .expect(201);
    let due = api
        .get_fresh("/v1/me/notifications", &api.person(s.teacher))
        .await
        .expect(200);
    assert_eq!(due.body["due"].as_array().unwrap().len(), 1);
}

async fn guardians_are_told_when_a_new_policy_version_asks_them_to_decide_again(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let path = format!("/v1/schools/{}/consent-policy", s.school_id);
    let current = api.get(&path, &api.person(s.director)).await.expect(200);
    let mut purposes = current.body["purposes"].clone();
    for p in purposes.as_array_mut().unwrap() {
        if p["purpose"] == "group_communication" {
            p["description"] = json!("Foto's en video's in de klas-app.");
        }
    }
    api.post(
        &path,
        Some(&api.person(s.director)),
        json!({"purposes": purposes}),
    )
    .await
    .expect(201);
    let told = api
        .get_fresh("/v1/me/notifications", &api.person(mum))
        .await
        .expect(200);
    let asked: Vec<&Value> = told.body["due"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "consent_needed")
        .collect();
    assert_eq!(asked.len(), 1, "{}", told.text);
    assert_eq!(asked[0]["policy_version"], 2);
    assert_eq!(asked[0]["school_id"], json!(s.school_id));
    let teacher = api
        .get_fresh("/v1/me/notifications", &api.person(s.teacher))
        .await
        .expect(200);
    assert!(!teacher.text.contains("consent_needed"));
    // Once she is no guardian at the school any more, it is not hers to read.
    api.call(
        Method::DELETE,
        &format!("/v1/children/{}/guardians/{mum}", s.child_a),
        Some(&api.person(s.teacher)),
        None,
    )
    .await
    .expect(200);
    let after = api
        .get_fresh("/v1/me/notifications", &api.person(mum))
        .await
        .expect(200);
    assert!(!after.text.contains("consent_needed"), "{}", after.text);
}
