//! Meeting rounds: one test per rule, named after it, and a property test over random command
//! sequences.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use kring_domain::meeting::{
    self, Busy, GenerateDay, MeetingAction, MeetingContext, MeetingEvent, MeetingRound, Per, Place,
    RoundStatus, SlotPlan, SlotRequest,
};
use kring_domain::school::{School, SchoolAction};
use kring_domain::simulation::World;
use kring_domain::{
    Actor, Aggregate, ChildId, Command, DomainError, Event, GroupId, MeetingBookingId,
    MeetingRoundId, PersonId,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// A round over one school, deciding and folding like the API does.
struct Round {
    school: School,
    state: MeetingRound,
    log: Vec<MeetingEvent>,
    now: DateTime<Utc>,
    busy: Vec<Busy>,
    round_id: MeetingRoundId,
}

impl Round {
    fn run(&mut self, actor: Actor, action: MeetingAction) -> Result<(), DomainError> {
        let events = meeting::decide(
            &MeetingContext {
                round: &self.state,
                school: &self.school,
                busy: &self.busy,
            },
            Command::new(actor, action),
            self.now,
        )?;
        for e in events {
            self.state = meeting::evolve(std::mem::take(&mut self.state), &e);
            self.log.push(e);
        }
        Ok(())
    }

    fn book(
        &mut self,
        actor: PersonId,
        slot: u32,
        child: ChildId,
    ) -> Result<MeetingBookingId, DomainError> {
        let booking_id = MeetingBookingId::generate();
        self.run(
            Actor::Person(actor),
            MeetingAction::Book {
                booking_id,
                slot,
                child_id: child,
            },
        )?;
        Ok(booking_id)
    }
}

/// Two classes of three children with two guardians each; the first child of each class are
/// siblings (they share their first guardian). The first class's teacher opens a round of
/// `slots` ten-minute slots a week from now, bookable for six days.
fn school_with_round(slots: u32, per: Per) -> (World, Round) {
    let mut world = World::with_classes(2, 3, 2);
    let (a, b) = (world.child_ids[0], world.child_ids[3]);
    let shared = world.guardians_of(a)[0];
    world
        .school
        .children
        .get_mut(&b)
        .unwrap()
        .guardians
        .insert(shared);
    let round = open_round(&world, slots, per, vec![world.groups[0], world.groups[1]]);
    (world, round)
}

fn teacher(world: &World, g: usize) -> Actor {
    Actor::Person(world.staff[g + 1])
}

fn open_round(world: &World, slots: u32, per: Per, groups: Vec<GroupId>) -> Round {
    let round_id = MeetingRoundId::generate();
    let start = world.now + Duration::days(7);
    let mut round = Round {
        school: world.school.clone(),
        state: MeetingRound::default(),
        log: Vec::new(),
        now: world.now,
        busy: Vec::new(),
        round_id,
    };
    let director = Actor::Person(world.director);
    round
        .run(
            director,
            MeetingAction::Open {
                round_id,
                group_ids: groups,
                title: "Tienminutengesprekken".into(),
                per,
                place: Place::Room {
                    name: "Lokaal 4".into(),
                },
                book_until: world.now + Duration::days(6),
                slots: SlotPlan::Slots(
                    (0..slots)
                        .map(|i| SlotRequest {
                            starts_at: start + Duration::minutes(10 * i64::from(i)),
                            ends_at: start + Duration::minutes(10 * i64::from(i) + 10),
                            staff: vec![world.staff[1]],
                        })
                        .collect(),
                ),
            },
        )
        .unwrap();
    round
}

#[test]
fn a_slot_is_never_booked_twice() {
    let (world, mut round) = school_with_round(3, Per::Child);
    let (c1, c2) = (world.child_ids[1], world.child_ids[2]);
    round.book(world.guardians_of(c1)[0], 1, c1).unwrap();
    let refused = round.book(world.guardians_of(c2)[0], 1, c2);
    assert!(
        matches!(
            refused,
            Err(DomainError::SlotUnavailable {
                slot: 1,
                reason: "taken",
                ..
            })
        ),
        "{refused:?}"
    );
    // Staff cannot assign a taken slot either.
    let assigned = round.book(world.staff[1], 1, c2);
    assert!(matches!(assigned, Err(DomainError::SlotUnavailable { .. })));
    // Nor move another booking into it.
    let b2 = round.book(world.guardians_of(c2)[0], 2, c2).unwrap();
    let moved = round.run(
        teacher(&world, 0),
        MeetingAction::Move {
            booking_id: b2,
            slot: 1,
        },
    );
    assert!(matches!(moved, Err(DomainError::SlotUnavailable { .. })));
    // A blocked slot is not bookable.
    round
        .run(teacher(&world, 0), MeetingAction::BlockSlot { slot: 3 })
        .unwrap();
    let blocked = round.book(world.guardians_of(c2)[1], 3, world.child_ids[2]);
    assert!(matches!(
        blocked,
        Err(DomainError::SlotUnavailable {
            reason: "blocked",
            ..
        } | DomainError::AlreadyBooked { .. })
    ));
    assert_eq!(round.state.bookings.len(), 2);
}

#[test]
fn a_child_never_has_two_bookings_in_one_round() {
    let (world, mut round) = school_with_round(4, Per::Child);
    let child = world.child_ids[1];
    let [g1, g2] = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
    let first = round.book(g1, 1, child).unwrap();
    // Neither guardian books a second slot for the same child…
    assert_eq!(
        round.book(g2, 2, child),
        Err(DomainError::AlreadyBooked {
            round_id: round.round_id,
            child_id: child,
            booking_id: first
        })
    );
    // …and staff do not assign one; both guardians move the one booking instead.
    assert!(round.book(world.staff[1], 2, child).is_err());
    round
        .run(
            Actor::Person(g2),
            MeetingAction::Move {
                booking_id: first,
                slot: 3,
            },
        )
        .unwrap();
    assert_eq!(round.state.bookings[&first].slot, 3);
    assert_eq!(round.state.bookings[&first].sequence, 1);
    assert!(round.state.slots[&1].booking.is_none());
}

#[test]
fn per_family_siblings_in_the_round_share_one_booking() {
    let (world, mut round) = school_with_round(4, Per::Family);
    let (a, b) = (world.child_ids[0], world.child_ids[3]);
    let shared = world.guardians_of(a)[0];
    let booking = round.book(shared, 1, a).unwrap();
    assert_eq!(
        round.state.bookings[&booking].child_ids,
        BTreeSet::from([a, b])
    );
    // The sibling's other guardian sees it as the family's booking: no second one.
    let other = *round.school.children[&b]
        .guardians
        .iter()
        .find(|g| **g != shared)
        .unwrap();
    assert!(matches!(
        round.book(other, 2, b),
        Err(DomainError::AlreadyBooked { booking_id, .. }) if booking_id == booking
    ));
    // And may cancel it.
    round
        .run(
            Actor::Person(other),
            MeetingAction::CancelBooking {
                booking_id: booking,
            },
        )
        .unwrap();
    assert!(round.state.bookings.is_empty());
}

#[test]
fn after_book_until_guardians_can_no_longer_book_or_change_but_staff_can() {
    let (world, mut round) = school_with_round(4, Per::Child);
    let (c1, c2) = (world.child_ids[1], world.child_ids[2]);
    let g1 = world.guardians_of(c1)[0];
    let booking = round.book(g1, 1, c1).unwrap();
    round.now += Duration::days(6);
    assert!(matches!(
        round.book(world.guardians_of(c2)[0], 2, c2),
        Err(DomainError::BookingDeadlinePassed { .. })
    ));
    for action in [
        MeetingAction::Move {
            booking_id: booking,
            slot: 2,
        },
        MeetingAction::CancelBooking {
            booking_id: booking,
        },
    ] {
        assert!(matches!(
            round.run(Actor::Person(g1), action),
            Err(DomainError::BookingDeadlinePassed { .. })
        ));
    }
    let staff = teacher(&world, 0);
    round.book(world.staff[1], 2, c2).unwrap();
    round
        .run(
            staff,
            MeetingAction::Move {
                booking_id: booking,
                slot: 3,
            },
        )
        .unwrap();
    round
        .run(
            staff,
            MeetingAction::CancelBooking {
                booking_id: booking,
            },
        )
        .unwrap();
    assert_eq!(round.state.bookings.len(), 1);
}

#[test]
fn a_cancelled_or_closed_round_refuses_bookings() {
    for (close, status) in [
        (MeetingAction::Close, RoundStatus::Closed),
        (MeetingAction::Cancel, RoundStatus::Cancelled),
    ] {
        let (world, mut round) = school_with_round(3, Per::Child);
        let c = world.child_ids[1];
        let booked = round.book(world.guardians_of(c)[0], 1, c).unwrap();
        // Only staff close or cancel.
        assert!(round
            .run(Actor::Person(world.guardians_of(c)[0]), close.clone())
            .is_err());
        round.run(teacher(&world, 0), close).unwrap();
        assert_eq!(round.state.status, status);
        let c2 = world.child_ids[2];
        for actor in [world.guardians_of(c2)[0], world.staff[1]] {
            assert!(matches!(
                round.book(actor, 2, c2),
                Err(DomainError::RoundNotOpen { .. })
            ));
        }
        assert!(matches!(
            round.run(
                Actor::Person(world.guardians_of(c)[0]),
                MeetingAction::Move {
                    booking_id: booked,
                    slot: 2
                }
            ),
            Err(DomainError::RoundNotOpen { .. })
        ));
    }
}

#[test]
fn a_child_moved_to_another_group_keeps_its_booking_in_the_old_round_but_cannot_book_anew() {
    let (mut world, _) = school_with_round(3, Per::Child);
    let mut round = open_round(&world, 3, Per::Child, vec![world.groups[0]]);
    let child = world.child_ids[1];
    let guardian = world.guardians_of(child)[0];
    let booking = round.book(guardian, 1, child).unwrap();
    world
        .school(
            Actor::Person(world.director),
            SchoolAction::MoveChild {
                child_id: child,
                to_group_id: world.groups[1],
            },
        )
        .unwrap();
    round.school = world.school.clone();
    assert_eq!(
        round.state.bookings[&booking].child_ids,
        BTreeSet::from([child])
    );
    // The guardian still manages the booking…
    round
        .run(
            Actor::Person(guardian),
            MeetingAction::Move {
                booking_id: booking,
                slot: 2,
            },
        )
        .unwrap();
    round
        .run(
            Actor::Person(guardian),
            MeetingAction::CancelBooking {
                booking_id: booking,
            },
        )
        .unwrap();
    // …but nobody books the child anew in the old group's round.
    assert!(matches!(
        round.book(guardian, 1, child),
        Err(DomainError::Invalid {
            field: "child_id",
            ..
        })
    ));
}

#[test]
fn an_erased_guardians_booking_stays_as_the_childs_and_the_other_guardian_manages_it() {
    let (mut world, mut round) = school_with_round(3, Per::Child);
    let child = world.child_ids[1];
    let [erased, other] = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
    let booking = round.book(erased, 1, child).unwrap();
    world
        .school(
            Actor::System,
            SchoolAction::EndRelationsOf { person_id: erased },
        )
        .unwrap();
    round.school = world.school.clone();
    assert_eq!(round.state.bookings[&booking].by, erased);
    assert_eq!(
        round.state.bookings[&booking].child_ids,
        BTreeSet::from([child])
    );
    assert!(round
        .run(
            Actor::Person(erased),
            MeetingAction::Move {
                booking_id: booking,
                slot: 2
            }
        )
        .is_err());
    round
        .run(
            Actor::Person(other),
            MeetingAction::Move {
                booking_id: booking,
                slot: 2,
            },
        )
        .unwrap();
}

#[test]
fn a_family_is_never_in_two_conversations_at_once() {
    let (world, mut round) = school_with_round(3, Per::Child);
    let (a, b) = (world.child_ids[0], world.child_ids[3]);
    let shared = world.guardians_of(a)[0];
    let mut second = open_round(&world, 3, Per::Child, vec![world.groups[1]]);
    // The second round's slots use another teacher at the same times.
    for s in second.state.slots.values_mut() {
        s.staff = BTreeSet::from([world.staff[2]]);
    }
    round.book(shared, 1, a).unwrap();
    let slot = &round.state.slots[&1];
    second.busy = vec![Busy {
        starts_at: slot.starts_at,
        ends_at: slot.ends_at,
    }];
    assert!(matches!(
        second.book(shared, 1, b),
        Err(DomainError::OverlappingBooking { slot: 1, .. })
    ));
    second.book(shared, 2, b).unwrap();
    // Within one round too: the sibling's booking overlaps only its own slot.
    let c = world.child_ids[1];
    round.book(world.guardians_of(c)[0], 2, c).unwrap();
}

#[test]
fn slots_are_generated_in_the_schools_time_zone_and_staff_must_be_staff_of_the_school() {
    let world = World::with_classes(1, 1, 1);
    let mut round = Round {
        school: world.school.clone(),
        state: MeetingRound::default(),
        log: Vec::new(),
        now: world.now,
        busy: Vec::new(),
        round_id: MeetingRoundId::generate(),
    };
    let round_id = round.round_id;
    let open = |staff: Vec<PersonId>| MeetingAction::Open {
        round_id,
        group_ids: vec![world.groups[0]],
        title: "Rapportgesprekken".into(),
        per: Per::Child,
        place: Place::Online {
            url: "https://meet.example/groep-1".into(),
        },
        book_until: world.now + Duration::days(6),
        slots: SlotPlan::Generate {
            days: vec![GenerateDay {
                date: NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(),
                from: NaiveTime::from_hms_opt(15, 0, 0).unwrap(),
                to: NaiveTime::from_hms_opt(16, 0, 0).unwrap(),
            }],
            slot_minutes: 10,
            break_minutes: 5,
            staff,
        },
    };
    assert!(matches!(
        round.run(teacher(&world, 0), open(vec![PersonId::generate()])),
        Err(DomainError::Invalid {
            field: "slots.staff",
            ..
        })
    ));
    round
        .run(teacher(&world, 0), open(vec![world.staff[1]]))
        .unwrap();
    // 15:00, 15:15, 15:30, 15:45 (ends 15:55) Amsterdam time, which is UTC+1 in November.
    let starts: Vec<String> = round
        .state
        .slots
        .values()
        .map(|s| s.starts_at.to_rfc3339())
        .collect();
    assert_eq!(
        starts,
        [
            "2026-11-03T14:00:00+00:00",
            "2026-11-03T14:15:00+00:00",
            "2026-11-03T14:30:00+00:00",
            "2026-11-03T14:45:00+00:00"
        ]
    );
}

/// A random command on the round.
#[derive(Debug, Clone)]
enum Op {
    Book {
        who: usize,
        slot: u32,
        child: usize,
    },
    Assign {
        slot: u32,
        child: usize,
    },
    Move {
        booking: usize,
        who: usize,
        slot: u32,
    },
    Cancel {
        booking: usize,
        who: usize,
    },
    Block {
        slot: u32,
    },
    AddSlot {
        minutes: i64,
    },
    Close,
    CancelRound,
    PassDeadline,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..16_usize, 1..8_u32, 0..8_usize).prop_map(|(who, slot, child)| Op::Book { who, slot, child }),
        2 => (1..8_u32, 0..8_usize).prop_map(|(slot, child)| Op::Assign { slot, child }),
        3 => (0..8_usize, 0..16_usize, 1..8_u32).prop_map(|(booking, who, slot)| Op::Move { booking, who, slot }),
        2 => (0..8_usize, 0..16_usize).prop_map(|(booking, who)| Op::Cancel { booking, who }),
        1 => (1..8_u32).prop_map(|slot| Op::Block { slot }),
        1 => (0..600_i64).prop_map(|minutes| Op::AddSlot { minutes }),
        1 => Just(Op::Close),
        1 => Just(Op::CancelRound),
        1 => Just(Op::PassDeadline),
    ]
}

/// Checks the invariants over the log alone, independently of `evolve`: every booking's slot
/// was free when it was taken, no child is in two live bookings.
fn check_log(log: &[MeetingEvent]) {
    let mut held: BTreeMap<u32, MeetingBookingId> = BTreeMap::new();
    let mut live: BTreeMap<MeetingBookingId, (u32, Vec<ChildId>)> = BTreeMap::new();
    for e in log {
        match e {
            MeetingEvent::MeetingBooked(b) => {
                assert!(!held.contains_key(&b.slot), "slot {} booked twice", b.slot);
                for c in &b.child_ids {
                    assert!(
                        !live.values().any(|(_, cs)| cs.contains(c)),
                        "child {c} booked twice"
                    );
                }
                held.insert(b.slot, b.booking_id);
                live.insert(b.booking_id, (b.slot, b.child_ids.clone()));
            }
            MeetingEvent::MeetingMoved(m) => {
                assert!(
                    !held.contains_key(&m.to_slot),
                    "slot {} booked twice",
                    m.to_slot
                );
                assert_eq!(held.remove(&m.from_slot), Some(m.booking_id));
                held.insert(m.to_slot, m.booking_id);
                live.get_mut(&m.booking_id).unwrap().0 = m.to_slot;
            }
            MeetingEvent::MeetingBookingCancelled(c) => {
                let (slot, _) = live.remove(&c.booking_id).unwrap();
                held.remove(&slot);
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_slots_single_and_children_single_and_replay_to_the_state(
        per in prop_oneof![Just(Per::Child), Just(Per::Family)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let (world, mut round) = school_with_round(7, per);
        let guardians: Vec<PersonId> = world.child_ids.iter().flat_map(|c| world.guardians_of(*c)).collect();
        let mut bookings: Vec<MeetingBookingId> = Vec::new();
        let staff = teacher(&world, 0);
        for op in &ops {
            let actor = |who: usize| if who >= guardians.len() { staff } else { Actor::Person(guardians[who]) };
            let before = round.state.clone();
            let result = match op.clone() {
                Op::Book { who, slot, child } => {
                    let booking_id = MeetingBookingId::generate();
                    let r = round.run(actor(who), MeetingAction::Book { booking_id, slot, child_id: world.child_ids[child % world.child_ids.len()] });
                    if r.is_ok() { bookings.push(booking_id); }
                    r
                }
                Op::Assign { slot, child } => {
                    let booking_id = MeetingBookingId::generate();
                    let r = round.run(staff, MeetingAction::Book { booking_id, slot, child_id: world.child_ids[child % world.child_ids.len()] });
                    if r.is_ok() { bookings.push(booking_id); }
                    r
                }
                Op::Move { booking, who, slot } => match bookings.get(booking) {
                    Some(b) => round.run(actor(who), MeetingAction::Move { booking_id: *b, slot }),
                    None => Ok(()),
                },
                Op::Cancel { booking, who } => match bookings.get(booking) {
                    Some(b) => round.run(actor(who), MeetingAction::CancelBooking { booking_id: *b }),
                    None => Ok(()),
                },
                Op::Block { slot } => round.run(staff, MeetingAction::BlockSlot { slot }),
                Op::AddSlot { minutes } => {
                    let start = world.now + Duration::days(8) + Duration::minutes(minutes);
                    round.run(staff, MeetingAction::AddSlot(SlotRequest { starts_at: start, ends_at: start + Duration::minutes(10), staff: vec![world.staff[1]] }))
                }
                Op::Close => round.run(staff, MeetingAction::Close),
                Op::CancelRound => round.run(staff, MeetingAction::Cancel),
                Op::PassDeadline => { round.now += Duration::days(6); Ok(()) }
            };
            if result.is_err() {
                // A refusal changes nothing.
                prop_assert_eq!(&round.state, &before);
            }
            // The state is what its events fold to.
            let events: Vec<Event> = round.log.iter().cloned().map(Event::from).collect();
            prop_assert_eq!(&MeetingRound::fold(&events), &round.state);
            // Every slot's booking and every booking's slot agree.
            for (id, b) in &round.state.bookings {
                prop_assert_eq!(round.state.slots[&b.slot].booking, Some(*id));
            }
            let held = round.state.slots.values().filter(|s| s.booking.is_some()).count();
            prop_assert_eq!(held, round.state.bookings.len());
            let mut children = BTreeSet::new();
            for b in round.state.bookings.values() {
                for c in &b.child_ids {
                    prop_assert!(children.insert(*c), "child {} in two bookings", c);
                }
            }
        }
        check_log(&round.log);
    }
}
