//! Read receipts: which posts and messages each person has read.
//!
//! Who read what is personal data, so it is kept as events of the reader's own stream
//! (`ItemsRead`, ids only, in `person-<id>`: their export holds them) and counted here:
//!
//! - `post_reads` and `message_reads`: one row per (item, reader), with the time of the first
//!   read. Marking an item read again changes nothing (`ON CONFLICT DO NOTHING`), so an
//!   `ItemsRead` repeating earlier reads is applied idempotently.
//! - `read_posts`: the live posts (published, not removed or expired), and `read_messages`: every
//!   message with its conversation and author. A read counts only for an item listed there, so a
//!   read recorded just after its post expired (the check and the expiry racing) is not kept.
//!
//! A post removed or expired by the retention job takes its reads with it; a person's erasure
//! (`PersonErased`) deletes every read of theirs. Counts then drop: no read linked to an erased
//! person, and none of a post nobody may see any more, remains here. The events stay in the log
//! (ids only, as every fact about an erased person or an expired post does).
//!
//! The queries that count unread posts read the visibility read model's `feed_posts` and
//! `group_audience` beside these tables: "a post in the person's feed" is that model's answer.

mod project;
mod query;

pub use project::ReadsProjection;
pub use query::{
    audience_of_post, message_places, messages_read_by, posts_read_by, readers_of_messages,
    readers_of_post, reads_of, unread_messages, unread_posts_per_group, visible_posts, FeedPlace,
    MessagePlace, ReadItem,
};

/// Its name.
pub const NAME: &str = "reads";
