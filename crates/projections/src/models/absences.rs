//! Planned absences: per child and class group, with first and last day, the reason sealed for
//! the child, who reported it, and whether it was cancelled. Serves the staff's day list
//! (`GET /v1/groups/{group_id}/absences?date=`).
//!
//! Absences follow the child: when a child moves to another class group, its absences that
//! are not over yet (last day on or after the day of the move, in the school's time zone) move
//! with it; when a child is unenrolled, those are dropped.

use crate::bulk::{Bulk, Cell};
use crate::db::{from_micros, micros, sealed_text, uuid, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use kring_domain::child::{ChildEvent, SCHOOL_TIME_ZONE};
use kring_domain::school::SchoolEvent;
use kring_domain::{AbsenceId, ChildId, Event, GroupId, PersonId, SchoolId, Sealed};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

const REPORT_SUFFIX: &str = include_str!("absences/sql/report_suffix.sql");

/// The projection.
#[derive(Debug, Default)]
pub struct AbsencesProjection {
    /// The batch's reports not written yet, as rows: written in bulk at the end of the batch,
    /// or before any other change to the table (which may touch them), so that the table sees
    /// every change in log order.
    reports: Buffer<[Cell; 10]>,
}

/// Its name.
pub const NAME: &str = "absences";

const SCHEMA: &str = include_str!("absences/sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("absences/sql/query_indexes.sql");

const REPORT: &str = include_str!("absences/sql/report.sql");
const CANCEL: &str = include_str!("absences/sql/cancel.sql");
const FOLLOW_MOVE: &str = include_str!("absences/sql/follow_move.sql");
const DROP_UPCOMING: &str = include_str!("absences/sql/drop_upcoming.sql");

#[async_trait]
impl Projection for AbsencesProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["absences"]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        // The school day the event happened on: absences ending before it are history.
        let today = || {
            date_text(
                e.recorded
                    .occurred_at
                    .with_timezone(&SCHOOL_TIME_ZONE)
                    .date_naive(),
            )
        };
        let position = e.recorded.position;
        if let Event::Child(ChildEvent::PlannedAbsenceReported(d)) = e.event {
            let row = [
                Cell::Text(d.absence_id.to_string()),
                Cell::Text(d.child_id.to_string()),
                Cell::Text(d.school_id.to_string()),
                Cell::Text(d.group_id.to_string()),
                Cell::Text(date_text(d.from)),
                Cell::Text(date_text(d.to)),
                Cell::Text(sealed_text(&d.reason, "an absence reason")?),
                Cell::Text(d.reported_by.to_string()),
                Cell::Int(micros(e.recorded.occurred_at)),
                Cell::Int(0),
            ];
            self.reports.push(t, position, Some(row));
            return Ok(());
        }
        self.reports.push(t, position, None);
        if !matches!(
            e.event,
            Event::Child(ChildEvent::PlannedAbsenceCancelled(_))
                | Event::School(SchoolEvent::ChildMoved(_) | SchoolEvent::ChildUnenrolled(_))
        ) {
            return Ok(());
        }
        self.write_reports(tx, t).await?;
        match e.event {
            Event::Child(ChildEvent::PlannedAbsenceCancelled(d)) => {
                tx.execute(
                    &t.sql(CANCEL),
                    vec![
                        Cell::from(d.by.to_string()),
                        Cell::from(micros(e.recorded.occurred_at)),
                        Cell::from(d.absence_id.to_string()),
                        Cell::from(d.child_id.to_string()),
                    ],
                )
                .await?;
            }
            Event::School(SchoolEvent::ChildMoved(d)) => {
                tx.execute(
                    &t.sql(FOLLOW_MOVE),
                    vec![
                        Cell::from(d.to_group_id.to_string()),
                        Cell::from(d.child_id.to_string()),
                        Cell::from(today()),
                    ],
                )
                .await?;
            }
            Event::School(SchoolEvent::ChildUnenrolled(d)) => {
                tx.execute(
                    &t.sql(DROP_UPCOMING),
                    vec![Cell::from(d.child_id.to_string()), Cell::from(today())],
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        self.write_reports(tx, t).await
    }
}

impl AbsencesProjection {
    /// Writes the buffered reports, in one statement per few hundred.
    async fn write_reports(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let rows = self.reports.take(t);
        if rows.is_empty() {
            return Ok(());
        }
        let mut bulk = Bulk::new(t.sql(REPORT), 10, REPORT_SUFFIX);
        for row in rows {
            bulk.row(row);
        }
        bulk.execute(tx).await?;
        Ok(())
    }
}

/// How dates are stored: `YYYY-MM-DD`, which sorts and compares as text.
fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

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

const ABSENCES_ON: &str = include_str!("absences/sql/absences_on.sql");
const ABSENCES_OF_CHILD: &str = include_str!("absences/sql/absences_of_child.sql");

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
