//! The activities read model: a group's calendar with volunteer slots taken and free.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use chrono::Duration;
use common::Harness;
use kring_domain::activity::ActivityAction;
use kring_domain::simulation::{history, play, World};
use kring_domain::{ActivityId, Actor, DomainError, GroupId, PersonId};
use kring_projections::models::activities::{self, activities_of_group, activity};
use kring_store::EventStore;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(activities::ActivitiesProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(activities::ActivitiesProjection::default())]);
    activity_shows_slots_taken_and_free,
    activities_of_a_group_are_listed_by_start_with_cancelled_ones_flagged,
    activities_match_the_domain_over_a_random_history,
);

fn schedule(
    world: &mut World,
    by: PersonId,
    group: GroupId,
    title: &str,
    starts_in: Duration,
    slots: u32,
) -> ActivityId {
    let activity_id = ActivityId::from_uuid(world.next_uuid());
    let starts_at = world.now + starts_in;
    let action = ActivityAction::Schedule {
        activity_id,
        group_id: group,
        title: title.into(),
        starts_at,
        ends_at: starts_at + Duration::hours(3),
        volunteer_slots: slots,
    };
    world
        .activity(Actor::Person(by), activity_id, action)
        .unwrap();
    activity_id
}

fn volunteer(
    world: &mut World,
    by: PersonId,
    id: ActivityId,
    sign_up: bool,
) -> Result<usize, DomainError> {
    world.activity(
        Actor::Person(by),
        id,
        if sign_up {
            ActivityAction::SignUp
        } else {
            ActivityAction::Withdraw
        },
    )
}

async fn activity_shows_slots_taken_and_free<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 3, 1);
    let teacher = world.staff[1];
    let g = world.groups[0];
    let [p1, p2, p3] = [0, 1, 2].map(|i| world.guardians_of(world.child_ids[i])[0]);
    let trip = schedule(
        &mut world,
        teacher,
        g,
        "Schoolreisje",
        Duration::days(14),
        2,
    );
    h.sync(&world).await;
    let fresh = activity(&h.db, trip).await.unwrap().unwrap();
    assert_eq!(
        (
            fresh.slots,
            fresh.taken,
            fresh.free,
            fresh.volunteers.clone()
        ),
        (2, 0, 2, vec![])
    );
    assert_eq!(
        (
            fresh.title.as_str(),
            fresh.group_id,
            fresh.scheduled_by,
            fresh.cancelled
        ),
        ("Schoolreisje", g, teacher, false)
    );
    assert_eq!(
        (fresh.starts_at, fresh.ends_at),
        (
            world.now + Duration::days(14),
            world.now + Duration::days(14) + Duration::hours(3)
        )
    );

    volunteer(&mut world, p1, trip, true).unwrap();
    volunteer(&mut world, p2, trip, true).unwrap();
    assert!(
        matches!(
            volunteer(&mut world, p3, trip, true),
            Err(DomainError::ActivityFull { .. })
        ),
        "never overbooked"
    );
    h.sync(&world).await;
    let full = activity(&h.db, trip).await.unwrap().unwrap();
    assert_eq!(
        (full.taken, full.free, full.volunteers.clone()),
        (2, 0, vec![p1, p2])
    );

    volunteer(&mut world, p1, trip, false).unwrap();
    h.sync(&world).await;
    let freed = activity(&h.db, trip).await.unwrap().unwrap();
    assert_eq!(
        (freed.taken, freed.free, freed.volunteers.clone()),
        (1, 1, vec![p2])
    );

    volunteer(&mut world, p3, trip, true).unwrap();
    volunteer(&mut world, p1, trip, false).unwrap_err();
    h.sync(&world).await;
    let again = activity(&h.db, trip).await.unwrap().unwrap();
    assert_eq!(
        (again.taken, again.free, again.volunteers.clone()),
        (2, 0, vec![p2, p3]),
        "in the order they signed up"
    );
    assert_eq!(activities_of_group(&h.db, g).await.unwrap(), vec![again]);
    assert!(activity(&h.db, ActivityId::generate())
        .await
        .unwrap()
        .is_none());
}

async fn activities_of_a_group_are_listed_by_start_with_cancelled_ones_flagged<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 1, 1);
    let [g1, g2] = [world.groups[0], world.groups[1]];
    let [teacher1, teacher2] = [world.staff[1], world.staff[2]];
    let late = schedule(
        &mut world,
        teacher1,
        g1,
        "Kerstviering",
        Duration::days(20),
        4,
    );
    let early = schedule(
        &mut world,
        teacher1,
        g1,
        "Ouderavond",
        Duration::days(10),
        0,
    );
    let elsewhere = schedule(&mut world, teacher2, g2, "Sportdag", Duration::days(5), 3);
    let (director, school_group) = (world.director, world.school_group());
    let whole_school = schedule(
        &mut world,
        director,
        school_group,
        "Open dag",
        Duration::days(30),
        10,
    );
    world.advance(Duration::hours(1));
    world
        .activity(Actor::Person(teacher1), late, ActivityAction::Cancel)
        .unwrap();
    h.sync(&world).await;

    let listed = activities_of_group(&h.db, g1).await.unwrap();
    let got: Vec<(ActivityId, bool, u32, u32)> = listed
        .iter()
        .map(|a| (a.activity_id, a.cancelled, a.slots, a.free))
        .collect();
    assert_eq!(
        got,
        vec![(early, false, 0, 0), (late, true, 4, 4)],
        "by start time; cancelled ones flagged"
    );
    assert_eq!(
        (listed[1].cancelled_at, listed[0].cancelled_at),
        (Some(world.now), None)
    );
    let ids =
        |v: Vec<activities::ActivityView>| v.into_iter().map(|a| a.activity_id).collect::<Vec<_>>();
    assert_eq!(
        ids(activities_of_group(&h.db, g2).await.unwrap()),
        vec![elsewhere]
    );
    assert_eq!(
        ids(activities_of_group(&h.db, world.school_group())
            .await
            .unwrap()),
        vec![whole_school]
    );
    assert!(activities_of_group(&h.db, GroupId::generate())
        .await
        .unwrap()
        .is_empty());
}

async fn activities_match_the_domain_over_a_random_history<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    // The first deterministic history with a few activities that people volunteered for.
    let mut runner = TestRunner::deterministic();
    let strategy = history(400);
    let world = (0..500)
        .map(|_| {
            let (groups, ops) = strategy.new_tree(&mut runner).unwrap().current();
            play(groups, &ops)
        })
        .find(|w| {
            w.activities.len() >= 3
                && w.activities
                    .values()
                    .filter(|a| !a.volunteers.is_empty())
                    .count()
                    >= 2
        })
        .expect("the deterministic runner yields such a history");
    h.sync(&world).await;
    for (id, expected) in &world.activities {
        let got = activity(&h.db, *id).await.unwrap().unwrap();
        let volunteers: std::collections::BTreeSet<PersonId> =
            got.volunteers.iter().copied().collect();
        assert_eq!(
            (Some(got.group_id), got.slots, volunteers, got.cancelled),
            (
                expected.group_id,
                expected.slots,
                expected.volunteers.clone(),
                expected.cancelled
            )
        );
        assert_eq!(got.taken + got.free, got.slots);
    }
    let mut groups = world.groups.clone();
    groups.push(world.school_group());
    let mut listed = 0;
    for g in groups {
        listed += activities_of_group(&h.db, g).await.unwrap().len();
    }
    assert_eq!(listed, world.activities.len());
}
