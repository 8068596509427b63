//! The notification outbox: quiet hours hold staff notifications, everything else is due at
//! once, deliveries survive a rebuild; and the availability parents see.

#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::{DateTime, NaiveTime, Utc};
use common::Harness;
use kring_domain::conversation::ConversationAction;
use kring_domain::person::{Day, PersonAction, QuietHours, QuietPeriod};
use kring_domain::school::{PolicyPurpose, SchoolAction};
use kring_domain::simulation::World;
use kring_domain::{Actor, ChildId, ConversationId, MessageId, PersonId, Purpose};
use kring_projections::db::ReadDb;
use kring_projections::models::outbox::{
    self, availability, ensure_delivery_table, mark_delivered, Availability, Notification,
    NotificationId, NotificationKind,
};
use kring_store::EventStore;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(outbox::OutboxProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(outbox::OutboxProjection::default())]);
    message_to_teacher_in_quiet_hours_is_held_until_they_end,
    back_to_back_quiet_periods_hold_until_the_last_one_ends,
    quiet_hours_follow_amsterdam_time_after_the_clocks_change,
    message_outside_quiet_hours_is_due_at_once,
    the_schedule_as_of_the_message_decides,
    guardians_are_notified_at_once,
    the_author_is_not_notified,
    notifications_carry_ids_never_the_text,
    participants_who_left_are_no_longer_notified,
    delivered_notifications_are_not_due_again_even_after_a_rebuild,
    availability_shows_quiet_hours_and_until_when,
    a_recipients_undelivered_notifications_are_theirs_alone_due_ones_first,
    a_policy_version_that_changes_a_meaning_asks_every_guardian_once,
);

/// The notifications these tests are about: messages and consent decisions needed (the
/// simulated school's set-up also approves invitations, which notify too: see
/// `tests/notifications.rs`).
fn ours(notifications: Vec<Notification>) -> Vec<Notification> {
    notifications
        .into_iter()
        .filter(|n| {
            matches!(
                n.kind,
                NotificationKind::Message | NotificationKind::ConsentNeeded
            )
        })
        .collect()
}

async fn due(
    db: &ReadDb,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Notification>, kring_projections::error::ProjectionError> {
    outbox::due(db, now, limit).await.map(ours)
}

async fn held(
    db: &ReadDb,
    person: PersonId,
    now: DateTime<Utc>,
) -> Result<Vec<Notification>, kring_projections::error::ProjectionError> {
    outbox::held(db, person, now).await.map(ours)
}

async fn undelivered_of(
    db: &ReadDb,
    person: PersonId,
    limit: u32,
) -> Result<Vec<Notification>, kring_projections::error::ProjectionError> {
    outbox::undelivered_of(db, person, limit).await.map(ours)
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

/// Weekday evenings and nights 18:00–07:30, and Wednesday afternoon (no school) 12:00–18:00,
/// Amsterdam time.
fn schedule() -> QuietHours {
    let mut weekly: Vec<QuietPeriod> = [
        Day::Monday,
        Day::Tuesday,
        Day::Wednesday,
        Day::Thursday,
        Day::Friday,
    ]
    .into_iter()
    .map(|day| QuietPeriod {
        day,
        start: hm(18, 0),
        end: hm(7, 30),
    })
    .collect();
    weekly.push(QuietPeriod {
        day: Day::Wednesday,
        start: hm(12, 0),
        end: hm(18, 0),
    });
    QuietHours {
        timezone: "Europe/Amsterdam".into(),
        weekly,
    }
}

/// One class: the director, a teacher, one child with two guardians. 2026-09-01 08:00 UTC
/// (10:00 in Amsterdam), a Tuesday.
struct School {
    world: World,
    teacher: PersonId,
    child: ChildId,
    mum: PersonId,
    dad: PersonId,
}

fn school() -> School {
    let world = World::with_classes(1, 1, 2);
    let teacher = world.staff[1];
    let child = world.child_ids[0];
    let guardians = world.guardians_of(child);
    School {
        teacher,
        child,
        mum: guardians[0],
        dad: guardians[1],
        world,
    }
}

impl School {
    /// Moves the simulated clock forward to `when`.
    fn at(&mut self, when: &str) {
        let when = t(when);
        assert!(when >= self.world.now, "the clock only moves forward");
        self.world.advance(when - self.world.now);
    }

    fn set_quiet_hours(&mut self) {
        let teacher = self.teacher;
        self.world
            .person(
                Actor::Person(teacher),
                teacher,
                PersonAction::SetQuietHours(schedule()),
            )
            .unwrap();
    }

    fn clear_quiet_hours(&mut self) {
        let teacher = self.teacher;
        self.world
            .person(
                Actor::Person(teacher),
                teacher,
                PersonAction::ClearQuietHours,
            )
            .unwrap();
    }

    /// `by` starts a conversation about the child with the default participants (a guardian
    /// reaches the class's staff, staff reach both guardians).
    fn start(&mut self, by: PersonId) -> (ConversationId, MessageId) {
        let conversation_id = ConversationId::from_uuid(self.world.next_uuid());
        let message_id = MessageId::from_uuid(self.world.next_uuid());
        self.world
            .conversation(
                Actor::Person(by),
                conversation_id,
                ConversationAction::Start {
                    conversation_id,
                    child_id: self.child,
                    participants: Vec::new(),
                    message_id,
                    body: "Mag Sem morgen eerder weg?".into(),
                },
            )
            .unwrap();
        (conversation_id, message_id)
    }

    fn post(&mut self, by: PersonId, conversation_id: ConversationId) -> MessageId {
        let message_id = MessageId::from_uuid(self.world.next_uuid());
        self.world
            .conversation(
                Actor::Person(by),
                conversation_id,
                ConversationAction::Post {
                    message_id,
                    body: "Dat is goed.".into(),
                },
            )
            .unwrap();
        message_id
    }
}

async fn ready<S: EventStore + Clone>(h: &mut Harness<S>, world: &World) {
    h.sync(world).await;
    ensure_delivery_table(&h.db).await.unwrap();
}

/// Every notification not delivered yet, due or held, at `now`.
async fn pending<S: EventStore + Clone>(h: &Harness<S>, now: DateTime<Utc>) -> Vec<Notification> {
    due(&h.db, now + chrono::Duration::days(400), 1000)
        .await
        .unwrap()
}

fn recipients(notifications: &[Notification], message: MessageId) -> Vec<PersonId> {
    let mut r: Vec<PersonId> = notifications
        .iter()
        .filter(|n| n.message_id == Some(message))
        .map(|n| n.recipient_id)
        .collect();
    r.sort();
    r
}

async fn message_to_teacher_in_quiet_hours_is_held_until_they_end<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    s.set_quiet_hours();
    // Tuesday 20:00 in Amsterdam (UTC+2): the teacher's evening.
    s.at("2026-09-01T18:00:00Z");
    let (conversation, message) = s.start(s.mum);
    ready(&mut h, &s.world).await;

    let now = s.world.now;
    let held_now = held(&h.db, s.teacher, now).await.unwrap();
    assert_eq!(held_now.len(), 1);
    let n = &held_now[0];
    assert_eq!(
        n.id,
        NotificationId {
            about: message.as_uuid(),
            recipient_id: s.teacher
        }
    );
    assert_eq!(n.kind, NotificationKind::Message);
    assert_eq!(n.conversation_id, Some(conversation));
    assert_eq!(n.created_at, now);
    assert_eq!(
        n.release_at,
        t("2026-09-02T05:30:00Z"),
        "held until Wednesday 07:30 in Amsterdam"
    );
    assert!(n.was_held() && !n.delivered);

    assert!(due(&h.db, now, 100).await.unwrap().is_empty());
    assert!(due(&h.db, t("2026-09-02T05:29:59Z"), 100)
        .await
        .unwrap()
        .is_empty());
    let released = due(&h.db, t("2026-09-02T05:30:00Z"), 100).await.unwrap();
    assert_eq!(released, held_now, "due the moment the quiet period ends");
    assert!(held(&h.db, s.teacher, t("2026-09-02T05:30:00Z"))
        .await
        .unwrap()
        .is_empty());
}

async fn back_to_back_quiet_periods_hold_until_the_last_one_ends<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    s.set_quiet_hours();
    // Wednesday 13:00 in Amsterdam: the free afternoon runs on into the evening and the night.
    s.at("2026-09-02T11:00:00Z");
    let (_, message) = s.start(s.mum);
    ready(&mut h, &s.world).await;
    let held_now = held(&h.db, s.teacher, s.world.now).await.unwrap();
    assert_eq!(recipients(&held_now, message), vec![s.teacher]);
    assert_eq!(
        held_now[0].release_at,
        t("2026-09-03T05:30:00Z"),
        "Thursday 07:30 in Amsterdam"
    );
}

async fn quiet_hours_follow_amsterdam_time_after_the_clocks_change<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    s.set_quiet_hours();
    // Monday 23 November, 21:00 in Amsterdam, which is UTC+1 since 25 October.
    s.at("2026-11-23T20:00:00Z");
    let (_, message) = s.start(s.mum);
    // Tuesday 07:00 UTC is 08:00 in Amsterdam: school hours.
    s.at("2026-11-24T07:00:00Z");
    let (_, later) = s.start(s.mum);
    ready(&mut h, &s.world).await;
    let all = pending(&h, s.world.now).await;
    let night = all.iter().find(|n| n.message_id == Some(message)).unwrap();
    assert_eq!(night.release_at, t("2026-11-24T06:30:00Z"));
    let morning = all.iter().find(|n| n.message_id == Some(later)).unwrap();
    assert_eq!(morning.release_at, morning.created_at);
}

async fn message_outside_quiet_hours_is_due_at_once<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    s.set_quiet_hours();
    // Tuesday 10:00 in Amsterdam: school hours.
    let (_, message) = s.start(s.mum);
    ready(&mut h, &s.world).await;
    let now = s.world.now;
    let due_now = due(&h.db, now, 100).await.unwrap();
    assert_eq!(recipients(&due_now, message), vec![s.teacher]);
    assert_eq!(due_now[0].release_at, now);
    assert!(!due_now[0].was_held());
    assert!(held(&h.db, s.teacher, now).await.unwrap().is_empty());
}

async fn the_schedule_as_of_the_message_decides<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    // No schedule yet: a message at night is due at once.
    s.at("2026-09-01T19:00:00Z");
    let (conversation, before_set) = s.start(s.mum);
    s.set_quiet_hours();
    s.at("2026-09-01T19:30:00Z");
    let while_set = s.post(s.mum, conversation);
    s.clear_quiet_hours();
    s.at("2026-09-01T20:00:00Z");
    let after_clear = s.post(s.mum, conversation);
    ready(&mut h, &s.world).await;

    let all = pending(&h, s.world.now).await;
    let release = |m: MessageId| {
        all.iter()
            .find(|n| n.message_id == Some(m))
            .unwrap()
            .release_at
    };
    assert_eq!(release(before_set), t("2026-09-01T19:00:00Z"));
    assert_eq!(
        release(while_set),
        t("2026-09-02T05:30:00Z"),
        "held by the schedule in force then, even though it was cleared since"
    );
    assert_eq!(release(after_clear), t("2026-09-01T20:00:00Z"));
    let held_now = held(&h.db, s.teacher, s.world.now).await.unwrap();
    assert_eq!(recipients(&held_now, while_set), vec![s.teacher]);
    assert_eq!(held_now.len(), 1);
}

async fn guardians_are_notified_at_once<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    s.set_quiet_hours();
    // The teacher writes at 22:00 in Amsterdam, in their own quiet hours.
    s.at("2026-09-01T20:00:00Z");
    let (conversation, message) = s.start(s.teacher);
    s.at("2026-09-01T20:05:00Z");
    let reply = s.post(s.mum, conversation);
    ready(&mut h, &s.world).await;
    let due_now = due(&h.db, s.world.now, 100).await.unwrap();
    let mut parents = vec![s.mum, s.dad];
    parents.sort();
    assert_eq!(recipients(&due_now, message), parents);
    assert_eq!(recipients(&due_now, reply), vec![s.dad]);
    assert!(due_now
        .iter()
        .all(|n| n.release_at == n.created_at && n.recipient_id != s.teacher));
    for guardian in [s.mum, s.dad] {
        assert!(held(&h.db, guardian, s.world.now).await.unwrap().is_empty());
    }
    // The teacher's own notification of the reply waits for the morning.
    let held_now = held(&h.db, s.teacher, s.world.now).await.unwrap();
    assert_eq!(recipients(&held_now, reply), vec![s.teacher]);
}

async fn the_author_is_not_notified<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    let (conversation, first) = s.start(s.teacher);
    s.world.advance(chrono::Duration::minutes(5));
    let second = s.post(s.mum, conversation);
    s.world.advance(chrono::Duration::minutes(5));
    let third = s.post(s.dad, conversation);
    ready(&mut h, &s.world).await;
    let all = pending(&h, s.world.now).await;
    let sorted = |mut v: Vec<PersonId>| {
        v.sort();
        v
    };
    assert_eq!(recipients(&all, first), sorted(vec![s.mum, s.dad]));
    assert_eq!(recipients(&all, second), sorted(vec![s.teacher, s.dad]));
    assert_eq!(recipients(&all, third), sorted(vec![s.teacher, s.mum]));
    assert_eq!(all.len(), 6);
    assert!(
        all.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "oldest first"
    );
}

async fn notifications_carry_ids_never_the_text<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    let (conversation, _) = s.start(s.mum);
    s.post(s.teacher, conversation);
    ready(&mut h, &s.world).await;
    let all = pending(&h, s.world.now).await;
    assert_eq!(all.len(), 2);
    let json = serde_json::to_string(&all).unwrap();
    assert!(
        !json.contains("Sem") && !json.contains("goed"),
        "no message text: {json}"
    );
    let mut fields: Vec<String> = serde_json::to_value(&all[0])
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "absence_id",
            "activity_id",
            "booking_id",
            "channel",
            "child_id",
            "conversation_id",
            "created_at",
            "delivered",
            "group_id",
            "id",
            "invitation_id",
            "kind",
            "message_id",
            "policy_version",
            "position",
            "post_id",
            "recipient_id",
            "release_at",
            "round_id",
            "school_id"
        ]
    );
}

async fn participants_who_left_are_no_longer_notified<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    let director = Actor::Person(s.world.director);
    let (conversation, _) = s.start(s.teacher);
    // Dad is unlinked from the child: he hears nothing more about it.
    s.world
        .school(
            director,
            SchoolAction::UnlinkGuardian {
                child_id: s.child,
                guardian_id: s.dad,
            },
        )
        .unwrap();
    let after_unlink = s.post(s.teacher, conversation);
    // The teacher leaves the school.
    s.world
        .school(
            director,
            SchoolAction::RemoveStaff {
                person_id: s.teacher,
            },
        )
        .unwrap();
    let after_leaving = s.post(s.mum, conversation);
    ready(&mut h, &s.world).await;
    let all = pending(&h, s.world.now).await;
    assert_eq!(recipients(&all, after_unlink), vec![s.mum]);
    assert!(recipients(&all, after_leaving).is_empty());
}

async fn delivered_notifications_are_not_due_again_even_after_a_rebuild<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    s.set_quiet_hours();
    let (conversation, _) = s.start(s.teacher);
    s.world.advance(chrono::Duration::minutes(1));
    s.post(s.mum, conversation);
    // 20:00 in Amsterdam: the teacher's notification of this one is held.
    s.at("2026-09-01T18:00:00Z");
    let evening = s.post(s.dad, conversation);
    ready(&mut h, &s.world).await;

    let now = s.world.now;
    let due_now = due(&h.db, now, 100).await.unwrap();
    assert_eq!(due_now.len(), 5, "2 + 2 + mum's of the evening message");
    let (delivered, rest) = due_now.split_at(3);
    let delivered_ids: Vec<NotificationId> = delivered.iter().map(|n| n.id).collect();
    assert_eq!(mark_delivered(&h.db, &delivered_ids, now).await.unwrap(), 3);
    assert_eq!(
        mark_delivered(&h.db, &delivered_ids, now).await.unwrap(),
        0,
        "marking twice changes nothing"
    );
    assert!(
        outbox::notification(&h.db, delivered_ids[0])
            .await
            .unwrap()
            .unwrap()
            .delivered
    );
    assert_eq!(due(&h.db, now, 100).await.unwrap(), rest);
    let held_before = held(&h.db, s.teacher, now).await.unwrap();
    assert_eq!(recipients(&held_before, evening), vec![s.teacher]);

    let generation = h.projector.board().all()[0].generation;
    h.projector.rebuild(&[]).await.unwrap();
    assert_eq!(h.projector.board().all()[0].generation, generation + 1);
    assert_eq!(
        due(&h.db, now, 100).await.unwrap(),
        rest,
        "the same ids, and the delivered ones stay delivered"
    );
    assert_eq!(held(&h.db, s.teacher, now).await.unwrap(), held_before);
    let mut rest_ids: Vec<NotificationId> = rest.iter().map(|n| n.id).collect();
    assert_eq!(mark_delivered(&h.db, &rest_ids, now).await.unwrap(), 2);
    assert!(due(&h.db, now, 100).await.unwrap().is_empty());

    // The held one comes due in the morning, once; live processing goes on after the rebuild.
    s.at("2026-09-02T06:00:00Z");
    let morning = s.post(s.mum, conversation);
    h.sync(&s.world).await;
    let morning_due = due(&h.db, s.world.now, 100).await.unwrap();
    assert_eq!(recipients(&morning_due, evening), vec![s.teacher]);
    let mut parents = vec![s.teacher, s.dad];
    parents.sort();
    assert_eq!(recipients(&morning_due, morning), parents);
    rest_ids = morning_due.iter().map(|n| n.id).collect();
    assert_eq!(
        mark_delivered(&h.db, &rest_ids, s.world.now).await.unwrap(),
        3
    );
    assert!(pending(&h, s.world.now).await.is_empty());
}

async fn availability_shows_quiet_hours_and_until_when<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    s.set_quiet_hours();
    ready(&mut h, &s.world).await;
    let available = Availability {
        in_quiet_hours: false,
        until: None,
    };
    // Tuesday 10:00 in Amsterdam: at school.
    assert_eq!(
        availability(&h.db, s.teacher, s.world.now).await.unwrap(),
        available
    );
    // Tuesday 20:00 in Amsterdam: quiet until Wednesday 07:30.
    assert_eq!(
        availability(&h.db, s.teacher, t("2026-09-01T18:00:00Z"))
            .await
            .unwrap(),
        Availability {
            in_quiet_hours: true,
            until: Some(t("2026-09-02T05:30:00Z")),
        }
    );
    // Wednesday 12:00 in Amsterdam: the free afternoon runs into the night.
    assert_eq!(
        availability(&h.db, s.teacher, t("2026-09-02T10:00:00Z"))
            .await
            .unwrap()
            .until,
        Some(t("2026-09-03T05:30:00Z"))
    );
    let json = serde_json::to_value(
        availability(&h.db, s.teacher, t("2026-09-01T18:00:00Z"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["in_quiet_hours"], true);
    assert!(json["until"]
        .as_str()
        .unwrap()
        .starts_with("2026-09-02T05:30:00"));
    // Guardians, people without a schedule and strangers are simply available.
    for person in [
        s.mum,
        s.world.director,
        PersonId::from_uuid(uuid::Uuid::now_v7()),
    ] {
        assert_eq!(
            availability(&h.db, person, t("2026-09-01T18:00:00Z"))
                .await
                .unwrap(),
            available
        );
    }
    // Cleared: available at night too.
    s.clear_quiet_hours();
    h.sync(&s.world).await;
    assert_eq!(
        availability(&h.db, s.teacher, t("2026-09-01T18:00:00Z"))
            .await
            .unwrap(),
        available
    );
}

async fn a_recipients_undelivered_notifications_are_theirs_alone_due_ones_first<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut s = school();
    s.set_quiet_hours();
    // Tuesday 10:00 in Amsterdam: the teacher writes to both guardians; mum answers, due at
    // once for the teacher.
    let (conversation, opening) = s.start(s.teacher);
    s.world.advance(chrono::Duration::minutes(5));
    let daytime = s.post(s.mum, conversation);
    // Tuesday 20:00 in Amsterdam: held for the teacher until Wednesday 07:30.
    s.at("2026-09-01T18:00:00Z");
    let evening = s.post(s.dad, conversation);
    ready(&mut h, &s.world).await;

    let teachers = undelivered_of(&h.db, s.teacher, 100).await.unwrap();
    let messages: Vec<MessageId> = teachers.iter().filter_map(|n| n.message_id).collect();
    assert_eq!(messages, vec![daytime, evening], "soonest released first");
    assert!(teachers.iter().all(|n| n.recipient_id == s.teacher));
    assert!(!teachers[0].was_held() && teachers[1].was_held());
    assert_eq!(teachers[1].release_at, t("2026-09-02T05:30:00Z"));
    // Mum hears of the teacher's and dad's messages, never of her own.
    let mums: Vec<MessageId> = undelivered_of(&h.db, s.mum, 100)
        .await
        .unwrap()
        .iter()
        .filter_map(|n| n.message_id)
        .collect();
    assert_eq!(mums, vec![opening, evening]);
    assert_eq!(undelivered_of(&h.db, s.teacher, 1).await.unwrap().len(), 1);

    mark_delivered(&h.db, &[teachers[0].id], s.world.now)
        .await
        .unwrap();
    let left = undelivered_of(&h.db, s.teacher, 100).await.unwrap();
    assert_eq!(left, vec![teachers[1].clone()], "delivered ones are gone");
}

/// The default policy's purposes, `purpose` reworded with `text` when given.
fn policy(reworded: Option<(Purpose, &str)>) -> Vec<PolicyPurpose> {
    Purpose::ALL
        .into_iter()
        .map(|purpose| PolicyPurpose {
            purpose,
            description: match reworded {
                Some((p, text)) if p == purpose => text.to_owned(),
                _ => purpose.default_description().to_owned(),
            },
        })
        .collect()
}

async fn a_policy_version_that_changes_a_meaning_asks_every_guardian_once<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    let director = Actor::Person(s.world.director);
    let consent_needed = |all: &[Notification]| {
        let mut r: Vec<(PersonId, Option<u32>)> = all
            .iter()
            .filter(|n| n.kind == NotificationKind::ConsentNeeded)
            .map(|n| (n.recipient_id, n.policy_version))
            .collect();
        r.sort();
        r
    };
    // The same texts again: nothing to decide anew, nobody told.
    s.world
        .school(
            director,
            SchoolAction::PublishConsentPolicy {
                purposes: policy(None),
            },
        )
        .unwrap();
    ready(&mut h, &s.world).await;
    assert!(consent_needed(&pending(&h, s.world.now).await).is_empty());
    // Reworded: both guardians are asked, at once; staff are not.
    s.world
        .school(
            director,
            SchoolAction::PublishConsentPolicy {
                purposes: policy(Some((
                    Purpose::SchoolCommunication,
                    "Ook op de schermen in de hal.",
                ))),
            },
        )
        .unwrap();
    // A guardian linked afterwards was never asked under an older text.
    let late = s.world.invite_and_link(director, s.child).unwrap();
    ready(&mut h, &s.world).await;
    let all = pending(&h, s.world.now).await;
    let mut expected = vec![(s.mum, Some(3)), (s.dad, Some(3))];
    expected.sort();
    assert_eq!(consent_needed(&all), expected);
    assert!(all
        .iter()
        .all(|n| n.recipient_id != late || n.kind != NotificationKind::ConsentNeeded));
    let mums = undelivered_of(&h.db, s.mum, 10).await.unwrap();
    let asked = mums
        .iter()
        .find(|n| n.kind == NotificationKind::ConsentNeeded)
        .unwrap();
    assert_eq!(asked.school_id, Some(s.world.school_id));
    assert_eq!((asked.conversation_id, asked.message_id), (None, None));
    assert!(!asked.was_held());
    // A rebuild makes the same notifications, with the same ids.
    let before: Vec<NotificationId> = all.iter().map(|n| n.id).collect();
    h.projector.rebuild(&[]).await.unwrap();
    let after: Vec<NotificationId> = pending(&h, s.world.now)
        .await
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(before, after);
}
