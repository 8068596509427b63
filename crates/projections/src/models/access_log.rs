//! The access log: every recorded read of a subject's personal data or content by the operator
//! (support) or a compliance officer, in log order — what a data-protection officer or auditor
//! inspects. Beside it, the content removals each person made: their reasons are that person's
//! personal data (sealed for them), so their export finds the removals here. The table holds
//! ids only; the reasons stay in the log, sealed.

use crate::bulk::Cell;
use crate::db::{from_micros, micros, to_i64, to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::access::{AccessEvent, Subject};
use kring_domain::post::{MediaRemoved, PostEvent, PostRemoved};
use kring_domain::{Actor, ChildId, Event, MediaId, PersonId, PostId};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const TOKEN_REVOKED: &str = include_str!("access_log/sql/token_revoked.sql");

/// The projection.
#[derive(Debug, Default)]
pub struct AccessLogProjection;

/// Its name.
pub const NAME: &str = "access_log";

const SCHEMA: &str = include_str!("access_log/sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("access_log/sql/query_indexes.sql");

const INSERT: &str = include_str!("access_log/sql/insert.sql");

const REVOKE: &str = include_str!("access_log/sql/revoke.sql");

const REMOVED: &str = include_str!("access_log/sql/removed.sql");

const ACCESS_LOG: &str = include_str!("access_log/sql/access_log.sql");
const ACCESS_LOG_OF_SUBJECT: &str = include_str!("access_log/sql/access_log_of_subject.sql");
const POSTS_WITH_REMOVALS_BY: &str = include_str!("access_log/sql/posts_with_removals_by.sql");

#[async_trait]
impl Projection for AccessLogProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["access_log", "access_revoked_tokens", "content_removals"]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let a = match e.event {
            Event::Access(AccessEvent::AccessLogged(a)) => a,
            Event::Access(AccessEvent::TokenRevoked(r)) => {
                tx.execute(
                    &t.sql(REVOKE),
                    vec![
                        Cell::from(r.jti.to_string()),
                        Cell::from(to_i64(e.recorded.position)),
                        Cell::from(micros(r.at)),
                    ],
                )
                .await?;
                return Ok(());
            }
            Event::Post(
                PostEvent::PostRemoved(PostRemoved { post_id, by, .. })
                | PostEvent::MediaRemoved(MediaRemoved { post_id, by, .. }),
            ) => {
                if let Actor::Person(remover) = by {
                    tx.execute(
                        &t.sql(REMOVED),
                        vec![
                            Cell::from(to_i64(e.recorded.position)),
                            Cell::from(remover.to_string()),
                            Cell::from(post_id.to_string()),
                        ],
                    )
                    .await?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let (accessor_kind, accessor_id) = actor_parts(a.accessor);
        tx.execute(
            &t.sql(INSERT),
            vec![
                Cell::from(to_i64(e.recorded.position)),
                Cell::from(e.recorded.event_id.to_string()),
                Cell::from(subject_kind(&a.subject)),
                Cell::from(a.subject.uuid().to_string()),
                Cell::from(accessor_kind),
                Cell::from(accessor_id),
                Cell::from(a.reason.describe(&a.subject)),
                Cell::from(micros(a.at)),
            ],
        )
        .await?;
        Ok(())
    }
}

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

/// The stored kind of a subject (as it is written in events).
const fn subject_kind(subject: &Subject) -> &'static str {
    match subject {
        Subject::Person(_) => "person",
        Subject::Child(_) => "child",
        Subject::Post(_) => "post",
        Subject::Media(_) => "media",
    }
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

/// The stored kind and id of an accessor; the id is empty unless it is a person.
fn actor_parts(actor: Actor) -> (&'static str, String) {
    match actor {
        Actor::Person(p) => ("person", p.to_string()),
        Actor::Operator => ("operator", String::new()),
        Actor::System => ("system", String::new()),
    }
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
