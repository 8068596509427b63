//! Schools, staff, groups, children, and the caller's own profile.

use crate::auth::{identity_digest, Caller};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::{Body, Position, Role};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kring_domain::person::SsoIdentity;
use kring_domain::school::{SchoolAction, StaffRole};
use kring_domain::{ChildId, Command, GroupId, PersonId, SchoolId};
use kring_projections::models::memberships;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/schools", post(register_school))
        .route("/v1/schools/{school_id}/staff", post(add_staff))
        .route("/v1/schools/{school_id}/groups", post(create_group))
        .route("/v1/groups/{group_id}/staff", post(assign_staff))
        .route("/v1/groups/{group_id}/children", post(enroll_child))
        .route("/v1/groups/{group_id}", get(group))
        .route("/v1/me", get(me))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        register_school,
        add_staff,
        create_group,
        assign_staff,
        enroll_child,
        group,
        me
    ),
    components(schemas(
        NewSchool,
        SchoolCreated,
        NewStaff,
        PersonCreated,
        NewGroup,
        GroupCreated,
        AssignStaff,
        NewChild,
        ChildCreated,
        GroupDoc,
        StaffDoc,
        ChildDoc,
        GuardianDoc,
        MeDoc,
        MySchool,
        MyChild,
        MyGroup,
        Role
    ))
)]
pub struct Doc;

/// `POST /v1/schools`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewSchool {
    /// The school's name: 1 to 200 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    /// Its BRIN code (four letters or digits).
    #[schema(pattern = r"^\s*[A-Za-z0-9]{4}\s*$", example = "12AB")]
    pub brin: String,
}

/// A registered school.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SchoolCreated {
    /// The school.
    pub school_id: Uuid,
    /// Its whole-school group.
    pub school_group_id: Uuid,
    /// The global position of the last event written.
    pub position: u64,
}

/// Registers a school with its whole-school group (operator).
#[utoipa::path(post, path = "/v1/schools", tag = "schools", request_body = NewSchool,
    responses((status = 201, body = SchoolCreated), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn register_school(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<NewSchool>,
) -> ApiResult<(StatusCode, Json<SchoolCreated>)> {
    let school_id = SchoolId::from_uuid(crate::idempotency::fresh_uuid());
    let school_group_id = GroupId::from_uuid(crate::idempotency::fresh_uuid());
    let written = state
        .exec
        .run_school(school_id, caller.actor(), rid, |roster, now| {
            kring_domain::school::decide(
                roster,
                Command::new(
                    caller.actor(),
                    SchoolAction::Register {
                        school_id,
                        school_group_id,
                        name: req.name.clone(),
                        brin: req.brin.clone(),
                    },
                ),
                now,
            )
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SchoolCreated {
            school_id: school_id.into(),
            school_group_id: school_group_id.into(),
            position: written.position,
        }),
    ))
}

/// `POST /v1/schools/{school_id}/staff`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewStaff {
    /// The name shown to others (1–100 characters, not blank, no control characters).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub display_name: String,
    /// Their e-mail address (shown to nobody but themselves).
    #[schema(
        max_length = 254,
        pattern = r"^[^\s@\u0000-\u001F\u007F-\u009F]+@[^\s@.\u0000-\u001F\u007F-\u009F][^\s@\u0000-\u001F\u007F-\u009F]*\.[^\s@\u0000-\u001F\u007F-\u009F]*[^\s@.\u0000-\u001F\u007F-\u009F]$",
        example = "name@example.org"
    )]
    pub email: String,
    /// Their role.
    pub role: Role,
    /// Their subject (`sub`) at the configured single sign-on issuer: a token of that issuer
    /// with this subject (and Kring's audience) signs them in.
    #[serde(default)]
    pub sso_subject: Option<String>,
}

/// A new person.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PersonCreated {
    /// The person.
    pub person_id: Uuid,
    /// The global position of the last event written.
    pub position: u64,
}

/// Adds a staff member (operator, director).
#[utoipa::path(post, path = "/v1/schools/{school_id}/staff", tag = "schools", request_body = NewStaff,
    params(("school_id" = Uuid, Path, description = "The school")),
    responses((status = 201, body = PersonCreated), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "The single sign-on identity belongs to someone else", body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn add_staff(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(school_id): Path<SchoolId>,
    Body(req): Body<NewStaff>,
) -> ApiResult<(StatusCode, Json<PersonCreated>)> {
    let person_id = PersonId::from_uuid(crate::idempotency::fresh_uuid());
    let identity = match &req.sso_subject {
        Some(subject) => Some(sso_identity(&state, person_id, subject).await?),
        None => None,
    };
    let written = state
        .exec
        .run_school(school_id, caller.actor(), rid, |roster, now| {
            if roster.school_id.is_none() {
                return Err(kring_domain::DomainError::not_found("school", school_id));
            }
            kring_domain::school::decide(
                roster,
                Command::new(
                    caller.actor(),
                    SchoolAction::AddStaff {
                        person_id,
                        display_name: req.display_name.clone(),
                        email: req.email.clone(),
                        role: req.role.into(),
                        identity: identity.clone(),
                    },
                ),
                now,
            )
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PersonCreated {
            person_id: person_id.into(),
            position: written.position,
        }),
    ))
}

/// `person`'s identity `subject` at the configured issuer, unless it is someone else's.
///
/// # Errors
/// `422` without a configured issuer or for an invalid subject; `409` for an identity that
/// belongs to another person.
pub async fn sso_identity(
    state: &AppState,
    person: PersonId,
    subject: &str,
) -> ApiResult<SsoIdentity> {
    let issuer = state.auth.issuer().ok_or_else(|| {
        ApiError::validation("sso_subject: this installation trusts no single sign-on issuer")
    })?;
    let digest = identity_digest(issuer, subject);
    // Read models are caught up first: an identity given a moment ago is someone's already.
    state.catch_up().await?;
    if let Some(owner) = memberships::person_of_identity(&state.system.db, &digest).await? {
        if owner != person {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                Code::Conflict,
                "this single sign-on identity already belongs to someone at Kring",
            ));
        }
    }
    Ok(SsoIdentity::new(person, issuer, subject, digest)?)
}

/// `POST /v1/schools/{school_id}/groups`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewGroup {
    /// The group's name, e.g. `Groep 5a`: 1 to 100 characters, not blank, no control
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
}

/// A new group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupCreated {
    /// The group.
    pub group_id: Uuid,
    /// The global position of the last event written.
    pub position: u64,
}

/// Creates a class group (director).
#[utoipa::path(post, path = "/v1/schools/{school_id}/groups", tag = "schools", request_body = NewGroup,
    params(("school_id" = Uuid, Path, description = "The school")),
    responses((status = 201, body = GroupCreated), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(school_id): Path<SchoolId>,
    Body(req): Body<NewGroup>,
) -> ApiResult<(StatusCode, Json<GroupCreated>)> {
    let group_id = GroupId::from_uuid(crate::idempotency::fresh_uuid());
    let written = roster_command(&state, school_id, caller, rid, || {
        SchoolAction::CreateGroup {
            group_id,
            name: req.name.clone(),
        }
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(GroupCreated {
            group_id: group_id.into(),
            position: written,
        }),
    ))
}

/// `POST /v1/groups/{group_id}/staff`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignStaff {
    /// The staff member to assign.
    pub person_id: Uuid,
}

/// Assigns a staff member to a group (director).
#[utoipa::path(post, path = "/v1/groups/{group_id}/staff", tag = "schools", request_body = AssignStaff,
    params(("group_id" = Uuid, Path, description = "The group")),
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn assign_staff(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(group_id): Path<GroupId>,
    Body(req): Body<AssignStaff>,
) -> ApiResult<Json<Position>> {
    let school_id = state.school_of_group(group_id).await?;
    let position = roster_command(&state, school_id, caller, rid, || {
        SchoolAction::AssignStaff {
            group_id,
            person_id: PersonId::from_uuid(req.person_id),
        }
    })
    .await?;
    Ok(Json(Position { position }))
}

/// `POST /v1/groups/{group_id}/children`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewChild {
    /// First name.
    pub first_name: String,
    /// Initial of the last name (one letter; data minimisation).
    pub last_initial: String,
}

/// A new child.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChildCreated {
    /// The child.
    pub child_id: Uuid,
    /// The global position of the last event written.
    pub position: u64,
}

/// Places a child in a class group (director, teacher of the group).
#[utoipa::path(post, path = "/v1/groups/{group_id}/children", tag = "schools", request_body = NewChild,
    params(("group_id" = Uuid, Path, description = "The class group")),
    responses((status = 201, body = ChildCreated), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn enroll_child(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(group_id): Path<GroupId>,
    Body(req): Body<NewChild>,
) -> ApiResult<(StatusCode, Json<ChildCreated>)> {
    let school_id = state.school_of_group(group_id).await?;
    let child_id = ChildId::from_uuid(crate::idempotency::fresh_uuid());
    let position = roster_command(&state, school_id, caller, rid, || {
        SchoolAction::EnrollChild {
            child_id,
            group_id,
            first_name: req.first_name.clone(),
            last_initial: req.last_initial.clone(),
        }
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ChildCreated {
            child_id: child_id.into(),
            position,
        }),
    ))
}

/// Runs a roster command for an existing school; answers the position.
///
/// # Errors
/// `404` for an unknown school; the domain's refusal.
pub async fn roster_command(
    state: &AppState,
    school_id: SchoolId,
    caller: Caller,
    rid: Uuid,
    action: impl Fn() -> SchoolAction + Send + Sync,
) -> ApiResult<u64> {
    state.exec.school(school_id).await?;
    Ok(state
        .exec
        .run_school(school_id, caller.actor(), rid, |roster, now| {
            kring_domain::school::decide(roster, Command::new(caller.actor(), action()), now)
        })
        .await?
        .position)
}

/// A staff member in a group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StaffDoc {
    /// The person.
    pub person_id: Uuid,
    /// Their role.
    pub role: Role,
    /// Whether assigned to this group (directors see every group).
    pub assigned: bool,
    /// Their display name (`[erased]` after erasure).
    pub display_name: Option<String>,
}

/// A child in a group: first name and initial only.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChildDoc {
    /// The child.
    pub child_id: Uuid,
    /// Their class group.
    pub group_id: Uuid,
    /// First name.
    pub first_name: String,
    /// Initial of the last name.
    pub last_initial: String,
}

/// A guardian in a group: no e-mail address.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GuardianDoc {
    /// The guardian.
    pub person_id: Uuid,
    /// Their display name.
    pub display_name: Option<String>,
    /// Their children in this group.
    pub child_ids: Vec<Uuid>,
}

/// A group with its members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupDoc {
    /// The group.
    pub group_id: Uuid,
    /// Its school.
    pub school_id: Uuid,
    /// Its name.
    pub name: String,
    /// `class` or `school`.
    pub kind: String,
    /// Whether it ended at a year transition: read-only, its content kept for the retention
    /// period.
    pub archived: bool,
    /// Staff who see the group.
    pub staff: Vec<StaffDoc>,
    /// Its pupils.
    pub children: Vec<ChildDoc>,
    /// Their guardians.
    pub guardians: Vec<GuardianDoc>,
}

/// A group with its staff, children and guardians by display name; never e-mail addresses
/// (members of the group: its audience staff and guardians; `403` for anyone else, the operator
/// included). In the whole-school group a parent sees the staff and their own children only,
/// not every pupil and parent of the school.
#[utoipa::path(get, path = "/v1/groups/{group_id}", tag = "schools",
    params(("group_id" = Uuid, Path, description = "The group"), MinPosition),
    responses((status = 200, body = GroupDoc), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn group(
    State(state): State<AppState>,
    caller: Caller,
    Path(group_id): Path<GroupId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<GroupDoc>> {
    min.wait(&state).await?;
    let view = memberships::group(&state.system.db, group_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("group {group_id}")))?;
    // The operator is no member: the answer names children and parents, which support has no
    // need to read (and would have to be logged as an access to every one of them).
    let is_staff = |p: PersonId| view.staff.iter().any(|s| s.person_id == p);
    let own_children: Option<Vec<ChildId>> = caller.person().and_then(|p| {
        view.guardians
            .iter()
            .find(|g| g.person_id == p)
            .map(|g| g.child_ids.clone())
    });
    let Some(me) = caller
        .person()
        .filter(|p| is_staff(*p) || own_children.is_some())
    else {
        return Err(ApiError::forbidden(format!(
            "only members of group {group_id} see it"
        )));
    };
    // Data minimisation: a parent in the whole-school group sees the staff and their own
    // children, not a list of every pupil and parent of the school.
    let whole_school_parent = view.kind == kring_domain::school::GroupKind::School && !is_staff(me);
    let shown_child = |c: ChildId| {
        !whole_school_parent || own_children.as_ref().is_some_and(|own| own.contains(&c))
    };
    let mut staff = Vec::new();
    for s in &view.staff {
        staff.push(StaffDoc {
            person_id: s.person_id.into(),
            role: s.role.into(),
            assigned: s.assigned,
            display_name: state.open_opt(s.display_name.as_ref()).await?,
        });
    }
    let mut children = Vec::new();
    for c in view.children.iter().filter(|c| shown_child(c.child_id)) {
        children.push(ChildDoc {
            child_id: c.child_id.into(),
            group_id: c.group_id.into(),
            first_name: state.open(&c.first_name).await?,
            last_initial: state.open(&c.last_initial).await?,
        });
    }
    let mut guardians = Vec::new();
    for g in view
        .guardians
        .iter()
        .filter(|g| !whole_school_parent || g.person_id == me)
    {
        guardians.push(GuardianDoc {
            person_id: g.person_id.into(),
            display_name: state.open_opt(g.display_name.as_ref()).await?,
            child_ids: g.child_ids.iter().map(|c| (*c).into()).collect(),
        });
    }
    Ok(Json(GroupDoc {
        group_id: view.group_id.into(),
        school_id: view.school_id.into(),
        name: view.name,
        kind: kind_name(view.kind).to_owned(),
        archived: view.archived,
        staff,
        children,
        guardians,
    }))
}

fn kind_name(kind: kring_domain::school::GroupKind) -> &'static str {
    match kind {
        kring_domain::school::GroupKind::Class => "class",
        kring_domain::school::GroupKind::School => "school",
    }
}

/// A school in the caller's profile.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MySchool {
    /// The school.
    pub school_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its BRIN code.
    pub brin: String,
    /// Its whole-school group.
    pub school_group_id: Uuid,
    /// The caller's staff role there, if staff.
    pub role: Option<Role>,
    /// Whether the caller is a linked guardian there.
    pub guardian: bool,
}

/// A child of the caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyChild {
    /// The child.
    pub child_id: Uuid,
    /// The school.
    pub school_id: Uuid,
    /// The class group.
    pub group_id: Uuid,
    /// First name.
    pub first_name: String,
    /// Initial of the last name.
    pub last_initial: String,
}

/// A group the caller belongs to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MyGroup {
    /// The group.
    pub group_id: Uuid,
    /// Its school.
    pub school_id: Uuid,
    /// Its name.
    pub name: String,
    /// `class` or `school`.
    pub kind: String,
}

/// The caller's own profile: the only place their e-mail address is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeDoc {
    /// The caller (`null` for the operator).
    pub person_id: Option<Uuid>,
    /// Whether the caller is the platform operator.
    pub operator: bool,
    /// Display name.
    pub display_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Schools with roles.
    pub schools: Vec<MySchool>,
    /// Children (linked guardianships).
    pub children: Vec<MyChild>,
    /// Groups.
    pub groups: Vec<MyGroup>,
}

/// The caller's own profile: name, e-mail address, roles, children and groups.
#[utoipa::path(get, path = "/v1/me", tag = "schools", params(MinPosition),
    responses((status = 200, body = MeDoc), (status = 401, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<MeDoc>> {
    min.wait(&state).await?;
    let Caller::Person(person) = caller else {
        return Ok(Json(MeDoc {
            person_id: None,
            operator: true,
            display_name: None,
            email: None,
            schools: Vec::new(),
            children: Vec::new(),
            groups: Vec::new(),
        }));
    };
    let profile = memberships::person(&state.system.db, person)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("person {person}")))?;
    let mut children = Vec::new();
    for c in &profile.children {
        children.push(MyChild {
            child_id: c.child_id.into(),
            school_id: c.school_id.into(),
            group_id: c.group_id.into(),
            first_name: state.open(&c.first_name).await?,
            last_initial: state.open(&c.last_initial).await?,
        });
    }
    Ok(Json(MeDoc {
        person_id: Some(person.into()),
        operator: false,
        display_name: state.open_opt(profile.display_name.as_ref()).await?,
        email: state.open_opt(profile.email.as_ref()).await?,
        schools: profile
            .schools
            .into_iter()
            .map(|s| MySchool {
                school_id: s.school_id.into(),
                name: s.name,
                brin: s.brin,
                school_group_id: s.school_group_id.into(),
                role: s.role.map(Role::from),
                guardian: s.guardian,
            })
            .collect(),
        children,
        groups: profile
            .groups
            .into_iter()
            .map(|g| MyGroup {
                group_id: g.group_id.into(),
                school_id: g.school_id.into(),
                name: g.name,
                kind: kind_name(g.kind).to_owned(),
            })
            .collect(),
    }))
}

impl From<Role> for StaffRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Teacher => Self::Teacher,
            Role::Director => Self::Director,
            Role::ComplianceOfficer => Self::ComplianceOfficer,
        }
    }
}

impl From<StaffRole> for Role {
    fn from(r: StaffRole) -> Self {
        match r {
            StaffRole::Teacher => Self::Teacher,
            StaffRole::Director => Self::Director,
            StaffRole::ComplianceOfficer => Self::ComplianceOfficer,
        }
    }
}
