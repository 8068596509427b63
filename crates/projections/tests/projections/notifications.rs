//! Every kind of notification, by the feed's visibility rule and the recipients' preferences:
//! who is told and who is not, on which channel, when (quiet hours, daily digests across a
//! change of the clocks), and that a rebuild makes the same notifications.

#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use common::Harness;
use kring_domain::activity::ActivityAction;
use kring_domain::child::ChildAction;
use kring_domain::conversation::ConversationAction;
use kring_domain::person::{
    Channel, Day, NotificationKind, NotificationPreferences, PersonAction, QuietHours, QuietPeriod,
};
use kring_domain::post::{MediaAttachment, PostAction};
use kring_domain::school::{PolicyPurpose, SchoolAction};
use kring_domain::simulation::World;
use kring_domain::{
    AbsenceId, ActivityId, Actor, ChildId, ConversationId, GroupId, MediaId, MessageId, PersonId,
    PostId, Purpose,
};
use kring_projections::models::outbox::{
    self, due, ensure_delivery_table, undelivered_of, Notification,
};
use kring_store::EventStore;
use std::collections::BTreeMap;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(outbox::OutboxProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(outbox::OutboxProjection::default())]);
    a_post_notifies_whom_it_shows_something,
    a_school_wide_post_notifies_the_school_but_not_a_removed_guardian,
    activities_notify_the_group_and_remind_volunteers_the_day_before,
    approved_invitations_and_reported_absences_notify,
    each_channel_decides_how_and_when,
    quiet_hours_hold_a_guardians_notifications,
    school_defaults_apply_where_a_person_chose_nothing,
    a_digest_time_skipped_by_the_clocks_moves_to_the_end_of_the_gap,
    a_rebuild_makes_the_same_notifications,
    a_batch_with_more_notifications_than_one_statement_holds_writes_every_one,
);

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

/// Two classes, each with a teacher and two children with one guardian each, and a consent
/// policy asking every purpose. 2026-09-01 (a Tuesday), 10:00 in Amsterdam.
struct School {
    world: World,
    director: PersonId,
    /// Class 1 and its teacher, children and their guardians.
    g1: GroupId,
    t1: PersonId,
    a: ChildId,
    b: ChildId,
    ga: PersonId,
    gb: PersonId,
    /// Class 2.
    t2: PersonId,
    gc: PersonId,
    d: ChildId,
    gd: PersonId,
}

fn school() -> School {
    let mut world = World::with_classes(2, 2, 1);
    let director = world.director;
    world
        .school(
            Actor::Person(director),
            SchoolAction::PublishConsentPolicy {
                purposes: Purpose::ALL
                    .into_iter()
                    .map(|purpose| PolicyPurpose {
                        purpose,
                        description: purpose.default_description().to_owned(),
                    })
                    .collect(),
            },
        )
        .unwrap();
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| world.child_ids[i]);
    let guardian = |w: &World, child| w.guardians_of(child)[0];
    School {
        director,
        g1: world.groups[0],
        t1: world.staff[1],
        t2: world.staff[2],
        a,
        b,
        ga: guardian(&world, a),
        gb: guardian(&world, b),
        gc: guardian(&world, c),
        d,
        gd: guardian(&world, d),
        world,
    }
}

impl School {
    fn at(&mut self, when: &str) {
        let when = t(when);
        assert!(when >= self.world.now);
        self.world.advance(when - self.world.now);
    }

    /// A post by `by` in `group` with `body` and one photo per entry of `tags`.
    fn post(&mut self, by: PersonId, group: GroupId, body: &str, tags: &[Vec<ChildId>]) -> PostId {
        let post_id = PostId::from_uuid(self.world.next_uuid());
        let media = tags
            .iter()
            .map(|tagged| MediaAttachment {
                media_id: MediaId::from_uuid(self.world.next_uuid()),
                content_type: "image/jpeg".into(),
                tagged_children: tagged.clone(),
            })
            .collect();
        self.world
            .post(
                Actor::Person(by),
                post_id,
                PostAction::Publish {
                    post_id,
                    group_id: group,
                    body: body.into(),
                    media,
                },
            )
            .unwrap();
        post_id
    }

    fn prefer(&mut self, person: PersonId, preferences: NotificationPreferences) {
        self.world
            .person(
                Actor::Person(person),
                person,
                PersonAction::SetNotificationPreferences(preferences),
            )
            .unwrap();
    }

    /// `by` (a guardian of child a) starts a conversation with class 1's staff.
    fn message(&mut self, by: PersonId) -> MessageId {
        let conversation_id = ConversationId::from_uuid(self.world.next_uuid());
        let message_id = MessageId::from_uuid(self.world.next_uuid());
        self.world
            .conversation(
                Actor::Person(by),
                conversation_id,
                ConversationAction::Start {
                    conversation_id,
                    child_id: self.a,
                    participants: Vec::new(),
                    message_id,
                    body: "Mag Sem morgen eerder weg?".into(),
                },
            )
            .unwrap();
        message_id
    }
}

fn kinds(channels: &[(NotificationKind, Channel)]) -> BTreeMap<NotificationKind, Channel> {
    channels.iter().copied().collect()
}

async fn ready<S: EventStore + Clone>(h: &mut Harness<S>, world: &World) {
    h.sync(world).await;
    ensure_delivery_table(&h.db).await.unwrap();
}

/// Every notification of every person of the school, delivered or not, sorted by id.
async fn everything<S: EventStore + Clone>(h: &Harness<S>, s: &School) -> Vec<Notification> {
    let mut people: Vec<PersonId> = s.world.staff.clone();
    people.extend(s.world.invitees.iter().copied());
    people.sort();
    people.dedup();
    let mut all = Vec::new();
    for p in people {
        all.extend(undelivered_of(&h.db, p, 1000).await.unwrap());
    }
    all.sort_by_key(|n| n.id);
    all
}

/// Who is told of `kind` about `pred`, sorted.
fn told(
    all: &[Notification],
    kind: NotificationKind,
    pred: impl Fn(&Notification) -> bool,
) -> Vec<PersonId> {
    let mut r: Vec<PersonId> = all
        .iter()
        .filter(|n| n.kind == kind && pred(n))
        .map(|n| n.recipient_id)
        .collect();
    r.sort();
    r
}

fn sorted(mut v: Vec<PersonId>) -> Vec<PersonId> {
    v.sort();
    v
}

async fn a_post_notifies_whom_it_shows_something<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    // b's guardian consents to class photos of b; nobody does for a.
    s.world
        .decide_consent(s.gb, s.b, Purpose::GroupCommunication, true)
        .unwrap();
    let (g1, t1) = (s.g1, s.t1);
    let (a, b) = (s.a, s.b);
    // No text, only a photo of b: a's guardian may see it (consent), so may b's (own child).
    let of_b = s.post(t1, g1, "", &[vec![b]]);
    // No text, only a photo of a: b's guardian may not see it (no consent for a).
    let of_a = s.post(t1, g1, "  ", &[vec![a]]);
    // Text and the same photo: the text is for everyone in the audience.
    let text_and_a = s.post(t1, g1, "Het bos was prachtig", &[vec![a]]);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    let post = |p: PostId| move |n: &Notification| n.post_id == Some(p);
    // Staff of the audience (the director, the class teacher) but the author; class 2 not.
    let staff = vec![s.director];
    assert_eq!(
        told(&all, NotificationKind::Post, post(of_b)),
        sorted([staff.clone(), vec![s.ga, s.gb]].concat())
    );
    assert_eq!(
        told(&all, NotificationKind::Post, post(of_a)),
        sorted([staff.clone(), vec![s.ga]].concat()),
        "a guardian without consent for the only photo is not told"
    );
    assert_eq!(
        told(&all, NotificationKind::Post, post(text_and_a)),
        sorted([staff, vec![s.ga, s.gb]].concat())
    );
    let n = all
        .iter()
        .find(|n| n.post_id == Some(of_b) && n.recipient_id == s.ga)
        .unwrap();
    assert_eq!(
        (n.group_id, n.school_id),
        (Some(g1), Some(s.world.school_id))
    );
    assert_eq!(n.channel, Channel::Push, "the built-in default");
    assert_eq!(n.release_at, n.created_at, "due at once");
    // A post by a teacher of class 2 in class 2 does not reach class 1's guardians.
    let g2 = s.world.groups[1];
    let (t2, gc, gd) = (s.t2, s.gc, s.gd);
    let other = s.post(t2, g2, "Groep 2", &[]);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert_eq!(
        told(&all, NotificationKind::Post, post(other)),
        sorted(vec![s.director, gc, gd])
    );
}

async fn a_school_wide_post_notifies_the_school_but_not_a_removed_guardian<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut s = school();
    let director = s.director;
    s.world
        .school(
            Actor::Person(director),
            SchoolAction::UnlinkGuardian {
                child_id: s.d,
                guardian_id: s.gd,
            },
        )
        .unwrap();
    let whole = s.world.school_group();
    let p = s.post(director, whole, "Studiedag vrijdag", &[]);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert_eq!(
        told(&all, NotificationKind::Post, |n| n.post_id == Some(p)),
        sorted(vec![s.t1, s.t2, s.ga, s.gb, s.gc]),
        "every staff member but the author and every linked guardian; not the removed one"
    );
}

async fn activities_notify_the_group_and_remind_volunteers_the_day_before<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    let activity = ActivityId::from_uuid(s.world.next_uuid());
    let (g1, t1) = (s.g1, s.t1);
    // Thursday 2026-09-10 10:00 in Amsterdam.
    s.world
        .activity(
            Actor::Person(t1),
            activity,
            ActivityAction::Schedule {
                activity_id: activity,
                group_id: g1,
                title: "Bosuitje".into(),
                starts_at: t("2026-09-10T08:00:00Z"),
                ends_at: t("2026-09-10T12:00:00Z"),
                volunteer_slots: 3,
            },
        )
        .unwrap();
    let (ga, gb) = (s.ga, s.gb);
    s.world
        .activity(Actor::Person(ga), activity, ActivityAction::SignUp)
        .unwrap();
    s.world
        .activity(Actor::Person(gb), activity, ActivityAction::SignUp)
        .unwrap();
    ready(&mut h, &s.world).await;
    // b's guardian withdraws in a later batch, before the reminder: it is taken back.
    s.at("2026-09-05T10:00:00Z");
    s.world
        .activity(Actor::Person(gb), activity, ActivityAction::Withdraw)
        .unwrap();
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    let about = |n: &Notification| n.activity_id == Some(activity);
    assert_eq!(
        told(&all, NotificationKind::ActivityCreated, about),
        sorted(vec![ga, gb]),
        "the group's guardians; not class 2's, not staff"
    );
    assert_eq!(
        told(&all, NotificationKind::ActivityReminder, about),
        vec![ga]
    );
    let reminder = all
        .iter()
        .find(|n| n.kind == NotificationKind::ActivityReminder)
        .unwrap();
    assert_eq!(
        reminder.release_at,
        t("2026-09-09T16:00:00Z"),
        "18:00 in Amsterdam the day before"
    );
    assert!(!due(&h.db, t("2026-09-09T15:59:59Z"), 100)
        .await
        .unwrap()
        .iter()
        .any(|n| n.kind == NotificationKind::ActivityReminder));
    assert!(due(&h.db, t("2026-09-09T16:00:00Z"), 100)
        .await
        .unwrap()
        .iter()
        .any(|n| n.kind == NotificationKind::ActivityReminder && n.recipient_id == ga));
    // Withdrawing and signing up again in one batch: one reminder, the new one.
    s.world
        .activity(Actor::Person(ga), activity, ActivityAction::Withdraw)
        .unwrap();
    s.world
        .activity(Actor::Person(ga), activity, ActivityAction::SignUp)
        .unwrap();
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert_eq!(
        told(&all, NotificationKind::ActivityReminder, about),
        vec![ga]
    );
    // Cancelled: no reminders.
    s.world
        .activity(Actor::Person(t1), activity, ActivityAction::Cancel)
        .unwrap();
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert!(told(&all, NotificationKind::ActivityReminder, about).is_empty());
}

async fn approved_invitations_and_reported_absences_notify<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    let (ga, a) = (s.ga, s.a);
    let absence = AbsenceId::from_uuid(s.world.next_uuid());
    s.world
        .child(
            Actor::Person(ga),
            a,
            ChildAction::ReportAbsence {
                child_id: a,
                absence_id: absence,
                from: NaiveDate::from_ymd_opt(2026, 9, 7).unwrap(),
                to: NaiveDate::from_ymd_opt(2026, 9, 8).unwrap(),
                reason: "Tandarts".into(),
            },
        )
        .unwrap();
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert_eq!(
        told(&all, NotificationKind::AbsenceReported, |n| n.absence_id
            == Some(absence)),
        vec![s.t1],
        "the class's staff; not class 2's teacher, not the guardian"
    );
    let n = all
        .iter()
        .find(|n| n.kind == NotificationKind::AbsenceReported)
        .unwrap();
    assert_eq!((n.child_id, n.group_id), (Some(a), Some(s.g1)));
    // Class 2's teacher may not acknowledge it; class 1's does, once: the reporter is told.
    let (t1, t2) = (s.t1, s.t2);
    let ack = ChildAction::AcknowledgeAbsence {
        child_id: a,
        absence_id: absence,
    };
    assert!(s.world.child(Actor::Person(t2), a, ack.clone()).is_err());
    s.world.child(Actor::Person(t1), a, ack.clone()).unwrap();
    assert!(s.world.child(Actor::Person(t1), a, ack).is_err(), "once");
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert_eq!(
        told(&all, NotificationKind::AbsenceAcknowledged, |n| n
            .absence_id
            == Some(absence)
            && n.child_id == Some(a)),
        vec![ga]
    );
    // Every guardian was told their invitation was approved, about their child.
    let approved = told(&all, NotificationKind::InvitationApproved, |_| true);
    assert_eq!(approved, sorted(vec![s.ga, s.gb, s.gc, s.gd]));
    assert!(all
        .iter()
        .filter(|n| n.kind == NotificationKind::InvitationApproved)
        .all(|n| n.invitation_id.is_some()
            && n.child_id
                .is_some_and(|c| s.world.guardians_of(c).contains(&n.recipient_id))));
}

async fn each_channel_decides_how_and_when<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    let (ga, gb, gc) = (s.ga, s.gb, s.gc);
    s.prefer(
        ga,
        NotificationPreferences {
            digest_at: Some(hm(19, 0)),
            timezone: Some("Europe/Amsterdam".into()),
            kinds: kinds(&[
                (NotificationKind::Post, Channel::Digest),
                (NotificationKind::Message, Channel::Email),
            ]),
            ..Default::default()
        },
    );
    s.prefer(
        gb,
        NotificationPreferences {
            kinds: kinds(&[(NotificationKind::Post, Channel::Off)]),
            ..Default::default()
        },
    );
    let whole = s.world.school_group();
    let director = s.director;
    let first = s.post(director, whole, "Eén", &[]);
    s.at("2026-09-01T12:00:00Z");
    let second = s.post(director, whole, "Twee", &[]);
    s.message(ga);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    let of = |p: PersonId, post: PostId| {
        all.iter()
            .find(|n| n.recipient_id == p && n.post_id == Some(post))
            .unwrap()
            .clone()
    };
    // a's guardian: posts in the 19:00 digest (17:00 UTC in September), both together.
    for post in [first, second] {
        let n = of(ga, post);
        assert_eq!(
            (n.channel, n.release_at),
            (Channel::Digest, t("2026-09-01T17:00:00Z"))
        );
        assert!(!n.was_held(), "waiting for the digest is not a hold");
    }
    // b's guardian: posts never sent, still listed.
    assert_eq!(of(gb, first).channel, Channel::Off);
    // c's guardian chose nothing: push.
    assert_eq!(of(gc, first).channel, Channel::Push);
    // Sent one by one: push and e-mail; never `off` or `digest` ones.
    let now = s.world.now;
    let one_by_one = due(&h.db, now, 1000).await.unwrap();
    assert!(one_by_one
        .iter()
        .all(|n| matches!(n.channel, Channel::Push | Channel::Email)));
    assert!(one_by_one
        .iter()
        .any(|n| n.recipient_id == gc && n.post_id == Some(first)));
    assert!(!one_by_one
        .iter()
        .any(|n| n.recipient_id == gb && n.post_id.is_some()));
    // The teacher's message notification is push; a's guardian is its author, not told.
    assert!(one_by_one
        .iter()
        .any(|n| n.kind == NotificationKind::Message && n.recipient_id == s.t1));
    // Digest ones are never offered one by one, not even once released: the delivery worker
    // gathers them per recipient and release time (one mail for both posts at 19:00).
    assert!(!due(&h.db, t("2026-09-01T17:00:00Z"), 1000)
        .await
        .unwrap()
        .iter()
        .any(|n| n.channel == Channel::Digest));
}

async fn quiet_hours_hold_a_guardians_notifications<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    let ga = s.ga;
    let quiet = QuietHours {
        timezone: "Europe/Amsterdam".into(),
        weekly: vec![QuietPeriod {
            day: Day::Tuesday,
            start: hm(21, 0),
            end: hm(7, 0),
        }],
    };
    s.prefer(
        ga,
        NotificationPreferences {
            quiet_hours: Some(quiet),
            ..Default::default()
        },
    );
    let director = s.director;
    let whole = s.world.school_group();
    // Tuesday 22:00 in Amsterdam.
    s.at("2026-09-01T20:00:00Z");
    let p = s.post(director, whole, "Morgen later", &[]);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    let mine = all
        .iter()
        .find(|n| n.recipient_id == ga && n.post_id == Some(p))
        .unwrap();
    assert_eq!(
        mine.release_at,
        t("2026-09-02T05:00:00Z"),
        "held until 07:00"
    );
    assert!(mine.was_held());
    let gb_n = all
        .iter()
        .find(|n| n.recipient_id == s.gb && n.post_id == Some(p))
        .unwrap();
    assert_eq!(gb_n.release_at, gb_n.created_at, "others are told at once");
}

async fn school_defaults_apply_where_a_person_chose_nothing<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    let director = s.director;
    let mut settings = s.world.school.settings.clone();
    settings.default_channels = kinds(&[
        (NotificationKind::Post, Channel::Digest),
        (NotificationKind::ActivityCreated, Channel::Email),
    ]);
    settings.default_digest_at = Some(hm(7, 0));
    s.world
        .school(
            Actor::Person(director),
            SchoolAction::ChangeSettings(settings),
        )
        .unwrap();
    let ga = s.ga;
    s.prefer(
        ga,
        NotificationPreferences {
            kinds: kinds(&[(NotificationKind::Post, Channel::Email)]),
            ..Default::default()
        },
    );
    let whole = s.world.school_group();
    let p = s.post(director, whole, "Nieuws", &[]);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    let of = |who: PersonId| {
        all.iter()
            .find(|n| n.recipient_id == who && n.post_id == Some(p))
            .unwrap()
    };
    assert_eq!(of(ga).channel, Channel::Email, "their own choice wins");
    let gb = of(s.gb);
    assert_eq!(gb.channel, Channel::Digest, "the school's default");
    assert_eq!(
        gb.release_at,
        t("2026-09-02T05:00:00Z"),
        "the school's digest time, 07:00 the next morning"
    );
    // Kinds neither chose: push.
    let m = s.message(ga);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    let n = all.iter().find(|n| n.message_id == Some(m)).unwrap();
    assert_eq!(n.channel, Channel::Push);
}

async fn a_digest_time_skipped_by_the_clocks_moves_to_the_end_of_the_gap<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut s = school();
    let ga = s.ga;
    s.prefer(
        ga,
        NotificationPreferences {
            digest_at: Some(hm(2, 30)),
            kinds: kinds(&[(NotificationKind::Post, Channel::Digest)]),
            ..Default::default()
        },
    );
    let director = s.director;
    let whole = s.world.school_group();
    let release_of = |all: &[Notification], p: PostId| {
        all.iter()
            .find(|n| n.recipient_id == ga && n.post_id == Some(p))
            .unwrap()
            .release_at
    };
    // Saturday 2027-03-27 12:00 in Amsterdam; that night 02:30 does not exist.
    s.at("2027-03-27T11:00:00Z");
    let spring = s.post(director, whole, "Lente", &[]);
    // Read before the log moves on by seven months: by then it is out of the retention window.
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert_eq!(
        release_of(&all, spring),
        t("2027-03-28T01:00:00Z"),
        "03:00 summer time"
    );
    // Saturday 2027-10-30; that night 02:30 happens twice.
    s.at("2027-10-30T10:00:00Z");
    let autumn = s.post(director, whole, "Herfst", &[]);
    ready(&mut h, &s.world).await;
    let all = everything(&h, &s).await;
    assert_eq!(
        release_of(&all, autumn),
        t("2027-10-31T00:30:00Z"),
        "the first 02:30"
    );
}

async fn a_rebuild_makes_the_same_notifications<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut s = school();
    let (ga, gb, t1, g1, a) = (s.ga, s.gb, s.t1, s.g1, s.a);
    s.prefer(
        gb,
        NotificationPreferences {
            kinds: kinds(&[(NotificationKind::Post, Channel::Digest)]),
            ..Default::default()
        },
    );
    s.post(t1, g1, "", &[vec![a]]);
    s.post(t1, g1, "Tekst", &[]);
    let activity = ActivityId::from_uuid(s.world.next_uuid());
    s.world
        .activity(
            Actor::Person(t1),
            activity,
            ActivityAction::Schedule {
                activity_id: activity,
                group_id: g1,
                title: "Bos".into(),
                starts_at: t("2026-09-10T08:00:00Z"),
                ends_at: t("2026-09-10T10:00:00Z"),
                volunteer_slots: 1,
            },
        )
        .unwrap();
    s.world
        .activity(Actor::Person(ga), activity, ActivityAction::SignUp)
        .unwrap();
    s.message(ga);
    ready(&mut h, &s.world).await;
    let before = everything(&h, &s).await;
    assert!(before.len() > 10);
    h.projector.rebuild(&[]).await.unwrap();
    let after = everything(&h, &s).await;
    assert_eq!(before, after);
}

/// Six posts to a class of 30 children with two guardians each make more notification rows in
/// one batch than one statement of the outbox holds (the rows are written a statement at a time
/// while the batch makes them): every guardian is told of every post, live and after a rebuild.
async fn a_batch_with_more_notifications_than_one_statement_holds_writes_every_one<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 30, 2);
    let (teacher, group) = (world.staff[1], world.groups[0]);
    let mut posts = Vec::new();
    for i in 0..6 {
        let post_id = PostId::from_uuid(world.next_uuid());
        world
            .post(
                Actor::Person(teacher),
                post_id,
                PostAction::Publish {
                    post_id,
                    group_id: group,
                    body: format!("Bericht {i}"),
                    media: Vec::new(),
                },
            )
            .unwrap();
        posts.push(post_id);
    }
    ready(&mut h, &world).await;
    let mut people: Vec<PersonId> = world.staff.clone();
    people.extend(world.invitees.iter().copied());
    people.sort();
    people.dedup();
    let everyone = |h: &Harness<S>| {
        let (db, people) = (h.db.clone(), people.clone());
        async move {
            let mut all = Vec::new();
            for p in people {
                all.extend(undelivered_of(&db, p, 1000).await.unwrap());
            }
            all.sort_by_key(|n| n.id);
            all
        }
    };
    let before = everyone(&h).await;
    let mut guardians: Vec<PersonId> = world
        .child_ids
        .iter()
        .flat_map(|c| world.guardians_of(*c))
        .collect();
    guardians.sort();
    guardians.dedup();
    assert_eq!(guardians.len(), 60);
    let of_first = told(&before, NotificationKind::Post, |n| {
        n.post_id == Some(posts[0])
    });
    for post in &posts {
        let told_of = told(&before, NotificationKind::Post, |n| {
            n.post_id == Some(*post)
        });
        assert_eq!(told_of, of_first, "every post tells the same people");
        for guardian in &guardians {
            assert!(told_of.contains(guardian), "{guardian} told of {post}");
        }
        assert!(!told_of.contains(&teacher), "the author is not told");
    }
    let of_posts = before
        .iter()
        .filter(|n| n.kind == NotificationKind::Post)
        .count();
    assert_eq!(of_posts, 6 * of_first.len());
    // More rows than one statement of 19 columns holds (4,000 parameters: 210 rows).
    assert!(of_posts > 210, "{of_posts} notifications of posts");
    h.projector.rebuild(&[]).await.unwrap();
    assert_eq!(everyone(&h).await, before);
}
