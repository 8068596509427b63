//! School life: planned absences reported by guardians (with the school's notice period) and
//! activities in a group's calendar with volunteer slots that are never overbooked.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::exec::Loaded;
use crate::routes::{Body, Position};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use kring_domain::activity::{self, ActivityAction, ActivityContext};
use kring_domain::child::{self, ChildAction, ChildContext};
use kring_domain::school::School;
use kring_domain::{AbsenceId, ActivityId, ChildId, Command, GroupId, PersonId, StreamName};
use kring_projections::models::{absences, activities, memberships};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/children/{child_id}/absences",
            post(report_absence).get(absences_of_child),
        )
        .route(
            "/v1/children/{child_id}/absences/{absence_id}",
            delete(cancel_absence),
        )
        .route(
            "/v1/children/{child_id}/absences/{absence_id}/acknowledgement",
            post(acknowledge_absence),
        )
        .route("/v1/groups/{group_id}/absences", get(absences_on))
        .route(
            "/v1/groups/{group_id}/activities",
            post(schedule_activity).get(activities_of_group),
        )
        .route("/v1/activities/{activity_id}", delete(cancel_activity))
        .route("/v1/activities/{activity_id}/volunteers", post(volunteer))
        .route(
            "/v1/activities/{activity_id}/volunteers/me",
            delete(withdraw),
        )
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        report_absence,
        cancel_absence,
        acknowledge_absence,
        absences_on,
        absences_of_child,
        schedule_activity,
        cancel_activity,
        volunteer,
        withdraw,
        activities_of_group
    ),
    components(schemas(
        ChildAbsencesDoc,
        ChildAbsenceDoc,
        NewAbsence,
        AbsenceCreated,
        AbsenceDoc,
        AbsencesDoc,
        NewActivity,
        ActivityCreated,
        ActivityDoc,
        ActivitiesDoc
    ))
)]
pub struct Doc;

/// `POST /v1/children/{child_id}/absences`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAbsence {
    /// First day absent (`YYYY-MM-DD`).
    pub from: NaiveDate,
    /// Last day absent (`YYYY-MM-DD`).
    pub to: NaiveDate,
    /// Why (shown to the staff of the child's group only; 1–500 characters).
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

/// A reported absence.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AbsenceCreated {
    /// The absence.
    pub absence_id: Uuid,
    /// The global position of the event written.
    pub position: u64,
}

/// The child's school roster, checking that the caller may know the child exists: its
/// school's staff and its guardians (the operator too); `404` for anyone else.
async fn roster_for_child(
    state: &AppState,
    caller: Caller,
    child_id: ChildId,
) -> ApiResult<Loaded<Arc<School>>> {
    let (school_id, _) = state.place_of_child(child_id).await?;
    let roster = state.exec.school(school_id).await?;
    let known = match caller {
        Caller::Operator => true,
        Caller::Person(p) => {
            roster.state.is_staff(caller.actor()) || roster.state.is_guardian(p, child_id)
        }
    };
    if known {
        Ok(roster)
    } else {
        Err(ApiError::not_found(format!("child {child_id}")))
    }
}

/// Runs a command on the child's stream.
async fn child_command(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    child_id: ChildId,
    action: ChildAction,
) -> ApiResult<u64> {
    let roster = roster_for_child(state, caller, child_id).await?;
    let actor = caller.actor();
    Ok(state
        .exec
        .run::<child::Child, _>(StreamName::child(child_id), actor, rid, |s, now| {
            child::decide(
                &ChildContext {
                    child: s,
                    school: &roster.state,
                },
                Command::new(actor, action.clone()),
                now,
            )
        })
        .await?
        .position)
}

/// Reports a planned absence (a guardian of the child). It must start at least the school's
/// notice period ahead (one day by default, counted in the school's time zone): `422
/// rule_violated` otherwise. Illness is phoned in, not reported here.
#[utoipa::path(post, path = "/v1/children/{child_id}/absences", tag = "school life",
    request_body = NewAbsence,
    params(("child_id" = Uuid, Path, description = "The child")),
    responses((status = 201, body = AbsenceCreated), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn report_absence(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(child_id): Path<ChildId>,
    Body(req): Body<NewAbsence>,
) -> ApiResult<(StatusCode, Json<AbsenceCreated>)> {
    let absence_id = AbsenceId::from_uuid(crate::idempotency::fresh_uuid());
    let position = child_command(
        &state,
        caller,
        rid,
        child_id,
        ChildAction::ReportAbsence {
            child_id,
            absence_id,
            from: req.from,
            to: req.to,
            reason: req.reason,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AbsenceCreated {
            absence_id: absence_id.into(),
            position,
        }),
    ))
}

/// Cancels a planned absence (a guardian of the child).
#[utoipa::path(delete, path = "/v1/children/{child_id}/absences/{absence_id}", tag = "school life",
    params(("child_id" = Uuid, Path, description = "The child"),
        ("absence_id" = Uuid, Path, description = "The absence")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn cancel_absence(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((child_id, absence_id)): Path<(ChildId, AbsenceId)>,
) -> ApiResult<Json<Position>> {
    let position = child_command(
        &state,
        caller,
        rid,
        child_id,
        ChildAction::CancelAbsence {
            child_id,
            absence_id,
        },
    )
    .await?;
    Ok(Json(Position { position }))
}

/// Acknowledges a planned absence (staff of the child's group, a director): the guardian who
/// reported it is notified (`absence_acknowledged`). `409` when acknowledged or cancelled
/// already.
#[utoipa::path(post, path = "/v1/children/{child_id}/absences/{absence_id}/acknowledgement", tag = "school life",
    params(("child_id" = Uuid, Path, description = "The child"),
        ("absence_id" = Uuid, Path, description = "The absence")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn acknowledge_absence(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((child_id, absence_id)): Path<(ChildId, AbsenceId)>,
) -> ApiResult<Json<Position>> {
    let position = child_command(
        &state,
        caller,
        rid,
        child_id,
        ChildAction::AcknowledgeAbsence {
            child_id,
            absence_id,
        },
    )
    .await?;
    Ok(Json(Position { position }))
}

/// `?date=` on a group's absences.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OnDate {
    /// The school day (`YYYY-MM-DD`); today in the school's time zone when absent.
    pub date: Option<NaiveDate>,
}

/// One absence on the staff's day list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AbsenceDoc {
    /// The absence.
    pub absence_id: Uuid,
    /// The child.
    pub child_id: Uuid,
    /// The child's first name (`[erased]` after erasure).
    pub first_name: Option<String>,
    /// The initial of the child's last name.
    pub last_initial: Option<String>,
    /// First day absent.
    pub from: NaiveDate,
    /// Last day absent.
    pub to: NaiveDate,
    /// Why.
    pub reason: String,
    /// The guardian who reported it.
    pub reported_by: Uuid,
    /// When it was reported.
    pub reported_at: DateTime<Utc>,
}

/// A class group's absences on one day.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AbsencesDoc {
    /// The group.
    pub group_id: Uuid,
    /// The day.
    pub date: NaiveDate,
    /// The absences covering it, not cancelled, by child.
    pub absences: Vec<AbsenceDoc>,
}

/// The planned absences in a group on a day, reasons included (staff of the group: its
/// assigned staff and the directors); `403` for anyone else.
#[utoipa::path(get, path = "/v1/groups/{group_id}/absences", tag = "school life",
    params(("group_id" = Uuid, Path, description = "The class group"), OnDate, MinPosition),
    responses((status = 200, body = AbsencesDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn absences_on(
    State(state): State<AppState>,
    caller: Caller,
    Path(group_id): Path<GroupId>,
    Q(on): Q<OnDate>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<AbsencesDoc>> {
    min.wait(&state).await?;
    let school_id = state.school_of_group(group_id).await?;
    let roster = state.exec.school(school_id).await?;
    if !roster.state.is_group_staff(caller.actor(), group_id) {
        return Err(ApiError::forbidden(format!(
            "only the staff of group {group_id} see its absences"
        )));
    }
    let date = on.date.unwrap_or_else(|| {
        Utc::now()
            .with_timezone(&roster.state.settings.tz())
            .date_naive()
    });
    // A child's name, opened once per request.
    let mut names: HashMap<ChildId, (Option<String>, Option<String>)> = HashMap::new();
    let mut docs = Vec::new();
    for a in absences::absences_on(&state.system.db, group_id, date).await? {
        let (first_name, last_initial) = if let Some(name) = names.get(&a.child_id) {
            name.clone()
        } else {
            let name = match memberships::child(&state.system.db, a.child_id).await? {
                Some(c) => (
                    Some(state.open(&c.first_name).await?),
                    Some(state.open(&c.last_initial).await?),
                ),
                None => (None, None),
            };
            names.insert(a.child_id, name.clone());
            name
        };
        docs.push(AbsenceDoc {
            absence_id: a.absence_id.into(),
            child_id: a.child_id.into(),
            first_name,
            last_initial,
            from: a.from,
            to: a.to,
            reason: state.open(&a.reason).await?,
            reported_by: a.reported_by.into(),
            reported_at: a.reported_at,
        });
    }
    Ok(Json(AbsencesDoc {
        group_id: group_id.into(),
        date,
        absences: docs,
    }))
}

/// One planned absence of a child.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChildAbsenceDoc {
    /// The absence.
    pub absence_id: Uuid,
    /// First day absent.
    pub from: NaiveDate,
    /// Last day absent.
    pub to: NaiveDate,
    /// Why (`[erased]` after the child's erasure).
    pub reason: String,
    /// The guardian who reported it.
    pub reported_by: Uuid,
    /// When it was reported.
    pub reported_at: DateTime<Utc>,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

/// A child's planned absences.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChildAbsencesDoc {
    /// The child.
    pub child_id: Uuid,
    /// Every reported absence, cancelled ones included, by first day.
    pub absences: Vec<ChildAbsenceDoc>,
}

/// The planned absences reported for a child (its guardians, staff of its group); `404` for
/// anyone who may not know of the child, `403` for other staff.
#[utoipa::path(get, path = "/v1/children/{child_id}/absences", tag = "school life",
    params(("child_id" = Uuid, Path, description = "The child"), MinPosition),
    responses((status = 200, body = ChildAbsencesDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn absences_of_child(
    State(state): State<AppState>,
    caller: Caller,
    Path(child_id): Path<ChildId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<ChildAbsencesDoc>> {
    min.wait(&state).await?;
    let place = crate::routes::consent::child_place(&state, caller, child_id).await?;
    let roster = &place.roster.state;
    let allowed = caller
        .person()
        .is_some_and(|p| roster.is_guardian(p, child_id))
        || roster.is_group_staff(caller.actor(), place.group_id);
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "only guardians of child {child_id} and staff of its group see its absences"
        )));
    }
    let mut docs = Vec::new();
    for a in absences::absences_of_child(&state.system.db, child_id).await? {
        docs.push(ChildAbsenceDoc {
            absence_id: a.absence_id.into(),
            from: a.from,
            to: a.to,
            reason: state.open(&a.reason).await?,
            reported_by: a.reported_by.into(),
            reported_at: a.reported_at,
            cancelled: a.cancelled,
        });
    }
    Ok(Json(ChildAbsencesDoc {
        child_id: child_id.into(),
        absences: docs,
    }))
}

/// `POST /v1/groups/{group_id}/activities`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewActivity {
    /// Its title.
    pub title: String,
    /// Start (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// End (RFC 3339), after the start.
    pub ends_at: DateTime<Utc>,
    /// How many volunteers it needs (0–200).
    pub volunteer_slots: u32,
}

/// A scheduled activity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivityCreated {
    /// The activity.
    pub activity_id: Uuid,
    /// The global position of the event written.
    pub position: u64,
}

/// Schedules an activity in a group's calendar (staff of the group).
#[utoipa::path(post, path = "/v1/groups/{group_id}/activities", tag = "school life",
    request_body = NewActivity,
    params(("group_id" = Uuid, Path, description = "The group")),
    responses((status = 201, body = ActivityCreated), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn schedule_activity(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(group_id): Path<GroupId>,
    Body(req): Body<NewActivity>,
) -> ApiResult<(StatusCode, Json<ActivityCreated>)> {
    let school_id = state.school_of_group(group_id).await?;
    let roster = state.exec.school(school_id).await?;
    let actor = caller.actor();
    let activity_id = ActivityId::from_uuid(crate::idempotency::fresh_uuid());
    let written = state
        .exec
        .run::<activity::Activity, _>(StreamName::activity(activity_id), actor, rid, |s, now| {
            activity::decide(
                &ActivityContext {
                    activity: s,
                    school: &roster.state,
                },
                Command::new(
                    actor,
                    ActivityAction::Schedule {
                        activity_id,
                        group_id,
                        title: req.title.clone(),
                        starts_at: req.starts_at,
                        ends_at: req.ends_at,
                        volunteer_slots: req.volunteer_slots,
                    },
                ),
                now,
            )
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ActivityCreated {
            activity_id: activity_id.into(),
            position: written.position,
        }),
    ))
}

/// Runs a command on an existing activity with its school's roster; `404` for an unknown one.
async fn activity_command(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    activity_id: ActivityId,
    action: ActivityAction,
) -> ApiResult<u64> {
    let stream = StreamName::activity(activity_id);
    let loaded = state.exec.load::<activity::Activity>(&stream).await?;
    let Some(group_id) = loaded.state.group_id else {
        return Err(ApiError::not_found(format!("activity {activity_id}")));
    };
    let school_id = state.school_of_group(group_id).await?;
    let roster = state.exec.school(school_id).await?;
    let actor = caller.actor();
    Ok(state
        .exec
        .run::<activity::Activity, _>(stream, actor, rid, |s, now| {
            activity::decide(
                &ActivityContext {
                    activity: s,
                    school: &roster.state,
                },
                Command::new(actor, action.clone()),
                now,
            )
        })
        .await?
        .position)
}

/// Takes a volunteer slot (a guardian of a child in the activity's group): `201`, or `409`
/// when every slot is taken or the caller already volunteers.
#[utoipa::path(post, path = "/v1/activities/{activity_id}/volunteers", tag = "school life",
    params(("activity_id" = Uuid, Path, description = "The activity")),
    responses((status = 201, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn volunteer(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(activity_id): Path<ActivityId>,
) -> ApiResult<(StatusCode, Json<Position>)> {
    let position =
        activity_command(&state, caller, rid, activity_id, ActivityAction::SignUp).await?;
    Ok((StatusCode::CREATED, Json(Position { position })))
}

/// Gives back the caller's volunteer slot; `422 rule_violated` when they do not volunteer.
#[utoipa::path(delete, path = "/v1/activities/{activity_id}/volunteers/me", tag = "school life",
    params(("activity_id" = Uuid, Path, description = "The activity")),
    responses((status = 200, body = Position), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(activity_id): Path<ActivityId>,
) -> ApiResult<Json<Position>> {
    let position =
        activity_command(&state, caller, rid, activity_id, ActivityAction::Withdraw).await?;
    Ok(Json(Position { position }))
}

/// Cancels an activity (staff of its group).
#[utoipa::path(delete, path = "/v1/activities/{activity_id}", tag = "school life",
    params(("activity_id" = Uuid, Path, description = "The activity")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn cancel_activity(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(activity_id): Path<ActivityId>,
) -> ApiResult<Json<Position>> {
    let position =
        activity_command(&state, caller, rid, activity_id, ActivityAction::Cancel).await?;
    Ok(Json(Position { position }))
}

/// An activity with its volunteer slots.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivityDoc {
    /// The activity.
    pub activity_id: Uuid,
    /// Its group.
    pub group_id: Uuid,
    /// Its title.
    pub title: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Number of volunteer slots.
    pub volunteer_slots: u32,
    /// Slots taken.
    pub taken: u32,
    /// Slots still free.
    pub free: u32,
    /// The volunteers, in the order they signed up (names: `GET /v1/groups/{group_id}`).
    pub volunteers: Vec<Uuid>,
    /// Whether the caller volunteers.
    pub you_volunteer: bool,
    /// Who scheduled it.
    pub scheduled_by: Uuid,
    /// Whether it was cancelled.
    pub cancelled: bool,
}

/// A group's calendar.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActivitiesDoc {
    /// The group.
    pub group_id: Uuid,
    /// Its activities by start time, cancelled ones flagged.
    pub activities: Vec<ActivityDoc>,
}

/// A group's activities with their slots (members of the group: its staff and the guardians of
/// its pupils); `403` for anyone else.
#[utoipa::path(get, path = "/v1/groups/{group_id}/activities", tag = "school life",
    params(("group_id" = Uuid, Path, description = "The group"), MinPosition),
    responses((status = 200, body = ActivitiesDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn activities_of_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(group_id): Path<GroupId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<ActivitiesDoc>> {
    min.wait(&state).await?;
    let school_id = state.school_of_group(group_id).await?;
    let roster = state.exec.school(school_id).await?;
    let me: Option<PersonId> = caller.person();
    let member = match me {
        None => true,
        Some(p) => {
            roster.state.audience_staff(group_id).contains(&p)
                || roster.state.is_guardian_in_group(p, group_id)
        }
    };
    if !member {
        return Err(ApiError::forbidden(format!(
            "only members of group {group_id} see its activities"
        )));
    }
    let activities = activities::activities_of_group(&state.system.db, group_id)
        .await?
        .into_iter()
        .map(|a| ActivityDoc {
            activity_id: a.activity_id.into(),
            group_id: a.group_id.into(),
            title: a.title,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            volunteer_slots: a.slots,
            taken: a.taken,
            free: a.free,
            you_volunteer: me.is_some_and(|p| a.volunteers.contains(&p)),
            volunteers: a.volunteers.into_iter().map(Uuid::from).collect(),
            scheduled_by: a.scheduled_by.into(),
            cancelled: a.cancelled,
        })
        .collect();
    Ok(Json(ActivitiesDoc {
        group_id: group_id.into(),
        activities,
    }))
}
