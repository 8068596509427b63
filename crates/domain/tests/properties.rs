//! Property tests over random histories built by driving the real deciders.

use kring_domain::child::{self, ChildEvent};
use kring_domain::school::SchoolEvent;
use kring_domain::simulation::{history, play, World};
use kring_domain::{consent, Category, ChildId, Event, PersonId, Purpose};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::collections::BTreeMap;

/// Rebuilds every aggregate of the world from its log alone and checks it equals the state the
/// world kept while deciding.
fn assert_replay_matches(world: &World) {
    let mut school = kring_domain::school::School::default();
    let mut children: BTreeMap<ChildId, child::Child> = BTreeMap::new();
    let mut posts = BTreeMap::new();
    let mut activities = BTreeMap::new();
    let mut invitations = BTreeMap::new();
    for r in &world.log {
        match (&r.event, r.stream.category()) {
            (Event::School(e), Category::School) => {
                school = kring_domain::school::evolve(school, e);
            }
            (Event::Child(e), Category::Child) => {
                let id = ChildId::from_uuid(r.stream.id());
                let state = children.remove(&id).unwrap_or_default();
                children.insert(id, child::evolve(state, e));
            }
            (Event::Post(e), Category::Post) => {
                let state = posts.remove(&r.stream.id()).unwrap_or_default();
                posts.insert(r.stream.id(), kring_domain::post::evolve(state, e));
            }
            (Event::Activity(e), Category::Activity) => {
                let state = activities.remove(&r.stream.id()).unwrap_or_default();
                activities.insert(r.stream.id(), kring_domain::activity::evolve(state, e));
            }
            (Event::Invitation(e), Category::Invitation) => {
                let state = invitations.remove(&r.stream.id()).unwrap_or_default();
                invitations.insert(r.stream.id(), kring_domain::invitation::evolve(state, e));
            }
            (Event::Person(_) | Event::Conversation(_) | Event::Access(_), _) => {}
            (event, category) => panic!("{} recorded on a {category:?} stream", event.event_type()),
        }
    }
    assert_eq!(school, world.school);
    for (id, state) in &world.children {
        assert_eq!(
            children.get(id).cloned().unwrap_or_default(),
            *state,
            "child {id}"
        );
    }
    for (id, state) in &world.posts {
        assert_eq!(
            posts.get(&id.as_uuid()).cloned().unwrap_or_default(),
            *state,
            "post {id}"
        );
    }
    for (id, state) in &world.activities {
        assert_eq!(
            activities.get(&id.as_uuid()).cloned().unwrap_or_default(),
            *state
        );
    }
    for (id, state) in &world.invitations {
        assert_eq!(
            invitations.get(&id.as_uuid()).cloned().unwrap_or_default(),
            *state
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_never_panic_and_replay_to_the_same_state((groups, ops) in history(120)) {
        let world = play(groups, &ops);
        assert_replay_matches(&world);
    }

    #[test]
    fn consent_rule_matches_a_simple_model((groups, ops) in history(150)) {
        let world = play(groups, &ops);
        // Model: the list of decisions per (child, purpose) in log order; effective iff the
        // last decision of every guardian who decided is a grant, and there is at least one.
        let mut decisions: BTreeMap<(ChildId, Purpose), Vec<(PersonId, bool)>> = BTreeMap::new();
        for r in &world.log {
            if let Event::Child(ChildEvent::ConsentDecided(d)) = &r.event {
                decisions.entry((d.child_id, d.purpose)).or_default().push((d.guardian_id, d.granted));
            }
        }
        for child_id in &world.child_ids {
            for purpose in Purpose::ALL {
                let list = decisions.get(&(*child_id, purpose)).cloned().unwrap_or_default();
                let guardians: std::collections::BTreeSet<PersonId> = list.iter().map(|(g, _)| *g).collect();
                let model = !guardians.is_empty()
                    && guardians.iter().all(|g| list.iter().rev().find(|(who, _)| who == g).is_some_and(|(_, granted)| *granted));
                let state = world.children.get(child_id).is_some_and(|c| world.school.consent_holds(&c.consents, purpose));
                prop_assert_eq!(state, model, "child {} purpose {}", child_id, purpose);
            }
        }
    }

    #[test]
    fn effective_consent_is_all_latest_grants_and_at_least_one(decisions in prop::collection::vec((0..3_u8, any::<bool>()), 0..20)) {
        let mut consents = consent::Consents::default();
        let guardians: Vec<PersonId> = (0..3).map(|_| PersonId::generate()).collect();
        let at = chrono::DateTime::<chrono::Utc>::default();
        for (g, granted) in &decisions {
            consents.record(Purpose::GroupCommunication, guardians[usize::from(*g)], consent::LatestDecision { granted: *granted, at, policy_version: 1, method: consent::ConsentMethod::App });
        }
        let mut latest: BTreeMap<u8, bool> = BTreeMap::new();
        for (g, granted) in &decisions {
            latest.insert(*g, *granted);
        }
        let model = !latest.is_empty() && latest.values().all(|g| *g);
        prop_assert_eq!(consents.is_effective(Purpose::GroupCommunication, 1), model);
    }

    #[test]
    fn invitation_state_machine_never_links_without_approval((groups, ops) in history(150)) {
        let world = play(groups, &ops);
        for (i, r) in world.log.iter().enumerate() {
            if let Event::School(SchoolEvent::GuardianLinked(link)) = &r.event {
                prop_assert!(
                    world.approved_before(link.invitation_id, link.child_id, link.guardian_id, i),
                    "guardian {} linked to child {} without an approval of invitation {}",
                    link.guardian_id, link.child_id, link.invitation_id
                );
            }
        }
        // And every linked guardian got there through an approved invitation.
        for (child_id, enrolment) in &world.school.children {
            for guardian in &enrolment.guardians {
                let approved = world.invitations.values().any(|inv| matches!(inv.status,
                    kring_domain::invitation::InvitationStatus::Approved { child_id: c, guardian_id: g, .. } if c == *child_id && g == *guardian));
                prop_assert!(approved);
            }
        }
    }

    #[test]
    fn slots_never_overbook((groups, ops) in history(200)) {
        let mut world = World::with_classes(groups, 3, 2);
        for op in &ops {
            let _ = world.apply(op);
            for activity in world.activities.values() {
                prop_assert!(activity.volunteers.len() <= activity.slots as usize);
            }
        }
    }

    #[test]
    fn event_json_round_trips((groups, ops) in history(120)) {
        let world = play(groups, &ops);
        for r in &world.log {
            let payload = r.event.to_payload().expect("payload");
            let text = serde_json::to_string(&payload).expect("json");
            let back: serde_json::Value = serde_json::from_str(&text).expect("parse");
            let decoded = Event::decode(r.event.event_type(), r.event.schema_version(), back).expect("decode");
            prop_assert_eq!(&decoded, &r.event);
        }
    }
}

#[test]
fn random_histories_exercise_every_kind_of_event() {
    // Guards the generator: a property over histories that never contain, say, a withdrawal
    // proves little. One fixed long history must produce most event types.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (groups, ops) = history(300).new_tree(&mut runner).expect("tree").current();
        for r in play(groups, &ops).log {
            seen.insert(r.event.event_type());
        }
    }
    for must in [
        "ConsentDecided",
        "GuardianLinked",
        "InvitationApproved",
        "PostPublished",
        "ChildTagged",
        "ChildUntagged",
        "MediaRemoved",
        "VolunteerSignedUp",
        "PlannedAbsenceReported",
        "ConversationStarted",
        "InvitationRevoked",
        "ChildMoved",
    ] {
        assert!(
            seen.contains(must),
            "random histories never produced {must}; saw {seen:?}"
        );
    }
}
