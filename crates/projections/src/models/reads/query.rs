//! The read side: unread counts, who read an item, which of some items a person read.

use crate::bulk::{select_in, Cell};
use crate::db::{to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use kring_domain::{ConversationId, GroupId, MessageId, PersonId, PostId, SchoolId};
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};

const UNREAD_POSTS_PER_GROUP: &str = include_str!("sql/unread_posts_per_group.sql");
const UNREAD_MESSAGES: &str = include_str!("sql/unread_messages.sql");
const POSTS_READ_BY: &str = include_str!("sql/posts_read_by.sql");
const MESSAGES_READ_BY: &str = include_str!("sql/messages_read_by.sql");
const READERS_OF_MESSAGES: &str = include_str!("sql/readers_of_messages.sql");
const READERS_OF_POST: &str = include_str!("sql/readers_of_post.sql");
const MESSAGES: &str = include_str!("sql/messages.sql");
const READS_OF: &str = include_str!("sql/reads_of.sql");
const VISIBLE_POSTS: &str = include_str!("sql/visible_posts.sql");
const AUDIENCE_OF_POST: &str = include_str!("sql/audience_of_post.sql");

fn parsed<T: From<uuid::Uuid>>(s: &str) -> Result<T, ProjectionError> {
    Ok(T::from(uuid(s)?))
}

fn texts(ids: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    ids.into_iter().map(|i| i.to_string()).collect()
}

/// Per group of `person`'s feed, how many live posts they have not read (their own posts
/// left out); groups with none unread are not listed.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn unread_posts_per_group(
    db: &ReadDb,
    person: PersonId,
) -> Result<BTreeMap<GroupId, u64>, ProjectionError> {
    let key = person.to_string();
    let rows = sqlx::query(UNREAD_POSTS_PER_GROUP)
        .bind(&key)
        .bind(&key)
        .bind(&key)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((parsed(&r.try_get::<String, _>(0)?)?, to_u64(r.try_get(1)?)?)))
        .collect()
}

/// Per conversation of `conversations`, how many messages by others `person` has not read;
/// conversations with none unread are not listed.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn unread_messages(
    db: &ReadDb,
    person: PersonId,
    conversations: &[ConversationId],
) -> Result<BTreeMap<ConversationId, u64>, ProjectionError> {
    let key = Cell::Text(person.to_string());
    let mut conn = db.pool().acquire().await?;
    let rows = select_in(
        &mut *conn,
        UNREAD_MESSAGES,
        &[key.clone(), key],
        &texts(conversations),
    )
    .await?;
    rows.iter()
        .map(|r| Ok((parsed(&r.try_get::<String, _>(0)?)?, to_u64(r.try_get(1)?)?)))
        .collect()
}

/// Which of `posts` `person` has read.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn posts_read_by(
    db: &ReadDb,
    person: PersonId,
    posts: &[PostId],
) -> Result<BTreeSet<PostId>, ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    let rows = select_in(
        &mut *conn,
        POSTS_READ_BY,
        &[Cell::Text(person.to_string())],
        &texts(posts),
    )
    .await?;
    rows.iter()
        .map(|r| parsed(&r.try_get::<String, _>(0)?))
        .collect()
}

/// Which of `messages` `person` has read.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn messages_read_by(
    db: &ReadDb,
    person: PersonId,
    messages: &[MessageId],
) -> Result<BTreeSet<MessageId>, ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    let rows = select_in(
        &mut *conn,
        MESSAGES_READ_BY,
        &[Cell::Text(person.to_string())],
        &texts(messages),
    )
    .await?;
    rows.iter()
        .map(|r| parsed(&r.try_get::<String, _>(0)?))
        .collect()
}

/// Who has read each of `messages` (messages nobody read are not listed).
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn readers_of_messages(
    db: &ReadDb,
    messages: &[MessageId],
) -> Result<BTreeMap<MessageId, BTreeSet<PersonId>>, ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    let mut out: BTreeMap<MessageId, BTreeSet<PersonId>> = BTreeMap::new();
    for r in select_in(&mut *conn, READERS_OF_MESSAGES, &[], &texts(messages)).await? {
        out.entry(parsed(&r.try_get::<String, _>(0)?)?)
            .or_default()
            .insert(parsed(&r.try_get::<String, _>(1)?)?);
    }
    Ok(out)
}

/// Who has read `post`.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn readers_of_post(
    db: &ReadDb,
    post: PostId,
) -> Result<BTreeSet<PersonId>, ProjectionError> {
    let ids: Vec<String> = sqlx::query_scalar(READERS_OF_POST)
        .bind(post.to_string())
        .fetch_all(db.pool())
        .await?;
    ids.iter().map(|s| parsed(s)).collect()
}

/// Where a message was posted, and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MessagePlace {
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its author.
    pub author_id: PersonId,
}

/// The conversations and authors of those of `messages` that were posted (unknown ids are left
/// out).
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn message_places(
    db: &ReadDb,
    messages: &[MessageId],
) -> Result<Vec<MessagePlace>, ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    select_in(&mut *conn, MESSAGES, &[], &texts(messages))
        .await?
        .iter()
        .map(|r| {
            Ok(MessagePlace {
                message_id: parsed(&r.try_get::<String, _>(0)?)?,
                conversation_id: parsed(&r.try_get::<String, _>(1)?)?,
                author_id: parsed(&r.try_get::<String, _>(2)?)?,
            })
        })
        .collect()
}

/// One item a person has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ReadItem {
    /// A post.
    Post(PostId),
    /// A message.
    Message(MessageId),
}

/// Every read of `person` the read model holds (posts first, then messages, by id).
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn reads_of(db: &ReadDb, person: PersonId) -> Result<Vec<ReadItem>, ProjectionError> {
    let key = person.to_string();
    let rows = sqlx::query(READS_OF)
        .bind(&key)
        .bind(&key)
        .fetch_all(db.pool())
        .await?;
    let mut items = rows
        .iter()
        .map(|r| {
            let kind: String = r.try_get(0)?;
            let item: String = r.try_get(1)?;
            Ok(match kind.as_str() {
                "post" => ReadItem::Post(parsed(&item)?),
                _ => ReadItem::Message(parsed(&item)?),
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    items.sort_unstable();
    Ok(items)
}

/// A post in a person's feed, with its school and audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FeedPlace {
    /// The post.
    pub post_id: PostId,
    /// Its school.
    pub school_id: SchoolId,
    /// Its audience.
    pub group_id: GroupId,
}

/// Those of `posts` that are in `person`'s feed (live, and the person in their audience): the
/// visibility read model's answer, for many posts in one statement.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn visible_posts(
    db: &ReadDb,
    person: PersonId,
    posts: &[PostId],
) -> Result<Vec<FeedPlace>, ProjectionError> {
    let mut conn = db.pool().acquire().await?;
    select_in(
        &mut *conn,
        VISIBLE_POSTS,
        &[Cell::Text(person.to_string())],
        &texts(posts),
    )
    .await?
    .iter()
    .map(|r| {
        Ok(FeedPlace {
            post_id: parsed(&r.try_get::<String, _>(0)?)?,
            school_id: parsed(&r.try_get::<String, _>(1)?)?,
            group_id: parsed(&r.try_get::<String, _>(2)?)?,
        })
    })
    .collect()
}

/// Everyone who may see `post` (staff and guardians of its audience; nobody once it is removed
/// or expired): the visibility read model's answer.
///
/// # Errors
/// Database failures; a stored row this build cannot read.
pub async fn audience_of_post(
    db: &ReadDb,
    post: PostId,
) -> Result<BTreeSet<PersonId>, ProjectionError> {
    let ids: Vec<String> = sqlx::query_scalar(AUDIENCE_OF_POST)
        .bind(post.to_string())
        .fetch_all(db.pool())
        .await?;
    ids.iter().map(|s| parsed(s)).collect()
}
