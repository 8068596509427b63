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

const SCHEMA: &str = include_str!("sql/schema.sql");

const INSERT_SCHOOL: &str = include_str!("sql/insert_school.sql");
const INSERT_GROUP: &str = include_str!("sql/insert_group.sql");
const ARCHIVE_GROUP: &str = include_str!("sql/archive_group.sql");
const UPSERT_STAFF: &str = include_str!("sql/upsert_staff.sql");
const UPDATE_ROLE: &str = include_str!("sql/update_role.sql");
const DELETE_STAFF: &str = include_str!("sql/delete_staff.sql");
const UNASSIGN_EVERYWHERE: &str = include_str!("sql/unassign_everywhere.sql");
const ASSIGN: &str = include_str!("sql/assign.sql");
const UNASSIGN: &str = include_str!("sql/unassign.sql");
const UPSERT_PERSON: &str = include_str!("sql/upsert_person.sql");
// The first person to claim an identity keeps it: a later claim (a race the API's check did
// not see) is no sign-in for anyone else.
const LINK_IDENTITY: &str = include_str!("sql/link_identity.sql");
const FORGET_IDENTITIES: &str = include_str!("sql/forget_identities.sql");
const UPSERT_NAME: &str = include_str!("sql/upsert_name.sql");
const UPSERT_EMAIL: &str = include_str!("sql/upsert_email.sql");
const ENROL: &str = include_str!("sql/enrol.sql");
const CORRECT_CHILD: &str = include_str!("sql/correct_child.sql");
const MOVE_CHILD: &str = include_str!("sql/move_child.sql");
const MOVE_OPEN_INVITATIONS: &str = include_str!("sql/move_open_invitations.sql");
const UNENROL: &str = include_str!("sql/unenrol.sql");
const UNLINK_ALL: &str = include_str!("sql/unlink_all.sql");
const LINK: &str = include_str!("sql/link.sql");
const UNLINK: &str = include_str!("sql/unlink.sql");
const INVITE: &str = include_str!("sql/invite.sql");
const SET_STATUS: &str = include_str!("sql/set_status.sql");
// Every SET expression sees the row as it was, so `corrected_from` keeps the child named before.
const APPROVE: &str = include_str!("sql/approve.sql");

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
