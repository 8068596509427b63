//! Conversations between staff and the guardians of one child, staff quiet hours
//! ("stiltemodus"), the availability parents see, and the caller's own notifications (held
//! while a staff member is in quiet hours).
//!
//! Who may take part is the conversation aggregate's rule (staff of the child's group and the
//! child's guardians; never parent to parent). A conversation's existence is private: anyone
//! who does not take part gets `404`.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{Body, Position};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, NaiveTime, Utc};
use kring_domain::conversation::{self, ConversationAction, ConversationContext};
use kring_domain::person::{self, Day, PersonAction, PersonContext, QuietHours, QuietPeriod};
use kring_domain::school::School;
use kring_domain::{ChildId, Command, ConversationId, MessageId, PersonId, SchoolId, StreamName};
use kring_projections::models::outbox::{self, Notification, NotificationId};
use kring_projections::models::{conversations, memberships};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", post(start).get(inbox))
        .route(
            "/v1/conversations/{conversation_id}/messages",
            post(post_message).get(messages),
        )
        .route(
            "/v1/me/quiet-hours",
            put(set_quiet_hours)
                .get(quiet_hours)
                .delete(clear_quiet_hours),
        )
        .route("/v1/people/{person_id}/availability", get(availability))
        .route("/v1/me/notifications", get(notifications))
        .route("/v1/me/notifications/delivered", post(delivered))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        start,
        post_message,
        inbox,
        messages,
        set_quiet_hours,
        quiet_hours,
        clear_quiet_hours,
        availability,
        notifications,
        delivered
    ),
    components(schemas(
        NewConversation,
        ConversationCreated,
        NewMessage,
        MessageCreated,
        InboxDoc,
        ConversationDoc,
        ParticipantDoc,
        MessageDoc,
        MessagesDoc,
        QuietHoursDoc,
        QuietPeriodDoc,
        Weekday,
        MyQuietHours,
        AvailabilityDoc,
        NotificationsDoc,
        NotificationDoc,
        NotificationKindName,
        Delivered,
        DeliveredDoc
    ))
)]
pub struct Doc;

/// The page size of lists when `?limit=` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// The largest `?limit=`.
const MAX_LIMIT: u32 = 200;
/// The most undelivered notifications one answer lists.
const MAX_NOTIFICATIONS: u32 = 500;

/// The person calling, or `403` for the operator (who takes no part in conversations).
fn person_of(caller: Caller, what: &str) -> ApiResult<PersonId> {
    caller
        .person()
        .ok_or_else(|| ApiError::forbidden(format!("the operator does not {what}")))
}

/// `?limit=` checked: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn page_size(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::validation(format!(
            "limit: {n} is not between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// `?before=` checked: a log position, which is at most `i64::MAX` (the document says `int64`).
fn page_before(before: Option<u64>) -> ApiResult<()> {
    match before {
        Some(b) if i64::try_from(b).is_err() => Err(ApiError::validation(format!(
            "before: {b} is not a log position (at most {})",
            i64::MAX
        ))),
        _ => Ok(()),
    }
}

/// `POST /v1/conversations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewConversation {
    /// The child the conversation is about.
    pub child_id: Uuid,
    /// Who else takes part. Without them, a guardian reaches the staff of the child's group
    /// and staff reach the child's guardians.
    #[serde(default)]
    pub participants: Vec<Uuid>,
    /// The first message (1–5,000 characters, not blank).
    #[schema(min_length = 1, max_length = 5000, pattern = r"\S")]
    pub body: String,
}

/// A started conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationCreated {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Its first message.
    pub message_id: Uuid,
    /// The global position of the last event written.
    pub position: u64,
}

/// Starts a conversation about a child with a first message: staff of the child's group and
/// the child's guardians only, never parent to parent (`422 rule_violated`). `404` for a child
/// the caller has nothing to do with.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = NewConversation,
    responses((status = 201, body = ConversationCreated), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<NewConversation>,
) -> ApiResult<(StatusCode, Json<ConversationCreated>)> {
    let person = person_of(caller, "take part in conversations")?;
    let child_id = ChildId::from_uuid(req.child_id);
    let (school_id, _) = state.place_of_child(child_id).await?;
    let roster = state.exec.school(school_id).await?;
    let actor = caller.actor();
    // The child's existence is private to its school's staff and its guardians.
    if !(roster.state.is_staff(actor) || roster.state.is_guardian(person, child_id)) {
        return Err(ApiError::not_found(format!("child {child_id}")));
    }
    // Staff who know of the child but are not staff of its group may not talk about it: a
    // refusal of the caller (403), not a rule about the participants they named (422).
    let group_id = roster.state.enrolment(child_id)?.group_id;
    if !(roster.state.is_group_staff(actor, group_id) || roster.state.is_guardian(person, child_id))
    {
        return Err(ApiError::forbidden(format!(
            "only staff of group {group_id} and the guardians of child {child_id} talk about the child"
        )));
    }
    let participants: Vec<PersonId> = req
        .participants
        .iter()
        .map(|p| PersonId::from_uuid(*p))
        .collect();
    let conversation_id = ConversationId::from_uuid(crate::idempotency::fresh_uuid());
    let message_id = MessageId::from_uuid(crate::idempotency::fresh_uuid());
    let written = state
        .exec
        .run::<conversation::Conversation, _>(
            StreamName::conversation(conversation_id),
            actor,
            rid,
            |s, now| {
                conversation::decide(
                    &ConversationContext {
                        conversation: s,
                        school: &roster.state,
                    },
                    Command::new(
                        actor,
                        ConversationAction::Start {
                            conversation_id,
                            child_id,
                            participants: participants.clone(),
                            message_id,
                            body: req.body.clone(),
                        },
                    ),
                    now,
                )
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConversationCreated {
            conversation_id: conversation_id.into(),
            message_id: message_id.into(),
            position: written.position,
        }),
    ))
}

/// The conversation, if the caller takes part in it; `404` otherwise (its existence is
/// private).
async fn conversation_of(
    state: &AppState,
    caller: Caller,
    conversation_id: ConversationId,
) -> ApiResult<(PersonId, conversations::ConversationView)> {
    let missing = || ApiError::not_found(format!("conversation {conversation_id}"));
    let person = caller.person().ok_or_else(missing)?;
    let view = state
        .locate(|| async move {
            Ok(conversations::conversation(&state.system.db, conversation_id).await?)
        })
        .await?
        .ok_or_else(missing)?;
    let roster = state.exec.school(view.school_id).await?;
    if view.participants.contains(&person)
        && conversation::takes_part(&roster.state, person, view.child_id)
    {
        Ok((person, view))
    } else {
        Err(missing())
    }
}

/// Schools' current rosters, each loaded once per request, to apply the domain's rule of who
/// takes part ([`conversation::takes_part`]) to a list of conversations.
#[derive(Default)]
struct Rosters(HashMap<SchoolId, Arc<School>>);

impl Rosters {
    async fn roster(&mut self, state: &AppState, school: SchoolId) -> ApiResult<Arc<School>> {
        if let Some(roster) = self.0.get(&school) {
            return Ok(Arc::clone(roster));
        }
        let roster = state.exec.school(school).await?.state;
        self.0.insert(school, Arc::clone(&roster));
        Ok(roster)
    }

    async fn takes_part(
        &mut self,
        state: &AppState,
        school: SchoolId,
        person: PersonId,
        child: ChildId,
    ) -> ApiResult<bool> {
        let roster = self.roster(state, school).await?;
        Ok(conversation::takes_part(&roster, person, child))
    }
}

/// `POST /v1/conversations/{conversation_id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewMessage {
    /// The text (1–5,000 characters, not blank).
    #[schema(min_length = 1, max_length = 5000, pattern = r"\S")]
    pub body: String,
}

/// A posted message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageCreated {
    /// The message.
    pub message_id: Uuid,
    /// The global position of the event written.
    pub position: u64,
}

/// Posts a message (participants still on their side: staff of the child's group, guardians
/// still linked). `404` for anyone who does not take part.
#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/messages", tag = "conversations",
    request_body = NewMessage,
    params(("conversation_id" = Uuid, Path, description = "The conversation")),
    responses((status = 201, body = MessageCreated), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(conversation_id): Path<ConversationId>,
    Body(req): Body<NewMessage>,
) -> ApiResult<(StatusCode, Json<MessageCreated>)> {
    let (_, view) = conversation_of(&state, caller, conversation_id).await?;
    let roster = state.exec.school(view.school_id).await?;
    let actor = caller.actor();
    let message_id = MessageId::from_uuid(crate::idempotency::fresh_uuid());
    let written = state
        .exec
        .run::<conversation::Conversation, _>(
            StreamName::conversation(conversation_id),
            actor,
            rid,
            |s, now| {
                conversation::decide(
                    &ConversationContext {
                        conversation: s,
                        school: &roster.state,
                    },
                    Command::new(
                        actor,
                        ConversationAction::Post {
                            message_id,
                            body: req.body.clone(),
                        },
                    ),
                    now,
                )
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(MessageCreated {
            message_id: message_id.into(),
            position: written.position,
        }),
    ))
}

/// `?limit=&before=` on a list paged by log position.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many to answer (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Only entries at log positions before this one: pass the previous page's `next_before`.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub before: Option<u64>,
}

/// A participant, by display name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ParticipantDoc {
    /// The person.
    pub person_id: Uuid,
    /// Their display name (`[erased]` after erasure).
    pub display_name: Option<String>,
}

/// One message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageDoc {
    /// The message.
    pub message_id: Uuid,
    /// Its author.
    pub author_id: Uuid,
    /// Its text (`[erased]` after its author's erasure).
    pub body: String,
    /// When it was posted.
    pub at: DateTime<Utc>,
    /// The global log position that posted it: the paging cursor.
    pub position: u64,
    /// On the caller's own messages: whether the other side has read it (a guardian of the
    /// child for a staff member's message, a staff member for a guardian's); `null` on the
    /// messages of others.
    pub read: Option<bool>,
}

/// A conversation in the caller's inbox.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationDoc {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The school.
    pub school_id: Uuid,
    /// The child it is about.
    pub child_id: Uuid,
    /// Who takes part.
    pub participants: Vec<ParticipantDoc>,
    /// Who started it.
    pub started_by: Uuid,
    /// When.
    pub started_at: DateTime<Utc>,
    /// When the last message was posted.
    pub last_message_at: DateTime<Utc>,
    /// The log position of the last message: the paging cursor of the inbox.
    pub last_position: u64,
    /// How many messages it holds.
    pub message_count: u64,
    /// The last message.
    pub last_message: Option<MessageDoc>,
}

/// The caller's inbox, latest activity first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InboxDoc {
    /// The conversations.
    pub conversations: Vec<ConversationDoc>,
    /// Pass as `?before=` for the next page; `null` on the last page.
    pub next_before: Option<u64>,
}

/// Opens a message for an answer.
async fn message_doc(state: &AppState, m: &conversations::MessageView) -> ApiResult<MessageDoc> {
    Ok(MessageDoc {
        message_id: m.message_id.into(),
        author_id: m.author_id.into(),
        body: state.open(&m.body).await?,
        at: m.at,
        position: m.position,
        read: None,
    })
}

/// Fills in `read` on the caller's own messages among `docs`.
async fn with_read(
    state: &AppState,
    person: PersonId,
    view: &conversations::ConversationView,
    found: &[conversations::MessageView],
    docs: &mut [MessageDoc],
) -> ApiResult<()> {
    let read = crate::routes::reads::read_by_other_side(state, person, view, found).await?;
    for doc in docs {
        if doc.author_id == Uuid::from(person) {
            doc.read = Some(read.contains(&MessageId::from_uuid(doc.message_id)));
        }
    }
    Ok(())
}

/// Display names, looked up once per person per request.
#[derive(Default)]
struct Names(HashMap<PersonId, Option<String>>);

impl Names {
    async fn of(&mut self, state: &AppState, person: PersonId) -> ApiResult<Option<String>> {
        if let Some(name) = self.0.get(&person) {
            return Ok(name.clone());
        }
        let name = match memberships::person(&state.system.db, person).await? {
            Some(profile) => state.open_opt(profile.display_name.as_ref()).await?,
            None => None,
        };
        self.0.insert(person, name.clone());
        Ok(name)
    }
}

/// The caller's conversations, latest activity first, each with its participants by display
/// name and its last message opened. Paged by `?before=` (a `last_position`).
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", params(Page, MinPosition),
    responses((status = 200, body = InboxDoc), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn inbox(
    State(state): State<AppState>,
    caller: Caller,
    Q(page): Q<Page>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<InboxDoc>> {
    let limit = page_size(page.limit)?;
    page_before(page.before)?;
    min.wait(&state).await?;
    let Some(person) = caller.person() else {
        return Ok(Json(InboxDoc {
            conversations: Vec::new(),
            next_before: None,
        }));
    };
    let mut rosters = Rosters::default();
    let mut all = Vec::new();
    for c in conversations::inbox(&state.system.db, person).await? {
        if rosters
            .takes_part(&state, c.school_id, person, c.child_id)
            .await?
        {
            all.push(c);
        }
    }
    // Log positions are a total order: the cursor pages exactly.
    all.sort_by_key(|c| std::cmp::Reverse(c.last_position));
    let mut rest: Vec<_> = all
        .into_iter()
        .filter(|c| page.before.is_none_or(|b| c.last_position < b))
        .collect();
    let more = rest.len() > limit as usize;
    rest.truncate(limit as usize);
    let mut names = Names::default();
    let mut docs = Vec::with_capacity(rest.len());
    for c in &rest {
        let mut participants = Vec::with_capacity(c.participants.len());
        for p in &c.participants {
            if !rosters
                .takes_part(&state, c.school_id, *p, c.child_id)
                .await?
            {
                continue;
            }
            participants.push(ParticipantDoc {
                person_id: (*p).into(),
                display_name: names.of(&state, *p).await?,
            });
        }
        let last = conversations::messages(&state.system.db, c.conversation_id, 1, None).await?;
        let last_message = match last.first() {
            Some(m) => {
                let mut doc = [message_doc(&state, m).await?];
                with_read(&state, person, c, &last, &mut doc).await?;
                let [doc] = doc;
                Some(doc)
            }
            None => None,
        };
        docs.push(ConversationDoc {
            conversation_id: c.conversation_id.into(),
            school_id: c.school_id.into(),
            child_id: c.child_id.into(),
            participants,
            started_by: c.started_by.into(),
            started_at: c.started_at,
            last_message_at: c.last_message_at,
            last_position: c.last_position,
            message_count: c.message_count,
            last_message,
        });
    }
    let next_before = if more {
        rest.last().map(|c| c.last_position)
    } else {
        None
    };
    Ok(Json(InboxDoc {
        conversations: docs,
        next_before,
    }))
}

/// A page of a conversation's messages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagesDoc {
    /// The conversation.
    pub conversation_id: Uuid,
    /// The messages, oldest first.
    pub messages: Vec<MessageDoc>,
    /// Pass as `?before=` for the page of older messages; `null` when there are none.
    pub next_before: Option<u64>,
}

/// A conversation's messages with their bodies, the latest page first (each page oldest
/// first); `?before=` pages back. `404` for anyone who does not take part.
#[utoipa::path(get, path = "/v1/conversations/{conversation_id}/messages", tag = "conversations",
    params(("conversation_id" = Uuid, Path, description = "The conversation"), Page, MinPosition),
    responses((status = 200, body = MessagesDoc), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(conversation_id): Path<ConversationId>,
    Q(page): Q<Page>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<MessagesDoc>> {
    let limit = page_size(page.limit)?;
    page_before(page.before)?;
    min.wait(&state).await?;
    let (person, view) = conversation_of(&state, caller, conversation_id).await?;
    // One more than asked tells whether an older page exists.
    let mut found =
        conversations::messages(&state.system.db, conversation_id, limit + 1, page.before).await?;
    let more = found.len() > limit as usize;
    if more {
        found.remove(0);
    }
    let mut docs = Vec::with_capacity(found.len());
    for m in &found {
        docs.push(message_doc(&state, m).await?);
    }
    with_read(&state, person, &view, &found, &mut docs).await?;
    Ok(Json(MessagesDoc {
        conversation_id: conversation_id.into(),
        next_before: if more {
            found.first().map(|m| m.position)
        } else {
            None
        },
        messages: docs,
    }))
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl From<Weekday> for Day {
    fn from(d: Weekday) -> Self {
        match d {
            Weekday::Monday => Self::Monday,
            Weekday::Tuesday => Self::Tuesday,
            Weekday::Wednesday => Self::Wednesday,
            Weekday::Thursday => Self::Thursday,
            Weekday::Friday => Self::Friday,
            Weekday::Saturday => Self::Saturday,
            Weekday::Sunday => Self::Sunday,
        }
    }
}

impl From<Day> for Weekday {
    fn from(d: Day) -> Self {
        match d {
            Day::Monday => Self::Monday,
            Day::Tuesday => Self::Tuesday,
            Day::Wednesday => Self::Wednesday,
            Day::Thursday => Self::Thursday,
            Day::Friday => Self::Friday,
            Day::Saturday => Self::Saturday,
            Day::Sunday => Self::Sunday,
        }
    }
}

/// One quiet period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuietPeriodDoc {
    /// The day it starts on.
    pub day: Weekday,
    /// Local start time, `HH:MM`.
    #[schema(
        example = "18:00",
        pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|24:00)$"
    )]
    pub start: String,
    /// Local end time, `HH:MM`; at or before `start` it ends the next day (`24:00` means
    /// midnight).
    #[schema(
        example = "07:30",
        pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|24:00)$"
    )]
    pub end: String,
}

/// A weekly quiet-hours schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuietHoursDoc {
    /// IANA time zone the times are in, e.g. `Europe/Amsterdam`.
    #[schema(value_type = super::TimeZoneName)]
    pub timezone: String,
    /// The weekly periods.
    pub weekly: Vec<QuietPeriodDoc>,
}

/// The caller's quiet hours.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyQuietHours {
    /// The schedule; `null` when none is set.
    pub quiet_hours: Option<QuietHoursDoc>,
}

/// A local time of day: `HH:MM` or `HH:MM:SS`, `24:00` for midnight at the end of a day.
fn time_of_day(field: &str, text: &str) -> ApiResult<NaiveTime> {
    if text == "24:00" {
        return Ok(NaiveTime::MIN);
    }
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .map_err(|_| {
            ApiError::validation(format!(
                "{field}: {text:?} is not a time of day such as 07:30"
            ))
        })
}

impl QuietHoursDoc {
    /// The schedule as the domain has it.
    ///
    /// # Errors
    /// `422` for a time of day that does not parse.
    pub fn to_domain(&self) -> ApiResult<QuietHours> {
        let weekly = self
            .weekly
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(QuietPeriod {
                    day: p.day.into(),
                    start: time_of_day(&format!("weekly[{i}].start"), &p.start)?,
                    end: time_of_day(&format!("weekly[{i}].end"), &p.end)?,
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(QuietHours {
            timezone: self.timezone.clone(),
            weekly,
        })
    }

    /// The domain's schedule as the API shows it.
    #[must_use]
    pub fn from_domain(q: &QuietHours) -> Self {
        Self {
            timezone: q.timezone.clone(),
            weekly: q
                .weekly
                .iter()
                .map(|p| QuietPeriodDoc {
                    day: p.day.into(),
                    start: p.start.format("%H:%M").to_string(),
                    end: p.end.format("%H:%M").to_string(),
                })
                .collect(),
        }
    }
}

/// The school whose roster decides the caller's quiet hours: a school where they are staff.
///
/// # Errors
/// `403` for anyone who is not staff anywhere.
async fn staff_school(state: &AppState, person: PersonId) -> ApiResult<SchoolId> {
    state
        .locate(|| async move {
            Ok(memberships::person(&state.system.db, person)
                .await?
                .and_then(|p| p.schools.into_iter().find(|s| s.role.is_some()))
                .map(|s| s.school_id))
        })
        .await?
        .ok_or_else(|| ApiError::forbidden("quiet hours are for staff members"))
}

/// Runs a command on the caller's own person stream, with their school's roster.
async fn own_person_command(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    action: PersonAction,
) -> ApiResult<u64> {
    let person = caller
        .person()
        .ok_or_else(|| ApiError::forbidden("quiet hours are for staff members"))?;
    let school_id = staff_school(state, person).await?;
    let roster = state.exec.school(school_id).await?;
    let actor = caller.actor();
    Ok(state
        .exec
        .run::<person::Person, _>(StreamName::person(person), actor, rid, |s, now| {
            person::decide(
                &PersonContext {
                    person: s,
                    school: &roster.state,
                },
                Command::new(actor, action.clone()),
                now,
            )
        })
        .await?
        .position)
}

/// Sets the caller's weekly quiet hours (staff). Messages still arrive; notifications to the
/// caller are held until a quiet period ends, and parents see that they are in quiet hours.
#[utoipa::path(put, path = "/v1/me/quiet-hours", tag = "conversations", request_body = QuietHoursDoc,
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn set_quiet_hours(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<QuietHoursDoc>,
) -> ApiResult<Json<Position>> {
    let schedule = req.to_domain()?;
    let position =
        own_person_command(&state, caller, rid, PersonAction::SetQuietHours(schedule)).await?;
    Ok(Json(Position { position }))
}

/// Clears the caller's quiet hours (staff); `409` when none are set.
#[utoipa::path(delete, path = "/v1/me/quiet-hours", tag = "conversations",
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn clear_quiet_hours(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
) -> ApiResult<Json<Position>> {
    let position = own_person_command(&state, caller, rid, PersonAction::ClearQuietHours).await?;
    Ok(Json(Position { position }))
}

/// The caller's own quiet hours, as last set.
#[utoipa::path(get, path = "/v1/me/quiet-hours", tag = "conversations", params(MinPosition),
    responses((status = 200, body = MyQuietHours)),
    security(("bearer" = [])))]
pub async fn quiet_hours(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<MyQuietHours>> {
    min.wait(&state).await?;
    let quiet_hours = match caller.person() {
        Some(person) => state
            .exec
            .load::<person::Person>(&StreamName::person(person))
            .await?
            .state
            .quiet_hours
            .as_ref()
            .map(QuietHoursDoc::from_domain),
        None => None,
    };
    Ok(Json(MyQuietHours { quiet_hours }))
}

/// Whether a person is in quiet hours now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AvailabilityDoc {
    /// The person.
    pub person_id: Uuid,
    /// Whether they are in quiet hours: notifications to them are held.
    pub in_quiet_hours: bool,
    /// When the quiet period ends, while in one.
    pub until: Option<DateTime<Utc>>,
}

/// The schools a person belongs to (staff or guardian).
async fn schools_of(state: &AppState, person: PersonId) -> ApiResult<BTreeSet<SchoolId>> {
    Ok(memberships::person(&state.system.db, person)
        .await?
        .map(|p| p.schools.iter().map(|s| s.school_id).collect())
        .unwrap_or_default())
}

/// Whether a person is in quiet hours now and until when — for members who share a school with
/// them (and the operator); `404` for anyone else.
#[utoipa::path(get, path = "/v1/people/{person_id}/availability", tag = "conversations",
    params(("person_id" = Uuid, Path, description = "The person"), MinPosition),
    responses((status = 200, body = AvailabilityDoc), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn availability(
    State(state): State<AppState>,
    caller: Caller,
    Path(person_id): Path<PersonId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<AvailabilityDoc>> {
    min.wait(&state).await?;
    let missing = || ApiError::not_found(format!("person {person_id}"));
    let st = &state;
    let theirs = state
        .locate(|| async move {
            let schools = schools_of(st, person_id).await?;
            Ok((!schools.is_empty()).then_some(schools))
        })
        .await?
        .ok_or_else(missing)?;
    if let Some(me) = caller.person() {
        let mine = schools_of(&state, me).await?;
        if mine.is_disjoint(&theirs) {
            return Err(missing());
        }
    }
    let a = outbox::availability(&state.system.db, person_id, Utc::now()).await?;
    Ok(Json(AvailabilityDoc {
        person_id: person_id.into(),
        in_quiet_hours: a.in_quiet_hours,
        until: a.until,
    }))
}

/// `?as_of=` on the caller's notifications.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// The moment to answer for (RFC 3339); now when absent.
    pub as_of: Option<DateTime<Utc>>,
}

/// A notification: ids and times only, never a message's text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationDoc {
    /// Its id (`<what it is about>:<recipient id>`), to acknowledge it with.
    pub notification_id: String,
    /// What it is about: `post` (a new post in a group the caller may see something of),
    /// `message` (a message in a conversation), `activity_created` (an activity in a group of
    /// the caller's child), `activity_reminder` (tomorrow's activity the caller volunteers
    /// for), `invitation_approved` (the caller is now a guardian of the child),
    /// `consent_needed` (a new consent-policy version asks the caller, a guardian, to decide
    /// again: which purposes, says `GET /v1/children/{child_id}/consents`),
    /// `absence_acknowledged` (the school acknowledged an absence the caller reported),
    /// `absence_reported` (a guardian reported an absence in the caller's group),
    /// `meeting_booked` (a parent–teacher conversation was booked for the caller's child, by
    /// the other guardian or assigned by staff), `meeting_changed` (one was moved or cancelled,
    /// or its round cancelled, by the other guardian or staff) or `meeting_reminder` (tomorrow's
    /// conversation about the caller's child).
    #[schema(value_type = NotificationKindName)]
    pub kind: String,
    /// The conversation (`message`).
    pub conversation_id: Option<Uuid>,
    /// The message (`message`).
    pub message_id: Option<Uuid>,
    /// The school (every kind but `message`, where it may be `null`).
    pub school_id: Option<Uuid>,
    /// The policy version that asks (`consent_needed`).
    pub policy_version: Option<u32>,
    /// The post (`post`).
    #[serde(default)]
    pub post_id: Option<Uuid>,
    /// The group (`post`, `activity_created`, `activity_reminder`, `absence_reported`).
    #[serde(default)]
    pub group_id: Option<Uuid>,
    /// The activity (`activity_created`, `activity_reminder`).
    #[serde(default)]
    pub activity_id: Option<Uuid>,
    /// The invitation (`invitation_approved`).
    #[serde(default)]
    pub invitation_id: Option<Uuid>,
    /// The child (`message`, `invitation_approved`, `absence_acknowledged`,
    /// `absence_reported`, and the meeting kinds: the first of the booking's children whose
    /// guardian the caller is).
    #[serde(default)]
    pub child_id: Option<Uuid>,
    /// The absence (`absence_acknowledged`, `absence_reported`).
    #[serde(default)]
    pub absence_id: Option<Uuid>,
    /// The meeting round (`meeting_booked`, `meeting_changed`, `meeting_reminder`).
    #[serde(default)]
    pub round_id: Option<Uuid>,
    /// The booking (`meeting_booked`, `meeting_changed` but for a cancelled round,
    /// `meeting_reminder`): `GET /v1/meeting-rounds/{round_id}` shows it.
    #[serde(default)]
    pub booking_id: Option<Uuid>,
    /// When what it is about happened.
    pub created_at: DateTime<Utc>,
    /// When it may be delivered: `created_at`, the end of the caller's quiet period, or the
    /// caller's digest time (`digest`).
    pub release_at: DateTime<Utc>,
    /// Whether it was held for the caller's quiet hours.
    pub held_for_quiet_hours: bool,
    /// How it reaches the caller: `push`, `email`, `digest` (released at the caller's digest
    /// time, with the rest of that day's) or `off` (listed here only).
    #[schema(value_type = super::notification_preferences::ChannelName)]
    pub channel: String,
}

impl From<&Notification> for NotificationDoc {
    fn from(n: &Notification) -> Self {
        Self {
            notification_id: n.id.to_string(),
            kind: n.kind.as_str().to_owned(),
            conversation_id: n.conversation_id.map(Into::into),
            message_id: n.message_id.map(Into::into),
            school_id: n.school_id.map(Into::into),
            policy_version: n.policy_version,
            post_id: n.post_id.map(Into::into),
            group_id: n.group_id.map(Into::into),
            activity_id: n.activity_id.map(Into::into),
            invitation_id: n.invitation_id.map(Into::into),
            child_id: n.child_id.map(Into::into),
            absence_id: n.absence_id.map(Into::into),
            round_id: n.round_id.map(Into::into),
            booking_id: n.booking_id.map(Into::into),
            created_at: n.created_at,
            release_at: n.release_at,
            held_for_quiet_hours: n.was_held(),
            channel: n.channel.as_str().to_owned(),
        }
    }
}

/// A notification kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKindName {
    /// A new post.
    Post,
    /// A message in a conversation.
    Message,
    /// An activity scheduled.
    ActivityCreated,
    /// The day before an activity one volunteers for.
    ActivityReminder,
    /// One's invitation approved.
    InvitationApproved,
    /// A consent decision needed.
    ConsentNeeded,
    /// A planned absence acknowledged.
    AbsenceAcknowledged,
    /// A planned absence reported (staff).
    AbsenceReported,
    /// A parent–teacher conversation booked for one's child.
    MeetingBooked,
    /// A conversation booked for one's child moved or cancelled.
    MeetingChanged,
    /// The day before a conversation booked for one's child.
    MeetingReminder,
}

/// The caller's notifications not yet acknowledged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationsDoc {
    /// The moment answered for.
    pub as_of: DateTime<Utc>,
    /// Released by then: to be shown, then acknowledged.
    pub due: Vec<NotificationDoc>,
    /// Not released yet (held for the caller's quiet hours, waiting for their digest, or a
    /// reminder for tomorrow), soonest released first.
    pub held: Vec<NotificationDoc>,
}

/// The caller's notifications not yet acknowledged: those due (released at or before
/// `?as_of=`, default now) and those still held for the caller's quiet hours. Only those in the
/// outbox's retention window: released at most 30 days before the newest event in the log.
#[utoipa::path(get, path = "/v1/me/notifications", tag = "conversations", params(AsOf, MinPosition),
    responses((status = 200, body = NotificationsDoc)),
    security(("bearer" = [])))]
pub async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    Q(as_of): Q<AsOf>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<NotificationsDoc>> {
    min.wait(&state).await?;
    let as_of = as_of.as_of.unwrap_or_else(Utc::now);
    let mut doc = NotificationsDoc {
        as_of,
        due: Vec::new(),
        held: Vec::new(),
    };
    let Some(person) = caller.person() else {
        return Ok(Json(doc));
    };
    let mut rosters = Rosters::default();
    let mut about: HashMap<ConversationId, Option<(SchoolId, ChildId)>> = HashMap::new();
    for n in outbox::undelivered_of(&state.system.db, person, MAX_NOTIFICATIONS).await? {
        // A notification is the caller's to read while the relation it came through lasts:
        // taking part in the conversation, or guardianship of a child of the school.
        let still_theirs = match (n.conversation_id, n.school_id) {
            (Some(conversation), _) => {
                let place = match about.get(&conversation) {
                    Some(place) => *place,
                    None => {
                        let place = conversations::conversation(&state.system.db, conversation)
                            .await?
                            .map(|c| (c.school_id, c.child_id));
                        about.insert(conversation, place);
                        place
                    }
                };
                match place {
                    Some((school, child)) => {
                        rosters.takes_part(&state, school, person, child).await?
                    }
                    None => false,
                }
            }
            (None, Some(school)) => {
                let roster = rosters.roster(&state, school).await?;
                let staff = roster.staff.contains_key(&person);
                match (n.group_id, n.child_id) {
                    // Staff of the school, or a guardian of the child.
                    (_, Some(child)) => staff || roster.is_guardian(person, child),
                    // Staff of the school, or a guardian in the group's audience.
                    (Some(group), None) => staff || roster.is_guardian_in_group(person, group),
                    // A guardian of a child of the school.
                    (None, None) => roster
                        .children
                        .values()
                        .any(|e| e.guardians.contains(&person)),
                }
            }
            (None, None) => false,
        };
        if !still_theirs {
            continue;
        }
        if n.release_at <= as_of {
            doc.due.push((&n).into());
        } else {
            doc.held.push((&n).into());
        }
    }
    Ok(Json(doc))
}

/// `POST /v1/me/notifications/delivered`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Delivered {
    /// The caller's notifications that were shown to them (1 to 500 ids).
    #[schema(min_items = 1, max_items = 500, inline, value_type = Vec<NotificationIdText>)]
    pub notification_ids: Vec<String>,
}

/// A notification id as listed: `<about>:<recipient>`, two UUIDs.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
pub struct NotificationIdText(#[allow(dead_code)] String);

/// How many notifications were newly acknowledged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveredDoc {
    /// Acknowledged now (acknowledging twice counts once).
    pub marked: u64,
}

/// Acknowledges the caller's own notifications as delivered: they are not listed again. `404`
/// for an id that is not one of the caller's notifications (nothing is recorded then).
#[utoipa::path(post, path = "/v1/me/notifications/delivered", tag = "conversations",
    request_body = Delivered,
    responses((status = 200, body = DeliveredDoc), (status = 403, description = "The platform operator has no notifications", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn delivered(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<Delivered>,
) -> ApiResult<Json<DeliveredDoc>> {
    let person = person_of(caller, "receive notifications")?;
    if req.notification_ids.is_empty() || req.notification_ids.len() > MAX_NOTIFICATIONS as usize {
        return Err(ApiError::validation(format!(
            "notification_ids: between 1 and {MAX_NOTIFICATIONS} ids"
        )));
    }
    let ids = req
        .notification_ids
        .iter()
        .map(|s| {
            s.parse::<NotificationId>().map_err(|_| {
                ApiError::validation(format!("notification_ids: {s:?} is not a notification id"))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    for id in &ids {
        let theirs = id.recipient_id == person
            && outbox::notification(&state.system.db, *id).await?.is_some();
        if !theirs {
            return Err(ApiError::not_found(format!("notification {id}")));
        }
    }
    let marked = outbox::mark_delivered(&state.system.db, &ids, Utc::now()).await?;
    Ok(Json(DeliveredDoc { marked }))
}
