//! School administration: every change a school makes to its roster after setting it up —
//! staff leaving, unassigned or given another role, children moved, unenrolled or corrected,
//! guardians unlinked — and the school's settings and consent policy.
//!
//! Each route runs one roster command; rights come from the roster as the log has it now, so a
//! relation that ends stops granting anything with the event that ends it.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::consent::child_place;
use crate::routes::conversations::QuietHoursDoc;
use crate::routes::schools::roster_command;
use crate::routes::{Body, Position, Role};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use kring_domain::school::{PolicyPurpose, SchoolAction, SchoolEvent, SchoolSettings};
use kring_domain::{ChildId, Command, GroupId, PersonId, Purpose, SchoolId};
use kring_projections::models::memberships;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/schools/{school_id}/staff/{person_id}",
            delete(remove_staff),
        )
        .route(
            "/v1/schools/{school_id}/staff/{person_id}/role",
            put(change_role),
        )
        .route(
            "/v1/groups/{group_id}/staff/{person_id}",
            delete(unassign_staff),
        )
        .route("/v1/children/{child_id}/move", post(move_child))
        .route(
            "/v1/groups/{group_id}/children/{child_id}",
            delete(unenroll_child),
        )
        .route(
            "/v1/children/{child_id}",
            axum::routing::patch(correct_child),
        )
        .route(
            "/v1/children/{child_id}/guardians/{person_id}",
            delete(unlink_guardian),
        )
        .route(
            "/v1/schools/{school_id}/settings",
            get(settings).patch(change_settings),
        )
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        remove_staff,
        change_role,
        unassign_staff,
        move_child,
        unenroll_child,
        correct_child,
        unlink_guardian,
        settings,
        change_settings,
        publish_policy
    ),
    components(schemas(
        NewRole,
        MoveTo,
        ChildCorrection,
        SettingsDoc,
        SettingsChange,
        NewPolicy,
        NewPolicyPurpose,
        PolicyPublished
    ))
)]
pub struct Doc;

/// Takes a staff member off the school: every group of it, every right through it (director,
/// operator).
#[utoipa::path(delete, path = "/v1/schools/{school_id}/staff/{person_id}", tag = "administration",
    params(("school_id" = Uuid, Path, description = "The school"), ("person_id" = Uuid, Path, description = "The staff member")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn remove_staff(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((school_id, person_id)): Path<(SchoolId, PersonId)>,
) -> ApiResult<Json<Position>> {
    let position = roster_command(&state, school_id, caller, rid, || {
        SchoolAction::RemoveStaff { person_id }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// `PUT /v1/schools/{school_id}/staff/{person_id}/role`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewRole {
    /// The new role.
    pub role: Role,
}

/// Gives a staff member another role (director, operator).
#[utoipa::path(put, path = "/v1/schools/{school_id}/staff/{person_id}/role", tag = "administration",
    request_body = NewRole,
    params(("school_id" = Uuid, Path, description = "The school"), ("person_id" = Uuid, Path, description = "The staff member")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((school_id, person_id)): Path<(SchoolId, PersonId)>,
    Body(req): Body<NewRole>,
) -> ApiResult<Json<Position>> {
    let position = roster_command(&state, school_id, caller, rid, || {
        SchoolAction::ChangeStaffRole {
            person_id,
            role: req.role.into(),
        }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// Takes a staff member off a group (director).
#[utoipa::path(delete, path = "/v1/groups/{group_id}/staff/{person_id}", tag = "administration",
    params(("group_id" = Uuid, Path, description = "The group"), ("person_id" = Uuid, Path, description = "The staff member")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn unassign_staff(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((group_id, person_id)): Path<(GroupId, PersonId)>,
) -> ApiResult<Json<Position>> {
    let school_id = state.school_of_group(group_id).await?;
    let position = roster_command(&state, school_id, caller, rid, || {
        SchoolAction::UnassignStaff {
            group_id,
            person_id,
        }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// `POST /v1/children/{child_id}/move`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MoveTo {
    /// The class group the child moves to.
    pub group_id: Uuid,
}

/// Moves a child to another class group of the school (director, staff of the child's current
/// group). The old class's parents lose sight of the child's photos at once; the new class's
/// see them as consent allows.
#[utoipa::path(post, path = "/v1/children/{child_id}/move", tag = "administration", request_body = MoveTo,
    params(("child_id" = Uuid, Path, description = "The child")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn move_child(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(child_id): Path<ChildId>,
    Body(req): Body<MoveTo>,
) -> ApiResult<Json<Position>> {
    let place = child_place(&state, caller, child_id).await?;
    let to_group_id = GroupId::from_uuid(req.group_id);
    let position = roster_command(&state, place.school_id, caller, rid, || {
        SchoolAction::MoveChild {
            child_id,
            to_group_id,
        }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// Unenrols a child: they leave the school, and their guardians' access through them ends
/// (director).
#[utoipa::path(delete, path = "/v1/groups/{group_id}/children/{child_id}", tag = "administration",
    params(("group_id" = Uuid, Path, description = "The child's class group"), ("child_id" = Uuid, Path, description = "The child")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn unenroll_child(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((group_id, child_id)): Path<(GroupId, ChildId)>,
) -> ApiResult<Json<Position>> {
    let place = child_place(&state, caller, child_id).await?;
    if place.roster.state.enrolment(child_id)?.group_id != group_id {
        return Err(ApiError::not_found(format!(
            "child {child_id} in group {group_id}"
        )));
    }
    let position = roster_command(&state, place.school_id, caller, rid, || {
        SchoolAction::UnenrollChild { child_id }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// `PATCH /v1/children/{child_id}`: the fields to correct.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChildCorrection {
    /// The corrected first name.
    pub first_name: Option<String>,
    /// The corrected initial of the last name (one letter).
    pub last_initial: Option<String>,
}

/// Corrects a child's first name or initial (staff of the child's group, directors).
#[utoipa::path(patch, path = "/v1/children/{child_id}", tag = "administration", request_body = ChildCorrection,
    params(("child_id" = Uuid, Path, description = "The child")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn correct_child(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(child_id): Path<ChildId>,
    Body(req): Body<ChildCorrection>,
) -> ApiResult<Json<Position>> {
    if req.first_name.is_none() && req.last_initial.is_none() {
        return Err(ApiError::validation(
            "name first_name, last_initial or both to correct",
        ));
    }
    let place = child_place(&state, caller, child_id).await?;
    // Only staff of the child's group learn the current names; the domain refuses the rest.
    if !place
        .roster
        .state
        .is_group_staff(caller.actor(), place.group_id)
    {
        return Err(ApiError::forbidden(format!(
            "only staff of child {child_id}'s group correct its details"
        )));
    }
    let current = memberships::child(&state.system.db, child_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("child {child_id}")))?;
    let first_name = match req.first_name {
        Some(name) => name,
        None => state.open(&current.first_name).await?,
    };
    let last_initial = match req.last_initial {
        Some(initial) => initial,
        None => state.open(&current.last_initial).await?,
    };
    let position = roster_command(&state, place.school_id, caller, rid, || {
        SchoolAction::CorrectChild {
            child_id,
            first_name: first_name.clone(),
            last_initial: last_initial.clone(),
        }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// Unlinks a guardian from a child (staff of the child's group, directors, the operator, or the
/// guardian themself, leaving). Their access through the child ends at once: the child's
/// photos, group, consents, absences and conversations about the child.
#[utoipa::path(delete, path = "/v1/children/{child_id}/guardians/{person_id}", tag = "administration",
    params(("child_id" = Uuid, Path, description = "The child"), ("person_id" = Uuid, Path, description = "The guardian")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn unlink_guardian(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((child_id, guardian_id)): Path<(ChildId, PersonId)>,
) -> ApiResult<Json<Position>> {
    let place = child_place(&state, caller, child_id).await?;
    let position = roster_command(&state, place.school_id, caller, rid, || {
        SchoolAction::UnlinkGuardian {
            child_id,
            guardian_id,
        }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// A school's settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SettingsDoc {
    /// Days content is kept before it expires.
    pub retention_days: u32,
    /// Days of notice a planned absence needs.
    pub absence_notice_days: u32,
    /// Days an invitation stays valid.
    pub invitation_valid_days: u32,
    /// The IANA time zone of the school's calendar.
    pub timezone: String,
    /// Quiet hours for staff who have not set their own; `null` for none.
    pub default_quiet_hours: Option<QuietHoursDoc>,
}

impl From<&SchoolSettings> for SettingsDoc {
    fn from(s: &SchoolSettings) -> Self {
        Self {
            retention_days: s.retention_days,
            absence_notice_days: s.absence_notice_days,
            invitation_valid_days: s.invitation_ttl_days,
            timezone: s.timezone.clone(),
            default_quiet_hours: s
                .default_quiet_hours
                .as_ref()
                .map(QuietHoursDoc::from_domain),
        }
    }
}

/// A school's settings (its staff and parents, the operator; `404` for anyone else).
#[utoipa::path(get, path = "/v1/schools/{school_id}/settings", tag = "administration",
    params(("school_id" = Uuid, Path, description = "The school"), MinPosition),
    responses((status = 200, body = SettingsDoc), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(school_id): Path<SchoolId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<SettingsDoc>> {
    min.wait(&state).await?;
    let roster = state.exec.school(school_id).await?.state;
    if !roster.is_member(caller.actor()) {
        return Err(ApiError::not_found(format!("school {school_id}")));
    }
    Ok(Json(SettingsDoc::from(&roster.settings)))
}

/// `PATCH /v1/schools/{school_id}/settings`: the settings to change; the rest stay.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SettingsChange {
    /// Days content is kept before it expires (1–3650).
    pub retention_days: Option<u32>,
    /// Days of notice a planned absence needs (0–60).
    pub absence_notice_days: Option<u32>,
    /// Days an invitation stays valid (1–90).
    pub invitation_valid_days: Option<u32>,
    /// The IANA time zone of the school's calendar, e.g. `Europe/Amsterdam`.
    pub timezone: Option<String>,
    /// Quiet hours for staff who have not set their own.
    pub default_quiet_hours: Option<QuietHoursDoc>,
}

/// Changes the school's settings (director, operator). Fields left out keep their value.
#[utoipa::path(patch, path = "/v1/schools/{school_id}/settings", tag = "administration", request_body = SettingsChange,
    params(("school_id" = Uuid, Path, description = "The school")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn change_settings(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(school_id): Path<SchoolId>,
    Body(req): Body<SettingsChange>,
) -> ApiResult<Json<Position>> {
    let quiet = req
        .default_quiet_hours
        .as_ref()
        .map(QuietHoursDoc::to_domain)
        .transpose()?;
    state.exec.school(school_id).await?;
    let written = state
        .exec
        .run_school(school_id, caller.actor(), rid, |roster, now| {
            let mut settings = roster.settings.clone();
            if let Some(days) = req.retention_days {
                settings.retention_days = days;
            }
            if let Some(days) = req.absence_notice_days {
                settings.absence_notice_days = days;
            }
            if let Some(days) = req.invitation_valid_days {
                settings.invitation_ttl_days = days;
            }
            if let Some(tz) = &req.timezone {
                settings.timezone.clone_from(tz);
            }
            if let Some(q) = &quiet {
                settings.default_quiet_hours = Some(q.clone());
            }
            kring_domain::school::decide(
                roster,
                Command::new(caller.actor(), SchoolAction::ChangeSettings(settings)),
                now,
            )
        })
        .await?;
    Ok(Json(Position {
        position: written.position,
    }))
}

/// One purpose of a new policy version.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPolicyPurpose {
    /// The purpose, e.g. `group_communication`.
    pub purpose: String,
    /// What it means, in the school's words (1–1000 characters).
    pub description: String,
}

/// `POST /v1/schools/{school_id}/consent-policy`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPolicy {
    /// The purposes the new version asks consent for.
    pub purposes: Vec<NewPolicyPurpose>,
}

/// A published policy version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyPublished {
    /// The new version's number.
    pub version: u32,
    /// The global position of the event written.
    pub position: u64,
}

/// Publishes a new version of the school's consent policy (director). A purpose whose
/// description changed needs a guardian's decision again before it counts.
#[utoipa::path(post, path = "/v1/schools/{school_id}/consent-policy", tag = "administration", request_body = NewPolicy,
    params(("school_id" = Uuid, Path, description = "The school")),
    responses((status = 201, body = PolicyPublished), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn publish_policy(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(school_id): Path<SchoolId>,
    Body(req): Body<NewPolicy>,
) -> ApiResult<(StatusCode, Json<PolicyPublished>)> {
    let purposes = req
        .purposes
        .iter()
        .map(|p| {
            Ok(PolicyPurpose {
                purpose: p
                    .purpose
                    .parse::<Purpose>()
                    .map_err(|e| ApiError::validation(e.to_string()))?,
                description: p.description.clone(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    state.exec.school(school_id).await?;
    let written = state
        .exec
        .run_school(school_id, caller.actor(), rid, |roster, now| {
            let action = SchoolAction::PublishConsentPolicy {
                purposes: purposes.clone(),
            };
            kring_domain::school::decide(roster, Command::new(caller.actor(), action), now)
        })
        .await?;
    let version = written
        .events
        .iter()
        .find_map(|e| match e {
            SchoolEvent::ConsentPolicyPublished(p) => Some(p.version),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("publishing a policy wrote no ConsentPolicyPublished"))?;
    Ok((
        StatusCode::CREATED,
        Json(PolicyPublished {
            version,
            position: written.position,
        }),
    ))
}
