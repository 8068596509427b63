//! Sign-in: linking a single sign-on identity to one's Kring account, and revoking a local
//! token before it expires.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::exec::Executor;
use crate::routes::schools::sso_identity;
use crate::routes::{Body, Position};
use crate::state::{AppState, RequestId};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use kring_domain::access;
use kring_domain::person::{self, PersonAction, PersonContext};
use kring_domain::school::School;
use kring_domain::stream::Category;
use kring_domain::{Command, StreamName};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/sso-identity", post(link_identity))
        .route("/v1/tokens/revocations", post(revoke_token))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(link_identity, revoke_token),
    components(schemas(LinkIdentity, RevokeToken))
)]
pub struct Doc;

/// `POST /v1/me/sso-identity`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LinkIdentity {
    /// A token of the configured single sign-on issuer for Kring's audience: its subject
    /// becomes the caller's identity there.
    pub token: String,
}

/// Links the caller's identity at the single sign-on issuer to their Kring account, once: the
/// caller signs in with a Kring token and shows an issuer's token of theirs. From then on the
/// issuer's tokens with that subject sign them in.
#[utoipa::path(post, path = "/v1/me/sso-identity", tag = "sign-in", request_body = LinkIdentity,
    responses((status = 201, body = Position), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 409, description = "The caller linked an identity before, or the identity belongs to someone else", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn link_identity(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<LinkIdentity>,
) -> ApiResult<(StatusCode, Json<Position>)> {
    let person_id = caller.person().ok_or_else(|| {
        ApiError::forbidden("the platform operator has no single sign-on identity")
    })?;
    let (subject, _) = state
        .auth
        .external_identity(req.token.trim())
        .await
        .map_err(|e| ApiError::validation(format!("token: {}", e.detail)))?;
    let identity = sso_identity(&state, person_id, &subject).await?;
    let actor = caller.actor();
    let nowhere = School::default();
    let written = state
        .exec
        .run::<person::Person, _>(StreamName::person(person_id), actor, rid, |s, now| {
            person::decide(
                &PersonContext {
                    person: s,
                    school: &nowhere,
                },
                Command::new(
                    actor,
                    PersonAction::LinkIdentity {
                        person_id,
                        identity: identity.clone(),
                    },
                ),
                now,
            )
        })
        .await?;
    // The identity signs in as soon as this answers.
    state.wait_for(written.position).await?;
    Ok((
        StatusCode::CREATED,
        Json(Position {
            position: written.position,
        }),
    ))
}

/// `POST /v1/tokens/revocations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RevokeToken {
    /// The token's id (its `jti` claim; `kring-api token` prints it).
    pub jti: Uuid,
}

/// Revokes a local token before it expires (the platform operator): from the answer on, every
/// request with it is `401`.
#[utoipa::path(post, path = "/v1/tokens/revocations", tag = "sign-in", request_body = RevokeToken,
    responses((status = 201, body = Position), (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 409, description = "The token was revoked before", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<RevokeToken>,
) -> ApiResult<(StatusCode, Json<Position>)> {
    let position = revoke(&state, caller, rid, req.jti).await?;
    Ok((StatusCode::CREATED, Json(Position { position })))
}

/// Records the revocation of token `jti` by `caller` and waits until requests see it.
///
/// # Errors
/// As [`record_revocation`]; `503` when the read models do not catch up in time (the
/// revocation is recorded and takes effect when they do).
pub async fn revoke(state: &AppState, caller: Caller, rid: Uuid, jti: Uuid) -> ApiResult<u64> {
    let position = record_revocation(&state.exec, caller, rid, jti).await?;
    state.wait_for(position).await?;
    Ok(position)
}

/// Records the revocation of token `jti` by `caller` in the log (also what `kring-api token
/// --revoke` does); every server refuses the token once its read models have it.
///
/// # Errors
/// `403` for anyone but the operator; `409` for a token revoked before; store failures.
pub async fn record_revocation(
    exec: &Executor,
    caller: Caller,
    rid: Uuid,
    jti: Uuid,
) -> ApiResult<u64> {
    let actor = caller.actor();
    Ok(exec
        .run::<access::AccessLog, _>(
            StreamName::new(Category::Access, jti),
            actor,
            rid,
            |s, now| access::revoke_token(s, actor, jti, now),
        )
        .await?
        .position)
}
