//! The outbox's retention window: a notification stays while its release time is at most
//! `RETENTION_DAYS` before the newest event the read model has applied (the log's time, never
//! the clock). A reminder for later outlives the window until it has been released that long;
//! the live projection, batch by batch, and a rebuild from zero (which leaves out what is out of
//! the window at the log's head instead of writing it) keep exactly the same notifications, with
//! their deliveries.

#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::Harness;
use kring_domain::activity::ActivityAction;
use kring_domain::post::PostAction;
use kring_domain::simulation::workload::{Workload, WorkloadConfig};
use kring_domain::simulation::World;
use kring_domain::{ActivityId, Actor, GroupId, PersonId, PostId};
use kring_projections::models::outbox::{
    self, ensure_delivery_table, kept_since, mark_delivered, notification, retention,
    undelivered_of, Notification, NotificationId, NotificationKind, RETENTION_DAYS,
};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(outbox::OutboxProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(outbox::OutboxProjection::default())]);
    a_notification_older_than_the_window_at_the_logs_head_is_gone_from_the_list,
    a_pending_reminder_outlives_the_window_until_it_was_released_that_long,
    a_rebuild_keeps_exactly_the_notifications_live_projection_keeps,
);

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// One class of two children with one guardian each; its teacher.
fn class() -> (World, PersonId, GroupId, Vec<PersonId>) {
    let world = World::with_classes(1, 2, 1);
    let (teacher, group) = (world.staff[1], world.groups[0]);
    let guardians = world
        .child_ids
        .iter()
        .flat_map(|c| world.guardians_of(*c))
        .collect();
    (world, teacher, group, guardians)
}

fn post(world: &mut World, by: PersonId, group: GroupId) -> PostId {
    let post_id = PostId::from_uuid(world.next_uuid());
    world
        .post(
            Actor::Person(by),
            post_id,
            PostAction::Publish {
                post_id,
                group_id: group,
                body: "Nieuws".into(),
                media: Vec::new(),
            },
        )
        .unwrap();
    post_id
}

async fn listed<S: EventStore + Clone>(h: &Harness<S>, person: PersonId) -> Vec<Notification> {
    undelivered_of(&h.db, person, 1000).await.unwrap()
}

fn posts(list: &[Notification]) -> Vec<PostId> {
    list.iter().filter_map(|n| n.post_id).collect()
}

async fn a_notification_older_than_the_window_at_the_logs_head_is_gone_from_the_list<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let (mut world, teacher, group, guardians) = class();
    let ga = guardians[0];
    let first = post(&mut world, teacher, group);
    let first_at = world.now;
    world.advance(Duration::days(10));
    let second = post(&mut world, teacher, group);
    h.sync(&world).await;
    ensure_delivery_table(&h.db).await.unwrap();
    assert_eq!(posts(&listed(&h, ga).await), vec![first, second]);

    // The log's newest event exactly the window after the first post: it is still kept.
    world.advance(first_at + retention() - world.now);
    let third = post(&mut world, teacher, group);
    h.sync(&world).await;
    assert_eq!(kept_since(&h.db).await.unwrap(), Some(first_at));
    assert_eq!(posts(&listed(&h, ga).await), vec![first, second, third]);

    // One second more in the log (whatever the wall clock says): gone, for every guardian,
    // and not to be found by its id either.
    world.advance(Duration::seconds(1));
    let fourth = post(&mut world, teacher, group);
    h.sync(&world).await;
    for guardian in &guardians {
        assert_eq!(
            posts(&listed(&h, *guardian).await),
            vec![second, third, fourth]
        );
    }
    let gone = NotificationId {
        about: first.as_uuid(),
        recipient_id: ga,
    };
    assert_eq!(notification(&h.db, gone).await.unwrap(), None);
    assert_eq!(
        kept_since(&h.db).await.unwrap(),
        Some(first_at + Duration::seconds(1))
    );
    // The same list after a rebuild from the same log.
    let before = listed(&h, ga).await;
    h.projector.rebuild(&[]).await.unwrap();
    assert_eq!(listed(&h, ga).await, before);
}

async fn a_pending_reminder_outlives_the_window_until_it_was_released_that_long<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let (mut world, teacher, group, guardians) = class();
    let ga = guardians[0];
    // 2026-09-01: an outing on 2026-11-20, far beyond the window; a guardian volunteers.
    world.advance(t("2026-09-01T08:00:00Z") - world.now);
    let activity = ActivityId::from_uuid(world.next_uuid());
    world
        .activity(
            Actor::Person(teacher),
            activity,
            ActivityAction::Schedule {
                activity_id: activity,
                group_id: group,
                title: "Bos".into(),
                starts_at: t("2026-11-20T08:00:00Z"),
                ends_at: t("2026-11-20T12:00:00Z"),
                volunteer_slots: 2,
            },
        )
        .unwrap();
    world
        .activity(Actor::Person(ga), activity, ActivityAction::SignUp)
        .unwrap();
    let kinds = |list: &[Notification]| -> Vec<NotificationKind> {
        list.iter()
            .filter(|n| n.activity_id == Some(activity))
            .map(|n| n.kind)
            .collect()
    };
    h.sync(&world).await;
    ensure_delivery_table(&h.db).await.unwrap();
    assert_eq!(
        kinds(&listed(&h, ga).await),
        vec![
            NotificationKind::ActivityCreated,
            NotificationKind::ActivityReminder
        ]
    );
    // Two months on in the log: the announcement is out of the window, the reminder (released
    // on 2026-11-19 at 18:00 in Amsterdam) is not.
    world.advance(t("2026-11-01T08:00:00Z") - world.now);
    post(&mut world, teacher, group);
    h.sync(&world).await;
    let list = listed(&h, ga).await;
    assert_eq!(kinds(&list), vec![NotificationKind::ActivityReminder]);
    let released = list
        .iter()
        .find(|n| n.kind == NotificationKind::ActivityReminder)
        .unwrap()
        .release_at;
    assert_eq!(released, t("2026-11-19T17:00:00Z"));
    // Kept while released at most the window ago; gone one second later in the log.
    world.advance(released + retention() - world.now);
    post(&mut world, teacher, group);
    h.sync(&world).await;
    assert_eq!(
        kinds(&listed(&h, ga).await),
        vec![NotificationKind::ActivityReminder]
    );
    world.advance(Duration::seconds(1));
    post(&mut world, teacher, group);
    h.sync(&world).await;
    assert!(kinds(&listed(&h, ga).await).is_empty());
}

/// Every notification in the outbox, delivered or not, by id.
async fn everything<S: EventStore + Clone>(h: &Harness<S>) -> Vec<Notification> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT notification_id FROM outbox_notifications ORDER BY 1")
            .fetch_all(h.db.pool())
            .await
            .unwrap();
    let mut all = Vec::new();
    for id in ids {
        all.push(
            notification(&h.db, id.parse().unwrap())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    all
}

/// A log of school years at a quick pace: three schools side by side, each year 3,000 events
/// over about 300 days, so that 6,000 events span well over the window (posts, conversations,
/// absences, activities whose reminders are pending at the head).
fn long_log() -> Vec<kring_domain::simulation::Recorded> {
    Workload::new(WorkloadConfig {
        events: 6_000,
        events_per_school: 3_000,
        schools_at_once: 3,
        groups: 2,
        children_per_group: 5,
        chunk: 500,
        ..WorkloadConfig::school_years(6_000)
    })
    .flatten()
    .collect()
}

async fn a_rebuild_keeps_exactly_the_notifications_live_projection_keeps<S: EventStore + Clone>(
    h: Harness<S>,
) {
    let log = long_log();
    let (first, last) = (log[0].at, log[log.len() - 1].at);
    assert!(
        last - first > retention() * 3,
        "the log spans {} days",
        (last - first).num_days()
    );
    for r in &log {
        let sealed = h
            .vault
            .seal(&r.event, Metadata::new(r.at, r.actor))
            .await
            .unwrap();
        h.store
            .append(&r.stream, ExpectedVersion::Any, vec![sealed])
            .await
            .unwrap();
    }
    ensure_delivery_table(&h.db).await.unwrap();
    // Live: batches of 97 events as the log is followed, never told where the log ends; the
    // window moves on with each batch. Halfway, the oldest notification kept then, and one
    // delivery of a recent one.
    let mut position = 0;
    let mut halfway: Option<Notification> = None;
    let mut delivered = None;
    loop {
        let batch = h.store.read_all(position, 97).await.unwrap();
        let Some(end) = batch.last() else { break };
        position = end.position;
        assert!(!h.projector.apply_batch(&batch).await.unwrap());
        if halfway.is_none() && usize::try_from(position).unwrap() >= log.len() / 2 {
            let now = everything(&h).await;
            let since = kept_since(&h.db).await.unwrap().unwrap();
            assert!(now.iter().all(|n| n.release_at >= since));
            halfway = now.iter().min_by_key(|n| (n.release_at, n.id)).cloned();
            let recent = now.iter().max_by_key(|n| (n.release_at, n.id)).unwrap().id;
            mark_delivered(&h.db, &[recent], end.occurred_at)
                .await
                .unwrap();
            delivered = Some(recent);
        }
    }
    let live = everything(&h).await;
    let since = kept_since(&h.db).await.unwrap().unwrap();
    assert_eq!(since, last - Duration::days(30));
    assert_eq!(RETENTION_DAYS, 30);
    assert!(!live.is_empty());
    assert!(live.iter().all(|n| n.release_at >= since));
    // The window cut: what was oldest halfway is gone, and so is the delivered one.
    let halfway = halfway.unwrap();
    assert!(halfway.release_at < since);
    assert!(live.iter().all(|n| n.id != halfway.id));
    let delivered = delivered.unwrap();
    assert!(live.iter().all(|n| n.id != delivered));
    // Reminders for after the head are kept.
    assert!(live.iter().any(|n| n.release_at > last));
    assert!(live
        .iter()
        .any(|n| n.kind == NotificationKind::ActivityReminder));
    // A delivery inside the window, recorded now, is kept by the rebuild.
    let kept = live[live.len() / 2].id;
    mark_delivered(&h.db, &[kept], last).await.unwrap();
    let live = everything(&h).await;
    assert!(live.iter().any(|n| n.id == kept && n.delivered));

    h.projector.rebuild(&[]).await.unwrap();
    let rebuilt = everything(&h).await;
    assert_eq!(rebuilt.len(), live.len());
    assert_eq!(rebuilt, live);
    assert_eq!(kept_since(&h.db).await.unwrap(), Some(since));
}
