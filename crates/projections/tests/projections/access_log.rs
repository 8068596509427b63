//! The access log read model: who read whose data, when and why, in log order.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::Harness;
use kring_domain::access::{AccessReason, Subject};
use kring_domain::post::{PostAction, RemovalGrounds};
use kring_domain::simulation::World;
use kring_domain::{Actor, PersonId, PostId};
use kring_projections::models::access_log::{self, access_log, AccessEntry};
use kring_store::EventStore;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(access_log::AccessLogProjection)]), postgres: |_| common::postgres(vec![Arc::new(access_log::AccessLogProjection)]);
    access_log_lists_reads_per_subject_in_order,
    access_log_pages_after_a_position,
    access_log_is_rebuilt_identically,
    removals_are_listed_by_their_remover,
);

/// A class with reads by support (the operator) and a compliance officer (the director, here):
/// returns the world, the compliance officer, the child and a guardian.
fn reads() -> (World, PersonId, Subject, Subject) {
    let mut world = World::with_classes(1, 1, 1);
    let officer = world.director;
    let child = Subject::Child(world.child_ids[0]);
    let guardian = Subject::Person(world.guardians_of(world.child_ids[0])[0]);
    world.advance(chrono::Duration::minutes(10));
    world
        .log_access(Actor::Operator, child, AccessReason::ReadConsents)
        .unwrap();
    world.advance(chrono::Duration::minutes(10));
    world
        .log_access(Actor::Person(officer), guardian, AccessReason::NotKept)
        .unwrap();
    world.advance(chrono::Duration::minutes(10));
    world
        .log_access(
            Actor::Person(officer),
            child,
            AccessReason::ReadConsentHistory,
        )
        .unwrap();
    // The system reading its own data is not an access by a person: never recorded.
    assert!(world
        .log_access(Actor::System, child, AccessReason::ReadConsents)
        .is_err());
    (world, officer, child, guardian)
}

fn summary(entries: &[AccessEntry]) -> Vec<(Subject, Actor, &str)> {
    entries
        .iter()
        .map(|e| (e.subject, e.accessor, e.reason.as_str()))
        .collect()
}

async fn access_log_lists_reads_per_subject_in_order<S: EventStore + Clone>(mut h: Harness<S>) {
    let (world, officer, child, guardian) = reads();
    h.sync(&world).await;

    let all = access_log(&h.db, None, 100, 0).await.unwrap();
    assert_eq!(
        summary(&all),
        vec![
            (
                child,
                Actor::Operator,
                "GET /v1/children/{child_id}/consents"
            ),
            (guardian, Actor::Person(officer), "[not kept]"),
            (
                child,
                Actor::Person(officer),
                "GET /v1/children/{child_id}/consents/history"
            ),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert!(all.windows(2).all(|w| w[0].at < w[1].at));
    let start = world.log[0].at;
    assert_eq!(
        all.iter().map(|e| e.at).collect::<Vec<_>>(),
        [10, 20, 30].map(|m| start + chrono::Duration::minutes(m))
    );
    let event_ids: std::collections::BTreeSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(event_ids.len(), 3);

    let of_child = access_log(&h.db, Some(child), 100, 0).await.unwrap();
    assert_eq!(of_child, vec![all[0].clone(), all[2].clone()]);
    let of_guardian = access_log(&h.db, Some(guardian), 100, 0).await.unwrap();
    assert_eq!(of_guardian, vec![all[1].clone()]);
    // Another kind of subject with the same id is another subject.
    let Subject::Child(child_id) = child else {
        unreachable!()
    };
    assert!(access_log(
        &h.db,
        Some(Subject::Post(PostId::from_uuid(child_id.as_uuid()))),
        100,
        0
    )
    .await
    .unwrap()
    .is_empty());
}

async fn access_log_pages_after_a_position<S: EventStore + Clone>(mut h: Harness<S>) {
    let (world, _, child, _) = reads();
    h.sync(&world).await;
    let all = access_log(&h.db, None, 100, 0).await.unwrap();

    let first = access_log(&h.db, None, 2, 0).await.unwrap();
    assert_eq!(first, all[..2]);
    let next = access_log(&h.db, None, 2, first[1].position).await.unwrap();
    assert_eq!(next, all[2..]);
    assert!(access_log(&h.db, None, 2, next[0].position)
        .await
        .unwrap()
        .is_empty());

    let child_first = access_log(&h.db, Some(child), 1, 0).await.unwrap();
    assert_eq!(child_first, all[..1]);
    let child_next = access_log(&h.db, Some(child), 1, child_first[0].position)
        .await
        .unwrap();
    assert_eq!(child_next, all[2..]);
    assert!(access_log(&h.db, None, 0, 0).await.unwrap().is_empty());
}

async fn access_log_is_rebuilt_identically<S: EventStore + Clone>(mut h: Harness<S>) {
    let (mut world, _, child, _) = reads();
    h.sync(&world).await;
    let before = access_log(&h.db, None, 100, 0).await.unwrap();
    h.projector.rebuild(&[]).await.unwrap();
    assert_eq!(access_log(&h.db, None, 100, 0).await.unwrap(), before);
    world
        .log_access(Actor::Operator, child, AccessReason::ReadConsentHistory)
        .unwrap();
    h.sync(&world).await;
    let after = access_log(&h.db, Some(child), 100, 0).await.unwrap();
    assert_eq!(after.len(), 3);
    assert_eq!(
        after[2].reason,
        "GET /v1/children/{child_id}/consents/history"
    );
}

/// The removals a person made are found by remover (for their export); the operator's and the
/// system's, which carry no personal text, are not listed.
async fn removals_are_listed_by_their_remover<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 1, 1);
    let teacher = world.staff[1];
    let group = world.groups[0];
    let (first, media) = world
        .publish(Actor::Person(teacher), group, &[vec![], vec![]])
        .unwrap();
    let (second, _) = world
        .publish(Actor::Person(teacher), group, &[vec![]])
        .unwrap();
    let (third, _) = world
        .publish(Actor::Person(teacher), group, &[vec![]])
        .unwrap();
    for (actor, post, action) in [
        (
            Actor::Person(teacher),
            first,
            PostAction::RemoveMedia {
                media_id: media[0],
                reason: "Onscherp".into(),
            },
        ),
        (
            Actor::Person(world.director),
            second,
            PostAction::Remove {
                reason: "Verkeerde groep".into(),
            },
        ),
        (
            Actor::Person(teacher),
            first,
            PostAction::Remove {
                reason: "Dubbel".into(),
            },
        ),
        (
            Actor::Operator,
            third,
            PostAction::Remove {
                reason: RemovalGrounds::ByTheOperator,
            },
        ),
    ] {
        world.post(actor, post, action).unwrap();
    }
    h.sync(&world).await;
    let db = &h.db;
    assert_eq!(
        access_log::posts_with_removals_by(db, teacher)
            .await
            .unwrap(),
        vec![first]
    );
    assert_eq!(
        access_log::posts_with_removals_by(db, world.director)
            .await
            .unwrap(),
        vec![second]
    );
    assert!(access_log::posts_with_removals_by(db, PersonId::generate())
        .await
        .unwrap()
        .is_empty());
}
