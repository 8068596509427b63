//! Routes of API.md: conversations (being built; see the open API issue).

use crate::state::AppState;
use axum::Router;
use utoipa::OpenApi;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi()]
pub struct Doc;
