//! Access logging: when the operator or a compliance officer reads a subject's personal data or
//! content, that read is itself recorded (stream `access-<subject id>`).

use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ChildId, MediaId, PersonId, PostId};
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

/// Why an audited read happened: which route read the subject. The server chooses it; no text
/// from a request can enter the access log (`docs/decisions/0016-sealed-free-text.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessReason {
    /// `GET /v1/posts/{post_id}`.
    ReadPost,
    /// `GET /v1/media/{media_id}`.
    ReadMedia,
    /// `GET /v1/media/{media_id}/viewers`.
    ReadMediaViewers,
    /// `GET /v1/children/{child_id}/consents`.
    ReadConsents,
    /// `GET /v1/children/{child_id}/consents/history`.
    ReadConsentHistory,
    /// The compliance console listed the subject's name in a search result.
    ConsoleSearch,
    /// The compliance console showed a person's profile and relations.
    ConsoleReadPerson,
    /// The compliance console exported the subject's data.
    ConsoleExport,
    /// A text recorded before reasons were typed that names none of these routes: not shown,
    /// as it could be free text.
    NotKept,
}

impl AccessReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::ReadPost,
        Self::ReadMedia,
        Self::ReadMediaViewers,
        Self::ReadConsents,
        Self::ReadConsentHistory,
        Self::ConsoleSearch,
        Self::ConsoleReadPerson,
        Self::ConsoleExport,
        Self::NotKept,
    ];

    /// How the access log shows a read of `subject` for this reason: the route, as the entries
    /// said when they were text (a post's and a media item's with the id, a child's consent
    /// routes as their template).
    #[must_use]
    pub fn describe(self, subject: &Subject) -> String {
        let id = subject.uuid();
        match self {
            Self::ReadPost => format!("GET /v1/posts/{id}"),
            Self::ReadMedia => format!("GET /v1/media/{id}"),
            Self::ReadMediaViewers => format!("GET /v1/media/{id}/viewers"),
            Self::ReadConsents => "GET /v1/children/{child_id}/consents".to_owned(),
            Self::ReadConsentHistory => "GET /v1/children/{child_id}/consents/history".to_owned(),
            Self::ConsoleSearch => "GET /console/search".to_owned(),
            Self::ConsoleReadPerson => format!("GET /console/people/{id}"),
            Self::ConsoleExport => format!("GET /console/export/{id}"),
            Self::NotKept => "[not kept]".to_owned(),
        }
    }

    /// The reason a text of schema version 1 recorded for `subject`: the route it names, or
    /// [`AccessReason::NotKept`] for any other text.
    #[must_use]
    pub fn from_recorded_text(text: &str, subject: &Subject) -> Self {
        Self::ALL
            .into_iter()
            .filter(|r| *r != Self::NotKept)
            .find(|r| r.describe(subject) == text)
            .unwrap_or(Self::NotKept)
    }
}

/// Someone read a subject's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessLogged {
    /// Whose data.
    pub subject: Subject,
    /// Who read it.
    pub accessor: Actor,
    /// Why: the route that read it.
    pub reason: AccessReason,
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
    pub reason: AccessReason,
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
/// `NotAllowed` for the system.
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
        reason: action.reason,
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
