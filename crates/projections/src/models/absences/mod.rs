//! Planned absences: per child and class group, with first and last day, the reason sealed for
//! the child, who reported it, and whether it was cancelled. Serves the staff's day list
//! (`GET /v1/groups/{group_id}/absences?date=`).
//!
//! Absences follow the child: when a child moves to another class group, its absences that
//! are not over yet (last day on or after the day of the move, in the school's time zone) move
//! with it; when a child is unenrolled, those are dropped.

use chrono::NaiveDate;

mod project;
mod query;

pub use project::AbsencesProjection;
pub use query::{absences_of_child, absences_on, AbsenceView};

/// Its name.
pub const NAME: &str = "absences";

/// How dates are stored: `YYYY-MM-DD`, which sorts and compares as text.
fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}
