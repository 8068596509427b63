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

/// The stable machine code of a problem: what a client branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The request is well-formed but a value is not valid (`422`).
    ValidationFailed,
    /// The body or query cannot be read (`400`, and other 4xx axum answers).
    BadRequest,
    /// Not found, or its existence is private (`404`).
    NotFound,
    /// Not allowed to the caller (`403`).
    Forbidden,
    /// No valid token (`401`).
    Unauthenticated,
    /// The stream changed between read and write (`409`): retry.
    ConcurrencyConflict,
    /// A domain rule forbids it (`422`).
    RuleViolated,
    /// It exists already or was done already (`409`).
    Conflict,
    /// The body is over its limit (`413`).
    PayloadTooLarge,
    /// The content type is not accepted (`415`).
    UnsupportedMediaType,
    /// The method is not one of the route's (`405`).
    MethodNotAllowed,
    /// A read model did not catch up in time (`503`).
    NotCaughtUp,
    /// The event store or another database cannot be reached now (`503`): retry later.
    StoreUnreachable,
    /// The disk is full: nothing was written (`507`); retry once space is freed.
    InsufficientStorage,
    /// The data was erased (`410`).
    Erased,
    /// An erasure's key is gone but its old copy is not wiped yet (`503`): repeat it.
    ErasureIncomplete,
    /// The request took too long (`504`).
    Timeout,
    /// Too many requests (`429`, with `Retry-After`).
    RateLimited,
    /// An `Idempotency-Key` used with another body (`422`).
    IdempotencyKeyReused,
    /// The server failed (`500`).
    InternalError,
}

impl Code {
    /// The code as clients see it, e.g. `validation_failed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation_failed",
            Self::BadRequest => "bad_request",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::Unauthenticated => "unauthenticated",
            Self::ConcurrencyConflict => "concurrency_conflict",
            Self::RuleViolated => "rule_violated",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotCaughtUp => "not_caught_up",
            Self::StoreUnreachable => "store_unreachable",
            Self::InsufficientStorage => "insufficient_storage",
            Self::Erased => "erased",
            Self::ErasureIncomplete => "erasure_incomplete",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InternalError => "internal_error",
        }
    }

    /// A short summary of the problem type.
    #[must_use]
    pub const fn title(self) -> &'static str {
        match self {
            Self::ValidationFailed => "The request is not valid",
            Self::BadRequest => "The request cannot be read",
            Self::NotFound => "Not found",
            Self::Forbidden => "Not allowed",
            Self::Unauthenticated => "Authentication needed",
            Self::ConcurrencyConflict => "Changed concurrently; retry",
            Self::RuleViolated => "A rule forbids this",
            Self::Conflict => "Conflict",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UnsupportedMediaType => "Unsupported content type",
            Self::MethodNotAllowed => "Method not allowed",
            Self::NotCaughtUp => "Read model not caught up",
            Self::StoreUnreachable => "The event store cannot be reached",
            Self::InsufficientStorage => "Not enough storage; nothing was written",
            Self::Erased => "Erased",
            Self::ErasureIncomplete => "Erasure not finished; repeat it",
            Self::Timeout => "The request took too long",
            Self::RateLimited => "Too many requests",
            Self::IdempotencyKeyReused => "Idempotency-Key used with another body",
            Self::InternalError => "Server error",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine code.
    pub code: Code,
    /// What went wrong, for people.
    pub detail: String,
    /// What failed inside (internal errors only): logged where the error is answered, never
    /// sent.
    cause: Option<String>,
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with its status, code and detail.
    #[must_use]
    pub fn new(status: StatusCode, code: Code, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            cause: None,
        }
    }

    /// `422 validation_failed`.
    #[must_use]
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Code::ValidationFailed,
            detail,
        )
    }

    /// `400 bad_request`: a body or query that cannot be parsed.
    #[must_use]
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::BadRequest, detail)
    }

    /// `404 not_found`, also used where a resource's existence is itself private.
    #[must_use]
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("{} not found", what.into()),
        )
    }

    /// `403 forbidden`.
    #[must_use]
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Code::Forbidden, detail)
    }

    /// `401 unauthenticated`.
    #[must_use]
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, Code::Unauthenticated, detail)
    }

    /// `500 internal_error`: the detail is logged when the error is answered, the client sees
    /// a generic text.
    #[must_use]
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            cause: Some(detail.to_string()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::InternalError,
                "the server failed; the request id in the logs tells which request",
            )
        }
    }

    /// What failed inside, for an internal error.
    #[must_use]
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }

    /// What to log of an error that is not answered (a background job's): the cause of an
    /// internal error, else the detail.
    #[must_use]
    pub fn explain(&self) -> &str {
        self.cause.as_deref().unwrap_or(&self.detail)
    }

    /// `503 not_ready`: a read model did not catch up in time.
    #[must_use]
    pub fn not_ready(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, Code::NotCaughtUp, detail)
    }

    /// `503 store_unreachable`: a database cannot be reached now; nothing was acknowledged.
    #[must_use]
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::StoreUnreachable,
            detail,
        )
    }

    /// `507 insufficient_storage`: the disk is full; nothing was written.
    #[must_use]
    pub fn storage_full(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            Code::InsufficientStorage,
            detail,
        )
    }

    /// A failure of the database `what`: `503` or `507` for an outage
    /// ([`kring_store::outage`]), else an internal error.
    #[must_use]
    pub fn from_database(what: &str, e: sqlx::Error) -> Self {
        if is_missing_table(&e) {
            // An API instance started on a fresh database before any projector made the
            // read models' tables.
            return Self::not_ready(format!(
                "{what} are not built yet (no projector has created them): {e}"
            ));
        }
        match kring_store::outage(&e) {
            Some(kring_store::Outage::Unreachable) => {
                Self::unavailable(format!("{what} cannot be reached: {e}"))
            }
            Some(kring_store::Outage::StorageFull) => {
                Self::storage_full(format!("{what}: no space left: {e}"))
            }
            None => Self::internal(format!("{what}: {e}")),
        }
    }

    /// The problem document.
    #[must_use]
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("https://kring.invalid/problems/{}", self.code),
            title: self.code.title().to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.as_str().to_owned(),
        }
    }
}

/// Whether a statement failed because its table does not exist (PostgreSQL `42P01`, SQLite's
/// "no such table").
fn is_missing_table(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| match d.code().as_deref() {
            Some("42P01") => true,
            Some("1") => d.message().starts_with("no such table"),
            _ => false,
        })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(error = %cause, "internal error");
        }
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
                return Self::new(StatusCode::NOT_FOUND, Code::NotFound, e.to_string())
            }
            D::NotAllowed { .. }
            | D::NotStaffOfGroup { .. }
            | D::NotGuardian { .. }
            | D::NotGuardianInGroup { .. }
            | D::NotParticipant { .. } => return Self::forbidden(e.to_string()),
            D::AlreadyExists { .. }
            | D::ActivityFull { .. }
            | D::AlreadyVolunteering { .. }
            | D::AlreadyDone { .. }
            | D::SlotUnavailable { .. }
            | D::AlreadyBooked { .. }
            | D::OverlappingBooking { .. } => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = if status == StatusCode::CONFLICT {
            Code::Conflict
        } else {
            Code::RuleViolated
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Concurrency { .. } => Self::new(
                StatusCode::CONFLICT,
                Code::ConcurrencyConflict,
                e.to_string(),
            ),
            StoreError::EventTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::PayloadTooLarge,
                e.to_string(),
            ),
            StoreError::Unavailable(_) => Self::unavailable(e.to_string()),
            StoreError::StorageFull(_) => Self::storage_full(e.to_string()),
            // Two requests with one Idempotency-Key at once: the first is being written.
            StoreError::IdempotencyMismatch { .. } => Self::new(
                StatusCode::CONFLICT,
                Code::ConcurrencyConflict,
                "a request with this Idempotency-Key is being handled: retry it in a moment",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::SubjectErased(_) => {
                Self::new(StatusCode::GONE, Code::Erased, e.to_string())
            }
            // The key is gone; wiping its old copy from disk waits for a reader: say to repeat.
            VaultError::SecureDeletion { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::ErasureIncomplete,
                e.to_string(),
            ),
            VaultError::Database(db) => Self::from_database("key vault", db),
            other => Self::internal(other),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::NotCaughtUp { .. } => Self::not_ready(e.to_string()),
            ProjectionError::Database(db) => Self::from_database("read models", db),
            ProjectionError::Store(e) => e.into(),
            ProjectionError::Vault(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_carries_the_codes_name_and_title_and_never_an_internal_cause() {
        let e = ApiError::internal("disk full at /var/lib/kring");
        let problem = e.problem();
        assert_eq!(problem.code, "internal_error");
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("disk full"));
        assert_eq!(e.cause(), Some("disk full at /var/lib/kring"));
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            "slow down",
        );
        let problem = e.problem();
        assert_eq!(problem.kind, "https://kring.invalid/problems/rate_limited");
        assert_eq!(problem.title, "Too many requests");
        assert_eq!(e.cause(), None);
    }

    #[test]
    fn domain_refusals_map_to_their_codes() {
        let conflict: ApiError = DomainError::AlreadyDone { what: "it".into() }.into();
        assert_eq!(
            (conflict.status, conflict.code),
            (StatusCode::CONFLICT, Code::Conflict)
        );
        let invalid: ApiError = DomainError::invalid("name", "empty").into();
        assert_eq!(invalid.code, Code::ValidationFailed);
    }
}
