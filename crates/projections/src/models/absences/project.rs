//! The write side: reports, cancellations, and absences following their child.

use super::{date_text, NAME};
use crate::bulk::{Bulk, Cell};
use crate::db::{micros, sealed_text};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use kring_domain::child::{ChildEvent, SCHOOL_TIME_ZONE};
use kring_domain::school::SchoolEvent;
use kring_domain::Event;

/// The projection.
#[derive(Debug, Default)]
pub struct AbsencesProjection {
    /// The batch's reports not written yet, as rows: written in bulk at the end of the batch,
    /// or before any other change to the table (which may touch them), so that the table sees
    /// every change in log order.
    reports: Buffer<[Cell; 10]>,
}

const SCHEMA: &str = include_str!("sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const REPORT: &str = include_str!("sql/report.sql");
const REPORT_SUFFIX: &str = include_str!("sql/report_suffix.sql");
const CANCEL: &str = include_str!("sql/cancel.sql");
const FOLLOW_MOVE: &str = include_str!("sql/follow_move.sql");
const DROP_UPCOMING: &str = include_str!("sql/drop_upcoming.sql");

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
