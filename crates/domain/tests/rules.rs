//! One test per domain rule, named after the rule it pins.

#![allow(clippy::unwrap_used)]

use chrono::Duration;
use kring_domain::access::Subject;
use kring_domain::activity::ActivityAction;
use kring_domain::child::ChildAction;
use kring_domain::conversation::ConversationAction;
use kring_domain::invitation::InvitationAction;
use kring_domain::post::{PostAction, PostEvent, RemovalGrounds, RemovalReason};
use kring_domain::school::{SchoolAction, StaffRole};
use kring_domain::simulation::{World, GOOD_CODE};
use kring_domain::visibility::{who_may_see, ViewReason, WithheldBecause};
use kring_domain::{
    ActivityId, Actor, ChildId, ConversationId, DomainError, Event, MessageId, PersonId, Purpose,
};

/// One class with a teacher and three children, each with two linked guardians.
fn class() -> (World, Actor) {
    let world = World::with_classes(1, 3, 2);
    let teacher = Actor::Person(world.staff[1]);
    (world, teacher)
}

fn accept(world: &mut World, invitation: kring_domain::InvitationId) -> Result<usize, DomainError> {
    let invitee = world.invitations[&invitation]
        .invitee_id
        .unwrap_or_else(PersonId::generate);
    world.invitation(
        Actor::Person(invitee),
        invitation,
        InvitationAction::Accept {
            code_digest: GOOD_CODE.into(),
            display_name: "Ouder".into(),
        },
    )
}

#[test]
fn nobody_is_linked_as_guardian_without_staff_approval() {
    let (mut world, teacher) = class();
    let child = world.child_ids[0];
    let (invitation, invitee) = world.invite(teacher, child).unwrap();
    let link = |world: &mut World| {
        let invitation = world.invitations[&invitation].clone();
        world.school(Actor::System, SchoolAction::LinkGuardian { invitation })
    };
    assert_eq!(
        link(&mut world),
        Err(DomainError::GuardianLinkWithoutApproval {
            invitation_id: invitation
        })
    );
    accept(&mut world, invitation).unwrap();
    assert_eq!(
        link(&mut world),
        Err(DomainError::GuardianLinkWithoutApproval {
            invitation_id: invitation
        }),
        "accepting alone does not link"
    );
    assert!(!world.school.is_guardian(invitee, child));
    world.approve_and_link(teacher, invitation, None).unwrap();
    assert!(world.school.is_guardian(invitee, child));
    assert_eq!(
        link(&mut world),
        Ok(0),
        "completing an approval again is a no-op"
    );
}

#[test]
fn only_staff_of_the_childs_group_approve_an_invitation() {
    let mut world = World::with_classes(2, 1, 0);
    let (child, other_teacher) = (world.child_ids[0], Actor::Person(world.staff[2]));
    let (invitation, _) = world.invite(Actor::Person(world.staff[1]), child).unwrap();
    accept(&mut world, invitation).unwrap();
    let refused = world.invitation(
        other_teacher,
        invitation,
        InvitationAction::Approve { child_id: None },
    );
    assert!(
        matches!(refused, Err(DomainError::NotStaffOfGroup { .. })),
        "{refused:?}"
    );
}

#[test]
fn approval_may_correct_the_child_before_linking() {
    let (mut world, teacher) = class();
    let (wrong, right) = (world.child_ids[0], world.child_ids[1]);
    let (invitation, invitee) = world.invite(teacher, wrong).unwrap();
    accept(&mut world, invitation).unwrap();
    world
        .approve_and_link(teacher, invitation, Some(right))
        .unwrap();
    assert!(world.school.is_guardian(invitee, right));
    assert!(!world.school.is_guardian(invitee, wrong));
}

#[test]
fn expired_invitation_cannot_be_accepted() {
    let (mut world, teacher) = class();
    let (invitation, _) = world.invite(teacher, world.child_ids[0]).unwrap();
    world.advance(Duration::days(14));
    let refused = accept(&mut world, invitation);
    assert!(
        matches!(refused, Err(DomainError::InvitationExpired { invitation_id, .. }) if invitation_id == invitation),
        "{refused:?}"
    );
    world
        .invitation(Actor::System, invitation, InvitationAction::Expire)
        .unwrap();
    assert!(matches!(
        accept(&mut world, invitation),
        Err(DomainError::InvitationExpired { .. })
    ));
}

#[test]
fn revoked_invitation_cannot_be_accepted() {
    let (mut world, teacher) = class();
    let (invitation, _) = world.invite(teacher, world.child_ids[0]).unwrap();
    world
        .invitation(teacher, invitation, InvitationAction::Revoke)
        .unwrap();
    assert_eq!(
        accept(&mut world, invitation),
        Err(DomainError::InvitationRevoked {
            invitation_id: invitation
        })
    );
}

#[test]
fn invitation_code_must_match() {
    let (mut world, teacher) = class();
    let (invitation, invitee) = world.invite(teacher, world.child_ids[0]).unwrap();
    let refused = world.invitation(
        Actor::Person(invitee),
        invitation,
        InvitationAction::Accept {
            code_digest: "guess".into(),
            display_name: "X".into(),
        },
    );
    assert_eq!(refused, Err(DomainError::InvitationCodeMismatch));
}

#[test]
fn only_a_guardian_of_the_child_changes_its_consent() {
    let (mut world, teacher) = class();
    let (child, other_child) = (world.child_ids[0], world.child_ids[1]);
    let other_parent = world.guardians_of(other_child)[0];
    let refused = world.decide_consent(other_parent, child, Purpose::GroupCommunication, true);
    assert!(
        matches!(refused, Err(DomainError::NotGuardian { person_id, child_id, .. }) if person_id == other_parent && child_id == child)
    );
    let Actor::Person(teacher) = teacher else {
        unreachable!()
    };
    assert!(world
        .decide_consent(teacher, child, Purpose::GroupCommunication, true)
        .is_err());
    let guardian = world.guardians_of(child)[0];
    assert_eq!(
        world.decide_consent(guardian, child, Purpose::GroupCommunication, true),
        Ok(1)
    );
}

#[test]
fn effective_consent_holds_iff_a_guardian_granted_and_no_guardians_latest_decision_is_a_withdrawal()
{
    let (mut world, _) = class();
    let child = world.child_ids[0];
    let [mum, dad] = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
    let effective = |w: &World| {
        w.children.get(&child).is_some_and(|c| {
            w.school
                .consent_holds(&c.consents, Purpose::GroupCommunication)
        })
    };
    assert!(!effective(&world), "opt-in: nothing decided, no consent");
    world
        .decide_consent(mum, child, Purpose::GroupCommunication, true)
        .unwrap();
    assert!(effective(&world), "one grant, no withdrawal");
    world
        .decide_consent(dad, child, Purpose::GroupCommunication, false)
        .unwrap();
    assert!(!effective(&world), "one guardian withdrew");
    world
        .decide_consent(dad, child, Purpose::GroupCommunication, true)
        .unwrap();
    assert!(
        effective(&world),
        "the withdrawal was replaced by a later grant"
    );
    world
        .decide_consent(mum, child, Purpose::GroupCommunication, false)
        .unwrap();
    assert!(!effective(&world));
    assert!(
        !world.school.consent_holds(
            &world.children[&child].consents,
            Purpose::PublicCommunication
        ),
        "purposes are separate"
    );
}

#[test]
fn consent_decisions_record_policy_version_and_method() {
    let (mut world, _) = class();
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    world
        .child(
            Actor::Person(guardian),
            child,
            ChildAction::DecideConsent {
                child_id: child,
                purpose: Purpose::InternalTraining,
                granted: true,
                method: kring_domain::consent::ConsentMethod::Paper,
            },
        )
        .unwrap();
    let decision = world.children[&child]
        .consents
        .decisions(Purpose::InternalTraining)
        .unwrap()[&guardian];
    assert_eq!(decision.policy_version, 1);
    assert_eq!(decision.method, kring_domain::consent::ConsentMethod::Paper);
    assert_eq!(decision.at, world.now);
}

#[test]
fn only_staff_assigned_to_a_group_post_to_it() {
    let mut world = World::with_classes(2, 1, 1);
    let (group_a, teacher_a, teacher_b) = (
        world.groups[0],
        Actor::Person(world.staff[1]),
        Actor::Person(world.staff[2]),
    );
    let refused = world.publish(teacher_b, group_a, &[vec![]]);
    assert!(
        matches!(refused, Err(DomainError::NotStaffOfGroup { group_id, .. }) if group_id == group_a),
        "{refused:?}"
    );
    let parent = Actor::Person(world.guardians_of(world.child_ids[0])[0]);
    assert!(matches!(
        world.publish(parent, group_a, &[vec![]]),
        Err(DomainError::NotStaffOfGroup { .. })
    ));
    assert!(world.publish(teacher_a, group_a, &[vec![]]).is_ok());
}

#[test]
fn only_the_director_posts_to_the_school_group() {
    let (mut world, teacher) = class();
    let school_group = world.school_group();
    assert!(matches!(
        world.publish(teacher, school_group, &[vec![]]),
        Err(DomainError::NotStaffOfGroup { .. })
    ));
    assert!(world
        .publish(Actor::Person(world.director), school_group, &[vec![]])
        .is_ok());
}

#[test]
fn only_children_of_the_audience_can_be_tagged() {
    let mut world = World::with_classes(2, 1, 1);
    let (group_a, teacher_a) = (world.groups[0], Actor::Person(world.staff[1]));
    let (child_a, child_b) = (world.child_ids[0], world.child_ids[1]);
    let refused = world.publish(teacher_a, group_a, &[vec![child_b]]);
    assert_eq!(
        refused.map(|_| ()),
        Err(DomainError::ChildNotInAudience {
            child_id: child_b,
            group_id: group_a
        })
    );
    let (post, media) = world.publish(teacher_a, group_a, &[vec![child_a]]).unwrap();
    let refused = world.post(
        teacher_a,
        post,
        PostAction::Tag {
            media_id: media[0],
            child_id: child_b,
        },
    );
    assert_eq!(
        refused,
        Err(DomainError::ChildNotInAudience {
            child_id: child_b,
            group_id: group_a
        })
    );
    // Every child of the school is in the school group's audience.
    let director = Actor::Person(world.director);
    assert!(world
        .publish(director, world.school_group(), &[vec![child_a, child_b]])
        .is_ok());
}

#[test]
fn removed_post_cannot_be_edited_tagged_or_removed_twice() {
    let (mut world, teacher) = class();
    let (group, child) = (world.groups[0], world.child_ids[0]);
    let (post, media) = world.publish(teacher, group, &[vec![]]).unwrap();
    world
        .post(
            teacher,
            post,
            PostAction::Remove {
                reason: "Verkeerde groep".into(),
            },
        )
        .unwrap();
    for action in [
        PostAction::Edit {
            body: "nieuw".into(),
        },
        PostAction::Tag {
            media_id: media[0],
            child_id: child,
        },
        PostAction::Remove {
            reason: "nog eens".into(),
        },
        PostAction::RemoveMedia {
            media_id: media[0],
            reason: "nog eens".into(),
        },
    ] {
        let refused = world.post(teacher, post, action.clone());
        assert!(
            matches!(refused, Err(DomainError::ContentRemoved { post_id, media_id: None, .. }) if post_id == post),
            "{action:?}: {refused:?}"
        );
    }
}

#[test]
fn removed_media_item_cannot_be_tagged_or_removed_twice() {
    let (mut world, teacher) = class();
    let (group, child) = (world.groups[0], world.child_ids[0]);
    let (post, media) = world.publish(teacher, group, &[vec![], vec![]]).unwrap();
    world
        .post(
            teacher,
            post,
            PostAction::RemoveMedia {
                media_id: media[0],
                reason: "Onscherp".into(),
            },
        )
        .unwrap();
    for action in [
        PostAction::Tag {
            media_id: media[0],
            child_id: child,
        },
        PostAction::RemoveMedia {
            media_id: media[0],
            reason: "nog eens".into(),
        },
    ] {
        assert!(
            matches!(world.post(teacher, post, action), Err(DomainError::ContentRemoved { media_id: Some(m), .. }) if m == media[0])
        );
    }
    assert!(
        world
            .post(
                teacher,
                post,
                PostAction::Tag {
                    media_id: media[1],
                    child_id: child
                }
            )
            .is_ok(),
        "the other item is untouched"
    );
}

#[test]
fn only_author_director_or_operator_remove_content() {
    let mut world = World::with_classes(1, 1, 1);
    let (group, teacher) = (world.groups[0], Actor::Person(world.staff[1]));
    let second = world
        .add_staff(Actor::Person(world.director), StaffRole::Teacher)
        .unwrap();
    world
        .school(
            Actor::Person(world.director),
            SchoolAction::AssignStaff {
                group_id: group,
                person_id: second,
            },
        )
        .unwrap();
    let (post, _) = world.publish(teacher, group, &[vec![]]).unwrap();
    let refused = world.post(
        Actor::Person(second),
        post,
        PostAction::Remove { reason: "x".into() },
    );
    assert!(matches!(refused, Err(DomainError::NotAllowed { .. })));
    // The operator is no data subject: no free text, only its fixed reason.
    assert!(matches!(
        world.post(
            Actor::Operator,
            post,
            PostAction::Remove {
                reason: "Juridische grond".into()
            }
        ),
        Err(DomainError::Invalid {
            field: "reason",
            ..
        })
    ));
    assert!(world
        .post(
            Actor::Operator,
            post,
            PostAction::Remove {
                reason: RemovalGrounds::ByTheOperator
            }
        )
        .is_ok());
}

#[test]
fn a_removal_reason_typed_by_a_person_is_sealed_for_them_and_fixed_reasons_are_no_text() {
    let (mut world, teacher) = class();
    let (post, media) = world
        .publish(teacher, world.groups[0], &[vec![], vec![]])
        .unwrap();
    let removed = |world: &World| match world.log.last().map(|r| &r.event) {
        Some(Event::Post(PostEvent::MediaRemoved(e))) => e.reason.clone(),
        Some(Event::Post(PostEvent::PostRemoved(e))) => e.reason.clone(),
        other => panic!("no removal recorded: {other:?}"),
    };
    world
        .post(
            teacher,
            post,
            PostAction::RemoveMedia {
                media_id: media[0],
                reason: "Sam's ouders vroegen het".into(),
            },
        )
        .unwrap();
    let RemovalReason::Given { text } = removed(&world) else {
        panic!("a person's reason is their text");
    };
    assert_eq!(text.subject(), Subject::Person(teacher.person().unwrap()));
    assert_eq!(
        text.plain().map(String::as_str),
        Some("Sam's ouders vroegen het")
    );
    // Fixed reasons belong to their actor only.
    for (actor, grounds) in [
        (teacher, RemovalGrounds::ShowsAnErasedChild),
        (teacher, RemovalGrounds::InterruptedRemoval),
        (Actor::Operator, RemovalGrounds::InterruptedRemoval),
        (Actor::System, RemovalGrounds::ByTheOperator),
    ] {
        let refused = world.post(
            actor,
            post,
            PostAction::RemoveMedia {
                media_id: media[1],
                reason: grounds.clone(),
            },
        );
        assert!(
            matches!(refused, Err(DomainError::NotAllowed { .. })),
            "{actor} with {grounds:?}: {refused:?}"
        );
    }
    for actor in [Actor::System, Actor::Operator] {
        assert!(matches!(
            world.post(
                actor,
                post,
                PostAction::RemoveMedia {
                    media_id: media[1],
                    reason: "vrije tekst".into(),
                },
            ),
            Err(DomainError::Invalid {
                field: "reason",
                ..
            })
        ));
    }
    world
        .post(
            Actor::System,
            post,
            PostAction::Remove {
                reason: RemovalGrounds::InterruptedRemoval,
            },
        )
        .unwrap();
    assert_eq!(removed(&world), RemovalReason::InterruptedRemoval);
}

#[test]
fn content_expires_only_after_the_retention_period() {
    let (mut world, teacher) = class();
    let (post, _) = world.publish(teacher, world.groups[0], &[vec![]]).unwrap();
    assert!(matches!(
        world.post(Actor::System, post, PostAction::Expire),
        Err(DomainError::RetentionNotReached { .. })
    ));
    world.advance(Duration::days(365));
    assert_eq!(world.post(Actor::System, post, PostAction::Expire), Ok(1));
    assert!(world.posts[&post].expired);
}

#[test]
fn planned_absence_needs_the_schools_minimum_notice() {
    let (mut world, _) = class();
    let child = world.child_ids[0];
    let guardian = Actor::Person(world.guardians_of(child)[0]);
    let today = kring_domain::child::earliest_absence_day(world.now, 0);
    let report = |world: &mut World, from| {
        let absence_id = kring_domain::AbsenceId::generate();
        world.child(
            guardian,
            child,
            ChildAction::ReportAbsence {
                child_id: child,
                absence_id,
                from,
                to: from,
                reason: "Bruiloft".into(),
            },
        )
    };
    let refused = report(&mut world, today);
    assert_eq!(
        refused,
        Err(DomainError::AbsenceNoticeTooShort {
            child_id: child,
            from: today,
            earliest: today + Duration::days(1),
            notice_days: 1
        })
    );
    assert_eq!(report(&mut world, today + Duration::days(1)), Ok(1));
    let mut settings = world.school.settings.clone();
    settings.absence_notice_days = 3;
    world
        .school(
            Actor::Person(world.director),
            SchoolAction::ChangeSettings(settings),
        )
        .unwrap();
    assert!(matches!(
        report(&mut world, today + Duration::days(2)),
        Err(DomainError::AbsenceNoticeTooShort { notice_days: 3, .. })
    ));
}

#[test]
fn volunteer_slot_is_never_overbooked() {
    let (mut world, teacher) = class();
    let group = world.groups[0];
    let activity_id = ActivityId::generate();
    let starts_at = world.now + Duration::days(7);
    world
        .activity(
            teacher,
            activity_id,
            ActivityAction::Schedule {
                activity_id,
                group_id: group,
                title: "Schoolreisje".into(),
                starts_at,
                ends_at: starts_at + Duration::hours(5),
                volunteer_slots: 2,
            },
        )
        .unwrap();
    let parents: Vec<PersonId> = world
        .child_ids
        .iter()
        .flat_map(|c| world.guardians_of(*c))
        .collect();
    world
        .activity(
            Actor::Person(parents[0]),
            activity_id,
            ActivityAction::SignUp,
        )
        .unwrap();
    assert!(matches!(
        world.activity(
            Actor::Person(parents[0]),
            activity_id,
            ActivityAction::SignUp
        ),
        Err(DomainError::AlreadyVolunteering { .. })
    ));
    world
        .activity(
            Actor::Person(parents[1]),
            activity_id,
            ActivityAction::SignUp,
        )
        .unwrap();
    assert_eq!(
        world.activity(
            Actor::Person(parents[2]),
            activity_id,
            ActivityAction::SignUp
        ),
        Err(DomainError::ActivityFull {
            activity_id,
            slots: 2
        })
    );
    world
        .activity(
            Actor::Person(parents[1]),
            activity_id,
            ActivityAction::Withdraw,
        )
        .unwrap();
    assert_eq!(
        world.activity(
            Actor::Person(parents[2]),
            activity_id,
            ActivityAction::SignUp
        ),
        Ok(1)
    );
    assert_eq!(world.activities[&activity_id].volunteers.len(), 2);
}

#[test]
fn only_guardians_in_the_group_volunteer() {
    let mut world = World::with_classes(2, 1, 1);
    let (group_a, teacher_a) = (world.groups[0], Actor::Person(world.staff[1]));
    let parent_b = world.guardians_of(world.child_ids[1])[0];
    let activity_id = ActivityId::generate();
    let starts_at = world.now + Duration::days(7);
    world
        .activity(
            teacher_a,
            activity_id,
            ActivityAction::Schedule {
                activity_id,
                group_id: group_a,
                title: "Luizencontrole".into(),
                starts_at,
                ends_at: starts_at + Duration::hours(1),
                volunteer_slots: 3,
            },
        )
        .unwrap();
    assert_eq!(
        world.activity(Actor::Person(parent_b), activity_id, ActivityAction::SignUp),
        Err(DomainError::NotGuardianInGroup {
            person_id: parent_b,
            group_id: group_a
        })
    );
}

#[test]
fn parents_cannot_message_other_parents() {
    let (mut world, _) = class();
    let (child, other_child) = (world.child_ids[0], world.child_ids[1]);
    let parent = world.guardians_of(child)[0];
    let other_parent = world.guardians_of(other_child)[0];
    let conversation_id = ConversationId::generate();
    let start = |participants| ConversationAction::Start {
        conversation_id,
        child_id: child,
        participants,
        message_id: MessageId::generate(),
        body: "Hallo".into(),
    };
    let refused = world.conversation(
        Actor::Person(parent),
        conversation_id,
        start(vec![other_parent]),
    );
    assert_eq!(
        refused,
        Err(DomainError::ParticipantNotAllowed {
            person_id: other_parent,
            child_id: child
        })
    );
    let co_parent = world.guardians_of(child)[1];
    assert_eq!(
        world.conversation(
            Actor::Person(parent),
            conversation_id,
            start(vec![co_parent])
        ),
        Err(DomainError::ConversationNeedsStaffAndGuardian { child_id: child }),
        "guardians alone are not a conversation with the school"
    );
    assert_eq!(
        world.conversation(Actor::Person(parent), conversation_id, start(vec![])),
        Ok(2),
        "default: the staff of the child's group"
    );
    assert!(world.conversations[&conversation_id]
        .participants
        .contains(&world.staff[1]));
    let refused = world.conversation(
        Actor::Person(other_parent),
        conversation_id,
        ConversationAction::Post {
            message_id: MessageId::generate(),
            body: "Ik lees mee".into(),
        },
    );
    assert!(matches!(refused, Err(DomainError::NotParticipant { .. })));
}

#[test]
fn staff_of_the_audience_always_see_media() {
    let (mut world, teacher) = class();
    let child = world.child_ids[0];
    let (post, media) = world
        .publish(teacher, world.groups[0], &[vec![child]])
        .unwrap();
    let answer = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    for staff in [world.staff[0], world.staff[1]] {
        assert!(answer
            .viewers
            .iter()
            .any(|v| v.person_id == staff && v.reason == ViewReason::Staff));
    }
}

#[test]
fn guardian_still_sees_own_child_without_consent() {
    let (mut world, teacher) = class();
    let child = world.child_ids[0];
    let (post, media) = world
        .publish(teacher, world.groups[0], &[vec![child]])
        .unwrap();
    let answer = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    for guardian in world.guardians_of(child) {
        assert!(answer
            .viewers
            .iter()
            .any(|v| v.person_id == guardian && v.reason == ViewReason::OwnChild));
    }
    let others: Vec<PersonId> = world.child_ids[1..]
        .iter()
        .flat_map(|c| world.guardians_of(*c))
        .collect();
    for parent in others {
        let withheld = answer
            .withheld
            .iter()
            .find(|w| w.person_id == parent)
            .expect("withheld");
        assert_eq!(
            withheld.because,
            vec![WithheldBecause {
                child_id: child,
                purpose: Purpose::GroupCommunication
            }]
        );
    }
}

#[test]
fn withdrawn_consent_hides_existing_photo_from_other_parents() {
    let (mut world, teacher) = class();
    let child = world.child_ids[0];
    let [mum, dad] = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
    world
        .decide_consent(mum, child, Purpose::GroupCommunication, true)
        .unwrap();
    let (post, media) = world
        .publish(teacher, world.groups[0], &[vec![child]])
        .unwrap();
    let other_parent = world.guardians_of(world.child_ids[1])[0];
    let before = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    assert!(before.may_see(other_parent));
    assert!(before.withheld.is_empty());
    world
        .decide_consent(dad, child, Purpose::GroupCommunication, false)
        .unwrap();
    let after = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    assert!(!after.may_see(other_parent));
    assert!(
        after.may_see(mum) && after.may_see(dad),
        "the child's own guardians still see it"
    );
    assert_eq!(
        after.withheld.len(),
        4,
        "the two other children's four parents"
    );
}

#[test]
fn consent_for_the_school_group_is_school_communication() {
    let (mut world, _) = class();
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
    let director = Actor::Person(world.director);
    let (post, media) = world
        .publish(director, world.school_group(), &[vec![child]])
        .unwrap();
    let answer = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    assert!(answer.withheld.iter().all(|w| w.because
        == vec![WithheldBecause {
            child_id: child,
            purpose: Purpose::SchoolCommunication
        }]));
    assert_eq!(answer.withheld.len(), 4);
}

#[test]
fn removed_media_is_visible_to_nobody() {
    let (mut world, teacher) = class();
    let (post, media) = world.publish(teacher, world.groups[0], &[vec![]]).unwrap();
    world
        .post(
            teacher,
            post,
            PostAction::RemoveMedia {
                media_id: media[0],
                reason: "Privacy".into(),
            },
        )
        .unwrap();
    let answer = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    assert!(answer.viewers.is_empty() && answer.withheld.is_empty());
}

#[test]
fn parent_removed_from_group_loses_access() {
    let (mut world, teacher) = class();
    let child = world.child_ids[0];
    let (post, media) = world.publish(teacher, world.groups[0], &[vec![]]).unwrap();
    let guardian = world.guardians_of(child)[0];
    assert!(who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children
    )
    .unwrap()
    .may_see(guardian));
    world
        .school(
            Actor::Person(world.director),
            SchoolAction::UnlinkGuardian {
                child_id: child,
                guardian_id: guardian,
            },
        )
        .unwrap();
    let answer = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    assert!(!answer.may_see(guardian));
    assert!(
        answer.withheld.iter().all(|w| w.person_id != guardian),
        "no longer in the audience at all"
    );
}

#[test]
fn unknown_ids_are_not_found_and_change_nothing() {
    let (mut world, teacher) = class();
    let before = world.log.len();
    let ghost = ChildId::generate();
    assert!(matches!(
        world.decide_consent(
            PersonId::generate(),
            ghost,
            Purpose::GroupCommunication,
            true
        ),
        Err(DomainError::NotFound { kind: "child", .. })
    ));
    assert!(matches!(
        world.invite(teacher, ghost),
        Err(DomainError::NotFound { kind: "child", .. })
    ));
    assert_eq!(world.log.len(), before);
}

#[test]
fn a_child_is_known_by_first_name_and_last_initial_only() {
    let (mut world, _) = class();
    let refused = world.school(
        Actor::Person(world.director),
        SchoolAction::EnrollChild {
            child_id: ChildId::generate(),
            group_id: world.groups[0],
            first_name: "Sanne".into(),
            last_initial: "de Vries".into(),
        },
    );
    assert!(matches!(
        refused,
        Err(DomainError::Invalid {
            field: "last_initial",
            ..
        })
    ));
}

#[test]
fn quiet_hours_are_for_staff_only() {
    let (mut world, teacher) = class();
    let schedule = kring_domain::person::QuietHours {
        timezone: "Europe/Amsterdam".into(),
        weekly: vec![],
    };
    let parent = world.guardians_of(world.child_ids[0])[0];
    let refused = world.person(
        Actor::Person(parent),
        parent,
        kring_domain::person::PersonAction::SetQuietHours(schedule.clone()),
    );
    assert!(matches!(refused, Err(DomainError::NotAllowed { .. })));
    let Actor::Person(t) = teacher else {
        unreachable!()
    };
    assert_eq!(
        world.person(
            teacher,
            t,
            kring_domain::person::PersonAction::SetQuietHours(schedule)
        ),
        Ok(1)
    );
    let bad = kring_domain::person::QuietHours {
        timezone: "Mars/Olympus".into(),
        weekly: vec![],
    };
    assert!(matches!(
        world.person(
            teacher,
            t,
            kring_domain::person::PersonAction::SetQuietHours(bad)
        ),
        Err(DomainError::Invalid {
            field: "timezone",
            ..
        })
    ));
}

#[test]
fn a_person_links_one_identity_of_their_own() {
    let (mut world, teacher) = class();
    let Actor::Person(t) = teacher else {
        unreachable!()
    };
    let digest = "ab".repeat(32);
    let identity = |subject: &str| {
        kring_domain::person::SsoIdentity::new(t, "https://idp.example", subject, digest.clone())
    };
    let link = |identity| kring_domain::person::PersonAction::LinkIdentity {
        person_id: t,
        identity,
    };
    // Someone else, or the operator, cannot link it for them.
    let parent = world.guardians_of(world.child_ids[0])[0];
    for actor in [Actor::Person(parent), Actor::Operator] {
        let refused = world.person(actor, t, link(identity("juf").unwrap()));
        assert!(
            matches!(refused, Err(DomainError::NotAllowed { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(
        world.person(teacher, t, link(identity("juf").unwrap())),
        Ok(1)
    );
    assert!(matches!(
        world.person(teacher, t, link(identity("juf-2").unwrap())),
        Err(DomainError::AlreadyDone { .. })
    ));
    // The subject is checked, and so is the digest.
    assert!(identity("").is_err());
    assert!(identity(&"x".repeat(256)).is_err());
    assert!(
        kring_domain::person::SsoIdentity::new(t, "https://idp.example", "juf", "xyz".into())
            .is_err()
    );
}

#[test]
fn only_the_operator_revokes_a_token_and_only_once() {
    let jti = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    let fresh = kring_domain::access::AccessLog::default();
    for actor in [
        Actor::Person(kring_domain::PersonId::generate()),
        Actor::System,
    ] {
        assert!(matches!(
            kring_domain::access::revoke_token(&fresh, actor, jti, now),
            Err(DomainError::NotAllowed { .. })
        ));
    }
    let events = kring_domain::access::revoke_token(&fresh, Actor::Operator, jti, now).unwrap();
    let revoked = events.iter().fold(fresh, kring_domain::access::evolve);
    assert!(revoked.revoked);
    assert!(matches!(
        kring_domain::access::revoke_token(&revoked, Actor::Operator, jti, now),
        Err(DomainError::AlreadyDone { .. })
    ));
}

/// The default policy's purposes, with `purpose`'s description replaced by `reworded` (when
/// given) and `dropped` left out.
fn policy_with(
    reworded: Option<(Purpose, &str)>,
    dropped: Option<Purpose>,
) -> Vec<kring_domain::school::PolicyPurpose> {
    Purpose::ALL
        .into_iter()
        .filter(|p| Some(*p) != dropped)
        .map(|purpose| kring_domain::school::PolicyPurpose {
            purpose,
            description: match reworded {
                Some((p, text)) if p == purpose => text.to_owned(),
                _ => purpose.default_description().to_owned(),
            },
        })
        .collect()
}

#[test]
fn a_reworded_purpose_needs_a_new_decision_and_an_unchanged_one_keeps_its_decisions() {
    let (mut world, teacher) = class();
    let child = world.child_ids[0];
    let other = world.child_ids[1];
    let mum = world.guardians_of(child)[0];
    for purpose in [Purpose::GroupCommunication, Purpose::SchoolCommunication] {
        world.decide_consent(mum, child, purpose, true).unwrap();
    }
    // A photo of the child, seen by another family thanks to the consent.
    let (post, media) = world
        .publish(teacher, world.groups[0], &[vec![child]])
        .unwrap();
    let other_parent = world.guardians_of(other)[0];
    let sees = |w: &World| {
        who_may_see(&w.school, &w.posts[&post], media[0], &w.children)
            .unwrap()
            .may_see(other_parent)
    };
    assert!(sees(&world));
    let director = Actor::Person(world.director);
    world
        .school(
            director,
            SchoolAction::PublishConsentPolicy {
                purposes: policy_with(
                    Some((
                        Purpose::GroupCommunication,
                        "Foto's én video's in de klas-app.",
                    )),
                    None,
                ),
            },
        )
        .unwrap();
    let policy = world.school.policy.clone().unwrap();
    assert_eq!(policy.version, 2);
    let consents = &world.children[&child].consents;
    assert!(!policy.holds(consents, Purpose::GroupCommunication));
    assert!(policy.needs_decision(consents, Purpose::GroupCommunication));
    assert!(
        policy.holds(consents, Purpose::SchoolCommunication),
        "unchanged text"
    );
    assert!(!policy.needs_decision(consents, Purpose::SchoolCommunication));
    assert!(
        !sees(&world),
        "withheld until a guardian decides under version 2"
    );
    let answer = who_may_see(
        &world.school,
        &world.posts[&post],
        media[0],
        &world.children,
    )
    .unwrap();
    assert!(answer.withheld.iter().any(|w| w.person_id == other_parent
        && w.because
            == vec![WithheldBecause {
                child_id: child,
                purpose: Purpose::GroupCommunication
            }]));
    world
        .decide_consent(mum, child, Purpose::GroupCommunication, true)
        .unwrap();
    assert!(sees(&world), "decided again under the new meaning");
    // A third version that keeps the reworded text keeps the new decision.
    world
        .school(
            director,
            SchoolAction::PublishConsentPolicy {
                purposes: policy_with(
                    Some((
                        Purpose::GroupCommunication,
                        "Foto's én video's in de klas-app.",
                    )),
                    Some(Purpose::ExternalResearch),
                ),
            },
        )
        .unwrap();
    assert!(sees(&world));
}

#[test]
fn a_purpose_the_policy_no_longer_asks_for_has_no_consent() {
    let (mut world, _) = class();
    let child = world.child_ids[0];
    let mum = world.guardians_of(child)[0];
    world
        .decide_consent(mum, child, Purpose::InternalResearch, true)
        .unwrap();
    assert!(world
        .school
        .consent_holds(&world.children[&child].consents, Purpose::InternalResearch));
    world
        .school(
            Actor::Person(world.director),
            SchoolAction::PublishConsentPolicy {
                purposes: policy_with(None, Some(Purpose::InternalResearch)),
            },
        )
        .unwrap();
    assert!(!world
        .school
        .consent_holds(&world.children[&child].consents, Purpose::InternalResearch));
    assert_eq!(
        world.decide_consent(mum, child, Purpose::InternalResearch, true),
        Err(DomainError::PurposeNotInPolicy {
            purpose: Purpose::InternalResearch,
            policy_version: 2
        })
    );
}

/// Two classes of three children: class 0 goes up into a new group, class 1 leaves.
fn year_plan(world: &World) -> kring_domain::school::YearTransition {
    use kring_domain::school::{Destination, GroupPlan, YearTransition};
    let leaving = world.groups[1];
    YearTransition {
        effective_on: chrono::NaiveDate::from_ymd_opt(2027, 8, 30).unwrap(),
        new_groups: vec![(kring_domain::GroupId::generate(), "Groep 4 (2027)".into())],
        groups: vec![
            GroupPlan {
                group_id: world.groups[0],
                children_to: Some(Destination::NewGroup("Groep 4 (2027)".into())),
                leavers: vec![],
                archive: true,
            },
            GroupPlan {
                group_id: leaving,
                children_to: None,
                leavers: world.school.audience_children(leaving).collect(),
                archive: true,
            },
        ],
    }
}

#[test]
fn a_year_transition_writes_exactly_what_its_preview_says_and_only_once() {
    use kring_domain::school::{plan_transition, TransitionChange};
    let mut world = World::with_classes(2, 3, 2);
    let director = Actor::Person(world.director);
    let plan = year_plan(&world);
    assert!(matches!(
        plan_transition(&world.school, Actor::Person(world.staff[1]), &plan),
        Err(DomainError::NotAllowed { .. })
    ));
    let preview = plan_transition(&world.school, director, &plan).unwrap();
    let kinds = |changes: &[TransitionChange]| {
        changes
            .iter()
            .map(|c| match c {
                TransitionChange::GroupCreated { .. } => "created",
                TransitionChange::ChildMoved { .. } => "moved",
                TransitionChange::ChildLeft { .. } => "left",
                TransitionChange::GroupArchived { .. } => "archived",
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&preview),
        ["created", "moved", "moved", "moved", "left", "left", "left", "archived", "archived"]
    );
    let leaver = world
        .school
        .audience_children(world.groups[1])
        .next()
        .unwrap();
    let leaver_guardians = world.guardians_of(leaver);
    assert!(preview.iter().any(|c| matches!(c,
        TransitionChange::ChildLeft { child_id, guardians_unlinked, guardians_leaving_school, .. }
            if *child_id == leaver && *guardians_unlinked == leaver_guardians
                && *guardians_leaving_school == leaver_guardians)));
    let written = world
        .school(director, SchoolAction::YearTransition(plan.clone()))
        .unwrap();
    assert_eq!(written, preview.len(), "one event per change");
    let new_group = match &preview[0] {
        TransitionChange::GroupCreated { group_id, .. } => *group_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(world.school.audience_children(new_group).count(), 3);
    assert!(!world.school.children.contains_key(&leaver));
    assert!(world.school.groups[&world.groups[0]].archived);
    // Applying it again: the new group is found by its name, nothing is left to change.
    assert_eq!(plan_transition(&world.school, director, &plan).unwrap(), []);
    assert_eq!(
        world.school(director, SchoolAction::YearTransition(plan)),
        Ok(0)
    );
    // An archived group takes no posts, children or activities.
    let teacher = Actor::Person(world.staff[1]);
    assert_eq!(
        world
            .publish(teacher, world.groups[0], &[vec![]])
            .map(|_| ()),
        Err(DomainError::GroupArchived {
            group_id: world.groups[0]
        })
    );
    assert!(matches!(
        world.school(
            director,
            SchoolAction::EnrollChild {
                child_id: ChildId::generate(),
                group_id: world.groups[0],
                first_name: "Nieuw".into(),
                last_initial: "N".into(),
            },
        ),
        Err(DomainError::GroupArchived { .. })
    ));
}

#[test]
fn a_year_transition_refuses_to_archive_a_group_that_keeps_children() {
    use kring_domain::school::{plan_transition, GroupPlan, YearTransition};
    let world = World::with_classes(2, 3, 2);
    let director = Actor::Person(world.director);
    let keeps = YearTransition {
        effective_on: chrono::NaiveDate::from_ymd_opt(2027, 8, 30).unwrap(),
        new_groups: vec![],
        groups: vec![GroupPlan {
            group_id: world.groups[0],
            children_to: None,
            leavers: vec![],
            archive: true,
        }],
    };
    assert!(matches!(
        plan_transition(&world.school, director, &keeps),
        Err(DomainError::Invalid {
            field: "groups.archive",
            ..
        })
    ));
    let into_itself = YearTransition {
        groups: vec![GroupPlan {
            group_id: world.groups[0],
            children_to: Some(kring_domain::school::Destination::Group(world.groups[0])),
            leavers: vec![],
            archive: false,
        }],
        ..keeps.clone()
    };
    assert!(plan_transition(&world.school, director, &into_itself).is_err());
    let into_archived = YearTransition {
        groups: vec![
            GroupPlan {
                group_id: world.groups[0],
                children_to: Some(kring_domain::school::Destination::Group(world.groups[1])),
                leavers: vec![],
                archive: false,
            },
            GroupPlan {
                group_id: world.groups[1],
                children_to: None,
                leavers: world.school.audience_children(world.groups[1]).collect(),
                archive: true,
            },
        ],
        ..keeps
    };
    assert!(matches!(
        plan_transition(&world.school, director, &into_archived),
        Err(DomainError::Invalid {
            field: "groups.children_to",
            ..
        })
    ));
}
