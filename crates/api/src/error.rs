//! Errors as `application/problem+json` (RFC 9457) with a stable machine `code`.
//!
//! Every failure a handler can meet maps here to one status and one code, so that bad input
//! never answers 5xx and a client can branch on `code` without parsing `detail`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kring_domain::DomainError;
use kring_projections::ProjectionError;
use kring_store::vault::VaultError;
use kring_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// A problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `https://kring.invalid/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// The stable machine code, e.g. `validation_failed`.
    pub code: String,
}

/// A failed request.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub detail: String,
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with its status, code and detail.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// `422 validation_failed`.
    #[must_use]
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        )
    }

    /// `400 bad_request`: a body or query that cannot be parsed.
    #[must_use]
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// `404 not_found`, also used where a resource's existence is itself private.
    #[must_use]
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} not found", what.into()),
        )
    }

    /// `403 forbidden`.
    #[must_use]
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// `401 unauthenticated`.
    #[must_use]
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    /// `500 internal_error`: the detail is logged, the client sees a generic text.
    #[must_use]
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed; the request id in the logs tells which request",
        )
    }

    /// `503 not_ready`: a read model did not catch up in time.
    #[must_use]
    pub fn not_ready(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_caught_up", detail)
    }

    fn title(&self) -> &'static str {
        match self.code {
            "validation_failed" => "The request is not valid",
            "bad_request" => "The request cannot be read",
            "not_found" => "Not found",
            "forbidden" => "Not allowed",
            "unauthenticated" => "Authentication needed",
            "concurrency_conflict" => "Changed concurrently; retry",
            "rule_violated" => "A rule forbids this",
            "conflict" => "Conflict",
            "payload_too_large" => "The request body is too large",
            "unsupported_media_type" => "Unsupported content type",
            "not_caught_up" => "Read model not caught up",
            "erased" => "Erased",
            "timeout" => "The request took too long",
            _ => "Server error",
        }
    }

    /// The problem document.
    #[must_use]
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("https://kring.invalid/problems/{}", self.code),
            title: self.title().to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        use DomainError as D;
        let status = match &e {
            D::Invalid { .. } => return Self::validation(e.to_string()),
            D::NotFound { .. } => {
                return Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            D::NotAllowed { .. }
            | D::NotStaffOfGroup { .. }
            | D::NotGuardian { .. }
            | D::NotGuardianInGroup { .. }
            | D::NotParticipant { .. } => return Self::forbidden(e.to_string()),
            D::AlreadyExists { .. }
            | D::ActivityFull { .. }
            | D::AlreadyVolunteering { .. }
            | D::AlreadyDone { .. } => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = if status == StatusCode::CONFLICT {
            "conflict"
        } else {
            "rule_violated"
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Concurrency { .. } => {
                Self::new(StatusCode::CONFLICT, "concurrency_conflict", e.to_string())
            }
            StoreError::EventTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            // Two requests with one Idempotency-Key at once: the first is being written.
            StoreError::IdempotencyMismatch { .. } => Self::new(
                StatusCode::CONFLICT,
                "concurrency_conflict",
                "a request with this Idempotency-Key is being handled: retry it in a moment",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::SubjectErased(_) => Self::new(StatusCode::GONE, "erased", e.to_string()),
            // The key is gone; wiping its old copy from disk waits for a reader: say to repeat.
            VaultError::SecureDeletion { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "erasure_incomplete",
                e.to_string(),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::NotCaughtUp { .. } => Self::not_ready(e.to_string()),
            other => Self::internal(other),
        }
    }
}
