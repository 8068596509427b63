//! The read models, one module each, with their queries as Rust functions.

pub mod consent;

use crate::projection::Projection;
use std::sync::Arc;

/// Every read model, as the projector runs them.
#[must_use]
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(consent::ConsentProjection)]
}
