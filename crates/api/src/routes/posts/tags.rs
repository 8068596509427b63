//! Tagging and untagging a child in a published media item.

use super::{published, run_on_post};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::routes::{Body, Position};
use crate::state::{AppState, RequestId};
use axum::extract::{Path, State};
use axum::Json;
use kring_domain::post::PostAction;
use kring_domain::{ChildId, MediaId};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/media/{media_id}/tags`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTag {
    /// The child shown.
    pub child_id: Uuid,
}

/// Tags a child in a published media item (staff of the post's group).
#[utoipa::path(post, path = "/v1/media/{media_id}/tags", tag = "posts", request_body = NewTag,
    params(("media_id" = Uuid, Path, description = "The media item")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn tag_child(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(media_id): Path<MediaId>,
    Body(req): Body<NewTag>,
) -> ApiResult<Json<Position>> {
    let p = published(&state, caller, media_id).await?;
    let child_id = ChildId::from_uuid(req.child_id);
    let position = run_on_post(&state, caller, rid, p.place.post_id, &p.roster, || {
        PostAction::Tag { media_id, child_id }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// Untags a child from a published media item (staff of the post's group).
#[utoipa::path(delete, path = "/v1/media/{media_id}/tags/{child_id}", tag = "posts",
    params(("media_id" = Uuid, Path, description = "The media item"),
        ("child_id" = Uuid, Path, description = "The child")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn untag_child(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((media_id, child_id)): Path<(MediaId, ChildId)>,
) -> ApiResult<Json<Position>> {
    let p = published(&state, caller, media_id).await?;
    let position = run_on_post(&state, caller, rid, p.place.post_id, &p.roster, || {
        PostAction::Untag { media_id, child_id }
    })
    .await?;
    Ok(Json(Position { position }))
}
