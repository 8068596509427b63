//! The read side: a class group's absences on a day, and a child's absences.

use super::date_text;
use crate::db::{from_micros, uuid, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, NaiveDate, Utc};
use kring_domain::{AbsenceId, ChildId, GroupId, PersonId, SchoolId, Sealed};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

fn date(s: &str) -> Result<NaiveDate, ProjectionError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| ProjectionError::Invalid(format!("bad date {s:?} in a read model: {e}")))
}

/// One planned absence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbsenceView {
    /// The absence.
    pub absence_id: AbsenceId,
    /// The child.
    pub child_id: ChildId,
    /// The school.
    pub school_id: SchoolId,
    /// The child's class group.
    pub group_id: GroupId,
    /// First day absent.
    pub from: NaiveDate,
    /// Last day absent.
    pub to: NaiveDate,
    /// Why, sealed for the child.
    pub reason: Sealed<String>,
    /// The guardian who reported it.
    pub reported_by: PersonId,
    /// When it was reported.
    pub reported_at: DateTime<Utc>,
    /// Whether it was cancelled.
    pub cancelled: bool,
    /// Who cancelled it.
    pub cancelled_by: Option<PersonId>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

const ABSENCES_ON: &str = include_str!("sql/absences_on.sql");
const ABSENCES_OF_CHILD: &str = include_str!("sql/absences_of_child.sql");

fn absence(r: &AnyRow) -> Result<AbsenceView, ProjectionError> {
    Ok(AbsenceView {
        absence_id: AbsenceId::from_uuid(uuid(&r.try_get::<String, _>(0)?)?),
        child_id: ChildId::from_uuid(uuid(&r.try_get::<String, _>(1)?)?),
        school_id: SchoolId::from_uuid(uuid(&r.try_get::<String, _>(2)?)?),
        group_id: GroupId::from_uuid(uuid(&r.try_get::<String, _>(3)?)?),
        from: date(&r.try_get::<String, _>(4)?)?,
        to: date(&r.try_get::<String, _>(5)?)?,
        reason: serde_json::from_str(&r.try_get::<String, _>(6)?)?,
        reported_by: PersonId::from_uuid(uuid(&r.try_get::<String, _>(7)?)?),
        reported_at: from_micros(r.try_get(8)?)?,
        cancelled: r.try_get::<i64, _>(9)? != 0,
        cancelled_by: r
            .get::<Option<String>, _>(10)
            .map(|s| Ok::<_, ProjectionError>(PersonId::from_uuid(uuid(&s)?)))
            .transpose()?,
        cancelled_at: r
            .try_get::<Option<i64>, _>(11)?
            .map(from_micros)
            .transpose()?,
    })
}

/// The absences in a class group that cover `day` and were not cancelled, by child: the
/// staff's list for that day.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn absences_on(
    db: &ReadDb,
    group: GroupId,
    day: NaiveDate,
) -> Result<Vec<AbsenceView>, ProjectionError> {
    sqlx::query(ABSENCES_ON)
        .bind(group.to_string())
        .bind(date_text(day))
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(absence)
        .collect()
}

/// Every planned absence of a child, cancelled ones included, by first day.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn absences_of_child(
    db: &ReadDb,
    child: ChildId,
) -> Result<Vec<AbsenceView>, ProjectionError> {
    sqlx::query(ABSENCES_OF_CHILD)
        .bind(child.to_string())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(absence)
        .collect()
}
