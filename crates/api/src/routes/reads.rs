//! Read receipts: a person marks posts and messages read, staff of a post's audience see how
//! many of its guardians read it and which of their own groups' guardians did not yet, the
//! sender of a message sees whether the other side read it, and everyone their unread counts.
//!
//! Who read what is personal data: each mark is an `ItemsRead` event (ids only) in the reader's
//! own stream, so their export holds it and their erasure ends it; the reads read model
//! ([`reads`]) counts them, drops the reads of a post once it is removed or expired, and every
//! read of a person once they are erased. Only what the caller may see can be marked — the
//! feed's rule for posts, the conversation's for messages — and a request naming anything else
//! is refused whole, as `404`, writing nothing. A guardian never sees another guardian's reads.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{Body, Position};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use kring_domain::conversation;
use kring_domain::person::{self, PersonAction, PersonContext, MAX_READ_ITEMS};
use kring_domain::school::{School, StaffRole};
use kring_domain::StreamName;
use kring_domain::{Actor, Command, ConversationId, MessageId, PersonId, PostId, SchoolId};
use kring_projections::models::conversations::{self, ConversationView, MessageView};
use kring_projections::models::{memberships, reads, visibility};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/read", post(mark_read))
        .route("/v1/me/unread", get(unread))
        .route("/v1/posts/{post_id}/reads", get(post_reads))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(mark_read, unread, post_reads),
    components(schemas(
        MarkRead,
        UnreadDoc,
        UnreadGroupDoc,
        UnreadConversationDoc,
        PostReadsDoc,
        NotReadDoc
    ))
)]
pub struct Doc;

/// `POST /v1/me/read`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkRead {
    /// Posts read: each must be in the caller's feed.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub post_ids: Option<Vec<Uuid>>,
    /// Messages read: each must be in a conversation the caller takes part in.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub message_ids: Option<Vec<Uuid>>,
}

/// `ids` without repeats, in their first order.
fn once_each<T: Ord + Copy>(ids: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = BTreeSet::new();
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

fn bounded(field: &str, n: usize) -> ApiResult<()> {
    if n > MAX_READ_ITEMS {
        return Err(ApiError::validation(format!(
            "{field}: at most {MAX_READ_ITEMS} at once"
        )));
    }
    Ok(())
}

/// Schools' current rosters, each loaded once per request.
#[derive(Default)]
struct Rosters(HashMap<SchoolId, Arc<School>>);

impl Rosters {
    async fn of(&mut self, state: &AppState, school: SchoolId) -> ApiResult<Arc<School>> {
        if let Some(roster) = self.0.get(&school) {
            return Ok(Arc::clone(roster));
        }
        let roster = state.exec.school(school).await?.state;
        self.0.insert(school, Arc::clone(&roster));
        Ok(roster)
    }
}

/// Refuses, as `404`, the first of `posts` that is not in `person`'s feed: live, and the person
/// in its audience by the visibility read model and by the school's current roster (as
/// `GET /v1/posts/{post_id}` decides). The read models have caught up with the log.
async fn check_posts(state: &AppState, person: PersonId, posts: &[PostId]) -> ApiResult<()> {
    if posts.is_empty() {
        return Ok(());
    }
    let found = reads::visible_posts(&state.system.db, person, posts).await?;
    let places: HashMap<PostId, reads::FeedPlace> =
        found.into_iter().map(|p| (p.post_id, p)).collect();
    let mut rosters = Rosters::default();
    for post_id in posts {
        let missing = || ApiError::not_found(format!("post {post_id}"));
        let place = places.get(post_id).ok_or_else(missing)?;
        let roster = rosters.of(state, place.school_id).await?;
        if !(roster.audience_staff(place.group_id).contains(&person)
            || roster.is_guardian_in_group(person, place.group_id))
        {
            return Err(missing());
        }
    }
    Ok(())
}

/// Whether `person` takes part in `view` now: a participant, still on their side (the
/// conversation routes' rule).
fn takes_part(roster: &School, person: PersonId, view: &ConversationView) -> bool {
    view.participants.contains(&person) && conversation::takes_part(roster, person, view.child_id)
}

/// Refuses, as `404`, the first of `messages` that is not in a conversation `person` takes part
/// in.
async fn check_messages(
    state: &AppState,
    person: PersonId,
    messages: &[MessageId],
) -> ApiResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let db = &state.system.db;
    let found = reads::message_places(db, messages).await?;
    let places: HashMap<MessageId, ConversationId> = found
        .into_iter()
        .map(|m| (m.message_id, m.conversation_id))
        .collect();
    let mut rosters = Rosters::default();
    let mut allowed: HashMap<ConversationId, bool> = HashMap::new();
    for message_id in messages {
        let missing = || ApiError::not_found(format!("message {message_id}"));
        let conversation_id = *places.get(message_id).ok_or_else(missing)?;
        let ok = match allowed.get(&conversation_id) {
            Some(ok) => *ok,
            None => {
                let ok = match conversations::conversation(db, conversation_id).await? {
                    Some(view) => {
                        let roster = rosters.of(state, view.school_id).await?;
                        takes_part(&roster, person, &view)
                    }
                    None => false,
                };
                allowed.insert(conversation_id, ok);
                ok
            }
        };
        if !ok {
            return Err(missing());
        }
    }
    Ok(())
}

/// Marks posts and messages read, many at once: only posts in the caller's feed and messages
/// of conversations they take part in (staff too). One id the caller may not see (or that does
/// not exist) refuses the whole request as `404`, and nothing is written. What the caller read
/// before is not recorded again: when everything was read already, nothing is written and the
/// log's head is answered.
#[utoipa::path(post, path = "/v1/me/read", tag = "reads", request_body = MarkRead,
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn mark_read(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<MarkRead>,
) -> ApiResult<Json<Position>> {
    let Caller::Person(person) = caller else {
        return Err(ApiError::forbidden(
            "the operator reads nothing of its own: it has no feed and takes part in no conversation",
        ));
    };
    let posts = once_each(
        req.post_ids
            .unwrap_or_default()
            .into_iter()
            .map(PostId::from_uuid),
    );
    let messages = once_each(
        req.message_ids
            .unwrap_or_default()
            .into_iter()
            .map(MessageId::from_uuid),
    );
    bounded("post_ids", posts.len())?;
    bounded("message_ids", messages.len())?;
    // The read models first reach the log's head: a post removed or a relation ended a moment
    // ago is already refused, one published a moment ago found, and a read acknowledged earlier
    // known (two requests at once may still both record an item; the read model keeps the
    // first read of each).
    state.catch_up().await?;
    check_posts(&state, person, &posts).await?;
    check_messages(&state, person, &messages).await?;
    let db = &state.system.db;
    let read_posts = reads::posts_read_by(db, person, &posts).await?;
    let read_messages = reads::messages_read_by(db, person, &messages).await?;
    let post_ids: Vec<PostId> = posts
        .into_iter()
        .filter(|p| !read_posts.contains(p))
        .collect();
    let message_ids: Vec<MessageId> = messages
        .into_iter()
        .filter(|m| !read_messages.contains(m))
        .collect();
    let nowhere = School::default();
    let written = state
        .exec
        .run::<person::Person, _>(StreamName::person(person), caller.actor(), rid, |s, now| {
            person::decide(
                &PersonContext {
                    person: s,
                    school: &nowhere,
                },
                Command::new(
                    caller.actor(),
                    PersonAction::MarkRead {
                        person_id: person,
                        post_ids: post_ids.clone(),
                        message_ids: message_ids.clone(),
                    },
                ),
                now,
            )
        })
        .await?;
    Ok(Json(Position {
        position: written.position,
    }))
}

/// Unread posts of one group of the caller's feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadGroupDoc {
    /// The group.
    pub group_id: Uuid,
    /// Its live posts the caller has not read (their own left out).
    pub unread: u64,
}

/// Unread messages of one conversation of the caller's.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadConversationDoc {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Its messages by others the caller has not read.
    pub unread: u64,
}

/// The caller's unread counts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadDoc {
    /// Unread posts in all.
    pub posts: u64,
    /// Unread messages in all.
    pub messages: u64,
    /// Per group of their feed with unread posts (groups with none are left out).
    pub groups: Vec<UnreadGroupDoc>,
    /// Per conversation they take part in with unread messages (those with none are left out).
    pub conversations: Vec<UnreadConversationDoc>,
}

/// The caller's unread counts: per group of their feed, the live posts they have not read
/// (their own posts left out); per conversation they take part in, the messages by others they
/// have not read. The operator has neither: `403`.
#[utoipa::path(get, path = "/v1/me/unread", tag = "reads", params(MinPosition),
    responses((status = 200, body = UnreadDoc), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn unread(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<UnreadDoc>> {
    min.wait(&state).await?;
    let Caller::Person(person) = caller else {
        return Err(ApiError::forbidden(
            "the operator has no feed and takes part in no conversation",
        ));
    };
    let db = &state.system.db;
    let groups = reads::unread_posts_per_group(db, person).await?;
    let mut rosters = Rosters::default();
    let mut mine = Vec::new();
    for c in conversations::inbox(db, person).await? {
        let roster = rosters.of(&state, c.school_id).await?;
        if conversation::takes_part(&roster, person, c.child_id) {
            mine.push(c.conversation_id);
        }
    }
    let messages = reads::unread_messages(db, person, &mine).await?;
    Ok(Json(UnreadDoc {
        posts: groups.values().sum(),
        messages: messages.values().sum(),
        groups: groups
            .into_iter()
            .map(|(group_id, unread)| UnreadGroupDoc {
                group_id: group_id.into(),
                unread,
            })
            .collect(),
        conversations: messages
            .into_iter()
            .map(|(conversation_id, unread)| UnreadConversationDoc {
                conversation_id: conversation_id.into(),
                unread,
            })
            .collect(),
    }))
}

/// A guardian who has not read the post yet.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotReadDoc {
    /// The guardian.
    pub person_id: Uuid,
    /// Their display name (`[erased]` after erasure).
    pub display_name: Option<String>,
}

/// How many of a post's guardians have read it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostReadsDoc {
    /// The post.
    pub post_id: Uuid,
    /// The guardians who may see the post.
    pub may_see: u64,
    /// How many of them have read it.
    pub read: u64,
    /// Those of them with a child in a group of the caller's own (every group for a director)
    /// who have not read it yet.
    pub not_read: Vec<NotReadDoc>,
}

/// How many of the guardians who may see a post have read it, and which of the guardians of
/// the caller's own groups have not yet (staff of the post's audience; a director's own groups
/// are all of them). A guardian, a compliance officer and the operator get `403`; anyone
/// outside the post's audience `404`, as for the post itself.
#[utoipa::path(get, path = "/v1/posts/{post_id}/reads", tag = "reads",
    params(("post_id" = Uuid, Path, description = "The post"), MinPosition),
    responses((status = 200, body = PostReadsDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn post_reads(
    State(state): State<AppState>,
    caller: Caller,
    Path(post_id): Path<PostId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<PostReadsDoc>> {
    min.wait(&state).await?;
    let db = &state.system.db;
    let hidden = || ApiError::not_found(format!("post {post_id}"));
    let refused =
        || ApiError::forbidden("who read a post is shown to the staff of its audience only");
    let post = state
        .locate(|| async move { Ok(visibility::post(db, post_id, None).await?) })
        .await?
        .ok_or_else(hidden)?;
    let group = post.group_id;
    let school_id = state.school_of_group(group).await?;
    let roster = state.exec.school(school_id).await?.state;
    let Caller::Person(me) = caller else {
        return Err(refused());
    };
    if roster.role(me) == Some(StaffRole::ComplianceOfficer) {
        return Err(refused());
    }
    if !roster.audience_staff(group).contains(&me) {
        return Err(if roster.is_guardian_in_group(me, group) {
            refused()
        } else {
            hidden()
        });
    }
    let audience = reads::audience_of_post(db, post_id).await?;
    let guardians: BTreeMap<PersonId, BTreeSet<kring_domain::ChildId>> = roster
        .audience_guardians(group)
        .into_iter()
        .filter(|(g, _)| audience.contains(g))
        .collect();
    let readers = reads::readers_of_post(db, post_id).await?;
    let read = guardians.keys().filter(|g| readers.contains(g)).count();
    let actor = Actor::Person(me);
    let of_my_groups = |children: &BTreeSet<kring_domain::ChildId>| {
        children.iter().any(|c| {
            roster
                .children
                .get(c)
                .is_some_and(|e| roster.is_group_staff(actor, e.group_id))
        })
    };
    let mut not_read = Vec::new();
    for (guardian, children) in &guardians {
        if readers.contains(guardian) || !of_my_groups(children) {
            continue;
        }
        let display_name = match memberships::person(db, *guardian).await? {
            Some(profile) => state.open_opt(profile.display_name.as_ref()).await?,
            None => None,
        };
        not_read.push(NotReadDoc {
            person_id: (*guardian).into(),
            display_name,
        });
    }
    Ok(Json(PostReadsDoc {
        post_id: post_id.into(),
        may_see: guardians.len() as u64,
        read: read as u64,
        not_read,
    }))
}

/// Which of `person`'s own `messages` in `view` someone on the other side has read: a guardian
/// of the conversation's child for a staff member's message, a staff member for a guardian's.
/// A guardian never learns here whether another guardian read anything.
///
/// # Errors
/// Store and read-model failures.
pub(crate) async fn read_by_other_side(
    state: &AppState,
    person: PersonId,
    view: &ConversationView,
    messages: &[MessageView],
) -> ApiResult<BTreeSet<MessageId>> {
    let own: Vec<MessageId> = messages
        .iter()
        .filter(|m| m.author_id == person)
        .map(|m| m.message_id)
        .collect();
    if own.is_empty() {
        return Ok(BTreeSet::new());
    }
    let roster = state.exec.school(view.school_id).await?.state;
    // The sides of the domain's rule (`conversation::takes_part`): staff of the child's group,
    // or a guardian of the child.
    let group = roster.children.get(&view.child_id).map(|e| e.group_id);
    let staff = |p: PersonId| group.is_some_and(|g| roster.is_group_staff(Actor::Person(p), g));
    let i_am_staff = staff(person);
    let other_side = |p: PersonId| {
        p != person
            && view.participants.contains(&p)
            && if i_am_staff {
                !staff(p) && roster.is_guardian(p, view.child_id)
            } else {
                staff(p)
            }
    };
    Ok(reads::readers_of_messages(&state.system.db, &own)
        .await?
        .into_iter()
        .filter(|(_, readers)| readers.iter().any(|p| other_side(*p)))
        .map(|(m, _)| m)
        .collect())
}
