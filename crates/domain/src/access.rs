//! Access logging: when the operator or a compliance officer reads a subject's personal data or
//! content, that read is itself recorded (stream `access-<subject id>`).

use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ChildId, MediaId, PersonId, PostId};
use crate::validate;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Whose data: a person, a child, or one content item. Each subject has its own data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subject {
    /// A staff member or guardian.
    Person(PersonId),
    /// A child.
    Child(ChildId),
    /// A post.
    Post(PostId),
    /// A media item.
    Media(MediaId),
}

impl Subject {
    /// The subject's UUID.
    #[must_use]
    pub fn uuid(&self) -> Uuid {
        match self {
            Self::Person(id) => id.as_uuid(),
            Self::Child(id) => id.as_uuid(),
            Self::Post(id) => id.as_uuid(),
            Self::Media(id) => id.as_uuid(),
        }
    }
}

/// Someone read a subject's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLogged {
    /// Whose data.
    pub subject: Subject,
    /// Who read it.
    pub accessor: Actor,
    /// Why, e.g. `GET /v1/children/{id}/consents/history` or a support ticket.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A locally signed bearer token was revoked before its expiry: from then on every request
/// carrying it is refused. Recorded in the stream `access-<token id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    /// The token's id (its `jti` claim).
    pub jti: Uuid,
    /// Who revoked it.
    pub by: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Events of an access-log stream.
    pub enum AccessEvent {
        /// See [`AccessLogged`].
        AccessLogged,
        /// See [`TokenRevoked`].
        TokenRevoked,
    }
}

/// Record an access to a subject's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAccess {
    /// Whose data.
    pub subject: Subject,
    /// Why.
    pub reason: String,
}

/// An access log's state: how many reads it holds; for a token's stream, whether it was
/// revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessLog {
    /// Reads recorded.
    pub entries: u64,
    /// Whether the token this stream is about was revoked.
    pub revoked: bool,
}

/// Decides an access-log entry. Any actor's reads can be recorded; the system's are not,
/// because the system reading its own data is not an access by a person.
///
/// # Errors
/// `NotAllowed` for the system, `Invalid` for an empty reason.
pub fn decide(
    _state: &AccessLog,
    command: Command<LogAccess>,
    now: DateTime<Utc>,
) -> Result<Vec<AccessEvent>, DomainError> {
    let Command { actor, action } = command;
    if actor == Actor::System {
        return Err(DomainError::NotAllowed {
            actor,
            action: "be recorded in the access log",
        });
    }
    Ok(vec![AccessLogged {
        subject: action.subject,
        accessor: actor,
        reason: validate::text("reason", &action.reason, 500)?,
        at: now,
    }
    .into()])
}

/// Decides the revocation of the local token `jti` (the platform operator only).
///
/// # Errors
/// `NotAllowed` for anyone else, `AlreadyDone` for a token revoked before.
pub fn revoke_token(
    state: &AccessLog,
    actor: Actor,
    jti: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<AccessEvent>, DomainError> {
    if actor != Actor::Operator {
        return Err(DomainError::NotAllowed {
            actor,
            action: "revoke a token",
        });
    }
    if state.revoked {
        return Err(DomainError::AlreadyDone {
            what: format!("token {jti} revoked"),
        });
    }
    Ok(vec![TokenRevoked {
        jti,
        by: actor,
        at: now,
    }
    .into()])
}

/// Applies an access event to the state.
#[must_use]
pub fn evolve(mut state: AccessLog, event: &AccessEvent) -> AccessLog {
    match event {
        AccessEvent::AccessLogged(_) => state.entries += 1,
        AccessEvent::TokenRevoked(_) => state.revoked = true,
    }
    state
}
