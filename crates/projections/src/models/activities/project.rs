//! The write side: scheduling, sign-ups, withdrawals and cancellations.

use super::NAME;
use crate::bulk::{Bulk, Cell, Deferred, Statement};
use crate::db::{micros, to_i64};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use kring_domain::activity::ActivityEvent;
use kring_domain::Event;

/// The projection. A batch's new activities are inserted in bulk first (an activity's stream
/// starts with its scheduling, so nothing else of the batch comes before it); the rest — sign-ups,
/// withdrawals, cancellations, which depend on what came before — one statement per event, in
/// order, deferred to the batch's flush.
#[derive(Debug, Default)]
pub struct ActivitiesProjection {
    scheduled: Buffer<[Cell; 9]>,
    deferred: Deferred,
}

const SCHEMA: &str = include_str!("sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const SCHEDULE: &str = include_str!("sql/schedule.sql");
const SCHEDULE_SUFFIX: &str = include_str!("sql/schedule_suffix.sql");
const SIGN_UP: &str = include_str!("sql/sign_up.sql");
const WITHDRAW: &str = include_str!("sql/withdraw.sql");
const CANCEL: &str = include_str!("sql/cancel.sql");

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
