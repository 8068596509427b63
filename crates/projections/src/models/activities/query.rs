//! The read side: a group's activities and one activity, with their volunteers.

use crate::db::{from_micros, uuid, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::{ActivityId, GroupId, PersonId, SchoolId};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// An activity with its volunteer slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityView {
    /// The activity.
    pub activity_id: ActivityId,
    /// The school.
    pub school_id: SchoolId,
    /// The group whose calendar it is in.
    pub group_id: GroupId,
    /// Its title.
    pub title: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Number of volunteer slots.
    pub slots: u32,
    /// Slots taken.
    pub taken: u32,
    /// Slots still free.
    pub free: u32,
    /// The volunteers, in the order they signed up.
    pub volunteers: Vec<PersonId>,
    /// Who scheduled it.
    pub scheduled_by: PersonId,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

const ACTIVITIES_OF_GROUP: &str = include_str!("sql/activities_of_group.sql");
const VOLUNTEERS_OF_GROUP: &str = include_str!("sql/volunteers_of_group.sql");
const ACTIVITY: &str = include_str!("sql/activity.sql");
const VOLUNTEERS: &str = include_str!("sql/volunteers.sql");

fn activity_row(r: &AnyRow, volunteers: Vec<PersonId>) -> Result<ActivityView, ProjectionError> {
    let slots = r.try_get::<i64, _>(6)?;
    let slots = u32::try_from(slots).map_err(|_| {
        ProjectionError::Invalid(format!("{slots} slots in the activities read model"))
    })?;
    let taken = u32::try_from(volunteers.len()).unwrap_or(u32::MAX);
    Ok(ActivityView {
        activity_id: ActivityId::from_uuid(uuid(&r.try_get::<String, _>(0)?)?),
        school_id: SchoolId::from_uuid(uuid(&r.try_get::<String, _>(1)?)?),
        group_id: GroupId::from_uuid(uuid(&r.try_get::<String, _>(2)?)?),
        title: r.try_get(3)?,
        starts_at: from_micros(r.try_get(4)?)?,
        ends_at: from_micros(r.try_get(5)?)?,
        slots,
        taken,
        free: slots.saturating_sub(taken),
        volunteers,
        scheduled_by: PersonId::from_uuid(uuid(&r.try_get::<String, _>(7)?)?),
        cancelled: r.try_get::<i64, _>(8)? != 0,
        cancelled_at: r
            .try_get::<Option<i64>, _>(9)?
            .map(from_micros)
            .transpose()?,
    })
}

async fn volunteers(
    db: &ReadDb,
    query: &'static str,
    key: &str,
) -> Result<BTreeMap<String, Vec<PersonId>>, ProjectionError> {
    let mut map: BTreeMap<String, Vec<PersonId>> = BTreeMap::new();
    for r in sqlx::query(query).bind(key).fetch_all(db.pool()).await? {
        map.entry(r.try_get(0)?)
            .or_default()
            .push(PersonId::from_uuid(uuid(&r.try_get::<String, _>(1)?)?));
    }
    Ok(map)
}

/// A group's activities by start time, cancelled ones included (flagged), each with its slots
/// taken and free and its volunteers.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn activities_of_group(
    db: &ReadDb,
    group: GroupId,
) -> Result<Vec<ActivityView>, ProjectionError> {
    let key = group.to_string();
    let mut by_activity = volunteers(db, VOLUNTEERS_OF_GROUP, &key).await?;
    sqlx::query(ACTIVITIES_OF_GROUP)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            activity_row(
                r,
                by_activity
                    .remove(&r.try_get::<String, _>(0)?)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// One activity with its slots and volunteers; `None` for an unknown one.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn activity(
    db: &ReadDb,
    activity: ActivityId,
) -> Result<Option<ActivityView>, ProjectionError> {
    let key = activity.to_string();
    let Some(row) = sqlx::query(ACTIVITY)
        .bind(&key)
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    let volunteers = volunteers(db, VOLUNTEERS, &key)
        .await?
        .remove(&key)
        .unwrap_or_default();
    activity_row(&row, volunteers).map(Some)
}
