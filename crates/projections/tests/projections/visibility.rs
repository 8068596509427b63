//! Media visibility and the feed, one rule of DESIGN.md ("Who may see a media item") per test,
//! on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::Harness;
use kring_domain::post::PostAction;
use kring_domain::school::SchoolAction;
use kring_domain::simulation::World;
use kring_domain::visibility::{MediaVisibility, ViewReason, Withheld, WithheldBecause};
use kring_domain::{Actor, ChildId, MediaId, PersonId, PostId, Purpose};
use kring_projections::models::visibility::{
    self, feed, feed_after, may_see, media_place, who_may_see, MediaPlace, VisibilityProjection,
};
use kring_store::EventStore;
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(VisibilityProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(VisibilityProjection::default())]);
    withdrawn_consent_hides_existing_photo_from_other_parents,
    tagging_a_child_after_posting_changes_who_sees_that_item_only,
    guardian_still_sees_own_child_without_consent,
    removed_media_is_visible_to_nobody,
    parent_removed_from_group_loses_access,
    staff_of_the_audience_always_see,
    feed_shows_only_media_the_person_may_see,
    a_child_moving_groups_changes_who_sees_its_photos,
    the_school_group_asks_school_communication_consent,
    unknown_media_has_no_answer_and_rebuild_gives_the_same_answers,
    media_place_names_the_post_and_follows_removal,
    a_post_is_shown_to_its_audience_only_with_the_media_each_may_see,
    feed_pages_exactly_through_posts_of_the_same_moment,
    retention_picks_live_posts_whose_retention_ran_out_oldest_first,
);

/// The read model's answer, checked against the domain rule on the world's own state. Asked
/// twice: the first question after a change parses the school's roster (the long way), the
/// second finds it in the roster cache and is answered in one statement; both must agree. Then
/// asked as a read of the media item asks ([`visibility::media_answer`]): the same answer, with
/// the item's place and the roster it was worked out on.
async fn answer<S: EventStore + Clone>(
    h: &Harness<S>,
    world: &World,
    media: MediaId,
) -> MediaVisibility {
    let got = who_may_see(&h.db, media)
        .await
        .unwrap()
        .expect("a published media item has an answer");
    let again = who_may_see(&h.db, media).await.unwrap();
    assert_eq!(
        again.as_ref(),
        Some(&got),
        "the one-statement answer (roster cached) equals the long way"
    );
    let read = visibility::media_answer(&h.db, media)
        .await
        .unwrap()
        .expect("with the roster cached, a read of the item is answered in one statement");
    assert_eq!(read.visibility, got);
    assert_eq!(
        Some(read.place),
        media_place(&h.db, media).await.unwrap(),
        "the place read with the answer is the item's place"
    );
    assert_eq!(
        *read.roster, world.school,
        "the roster read with the answer is the school's"
    );
    let post = world
        .media_ids
        .iter()
        .find(|(_, m)| *m == media)
        .map(|(p, _)| world.posts[p].clone())
        .unwrap();
    let expected =
        kring_domain::visibility::who_may_see(&world.school, &post, media, &world.children)
            .unwrap();
    assert_eq!(
        got, expected,
        "the read model answers as the domain rule does"
    );
    got
}

fn reason(v: &MediaVisibility, person: PersonId) -> Option<ViewReason> {
    v.viewers
        .iter()
        .find(|x| x.person_id == person)
        .map(|x| x.reason)
}

fn withheld(v: &MediaVisibility, person: PersonId) -> Option<&Withheld> {
    v.withheld.iter().find(|w| w.person_id == person)
}

fn because(child_id: ChildId, purpose: Purpose) -> Vec<WithheldBecause> {
    vec![WithheldBecause { child_id, purpose }]
}

/// Each of `parents` is not shown `v`, withheld because `child` has no group-communication
/// consent (`why` says what the case is).
fn hidden_for(v: &MediaVisibility, parents: Vec<PersonId>, child: ChildId, why: &str) {
    for parent in parents {
        assert_eq!(reason(v, parent), None, "{why}");
        assert_eq!(
            withheld(v, parent).unwrap().because,
            because(child, Purpose::GroupCommunication),
            "{why}"
        );
    }
}

fn teacher(world: &World, group: usize) -> Actor {
    // `World::with_classes` adds the director first, then one teacher per group.
    Actor::Person(world.staff[group + 1])
}

/// Publishes to class group `group` as its teacher.
fn publish(world: &mut World, group: usize, tags: &[Vec<ChildId>]) -> (PostId, Vec<MediaId>) {
    let (by, group_id) = (teacher(world, group), world.groups[group]);
    world.publish(by, group_id, tags).unwrap()
}

/// Removes `post` as the teacher of class group `group`.
fn remove(world: &mut World, group: usize, post: PostId) {
    let by = teacher(world, group);
    world
        .post(
            by,
            post,
            PostAction::Remove {
                reason: "Verkeerde klas".into(),
            },
        )
        .unwrap();
}

async fn withdrawn_consent_hides_existing_photo_from_other_parents<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 2, 2);
    let [a, b] = [world.child_ids[0], world.child_ids[1]];
    let [b_mum, b_dad] = [world.guardians_of(b)[0], world.guardians_of(b)[1]];
    world
        .decide_consent(b_mum, b, Purpose::GroupCommunication, true)
        .unwrap();
    let (_, media) = publish(&mut world, 0, &[vec![b]]);
    h.sync(&world).await;
    let before = answer(&h, &world, media[0]).await;
    for parent in world.guardians_of(a) {
        assert_eq!(
            reason(&before, parent),
            Some(ViewReason::Audience),
            "consent given: the other parents see it"
        );
        assert!(may_see(&h.db, parent, media[0]).await.unwrap());
    }

    world
        .decide_consent(b_dad, b, Purpose::GroupCommunication, false)
        .unwrap();
    h.sync(&world).await;
    let after = answer(&h, &world, media[0]).await;
    for parent in world.guardians_of(a) {
        assert_eq!(
            reason(&after, parent),
            None,
            "one guardian withdrew: the existing photo is hidden"
        );
        assert_eq!(
            withheld(&after, parent).unwrap().because,
            because(b, Purpose::GroupCommunication),
            "and the answer says why"
        );
        assert!(!may_see(&h.db, parent, media[0]).await.unwrap());
    }
    for parent in [b_mum, b_dad] {
        assert_eq!(reason(&after, parent), Some(ViewReason::OwnChild));
    }

    world
        .decide_consent(b_dad, b, Purpose::GroupCommunication, true)
        .unwrap();
    h.sync(&world).await;
    let again = answer(&h, &world, media[0]).await;
    assert!(
        world.guardians_of(a).into_iter().all(|p| again.may_see(p)),
        "consent given again: visible again"
    );
}

/// Children tagged in a photo after it was posted: one whose guardian consented leaves it
/// visible to the other parents, one without consent hides it from them (and they are told
/// why), the post's other photo is untouched; untagged again, the photo is visible again.
/// Every answer also in one statement ([`answer`]), which must read the decisions about the
/// children tagged since.
async fn tagging_a_child_after_posting_changes_who_sees_that_item_only<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 3, 2);
    let [a, b, c] = [world.child_ids[0], world.child_ids[1], world.child_ids[2]];
    let b_mum = world.guardians_of(b)[0];
    world
        .decide_consent(b_mum, b, Purpose::GroupCommunication, true)
        .unwrap();
    let (post, media) = publish(&mut world, 0, &[vec![], vec![]]);
    h.sync(&world).await;
    let tag = |media_id, child_id, tag: bool| {
        if tag {
            PostAction::Tag { media_id, child_id }
        } else {
            PostAction::Untag { media_id, child_id }
        }
    };
    let by = teacher(&world, 0);

    world.post(by, post, tag(media[0], b, true)).unwrap();
    h.sync(&world).await;
    let with_b = answer(&h, &world, media[0]).await;
    for parent in world.guardians_of(a) {
        assert_eq!(
            reason(&with_b, parent),
            Some(ViewReason::Audience),
            "b tagged with consent: still shown"
        );
    }

    world.post(by, post, tag(media[0], c, true)).unwrap();
    h.sync(&world).await;
    let with_c = answer(&h, &world, media[0]).await;
    hidden_for(
        &with_c,
        world.guardians_of(a),
        c,
        "c tagged without consent: hidden",
    );
    for parent in world.guardians_of(c) {
        assert_eq!(reason(&with_c, parent), Some(ViewReason::OwnChild));
    }
    let other = answer(&h, &world, media[1]).await;
    assert!(
        world.guardians_of(a).into_iter().all(|p| other.may_see(p)),
        "the post's other photo shows neither"
    );

    world.post(by, post, tag(media[0], c, false)).unwrap();
    h.sync(&world).await;
    let untagged = answer(&h, &world, media[0]).await;
    assert!(
        world
            .guardians_of(a)
            .into_iter()
            .all(|p| untagged.may_see(p)),
        "c untagged: visible again"
    );
}

async fn guardian_still_sees_own_child_without_consent<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 2, 2);
    let [a, b] = [world.child_ids[0], world.child_ids[1]];
    let (_, media) = publish(&mut world, 0, &[vec![a], vec![a, b]]);
    h.sync(&world).await;
    let only_a = answer(&h, &world, media[0]).await;
    for parent in world.guardians_of(a) {
        assert_eq!(
            reason(&only_a, parent),
            Some(ViewReason::OwnChild),
            "no consent needed for one's own child"
        );
    }
    for parent in world.guardians_of(b) {
        assert_eq!(
            withheld(&only_a, parent).unwrap().because,
            because(a, Purpose::GroupCommunication)
        );
    }
    let both = answer(&h, &world, media[1]).await;
    hidden_for(
        &both,
        world.guardians_of(a),
        b,
        "the other child shown has no consent",
    );
    for parent in world.guardians_of(b) {
        assert_eq!(
            withheld(&both, parent).unwrap().because,
            because(a, Purpose::GroupCommunication)
        );
    }
}

async fn removed_media_is_visible_to_nobody<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 2, 1);
    let a = world.child_ids[0];
    let parent = world.guardians_of(a)[0];
    let by = teacher(&world, 0);
    let (post, media) = publish(&mut world, 0, &[vec![a], vec![]]);
    world
        .post(
            by,
            post,
            PostAction::RemoveMedia {
                media_id: media[0],
                reason: "Verkeerde foto".into(),
            },
        )
        .unwrap();
    h.sync(&world).await;
    let removed = answer(&h, &world, media[0]).await;
    assert!(
        removed.viewers.is_empty() && removed.withheld.is_empty(),
        "{removed:?}"
    );
    for person in [parent, world.director, world.staff[1]] {
        assert!(
            !may_see(&h.db, person, media[0]).await.unwrap(),
            "not even staff or the own child's parent"
        );
    }
    let listed = feed(&h.db, parent, None, 10, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].media,
        vec![media[1]],
        "the feed lists the post without the removed item"
    );

    world
        .post(
            by,
            post,
            PostAction::Remove {
                reason: "Op verzoek".into(),
            },
        )
        .unwrap();
    h.sync(&world).await;
    let gone = answer(&h, &world, media[1]).await;
    assert!(gone.viewers.is_empty() && gone.withheld.is_empty());
    assert!(
        feed(&h.db, parent, None, 10, None)
            .await
            .unwrap()
            .is_empty(),
        "a removed post leaves the feed"
    );
    assert!(feed(&h.db, world.director, None, 10, None)
        .await
        .unwrap()
        .is_empty());
}

async fn parent_removed_from_group_loses_access<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 2, 2);
    let [a, b] = [world.child_ids[0], world.child_ids[1]];
    let [a_mum, a_dad] = [world.guardians_of(a)[0], world.guardians_of(a)[1]];
    world
        .decide_consent(
            world.guardians_of(b)[0],
            b,
            Purpose::GroupCommunication,
            true,
        )
        .unwrap();
    let (post, media) = publish(&mut world, 0, &[vec![b], vec![a]]);
    h.sync(&world).await;
    assert!(
        may_see(&h.db, a_mum, media[0]).await.unwrap()
            && may_see(&h.db, a_mum, media[1]).await.unwrap()
    );
    assert_eq!(feed(&h.db, a_mum, None, 10, None).await.unwrap().len(), 1);

    world
        .school(
            Actor::Person(world.director),
            SchoolAction::UnlinkGuardian {
                child_id: a,
                guardian_id: a_mum,
            },
        )
        .unwrap();
    h.sync(&world).await;
    for m in &media {
        let v = answer(&h, &world, *m).await;
        assert_eq!(reason(&v, a_mum), None, "no longer in the audience");
        assert!(
            withheld(&v, a_mum).is_none(),
            "not even listed as withheld: she is out of the audience"
        );
        assert!(v.may_see(a_dad), "the other guardian keeps access");
    }
    assert!(
        feed(&h.db, a_mum, None, 10, None).await.unwrap().is_empty(),
        "and the post left her feed"
    );
    let dads = feed(&h.db, a_dad, None, 10, None).await.unwrap();
    assert_eq!(
        (dads.len(), dads[0].post_id, dads[0].media.clone()),
        (1, post, media.clone())
    );
}

async fn staff_of_the_audience_always_see<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(2, 1, 1);
    let a = world.child_ids[0];
    let [teacher0, teacher1] = [world.staff[1], world.staff[2]];
    let director = Actor::Person(world.director);
    let (_, media) = publish(&mut world, 0, &[vec![a]]);
    h.sync(&world).await;
    let v = answer(&h, &world, media[0]).await;
    assert_eq!(
        reason(&v, teacher0),
        Some(ViewReason::Staff),
        "the group's teacher, without any consent"
    );
    assert_eq!(
        reason(&v, world.director),
        Some(ViewReason::Staff),
        "directors oversee every group"
    );
    assert_eq!(
        reason(&v, teacher1),
        None,
        "another group's teacher is not in the audience"
    );
    assert!(withheld(&v, teacher1).is_none());

    world
        .school(
            director,
            SchoolAction::AssignStaff {
                group_id: world.groups[0],
                person_id: teacher1,
            },
        )
        .unwrap();
    world
        .school(
            director,
            SchoolAction::UnassignStaff {
                group_id: world.groups[0],
                person_id: teacher0,
            },
        )
        .unwrap();
    h.sync(&world).await;
    let v = answer(&h, &world, media[0]).await;
    assert_eq!(
        reason(&v, teacher1),
        Some(ViewReason::Staff),
        "assigned later: sees the existing photo"
    );
    assert_eq!(
        reason(&v, teacher0),
        None,
        "taken off the group: no longer sees it"
    );
    assert_eq!(
        feed(&h.db, teacher1, None, 10, None).await.unwrap()[0].media,
        media
    );
    assert!(feed(&h.db, teacher0, None, 10, None)
        .await
        .unwrap()
        .is_empty());

    world
        .school(
            director,
            SchoolAction::RemoveStaff {
                person_id: teacher1,
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert_eq!(
        reason(&answer(&h, &world, media[0]).await, teacher1),
        None,
        "staff who left see nothing"
    );
}

async fn feed_shows_only_media_the_person_may_see<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(2, 2, 1);
    let [a, b, c] = [world.child_ids[0], world.child_ids[1], world.child_ids[2]];
    let [pa, pb, pc] = [
        world.guardians_of(a)[0],
        world.guardians_of(b)[0],
        world.guardians_of(c)[0],
    ];
    world
        .decide_consent(pb, b, Purpose::GroupCommunication, true)
        .unwrap();
    let (first, media) = publish(&mut world, 0, &[vec![b], vec![a], vec![]]);
    world.advance(chrono::Duration::hours(1));
    let (second, later) = publish(&mut world, 0, &[vec![a, b]]);
    h.sync(&world).await;

    let of_a = feed(&h.db, pa, None, 10, None).await.unwrap();
    assert_eq!(
        of_a.iter().map(|p| p.post_id).collect::<Vec<_>>(),
        vec![second, first],
        "newest first"
    );
    assert_eq!(
        of_a[1].media, media,
        "b has consent, a is their own: every item, in the order attached"
    );
    assert_eq!(of_a[0].media, later);
    let of_b = feed(&h.db, pb, None, 10, None).await.unwrap();
    assert_eq!(
        of_b[1].media,
        vec![media[0], media[2]],
        "a has no consent: that item is left out"
    );
    assert!(
        of_b[0].media.is_empty(),
        "a post whose only photo shows a child without consent is listed without it"
    );
    for post in &of_b {
        for m in &post.media {
            assert!(
                answer(&h, &world, *m).await.may_see(pb),
                "a guardian never gets a media id they may not see"
            );
        }
    }
    assert!(
        feed(&h.db, pc, None, 10, None).await.unwrap().is_empty(),
        "another class's parent sees nothing of it"
    );
    assert_eq!(
        feed(&h.db, world.staff[1], None, 10, None).await.unwrap()[1].media,
        media,
        "the teacher sees all"
    );

    // Paging and filtering.
    let page = feed(&h.db, pa, None, 1, None).await.unwrap();
    assert_eq!(page.len(), 1);
    let next = feed(&h.db, pa, None, 1, Some(page[0].posted_at))
        .await
        .unwrap();
    assert_eq!(next[0].post_id, first);
    assert!(feed(&h.db, pa, Some(world.groups[1]), 10, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        feed(&h.db, pa, Some(world.groups[0]), 10, None)
            .await
            .unwrap()
            .len(),
        2
    );

    // The body stays sealed in the read model; the API opens it with the key vault.
    let body = serde_json::to_string(&of_a[1].body).unwrap();
    common::assert_sealed_at_rest(&body, &["Uitje"]);
    assert_eq!(
        h.vault.open_text(&of_a[1].body).await.unwrap(),
        "Uitje naar het bos"
    );

    // A whole-school post reaches every parent of the school.
    let (_, whole) = world
        .publish(
            Actor::Person(world.director),
            world.school_group(),
            &[vec![]],
        )
        .unwrap();
    h.sync(&world).await;
    for parent in [pa, pb, pc] {
        assert_eq!(
            feed(&h.db, parent, None, 1, None).await.unwrap()[0].media,
            whole
        );
    }
}

async fn a_child_moving_groups_changes_who_sees_its_photos<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 2, 1);
    let [a, b, c] = [world.child_ids[0], world.child_ids[1], world.child_ids[2]];
    let [pa, pb, pc] = [
        world.guardians_of(a)[0],
        world.guardians_of(b)[0],
        world.guardians_of(c)[0],
    ];
    world
        .decide_consent(pa, a, Purpose::GroupCommunication, true)
        .unwrap();
    let (_, in_first) = publish(&mut world, 0, &[vec![a], vec![b]]);
    let (_, in_second) = publish(&mut world, 1, &[vec![]]);
    h.sync(&world).await;
    let v = answer(&h, &world, in_first[0]).await;
    assert_eq!(
        (reason(&v, pa), reason(&v, pb), reason(&v, pc)),
        (Some(ViewReason::OwnChild), Some(ViewReason::Audience), None)
    );
    assert!(!answer(&h, &world, in_second[0]).await.may_see(pa));

    world
        .school(
            Actor::Person(world.director),
            SchoolAction::MoveChild {
                child_id: a,
                to_group_id: world.groups[1],
            },
        )
        .unwrap();
    h.sync(&world).await;
    let v = answer(&h, &world, in_first[0]).await;
    assert_eq!(
        reason(&v, pa),
        None,
        "a's parent left the old class's audience, even for a's own photo"
    );
    assert_eq!(
        reason(&v, pb),
        Some(ViewReason::Audience),
        "the old class still sees it (a's consent holds)"
    );
    assert_eq!(reason(&v, pc), None);
    assert!(withheld(&answer(&h, &world, in_first[1]).await, pa).is_none());
    assert!(
        answer(&h, &world, in_second[0]).await.may_see(pa),
        "and joined the new class's audience"
    );
    assert_eq!(
        feed(&h.db, pa, None, 10, None)
            .await
            .unwrap()
            .iter()
            .map(|p| p.media.clone())
            .collect::<Vec<_>>(),
        vec![in_second.clone()]
    );

    // In the new class, a's photos need consent from the new classmates' point of view too.
    world
        .decide_consent(pa, a, Purpose::GroupCommunication, false)
        .unwrap();
    let (_, new_photo) = publish(&mut world, 1, &[vec![a]]);
    h.sync(&world).await;
    let v = answer(&h, &world, new_photo[0]).await;
    assert_eq!(reason(&v, pa), Some(ViewReason::OwnChild));
    assert_eq!(
        withheld(&v, pc).unwrap().because,
        because(a, Purpose::GroupCommunication)
    );
    assert_eq!(
        withheld(&answer(&h, &world, in_first[0]).await, pb)
            .unwrap()
            .because,
        because(a, Purpose::GroupCommunication)
    );
}

async fn the_school_group_asks_school_communication_consent<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 1, 1);
    let [a, c] = [world.child_ids[0], world.child_ids[1]];
    let [pa, pc] = [world.guardians_of(a)[0], world.guardians_of(c)[0]];
    world
        .decide_consent(pa, a, Purpose::GroupCommunication, true)
        .unwrap();
    let (_, media) = world
        .publish(
            Actor::Person(world.director),
            world.school_group(),
            &[vec![a]],
        )
        .unwrap();
    h.sync(&world).await;
    let v = answer(&h, &world, media[0]).await;
    assert_eq!(
        withheld(&v, pc).unwrap().because,
        because(a, Purpose::SchoolCommunication),
        "class consent is not school consent"
    );
    assert!(
        world
            .staff
            .iter()
            .all(|s| reason(&v, *s) == Some(ViewReason::Staff)),
        "every staff member sees school posts"
    );
    world
        .decide_consent(pa, a, Purpose::SchoolCommunication, true)
        .unwrap();
    h.sync(&world).await;
    assert_eq!(
        reason(&answer(&h, &world, media[0]).await, pc),
        Some(ViewReason::Audience)
    );
}

async fn unknown_media_has_no_answer_and_rebuild_gives_the_same_answers<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 2, 2);
    let [a, b] = [world.child_ids[0], world.child_ids[1]];
    world
        .decide_consent(
            world.guardians_of(b)[0],
            b,
            Purpose::GroupCommunication,
            true,
        )
        .unwrap();
    let (post, media) = publish(&mut world, 0, &[vec![a, b], vec![b]]);
    world
        .post(
            teacher(&world, 0),
            post,
            PostAction::Untag {
                media_id: media[0],
                child_id: a,
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert!(who_may_see(&h.db, MediaId::generate())
        .await
        .unwrap()
        .is_none());
    assert!(
        visibility::media_answer(&h.db, MediaId::generate())
            .await
            .unwrap()
            .is_none(),
        "an unknown item is left to the long way, which catches up before it says 404"
    );
    assert!(!may_see(&h.db, world.director, MediaId::generate())
        .await
        .unwrap());
    let mut before = Vec::new();
    for m in &media {
        before.push(answer(&h, &world, *m).await);
    }
    let feed_before = feed(&h.db, world.guardians_of(a)[0], None, 10, None)
        .await
        .unwrap();
    h.projector.rebuild(&[visibility::NAME]).await.unwrap();
    for (m, expected) in media.iter().zip(before) {
        assert_eq!(answer(&h, &world, *m).await, expected);
    }
    assert_eq!(
        feed(&h.db, world.guardians_of(a)[0], None, 10, None)
            .await
            .unwrap(),
        feed_before
    );
}

async fn media_place_names_the_post_and_follows_removal<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 1, 1);
    let a = world.child_ids[0];
    let (post, media) = publish(&mut world, 0, &[vec![a], vec![]]);
    h.sync(&world).await;
    let place = MediaPlace {
        media_id: media[0],
        post_id: post,
        group_id: world.groups[0],
        school_id: world.school_id,
        live: true,
    };
    assert_eq!(media_place(&h.db, media[0]).await.unwrap(), Some(place));
    assert!(
        media_place(&h.db, MediaId::generate())
            .await
            .unwrap()
            .is_none(),
        "an item never published has no place"
    );
    world
        .post(
            teacher(&world, 0),
            post,
            PostAction::RemoveMedia {
                media_id: media[0],
                reason: "Verkeerde foto".into(),
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert_eq!(
        media_place(&h.db, media[0]).await.unwrap(),
        Some(MediaPlace {
            live: false,
            ..place
        }),
        "a removed item keeps its place and is no longer live"
    );
    assert!(media_place(&h.db, media[1]).await.unwrap().unwrap().live);
    remove(&mut world, 0, post);
    h.sync(&world).await;
    assert!(
        !media_place(&h.db, media[1]).await.unwrap().unwrap().live,
        "removing the post takes its items down too"
    );
}

async fn a_post_is_shown_to_its_audience_only_with_the_media_each_may_see<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 2, 1);
    let [a, b, c] = [world.child_ids[0], world.child_ids[1], world.child_ids[2]];
    let [pa, pb, pc] = [
        world.guardians_of(a)[0],
        world.guardians_of(b)[0],
        world.guardians_of(c)[0],
    ];
    let (post, media) = publish(&mut world, 0, &[vec![a], vec![b], vec![]]);
    h.sync(&world).await;
    let of_a = visibility::post(&h.db, post, Some(pa))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(of_a.post_id, post);
    assert_eq!(
        of_a.media,
        vec![media[0], media[2]],
        "own child and untagged: shown; b without consent: left out"
    );
    assert_eq!(
        visibility::post(&h.db, post, Some(pb))
            .await
            .unwrap()
            .unwrap()
            .media,
        vec![media[1], media[2]]
    );
    assert!(
        visibility::post(&h.db, post, Some(pc))
            .await
            .unwrap()
            .is_none(),
        "a parent of another class is not in the audience"
    );
    assert_eq!(
        visibility::post(&h.db, post, Some(world.staff[1]))
            .await
            .unwrap()
            .unwrap()
            .media,
        media,
        "the teacher sees every item"
    );
    assert_eq!(
        visibility::post(&h.db, post, None)
            .await
            .unwrap()
            .unwrap()
            .media,
        media,
        "a privileged read lists every live item"
    );
    assert!(visibility::post(&h.db, PostId::generate(), None)
        .await
        .unwrap()
        .is_none());
    world
        .post(
            teacher(&world, 0),
            post,
            PostAction::Remove {
                reason: "Klacht".into(),
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert!(
        visibility::post(&h.db, post, None).await.unwrap().is_none(),
        "a removed post is shown to nobody"
    );
}

async fn feed_pages_exactly_through_posts_of_the_same_moment<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 1, 1);
    let parent = world.guardians_of(world.child_ids[0])[0];
    // The world's clock stands still: all five posts share one `posted_at`.
    let mut posted = Vec::new();
    for _ in 0..5 {
        posted.push(publish(&mut world, 0, &[vec![]]).0);
    }
    h.sync(&world).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = feed_after(&h.db, parent, None, 2, after).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.posted_at, last.post_id));
        seen.extend(page.iter().map(|p| p.post_id));
    }
    let mut expected = posted.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected, "every post once, in the feed's order");
    assert_eq!(
        feed(&h.db, parent, None, 10, None)
            .await
            .unwrap()
            .iter()
            .map(|p| p.post_id)
            .collect::<Vec<_>>(),
        expected
    );
}

/// The retention job's candidates (`due_for_expiry`): live posts of every group whose school's
/// retention period has run out by the given time, oldest first; a removed post never, an
/// expired one no longer.
async fn retention_picks_live_posts_whose_retention_ran_out_oldest_first<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 1, 1);
    let retention = chrono::Duration::days(i64::from(world.school.settings.retention_days));
    let start = world.now;
    let (old, _) = publish(&mut world, 0, &[vec![]]);
    world.advance(chrono::Duration::days(10));
    let (newer, _) = publish(&mut world, 1, &[vec![]]);
    let (removed, _) = publish(&mut world, 0, &[vec![]]);
    remove(&mut world, 0, removed);
    h.sync(&world).await;
    let db = h.db.clone();
    let due = |at, limit| visibility::due_for_expiry(&db, at, limit);

    let just_before = start + retention - chrono::Duration::seconds(1);
    assert_eq!(due(just_before, 100).await.unwrap(), Vec::<PostId>::new());
    assert_eq!(due(start + retention, 100).await.unwrap(), vec![old]);
    let later = start + retention + chrono::Duration::days(11);
    assert_eq!(
        due(later, 100).await.unwrap(),
        vec![old, newer],
        "oldest first, across the school's groups, never the removed post"
    );
    assert_eq!(due(later, 1).await.unwrap(), vec![old], "at most the limit");

    world.advance(retention);
    world.post(Actor::System, old, PostAction::Expire).unwrap();
    h.sync(&world).await;
    assert_eq!(
        due(later, 100).await.unwrap(),
        vec![newer],
        "an expired post is no longer due"
    );
}
