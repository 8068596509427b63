//! Editing a post's text.

use super::{audience_roster, hidden_post, published_post, run_on_post};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::routes::{Body, Position};
use crate::state::{AppState, RequestId};
use axum::extract::{Path, State};
use axum::Json;
use kring_domain::post::PostAction;
use kring_domain::PostId;
use serde::Deserialize;
use utoipa::ToSchema;

/// `PATCH /v1/posts/{post_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PostEdit {
    /// The new text (1–10,000 characters, not blank). The media stay as they are.
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    pub body: String,
}

/// Edits a post's text (its author, while staff of its group). The edit is an event of its own:
/// the earlier text stays in the log.
#[utoipa::path(patch, path = "/v1/posts/{post_id}", tag = "posts", request_body = PostEdit,
    params(("post_id" = Uuid, Path, description = "The post")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn edit_post(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(post_id): Path<PostId>,
    Body(req): Body<PostEdit>,
) -> ApiResult<Json<Position>> {
    let (post, school_id, group_id) = published_post(&state, post_id).await?;
    if post.removed || post.expired {
        return Err(hidden_post(post_id));
    }
    let roster = audience_roster(&state, caller, post_id, school_id, group_id).await?;
    let position = run_on_post(&state, caller, rid, post_id, &roster, || PostAction::Edit {
        body: req.body.clone(),
    })
    .await?;
    Ok(Json(Position { position }))
}
