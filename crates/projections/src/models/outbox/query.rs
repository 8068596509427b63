//! The read side: notifications due, held or undelivered, and availability.

use super::{quiet_until, Notification, NotificationId};
use crate::db::{from_micros, micros, to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::{
    AbsenceId, ActivityId, ChildId, ConversationId, GroupId, InvitationId, MeetingBookingId,
    MeetingRoundId, MessageId, PersonId, PostId, SchoolId,
};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const DUE: &str = include_str!("sql/due.sql");
const HELD: &str = include_str!("sql/held.sql");
const UNDELIVERED_OF: &str = include_str!("sql/undelivered_of.sql");
const NOTIFICATION: &str = include_str!("sql/notification.sql");
const LOG_TIME: &str = include_str!("sql/log_time.sql");
const SCHEDULE_OF_STAFF: &str = include_str!("sql/schedule_of_staff.sql");
const SCHOOL_SCHEDULE_OF_STAFF: &str = include_str!("sql/school_schedule_of_staff.sql");

fn notification_from(row: &AnyRow) -> Result<Notification, ProjectionError> {
    Ok(Notification {
        id: row.try_get::<String, _>(0)?.parse()?,
        position: to_u64(row.try_get(1)?)?,
        recipient_id: PersonId::from_uuid(uuid(&row.try_get::<String, _>(2)?)?),
        kind: row.try_get::<String, _>(3)?.parse().map_err(
            |e: kring_domain::person::UnknownNotificationKind| {
                ProjectionError::Invalid(e.to_string())
            },
        )?,
        conversation_id: optional_id(row, 4)?.map(ConversationId::from_uuid),
        message_id: optional_id(row, 5)?.map(MessageId::from_uuid),
        created_at: from_micros(row.try_get(6)?)?,
        release_at: from_micros(row.try_get(7)?)?,
        delivered: row.try_get::<Option<String>, _>(8)?.is_some(),
        school_id: optional_id(row, 9)?.map(SchoolId::from_uuid),
        policy_version: row
            .try_get::<Option<i64>, _>(10)?
            .map(|v| {
                u32::try_from(v).map_err(|_| {
                    ProjectionError::Invalid(format!("policy version {v} in the outbox"))
                })
            })
            .transpose()?,
        channel: super::read_channel(&row.try_get::<String, _>(11)?),
        post_id: optional_id(row, 12)?.map(PostId::from_uuid),
        group_id: optional_id(row, 13)?.map(GroupId::from_uuid),
        activity_id: optional_id(row, 14)?.map(ActivityId::from_uuid),
        invitation_id: optional_id(row, 15)?.map(InvitationId::from_uuid),
        child_id: optional_id(row, 16)?.map(ChildId::from_uuid),
        absence_id: optional_id(row, 17)?.map(AbsenceId::from_uuid),
        round_id: optional_id(row, 18)?.map(MeetingRoundId::from_uuid),
        booking_id: optional_id(row, 19)?.map(MeetingBookingId::from_uuid),
    })
}

fn optional_id(row: &AnyRow, i: usize) -> Result<Option<Uuid>, ProjectionError> {
    row.try_get::<Option<String>, _>(i)?
        .map(|s| uuid(&s))
        .transpose()
}

/// Notifications to send one by one at `now`: on the `push` or `email` channel (see
/// [`Notification::channel`]), released at or before `now` and not delivered yet, oldest first,
/// at most `limit`. `digest` ones are never due here: the delivery worker gathers them per
/// recipient and release time itself; `off` ones are never due.
///
/// # Errors
/// Database failures; the delivery table missing
/// ([`ensure_delivery_table`](super::ensure_delivery_table)).
pub async fn due(
    db: &ReadDb,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Notification>, ProjectionError> {
    let rows = sqlx::query(DUE)
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(notification_from).collect()
}

/// The notifications to `recipient` held at `now` for their quiet hours, soonest released first.
///
/// # Errors
/// Database failures; the delivery table missing
/// ([`ensure_delivery_table`](super::ensure_delivery_table)).
pub async fn held(
    db: &ReadDb,
    recipient: PersonId,
    now: DateTime<Utc>,
) -> Result<Vec<Notification>, ProjectionError> {
    let rows = sqlx::query(HELD)
        .bind(recipient.to_string())
        .bind(micros(now))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(notification_from).collect()
}

/// The notifications to `recipient` not delivered yet, due and held alike, soonest released
/// first, at most `limit`: what a recipient's own app fetches (those released at or before now
/// are due; the rest are held for the recipient's quiet hours). Only those in the retention
/// window ([`kept_since`]): older ones are no longer in the outbox.
///
/// # Errors
/// Database failures; the delivery table missing
/// ([`ensure_delivery_table`](super::ensure_delivery_table)).
pub async fn undelivered_of(
    db: &ReadDb,
    recipient: PersonId,
    limit: u32,
) -> Result<Vec<Notification>, ProjectionError> {
    let rows = sqlx::query(UNDELIVERED_OF)
        .bind(recipient.to_string())
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(notification_from).collect()
}

/// One notification, delivered or not.
///
/// # Errors
/// Database failures; the delivery table missing
/// ([`ensure_delivery_table`](super::ensure_delivery_table)).
pub async fn notification(
    db: &ReadDb,
    id: NotificationId,
) -> Result<Option<Notification>, ProjectionError> {
    let row = sqlx::query(NOTIFICATION)
        .bind(id.to_string())
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(notification_from).transpose()
}

/// The oldest release time the outbox still keeps: the recorded time of the newest event it
/// has applied, less the [retention window](super::RETENTION_DAYS). `None` before it has
/// applied any event.
///
/// # Errors
/// Database failures.
pub async fn kept_since(db: &ReadDb) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    let head: Option<i64> = sqlx::query_scalar(LOG_TIME)
        .fetch_optional(db.pool())
        .await?;
    head.map(|h| Ok(from_micros(h)? - super::retention()))
        .transpose()
}

/// Whether a person can be reached now, as parents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Availability {
    /// Whether the person is in quiet hours: notifications to them are held.
    pub in_quiet_hours: bool,
    /// When the quiet period ends, while in one.
    pub until: Option<DateTime<Utc>>,
}

/// The availability of `person` at `now`: in quiet hours by their current schedule (staff only;
/// guardians have none), and until when. Unknown people are simply available.
///
/// # Errors
/// Database failures.
pub async fn availability(
    db: &ReadDb,
    person: PersonId,
    now: DateTime<Utc>,
) -> Result<Availability, ProjectionError> {
    let mut schedule: Option<String> = sqlx::query_scalar(SCHEDULE_OF_STAFF)
        .bind(person.to_string())
        .fetch_optional(db.pool())
        .await?;
    if schedule.is_none() {
        schedule = sqlx::query_scalar(SCHOOL_SCHEDULE_OF_STAFF)
            .bind(person.to_string())
            .fetch_optional(db.pool())
            .await?;
    }
    let until = quiet_until(schedule.as_deref(), now)?;
    Ok(Availability {
        in_quiet_hours: until.is_some(),
        until,
    })
}

#[cfg(test)]
mod tests {
    /// What [`super::notification_from`] reads, in its order, with the delivery if any.
    const HEAD: &str = "SELECT n.notification_id, n.position, n.recipient_id, n.kind, n.conversation_id, n.message_id,
    n.created_at, n.release_at, d.notification_id, n.school_id, n.policy_version,
    n.channel, n.post_id, n.group_id, n.activity_id, n.invitation_id, n.child_id, n.absence_id,
    n.round_id, n.booking_id
FROM outbox_notifications n
LEFT JOIN notification_deliveries d ON d.notification_id = n.notification_id
";

    #[test]
    fn every_notification_query_begins_with_its_columns() {
        for sql in [
            super::DUE,
            super::HELD,
            super::UNDELIVERED_OF,
            super::NOTIFICATION,
        ] {
            assert!(sql.starts_with(HEAD), "{sql}");
        }
    }
}
