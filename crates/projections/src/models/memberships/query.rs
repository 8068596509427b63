//! The read side: groups, profiles, children, invitations and staff.

use super::{kind_from, role_from, InvitationState};
use crate::db::{from_micros, micros, uuid, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::school::{GroupKind, StaffRole};
use kring_domain::{ChildId, GroupId, InvitationId, PersonId, SchoolId, Sealed};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

const PERSON_OF_IDENTITY: &str = include_str!("sql/person_of_identity.sql");
const PENDING_PAST: &str = include_str!("sql/pending_past.sql");
const STAFF_OF_SCHOOL: &str = include_str!("sql/staff_of_school.sql");

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

const GROUP: &str = include_str!("sql/group.sql");
// The audience rules, in SQL: a class group's own staff and the directors, or every staff
// member for the school group; its own pupils, or every pupil for the school group.
const GROUP_STAFF: &str = include_str!("sql/group_staff.sql");
const ASSIGNED: &str = include_str!("sql/assigned.sql");
const GROUP_CHILDREN: &str = include_str!("sql/group_children.sql");
const GROUP_GUARDIANS: &str = include_str!("sql/group_guardians.sql");
const MEMBERS: &str = include_str!("sql/members.sql");

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

const PERSON: &str = include_str!("sql/person.sql");
const PERSON_SCHOOLS: &str = include_str!("sql/person_schools.sql");
const PERSON_CHILDREN: &str = include_str!("sql/person_children.sql");
const CHILD: &str = include_str!("sql/child.sql");
const GUARDIANS_OF: &str = include_str!("sql/guardians_of.sql");
const PERSON_GROUPS: &str = include_str!("sql/person_groups.sql");

/// The person a single sign-on identity (its digest) belongs to, if any.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn person_of_identity(
    db: &ReadDb,
    digest: &str,
) -> Result<Option<PersonId>, ProjectionError> {
    sqlx::query(PERSON_OF_IDENTITY)
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

const INVITATIONS: &str = include_str!("sql/invitations.sql");

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
    sqlx::query(PENDING_PAST)
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

const INVITATIONS_OF_INVITEE: &str = include_str!("sql/invitations_of_invitee.sql");

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
    sqlx::query(STAFF_OF_SCHOOL)
        .bind(school.to_string())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| Ok((person_id(r, 0)?, role_from(&r.try_get::<String, _>(1)?)?)))
        .collect()
}
