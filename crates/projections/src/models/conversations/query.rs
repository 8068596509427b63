//! The read side: the inbox, a conversation, its participants and messages.

use crate::db::{from_micros, to_i64, to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::{ChildId, ConversationId, MessageId, PersonId, SchoolId, Sealed};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

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

const INBOX: &str = include_str!("sql/inbox.sql");
const INBOX_PARTICIPANTS: &str = include_str!("sql/inbox_participants.sql");
const CONVERSATION: &str = include_str!("sql/conversation.sql");
const PARTICIPANTS: &str = include_str!("sql/participants.sql");
const MESSAGES: &str = include_str!("sql/messages.sql");
const ABOUT_CHILD: &str = include_str!("sql/about_child.sql");

fn conversation_row(
    r: &AnyRow,
    participants: Vec<PersonId>,
) -> Result<ConversationView, ProjectionError> {
    Ok(ConversationView {
        conversation_id: ConversationId::from_uuid(uuid(&r.try_get::<String, _>(0)?)?),
        school_id: SchoolId::from_uuid(uuid(&r.try_get::<String, _>(1)?)?),
        child_id: ChildId::from_uuid(uuid(&r.try_get::<String, _>(2)?)?),
        participants,
        started_by: person_id(&r.try_get::<String, _>(3)?)?,
        started_at: from_micros(r.try_get(4)?)?,
        last_message_at: from_micros(r.try_get(5)?)?,
        last_position: to_u64(r.try_get(6)?)?,
        last_author_id: r
            .get::<Option<String>, _>(7)
            .as_deref()
            .map(person_id)
            .transpose()?,
        message_count: to_u64(r.try_get(8)?)?,
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
            .entry(r.try_get(0)?)
            .or_default()
            .push(person_id(&r.try_get::<String, _>(1)?)?);
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
                    .remove(&r.try_get::<String, _>(0)?)
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
                position: to_u64(r.try_get(0)?)?,
                message_id: MessageId::from_uuid(uuid(&r.try_get::<String, _>(1)?)?),
                conversation_id: ConversationId::from_uuid(uuid(&r.try_get::<String, _>(2)?)?),
                author_id: person_id(&r.try_get::<String, _>(3)?)?,
                body: serde_json::from_str(&r.try_get::<String, _>(4)?)?,
                at: from_micros(r.try_get(5)?)?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    page.reverse();
    Ok(page)
}

/// The conversations about `child`, oldest first (by id only: who takes part is not asked).
///
/// # Errors
/// Database failures; a stored id this build cannot read.
pub async fn about_child(
    db: &ReadDb,
    child: ChildId,
) -> Result<Vec<ConversationId>, ProjectionError> {
    sqlx::query(ABOUT_CHILD)
        .bind(child.to_string())
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(ConversationId::from_uuid(uuid(
                &r.try_get::<String, _>(0)?,
            )?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// What [`super::conversation_row`] reads, from `conversations c`: the last message (`l`,
    /// none before the first) and the count come from the conversation's messages.
    const HEAD: &str = "SELECT c.conversation_id, c.school_id, c.child_id, c.started_by, c.started_at,
    COALESCE(l.at, c.started_at), COALESCE(l.position, c.started_position), l.author_id,
    (SELECT COUNT(*) FROM conversation_messages n WHERE n.conversation_id = c.conversation_id)
FROM conversations c
LEFT JOIN conversation_messages l ON l.position = (SELECT MAX(m.position) FROM conversation_messages m
    WHERE m.conversation_id = c.conversation_id)
";

    #[test]
    fn every_summary_query_begins_with_its_columns() {
        for sql in [super::INBOX, super::CONVERSATION] {
            assert!(sql.starts_with(HEAD), "{sql}");
        }
    }
}
