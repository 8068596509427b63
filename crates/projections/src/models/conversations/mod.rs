//! Conversations and the inbox: who takes part in which conversation about which child, and
//! the messages, with their bodies sealed for their authors.
//!
//! A message's `position` is the global log position of the event that posted it: unique,
//! increasing, the same after a rebuild, and usable as a paging cursor.
//!
//! A conversation's row holds what its start said, written once. Its last message and message
//! count are read from its messages when asked (the index on (conversation, position) finds the
//! last one and counts them), not kept in the row: a kept summary is a read and a rewrite of a
//! randomly placed row for every conversation with a new message in a batch (decision 0010,
//! `docs/decisions/0010-facts-as-rows-summaries-when-asked.md`).

mod project;
mod query;

pub use project::ConversationsProjection;
pub use query::{
    about_child, conversation, inbox, messages, participants, ConversationView, MessageView,
};

/// Its name.
pub const NAME: &str = "conversations";
