//! Removal by crypto-shredding: a post with all its media, or one media item (or an upload not
//! yet posted), their keys destroyed before the removal is recorded.

use super::{
    audience_roster, files, hidden_media, hidden_post, place_of, published, published_post,
    run_on_post,
};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{Body, Position};
use crate::state::{AppState, RequestId};
use axum::extract::{Path, State};
use axum::Json;
use kring_domain::access::Subject;
use kring_domain::post;
use kring_domain::post::{self as domain_post, PostAction, PostContext, RemovalGrounds};
use kring_domain::school::School;
use kring_domain::{Command, MediaId, PostId, StreamName};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// `DELETE /v1/posts/{post_id}` and `DELETE /v1/media/{media_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Removal {
    /// Why, at most 500 characters: required from a person, and kept in the log sealed for
    /// them (their personal data: shown in their export, erased with them). The operator, no
    /// data subject, gives none (`null` or left out): its removals record a fixed reason.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: Option<String>,
}

impl Removal {
    /// The grounds `caller` gives: a person's text, or the operator's fixed reason.
    ///
    /// # Errors
    /// `422` for a person without a reason, and for the operator with one.
    fn grounds(&self, caller: Caller) -> ApiResult<RemovalGrounds> {
        let text = self.reason.as_deref().filter(|r| !r.trim().is_empty());
        match (caller, text) {
            (Caller::Person(_), Some(text)) => Ok(RemovalGrounds::Text(text.to_owned())),
            (Caller::Person(_), None) => Err(ApiError::validation("reason: must not be empty")),
            (Caller::Operator, None) => Ok(RemovalGrounds::ByTheOperator),
            (Caller::Operator, Some(_)) => Err(ApiError::validation(
                "reason: the operator gives none (it is no data subject, so nothing could erase \
                 its free text); leave it out",
            )),
        }
    }
}

/// Removes a post with all its media (the author, a director, the operator). Its text and every
/// media item's bytes are destroyed with their keys: unreadable from then on, for everyone.
#[utoipa::path(delete, path = "/v1/posts/{post_id}", tag = "posts", request_body = Removal,
    params(("post_id" = Uuid, Path, description = "The post")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn remove_post(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(post_id): Path<PostId>,
    Body(req): Body<Removal>,
) -> ApiResult<Json<Position>> {
    let (post, school_id, group_id) = published_post(&state, post_id).await?;
    // Strangers learn nothing, and cause nothing: authorised before any work.
    let roster = audience_roster(&state, caller, post_id, school_id, group_id).await?;
    if post.removed || post.expired {
        // Removed (or expired) is gone for everyone, its keys with it: nothing to do.
        return Err(hidden_post(post_id));
    }
    let grounds = req.grounds(caller)?;
    let action = || PostAction::Remove {
        reason: grounds.clone(),
    };
    let media = post.media.keys().copied().collect::<Vec<_>>();
    let position = destroy_then_record(&state, caller, rid, &post, &roster, action, async {
        files(&state).shred_post(post_id, media).await
    })
    .await?;
    Ok(Json(Position { position }))
}

/// A removal: decided on `post` first, so nothing is destroyed for a caller who may not remove
/// it, for a removal the domain refuses, or for a remover erased meanwhile (their reason could
/// not be sealed); then `destroy` destroys the keys (each recorded in
/// the erasure ledger first); then the removal is recorded. A process that stops between the
/// two leaves the keys destroyed and named in the ledger: the start-up sweep records the
/// removal ([`crate::erasure::sweep`]), as the retention job's and erasures' are.
async fn destroy_then_record(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    post: &domain_post::Post,
    roster: &School,
    action: impl Fn() -> PostAction + Send + Sync,
    destroy: impl std::future::Future<Output = ApiResult<()>>,
) -> ApiResult<u64> {
    let post_id = post
        .post_id
        .ok_or_else(|| ApiError::internal("a published post without its id"))?;
    domain_post::decide(
        &PostContext {
            post,
            school: roster,
        },
        Command::new(caller.actor(), action()),
        chrono::Utc::now(),
    )?;
    // A person's reason is sealed for them: nothing is destroyed for a removal that could not
    // be recorded because they were erased meanwhile (`410 erased`).
    if let Caller::Person(p) = caller {
        if state.system.vault.is_erased(Subject::Person(p)).await? {
            return Err(kring_store::vault::VaultError::SubjectErased(Subject::Person(p)).into());
        }
    }
    destroy.await?;
    run_on_post(state, caller, rid, post_id, roster, action).await
}

/// Removes one media item (the author of its post, a director, the operator), or discards an
/// upload not yet posted (its uploader). Its bytes are destroyed with their key.
#[utoipa::path(delete, path = "/v1/media/{media_id}", tag = "posts", request_body = Removal,
    params(("media_id" = Uuid, Path, description = "The media item")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn remove_media(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(media_id): Path<MediaId>,
    Body(req): Body<Removal>,
) -> ApiResult<Json<Position>> {
    let files = files(&state);
    let Some(place) = place_of(&state, media_id).await? else {
        // Not posted: only its uploader knows of it, and discards it without an event.
        let header = files.header(media_id).await?;
        if header.is_none_or(|h| caller.person() != Some(h.uploaded_by)) {
            return Err(hidden_media(media_id));
        }
        req.grounds(caller)?;
        files.shred(media_id).await?;
        return Ok(Json(Position {
            position: state.system.store.head().await?,
        }));
    };
    let post = state
        .exec
        .load::<post::Post>(&StreamName::post(place.post_id))
        .await?;
    if !post.state.media_is_live(media_id) {
        // Removed with its post or alone: gone for everyone, its key with it.
        return Err(hidden_media(media_id));
    }
    let p = published(&state, caller, media_id).await?;
    let grounds = req.grounds(caller)?;
    let action = || PostAction::RemoveMedia {
        media_id,
        reason: grounds.clone(),
    };
    let position = destroy_then_record(
        &state,
        caller,
        rid,
        &post.state,
        &p.roster,
        action,
        files.shred(media_id),
    )
    .await?;
    Ok(Json(Position { position }))
}
