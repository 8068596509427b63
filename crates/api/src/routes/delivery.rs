//! Delivery: a person's push subscriptions, the installation's VAPID public key, and the
//! operator's dead letters (deliveries that failed as often as allowed).

use crate::auth::Caller;
use crate::delivery::store::{self, Job, JobKind, JobState};
use crate::error::{ApiError, ApiResult};
use crate::routes::{Body, Position};
use crate::state::{AppState, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use kring_domain::person::{self, PersonAction, PersonContext};
use kring_domain::push::PushEndpoint;
use kring_domain::school::School;
use kring_domain::{Command, PersonId, StreamName};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/push/vapid-public-key", get(vapid_public_key))
        .route("/v1/me/push-subscriptions", post(subscribe))
        .route(
            "/v1/me/push-subscriptions/{subscription_id}",
            delete(unsubscribe),
        )
        .route("/v1/operator/dead-letters", get(dead_letters))
        .route("/v1/operator/dead-letters/{delivery_id}/retry", post(retry))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(vapid_public_key, subscribe, unsubscribe, dead_letters, retry),
    components(schemas(
        VapidPublicKey,
        NewSubscription,
        SubscriptionKeys,
        Subscribed,
        DeadLetters,
        DeadLetter,
        Retried,
        JobKind,
        JobState
    ))
)]
pub struct Doc;

fn delivery(state: &AppState) -> ApiResult<Arc<crate::delivery::Delivery>> {
    state
        .delivery
        .clone()
        .ok_or_else(|| ApiError::unavailable("delivery is not set up in this process"))
}

/// The installation's VAPID public key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VapidPublicKey {
    /// The P-256 public key, 65 bytes uncompressed, base64url: the `applicationServerKey` of
    /// `pushManager.subscribe`.
    pub public_key: String,
}

/// The key a browser subscribes with (`applicationServerKey`); push messages are signed with
/// its private half (VAPID, RFC 8292). No token needed.
#[utoipa::path(get, path = "/v1/push/vapid-public-key", tag = "delivery",
    responses((status = 200, body = VapidPublicKey), (status = 503, body = crate::error::Problem)))]
pub async fn vapid_public_key(State(state): State<AppState>) -> ApiResult<Json<VapidPublicKey>> {
    Ok(Json(VapidPublicKey {
        public_key: delivery(&state)?.push.public_key(),
    }))
}

/// A device's keys, as `PushSubscription.toJSON()` gives them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscriptionKeys {
    /// The device's P-256 public key: 65 bytes uncompressed, base64url.
    #[schema(max_length = 200)]
    pub p256dh: String,
    /// The device's authentication secret: 16 bytes, base64url.
    #[schema(max_length = 100)]
    pub auth: String,
}

/// `POST /v1/me/push-subscriptions`: what `PushSubscription.toJSON()` gives (other fields are
/// ignored).
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewSubscription {
    /// The push service's URL for the device: `https`, a public host, at most 2,048 characters.
    #[schema(max_length = 2048)]
    pub endpoint: String,
    /// Its keys.
    pub keys: SubscriptionKeys,
}

/// A new subscription.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Subscribed {
    /// Its id (to remove it).
    pub subscription_id: Uuid,
    /// The global position of the event written.
    pub position: u64,
}

fn person_of(caller: Caller) -> ApiResult<PersonId> {
    caller
        .person()
        .ok_or_else(|| ApiError::forbidden("the platform operator receives no push messages"))
}

async fn decide_person(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    person_id: PersonId,
    action: PersonAction,
) -> ApiResult<u64> {
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
                Command::new(actor, action.clone()),
                now,
            )
        })
        .await?;
    Ok(written.position)
}

/// Subscribes one of the caller's devices to push messages. The endpoint and keys are kept
/// sealed for the caller (erased with them). `422` for an endpoint that is not `https` to a
/// public host, or keys that do not decode to a P-256 public key and a 16-byte secret.
#[utoipa::path(post, path = "/v1/me/push-subscriptions", tag = "delivery",
    request_body = NewSubscription,
    responses((status = 201, body = Subscribed),
        (status = 403, description = "The platform operator receives no push messages", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<NewSubscription>,
) -> ApiResult<(StatusCode, Json<Subscribed>)> {
    let person_id = person_of(caller)?;
    let allow_loopback = delivery(&state)?.config.push_allow_loopback_http;
    crate::delivery::push::check_endpoint(&req.endpoint, allow_loopback)
        .map_err(ApiError::validation)?;
    crate::delivery::push::check_keys(&req.keys.p256dh, &req.keys.auth)
        .map_err(ApiError::validation)?;
    let subscription_id = crate::idempotency::fresh_uuid();
    let position = decide_person(
        &state,
        caller,
        rid,
        person_id,
        PersonAction::SubscribePush {
            person_id,
            subscription_id,
            endpoint: PushEndpoint {
                endpoint: req.endpoint,
                p256dh: req.keys.p256dh.trim().to_owned(),
                auth: req.keys.auth.trim().to_owned(),
            },
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Subscribed {
            subscription_id,
            position,
        }),
    ))
}

/// Removes one of the caller's push subscriptions. `404` for one that is not the caller's (or
/// was removed).
#[utoipa::path(delete, path = "/v1/me/push-subscriptions/{subscription_id}", tag = "delivery",
    params(("subscription_id" = Uuid, Path, description = "The subscription")),
    responses((status = 200, body = Position),
        (status = 403, description = "The platform operator receives no push messages", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn unsubscribe(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(subscription_id): Path<Uuid>,
) -> ApiResult<Json<Position>> {
    let person_id = person_of(caller)?;
    let position = decide_person(
        &state,
        caller,
        rid,
        person_id,
        PersonAction::UnsubscribePush {
            person_id,
            subscription_id,
        },
    )
    .await?;
    Ok(Json(Position { position }))
}

/// A delivery that failed as often as allowed (or for good).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Its id (to retry it).
    pub delivery_id: Uuid,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// What it delivers.
    pub kind: JobKind,
    /// `email` or `push`.
    pub channel: String,
    /// To whom.
    pub recipient_id: Uuid,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last one failed: a fixed reason and the server's status code.
    pub last_error: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was given up.
    pub failed_at: Option<DateTime<Utc>>,
}

impl From<Job> for DeadLetter {
    fn from(j: Job) -> Self {
        Self {
            delivery_id: j.delivery_id,
            idempotency_key: j.key,
            kind: j.kind,
            channel: j.channel,
            recipient_id: j.recipient_id.into(),
            attempts: j.attempts,
            last_error: j.last_error,
            created_at: j.created_at,
            failed_at: j.finished_at,
        }
    }
}

/// The dead letters.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetters {
    /// Oldest first.
    pub dead_letters: Vec<DeadLetter>,
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Limit {
    /// At most this many (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

fn operator(caller: Caller) -> ApiResult<()> {
    if caller == Caller::Operator {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the platform operator handles dead letters",
        ))
    }
}

/// Deliveries given up, oldest first (the platform operator only).
#[utoipa::path(get, path = "/v1/operator/dead-letters", tag = "delivery", params(Limit),
    responses((status = 200, body = DeadLetters), (status = 403, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Q(limit): Q<Limit>,
) -> ApiResult<Json<DeadLetters>> {
    operator(caller)?;
    let limit = match limit.limit {
        None => 100,
        Some(n) if (1..=500).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::validation(format!(
                "limit: {n} is not between 1 and 500"
            )))
        }
    };
    let jobs = store::dead_letters(&state.system.db, limit).await?;
    Ok(Json(DeadLetters {
        dead_letters: jobs.into_iter().map(DeadLetter::from).collect(),
    }))
}

/// A dead letter put back.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Retried {
    /// The delivery.
    pub delivery_id: Uuid,
    /// `pending`: the worker tries it again now, its attempts counted from zero.
    pub state: JobState,
}

/// Tries a dead letter again (the platform operator only). `404` for an id that is not a dead
/// letter.
#[utoipa::path(post, path = "/v1/operator/dead-letters/{delivery_id}/retry", tag = "delivery",
    params(("delivery_id" = Uuid, Path, description = "The dead letter")),
    responses((status = 200, body = Retried), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(delivery_id): Path<Uuid>,
) -> ApiResult<Json<Retried>> {
    operator(caller)?;
    if !store::retry(&state.system.db, delivery_id, Utc::now()).await? {
        return Err(ApiError::not_found(format!("dead letter {delivery_id}")));
    }
    Ok(Json(Retried {
        delivery_id,
        state: JobState::Pending,
    }))
}
