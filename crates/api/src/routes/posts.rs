//! Posts and media: uploads, posting with tagged photos (and the consent warnings that come
//! with it), tagging, the feed, reading a post or a media item's bytes, "who may see this?", and
//! removal by crypto-shredding.
//!
//! Who may see what is decided in one place, [`kring_domain::visibility::who_may_see`]: on the
//! state just decided for the warnings of a new post, and through the visibility read model
//! (which asks the same rule) for every read. A caller who may not see a post or media item gets
//! `404`, as if it did not exist; removed content is visible to nobody, and its keys are
//! destroyed, so its text and bytes are unreadable everywhere.
//!
//! Reads of content by the platform operator or a compliance officer (a post, media bytes, the
//! viewers of a media item) are recorded in the access log before they are answered
//! ([`crate::audit::log_access`]).

use crate::audit::log_access;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::media::{self, Claim, MediaFiles, MediaHeader};
use crate::routes::{Body, Position};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::body::{Body as RawBody, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use kring_domain::access::{AccessReason, Subject};
use kring_domain::post::{
    self as domain_post, MediaAttachment, Post, PostAction, PostContext, RemovalGrounds,
};
use kring_domain::school::{School, StaffRole};
use kring_domain::visibility::{self as rule, ViewReason};
use kring_domain::{child, post};
use kring_domain::{
    ChildId, Command, DomainError, GroupId, MediaId, PersonId, PostId, SchoolId, StreamName,
};
use kring_projections::models::{memberships, visibility};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// The most posts one feed page holds.
pub const MAX_FEED_PAGE: u32 = 100;
/// Feed page size when none is asked.
pub const DEFAULT_FEED_PAGE: u32 = 20;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        // The upload reads its raw body itself, bounded by `Limits::media_body` rather than the
        // JSON limit (a raw `Body` is not subject to `DefaultBodyLimit`).
        .route("/v1/media", post(upload_media))
        .route(
            "/v1/media/{media_id}",
            get(media_bytes).delete(remove_media),
        )
        .route("/v1/media/{media_id}/tags", post(tag_child))
        .route("/v1/media/{media_id}/tags/{child_id}", delete(untag_child))
        .route("/v1/media/{media_id}/viewers", get(media_viewers))
        .route("/v1/groups/{group_id}/posts", post(publish_post))
        .route(
            "/v1/posts/{post_id}",
            get(read_post).delete(remove_post).patch(edit_post),
        )
        .route("/v1/feed", get(feed))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        upload_media,
        publish_post,
        tag_child,
        untag_child,
        feed,
        read_post,
        media_bytes,
        media_viewers,
        remove_post,
        remove_media,
        edit_post
    ),
    components(schemas(
        PostEdit,
        MediaCreated,
        NewPost,
        NewAttachment,
        PostCreated,
        ConsentWarning,
        NewTag,
        Removal,
        FeedDoc,
        PostDoc,
        MediaDoc,
        ViewersDoc,
        ViewerDoc,
        Reason,
        WithheldDoc,
        BecauseDoc
    ))
)]
pub struct Doc;

// ---------------------------------------------------------------------------------------------
// Who the caller is to a post's audience.

/// How the caller stands to a post's audience, from the school's event-sourced roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// The platform operator: reads are logged.
    Operator,
    /// A compliance officer of the school: reads are logged.
    Compliance,
    /// Staff who see everything posted to the group.
    Staff,
    /// A guardian of a child in the audience.
    Guardian(PersonId),
    /// Nobody to this post: it does not exist for them.
    Stranger,
}

impl Standing {
    fn of(roster: &School, caller: Caller, group: GroupId) -> Self {
        let Caller::Person(p) = caller else {
            return Self::Operator;
        };
        if roster.role(p) == Some(StaffRole::ComplianceOfficer) {
            Self::Compliance
        } else if roster.audience_staff(group).contains(&p) {
            Self::Staff
        } else if roster.is_guardian_in_group(p, group) {
            Self::Guardian(p)
        } else {
            Self::Stranger
        }
    }

    /// Whether reading content must be recorded in the access log.
    const fn logged(self) -> bool {
        matches!(self, Self::Operator | Self::Compliance)
    }
}

fn hidden_media(media_id: MediaId) -> ApiError {
    ApiError::not_found(format!("media item {media_id}"))
}

fn hidden_post(post_id: PostId) -> ApiError {
    ApiError::not_found(format!("post {post_id}"))
}

/// The published place of a media item, waiting once for the read models when it is not there
/// (it may have been posted a moment ago).
async fn place_of(
    state: &AppState,
    media_id: MediaId,
) -> ApiResult<Option<visibility::MediaPlace>> {
    state
        .locate(|| async move { Ok(visibility::media_place(&state.system.db, media_id).await?) })
        .await
}

fn files(state: &AppState) -> MediaFiles {
    MediaFiles::new(
        state.media_dir(),
        std::sync::Arc::clone(&state.system.vault),
    )
    .with_limit(state.limits.media_body as u64)
}

// ---------------------------------------------------------------------------------------------
// Upload.

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

// ---------------------------------------------------------------------------------------------
// Posting.

/// A media item to attach, with the children shown in it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAttachment {
    /// An upload of the caller's, not yet attached to a post.
    pub media_id: Uuid,
    /// The children shown (pupils of the group's audience).
    #[serde(default)]
    pub tagged_children: Vec<Uuid>,
}

/// `POST /v1/groups/{group_id}/posts`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPost {
    /// The text (may be empty when there are media items).
    #[serde(default)]
    pub body: String,
    /// Photos and videos, in the order shown.
    #[serde(default)]
    pub media: Vec<NewAttachment>,
}

/// A tagged child whose missing consent withholds a media item from some parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentWarning {
    /// The media item.
    pub media_id: Uuid,
    /// The child without effective consent.
    pub child_id: Uuid,
    /// The purpose that lacks consent (`group_communication` or `school_communication`).
    pub purpose: String,
    /// From how many parents in the audience the item is withheld because of this child.
    pub withheld_from: u32,
}

/// A published post.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostCreated {
    /// The post.
    pub post_id: Uuid,
    /// The global position of its event.
    pub position: u64,
    /// Each tagged child whose missing consent withholds a media item, and from how many parents.
    pub warnings: Vec<ConsentWarning>,
}

/// The uploads of `media`, checked: each an upload of `person`'s.
async fn own_uploads(
    state: &AppState,
    person: PersonId,
    media: &[NewAttachment],
) -> ApiResult<Vec<MediaHeader>> {
    let files = files(state);
    let mut headers = Vec::with_capacity(media.len());
    for item in media {
        let media_id = MediaId::from_uuid(item.media_id);
        match files.header(media_id).await? {
            Some(h) if h.uploaded_by == person => headers.push(h),
            // Someone else's upload is as unknown as a made-up id.
            _ => return Err(hidden_media(media_id)),
        }
    }
    Ok(headers)
}

/// Claims every upload for `post_id`; on a refusal, releases what it claimed.
async fn claim_all(state: &AppState, post_id: PostId, media: &[MediaId]) -> ApiResult<()> {
    let files = files(state);
    for (i, media_id) in media.iter().enumerate() {
        if let Err(e) = claim_one(state, &files, *media_id, post_id).await {
            for taken in &media[..i] {
                files.release(*taken, post_id).await?;
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Claims one upload for `post_id`. A claim held by a post that was written with the item
/// stands; one left by a request that never wrote its post is taken over once it is older than
/// any request can take.
async fn claim_one(
    state: &AppState,
    files: &MediaFiles,
    media_id: MediaId,
    post_id: PostId,
) -> ApiResult<()> {
    let conflict = |detail: String| ApiError::new(StatusCode::CONFLICT, Code::Conflict, detail);
    for _ in 0..2 {
        match files.claim(media_id, post_id).await? {
            Claim::Taken => return Ok(()),
            Claim::Held { post, age } => {
                let holder = state
                    .exec
                    .load::<post::Post>(&StreamName::post(post))
                    .await?;
                if holder.state.media.contains_key(&media_id) {
                    return Err(conflict(format!(
                        "media item {media_id} is already attached to post {post}"
                    )));
                }
                if age < state.limits.request_timeout * 2 {
                    break;
                }
                files.release(media_id, post).await?;
            }
        }
    }
    Err(conflict(format!(
        "media item {media_id} is being attached to another post; retry in a moment"
    )))
}

/// The warnings for a post just decided: for each media item, each tagged child whose missing
/// consent withholds it, and from how many parents of the audience.
async fn consent_warnings(
    state: &AppState,
    roster: &School,
    post: &Post,
    order: &[MediaId],
) -> ApiResult<Vec<ConsentWarning>> {
    let tagged: BTreeSet<ChildId> = post
        .media
        .values()
        .flat_map(|m| m.tagged.iter().copied())
        .collect();
    let mut children = BTreeMap::new();
    for child_id in tagged {
        let child = state
            .exec
            .load::<child::Child>(&StreamName::child(child_id))
            .await?;
        children.insert(child_id, child.state);
    }
    let mut warnings = Vec::new();
    for media_id in order {
        let answer = rule::who_may_see(roster, post, *media_id, &children)?;
        let mut counts: BTreeMap<(ChildId, kring_domain::Purpose), u32> = BTreeMap::new();
        for withheld in &answer.withheld {
            for because in &withheld.because {
                *counts
                    .entry((because.child_id, because.purpose))
                    .or_default() += 1;
            }
        }
        for ((child_id, purpose), n) in counts {
            warnings.push(ConsentWarning {
                media_id: (*media_id).into(),
                child_id: child_id.into(),
                purpose: purpose.as_str().to_owned(),
                withheld_from: n,
            });
        }
    }
    Ok(warnings)
}

/// Publishes a post to a group (staff assigned to a class group; a director for the school
/// group), with the caller's own uploads and the children shown in each. Answers with a warning
/// for every tagged child whose missing consent withholds a photo, and from how many parents.
#[utoipa::path(post, path = "/v1/groups/{group_id}/posts", tag = "posts", request_body = NewPost,
    params(("group_id" = Uuid, Path, description = "The audience: a class group or the school group")),
    responses((status = 201, body = PostCreated), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn publish_post(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(group_id): Path<GroupId>,
    Body(req): Body<NewPost>,
) -> ApiResult<(StatusCode, Json<PostCreated>)> {
    let school_id = state.school_of_group(group_id).await?;
    let roster = state.exec.school(school_id).await?.state;
    let actor = caller.actor();
    let Some(person) = caller
        .person()
        .filter(|_| roster.may_post_to(actor, group_id))
    else {
        return Err(DomainError::NotStaffOfGroup {
            actor,
            group_id,
            action: "post to the group",
        }
        .into());
    };
    // Before any file is opened: the domain's own rule on the list, with its message.
    domain_post::check_media_list(req.media.iter().map(|m| MediaId::from_uuid(m.media_id)))?;
    let headers = own_uploads(&state, person, &req.media).await?;
    let attachments: Vec<MediaAttachment> = req
        .media
        .iter()
        .zip(&headers)
        .map(|(item, h)| MediaAttachment {
            media_id: MediaId::from_uuid(item.media_id),
            content_type: h.content_type.clone(),
            tagged_children: item
                .tagged_children
                .iter()
                .map(|c| ChildId::from_uuid(*c))
                .collect(),
        })
        .collect();
    let order: Vec<MediaId> = attachments.iter().map(|m| m.media_id).collect();
    let post_id = PostId::from_uuid(crate::idempotency::fresh_uuid());
    claim_all(&state, post_id, &order).await?;
    let written = state
        .exec
        .run::<post::Post, _>(StreamName::post(post_id), actor, rid, |post, now| {
            domain_post::decide(
                &PostContext {
                    post,
                    school: &roster,
                },
                Command::new(
                    actor,
                    PostAction::Publish {
                        post_id,
                        group_id,
                        body: req.body.clone(),
                        media: attachments.clone(),
                    },
                ),
                now,
            )
        })
        .await;
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            let files = files(&state);
            for media_id in &order {
                files.release(*media_id, post_id).await?;
            }
            return Err(e);
        }
    };
    let decided = written
        .events
        .iter()
        .fold(Post::default(), domain_post::evolve);
    let warnings = consent_warnings(&state, &roster, &decided, &order).await?;
    Ok((
        StatusCode::CREATED,
        Json(PostCreated {
            post_id: post_id.into(),
            position: written.position,
            warnings,
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Tags.

/// `POST /v1/media/{media_id}/tags`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTag {
    /// The child shown.
    pub child_id: Uuid,
}

/// A published media item, its post's state and school roster, with the caller's standing;
/// `404` for a caller to whom it does not exist.
struct Published {
    place: visibility::MediaPlace,
    roster: Arc<School>,
    standing: Standing,
}

async fn published(state: &AppState, caller: Caller, media_id: MediaId) -> ApiResult<Published> {
    let place = place_of(state, media_id)
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    let roster = state.exec.school(place.school_id).await?.state;
    let standing = Standing::of(&roster, caller, place.group_id);
    let known = match standing {
        Standing::Operator | Standing::Compliance | Standing::Staff => true,
        Standing::Guardian(p) => visibility::may_see(&state.system.db, p, media_id).await?,
        Standing::Stranger => false,
    };
    if !known || !place.live {
        return Err(hidden_media(media_id));
    }
    Ok(Published {
        place,
        roster,
        standing,
    })
}

async fn run_on_post(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    post_id: PostId,
    roster: &School,
    action: impl Fn() -> PostAction + Send + Sync,
) -> ApiResult<u64> {
    let actor = caller.actor();
    Ok(state
        .exec
        .run::<post::Post, _>(StreamName::post(post_id), actor, rid, |post, now| {
            domain_post::decide(
                &PostContext {
                    post,
                    school: roster,
                },
                Command::new(actor, action()),
                now,
            )
        })
        .await?
        .position)
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

// ---------------------------------------------------------------------------------------------
// Reading.

/// A media item as listed in a post.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MediaDoc {
    /// The media item.
    pub media_id: Uuid,
    /// Its content type.
    pub content_type: Option<String>,
    /// Where its bytes are: `GET` this path with the same token.
    pub url: String,
}

/// A post as the caller may see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostDoc {
    /// The post.
    pub post_id: Uuid,
    /// Its audience.
    pub group_id: Uuid,
    /// Its author.
    pub author_id: Uuid,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// The text.
    pub body: String,
    /// Only the media items the caller may see, in the order attached.
    pub media: Vec<MediaDoc>,
}

/// A page of the caller's feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedDoc {
    /// Posts, newest first.
    pub posts: Vec<PostDoc>,
    /// Pass as `?before=` for the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// `GET /v1/feed` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Only posts to this group.
    pub group_id: Option<Uuid>,
    /// Posts per page (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only posts older than this: a `next_before` cursor, or an RFC 3339 time.
    #[param(
        pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])(~[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub before: Option<String>,
}

/// A feed cursor: the last post of a page, as `<posted_at RFC 3339>~<post id>`.
fn cursor_of(post: &visibility::FeedPost) -> String {
    format!(
        "{}~{}",
        post.posted_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        post.post_id
    )
}

fn parse_cursor(text: &str) -> ApiResult<Cursor> {
    let bad = || {
        ApiError::validation(format!(
            "before: {text:?} is neither a next_before cursor nor an RFC 3339 time"
        ))
    };
    match text.split_once('~') {
        Some((at, post)) => Ok(Cursor::After(
            DateTime::parse_from_rfc3339(at)
                .map_err(|_| bad())?
                .with_timezone(&Utc),
            post.parse().map_err(|_| bad())?,
        )),
        None => Ok(Cursor::Before(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| bad())?
                .with_timezone(&Utc),
        )),
    }
}

enum Cursor {
    Before(DateTime<Utc>),
    After(DateTime<Utc>, PostId),
}

async fn post_doc(state: &AppState, post: visibility::FeedPost) -> ApiResult<PostDoc> {
    let files = files(state);
    let mut media = Vec::with_capacity(post.media.len());
    for media_id in &post.media {
        let header = files.header(*media_id).await?;
        media.push(MediaDoc {
            media_id: (*media_id).into(),
            content_type: header.map(|h| h.content_type),
            url: format!("/v1/media/{media_id}"),
        });
    }
    Ok(PostDoc {
        post_id: post.post_id.into(),
        group_id: post.group_id.into(),
        author_id: post.author_id.into(),
        posted_at: post.posted_at,
        body: state.open(&post.body).await?,
        media,
    })
}

/// The caller's feed: posts to the groups whose audience they are in, newest first, each with
/// only the media items the caller may see.
#[utoipa::path(get, path = "/v1/feed", tag = "posts", params(FeedQuery, MinPosition),
    responses((status = 200, body = FeedDoc), (status = 403, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
    Q(q): Q<FeedQuery>,
) -> ApiResult<Json<FeedDoc>> {
    min.wait(&state).await?;
    let Caller::Person(person) = caller else {
        return Err(ApiError::forbidden(
            "the operator has no feed; read a post by its id",
        ));
    };
    let limit = q.limit.unwrap_or(DEFAULT_FEED_PAGE);
    if !(1..=MAX_FEED_PAGE).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit: must be 1 to {MAX_FEED_PAGE}"
        )));
    }
    let group = q.group_id.map(GroupId::from_uuid);
    let db = &state.system.db;
    let posts = match q.before.as_deref().map(parse_cursor).transpose()? {
        None => visibility::feed_after(db, person, group, limit, None).await?,
        Some(Cursor::After(at, post)) => {
            visibility::feed_after(db, person, group, limit, Some((at, post))).await?
        }
        Some(Cursor::Before(at)) => visibility::feed(db, person, group, limit, Some(at)).await?,
    };
    let next_before = if posts.len() == limit as usize {
        posts.last().map(cursor_of)
    } else {
        None
    };
    let mut docs = Vec::with_capacity(posts.len());
    for post in posts {
        docs.push(post_doc(&state, post).await?);
    }
    Ok(Json(FeedDoc {
        posts: docs,
        next_before,
    }))
}

/// One post as the caller may see it (its audience, with only the media items they may see; a
/// compliance officer of the school or the operator read it whole, and that read is logged).
/// `404` for anyone else, and for a removed post.
#[utoipa::path(get, path = "/v1/posts/{post_id}", tag = "posts",
    params(("post_id" = Uuid, Path, description = "The post"), MinPosition),
    responses((status = 200, body = PostDoc), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn read_post(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(post_id): Path<PostId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<PostDoc>> {
    min.wait(&state).await?;
    let db = &state.system.db;
    let whole = state
        .locate(|| async move { Ok(visibility::post(db, post_id, None).await?) })
        .await?
        .ok_or_else(|| hidden_post(post_id))?;
    let school_id = state.school_of_group(whole.group_id).await?;
    let roster = state.exec.school(school_id).await?.state;
    let post = match Standing::of(&roster, caller, whole.group_id) {
        s if s.logged() => {
            log_access(
                &state,
                caller,
                rid,
                Subject::Post(post_id),
                AccessReason::ReadPost,
            )
            .await?;
            whole
        }
        Standing::Staff | Standing::Guardian(_) => {
            let Caller::Person(p) = caller else {
                return Err(hidden_post(post_id));
            };
            visibility::post(db, post_id, Some(p))
                .await?
                .ok_or_else(|| hidden_post(post_id))?
        }
        _ => return Err(hidden_post(post_id)),
    };
    Ok(Json(post_doc(&state, post).await?))
}

/// The bytes of a media item, decrypted, with its content type: to its uploader until it is
/// posted; then to those who may see it (staff of the audience always; parents as consent
/// allows), and to a compliance officer of the school or the operator (logged). `404` for anyone
/// else, and once the item or its post was removed.
#[utoipa::path(get, path = "/v1/media/{media_id}", tag = "posts",
    params(("media_id" = Uuid, Path, description = "The media item"), MinPosition),
    responses((status = 200, description = "The bytes", content_type = "image/*"),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn media_bytes(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(media_id): Path<MediaId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Response> {
    min.wait(&state).await?;
    let files = files(&state);
    let header = files
        .header(media_id)
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    match place_of(&state, media_id).await? {
        None => {
            if caller.person() != Some(header.uploaded_by) {
                return Err(hidden_media(media_id));
            }
        }
        Some(_) => {
            let p = published(&state, caller, media_id).await?;
            if p.standing.logged() {
                log_access(
                    &state,
                    caller,
                    rid,
                    Subject::Media(media_id),
                    AccessReason::ReadMedia,
                )
                .await?;
            }
        }
    }
    let (header, bytes) = files
        .open(media_id)
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    let content_type = HeaderValue::from_str(&header.content_type).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(header.size)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            ),
        ],
        RawBody::from_stream(bytes),
    )
        .into_response())
}

/// Why someone may see a media item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Staff of the audience.
    Staff,
    /// A parent in the audience; every tagged child has consent.
    Audience,
    /// A parent whose own child is tagged; every other tagged child has consent.
    OwnChild,
}

impl From<ViewReason> for Reason {
    fn from(r: ViewReason) -> Self {
        match r {
            ViewReason::Staff => Self::Staff,
            ViewReason::Audience => Self::Audience,
            ViewReason::OwnChild => Self::OwnChild,
        }
    }
}

/// Someone who may see the item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ViewerDoc {
    /// The person.
    pub person_id: Uuid,
    /// Why.
    pub reason: Reason,
}

/// A child and purpose whose missing consent withholds the item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BecauseDoc {
    /// The tagged child.
    pub child_id: Uuid,
    /// The purpose without consent.
    pub purpose: String,
}

/// A parent in the audience from whom the item is withheld, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WithheldDoc {
    /// The parent.
    pub person_id: Uuid,
    /// Each tagged child (not theirs) without consent, with the purpose.
    pub because: Vec<BecauseDoc>,
}

/// Who may see a media item, and who not and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ViewersDoc {
    /// The media item.
    pub media_id: Uuid,
    /// Who may see it.
    pub viewers: Vec<ViewerDoc>,
    /// Who is withheld from it.
    pub withheld: Vec<WithheldDoc>,
}

/// Who may see a media item and why, and who is withheld because of which child and purpose
/// (staff of the post's audience; a compliance officer of the school and the operator, logged).
#[utoipa::path(get, path = "/v1/media/{media_id}/viewers", tag = "posts",
    params(("media_id" = Uuid, Path, description = "The media item"), MinPosition),
    responses((status = 200, body = ViewersDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn media_viewers(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(media_id): Path<MediaId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<ViewersDoc>> {
    min.wait(&state).await?;
    let p = published(&state, caller, media_id).await?;
    match p.standing {
        Standing::Staff => {}
        s if s.logged() => {
            log_access(
                &state,
                caller,
                rid,
                Subject::Media(media_id),
                AccessReason::ReadMediaViewers,
            )
            .await?;
        }
        _ => {
            return Err(ApiError::forbidden(
                "who may see a media item is shown to the staff of its audience and to compliance officers",
            ))
        }
    }
    let answer = visibility::who_may_see(&state.system.db, media_id)
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    Ok(Json(ViewersDoc {
        media_id: media_id.into(),
        viewers: answer
            .viewers
            .into_iter()
            .map(|v| ViewerDoc {
                person_id: v.person_id.into(),
                reason: v.reason.into(),
            })
            .collect(),
        withheld: answer
            .withheld
            .into_iter()
            .map(|w| WithheldDoc {
                person_id: w.person_id.into(),
                because: w
                    .because
                    .into_iter()
                    .map(|b| BecauseDoc {
                        child_id: b.child_id.into(),
                        purpose: b.purpose.as_str().to_owned(),
                    })
                    .collect(),
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Editing.

/// A post as its stream has it, with its school and group; `404` for one never published.
async fn published_post(
    state: &AppState,
    post_id: PostId,
) -> ApiResult<(domain_post::Post, SchoolId, GroupId)> {
    let post = state
        .exec
        .load::<post::Post>(&StreamName::post(post_id))
        .await?
        .state;
    match (post.school_id, post.group_id) {
        (Some(school_id), Some(group_id)) => Ok((post, school_id, group_id)),
        _ => Err(hidden_post(post_id)),
    }
}

/// The school's roster, once the caller stands in the post's audience (staff, a guardian,
/// an auditor); `404` otherwise, as the post's existence is private.
async fn audience_roster(
    state: &AppState,
    caller: Caller,
    post_id: PostId,
    school_id: SchoolId,
    group_id: GroupId,
) -> ApiResult<Arc<School>> {
    let roster = state.exec.school(school_id).await?.state;
    if Standing::of(&roster, caller, group_id) == Standing::Stranger {
        return Err(hidden_post(post_id));
    }
    Ok(roster)
}

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

// ---------------------------------------------------------------------------------------------
// Removal.

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
