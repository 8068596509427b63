//! Activities in a group's calendar with their volunteer slots: how many there are, how many are
//! taken and free, and who volunteers.

use crate::bulk::{Bulk, Cell, Deferred, Statement};
use crate::db::{from_micros, micros, to_i64, uuid, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::activity::ActivityEvent;
use kring_domain::{ActivityId, Event, GroupId, PersonId, SchoolId};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// The projection. A batch's new activities are inserted in bulk first (an activity's stream
/// starts with its scheduling, so nothing else of the batch comes before it); the rest — sign-ups,
/// withdrawals, cancellations, which depend on what came before — one statement per event, in
/// order, deferred to the batch's flush.
#[derive(Debug, Default)]
pub struct ActivitiesProjection {
    scheduled: Buffer<[Cell; 9]>,
    deferred: Deferred,
}

/// Its name.
pub const NAME: &str = "activities";

const SCHEMA: &str = include_str!("activities/sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("activities/sql/query_indexes.sql");

const SCHEDULE: &str = include_str!("activities/sql/schedule.sql");
const SCHEDULE_SUFFIX: &str = include_str!("activities/sql/schedule_suffix.sql");
const SIGN_UP: &str = include_str!("activities/sql/sign_up.sql");
const WITHDRAW: &str = include_str!("activities/sql/withdraw.sql");
const CANCEL: &str = include_str!("activities/sql/cancel.sql");

#[async_trait]
impl Projection for ActivitiesProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["activities", "activity_volunteers"]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        _tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let Event::Activity(event) = e.event else {
            return Ok(());
        };
        let position = e.recorded.position;
        let statement = match event {
            ActivityEvent::ActivityScheduled(d) => {
                self.scheduled.push(
                    t,
                    position,
                    Some([
                        Cell::Text(d.activity_id.to_string()),
                        Cell::Text(d.school_id.to_string()),
                        Cell::Text(d.group_id.to_string()),
                        Cell::from(&d.title),
                        Cell::Int(micros(d.starts_at)),
                        Cell::Int(micros(d.ends_at)),
                        Cell::Int(i64::from(d.volunteer_slots)),
                        Cell::Text(d.by.to_string()),
                        Cell::Int(0),
                    ]),
                );
                self.deferred.push(t, position, Vec::new());
                return Ok(());
            }
            ActivityEvent::VolunteerSignedUp(d) => Statement::new(
                SIGN_UP,
                vec![
                    Cell::Text(d.activity_id.to_string()),
                    Cell::Text(d.person_id.to_string()),
                    Cell::Int(micros(e.recorded.occurred_at)),
                    Cell::Int(to_i64(e.recorded.position)),
                ],
            ),
            ActivityEvent::VolunteerWithdrew(d) => Statement::new(
                WITHDRAW,
                vec![
                    Cell::Text(d.activity_id.to_string()),
                    Cell::Text(d.person_id.to_string()),
                ],
            ),
            ActivityEvent::ActivityCancelled(d) => Statement::new(
                CANCEL,
                vec![
                    Cell::Text(d.by.to_string()),
                    Cell::Int(micros(e.recorded.occurred_at)),
                    Cell::Text(d.activity_id.to_string()),
                ],
            ),
        };
        self.scheduled.push(t, position, None);
        self.deferred.push(t, position, vec![statement]);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let mut scheduled = Bulk::new(t.sql(SCHEDULE), 9, SCHEDULE_SUFFIX);
        for row in self.scheduled.take(t) {
            scheduled.row(row);
        }
        scheduled.execute(tx).await?;
        self.deferred.flush(tx, t).await
    }
}

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

const ACTIVITIES_OF_GROUP: &str = include_str!("activities/sql/activities_of_group.sql");
const VOLUNTEERS_OF_GROUP: &str = include_str!("activities/sql/volunteers_of_group.sql");
const ACTIVITY: &str = include_str!("activities/sql/activity.sql");
const VOLUNTEERS: &str = include_str!("activities/sql/volunteers.sql");

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
