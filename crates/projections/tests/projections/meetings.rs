//! The meetings read model: a round's schedule, a staff member's and a family's, the calendar
//! keys; the same after a rebuild from the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use chrono::Duration;
use common::Harness;
use kring_domain::calendar::{CalendarEvent, CalendarKeyIssued};
use kring_domain::meeting::{
    self, MeetingAction, MeetingContext, MeetingRound, Per, Place, SlotPlan, SlotRequest,
};
use kring_domain::simulation::World;
use kring_domain::{
    Actor, ChildId, Command, Event, MeetingBookingId, MeetingRoundId, PersonId, StreamName,
};
use kring_projections::models::meetings::{
    self, family_schedule, person_of_calendar_key, round, staff_schedule,
};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(meetings::MeetingsProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(meetings::MeetingsProjection::default())]);
    schedules_per_round_staff_member_and_family_follow_bookings_moves_and_cancellations,
);

/// Decides on the round and appends what was decided to its stream.
async fn run<S: EventStore + Clone>(
    h: &Harness<S>,
    world: &World,
    round: &mut MeetingRound,
    round_id: MeetingRoundId,
    actor: Actor,
    action: MeetingAction,
) {
    let events = meeting::decide(
        &MeetingContext {
            round,
            school: &world.school,
            busy: &[],
        },
        Command::new(actor, action),
        world.now,
    )
    .unwrap();
    for e in events {
        *round = meeting::evolve(std::mem::take(round), &e);
        let sealed = h
            .vault
            .seal(&Event::Meeting(e), Metadata::new(world.now, actor))
            .await
            .unwrap();
        h.store
            .append(
                &StreamName::meeting(round_id),
                ExpectedVersion::Any,
                vec![sealed],
            )
            .await
            .unwrap();
    }
}

async fn schedules_per_round_staff_member_and_family_follow_bookings_moves_and_cancellations<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let world = World::with_classes(2, 2, 1);
    h.sync(&world).await;
    let teacher = world.staff[1];
    let [a, b, c] = [world.child_ids[0], world.child_ids[1], world.child_ids[2]];
    let guardian = |c: ChildId| world.guardians_of(c)[0];
    let round_id = MeetingRoundId::generate();
    let mut state = MeetingRound::default();
    let start = world.now + Duration::days(7);
    let open = MeetingAction::Open {
        round_id,
        group_ids: vec![world.groups[0], world.groups[1]],
        title: "Tienminutengesprekken".into(),
        per: Per::Child,
        place: Place::Room {
            name: "Lokaal 4".into(),
        },
        book_until: world.now + Duration::days(6),
        slots: SlotPlan::Slots(
            (0..4)
                .map(|i| SlotRequest {
                    starts_at: start + Duration::minutes(10 * i),
                    ends_at: start + Duration::minutes(10 * i + 10),
                    staff: vec![teacher],
                })
                .collect(),
        ),
    };
    run(
        &h,
        &world,
        &mut state,
        round_id,
        Actor::Person(world.director),
        open,
    )
    .await;
    let [ba, bb, bc] = [(); 3].map(|()| MeetingBookingId::generate());
    for (booking_id, slot, child) in [(ba, 1, a), (bb, 2, b), (bc, 3, c)] {
        let action = MeetingAction::Book {
            booking_id,
            slot,
            child_id: child,
        };
        run(
            &h,
            &world,
            &mut state,
            round_id,
            Actor::Person(guardian(child)),
            action,
        )
        .await;
    }
    let g = Actor::Person(guardian(a));
    run(
        &h,
        &world,
        &mut state,
        round_id,
        g,
        MeetingAction::Move {
            booking_id: ba,
            slot: 4,
        },
    )
    .await;
    let g = Actor::Person(guardian(b));
    run(
        &h,
        &world,
        &mut state,
        round_id,
        g,
        MeetingAction::CancelBooking { booking_id: bb },
    )
    .await;
    let staff = Actor::Person(teacher);
    run(
        &h,
        &world,
        &mut state,
        round_id,
        staff,
        MeetingAction::BlockSlot { slot: 2 },
    )
    .await;
    let key = CalendarEvent::CalendarKeyIssued(CalendarKeyIssued {
        person_id: teacher,
        key_digest: "ab".repeat(32),
    });
    let sealed = h
        .vault
        .seal(&Event::Calendar(key), Metadata::new(world.now, staff))
        .await
        .unwrap();
    h.store
        .append(
            &StreamName::calendar(teacher),
            ExpectedVersion::Any,
            vec![sealed],
        )
        .await
        .unwrap();
    h.projector.catch_up().await.unwrap();

    let view = round(&h.db, round_id).await.unwrap().unwrap();
    assert_eq!(view.status, "open");
    assert_eq!(view.group_ids.len(), 2);
    let held: Vec<(u32, bool, Option<MeetingBookingId>)> = view
        .slots
        .iter()
        .map(|s| (s.slot, s.blocked, s.booking.as_ref().map(|b| b.booking_id)))
        .collect();
    assert_eq!(
        held,
        [
            (1, false, None),
            (2, true, None),
            (3, false, Some(bc)),
            (4, false, Some(ba))
        ]
    );
    // The read model agrees with the aggregate's state.
    for (n, s) in &state.slots {
        assert_eq!(
            view.slots[*n as usize - 1]
                .booking
                .as_ref()
                .map(|b| b.booking_id),
            s.booking
        );
    }
    assert_eq!(view.slots[3].booking.as_ref().unwrap().sequence, 1);
    let teachers: Vec<(u32, MeetingBookingId)> = staff_schedule(&h.db, teacher)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.slot, m.booking.booking_id))
        .collect();
    assert_eq!(teachers, [(3, bc), (4, ba)]);
    assert!(staff_schedule(&h.db, PersonId::generate())
        .await
        .unwrap()
        .is_empty());
    let family = family_schedule(&h.db, &[a]).await.unwrap();
    assert_eq!(family.len(), 1);
    assert_eq!(family[0].booking.child_ids, [a]);
    assert_eq!(family[0].starts_at, start + Duration::minutes(30));
    assert!(family_schedule(&h.db, &[b]).await.unwrap().is_empty());
    assert_eq!(
        person_of_calendar_key(&h.db, &"ab".repeat(32))
            .await
            .unwrap(),
        Some(teacher)
    );

    // Cancelling the round takes it out of the schedules.
    run(
        &h,
        &world,
        &mut state,
        round_id,
        staff,
        MeetingAction::Cancel,
    )
    .await;
    h.projector.catch_up().await.unwrap();
    assert!(staff_schedule(&h.db, teacher).await.unwrap().is_empty());
    let before = round(&h.db, round_id).await.unwrap();
    assert_eq!(before.as_ref().unwrap().status, "cancelled");

    // Rebuilt from the log, the read model is the same.
    h.projector.rebuild(&[]).await.unwrap();
    assert_eq!(round(&h.db, round_id).await.unwrap(), before);
    assert_eq!(
        person_of_calendar_key(&h.db, &"ab".repeat(32))
            .await
            .unwrap(),
        Some(teacher)
    );
}
