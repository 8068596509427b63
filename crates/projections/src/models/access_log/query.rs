//! The read side: the log of reads, revoked tokens, and the posts a person removed content of.

use super::subject_kind;
use crate::db::{from_micros, to_i64, to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::access::Subject;
use kring_domain::{Actor, ChildId, MediaId, PersonId, PostId};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const TOKEN_REVOKED: &str = include_str!("sql/token_revoked.sql");

const ACCESS_LOG: &str = include_str!("sql/access_log.sql");
const ACCESS_LOG_OF_SUBJECT: &str = include_str!("sql/access_log_of_subject.sql");
const POSTS_WITH_REMOVALS_BY: &str = include_str!("sql/posts_with_removals_by.sql");

/// Whether the local token `jti` was revoked.
///
/// # Errors
/// Database failures.
pub async fn token_revoked(db: &ReadDb, jti: Uuid) -> Result<bool, ProjectionError> {
    Ok(sqlx::query(TOKEN_REVOKED)
        .bind(jti.to_string())
        .fetch_optional(db.pool())
        .await?
        .is_some())
}

fn subject_from(kind: &str, id: &str) -> Result<Subject, ProjectionError> {
    let id = uuid(id)?;
    Ok(match kind {
        "person" => Subject::Person(PersonId::from_uuid(id)),
        "child" => Subject::Child(ChildId::from_uuid(id)),
        "post" => Subject::Post(PostId::from_uuid(id)),
        "media" => Subject::Media(MediaId::from_uuid(id)),
        other => {
            return Err(ProjectionError::Invalid(format!(
                "unknown subject kind {other:?} in the access log"
            )))
        }
    })
}

fn actor_from(kind: &str, id: &str) -> Result<Actor, ProjectionError> {
    match kind {
        "person" => Ok(Actor::Person(PersonId::from_uuid(uuid(id)?))),
        "operator" => Ok(Actor::Operator),
        "system" => Ok(Actor::System),
        other => Err(ProjectionError::Invalid(format!(
            "unknown accessor kind {other:?} in the access log"
        ))),
    }
}

/// One recorded read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// The global position of the event that recorded it: the log's order, and the cursor for
    /// the next page.
    pub position: u64,
    /// That event.
    pub event_id: Uuid,
    /// Whose data was read.
    pub subject: Subject,
    /// Who read it: a person (a compliance officer) or the operator (support).
    pub accessor: Actor,
    /// Why: the route that read it, as text (see [`kring_domain::access::AccessReason::describe`]).
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

fn entry_from(row: &AnyRow) -> Result<AccessEntry, ProjectionError> {
    Ok(AccessEntry {
        position: to_u64(row.try_get(0)?)?,
        event_id: uuid(&row.try_get::<String, _>(1)?)?,
        subject: subject_from(&row.try_get::<String, _>(2)?, &row.try_get::<String, _>(3)?)?,
        accessor: actor_from(&row.try_get::<String, _>(4)?, &row.try_get::<String, _>(5)?)?,
        reason: row.try_get(6)?,
        at: from_micros(row.try_get(7)?)?,
    })
}

/// The recorded reads, of one `subject` or of all, in log order: at most `limit` entries after
/// position `after_position` (0 for the start; pass the last entry's position for the next page).
///
/// # Errors
/// Database failures.
pub async fn access_log(
    db: &ReadDb,
    subject: Option<Subject>,
    limit: u32,
    after_position: u64,
) -> Result<Vec<AccessEntry>, ProjectionError> {
    let rows = match subject {
        Some(subject) => {
            sqlx::query(ACCESS_LOG_OF_SUBJECT)
                .bind(subject_kind(&subject))
                .bind(subject.uuid().to_string())
                .bind(to_i64(after_position))
                .bind(i64::from(limit))
                .fetch_all(db.pool())
                .await?
        }
        None => {
            sqlx::query(ACCESS_LOG)
                .bind(to_i64(after_position))
                .bind(i64::from(limit))
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.iter().map(entry_from).collect()
}

/// The posts in which `person` removed the post or a media item, each once, in the order of
/// their first removal by them.
///
/// # Errors
/// Database failures; a stored id that is not one.
pub async fn posts_with_removals_by(
    db: &ReadDb,
    person: PersonId,
) -> Result<Vec<PostId>, ProjectionError> {
    let rows = sqlx::query(POSTS_WITH_REMOVALS_BY)
        .bind(person.to_string())
        .fetch_all(db.pool())
        .await?;
    let mut posts = Vec::with_capacity(rows.len());
    for row in &rows {
        let post = PostId::from_uuid(uuid(&row.try_get::<String, _>(0)?)?);
        if !posts.contains(&post) {
            posts.push(post);
        }
    }
    Ok(posts)
}
