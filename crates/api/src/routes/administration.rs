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
use crate::routes::notification_preferences::{digest_time, KindChannels};
use crate::routes::schools::roster_command;
use crate::routes::{Body, Position, Role};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::NaiveDate;
use kring_domain::school::{
    self, Destination, GroupPlan, PolicyPurpose, SchoolAction, SchoolEvent, SchoolSettings,
    TransitionChange, YearTransition,
};
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
        .route(
            "/v1/schools/{school_id}/year-transition",
            post(year_transition),
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
        publish_policy,
        year_transition
    ),
    components(schemas(
        NewRole,
        MoveTo,
        ChildCorrection,
        SettingsDoc,
        SettingsChange,
        NewPolicy,
        NewPolicyPurpose,
        PolicyPublished,
        TransitionRequest,
        TransitionGroup,
        NewGroupName,
        TransitionDoc,
        ChangeDoc
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
    /// The channel of each notification kind for members who did not choose one (kinds left
    /// out: push).
    pub default_channels: KindChannels,
    /// The digest time for members who did not choose one, `HH:MM`.
    #[schema(example = "18:00")]
    pub default_digest_at: String,
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
            default_channels: KindChannels::from_domain(&s.default_channels),
            default_digest_at: s
                .default_digest_at
                .unwrap_or(kring_domain::person::DEFAULT_DIGEST_AT)
                .format("%H:%M")
                .to_string(),
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
    #[schema(minimum = 1, maximum = 3650)]
    pub retention_days: Option<u32>,
    /// Days of notice a planned absence needs (0–60).
    #[schema(minimum = 0, maximum = 60)]
    pub absence_notice_days: Option<u32>,
    /// Days an invitation stays valid (1–90).
    #[schema(minimum = 1, maximum = 90)]
    pub invitation_valid_days: Option<u32>,
    /// The IANA time zone of the school's calendar, e.g. `Europe/Amsterdam`.
    #[schema(value_type = Option<super::TimeZoneName>)]
    pub timezone: Option<String>,
    /// Quiet hours for staff who have not set their own.
    pub default_quiet_hours: Option<QuietHoursDoc>,
    /// The channel of notification kinds for members who did not choose one; the kinds named
    /// change, the rest stay.
    pub default_channels: Option<KindChannels>,
    /// The digest time for members who did not choose one, `HH:MM`.
    #[schema(
        example = "18:00",
        pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
    )]
    pub default_digest_at: Option<String>,
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
    let digest_at = req
        .default_digest_at
        .as_deref()
        .map(|t| digest_time("default_digest_at", t))
        .transpose()?;
    let channels = req.default_channels.as_ref().map(KindChannels::to_domain);
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
            if let Some(at) = digest_at {
                settings.default_digest_at = Some(at);
            }
            if let Some(channels) = &channels {
                settings.default_channels.extend(channels.iter());
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
    /// The purpose.
    #[schema(value_type = super::PurposeName)]
    pub purpose: String,
    /// What it means, in the school's words (1–1000 characters).
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub description: String,
}

/// `POST /v1/schools/{school_id}/consent-policy`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPolicy {
    /// The purposes the new version asks consent for (at least one).
    #[schema(min_items = 1)]
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

/// `POST /v1/schools/{school_id}/year-transition`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TransitionRequest {
    /// `true`: answer what would change and write nothing; `false`: apply it.
    pub dry_run: bool,
    /// The first day of the new school year (`YYYY-MM-DD`): recorded on the groups that end,
    /// and part of the ids of the groups it makes.
    pub effective_on: NaiveDate,
    /// What happens to each class group (groups left out stay as they are).
    pub groups: Vec<TransitionGroup>,
    /// Class groups to make, by name (an open class group of that name is that group).
    #[serde(default)]
    pub new_groups: Vec<NewGroupName>,
}

/// What happens to one class group at the transition.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TransitionGroup {
    /// The class group.
    pub group_id: Uuid,
    /// An existing class group its children move to.
    pub children_to: Option<Uuid>,
    /// The name of one of `new_groups` its children move to.
    pub children_to_new: Option<String>,
    /// Its children who leave the school.
    #[serde(default)]
    pub leavers: Vec<Uuid>,
    /// Whether the group ends (archived: read-only). It must be empty afterwards.
    #[serde(default)]
    pub archive: bool,
}

/// A class group to make.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewGroupName {
    /// Its name, e.g. `Groep 6a`: 1 to 100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
}

/// One change of a transition. `kind` says which fields are set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChangeDoc {
    /// `group_created`, `child_moved`, `child_left` or `group_archived`.
    pub kind: String,
    /// The group made or archived.
    pub group_id: Option<Uuid>,
    /// The name of the group made.
    pub name: Option<String>,
    /// The child moved or leaving.
    pub child_id: Option<Uuid>,
    /// The child's group before.
    pub from_group_id: Option<Uuid>,
    /// The moved child's new group.
    pub to_group_id: Option<Uuid>,
    /// Guardians who lose access to the old group (a move) or to the child (a leaver).
    pub guardians_losing_access: Vec<Uuid>,
    /// Of a leaver's guardians, those with no other child at the school: they lose the school.
    pub guardians_leaving_school: Vec<Uuid>,
}

impl From<TransitionChange> for ChangeDoc {
    fn from(c: TransitionChange) -> Self {
        let ids = |people: Vec<PersonId>| people.into_iter().map(Into::into).collect();
        let blank = |kind: &str| Self {
            kind: kind.to_owned(),
            group_id: None,
            name: None,
            child_id: None,
            from_group_id: None,
            to_group_id: None,
            guardians_losing_access: Vec::new(),
            guardians_leaving_school: Vec::new(),
        };
        match c {
            TransitionChange::GroupCreated { group_id, name } => Self {
                group_id: Some(group_id.into()),
                name: Some(name),
                ..blank("group_created")
            },
            TransitionChange::ChildMoved {
                child_id,
                from_group_id,
                to_group_id,
                guardians_leaving_group,
            } => Self {
                child_id: Some(child_id.into()),
                from_group_id: Some(from_group_id.into()),
                to_group_id: Some(to_group_id.into()),
                guardians_losing_access: ids(guardians_leaving_group),
                ..blank("child_moved")
            },
            TransitionChange::ChildLeft {
                child_id,
                from_group_id,
                guardians_unlinked,
                guardians_leaving_school,
            } => Self {
                child_id: Some(child_id.into()),
                from_group_id: Some(from_group_id.into()),
                guardians_losing_access: ids(guardians_unlinked),
                guardians_leaving_school: ids(guardians_leaving_school),
                ..blank("child_left")
            },
            TransitionChange::GroupArchived { group_id } => Self {
                group_id: Some(group_id.into()),
                ..blank("group_archived")
            },
        }
    }
}

/// What a transition changes (or, in a dry run, would change).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TransitionDoc {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// The changes, in the order they are written: new groups, moves, leavers, archived groups.
    pub changes: Vec<ChangeDoc>,
    /// The global position after applying (`null` in a dry run).
    pub position: Option<u64>,
}

/// The id of a group a transition makes: the same for the same school, year and name, so that a
/// preview names the ids its application makes.
fn new_group_id(school_id: SchoolId, effective_on: NaiveDate, name: &str) -> GroupId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{school_id}/{effective_on}/{}", name.trim()));
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    GroupId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Plans the new school year in one request (director): per class group, its children move to
/// another group (an existing one, or one of `new_groups`) or leave the school, and groups that
/// end are archived (read-only; their content kept for the retention period). With `dry_run`
/// the answer says exactly what would change — who moves, who leaves, which guardians lose
/// access to what — and nothing is written; the same body with `dry_run: false` writes those
/// changes as events, in one append. Applying it again changes nothing.
#[utoipa::path(post, path = "/v1/schools/{school_id}/year-transition", tag = "administration",
    request_body = TransitionRequest,
    params(("school_id" = Uuid, Path, description = "The school")),
    responses((status = 200, body = TransitionDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn year_transition(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(school_id): Path<SchoolId>,
    Body(req): Body<TransitionRequest>,
) -> ApiResult<Json<TransitionDoc>> {
    let mut groups = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        let children_to = match (g.children_to, &g.children_to_new) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(
                    "groups: children_to and children_to_new name one destination; give one",
                ))
            }
            (Some(id), None) => Some(Destination::Group(GroupId::from_uuid(id))),
            (None, Some(name)) => Some(Destination::NewGroup(name.clone())),
            (None, None) => None,
        };
        groups.push(GroupPlan {
            group_id: GroupId::from_uuid(g.group_id),
            children_to,
            leavers: g.leavers.iter().map(|c| ChildId::from_uuid(*c)).collect(),
            archive: g.archive,
        });
    }
    let plan = YearTransition {
        effective_on: req.effective_on,
        new_groups: req
            .new_groups
            .iter()
            .map(|g| {
                (
                    new_group_id(school_id, req.effective_on, &g.name),
                    g.name.clone(),
                )
            })
            .collect(),
        groups,
    };
    let roster = state.exec.school(school_id).await?;
    if req.dry_run {
        let changes = school::plan_transition(&roster.state, caller.actor(), &plan)?;
        return Ok(Json(TransitionDoc {
            dry_run: true,
            changes: changes.into_iter().map(ChangeDoc::from).collect(),
            position: None,
        }));
    }
    // The changes are those of the roster the decision is made on (a retry after a concurrent
    // write plans again).
    let planned = std::sync::Mutex::new(Vec::new());
    let written = state
        .exec
        .run_school(school_id, caller.actor(), rid, |roster, _| {
            let (changes, events) = school::transition(roster, caller.actor(), &plan)?;
            if let Ok(mut slot) = planned.lock() {
                *slot = changes;
            }
            Ok(events)
        })
        .await?;
    let changes = planned.into_inner().map_err(ApiError::internal)?;
    Ok(Json(TransitionDoc {
        dry_run: false,
        changes: changes.into_iter().map(ChangeDoc::from).collect(),
        position: Some(written.position),
    }))
}
