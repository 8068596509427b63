//! Media visibility ("who may see this photo, and why") and the per-person feed.
//!
//! # How answers are made
//!
//! The rule lives in one place, [`kring_domain::visibility::who_may_see`], and this read model
//! never re-implements it. What the projection keeps is the domain state that rule reads, as
//! event-sourced by the domain's own `evolve` functions:
//!
//! - `visibility_schools`: each school's roster ([`School`], JSON);
//! - `feed_posts`: each post's feed columns (school, group, author, time, liveness and the body
//!   as the sealed envelope's JSON, never plaintext) and, as JSON, the rest of its state ([`Post`]:
//!   its media items with their tags, removed, expired), each fact stored once;
//! - `visibility_consents`: each guardian's latest decision per child and purpose (granted or
//!   withdrawn, and the policy version it answered), one row each — what [`Consents::record`]
//!   keeps for a child, and all that [`Consents::is_effective`] reads. A query folds a child's
//!   rows with the same rule, [`consent::effective`], over the decisions that count under the
//!   roster's current policy.
//!
//! [`Consents::record`]: kring_domain::consent::Consents::record
//! [`Consents::is_effective`]: kring_domain::consent::Consents::is_effective
//! [`consent::effective`]: kring_domain::consent::effective
//! [`School`]: kring_domain::school::School
//!
//! plus two indexes: `media_items` (media item → post, in the order attached, live or not) and
//! `group_audience` (who is in each group's audience: its audience staff and audience guardians,
//! through the domain's `audience_staff` / `audience_guardians`), which picks a person's feed.
//!
//! A query loads the states it needs in one read snapshot and asks the domain rule, so every
//! answer — viewers with their reason, the withheld with the (child, purpose) that withholds
//! them — is by construction what the rule says for the state after the last projected event.
//! Parsed rosters are cached per (generation, checkpoint); with the roster cached, "who may see
//! this item" is one statement (post, checkpoint and the decisions about the children shown).
//!
//! # Why answers are not materialised per (media item, person)
//!
//! A table of viewers per media item grows with media × audience and must be rewritten for every
//! media item showing a child whenever that child's consent changes. In a school year of a
//! 400-pupil school (the rebuild benchmark: 1M events, about 900k media items, each tagging two
//! children, with a class audience of about 50 people) that is ~47M rows written for the posts
//! alone, and each of the ~67k `group_communication` decisions would rewrite the rows of the
//! thousands of items showing that child: the rebuild would be quadratic. Kept as state, every
//! event costs one row write (batched), and a question costs one school roster, one post per
//! asked item and the decisions about the children shown.
//!
//! # Why decisions are rows, not a child's state
//!
//! A child's whole [`Consents`](kring_domain::consent::Consents) as one value would be loaded, parsed,
//! evolved, serialised and written back by every batch with a decision about the child. A
//! decision replaces only its own guardian's earlier one for the purpose, so it is an upsert of
//! its own row, never read back while projecting
//! (`docs/decisions/0010-facts-as-rows-summaries-when-asked.md`).
//!
//! # Batches
//!
//! [`Projection::apply`] only buffers the events this model needs; [`Projection::flush`] loads the
//! touched states in bulk, evolves them in log order and writes each one back once with
//! multi-row `INSERT … ON CONFLICT`. The buffer is kept per generation of tables, because the
//! runtime shares one instance between the serving generation and a rebuilding one.
//!
//! [`Projection::apply`]: crate::projection::Projection::apply
//! [`Projection::flush`]: crate::projection::Projection::flush

use crate::db::from_micros;
use crate::error::ProjectionError;
use kring_domain::post::{MediaItem, Post};
use kring_domain::MediaId;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Its name.
pub const NAME: &str = "visibility";

mod project;
pub(crate) use project::school_of;
mod query;

pub use project::VisibilityProjection;
pub use query::{
    due_for_expiry, feed, feed_after, group_posts, live_media_showing, may_see, media_answer,
    media_place, post, who_may_see, FeedPost, MediaAnswer, MediaPlace,
};

// The stored post state, read back by the projection and the queries alike.

fn id<T: FromStr>(row: &AnyRow, i: usize) -> Result<T, ProjectionError>
where
    T::Err: std::fmt::Display,
{
    parsed(&row.try_get::<String, _>(i)?)
}

/// A stored id or name (a purpose) read back.
fn parsed<T: FromStr>(s: &str) -> Result<T, ProjectionError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| {
        ProjectionError::Invalid(format!("bad value {s:?} in the visibility read model: {e}"))
    })
}

/// What a post's state holds beyond its row's columns, stored as `feed_posts.state` (JSON, so
/// that the one-statement who-may-see reads the tagged children with SQL): its media items with
/// their tags, and whether it was removed or expired. Each fact is stored once: repeating the
/// columns in the state would make `feed_posts`, the largest table, far larger.
#[derive(Serialize)]
struct RestRef<'a> {
    media: &'a BTreeMap<MediaId, MediaItem>,
    removed: bool,
    expired: bool,
}

/// [`RestRef`], read back.
#[derive(Deserialize)]
struct Rest {
    media: BTreeMap<MediaId, MediaItem>,
    removed: bool,
    expired: bool,
}

/// A post's state from the columns `f.post_id, f.school_id, f.group_id, f.author_id,
/// f.posted_at, f.state` at the start of `row`: every query it reads begins with them.
fn post_state(row: &AnyRow) -> Result<Post, ProjectionError> {
    let rest: Rest = json(row, 5)?;
    Ok(Post {
        post_id: Some(id(row, 0)?),
        school_id: Some(id(row, 1)?),
        group_id: Some(id(row, 2)?),
        author_id: Some(id(row, 3)?),
        posted_at: Some(from_micros(row.try_get(4)?)?),
        media: rest.media,
        removed: rest.removed,
        expired: rest.expired,
    })
}

fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, i: usize) -> Result<T, ProjectionError> {
    let s: String = row.try_get(i)?;
    Ok(serde_json::from_str(&s)?)
}

#[cfg(test)]
mod tests {
    /// What [`super::post_state`] reads, in its order.
    const POST_COLUMNS: &str =
        "SELECT f.post_id, f.school_id, f.group_id, f.author_id, f.posted_at, f.state";

    #[test]
    fn every_query_of_a_post_state_begins_with_its_columns() {
        for sql in [
            include_str!("sql/load_posts.sql"),
            include_str!("sql/post_of_media.sql"),
            include_str!("sql/sqlite/who_may_see.sql"),
            include_str!("sql/postgres/who_may_see.sql"),
            include_str!("sql/feed.sql"),
            include_str!("sql/post.sql"),
            include_str!("sql/live_media_showing.sql"),
        ] {
            assert!(sql.starts_with(POST_COLUMNS), "{sql}");
        }
    }
}
