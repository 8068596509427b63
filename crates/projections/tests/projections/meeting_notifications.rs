//! The meeting planner's notifications: a booking made, assigned, moved or cancelled (or its
//! round cancelled) tells the family but the one who did it; every guardian of the booking's
//! children is reminded the evening before, in their own time zone, held by their quiet hours,
//! on the channel they chose (or their school's default); moving a booking reschedules its
//! reminder, cancelling it or the round takes it back; a rebuild makes the same rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use chrono::{DateTime, NaiveTime, Utc};
use common::Harness;
use kring_domain::meeting::{
    self, MeetingAction, MeetingContext, MeetingRound, Per, Place, SlotPlan, SlotRequest,
};
use kring_domain::person::{
    Channel, Day, NotificationKind, NotificationPreferences, PersonAction, QuietHours, QuietPeriod,
};
use kring_domain::school::SchoolAction;
use kring_domain::simulation::World;
use kring_domain::{
    Actor, ChildId, Command, Event, MeetingBookingId, MeetingRoundId, PersonId, StreamName,
};
use kring_projections::models::outbox::{
    self, due, ensure_delivery_table, undelivered_of, Notification,
};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::collections::BTreeMap;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(outbox::OutboxProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(outbox::OutboxProjection::default())]);
    a_booking_tells_the_other_guardian_and_reminds_the_whole_family_the_evening_before,
    a_booking_assigned_by_staff_tells_both_guardians_and_nobody_else,
    moving_a_booking_tells_the_family_and_reschedules_its_reminder,
    cancelling_a_booking_tells_the_family_and_takes_back_its_reminders,
    cancelling_the_round_tells_each_guardian_once_and_takes_back_every_reminder,
    a_reminder_follows_each_persons_time_zone_and_quiet_hours,
    meeting_kinds_follow_each_persons_channel_and_the_schools_defaults,
    a_booking_made_after_the_reminder_time_is_reminded_at_once_and_none_once_started,
    a_rebuild_makes_the_same_meeting_notifications,
);

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

/// Two classes of two children, each child with two guardians; a round for class 1 with four
/// slots on Thursday 2026-09-10 from 17:00 in Amsterdam (15:00 UTC) and two on Friday. The
/// world starts on Tuesday 2026-09-01, 08:00 UTC.
struct Planner {
    world: World,
    round_id: MeetingRoundId,
    round: MeetingRound,
    teacher: PersonId,
    a: ChildId,
    b: ChildId,
    /// The guardians of a, of b and of a child of class 2.
    ga: [PersonId; 2],
    gb: [PersonId; 2],
    gc: [PersonId; 2],
}

fn planner() -> Planner {
    let world = World::with_classes(2, 2, 2);
    let [a, b, c] = [0, 1, 2].map(|i| world.child_ids[i]);
    let two = |child| {
        let g = world.guardians_of(child);
        [g[0], g[1]]
    };
    Planner {
        round_id: MeetingRoundId::generate(),
        round: MeetingRound::default(),
        teacher: world.staff[1],
        a,
        b,
        ga: two(a),
        gb: two(b),
        gc: two(c),
        world,
    }
}

impl Planner {
    fn at(&mut self, when: &str) {
        let when = t(when);
        assert!(when >= self.world.now);
        self.world.advance(when - self.world.now);
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

    /// Writes the world's events, decides `action` on the round as `actor` at the world's
    /// time and appends what was decided.
    async fn run<S: EventStore + Clone>(
        &mut self,
        h: &mut Harness<S>,
        actor: PersonId,
        action: MeetingAction,
    ) {
        h.write(&self.world).await;
        let events = meeting::decide(
            &MeetingContext {
                round: &self.round,
                school: &self.world.school,
                busy: &[],
            },
            Command::new(Actor::Person(actor), action),
            self.world.now,
        )
        .unwrap();
        for e in events {
            self.round = meeting::evolve(std::mem::take(&mut self.round), &e);
            let sealed = h
                .vault
                .seal(
                    &Event::Meeting(e),
                    Metadata::new(self.world.now, Actor::Person(actor)),
                )
                .await
                .unwrap();
            h.store
                .append(
                    &StreamName::meeting(self.round_id),
                    ExpectedVersion::Any,
                    vec![sealed],
                )
                .await
                .unwrap();
        }
    }

    async fn open<S: EventStore + Clone>(&mut self, h: &mut Harness<S>) {
        let thursday = t("2026-09-10T15:00:00Z");
        let friday = t("2026-09-11T15:00:00Z");
        let slots = (0..4)
            .map(|i| thursday + chrono::Duration::minutes(15 * i))
            .chain((0..2).map(|i| friday + chrono::Duration::minutes(15 * i)))
            .map(|starts_at| SlotRequest {
                starts_at,
                ends_at: starts_at + chrono::Duration::minutes(10),
                staff: vec![self.teacher],
            })
            .collect();
        let action = MeetingAction::Open {
            round_id: self.round_id,
            group_ids: vec![self.world.groups[0]],
            title: "Tienminutengesprekken".into(),
            per: Per::Child,
            place: Place::Room {
                name: "Lokaal 4".into(),
            },
            book_until: t("2026-09-09T12:00:00Z"),
            slots: SlotPlan::Slots(slots),
        };
        let teacher = self.teacher;
        self.run(h, teacher, action).await;
    }

    async fn book<S: EventStore + Clone>(
        &mut self,
        h: &mut Harness<S>,
        by: PersonId,
        child_id: ChildId,
        slot: u32,
    ) -> MeetingBookingId {
        let booking_id = MeetingBookingId::generate();
        let action = MeetingAction::Book {
            booking_id,
            slot,
            child_id,
        };
        self.run(h, by, action).await;
        booking_id
    }
}

async fn ready<S: EventStore + Clone>(h: &mut Harness<S>, p: &Planner) {
    h.sync(&p.world).await;
    ensure_delivery_table(&h.db).await.unwrap();
}

/// Every notification of every guardian and staff member, sorted by id.
async fn everything<S: EventStore + Clone>(h: &Harness<S>, p: &Planner) -> Vec<Notification> {
    let mut people: Vec<PersonId> = p.world.staff.clone();
    people.extend(p.world.invitees.iter().copied());
    people.sort();
    people.dedup();
    let mut all = Vec::new();
    for person in people {
        all.extend(undelivered_of(&h.db, person, 1000).await.unwrap());
    }
    all.sort_by_key(|n| n.id);
    all
}

fn told(all: &[Notification], kind: NotificationKind) -> Vec<PersonId> {
    let mut r: Vec<PersonId> = all
        .iter()
        .filter(|n| n.kind == kind)
        .map(|n| n.recipient_id)
        .collect();
    r.sort();
    r
}

fn sorted<const N: usize>(v: [PersonId; N]) -> Vec<PersonId> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn of(all: &[Notification], kind: NotificationKind, who: PersonId) -> Vec<Notification> {
    all.iter()
        .filter(|n| n.kind == kind && n.recipient_id == who)
        .cloned()
        .collect()
}

async fn a_booking_tells_the_other_guardian_and_reminds_the_whole_family_the_evening_before<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    p.open(&mut h).await;
    let (a, [ga, ga2]) = (p.a, p.ga);
    let booking = p.book(&mut h, ga, a, 1).await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    assert_eq!(
        told(&all, NotificationKind::MeetingBooked),
        vec![ga2],
        "the other guardian; not who booked, not other families, not staff"
    );
    let booked = &of(&all, NotificationKind::MeetingBooked, ga2)[0];
    assert_eq!(booked.round_id, Some(p.round_id));
    assert_eq!(booked.booking_id, Some(booking));
    assert_eq!(booked.child_id, Some(a));
    assert_eq!(booked.release_at, booked.created_at, "at once");
    assert_eq!(
        told(&all, NotificationKind::MeetingReminder),
        sorted([ga, ga2]),
        "both guardians, who booked too"
    );
    for n in all
        .iter()
        .filter(|n| n.kind == NotificationKind::MeetingReminder)
    {
        assert_eq!(
            n.release_at,
            t("2026-09-09T16:00:00Z"),
            "18:00 in Amsterdam the day before, as an activity's"
        );
        assert_eq!(
            (n.booking_id, n.child_id, n.channel),
            (Some(booking), Some(a), Channel::Push)
        );
    }
    let reminders_due = |when: &'static str| {
        let db = h.db.clone();
        async move {
            due(&db, t(when), 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|n| n.kind == NotificationKind::MeetingReminder)
                .count()
        }
    };
    assert_eq!(reminders_due("2026-09-09T15:59:59Z").await, 0);
    assert_eq!(reminders_due("2026-09-09T16:00:00Z").await, 2);
}

async fn a_booking_assigned_by_staff_tells_both_guardians_and_nobody_else<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    p.open(&mut h).await;
    let (b, teacher) = (p.b, p.teacher);
    p.book(&mut h, teacher, b, 2).await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    assert_eq!(told(&all, NotificationKind::MeetingBooked), sorted(p.gb));
    assert_eq!(told(&all, NotificationKind::MeetingReminder), sorted(p.gb));
    let meeting_kinds = [
        NotificationKind::MeetingBooked,
        NotificationKind::MeetingChanged,
        NotificationKind::MeetingReminder,
    ];
    for n in all.iter().filter(|n| meeting_kinds.contains(&n.kind)) {
        assert!(
            !p.ga.contains(&n.recipient_id) && !p.gc.contains(&n.recipient_id),
            "another family: {n:?}"
        );
        assert_ne!(n.recipient_id, teacher, "{n:?}");
    }
}

async fn moving_a_booking_tells_the_family_and_reschedules_its_reminder<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    p.open(&mut h).await;
    let (a, b, [ga, ga2], [gb, gb2]) = (p.a, p.b, p.ga, p.gb);
    let booking = p.book(&mut h, ga, a, 1).await;
    ready(&mut h, &p).await;
    // In a later batch the other guardian moves it to Friday.
    p.at("2026-09-03T10:00:00Z");
    p.run(
        &mut h,
        ga2,
        MeetingAction::Move {
            booking_id: booking,
            slot: 5,
        },
    )
    .await;
    // Booked and moved in one batch: only the new reminder is written.
    let other = p.book(&mut h, gb, b, 2).await;
    p.run(
        &mut h,
        gb,
        MeetingAction::Move {
            booking_id: other,
            slot: 6,
        },
    )
    .await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    assert_eq!(
        told(&all, NotificationKind::MeetingChanged),
        sorted([ga, gb2]),
        "the family, but who moved it"
    );
    let changed = &of(&all, NotificationKind::MeetingChanged, ga)[0];
    assert_eq!(changed.booking_id, Some(booking));
    assert_eq!(
        told(&all, NotificationKind::MeetingReminder),
        sorted([ga, ga2, gb, gb2]),
        "one reminder each: the old ones are taken back"
    );
    for n in all
        .iter()
        .filter(|n| n.kind == NotificationKind::MeetingReminder)
    {
        assert_eq!(
            n.release_at,
            t("2026-09-10T16:00:00Z"),
            "the evening before Friday"
        );
    }
}

async fn cancelling_a_booking_tells_the_family_and_takes_back_its_reminders<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    p.open(&mut h).await;
    let (a, b, [ga, ga2], [gb, _]) = (p.a, p.b, p.ga, p.gb);
    let booking = p.book(&mut h, ga, a, 1).await;
    p.book(&mut h, gb, b, 2).await;
    ready(&mut h, &p).await;
    p.at("2026-09-04T10:00:00Z");
    p.run(
        &mut h,
        ga2,
        MeetingAction::CancelBooking {
            booking_id: booking,
        },
    )
    .await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    assert_eq!(told(&all, NotificationKind::MeetingChanged), vec![ga]);
    assert_eq!(
        told(&all, NotificationKind::MeetingReminder),
        sorted(p.gb),
        "a's family is no longer reminded; b's still is"
    );
}

async fn cancelling_the_round_tells_each_guardian_once_and_takes_back_every_reminder<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    p.open(&mut h).await;
    let (a, b, teacher) = (p.a, p.b, p.teacher);
    p.book(&mut h, p.ga[0], a, 1).await;
    ready(&mut h, &p).await;
    // b booked in the same batch as the cancellation: its reminders never written.
    p.book(&mut h, p.gb[0], b, 2).await;
    let director = p.world.director;
    p.run(&mut h, director, MeetingAction::Cancel).await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    let mut families = sorted(p.ga);
    families.extend(p.gb);
    families.sort();
    assert_eq!(told(&all, NotificationKind::MeetingChanged), families);
    for n in all
        .iter()
        .filter(|n| n.kind == NotificationKind::MeetingChanged)
    {
        assert_eq!((n.round_id, n.booking_id), (Some(p.round_id), None));
    }
    assert!(told(&all, NotificationKind::MeetingReminder).is_empty());
    assert!(!all
        .iter()
        .any(|n| n.recipient_id == teacher && n.round_id.is_some()));
}

async fn a_reminder_follows_each_persons_time_zone_and_quiet_hours<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    let [ga, ga2] = p.ga;
    p.prefer(
        ga,
        NotificationPreferences {
            timezone: Some("America/New_York".into()),
            ..Default::default()
        },
    );
    p.prefer(
        ga2,
        NotificationPreferences {
            quiet_hours: Some(QuietHours {
                timezone: "Europe/Amsterdam".into(),
                weekly: vec![QuietPeriod {
                    day: Day::Wednesday,
                    start: hm(17, 0),
                    end: hm(20, 0),
                }],
            }),
            ..Default::default()
        },
    );
    p.open(&mut h).await;
    let a = p.a;
    p.book(&mut h, ga, a, 1).await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    let reminder = |who| of(&all, NotificationKind::MeetingReminder, who)[0].clone();
    assert_eq!(
        reminder(ga).release_at,
        t("2026-09-09T22:00:00Z"),
        "18:00 in New York on Wednesday"
    );
    let held = reminder(ga2);
    assert_eq!(
        (held.created_at, held.release_at),
        (t("2026-09-09T16:00:00Z"), t("2026-09-09T18:00:00Z")),
        "wanted at 18:00, held until her quiet hours end at 20:00"
    );
    assert!(held.was_held());
}

async fn meeting_kinds_follow_each_persons_channel_and_the_schools_defaults<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    let director = p.world.director;
    let mut settings = p.world.school.settings.clone();
    settings.default_channels = BTreeMap::from([
        (NotificationKind::MeetingBooked, Channel::Email),
        (NotificationKind::MeetingReminder, Channel::Digest),
    ]);
    settings.default_digest_at = Some(hm(7, 0));
    p.world
        .school(
            Actor::Person(director),
            SchoolAction::ChangeSettings(settings),
        )
        .unwrap();
    let [gb, gb2] = p.gb;
    p.prefer(
        gb2,
        NotificationPreferences {
            kinds: BTreeMap::from([
                (NotificationKind::MeetingBooked, Channel::Off),
                (NotificationKind::MeetingReminder, Channel::Push),
                (NotificationKind::MeetingChanged, Channel::Digest),
            ]),
            ..Default::default()
        },
    );
    p.open(&mut h).await;
    let (b, teacher) = (p.b, p.teacher);
    let booking = p.book(&mut h, teacher, b, 1).await;
    p.run(
        &mut h,
        teacher,
        MeetingAction::Move {
            booking_id: booking,
            slot: 2,
        },
    )
    .await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    let one = |kind, who| of(&all, kind, who)[0].clone();
    // b's first guardian chose nothing: the school's defaults, else push.
    assert_eq!(
        one(NotificationKind::MeetingBooked, gb).channel,
        Channel::Email
    );
    assert_eq!(
        one(NotificationKind::MeetingChanged, gb).channel,
        Channel::Push
    );
    let digest = one(NotificationKind::MeetingReminder, gb);
    assert_eq!(
        (digest.channel, digest.release_at),
        (Channel::Digest, t("2026-09-09T05:00:00Z")),
        "in the school's 07:00 digest of the day before"
    );
    // The second chose for herself.
    let off = one(NotificationKind::MeetingBooked, gb2);
    assert_eq!(off.channel, Channel::Off);
    assert!(
        !due(&h.db, t("2026-09-20T00:00:00Z"), 1000)
            .await
            .unwrap()
            .iter()
            .any(|n| n.id == off.id),
        "`off`: never sent, only listed"
    );
    assert_eq!(
        one(NotificationKind::MeetingChanged, gb2).channel,
        Channel::Digest
    );
    assert_eq!(
        one(NotificationKind::MeetingReminder, gb2).channel,
        Channel::Push
    );
}

async fn a_booking_made_after_the_reminder_time_is_reminded_at_once_and_none_once_started<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut p = planner();
    p.open(&mut h).await;
    let (a, b, teacher) = (p.a, p.b, p.teacher);
    // Wednesday 20:00 in Amsterdam, after the reminder time: reminded at once.
    p.at("2026-09-09T18:00:00Z");
    p.book(&mut h, teacher, a, 4).await;
    // Thursday, after slot 1 started: staff book it for the record; no reminder.
    p.at("2026-09-10T15:05:00Z");
    p.book(&mut h, teacher, b, 1).await;
    ready(&mut h, &p).await;
    let all = everything(&h, &p).await;
    assert_eq!(told(&all, NotificationKind::MeetingReminder), sorted(p.ga));
    for who in p.ga {
        let n = &of(&all, NotificationKind::MeetingReminder, who)[0];
        assert_eq!(n.release_at, t("2026-09-09T18:00:00Z"));
    }
    assert_eq!(
        told(&all, NotificationKind::MeetingBooked).len(),
        4,
        "both families are told of the booking itself"
    );
}

async fn a_rebuild_makes_the_same_meeting_notifications<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut p = planner();
    p.open(&mut h).await;
    let (a, b, ga, gb) = (p.a, p.b, p.ga[0], p.gb[1]);
    let booking = p.book(&mut h, ga, a, 1).await;
    p.book(&mut h, gb, b, 2).await;
    ready(&mut h, &p).await;
    p.at("2026-09-02T09:00:00Z");
    p.run(
        &mut h,
        ga,
        MeetingAction::Move {
            booking_id: booking,
            slot: 5,
        },
    )
    .await;
    ready(&mut h, &p).await;
    let before = everything(&h, &p).await;
    assert!(before.len() >= 8, "{before:#?}");
    h.projector.rebuild(&[]).await.unwrap();
    let after = everything(&h, &p).await;
    assert_eq!(before, after);
}
