//! Reading: the feed, one post, and a media item's bytes, each as the caller may see it.

use super::{files, hidden_media, hidden_post, seen, Standing, DEFAULT_FEED_PAGE, MAX_FEED_PAGE};
use crate::audit::log_access;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::body::Body as RawBody;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use kring_domain::access::{AccessReason, Subject};
use kring_domain::{GroupId, MediaId, PostId};
use kring_projections::models::visibility;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

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
///
/// `Range: bytes=a-b` (or `a-`, or `-n`) asks for part of the item: `206` with `Content-Range`,
/// and only the sealed chunks that hold it are fetched and decrypted; a range that starts at or
/// beyond the item's size is `416` with `Content-Range: bytes */size`. Several ranges, another
/// unit, or a `Range` under `If-Range` are ignored (the whole item, `200`). Every answer says
/// `Accept-Ranges: bytes`.
#[utoipa::path(get, path = "/v1/media/{media_id}", tag = "posts",
    params(("media_id" = Uuid, Path, description = "The media item"), MinPosition,
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`")),
    responses((status = 200, description = "The bytes", content_type = "image/*",
            headers(("Accept-Ranges" = String, description = "`bytes`"))),
        (status = 206, description = "The bytes of the range asked for", content_type = "image/*",
            headers(("Content-Range" = String, description = "`bytes a-b/size`"),
                ("Accept-Ranges" = String, description = "`bytes`"))),
        (status = 404, body = crate::error::Problem),
        (status = 416, description = "The range starts at or beyond the item's size", body = crate::error::Problem,
            headers(("Content-Range" = String, description = "`bytes */size`")))),
    security(("bearer" = [])))]
pub async fn media_bytes(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(media_id): Path<MediaId>,
    Q(min): Q<MinPosition>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    min.wait(&state).await?;
    let files = files(&state);
    let header = files
        .header(media_id)
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    match seen(&state, caller, media_id).await? {
        None => {
            if caller.person() != Some(header.uploaded_by) {
                return Err(hidden_media(media_id));
            }
        }
        Some(seen) => {
            if seen.standing.logged() {
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
    let (range, status) = match super::range::wanted(&headers, header.size) {
        super::range::Wanted::Whole => (None, StatusCode::OK),
        super::range::Wanted::Part(range) => (Some(range), StatusCode::PARTIAL_CONTENT),
        super::range::Wanted::Unsatisfiable => {
            let mut refused = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                Code::BadRequest,
                format!(
                    "the range starts at or beyond the item's {} bytes",
                    header.size
                ),
            )
            .into_response();
            refused.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", header.size))
                    .map_err(ApiError::internal)?,
            );
            return Ok(refused);
        }
    };
    let (header, bytes) = files
        .open_range(media_id, range.clone())
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    let content_type = HeaderValue::from_str(&header.content_type).map_err(ApiError::internal)?;
    let length = range.as_ref().map_or(header.size, |r| r.end - r.start);
    let mut answer = (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
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
        .into_response();
    if let Some(range) = range {
        answer.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!(
                "bytes {}-{}/{}",
                range.start,
                range.end - 1,
                header.size
            ))
            .map_err(ApiError::internal)?,
        );
    }
    Ok(answer)
}
