//! Uploading a photo or video: stored encrypted under the new media item's own key, seen only
//! by its uploader until it is posted.

use super::files;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::media;
use crate::state::AppState;
use axum::body::{Body as RawBody, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures::StreamExt;
use kring_domain::{MediaId, PersonId};
use kring_projections::models::memberships;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A stored upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MediaCreated {
    /// The media item: attach it to a post with `POST /v1/groups/{group_id}/posts`.
    pub media_id: Uuid,
    /// Its content type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Whether `person` is staff of some school (from the memberships read model, waiting for it
/// once when they are not, since they may have been added a moment ago).
async fn is_staff_somewhere(state: &AppState, person: PersonId) -> ApiResult<bool> {
    let found = state
        .locate(|| async move {
            Ok(memberships::person(&state.system.db, person)
                .await?
                .filter(|p| p.schools.iter().any(|s| s.role.is_some()))
                .map(|_| ()))
        })
        .await?;
    Ok(found.is_some())
}

/// Uploads a photo or video (staff): the raw bytes with their `Content-Type` (`image/*` or
/// `video/*`; the bytes must match the type for the common formats). They are stored encrypted
/// with the new media item's own key. Until attached to a post, only the uploader sees it, and
/// only the uploader can attach it.
#[utoipa::path(post, path = "/v1/media", tag = "posts",
    request_body(content = Vec<u8>, content_type = "image/*", description = "The photo or video bytes (image/* or video/*)"),
    responses((status = 201, body = MediaCreated), (status = 403, body = crate::error::Problem),
        (status = 413, body = crate::error::Problem), (status = 415, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn upload_media(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<MediaCreated>)> {
    let content_type = media::content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|m| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType,
            m,
        )
    })?;
    let limit = state.limits.media_body as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(media::too_large(limit));
    }
    let Caller::Person(person) = caller else {
        return Err(ApiError::forbidden(
            "only school staff upload media; the operator does not",
        ));
    };
    if !is_staff_somewhere(&state, person).await? {
        return Err(ApiError::forbidden("only school staff upload media"));
    }
    // Only the first bytes are held to check the signature; the rest is encrypted to disk as
    // it arrives.
    let unreadable =
        |e: axum::Error| ApiError::bad_request(format!("the upload could not be read: {e}"));
    let mut body = body.into_data_stream();
    let mut first = Vec::new();
    while first.len() < media::SNIFF_BYTES {
        match body.next().await {
            Some(data) => first.extend_from_slice(&data.map_err(unreadable)?),
            None => break,
        }
    }
    if first.is_empty() {
        return Err(ApiError::validation("the upload is empty"));
    }
    if first.len() as u64 > limit {
        return Err(media::too_large(limit));
    }
    media::sniff(&content_type, &first).map_err(|m| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType,
            m,
        )
    })?;
    // An upload writes no event: a retried one, with or without an Idempotency-Key, is another
    // upload (the one not posted is discarded by its uploader or never seen).
    let media_id = MediaId::generate();
    let body = futures::stream::iter([Ok(Bytes::from(first))]).chain(body);
    let header = files(&state)
        .store(media_id, person, &content_type, body)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(MediaCreated {
            media_id: media_id.into(),
            content_type: header.content_type,
            size: header.size,
        }),
    ))
}
