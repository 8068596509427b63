//! The conversations read model: inbox, participants, paged messages with sealed bodies.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::Harness;
use kring_domain::access::Subject;
use kring_domain::conversation::ConversationAction;
use kring_domain::simulation::World;
use kring_domain::{Actor, ChildId, ConversationId, MessageId, PersonId};
use kring_projections::models::conversations::{self, conversation, inbox, messages, participants};
use kring_store::EventStore;
use std::collections::BTreeSet;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(conversations::ConversationsProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(conversations::ConversationsProjection::default())]);
    inbox_lists_only_conversations_the_person_takes_part_in,
    inbox_puts_the_newest_activity_first_with_message_counts,
    messages_page_back_from_the_newest_with_sealed_bodies,
    erased_author_shows_as_erased_in_the_messages,
);

fn start(
    world: &mut World,
    by: PersonId,
    child: ChildId,
    participants: Vec<PersonId>,
    body: &str,
) -> ConversationId {
    let conversation_id = ConversationId::from_uuid(world.next_uuid());
    let message_id = MessageId::from_uuid(world.next_uuid());
    let action = ConversationAction::Start {
        conversation_id,
        child_id: child,
        participants,
        message_id,
        body: body.into(),
    };
    world
        .conversation(Actor::Person(by), conversation_id, action)
        .unwrap();
    conversation_id
}

fn post(world: &mut World, by: PersonId, conversation_id: ConversationId, body: &str) -> MessageId {
    let message_id = MessageId::from_uuid(world.next_uuid());
    world
        .conversation(
            Actor::Person(by),
            conversation_id,
            ConversationAction::Post {
                message_id,
                body: body.into(),
            },
        )
        .unwrap();
    message_id
}

async fn ids<S>(h: &Harness<S>, person: PersonId) -> Vec<ConversationId> {
    inbox(&h.db, person)
        .await
        .unwrap()
        .iter()
        .map(|c| c.conversation_id)
        .collect()
}

async fn inbox_lists_only_conversations_the_person_takes_part_in<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 2, 2);
    let teacher = world.staff[1];
    let [c1, c2] = [world.child_ids[0], world.child_ids[1]];
    let [mum1, dad1] = [world.guardians_of(c1)[0], world.guardians_of(c1)[1]];
    let [mum2, dad2] = [world.guardians_of(c2)[0], world.guardians_of(c2)[1]];
    // The teacher writes to both guardians of child 1; a guardian of child 2 writes to the
    // class's staff; the teacher writes to one guardian of child 1 only.
    let with_both = start(&mut world, teacher, c1, Vec::new(), "Hoe gaat het?");
    world.advance(chrono::Duration::minutes(10));
    let from_parent = start(&mut world, mum2, c2, Vec::new(), "Vraagje");
    world.advance(chrono::Duration::minutes(10));
    let with_one = start(&mut world, teacher, c1, vec![mum1], "Alleen voor jou");
    h.sync(&world).await;

    assert_eq!(
        ids(&h, teacher).await,
        vec![with_one, from_parent, with_both]
    );
    assert_eq!(ids(&h, mum1).await, vec![with_one, with_both]);
    assert_eq!(ids(&h, dad1).await, vec![with_both]);
    assert_eq!(ids(&h, mum2).await, vec![from_parent]);
    assert!(
        ids(&h, dad2).await.is_empty(),
        "the other parent of child 2 was not addressed"
    );
    assert!(
        ids(&h, world.director).await.is_empty(),
        "the director oversees the group but takes no part"
    );
    for person in world.staff.iter().chain(&world.invitees) {
        let expected: BTreeSet<ConversationId> = world
            .conversations
            .iter()
            .filter(|(_, c)| c.participants.contains(person))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            ids(&h, *person).await.into_iter().collect::<BTreeSet<_>>(),
            expected
        );
    }

    let expected: Vec<PersonId> = world.conversations[&with_both]
        .participants
        .iter()
        .copied()
        .collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(participants(&h.db, with_both).await.unwrap(), expected);
    let one = conversation(&h.db, with_one).await.unwrap().unwrap();
    assert_eq!(
        one.participants,
        BTreeSet::from([teacher, mum1])
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (
            one.child_id,
            one.school_id,
            one.started_by,
            one.message_count
        ),
        (c1, world.school_id, teacher, 1)
    );
    let listed = inbox(&h.db, mum1).await.unwrap();
    assert_eq!(
        listed[0], one,
        "the inbox entry carries the participants too"
    );
    assert!(conversation(&h.db, ConversationId::generate())
        .await
        .unwrap()
        .is_none());
    assert!(participants(&h.db, ConversationId::generate())
        .await
        .unwrap()
        .is_empty());
}

async fn inbox_puts_the_newest_activity_first_with_message_counts<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 2, 1);
    let teacher = world.staff[1];
    let [c1, c2] = [world.child_ids[0], world.child_ids[1]];
    let [parent1, parent2] = [world.guardians_of(c1)[0], world.guardians_of(c2)[0]];
    let first = start(&mut world, teacher, c1, Vec::new(), "Eerste");
    world.advance(chrono::Duration::hours(1));
    let second = start(&mut world, teacher, c2, Vec::new(), "Tweede");
    h.sync(&world).await;
    assert_eq!(ids(&h, teacher).await, vec![second, first]);

    world.advance(chrono::Duration::hours(1));
    post(&mut world, parent1, first, "Antwoord");
    world.advance(chrono::Duration::minutes(1));
    post(&mut world, teacher, first, "Dank je");
    h.sync(&world).await;
    let listed = inbox(&h.db, teacher).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.conversation_id).collect::<Vec<_>>(),
        vec![first, second],
        "a reply moves it up"
    );
    assert_eq!(
        (
            listed[0].message_count,
            listed[0].last_author_id,
            listed[0].last_message_at
        ),
        (3, Some(teacher), world.now)
    );
    assert_eq!(
        (listed[1].message_count, listed[1].last_author_id),
        (1, Some(teacher))
    );
    assert!(
        listed[0].last_message_at > listed[0].started_at
            && listed[0].last_position > listed[1].last_position
    );
    assert_eq!(ids(&h, parent2).await, vec![second]);
    assert_eq!(
        world.conversations[&first].messages,
        listed[0].message_count
    );
}

async fn messages_page_back_from_the_newest_with_sealed_bodies<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 1, 1);
    let teacher = world.staff[1];
    let child = world.child_ids[0];
    let parent = world.guardians_of(child)[0];
    let id = start(&mut world, teacher, child, Vec::new(), "bericht 0");
    for n in 1..=6_u32 {
        world.advance(chrono::Duration::minutes(1));
        post(
            &mut world,
            if n.is_multiple_of(2) { teacher } else { parent },
            id,
            &format!("bericht {n}"),
        );
    }
    h.sync(&world).await;

    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = messages(&h.db, id, 3, before).await.unwrap();
        let Some(oldest) = page.first() else { break };
        before = Some(oldest.position);
        let mut bodies = Vec::new();
        for m in &page {
            let body = h.vault.open_text(&m.body).await.unwrap();
            let n: u32 = body.trim_start_matches("bericht ").parse().unwrap();
            assert_eq!(
                (m.conversation_id, m.author_id),
                (id, if n.is_multiple_of(2) { teacher } else { parent })
            );
            bodies.push(body);
        }
        assert!(
            page.windows(2)
                .all(|w| w[0].position < w[1].position && w[0].at < w[1].at),
            "oldest first within a page"
        );
        pages.push(bodies);
    }
    assert_eq!(
        pages,
        vec![
            vec!["bericht 4", "bericht 5", "bericht 6"],
            vec!["bericht 1", "bericht 2", "bericht 3"],
            vec!["bericht 0"],
        ]
    );
    let all = messages(&h.db, id, 100, None).await.unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(all.iter().filter(|m| m.author_id == parent).count(), 3);
    assert!(messages(&h.db, ConversationId::generate(), 10, None)
        .await
        .unwrap()
        .is_empty());
}

async fn erased_author_shows_as_erased_in_the_messages<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 1, 1);
    let teacher = world.staff[1];
    let child = world.child_ids[0];
    let parent = world.guardians_of(child)[0];
    let id = start(&mut world, parent, child, Vec::new(), "Mijn vraag");
    post(&mut world, teacher, id, "Mijn antwoord");
    h.sync(&world).await;
    h.vault.erase(Subject::Person(parent)).await.unwrap();
    let mut bodies = Vec::new();
    for m in messages(&h.db, id, 10, None).await.unwrap() {
        bodies.push((m.author_id, h.vault.open_text(&m.body).await.unwrap()));
    }
    assert_eq!(
        bodies,
        vec![
            (parent, "[erased]".to_owned()),
            (teacher, "Mijn antwoord".to_owned())
        ]
    );
    assert_eq!(
        ids(&h, parent).await,
        vec![id],
        "the fact that they took part stays"
    );
}
