//! Invitations: staff invite a parent by e-mail for a child; the parent accepts with the code;
//! staff verify and approve (optionally correcting the child). Only an approved invitation lets
//! the roster link the guardian (see [`crate::school::SchoolAction::LinkGuardian`]).

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ChildId, GroupId, InvitationId, PersonId, SchoolId};
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InvitationStatus {
    /// Nothing was sent yet.
    #[default]
    NotSent,
    /// Sent; waiting for the parent.
    Pending,
    /// The parent accepted; waiting for staff to verify.
    Accepted {
        /// The person who accepted.
        person_id: PersonId,
    },
    /// Staff approved: the guardian may be linked to the child.
    Approved {
        /// The child (possibly corrected by staff).
        child_id: ChildId,
        /// The guardian.
        guardian_id: PersonId,
        /// The staff member who approved.
        approved_by: PersonId,
    },
    /// Staff revoked it.
    Revoked,
    /// It expired before it was accepted.
    Expired,
}

impl InvitationStatus {
    /// A word for messages and read models.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::NotSent => "not sent",
            Self::Pending => "pending",
            Self::Accepted { .. } => "accepted",
            Self::Approved { .. } => "approved",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// An invitation's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invitation {
    /// The invitation, once sent.
    pub invitation_id: Option<InvitationId>,
    /// Its school.
    pub school_id: Option<SchoolId>,
    /// The child it was sent for.
    pub child_id: Option<ChildId>,
    /// The person id the invitee gets on acceptance.
    pub invitee_id: Option<PersonId>,
    /// Digest of the secret code (the code itself is never stored).
    pub code_digest: String,
    /// Until when it can be accepted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: InvitationStatus,
}

/// Staff sent an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invited {
    /// The invitation.
    pub invitation_id: InvitationId,
    /// The school.
    pub school_id: SchoolId,
    /// The child.
    pub child_id: ChildId,
    /// The child's class group at the time.
    pub group_id: GroupId,
    /// The invitee's e-mail address (personal, sealed for the invitee).
    pub email: Sealed<String>,
    /// The person id the invitee gets on acceptance.
    pub invitee_id: PersonId,
    /// Digest of the secret code.
    pub code_digest: String,
    /// Who invited.
    pub invited_by: PersonId,
    /// Until when it can be accepted.
    pub expires_at: DateTime<Utc>,
    /// The code itself, sealed for the invitee, when the installation e-mails invitations: the
    /// delivery worker opens it only to send the invitation mail, and it is erased with the
    /// invitee's key (decision 0018). Absent when invitations are not e-mailed (the code is then
    /// handed out only in the answer to the staff member who invited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Sealed<String>>,
}

/// The parent accepted the invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationAccepted {
    /// The invitation.
    pub invitation_id: InvitationId,
    /// The person the parent now is in Kring.
    pub person_id: PersonId,
    /// The name they chose to be shown by (personal, sealed for them).
    pub display_name: Sealed<String>,
}

/// Staff verified and approved the invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationApproved {
    /// The invitation.
    pub invitation_id: InvitationId,
    /// The child the guardian is linked to.
    pub child_id: ChildId,
    /// The child the invitation named, when staff corrected it.
    pub corrected_from: Option<ChildId>,
    /// The guardian.
    pub guardian_id: PersonId,
    /// Who approved.
    pub approved_by: PersonId,
}

/// Staff revoked the invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRevoked {
    /// The invitation.
    pub invitation_id: InvitationId,
    /// Who revoked it.
    pub by: Actor,
}

/// The invitation expired unaccepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationExpired {
    /// The invitation.
    pub invitation_id: InvitationId,
}

event_enum! {
    /// Events of an invitation stream.
    pub enum InvitationEvent {
        /// See [`Invited`].
        Invited,
        /// See [`InvitationAccepted`].
        InvitationAccepted,
        /// See [`InvitationApproved`].
        InvitationApproved,
        /// See [`InvitationRevoked`].
        InvitationRevoked,
        /// See [`InvitationExpired`].
        InvitationExpired,
    }
}

/// What can be asked of an invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationAction {
    /// Invite a parent for a child (staff of the child's group).
    Invite {
        /// The new invitation's id.
        invitation_id: InvitationId,
        /// The child.
        child_id: ChildId,
        /// The parent's e-mail address.
        email: String,
        /// The person id the parent will get.
        invitee_id: PersonId,
        /// Digest of the secret code handed to the parent.
        code_digest: String,
        /// The code itself, to be sealed for the invitee and e-mailed to them (only when the
        /// installation e-mails invitations).
        mail_code: Option<String>,
    },
    /// Accept with the code (the parent; no account needed yet).
    Accept {
        /// Digest of the code the parent presented.
        code_digest: String,
        /// The name they want to be shown by.
        display_name: String,
    },
    /// Approve after verification, optionally correcting the child (staff of the group).
    Approve {
        /// The right child, when the invitation named the wrong one.
        child_id: Option<ChildId>,
    },
    /// Revoke (staff of the child's group).
    Revoke,
    /// Expire an unaccepted invitation past its date (the system).
    Expire,
}

/// The state `decide` needs: the invitation and the school roster it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct InvitationContext<'a> {
    /// The invitation's state.
    pub invitation: &'a Invitation,
    /// The school's roster.
    pub school: &'a School,
}

fn open_for(
    invitation: &Invitation,
    action: &'static str,
    now: DateTime<Utc>,
) -> Result<InvitationId, DomainError> {
    let invitation_id = invitation
        .invitation_id
        .ok_or_else(|| DomainError::not_found("invitation", uuid::Uuid::nil()))?;
    match invitation.status {
        InvitationStatus::Revoked => Err(DomainError::InvitationRevoked { invitation_id }),
        InvitationStatus::Expired => Err(DomainError::InvitationExpired {
            invitation_id,
            expired_at: invitation.expires_at.unwrap_or(now),
        }),
        InvitationStatus::Pending if action == "accepted" => match invitation.expires_at {
            Some(expired_at) if now >= expired_at => Err(DomainError::InvitationExpired {
                invitation_id,
                expired_at,
            }),
            _ => Ok(invitation_id),
        },
        InvitationStatus::Accepted { .. } if action == "approved" => Ok(invitation_id),
        InvitationStatus::Pending | InvitationStatus::Accepted { .. } if action == "revoked" => {
            Ok(invitation_id)
        }
        status => Err(DomainError::InvitationNotOpen {
            invitation_id,
            status: status.name(),
            action,
        }),
    }
}

fn require_group_staff(
    school: &School,
    actor: Actor,
    child_id: ChildId,
    action: &'static str,
) -> Result<(GroupId, PersonId), DomainError> {
    let group_id = school.enrolment(child_id)?.group_id;
    match actor.person() {
        Some(person) if school.is_group_staff(actor, group_id) => Ok((group_id, person)),
        _ => Err(DomainError::NotStaffOfGroup {
            actor,
            group_id,
            action,
        }),
    }
}

/// Decides an invitation command.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
pub fn decide(
    ctx: &InvitationContext<'_>,
    command: Command<InvitationAction>,
    now: DateTime<Utc>,
) -> Result<Vec<InvitationEvent>, DomainError> {
    let InvitationContext { invitation, school } = *ctx;
    let Command { actor, action } = command;
    let event: InvitationEvent = match action {
        InvitationAction::Invite {
            invitation_id,
            child_id,
            email,
            invitee_id,
            code_digest,
            mail_code,
        } => {
            if invitation.invitation_id.is_some() {
                return Err(DomainError::AlreadyExists {
                    kind: "invitation",
                    id: invitation_id.into(),
                });
            }
            let school_id = school.id()?;
            let (group_id, invited_by) =
                require_group_staff(school, actor, child_id, "invite a parent")?;
            if code_digest.trim().is_empty() {
                return Err(DomainError::invalid("code", "must not be empty"));
            }
            Invited {
                invitation_id,
                school_id,
                child_id,
                group_id,
                email: Sealed::new(
                    Subject::Person(invitee_id),
                    validate::email("email", &email)?,
                ),
                invitee_id,
                code_digest,
                invited_by,
                expires_at: now + Duration::days(i64::from(school.settings.invitation_ttl_days)),
                code: mail_code.map(|code| Sealed::new(Subject::Person(invitee_id), code)),
            }
            .into()
        }
        InvitationAction::Accept {
            code_digest,
            display_name,
        } => {
            let invitation_id = open_for(invitation, "accepted", now)?;
            if code_digest != invitation.code_digest {
                return Err(DomainError::InvitationCodeMismatch);
            }
            let person_id = invitation
                .invitee_id
                .ok_or_else(|| DomainError::not_found("invitation", invitation_id))?;
            InvitationAccepted {
                invitation_id,
                person_id,
                display_name: Sealed::new(
                    Subject::Person(person_id),
                    validate::text("display_name", &display_name, 100)?,
                ),
            }
            .into()
        }
        InvitationAction::Approve { child_id } => {
            let invitation_id = open_for(invitation, "approved", now)?;
            let InvitationStatus::Accepted { person_id } = invitation.status else {
                return Err(DomainError::GuardianLinkWithoutApproval { invitation_id });
            };
            let invited_for = invitation
                .child_id
                .ok_or_else(|| DomainError::not_found("invitation", invitation_id))?;
            if invitation.school_id != school.school_id {
                return Err(DomainError::not_found("invitation", invitation_id));
            }
            let child = child_id.unwrap_or(invited_for);
            let (_, approved_by) =
                require_group_staff(school, actor, child, "approve an invitation")?;
            InvitationApproved {
                invitation_id,
                child_id: child,
                corrected_from: (child != invited_for).then_some(invited_for),
                guardian_id: person_id,
                approved_by,
            }
            .into()
        }
        InvitationAction::Revoke => {
            let invitation_id = open_for(invitation, "revoked", now)?;
            let child = invitation
                .child_id
                .ok_or_else(|| DomainError::not_found("invitation", invitation_id))?;
            if actor != Actor::Operator {
                require_group_staff(school, actor, child, "revoke an invitation")?;
            }
            InvitationRevoked {
                invitation_id,
                by: actor,
            }
            .into()
        }
        InvitationAction::Expire => {
            if actor != Actor::System {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "expire an invitation (the system does)",
                });
            }
            let invitation_id = invitation
                .invitation_id
                .ok_or_else(|| DomainError::not_found("invitation", uuid::Uuid::nil()))?;
            match (invitation.status, invitation.expires_at) {
                (InvitationStatus::Pending, Some(at)) if now >= at => {}
                (status, _) => {
                    return Err(DomainError::InvitationNotOpen {
                        invitation_id,
                        status: status.name(),
                        action: "expired now",
                    })
                }
            }
            InvitationExpired { invitation_id }.into()
        }
    };
    Ok(vec![event])
}

/// Applies an invitation event to the state.
#[must_use]
pub fn evolve(mut state: Invitation, event: &InvitationEvent) -> Invitation {
    match event {
        InvitationEvent::Invited(e) => {
            state.invitation_id = Some(e.invitation_id);
            state.school_id = Some(e.school_id);
            state.child_id = Some(e.child_id);
            state.invitee_id = Some(e.invitee_id);
            state.code_digest.clone_from(&e.code_digest);
            state.expires_at = Some(e.expires_at);
            state.status = InvitationStatus::Pending;
        }
        InvitationEvent::InvitationAccepted(e) => {
            state.status = InvitationStatus::Accepted {
                person_id: e.person_id,
            };
        }
        InvitationEvent::InvitationApproved(e) => {
            state.status = InvitationStatus::Approved {
                child_id: e.child_id,
                guardian_id: e.guardian_id,
                approved_by: e.approved_by,
            };
        }
        InvitationEvent::InvitationRevoked(_) => state.status = InvitationStatus::Revoked,
        InvitationEvent::InvitationExpired(_) => state.status = InvitationStatus::Expired,
    }
    state
}
