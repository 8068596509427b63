//! The meeting planner over real HTTP, on SQLite files and on PostgreSQL: guardians racing for
//! slots, what staff and guardians see, the deadline, moved children, erased guardians, and the
//! schedules and calendar feed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use crate::school_server;
use chrono::{Duration, Utc};
use kring_domain::invitation::{self, InvitationAction, InvitationContext};
use kring_domain::school::{self, SchoolAction};
use kring_domain::{
    Actor, ChildId, Command, GroupId, InvitationId, PersonId, SchoolId, StreamName,
};
use reqwest::Method;
use school_server::{Api, School};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| Api::sqlite(), postgres: Api::postgres;
    thirty_two_guardians_racing_for_five_slots_five_book_the_rest_get_409_naming_the_slot,
    guardians_see_free_or_taken_and_their_own_staff_see_everything,
    after_book_until_guardians_can_no_longer_book_or_change_but_staff_can,
    a_cancelled_or_closed_round_refuses_bookings,
    a_child_moved_to_another_group_keeps_its_booking_in_the_old_round,
    an_erased_guardians_booking_stays_for_the_child,
    per_family_one_booking_holds_the_siblings_in_the_rounds_groups,
    a_guardian_with_children_in_two_groups_gets_no_overlapping_slot_and_adjacent_suggestions,
    both_guardians_see_the_booking_and_either_can_move_or_cancel_it,
    the_place_is_sealed_in_the_log_shown_in_the_round_and_erased_with_who_opened_it,
    a_round_opened_before_the_place_was_sealed_is_shown_booked_and_erased_like_a_new_one,
    a_guardians_bookings_and_a_teachers_conversations_are_in_their_data_exports,
    the_calendar_feed_has_meetings_and_activities_with_stable_uids_and_a_key_that_rotates,
);

/// Links `guardian`, a person Kring knows, as guardian of another child by writing the
/// invitation's events through the executor with the domain's actions (the API invites new
/// people only).
async fn link_existing_guardian(
    api: &Api,
    staff: PersonId,
    school_id: SchoolId,
    guardian: PersonId,
    child_id: ChildId,
) {
    let exec = &api.running.state.exec;
    let invitation_id = InvitationId::generate();
    let stream = StreamName::invitation(invitation_id);
    let roster = exec.school(school_id).await.unwrap();
    let staff = Actor::Person(staff);
    let run = |actor: Actor, action: InvitationAction| {
        let roster = roster.clone();
        async move {
            exec.run::<invitation::Invitation, _>(stream, actor, uuid::Uuid::now_v7(), |s, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: s,
                        school: &roster.state,
                    },
                    Command::new(actor, action.clone()),
                    now,
                )
            })
            .await
            .unwrap()
        }
    };
    run(
        staff,
        InvitationAction::Invite {
            invitation_id,
            child_id,
            email: format!("{guardian}@mail.example"),
            invitee_id: guardian,
            code_digest: "digest-of-the-code".into(),
            mail_code: None,
        },
    )
    .await;
    run(
        Actor::Person(guardian),
        InvitationAction::Accept {
            code_digest: "digest-of-the-code".into(),
            display_name: "Ouder".into(),
        },
    )
    .await;
    run(staff, InvitationAction::Approve { child_id: None }).await;
    let approved = exec
        .load::<invitation::Invitation>(&stream)
        .await
        .unwrap()
        .state;
    exec.run_school(school_id, staff, uuid::Uuid::now_v7(), |roster, now| {
        school::decide(
            roster,
            Command::new(
                staff,
                SchoolAction::LinkGuardian {
                    invitation: approved.clone(),
                },
            ),
            now,
        )
    })
    .await
    .unwrap();
}

/// Opens a round of `slots` ten-minute slots a week from now in `group`, held by `teacher`.
async fn open_round(
    api: &Api,
    group: GroupId,
    teacher: PersonId,
    slots: i64,
    per: &str,
    offset_minutes: i64,
) -> String {
    // A whole hour a week from now, so that rounds opened one after the other line up.
    let start = (Utc::now() + Duration::days(7))
        .date_naive()
        .and_hms_opt(15, 0, 0)
        .unwrap()
        .and_utc()
        + Duration::minutes(offset_minutes);
    let slots: Vec<Value> = (0..slots)
        .map(|i| {
            json!({
                "starts_at": start + Duration::minutes(10 * i),
                "ends_at": start + Duration::minutes(10 * i + 10),
                "staff": [teacher],
            })
        })
        .collect();
    let r = api
        .post(
            &format!("/v1/groups/{group}/meeting-rounds"),
            Some(&api.person(teacher)),
            json!({
                "title": "Tienminutengesprekken",
                "per": per,
                "slots": slots,
                "place": {"kind": "room", "name": "Lokaal 4"},
                "book_until": Utc::now() + Duration::days(6),
            }),
        )
        .await
        .expect(201);
    r.body["round_id"].as_str().unwrap().to_owned()
}

async fn book(
    api: &Api,
    round: &str,
    who: PersonId,
    slot: u32,
    child: ChildId,
) -> school_server::Answer {
    api.post(
        &format!("/v1/meeting-rounds/{round}/bookings"),
        Some(&api.person(who)),
        json!({"slot_id": slot, "child_id": child}),
    )
    .await
}

fn assert_problem(a: &school_server::Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.text);
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "{}",
        a.content_type
    );
    assert_eq!(a.body["code"], code, "{}", a.text);
}

async fn thirty_two_guardians_racing_for_five_slots_five_book_the_rest_get_409_naming_the_slot(
    api: Api,
) {
    let s = School::build(&api, "De Regenboog").await;
    let dir = api.person(s.director);
    let mut families = Vec::new();
    for i in 0..32 {
        let r = api
            .post(
                &format!("/v1/groups/{}/children", s.group),
                Some(&dir),
                json!({"first_name": format!("Kind{i}"), "last_initial": "K"}),
            )
            .await
            .expect(201);
        let child = ChildId::from_uuid(r.body["child_id"].as_str().unwrap().parse().unwrap());
        let guardian = s.guardian(&api, child, &format!("Ouder{i}")).await;
        families.push((guardian, child));
    }
    let round = open_round(&api, s.group, s.teacher, 5, "child", 0).await;
    let api = Arc::new(api);
    let barrier = Arc::new(tokio::sync::Barrier::new(families.len()));
    let racers: Vec<_> = families
        .iter()
        .enumerate()
        .map(|(i, (guardian, child))| {
            let (api, round, barrier) = (Arc::clone(&api), round.clone(), Arc::clone(&barrier));
            let (guardian, child) = (*guardian, *child);
            let slot = u32::try_from(i % 5).unwrap() + 1;
            tokio::spawn(async move {
                barrier.wait().await;
                (slot, book(&api, &round, guardian, slot, child).await)
            })
        })
        .collect();
    let mut booked = BTreeSet::new();
    let mut refused = 0;
    for racer in racers {
        let (slot, answer) = racer.await.unwrap();
        match answer.status.as_u16() {
            201 => assert!(booked.insert(slot), "slot {slot} booked twice"),
            _ => {
                assert_problem(&answer, 409, "conflict");
                let detail = answer.body["detail"].as_str().unwrap();
                assert!(
                    detail.contains(&format!("slot {slot} ")) && detail.contains("is taken"),
                    "{detail}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(booked, BTreeSet::from([1, 2, 3, 4, 5]));
    assert_eq!(refused, 27);
    let view = api
        .get(
            &format!("/v1/meeting-rounds/{round}"),
            &api.person(s.teacher),
        )
        .await
        .expect(200);
    let taken = view.body["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "taken")
        .count();
    assert_eq!(taken, 5);
    assert_eq!(
        view.body["not_booked"].as_array().unwrap().len(),
        32 + 2 - 5
    );
}

async fn guardians_see_free_or_taken_and_their_own_staff_see_everything(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_a, "Papa").await;
    let daans = s.guardian(&api, s.child_b, "Vader").await;
    let stranger = s.guardian(&api, s.child_c, "Buur").await;
    let round = open_round(&api, s.group, s.teacher, 4, "child", 0).await;
    let path = format!("/v1/meeting-rounds/{round}");
    let mine = book(&api, &round, mum, 2, s.child_a).await.expect(201);
    let booking = mine.body["booking_id"].as_str().unwrap().to_owned();
    book(&api, &round, daans, 3, s.child_b).await.expect(201);
    api.post(
        &format!("{path}/slots/4/block"),
        Some(&api.person(s.teacher)),
        json!({}),
    )
    .await
    .expect(200);

    // Both guardians of Sanne see her booking; Daan's booking is only "taken" to them.
    for parent in [mum, dad] {
        let v = api.get(&path, &api.person(parent)).await.expect(200);
        assert_eq!(v.body["as_staff"], false);
        assert!(v.body["not_booked"].is_null());
        let states: Vec<&str> = v.body["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["free", "taken", "taken", "taken"]);
        assert_eq!(
            v.body["slots"][1]["booking"]["booking_id"],
            booking.as_str()
        );
        assert!(v.body["slots"][2]["booking"].is_null());
        assert!(!v.text.contains(&daans.to_string()));
        assert!(!v.text.contains(&s.child_b.to_string()));
        assert_eq!(v.body["my_bookings"].as_array().unwrap().len(), 1);
    }
    // Staff see who booked, the blocked slot, and who has not booked yet.
    let v = api.get(&path, &api.person(s.teacher)).await.expect(200);
    assert_eq!(
        v.body["slots"][2]["booking"]["booked_by"],
        daans.to_string()
    );
    assert_eq!(v.body["slots"][3]["state"], "blocked");
    assert_eq!(v.body["not_booked"], json!([]));
    // Someone with no child in the round does not learn it exists.
    assert_problem(
        &api.get(&path, &api.person(stranger)).await,
        404,
        "not_found",
    );
    // Dad moves the booking, mum cancels it; Daan's father cannot touch it.
    let b = format!("{path}/bookings/{booking}");
    assert_problem(
        &api.put(&b, &api.person(daans), json!({"slot_id": 1})).await,
        403,
        "forbidden",
    );
    api.put(&b, &api.person(dad), json!({"slot_id": 1}))
        .await
        .expect(200);
    assert_problem(
        &api.put(&b, &api.person(dad), json!({"slot_id": 3})).await,
        409,
        "conflict",
    );
    api.call(Method::DELETE, &b, Some(&api.person(mum)), None)
        .await
        .expect(200);
    // Staff assign a slot to the family that did not book.
    book(&api, &round, s.teacher, 2, s.child_a)
        .await
        .expect(201);
    let v = api.get(&path, &api.person(dad)).await.expect(200);
    assert_eq!(v.body["my_bookings"][0]["slot_id"], 2);
    assert_eq!(v.body["my_bookings"][0]["booked_by"], s.teacher.to_string());
    // The schedules (read model): the teacher's and the family's.
    let me = api
        .get_fresh("/v1/me/meetings", &api.person(s.teacher))
        .await
        .expect(200);
    assert_eq!(me.body["as_staff"].as_array().unwrap().len(), 2);
    let me = api
        .get_fresh("/v1/me/meetings", &api.person(mum))
        .await
        .expect(200);
    assert_eq!(me.body["as_guardian"].as_array().unwrap().len(), 1);
    assert_eq!(me.body["as_guardian"][0]["slot_id"], 2);
}

async fn after_book_until_guardians_can_no_longer_book_or_change_but_staff_can(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let start = Utc::now() + Duration::days(2);
    let r = api
        .post(
            &format!("/v1/groups/{}/meeting-rounds", s.group),
            Some(&api.person(s.teacher)),
            json!({
                "title": "Rapportgesprekken",
                "per": "child",
                "slots": [
                    {"starts_at": start, "ends_at": start + Duration::minutes(10), "staff": [s.teacher]},
                    {"starts_at": start + Duration::minutes(10), "ends_at": start + Duration::minutes(20), "staff": [s.teacher]},
                ],
                "place": {"kind": "online", "url": "https://meet.example/groep-3"},
                "book_until": Utc::now() - Duration::minutes(1),
            }),
        )
        .await
        .expect(201);
    let round = r.body["round_id"].as_str().unwrap().to_owned();
    assert_problem(
        &book(&api, &round, mum, 1, s.child_a).await,
        422,
        "rule_violated",
    );
    let assigned = book(&api, &round, s.teacher, 1, s.child_a)
        .await
        .expect(201);
    let b = format!(
        "/v1/meeting-rounds/{round}/bookings/{}",
        assigned.body["booking_id"].as_str().unwrap()
    );
    assert_problem(
        &api.put(&b, &api.person(mum), json!({"slot_id": 2})).await,
        422,
        "rule_violated",
    );
    assert_problem(
        &api.call(Method::DELETE, &b, Some(&api.person(mum)), None)
            .await,
        422,
        "rule_violated",
    );
    api.put(&b, &api.person(s.teacher), json!({"slot_id": 2}))
        .await
        .expect(200);
    api.call(Method::DELETE, &b, Some(&api.person(s.teacher)), None)
        .await
        .expect(200);
}

async fn a_cancelled_or_closed_round_refuses_bookings(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    for end in ["close", "cancel"] {
        let round = open_round(&api, s.group, s.teacher, 2, "child", 0).await;
        assert_problem(
            &api.post(
                &format!("/v1/meeting-rounds/{round}/{end}"),
                Some(&api.person(mum)),
                json!({}),
            )
            .await,
            403,
            "forbidden",
        );
        api.post(
            &format!("/v1/meeting-rounds/{round}/{end}"),
            Some(&api.person(s.teacher)),
            json!({}),
        )
        .await
        .expect(200);
        let refused = book(&api, &round, mum, 1, s.child_a).await;
        assert_problem(&refused, 422, "rule_violated");
        assert!(refused.body["detail"]
            .as_str()
            .unwrap()
            .contains(if end == "close" {
                "closed"
            } else {
                "cancelled"
            }));
        assert_problem(
            &book(&api, &round, s.teacher, 1, s.child_a).await,
            422,
            "rule_violated",
        );
    }
}

async fn a_child_moved_to_another_group_keeps_its_booking_in_the_old_round(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let round = open_round(&api, s.group, s.teacher, 3, "child", 0).await;
    let booked = book(&api, &round, mum, 1, s.child_a).await.expect(201);
    api.post(
        &format!("/v1/children/{}/move", s.child_a),
        Some(&api.person(s.director)),
        json!({"group_id": s.group2}),
    )
    .await
    .expect(200);
    // The booking stands and she still sees and manages it…
    let path = format!("/v1/meeting-rounds/{round}");
    let v = api.get(&path, &api.person(mum)).await.expect(200);
    assert_eq!(
        v.body["my_bookings"][0]["booking_id"],
        booked.body["booking_id"]
    );
    assert_eq!(v.body["my_children_to_book"], json!([]));
    let b = format!(
        "{path}/bookings/{}",
        booked.body["booking_id"].as_str().unwrap()
    );
    api.put(&b, &api.person(mum), json!({"slot_id": 2}))
        .await
        .expect(200);
    api.call(Method::DELETE, &b, Some(&api.person(mum)), None)
        .await
        .expect(200);
    // …but the child is no longer booked anew in the old group's round, which she, with no
    // child in it and no booking, no longer sees at all.
    assert_problem(
        &book(&api, &round, mum, 1, s.child_a).await,
        404,
        "not_found",
    );
    assert_problem(&api.get(&path, &api.person(mum)).await, 404, "not_found");
    // The staff list of who has not booked no longer holds her.
    let v = api.get(&path, &api.person(s.teacher)).await.expect(200);
    assert!(!v.text.contains(&s.child_a.to_string()));
}

async fn an_erased_guardians_booking_stays_for_the_child(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_a, "Papa").await;
    let round = open_round(&api, s.group, s.teacher, 3, "child", 0).await;
    let booked = book(&api, &round, mum, 1, s.child_a).await.expect(201);
    api.post(
        &format!("/v1/people/{mum}/erasure"),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    let path = format!("/v1/meeting-rounds/{round}");
    let v = api.get(&path, &api.person(s.teacher)).await.expect(200);
    let slot = &v.body["slots"][0];
    assert_eq!(slot["state"], "taken");
    assert_eq!(slot["booking"]["child_ids"], json!([s.child_a]));
    assert_eq!(slot["booking"]["booked_by_erased"], true);
    // The other guardian manages it; the erased one no longer can.
    let b = format!(
        "{path}/bookings/{}",
        booked.body["booking_id"].as_str().unwrap()
    );
    assert_problem(
        &api.put(&b, &api.person(mum), json!({"slot_id": 2})).await,
        404,
        "not_found",
    );
    api.put(&b, &api.person(dad), json!({"slot_id": 2}))
        .await
        .expect(200);
}

async fn per_family_one_booking_holds_the_siblings_in_the_rounds_groups(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    // One mother of Sanne (group 3) and Noor (group 4); Daan is in group 3 as well.
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    link_existing_guardian(&api, s.teacher2, s.school_id, mum, s.child_c).await;
    // A family round over both groups: one booking holds both children.
    let family = api
        .post(
            &format!("/v1/groups/{}/meeting-rounds", s.group),
            Some(&api.person(s.director)),
            json!({
                "title": "Gezinsgesprekken",
                "per": "family",
                "group_ids": [s.group2],
                "generate": {"days": [{"date": (Utc::now() + Duration::days(20)).date_naive(), "from": "15:00", "to": "16:00"}],
                             "slot_minutes": 15, "staff": [s.teacher, s.teacher2]},
                "place": {"kind": "room", "name": "Aula"},
                "book_until": Utc::now() + Duration::days(10),
            }),
        )
        .await
        .expect(201);
    let family = family.body["round_id"].as_str().unwrap().to_owned();
    let b = book(&api, &family, mum, 1, s.child_c).await.expect(201);
    let v = api
        .get(&format!("/v1/meeting-rounds/{family}"), &api.person(mum))
        .await
        .expect(200);
    let children: BTreeSet<String> = v.body["my_bookings"][0]["child_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        children,
        BTreeSet::from([s.child_a.to_string(), s.child_c.to_string()])
    );
    assert_problem(
        &book(&api, &family, mum, 2, s.child_a).await,
        409,
        "conflict",
    );
    // Each child's guardian sees the one booking; cancelled, the family books again.
    let noors_dad = s.guardian(&api, s.child_c, "Papa").await;
    let v = api
        .get(
            &format!("/v1/meeting-rounds/{family}"),
            &api.person(noors_dad),
        )
        .await
        .expect(200);
    assert_eq!(v.body["my_bookings"][0]["booking_id"], b.body["booking_id"]);
    assert_eq!(v.body["my_children_to_book"], json!([]));
    api.call(
        Method::DELETE,
        &format!(
            "/v1/meeting-rounds/{family}/bookings/{}",
            b.body["booking_id"].as_str().unwrap()
        ),
        Some(&api.person(mum)),
        None,
    )
    .await
    .expect(200);
    book(&api, &family, mum, 2, s.child_a).await.expect(201);
}

async fn a_guardian_with_children_in_two_groups_gets_no_overlapping_slot_and_adjacent_suggestions(
    api: Api,
) {
    let s = School::build(&api, "De Regenboog").await;
    // One mother of Sanne (group 3) and Noor (group 4).
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    link_existing_guardian(&api, s.teacher2, s.school_id, mum, s.child_c).await;
    // Two rounds at the same times, one per group: once the first is booked (and projected),
    // the overlapping slot of the second is refused and the adjacent ones are suggested.
    let r3 = open_round(&api, s.group, s.teacher, 4, "child", 0).await;
    let r4 = open_round(&api, s.group2, s.teacher2, 4, "child", 0).await;
    book(&api, &r3, mum, 2, s.child_a).await.expect(201);
    api.caught_up().await;
    let refused = book(&api, &r4, mum, 2, s.child_c).await;
    assert_problem(&refused, 409, "conflict");
    assert!(refused.body["detail"]
        .as_str()
        .unwrap()
        .contains("overlaps"));
    let v = api
        .get(&format!("/v1/meeting-rounds/{r4}"), &api.person(mum))
        .await
        .expect(200);
    // Slots 1 and 3 touch the booked 15:10–15:20, slot 4 begins ten minutes after it.
    assert_eq!(v.body["suggestions"], json!([1, 3, 4]));
    book(&api, &r4, mum, 3, s.child_c).await.expect(201);
}

async fn both_guardians_see_the_booking_and_either_can_move_or_cancel_it(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_a, "Papa").await;
    let round = open_round(&api, s.group, s.teacher, 3, "child", 0).await;
    let path = format!("/v1/meeting-rounds/{round}");
    let booked = book(&api, &round, mum, 1, s.child_a).await.expect(201);
    let id = booked.body["booking_id"].as_str().unwrap().to_owned();
    let b = format!("{path}/bookings/{id}");
    // Both see it, in the round and in their schedules.
    for parent in [mum, dad] {
        let v = api.get(&path, &api.person(parent)).await.expect(200);
        assert_eq!(v.body["my_bookings"][0]["booking_id"], id.as_str());
        assert_eq!(v.body["my_bookings"][0]["booked_by"], mum.to_string());
        assert_eq!(v.body["my_children_to_book"], json!([]));
        let me = api
            .get_fresh("/v1/me/meetings", &api.person(parent))
            .await
            .expect(200);
        assert_eq!(me.body["as_guardian"][0]["booking_id"], id.as_str());
    }
    // The other guardian books no second conversation for the child, but moves this one…
    assert_problem(
        &book(&api, &round, dad, 2, s.child_a).await,
        409,
        "conflict",
    );
    api.put(&b, &api.person(dad), json!({"slot_id": 3}))
        .await
        .expect(200);
    let v = api.get(&path, &api.person(mum)).await.expect(200);
    assert_eq!(v.body["my_bookings"][0]["slot_id"], 3);
    assert_eq!(v.body["my_bookings"][0]["sequence"], 1);
    // …and the first one cancels it; then either may book again.
    api.call(Method::DELETE, &b, Some(&api.person(mum)), None)
        .await
        .expect(200);
    let v = api.get(&path, &api.person(dad)).await.expect(200);
    assert_eq!(v.body["my_bookings"], json!([]));
    assert_eq!(v.body["my_children_to_book"], json!([s.child_a]));
    book(&api, &round, dad, 2, s.child_a).await.expect(201);
}

async fn the_place_is_sealed_in_the_log_shown_in_the_round_and_erased_with_who_opened_it(api: Api) {
    use kring_store::EventStoreExt;
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let link = "https://meet.example/groep-3-geheim";
    let start = Utc::now() + Duration::days(5);
    let r = api
        .post(
            &format!("/v1/groups/{}/meeting-rounds", s.group),
            Some(&api.person(s.teacher)),
            json!({
                "title": "Rapportgesprekken",
                "per": "child",
                "slots": [{"starts_at": start, "ends_at": start + Duration::minutes(10), "staff": [s.teacher]}],
                "place": {"kind": "online", "url": link},
                "book_until": start - Duration::days(1),
            }),
        )
        .await
        .expect(201);
    let round = r.body["round_id"].as_str().unwrap().to_owned();
    book(&api, &round, mum, 1, s.child_a).await.expect(201);
    // The link is nowhere in the log's bytes…
    let stream = StreamName::meeting(kring_domain::MeetingRoundId::from_uuid(
        round.parse().unwrap(),
    ));
    let stored = api
        .running
        .state
        .system
        .store
        .read_stream_to_end(&stream)
        .await
        .unwrap();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|e| !e.payload.contains("geheim")));
    // …but shown to whoever may see the round, and in their schedule.
    let path = format!("/v1/meeting-rounds/{round}");
    let v = api.get(&path, &api.person(mum)).await.expect(200);
    assert_eq!(v.body["place"], json!({"kind": "online", "url": link}));
    let me = api
        .get_fresh("/v1/me/meetings", &api.person(mum))
        .await
        .expect(200);
    assert_eq!(me.body["as_guardian"][0]["place"], link);
    // Erased with the staff member who opened the round: the round and booking stay.
    api.post(
        &format!("/v1/people/{}/erasure", s.teacher),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    let v = api.get(&path, &api.person(mum)).await.expect(200);
    assert_eq!(
        v.body["place"],
        json!({"kind": "online", "url": "[erased]"})
    );
    assert_eq!(v.body["my_bookings"].as_array().unwrap().len(), 1);
    let me = api
        .get_fresh("/v1/me/meetings", &api.person(mum))
        .await
        .expect(200);
    assert_eq!(me.body["as_guardian"][0]["place_kind"], "online");
    assert_eq!(me.body["as_guardian"][0]["place"], "[erased]");
}

/// A round written by an older Kring (`MeetingRoundOpened` v1, the place in the clear) goes
/// through the projector and the API as a new one does: shown to the family, booked, and its
/// place read as `[erased]` once who opened the round is erased.
async fn a_round_opened_before_the_place_was_sealed_is_shown_booked_and_erased_like_a_new_one(
    api: Api,
) {
    use kring_store::{EventStore, EventStoreExt, ExpectedVersion, NewEvent};
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    // A round as today's Kring writes it, turned into the old shape for another round id.
    let template = open_round(&api, s.group, s.teacher, 3, "child", 0).await;
    let store = &api.running.state.system.store;
    let stored = store
        .read_stream_to_end(&StreamName::meeting(
            kring_domain::MeetingRoundId::from_uuid(template.parse().unwrap()),
        ))
        .await
        .unwrap();
    let opened = &stored[0];
    assert_eq!(
        (opened.event_type.as_str(), opened.schema_version),
        ("MeetingRoundOpened", 2)
    );
    let old_id = kring_domain::MeetingRoundId::generate();
    let mut payload: Value = serde_json::from_str(&opened.payload).unwrap();
    payload["round_id"] = json!(old_id);
    payload["place"] = json!({"kind": "room", "name": "Lokaal 9"});
    store
        .append(
            &StreamName::meeting(old_id),
            ExpectedVersion::NoStream,
            vec![NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "MeetingRoundOpened".into(),
                schema_version: 1,
                occurred_at: opened.occurred_at,
                actor: opened.actor,
                correlation_id: uuid::Uuid::now_v7(),
                causation_id: None,
                payload: serde_json::to_string(&payload).unwrap(),
            }],
        )
        .await
        .unwrap();
    let round = old_id.to_string();
    let path = format!("/v1/meeting-rounds/{round}");
    // The family sees it with its place and books a slot in it (the command reads the old
    // event back from the log).
    let v = api.get_fresh(&path, &api.person(mum)).await.expect(200);
    assert_eq!(v.body["place"], json!({"kind": "room", "name": "Lokaal 9"}));
    assert_eq!(v.body["slots"].as_array().unwrap().len(), 3);
    book(&api, &round, mum, 2, s.child_a).await.expect(201);
    let staff = api
        .get_fresh(&path, &api.person(s.teacher))
        .await
        .expect(200);
    let booked: Vec<&Value> = staff.body["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|slot| !slot["booking"].is_null())
        .collect();
    assert_eq!(booked.len(), 1);
    assert_eq!(booked[0]["slot_id"], 2);
    let (mine, _) = my_bookings_in(&api, mum, &round).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["place"], "Lokaal 9");
    // Erased with who opened it, as a sealed place is; the booking stays.
    api.post(
        &format!("/v1/people/{}/erasure", s.teacher),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    let v = api.get_fresh(&path, &api.person(mum)).await.expect(200);
    assert_eq!(v.body["place"], json!({"kind": "room", "name": "[erased]"}));
    assert_eq!(v.body["my_bookings"].as_array().unwrap().len(), 1);
    let (mine, text) = my_bookings_in(&api, mum, &round).await;
    assert_eq!(mine[0]["place"], "[erased]");
    assert!(!v.text.contains("Lokaal 9") && !text.contains("Lokaal 9"));
}

/// `guardian`'s bookings in `round` from `/v1/me/meetings`, with the whole answer's text.
async fn my_bookings_in(api: &Api, guardian: PersonId, round: &str) -> (Vec<Value>, String) {
    let me = api
        .get_fresh("/v1/me/meetings", &api.person(guardian))
        .await
        .expect(200);
    let mine = me.body["as_guardian"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["round_id"] == json!(round))
        .cloned()
        .collect();
    (mine, me.text)
}

/// The meeting events of a person's export, as `(type, payload)`.
async fn exported_meetings(api: &Api, who: PersonId) -> Vec<(String, Value)> {
    let ex = api
        .get_fresh("/v1/me/export", &api.person(who))
        .await
        .expect(200);
    ex.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("meeting-"))
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_owned(),
                e["payload"].clone(),
            )
        })
        .collect()
}

async fn a_guardians_bookings_and_a_teachers_conversations_are_in_their_data_exports(api: Api) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let dad = s.guardian(&api, s.child_a, "Papa").await;
    let daans = s.guardian(&api, s.child_b, "Vader").await;
    let stranger = s.guardian(&api, s.child_c, "Buur").await;
    let round = open_round(&api, s.group, s.teacher, 4, "child", 0).await;
    let booked = book(&api, &round, mum, 1, s.child_a).await.expect(201);
    let id = booked.body["booking_id"].as_str().unwrap().to_owned();
    api.put(
        &format!("/v1/meeting-rounds/{round}/bookings/{id}"),
        &api.person(dad),
        json!({"slot_id": 3}),
    )
    .await
    .expect(200);
    let other = book(&api, &round, daans, 2, s.child_b).await.expect(201);
    let other = other.body["booking_id"].as_str().unwrap().to_owned();
    // Both guardians' exports hold the round, their child's booking and its move, with the
    // place opened for them; not the other family's booking.
    for parent in [mum, dad] {
        let events = exported_meetings(&api, parent).await;
        let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            types,
            ["MeetingRoundOpened", "MeetingBooked", "MeetingMoved"]
        );
        assert_eq!(events[0].1["place"]["name"], "Lokaal 4");
        assert_eq!(events[1].1["booking_id"], id.as_str());
        assert_eq!(events[1].1["by"], mum.to_string());
        let text = serde_json::to_string(&events).unwrap();
        assert!(!text.contains(&other) && !text.contains(&s.child_b.to_string()));
    }
    // The teacher's holds the round they opened and both conversations they hold.
    let teachers = exported_meetings(&api, s.teacher).await;
    let types: Vec<&str> = teachers.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "MeetingRoundOpened",
            "MeetingBooked",
            "MeetingMoved",
            "MeetingBooked"
        ]
    );
    assert_eq!(teachers[3].1["booking_id"], other.as_str());
    // A parent with no child in the round has none of it.
    assert!(exported_meetings(&api, stranger).await.is_empty());
    // Erased, the guardian who booked is gone; the booking stays in the other's export.
    api.post(
        &format!("/v1/people/{mum}/erasure"),
        Some(&api.person(s.director)),
        json!({}),
    )
    .await
    .expect(202);
    let events = exported_meetings(&api, dad).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[1].1["booking_id"], id.as_str());
}

/// The feed's events as `(UID, property name → value)`, parsed by an iCalendar parser.
async fn feed(
    api: &Api,
    key: &str,
    position: u64,
) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    let a = api
        .call(
            Method::GET,
            &format!("/v1/me/calendar.ics?key={key}&min_position={position}"),
            None,
            None,
        )
        .await
        .expect(200);
    assert!(
        a.content_type.starts_with("text/calendar"),
        "{}",
        a.content_type
    );
    let mut calendars = ical::IcalParser::new(std::io::BufReader::new(a.text.as_bytes()));
    let calendar = calendars
        .next()
        .expect("one calendar")
        .expect("a valid calendar");
    assert!(calendars.next().is_none());
    calendar
        .events
        .into_iter()
        .map(|e| {
            let props: std::collections::BTreeMap<String, String> = e
                .properties
                .into_iter()
                .map(|p| (p.name, p.value.unwrap_or_default()))
                .collect();
            (props["UID"].clone(), props)
        })
        .collect()
}

async fn the_calendar_feed_has_meetings_and_activities_with_stable_uids_and_a_key_that_rotates(
    api: Api,
) {
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let round = open_round(&api, s.group, s.teacher, 3, "child", 0).await;
    let booked = book(&api, &round, mum, 1, s.child_a).await.expect(201);
    let booking = booked.body["booking_id"].as_str().unwrap().to_owned();
    let starts = (Utc::now() + Duration::days(3))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    let activity = api
        .post(
            &format!("/v1/groups/{}/activities", s.group),
            Some(&api.person(s.teacher)),
            json!({"title": "Schoolreisje, met bus; en picknick", "starts_at": starts, "ends_at": starts + Duration::hours(5), "volunteer_slots": 2}),
        )
        .await
        .expect(201);
    let activity = activity.body["activity_id"].as_str().unwrap().to_owned();
    api.post(
        &format!("/v1/activities/{activity}/volunteers"),
        Some(&api.person(mum)),
        json!({}),
    )
    .await
    .expect(201);

    // The feed takes no bearer token: without a key it is refused.
    assert_problem(
        &api.call(Method::GET, "/v1/me/calendar.ics?key=made-up", None, None)
            .await,
        404,
        "not_found",
    );
    let first = api
        .post("/v1/me/calendar-key", Some(&api.person(mum)), json!({}))
        .await
        .expect(201);
    let key = first.body["key"].as_str().unwrap().to_owned();
    assert!(!api.event_types(StreamName::calendar(mum)).await.is_empty());
    let events = feed(&api, &key, first.position()).await;
    let meeting_uid = format!("meeting-{booking}@kring");
    let activity_uid = format!("activity-{activity}@kring");
    let uids: BTreeSet<&str> = events.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        uids,
        BTreeSet::from([meeting_uid.as_str(), activity_uid.as_str()])
    );
    let meeting = &events.iter().find(|(u, _)| *u == meeting_uid).unwrap().1;
    assert_eq!(meeting["SEQUENCE"], "0");
    assert_eq!(meeting["LOCATION"], "Lokaal 4");
    let slot_1 = meeting["DTSTART"].clone();
    let trip = &events.iter().find(|(u, _)| *u == activity_uid).unwrap().1;
    assert_eq!(
        trip["SUMMARY"],
        "Schoolreisje\\, met bus\\; en picknick (volunteering)"
    );
    assert_eq!(trip["DTSTART"], starts.format("%Y%m%dT%H%M%SZ").to_string());
    // No child is named in the feed.
    assert!(!events
        .iter()
        .any(|(_, p)| p.values().any(|v| v.contains("Sanne"))));

    // A move keeps the UID and raises SEQUENCE; the teacher's feed has the conversation too.
    let moved = api
        .put(
            &format!("/v1/meeting-rounds/{round}/bookings/{booking}"),
            &api.person(mum),
            json!({"slot_id": 3}),
        )
        .await
        .expect(200);
    let events = feed(&api, &key, moved.position()).await;
    let meeting = &events.iter().find(|(u, _)| *u == meeting_uid).unwrap().1;
    assert_eq!(meeting["SEQUENCE"], "1");
    assert_ne!(meeting["DTSTART"], slot_1);
    let teachers = api
        .post(
            "/v1/me/calendar-key",
            Some(&api.person(s.teacher)),
            json!({}),
        )
        .await
        .expect(201);
    let teacher_events = feed(
        &api,
        teachers.body["key"].as_str().unwrap(),
        teachers.position(),
    )
    .await;
    assert_eq!(teacher_events.len(), 1);
    assert_eq!(teacher_events[0].0, meeting_uid);

    // Rotating: the new key works, the old one no longer does.
    let second = api
        .post("/v1/me/calendar-key", Some(&api.person(mum)), json!({}))
        .await
        .expect(201);
    let new_key = second.body["key"].as_str().unwrap();
    assert_ne!(new_key, key);
    assert_eq!(feed(&api, new_key, second.position()).await.len(), 2);
    assert_problem(
        &api.call(
            Method::GET,
            &format!("/v1/me/calendar.ics?key={key}"),
            None,
            None,
        )
        .await,
        404,
        "not_found",
    );
    // Only a digest of the key is stored.
    let stored = {
        use kring_store::EventStoreExt;
        api.running
            .state
            .system
            .store
            .read_stream_to_end(&StreamName::calendar(mum))
            .await
            .unwrap()
    };
    assert!(stored
        .iter()
        .all(|e| !e.payload.contains(new_key) && !e.payload.contains(&key)));
}
