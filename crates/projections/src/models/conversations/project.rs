//! The write side: applying conversation events.

use super::NAME;
use crate::bulk::{select_packed, Bulk};
use crate::db::{micros, sealed_text, to_i64, uuid};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use kring_domain::conversation::ConversationEvent;
use kring_domain::{ConversationId, Event};

/// The projection. It buffers a batch's events and writes them in a few statements on flush.
#[derive(Debug, Default)]
pub struct ConversationsProjection {
    buffer: Buffer<(u64, ConversationEvent)>,
}

const SCHEMA: &str = include_str!("sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const STARTED: &str = include_str!("sql/started.sql");
const START: &str = include_str!("sql/start.sql");
const PARTICIPATE: &str = include_str!("sql/participate.sql");
const PARTICIPATE_SUFFIX: &str = include_str!("sql/participate_suffix.sql");
const POST: &str = include_str!("sql/post.sql");

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

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        _tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let needed = match e.event {
            Event::Conversation(event) => Some((e.recorded.position, event.clone())),
            _ => None,
        };
        self.buffer.push(t, e.recorded.position, needed);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let batch = self.buffer.take(t);
        if batch.is_empty() {
            return Ok(());
        }
        // The conversations messages go to, but for those started in this batch: each must have
        // started before.
        let mut wanted = std::collections::BTreeSet::new();
        let mut started = std::collections::BTreeSet::new();
        for (_, e) in &batch {
            match e {
                ConversationEvent::ConversationStarted(d) => {
                    started.insert(d.conversation_id);
                }
                ConversationEvent::MessagePosted(d) if !started.contains(&d.conversation_id) => {
                    wanted.insert(d.conversation_id.to_string());
                }
                ConversationEvent::MessagePosted(_) => {}
            }
        }
        let ids: Vec<String> = wanted.into_iter().collect();
        let mut known = std::collections::BTreeSet::new();
        for row in select_packed(tx, &t.sql(STARTED), &[], &ids).await?.rows() {
            known.insert(ConversationId::from_uuid(uuid(
                &row?.try_get::<String>(0)?,
            )?));
        }
        let mut conversations = Bulk::new(t.sql(START), 6, "");
        let mut participants = Bulk::new(t.sql(PARTICIPATE), 2, PARTICIPATE_SUFFIX);
        let mut messages = Bulk::new(t.sql(POST), 6, "");
        for (position, event) in batch {
            let position = to_i64(position);
            match event {
                ConversationEvent::ConversationStarted(d) => {
                    let conversation = d.conversation_id.to_string();
                    for person in d.participants.iter().chain(std::iter::once(&d.started_by)) {
                        participants.row([conversation.as_str().into(), person.to_string().into()]);
                    }
                    conversations.row([
                        conversation.into(),
                        d.school_id.to_string().into(),
                        d.child_id.to_string().into(),
                        d.started_by.to_string().into(),
                        micros(d.at).into(),
                        position.into(),
                    ]);
                    known.insert(d.conversation_id);
                }
                ConversationEvent::MessagePosted(d) => {
                    if !known.contains(&d.conversation_id) {
                        return Err(ProjectionError::Invalid(format!(
                            "message {} posted to conversation {}, which never started",
                            d.message_id, d.conversation_id
                        )));
                    }
                    messages.row([
                        position.into(),
                        d.message_id.to_string().into(),
                        d.conversation_id.to_string().into(),
                        d.author_id.to_string().into(),
                        sealed_text(&d.body, "a message body")?.into(),
                        micros(d.at).into(),
                    ]);
                }
            }
        }
        conversations.execute(tx).await?;
        participants.execute(tx).await?;
        messages.execute(tx).await?;
        Ok(())
    }
}
