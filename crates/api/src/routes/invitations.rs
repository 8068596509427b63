//! Invitations: staff invite a parent by e-mail for a child; the parent accepts with the code
//! (no account yet, so no token: the code is the secret); staff verify and approve, and only then
//! is the guardian linked; staff can revoke.
//!
//! # The code
//!
//! A code reads `<invitation id>.<secret>`: the id says which invitation to load (no index of
//! secrets is needed), the secret — 32 random bytes, base64url — proves the holder got it from
//! the school. Only a SHA-256 digest of the whole code is stored (in the `Invited` event); the
//! code itself is answered once, to the staff member who invited, and written nowhere. A fast
//! digest is enough because the secret is 256 random bits: there is nothing to guess.
//!
//! The digest is checked before the invitation's status is looked at, so whoever holds only an
//! invitation id (staff see them) learns nothing from `accept`: a wrong code answers `404` for a
//! revoked, expired, used or unknown invitation alike.
//!
//! # Approval and linking
//!
//! Approving writes `InvitationApproved` to the invitation's stream and then `GuardianLinked` to
//! the school roster, from the approved invitation state (the roster refuses a link without
//! it). Should the process stop between the two writes, approving again completes the link
//! (linking is idempotent), and [`crate::erasure::sweep`] completes it at start-up.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Code};
use crate::exec::Loaded;
use crate::routes::consent::child_place;
use crate::routes::Position;
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, Utc};
use kring_domain::invitation::{
    self, Invitation, InvitationAction, InvitationContext, InvitationEvent, InvitationStatus,
};
use kring_domain::school::{School, SchoolAction};
use kring_domain::{
    Actor, ChildId, Command, DomainError, GroupId, InvitationId, PersonId, StreamName,
};
use kring_projections::models::memberships;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/invitations", post(invite))
        .route("/v1/invitations/accept", post(accept))
        .route("/v1/invitations/{invitation_id}/approve", post(approve))
        .route("/v1/invitations/{invitation_id}/revoke", post(revoke))
        .route("/v1/invitations/{invitation_id}/resend", post(resend))
        .route(
            "/v1/groups/{group_id}/invitations",
            get(invitations_of_group),
        )
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(invite, accept, approve, revoke, resend, invitations_of_group),
    components(schemas(
        NewInvitation,
        InvitationSent,
        Acceptance,
        Accepted,
        Approval,
        InvitationList,
        InvitationDoc
    ))
)]
pub struct Doc;

/// Bytes of randomness in a code's secret.
const SECRET_BYTES: usize = 32;
/// The prefix of a stored code digest, naming the hash.
const DIGEST_PREFIX: &str = "sha256:";

/// A fresh code for `invitation_id`: `<invitation id>.<32 random bytes, base64url>`.
///
/// # Errors
/// The operating system's random source failed.
pub fn new_code(invitation_id: InvitationId) -> ApiResult<String> {
    let secret = crate::idempotency::fresh_secret::<SECRET_BYTES>()?;
    Ok(format!("{invitation_id}.{}", B64URL.encode(secret)))
}

/// The digest stored for `code` (the code itself is never stored).
#[must_use]
pub fn code_digest(code: &str) -> String {
    format!(
        "{DIGEST_PREFIX}{}",
        B64URL.encode(Sha256::digest(code.as_bytes()))
    )
}

/// The invitation a code names, if it has the `<uuid>.<secret>` shape.
fn invitation_of_code(code: &str) -> Option<InvitationId> {
    let (id, secret) = code.trim().split_once('.')?;
    if secret.is_empty() {
        return None;
    }
    id.parse().ok()
}

/// Compares two digests in time independent of where they differ.
fn digests_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `POST /v1/invitations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewInvitation {
    /// The child the parent is invited for.
    pub child_id: Uuid,
    /// The parent's e-mail address (kept sealed; shown to nobody but the parent).
    #[schema(
        max_length = 254,
        pattern = r"^[^\s@\u0000-\u001F\u007F-\u009F]+@[^\s@.\u0000-\u001F\u007F-\u009F][^\s@\u0000-\u001F\u007F-\u009F]*\.[^\s@\u0000-\u001F\u007F-\u009F]*[^\s@.\u0000-\u001F\u007F-\u009F]$",
        example = "name@example.org"
    )]
    pub email: String,
}

/// A sent invitation, with the code to hand to the parent (answered only here, only once).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvitationSent {
    /// The invitation.
    pub invitation_id: Uuid,
    /// The secret code the parent accepts with: `<invitation id>.<secret>`.
    pub code: String,
    /// Until when it can be accepted.
    pub expires_at: DateTime<Utc>,
    /// The global position of the last event written.
    pub position: u64,
}

/// Invites a parent by e-mail for a child (staff of the child's group). The answer holds the
/// code for the parent; Kring keeps only its digest.
#[utoipa::path(post, path = "/v1/invitations", tag = "invitations", request_body = NewInvitation,
    responses((status = 201, body = InvitationSent), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    crate::routes::Body(req): crate::routes::Body<NewInvitation>,
) -> ApiResult<(StatusCode, Json<InvitationSent>)> {
    let child_id = ChildId::from_uuid(req.child_id);
    // `404` for a caller who may not know of the child; the domain refuses non-staff.
    let roster = child_place(&state, caller, child_id).await?.roster;
    let sent = send(&state, caller, rid, &roster.state, child_id, &req.email).await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

/// Sends a new invitation with a new code for `child_id` to `email`, as `caller` decides it.
async fn send(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    roster: &School,
    child_id: ChildId,
    email: &str,
) -> ApiResult<InvitationSent> {
    let invitation_id = InvitationId::from_uuid(crate::idempotency::fresh_uuid());
    let invitee_id = PersonId::from_uuid(crate::idempotency::fresh_uuid());
    let code = new_code(invitation_id)?;
    let digest = code_digest(&code);
    let written = state
        .exec
        .run::<invitation::Invitation, _>(
            StreamName::invitation(invitation_id),
            caller.actor(),
            rid,
            |s, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: s,
                        school: roster,
                    },
                    Command::new(
                        caller.actor(),
                        InvitationAction::Invite {
                            invitation_id,
                            child_id,
                            email: email.to_owned(),
                            invitee_id,
                            code_digest: digest.clone(),
                            // Kept (sealed for the invitee) only when it will be e-mailed.
                            mail_code: state
                                .delivery
                                .as_ref()
                                .filter(|d| d.smtp.is_some())
                                .map(|_| code.clone()),
                        },
                    ),
                    now,
                )
            },
        )
        .await?;
    let expires_at = written
        .events
        .iter()
        .find_map(|e| match e {
            InvitationEvent::Invited(i) => Some(i.expires_at),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("inviting wrote no Invited event"))?;
    Ok(InvitationSent {
        invitation_id: invitation_id.into(),
        code,
        expires_at,
        position: written.position,
    })
}

/// Sends an expired or revoked invitation again: a new invitation with a new code, for the same
/// child and e-mail address (staff of the child's group). The old one stays closed. `409` while
/// it is still open.
#[utoipa::path(post, path = "/v1/invitations/{invitation_id}/resend", tag = "invitations",
    params(("invitation_id" = Uuid, Path, description = "The expired or revoked invitation")),
    responses((status = 201, body = InvitationSent), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(invitation_id): Path<InvitationId>,
) -> ApiResult<(StatusCode, Json<InvitationSent>)> {
    let (loaded, school) = invitation_and_school(&state, invitation_id).await?;
    require_school_staff(&school.state, caller, "send an invitation again")?;
    let old = &loaded.state;
    let child_id = old
        .child_id
        .ok_or_else(|| ApiError::not_found(format!("invitation {invitation_id}")))?;
    let closed = match old.status {
        InvitationStatus::Expired | InvitationStatus::Revoked => true,
        InvitationStatus::Pending => old.expires_at.is_some_and(|at| Utc::now() >= at),
        _ => false,
    };
    if !closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Code::Conflict,
            format!(
                "invitation {invitation_id} is {}: only an expired or revoked invitation is sent again",
                old.status.name()
            ),
        ));
    }
    let email = state
        .exec
        .events_of(&StreamName::invitation(invitation_id))
        .await?
        .into_iter()
        .find_map(|(_, e)| match e {
            kring_domain::Event::Invitation(InvitationEvent::Invited(i)) => Some(i.email),
            _ => None,
        })
        .ok_or_else(|| ApiError::not_found(format!("invitation {invitation_id}")))?;
    let email = state.open(&email).await?;
    if email == crate::state::ERASED {
        return Err(DomainError::invalid(
            "invitation_id",
            "the invitee's e-mail address was erased: invite them anew",
        )
        .into());
    }
    let sent = send(&state, caller, rid, &school.state, child_id, &email).await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

/// `POST /v1/invitations/accept`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Acceptance {
    /// The code the school handed out.
    pub code: String,
    /// The name the parent wants to be shown by (1–100 characters, not blank, no control
    /// characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub display_name: String,
}

/// An accepted invitation: the parent's person id in Kring, waiting for staff approval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The invitation.
    pub invitation_id: Uuid,
    /// The parent's person id (a guardian once staff approve).
    pub person_id: Uuid,
    /// The global position of the last event written.
    pub position: u64,
}

/// Accepts an invitation with its code (no token: the code is the secret). `404` for a code
/// that names no invitation; `422 rule_violated` for an expired, revoked or already used one.
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "invitations", request_body = Acceptance,
    responses((status = 200, body = Accepted), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn accept(
    State(state): State<AppState>,
    RequestId(rid): RequestId,
    crate::routes::Body(req): crate::routes::Body<Acceptance>,
) -> ApiResult<Json<Accepted>> {
    let no_such = || ApiError::not_found("an invitation with this code");
    let invitation_id = invitation_of_code(&req.code).ok_or_else(no_such)?;
    let loaded = state
        .exec
        .load::<invitation::Invitation>(&StreamName::invitation(invitation_id))
        .await?;
    let digest = code_digest(req.code.trim());
    if !loaded.exists() || !digests_match(&digest, &loaded.state.code_digest) {
        return Err(no_such());
    }
    let (school, invitee) = match (loaded.state.school_id, loaded.state.invitee_id) {
        (Some(s), Some(p)) => (state.exec.school(s).await?, p),
        _ => return Err(no_such()),
    };
    let actor = Actor::Person(invitee);
    let written = state
        .exec
        .run::<invitation::Invitation, _>(
            StreamName::invitation(invitation_id),
            actor,
            rid,
            |s, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: s,
                        school: &school.state,
                    },
                    Command::new(
                        actor,
                        InvitationAction::Accept {
                            code_digest: digest.clone(),
                            display_name: req.display_name.clone(),
                        },
                    ),
                    now,
                )
            },
        )
        .await?;
    Ok(Json(Accepted {
        invitation_id: invitation_id.into(),
        person_id: invitee.into(),
        position: written.position,
    }))
}

/// `POST /v1/invitations/{invitation_id}/approve`; the body may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct Approval {
    /// The right child, when the invitation named the wrong one (same school; the approver
    /// must be staff of its group).
    #[serde(default)]
    pub child_id: Option<Uuid>,
}

/// An optional JSON body: empty means the defaults.
fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::validation(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    })
}

/// The invitation's state and its school's roster; `404` for an unknown invitation.
async fn invitation_and_school(
    state: &AppState,
    invitation_id: InvitationId,
) -> ApiResult<(Loaded<Invitation>, Loaded<Arc<School>>)> {
    let loaded = state
        .exec
        .load::<invitation::Invitation>(&StreamName::invitation(invitation_id))
        .await?;
    let Some(school_id) = loaded.state.school_id.filter(|_| loaded.exists()) else {
        return Err(ApiError::not_found(format!("invitation {invitation_id}")));
    };
    let school = state.exec.school(school_id).await?;
    Ok((loaded, school))
}

/// Refuses callers who are not staff of the invitation's school before anything about the
/// invitation's status is told.
fn require_school_staff(school: &School, caller: Caller, action: &'static str) -> ApiResult<()> {
    if school.is_staff(caller.actor()) {
        Ok(())
    } else {
        Err(DomainError::NotAllowed {
            actor: caller.actor(),
            action,
        }
        .into())
    }
}

/// Approves an accepted invitation after verification (staff of the child's group), optionally
/// correcting the child; only now is the guardian linked to the child (and so a member of its
/// group and the school group). Approving an approved invitation again completes a link an
/// interrupted approval left undone.
#[utoipa::path(post, path = "/v1/invitations/{invitation_id}/approve", tag = "invitations", request_body(content = Approval, description = "Optional"),
    params(("invitation_id" = Uuid, Path, description = "The invitation")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(invitation_id): Path<InvitationId>,
    body: Bytes,
) -> ApiResult<Json<Position>> {
    let req: Approval = optional_body(&body)?;
    let (loaded, school) = invitation_and_school(&state, invitation_id).await?;
    require_school_staff(&school.state, caller, "approve an invitation")?;
    let corrected = req.child_id.map(ChildId::from_uuid);
    let approved = match loaded.state.status {
        InvitationStatus::Approved { child_id, .. } => {
            // A repeated approval: only finish the link an interrupted one left undone.
            if corrected.is_some_and(|c| c != child_id) {
                return Err(DomainError::InvitationNotOpen {
                    invitation_id,
                    status: "approved",
                    action: "approved for another child",
                }
                .into());
            }
            let group_id = school.state.enrolment(child_id)?.group_id;
            if !school.state.is_group_staff(caller.actor(), group_id) {
                return Err(DomainError::NotStaffOfGroup {
                    actor: caller.actor(),
                    group_id,
                    action: "approve an invitation",
                }
                .into());
            }
            loaded.state
        }
        _ => {
            state
                .exec
                .run::<invitation::Invitation, _>(
                    StreamName::invitation(invitation_id),
                    caller.actor(),
                    rid,
                    |s, now| {
                        invitation::decide(
                            &InvitationContext {
                                invitation: s,
                                school: &school.state,
                            },
                            Command::new(
                                caller.actor(),
                                InvitationAction::Approve {
                                    child_id: corrected,
                                },
                            ),
                            now,
                        )
                    },
                )
                .await?;
            state
                .exec
                .load::<invitation::Invitation>(&StreamName::invitation(invitation_id))
                .await?
                .state
        }
    };
    let position = link_guardian(&state, approved, caller.actor(), rid).await?;
    Ok(Json(Position { position }))
}

/// Links the guardian of an approved invitation in its school's roster (a no-op when linked).
/// The approver links as themselves; anyone else completing an approval (a repeated request,
/// the start-up sweep) links as the system, which the roster allows.
///
/// # Errors
/// The roster's refusal (an unapproved invitation); store failures.
pub async fn link_guardian(
    state: &AppState,
    approved: Invitation,
    actor: Actor,
    rid: Uuid,
) -> ApiResult<u64> {
    let school_id = approved
        .school_id
        .ok_or_else(|| ApiError::internal("an approved invitation without a school"))?;
    let actor = match approved.status {
        InvitationStatus::Approved { approved_by, .. } if actor == Actor::Person(approved_by) => {
            actor
        }
        _ => Actor::System,
    };
    Ok(state
        .exec
        .run_school(school_id, actor, rid, |roster, now| {
            kring_domain::school::decide(
                roster,
                Command::new(
                    actor,
                    SchoolAction::LinkGuardian {
                        invitation: approved.clone(),
                    },
                ),
                now,
            )
        })
        .await?
        .position)
}

/// Revokes a pending or accepted invitation (staff of the child's group, operator).
#[utoipa::path(post, path = "/v1/invitations/{invitation_id}/revoke", tag = "invitations",
    params(("invitation_id" = Uuid, Path, description = "The invitation")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(invitation_id): Path<InvitationId>,
) -> ApiResult<Json<Position>> {
    let (_, school) = invitation_and_school(&state, invitation_id).await?;
    if caller != Caller::Operator {
        require_school_staff(&school.state, caller, "revoke an invitation")?;
    }
    let written = state
        .exec
        .run::<invitation::Invitation, _>(
            StreamName::invitation(invitation_id),
            caller.actor(),
            rid,
            |s, now| {
                invitation::decide(
                    &InvitationContext {
                        invitation: s,
                        school: &school.state,
                    },
                    Command::new(caller.actor(), InvitationAction::Revoke),
                    now,
                )
            },
        )
        .await?;
    Ok(Json(Position {
        position: written.position,
    }))
}

/// An invitation as the group's staff see it: never the e-mail address.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvitationDoc {
    /// The invitation.
    pub invitation_id: Uuid,
    /// The child (the corrected one once approved with a correction).
    pub child_id: Uuid,
    /// The child the invitation named, when staff corrected it on approval.
    pub corrected_from: Option<Uuid>,
    /// The invitee's person id (the guardian once approved).
    pub invitee_id: Uuid,
    /// The name the invitee chose on accepting (`null` before; `[erased]` after erasure), for
    /// staff to verify before approving.
    pub display_name: Option<String>,
    /// `pending`, `accepted`, `approved`, `revoked` or `expired` (a pending invitation past
    /// its date reads `expired`).
    pub status: String,
    /// The staff member who invited.
    pub invited_by: Uuid,
    /// When it was sent.
    pub invited_at: DateTime<Utc>,
    /// Until when it can be accepted.
    pub expires_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
}

/// The invitations of a group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvitationList {
    /// The group.
    pub group_id: Uuid,
    /// Its invitations, oldest first.
    pub invitations: Vec<InvitationDoc>,
    /// Pass as `?after=` for the next page; `null` on the last page.
    pub next_after: Option<Uuid>,
}

/// Paging of `GET /v1/groups/{group_id}/invitations`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvitationPage {
    /// At most this many (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// After this invitation (the `next_after` of the previous page).
    pub after: Option<Uuid>,
    /// Wait until the read models have applied the log up to this position.
    pub min_position: Option<u64>,
}

/// The invitations for children of a class group, oldest first (staff of the group). E-mail
/// addresses are not shown: they are shown to nobody but their owner.
#[utoipa::path(get, path = "/v1/groups/{group_id}/invitations", tag = "invitations",
    params(("group_id" = Uuid, Path, description = "The class group"), InvitationPage),
    responses((status = 200, body = InvitationList), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn invitations_of_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(group_id): Path<GroupId>,
    Q(page): Q<InvitationPage>,
) -> ApiResult<Json<InvitationList>> {
    MinPosition {
        min_position: page.min_position,
    }
    .wait(&state)
    .await?;
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > 500 {
        return Err(ApiError::validation("limit: must be 1 to 500"));
    }
    let school_id = state.school_of_group(group_id).await?;
    let roster = state.exec.school(school_id).await?.state;
    let actor = caller.actor();
    // A group's existence is not private: whoever is not its staff gets `403`.
    if !roster.is_group_staff(actor, group_id) {
        return Err(ApiError::forbidden(format!(
            "only staff of group {group_id} see its invitations"
        )));
    }
    let now = Utc::now();
    let mut invitations = Vec::new();
    let listed = memberships::invitations_of_group_page(
        &state.system.db,
        group_id,
        page.after.map(InvitationId::from_uuid),
        limit,
    )
    .await?;
    let next_after = (listed.len() == limit as usize)
        .then(|| listed.last().map(|i| i.invitation_id.into()))
        .flatten();
    for i in listed {
        let display_name = match i.status {
            memberships::InvitationState::Pending => None,
            _ => match memberships::person(&state.system.db, i.invitee_id).await? {
                Some(p) => state.open_opt(p.display_name.as_ref()).await?,
                None => None,
            },
        };
        invitations.push(InvitationDoc {
            invitation_id: i.invitation_id.into(),
            child_id: i.child_id.into(),
            corrected_from: i.corrected_from.map(Into::into),
            invitee_id: i.invitee_id.into(),
            display_name,
            status: i.status_at(now).as_str().to_owned(),
            invited_by: i.invited_by.into(),
            invited_at: i.invited_at,
            expires_at: i.expires_at,
            updated_at: i.updated_at,
        });
    }
    Ok(Json(InvitationList {
        group_id: group_id.into(),
        invitations,
        next_after,
    }))
}
