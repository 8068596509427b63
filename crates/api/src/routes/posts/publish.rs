//! Posting to a group, with the caller's uploads and the children tagged in them, and the
//! consent warnings that come with it.

use super::{files, hidden_media};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::media::{Claim, MediaFiles, MediaHeader};
use crate::routes::Body;
use crate::state::{AppState, RequestId};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kring_domain::post::{self as domain_post, MediaAttachment, Post, PostAction, PostContext};
use kring_domain::school::School;
use kring_domain::visibility as rule;
use kring_domain::{child, post};
use kring_domain::{ChildId, Command, DomainError, GroupId, MediaId, PersonId, PostId, StreamName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;
use uuid::Uuid;

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
