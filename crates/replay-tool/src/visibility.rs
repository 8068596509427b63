//! `who-may-see`: who could see a media item at a moment, and why, replayed from the log.

use crate::error::ToolError;
use crate::locate;
use crate::output::{Report, Rows};
use crate::replay;
use crate::time::format_time;
use chrono::{DateTime, Utc};
use kring_domain::child::Child;
use kring_domain::visibility::{self, ViewReason, Viewer, Withheld};
use kring_domain::{ChildId, MediaId, PostId, StreamName};
use kring_projections::System;
use serde::Serialize;
use std::collections::BTreeMap;

/// The API's viewers answer, with the moment it holds for.
#[derive(Debug, Clone, Serialize)]
pub struct WhoMaySee {
    /// The media item.
    pub media_id: MediaId,
    /// The moment.
    pub at: DateTime<Utc>,
    /// Who may see it, and why.
    pub viewers: Vec<Viewer>,
    /// Who is withheld, because of which child and purpose.
    pub withheld: Vec<Withheld>,
    /// The post it belongs to (not in JSON: the API's shape has no such field).
    #[serde(skip)]
    pub post_id: PostId,
}

/// Who may see `media_id` at `at` (now, with every event, when not given): the roster, the
/// post and the tagged children's consents are folded from their streams up to that moment
/// with the domain's `evolve` functions, then the domain's own rule
/// ([`visibility::who_may_see`]) answers.
///
/// # Errors
/// [`ToolError::NotFound`] for a media item no post carries, or not yet published at `at`;
/// store failures.
pub async fn who_may_see(
    system: &System,
    media_id: MediaId,
    at: Option<DateTime<Utc>>,
) -> Result<WhoMaySee, ToolError> {
    let Some((post_id, post_events)) = locate::post_of_media(system, media_id).await? else {
        return Err(ToolError::NotFound(format!(
            "no media item {media_id} in this log (no post carries it)"
        )));
    };
    let post = replay::post_as_of(&post_events, at);
    let (Some(item), Some(school_id)) = (post.media.get(&media_id), post.school_id) else {
        let when = at.map(format_time).unwrap_or_default();
        return Err(ToolError::NotFound(format!(
            "media item {media_id} was not published yet at {when} (post {post_id})"
        )));
    };
    let roster = replay::school_as_of(
        &replay::load(&system.store, &StreamName::school(school_id)).await?,
        at,
    );
    let mut children: BTreeMap<ChildId, Child> = BTreeMap::new();
    for child_id in &item.tagged {
        let events = replay::load(&system.store, &StreamName::child(*child_id)).await?;
        children.insert(*child_id, replay::child_as_of(&events, at));
    }
    let answer = visibility::who_may_see(&roster, &post, media_id, &children)
        .map_err(|e| ToolError::Corrupt(format!("post {post_id}: {e}")))?;
    Ok(WhoMaySee {
        media_id,
        at: at.unwrap_or_else(Utc::now),
        viewers: answer.viewers,
        withheld: answer.withheld,
        post_id,
    })
}

impl Report for WhoMaySee {
    fn summary(&self) -> Vec<String> {
        vec![format!(
            "Media item {} (post {}) as of {}: {} may see it, {} withheld",
            self.media_id,
            self.post_id,
            format_time(self.at),
            self.viewers.len(),
            self.withheld.len()
        )]
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&["person_id", "may_see", "reason", "child_id", "purpose"]);
        for v in &self.viewers {
            let reason = match v.reason {
                ViewReason::Staff => "staff",
                ViewReason::Audience => "audience",
                ViewReason::OwnChild => "own_child",
            };
            rows.push(vec![
                v.person_id.to_string(),
                "yes".into(),
                reason.into(),
                String::new(),
                String::new(),
            ]);
        }
        for w in &self.withheld {
            for b in &w.because {
                rows.push(vec![
                    w.person_id.to_string(),
                    "no".into(),
                    "no consent".into(),
                    b.child_id.to_string(),
                    b.purpose.to_string(),
                ]);
            }
        }
        rows
    }
}
