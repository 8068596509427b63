//! The read receipts read model: reads counted once, only of live posts and posted messages;
//! unread counts per group and conversation; reads leaving with an expired or removed post and
//! with an erased reader; the same answers after a rebuild.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::Harness;
use kring_domain::conversation::ConversationAction;
use kring_domain::person::PersonAction;
use kring_domain::post::PostAction;
use kring_domain::simulation::World;
use kring_domain::{Actor, ConversationId, MessageId, PersonId, PostId};
use kring_projections::models::reads::{self, ReadItem};
use kring_projections::models::visibility;
use kring_projections::Projection;
use kring_store::EventStore;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(visibility::VisibilityProjection::default()),
        Arc::new(reads::ReadsProjection::default()),
    ]
}

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(projections()), postgres: |_| common::postgres(projections());
    many_items_are_marked_at_once_and_a_repeated_read_changes_nothing,
    unread_counts_fall_as_posts_and_messages_are_read,
    reads_of_an_expired_or_removed_post_leave_with_it,
    an_erased_reader_leaves_no_read_behind,
    a_rebuild_gives_the_same_reads_and_counts,
);

/// A school with one class of two children, each with two guardians; the class teacher.
struct Class {
    world: World,
    teacher: PersonId,
    mum: PersonId,
    dad: PersonId,
    other: PersonId,
}

fn class() -> Class {
    let world = World::with_classes(1, 2, 2);
    let teacher = world.staff[1];
    let [c1, c2] = [world.child_ids[0], world.child_ids[1]];
    let (mum, dad) = (world.guardians_of(c1)[0], world.guardians_of(c1)[1]);
    let other = world.guardians_of(c2)[0];
    Class {
        world,
        teacher,
        mum,
        dad,
        other,
    }
}

fn publish(c: &mut Class) -> PostId {
    let group = c.world.groups[0];
    c.world
        .publish(Actor::Person(c.teacher), group, &[vec![]])
        .unwrap()
        .0
}

/// A conversation of the teacher with the first child's guardians, with `n` messages by the
/// teacher after the first.
fn conversation(c: &mut Class, n: usize) -> (ConversationId, Vec<MessageId>) {
    let conversation_id = ConversationId::from_uuid(c.world.next_uuid());
    let first = MessageId::from_uuid(c.world.next_uuid());
    let child_id = c.world.child_ids[0];
    c.world
        .conversation(
            Actor::Person(c.teacher),
            conversation_id,
            ConversationAction::Start {
                conversation_id,
                child_id,
                participants: Vec::new(),
                message_id: first,
                body: "Hallo".into(),
            },
        )
        .unwrap();
    let mut messages = vec![first];
    for _ in 0..n {
        let message_id = MessageId::from_uuid(c.world.next_uuid());
        c.world
            .conversation(
                Actor::Person(c.teacher),
                conversation_id,
                ConversationAction::Post {
                    message_id,
                    body: "Nog iets".into(),
                },
            )
            .unwrap();
        messages.push(message_id);
    }
    (conversation_id, messages)
}

fn mark(c: &mut Class, reader: PersonId, posts: &[PostId], messages: &[MessageId]) {
    c.world
        .person(
            Actor::Person(reader),
            reader,
            PersonAction::MarkRead {
                person_id: reader,
                post_ids: posts.to_vec(),
                message_ids: messages.to_vec(),
            },
        )
        .unwrap();
}

async fn unread_posts<S>(h: &Harness<S>, person: PersonId) -> Vec<u64> {
    reads::unread_posts_per_group(&h.db, person)
        .await
        .unwrap()
        .into_values()
        .collect()
}

async fn unread_in<S>(h: &Harness<S>, person: PersonId, c: ConversationId) -> u64 {
    reads::unread_messages(&h.db, person, &[c])
        .await
        .unwrap()
        .get(&c)
        .copied()
        .unwrap_or(0)
}

async fn many_items_are_marked_at_once_and_a_repeated_read_changes_nothing<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut c = class();
    let posts = [publish(&mut c), publish(&mut c), publish(&mut c)];
    let (_, messages) = conversation(&mut c, 2);
    let mum = c.mum;
    mark(&mut c, mum, &posts[..2], &messages);
    h.sync(&c.world).await;
    let mut expected: Vec<ReadItem> = posts[..2].iter().map(|p| ReadItem::Post(*p)).collect();
    expected.extend(messages.iter().map(|m| ReadItem::Message(*m)));
    expected.sort();
    assert_eq!(reads::reads_of(&h.db, mum).await.unwrap(), expected);

    // Read again, with one more: the earlier reads stay as they were, the new one is added.
    c.world.advance(chrono::Duration::hours(1));
    mark(&mut c, mum, &posts, &messages[..1]);
    // A post never published is no read of anything.
    let unknown = PostId::from_uuid(c.world.next_uuid());
    mark(&mut c, mum, &[unknown], &[]);
    h.sync(&c.world).await;
    expected.push(ReadItem::Post(posts[2]));
    expected.sort();
    assert_eq!(reads::reads_of(&h.db, mum).await.unwrap(), expected);
    for post in &posts {
        assert_eq!(
            reads::readers_of_post(&h.db, *post)
                .await
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![mum],
            "one reader, once"
        );
    }
    assert_eq!(
        reads::posts_read_by(&h.db, mum, &[posts[0], unknown])
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![posts[0]]
    );
    // Nobody else read anything.
    assert!(reads::reads_of(&h.db, c.dad).await.unwrap().is_empty());
}

async fn unread_counts_fall_as_posts_and_messages_are_read<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut c = class();
    let posts = [publish(&mut c), publish(&mut c)];
    let (conversation_id, messages) = conversation(&mut c, 2);
    h.sync(&c.world).await;
    let (mum, dad, teacher, other) = (c.mum, c.dad, c.teacher, c.other);
    assert_eq!(unread_posts(&h, mum).await, vec![2]);
    assert_eq!(unread_posts(&h, other).await, vec![2]);
    assert_eq!(
        unread_posts(&h, teacher).await,
        Vec::<u64>::new(),
        "one's own posts are not unread"
    );
    assert_eq!(unread_in(&h, mum, conversation_id).await, 3);
    assert_eq!(unread_in(&h, teacher, conversation_id).await, 0);

    mark(&mut c, mum, &posts[..1], &messages[..2]);
    h.sync(&c.world).await;
    assert_eq!(unread_posts(&h, mum).await, vec![1]);
    assert_eq!(unread_in(&h, mum, conversation_id).await, 1);
    // One guardian's reads are theirs alone.
    assert_eq!(unread_posts(&h, dad).await, vec![2]);
    assert_eq!(unread_in(&h, dad, conversation_id).await, 3);

    mark(&mut c, mum, &posts, &messages);
    // A reply by the guardian is unread for the teacher until read.
    let reply = MessageId::from_uuid(c.world.next_uuid());
    c.world
        .conversation(
            Actor::Person(mum),
            conversation_id,
            ConversationAction::Post {
                message_id: reply,
                body: "Dank je".into(),
            },
        )
        .unwrap();
    h.sync(&c.world).await;
    assert_eq!(unread_posts(&h, mum).await, Vec::<u64>::new());
    assert_eq!(unread_in(&h, mum, conversation_id).await, 0);
    assert_eq!(unread_in(&h, teacher, conversation_id).await, 1);
    let readers = reads::readers_of_messages(&h.db, &[messages[0], reply])
        .await
        .unwrap();
    assert_eq!(
        readers,
        BTreeMap::from([(messages[0], [mum].into_iter().collect())])
    );
}

async fn reads_of_an_expired_or_removed_post_leave_with_it<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut c = class();
    let old = publish(&mut c);
    c.world.advance(chrono::Duration::days(200));
    let removed = publish(&mut c);
    let kept = publish(&mut c);
    let (mum, dad) = (c.mum, c.dad);
    mark(&mut c, mum, &[old, removed, kept], &[]);
    mark(&mut c, dad, &[old], &[]);
    h.sync(&c.world).await;
    assert_eq!(reads::readers_of_post(&h.db, old).await.unwrap().len(), 2);

    // The retention period (365 days) runs out for the first post only.
    c.world.advance(chrono::Duration::days(170));
    c.world
        .post(Actor::System, old, PostAction::Expire)
        .unwrap();
    let teacher = c.teacher;
    c.world
        .post(
            Actor::Person(teacher),
            removed,
            PostAction::Remove {
                reason: "Verkeerde groep".into(),
            },
        )
        .unwrap();
    // A read recorded after the expiry (the check and the expiry racing) is not kept either.
    mark(&mut c, dad, &[old, kept], &[]);
    h.sync(&c.world).await;
    assert!(reads::readers_of_post(&h.db, old).await.unwrap().is_empty());
    assert!(reads::readers_of_post(&h.db, removed)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(reads::readers_of_post(&h.db, kept).await.unwrap().len(), 2);
    assert_eq!(
        reads::reads_of(&h.db, mum).await.unwrap(),
        vec![ReadItem::Post(kept)]
    );
}

async fn an_erased_reader_leaves_no_read_behind<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut c = class();
    let post = publish(&mut c);
    let (conversation_id, messages) = conversation(&mut c, 1);
    let (mum, dad) = (c.mum, c.dad);
    mark(&mut c, mum, &[post], &messages);
    mark(&mut c, dad, &[post], &messages[..1]);
    h.sync(&c.world).await;
    assert_eq!(reads::readers_of_post(&h.db, post).await.unwrap().len(), 2);

    let director = c.world.director;
    c.world
        .person(
            Actor::Person(director),
            mum,
            PersonAction::RequestErasure { person_id: mum },
        )
        .unwrap();
    c.world
        .person(
            Actor::System,
            mum,
            PersonAction::RecordErasure { person_id: mum },
        )
        .unwrap();
    h.sync(&c.world).await;
    assert!(reads::reads_of(&h.db, mum).await.unwrap().is_empty());
    assert_eq!(
        reads::readers_of_post(&h.db, post)
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![dad],
        "the count drops: no read of the erased person remains"
    );
    let readers = reads::readers_of_messages(&h.db, &messages).await.unwrap();
    assert!(readers.values().all(|r| !r.contains(&mum)), "{readers:?}");
    assert_eq!(unread_in(&h, dad, conversation_id).await, 1);
}

/// Everything the queries answer for the class's people.
async fn answers<S>(h: &Harness<S>, c: &Class, conversation_id: ConversationId) -> String {
    let mut out = String::new();
    for person in [c.teacher, c.mum, c.dad, c.other] {
        let _ = writeln!(
            out,
            "{person}: {:?} {:?} {:?}",
            reads::reads_of(&h.db, person).await.unwrap(),
            reads::unread_posts_per_group(&h.db, person).await.unwrap(),
            reads::unread_messages(&h.db, person, &[conversation_id])
                .await
                .unwrap(),
        );
    }
    out
}

async fn a_rebuild_gives_the_same_reads_and_counts<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut c = class();
    let posts = [publish(&mut c), publish(&mut c), publish(&mut c)];
    let (conversation_id, messages) = conversation(&mut c, 3);
    let (mum, dad, other) = (c.mum, c.dad, c.other);
    mark(&mut c, mum, &posts[..2], &messages[..2]);
    mark(&mut c, dad, &posts[1..], &messages);
    mark(&mut c, other, &posts[..1], &[]);
    mark(&mut c, mum, &posts[..1], &messages[..1]);
    h.sync(&c.world).await;
    let before = answers(&h, &c, conversation_id).await;
    assert!(
        before.contains(&format!("{:?}", ReadItem::Post(posts[0]))),
        "{before}"
    );
    h.projector.rebuild(&[reads::NAME]).await.unwrap();
    assert_eq!(answers(&h, &c, conversation_id).await, before);
}
