//! Consent: the school's consent policy, a guardian's decision per child and purpose, the
//! consent a child has (now or at any past moment), and the audit trail of every decision.
//!
//! Who may read a child's consent: its guardians, the school's staff and the operator; the
//! history (who decided what, when): its guardians, the directors, the compliance officers and
//! the operator. Reads by the operator or a compliance officer are themselves recorded in the
//! access log ([`crate::audit::log_if_audited`]).

use crate::audit::log_if_audited;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::exec::Loaded;
use crate::routes::Body;
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use kring_domain::access::{AccessReason, Subject};
use kring_domain::child::{self, ChildAction, ChildContext};
use kring_domain::consent::{ConsentMethod, Consents};
use kring_domain::school::{School, StaffRole};
use kring_domain::{ChildId, Command, GroupId, PersonId, Purpose, SchoolId, StreamName};
use kring_projections::models::consent as consent_model;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/schools/{school_id}/consent-policy",
            get(policy).post(crate::routes::administration::publish_policy),
        )
        .route("/v1/children/{child_id}/consents/{purpose}", put(decide))
        .route("/v1/children/{child_id}/consents", get(consents))
        .route("/v1/children/{child_id}/consents/history", get(history))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(policy, decide, consents, history),
    components(schemas(
        PolicyDoc,
        PolicyPurposeDoc,
        Method,
        Decision,
        Decided,
        ConsentsDoc,
        PurposeDoc,
        DecisionDoc,
        HistoryDoc,
        HistoryEntryDoc
    ))
)]
pub struct Doc;

/// What the caller is to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// A linked guardian of the child.
    Guardian,
    /// Staff of the child's school, with their role.
    Staff(StaffRole),
    /// The platform operator.
    Operator,
}

/// Where a child is and what the caller is to it.
#[derive(Debug, Clone)]
pub struct ChildPlace {
    /// The child.
    pub child_id: ChildId,
    /// Its school.
    pub school_id: SchoolId,
    /// Its class group.
    pub group_id: GroupId,
    /// The school's current roster.
    pub roster: Loaded<Arc<School>>,
    /// What the caller is to the child.
    pub relation: Relation,
}

impl ChildPlace {
    /// Whether the caller is a guardian of the child or one of the given staff roles (any staff
    /// role when `roles` is empty), or the operator.
    #[must_use]
    pub fn is(&self, roles: &[StaffRole]) -> bool {
        match self.relation {
            Relation::Guardian | Relation::Operator => true,
            Relation::Staff(role) => roles.is_empty() || roles.contains(&role),
        }
    }
}

/// Finds the child and what the caller is to it. A child's existence is private: `404`
/// for a caller who is neither its guardian nor staff of its school (nor the operator) — the
/// parents of other children included.
///
/// # Errors
/// `404` for an unknown child or one the caller may not know of.
pub async fn child_place(
    state: &AppState,
    caller: Caller,
    child_id: ChildId,
) -> ApiResult<ChildPlace> {
    let (school_id, group_id) = state.place_of_child(child_id).await?;
    let roster = state.exec.school(school_id).await?;
    let relation = match caller {
        Caller::Operator => Some(Relation::Operator),
        Caller::Person(p) if roster.state.is_guardian(p, child_id) => Some(Relation::Guardian),
        Caller::Person(p) => roster.state.role(p).map(Relation::Staff),
    };
    let relation = relation.ok_or_else(|| ApiError::not_found(format!("child {child_id}")))?;
    Ok(ChildPlace {
        child_id,
        school_id,
        group_id,
        roster,
        relation,
    })
}

/// One purpose of the policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyPurposeDoc {
    /// The purpose, e.g. `group_communication`.
    pub purpose: String,
    /// What it means, in the school's words.
    pub description: String,
}

/// A school's current consent policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyDoc {
    /// The school.
    pub school_id: Uuid,
    /// Its version (1, 2, …); every decision records the version it answered.
    pub version: u32,
    /// The purposes consent is asked for.
    pub purposes: Vec<PolicyPurposeDoc>,
}

/// The school's current consent policy (staff and parents of the school, the operator).
#[utoipa::path(get, path = "/v1/schools/{school_id}/consent-policy", tag = "consent",
    params(("school_id" = Uuid, Path, description = "The school"), MinPosition),
    responses((status = 200, body = PolicyDoc), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(school_id): Path<SchoolId>,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<PolicyDoc>> {
    min.wait(&state).await?;
    let roster = state.exec.school(school_id).await?.state;
    if !roster.is_member(caller.actor()) {
        return Err(ApiError::not_found(format!("school {school_id}")));
    }
    let policy = roster
        .policy
        .clone()
        .ok_or_else(|| ApiError::not_found(format!("consent policy of school {school_id}")))?;
    Ok(Json(PolicyDoc {
        school_id: school_id.into(),
        version: policy.version,
        purposes: policy
            .purposes
            .into_iter()
            .map(|p| PolicyPurposeDoc {
                purpose: p.purpose.as_str().to_owned(),
                description: p.description,
            })
            .collect(),
    }))
}

/// How a decision was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// In the app (the default).
    #[default]
    App,
    /// On a paper form.
    Paper,
}

impl From<Method> for ConsentMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::App => Self::App,
            Method::Paper => Self::Paper,
        }
    }
}

impl From<ConsentMethod> for Method {
    fn from(m: ConsentMethod) -> Self {
        match m {
            ConsentMethod::App => Self::App,
            ConsentMethod::Paper => Self::Paper,
        }
    }
}

/// `PUT /v1/children/{child_id}/consents/{purpose}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Decision {
    /// Grant (`true`) or withdraw (`false`).
    pub granted: bool,
    /// How it was given (default `app`; `paper` when staff record a form).
    #[serde(default)]
    pub method: Option<Method>,
    /// Staff recording a guardian's paper form name the guardian here (with `method: paper`);
    /// a guardian deciding in the app leaves it out.
    #[serde(default)]
    pub guardian_id: Option<Uuid>,
}

/// A recorded decision.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Decided {
    /// Whether consent for the purpose holds now, over every guardian's latest decision.
    pub effective: bool,
    /// The global position of the last event written.
    pub position: u64,
}

fn parse_purpose(s: &str) -> ApiResult<Purpose> {
    s.parse::<Purpose>()
        .map_err(|e| ApiError::validation(e.to_string()))
}

/// Grants or withdraws consent for one purpose (a guardian of the child). Consent is opt-in and
/// holds while at least one guardian granted and none withdrew. Staff of the child's group
/// record a guardian's paper form with `method: paper` and the guardian's `guardian_id`; the
/// history names both the guardian and who recorded it.
#[utoipa::path(put, path = "/v1/children/{child_id}/consents/{purpose}", tag = "consent", request_body = Decision,
    params(("child_id" = Uuid, Path, description = "The child"), ("purpose" = super::PurposeName, Path, description = "The purpose")),
    responses((status = 200, body = Decided), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path((child_id, purpose)): Path<(ChildId, String)>,
    Body(req): Body<Decision>,
) -> ApiResult<Json<Decided>> {
    let purpose = parse_purpose(&purpose)?;
    let place = child_place(&state, caller, child_id).await?;
    let school = &place.roster.state;
    let action =
        match req.guardian_id {
            None => ChildAction::DecideConsent {
                child_id,
                purpose,
                granted: req.granted,
                method: req.method.unwrap_or_default().into(),
            },
            Some(_) if req.method != Some(Method::Paper) => return Err(ApiError::validation(
                "guardian_id: only a paper form (method: paper) is recorded on a guardian's behalf",
            )),
            Some(guardian) => ChildAction::RecordPaperConsent {
                child_id,
                purpose,
                granted: req.granted,
                guardian_id: PersonId::from_uuid(guardian),
            },
        };
    let stream = StreamName::child(child_id);
    let (written, after) = state
        .exec
        .run_folded::<child::Child, _>(stream, caller.actor(), rid, |s, now| {
            child::decide(
                &ChildContext { child: s, school },
                Command::new(caller.actor(), action.clone()),
                now,
            )
        })
        .await?;
    Ok(Json(Decided {
        effective: school.consent_holds(&after.consents, purpose),
        position: written.position,
    }))
}

/// `?as_of=` on a child's consents.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOf {
    /// The moment to answer for (RFC 3339); now when absent.
    pub as_of: Option<DateTime<Utc>>,
}

/// One guardian's latest decision.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionDoc {
    /// The guardian.
    pub guardian_id: Uuid,
    /// Granted or withdrawn.
    pub granted: bool,
    /// When.
    pub at: DateTime<Utc>,
}

/// Consent for one purpose.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PurposeDoc {
    /// The purpose.
    pub purpose: String,
    /// Whether consent held: some guardian granted and none withdrew, counting only decisions
    /// made since the school's policy gave the purpose its current meaning.
    pub effective: bool,
    /// Whether the guardians must decide again: a new policy version changed what the purpose
    /// means, and nobody has decided since.
    pub needs_decision: bool,
    /// Each guardian's latest decision.
    pub decisions: Vec<DecisionDoc>,
}

/// A child's consent at a moment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsentsDoc {
    /// The child.
    pub child_id: Uuid,
    /// The moment answered for.
    pub as_of: DateTime<Utc>,
    /// Every purpose, in the policy's order of purposes.
    pub purposes: Vec<PurposeDoc>,
}

/// A child's consent per purpose, now or at a past moment (`?as_of=`): whether it held and each
/// guardian's latest decision by then (guardians, the school's staff, the operator).
#[utoipa::path(get, path = "/v1/children/{child_id}/consents", tag = "consent",
    params(("child_id" = Uuid, Path, description = "The child"), AsOf, MinPosition),
    responses((status = 200, body = ConsentsDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn consents(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(child_id): Path<ChildId>,
    Q(min): Q<MinPosition>,
    Q(at): Q<AsOf>,
) -> ApiResult<Json<ConsentsDoc>> {
    min.wait(&state).await?;
    let place = child_place(&state, caller, child_id).await?;
    if !place.is(&[]) {
        return Err(ApiError::forbidden(format!(
            "only guardians of child {child_id} and staff of its school see its consent"
        )));
    }
    log_if_audited(
        &state,
        caller,
        rid,
        &place.roster.state,
        Subject::Child(child_id),
        AccessReason::ReadConsents,
    )
    .await?;
    let now = Utc::now();
    let purposes = match at.as_of {
        None => consent_model::current_consent(&state.system.db, child_id)
            .await?
            .into_iter()
            .map(|c| PurposeDoc {
                purpose: c.purpose.as_str().to_owned(),
                effective: c.effective,
                needs_decision: c.needs_decision,
                decisions: c
                    .decisions
                    .into_iter()
                    .map(|d| DecisionDoc {
                        guardian_id: d.guardian_id.into(),
                        granted: d.granted,
                        at: d.at,
                    })
                    .collect(),
            })
            .collect(),
        Some(t) => consent_as_of(&state, child_id, place.school_id, t).await?,
    };
    Ok(Json(ConsentsDoc {
        child_id: child_id.into(),
        as_of: at.as_of.unwrap_or(now),
        purposes,
    }))
}

/// Folds the consent history up to and including `t`: each guardian's latest decision per
/// purpose then, and the consent rule over them under the school's policy as it was then.
async fn consent_as_of(
    state: &AppState,
    child_id: ChildId,
    school_id: SchoolId,
    t: DateTime<Utc>,
) -> ApiResult<Vec<PurposeDoc>> {
    // The history's `to` is exclusive; decision times are kept to the microsecond.
    let until = t.checked_add_signed(Duration::microseconds(1)).unwrap_or(t);
    let entries =
        consent_model::consent_history(&state.system.db, child_id, None, None, Some(until)).await?;
    let policy = consent_model::policy(&state.system.db, school_id, Some(t)).await?;
    let mut consents = Consents::default();
    for e in &entries {
        consents.record(e.purpose, e.guardian_id, e.into());
    }
    Ok(Purpose::ALL
        .into_iter()
        .map(|purpose| PurposeDoc {
            purpose: purpose.as_str().to_owned(),
            effective: policy.as_ref().is_some_and(|p| p.holds(&consents, purpose)),
            needs_decision: policy
                .as_ref()
                .is_some_and(|p| p.needs_decision(&consents, purpose)),
            decisions: consents
                .decisions(purpose)
                .into_iter()
                .flatten()
                .map(|(guardian, d)| DecisionDoc {
                    guardian_id: (*guardian).into(),
                    granted: d.granted,
                    at: d.at,
                })
                .collect(),
        })
        .collect())
}

/// `?purpose=&from=&to=` on the consent history.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryFilter {
    /// Only this purpose.
    #[param(value_type = Option<super::PurposeName>)]
    pub purpose: Option<String>,
    /// Only decisions at or after this moment.
    pub from: Option<DateTime<Utc>>,
    /// Only decisions before this moment.
    pub to: Option<DateTime<Utc>>,
}

/// One decision of the audit trail.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntryDoc {
    /// The event that recorded it.
    pub event_id: Uuid,
    /// Its global position (the log's order).
    pub position: u64,
    /// The purpose.
    pub purpose: String,
    /// Granted or withdrawn.
    pub granted: bool,
    /// The guardian who decided.
    pub guardian_id: Uuid,
    /// The consent-policy version the decision answered.
    pub policy_version: u32,
    /// How it was given.
    pub method: Method,
    /// When it was decided.
    pub occurred_at: DateTime<Utc>,
    /// Whether consent for the purpose held after it.
    pub effective_after: bool,
    /// The staff member who entered the guardian's paper form; `null` when the guardian decided
    /// in the app.
    pub recorded_by: Option<Uuid>,
}

/// A child's consent history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryDoc {
    /// The child.
    pub child_id: Uuid,
    /// Every decision, in the log's order.
    pub entries: Vec<HistoryEntryDoc>,
}

/// The audit trail of a child's consent: every decision, who made it, when, under which policy
/// version, how, and whether consent held after it (guardians, directors, compliance officers,
/// the operator). Survives erasure: these facts are kept to demonstrate consent.
#[utoipa::path(get, path = "/v1/children/{child_id}/consents/history", tag = "consent",
    params(("child_id" = Uuid, Path, description = "The child"), HistoryFilter, MinPosition),
    responses((status = 200, body = HistoryDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(child_id): Path<ChildId>,
    Q(min): Q<MinPosition>,
    Q(filter): Q<HistoryFilter>,
) -> ApiResult<Json<HistoryDoc>> {
    min.wait(&state).await?;
    let purpose = filter.purpose.as_deref().map(parse_purpose).transpose()?;
    let place = child_place(&state, caller, child_id).await?;
    if !place.is(&[StaffRole::Director, StaffRole::ComplianceOfficer]) {
        return Err(ApiError::forbidden(format!(
            "only guardians of child {child_id}, directors and compliance officers see its consent history"
        )));
    }
    log_if_audited(
        &state,
        caller,
        rid,
        &place.roster.state,
        Subject::Child(child_id),
        AccessReason::ReadConsentHistory,
    )
    .await?;
    let entries =
        consent_model::consent_history(&state.system.db, child_id, purpose, filter.from, filter.to)
            .await?
            .into_iter()
            .map(|e| HistoryEntryDoc {
                event_id: e.event_id,
                position: e.position,
                purpose: e.purpose.as_str().to_owned(),
                granted: e.granted,
                guardian_id: e.guardian_id.into(),
                policy_version: e.policy_version,
                method: e.method.into(),
                occurred_at: e.occurred_at,
                effective_after: e.effective_after,
                recorded_by: e.recorded_by.map(Into::into),
            })
            .collect();
    Ok(Json(HistoryDoc {
        child_id: child_id.into(),
        entries,
    }))
}
