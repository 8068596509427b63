//! The meeting planner (gespreksplanner): rounds of parent–teacher conversations in time slots,
//! booked by guardians without a double booking, and each person's schedule.
//!
//! A round's own answers (`GET /v1/meeting-rounds/{round_id}`) come from the round's stream,
//! so a guardian who just booked sees it at once; the schedules (`GET /v1/me/meetings`, the
//! calendar feed) come from the meetings read model. Bookings of one round are decided on the
//! round's stream: a slot is never booked twice, whoever races for it. The rule that a family
//! is never in two conversations at once holds within a round exactly; across rounds it is
//! checked against the read model, so two bookings in two different rounds made at the same
//! moment for overlapping slots can both pass (docs/api.md).

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::{Body, Position};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use kring_domain::meeting::{
    self, Busy, GenerateDay, MeetingAction, MeetingContext, MeetingRound, Per, Place, SealedPlace,
    SlotPlan, SlotRequest,
};
use kring_domain::school::School;
use kring_domain::{
    person, ChildId, Command, GroupId, MeetingBookingId, MeetingRoundId, PersonId, StreamName,
};
use kring_projections::models::meetings;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// How often a command on a round is decided again when others wrote to the round meanwhile:
/// each conflict is another command written, so this many guardians booking one round at the
/// same moment all get an answer of the round's rules, never `concurrency_conflict`.
const ROUND_ATTEMPTS: u32 = 256;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/groups/{group_id}/meeting-rounds", post(open_round))
        .route("/v1/meeting-rounds/{round_id}", get(round_view))
        .route("/v1/meeting-rounds/{round_id}/slots", post(add_slot))
        .route(
            "/v1/meeting-rounds/{round_id}/slots/{slot_id}/block",
            post(block_slot),
        )
        .route("/v1/meeting-rounds/{round_id}/bookings", post(book))
        .route(
            "/v1/meeting-rounds/{round_id}/bookings/{booking_id}",
            put(move_booking).delete(cancel_booking),
        )
        .route("/v1/meeting-rounds/{round_id}/close", post(close_round))
        .route("/v1/meeting-rounds/{round_id}/cancel", post(cancel_round))
        .route("/v1/me/meetings", get(my_meetings))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        open_round,
        round_view,
        add_slot,
        block_slot,
        book,
        move_booking,
        cancel_booking,
        close_round,
        cancel_round,
        my_meetings
    ),
    components(schemas(
        PerName,
        PlaceDoc,
        PlaceView,
        NewSlot,
        GenerateDoc,
        GenerateDayDoc,
        NewRound,
        RoundCreated,
        SlotCreated,
        NewBooking,
        BookingCreated,
        MoveBooking,
        SlotState,
        BookingDoc,
        SlotDoc,
        NotBookedDoc,
        RoundDoc,
        MeetingDoc,
        MyMeetings
    ))
)]
pub struct Doc;

/// Whom one booking is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PerName {
    /// One conversation per child.
    Child,
    /// One conversation per family: siblings in the round share it.
    Family,
}

impl From<PerName> for Per {
    fn from(p: PerName) -> Self {
        match p {
            PerName::Child => Self::Child,
            PerName::Family => Self::Family,
        }
    }
}

impl From<Per> for PerName {
    fn from(p: Per) -> Self {
        match p {
            Per::Child => Self::Child,
            Per::Family => Self::Family,
        }
    }
}

/// Where the conversations take place: a room, or an online link.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlaceDoc {
    /// A room at school.
    Room {
        /// The room's name (1–200 characters).
        #[schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
        )]
        name: String,
    },
    /// An online meeting.
    Online {
        /// The link: `https://…` (at most 500 characters).
        #[schema(max_length = 500, pattern = r"^https://[!-~]+$")]
        url: String,
    },
}

impl From<PlaceDoc> for Place {
    fn from(p: PlaceDoc) -> Self {
        match p {
            PlaceDoc::Room { name } => Self::Room { name },
            PlaceDoc::Online { url } => Self::Online { url },
        }
    }
}

/// Where the conversations take place, as answered: the room's name or the link, or
/// `[erased]` once the staff member who opened the round is erased (the words are sealed for
/// them, docs/decisions/0016-sealed-free-text.md).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlaceView {
    /// A room at school.
    Room {
        /// The room's name, or `[erased]`.
        name: String,
    },
    /// An online meeting.
    Online {
        /// The link, or `[erased]`.
        url: String,
    },
}

/// Opens a round's place for an answer: its words, or `[erased]` once who opened the round is
/// erased. A place of a round opened before places were sealed reaches here as a plain value
/// of that person (an upcast), shown the same way.
///
/// # Errors
/// Vault failures other than erasure.
pub(crate) async fn open_place(
    state: &AppState,
    sealed: &kring_domain::Sealed<String>,
) -> ApiResult<String> {
    if sealed.plain().is_some() && state.system.vault.is_erased(sealed.subject()).await? {
        return Ok(crate::state::ERASED.to_owned());
    }
    state.open(sealed).await
}

async fn place_view(state: &AppState, place: &SealedPlace) -> ApiResult<PlaceView> {
    let text = open_place(state, place.text()).await?;
    Ok(match place {
        SealedPlace::Room { .. } => PlaceView::Room { name: text },
        SealedPlace::Online { .. } => PlaceView::Online { url: text },
    })
}

/// A slot given one by one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewSlot {
    /// Start (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// End (RFC 3339), after the start, at most 240 minutes later.
    pub ends_at: DateTime<Utc>,
    /// The staff members holding the conversation (1–4, staff of the school).
    #[schema(min_items = 1, max_items = 4)]
    pub staff: Vec<Uuid>,
}

impl NewSlot {
    fn to_domain(&self) -> SlotRequest {
        SlotRequest {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            staff: self
                .staff
                .iter()
                .copied()
                .map(PersonId::from_uuid)
                .collect(),
        }
    }
}

/// One day of generated slots, in the school's time zone.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct GenerateDayDoc {
    /// The date (`YYYY-MM-DD`).
    pub date: NaiveDate,
    /// The first slot's start, local time `HH:MM`.
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub from: String,
    /// No slot ends after this, local time `HH:MM`.
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub to: String,
}

/// Slots generated back to back, each day from `from` until `to`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct GenerateDoc {
    /// The days (at most 31).
    #[schema(max_items = 31)]
    pub days: Vec<GenerateDayDoc>,
    /// Each slot's length in minutes (1–240).
    #[schema(minimum = 1, maximum = 240)]
    pub slot_minutes: u32,
    /// Minutes between slots (0–240; 0 when left out).
    #[schema(maximum = 240)]
    pub break_minutes: Option<u32>,
    /// The staff of every slot (1–4, staff of the school).
    #[schema(min_items = 1, max_items = 4)]
    pub staff: Vec<Uuid>,
}

fn time_of_day(field: &str, text: &str) -> ApiResult<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| {
        ApiError::validation(format!(
            "{field}: {text:?} is not a time of day such as 15:30"
        ))
    })
}

/// `POST /v1/groups/{group_id}/meeting-rounds`: exactly one of `slots` and `generate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewRound {
    /// Its title (1–200 characters).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub title: String,
    /// One booking per child or per family.
    pub per: PerName,
    /// Further groups the round spans besides the one in the path (staff of each).
    #[schema(max_items = 19)]
    pub group_ids: Option<Vec<Uuid>>,
    /// The slots, one by one (1–500).
    #[schema(min_items = 1, max_items = 500)]
    pub slots: Option<Vec<NewSlot>>,
    /// Or slots generated in the school's time zone.
    pub generate: Option<GenerateDoc>,
    /// Where.
    pub place: PlaceDoc,
    /// Guardians book, move and cancel until then (RFC 3339).
    pub book_until: DateTime<Utc>,
}

/// An opened round.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoundCreated {
    /// The round.
    pub round_id: Uuid,
    /// The global position of the event written.
    pub position: u64,
}

/// The round's stream, its state and its school's roster; `404` for an unknown round.
async fn load_round(
    state: &AppState,
    round_id: MeetingRoundId,
) -> ApiResult<(MeetingRound, Arc<School>)> {
    let loaded = state
        .exec
        .load::<MeetingRound>(&StreamName::meeting(round_id))
        .await?;
    let Some(school_id) = loaded.state.school_id else {
        return Err(ApiError::not_found(format!("meeting round {round_id}")));
    };
    let roster = state.exec.school(school_id).await?;
    Ok((loaded.state, roster.state))
}

/// Runs a command on a round, deciding again while others write to it.
async fn round_command(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    round_id: MeetingRoundId,
    busy: &[Busy],
    action: MeetingAction,
) -> ApiResult<u64> {
    let (_, roster) = load_round(state, round_id).await?;
    let actor = caller.actor();
    Ok(state
        .exec
        .run_contended::<MeetingRound, _>(
            StreamName::meeting(round_id),
            actor,
            rid,
            ROUND_ATTEMPTS,
            |s, now| {
                meeting::decide(
                    &MeetingContext {
                        round: s,
                        school: &roster,
                        busy,
                    },
                    Command::new(actor, action.clone()),
                    now,
                )
            },
        )
        .await?
        .position)
}

/// Opens a meeting round for a group (staff of the group, and of every further group).
#[utoipa::path(post, path = "/v1/groups/{group_id}/meeting-rounds", tag = "meetings",
    request_body = NewRound,
    params(("group_id" = Uuid, Path, description = "The group")),
    responses((status = 201, body = RoundCreated), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn open_round(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(group_id): Path<GroupId>,
    Body(req): Body<NewRound>,
) -> ApiResult<(StatusCode, Json<RoundCreated>)> {
    let school_id = state.school_of_group(group_id).await?;
    let roster = state.exec.school(school_id).await?;
    let mut group_ids = vec![group_id];
    group_ids.extend(
        req.group_ids
            .iter()
            .flatten()
            .map(|g| GroupId::from_uuid(*g))
            .filter(|g| *g != group_id),
    );
    let slots = match (&req.slots, &req.generate) {
        (Some(slots), None) => SlotPlan::Slots(slots.iter().map(NewSlot::to_domain).collect()),
        (None, Some(g)) => SlotPlan::Generate {
            days: g
                .days
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    Ok(GenerateDay {
                        date: d.date,
                        from: time_of_day(&format!("generate.days[{i}].from"), &d.from)?,
                        to: time_of_day(&format!("generate.days[{i}].to"), &d.to)?,
                    })
                })
                .collect::<ApiResult<_>>()?,
            slot_minutes: g.slot_minutes,
            break_minutes: g.break_minutes.unwrap_or(0),
            staff: g.staff.iter().copied().map(PersonId::from_uuid).collect(),
        },
        _ => {
            return Err(ApiError::validation(
                "give exactly one of `slots` and `generate`",
            ))
        }
    };
    let actor = caller.actor();
    let round_id = MeetingRoundId::from_uuid(crate::idempotency::fresh_uuid());
    let action = MeetingAction::Open {
        round_id,
        group_ids,
        title: req.title.clone(),
        per: req.per.into(),
        place: req.place.clone().into(),
        book_until: req.book_until,
        slots,
    };
    let written = state
        .exec
        .run::<MeetingRound, _>(StreamName::meeting(round_id), actor, rid, |s, now| {
            meeting::decide(
                &MeetingContext {
                    round: s,
                    school: &roster.state,
                    busy: &[],
                },
                Command::new(actor, action.clone()),
                now,
            )
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RoundCreated {
            round_id: round_id.into(),
            position: written.position,
        }),
    ))
}

/// An added slot.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlotCreated {
    /// The slot's number in the round.
    pub slot_id: u32,
    /// The global position of the event written.
    pub position: u64,
}

/// Adds a slot to an open round (staff of the round's groups).
#[utoipa::path(post, path = "/v1/meeting-rounds/{round_id}/slots", tag = "meetings",
    request_body = NewSlot,
    params(("round_id" = Uuid, Path, description = "The round")),
    responses((status = 201, body = SlotCreated), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn add_slot(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(round_id): Path<MeetingRoundId>,
    Body(req): Body<NewSlot>,
) -> ApiResult<(StatusCode, Json<SlotCreated>)> {
    let (round, roster) = load_round(&state, round_id).await?;
    visible(&round, &roster, caller)?;
    let actor = caller.actor();
    let request = req.to_domain();
    let written = state
        .exec
        .run_contended::<MeetingRound, _>(
            StreamName::meeting(round_id),
            actor,
            rid,
            ROUND_ATTEMPTS,
            |s, now| {
                meeting::decide(
                    &MeetingContext {
                        round: s,
                        school: &roster,
                        busy: &[],
                    },
                    Command::new(actor, MeetingAction::AddSlot(request.clone())),
                    now,
                )
            },
        )
        .await?;
    let slot_id = written
        .events
        .iter()
        .find_map(|e| match e {
            meeting::MeetingEvent::MeetingSlotAdded(a) => Some(a.slot.slot),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("adding a slot wrote no slot"))?;
    Ok((
        StatusCode::CREATED,
        Json(SlotCreated {
            slot_id,
            position: written.position,
        }),
    ))
}

/// Blocks a free slot of an open round (staff of the round's groups); `409` when it is booked.
#[utoipa::path(post, path = "/v1/meeting-rounds/{round_id}/slots/{slot_id}/block", tag = "meetings",
    params(("round_id" = Uuid, Path, description = "The round"),
        ("slot_id" = u32, Path, description = "The slot's number")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn block_slot(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((round_id, slot)): Path<(MeetingRoundId, u32)>,
) -> ApiResult<Json<Position>> {
    let (round, roster) = load_round(&state, round_id).await?;
    visible(&round, &roster, caller)?;
    let position = round_command(
        &state,
        caller,
        rid,
        round_id,
        &[],
        MeetingAction::BlockSlot { slot },
    )
    .await?;
    Ok(Json(Position { position }))
}

/// `POST /v1/meeting-rounds/{round_id}/bookings`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewBooking {
    /// The slot's number.
    pub slot_id: u32,
    /// The child (in a group of the round). With `per: family` the booking holds the child's
    /// siblings in the round too.
    pub child_id: Uuid,
}

/// A booking made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BookingCreated {
    /// The booking.
    pub booking_id: Uuid,
    /// The global position of the event written.
    pub position: u64,
}

/// Every child of the school sharing a guardian with one of `children` (themselves included).
fn family_of(school: &School, children: &BTreeSet<ChildId>) -> Vec<ChildId> {
    let guardians: BTreeSet<PersonId> = children
        .iter()
        .filter_map(|c| school.children.get(c))
        .flat_map(|e| e.guardians.iter().copied())
        .collect();
    school
        .children
        .iter()
        .filter(|(c, e)| children.contains(c) || !e.guardians.is_disjoint(&guardians))
        .map(|(c, _)| *c)
        .collect()
}

/// The family's conversations in rounds other than `round_id`, from the read model.
async fn busy_elsewhere(
    state: &AppState,
    school: &School,
    round_id: MeetingRoundId,
    children: &BTreeSet<ChildId>,
) -> ApiResult<Vec<Busy>> {
    Ok(
        meetings::family_schedule(&state.system.db, &family_of(school, children))
            .await?
            .into_iter()
            .filter(|m| m.round_id != round_id)
            .map(|m| Busy {
                starts_at: m.starts_at,
                ends_at: m.ends_at,
            })
            .collect(),
    )
}

/// Whether the caller may know the round exists: staff of the school, guardians of a child in
/// its groups or in one of its bookings, the operator; `404` for anyone else.
fn visible(round: &MeetingRound, school: &School, caller: Caller) -> ApiResult<()> {
    let seen = match caller.person() {
        None => true,
        Some(p) => {
            school.is_staff(caller.actor())
                || round
                    .group_ids
                    .iter()
                    .any(|g| school.is_guardian_in_group(p, *g))
                || round
                    .bookings
                    .values()
                    .any(|b| meeting::is_booking_guardian(school, b, p))
        }
    };
    if seen {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "meeting round {}",
            round.round_id.map(Uuid::from).unwrap_or_default()
        )))
    }
}

/// Books a slot for a child (a guardian of the child; staff of the round's groups assign one to
/// a family that did not book): `201`, or `409` naming the slot when it is taken, the child
/// already has a booking in the round, or the family has another conversation then.
#[utoipa::path(post, path = "/v1/meeting-rounds/{round_id}/bookings", tag = "meetings",
    request_body = NewBooking,
    params(("round_id" = Uuid, Path, description = "The round")),
    responses((status = 201, body = BookingCreated), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn book(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(round_id): Path<MeetingRoundId>,
    Body(req): Body<NewBooking>,
) -> ApiResult<(StatusCode, Json<BookingCreated>)> {
    let (round, roster) = load_round(&state, round_id).await?;
    visible(&round, &roster, caller)?;
    let child_id = ChildId::from_uuid(req.child_id);
    let busy = busy_elsewhere(&state, &roster, round_id, &BTreeSet::from([child_id])).await?;
    let booking_id = MeetingBookingId::from_uuid(crate::idempotency::fresh_uuid());
    let position = round_command(
        &state,
        caller,
        rid,
        round_id,
        &busy,
        MeetingAction::Book {
            booking_id,
            slot: req.slot_id,
            child_id,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(BookingCreated {
            booking_id: booking_id.into(),
            position,
        }),
    ))
}

/// `PUT /v1/meeting-rounds/{round_id}/bookings/{booking_id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct MoveBooking {
    /// The slot to move to.
    pub slot_id: u32,
}

/// Moves a booking to another free slot (the guardians of its children until `book_until`;
/// staff of the round's groups at any time); `409` naming the slot when it is taken.
#[utoipa::path(put, path = "/v1/meeting-rounds/{round_id}/bookings/{booking_id}", tag = "meetings",
    request_body = MoveBooking,
    params(("round_id" = Uuid, Path, description = "The round"),
        ("booking_id" = Uuid, Path, description = "The booking")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn move_booking(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((round_id, booking_id)): Path<(MeetingRoundId, MeetingBookingId)>,
    Body(req): Body<MoveBooking>,
) -> ApiResult<Json<Position>> {
    let (round, roster) = load_round(&state, round_id).await?;
    visible(&round, &roster, caller)?;
    let children = round
        .bookings
        .get(&booking_id)
        .map(|b| b.child_ids.clone())
        .unwrap_or_default();
    let busy = busy_elsewhere(&state, &roster, round_id, &children).await?;
    let position = round_command(
        &state,
        caller,
        rid,
        round_id,
        &busy,
        MeetingAction::Move {
            booking_id,
            slot: req.slot_id,
        },
    )
    .await?;
    Ok(Json(Position { position }))
}

/// Cancels a booking (the guardians of its children until `book_until`; staff of the round's
/// groups at any time); its slot is free again.
#[utoipa::path(delete, path = "/v1/meeting-rounds/{round_id}/bookings/{booking_id}", tag = "meetings",
    params(("round_id" = Uuid, Path, description = "The round"),
        ("booking_id" = Uuid, Path, description = "The booking")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn cancel_booking(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((round_id, booking_id)): Path<(MeetingRoundId, MeetingBookingId)>,
) -> ApiResult<Json<Position>> {
    let (round, roster) = load_round(&state, round_id).await?;
    visible(&round, &roster, caller)?;
    let position = round_command(
        &state,
        caller,
        rid,
        round_id,
        &[],
        MeetingAction::CancelBooking { booking_id },
    )
    .await?;
    Ok(Json(Position { position }))
}

/// Closes a round (staff of its groups): nobody books any more; the bookings stand.
#[utoipa::path(post, path = "/v1/meeting-rounds/{round_id}/close", tag = "meetings",
    params(("round_id" = Uuid, Path, description = "The round")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn close_round(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(round_id): Path<MeetingRoundId>,
) -> ApiResult<Json<Position>> {
    let (round, roster) = load_round(&state, round_id).await?;
    visible(&round, &roster, caller)?;
    let position = round_command(&state, caller, rid, round_id, &[], MeetingAction::Close).await?;
    Ok(Json(Position { position }))
}

/// Cancels a round (staff of its groups): no conversations take place.
#[utoipa::path(post, path = "/v1/meeting-rounds/{round_id}/cancel", tag = "meetings",
    params(("round_id" = Uuid, Path, description = "The round")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn cancel_round(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(round_id): Path<MeetingRoundId>,
) -> ApiResult<Json<Position>> {
    let (round, roster) = load_round(&state, round_id).await?;
    visible(&round, &roster, caller)?;
    let position = round_command(&state, caller, rid, round_id, &[], MeetingAction::Cancel).await?;
    Ok(Json(Position { position }))
}

/// A slot as the caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Bookable.
    Free,
    /// Booked (for guardians: booked or blocked).
    Taken,
    /// Blocked by staff (shown to staff only).
    Blocked,
}

/// A booking.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BookingDoc {
    /// The booking.
    pub booking_id: Uuid,
    /// Its slot.
    pub slot_id: u32,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// The children the conversation is about.
    pub child_ids: Vec<Uuid>,
    /// Who booked it (a guardian, or staff who assigned it).
    pub booked_by: Uuid,
    /// Whether who booked it has been erased (the booking stays, for the child).
    pub booked_by_erased: bool,
    /// How often it moved.
    pub sequence: u32,
}

/// A slot.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlotDoc {
    /// Its number.
    pub slot_id: u32,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// The staff holding the conversation.
    pub staff: Vec<Uuid>,
    /// Free, taken or (staff only) blocked.
    pub state: SlotState,
    /// Its booking: for staff every one, for guardians only their own.
    pub booking: Option<BookingDoc>,
}

/// Children (one, or a family's) of the round's groups without a booking.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotBookedDoc {
    /// The children.
    pub child_ids: Vec<Uuid>,
    /// Their guardians.
    pub guardian_ids: Vec<Uuid>,
}

/// A meeting round as the caller may see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoundDoc {
    /// The round.
    pub round_id: Uuid,
    /// Its groups.
    pub group_ids: Vec<Uuid>,
    /// Its title.
    pub title: String,
    /// One booking per child or per family.
    pub per: PerName,
    /// Where.
    pub place: PlaceView,
    /// Guardians book, move and cancel until then.
    pub book_until: DateTime<Utc>,
    /// `open`, `closed` or `cancelled`.
    pub status: String,
    /// Whether the caller sees it as staff.
    pub as_staff: bool,
    /// Its slots by number.
    pub slots: Vec<SlotDoc>,
    /// The caller's own bookings (guardians).
    pub my_bookings: Vec<BookingDoc>,
    /// The caller's children in the round without a booking (guardians).
    pub my_children_to_book: Vec<Uuid>,
    /// Free slots next to (within 15 minutes of) the caller's family's other conversations,
    /// in this round or another (guardians).
    pub suggestions: Vec<u32>,
    /// Staff only: who has not booked yet.
    pub not_booked: Option<Vec<NotBookedDoc>>,
}

/// A meeting round: staff of the school see every booking and who has not booked yet;
/// guardians see each slot only as free or taken, their own bookings, and suggestions.
#[utoipa::path(get, path = "/v1/meeting-rounds/{round_id}", tag = "meetings",
    params(("round_id" = Uuid, Path, description = "The round"), MinPosition),
    responses((status = 200, body = RoundDoc), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn round_view(
    State(state): State<AppState>,
    caller: Caller,
    Path(round_id): Path<MeetingRoundId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<RoundDoc>> {
    min.wait(&state).await?;
    let (round, school) = load_round(&state, round_id).await?;
    visible(&round, &school, caller)?;
    let as_staff = caller.person().is_none() || school.is_staff(caller.actor());
    let me = caller.person();
    let mine =
        |b: &meeting::BookingState| me.is_some_and(|p| meeting::is_booking_guardian(&school, b, p));
    let mut slots = Vec::with_capacity(round.slots.len());
    let mut my_bookings = Vec::new();
    for (n, s) in &round.slots {
        let booking = match s
            .booking
            .and_then(|b| round.bookings.get(&b).map(|st| (b, st)))
        {
            Some((id, b)) if as_staff || mine(b) => {
                let erased = state
                    .exec
                    .load::<person::Person>(&StreamName::person(b.by))
                    .await?
                    .state
                    .erased;
                Some(BookingDoc {
                    booking_id: id.into(),
                    slot_id: *n,
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    child_ids: b.child_ids.iter().copied().map(Uuid::from).collect(),
                    booked_by: b.by.into(),
                    booked_by_erased: erased,
                    sequence: b.sequence,
                })
            }
            _ => None,
        };
        let slot_state = match (s.booking.is_some(), s.blocked) {
            (false, true) if as_staff => SlotState::Blocked,
            (true, _) | (false, true) => SlotState::Taken,
            (false, false) => SlotState::Free,
        };
        if let Some(b) = booking.as_ref().filter(|_| !as_staff) {
            my_bookings.push(BookingDoc {
                child_ids: b.child_ids.clone(),
                ..*b
            });
        }
        slots.push(SlotDoc {
            slot_id: *n,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            staff: s.staff.iter().copied().map(Uuid::from).collect(),
            state: slot_state,
            booking,
        });
    }
    let in_round = |c: &ChildId| {
        school
            .children
            .get(c)
            .is_some_and(|e| round.group_ids.contains(&e.group_id))
    };
    let (mut my_children_to_book, mut suggestions, mut not_booked) = (Vec::new(), Vec::new(), None);
    if as_staff {
        let mut families: Vec<NotBookedDoc> = Vec::new();
        let mut seen = BTreeSet::new();
        for (c, e) in school.children.iter().filter(|(c, _)| in_round(c)) {
            if seen.contains(c) || round.booking_of(*c).is_some() {
                continue;
            }
            let children = match round.per {
                Per::Child => vec![*c],
                Per::Family => meeting::family_in_round(&round, &school, *c),
            };
            seen.extend(children.iter().copied());
            let guardians: BTreeSet<PersonId> = children
                .iter()
                .filter_map(|c| school.children.get(c))
                .flat_map(|e| e.guardians.iter().copied())
                .chain(e.guardians.iter().copied())
                .collect();
            families.push(NotBookedDoc {
                child_ids: children.into_iter().map(Uuid::from).collect(),
                guardian_ids: guardians.into_iter().map(Uuid::from).collect(),
            });
        }
        not_booked = Some(families);
    } else if let Some(p) = me {
        let my_children: BTreeSet<ChildId> = school
            .children
            .iter()
            .filter(|(_, e)| e.guardians.contains(&p))
            .map(|(c, _)| *c)
            .collect();
        my_children_to_book = my_children
            .iter()
            .filter(|c| in_round(c) && round.booking_of(**c).is_none())
            .map(|c| Uuid::from(*c))
            .collect();
        // The family's conversations: in this round from its state, elsewhere from the read
        // model.
        let mut busy = busy_elsewhere(&state, &school, round_id, &my_children).await?;
        busy.extend(my_bookings.iter().map(|b| Busy {
            starts_at: b.starts_at,
            ends_at: b.ends_at,
        }));
        let near = Duration::minutes(meeting::ADJACENT_MINUTES);
        let now = Utc::now();
        suggestions = round
            .slots
            .iter()
            .filter(|(_, s)| s.booking.is_none() && !s.blocked && s.starts_at > now)
            .filter(|(_, s)| {
                busy.iter().any(|b| {
                    !meeting::overlaps((b.starts_at, b.ends_at), (s.starts_at, s.ends_at))
                        && ((s.starts_at >= b.ends_at && s.starts_at - b.ends_at <= near)
                            || (b.starts_at >= s.ends_at && b.starts_at - s.ends_at <= near))
                })
            })
            .map(|(n, _)| *n)
            .collect();
    }
    Ok(Json(RoundDoc {
        round_id: round_id.into(),
        group_ids: round.group_ids.iter().copied().map(Uuid::from).collect(),
        title: round.title.clone(),
        per: round.per.into(),
        place: place_view(
            &state,
            round
                .place
                .as_ref()
                .ok_or_else(|| ApiError::internal("an opened round without a place"))?,
        )
        .await?,
        book_until: round
            .book_until
            .ok_or_else(|| ApiError::internal("an opened round without a deadline"))?,
        status: round.status.as_str().to_owned(),
        as_staff,
        slots,
        my_bookings,
        my_children_to_book,
        suggestions,
        not_booked,
    }))
}

/// One conversation in the caller's schedule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeetingDoc {
    /// The round.
    pub round_id: Uuid,
    /// Its title.
    pub title: String,
    /// `room` or `online`.
    pub place_kind: String,
    /// The room's name or the link (`[erased]` once who opened the round is erased).
    pub place: String,
    /// The round's status: `open` or `closed`.
    pub status: String,
    /// The slot.
    pub slot_id: u32,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// The staff holding it.
    pub staff: Vec<Uuid>,
    /// The booking.
    pub booking_id: Uuid,
    /// The children it is about.
    pub child_ids: Vec<Uuid>,
    /// How often it moved.
    pub sequence: u32,
}

/// The caller's schedule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyMeetings {
    /// As staff: the booked conversations they hold.
    pub as_staff: Vec<MeetingDoc>,
    /// As guardian: the conversations booked for their children.
    pub as_guardian: Vec<MeetingDoc>,
}

impl MeetingDoc {
    async fn of(state: &AppState, m: meetings::Meeting) -> ApiResult<Self> {
        Ok(Self {
            place: open_place(state, &m.place).await?,
            round_id: m.round_id.into(),
            title: m.title,
            place_kind: m.place_kind,
            status: m.status,
            slot_id: m.slot,
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            staff: m.staff.into_iter().map(Uuid::from).collect(),
            booking_id: m.booking.booking_id.into(),
            child_ids: m.booking.child_ids.into_iter().map(Uuid::from).collect(),
            sequence: m.booking.sequence,
        })
    }
}

/// The children `person` is a linked guardian of and their class groups, from the memberships
/// read model.
pub(crate) async fn children_of(
    state: &AppState,
    person: PersonId,
) -> ApiResult<Vec<(ChildId, GroupId)>> {
    Ok(
        kring_projections::models::memberships::person(&state.system.db, person)
            .await?
            .map(|p| {
                p.children
                    .into_iter()
                    .filter(|c| c.guardian_ids.contains(&person))
                    .map(|c| (c.child_id, c.group_id))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// The caller's conversations (of rounds not cancelled), from the meetings read model: the ones
/// they hold as staff, and the ones booked for their children.
#[utoipa::path(get, path = "/v1/me/meetings", tag = "meetings",
    params(MinPosition),
    responses((status = 200, body = MyMeetings), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn my_meetings(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<MyMeetings>> {
    min.wait(&state).await?;
    let Some(me) = caller.person() else {
        return Err(ApiError::forbidden("the operator has no meetings"));
    };
    let as_staff = meetings::staff_schedule(&state.system.db, me).await?;
    let children: Vec<ChildId> = children_of(&state, me)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let as_guardian = meetings::family_schedule(&state.system.db, &children).await?;
    let mut docs = MyMeetings {
        as_staff: Vec::with_capacity(as_staff.len()),
        as_guardian: Vec::with_capacity(as_guardian.len()),
    };
    for m in as_staff {
        docs.as_staff.push(MeetingDoc::of(&state, m).await?);
    }
    for m in as_guardian {
        docs.as_guardian.push(MeetingDoc::of(&state, m).await?);
    }
    Ok(Json(docs))
}

/// The events of meeting rounds that concern `person` (when given) or any of `children`, for a
/// data export, their sealed fields opened as `allow` permits: each round's opening, closing or
/// cancelling; the bookings of the children and those `person` made, with their moves and
/// cancellations; and for staff the slots they hold and the bookings in them. The rounds come
/// from the meetings read model (cancelled bookings included), the events from their streams.
///
/// # Errors
/// Read, decoding and vault failures.
pub(crate) async fn export_events(
    state: &AppState,
    person: Option<PersonId>,
    children: &[ChildId],
    allow: &(dyn Fn(&kring_domain::access::Subject) -> bool + Sync),
) -> ApiResult<Vec<crate::routes::rights::ExportedEvent>> {
    use kring_store::EventStoreExt;
    use meeting::MeetingEvent as E;
    let ids: Vec<Uuid> = person
        .map(Uuid::from)
        .into_iter()
        .chain(children.iter().map(kring_domain::ChildId::as_uuid))
        .collect();
    let by_them = |by: PersonId| Some(by) == person;
    let holds = |staff: &[PersonId]| person.is_some_and(|p| staff.contains(&p));
    let mut out = Vec::new();
    for round_id in meetings::rounds_involving(&state.system.db, &ids).await? {
        // The slots `person` holds, and the bookings that concern them, as the stream goes.
        let mut held: BTreeSet<u32> = BTreeSet::new();
        let mut theirs: BTreeSet<MeetingBookingId> = BTreeSet::new();
        for r in state
            .system
            .store
            .read_stream_to_end(&StreamName::meeting(round_id))
            .await?
        {
            let kring_domain::Event::Meeting(event) = r.decode().map_err(ApiError::internal)?
            else {
                continue;
            };
            let concerns = match &event {
                E::MeetingRoundOpened(d) => {
                    held.extend(d.slots.iter().filter(|s| holds(&s.staff)).map(|s| s.slot));
                    true
                }
                E::MeetingSlotAdded(d) => {
                    if holds(&d.slot.staff) {
                        held.insert(d.slot.slot);
                    }
                    held.contains(&d.slot.slot) || by_them(d.by)
                }
                E::MeetingSlotBlocked(d) => held.contains(&d.slot) || by_them(d.by),
                E::MeetingBooked(d) => {
                    let ours = by_them(d.by)
                        || held.contains(&d.slot)
                        || d.child_ids.iter().any(|c| children.contains(c));
                    if ours {
                        theirs.insert(d.booking_id);
                    }
                    ours
                }
                E::MeetingMoved(d) => {
                    let ours = theirs.contains(&d.booking_id)
                        || by_them(d.by)
                        || held.contains(&d.to_slot);
                    if ours {
                        theirs.insert(d.booking_id);
                    }
                    ours
                }
                E::MeetingBookingCancelled(d) => theirs.contains(&d.booking_id) || by_them(d.by),
                E::MeetingRoundClosed(_) | E::MeetingRoundCancelled(_) => true,
            };
            if concerns {
                out.push(crate::routes::rights::exported(&state.system.vault, r, allow).await?);
            }
        }
    }
    Ok(out)
}
