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

use crate::bulk::{Cell, Deferred, Statement};
use crate::db::{from_micros, micros, sealed_text, uuid, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::invitation::InvitationEvent;
use kring_domain::person::{PersonEvent, SsoIdentity};
use kring_domain::school::{GroupKind, SchoolEvent, StaffRole};
use kring_domain::{ChildId, Event, GroupId, InvitationId, PersonId, SchoolId, Sealed};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// The projection. Its statements depend on each other (an approval reads the child's group,
/// a departure deletes what a join inserted), so it defers each event's statements, in order,
/// to the batch's flush.
#[derive(Debug, Default)]
pub struct MembershipsProjection {
    deferred: Deferred,
}

/// Its name.
pub const NAME: &str = "memberships";

const SCHEMA: &str = "
CREATE TABLE {membership_schools} (
    school_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    brin TEXT NOT NULL,
    school_group_id TEXT NOT NULL
);
CREATE TABLE {membership_groups} (
    group_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    archived BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX {membership_groups}_by_school ON {membership_groups} (school_id);
CREATE TABLE {membership_staff} (
    school_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (school_id, person_id)
);
CREATE INDEX {membership_staff}_by_person ON {membership_staff} (person_id);
CREATE TABLE {membership_group_staff} (
    group_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (group_id, person_id)
);
CREATE INDEX {membership_group_staff}_by_person ON {membership_group_staff} (person_id);
CREATE TABLE {membership_children} (
    child_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_initial TEXT NOT NULL
);
CREATE INDEX {membership_children}_by_group ON {membership_children} (group_id);
CREATE INDEX {membership_children}_by_school ON {membership_children} (school_id);
CREATE TABLE {membership_guardians} (
    child_id TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    invitation_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (child_id, guardian_id)
);
CREATE INDEX {membership_guardians}_by_guardian ON {membership_guardians} (guardian_id);
CREATE TABLE {membership_people} (
    person_id TEXT PRIMARY KEY,
    display_name TEXT,
    email TEXT
);
CREATE TABLE {membership_invitations} (
    invitation_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    invitee_id TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    invited_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    corrected_from TEXT
);
CREATE INDEX {membership_invitations}_by_group ON {membership_invitations} (group_id, invited_at);
CREATE TABLE {membership_identities} (
    digest TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    issuer TEXT NOT NULL
);
CREATE INDEX {membership_identities}_by_person ON {membership_identities} (person_id)";

const INSERT_SCHOOL: &str = "INSERT INTO {membership_schools} (school_id, name, brin, school_group_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (school_id) DO UPDATE SET name = excluded.name, brin = excluded.brin, school_group_id = excluded.school_group_id";
const INSERT_GROUP: &str = "INSERT INTO {membership_groups} (group_id, school_id, name, kind) VALUES ($1, $2, $3, $4)
ON CONFLICT (group_id) DO UPDATE SET school_id = excluded.school_id, name = excluded.name, kind = excluded.kind";
const ARCHIVE_GROUP: &str = "UPDATE {membership_groups} SET archived = 1 WHERE group_id = $1";
const UPSERT_STAFF: &str =
    "INSERT INTO {membership_staff} (school_id, person_id, role) VALUES ($1, $2, $3)
ON CONFLICT (school_id, person_id) DO UPDATE SET role = excluded.role";
const UPDATE_ROLE: &str =
    "UPDATE {membership_staff} SET role = $1 WHERE school_id = $2 AND person_id = $3";
const DELETE_STAFF: &str = "DELETE FROM {membership_staff} WHERE school_id = $1 AND person_id = $2";
const UNASSIGN_EVERYWHERE: &str = "DELETE FROM {membership_group_staff}
WHERE person_id = $1 AND group_id IN (SELECT group_id FROM {membership_groups} WHERE school_id = $2)";
const ASSIGN: &str = "INSERT INTO {membership_group_staff} (group_id, person_id) VALUES ($1, $2) ON CONFLICT (group_id, person_id) DO NOTHING";
const UNASSIGN: &str =
    "DELETE FROM {membership_group_staff} WHERE group_id = $1 AND person_id = $2";
const UPSERT_PERSON: &str =
    "INSERT INTO {membership_people} (person_id, display_name, email) VALUES ($1, $2, $3)
ON CONFLICT (person_id) DO UPDATE SET display_name = excluded.display_name, email = excluded.email";
// The first person to claim an identity keeps it: a later claim (a race the API's check did
// not see) is no sign-in for anyone else.
const LINK_IDENTITY: &str =
    "INSERT INTO {membership_identities} (digest, person_id, issuer) VALUES ($1, $2, $3)
ON CONFLICT (digest) DO NOTHING";
const FORGET_IDENTITIES: &str = "DELETE FROM {membership_identities} WHERE person_id = $1";
const UPSERT_NAME: &str =
    "INSERT INTO {membership_people} (person_id, display_name) VALUES ($1, $2)
ON CONFLICT (person_id) DO UPDATE SET display_name = excluded.display_name";
const UPSERT_EMAIL: &str = "INSERT INTO {membership_people} (person_id, email) VALUES ($1, $2)
ON CONFLICT (person_id) DO UPDATE SET email = excluded.email";
const ENROL: &str = "INSERT INTO {membership_children} (child_id, school_id, group_id, first_name, last_initial) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (child_id) DO UPDATE SET school_id = excluded.school_id, group_id = excluded.group_id,
    first_name = excluded.first_name, last_initial = excluded.last_initial";
const CORRECT_CHILD: &str =
    "UPDATE {membership_children} SET first_name = $1, last_initial = $2 WHERE child_id = $3";
const MOVE_CHILD: &str = "UPDATE {membership_children} SET group_id = $1 WHERE child_id = $2";
const MOVE_OPEN_INVITATIONS: &str =
    "UPDATE {membership_invitations} SET group_id = $1 WHERE child_id = $2 AND status IN ('pending', 'accepted')";
const UNENROL: &str = "DELETE FROM {membership_children} WHERE child_id = $1";
const UNLINK_ALL: &str = "DELETE FROM {membership_guardians} WHERE child_id = $1";
const LINK: &str = "INSERT INTO {membership_guardians} (child_id, guardian_id, invitation_id, linked_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (child_id, guardian_id) DO NOTHING";
const UNLINK: &str = "DELETE FROM {membership_guardians} WHERE child_id = $1 AND guardian_id = $2";
const INVITE: &str = "INSERT INTO {membership_invitations} (invitation_id, school_id, group_id, child_id, invitee_id, email, status,
    invited_by, invited_at, expires_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $8)
ON CONFLICT (invitation_id) DO NOTHING";
const SET_STATUS: &str =
    "UPDATE {membership_invitations} SET status = $1, updated_at = $2 WHERE invitation_id = $3";
// Every SET expression sees the row as it was, so `corrected_from` keeps the child named before.
const APPROVE: &str = "UPDATE {membership_invitations} SET status = 'approved',
    corrected_from = CASE WHEN child_id <> $1 THEN child_id ELSE corrected_from END,
    child_id = $1,
    group_id = COALESCE((SELECT c.group_id FROM {membership_children} c WHERE c.child_id = $1), group_id),
    updated_at = $2
WHERE invitation_id = $3";

#[async_trait]
impl Projection for MembershipsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "membership_schools",
            "membership_groups",
            "membership_staff",
            "membership_group_staff",
            "membership_children",
            "membership_guardians",
            "membership_people",
            "membership_invitations",
            "membership_identities",
        ]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    async fn apply(
        &self,
        _tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let mut out = Vec::new();
        match e.event {
            Event::School(event) => apply_school(&mut out, event, e)?,
            Event::Invitation(event) => apply_invitation(&mut out, event, e)?,
            Event::Person(PersonEvent::IdentityLinked(d)) => {
                link_identity(&mut out, d.person_id, &d.identity);
            }
            // An erased person signs in as nobody.
            Event::Person(PersonEvent::PersonErased(d)) => {
                defer(&mut out, FORGET_IDENTITIES, [id(d.person_id)]);
            }
            _ => {}
        }
        self.deferred.push(t, e.recorded.position, out);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        self.deferred.flush(tx, t).await
    }
}

fn link_identity(out: &mut Vec<Statement>, person: PersonId, identity: &SsoIdentity) {
    defer(
        out,
        LINK_IDENTITY,
        [
            Cell::from(&identity.digest),
            id(person),
            Cell::from(&identity.issuer),
        ],
    );
}

/// Defers a statement of the event being applied to the batch's flush.
fn defer(out: &mut Vec<Statement>, template: &'static str, binds: impl Into<Vec<Cell>>) {
    out.push(Statement::new(template, binds.into()));
}

fn id(value: impl ToString) -> Cell {
    Cell::Text(value.to_string())
}

fn apply_school(
    out: &mut Vec<Statement>,
    event: &SchoolEvent,
    e: Projected<'_>,
) -> Result<(), ProjectionError> {
    match event {
        SchoolEvent::SchoolRegistered(d) => {
            let binds = [
                id(d.school_id),
                Cell::from(&d.name),
                Cell::from(&d.brin),
                id(d.school_group_id),
            ];
            defer(out, INSERT_SCHOOL, binds);
            // The whole-school group carries the school's name.
            let binds = [
                id(d.school_group_id),
                id(d.school_id),
                Cell::from(&d.name),
                Cell::from(kind_str(GroupKind::School)),
            ];
            defer(out, INSERT_GROUP, binds);
            Ok(())
        }
        SchoolEvent::StaffJoined(d) => {
            defer(
                out,
                UPSERT_STAFF,
                [
                    id(d.school_id),
                    id(d.person_id),
                    Cell::from(role_str(d.role)),
                ],
            );
            let binds = [
                id(d.person_id),
                Cell::Text(sealed_text(&d.display_name, "a personal field")?),
                Cell::Text(sealed_text(&d.email, "a personal field")?),
            ];
            defer(out, UPSERT_PERSON, binds);
            if let Some(identity) = &d.identity {
                link_identity(out, d.person_id, identity);
            }
            Ok(())
        }
        SchoolEvent::StaffRoleChanged(d) => {
            defer(
                out,
                UPDATE_ROLE,
                [
                    Cell::from(role_str(d.role)),
                    id(d.school_id),
                    id(d.person_id),
                ],
            );
            Ok(())
        }
        SchoolEvent::StaffLeft(d) => {
            defer(out, DELETE_STAFF, [id(d.school_id), id(d.person_id)]);
            defer(out, UNASSIGN_EVERYWHERE, [id(d.person_id), id(d.school_id)]);
            Ok(())
        }
        SchoolEvent::GroupCreated(d) => {
            let binds = [
                id(d.group_id),
                id(d.school_id),
                Cell::from(&d.name),
                Cell::from(kind_str(GroupKind::Class)),
            ];
            defer(out, INSERT_GROUP, binds);
            Ok(())
        }
        SchoolEvent::StaffAssigned(d) => {
            defer(out, ASSIGN, [id(d.group_id), id(d.person_id)]);
            Ok(())
        }
        SchoolEvent::GroupArchived(d) => {
            defer(out, ARCHIVE_GROUP, [id(d.group_id)]);
            Ok(())
        }
        SchoolEvent::StaffUnassigned(d) => {
            defer(out, UNASSIGN, [id(d.group_id), id(d.person_id)]);
            Ok(())
        }
        SchoolEvent::ChildEnrolled(d) => {
            let binds = [
                id(d.child_id),
                id(d.school_id),
                id(d.group_id),
                Cell::Text(sealed_text(&d.first_name, "a personal field")?),
                Cell::Text(sealed_text(&d.last_initial, "a personal field")?),
            ];
            defer(out, ENROL, binds);
            Ok(())
        }
        SchoolEvent::ChildDetailsCorrected(d) => {
            let binds = [
                Cell::Text(sealed_text(&d.first_name, "a personal field")?),
                Cell::Text(sealed_text(&d.last_initial, "a personal field")?),
                id(d.child_id),
            ];
            defer(out, CORRECT_CHILD, binds);
            Ok(())
        }
        SchoolEvent::ChildMoved(d) => {
            defer(out, MOVE_CHILD, [id(d.to_group_id), id(d.child_id)]);
            // Open invitations follow the child: the staff of its new group handle them.
            defer(
                out,
                MOVE_OPEN_INVITATIONS,
                [id(d.to_group_id), id(d.child_id)],
            );
            Ok(())
        }
        SchoolEvent::ChildUnenrolled(d) => {
            // Their guardians leave with them.
            defer(out, UNLINK_ALL, [id(d.child_id)]);
            defer(out, UNENROL, [id(d.child_id)]);
            Ok(())
        }
        SchoolEvent::GuardianLinked(d) => {
            let binds = [
                id(d.child_id),
                id(d.guardian_id),
                id(d.invitation_id),
                Cell::Int(micros(e.recorded.occurred_at)),
            ];
            defer(out, LINK, binds);
            Ok(())
        }
        SchoolEvent::GuardianUnlinked(d) => {
            defer(out, UNLINK, [id(d.child_id), id(d.guardian_id)]);
            Ok(())
        }
        SchoolEvent::SchoolSettingsChanged(_) | SchoolEvent::ConsentPolicyPublished(_) => Ok(()),
    }
}

fn apply_invitation(
    out: &mut Vec<Statement>,
    event: &InvitationEvent,
    e: Projected<'_>,
) -> Result<(), ProjectionError> {
    let at = Cell::Int(micros(e.recorded.occurred_at));
    match event {
        InvitationEvent::Invited(d) => {
            let email = sealed_text(&d.email, "a personal field")?;
            let binds = [
                id(d.invitation_id),
                id(d.school_id),
                id(d.group_id),
                id(d.child_id),
                id(d.invitee_id),
                Cell::Text(email.clone()),
                id(d.invited_by),
                at,
                Cell::Int(micros(d.expires_at)),
            ];
            defer(out, INVITE, binds);
            defer(out, UPSERT_EMAIL, [id(d.invitee_id), Cell::Text(email)]);
            Ok(())
        }
        InvitationEvent::InvitationAccepted(d) => {
            defer(
                out,
                SET_STATUS,
                [
                    Cell::from(InvitationState::Accepted.as_str()),
                    at,
                    id(d.invitation_id),
                ],
            );
            defer(
                out,
                UPSERT_NAME,
                [
                    id(d.person_id),
                    Cell::Text(sealed_text(&d.display_name, "a personal field")?),
                ],
            );
            Ok(())
        }
        InvitationEvent::InvitationApproved(d) => {
            defer(out, APPROVE, [id(d.child_id), at, id(d.invitation_id)]);
            Ok(())
        }
        InvitationEvent::InvitationRevoked(d) => {
            defer(
                out,
                SET_STATUS,
                [
                    Cell::from(InvitationState::Revoked.as_str()),
                    at,
                    id(d.invitation_id),
                ],
            );
            Ok(())
        }
        InvitationEvent::InvitationExpired(d) => {
            defer(
                out,
                SET_STATUS,
                [
                    Cell::from(InvitationState::Expired.as_str()),
                    at,
                    id(d.invitation_id),
                ],
            );
            Ok(())
        }
    }
}

fn sealed(text: &str) -> Result<Sealed<String>, ProjectionError> {
    Ok(serde_json::from_str(text)?)
}

fn sealed_opt(text: Option<String>) -> Result<Option<Sealed<String>>, ProjectionError> {
    text.as_deref().map(sealed).transpose()
}

fn person_id(row: &AnyRow, i: usize) -> Result<PersonId, ProjectionError> {
    Ok(PersonId::from_uuid(uuid(&row.get::<String, _>(i))?))
}

fn child_id(row: &AnyRow, i: usize) -> Result<ChildId, ProjectionError> {
    Ok(ChildId::from_uuid(uuid(&row.get::<String, _>(i))?))
}

fn group_id(row: &AnyRow, i: usize) -> Result<GroupId, ProjectionError> {
    Ok(GroupId::from_uuid(uuid(&row.get::<String, _>(i))?))
}

fn school_id(row: &AnyRow, i: usize) -> Result<SchoolId, ProjectionError> {
    Ok(SchoolId::from_uuid(uuid(&row.get::<String, _>(i))?))
}

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

/// A staff member as a group shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStaff {
    /// The staff member.
    pub person_id: PersonId,
    /// Their role at the school.
    pub role: StaffRole,
    /// Whether they are assigned to this group (directors oversee every group without it).
    pub assigned: bool,
    /// Their display name, sealed; `None` if the log never named them.
    pub display_name: Option<Sealed<String>>,
}

/// A child as a group shows them (first name and initial of the last name only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupChild {
    /// The child.
    pub child_id: ChildId,
    /// The child's class group (for the school group, which lists every pupil).
    pub group_id: GroupId,
    /// First name, sealed for the child.
    pub first_name: Sealed<String>,
    /// Initial of the last name, sealed for the child.
    pub last_initial: Sealed<String>,
}

/// A guardian as a group shows them: no e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupGuardian {
    /// The guardian.
    pub person_id: PersonId,
    /// The name they chose, sealed; `None` if the log never named them.
    pub display_name: Option<Sealed<String>>,
    /// Their children in this group's audience.
    pub child_ids: Vec<ChildId>,
}

/// A group with its members, for `GET /v1/groups/{group_id}`. Holds no e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The group.
    pub group_id: GroupId,
    /// Its school.
    pub school_id: SchoolId,
    /// Its name (the school's name for the school group).
    pub name: String,
    /// Class or whole school.
    pub kind: GroupKind,
    /// Whether it ended at a year transition (read-only).
    pub archived: bool,
    /// Staff who see the group: assigned staff and directors (every staff member for the school
    /// group), by person id.
    pub staff: Vec<GroupStaff>,
    /// Its pupils (every pupil of the school for the school group), by child id.
    pub children: Vec<GroupChild>,
    /// Guardians of those pupils, by person id.
    pub guardians: Vec<GroupGuardian>,
}

/// A group, without its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSummary {
    /// The group.
    pub group_id: GroupId,
    /// Its school.
    pub school_id: SchoolId,
    /// Its name.
    pub name: String,
    /// Class or whole school.
    pub kind: GroupKind,
}

const GROUP: &str =
    "SELECT group_id, school_id, name, kind, archived FROM membership_groups WHERE group_id = $1";
// The audience rules, in SQL: a class group's own staff and the directors, or every staff
// member for the school group; its own pupils, or every pupil for the school group.
const GROUP_STAFF: &str = "SELECT s.person_id, s.role, p.display_name
FROM membership_groups g
JOIN membership_staff s ON s.school_id = g.school_id
LEFT JOIN membership_people p ON p.person_id = s.person_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR s.role = 'director'
    OR EXISTS (SELECT 1 FROM membership_group_staff a WHERE a.group_id = g.group_id AND a.person_id = s.person_id))
ORDER BY s.person_id";
const ASSIGNED: &str = "SELECT person_id FROM membership_group_staff WHERE group_id = $1";
const GROUP_CHILDREN: &str = "SELECT c.child_id, c.group_id, c.first_name, c.last_initial
FROM membership_groups g
JOIN membership_children c ON c.school_id = g.school_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR c.group_id = g.group_id)
ORDER BY c.child_id";
const GROUP_GUARDIANS: &str = "SELECT gu.guardian_id, gu.child_id, p.display_name
FROM membership_groups g
JOIN membership_children c ON c.school_id = g.school_id
JOIN membership_guardians gu ON gu.child_id = c.child_id
LEFT JOIN membership_people p ON p.person_id = gu.guardian_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR c.group_id = g.group_id)
ORDER BY gu.guardian_id, gu.child_id";
const MEMBERS: &str = "SELECT s.person_id
FROM membership_groups g
JOIN membership_staff s ON s.school_id = g.school_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR s.role = 'director'
    OR EXISTS (SELECT 1 FROM membership_group_staff a WHERE a.group_id = g.group_id AND a.person_id = s.person_id))
UNION
SELECT gu.guardian_id
FROM membership_groups g
JOIN membership_children c ON c.school_id = g.school_id
JOIN membership_guardians gu ON gu.child_id = c.child_id
WHERE g.group_id = $1 AND (g.kind = 'school' OR c.group_id = g.group_id)
ORDER BY 1";

/// A group with its staff, pupils and guardians, by sealed display name; never e-mail
/// addresses. `None` for an unknown group.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn group(db: &ReadDb, group: GroupId) -> Result<Option<GroupView>, ProjectionError> {
    let key = group.to_string();
    let Some(row) = sqlx::query(GROUP)
        .bind(&key)
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    let assigned: Vec<String> = sqlx::query_scalar(ASSIGNED)
        .bind(&key)
        .fetch_all(db.pool())
        .await?;
    let staff = sqlx::query(GROUP_STAFF)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            Ok(GroupStaff {
                person_id: PersonId::from_uuid(uuid(&id)?),
                role: role_from(&r.try_get::<String, _>(1)?)?,
                assigned: assigned.contains(&id),
                display_name: sealed_opt(r.try_get(2)?)?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    let children = sqlx::query(GROUP_CHILDREN)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(GroupChild {
                child_id: child_id(r, 0)?,
                group_id: group_id(r, 1)?,
                first_name: sealed(&r.try_get::<String, _>(2)?)?,
                last_initial: sealed(&r.try_get::<String, _>(3)?)?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    let mut guardians: Vec<GroupGuardian> = Vec::new();
    for r in sqlx::query(GROUP_GUARDIANS)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
    {
        let person = person_id(&r, 0)?;
        let child = child_id(&r, 1)?;
        match guardians.last_mut() {
            Some(last) if last.person_id == person => last.child_ids.push(child),
            _ => guardians.push(GroupGuardian {
                person_id: person,
                display_name: sealed_opt(r.try_get(2)?)?,
                child_ids: vec![child],
            }),
        }
    }
    Ok(Some(GroupView {
        group_id: group_id(&row, 0)?,
        school_id: school_id(&row, 1)?,
        name: row.try_get(2)?,
        kind: kind_from(&row.try_get::<String, _>(3)?)?,
        archived: row.try_get::<i64, _>(4)? != 0,
        staff,
        children,
        guardians,
    }))
}

/// Everyone in a group's audience, by person id: its staff (directors included; every staff
/// member for the school group) and the guardians of its pupils (of every pupil for the school
/// group). Empty for an unknown group.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn members_of_group(
    db: &ReadDb,
    group: GroupId,
) -> Result<Vec<PersonId>, ProjectionError> {
    let ids: Vec<String> = sqlx::query_scalar(MEMBERS)
        .bind(group.to_string())
        .fetch_all(db.pool())
        .await?;
    ids.iter()
        .map(|s| Ok(PersonId::from_uuid(uuid(s)?)))
        .collect()
}

/// A school in a person's profile, with what they are there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileSchool {
    /// The school.
    pub school_id: SchoolId,
    /// Its name.
    pub name: String,
    /// Its BRIN code.
    pub brin: String,
    /// Its whole-school group.
    pub school_group_id: GroupId,
    /// Their staff role there, if staff.
    pub role: Option<StaffRole>,
    /// Whether they are a linked guardian of a pupil there.
    pub guardian: bool,
}

/// A child as seen by a guardian or staff: where they are, by sealed name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildView {
    /// The child.
    pub child_id: ChildId,
    /// The school.
    pub school_id: SchoolId,
    /// The child's class group.
    pub group_id: GroupId,
    /// First name, sealed for the child.
    pub first_name: Sealed<String>,
    /// Initial of the last name, sealed for the child.
    pub last_initial: Sealed<String>,
    /// The linked guardians.
    pub guardian_ids: Vec<PersonId>,
}

/// A person's own profile, for `GET /v1/me`: the only view with their e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The person.
    pub person_id: PersonId,
    /// Their display name, sealed; `None` if the log never named them.
    pub display_name: Option<Sealed<String>>,
    /// Their e-mail address, sealed; `None` if the log holds none.
    pub email: Option<Sealed<String>>,
    /// Schools they belong to, with their role.
    pub schools: Vec<ProfileSchool>,
    /// Children they are a linked guardian of, with their groups.
    pub children: Vec<ChildView>,
    /// Groups they are a member of.
    pub groups: Vec<GroupSummary>,
}

const PERSON: &str = "SELECT display_name, email FROM membership_people WHERE person_id = $1";
const PERSON_SCHOOLS: &str = "SELECT sc.school_id, sc.name, sc.brin, sc.school_group_id,
    (SELECT s.role FROM membership_staff s WHERE s.school_id = sc.school_id AND s.person_id = $1) AS role,
    (SELECT COUNT(*) FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
        WHERE gu.guardian_id = $1 AND c.school_id = sc.school_id) AS guarded
FROM membership_schools sc
WHERE EXISTS (SELECT 1 FROM membership_staff s WHERE s.school_id = sc.school_id AND s.person_id = $1)
   OR EXISTS (SELECT 1 FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
        WHERE gu.guardian_id = $1 AND c.school_id = sc.school_id)
ORDER BY sc.school_id";
const PERSON_CHILDREN: &str =
    "SELECT c.child_id, c.school_id, c.group_id, c.first_name, c.last_initial
FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
WHERE gu.guardian_id = $1
ORDER BY c.child_id";
const CHILD: &str = "SELECT child_id, school_id, group_id, first_name, last_initial FROM membership_children WHERE child_id = $1";
const GUARDIANS_OF: &str =
    "SELECT guardian_id FROM membership_guardians WHERE child_id = $1 ORDER BY guardian_id";
const PERSON_GROUPS: &str = "SELECT g.group_id, g.school_id, g.name, g.kind
FROM membership_groups g
WHERE EXISTS (SELECT 1 FROM membership_staff s WHERE s.school_id = g.school_id AND s.person_id = $1
        AND (g.kind = 'school' OR s.role = 'director'
            OR EXISTS (SELECT 1 FROM membership_group_staff a WHERE a.group_id = g.group_id AND a.person_id = s.person_id)))
   OR EXISTS (SELECT 1 FROM membership_guardians gu JOIN membership_children c ON c.child_id = gu.child_id
        WHERE gu.guardian_id = $1 AND c.school_id = g.school_id AND (g.kind = 'school' OR c.group_id = g.group_id))
ORDER BY g.school_id, g.group_id";

/// The person a single sign-on identity (its digest) belongs to, if any.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn person_of_identity(
    db: &ReadDb,
    digest: &str,
) -> Result<Option<PersonId>, ProjectionError> {
    sqlx::query("SELECT person_id FROM membership_identities WHERE digest = $1")
        .bind(digest)
        .fetch_optional(db.pool())
        .await?
        .map(|r| person_id(&r, 0))
        .transpose()
}

/// A person's own profile: sealed name and e-mail address, schools with roles, children with
/// their groups, and the groups they are a member of. `None` when the read model knows nothing
/// of them.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn person(db: &ReadDb, person: PersonId) -> Result<Option<Profile>, ProjectionError> {
    let key = person.to_string();
    let row = sqlx::query(PERSON)
        .bind(&key)
        .fetch_optional(db.pool())
        .await?;
    let schools = sqlx::query(PERSON_SCHOOLS)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(ProfileSchool {
                school_id: school_id(r, 0)?,
                name: r.try_get(1)?,
                brin: r.try_get(2)?,
                school_group_id: group_id(r, 3)?,
                role: r
                    .get::<Option<String>, _>(4)
                    .as_deref()
                    .map(role_from)
                    .transpose()?,
                guardian: r.try_get::<i64, _>(5)? > 0,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    let mut children = Vec::new();
    for r in sqlx::query(PERSON_CHILDREN)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
    {
        children.push(child_view(db, &r).await?);
    }
    let groups = sqlx::query(PERSON_GROUPS)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(group_summary)
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    if row.is_none() && schools.is_empty() {
        return Ok(None);
    }
    let (display_name, email) = match row {
        Some(r) => (sealed_opt(r.try_get(0)?)?, sealed_opt(r.try_get(1)?)?),
        None => (None, None),
    };
    Ok(Some(Profile {
        person_id: person,
        display_name,
        email,
        schools,
        children,
        groups,
    }))
}

/// One child: school, class group, sealed name and linked guardians. `None` for a child not
/// enrolled (or no longer).
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn child(db: &ReadDb, child: ChildId) -> Result<Option<ChildView>, ProjectionError> {
    match sqlx::query(CHILD)
        .bind(child.to_string())
        .fetch_optional(db.pool())
        .await?
    {
        Some(r) => Ok(Some(child_view(db, &r).await?)),
        None => Ok(None),
    }
}

async fn child_view(db: &ReadDb, r: &AnyRow) -> Result<ChildView, ProjectionError> {
    let id: String = r.try_get(0)?;
    let guardians: Vec<String> = sqlx::query_scalar(GUARDIANS_OF)
        .bind(&id)
        .fetch_all(db.pool())
        .await?;
    Ok(ChildView {
        child_id: ChildId::from_uuid(uuid(&id)?),
        school_id: school_id(r, 1)?,
        group_id: group_id(r, 2)?,
        first_name: sealed(&r.try_get::<String, _>(3)?)?,
        last_initial: sealed(&r.try_get::<String, _>(4)?)?,
        guardian_ids: guardians
            .iter()
            .map(|g| Ok(PersonId::from_uuid(uuid(g)?)))
            .collect::<Result<_, ProjectionError>>()?,
    })
}

/// A group without its members (its school, name and kind). `None` for an unknown group.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn group_summary_of(
    db: &ReadDb,
    group: GroupId,
) -> Result<Option<GroupSummary>, ProjectionError> {
    sqlx::query(GROUP)
        .bind(group.to_string())
        .fetch_optional(db.pool())
        .await?
        .as_ref()
        .map(group_summary)
        .transpose()
}

fn group_summary(r: &AnyRow) -> Result<GroupSummary, ProjectionError> {
    Ok(GroupSummary {
        group_id: group_id(r, 0)?,
        school_id: school_id(r, 1)?,
        name: r.try_get(2)?,
        kind: kind_from(&r.try_get::<String, _>(3)?)?,
    })
}

/// An invitation as staff of the group see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvitationView {
    /// The invitation.
    pub invitation_id: InvitationId,
    /// The school.
    pub school_id: SchoolId,
    /// The group it is listed in: the child's class group (open invitations follow a moved
    /// child).
    pub group_id: GroupId,
    /// The child (the corrected one once approved with a correction).
    pub child_id: ChildId,
    /// The child the invitation named, when staff corrected it on approval.
    pub corrected_from: Option<ChildId>,
    /// The person id the invitee has (once accepted, the guardian).
    pub invitee_id: PersonId,
    /// The invitee's e-mail address, sealed for the invitee.
    pub email: Sealed<String>,
    /// Where it stands, as recorded.
    pub status: InvitationState,
    /// The staff member who invited.
    pub invited_by: PersonId,
    /// When it was sent.
    pub invited_at: DateTime<Utc>,
    /// Until when it can be accepted.
    pub expires_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

impl InvitationView {
    /// The status as of `now`: a pending invitation past its date counts as expired even
    /// before the expiry job records it.
    #[must_use]
    pub fn status_at(&self, now: DateTime<Utc>) -> InvitationState {
        if self.status == InvitationState::Pending && now >= self.expires_at {
            InvitationState::Expired
        } else {
            self.status
        }
    }
}

const INVITATIONS: &str = "SELECT invitation_id, school_id, group_id, child_id, corrected_from, invitee_id, email, status,
    invited_by, invited_at, expires_at, updated_at
FROM membership_invitations WHERE group_id = $1
    AND ($2 = '' OR (invited_at, invitation_id) >
        (SELECT a.invited_at, a.invitation_id FROM membership_invitations a WHERE a.invitation_id = $2))
ORDER BY invited_at, invitation_id
LIMIT $3";

/// Invitations still pending whose validity ran out by `now`, soonest expired first, at most
/// `limit`: what the invitation-expiry job records as expired.
///
/// # Errors
/// Database failures; a stored id this build cannot read.
pub async fn pending_past(
    db: &ReadDb,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<InvitationId>, ProjectionError> {
    sqlx::query(
        "SELECT invitation_id FROM membership_invitations
         WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
    )
    .bind(micros(now))
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|row| {
        Ok(InvitationId::from_uuid(uuid(
            &row.try_get::<String, _>(0)?,
        )?))
    })
    .collect()
}

/// The invitations listed in a group, oldest first, with sealed e-mail addresses (for the
/// group's staff).
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn invitations_of_group(
    db: &ReadDb,
    group: GroupId,
) -> Result<Vec<InvitationView>, ProjectionError> {
    invitations_of_group_page(db, group, None, u32::MAX).await
}

/// One page of [`invitations_of_group`]: at most `limit`, after the invitation `after` (the
/// last one of the previous page).
///
/// # Errors
/// As [`invitations_of_group`].
pub async fn invitations_of_group_page(
    db: &ReadDb,
    group: GroupId,
    after: Option<InvitationId>,
    limit: u32,
) -> Result<Vec<InvitationView>, ProjectionError> {
    sqlx::query(INVITATIONS)
        .bind(group.to_string())
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(invitation_view)
        .collect()
}

fn invitation_view(r: &AnyRow) -> Result<InvitationView, ProjectionError> {
    Ok(InvitationView {
        invitation_id: InvitationId::from_uuid(uuid(&r.try_get::<String, _>(0)?)?),
        school_id: school_id(r, 1)?,
        group_id: group_id(r, 2)?,
        child_id: child_id(r, 3)?,
        corrected_from: r
            .get::<Option<String>, _>(4)
            .map(|s| Ok::<_, ProjectionError>(ChildId::from_uuid(uuid(&s)?)))
            .transpose()?,
        invitee_id: person_id(r, 5)?,
        email: sealed(&r.try_get::<String, _>(6)?)?,
        status: InvitationState::parse(&r.try_get::<String, _>(7)?)?,
        invited_by: person_id(r, 8)?,
        invited_at: from_micros(r.try_get(9)?)?,
        expires_at: from_micros(r.try_get(10)?)?,
        updated_at: from_micros(r.try_get(11)?)?,
    })
}

const INVITATIONS_OF_INVITEE: &str = "SELECT invitation_id, school_id, group_id, child_id, corrected_from, invitee_id, email, status,
    invited_by, invited_at, expires_at, updated_at
FROM membership_invitations WHERE invitee_id = $1 ORDER BY invited_at, invitation_id";

/// The invitations sent to `person` (as invitee), oldest first, with sealed e-mail addresses
/// (for the person's own export).
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn invitations_of_invitee(
    db: &ReadDb,
    person: PersonId,
) -> Result<Vec<InvitationView>, ProjectionError> {
    sqlx::query(INVITATIONS_OF_INVITEE)
        .bind(person.to_string())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(invitation_view)
        .collect()
}

/// The staff of a school with their roles.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn staff_of_school(
    db: &ReadDb,
    school: SchoolId,
) -> Result<BTreeMap<PersonId, StaffRole>, ProjectionError> {
    sqlx::query("SELECT person_id, role FROM membership_staff WHERE school_id = $1")
        .bind(school.to_string())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| Ok((person_id(r, 0)?, role_from(&r.try_get::<String, _>(1)?)?)))
        .collect()
}
