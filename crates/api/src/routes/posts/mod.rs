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
//!
//! One file per part: `upload`, `publish` (with the consent warnings), `tags`, `read` (the
//! feed, a post, a media item's bytes), `viewers` ("who may see this?"), `edit` and `removal`;
//! this file holds the router, the OpenAPI registration and what the parts share (the caller's
//! `Standing`, `published` media items, `run_on_post`).

mod edit;
mod publish;
mod range;
mod read;
mod removal;
mod tags;
mod upload;
mod viewers;

pub use edit::{edit_post, PostEdit};
pub use publish::{publish_post, ConsentWarning, NewAttachment, NewPost, PostCreated};
pub use read::{feed, media_bytes, read_post, FeedDoc, FeedQuery, MediaDoc, PostDoc};
pub use removal::{remove_media, remove_post, Removal};
pub use tags::{tag_child, untag_child, NewTag};
pub use upload::{upload_media, MediaCreated};
pub use viewers::{media_viewers, BecauseDoc, Reason, ViewerDoc, ViewersDoc, WithheldDoc};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::media::MediaFiles;
use crate::state::AppState;
use axum::routing::{delete, get, post};
use axum::Router;
use kring_domain::post;
use kring_domain::post::{self as domain_post, PostAction, PostContext};
use kring_domain::school::{School, StaffRole};
use kring_domain::{Command, GroupId, MediaId, PersonId, PostId, SchoolId, StreamName};
use kring_projections::models::visibility;
use std::sync::Arc;
use utoipa::OpenApi;
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
        upload::upload_media,
        publish::publish_post,
        tags::tag_child,
        tags::untag_child,
        read::feed,
        read::read_post,
        read::media_bytes,
        viewers::media_viewers,
        removal::remove_post,
        removal::remove_media,
        edit::edit_post
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

    /// `404` unless the caller may know of the live item at `place`: staff of its audience,
    /// compliance officers and the operator always, a guardian only when it is shown to them
    /// (`guardian_sees`).
    fn admit(self, place: &visibility::MediaPlace, guardian_sees: bool) -> ApiResult<()> {
        let known = match self {
            Self::Operator | Self::Compliance | Self::Staff => true,
            Self::Guardian(_) => guardian_sees,
            Self::Stranger => false,
        };
        if known && place.live {
            Ok(())
        } else {
            Err(hidden_media(place.media_id))
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
    state.media_files()
}

/// A published media item and its school's roster from the log, for a command on it; `404` for
/// a caller to whom it does not exist.
struct Published {
    place: visibility::MediaPlace,
    roster: Arc<School>,
}

async fn published(state: &AppState, caller: Caller, media_id: MediaId) -> ApiResult<Published> {
    let place = place_of(state, media_id)
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    let roster = state.exec.school(place.school_id).await?.state;
    let standing = Standing::of(&roster, caller, place.group_id);
    let guardian_sees = match standing {
        Standing::Guardian(p) => visibility::may_see(&state.system.db, p, media_id).await?,
        _ => false,
    };
    standing.admit(&place, guardian_sees)?;
    Ok(Published { place, roster })
}

/// A published media item as a read of it sees it: where it was posted, the caller's standing
/// and who may see it, all from one snapshot of the read models.
struct Seen {
    standing: Standing,
    visibility: kring_domain::visibility::MediaVisibility,
}

/// How the reads of a media item (its bytes, who may see it) find it: `None` for an item never
/// published (an upload not yet attached, or an unknown id); `404` for a caller to whom it does
/// not exist (a stranger, a guardian it is withheld from) or when it is no longer live.
///
/// Usually one statement ([`visibility::media_answer`]: place, roster and answer at one
/// snapshot), so the caller's standing is decided on the roster the answer was worked out on.
/// Otherwise (a roster not cached yet, an item the read model does not know yet) the long way:
/// its place (catching up once if unknown), the roster from the log, the answer.
async fn seen(state: &AppState, caller: Caller, media_id: MediaId) -> ApiResult<Option<Seen>> {
    let (place, roster, visibility) =
        match visibility::media_answer(&state.system.db, media_id).await? {
            Some(found) => (found.place, found.roster, found.visibility),
            None => {
                let Some(place) = place_of(state, media_id).await? else {
                    return Ok(None);
                };
                let roster = state.exec.school(place.school_id).await?.state;
                let visibility = visibility::who_may_see(&state.system.db, media_id)
                    .await?
                    .ok_or_else(|| hidden_media(media_id))?;
                (place, roster, visibility)
            }
        };
    let standing = Standing::of(&roster, caller, place.group_id);
    standing.admit(
        &place,
        matches!(standing, Standing::Guardian(p) if visibility.may_see(p)),
    )?;
    Ok(Some(Seen {
        standing,
        visibility,
    }))
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
