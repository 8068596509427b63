//! "Who may see this?": the viewers of a media item and why, and who is withheld because of
//! which child and purpose.

use super::{hidden_media, seen, Standing};
use crate::audit::log_access;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::Json;
use kring_domain::access::{AccessReason, Subject};
use kring_domain::visibility::ViewReason;
use kring_domain::MediaId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

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
    let seen = seen(&state, caller, media_id)
        .await?
        .ok_or_else(|| hidden_media(media_id))?;
    match seen.standing {
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
    let answer = seen.visibility;
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
