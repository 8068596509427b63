//! Data-subject rights and audit: the export of everything about the caller (GDPR art. 15),
//! erasure of a person or a child (art. 17, crypto-shredding), the access log and the hash-chain
//! verification for compliance officers — and the access logging every other route uses.
//!
//! Recording audited reads is [`crate::audit`]; the erasure steps and the start-up sweep that
//! completes interrupted ones are [`crate::erasure`].

use crate::auth::Caller;
use crate::erasure::{self, ErasureAccepted};
use crate::error::{ApiError, ApiResult};
use crate::routes::schools::{self, MeDoc};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use kring_domain::access::Subject;
use kring_domain::post;
use kring_domain::school::{School, StaffRole};
use kring_domain::{
    Actor, ChildId, ConversationId, Event, MediaId, PersonId, PostId, SchoolId, StreamName,
};
use kring_projections::models::visibility;
use kring_projections::models::{access_log as access_model, conversations, memberships};
use kring_store::vault::KeyVault;
use kring_store::{actor_to_string, EventStoreExt, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/export", get(export))
        .route("/v1/people/{person_id}/erasure", post(erase_person))
        .route("/v1/children/{child_id}/erasure", post(erase_child))
        .route("/v1/audit/access-log", get(access_log))
        .route("/v1/audit/verify", get(verify))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(export, erase_person, erase_child, access_log, verify),
    components(schemas(
        ExportDoc,
        ExportedEvent,
        ErasureAccepted,
        AccessLogDoc,
        AccessEntryDoc,
        SubjectDoc,
        AccessorDoc,
        VerifyDoc,
        VerifyFailureDoc
    ))
)]
pub struct Doc;

// ---------------------------------------------------------------------------------------------
// Export (art. 15)
// ---------------------------------------------------------------------------------------------

/// One event of the export, with its personal fields opened.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportedEvent {
    /// Its stream, e.g. `child-<id>`.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// The event.
    pub event_id: Uuid,
    /// Its type, e.g. `ConsentDecided`.
    pub event_type: String,
    /// Its payload's schema version.
    pub schema_version: u16,
    /// When it was decided.
    pub occurred_at: DateTime<Utc>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Who caused it: `person:<id>`, `operator` or `system`.
    pub actor: String,
    /// The payload as stored, with each personal field opened: its value, `[erased]` when its
    /// subject's key was destroyed, or `[withheld]` when it is another person's.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// Everything Kring holds about the caller and their children.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportDoc {
    /// The caller.
    pub person_id: Uuid,
    /// When the export was made.
    pub exported_at: DateTime<Utc>,
    /// Their profile as `GET /v1/me` shows it.
    pub profile: MeDoc,
    /// Every event about them, in log order: their own stream, their children's streams, the
    /// roster facts naming them or their children, their invitations, their conversations,
    /// the access log of them and their children (who read their data, and why), the
    /// meeting rounds they or their children take part in (bookings, moves, cancellations,
    /// the conversations they hold as staff), and the removals of posts and media items they
    /// made (with the reason they gave).
    pub events: Vec<ExportedEvent>,
}

/// Everything Kring holds about the caller and their children (GDPR art. 15), with personal
/// fields opened. The operator is no data subject: `403`.
#[utoipa::path(get, path = "/v1/me/export", tag = "rights", params(MinPosition),
    responses((status = 200, body = ExportDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<ExportDoc>> {
    min.wait(&state).await?;
    let Caller::Person(me) = caller else {
        return Err(ApiError::forbidden(
            "the operator is no data subject: there is nothing to export",
        ));
    };
    person_export(&state, me).await.map(Json)
}

/// Everything Kring holds about `person` and their children: the document of
/// `GET /v1/me/export`, which the compliance console's export of a person is too.
///
/// # Errors
/// `404` for a person without a profile; store, vault and read-model failures.
pub(crate) async fn person_export(state: &AppState, me: PersonId) -> ApiResult<ExportDoc> {
    let Json(profile) = schools::me(
        State(state.clone()),
        Caller::Person(me),
        Q(MinPosition::default()),
    )
    .await?;
    let children: Vec<ChildId> = profile
        .children
        .iter()
        .map(|c| ChildId::from_uuid(c.child_id))
        .collect();
    let schools: BTreeSet<SchoolId> = profile
        .schools
        .iter()
        .map(|s| SchoolId::from_uuid(s.school_id))
        .collect();
    // The conversations they take part in: every message in them was addressed to them.
    let talks: Vec<ConversationId> = conversations::inbox(&state.system.db, me)
        .await?
        .into_iter()
        .map(|c| c.conversation_id)
        .collect();
    let events = export_events(state, Some(me), &children, &schools, &talks).await?;
    Ok(ExportDoc {
        person_id: me.into(),
        exported_at: Utc::now(),
        profile,
        events,
    })
}

/// The events an export holds, in log order: the own streams of `person` and `children` and
/// their access logs, the invitations `person` received, the `conversations` (every message
/// opened: each was addressed to the subject), the removals `person` made, and the roster facts
/// of `schools` naming `person` or a child. The personal fields of `person` and `children` are
/// opened, everyone else's `[withheld]`. One function for the API's export and the console's.
///
/// # Errors
/// Store, vault and read-model failures.
pub(crate) async fn export_events(
    state: &AppState,
    person: Option<PersonId>,
    children: &[ChildId],
    schools: &BTreeSet<SchoolId>,
    conversations: &[ConversationId],
) -> ApiResult<Vec<ExportedEvent>> {
    let own: BTreeSet<Subject> = person
        .map(Subject::Person)
        .into_iter()
        .chain(children.iter().map(|c| Subject::Child(*c)))
        .collect();
    let own_only = |s: &Subject| own.contains(s);
    let everything = |_: &Subject| true;

    let mut events = Vec::new();
    let mut own_streams = Vec::new();
    if let Some(me) = person {
        own_streams.push(StreamName::person(me));
        own_streams.push(StreamName::access(me.as_uuid()));
    }
    for c in children {
        own_streams.push(StreamName::child(*c));
        own_streams.push(StreamName::access(c.as_uuid()));
    }
    if let Some(me) = person {
        for i in memberships::invitations_of_invitee(&state.system.db, me).await? {
            own_streams.push(StreamName::invitation(i.invitation_id));
        }
    }
    for stream in &own_streams {
        for r in state.system.store.read_stream_to_end(stream).await? {
            events.push(exported(&state.system.vault, r, &own_only).await?);
        }
    }
    for c in conversations {
        let stream = StreamName::conversation(*c);
        for r in state.system.store.read_stream_to_end(&stream).await? {
            events.push(exported(&state.system.vault, r, &everything).await?);
        }
    }
    // The meeting rounds they take part in: their children's bookings and their own, the
    // conversations they hold as staff. A person's export opens the place (it is shown to them
    // in the round); a child's export alone, read by an officer, keeps it withheld.
    let place_opened: &(dyn Fn(&Subject) -> bool + Sync) = if person.is_some() {
        &everything
    } else {
        &own_only
    };
    events.extend(
        crate::routes::meetings::export_events(state, person, children, place_opened).await?,
    );
    // The removals they made: the reason they typed is their personal data, sealed for them.
    if let Some(me) = person {
        for post_id in access_model::posts_with_removals_by(&state.system.db, me).await? {
            let stream = StreamName::post(post_id);
            for r in state.system.store.read_stream_to_end(&stream).await? {
                if r.actor == Actor::Person(me)
                    && matches!(r.event_type.as_str(), "PostRemoved" | "MediaRemoved")
                {
                    events.push(exported(&state.system.vault, r, &own_only).await?);
                }
            }
        }
    }
    // Roster facts naming them or their children.
    let names: Vec<String> = person
        .map(|p| p.to_string())
        .into_iter()
        .chain(children.iter().map(ToString::to_string))
        .collect();
    for school in schools {
        for r in state
            .system
            .store
            .read_stream_to_end(&StreamName::school(*school))
            .await?
        {
            if names.iter().any(|n| r.payload.contains(n.as_str())) {
                events.push(exported(&state.system.vault, r, &own_only).await?);
            }
        }
    }
    events.sort_by_key(|e| e.position);
    Ok(events)
}

pub(crate) async fn exported(
    vault: &KeyVault,
    r: RecordedEvent,
    allow: &(dyn Fn(&Subject) -> bool + Sync),
) -> ApiResult<ExportedEvent> {
    // Read as every reader reads: an older schema version upcast to the current shape (a
    // field that was plain then is shown as the sealed field it is now).
    let event = Event::decode_str(&r.event_type, r.schema_version, &r.payload)
        .map_err(ApiError::internal)?;
    let mut payload = event.to_payload().map_err(ApiError::internal)?;
    vault.open_value_for(&mut payload, allow).await?;
    Ok(ExportedEvent {
        stream: r.stream.to_string(),
        version: r.version,
        position: r.position,
        event_id: r.event_id,
        schema_version: kring_domain::event::current_schema_version(&r.event_type),
        event_type: r.event_type,
        occurred_at: r.occurred_at,
        recorded_at: r.recorded_at,
        actor: actor_to_string(&r.actor),
        payload,
    })
}

// ---------------------------------------------------------------------------------------------
// Erasure (art. 17)
// ---------------------------------------------------------------------------------------------

/// Erases a person's personal data (the operator; a director of a school the person belongs
/// to): records the request, destroys the person's key, records the erasure. Their names and
/// e-mail address read `[erased]` everywhere from then on; the facts (consent decisions, roles)
/// stay. Repeating the request completes an interrupted erasure.
#[utoipa::path(post, path = "/v1/people/{person_id}/erasure", tag = "rights",
    params(("person_id" = Uuid, Path, description = "The person")),
    responses((status = 202, body = ErasureAccepted), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn erase_person(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(person_id): Path<PersonId>,
) -> ApiResult<(StatusCode, Json<ErasureAccepted>)> {
    let accepted = erasure::erase_person(&state, caller, rid, person_id).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Erases a child's personal data (the operator; a director of the child's school): records the
/// request, destroys the child's key, records the erasure. The child's name and absence reasons
/// read `[erased]` everywhere from then on; the consent decisions stay demonstrable. Repeating
/// the request completes an interrupted erasure.
#[utoipa::path(post, path = "/v1/children/{child_id}/erasure", tag = "rights",
    params(("child_id" = Uuid, Path, description = "The child")),
    responses((status = 202, body = ErasureAccepted), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn erase_child(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Path(child_id): Path<ChildId>,
) -> ApiResult<(StatusCode, Json<ErasureAccepted>)> {
    let accepted = erasure::erase_child(&state, caller, rid, child_id).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

// ---------------------------------------------------------------------------------------------
// Access log and verification
// ---------------------------------------------------------------------------------------------

/// The schools where the caller is a compliance officer (their current rosters).
pub(crate) async fn officer_schools(
    state: &AppState,
    caller: Caller,
) -> ApiResult<Vec<Arc<School>>> {
    let Caller::Person(p) = caller else {
        return Ok(Vec::new());
    };
    // A compliance officer added a moment ago may not be projected yet: wait once on a miss.
    let profile = state
        .locate(|| async {
            Ok(memberships::person(&state.system.db, p)
                .await?
                .filter(|profile| !profile.schools.is_empty()))
        })
        .await?;
    let Some(profile) = profile else {
        return Ok(Vec::new());
    };
    let mut rosters = Vec::new();
    for s in profile.schools {
        let roster = state.exec.school(s.school_id).await?.state;
        if roster.role(p) == Some(StaffRole::ComplianceOfficer) {
            rosters.push(roster);
        }
    }
    Ok(rosters)
}

/// `?subject=&limit=&after=` on the access log.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessLogQuery {
    /// Only reads of this subject: `person:<id>`, `child:<id>`, `post:<id>` or `media:<id>`.
    #[param(
        pattern = r"^(person|child|post|media):[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub subject: Option<String>,
    /// At most this many entries (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Only entries after this position (the previous page's `next_after`).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub after: Option<u64>,
}

/// Whose data.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubjectDoc {
    /// `person`, `child`, `post` or `media`.
    pub kind: String,
    /// Its id.
    pub id: Uuid,
}

/// Who read it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessorDoc {
    /// `person` or `operator`.
    pub kind: String,
    /// The person, unless the operator.
    pub person_id: Option<Uuid>,
}

/// One recorded read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessEntryDoc {
    /// The global position of its record (the log's order).
    pub position: u64,
    /// Its event.
    pub event_id: Uuid,
    /// Whose data was read.
    pub subject: SubjectDoc,
    /// Who read it.
    pub accessor: AccessorDoc,
    /// Why, e.g. the route.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A page of the access log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessLogDoc {
    /// The reads, in log order.
    pub entries: Vec<AccessEntryDoc>,
    /// Pass as `?after=` for the next page; `null` at the end.
    pub next_after: Option<u64>,
}

fn parse_subject(text: &str) -> ApiResult<Subject> {
    let bad = || {
        ApiError::validation(format!(
            "subject {text:?} is not person:<id>, child:<id>, post:<id> or media:<id>"
        ))
    };
    let (kind, id) = text.split_once(':').ok_or_else(bad)?;
    let id: Uuid = id.parse().map_err(|_| bad())?;
    Ok(match kind {
        "person" => Subject::Person(PersonId::from_uuid(id)),
        "child" => Subject::Child(ChildId::from_uuid(id)),
        "post" => Subject::Post(PostId::from_uuid(id)),
        "media" => Subject::Media(MediaId::from_uuid(id)),
        _ => return Err(bad()),
    })
}

const fn subject_kind(s: &Subject) -> &'static str {
    match s {
        Subject::Person(_) => "person",
        Subject::Child(_) => "child",
        Subject::Post(_) => "post",
        Subject::Media(_) => "media",
    }
}

/// Whether `subject` belongs to one of the officer's schools.
async fn in_scope(state: &AppState, schools: &[Arc<School>], subject: Subject) -> ApiResult<bool> {
    let ids: Vec<SchoolId> = schools.iter().filter_map(|s| s.school_id).collect();
    Ok(match subject {
        Subject::Person(p) => schools.iter().any(|s| {
            s.staff.contains_key(&p) || s.children.values().any(|e| e.guardians.contains(&p))
        }),
        Subject::Child(c) => schools.iter().any(|s| s.children.contains_key(&c)),
        Subject::Post(id) => state
            .exec
            .load::<post::Post>(&StreamName::post(id))
            .await?
            .state
            .school_id
            .is_some_and(|s| ids.contains(&s)),
        Subject::Media(id) => visibility::media_place(&state.system.db, id)
            .await?
            .is_some_and(|m| ids.contains(&m.school_id)),
    })
}

/// The recorded reads of personal data and content by the operator and compliance officers
/// (compliance officers; only reads of subjects of their schools), in log order, optionally of
/// one subject.
#[utoipa::path(get, path = "/v1/audit/access-log", tag = "audit", params(AccessLogQuery, MinPosition),
    responses((status = 200, body = AccessLogDoc), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
    Q(query): Q<AccessLogQuery>,
) -> ApiResult<Json<AccessLogDoc>> {
    min.wait(&state).await?;
    let subject = query.subject.as_deref().map(parse_subject).transpose()?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be 1 to 1000"));
    }
    let schools = officer_schools(&state, caller).await?;
    if schools.is_empty() {
        return Err(ApiError::forbidden(
            "only compliance officers read the access log",
        ));
    }
    if let Some(s) = subject {
        if !in_scope(&state, &schools, s).await? {
            return Err(ApiError::not_found(format!(
                "{} {} at your school",
                subject_kind(&s),
                s.uuid()
            )));
        }
    }
    let mut scope: HashMap<Subject, bool> = HashMap::new();
    let mut entries = Vec::new();
    let mut cursor = query.after.unwrap_or(0);
    if i64::try_from(cursor).is_err() {
        return Err(ApiError::validation(format!(
            "after: {cursor} is not a log position (at most {})",
            i64::MAX
        )));
    }
    let next_after = loop {
        let page = access_model::access_log(&state.system.db, subject, limit, cursor).await?;
        let full = page.len() == limit as usize;
        for e in page {
            cursor = e.position;
            let visible = match scope.get(&e.subject) {
                Some(v) => *v,
                None => {
                    let v = in_scope(&state, &schools, e.subject).await?;
                    scope.insert(e.subject, v);
                    v
                }
            };
            if visible {
                entries.push(AccessEntryDoc {
                    position: e.position,
                    event_id: e.event_id,
                    subject: SubjectDoc {
                        kind: subject_kind(&e.subject).to_owned(),
                        id: e.subject.uuid(),
                    },
                    accessor: AccessorDoc {
                        kind: match e.accessor {
                            Actor::Person(_) => "person",
                            Actor::Operator => "operator",
                            Actor::System => "system",
                        }
                        .to_owned(),
                        person_id: e.accessor.person().map(Into::into),
                    },
                    reason: e.reason,
                    at: e.at,
                });
                if entries.len() == limit as usize {
                    break;
                }
            }
        }
        if entries.len() == limit as usize {
            break Some(cursor);
        }
        if !full {
            break None;
        }
    };
    Ok(Json(AccessLogDoc {
        entries,
        next_after,
    }))
}

/// One event that breaks its stream's hash chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyFailureDoc {
    /// The stream.
    pub stream: String,
    /// The event's version in it.
    pub version: u64,
    /// The event.
    pub event_id: Uuid,
    /// Its global position.
    pub position: u64,
    /// What is wrong.
    pub problem: String,
}

/// The outcome of walking every stream's hash chain and the global chain over the log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerifyDoc {
    /// Streams seen.
    pub streams_checked: u64,
    /// Events seen.
    pub events_checked: u64,
    /// Whether every chain is intact and no position is missing.
    pub ok: bool,
    /// The first broken event of each broken stream, in log order.
    pub failures: Vec<VerifyFailureDoc>,
    /// `checked`, or `not_available` where the backend keeps no global chain (EventStoreDB).
    pub global_chain: String,
    /// The log's last position read.
    pub head: u64,
    /// Every finding, one line each, in log order: broken stream chains, global chain breaks
    /// at a position, missing positions.
    pub findings: Vec<String>,
}

/// Walks the hash chain of every stream in the event log: tamper evidence (compliance officers,
/// the operator). The answer holds ids only, no personal data.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", params(MinPosition),
    responses((status = 200, body = VerifyDoc), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<VerifyDoc>> {
    min.wait(&state).await?;
    if caller != Caller::Operator && officer_schools(&state, caller).await?.is_empty() {
        return Err(ApiError::forbidden(
            "only compliance officers and the operator verify the event log",
        ));
    }
    let report = state.system.store.verify().await?;
    Ok(Json(VerifyDoc {
        streams_checked: report.streams_checked,
        events_checked: report.events_checked,
        ok: report.ok,
        global_chain: match report.global_chain {
            kring_store::GlobalChain::Checked => "checked",
            kring_store::GlobalChain::NotAvailable => "not_available",
        }
        .to_owned(),
        head: report.head,
        findings: report.findings.iter().map(ToString::to_string).collect(),
        failures: report
            .failures
            .into_iter()
            .map(|f| VerifyFailureDoc {
                stream: f.stream.to_string(),
                version: f.version,
                event_id: f.event_id,
                position: f.position,
                problem: f.problem,
            })
            .collect(),
    }))
}
