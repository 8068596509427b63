//! Deciding roster commands: [`decide`] dispatches each action to one function that checks
//! its rules and answers its events.

use super::{
    transition, ChildDetailsCorrected, ChildEnrolled, ChildMoved, ChildUnenrolled,
    ConsentPolicyPublished, Group, GroupCreated, GroupKind, GuardianLinked, GuardianUnlinked,
    PolicyPurpose, School, SchoolAction, SchoolEvent, SchoolRegistered, SchoolSettings,
    SchoolSettingsChanged, StaffAssigned, StaffJoined, StaffLeft, StaffRole, StaffRoleChanged,
    StaffUnassigned,
};
use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::ids::{ChildId, GroupId, PersonId, SchoolId};
use crate::invitation::{Invitation, InvitationStatus};
use crate::person::SsoIdentity;
use crate::purpose::Purpose;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

fn brin(value: &str) -> Result<String, DomainError> {
    let value = value.trim().to_uppercase();
    if value.len() == 4 && value.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(value)
    } else {
        Err(DomainError::invalid(
            "brin",
            "must be four letters or digits, e.g. 12AB",
        ))
    }
}

fn require(allowed: bool, actor: Actor, action: &'static str) -> Result<(), DomainError> {
    if allowed {
        Ok(())
    } else {
        Err(DomainError::NotAllowed { actor, action })
    }
}

/// A child's first name and last initial, checked and sealed for the child.
fn child_name(
    child_id: ChildId,
    first_name: &str,
    last_initial: &str,
) -> Result<(Sealed<String>, Sealed<String>), DomainError> {
    Ok((
        Sealed::new(
            Subject::Child(child_id),
            validate::text("first_name", first_name, 50)?,
        ),
        Sealed::new(
            Subject::Child(child_id),
            validate::initial("last_initial", last_initial)?,
        ),
    ))
}

/// An open class group: where children are placed.
fn class_group(state: &School, group_id: GroupId) -> Result<&Group, DomainError> {
    let group = state.open_group(group_id)?;
    if group.kind == GroupKind::Class {
        Ok(group)
    } else {
        Err(DomainError::invalid(
            "group_id",
            "children are placed in a class group, not in the school group",
        ))
    }
}

/// Decides a roster command against the roster state.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
pub fn decide(
    state: &School,
    command: Command<SchoolAction>,
    _now: DateTime<Utc>,
) -> Result<Vec<SchoolEvent>, DomainError> {
    let Command { actor, action } = command;
    let (school_id, action) = match (state.school_id, action) {
        (
            None,
            SchoolAction::Register {
                school_id,
                school_group_id,
                name,
                brin: code,
            },
        ) => return register(actor, school_id, school_group_id, &name, &code),
        (Some(school_id), action) => (school_id, action),
        (None, _) => return Err(DomainError::not_found("school", uuid::Uuid::nil())),
    };
    let on = Roster {
        state,
        actor,
        school_id,
    };
    let one = |event: SchoolEvent| vec![event];
    match action {
        SchoolAction::Register { .. } => Err(DomainError::AlreadyExists {
            kind: "school",
            id: school_id.into(),
        }),
        SchoolAction::ChangeSettings(settings) => on.change_settings(settings).map(one),
        SchoolAction::PublishConsentPolicy { purposes } => on.publish_policy(purposes).map(one),
        SchoolAction::AddStaff {
            person_id,
            display_name,
            email,
            role,
            identity,
        } => on
            .add_staff(person_id, &display_name, &email, role, identity)
            .map(one),
        SchoolAction::ChangeStaffRole { person_id, role } => {
            on.change_staff_role(person_id, role).map(one)
        }
        SchoolAction::RemoveStaff { person_id } => on.remove_staff(person_id).map(one),
        SchoolAction::CreateGroup { group_id, name } => on.create_group(group_id, &name).map(one),
        SchoolAction::AssignStaff {
            group_id,
            person_id,
        } => on.assign_staff(group_id, person_id).map(one),
        SchoolAction::UnassignStaff {
            group_id,
            person_id,
        } => on.unassign_staff(group_id, person_id).map(one),
        SchoolAction::EnrollChild {
            child_id,
            group_id,
            first_name,
            last_initial,
        } => on
            .enroll_child(child_id, group_id, &first_name, &last_initial)
            .map(one),
        SchoolAction::CorrectChild {
            child_id,
            first_name,
            last_initial,
        } => on
            .correct_child(child_id, &first_name, &last_initial)
            .map(one),
        SchoolAction::MoveChild {
            child_id,
            to_group_id,
        } => on.move_child(child_id, to_group_id).map(one),
        SchoolAction::UnenrollChild { child_id } => on.unenroll_child(child_id).map(one),
        SchoolAction::LinkGuardian { invitation } => link_guardian(state, actor, &invitation),
        SchoolAction::YearTransition(plan) => Ok(transition(state, actor, &plan)?.1),
        SchoolAction::EndRelationsOf { person_id } => {
            require(
                actor == Actor::System,
                actor,
                "end an erased person's relations (the system does, completing the erasure)",
            )?;
            Ok(end_relations_of(state, school_id, person_id))
        }
        SchoolAction::UnlinkGuardian {
            child_id,
            guardian_id,
        } => on.unlink_guardian(child_id, guardian_id).map(one),
    }
}

/// A command on a registered school's roster, by `actor`: one method per action, each
/// checking its rules and answering its one event.
struct Roster<'a> {
    state: &'a School,
    actor: Actor,
    school_id: SchoolId,
}

impl Roster<'_> {
    fn director(&self) -> bool {
        self.state.is_director(self.actor)
    }

    fn director_or_operator(&self) -> bool {
        self.director() || self.actor == Actor::Operator
    }

    /// The actor must be staff of `group_id` to `action`.
    fn group_staff(&self, group_id: GroupId, action: &'static str) -> Result<(), DomainError> {
        if self.state.is_group_staff(self.actor, group_id) {
            Ok(())
        } else {
            Err(DomainError::NotStaffOfGroup {
                actor: self.actor,
                group_id,
                action,
            })
        }
    }

    fn change_settings(&self, settings: SchoolSettings) -> Result<SchoolEvent, DomainError> {
        require(
            self.director_or_operator(),
            self.actor,
            "change the school's settings",
        )?;
        Ok(SchoolSettingsChanged {
            school_id: self.school_id,
            settings: settings.validate()?,
        }
        .into())
    }

    fn publish_policy(&self, purposes: Vec<PolicyPurpose>) -> Result<SchoolEvent, DomainError> {
        require(self.director(), self.actor, "publish a consent policy")?;
        if purposes.is_empty() {
            return Err(DomainError::invalid(
                "purposes",
                "must name at least one purpose",
            ));
        }
        let mut seen = BTreeSet::new();
        let mut checked = Vec::with_capacity(purposes.len());
        for p in purposes {
            if !seen.insert(p.purpose) {
                return Err(DomainError::invalid(
                    "purposes",
                    format!("{} is listed twice", p.purpose),
                ));
            }
            checked.push(PolicyPurpose {
                purpose: p.purpose,
                description: validate::text("description", &p.description, 1000)?,
            });
        }
        Ok(ConsentPolicyPublished {
            school_id: self.school_id,
            version: self.state.policy.as_ref().map_or(1, |p| p.version + 1),
            purposes: checked,
        }
        .into())
    }

    fn add_staff(
        &self,
        person_id: PersonId,
        display_name: &str,
        email: &str,
        role: StaffRole,
        identity: Option<SsoIdentity>,
    ) -> Result<SchoolEvent, DomainError> {
        require(self.director_or_operator(), self.actor, "add staff")?;
        if self.state.staff.contains_key(&person_id) {
            return Err(DomainError::AlreadyExists {
                kind: "staff member",
                id: person_id.into(),
            });
        }
        Ok(StaffJoined {
            school_id: self.school_id,
            person_id,
            role,
            display_name: Sealed::new(
                Subject::Person(person_id),
                validate::text("display_name", display_name, 100)?,
            ),
            email: Sealed::new(Subject::Person(person_id), validate::email("email", email)?),
            identity,
        }
        .into())
    }

    fn change_staff_role(
        &self,
        person_id: PersonId,
        role: StaffRole,
    ) -> Result<SchoolEvent, DomainError> {
        require(
            self.director_or_operator(),
            self.actor,
            "change a staff member's role",
        )?;
        let current = self
            .state
            .role(person_id)
            .ok_or_else(|| DomainError::not_found("staff member", person_id))?;
        if current == role {
            return Err(DomainError::AlreadyDone {
                what: format!("staff member {person_id} having role {role:?}"),
            });
        }
        Ok(StaffRoleChanged {
            school_id: self.school_id,
            person_id,
            role,
        }
        .into())
    }

    fn remove_staff(&self, person_id: PersonId) -> Result<SchoolEvent, DomainError> {
        require(self.director_or_operator(), self.actor, "remove staff")?;
        self.state
            .role(person_id)
            .ok_or_else(|| DomainError::not_found("staff member", person_id))?;
        Ok(StaffLeft {
            school_id: self.school_id,
            person_id,
        }
        .into())
    }

    fn create_group(&self, group_id: GroupId, name: &str) -> Result<SchoolEvent, DomainError> {
        require(self.director(), self.actor, "create a group")?;
        if self.state.groups.contains_key(&group_id) {
            return Err(DomainError::AlreadyExists {
                kind: "group",
                id: group_id.into(),
            });
        }
        Ok(GroupCreated {
            school_id: self.school_id,
            group_id,
            name: validate::text("name", name, 100)?,
        }
        .into())
    }

    fn assign_staff(
        &self,
        group_id: GroupId,
        person_id: PersonId,
    ) -> Result<SchoolEvent, DomainError> {
        require(self.director(), self.actor, "assign staff to a group")?;
        let group = self.state.group(group_id)?;
        self.state
            .role(person_id)
            .ok_or_else(|| DomainError::not_found("staff member", person_id))?;
        if group.staff.contains(&person_id) {
            return Err(DomainError::AlreadyDone {
                what: format!("staff member {person_id} assigned to group {group_id}"),
            });
        }
        Ok(StaffAssigned {
            school_id: self.school_id,
            group_id,
            person_id,
        }
        .into())
    }

    fn unassign_staff(
        &self,
        group_id: GroupId,
        person_id: PersonId,
    ) -> Result<SchoolEvent, DomainError> {
        require(self.director(), self.actor, "take staff off a group")?;
        if !self.state.group(group_id)?.staff.contains(&person_id) {
            return Err(DomainError::not_found("staff assignment", person_id));
        }
        Ok(StaffUnassigned {
            school_id: self.school_id,
            group_id,
            person_id,
        }
        .into())
    }

    fn enroll_child(
        &self,
        child_id: ChildId,
        group_id: GroupId,
        first_name: &str,
        last_initial: &str,
    ) -> Result<SchoolEvent, DomainError> {
        class_group(self.state, group_id)?;
        self.group_staff(group_id, "enrol a child")?;
        if self.state.children.contains_key(&child_id) {
            return Err(DomainError::AlreadyExists {
                kind: "child",
                id: child_id.into(),
            });
        }
        let (first_name, last_initial) = child_name(child_id, first_name, last_initial)?;
        Ok(ChildEnrolled {
            school_id: self.school_id,
            child_id,
            group_id,
            first_name,
            last_initial,
        }
        .into())
    }

    fn correct_child(
        &self,
        child_id: ChildId,
        first_name: &str,
        last_initial: &str,
    ) -> Result<SchoolEvent, DomainError> {
        let enrolment = self.state.enrolment(child_id)?;
        self.group_staff(enrolment.group_id, "correct a child's details")?;
        let (first_name, last_initial) = child_name(child_id, first_name, last_initial)?;
        Ok(ChildDetailsCorrected {
            school_id: self.school_id,
            child_id,
            first_name,
            last_initial,
        }
        .into())
    }

    fn move_child(
        &self,
        child_id: ChildId,
        to_group_id: GroupId,
    ) -> Result<SchoolEvent, DomainError> {
        let enrolment = self.state.enrolment(child_id)?;
        self.group_staff(enrolment.group_id, "move a child to another group")?;
        class_group(self.state, to_group_id)?;
        if enrolment.group_id == to_group_id {
            return Err(DomainError::AlreadyDone {
                what: format!("child {child_id} in group {to_group_id}"),
            });
        }
        Ok(ChildMoved {
            school_id: self.school_id,
            child_id,
            from_group_id: enrolment.group_id,
            to_group_id,
        }
        .into())
    }

    fn unenroll_child(&self, child_id: ChildId) -> Result<SchoolEvent, DomainError> {
        require(self.director(), self.actor, "unenrol a child")?;
        self.state.enrolment(child_id)?;
        Ok(ChildUnenrolled {
            school_id: self.school_id,
            child_id,
        }
        .into())
    }

    fn unlink_guardian(
        &self,
        child_id: ChildId,
        guardian_id: PersonId,
    ) -> Result<SchoolEvent, DomainError> {
        let enrolment = self.state.enrolment(child_id)?;
        let allowed = self.actor == Actor::Operator
            || self.actor == Actor::Person(guardian_id)
            || self.state.is_group_staff(self.actor, enrolment.group_id);
        require(allowed, self.actor, "unlink a guardian")?;
        if !enrolment.guardians.contains(&guardian_id) {
            return Err(DomainError::not_found("guardianship", guardian_id));
        }
        Ok(GuardianUnlinked {
            school_id: self.school_id,
            child_id,
            guardian_id,
            by: self.actor,
        }
        .into())
    }
}

fn register(
    actor: Actor,
    school_id: SchoolId,
    school_group_id: GroupId,
    name: &str,
    code: &str,
) -> Result<Vec<SchoolEvent>, DomainError> {
    require(actor == Actor::Operator, actor, "register a school")?;
    Ok(vec![
        SchoolRegistered {
            school_id,
            name: validate::text("name", name, 200)?,
            brin: brin(code)?,
            school_group_id,
            settings: SchoolSettings::default(),
        }
        .into(),
        // Version 1 asks consent for every purpose; the director can publish a narrower one.
        ConsentPolicyPublished {
            school_id,
            version: 1,
            purposes: Purpose::ALL
                .into_iter()
                .map(|purpose| PolicyPurpose {
                    purpose,
                    description: purpose.default_description().to_owned(),
                })
                .collect(),
        }
        .into(),
    ])
}

/// Rule: nobody is linked as guardian without staff approval.
fn link_guardian(
    state: &School,
    actor: Actor,
    invitation: &Invitation,
) -> Result<Vec<SchoolEvent>, DomainError> {
    let school_id = state.id()?;
    let invitation_id = invitation
        .invitation_id
        .ok_or_else(|| DomainError::not_found("invitation", uuid::Uuid::nil()))?;
    let InvitationStatus::Approved {
        child_id,
        guardian_id,
        approved_by,
    } = invitation.status
    else {
        return Err(DomainError::GuardianLinkWithoutApproval { invitation_id });
    };
    if invitation.school_id != Some(school_id) {
        return Err(DomainError::not_found("invitation", invitation_id));
    }
    let allowed = actor == Actor::System || actor == Actor::Person(approved_by);
    require(
        allowed,
        actor,
        "link a guardian (only the approving staff member or the system completes an approval)",
    )?;
    if state.enrolment(child_id)?.guardians.contains(&guardian_id) {
        return Ok(Vec::new());
    }
    Ok(vec![GuardianLinked {
        school_id,
        child_id,
        guardian_id,
        invitation_id,
        approved_by,
    }
    .into()])
}

/// Every guardianship of `person_id` ends, then their place on the staff.
fn end_relations_of(state: &School, school_id: SchoolId, person_id: PersonId) -> Vec<SchoolEvent> {
    let mut events: Vec<SchoolEvent> = state
        .children
        .iter()
        .filter(|(_, e)| e.guardians.contains(&person_id))
        .map(|(child_id, _)| {
            GuardianUnlinked {
                school_id,
                child_id: *child_id,
                guardian_id: person_id,
                by: Actor::System,
            }
            .into()
        })
        .collect();
    if state.staff.contains_key(&person_id) {
        events.push(
            StaffLeft {
                school_id,
                person_id,
            }
            .into(),
        );
    }
    events
}
