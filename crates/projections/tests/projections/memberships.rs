//! The memberships read model: groups with staff, children and guardians; audiences;
//! profiles; invitations; sealed personal fields and erasure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::Harness;
use kring_domain::access::Subject;
use kring_domain::invitation::InvitationAction;
use kring_domain::school::{GroupKind, SchoolAction, SchoolEvent, StaffRole};
use kring_domain::simulation::{history, play, World, GOOD_CODE};
use kring_domain::{Actor, ChildId, Event, GroupId, PersonId, Sealed};
use kring_projections::models::memberships::{
    self, child, group, invitations_of_group, invitations_of_group_page, members_of_group, person,
    GroupView, InvitationState, InvitationView, Profile,
};
use kring_store::EventStore;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![Arc::new(memberships::MembershipsProjection::default())]), postgres: |_| common::postgres(vec![Arc::new(memberships::MembershipsProjection::default())]);
    group_lists_staff_children_and_guardians_without_email_addresses,
    members_of_a_group_are_its_staff_directors_and_the_guardians_of_its_pupils,
    profile_shows_own_email_roles_children_and_groups,
    unlinked_guardian_leaves_the_group,
    invitation_status_follows_accept_approve_revoke_and_expiry,
    invitations_of_an_invitee_are_only_their_own,
    erased_person_shows_as_erased_in_the_group,
    moved_and_corrected_child_shows_in_its_new_group_with_its_guardians,
    staff_who_leave_or_are_unassigned_leave_their_groups,
    memberships_match_the_domain_roster_over_a_random_history,
    rebuild_gives_identical_memberships,
    personal_fields_rest_sealed_in_the_read_model,
);

/// The four models of this work, side by side in one projector: their tables, views and
/// indexes do not collide, and none stops on a realistic history.
fn side_by_side() -> Vec<Arc<dyn kring_projections::Projection>> {
    use kring_projections::models::{absences, activities, conversations};
    vec![
        Arc::new(memberships::MembershipsProjection::default()),
        Arc::new(conversations::ConversationsProjection::default()),
        Arc::new(absences::AbsencesProjection::default()),
        Arc::new(activities::ActivitiesProjection::default()),
    ]
}

mod together {
    use super::*;
    kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(side_by_side()), postgres: |_| common::postgres(side_by_side()); memberships_conversations_absences_and_activities_project_side_by_side);
}

async fn open<S>(h: &Harness<S>, sealed: &Sealed<String>) -> String {
    h.vault.open_text(sealed).await.unwrap()
}

async fn open_opt<S>(h: &Harness<S>, sealed: Option<&Sealed<String>>) -> String {
    open(h, sealed.expect("the log names this person")).await
}

/// Every sealed field anywhere in a serialized value.
fn sealed_fields(value: &serde_json::Value, out: &mut Vec<Sealed<String>>) {
    match value {
        serde_json::Value::Object(map) if map.contains_key("$sealed") => {
            out.push(serde_json::from_value(value.clone()).unwrap());
        }
        serde_json::Value::Object(map) => map.values().for_each(|v| sealed_fields(v, out)),
        serde_json::Value::Array(items) => items.iter().for_each(|v| sealed_fields(v, out)),
        _ => {}
    }
}

fn audience(world: &World, g: GroupId) -> Vec<PersonId> {
    let mut all: BTreeSet<PersonId> = world.school.audience_staff(g);
    all.extend(world.school.audience_guardians(g).into_keys());
    all.into_iter().collect()
}

async fn group_view_matches_the_roster<S>(h: &Harness<S>, world: &World, g: GroupId) {
    let view = group(&h.db, g).await.unwrap().expect("the group exists");
    let staff: BTreeMap<PersonId, StaffRole> =
        view.staff.iter().map(|s| (s.person_id, s.role)).collect();
    let expected: BTreeMap<PersonId, StaffRole> = world
        .school
        .audience_staff(g)
        .into_iter()
        .map(|p| (p, world.school.staff[&p]))
        .collect();
    assert_eq!(staff, expected, "staff of {g}");
    let children: Vec<ChildId> = view.children.iter().map(|c| c.child_id).collect();
    assert_eq!(
        children,
        world.school.audience_children(g).collect::<Vec<_>>(),
        "children of {g}"
    );
    let guardians: BTreeMap<PersonId, BTreeSet<ChildId>> = view
        .guardians
        .iter()
        .map(|gu| (gu.person_id, gu.child_ids.iter().copied().collect()))
        .collect();
    assert_eq!(
        guardians,
        world.school.audience_guardians(g),
        "guardians of {g}"
    );
    assert_eq!(
        members_of_group(&h.db, g).await.unwrap(),
        audience(world, g),
        "members of {g}"
    );
}

async fn group_lists_staff_children_and_guardians_without_email_addresses<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let world = World::with_classes(2, 2, 2);
    h.sync(&world).await;
    let g = world.groups[0];
    let view = group(&h.db, g).await.unwrap().unwrap();
    assert_eq!(
        (view.group_id, view.school_id, view.name.as_str(), view.kind),
        (g, world.school_id, "Groep 1", GroupKind::Class)
    );

    let mut staff = Vec::new();
    for s in &view.staff {
        staff.push((
            s.person_id,
            s.role,
            s.assigned,
            open_opt(&h, s.display_name.as_ref()).await,
        ));
    }
    assert_eq!(
        staff,
        vec![
            (
                world.director,
                StaffRole::Director,
                false,
                "Juf Staff 1".to_owned()
            ),
            (
                world.staff[1],
                StaffRole::Teacher,
                true,
                "Juf Staff 2".to_owned()
            ),
        ],
        "the group's teacher and the director who oversees it; not the other class's teacher"
    );
    let mut children = Vec::new();
    for c in &view.children {
        children.push((
            c.child_id,
            c.group_id,
            open(&h, &c.first_name).await,
            open(&h, &c.last_initial).await,
        ));
    }
    assert_eq!(
        children,
        vec![
            (world.child_ids[0], g, "Kind1".to_owned(), "V".to_owned()),
            (world.child_ids[1], g, "Kind2".to_owned(), "V".to_owned()),
        ]
    );
    assert_eq!(view.guardians.len(), 4);
    for guardian in &view.guardians {
        assert_eq!(open_opt(&h, guardian.display_name.as_ref()).await, "Ouder");
        assert_eq!(guardian.child_ids.len(), 1);
        assert!(world
            .guardians_of(guardian.child_ids[0])
            .contains(&guardian.person_id));
    }

    // Nothing in the view opens to an e-mail address: names only.
    let mut sealed = Vec::new();
    sealed_fields(&serde_json::to_value(&view).unwrap(), &mut sealed);
    assert_eq!(
        sealed.len(),
        2 + 2 * 2 + 4,
        "two staff names, two children's names and initials, four guardian names"
    );
    for field in &sealed {
        let text = open(&h, field).await;
        assert!(
            !text.contains('@'),
            "an e-mail address in the group view: {text}"
        );
    }

    // The school group: every staff member, every pupil, every guardian.
    let school = group(&h.db, world.school_group()).await.unwrap().unwrap();
    assert_eq!(
        (school.kind, school.name.as_str()),
        (GroupKind::School, "De Regenboog")
    );
    assert_eq!(
        (
            school.staff.len(),
            school.children.len(),
            school.guardians.len()
        ),
        (3, 4, 8)
    );
    group_view_matches_the_roster(&h, &world, g).await;
    group_view_matches_the_roster(&h, &world, world.school_group()).await;
    assert!(group(&h.db, GroupId::generate()).await.unwrap().is_none());
}

async fn members_of_a_group_are_its_staff_directors_and_the_guardians_of_its_pupils<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 2, 1);
    let officer = world
        .add_staff(Actor::Person(world.director), StaffRole::ComplianceOfficer)
        .unwrap();
    h.sync(&world).await;
    let [g1, g2] = [world.groups[0], world.groups[1]];
    let [teacher1, teacher2] = [world.staff[1], world.staff[2]];
    let members1 = members_of_group(&h.db, g1).await.unwrap();
    assert!(members1.contains(&world.director) && members1.contains(&teacher1));
    assert!(
        !members1.contains(&teacher2),
        "a teacher of another class is no member"
    );
    assert!(
        !members1.contains(&officer),
        "a compliance officer is no member of a class group"
    );
    assert_eq!(members1.len(), 2 + 2, "director, teacher, two guardians");
    let everyone = members_of_group(&h.db, world.school_group()).await.unwrap();
    assert!(everyone.contains(&officer) && everyone.contains(&teacher2));
    assert_eq!(everyone.len(), 4 + 4, "four staff, four guardians");
    for g in [g1, g2, world.school_group()] {
        group_view_matches_the_roster(&h, &world, g).await;
    }
    assert!(members_of_group(&h.db, GroupId::generate())
        .await
        .unwrap()
        .is_empty());
}

async fn profile_shows_own_email_roles_children_and_groups<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let world = World::with_classes(2, 1, 1);
    h.sync(&world).await;
    let [g1, g2, school_group] = [world.groups[0], world.groups[1], world.school_group()];
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];

    let me = person(&h.db, guardian).await.unwrap().unwrap();
    assert_eq!(open_opt(&h, me.display_name.as_ref()).await, "Ouder");
    assert_eq!(
        open_opt(&h, me.email.as_ref()).await,
        "parent1@mail.example",
        "the owner sees their own address"
    );
    assert_eq!(me.schools.len(), 1);
    assert_eq!(
        (
            me.schools[0].school_id,
            me.schools[0].role,
            me.schools[0].guardian
        ),
        (world.school_id, None, true)
    );
    assert_eq!(
        (
            me.schools[0].name.as_str(),
            me.schools[0].brin.as_str(),
            me.schools[0].school_group_id
        ),
        ("De Regenboog", "12AB", school_group)
    );
    assert_eq!(me.children.len(), 1);
    assert_eq!(
        (
            me.children[0].child_id,
            me.children[0].group_id,
            me.children[0].guardian_ids.clone()
        ),
        (child, g1, vec![guardian])
    );
    assert_eq!(open(&h, &me.children[0].first_name).await, "Kind1");
    let groups: BTreeSet<GroupId> = me.groups.iter().map(|g| g.group_id).collect();
    assert_eq!(groups, BTreeSet::from([g1, school_group]));

    let teacher = person(&h.db, world.staff[2]).await.unwrap().unwrap();
    assert_eq!(
        open_opt(&h, teacher.email.as_ref()).await,
        "staff3@school.example"
    );
    assert_eq!(
        (teacher.schools[0].role, teacher.schools[0].guardian),
        (Some(StaffRole::Teacher), false)
    );
    assert!(teacher.children.is_empty());
    assert_eq!(
        teacher
            .groups
            .iter()
            .map(|g| g.group_id)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([g2, school_group])
    );

    let director = person(&h.db, world.director).await.unwrap().unwrap();
    assert_eq!(director.schools[0].role, Some(StaffRole::Director));
    assert_eq!(
        director.groups.len(),
        3,
        "a director is a member of every group of the school"
    );

    assert_eq!(child_view_guardians(&h, child).await, vec![guardian]);
    assert!(person(&h.db, PersonId::generate()).await.unwrap().is_none());
}

async fn child_view_guardians<S>(h: &Harness<S>, c: ChildId) -> Vec<PersonId> {
    child(&h.db, c)
        .await
        .unwrap()
        .map(|c| c.guardian_ids)
        .unwrap_or_default()
}

async fn unlinked_guardian_leaves_the_group<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 2, 2);
    h.sync(&world).await;
    let g = world.groups[0];
    let c = world.child_ids[0];
    let [leaving, staying] = [world.guardians_of(c)[0], world.guardians_of(c)[1]];
    assert!(members_of_group(&h.db, g).await.unwrap().contains(&leaving));

    world
        .school(
            Actor::Person(world.director),
            SchoolAction::UnlinkGuardian {
                child_id: c,
                guardian_id: leaving,
            },
        )
        .unwrap();
    h.sync(&world).await;
    for group_id in [g, world.school_group()] {
        let members = members_of_group(&h.db, group_id).await.unwrap();
        assert!(!members.contains(&leaving) && members.contains(&staying));
        let view = group(&h.db, group_id).await.unwrap().unwrap();
        assert!(view.guardians.iter().all(|gu| gu.person_id != leaving));
        group_view_matches_the_roster(&h, &world, group_id).await;
    }
    assert_eq!(child_view_guardians(&h, c).await, vec![staying]);
    let profile = person(&h.db, leaving)
        .await
        .unwrap()
        .expect("still known by name");
    assert!(profile.children.is_empty() && profile.groups.is_empty() && profile.schools.is_empty());
}

async fn invitation_status_follows_accept_approve_revoke_and_expiry<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(1, 2, 0);
    let teacher_id = world.staff[1];
    let teacher = Actor::Person(teacher_id);
    let [c1, c2] = [world.child_ids[0], world.child_ids[1]];
    let (accepted, accepter) = world.invite(teacher, c1).unwrap();
    let (approved, approvee) = world.invite(teacher, c1).unwrap();
    let (revoked, _) = world.invite(teacher, c2).unwrap();
    let (expired, _) = world.invite(teacher, c2).unwrap();
    let (pending, _) = world.invite(teacher, c2).unwrap();
    h.sync(&world).await;
    let g = world.groups[0];
    let all = invitations_of_group(&h.db, g).await.unwrap();
    assert_eq!(all.len(), 5);
    // Pages of two walk the same list in the same order, each invitation once.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = invitations_of_group_page(&h.db, g, after, 2).await.unwrap();
        after = page.last().map(|i| i.invitation_id);
        let done = page.len() < 2;
        paged.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(paged, all);
    assert!(all
        .iter()
        .all(|i| i.status == InvitationState::Pending && i.invited_by == teacher_id));
    assert!(all
        .iter()
        .all(|i| i.expires_at == i.invited_at + chrono::Duration::days(14)));
    for (n, invitation) in all.iter().enumerate() {
        assert_eq!(
            open(&h, &invitation.email).await,
            format!("parent{}@mail.example", n + 1),
            "staff see whom they invited"
        );
    }

    world.advance(chrono::Duration::hours(1));
    for (id, invitee) in [(accepted, accepter), (approved, approvee)] {
        let accept = InvitationAction::Accept {
            code_digest: GOOD_CODE.into(),
            display_name: "Ouder".into(),
        };
        world
            .invitation(Actor::Person(invitee), id, accept)
            .unwrap();
    }
    h.sync(&world).await;
    let status =
        |all: &[InvitationView], id| all.iter().find(|i| i.invitation_id == id).unwrap().status;
    let now = invitations_of_group(&h.db, g).await.unwrap();
    assert_eq!(
        (status(&now, accepted), status(&now, approved)),
        (InvitationState::Accepted, InvitationState::Accepted)
    );
    assert!(
        !members_of_group(&h.db, g)
            .await
            .unwrap()
            .contains(&approvee),
        "accepting alone makes nobody a member"
    );

    // Approved with a correction: the parent turned out to be the other child's.
    world.approve_and_link(teacher, approved, Some(c2)).unwrap();
    world
        .invitation(teacher, revoked, InvitationAction::Revoke)
        .unwrap();
    world.advance(chrono::Duration::days(15));
    world
        .invitation(Actor::System, expired, InvitationAction::Expire)
        .unwrap();
    h.sync(&world).await;
    let now = invitations_of_group(&h.db, g).await.unwrap();
    let states: Vec<(_, _)> = [accepted, approved, revoked, expired, pending]
        .iter()
        .map(|id| (*id, status(&now, *id)))
        .collect();
    assert_eq!(
        states,
        vec![
            (accepted, InvitationState::Accepted),
            (approved, InvitationState::Approved),
            (revoked, InvitationState::Revoked),
            (expired, InvitationState::Expired),
            (pending, InvitationState::Pending),
        ]
    );
    let corrected = now.iter().find(|i| i.invitation_id == approved).unwrap();
    assert_eq!(
        (corrected.child_id, corrected.corrected_from),
        (c2, Some(c1))
    );
    assert!(corrected.updated_at > corrected.invited_at);
    let unexpired = now.iter().find(|i| i.invitation_id == pending).unwrap();
    assert_eq!(
        unexpired.status_at(world.now),
        InvitationState::Expired,
        "past its date, even before the expiry job ran"
    );
    assert_eq!(
        unexpired.status_at(unexpired.invited_at),
        InvitationState::Pending
    );
    assert_eq!(child_view_guardians(&h, c2).await, vec![approvee]);
    assert!(members_of_group(&h.db, g)
        .await
        .unwrap()
        .contains(&approvee));
    assert!(invitations_of_group(&h.db, world.school_group())
        .await
        .unwrap()
        .is_empty());
}

async fn invitations_of_an_invitee_are_only_their_own<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = World::with_classes(1, 2, 0);
    let teacher = Actor::Person(world.staff[1]);
    let [c1, c2] = [world.child_ids[0], world.child_ids[1]];
    let (first, invitee) = world.invite(teacher, c1).unwrap();
    let (_, other) = world.invite(teacher, c2).unwrap();
    h.sync(&world).await;
    let own = memberships::invitations_of_invitee(&h.db, invitee)
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!((own[0].invitation_id, own[0].child_id), (first, c1));
    assert_eq!(open(&h, &own[0].email).await, "parent1@mail.example");
    let theirs = memberships::invitations_of_invitee(&h.db, other)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_ne!(theirs[0].invitation_id, first);
    assert!(
        memberships::invitations_of_invitee(&h.db, world.staff[1])
            .await
            .unwrap()
            .is_empty(),
        "the inviter is no invitee"
    );
}

async fn erased_person_shows_as_erased_in_the_group<S: EventStore + Clone>(mut h: Harness<S>) {
    let world = World::with_classes(1, 2, 1);
    h.sync(&world).await;
    let g = world.groups[0];
    let teacher = world.staff[1];
    let [c1, c2] = [world.child_ids[0], world.child_ids[1]];
    let erased_guardian = world.guardians_of(c1)[0];
    h.vault.erase(Subject::Person(teacher)).await.unwrap();
    h.vault
        .erase(Subject::Person(erased_guardian))
        .await
        .unwrap();
    h.vault.erase(Subject::Child(c2)).await.unwrap();

    let view = group(&h.db, g).await.unwrap().unwrap();
    for s in &view.staff {
        let expected = if s.person_id == teacher {
            "[erased]"
        } else {
            "Juf Staff 1"
        };
        assert_eq!(open_opt(&h, s.display_name.as_ref()).await, expected);
    }
    for gu in &view.guardians {
        let expected = if gu.person_id == erased_guardian {
            "[erased]"
        } else {
            "Ouder"
        };
        assert_eq!(open_opt(&h, gu.display_name.as_ref()).await, expected);
    }
    for c in &view.children {
        let expected = if c.child_id == c2 {
            ("[erased]", "[erased]")
        } else {
            ("Kind1", "V")
        };
        assert_eq!(
            (
                open(&h, &c.first_name).await.as_str(),
                open(&h, &c.last_initial).await.as_str()
            ),
            expected
        );
    }
    let profile = person(&h.db, teacher).await.unwrap().unwrap();
    assert_eq!(open_opt(&h, profile.email.as_ref()).await, "[erased]");
    assert_eq!(
        open_opt(&h, profile.display_name.as_ref()).await,
        "[erased]"
    );
    assert_eq!(
        profile.groups.len(),
        2,
        "the facts stay: still a member of the class and school groups"
    );
    let invitations = invitations_of_group(&h.db, g).await.unwrap();
    let erased_invitation = invitations
        .iter()
        .find(|i| i.invitee_id == erased_guardian)
        .unwrap();
    assert_eq!(open(&h, &erased_invitation.email).await, "[erased]");
}

async fn moved_and_corrected_child_shows_in_its_new_group_with_its_guardians<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 1, 1);
    let [g1, g2] = [world.groups[0], world.groups[1]];
    let c = world.child_ids[0];
    let guardian = world.guardians_of(c)[0];
    let (open_invitation, _) = world.invite(Actor::Person(world.staff[1]), c).unwrap();
    let director = Actor::Person(world.director);
    world
        .school(
            director,
            SchoolAction::MoveChild {
                child_id: c,
                to_group_id: g2,
            },
        )
        .unwrap();
    world
        .school(
            director,
            SchoolAction::CorrectChild {
                child_id: c,
                first_name: "Sanne".into(),
                last_initial: "B".into(),
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert!(group(&h.db, g1).await.unwrap().unwrap().children.is_empty());
    let view = group(&h.db, g2).await.unwrap().unwrap();
    let moved = view
        .children
        .iter()
        .find(|x| x.child_id == c)
        .expect("in the new group");
    assert_eq!(
        (
            open(&h, &moved.first_name).await.as_str(),
            open(&h, &moved.last_initial).await.as_str()
        ),
        ("Sanne", "B")
    );
    assert!(!members_of_group(&h.db, g1)
        .await
        .unwrap()
        .contains(&guardian));
    assert!(members_of_group(&h.db, g2)
        .await
        .unwrap()
        .contains(&guardian));
    for g in [g1, g2] {
        group_view_matches_the_roster(&h, &world, g).await;
    }
    let listed: Vec<_> = invitations_of_group(&h.db, g2)
        .await
        .unwrap()
        .iter()
        .map(|i| i.invitation_id)
        .collect();
    assert!(
        listed.contains(&open_invitation),
        "the open invitation followed the child"
    );
    assert_eq!(
        listed.len(),
        2,
        "with the approved one of the class's own pupil"
    );
    let stayed = invitations_of_group(&h.db, g1).await.unwrap();
    assert_eq!(
        stayed.len(),
        1,
        "the approved invitation stays where it was handled"
    );
    assert_eq!(
        (stayed[0].child_id, stayed[0].status),
        (c, InvitationState::Approved)
    );

    world
        .school(director, SchoolAction::UnenrollChild { child_id: c })
        .unwrap();
    h.sync(&world).await;
    assert!(child(&h.db, c).await.unwrap().is_none());
    assert!(
        !members_of_group(&h.db, world.school_group())
            .await
            .unwrap()
            .contains(&guardian),
        "guardians leave with the child"
    );
}

async fn staff_who_leave_or_are_unassigned_leave_their_groups<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let mut world = World::with_classes(2, 1, 1);
    let [g1, g2] = [world.groups[0], world.groups[1]];
    let [teacher1, teacher2] = [world.staff[1], world.staff[2]];
    let director = Actor::Person(world.director);
    world
        .school(
            director,
            SchoolAction::RemoveStaff {
                person_id: teacher1,
            },
        )
        .unwrap();
    world
        .school(
            director,
            SchoolAction::UnassignStaff {
                group_id: g2,
                person_id: teacher2,
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert!(!members_of_group(&h.db, g1)
        .await
        .unwrap()
        .contains(&teacher1));
    assert!(
        !members_of_group(&h.db, world.school_group())
            .await
            .unwrap()
            .contains(&teacher1),
        "left the school"
    );
    assert!(!members_of_group(&h.db, g2)
        .await
        .unwrap()
        .contains(&teacher2));
    assert!(
        members_of_group(&h.db, world.school_group())
            .await
            .unwrap()
            .contains(&teacher2),
        "still staff of the school"
    );
    let gone = person(&h.db, teacher1).await.unwrap().unwrap();
    assert!(gone.schools.is_empty() && gone.groups.is_empty());

    world
        .school(
            director,
            SchoolAction::ChangeStaffRole {
                person_id: teacher2,
                role: StaffRole::Director,
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert!(
        members_of_group(&h.db, g1)
            .await
            .unwrap()
            .contains(&teacher2),
        "a director oversees every group"
    );
    assert_eq!(
        memberships::staff_of_school(&h.db, world.school_id)
            .await
            .unwrap(),
        world.school.staff
    );
    for g in [g1, g2, world.school_group()] {
        group_view_matches_the_roster(&h, &world, g).await;
    }
}

/// A reproducible random history of a school: the `n`-th history of the deterministic runner
/// that is rich enough to exercise the roster (many events, invitations in several states,
/// guardians unlinked or children moved).
fn random_world(n: usize) -> World {
    let mut runner = TestRunner::deterministic();
    let strategy = history(400);
    let rich = (0..500)
        .map(|_| {
            let (groups, ops) = strategy.new_tree(&mut runner).unwrap().current();
            play(groups, &ops)
        })
        .filter(|world| {
            let statuses: BTreeSet<&str> = world
                .invitations
                .values()
                .map(|i| i.status.name())
                .collect();
            let reshuffled = world.log.iter().any(|r| {
                matches!(
                    &r.event,
                    Event::School(SchoolEvent::GuardianUnlinked(_) | SchoolEvent::ChildMoved(_))
                )
            });
            world.log.len() >= 200 && statuses.len() >= 4 && reshuffled
        })
        .nth(n);
    rich.expect("the deterministic runner yields rich histories")
}

async fn memberships_match_the_domain_roster_over_a_random_history<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let world = random_world(0);
    h.sync(&world).await;
    let mut groups = world.groups.clone();
    groups.push(world.school_group());
    for g in &groups {
        group_view_matches_the_roster(&h, &world, *g).await;
    }
    let mut listed = BTreeMap::new();
    for g in &groups {
        for i in invitations_of_group(&h.db, *g).await.unwrap() {
            listed.insert(i.invitation_id, i.status.as_str());
        }
    }
    let expected: BTreeMap<_, _> = world
        .invitations
        .iter()
        .map(|(id, i)| (*id, i.status.name()))
        .collect();
    assert_eq!(listed, expected);
    for c in &world.child_ids {
        let expected = world
            .school
            .children
            .get(c)
            .map(|e| (e.group_id, e.guardians.iter().copied().collect::<Vec<_>>()));
        assert_eq!(
            child(&h.db, *c)
                .await
                .unwrap()
                .map(|v| (v.group_id, v.guardian_ids)),
            expected
        );
    }
}

async fn rebuild_gives_identical_memberships<S: EventStore + Clone>(mut h: Harness<S>) {
    let mut world = random_world(1);
    h.sync(&world).await;
    let mut groups = world.groups.clone();
    groups.push(world.school_group());
    let people: Vec<PersonId> = world.staff.iter().chain(&world.invitees).copied().collect();
    let before = snapshot(&h, &groups, &people).await;
    let generation = h.projector.board().all()[0].generation;
    h.projector.rebuild(&[]).await.unwrap();
    assert_eq!(h.projector.board().all()[0].generation, generation + 1);
    assert!(
        snapshot(&h, &groups, &people).await == before,
        "the rebuilt read model answers the same"
    );

    // Live processing continues on the new generation.
    let g = world.groups[0];
    let teacher = world
        .add_staff(Actor::Person(world.director), StaffRole::Teacher)
        .unwrap();
    world
        .school(
            Actor::Person(world.director),
            SchoolAction::AssignStaff {
                group_id: g,
                person_id: teacher,
            },
        )
        .unwrap();
    h.sync(&world).await;
    assert!(members_of_group(&h.db, g).await.unwrap().contains(&teacher));
}

type Snapshot = (
    Vec<Option<GroupView>>,
    Vec<Vec<PersonId>>,
    Vec<Vec<InvitationView>>,
    Vec<Option<Profile>>,
);

async fn snapshot<S>(h: &Harness<S>, groups: &[GroupId], people: &[PersonId]) -> Snapshot {
    let mut out: Snapshot = Default::default();
    for g in groups {
        out.0.push(group(&h.db, *g).await.unwrap());
        out.1.push(members_of_group(&h.db, *g).await.unwrap());
        out.2.push(invitations_of_group(&h.db, *g).await.unwrap());
    }
    for p in people {
        out.3.push(person(&h.db, *p).await.unwrap());
    }
    assert!(out.0.iter().all(Option::is_some) && out.3.iter().all(Option::is_some));
    out
}

async fn personal_fields_rest_sealed_in_the_read_model<S: EventStore + Clone>(mut h: Harness<S>) {
    let world = World::with_classes(1, 2, 1);
    h.sync(&world).await;
    let mut stored = Vec::new();
    for sql in [
        "SELECT display_name, email FROM membership_people",
        "SELECT first_name, last_initial FROM membership_children",
        "SELECT email, email FROM membership_invitations",
    ] {
        for row in sqlx::query(sql).fetch_all(h.db.pool()).await.unwrap() {
            stored.push(row.get::<Option<String>, _>(0).unwrap());
            stored.push(row.get::<Option<String>, _>(1).unwrap());
        }
    }
    assert_eq!(
        stored.len(),
        2 * (2 + 2 + 2 + 2),
        "two staff and two guardians, two children, two invitations"
    );
    for text in &stored {
        common::assert_sealed_at_rest(text, &["@", "Juf", "Ouder", "Kind"]);
    }
}

async fn memberships_conversations_absences_and_activities_project_side_by_side<
    S: EventStore + Clone,
>(
    mut h: Harness<S>,
) {
    let world = random_world(0);
    h.sync(&world).await;
    let statuses = h.projector.board().all();
    assert_eq!(statuses.len(), 4);
    let head = h.store.head().await.unwrap();
    for status in statuses {
        assert_eq!(
            (status.failure, status.position),
            (None, head),
            "{}",
            status.name
        );
    }
}
