//! The routes of the contract, one module per area. Each module has `router()` and an OpenAPI
//! `Doc`; [`router`] and [`docs`] gather them.
// A handler's errors are its typed `ApiError`s, answered as problem+json and listed per status
// in its `#[utoipa::path(responses(...))]`; its doc comment is the operation's description in
// the served OpenAPI document, which an `# Errors` section would only repeat.
#![allow(
    clippy::missing_errors_doc,
    reason = "handlers list their errors as OpenAPI responses"
)]

pub mod administration;
pub mod calendar;
pub mod consent;
pub mod conversations;
pub mod delivery;
pub mod invitations;
pub mod meetings;
pub mod notification_preferences;
pub mod posts;
pub mod reads;
pub mod rights;
pub mod school_life;
pub mod schools;
pub mod sign_in;

use crate::error::{ApiError, Code};
use crate::state::AppState;
use axum::extract::{FromRequest, Request};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

/// Every route of the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(schools::router())
        .merge(invitations::router())
        .merge(consent::router())
        .merge(posts::router())
        .merge(conversations::router())
        .merge(notification_preferences::router())
        .merge(school_life::router())
        .merge(meetings::router())
        .merge(calendar::router())
        .merge(rights::router())
        .merge(administration::router())
        .merge(sign_in::router())
        .merge(delivery::router())
        .merge(reads::router())
}

/// Every route module's part of the OpenAPI document.
#[must_use]
pub fn docs() -> Vec<utoipa::openapi::OpenApi> {
    vec![
        schools::Doc::openapi(),
        invitations::Doc::openapi(),
        consent::Doc::openapi(),
        posts::Doc::openapi(),
        conversations::Doc::openapi(),
        notification_preferences::Doc::openapi(),
        school_life::Doc::openapi(),
        meetings::Doc::openapi(),
        calendar::Doc::openapi(),
        rights::Doc::openapi(),
        administration::Doc::openapi(),
        sign_in::Doc::openapi(),
        delivery::Doc::openapi(),
        reads::Doc::openapi(),
    ]
}

/// The answer of a write that creates nothing: the global position of its last event.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Position {
    /// Pass as `?min_position=` to a GET to read your own write.
    pub position: u64,
}

/// A staff role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Posts to the groups they are assigned to.
    Teacher,
    /// Manages the school.
    Director,
    /// Privacy officer or auditor.
    ComplianceOfficer,
}

/// A consent purpose, by its `snake_case` name (the domain's [`kring_domain::Purpose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurposeName {
    /// Reporting on the child's education (portfolio, reports).
    EducationReporting,
    /// The closed class-group environment.
    GroupCommunication,
    /// The closed whole-school environment.
    SchoolCommunication,
    /// Public communication: website, brochure, social media.
    PublicCommunication,
    /// Research within the school.
    InternalResearch,
    /// Training of staff (e.g. recorded lessons).
    InternalTraining,
    /// Broad, anonymised research with outside parties.
    ExternalResearch,
}

/// An IANA time zone name, e.g. `Europe/Amsterdam`: one of the names the server knows.
pub struct TimeZoneName;

impl utoipa::PartialSchema for TimeZoneName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("An IANA time zone name, e.g. `Europe/Amsterdam`"))
            .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
            .examples(["Europe/Amsterdam"])
            .into()
    }
}

impl ToSchema for TimeZoneName {}

/// A JSON request body whose rejections are problem+json: `400 bad_request` for malformed
/// JSON, `422 validation_failed` for a missing or mistyped field, `415` for a wrong content
/// type, `413` over the body limit.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection as R;
        use axum::http::StatusCode;
        // Like axum's `Json`: the content type is checked before the body is read.
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedMediaType,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(e.status(), Code::PayloadTooLarge, e.body_text())
                } else {
                    ApiError::bad_request(e.body_text())
                }
            })?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(e) => Err(match &e {
                R::JsonDataError(_) => ApiError::validation(e.body_text()),
                // serde_json reports some mistyped values (a number where a role's name is
                // expected) as syntax errors: well-formed JSON of the wrong shape is still a
                // validation failure, not an unreadable body.
                R::JsonSyntaxError(_)
                    if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() =>
                {
                    ApiError::validation(e.body_text())
                }
                _ => ApiError::bad_request(e.body_text()),
            }),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| {
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
}
