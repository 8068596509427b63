//! The write side: applying events to the memberships read model.

use super::{kind_str, role_str, InvitationState, NAME};
use crate::bulk::{Cell, Deferred, Statement};
use crate::db::{micros, sealed_text};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use kring_domain::invitation::InvitationEvent;
use kring_domain::person::{PersonEvent, SsoIdentity};
use kring_domain::school::{GroupKind, SchoolEvent};
use kring_domain::{Event, PersonId};

/// The projection. Its statements depend on each other (an approval reads the child's group,
/// a departure deletes what a join inserted), so it defers each event's statements, in order,
/// to the batch's flush.
#[derive(Debug, Default)]
pub struct MembershipsProjection {
    deferred: Deferred,
}

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
