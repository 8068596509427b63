//! The absences read model: the staff's day list per group, a child's absences, sealed reasons.

#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::NaiveDate;
use common::Harness;
use kring_domain::access::Subject;
use kring_domain::child::ChildAction;
use kring_domain::school::SchoolAction;
use kring_domain::simulation::{date, World};
use kring_domain::{AbsenceId, Actor, ChildId, GroupId, PersonId};
use kring_projections::models::absences::{self, absences_of_child, absences_on};
use kring_store::EventStore;
use sqlx::Row;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(absences::AbsencesProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(absences::AbsencesProjection::default())]);
    absences_on_a_day_exclude_cancelled_and_other_days,
    absences_of_a_child_include_cancelled_ones_by_first_day,
    absence_reasons_rest_sealed_and_are_erased_with_the_child,
    upcoming_absences_follow_a_moved_child_and_leave_with_an_unenrolled_one,
);

fn report(
    world: &mut World,
    by: PersonId,
    child: ChildId,
    from: NaiveDate,
    to: NaiveDate,
    reason: &str,
) -> AbsenceId {
    let absence_id = AbsenceId::from_uuid(world.next_uuid());
    let action = ChildAction::ReportAbsence {
        child_id: child,
        absence_id,
        from,
        to,
        reason: reason.into(),
    };
    world.child(Actor::Person(by), child, action).unwrap();
    absence_id
}

fn cancel(world: &mut World, by: PersonId, child: ChildId, absence_id: AbsenceId) {
    world
        .child(
            Actor::Person(by),
            child,
            ChildAction::CancelAbsence {
                child_id: child,
                absence_id,
            },
        )
        .unwrap();
}

async fn on<S>(h: &Harness<S>, group: GroupId, day: NaiveDate) -> Vec<AbsenceId> {
    absences_on(&h.db, group, day)
        .await
        .unwrap()
        .iter()
        .map(|a| a.absence_id)
        .collect()
}

/// A school with two classes of two children, one guardian each, and planned absences,
/// reported on Tuesday 2026-09-01.
struct Fixture {
    world: World,
    g1: GroupId,
    g2: GroupId,
    c1: ChildId,
    c2: ChildId,
    c3: ChildId,
    wedding: AbsenceId,
    dentist_cancelled: AbsenceId,
    other_class: AbsenceId,
    funeral: AbsenceId,
    dentist: AbsenceId,
}

fn fixture() -> Fixture {
    let mut world = World::with_classes(2, 2, 1);
    let (g1, g2) = (world.groups[0], world.groups[1]);
    let (c1, c2, c3) = (world.child_ids[0], world.child_ids[1], world.child_ids[2]);
    let [p1, p2, p3] = [c1, c2, c3].map(|c| world.guardians_of(c)[0]);
    let wedding = report(
        &mut world,
        p1,
        c1,
        date(2026, 9, 3),
        date(2026, 9, 4),
        "Bruiloft",
    );
    let dentist_cancelled = report(
        &mut world,
        p2,
        c2,
        date(2026, 9, 3),
        date(2026, 9, 3),
        "Tandarts",
    );
    let other_class = report(
        &mut world,
        p3,
        c3,
        date(2026, 9, 3),
        date(2026, 9, 3),
        "Familiebezoek",
    );
    let funeral = report(
        &mut world,
        p1,
        c1,
        date(2026, 9, 10),
        date(2026, 9, 10),
        "Begrafenis",
    );
    world.advance(chrono::Duration::minutes(5));
    cancel(&mut world, p2, c2, dentist_cancelled);
    let dentist = report(
        &mut world,
        p2,
        c2,
        date(2026, 9, 4),
        date(2026, 9, 4),
        "Tandarts",
    );
    Fixture {
        world,
        g1,
        g2,
        c1,
        c2,
        c3,
        wedding,
        dentist_cancelled,
        other_class,
        funeral,
        dentist,
    }
}

async fn absences_on_a_day_exclude_cancelled_and_other_days<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let f = fixture();
    h.sync(&f.world).await;
    assert_eq!(on(&h, f.g1, date(2026, 9, 2)).await, vec![]);
    assert_eq!(
        on(&h, f.g1, date(2026, 9, 3)).await,
        vec![f.wedding],
        "not the cancelled one, not the other class"
    );
    assert_eq!(
        on(&h, f.g1, date(2026, 9, 4)).await,
        vec![f.wedding, f.dentist],
        "the last day counts; by child"
    );
    assert_eq!(on(&h, f.g1, date(2026, 9, 5)).await, vec![]);
    assert_eq!(on(&h, f.g1, date(2026, 9, 10)).await, vec![f.funeral]);
    assert_eq!(on(&h, f.g2, date(2026, 9, 3)).await, vec![f.other_class]);

    let day = absences_on(&h.db, f.g1, date(2026, 9, 3)).await.unwrap();
    let wedding = &day[0];
    assert_eq!(
        (wedding.child_id, wedding.group_id, wedding.school_id),
        (f.c1, f.g1, f.world.school_id)
    );
    assert_eq!(
        (wedding.from, wedding.to, wedding.cancelled),
        (date(2026, 9, 3), date(2026, 9, 4), false)
    );
    assert_eq!(wedding.reported_by, f.world.guardians_of(f.c1)[0]);
    assert_eq!(
        h.vault.open_text(&wedding.reason).await.unwrap(),
        "Bruiloft"
    );
}

async fn absences_of_a_child_include_cancelled_ones_by_first_day<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let f = fixture();
    h.sync(&f.world).await;
    let of_c2 = absences_of_child(&h.db, f.c2).await.unwrap();
    let got: Vec<(AbsenceId, bool)> = of_c2.iter().map(|a| (a.absence_id, a.cancelled)).collect();
    assert_eq!(got, vec![(f.dentist_cancelled, true), (f.dentist, false)]);
    let parent = f.world.guardians_of(f.c2)[0];
    assert_eq!(
        (of_c2[0].cancelled_by, of_c2[0].cancelled_at),
        (Some(parent), Some(f.world.now))
    );
    assert_eq!((of_c2[1].cancelled_by, of_c2[1].cancelled_at), (None, None));
    for c in [f.c1, f.c2, f.c3] {
        let listed: Vec<(AbsenceId, NaiveDate, NaiveDate, bool)> = absences_of_child(&h.db, c)
            .await
            .unwrap()
            .iter()
            .map(|a| (a.absence_id, a.from, a.to, a.cancelled))
            .collect();
        let mut expected: Vec<(AbsenceId, NaiveDate, NaiveDate, bool)> = f.world.children[&c]
            .absences
            .iter()
            .map(|(id, a)| (*id, a.from, a.to, a.cancelled))
            .collect();
        expected.sort_by_key(|(id, from, _, _)| (*from, *id));
        assert_eq!(listed, expected, "as the child's own state has them");
    }
    assert!(absences_of_child(&h.db, ChildId::generate())
        .await
        .unwrap()
        .is_empty());
}

async fn absence_reasons_rest_sealed_and_are_erased_with_the_child<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let f = fixture();
    h.sync(&f.world).await;
    let stored: Vec<String> = sqlx::query("SELECT reason FROM absences")
        .fetch_all(h.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 5);
    for reason in &stored {
        common::assert_sealed_at_rest(
            reason,
            &["Bruiloft", "Tandarts", "Familiebezoek", "Begrafenis"],
        );
    }
    h.vault.erase(Subject::Child(f.c1)).await.unwrap();
    let mut reasons = Vec::new();
    for a in absences_on(&h.db, f.g1, date(2026, 9, 4)).await.unwrap() {
        reasons.push((a.child_id, h.vault.open_text(&a.reason).await.unwrap()));
    }
    assert_eq!(
        reasons,
        vec![(f.c1, "[erased]".to_owned()), (f.c2, "Tandarts".to_owned())]
    );
}

async fn upcoming_absences_follow_a_moved_child_and_leave_with_an_unenrolled_one<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut f = fixture();
    let director = Actor::Person(f.world.director);
    // On Saturday 5 September the child moves: the wedding (3–4 September) is history, the
    // funeral (10 September) moves along.
    f.world.advance(chrono::Duration::days(4));
    f.world
        .school(
            director,
            SchoolAction::MoveChild {
                child_id: f.c1,
                to_group_id: f.g2,
            },
        )
        .unwrap();
    let p3 = f.world.guardians_of(f.c3)[0];
    let later = report(
        &mut f.world,
        p3,
        f.c3,
        date(2026, 9, 20),
        date(2026, 9, 21),
        "Vakantie",
    );
    h.sync(&f.world).await;
    assert_eq!(
        on(&h, f.g1, date(2026, 9, 3)).await,
        vec![f.wedding],
        "the past stays where it happened"
    );
    assert_eq!(on(&h, f.g1, date(2026, 9, 10)).await, vec![]);
    assert_eq!(on(&h, f.g2, date(2026, 9, 10)).await, vec![f.funeral]);
    assert_eq!(on(&h, f.g2, date(2026, 9, 20)).await, vec![later]);

    f.world
        .school(director, SchoolAction::UnenrollChild { child_id: f.c3 })
        .unwrap();
    h.sync(&f.world).await;
    assert_eq!(
        on(&h, f.g2, date(2026, 9, 20)).await,
        vec![],
        "the child left the school"
    );
    assert_eq!(
        on(&h, f.g2, date(2026, 9, 3)).await,
        vec![f.other_class],
        "what already happened stays"
    );
}
