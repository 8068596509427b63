//! The consent read models: current consent and the audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::Harness;
use kring_domain::simulation::World;
use kring_domain::{Actor, Purpose};
use kring_projections::models::consent::{self, consent_history, current_consent};
use kring_store::EventStore;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(consent::ConsentProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(consent::ConsentProjection::default())]);
    consent_history_lists_every_decision_in_order_with_the_effective_value_after_it,
    current_consent_shows_each_guardians_latest_decision,
    a_projection_that_cannot_handle_an_event_stops_there_and_names_it,
    rebuild_from_zero_gives_the_same_read_model_and_switches_atomically,
);

async fn consent_history_lists_every_decision_in_order_with_the_effective_value_after_it<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 2, 2);
    let child = world.child_ids[0];
    let [mum, dad] = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
    for (guardian, purpose, granted) in [
        (mum, Purpose::GroupCommunication, true),
        (dad, Purpose::GroupCommunication, false),
        (dad, Purpose::GroupCommunication, true),
        (mum, Purpose::PublicCommunication, true),
    ] {
        world.advance(chrono::Duration::hours(1));
        world
            .decide_consent(guardian, child, purpose, granted)
            .unwrap();
    }
    h.sync(&world).await;
    let all = consent_history(&h.db, child, None, None, None)
        .await
        .unwrap();
    let got: Vec<(Purpose, bool, kring_domain::PersonId, bool)> = all
        .iter()
        .map(|e| (e.purpose, e.granted, e.guardian_id, e.effective_after))
        .collect();
    assert_eq!(
        got,
        vec![
            (Purpose::GroupCommunication, true, mum, true),
            (Purpose::GroupCommunication, false, dad, false),
            (Purpose::GroupCommunication, true, dad, true),
            (Purpose::PublicCommunication, true, mum, true),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert!(all
        .iter()
        .all(|e| e.policy_version == 1
            && e.recorded_at >= e.occurred_at - chrono::Duration::seconds(1)));
    let group_only = consent_history(&h.db, child, Some(Purpose::GroupCommunication), None, None)
        .await
        .unwrap();
    assert_eq!(group_only.len(), 3);
    let before_last = consent_history(&h.db, child, None, None, Some(all[3].occurred_at))
        .await
        .unwrap();
    assert_eq!(before_last.len(), 3, "the period's end is exclusive");
    assert!(consent_history(&h.db, world.child_ids[1], None, None, None)
        .await
        .unwrap()
        .is_empty());
}

async fn current_consent_shows_each_guardians_latest_decision<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 1, 2);
    let child = world.child_ids[0];
    let [mum, dad] = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
    world
        .decide_consent(mum, child, Purpose::GroupCommunication, true)
        .unwrap();
    world
        .decide_consent(dad, child, Purpose::GroupCommunication, true)
        .unwrap();
    world
        .decide_consent(dad, child, Purpose::GroupCommunication, false)
        .unwrap();
    h.sync(&world).await;
    let current = current_consent(&h.db, child).await.unwrap();
    assert_eq!(current.len(), Purpose::ALL.len());
    let group = current
        .iter()
        .find(|c| c.purpose == Purpose::GroupCommunication)
        .unwrap();
    assert!(!group.effective, "dad's latest decision is a withdrawal");
    assert_eq!(group.decisions.len(), 2);
    assert!(group
        .decisions
        .iter()
        .any(|d| d.guardian_id == dad && !d.granted));
    assert!(current
        .iter()
        .filter(|c| c.purpose != Purpose::GroupCommunication)
        .all(|c| !c.effective && c.decisions.is_empty()));
    world
        .decide_consent(dad, child, Purpose::GroupCommunication, true)
        .unwrap();
    h.sync(&world).await;
    assert!(
        consent::is_effective(&h.db, child, Purpose::GroupCommunication)
            .await
            .unwrap()
    );
}

async fn a_projection_that_cannot_handle_an_event_stops_there_and_names_it<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 1, 1);
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
    h.sync(&world).await;
    let before = h.projector.board().all()[0].position;
    // An event this build cannot decode (written by a newer Kring, say).
    let meta = kring_store::Metadata {
        occurred_at: world.now,
        actor: Actor::System,
        correlation_id: uuid::Uuid::now_v7(),
        causation_id: None,
    };
    let bad = kring_store::NewEvent::new("ConsentDecided", 99, &serde_json::json!({}), meta);
    let stream = kring_domain::StreamName::child(child);
    let outcome = h
        .store
        .append(&stream, kring_store::ExpectedVersion::Any, vec![bad])
        .await
        .unwrap();
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, false)
        .unwrap();
    h.write(&world).await;
    h.projector.catch_up().await.unwrap();
    let status = &h.projector.board().all()[0];
    let failure = status
        .failure
        .clone()
        .expect("the projection reports its failure");
    assert!(
        failure.contains(&outcome.position.to_string())
            && failure.contains("ConsentDecided")
            && failure.contains(&stream.to_string()),
        "{failure}"
    );
    assert_eq!(
        status.position,
        outcome.position - 1,
        "stopped before the event, did not advance past it"
    );
    assert!(status.position >= before);
    assert_eq!(
        consent_history(&h.db, child, None, None, None)
            .await
            .unwrap()
            .len(),
        1,
        "nothing after the failing event"
    );
}

async fn rebuild_from_zero_gives_the_same_read_model_and_switches_atomically<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 3, 2);
    for (i, child) in world.child_ids.clone().into_iter().enumerate() {
        let guardian = world.guardians_of(child)[i % 2];
        world
            .decide_consent(guardian, child, Purpose::ALL[i % 7], i % 3 != 0)
            .unwrap();
    }
    h.sync(&world).await;
    let child = world.child_ids[0];
    let before = consent_history(&h.db, child, None, None, None)
        .await
        .unwrap();
    let generation = h.projector.board().all()[0].generation;
    let read = h.projector.rebuild(&[]).await.unwrap();
    assert_eq!(read, world.log.len() as u64);
    let after = consent_history(&h.db, child, None, None, None)
        .await
        .unwrap();
    assert_eq!(before, after);
    let status = &h.projector.board().all()[0];
    assert_eq!(status.generation, generation + 1);
    for c in &world.child_ids {
        assert_eq!(
            current_consent(&h.db, *c)
                .await
                .unwrap()
                .iter()
                .filter(|p| p.effective)
                .count(),
            world.children.get(c).map_or(0, |s| Purpose::ALL
                .iter()
                .filter(|p| world.school.consent_holds(&s.consents, **p))
                .count())
        );
    }
    // Live processing continues on the new generation.
    let guardian = world.guardians_of(child)[0];
    world
        .decide_consent(guardian, child, Purpose::InternalResearch, true)
        .unwrap();
    h.sync(&world).await;
    assert_eq!(
        consent_history(&h.db, child, None, None, None)
            .await
            .unwrap()
            .len(),
        before.len() + 1
    );
    assert!(matches!(
        h.projector.rebuild(&["nope"]).await,
        Err(kring_projections::ProjectionError::UnknownProjection(_))
    ));
}
