//! The read models, one module each, with their queries as Rust functions.

pub mod absences;
pub mod access_log;
pub mod activities;
pub mod consent;
pub mod conversations;
pub mod meetings;
pub mod memberships;
pub mod outbox;
pub mod reads;
pub mod visibility;

use crate::projection::Projection;
use std::sync::Arc;

/// Every read model, as the projector runs them.
#[must_use]
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(consent::ConsentProjection::default()),
        Arc::new(memberships::MembershipsProjection::default()),
        Arc::new(conversations::ConversationsProjection::default()),
        Arc::new(absences::AbsencesProjection::default()),
        Arc::new(activities::ActivitiesProjection::default()),
        Arc::new(meetings::MeetingsProjection::default()),
        Arc::new(visibility::VisibilityProjection::default()),
        Arc::new(outbox::OutboxProjection::default()),
        Arc::new(access_log::AccessLogProjection),
        Arc::new(reads::ReadsProjection::default()),
    ]
}
