//! The school and its roster: staff and their roles, groups and their staff, children and
//! their guardians, the consent policy and the school's settings.
//!
//! The roster is one aggregate (stream `school-<id>`) because every membership rule of the
//! other aggregates — "is this person staff of that group?", "guardian of that child?" — is
//! decided from it, and it changes rarely. See `docs/decisions/0001-school-roster-aggregate.md`.

use crate::actor::Actor;
use crate::consent::Consents;
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ChildId, GroupId, InvitationId, PersonId, SchoolId};
use crate::invitation::Invitation;
use crate::person::{Channel, NotificationKind, QuietHours, SsoIdentity};
use crate::purpose::Purpose;
use crate::sealed::Sealed;
use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

mod decide;
mod transition;
pub use decide::decide;
pub use transition::{
    plan_transition, transition, Destination, GroupPlan, TransitionChange, YearTransition,
};

/// A staff member's role at a school.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// A teacher: posts to the groups they are assigned to.
    Teacher,
    /// A director or school administrator: manages the roster and the school group.
    Director,
    /// A privacy officer or auditor: reads consent history and the access log.
    ComplianceOfficer,
}

/// Whether a group is a class or the whole school.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// A class group: the children placed in it and their guardians.
    Class,
    /// The whole-school group: every child of the school and their guardians.
    School,
}

impl GroupKind {
    /// The consent purpose that governs showing a child's image to this group's parents.
    #[must_use]
    pub const fn purpose(self) -> Purpose {
        match self {
            Self::Class => Purpose::GroupCommunication,
            Self::School => Purpose::SchoolCommunication,
        }
    }
}

/// The time zone a school's calendar is kept in when it has not chosen one.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Amsterdam";

fn default_time_zone() -> String {
    DEFAULT_TIME_ZONE.to_owned()
}

/// The school's settings. Fields added after the first version read their default from older
/// events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolSettings {
    /// Days of notice a planned absence needs (the schools' absence rule: at least one day ahead).
    pub absence_notice_days: u32,
    /// Days an invitation stays valid.
    pub invitation_ttl_days: u32,
    /// Days content is kept before the retention job expires it.
    pub retention_days: u32,
    /// The IANA time zone of the school's calendar ("a day ahead" is counted in it).
    #[serde(default = "default_time_zone")]
    pub timezone: String,
    /// Quiet hours for staff who have not set their own.
    #[serde(default)]
    pub default_quiet_hours: Option<QuietHours>,
    /// The channel of each notification kind for members who did not choose one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_channels: BTreeMap<NotificationKind, Channel>,
    /// The local time of the daily digest for members who did not choose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_digest_at: Option<NaiveTime>,
}

impl Default for SchoolSettings {
    fn default() -> Self {
        Self {
            absence_notice_days: 1,
            invitation_ttl_days: 14,
            retention_days: 365,
            timezone: default_time_zone(),
            default_quiet_hours: None,
            default_channels: BTreeMap::new(),
            default_digest_at: None,
        }
    }
}

impl SchoolSettings {
    /// The school's time zone (the default zone for a name no longer known).
    #[must_use]
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone
            .parse()
            .unwrap_or(crate::child::SCHOOL_TIME_ZONE)
    }

    fn validate(mut self) -> Result<Self, DomainError> {
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(DomainError::invalid(
                "timezone",
                format!(
                    "{:?} is not an IANA time zone such as Europe/Amsterdam",
                    self.timezone
                ),
            ));
        }
        if let Some(quiet) = self.default_quiet_hours.take() {
            self.default_quiet_hours = Some(quiet.validate()?);
        }
        if self.absence_notice_days > 60 {
            return Err(DomainError::invalid(
                "absence_notice_days",
                "must be 0 to 60",
            ));
        }
        if !(1..=90).contains(&self.invitation_ttl_days) {
            return Err(DomainError::invalid(
                "invitation_ttl_days",
                "must be 1 to 90",
            ));
        }
        if !(1..=3650).contains(&self.retention_days) {
            return Err(DomainError::invalid("retention_days", "must be 1 to 3650"));
        }
        Ok(self)
    }
}

/// One purpose of a consent policy, with the text parents are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPurpose {
    /// The purpose.
    pub purpose: Purpose,
    /// What it means, in the school's words.
    pub description: String,
}

/// A version of the school's consent policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentPolicy {
    /// 1, 2, 3, … in order of publication.
    pub version: u32,
    /// The purposes asked for.
    pub purposes: Vec<PolicyPurpose>,
    /// Per purpose asked, the version since which it has meant what it means now: decisions
    /// under an earlier version do not count for it (Dutch DPA: consent is asked again when
    /// what it covers changes).
    #[serde(default)]
    pub since: BTreeMap<Purpose, u32>,
}

impl ConsentPolicy {
    /// Whether this policy asks consent for `purpose`.
    #[must_use]
    pub fn asks(&self, purpose: Purpose) -> bool {
        self.purposes.iter().any(|p| p.purpose == purpose)
    }

    /// The version `version` with `purposes`, following `earlier` (the version before it, if
    /// any): a purpose keeps the `since` of the earlier version when its description did not
    /// change; a new or reworded purpose counts from `version`.
    #[must_use]
    pub fn following(earlier: Option<&Self>, version: u32, purposes: Vec<PolicyPurpose>) -> Self {
        let since = purposes
            .iter()
            .map(|p| {
                let kept = earlier.and_then(|e| {
                    e.purposes
                        .iter()
                        .any(|q| q.purpose == p.purpose && q.description == p.description)
                        .then(|| e.counts_from(p.purpose))
                        .flatten()
                });
                (p.purpose, kept.unwrap_or(version))
            })
            .collect();
        Self {
            version,
            purposes,
            since,
        }
    }

    /// The oldest policy version whose decisions count for `purpose`; `None` when the policy
    /// does not ask for it (then no decision counts).
    #[must_use]
    pub fn counts_from(&self, purpose: Purpose) -> Option<u32> {
        if !self.asks(purpose) {
            return None;
        }
        // A state stored before `since` was kept counts every decision of an asked purpose.
        Some(self.since.get(&purpose).copied().unwrap_or(1))
    }

    /// Rule: whether consent for `purpose` holds over `consents`, counting only decisions made
    /// under a version that gave the purpose its current meaning.
    #[must_use]
    pub fn holds(&self, consents: &Consents, purpose: Purpose) -> bool {
        self.counts_from(purpose)
            .is_some_and(|from| consents.is_effective(purpose, from))
    }

    /// Whether guardians must decide again on `purpose`: it is asked, some guardian decided,
    /// and no decision counts under its current meaning.
    #[must_use]
    pub fn needs_decision(&self, consents: &Consents, purpose: Purpose) -> bool {
        self.counts_from(purpose)
            .is_some_and(|from| consents.needs_decision(purpose, from))
    }
}

/// A group in the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Class or whole school.
    pub kind: GroupKind,
    /// Staff assigned to it.
    pub staff: BTreeSet<PersonId>,
    /// Its name (not personal data): a year transition finds a new group by it.
    #[serde(default)]
    pub name: String,
    /// Whether it ended at a year transition: read-only from then on.
    #[serde(default)]
    pub archived: bool,
}

/// A child's place in the school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The child's class group.
    pub group_id: GroupId,
    /// Guardians linked after staff approval.
    pub guardians: BTreeSet<PersonId>,
}

/// The roster state. Holds facts only, never personal data: names live in the events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct School {
    /// The school, once registered.
    pub school_id: Option<SchoolId>,
    /// Its whole-school group.
    pub school_group_id: Option<GroupId>,
    /// Its settings.
    pub settings: SchoolSettings,
    /// The current consent policy.
    pub policy: Option<ConsentPolicy>,
    /// Staff and their roles.
    pub staff: BTreeMap<PersonId, StaffRole>,
    /// Groups, the school group included.
    pub groups: BTreeMap<GroupId, Group>,
    /// Enrolled children.
    pub children: BTreeMap<ChildId, Enrolment>,
}

impl School {
    /// The school's id, or `NotFound` when it was never registered.
    ///
    /// # Errors
    /// `NotFound` for an unregistered school.
    pub fn id(&self) -> Result<SchoolId, DomainError> {
        self.school_id.ok_or(DomainError::NotFound {
            kind: "school",
            id: uuid::Uuid::nil(),
        })
    }

    /// The role of `person` at this school, if staff.
    #[must_use]
    pub fn role(&self, person: PersonId) -> Option<StaffRole> {
        self.staff.get(&person).copied()
    }

    /// Whether `actor` is a director of this school.
    #[must_use]
    pub fn is_director(&self, actor: Actor) -> bool {
        actor
            .person()
            .is_some_and(|p| self.role(p) == Some(StaffRole::Director))
    }

    /// Rule: whether consent for `purpose` holds over `consents` under the school's current
    /// policy ([`ConsentPolicy::holds`]); never without a policy.
    #[must_use]
    pub fn consent_holds(&self, consents: &Consents, purpose: Purpose) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|p| p.holds(consents, purpose))
    }

    /// Whether `actor` belongs to the school: the operator, a staff member, or a linked
    /// guardian of one of its children.
    #[must_use]
    pub fn is_member(&self, actor: Actor) -> bool {
        match actor.person() {
            Some(p) => {
                self.staff.contains_key(&p)
                    || self.children.values().any(|e| e.guardians.contains(&p))
            }
            None => actor == Actor::Operator,
        }
    }

    /// Whether `actor` is any staff member of this school.
    #[must_use]
    pub fn is_staff(&self, actor: Actor) -> bool {
        actor.person().is_some_and(|p| self.staff.contains_key(&p))
    }

    /// The group, or `NotFound`.
    ///
    /// # Errors
    /// `NotFound` for a group of another school or none.
    pub fn group(&self, group_id: GroupId) -> Result<&Group, DomainError> {
        self.groups
            .get(&group_id)
            .ok_or_else(|| DomainError::not_found("group", group_id))
    }

    /// The child's enrolment, or `NotFound`.
    ///
    /// # Errors
    /// `NotFound` for a child not enrolled here.
    pub fn enrolment(&self, child_id: ChildId) -> Result<&Enrolment, DomainError> {
        self.children
            .get(&child_id)
            .ok_or_else(|| DomainError::not_found("child", child_id))
    }

    /// Rule: only staff assigned to a class group post to it; only a director posts to the
    /// school group.
    #[must_use]
    pub fn may_post_to(&self, actor: Actor, group_id: GroupId) -> bool {
        let Some(person) = actor.person() else {
            return false;
        };
        match self.groups.get(&group_id) {
            Some(group) if group.kind == GroupKind::School => self.is_director(actor),
            Some(group) => group.staff.contains(&person) && self.staff.contains_key(&person),
            None => false,
        }
    }

    /// Whether `actor` is staff responsible for `group_id`: assigned to it, or a director
    /// (directors oversee every group of their school).
    #[must_use]
    pub fn is_group_staff(&self, actor: Actor, group_id: GroupId) -> bool {
        self.is_director(actor) || self.may_post_to(actor, group_id)
    }

    /// The staff who see everything posted to the group: its assigned staff and the directors
    /// for a class group; every staff member for the school group.
    #[must_use]
    pub fn audience_staff(&self, group_id: GroupId) -> BTreeSet<PersonId> {
        match self.groups.get(&group_id) {
            Some(group) if group.kind == GroupKind::School => self.staff.keys().copied().collect(),
            Some(group) => self
                .staff
                .iter()
                .filter(|(p, role)| **role == StaffRole::Director || group.staff.contains(p))
                .map(|(p, _)| *p)
                .collect(),
            None => BTreeSet::new(),
        }
    }

    /// The children in the group's audience: its pupils, or every pupil for the school group.
    pub fn audience_children(&self, group_id: GroupId) -> impl Iterator<Item = ChildId> + '_ {
        let whole_school = self
            .groups
            .get(&group_id)
            .is_some_and(|g| g.kind == GroupKind::School);
        self.children
            .iter()
            .filter(move |(_, e)| whole_school || e.group_id == group_id)
            .map(|(c, _)| *c)
    }

    /// Whether `child_id` is in the group's audience.
    #[must_use]
    pub fn in_audience(&self, group_id: GroupId, child_id: ChildId) -> bool {
        match (self.groups.get(&group_id), self.children.get(&child_id)) {
            (Some(group), Some(enrolment)) => {
                group.kind == GroupKind::School || enrolment.group_id == group_id
            }
            _ => false,
        }
    }

    /// The guardians in the group's audience, each with their children in that audience.
    #[must_use]
    pub fn audience_guardians(&self, group_id: GroupId) -> BTreeMap<PersonId, BTreeSet<ChildId>> {
        let mut guardians: BTreeMap<PersonId, BTreeSet<ChildId>> = BTreeMap::new();
        for child in self.audience_children(group_id) {
            for guardian in &self.children[&child].guardians {
                guardians.entry(*guardian).or_default().insert(child);
            }
        }
        guardians
    }

    /// Whether `person` is a linked guardian of `child_id`.
    #[must_use]
    pub fn is_guardian(&self, person: PersonId, child_id: ChildId) -> bool {
        self.children
            .get(&child_id)
            .is_some_and(|e| e.guardians.contains(&person))
    }

    /// Whether `person` is a guardian of some child in the group's audience.
    #[must_use]
    pub fn is_guardian_in_group(&self, person: PersonId, group_id: GroupId) -> bool {
        self.audience_children(group_id)
            .any(|c| self.is_guardian(person, c))
    }

    /// The group, which must still be open: an archived group takes no new posts, children,
    /// conversations or activities.
    ///
    /// # Errors
    /// `NotFound` for an unknown group; `GroupArchived` for an archived one.
    pub fn open_group(&self, group_id: GroupId) -> Result<&Group, DomainError> {
        let group = self.group(group_id)?;
        if group.archived {
            Err(DomainError::GroupArchived { group_id })
        } else {
            Ok(group)
        }
    }

    /// The consent purpose for showing images to the group's parents.
    ///
    /// # Errors
    /// `NotFound` for an unknown group.
    pub fn purpose_of(&self, group_id: GroupId) -> Result<Purpose, DomainError> {
        Ok(self.group(group_id)?.kind.purpose())
    }
}

macro_rules! school_event {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            /// The school.
            pub school_id: SchoolId,
            $($(#[$fmeta])* pub $field: $ty),*
        }
    };
}

school_event!(
    /// A school joined Kring, with its whole-school group.
    SchoolRegistered {
        /// The school's name (not personal data).
        name: String,
        /// The school's BRIN code (Dutch school registration number).
        brin: String,
        /// Its whole-school group.
        school_group_id: GroupId,
        /// Its initial settings.
        settings: SchoolSettings,
    }
);
school_event!(
    /// The school changed its settings.
    SchoolSettingsChanged {
        /// The new settings.
        settings: SchoolSettings,
    }
);
school_event!(
    /// A new version of the consent policy took effect.
    ConsentPolicyPublished {
        /// Its version number.
        version: u32,
        /// The purposes asked for.
        purposes: Vec<PolicyPurpose>,
    }
);
school_event!(
    /// A staff member joined the school.
    StaffJoined {
        /// The staff member.
        person_id: PersonId,
        /// Their role.
        role: StaffRole,
        /// Their display name (personal, sealed for the person).
        display_name: Sealed<String>,
        /// Their e-mail address (personal, sealed for the person; shown only to them).
        email: Sealed<String>,
        /// Their identity at the school's single sign-on issuer, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<SsoIdentity>,
    }
);
school_event!(
    /// A staff member's role changed.
    StaffRoleChanged {
        /// The staff member.
        person_id: PersonId,
        /// The new role.
        role: StaffRole,
    }
);
school_event!(
    /// A staff member left the school (and every group of it).
    StaffLeft {
        /// The staff member.
        person_id: PersonId,
    }
);
school_event!(
    /// A class group was created.
    GroupCreated {
        /// The group.
        group_id: GroupId,
        /// Its name, e.g. "Groep 5b".
        name: String,
    }
);
school_event!(
    /// A class group ended at a year transition: read-only from then on, its content kept for
    /// the retention period.
    GroupArchived {
        /// The group.
        group_id: GroupId,
        /// The first day of the school year it did not continue into.
        effective_on: NaiveDate,
    }
);
school_event!(
    /// A staff member was assigned to a group.
    StaffAssigned {
        /// The group.
        group_id: GroupId,
        /// The staff member.
        person_id: PersonId,
    }
);
school_event!(
    /// A staff member was taken off a group.
    StaffUnassigned {
        /// The group.
        group_id: GroupId,
        /// The staff member.
        person_id: PersonId,
    }
);
school_event!(
    /// A child was placed in a class group (schema v2: first name and last initial only).
    ChildEnrolled {
        /// The child.
        child_id: ChildId,
        /// The class group.
        group_id: GroupId,
        /// First name (personal, sealed for the child).
        first_name: Sealed<String>,
        /// Initial of the last name (personal, sealed for the child).
        last_initial: Sealed<String>,
    }
);
school_event!(
    /// Staff corrected a child's name.
    ChildDetailsCorrected {
        /// The child.
        child_id: ChildId,
        /// First name (personal, sealed for the child).
        first_name: Sealed<String>,
        /// Initial of the last name (personal, sealed for the child).
        last_initial: Sealed<String>,
    }
);
school_event!(
    /// A child moved to another class group.
    ChildMoved {
        /// The child.
        child_id: ChildId,
        /// The old class group.
        from_group_id: GroupId,
        /// The new class group.
        to_group_id: GroupId,
    }
);
school_event!(
    /// A child left the school; their guardians leave with them.
    ChildUnenrolled {
        /// The child.
        child_id: ChildId,
    }
);
school_event!(
    /// A guardian was linked to a child after staff approved their invitation.
    GuardianLinked {
        /// The child.
        child_id: ChildId,
        /// The guardian.
        guardian_id: PersonId,
        /// The approved invitation that links them.
        invitation_id: InvitationId,
        /// The staff member who approved.
        approved_by: PersonId,
    }
);
school_event!(
    /// A guardian was unlinked from a child.
    GuardianUnlinked {
        /// The child.
        child_id: ChildId,
        /// The guardian.
        guardian_id: PersonId,
        /// Who unlinked them.
        by: Actor,
    }
);

event_enum! {
    /// Events of the school-roster stream.
    pub enum SchoolEvent {
        /// See [`SchoolRegistered`].
        SchoolRegistered,
        /// See [`SchoolSettingsChanged`].
        SchoolSettingsChanged,
        /// See [`ConsentPolicyPublished`].
        ConsentPolicyPublished,
        /// See [`StaffJoined`].
        StaffJoined,
        /// See [`StaffRoleChanged`].
        StaffRoleChanged,
        /// See [`StaffLeft`].
        StaffLeft,
        /// See [`GroupCreated`].
        GroupCreated,
        /// See [`GroupArchived`].
        GroupArchived,
        /// See [`StaffAssigned`].
        StaffAssigned,
        /// See [`StaffUnassigned`].
        StaffUnassigned,
        /// See [`ChildEnrolled`].
        ChildEnrolled,
        /// See [`ChildDetailsCorrected`].
        ChildDetailsCorrected,
        /// See [`ChildMoved`].
        ChildMoved,
        /// See [`ChildUnenrolled`].
        ChildUnenrolled,
        /// See [`GuardianLinked`].
        GuardianLinked,
        /// See [`GuardianUnlinked`].
        GuardianUnlinked,
    }
}

/// What can be asked of the school roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchoolAction {
    /// Register a school with its whole-school group (operator). Publishes policy version 1
    /// asking consent for every purpose.
    Register {
        /// The new school's id.
        school_id: SchoolId,
        /// Its whole-school group's id.
        school_group_id: GroupId,
        /// Its name.
        name: String,
        /// Its BRIN code: four characters, e.g. `12AB`.
        brin: String,
    },
    /// Change the school's settings (director, operator).
    ChangeSettings(SchoolSettings),
    /// Publish a new consent policy version (director).
    PublishConsentPolicy {
        /// The purposes asked for.
        purposes: Vec<PolicyPurpose>,
    },
    /// Add a staff member (director, operator).
    AddStaff {
        /// The new staff member's id.
        person_id: PersonId,
        /// Their display name.
        display_name: String,
        /// Their e-mail address.
        email: String,
        /// Their role.
        role: StaffRole,
        /// Their identity at the school's single sign-on issuer, when known.
        identity: Option<SsoIdentity>,
    },
    /// Change a staff member's role (director, operator).
    ChangeStaffRole {
        /// The staff member.
        person_id: PersonId,
        /// The new role.
        role: StaffRole,
    },
    /// Remove a staff member from the school (director, operator).
    RemoveStaff {
        /// The staff member.
        person_id: PersonId,
    },
    /// Create a class group (director).
    CreateGroup {
        /// The new group's id.
        group_id: GroupId,
        /// Its name.
        name: String,
    },
    /// Assign a staff member to a group (director).
    AssignStaff {
        /// The group.
        group_id: GroupId,
        /// The staff member.
        person_id: PersonId,
    },
    /// Take a staff member off a group (director).
    UnassignStaff {
        /// The group.
        group_id: GroupId,
        /// The staff member.
        person_id: PersonId,
    },
    /// Place a child in a class group (director, or staff of that group).
    EnrollChild {
        /// The new child's id.
        child_id: ChildId,
        /// The class group.
        group_id: GroupId,
        /// First name.
        first_name: String,
        /// Initial of the last name: one letter.
        last_initial: String,
    },
    /// Correct a child's name (director, or staff of the child's group).
    CorrectChild {
        /// The child.
        child_id: ChildId,
        /// First name.
        first_name: String,
        /// Initial of the last name.
        last_initial: String,
    },
    /// Move a child to another class group (director, or staff of the child's current group).
    MoveChild {
        /// The child.
        child_id: ChildId,
        /// The new class group.
        to_group_id: GroupId,
    },
    /// Unenrol a child (director).
    UnenrollChild {
        /// The child.
        child_id: ChildId,
    },
    /// Link the guardian of an approved invitation (the approving staff member or the system,
    /// completing the approval). Linking twice is a no-op, so the step can be retried.
    LinkGuardian {
        /// The invitation's event-sourced state.
        invitation: Invitation,
    },
    /// End every relation of an erased person with the school: each guardianship and their place
    /// on the staff (the system, completing an erasure). Nothing when none is left, so the step
    /// can be repeated.
    EndRelationsOf {
        /// The erased person.
        person_id: PersonId,
    },
    /// Plan the new school year in one step (director): per group, its children move to another
    /// group or leave the school, and groups that end are archived. See [`plan_transition`].
    YearTransition(YearTransition),
    /// Unlink a guardian (staff of the child's group, the operator, or the guardian themself).
    UnlinkGuardian {
        /// The child.
        child_id: ChildId,
        /// The guardian.
        guardian_id: PersonId,
    },
}

/// Applies a roster event to the state.
#[must_use]
pub fn evolve(mut state: School, event: &SchoolEvent) -> School {
    match event {
        SchoolEvent::SchoolRegistered(e) => {
            state.school_id = Some(e.school_id);
            state.school_group_id = Some(e.school_group_id);
            state.settings = e.settings.clone();
            state.groups.insert(
                e.school_group_id,
                Group {
                    kind: GroupKind::School,
                    staff: BTreeSet::new(),
                    name: e.name.clone(),
                    archived: false,
                },
            );
        }
        SchoolEvent::SchoolSettingsChanged(e) => state.settings = e.settings.clone(),
        SchoolEvent::ConsentPolicyPublished(e) => {
            state.policy = Some(ConsentPolicy::following(
                state.policy.as_ref(),
                e.version,
                e.purposes.clone(),
            ));
        }
        SchoolEvent::StaffJoined(e) => {
            state.staff.insert(e.person_id, e.role);
        }
        SchoolEvent::StaffRoleChanged(e) => {
            state.staff.insert(e.person_id, e.role);
        }
        SchoolEvent::StaffLeft(e) => {
            state.staff.remove(&e.person_id);
            for group in state.groups.values_mut() {
                group.staff.remove(&e.person_id);
            }
        }
        SchoolEvent::GroupCreated(e) => {
            state.groups.insert(
                e.group_id,
                Group {
                    kind: GroupKind::Class,
                    staff: BTreeSet::new(),
                    name: e.name.clone(),
                    archived: false,
                },
            );
        }
        SchoolEvent::GroupArchived(e) => {
            if let Some(group) = state.groups.get_mut(&e.group_id) {
                group.archived = true;
            }
        }
        SchoolEvent::StaffAssigned(e) => {
            if let Some(group) = state.groups.get_mut(&e.group_id) {
                group.staff.insert(e.person_id);
            }
        }
        SchoolEvent::StaffUnassigned(e) => {
            if let Some(group) = state.groups.get_mut(&e.group_id) {
                group.staff.remove(&e.person_id);
            }
        }
        SchoolEvent::ChildEnrolled(e) => {
            state.children.insert(
                e.child_id,
                Enrolment {
                    group_id: e.group_id,
                    guardians: BTreeSet::new(),
                },
            );
        }
        SchoolEvent::ChildDetailsCorrected(_) => {}
        SchoolEvent::ChildMoved(e) => {
            if let Some(enrolment) = state.children.get_mut(&e.child_id) {
                enrolment.group_id = e.to_group_id;
            }
        }
        SchoolEvent::ChildUnenrolled(e) => {
            state.children.remove(&e.child_id);
        }
        SchoolEvent::GuardianLinked(e) => {
            if let Some(enrolment) = state.children.get_mut(&e.child_id) {
                enrolment.guardians.insert(e.guardian_id);
            }
        }
        SchoolEvent::GuardianUnlinked(e) => {
            if let Some(enrolment) = state.children.get_mut(&e.child_id) {
                enrolment.guardians.remove(&e.guardian_id);
            }
        }
    }
    state
}
