//! The write side: applying reads, posts, messages and erasures.

use super::NAME;
use crate::bulk::{Cell, Deferred, Statement};
use crate::db::{micros, to_i64};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use kring_domain::conversation::ConversationEvent;
use kring_domain::person::PersonEvent;
use kring_domain::post::PostEvent;
use kring_domain::Event;

/// The projection. A read depends on what came before it in the batch (the post published, the
/// message posted, the reader not yet erased), so each event's statements are deferred, in
/// order, to the batch's flush.
#[derive(Debug, Default)]
pub struct ReadsProjection {
    deferred: Deferred,
}

const SCHEMA: &str = include_str!("sql/schema.sql");
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const PUBLISH: &str = include_str!("sql/publish.sql");
const POST_GONE: &str = include_str!("sql/post_gone.sql");
const FORGET_POST_READS: &str = include_str!("sql/forget_post_reads.sql");
const MESSAGE: &str = include_str!("sql/message.sql");
const READ_POST: &str = include_str!("sql/read_post.sql");
const READ_MESSAGE: &str = include_str!("sql/read_message.sql");
const FORGET_READER_POSTS: &str = include_str!("sql/forget_reader_posts.sql");
const FORGET_READER_MESSAGES: &str = include_str!("sql/forget_reader_messages.sql");

fn id(value: impl ToString) -> Cell {
    Cell::Text(value.to_string())
}

#[async_trait]
impl Projection for ReadsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["read_posts", "read_messages", "post_reads", "message_reads"]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        _tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let mut out = Vec::new();
        match e.event {
            Event::Post(PostEvent::PostPublished(d)) => {
                out.push(Statement::new(PUBLISH, vec![id(d.post_id)]));
            }
            // Gone for everyone: its reads go with it.
            Event::Post(PostEvent::PostRemoved(d)) => post_gone(&mut out, d.post_id),
            Event::Post(PostEvent::PostExpired(d)) => post_gone(&mut out, d.post_id),
            Event::Conversation(ConversationEvent::MessagePosted(d)) => {
                out.push(Statement::new(
                    MESSAGE,
                    vec![
                        id(d.message_id),
                        id(d.conversation_id),
                        id(d.author_id),
                        Cell::from(to_i64(e.recorded.position)),
                    ],
                ));
            }
            Event::Person(PersonEvent::ItemsRead(d)) => {
                let at = micros(d.at);
                for post in &d.post_ids {
                    out.push(Statement::new(
                        READ_POST,
                        vec![id(post), id(d.person_id), Cell::from(at)],
                    ));
                }
                for message in &d.message_ids {
                    out.push(Statement::new(
                        READ_MESSAGE,
                        vec![id(message), id(d.person_id), Cell::from(at)],
                    ));
                }
            }
            // No read of an erased person remains.
            Event::Person(PersonEvent::PersonErased(d)) => {
                out.push(Statement::new(FORGET_READER_POSTS, vec![id(d.person_id)]));
                out.push(Statement::new(
                    FORGET_READER_MESSAGES,
                    vec![id(d.person_id)],
                ));
            }
            _ => {}
        }
        self.deferred.push(t, e.recorded.position, out);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        self.deferred.flush(tx, t).await
    }
}

fn post_gone(out: &mut Vec<Statement>, post: kring_domain::PostId) {
    out.push(Statement::new(FORGET_POST_READS, vec![id(post)]));
    out.push(Statement::new(POST_GONE, vec![id(post)]));
}
