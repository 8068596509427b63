//! A simulated school driven through the real deciders: the fixture of the domain's tests and
//! the source of random histories for property tests and the projections' oracle.
//!
//! [`World`] keeps every aggregate's state, applies commands with `decide` + `evolve` exactly as
//! the application does, and records each produced event in [`World::log`] in order. Ids are
//! UUID v7 made from the simulated clock and a counter, so a history is reproducible.

use crate::access::{self, AccessLog, AccessReason, LogAccess, Subject};
use crate::activity::{self, Activity, ActivityAction, ActivityContext};
use crate::child::{self, Child, ChildAction, ChildContext};
use crate::consent::ConsentMethod;
use crate::conversation::{self, Conversation, ConversationAction, ConversationContext};
use crate::invitation::{self, Invitation, InvitationAction, InvitationContext, InvitationStatus};
use crate::person::{self, Person, PersonAction, PersonContext};
use crate::post::{self, MediaAttachment, Post, PostAction, PostContext};
use crate::school::{self, School, SchoolAction, StaffRole};
use crate::{
    ActivityId, Actor, ChildId, Command, ConversationId, DomainError, Event, GroupId, InvitationId,
    MediaId, PersonId, PostId, Purpose, SchoolId, StreamName,
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

pub mod hostile;
pub mod workload;

/// One recorded event of the simulated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The stream it belongs to.
    pub stream: StreamName,
    /// The event.
    pub event: Event,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
}

/// A school with everything in it, as event-sourced state.
#[derive(Debug, Clone)]
pub struct World {
    /// The simulated clock.
    pub now: DateTime<Utc>,
    /// Every event so far, in order.
    pub log: Vec<Recorded>,
    /// The school.
    pub school_id: SchoolId,
    /// Its roster.
    pub school: School,
    /// Invitations.
    pub invitations: BTreeMap<InvitationId, Invitation>,
    /// Children's own state.
    pub children: BTreeMap<ChildId, Child>,
    /// People's own state.
    pub people: BTreeMap<PersonId, Person>,
    /// Posts.
    pub posts: BTreeMap<PostId, Post>,
    /// Conversations.
    pub conversations: BTreeMap<ConversationId, Conversation>,
    /// Activities.
    pub activities: BTreeMap<ActivityId, Activity>,
    /// Access logs by subject.
    pub access_logs: BTreeMap<Uuid, AccessLog>,
    /// The first director.
    pub director: PersonId,
    /// Every staff member added, in order.
    pub staff: Vec<PersonId>,
    /// Every class group created, in order.
    pub groups: Vec<GroupId>,
    /// Every child enrolled, in order.
    pub child_ids: Vec<ChildId>,
    /// Every invitee (future guardian) invited, in order.
    pub invitees: Vec<PersonId>,
    /// Every invitation sent, in order.
    pub invitation_ids: Vec<InvitationId>,
    /// Every post published, in order.
    pub post_ids: Vec<PostId>,
    /// Every media item attached, in order, with its post.
    pub media_ids: Vec<(PostId, MediaId)>,
    /// Every activity scheduled, in order.
    pub activity_ids: Vec<ActivityId>,
    /// Every conversation started, in order.
    pub conversation_ids: Vec<ConversationId>,
    counter: u64,
}

/// The code digest every simulated invitation uses; a wrong code is any other string.
pub const GOOD_CODE: &str = "digest-of-the-right-code";

impl World {
    /// A registered school with a director and no groups, at 2026-09-01 08:00 UTC.
    #[must_use]
    pub fn new() -> Self {
        Self::numbered(0)
    }

    /// Like [`World::new`] for the `n`-th of several simulated schools: its ids never meet
    /// those of another number's world (the 0-th is [`World::new`]'s).
    #[must_use]
    pub fn numbered(n: u64) -> Self {
        Self::numbered_from(n, Self::first_day())
    }

    /// When a simulated school starts unless told otherwise: 2026-09-01 08:00 UTC.
    #[must_use]
    pub fn first_day() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 9, 1, 8, 0, 0)
            .single()
            .unwrap_or_default()
    }

    /// Like [`World::numbered`], with the simulated clock starting at `now`.
    ///
    /// # Panics
    /// When registering the school or its director breaks a domain rule: a bug here.
    #[must_use]
    pub fn numbered_from(n: u64, now: DateTime<Utc>) -> Self {
        let mut world = Self {
            now,
            log: Vec::new(),
            school_id: SchoolId::from_uuid(Uuid::nil()),
            school: School::default(),
            invitations: BTreeMap::new(),
            children: BTreeMap::new(),
            people: BTreeMap::new(),
            posts: BTreeMap::new(),
            conversations: BTreeMap::new(),
            activities: BTreeMap::new(),
            access_logs: BTreeMap::new(),
            director: PersonId::from_uuid(Uuid::nil()),
            staff: Vec::new(),
            groups: Vec::new(),
            child_ids: Vec::new(),
            invitees: Vec::new(),
            invitation_ids: Vec::new(),
            post_ids: Vec::new(),
            media_ids: Vec::new(),
            activity_ids: Vec::new(),
            conversation_ids: Vec::new(),
            counter: n << 40,
        };
        world.school_id = SchoolId::from_uuid(world.next_uuid());
        let school_group_id = GroupId::from_uuid(world.next_uuid());
        world
            .school(
                Actor::Operator,
                SchoolAction::Register {
                    school_id: world.school_id,
                    school_group_id,
                    name: "De Regenboog".into(),
                    brin: "12AB".into(),
                },
            )
            .unwrap_or_else(|e| panic!("registering the simulated school: {e}"));
        world.director = world
            .add_staff(Actor::Operator, StaffRole::Director)
            .unwrap_or_else(|e| panic!("adding the simulated director: {e}"));
        world
    }

    /// A school with a director, `groups` class groups each with one assigned teacher,
    /// `children_per_group` children per group, and each child with `guardians_per_child`
    /// approved and linked guardians.
    #[must_use]
    pub fn with_classes(
        groups: usize,
        children_per_group: usize,
        guardians_per_child: usize,
    ) -> Self {
        Self::numbered_with_classes(0, groups, children_per_group, guardians_per_child)
    }

    /// Like [`World::with_classes`] for the `n`-th of several schools (see [`World::numbered`]).
    #[must_use]
    pub fn numbered_with_classes(
        n: u64,
        groups: usize,
        children_per_group: usize,
        guardians_per_child: usize,
    ) -> Self {
        Self::numbered_with_classes_from(
            n,
            Self::first_day(),
            groups,
            children_per_group,
            guardians_per_child,
        )
    }

    /// Like [`World::numbered_with_classes`], with the simulated clock starting at `now`.
    ///
    /// # Panics
    /// When the generated school breaks a domain rule: a bug in the generator.
    #[allow(
        clippy::expect_used,
        reason = "a generated school that breaks a rule is a bug in the generator, not an outcome"
    )]
    #[must_use]
    pub fn numbered_with_classes_from(
        n: u64,
        now: DateTime<Utc>,
        groups: usize,
        children_per_group: usize,
        guardians_per_child: usize,
    ) -> Self {
        let mut world = Self::numbered_from(n, now);
        let director = Actor::Person(world.director);
        for g in 0..groups {
            let group = world
                .create_group(director, &format!("Groep {}", g + 1))
                .expect("the generated school follows every rule");
            let teacher = world
                .add_staff(director, StaffRole::Teacher)
                .expect("the generated school follows every rule");
            world
                .school(
                    director,
                    SchoolAction::AssignStaff {
                        group_id: group,
                        person_id: teacher,
                    },
                )
                .expect("the generated school follows every rule");
            for _ in 0..children_per_group {
                let child = world
                    .enroll(director, group)
                    .expect("the generated school follows every rule");
                for _ in 0..guardians_per_child {
                    world
                        .invite_and_link(Actor::Person(teacher), child)
                        .expect("the generated school follows every rule");
                }
            }
        }
        world
    }

    /// The school group.
    #[must_use]
    pub fn school_group(&self) -> GroupId {
        self.school
            .school_group_id
            .unwrap_or_else(|| GroupId::from_uuid(Uuid::nil()))
    }

    /// A fresh deterministic UUID v7 from the simulated clock and a counter.
    pub fn next_uuid(&mut self) -> Uuid {
        self.counter += 1;
        let millis = u64::try_from(self.now.timestamp_millis()).unwrap_or_default();
        let mut random = [0_u8; 10];
        random[2..].copy_from_slice(&self.counter.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }

    /// Moves the simulated clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn record(&mut self, stream: StreamName, actor: Actor, events: Vec<Event>) -> usize {
        let n = events.len();
        for event in events {
            self.log.push(Recorded {
                stream,
                event,
                at: self.now,
                actor,
            });
        }
        n
    }

    /// Runs a roster command.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn school(&mut self, actor: Actor, action: SchoolAction) -> Result<usize, DomainError> {
        let events = school::decide(&self.school, Command::new(actor, action), self.now)?;
        for e in &events {
            self.school = school::evolve(std::mem::take(&mut self.school), e);
        }
        let stream = StreamName::school(self.school_id);
        Ok(self.record(stream, actor, events.into_iter().map(Event::from).collect()))
    }

    /// Runs an invitation command.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn invitation(
        &mut self,
        actor: Actor,
        id: InvitationId,
        action: InvitationAction,
    ) -> Result<usize, DomainError> {
        let state = self.invitations.get(&id).cloned().unwrap_or_default();
        let ctx = InvitationContext {
            invitation: &state,
            school: &self.school,
        };
        let events = invitation::decide(&ctx, Command::new(actor, action), self.now)?;
        let state = events.iter().fold(state, invitation::evolve);
        self.invitations.insert(id, state);
        Ok(self.record(
            StreamName::invitation(id),
            actor,
            events.into_iter().map(Event::from).collect(),
        ))
    }

    /// Runs a command about a child.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn child(
        &mut self,
        actor: Actor,
        id: ChildId,
        action: ChildAction,
    ) -> Result<usize, DomainError> {
        let state = self.children.get(&id).cloned().unwrap_or_default();
        let ctx = ChildContext {
            child: &state,
            school: &self.school,
        };
        let events = child::decide(&ctx, Command::new(actor, action), self.now)?;
        let state = events.iter().fold(state, child::evolve);
        self.children.insert(id, state);
        Ok(self.record(
            StreamName::child(id),
            actor,
            events.into_iter().map(Event::from).collect(),
        ))
    }

    /// Runs a command about a person.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn person(
        &mut self,
        actor: Actor,
        id: PersonId,
        action: PersonAction,
    ) -> Result<usize, DomainError> {
        let state = self.people.get(&id).cloned().unwrap_or_default();
        let ctx = PersonContext {
            person: &state,
            school: &self.school,
        };
        let events = person::decide(&ctx, Command::new(actor, action), self.now)?;
        let state = events.iter().fold(state, person::evolve);
        self.people.insert(id, state);
        Ok(self.record(
            StreamName::person(id),
            actor,
            events.into_iter().map(Event::from).collect(),
        ))
    }

    /// Runs a command about a post.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn post(
        &mut self,
        actor: Actor,
        id: PostId,
        action: PostAction,
    ) -> Result<usize, DomainError> {
        let state = self.posts.get(&id).cloned().unwrap_or_default();
        let ctx = PostContext {
            post: &state,
            school: &self.school,
        };
        let events = post::decide(&ctx, Command::new(actor, action), self.now)?;
        let state = events.iter().fold(state, post::evolve);
        self.posts.insert(id, state);
        Ok(self.record(
            StreamName::post(id),
            actor,
            events.into_iter().map(Event::from).collect(),
        ))
    }

    /// Runs a command about a conversation.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn conversation(
        &mut self,
        actor: Actor,
        id: ConversationId,
        action: ConversationAction,
    ) -> Result<usize, DomainError> {
        let state = self.conversations.get(&id).cloned().unwrap_or_default();
        let ctx = ConversationContext {
            conversation: &state,
            school: &self.school,
        };
        let events = conversation::decide(&ctx, Command::new(actor, action), self.now)?;
        let state = events.iter().fold(state, conversation::evolve);
        self.conversations.insert(id, state);
        Ok(self.record(
            StreamName::conversation(id),
            actor,
            events.into_iter().map(Event::from).collect(),
        ))
    }

    /// Runs a command about an activity.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn activity(
        &mut self,
        actor: Actor,
        id: ActivityId,
        action: ActivityAction,
    ) -> Result<usize, DomainError> {
        let state = self.activities.get(&id).cloned().unwrap_or_default();
        let ctx = ActivityContext {
            activity: &state,
            school: &self.school,
        };
        let events = activity::decide(&ctx, Command::new(actor, action), self.now)?;
        let state = events.iter().fold(state, activity::evolve);
        self.activities.insert(id, state);
        Ok(self.record(
            StreamName::activity(id),
            actor,
            events.into_iter().map(Event::from).collect(),
        ))
    }

    /// Records an access to a subject's data.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn log_access(
        &mut self,
        actor: Actor,
        subject: Subject,
        reason: AccessReason,
    ) -> Result<usize, DomainError> {
        let key = subject.uuid();
        let state = self.access_logs.get(&key).copied().unwrap_or_default();
        let action = LogAccess { subject, reason };
        let events = access::decide(&state, Command::new(actor, action), self.now)?;
        let state = events.iter().fold(state, access::evolve);
        self.access_logs.insert(key, state);
        Ok(self.record(
            StreamName::access(key),
            actor,
            events.into_iter().map(Event::from).collect(),
        ))
    }

    /// Adds a staff member; returns their id.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn add_staff(&mut self, actor: Actor, role: StaffRole) -> Result<PersonId, DomainError> {
        let person_id = PersonId::from_uuid(self.next_uuid());
        let n = self.staff.len() + 1;
        self.school(
            actor,
            SchoolAction::AddStaff {
                person_id,
                display_name: format!("Juf Staff {n}"),
                email: format!("staff{n}@school.example"),
                role,
                identity: None,
            },
        )?;
        self.staff.push(person_id);
        Ok(person_id)
    }

    /// Creates a class group; returns its id.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn create_group(&mut self, actor: Actor, name: &str) -> Result<GroupId, DomainError> {
        let group_id = GroupId::from_uuid(self.next_uuid());
        self.school(
            actor,
            SchoolAction::CreateGroup {
                group_id,
                name: name.into(),
            },
        )?;
        self.groups.push(group_id);
        Ok(group_id)
    }

    /// Enrols a child in a class group; returns its id.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn enroll(&mut self, actor: Actor, group_id: GroupId) -> Result<ChildId, DomainError> {
        let child_id = ChildId::from_uuid(self.next_uuid());
        let n = self.child_ids.len() + 1;
        self.school(
            actor,
            SchoolAction::EnrollChild {
                child_id,
                group_id,
                first_name: format!("Kind{n}"),
                last_initial: "V".into(),
            },
        )?;
        self.child_ids.push(child_id);
        Ok(child_id)
    }

    /// Sends an invitation for `child_id`; returns the invitation and the invitee's person id.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn invite(
        &mut self,
        actor: Actor,
        child_id: ChildId,
    ) -> Result<(InvitationId, PersonId), DomainError> {
        let invitation_id = InvitationId::from_uuid(self.next_uuid());
        let invitee_id = PersonId::from_uuid(self.next_uuid());
        let n = self.invitees.len() + 1;
        self.invitation(
            actor,
            invitation_id,
            InvitationAction::Invite {
                invitation_id,
                child_id,
                email: format!("parent{n}@mail.example"),
                invitee_id,
                code_digest: GOOD_CODE.into(),
                mail_code: None,
            },
        )?;
        self.invitation_ids.push(invitation_id);
        self.invitees.push(invitee_id);
        Ok((invitation_id, invitee_id))
    }

    /// Approves an accepted invitation and completes it by linking the guardian, as the
    /// application does.
    ///
    /// # Errors
    /// The rule either step breaks.
    pub fn approve_and_link(
        &mut self,
        actor: Actor,
        invitation_id: InvitationId,
        child_id: Option<ChildId>,
    ) -> Result<(), DomainError> {
        self.invitation(actor, invitation_id, InvitationAction::Approve { child_id })?;
        let invitation = self
            .invitations
            .get(&invitation_id)
            .cloned()
            .unwrap_or_default();
        self.school(actor, SchoolAction::LinkGuardian { invitation })?;
        Ok(())
    }

    /// Invites, accepts and approves a new guardian for `child_id`; returns the guardian.
    ///
    /// # Errors
    /// The rule a step breaks.
    pub fn invite_and_link(
        &mut self,
        staff: Actor,
        child_id: ChildId,
    ) -> Result<PersonId, DomainError> {
        let (invitation_id, guardian) = self.invite(staff, child_id)?;
        self.invitation(
            Actor::Person(guardian),
            invitation_id,
            InvitationAction::Accept {
                code_digest: GOOD_CODE.into(),
                display_name: "Ouder".into(),
            },
        )?;
        self.approve_and_link(staff, invitation_id, None)?;
        Ok(guardian)
    }

    /// A guardian's consent decision.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn decide_consent(
        &mut self,
        guardian: PersonId,
        child_id: ChildId,
        purpose: Purpose,
        granted: bool,
    ) -> Result<usize, DomainError> {
        self.child(
            Actor::Person(guardian),
            child_id,
            ChildAction::DecideConsent {
                child_id,
                purpose,
                granted,
                method: ConsentMethod::App,
            },
        )
    }

    /// Publishes a post with one media item per entry of `tags`; returns the post and media ids.
    ///
    /// # Errors
    /// The rule the command breaks.
    pub fn publish(
        &mut self,
        actor: Actor,
        group_id: GroupId,
        tags: &[Vec<ChildId>],
    ) -> Result<(PostId, Vec<MediaId>), DomainError> {
        let post_id = PostId::from_uuid(self.next_uuid());
        let media: Vec<MediaAttachment> = tags
            .iter()
            .map(|tagged| MediaAttachment {
                media_id: MediaId::from_uuid(self.next_uuid()),
                content_type: "image/jpeg".into(),
                tagged_children: tagged.clone(),
            })
            .collect();
        let media_ids: Vec<MediaId> = media.iter().map(|m| m.media_id).collect();
        self.post(
            actor,
            post_id,
            PostAction::Publish {
                post_id,
                group_id,
                body: "Uitje naar het bos".into(),
                media,
            },
        )?;
        self.post_ids.push(post_id);
        self.media_ids
            .extend(media_ids.iter().map(|m| (post_id, *m)));
        Ok((post_id, media_ids))
    }

    /// The guardians linked to `child_id`.
    #[must_use]
    pub fn guardians_of(&self, child_id: ChildId) -> Vec<PersonId> {
        self.school
            .children
            .get(&child_id)
            .map(|e| e.guardians.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every person the simulation knows: staff, invitees, plus the operator's stand-in none.
    fn people_pool(&self) -> Vec<PersonId> {
        self.staff
            .iter()
            .chain(self.invitees.iter())
            .copied()
            .collect()
    }

    /// Applies one random operation; a refused command is part of a realistic history and
    /// leaves the world unchanged.
    ///
    /// # Errors
    /// The domain's refusal of the command; a not-found error when the operation picks from a
    /// pool the world has not filled yet.
    pub fn apply(&mut self, op: &Op) -> Result<usize, DomainError> {
        fn pick<T: Copy>(pool: &[T], i: u8) -> Option<T> {
            (!pool.is_empty()).then(|| pool[usize::from(i) % pool.len()])
        }
        let nobody = || DomainError::not_found("simulated id", Uuid::nil());
        self.advance(Duration::minutes(7));
        let people = self.people_pool();
        let person = |i: u8| pick(&people, i).map(Actor::Person).ok_or_else(nobody);
        // Staff-only steps are mostly taken by staff, sometimes by anyone (to exercise refusals).
        let staff_pool = self.staff.clone();
        let staff = |i: u8| {
            if i.is_multiple_of(4) {
                person(i / 4)
            } else {
                pick(&staff_pool, i).map(Actor::Person).ok_or_else(nobody)
            }
        };
        match *op {
            Op::AddTeacher => self
                .add_staff(Actor::Person(self.director), StaffRole::Teacher)
                .map(|_| 1),
            Op::CreateGroup => {
                let n = self.groups.len() + 1;
                self.create_group(Actor::Person(self.director), &format!("Groep {n}"))
                    .map(|_| 1)
            }
            Op::AssignStaff { staff, group } => {
                let person_id = pick(&self.staff, staff).ok_or_else(nobody)?;
                let group_id = pick(&self.groups, group).ok_or_else(nobody)?;
                self.school(
                    Actor::Person(self.director),
                    SchoolAction::AssignStaff {
                        group_id,
                        person_id,
                    },
                )
            }
            Op::Enroll { by, group } => {
                let group_id = pick(&self.groups, group).ok_or_else(nobody)?;
                self.enroll(staff(by)?, group_id).map(|_| 1)
            }
            Op::MoveChild { child, group } => {
                let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                let to_group_id = pick(&self.groups, group).ok_or_else(nobody)?;
                self.school(
                    Actor::Person(self.director),
                    SchoolAction::MoveChild {
                        child_id,
                        to_group_id,
                    },
                )
            }
            Op::Invite { by, child } => {
                let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                self.invite(staff(by)?, child_id).map(|_| 1)
            }
            Op::Accept {
                invitation,
                right_code,
            } => {
                let id = pick(&self.invitation_ids, invitation).ok_or_else(nobody)?;
                let invitee = self
                    .invitations
                    .get(&id)
                    .and_then(|i| i.invitee_id)
                    .ok_or_else(nobody)?;
                let code_digest = if right_code {
                    GOOD_CODE.into()
                } else {
                    "wrong".into()
                };
                self.invitation(
                    Actor::Person(invitee),
                    id,
                    InvitationAction::Accept {
                        code_digest,
                        display_name: "Ouder".into(),
                    },
                )
            }
            Op::Approve {
                by,
                invitation,
                correct_to,
            } => {
                let id = pick(&self.invitation_ids, invitation).ok_or_else(nobody)?;
                let child_id = correct_to.and_then(|c| pick(&self.child_ids, c));
                self.approve_and_link(staff(by)?, id, child_id).map(|()| 1)
            }
            Op::LinkWithoutApproving { by, invitation } => {
                let id = pick(&self.invitation_ids, invitation).ok_or_else(nobody)?;
                let invitation = self.invitations.get(&id).cloned().unwrap_or_default();
                let actor = if by.is_multiple_of(2) {
                    Actor::System
                } else {
                    person(by)?
                };
                self.school(actor, SchoolAction::LinkGuardian { invitation })
            }
            Op::Revoke { by, invitation } => {
                let id = pick(&self.invitation_ids, invitation).ok_or_else(nobody)?;
                self.invitation(staff(by)?, id, InvitationAction::Revoke)
            }
            Op::Expire { invitation } => {
                let id = pick(&self.invitation_ids, invitation).ok_or_else(nobody)?;
                self.invitation(Actor::System, id, InvitationAction::Expire)
            }
            Op::Unlink { child, guardian } => {
                let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                let guardian_id =
                    pick(&self.guardians_of(child_id), guardian).ok_or_else(nobody)?;
                self.school(
                    Actor::Person(self.director),
                    SchoolAction::UnlinkGuardian {
                        child_id,
                        guardian_id,
                    },
                )
            }
            Op::Consent {
                by,
                child,
                purpose,
                granted,
            } => {
                let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                let purpose = Purpose::ALL[usize::from(purpose) % Purpose::ALL.len()];
                let Actor::Person(guardian) = person(by)? else {
                    return Err(nobody());
                };
                self.decide_consent(guardian, child_id, purpose, granted)
            }
            Op::GuardianConsent {
                child,
                guardian,
                purpose,
                granted,
            } => {
                let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                let guardian = pick(&self.guardians_of(child_id), guardian).ok_or_else(nobody)?;
                let purpose = [Purpose::GroupCommunication, Purpose::SchoolCommunication]
                    [usize::from(purpose) % 2];
                self.decide_consent(guardian, child_id, purpose, granted)
            }
            Op::Publish {
                by,
                group,
                ref tags,
            } => {
                let mut groups = self.groups.clone();
                groups.push(self.school_group());
                let group_id = pick(&groups, group).ok_or_else(nobody)?;
                let tags: Vec<Vec<ChildId>> = tags
                    .iter()
                    .map(|t| t.iter().filter_map(|c| pick(&self.child_ids, *c)).collect())
                    .collect();
                self.publish(staff(by)?, group_id, &tags).map(|_| 1)
            }
            Op::Tag {
                by,
                media,
                child,
                tag,
            } => {
                let (post_id, media_id) = pick(&self.media_ids, media).ok_or_else(nobody)?;
                let action = if tag {
                    let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                    PostAction::Tag { media_id, child_id }
                } else {
                    // Untag one of the children actually tagged, so untagging happens.
                    let tagged: Vec<ChildId> = self
                        .posts
                        .get(&post_id)
                        .and_then(|p| p.media.get(&media_id))
                        .map(|m| m.tagged.iter().copied().collect())
                        .unwrap_or_default();
                    let child_id = pick(&tagged, child).ok_or_else(nobody)?;
                    PostAction::Untag { media_id, child_id }
                };
                self.post(staff(by)?, post_id, action)
            }
            Op::RemoveMedia { by, media } => {
                let (post_id, media_id) = pick(&self.media_ids, media).ok_or_else(nobody)?;
                self.post(
                    staff(by)?,
                    post_id,
                    PostAction::RemoveMedia {
                        media_id,
                        reason: "Op verzoek".into(),
                    },
                )
            }
            Op::RemovePost { by, post } => {
                let post_id = pick(&self.post_ids, post).ok_or_else(nobody)?;
                self.post(
                    staff(by)?,
                    post_id,
                    PostAction::Remove {
                        reason: "Op verzoek".into(),
                    },
                )
            }
            Op::Schedule { by, group, slots } => {
                let group_id = pick(&self.groups, group).ok_or_else(nobody)?;
                let activity_id = ActivityId::from_uuid(self.next_uuid());
                let starts_at = self.now + Duration::days(14);
                let n = self.activity(
                    staff(by)?,
                    activity_id,
                    ActivityAction::Schedule {
                        activity_id,
                        group_id,
                        title: "Schoolreisje".into(),
                        starts_at,
                        ends_at: starts_at + Duration::hours(6),
                        volunteer_slots: u32::from(slots),
                    },
                )?;
                self.activity_ids.push(activity_id);
                Ok(n)
            }
            Op::Volunteer {
                by,
                activity,
                sign_up,
            } => {
                let activity_id = pick(&self.activity_ids, activity).ok_or_else(nobody)?;
                let action = if sign_up {
                    ActivityAction::SignUp
                } else {
                    ActivityAction::Withdraw
                };
                self.activity(person(by)?, activity_id, action)
            }
            Op::Absence {
                by,
                child,
                days_ahead,
            } => {
                let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                let absence_id = crate::AbsenceId::from_uuid(self.next_uuid());
                let from = child::earliest_absence_day(self.now, 0)
                    + Duration::days(i64::from(days_ahead));
                self.child(
                    person(by)?,
                    child_id,
                    ChildAction::ReportAbsence {
                        child_id,
                        absence_id,
                        from,
                        to: from,
                        reason: "Bruiloft".into(),
                    },
                )
            }
            Op::Converse { by, child } => {
                let child_id = pick(&self.child_ids, child).ok_or_else(nobody)?;
                let conversation_id = ConversationId::from_uuid(self.next_uuid());
                let message_id = crate::MessageId::from_uuid(self.next_uuid());
                let n = self.conversation(
                    person(by)?,
                    conversation_id,
                    ConversationAction::Start {
                        conversation_id,
                        child_id,
                        participants: Vec::new(),
                        message_id,
                        body: "Hoe gaat het?".into(),
                    },
                )?;
                self.conversation_ids.push(conversation_id);
                Ok(n)
            }
            Op::AdvanceDays(days) => {
                self.advance(Duration::days(i64::from(days)));
                Ok(0)
            }
        }
    }

    /// Whether invitation `id` was approved in the log before position `before`, for `child`
    /// and `guardian`.
    #[must_use]
    pub fn approved_before(
        &self,
        id: InvitationId,
        child: ChildId,
        guardian: PersonId,
        before: usize,
    ) -> bool {
        self.log[..before].iter().any(|r| {
            matches!(&r.event, Event::Invitation(invitation::InvitationEvent::InvitationApproved(a))
                if a.invitation_id == id && a.child_id == child && a.guardian_id == guardian)
        })
    }

    /// Whether the invitation is approved now.
    #[must_use]
    pub fn is_approved(&self, id: InvitationId) -> bool {
        self.invitations
            .get(&id)
            .is_some_and(|i| matches!(i.status, InvitationStatus::Approved { .. }))
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// One random step of a school's life. Numbers index into the world's pools (modulo their
/// length), so every generated step names something that exists, or is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(missing_docs)]
pub enum Op {
    AddTeacher,
    CreateGroup,
    AssignStaff {
        staff: u8,
        group: u8,
    },
    Enroll {
        by: u8,
        group: u8,
    },
    MoveChild {
        child: u8,
        group: u8,
    },
    Invite {
        by: u8,
        child: u8,
    },
    Accept {
        invitation: u8,
        right_code: bool,
    },
    Approve {
        by: u8,
        invitation: u8,
        correct_to: Option<u8>,
    },
    LinkWithoutApproving {
        by: u8,
        invitation: u8,
    },
    Revoke {
        by: u8,
        invitation: u8,
    },
    Expire {
        invitation: u8,
    },
    Unlink {
        child: u8,
        guardian: u8,
    },
    Consent {
        by: u8,
        child: u8,
        purpose: u8,
        granted: bool,
    },
    GuardianConsent {
        child: u8,
        guardian: u8,
        purpose: u8,
        granted: bool,
    },
    Publish {
        by: u8,
        group: u8,
        tags: Vec<Vec<u8>>,
    },
    Tag {
        by: u8,
        media: u8,
        child: u8,
        tag: bool,
    },
    RemoveMedia {
        by: u8,
        media: u8,
    },
    RemovePost {
        by: u8,
        post: u8,
    },
    Schedule {
        by: u8,
        group: u8,
        slots: u8,
    },
    Volunteer {
        by: u8,
        activity: u8,
        sign_up: bool,
    },
    Absence {
        by: u8,
        child: u8,
        days_ahead: u8,
    },
    Converse {
        by: u8,
        child: u8,
    },
    AdvanceDays(u8),
}

/// A random step, weighted towards the life of a class: consents, posts and tags.
pub fn op() -> impl Strategy<Value = Op> {
    let i = || any::<u8>();
    prop_oneof![
        1 => Just(Op::AddTeacher),
        1 => Just(Op::CreateGroup),
        2 => (i(), i()).prop_map(|(staff, group)| Op::AssignStaff { staff, group }),
        3 => (i(), i()).prop_map(|(by, group)| Op::Enroll { by, group }),
        1 => (i(), i()).prop_map(|(child, group)| Op::MoveChild { child, group }),
        3 => (i(), i()).prop_map(|(by, child)| Op::Invite { by, child }),
        3 => (i(), prop::bool::weighted(0.9)).prop_map(|(invitation, right_code)| Op::Accept { invitation, right_code }),
        3 => (i(), i(), prop::option::weighted(0.2, i())).prop_map(|(by, invitation, correct_to)| Op::Approve { by, invitation, correct_to }),
        1 => (i(), i()).prop_map(|(by, invitation)| Op::LinkWithoutApproving { by, invitation }),
        1 => (i(), i()).prop_map(|(by, invitation)| Op::Revoke { by, invitation }),
        1 => i().prop_map(|invitation| Op::Expire { invitation }),
        1 => (i(), i()).prop_map(|(child, guardian)| Op::Unlink { child, guardian }),
        2 => (i(), i(), i(), any::<bool>()).prop_map(|(by, child, purpose, granted)| Op::Consent { by, child, purpose, granted }),
        6 => (i(), i(), i(), prop::bool::weighted(0.7)).prop_map(|(child, guardian, purpose, granted)| Op::GuardianConsent { child, guardian, purpose, granted }),
        4 => (i(), i(), prop::collection::vec(prop::collection::vec(i(), 0..4), 0..4)).prop_map(|(by, group, tags)| Op::Publish { by, group, tags }),
        3 => (i(), i(), i(), any::<bool>()).prop_map(|(by, media, child, tag)| Op::Tag { by, media, child, tag }),
        1 => (i(), i()).prop_map(|(by, media)| Op::RemoveMedia { by, media }),
        1 => (i(), i()).prop_map(|(by, post)| Op::RemovePost { by, post }),
        1 => (i(), i(), 0..4_u8).prop_map(|(by, group, slots)| Op::Schedule { by, group, slots }),
        3 => (i(), i(), prop::bool::weighted(0.8)).prop_map(|(by, activity, sign_up)| Op::Volunteer { by, activity, sign_up }),
        1 => (i(), i(), 0..3_u8).prop_map(|(by, child, days_ahead)| Op::Absence { by, child, days_ahead }),
        1 => (i(), i()).prop_map(|(by, child)| Op::Converse { by, child }),
        1 => (0..20_u8).prop_map(Op::AdvanceDays),
    ]
}

/// A history: a world with `groups` classes already populated, then `len` random steps applied.
pub fn history(max_len: usize) -> impl Strategy<Value = (usize, Vec<Op>)> {
    (1..4_usize, prop::collection::vec(op(), 0..max_len))
}

/// Builds the world for a generated history: a populated school, then the steps.
#[must_use]
pub fn play(groups: usize, ops: &[Op]) -> World {
    let mut world = World::with_classes(groups, 3, 2);
    for op in ops {
        // Refusals are expected in a random history; they change nothing.
        let _ = world.apply(op);
    }
    world
}

/// A date in the simulated calendar (for tests).
#[must_use]
pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}
