//! Every read model projects, and rebuilds from, events of an older schema version: removals and
//! access-log entries written when their reasons were plain text.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::Harness;
use kring_domain::access::Subject;
use kring_domain::simulation::World;
use kring_domain::{Actor, StreamName};
use kring_projections::models::{self, access_log, visibility};
use kring_store::{EventStore, ExpectedVersion, Metadata, NewEvent};
use serde_json::{json, Value};

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(models::all()), postgres: |_| common::postgres(models::all());
    removals_and_reads_with_plain_reasons_of_schema_version_1_project_and_rebuild,
);

async fn removals_and_reads_with_plain_reasons_of_schema_version_1_project_and_rebuild<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 1, 1);
    let teacher = world.staff[1];
    let group = world.groups[0];
    let (post, media) = world
        .publish(Actor::Person(teacher), group, &[vec![], vec![]])
        .unwrap();
    let (other, _) = world
        .publish(Actor::Person(teacher), group, &[vec![]])
        .unwrap();
    h.sync(&world).await;
    assert!(visibility::post(&h.db, post, None).await.unwrap().is_some());

    // As builds of schema version 1 wrote them: every reason in plain text.
    let v1 = |event_type: &str, payload: Value, actor: Actor| {
        NewEvent::new(event_type, 1, &payload, Metadata::new(world.now, actor))
    };
    let by_teacher = json!({"kind": "person", "person_id": teacher});
    h.store
        .append(
            &StreamName::post(post),
            ExpectedVersion::Any,
            vec![
                v1(
                    "MediaRemoved",
                    json!({"post_id": post, "media_id": media[0],
                        "reason": "Sam's ouders vroegen het", "by": by_teacher}),
                    Actor::Person(teacher),
                ),
                v1(
                    "PostRemoved",
                    json!({"post_id": post, "reason": "Dubbel", "by": by_teacher}),
                    Actor::Person(teacher),
                ),
            ],
        )
        .await
        .unwrap();
    h.store
        .append(
            &StreamName::post(other),
            ExpectedVersion::Any,
            vec![v1(
                "PostRemoved",
                json!({"post_id": other, "reason": "Juridisch verzoek over Sam",
                    "by": {"kind": "operator"}}),
                Actor::Operator,
            )],
        )
        .await
        .unwrap();
    h.store
        .append(
            &StreamName::access(post.as_uuid()),
            ExpectedVersion::Any,
            vec![
                v1(
                    "AccessLogged",
                    json!({"subject": {"kind": "post", "id": post}, "accessor": {"kind": "operator"},
                        "reason": format!("GET /v1/posts/{post}"), "at": world.now}),
                    Actor::Operator,
                ),
                v1(
                    "AccessLogged",
                    json!({"subject": {"kind": "post", "id": post}, "accessor": {"kind": "operator"},
                        "reason": "ticket about Sam", "at": world.now}),
                    Actor::Operator,
                ),
            ],
        )
        .await
        .unwrap();

    let expect = |h: &Harness<S>| {
        let db = h.db.clone();
        async move {
            assert!(visibility::post(&db, post, None).await.unwrap().is_none());
            assert!(visibility::post(&db, other, None).await.unwrap().is_none());
            assert_eq!(
                access_log::posts_with_removals_by(&db, teacher)
                    .await
                    .unwrap(),
                vec![post],
                "the teacher's removals, found for their export"
            );
            let reads = access_log::access_log(&db, Some(Subject::Post(post)), 10, 0)
                .await
                .unwrap();
            assert_eq!(
                reads.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(),
                vec![format!("GET /v1/posts/{post}").as_str(), "[not kept]"],
                "a route reads as it did; other text is not kept"
            );
        }
    };
    h.projector.catch_up().await.unwrap();
    expect(&h).await;
    h.projector.rebuild(&[]).await.unwrap();
    expect(&h).await;
}
