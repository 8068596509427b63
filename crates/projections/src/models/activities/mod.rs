//! Activities in a group's calendar with their volunteer slots: how many there are, how many are
//! taken and free, and who volunteers.

mod project;
mod query;

pub use project::ActivitiesProjection;
pub use query::{activities_of_group, activity, ActivityView};

/// Its name.
pub const NAME: &str = "activities";
