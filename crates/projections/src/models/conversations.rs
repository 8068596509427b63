//! Conversations and the inbox: who takes part in which conversation about which child, and
//! the messages, with their bodies sealed for their authors.
//!
//! A message's `position` is the global log position of the event that posted it: unique,
//! increasing, the same after a rebuild, and usable as a paging cursor.

use crate::db::{from_micros, micros, to_i64, to_u64, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::conversation::ConversationEvent;
use kring_domain::{ChildId, ConversationId, Event, MessageId, PersonId, SchoolId, Sealed};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The projection.
#[derive(Debug, Default)]
pub struct ConversationsProjection;

/// Its name.
pub const NAME: &str = "conversations";

const SCHEMA: &str = "
CREATE TABLE {conversations} (
    conversation_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_message_at BIGINT NOT NULL,
    last_position BIGINT NOT NULL,
    last_author_id TEXT,
    message_count BIGINT NOT NULL
);
CREATE INDEX {conversations}_by_child ON {conversations} (child_id);
CREATE TABLE {conversation_participants} (
    conversation_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, person_id)
);
CREATE INDEX {conversation_participants}_by_person ON {conversation_participants} (person_id);
CREATE TABLE {conversation_messages} (
    position BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    author_id TEXT NOT NULL,
    body TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX {conversation_messages}_by_conversation ON {conversation_messages} (conversation_id, position)";

const START: &str = "INSERT INTO {conversations} (conversation_id, school_id, child_id, started_by, started_at, last_message_at,
    last_position, last_author_id, message_count)
VALUES ($1, $2, $3, $4, $5, $5, $6, NULL, 0)
ON CONFLICT (conversation_id) DO NOTHING";
const PARTICIPATE: &str =
    "INSERT INTO {conversation_participants} (conversation_id, person_id) VALUES ($1, $2)
ON CONFLICT (conversation_id, person_id) DO NOTHING";
const POST: &str = "INSERT INTO {conversation_messages} (position, message_id, conversation_id, author_id, body, at)
VALUES ($1, $2, $3, $4, $5, $6)";
const TOUCH: &str =
    "UPDATE {conversations} SET last_message_at = $1, last_position = $2, last_author_id = $3,
    message_count = message_count + 1
WHERE conversation_id = $4";

#[async_trait]
impl Projection for ConversationsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "conversations",
            "conversation_participants",
            "conversation_messages",
        ]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut AnyConnection,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let Event::Conversation(event) = e.event else {
            return Ok(());
        };
        let position = to_i64(e.recorded.position);
        match event {
            ConversationEvent::ConversationStarted(d) => {
                let conversation = d.conversation_id.to_string();
                sqlx::query(&t.sql(START))
                    .bind(&conversation)
                    .bind(d.school_id.to_string())
                    .bind(d.child_id.to_string())
                    .bind(d.started_by.to_string())
                    .bind(micros(d.at))
                    .bind(position)
                    .execute(&mut *tx)
                    .await?;
                let participate = t.sql(PARTICIPATE);
                for person in d.participants.iter().chain(std::iter::once(&d.started_by)) {
                    sqlx::query(&participate)
                        .bind(&conversation)
                        .bind(person.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            ConversationEvent::MessagePosted(d) => {
                let (conversation, author) =
                    (d.conversation_id.to_string(), d.author_id.to_string());
                sqlx::query(&t.sql(POST))
                    .bind(position)
                    .bind(d.message_id.to_string())
                    .bind(&conversation)
                    .bind(&author)
                    .bind(sealed_text(&d.body)?)
                    .bind(micros(d.at))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&t.sql(TOUCH))
                    .bind(micros(d.at))
                    .bind(position)
                    .bind(&author)
                    .bind(&conversation)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(())
    }
}

/// The stored form of a personal field: the sealed envelope's JSON. A field that is still plain
/// is refused: plaintext personal data never rests in a read model.
fn sealed_text(field: &Sealed<String>) -> Result<String, ProjectionError> {
    if field.envelope().is_none() {
        return Err(ProjectionError::Invalid(
            "a message body reached the conversations read model unsealed; refusing to store plaintext".into(),
        ));
    }
    Ok(serde_json::to_string(field)?)
}

fn uuid(s: &str) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(s)
        .map_err(|e| ProjectionError::Invalid(format!("bad id {s:?} in a read model: {e}")))
}

fn person_id(s: &str) -> Result<PersonId, ProjectionError> {
    Ok(PersonId::from_uuid(uuid(s)?))
}

/// A conversation as an inbox lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationView {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The school.
    pub school_id: SchoolId,
    /// The child it is about.
    pub child_id: ChildId,
    /// Who takes part, by person id.
    pub participants: Vec<PersonId>,
    /// Who started it.
    pub started_by: PersonId,
    /// When.
    pub started_at: DateTime<Utc>,
    /// When the last message was posted (the start, before any).
    pub last_message_at: DateTime<Utc>,
    /// The log position of the last message (of the start, before any).
    pub last_position: u64,
    /// Who wrote the last message.
    pub last_author_id: Option<PersonId>,
    /// How many messages it holds.
    pub message_count: u64,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its author.
    pub author_id: PersonId,
    /// Its text, sealed for its author.
    pub body: Sealed<String>,
    /// When it was posted.
    pub at: DateTime<Utc>,
    /// The global log position that posted it: the paging cursor.
    pub position: u64,
}

const INBOX: &str = "SELECT c.conversation_id, c.school_id, c.child_id, c.started_by, c.started_at, c.last_message_at, c.last_position,
    c.last_author_id, c.message_count
FROM conversation_participants p JOIN conversations c ON c.conversation_id = p.conversation_id
WHERE p.person_id = $1
ORDER BY c.last_message_at DESC, c.last_position DESC";
const INBOX_PARTICIPANTS: &str = "SELECT q.conversation_id, q.person_id
FROM conversation_participants p JOIN conversation_participants q ON q.conversation_id = p.conversation_id
WHERE p.person_id = $1
ORDER BY q.conversation_id, q.person_id";
const CONVERSATION: &str = "SELECT c.conversation_id, c.school_id, c.child_id, c.started_by, c.started_at, c.last_message_at, c.last_position,
    c.last_author_id, c.message_count
FROM conversations c WHERE c.conversation_id = $1";
const PARTICIPANTS: &str =
    "SELECT person_id FROM conversation_participants WHERE conversation_id = $1 ORDER BY person_id";
const MESSAGES: &str = "SELECT position, message_id, conversation_id, author_id, body, at
FROM conversation_messages WHERE conversation_id = $1 AND position < $2
ORDER BY position DESC LIMIT $3";

fn conversation_row(
    r: &AnyRow,
    participants: Vec<PersonId>,
) -> Result<ConversationView, ProjectionError> {
    Ok(ConversationView {
        conversation_id: ConversationId::from_uuid(uuid(&r.get::<String, _>(0))?),
        school_id: SchoolId::from_uuid(uuid(&r.get::<String, _>(1))?),
        child_id: ChildId::from_uuid(uuid(&r.get::<String, _>(2))?),
        participants,
        started_by: person_id(&r.get::<String, _>(3))?,
        started_at: from_micros(r.get(4)),
        last_message_at: from_micros(r.get(5)),
        last_position: to_u64(r.get(6)),
        last_author_id: r
            .get::<Option<String>, _>(7)
            .as_deref()
            .map(person_id)
            .transpose()?,
        message_count: to_u64(r.get(8)),
    })
}

/// The conversations `person` takes part in, newest activity first, each with its
/// participants, message count and last message time.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn inbox(
    db: &ReadDb,
    person: PersonId,
) -> Result<Vec<ConversationView>, ProjectionError> {
    let key = person.to_string();
    let mut participants: BTreeMap<String, Vec<PersonId>> = BTreeMap::new();
    for r in sqlx::query(INBOX_PARTICIPANTS)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
    {
        participants
            .entry(r.get(0))
            .or_default()
            .push(person_id(&r.get::<String, _>(1))?);
    }
    sqlx::query(INBOX)
        .bind(&key)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            conversation_row(
                r,
                participants
                    .remove(&r.get::<String, _>(0))
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// One conversation with its participants; `None` for an unknown one.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn conversation(
    db: &ReadDb,
    conversation: ConversationId,
) -> Result<Option<ConversationView>, ProjectionError> {
    let Some(row) = sqlx::query(CONVERSATION)
        .bind(conversation.to_string())
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(None);
    };
    let people = participants(db, conversation).await?;
    conversation_row(&row, people).map(Some)
}

/// Who takes part in a conversation, by person id; empty for an unknown one.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn participants(
    db: &ReadDb,
    conversation: ConversationId,
) -> Result<Vec<PersonId>, ProjectionError> {
    let ids: Vec<String> = sqlx::query_scalar(PARTICIPANTS)
        .bind(conversation.to_string())
        .fetch_all(db.pool())
        .await?;
    ids.iter().map(|s| person_id(s)).collect()
}

/// A page of a conversation's messages: the latest `limit` posted before `before_position`
/// (all positions when `None`), returned oldest first. To page back, pass the first returned
/// message's position as the next `before_position`.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn messages(
    db: &ReadDb,
    conversation: ConversationId,
    limit: u32,
    before_position: Option<u64>,
) -> Result<Vec<MessageView>, ProjectionError> {
    let rows = sqlx::query(MESSAGES)
        .bind(conversation.to_string())
        .bind(before_position.map_or(i64::MAX, to_i64))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
    let mut page = rows
        .iter()
        .map(|r| {
            Ok(MessageView {
                position: to_u64(r.get(0)),
                message_id: MessageId::from_uuid(uuid(&r.get::<String, _>(1))?),
                conversation_id: ConversationId::from_uuid(uuid(&r.get::<String, _>(2))?),
                author_id: person_id(&r.get::<String, _>(3))?,
                body: serde_json::from_str(&r.get::<String, _>(4))?,
                at: from_micros(r.get(5)),
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    page.reverse();
    Ok(page)
}
