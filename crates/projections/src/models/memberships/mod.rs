//! Memberships and guardianships: schools, their groups, staff with roles and group
//! assignments, children per class group, guardians linked to children, invitations, and the
//! people's (sealed) display names and e-mail addresses.
//!
//! Membership of a group follows the domain's audience rules
//! ([`kring_domain::school::School::audience_staff`] and `audience_guardians`): a class group
//! has its assigned staff, the school's directors, and the guardians of its pupils; the school
//! group has every staff member and every guardian of the school.
//!
//! Personal fields (names, e-mail addresses) stay sealed here: they are stored as the envelope's
//! JSON and returned as [`Sealed`] values for the caller to open with the key vault, so an
//! erasure shows at once. E-mail addresses are returned only by [`person`] (the owner's own
//! profile), [`invitations_of_invitee`] (the invitee's own export) and [`invitations_of_group`]
//! (staff managing invitations), never by [`group`].
//!
//! [`Sealed`]: kring_domain::Sealed

use crate::error::ProjectionError;
use kring_domain::school::{GroupKind, StaffRole};
use serde::Serialize;

mod project;
mod query;

pub use project::MembershipsProjection;
pub use query::{
    child, group, group_summary_of, invitations_of_group, invitations_of_group_page,
    invitations_of_invitee, members_of_group, pending_past, person, person_of_identity,
    staff_of_school, ChildView, GroupChild, GroupGuardian, GroupStaff, GroupSummary, GroupView,
    InvitationView, Profile, ProfileSchool,
};

/// Its name.
pub const NAME: &str = "memberships";

// The stored words of roles, group kinds and invitation states, written by the projection
// and read back by the queries.

const fn role_str(role: StaffRole) -> &'static str {
    match role {
        StaffRole::Teacher => "teacher",
        StaffRole::Director => "director",
        StaffRole::ComplianceOfficer => "compliance_officer",
    }
}

fn role_from(s: &str) -> Result<StaffRole, ProjectionError> {
    match s {
        "teacher" => Ok(StaffRole::Teacher),
        "director" => Ok(StaffRole::Director),
        "compliance_officer" => Ok(StaffRole::ComplianceOfficer),
        other => Err(ProjectionError::Invalid(format!(
            "unknown staff role {other:?} in a read model"
        ))),
    }
}

const fn kind_str(kind: GroupKind) -> &'static str {
    match kind {
        GroupKind::Class => "class",
        GroupKind::School => "school",
    }
}

fn kind_from(s: &str) -> Result<GroupKind, ProjectionError> {
    match s {
        "class" => Ok(GroupKind::Class),
        "school" => Ok(GroupKind::School),
        other => Err(ProjectionError::Invalid(format!(
            "unknown group kind {other:?} in a read model"
        ))),
    }
}

/// Where an invitation stands, as the read model keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    /// Sent; waiting for the parent.
    Pending,
    /// The parent accepted; waiting for staff to verify and approve.
    Accepted,
    /// Staff approved; the guardian is (or is being) linked.
    Approved,
    /// Staff revoked it.
    Revoked,
    /// It expired unaccepted.
    Expired,
}

impl InvitationState {
    /// The stored (and API) word.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Approved => "approved",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, ProjectionError> {
        match s {
            "pending" => Ok(Self::Pending),
            "accepted" => Ok(Self::Accepted),
            "approved" => Ok(Self::Approved),
            "revoked" => Ok(Self::Revoked),
            "expired" => Ok(Self::Expired),
            other => Err(ProjectionError::Invalid(format!(
                "unknown invitation status {other:?} in a read model"
            ))),
        }
    }
}
