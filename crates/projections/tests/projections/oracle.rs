//! The oracle of the media-visibility and current-consent read models.
//!
//! Random school histories are made by driving the domain's deciders (the simulated [`World`],
//! with steps aimed at everything visibility depends on: tagged photos in class and school
//! posts, grants and withdrawals by several guardians, guardians linked and unlinked, children
//! moving groups or leaving, staff leaving, changing role or group, tags added and taken off,
//! media and posts removed or expired, consent-policy versions that reword or drop purposes,
//! year transitions that move a class on, let a child leave and archive the class). A naive model, written below straight from the list of
//! domain events and sharing no code with the domain's rule (`visibility::who_may_see`,
//! `Consents::is_effective`, `ConsentPolicy::holds`) or the read models, says for every media item who may see it and
//! why and who is withheld because of which child and purpose, and for every child and purpose
//! whether consent holds and each guardian's latest decision. The read models, asked through
//! their query functions, must say exactly the same:
//!
//! 1. incrementally: the log is written in random chunks and the projector catches up after
//!    each one (compared after every chunk, against the model of that prefix); one chunk
//!    arrives while a rebuild from zero runs, the live generation following each event;
//! 2. after a rebuild from zero;
//! 3. after a crash halfway: a projector on a second read database applies the first half of
//!    the log, then part of the rest is applied in a transaction that never commits (sometimes
//!    flushed, sometimes not) on a connection that is then dropped, the projector dies, and a
//!    new one on the same read database and store — with fresh projection instances, as after a
//!    process crash, or the same ones, as after a cancelled future — catches up.
//!
//! On SQLite files and on PostgreSQL (two fresh databases per case: the store with the first
//! read database, and the crash's read database).

#![allow(clippy::unwrap_used)]

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::Harness;
use kring_domain::child::ChildEvent;
use kring_domain::consent::ConsentMethod;
use kring_domain::invitation::InvitationAction;
use kring_domain::post::{PostAction, PostEvent};
use kring_domain::school::{
    Destination, GroupPlan, PolicyPurpose, SchoolAction, SchoolEvent, StaffRole, YearTransition,
};
use kring_domain::simulation::{op, Op, Recorded, World, GOOD_CODE};
use kring_domain::visibility::ViewReason;
use kring_domain::{
    Actor, ChildId, Event, GroupId, InvitationId, MediaId, PersonId, PostId, Purpose,
};
use kring_projections::models::consent::{current_consent, is_effective};
use kring_projections::models::visibility::{may_see, who_may_see};
use kring_projections::{models, Projected, Projection, Projector, ReadDb, Tables, Tx};
use kring_store::vault::KeyVault;
use kring_store::{EventStore, ExpectedVersion, Metadata};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Histories.

/// One step of a school's life, aimed at what media visibility and consent depend on. Numbers
/// index into the world's pools (modulo their length); a refused step changes nothing.
#[derive(Debug, Clone)]
enum Step {
    /// Any step of the domain's own simulation (its weighted mix, or a chosen one).
    Sim(Op),
    /// Staff who may post to a group (class or school) publish media, each tagging children
    /// of that group's audience.
    Publish { group: u8, media: Vec<Vec<u8>> },
    /// The director tags a child of the audience in a media item, or untags a tagged one.
    Tag { media: u8, child: u8, tag: bool },
    /// A new guardian for a child: invited, accepted, approved, linked.
    NewGuardian { child: u8 },
    /// Someone the school already knows (a guardian of another child, or staff) becomes a
    /// guardian of a child too.
    AlsoGuardian { person: u8, child: u8 },
    /// The director removes a media item.
    RemoveMedia { media: u8 },
    /// The director removes a whole post.
    RemovePost { post: u8 },
    /// A year passes and the retention job expires a post.
    Expire { post: u8 },
    /// A staff member (not the first director) leaves the school.
    StaffLeaves { staff: u8 },
    /// A staff member is taken off a group.
    Unassign { staff: u8, group: u8 },
    /// A staff member (not the first director) gets another role.
    ChangeRole { staff: u8, role: u8 },
    /// A child leaves the school, and their guardians with them.
    Unenroll { child: u8 },
    /// A year transition: a class's children move to another class, one of them leaves the
    /// school, and the class is archived.
    YearTransition { from: u8, to: u8, leaver: u8 },
    /// The director publishes a new version of the consent policy: the purposes whose bit is
    /// set in `reword` get a new description, and one purpose may be left out.
    NewPolicy { reword: u8, drop: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    let i = || any::<u8>();
    prop_oneof![
        6 => op().prop_map(Step::Sim),
        8 => (i(), i(), i(), prop::bool::weighted(0.5)).prop_map(|(child, guardian, purpose, granted)| {
            Step::Sim(Op::GuardianConsent { child, guardian, purpose, granted })
        }),
        5 => (i(), prop::collection::vec(prop::collection::vec(i(), 0..3), 1..4))
            .prop_map(|(group, media)| Step::Publish { group, media }),
        4 => (i(), i(), prop::bool::weighted(0.6)).prop_map(|(media, child, tag)| Step::Tag { media, child, tag }),
        2 => (i(), i()).prop_map(|(child, group)| Step::Sim(Op::MoveChild { child, group })),
        2 => (i(), i()).prop_map(|(child, guardian)| Step::Sim(Op::Unlink { child, guardian })),
        2 => i().prop_map(|child| Step::NewGuardian { child }),
        2 => (i(), i()).prop_map(|(person, child)| Step::AlsoGuardian { person, child }),
        1 => i().prop_map(|media| Step::RemoveMedia { media }),
        1 => i().prop_map(|post| Step::RemovePost { post }),
        1 => i().prop_map(|post| Step::Expire { post }),
        1 => i().prop_map(|staff| Step::StaffLeaves { staff }),
        1 => (i(), i()).prop_map(|(staff, group)| Step::Sim(Op::AssignStaff { staff, group })),
        1 => (i(), i()).prop_map(|(staff, group)| Step::Unassign { staff, group }),
        1 => (i(), i()).prop_map(|(staff, role)| Step::ChangeRole { staff, role }),
        1 => Just(Step::Sim(Op::CreateGroup)),
        1 => (i(), i()).prop_map(|(by, group)| Step::Sim(Op::Enroll { by, group })),
        1 => i().prop_map(|child| Step::Unenroll { child }),
        1 => (i(), i()).prop_map(|(reword, drop)| Step::NewPolicy { reword, drop }),
        1 => (i(), i(), i()).prop_map(|(from, to, leaver)| Step::YearTransition { from, to, leaver }),
    ]
}

/// A history: how many classes the school starts with, then the steps.
fn history() -> impl Strategy<Value = (usize, Vec<Step>)> {
    (1..4_usize, prop::collection::vec(step(), 20..100))
}

fn pick<T: Copy>(pool: &[T], i: u8) -> Option<T> {
    (!pool.is_empty()).then(|| pool[usize::from(i) % pool.len()])
}

/// Takes one step; `None` when there was nothing to take it on, `Some(Err)` when refused.
fn take(world: &mut World, step: &Step) -> Option<Result<(), kring_domain::DomainError>> {
    if let Step::Sim(op) = step {
        return Some(world.apply(op).map(|_| ()));
    }
    world.advance(Duration::minutes(7));
    let director = Actor::Person(world.director);
    let result = match *step {
        Step::Sim(_) => unreachable!("handled above"),
        Step::Publish { group, ref media } => {
            let mut groups = world.groups.clone();
            groups.push(world.school_group());
            let group_id = pick(&groups, group)?;
            let audience: Vec<ChildId> = world.school.audience_children(group_id).collect();
            let tags: Vec<Vec<ChildId>> = media
                .iter()
                .map(|t| t.iter().filter_map(|c| pick(&audience, *c)).collect())
                .collect();
            let authors: Vec<PersonId> = world
                .staff
                .iter()
                .copied()
                .filter(|p| world.school.may_post_to(Actor::Person(*p), group_id))
                .collect();
            let author = pick(&authors, group)?;
            world
                .publish(Actor::Person(author), group_id, &tags)
                .map(|_| ())
        }
        Step::Tag { media, child, tag } => {
            let (post_id, media_id) = pick(&world.media_ids, media)?;
            let post = world.posts.get(&post_id)?;
            let action = if tag {
                let audience: Vec<ChildId> =
                    world.school.audience_children(post.group_id?).collect();
                let child_id = pick(&audience, child)?;
                PostAction::Tag { media_id, child_id }
            } else {
                let tagged: Vec<ChildId> =
                    post.media.get(&media_id)?.tagged.iter().copied().collect();
                let child_id = pick(&tagged, child)?;
                PostAction::Untag { media_id, child_id }
            };
            world.post(director, post_id, action).map(|_| ())
        }
        Step::NewGuardian { child } => {
            let child_id = pick(&world.child_ids, child)?;
            world.invite_and_link(director, child_id).map(|_| ())
        }
        Step::AlsoGuardian { person, child } => {
            let people: Vec<PersonId> =
                world.invitees.iter().chain(&world.staff).copied().collect();
            let invitee_id = pick(&people, person)?;
            let child_id = pick(&world.child_ids, child)?;
            let invitation_id = InvitationId::from_uuid(world.next_uuid());
            (|| {
                world.invitation(
                    director,
                    invitation_id,
                    InvitationAction::Invite {
                        invitation_id,
                        child_id,
                        email: "ook.ouder@mail.example".into(),
                        invitee_id,
                        code_digest: GOOD_CODE.into(),
                        mail_code: None,
                    },
                )?;
                world.invitation_ids.push(invitation_id);
                world.invitation(
                    Actor::Person(invitee_id),
                    invitation_id,
                    InvitationAction::Accept {
                        code_digest: GOOD_CODE.into(),
                        display_name: "Ouder".into(),
                    },
                )?;
                world.approve_and_link(director, invitation_id, None)
            })()
        }
        Step::RemoveMedia { media } => {
            let (post_id, media_id) = pick(&world.media_ids, media)?;
            let reason = "Op verzoek".into();
            world
                .post(
                    director,
                    post_id,
                    PostAction::RemoveMedia { media_id, reason },
                )
                .map(|_| ())
        }
        Step::RemovePost { post } => {
            let post_id = pick(&world.post_ids, post)?;
            let reason = "Op verzoek".into();
            world
                .post(director, post_id, PostAction::Remove { reason })
                .map(|_| ())
        }
        Step::Expire { post } => {
            let post_id = pick(&world.post_ids, post)?;
            world.advance(Duration::days(366));
            world
                .post(Actor::System, post_id, PostAction::Expire)
                .map(|_| ())
        }
        Step::StaffLeaves { staff } => {
            let person_id = pick(world.staff.get(1..)?, staff)?;
            world
                .school(director, SchoolAction::RemoveStaff { person_id })
                .map(|_| ())
        }
        Step::Unassign { staff, group } => {
            let person_id = pick(&world.staff, staff)?;
            let group_id = pick(&world.groups, group)?;
            world
                .school(
                    director,
                    SchoolAction::UnassignStaff {
                        group_id,
                        person_id,
                    },
                )
                .map(|_| ())
        }
        Step::ChangeRole { staff, role } => {
            let person_id = pick(world.staff.get(1..)?, staff)?;
            let role = [
                StaffRole::Teacher,
                StaffRole::Director,
                StaffRole::ComplianceOfficer,
            ][usize::from(role) % 3];
            world
                .school(director, SchoolAction::ChangeStaffRole { person_id, role })
                .map(|_| ())
        }
        Step::Unenroll { child } => {
            let child_id = pick(&world.child_ids, child)?;
            world
                .school(director, SchoolAction::UnenrollChild { child_id })
                .map(|_| ())
        }
        Step::YearTransition { from, to, leaver } => {
            let open: Vec<GroupId> = world
                .groups
                .iter()
                .copied()
                .filter(|g| !world.school.groups[g].archived)
                .collect();
            let from = pick(&open, from)?;
            let to = pick(&open, to)?;
            let children: Vec<ChildId> = world.school.audience_children(from).collect();
            let plan = YearTransition {
                effective_on: world.now.date_naive(),
                new_groups: Vec::new(),
                groups: vec![GroupPlan {
                    group_id: from,
                    children_to: Some(Destination::Group(to)),
                    leavers: pick(&children, leaver).into_iter().collect(),
                    archive: true,
                }],
            };
            world
                .school(director, SchoolAction::YearTransition(plan))
                .map(|_| ())
        }
        Step::NewPolicy { reword, drop } => {
            let current = world.school.policy.clone()?;
            let dropped = (drop % 4 == 0).then(|| Purpose::ALL[usize::from(drop) % 7]);
            let version = current.version + 1;
            let purposes = Purpose::ALL
                .iter()
                .enumerate()
                .filter(|(_, p)| Some(**p) != dropped)
                .map(|(i, p)| {
                    let kept = current
                        .purposes
                        .iter()
                        .find(|q| q.purpose == *p)
                        .map(|q| q.description.clone());
                    // One version in four rewords: the purposes whose bit is set.
                    let reworded = reword < 64 && reword & (1 << i) != 0;
                    let description = match kept {
                        Some(text) if !reworded => text,
                        _ => format!("{} (versie {version})", p.default_description()),
                    };
                    PolicyPurpose {
                        purpose: *p,
                        description,
                    }
                })
                .collect();
            world
                .school(director, SchoolAction::PublishConsentPolicy { purposes })
                .map(|_| ())
        }
    };
    Some(result)
}

/// The world of a generated history: classes with three children and two guardians each, then
/// the steps (refusals are part of a realistic history and change nothing).
fn play(groups: usize, steps: &[Step]) -> World {
    let mut world = World::with_classes(groups, 3, 2);
    for step in steps {
        let _ = take(&mut world, step);
    }
    world
}

// ---------------------------------------------------------------------------------------------
// The naive model, straight from the events.

/// One guardian's latest decision for a (child, purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decision {
    granted: bool,
    at: DateTime<Utc>,
    policy_version: u32,
    method: ConsentMethod,
}

#[derive(Debug, Clone)]
struct NaiveMedia {
    post: PostId,
    group: GroupId,
    tagged: BTreeSet<ChildId>,
    removed: bool,
}

/// What the rule says for one media item: viewers with their reason; the withheld with the
/// (child, purpose) pairs that withhold them, in child order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Answer {
    viewers: BTreeMap<PersonId, ViewReason>,
    withheld: BTreeMap<PersonId, Vec<(ChildId, Purpose)>>,
}

/// The school as the events tell it.
#[derive(Debug, Default)]
struct Naive {
    school_group: Option<GroupId>,
    staff: BTreeMap<PersonId, StaffRole>,
    assigned: BTreeSet<(GroupId, PersonId)>,
    enrolled: BTreeMap<ChildId, GroupId>,
    ever_enrolled: BTreeSet<ChildId>,
    /// (child, guardian) links.
    guardians: BTreeSet<(ChildId, PersonId)>,
    decisions: BTreeMap<(ChildId, Purpose), BTreeMap<PersonId, Decision>>,
    /// The consent-policy versions in order: each purpose asked, with its description.
    policies: Vec<(u32, BTreeMap<Purpose, String>)>,
    media: BTreeMap<MediaId, NaiveMedia>,
    gone_posts: BTreeSet<PostId>,
}

impl Naive {
    fn of(log: &[Recorded]) -> Self {
        let mut n = Self::default();
        for r in log {
            n.apply(&r.event);
        }
        n
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::School(e) => match e {
                SchoolEvent::SchoolRegistered(e) => self.school_group = Some(e.school_group_id),
                SchoolEvent::StaffJoined(e) => {
                    self.staff.insert(e.person_id, e.role);
                }
                SchoolEvent::StaffRoleChanged(e) => {
                    self.staff.insert(e.person_id, e.role);
                }
                SchoolEvent::StaffLeft(e) => {
                    self.staff.remove(&e.person_id);
                    self.assigned.retain(|(_, p)| *p != e.person_id);
                }
                SchoolEvent::StaffAssigned(e) => {
                    self.assigned.insert((e.group_id, e.person_id));
                }
                SchoolEvent::StaffUnassigned(e) => {
                    self.assigned.remove(&(e.group_id, e.person_id));
                }
                SchoolEvent::ChildEnrolled(e) => {
                    self.enrolled.insert(e.child_id, e.group_id);
                    self.ever_enrolled.insert(e.child_id);
                }
                SchoolEvent::ChildMoved(e) => {
                    self.enrolled.insert(e.child_id, e.to_group_id);
                }
                SchoolEvent::ChildUnenrolled(e) => {
                    self.enrolled.remove(&e.child_id);
                    self.guardians.retain(|(c, _)| *c != e.child_id);
                }
                SchoolEvent::GuardianLinked(e) => {
                    self.guardians.insert((e.child_id, e.guardian_id));
                }
                SchoolEvent::GuardianUnlinked(e) => {
                    self.guardians.remove(&(e.child_id, e.guardian_id));
                }
                SchoolEvent::ConsentPolicyPublished(e) => {
                    self.policies.push((
                        e.version,
                        e.purposes
                            .iter()
                            .map(|p| (p.purpose, p.description.clone()))
                            .collect(),
                    ));
                }
                SchoolEvent::SchoolSettingsChanged(_)
                | SchoolEvent::GroupCreated(_)
                | SchoolEvent::GroupArchived(_)
                | SchoolEvent::ChildDetailsCorrected(_) => {}
            },
            Event::Child(ChildEvent::ConsentDecided(d)) => {
                self.decisions
                    .entry((d.child_id, d.purpose))
                    .or_default()
                    .insert(
                        d.guardian_id,
                        Decision {
                            granted: d.granted,
                            at: d.at,
                            policy_version: d.policy_version,
                            method: d.method,
                        },
                    );
            }
            Event::Post(e) => match e {
                PostEvent::PostPublished(p) => {
                    for m in &p.media {
                        self.media.insert(
                            m.media_id,
                            NaiveMedia {
                                post: p.post_id,
                                group: p.group_id,
                                tagged: m.tagged_children.iter().copied().collect(),
                                removed: false,
                            },
                        );
                    }
                }
                PostEvent::ChildTagged(t) => {
                    if let Some(m) = self.media.get_mut(&t.media_id) {
                        m.tagged.insert(t.child_id);
                    }
                }
                PostEvent::ChildUntagged(t) => {
                    if let Some(m) = self.media.get_mut(&t.media_id) {
                        m.tagged.remove(&t.child_id);
                    }
                }
                PostEvent::MediaRemoved(r) => {
                    if let Some(m) = self.media.get_mut(&r.media_id) {
                        m.removed = true;
                    }
                }
                PostEvent::PostRemoved(r) => {
                    self.gone_posts.insert(r.post_id);
                }
                PostEvent::PostExpired(x) => {
                    self.gone_posts.insert(x.post_id);
                }
                PostEvent::PostEdited(_) => {}
            },
            _ => {}
        }
    }

    /// The first version of the unbroken run of latest versions that ask for `purpose` with its
    /// current description; `None` when the latest version does not ask for it.
    fn counts_from(&self, purpose: Purpose) -> Option<u32> {
        let (mut from, latest) = self.policies.last()?;
        let text = latest.get(&purpose)?;
        for (version, purposes) in self.policies.iter().rev().skip(1) {
            if purposes.get(&purpose) != Some(text) {
                break;
            }
            from = *version;
        }
        Some(from)
    }

    /// The latest decisions that count: made under a version since `counts_from`.
    fn counting(&self, child: ChildId, purpose: Purpose) -> Option<Vec<bool>> {
        let from = self.counts_from(purpose)?;
        Some(
            self.decisions
                .get(&(child, purpose))
                .map(|by_guardian| {
                    by_guardian
                        .values()
                        .filter(|d| d.policy_version >= from)
                        .map(|d| d.granted)
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// Consent holds: some counting decision grants, and no counting decision withdraws.
    fn consent_holds(&self, child: ChildId, purpose: Purpose) -> bool {
        self.counting(child, purpose)
            .is_some_and(|granted| !granted.is_empty() && granted.iter().all(|g| *g))
    }

    /// Guardians decided, but none under the purpose's current meaning.
    fn needs_decision(&self, child: ChildId, purpose: Purpose) -> bool {
        let decided = self
            .decisions
            .get(&(child, purpose))
            .is_some_and(|d| !d.is_empty());
        decided
            && self
                .counting(child, purpose)
                .is_some_and(|granted| granted.is_empty())
    }

    fn is_guardian(&self, person: PersonId, child: ChildId) -> bool {
        self.guardians.contains(&(child, person))
    }

    /// Who may see `media` and why, who is withheld and why.
    fn answer(&self, media: MediaId) -> Answer {
        let mut answer = Answer::default();
        let m = &self.media[&media];
        if m.removed || self.gone_posts.contains(&m.post) {
            return answer;
        }
        let whole_school = Some(m.group) == self.school_group;
        let purpose = if whole_school {
            Purpose::SchoolCommunication
        } else {
            Purpose::GroupCommunication
        };
        // Staff of the audience: everyone for the school group; a class group's assigned staff
        // and every director.
        for (person, role) in &self.staff {
            if whole_school
                || *role == StaffRole::Director
                || self.assigned.contains(&(m.group, *person))
            {
                answer.viewers.insert(*person, ViewReason::Staff);
            }
        }
        // Parents in the audience: guardians of a child placed in the group (any child, for the
        // school group).
        let parents: BTreeSet<PersonId> = self
            .guardians
            .iter()
            .filter(|(c, _)| {
                self.enrolled
                    .get(c)
                    .is_some_and(|g| whole_school || *g == m.group)
            })
            .map(|(_, p)| *p)
            .collect();
        for parent in parents {
            if answer.viewers.contains_key(&parent) {
                continue;
            }
            let own = m.tagged.iter().any(|c| self.is_guardian(parent, *c));
            let missing: Vec<(ChildId, Purpose)> = m
                .tagged
                .iter()
                .filter(|c| !self.is_guardian(parent, **c) && !self.consent_holds(**c, purpose))
                .map(|c| (*c, purpose))
                .collect();
            if missing.is_empty() {
                let reason = if own {
                    ViewReason::OwnChild
                } else {
                    ViewReason::Audience
                };
                answer.viewers.insert(parent, reason);
            } else {
                answer.withheld.insert(parent, missing);
            }
        }
        answer
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing the read models with the naive model.

/// The read model's answer for `media` in the oracle's shape, refusing duplicates.
async fn read_answer(db: &ReadDb, media: MediaId) -> Result<Answer, String> {
    let got = who_may_see(db, media)
        .await
        .map_err(|e| format!("who_may_see({media}) failed: {e}"))?
        .ok_or_else(|| format!("media item {media} was published but has no answer"))?;
    if got.media_id != media {
        return Err(format!(
            "asked about {media}, answered about {}",
            got.media_id
        ));
    }
    let mut answer = Answer::default();
    for v in &got.viewers {
        if answer.viewers.insert(v.person_id, v.reason).is_some() {
            return Err(format!(
                "media {media}: viewer {} listed twice",
                v.person_id
            ));
        }
    }
    for w in &got.withheld {
        let mut because: Vec<(ChildId, Purpose)> =
            w.because.iter().map(|b| (b.child_id, b.purpose)).collect();
        because.sort();
        if w.because.is_empty() {
            return Err(format!(
                "media {media}: {} withheld for no reason",
                w.person_id
            ));
        }
        if answer.withheld.insert(w.person_id, because).is_some()
            || answer.viewers.contains_key(&w.person_id)
        {
            return Err(format!(
                "media {media}: {} withheld twice or both seen and withheld",
                w.person_id
            ));
        }
    }
    Ok(answer)
}

/// Every media item's answer and every child's consent, read model against naive model.
async fn compare(db: &ReadDb, naive: &Naive, when: &str) -> Result<(), String> {
    for media in naive.media.keys() {
        let expected = naive.answer(*media);
        let got = read_answer(db, *media).await.or_else(|e| fail(when, e))?;
        if got != expected {
            return fail(when, format!(
                "who may see media {media} (tagged {:?}):\n  read model: {got:?}\n  naive:      {expected:?}",
                naive.media[media].tagged
            ));
        }
        // `may_see` agrees for a viewer and a withheld parent.
        let probes = expected
            .viewers
            .keys()
            .next()
            .map(|p| (*p, true))
            .into_iter()
            .chain(expected.withheld.keys().next().map(|p| (*p, false)));
        for (person, sees) in probes {
            let got = may_see(db, person, *media)
                .await
                .map_err(|e| e.to_string())?;
            if got != sees {
                return fail(
                    when,
                    format!("may_see({person}, {media}) is {got}, naive says {sees}"),
                );
            }
        }
    }
    let never = MediaId::from_uuid(uuid::Uuid::from_u128(7));
    if who_may_see(db, never)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return fail(when, "a media item never published has an answer".into());
    }
    for child in &naive.ever_enrolled {
        let got = current_consent(db, *child)
            .await
            .map_err(|e| e.to_string())?;
        let purposes: Vec<Purpose> = got.iter().map(|c| c.purpose).collect();
        if purposes != Purpose::ALL {
            return fail(
                when,
                format!("current consent of {child} lists purposes {purposes:?}"),
            );
        }
        for c in got {
            let expected = naive
                .decisions
                .get(&(*child, c.purpose))
                .cloned()
                .unwrap_or_default();
            let mut decided = BTreeMap::new();
            for d in &c.decisions {
                let decision = Decision {
                    granted: d.granted,
                    at: d.at,
                    policy_version: d.policy_version,
                    method: d.method,
                };
                if decided.insert(d.guardian_id, decision).is_some() {
                    return fail(
                        when,
                        format!(
                            "{child} {}: guardian {} listed twice",
                            c.purpose, d.guardian_id
                        ),
                    );
                }
            }
            if decided != expected {
                return fail(when, format!(
                    "latest decisions for {child} {}:\n  read model: {decided:?}\n  naive:      {expected:?}",
                    c.purpose
                ));
            }
            let needs = naive.needs_decision(*child, c.purpose);
            if c.needs_decision != needs {
                return fail(
                    when,
                    format!(
                        "{child} {} needs a decision: {}, naive says {needs}",
                        c.purpose, c.needs_decision
                    ),
                );
            }
            let holds = naive.consent_holds(*child, c.purpose);
            if c.effective != holds {
                return fail(
                    when,
                    format!(
                        "consent of {child} for {} is {}, naive says {holds}",
                        c.purpose, c.effective
                    ),
                );
            }
        }
        for purpose in [Purpose::GroupCommunication, Purpose::SchoolCommunication] {
            let got = is_effective(db, *child, purpose)
                .await
                .map_err(|e| e.to_string())?;
            if got != naive.consent_holds(*child, purpose) {
                return fail(when, format!("is_effective({child}, {purpose}) is {got}"));
            }
        }
    }
    Ok(())
}

/// A disagreement, saying when it was found.
fn fail<T>(when: &str, what: String) -> Result<T, String> {
    Err(format!("{when}: {what}"))
}

/// Every projection healthy and at the head of the log.
async fn healthy<S: EventStore + Clone>(
    projector: &Projector<S>,
    store: &S,
    when: &str,
) -> Result<(), String> {
    let head = store.head().await.map_err(|e| e.to_string())?;
    for status in projector.board().all() {
        if status.failure.is_some() || status.position != head {
            return Err(format!(
                "{when}: projection {status:?} is not healthy at head {head}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One case on one backend.

/// How one case writes and projects the log.
#[derive(Debug, Clone)]
struct Plan {
    /// Where the log is cut into chunks for incremental catch-up.
    cuts: Vec<Index>,
    /// Which chunk arrives while a rebuild runs.
    live_rebuild: Index,
    /// Where the first half is cut into two batches before the crash.
    half_cut: Index,
    /// How much of the rest the never-committed transaction applies.
    uncommitted: Index,
    /// Whether that transaction got as far as the projections' flush.
    flushed: bool,
    /// Whether the resumed projector reuses the crashed one's projection instances (a cancelled
    /// future in a live process) or makes new ones (a process crash).
    reuse: bool,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(any::<Index>(), 1..5),
        any::<Index>(),
        any::<Index>(),
        any::<Index>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(cuts, live_rebuild, half_cut, uncommitted, flushed, reuse)| Plan {
                cuts,
                live_rebuild,
                half_cut,
                uncommitted,
                flushed,
                reuse,
            },
        )
}

/// Seals and appends `events`, one append each, in order.
async fn append(store: &impl EventStore, vault: &KeyVault, events: &[Recorded]) {
    for r in events {
        let meta = Metadata::new(r.at, r.actor);
        let sealed = vault.seal(&r.event, meta).await.unwrap();
        store
            .append(&r.stream, ExpectedVersion::Any, vec![sealed])
            .await
            .unwrap();
    }
}

async fn run_case<S: EventStore + Clone>(
    h: Harness<S>,
    crash_db: ReadDb,
    projections: fn() -> Vec<Arc<dyn Projection>>,
    world: &World,
    plan: &Plan,
) -> Result<(), String> {
    let log = &world.log;
    let n = log.len();

    // 1. Incremental: chunks, catching up after each. One chunk arrives while a rebuild from
    //    zero runs: the live generation catches up on it as the new one fills.
    let mut cuts: Vec<usize> = plan
        .cuts
        .iter()
        .map(|c| c.index(n))
        .filter(|c| *c > 0)
        .collect();
    cuts.push(n);
    cuts.sort_unstable();
    cuts.dedup();
    let during_rebuild = plan.live_rebuild.index(cuts.len());
    let mut written = 0;
    for (i, cut) in cuts.into_iter().enumerate() {
        let chunk = &log[written..cut];
        written = cut;
        let when = if i == during_rebuild {
            // The live generation follows each event as it is written, as `run` does.
            let (rebuilt, caught_up) = tokio::join!(h.projector.rebuild(&[]), async {
                for event in chunk.chunks(1) {
                    append(&h.store, &h.vault, event).await;
                    h.projector.catch_up().await?;
                }
                Ok::<_, kring_projections::ProjectionError>(())
            });
            rebuilt.map_err(|e| format!("rebuild: {e}"))?;
            caught_up.map_err(|e| format!("live catch-up: {e}"))?;
            h.projector.catch_up().await.map_err(|e| e.to_string())?;
            format!(
                "{cut} of {n} events, the last {} caught up during a rebuild",
                chunk.len()
            )
        } else {
            append(&h.store, &h.vault, chunk).await;
            h.projector.catch_up().await.map_err(|e| e.to_string())?;
            format!("incremental, {cut} of {n} events")
        };
        healthy(&h.projector, &h.store, &when).await?;
        compare(&h.db, &Naive::of(&log[..cut]), &when).await?;
    }
    let naive = Naive::of(log);

    // 2. Rebuild from zero, then switch.
    h.projector.rebuild(&[]).await.map_err(|e| e.to_string())?;
    healthy(&h.projector, &h.store, "after a rebuild").await?;
    compare(&h.db, &naive, "after a rebuild from zero").await?;

    // 3. Crash halfway, on a second read database, and resume.
    let half = n / 2;
    let instances = projections();
    let dying = Projector::new(h.store.clone(), crash_db.clone(), instances.clone())
        .await
        .map_err(|e| e.to_string())?;
    let first = h.store.read_all(0, half).await.map_err(|e| e.to_string())?;
    assert_eq!(
        first.len(),
        half,
        "the store returns the first half in one read"
    );
    let split = plan.half_cut.index(half + 1);
    dying
        .apply_batch(&first[..split])
        .await
        .map_err(|e| e.to_string())?;
    dying
        .apply_batch(&first[split..])
        .await
        .map_err(|e| e.to_string())?;
    compare(
        &crash_db,
        &Naive::of(&log[..half]),
        "halfway, before the crash",
    )
    .await?;
    let after = first.last().map_or(0, |e| e.position);
    let rest = h
        .store
        .read_all(after, n)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(rest.len(), n - half);
    let uncommitted = &rest[..plan.uncommitted.index(rest.len() + 1)];
    let generations: BTreeMap<String, i64> = dying
        .board()
        .all()
        .into_iter()
        .map(|s| (s.name, s.generation))
        .collect();
    // The crash: a batch applied (and perhaps flushed) on a connection that dies before its
    // transaction commits.
    let conn = crash_db
        .pool()
        .acquire()
        .await
        .map_err(|e| e.to_string())?
        .detach();
    let mut tx = Tx::start_detached(conn);
    tx.begin_write().await.map_err(|e| e.to_string())?;
    for projection in &instances {
        let tables = Tables::new(projection.tables(), generations[projection.name()]);
        for recorded in uncommitted {
            let event = recorded.decode().map_err(|e| e.to_string())?;
            projection
                .apply(
                    &mut tx,
                    &tables,
                    Projected {
                        recorded,
                        event: &event,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        if plan.flushed {
            projection
                .flush(&mut tx, &tables)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // Everything queued has run when the connection dies.
    tx.sync().await.map_err(|e| e.to_string())?;
    drop(tx);
    drop(dying);
    let resumed_instances = if plan.reuse { instances } else { projections() };
    let resumed = Projector::new(h.store.clone(), crash_db.clone(), resumed_instances)
        .await
        .map_err(|e| e.to_string())?;
    compare(
        &crash_db,
        &Naive::of(&log[..half]),
        "after the crash, before resuming",
    )
    .await?;
    resumed.catch_up().await.map_err(|e| e.to_string())?;
    healthy(&resumed, &h.store, "resumed after a crash").await?;
    compare(&crash_db, &naive, "resumed after a crash halfway").await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Coverage: the oracle must not be vacuous.

#[derive(Debug, Default, Clone, Copy)]
struct Coverage {
    cases: usize,
    /// A parent withheld from a media item, halfway or in the end.
    withheld: usize,
    /// ... because of a child for whom a guardian's latest decision is a withdrawal.
    hidden_by_withdrawal: usize,
    /// A parent who sees their own child's photo although that child has no consent.
    own_child_without_consent: usize,
    /// A parent who sees a photo of another child thanks to that child's consent.
    seen_thanks_to_consent: usize,
    /// Several guardians decided for one (child, purpose).
    several_guardians: usize,
    withdrawals: usize,
    school_group_media: usize,
    moved: usize,
    unlinked: usize,
    untagged: usize,
    removed: usize,
    expired: usize,
    staff_changed: usize,
    unenrolled: usize,
    /// A purpose reworded by a new policy version, with decisions that no longer count.
    needs_decision: usize,
    /// A class archived at a year transition.
    archived: usize,
}

impl Coverage {
    fn of(log: &[Recorded]) -> Self {
        let naive = Naive::of(log);
        let mut c = Self {
            cases: 1,
            ..Self::default()
        };
        let has = |f: &dyn Fn(&Event) -> bool| usize::from(log.iter().any(|r| f(&r.event)));
        c.withdrawals =
            has(&|e| matches!(e, Event::Child(ChildEvent::ConsentDecided(d)) if !d.granted));
        c.moved = has(&|e| matches!(e, Event::School(SchoolEvent::ChildMoved(_))));
        c.unlinked = has(&|e| matches!(e, Event::School(SchoolEvent::GuardianUnlinked(_))));
        c.unenrolled = has(&|e| matches!(e, Event::School(SchoolEvent::ChildUnenrolled(_))));
        c.archived = has(&|e| matches!(e, Event::School(SchoolEvent::GroupArchived(_))));
        c.untagged = has(&|e| matches!(e, Event::Post(PostEvent::ChildUntagged(_))));
        c.removed = has(&|e| {
            matches!(
                e,
                Event::Post(PostEvent::MediaRemoved(_) | PostEvent::PostRemoved(_))
            )
        });
        c.expired = has(&|e| matches!(e, Event::Post(PostEvent::PostExpired(_))));
        c.staff_changed = has(&|e| {
            matches!(
                e,
                Event::School(
                    SchoolEvent::StaffLeft(_)
                        | SchoolEvent::StaffRoleChanged(_)
                        | SchoolEvent::StaffUnassigned(_)
                )
            )
        });
        c.several_guardians = usize::from(naive.decisions.values().any(|d| d.len() > 1));
        c.needs_decision = usize::from(
            naive
                .decisions
                .keys()
                .any(|(child, purpose)| naive.needs_decision(*child, *purpose)),
        );
        c.school_group_media = usize::from(
            naive
                .media
                .values()
                .any(|m| Some(m.group) == naive.school_group),
        );
        // The answers the oracle compares at the end and halfway (before the crash).
        for naive in [Naive::of(&log[..log.len() / 2]), naive] {
            for (media, m) in &naive.media {
                let answer = naive.answer(*media);
                if !answer.withheld.is_empty() {
                    c.withheld = 1;
                }
                let withdrawn = |child: &ChildId, purpose: &Purpose| {
                    naive
                        .decisions
                        .get(&(*child, *purpose))
                        .is_some_and(|d| d.values().any(|d| !d.granted))
                };
                if answer
                    .withheld
                    .values()
                    .flatten()
                    .any(|(c, p)| withdrawn(c, p))
                {
                    c.hidden_by_withdrawal = 1;
                }
                let purpose = if Some(m.group) == naive.school_group {
                    Purpose::SchoolCommunication
                } else {
                    Purpose::GroupCommunication
                };
                for (person, reason) in &answer.viewers {
                    match reason {
                        ViewReason::OwnChild => {
                            if m.tagged.iter().any(|c| {
                                naive.is_guardian(*person, *c) && !naive.consent_holds(*c, purpose)
                            }) {
                                c.own_child_without_consent = 1;
                            }
                        }
                        ViewReason::Audience => {
                            if !m.tagged.is_empty() {
                                c.seen_thanks_to_consent = 1;
                            }
                        }
                        ViewReason::Staff => {}
                    }
                }
            }
        }
        c
    }

    fn add(&mut self, o: Self) {
        self.cases += o.cases;
        self.withheld += o.withheld;
        self.hidden_by_withdrawal += o.hidden_by_withdrawal;
        self.own_child_without_consent += o.own_child_without_consent;
        self.seen_thanks_to_consent += o.seen_thanks_to_consent;
        self.several_guardians += o.several_guardians;
        self.withdrawals += o.withdrawals;
        self.school_group_media += o.school_group_media;
        self.moved += o.moved;
        self.unlinked += o.unlinked;
        self.untagged += o.untagged;
        self.removed += o.removed;
        self.expired += o.expired;
        self.staff_changed += o.staff_changed;
        self.unenrolled += o.unenrolled;
        self.needs_decision += o.needs_decision;
        self.archived += o.archived;
    }

    /// Every kind of case happened at least once.
    fn assert_everything_happened(&self) {
        let kinds = [
            ("a withheld parent", self.withheld),
            (
                "a parent withheld because of a withdrawal",
                self.hidden_by_withdrawal,
            ),
            (
                "a parent seeing their own child without consent",
                self.own_child_without_consent,
            ),
            (
                "a parent seeing another child thanks to consent",
                self.seen_thanks_to_consent,
            ),
            (
                "several guardians deciding for one child",
                self.several_guardians,
            ),
            ("a withdrawal", self.withdrawals),
            ("media in the school group", self.school_group_media),
            ("a child moving groups", self.moved),
            ("a guardian unlinked", self.unlinked),
            ("a child untagged", self.untagged),
            ("media or a post removed", self.removed),
            ("a post expired", self.expired),
            ("staff leaving, changing role or group", self.staff_changed),
            ("a child unenrolled", self.unenrolled),
            (
                "a reworded purpose whose decisions no longer count",
                self.needs_decision,
            ),
            ("a class archived at a year transition", self.archived),
        ];
        for (what, count) in kinds {
            assert!(count > 0, "no generated history had {what}: {self:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Cases per backend: `PROPTEST_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    })
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the oracle over random histories with `setup` making each case's harness and second
/// read database, both running `projections`; returns what the cases covered.
fn oracle<S, F, Fut>(
    cases: u32,
    projections: fn() -> Vec<Arc<dyn Projection>>,
    setup: F,
) -> Coverage
where
    S: EventStore + Clone,
    F: Fn(Vec<Arc<dyn Projection>>) -> Fut,
    Fut: std::future::Future<Output = (Harness<S>, ReadDb, Option<tempfile::TempDir>)>,
{
    let rt = tokio();
    let coverage = RefCell::new(Coverage::default());
    let result = runner(cases).run(&(history(), plan()), |((groups, steps), plan)| {
        let world = play(groups, &steps);
        let outcome = rt.block_on(async {
            let (h, crash_db, _dir) = setup(projections()).await;
            run_case(h, crash_db, projections, &world, &plan).await
        });
        outcome.map_err(TestCaseError::fail)?;
        coverage.borrow_mut().add(Coverage::of(&world.log));
        Ok(())
    });
    if let Err(e) = result {
        panic!("the read models disagree with the naive model: {e}");
    }
    let coverage = coverage.into_inner();
    assert_eq!(coverage.cases, cases as usize, "every case ran");
    coverage
}

/// Assertions every backend's run must meet: the generated cases really withheld parents and
/// withdrew consent, so agreement means something.
fn assert_not_vacuous(c: &Coverage) {
    assert!(c.withheld > 0, "no case withheld a parent: {c:?}");
    assert!(
        c.hidden_by_withdrawal > 0,
        "no case hid media by a withdrawal: {c:?}"
    );
    assert!(c.withdrawals > 0, "no case withdrew consent: {c:?}");
}

/// The two read models under test.
fn consent_and_visibility() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(models::consent::ConsentProjection::default()),
        Arc::new(models::visibility::VisibilityProjection::default()),
    ]
}

/// On SQLite, every read model, as the embedded default runs them: more transactions in flight
/// during a rebuild (this is how the oracle found that SQLite refused a deferred transaction's
/// upgrade to a writer, see `begin_write` in the runtime).
#[test]
fn visibility_and_consent_read_models_match_a_naive_model_on_sqlite() {
    let coverage = oracle(cases(24), models::all, |projections| async {
        let h = common::sqlite(projections).await;
        let dir = tempfile::tempdir().unwrap();
        let crash_db = ReadDb::sqlite(&dir.path().join("crash-read.db"))
            .await
            .unwrap();
        (h, crash_db, Some(dir))
    });
    assert_not_vacuous(&coverage);
}

/// On PostgreSQL, the two read models under test only: every generation's tables cost DDL round
/// trips there, and this keeps the file well under a minute.
#[test]
fn visibility_and_consent_read_models_match_a_naive_model_on_postgres() {
    let coverage = oracle(cases(16), consent_and_visibility, |projections| async {
        let h = common::postgres(projections).await;
        let pg = kring_testkit::fresh_postgres_database("oracle_crash").await;
        let crash_db = ReadDb::connect(pg.url()).await.unwrap();
        (h, crash_db, None)
    });
    assert_not_vacuous(&coverage);
}

#[test]
fn generated_histories_reach_every_visibility_rule() {
    // Guards the generator: an oracle over histories that never withhold a parent, withdraw
    // consent or move a child proves little.
    let mut runner = TestRunner::deterministic();
    let mut coverage = Coverage::default();
    for _ in 0..64 {
        let (groups, steps) = history().new_tree(&mut runner).unwrap().current();
        coverage.add(Coverage::of(&play(groups, &steps).log));
    }
    coverage.assert_everything_happened();
    // Often enough that each backend's 16 to 24 random cases see them (the assertion there).
    assert!(coverage.withheld * 2 > coverage.cases, "{coverage:?}");
    assert!(
        coverage.hidden_by_withdrawal * 2 > coverage.cases,
        "{coverage:?}"
    );
}
