//! Posts with photos and videos in a group, tagging of the children shown, content removal and
//! expiry by retention.

use crate::access::Subject;
use crate::actor::{Actor, Command};
use crate::error::DomainError;
use crate::event::event_enum;
use crate::ids::{ChildId, GroupId, MediaId, PersonId, PostId, SchoolId};
use crate::school::School;
use crate::sealed::Sealed;
use crate::validate;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The most media items one post carries.
pub const MAX_MEDIA_PER_POST: usize = 50;

/// The rule on a post's list of media: at most [`MAX_MEDIA_PER_POST`], none twice. Callers may
/// check it before any I/O on the items; [`decide`] checks it again.
///
/// # Errors
/// [`DomainError::Invalid`] on `media`.
pub fn check_media_list(media: impl ExactSizeIterator<Item = MediaId>) -> Result<(), DomainError> {
    if media.len() > MAX_MEDIA_PER_POST {
        return Err(DomainError::invalid(
            "media",
            format!("at most {MAX_MEDIA_PER_POST} items per post"),
        ));
    }
    let mut seen = BTreeSet::new();
    for media_id in media {
        if !seen.insert(media_id) {
            return Err(DomainError::invalid(
                "media",
                format!("media item {media_id} is attached twice"),
            ));
        }
    }
    Ok(())
}

/// A photo or video as attached to a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaAttachment {
    /// The media item (uploaded before posting).
    pub media_id: MediaId,
    /// Its content type: `image/*` or `video/*`.
    pub content_type: String,
    /// The children shown in it.
    pub tagged_children: Vec<ChildId>,
}

/// A media item's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaItem {
    /// Children shown in it.
    pub tagged: BTreeSet<ChildId>,
    /// Whether it was removed.
    pub removed: bool,
}

/// A post's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    /// The post, once published.
    pub post_id: Option<PostId>,
    /// Its school.
    pub school_id: Option<SchoolId>,
    /// Its audience.
    pub group_id: Option<GroupId>,
    /// Who posted it.
    pub author_id: Option<PersonId>,
    /// When.
    pub posted_at: Option<DateTime<Utc>>,
    /// Its media items, in the order attached.
    pub media: BTreeMap<MediaId, MediaItem>,
    /// Whether the whole post was removed.
    pub removed: bool,
    /// Whether the retention job expired it.
    pub expired: bool,
}

impl Post {
    /// Whether `media_id` can still be seen by anyone: the post is live and the item not removed.
    #[must_use]
    pub fn media_is_live(&self, media_id: MediaId) -> bool {
        !self.removed && !self.expired && self.media.get(&media_id).is_some_and(|m| !m.removed)
    }
}

/// Staff published a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostPublished {
    /// The post.
    pub post_id: PostId,
    /// The school.
    pub school_id: SchoolId,
    /// The audience.
    pub group_id: GroupId,
    /// The author.
    pub author_id: PersonId,
    /// The text (personal, sealed for the post).
    pub body: Sealed<String>,
    /// Photos and videos, with the children tagged in each.
    pub media: Vec<MediaAttachment>,
    /// When.
    pub at: DateTime<Utc>,
    /// Whether the text is not empty (a post needs text or media), known without opening it:
    /// who is notified of a post with no text is who may see one of its media items. `None`
    /// in posts published before it was recorded: read as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_body: Option<bool>,
}

/// The author edited a post's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostEdited {
    /// The post.
    pub post_id: PostId,
    /// The new text (personal, sealed for the post).
    pub body: Sealed<String>,
    /// Who edited.
    pub by: PersonId,
}

/// Staff tagged a child in a media item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildTagged {
    /// The post.
    pub post_id: PostId,
    /// The media item.
    pub media_id: MediaId,
    /// The child.
    pub child_id: ChildId,
    /// Who tagged.
    pub by: PersonId,
}

/// Staff untagged a child from a media item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildUntagged {
    /// The post.
    pub post_id: PostId,
    /// The media item.
    pub media_id: MediaId,
    /// The child.
    pub child_id: ChildId,
    /// Who untagged.
    pub by: PersonId,
}

/// Why content was removed, as the log keeps it (`{"kind": …}`). Free text typed by a person
/// can name a child, so it is personal data: it rests sealed for the person who typed it and is
/// erased with them. Everything else is a fixed value, not free text
/// (`docs/decisions/0016-sealed-free-text.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemovalReason {
    /// Typed by the person who removed it; sealed for that person (the remover).
    Given {
        /// The text (personal, sealed for the remover).
        text: Sealed<String>,
    },
    /// The system removed a media item showing a child whose personal data was erased.
    ShowsAnErasedChild,
    /// The start-up sweep recorded a removal whose keys were destroyed before the process
    /// stopped (the request's own reason was not kept).
    InterruptedRemoval,
    /// The platform operator removed it. The operator is no data subject, so it gives no free
    /// text: nothing could erase it.
    ByTheOperator,
    /// A free-text reason recorded before reasons were sealed by an actor who is no data subject
    /// (the operator, the system): not shown, since no erasure could ever reach it.
    NotKept,
}

impl RemovalReason {
    /// What a fixed reason says; `None` for a person's own text.
    #[must_use]
    pub const fn fixed_text(&self) -> Option<&'static str> {
        match self {
            Self::Given { .. } => None,
            Self::ShowsAnErasedChild => Some(SHOWS_AN_ERASED_CHILD),
            Self::InterruptedRemoval => Some(INTERRUPTED_REMOVAL),
            Self::ByTheOperator => Some("removed by the platform operator"),
            Self::NotKept => Some("a reason given before reasons were sealed; not kept"),
        }
    }
}

/// What [`RemovalReason::ShowsAnErasedChild`] says (and the text such removals kept before
/// reasons were typed).
pub const SHOWS_AN_ERASED_CHILD: &str = "it shows a child whose personal data was erased";

/// What [`RemovalReason::InterruptedRemoval`] says (and the text such removals kept before
/// reasons were typed).
pub const INTERRUPTED_REMOVAL: &str =
    "removal completed at start-up: its keys were destroyed before the process stopped";

/// Why a removal is asked for: free text from a person, or one of the fixed reasons of the
/// actors that are no data subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalGrounds {
    /// Free text typed by a person (at most 500 characters); sealed for them.
    Text(String),
    /// The system: the item shows a child whose personal data was erased.
    ShowsAnErasedChild,
    /// The system: completing a removal whose keys were destroyed already.
    InterruptedRemoval,
    /// The operator, who gives no free text.
    ByTheOperator,
}

impl From<&str> for RemovalGrounds {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for RemovalGrounds {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

/// Rule: free text only from a person (sealed for them); a fixed reason only from the actor it
/// belongs to.
fn removal_reason(actor: Actor, grounds: RemovalGrounds) -> Result<RemovalReason, DomainError> {
    match (grounds, actor) {
        (RemovalGrounds::Text(text), Actor::Person(p)) => Ok(RemovalReason::Given {
            text: Sealed::new(Subject::Person(p), validate::text("reason", &text, 500)?),
        }),
        (RemovalGrounds::Text(_), _) => Err(DomainError::invalid(
            "reason",
            format!(
                "{actor} gives no free-text reason: it would rest with no data subject to erase it with"
            ),
        )),
        (RemovalGrounds::ShowsAnErasedChild, Actor::System) => {
            Ok(RemovalReason::ShowsAnErasedChild)
        }
        (RemovalGrounds::InterruptedRemoval, Actor::System) => {
            Ok(RemovalReason::InterruptedRemoval)
        }
        (RemovalGrounds::ByTheOperator, Actor::Operator) => Ok(RemovalReason::ByTheOperator),
        (RemovalGrounds::ByTheOperator, Actor::Person(_)) => Err(DomainError::invalid(
            "reason",
            "must not be empty",
        )),
        (RemovalGrounds::ShowsAnErasedChild | RemovalGrounds::InterruptedRemoval, _)
        | (RemovalGrounds::ByTheOperator, Actor::System) => Err(DomainError::NotAllowed {
            actor,
            action: "give a reason that belongs to another actor",
        }),
    }
}

/// One media item was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRemoved {
    /// The post.
    pub post_id: PostId,
    /// The media item.
    pub media_id: MediaId,
    /// Why (a person's text sealed for them, or a fixed reason).
    pub reason: RemovalReason,
    /// Who removed it.
    pub by: Actor,
}

/// The whole post was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostRemoved {
    /// The post.
    pub post_id: PostId,
    /// Why (a person's text sealed for them, or a fixed reason).
    pub reason: RemovalReason,
    /// Who removed it.
    pub by: Actor,
}

/// The retention job expired the post and its media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostExpired {
    /// The post.
    pub post_id: PostId,
    /// The retention period that ran out, in days.
    pub retention_days: u32,
}

event_enum! {
    /// Events of a post stream.
    pub enum PostEvent {
        /// See [`PostPublished`].
        PostPublished,
        /// See [`PostEdited`].
        PostEdited,
        /// See [`ChildTagged`].
        ChildTagged,
        /// See [`ChildUntagged`].
        ChildUntagged,
        /// See [`MediaRemoved`].
        MediaRemoved,
        /// See [`PostRemoved`].
        PostRemoved,
        /// See [`PostExpired`].
        PostExpired,
    }
}

/// What can be asked of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostAction {
    /// Publish a post (staff assigned to the group; a director for the school group).
    Publish {
        /// The new post's id.
        post_id: PostId,
        /// The audience.
        group_id: GroupId,
        /// The text.
        body: String,
        /// Photos and videos with tagged children.
        media: Vec<MediaAttachment>,
    },
    /// Edit the text (the author).
    Edit {
        /// The new text.
        body: String,
    },
    /// Tag a child in a media item (staff of the group).
    Tag {
        /// The media item.
        media_id: MediaId,
        /// The child.
        child_id: ChildId,
    },
    /// Untag a child (staff of the group).
    Untag {
        /// The media item.
        media_id: MediaId,
        /// The child.
        child_id: ChildId,
    },
    /// Remove one media item (the author, a director, the operator).
    RemoveMedia {
        /// The media item.
        media_id: MediaId,
        /// Why.
        reason: RemovalGrounds,
    },
    /// Remove the whole post (the author, a director, the operator).
    Remove {
        /// Why.
        reason: RemovalGrounds,
    },
    /// Expire the post after the school's retention period (the system).
    Expire,
}

/// The state `decide` needs: the post and its school's roster.
#[derive(Debug, Clone, Copy)]
pub struct PostContext<'a> {
    /// The post's state.
    pub post: &'a Post,
    /// The school's roster.
    pub school: &'a School,
}

struct Live {
    post_id: PostId,
    group_id: GroupId,
    author_id: PersonId,
}

/// Rule: a removed (or expired) post or media item cannot be edited, tagged or removed twice.
fn live(post: &Post, media_id: Option<MediaId>, action: &'static str) -> Result<Live, DomainError> {
    let (Some(post_id), Some(group_id), Some(author_id)) =
        (post.post_id, post.group_id, post.author_id)
    else {
        return Err(DomainError::not_found("post", uuid::Uuid::nil()));
    };
    if post.removed || post.expired {
        return Err(DomainError::ContentRemoved {
            post_id,
            media_id: None,
            what: format!("post {post_id}"),
            action,
        });
    }
    if let Some(media_id) = media_id {
        match post.media.get(&media_id) {
            None => return Err(DomainError::not_found("media item", media_id)),
            Some(m) if m.removed => {
                return Err(DomainError::ContentRemoved {
                    post_id,
                    media_id: Some(media_id),
                    what: format!("media item {media_id}"),
                    action,
                })
            }
            Some(_) => {}
        }
    }
    Ok(Live {
        post_id,
        group_id,
        author_id,
    })
}

/// The author, a director, the operator, or the system (removing what shows an erased child).
fn may_remove(school: &School, actor: Actor, author_id: PersonId) -> bool {
    actor == Actor::Operator
        || actor == Actor::System
        || actor == Actor::Person(author_id)
        || school.is_director(actor)
}

fn staff_person(
    school: &School,
    actor: Actor,
    group_id: GroupId,
    action: &'static str,
) -> Result<PersonId, DomainError> {
    match actor.person() {
        Some(p) if school.is_group_staff(actor, group_id) => Ok(p),
        _ => Err(DomainError::NotStaffOfGroup {
            actor,
            group_id,
            action,
        }),
    }
}

fn content_type(value: &str) -> Result<String, DomainError> {
    let value = value.trim().to_ascii_lowercase();
    let ok = value.split_once('/').is_some_and(|(top, sub)| {
        (top == "image" || top == "video") && !sub.is_empty() && !sub.contains('/')
    });
    if ok {
        Ok(value)
    } else {
        Err(DomainError::invalid(
            "content_type",
            "must be image/* or video/*",
        ))
    }
}

/// Decides a command about a post.
///
/// # Errors
/// The [`DomainError`] of the first rule the command breaks; nothing is produced then.
pub fn decide(
    ctx: &PostContext<'_>,
    command: Command<PostAction>,
    now: DateTime<Utc>,
) -> Result<Vec<PostEvent>, DomainError> {
    let PostContext { post, school } = *ctx;
    let Command { actor, action } = command;
    let event: PostEvent = match action {
        PostAction::Publish {
            post_id,
            group_id,
            body,
            media,
        } => {
            if post.post_id.is_some() {
                return Err(DomainError::AlreadyExists {
                    kind: "post",
                    id: post_id.into(),
                });
            }
            let school_id = school.id()?;
            school.group(group_id)?;
            let author_id = match actor.person() {
                Some(p) if school.may_post_to(actor, group_id) => p,
                _ => {
                    return Err(DomainError::NotStaffOfGroup {
                        actor,
                        group_id,
                        action: "post to the group",
                    })
                }
            };
            school.open_group(group_id)?;
            if body.trim().is_empty() && media.is_empty() {
                return Err(DomainError::invalid("body", "a post needs text or media"));
            }
            check_media_list(media.iter().map(|m| m.media_id))?;
            let mut checked = Vec::with_capacity(media.len());
            for item in media {
                let mut tagged = BTreeSet::new();
                for child_id in &item.tagged_children {
                    if !school.in_audience(group_id, *child_id) {
                        return Err(DomainError::ChildNotInAudience {
                            child_id: *child_id,
                            group_id,
                        });
                    }
                    tagged.insert(*child_id);
                }
                checked.push(MediaAttachment {
                    media_id: item.media_id,
                    content_type: content_type(&item.content_type)?,
                    tagged_children: tagged.into_iter().collect(),
                });
            }
            let body = if body.trim().is_empty() {
                String::new()
            } else {
                validate::text("body", &body, 10_000)?
            };
            PostPublished {
                post_id,
                school_id,
                group_id,
                author_id,
                has_body: Some(!body.is_empty()),
                body: Sealed::new(Subject::Post(post_id), body),
                media: checked,
                at: now,
            }
            .into()
        }
        PostAction::Edit { body } => {
            let live = live(post, None, "edited")?;
            // The author, while still on the group's staff: one who left edits nothing.
            if actor != Actor::Person(live.author_id) || !school.may_post_to(actor, live.group_id) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "edit a post (only its author, while staff of its group, can)",
                });
            }
            PostEdited {
                post_id: live.post_id,
                body: Sealed::new(
                    Subject::Post(live.post_id),
                    validate::text("body", &body, 10_000)?,
                ),
                by: live.author_id,
            }
            .into()
        }
        PostAction::Tag { media_id, child_id } => {
            let live = live(post, Some(media_id), "tagged")?;
            let by = staff_person(school, actor, live.group_id, "tag children in this post")?;
            if !school.in_audience(live.group_id, child_id) {
                return Err(DomainError::ChildNotInAudience {
                    child_id,
                    group_id: live.group_id,
                });
            }
            if post.media[&media_id].tagged.contains(&child_id) {
                return Err(DomainError::AlreadyDone {
                    what: format!("child {child_id} tagged in media item {media_id}"),
                });
            }
            ChildTagged {
                post_id: live.post_id,
                media_id,
                child_id,
                by,
            }
            .into()
        }
        PostAction::Untag { media_id, child_id } => {
            let live = live(post, Some(media_id), "untagged")?;
            let by = staff_person(school, actor, live.group_id, "untag children in this post")?;
            if !post.media[&media_id].tagged.contains(&child_id) {
                return Err(DomainError::not_found("tag", child_id));
            }
            ChildUntagged {
                post_id: live.post_id,
                media_id,
                child_id,
                by,
            }
            .into()
        }
        PostAction::RemoveMedia { media_id, reason } => {
            let live = live(post, Some(media_id), "removed again")?;
            if !may_remove(school, actor, live.author_id) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "remove this media item",
                });
            }
            MediaRemoved {
                post_id: live.post_id,
                media_id,
                reason: removal_reason(actor, reason)?,
                by: actor,
            }
            .into()
        }
        PostAction::Remove { reason } => {
            let live = live(post, None, "removed again")?;
            if !may_remove(school, actor, live.author_id) {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "remove this post",
                });
            }
            PostRemoved {
                post_id: live.post_id,
                reason: removal_reason(actor, reason)?,
                by: actor,
            }
            .into()
        }
        PostAction::Expire => {
            let live = live(post, None, "expired")?;
            if actor != Actor::System {
                return Err(DomainError::NotAllowed {
                    actor,
                    action: "expire content (the retention job does)",
                });
            }
            let retention_days = school.settings.retention_days;
            let posted_at = post.posted_at.unwrap_or(now);
            let until = posted_at + Duration::days(i64::from(retention_days));
            if now < until {
                return Err(DomainError::RetentionNotReached {
                    post_id: live.post_id,
                    until,
                });
            }
            PostExpired {
                post_id: live.post_id,
                retention_days,
            }
            .into()
        }
    };
    Ok(vec![event])
}

/// Applies a post event to the state.
#[must_use]
pub fn evolve(mut state: Post, event: &PostEvent) -> Post {
    match event {
        PostEvent::PostPublished(e) => {
            state.post_id = Some(e.post_id);
            state.school_id = Some(e.school_id);
            state.group_id = Some(e.group_id);
            state.author_id = Some(e.author_id);
            state.posted_at = Some(e.at);
            state.media = e
                .media
                .iter()
                .map(|m| {
                    (
                        m.media_id,
                        MediaItem {
                            tagged: m.tagged_children.iter().copied().collect(),
                            removed: false,
                        },
                    )
                })
                .collect();
        }
        PostEvent::PostEdited(_) => {}
        PostEvent::ChildTagged(e) => {
            if let Some(m) = state.media.get_mut(&e.media_id) {
                m.tagged.insert(e.child_id);
            }
        }
        PostEvent::ChildUntagged(e) => {
            if let Some(m) = state.media.get_mut(&e.media_id) {
                m.tagged.remove(&e.child_id);
            }
        }
        PostEvent::MediaRemoved(e) => {
            if let Some(m) = state.media.get_mut(&e.media_id) {
                m.removed = true;
            }
        }
        PostEvent::PostRemoved(_) => state.removed = true,
        PostEvent::PostExpired(_) => state.expired = true,
    }
    state
}
