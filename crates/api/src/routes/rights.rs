//! Data-subject rights and audit: the export of everything about the caller (GDPR art. 15),
//! erasure of a person or a child (art. 17, crypto-shredding), the access log and the hash-chain
//! verification for compliance officers — and the access logging every other route uses.
//!
//! # Access logging
//!
//! When the operator (support) or a compliance officer reads a subject's personal data or
//! content, the read is recorded first, as an `AccessLogged` event in the subject's
//! `access-<id>` stream; the answer is only given once the record is durable. Routes call
//! [`log_if_audited`] (or [`log_access`] when they decided themselves that the read is audited).
//! Not logged: a person reading their own data (the export), and reading the access log itself,
//! which holds ids and reasons, no personal data or content — logging it would turn every audit
//! read into a write.
//!
//! # Erasure
//!
//! Three steps: record the request (the person's or child's stream), destroy the subject's key
//! in the vault, record that it was done (by the system). Each step is idempotent — a repeated
//! request is no error, destroying a destroyed key is a no-op, and recording twice writes once —
//! so a process that stops between steps is repaired by repeating the request, and [`sweep`]
//! (run at start-up) completes every request it finds without its `…Erased` event.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::media::MediaFiles;
use crate::routes::consent::child_place;
use crate::routes::schools::{self, MeDoc};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use kring_domain::access::{self, AccessReason, LogAccess, Subject};
use kring_domain::child::{self, ChildAction, ChildContext, ChildEvent};
use kring_domain::invitation::{InvitationEvent, InvitationStatus};
use kring_domain::person::{self, PersonAction, PersonContext, PersonEvent};
use kring_domain::post::{self as domain_post, PostAction, PostContext, PostEvent, RemovalGrounds};
use kring_domain::school::{School, SchoolAction, SchoolEvent, StaffRole};
use kring_domain::{invitation, post};
use kring_domain::{
    Actor, ChildId, Command, DomainError, Event, InvitationId, MediaId, PersonId, PostId, SchoolId,
    StreamName,
};
use kring_projections::models::visibility;
use kring_projections::models::{access_log as access_model, conversations, memberships};
use kring_store::vault::KeyVault;
use kring_store::{
    actor_to_string, EventStore, EventStoreExt, ExpectedVersion, Metadata, RecordedEvent,
    DEFAULT_BATCH,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
// Access logging
// ---------------------------------------------------------------------------------------------

/// Whether reads by `caller` of data at the school of `roster` are audited: the operator's, and
/// a compliance officer's of that school.
#[must_use]
pub fn is_audited(roster: &School, caller: Caller) -> bool {
    match caller {
        Caller::Operator => true,
        Caller::Person(p) => roster.role(p) == Some(StaffRole::ComplianceOfficer),
    }
}

/// Records that `caller` read `subject`'s personal data or content, for `reason` (the route,
/// a typed value: no text from a request enters the access log), as an `AccessLogged` event in the stream `access-<subject id>`; answers its global
/// position. Call it before answering, so that no audited read goes unrecorded.
///
/// The entry does not depend on earlier ones, so it is appended without a version expectation:
/// concurrent reads of one subject never conflict.
///
/// # Errors
/// Store and vault failures.
pub async fn log_access(
    state: &AppState,
    caller: Caller,
    request_id: Uuid,
    subject: Subject,
    reason: AccessReason,
) -> ApiResult<u64> {
    let now = Utc::now();
    let actor = caller.actor();
    let decided = access::decide(
        &access::AccessLog::default(),
        Command::new(actor, LogAccess { subject, reason }),
        now,
    )?;
    let mut sealed = Vec::with_capacity(decided.len());
    for event in decided {
        let meta = Metadata {
            occurred_at: now,
            actor,
            correlation_id: request_id,
            causation_id: None,
        };
        sealed.push(state.system.vault.seal(&Event::from(event), meta).await?);
    }
    let outcome = state
        .system
        .store
        .append(
            &StreamName::access(subject.uuid()),
            ExpectedVersion::Any,
            sealed,
        )
        .await?;
    Ok(outcome.position)
}

/// [`log_access`] when [`is_audited`] says the read is audited; `None` (nothing written)
/// otherwise.
///
/// # Errors
/// As [`log_access`].
pub async fn log_if_audited(
    state: &AppState,
    caller: Caller,
    request_id: Uuid,
    roster: &School,
    subject: Subject,
    reason: AccessReason,
) -> ApiResult<Option<u64>> {
    if is_audited(roster, caller) {
        log_access(state, caller, request_id, subject, reason)
            .await
            .map(Some)
    } else {
        Ok(None)
    }
}

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
    /// the access log of them and their children (who read their data, and why), and the
    /// removals of posts and media items they made (with the reason they gave).
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
    let Json(profile) =
        schools::me(State(state.clone()), caller, Q(MinPosition::default())).await?;
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
    let own: BTreeSet<Subject> = std::iter::once(Subject::Person(me))
        .chain(children.iter().map(|c| Subject::Child(*c)))
        .collect();
    let own_only = |s: &Subject| own.contains(s);
    let everything = |_: &Subject| true;

    let mut events = Vec::new();
    let mut own_streams = vec![StreamName::person(me), StreamName::access(me.as_uuid())];
    for c in &children {
        own_streams.push(StreamName::child(*c));
        own_streams.push(StreamName::access(c.as_uuid()));
    }
    for i in memberships::invitations_of_invitee(&state.system.db, me).await? {
        own_streams.push(StreamName::invitation(i.invitation_id));
    }
    for stream in &own_streams {
        for r in state.system.store.read_stream_to_end(stream).await? {
            events.push(exported(&state.system.vault, r, &own_only).await?);
        }
    }
    // The conversations they take part in: every message in them was addressed to them.
    for c in conversations::inbox(&state.system.db, me).await? {
        let stream = StreamName::conversation(c.conversation_id);
        for r in state.system.store.read_stream_to_end(&stream).await? {
            events.push(exported(&state.system.vault, r, &everything).await?);
        }
    }
    // The removals they made: the reason they typed is their personal data, sealed for them.
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
    // Roster facts naming them or their children.
    let names: Vec<String> = std::iter::once(me.to_string())
        .chain(children.iter().map(ToString::to_string))
        .collect();
    for school in schools {
        for r in state
            .system
            .store
            .read_stream_to_end(&StreamName::school(school))
            .await?
        {
            if names.iter().any(|n| r.payload.contains(n.as_str())) {
                events.push(exported(&state.system.vault, r, &own_only).await?);
            }
        }
    }
    events.sort_by_key(|e| e.position);
    Ok(Json(ExportDoc {
        person_id: me.into(),
        exported_at: Utc::now(),
        profile,
        events,
    }))
}

async fn exported(
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

/// An accepted erasure.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureAccepted {
    /// The global position of the erasure's record (`PersonErased` / `ChildErased`).
    pub position: u64,
    /// The media items removed because they showed the erased child (their keys and files
    /// destroyed, as a removal destroys them); empty for a person.
    pub removed_media: Vec<Uuid>,
}

/// A decision that counts "already so" as done: erasure steps are repeatable.
fn repeatable<E>(decided: Result<Vec<E>, DomainError>) -> Result<Vec<E>, DomainError> {
    match decided {
        Err(DomainError::AlreadyDone { .. }) => Ok(Vec::new()),
        other => other,
    }
}

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
    // Which schools the person (and the caller) belong to comes from the read model: let it
    // reach the log's head first, so a guardian linked a moment ago counts. The rights
    // themselves are then decided on the rosters, which are always current.
    state.catch_up().await?;
    let profile = memberships::person(&state.system.db, person_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("person {person_id}")))?;
    let mut candidates: BTreeSet<SchoolId> = profile.schools.iter().map(|s| s.school_id).collect();
    if let Some(me) = caller.person() {
        if let Some(mine) = memberships::person(&state.system.db, me).await? {
            candidates.extend(mine.schools.iter().map(|s| s.school_id));
        }
    }
    // Decide with the roster of a school the person belongs to where the caller is director;
    // failing that, any of their schools (the domain then refuses a caller without the right).
    let mut roster: Option<Arc<School>> = None;
    for school_id in candidates {
        let school = state.exec.school(school_id).await?.state;
        let member = school.staff.contains_key(&person_id)
            || school
                .children
                .values()
                .any(|e| e.guardians.contains(&person_id));
        if member && school.is_director(caller.actor()) {
            roster = Some(school);
            break;
        }
        if member && roster.is_none() {
            roster = Some(school);
        }
    }
    let roster = roster.unwrap_or_default();
    state
        .exec
        .run::<person::Person, _>(
            StreamName::person(person_id),
            caller.actor(),
            rid,
            |s, now| {
                repeatable(person::decide(
                    &PersonContext {
                        person: s,
                        school: &roster,
                    },
                    Command::new(caller.actor(), PersonAction::RequestErasure { person_id }),
                    now,
                ))
            },
        )
        .await?;
    let position = complete_person_erasure(&state, person_id, &roster, rid).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ErasureAccepted {
            position,
            removed_media: Vec::new(),
        }),
    ))
}

/// Ends every relation of an erased person (by the system): each guardianship and staff place in
/// every school they belong to, so that nothing is granted to their token any more. Idempotent.
async fn end_relations(state: &AppState, person_id: PersonId, rid: Uuid) -> ApiResult<()> {
    state.catch_up().await?;
    let schools = memberships::person(&state.system.db, person_id)
        .await?
        .map(|p| p.schools)
        .unwrap_or_default();
    for school in schools {
        state
            .exec
            .run_school(school.school_id, Actor::System, rid, |roster, now| {
                kring_domain::school::decide(
                    roster,
                    Command::new(Actor::System, SchoolAction::EndRelationsOf { person_id }),
                    now,
                )
            })
            .await?;
    }
    Ok(())
}

/// Destroys the person's key, ends their relations and records the erasure (by the system).
/// Idempotent.
async fn complete_person_erasure(
    state: &AppState,
    person_id: PersonId,
    roster: &School,
    rid: Uuid,
) -> ApiResult<u64> {
    state.system.vault.erase(Subject::Person(person_id)).await?;
    end_relations(state, person_id, rid).await?;
    Ok(state
        .exec
        .run::<person::Person, _>(
            StreamName::person(person_id),
            Actor::System,
            rid,
            |s, now| {
                repeatable(person::decide(
                    &PersonContext {
                        person: s,
                        school: roster,
                    },
                    Command::new(Actor::System, PersonAction::RecordErasure { person_id }),
                    now,
                ))
            },
        )
        .await?
        .position)
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
    let place = child_place(&state, caller, child_id).await?;
    let school = &place.roster.state;
    state
        .exec
        .run::<child::Child, _>(
            StreamName::child(child_id),
            caller.actor(),
            rid,
            |s, now| {
                repeatable(child::decide(
                    &ChildContext { child: s, school },
                    Command::new(caller.actor(), ChildAction::RequestErasure { child_id }),
                    now,
                ))
            },
        )
        .await?;
    let (position, removed) = complete_child_erasure(&state, child_id, school, rid).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ErasureAccepted {
            position,
            removed_media: removed.into_iter().map(Into::into).collect(),
        }),
    ))
}

/// Destroys the child's key, removes every media item that shows the child, and records the
/// erasure (by the system). Idempotent. Answers the erasure's position and the items removed.
async fn complete_child_erasure(
    state: &AppState,
    child_id: ChildId,
    school: &School,
    rid: Uuid,
) -> ApiResult<(u64, Vec<MediaId>)> {
    state.system.vault.erase(Subject::Child(child_id)).await?;
    let removed = remove_media_showing(state, child_id, school, rid).await?;
    let position = state
        .exec
        .run::<child::Child, _>(StreamName::child(child_id), Actor::System, rid, |s, now| {
            repeatable(child::decide(
                &ChildContext { child: s, school },
                Command::new(Actor::System, ChildAction::RecordErasure { child_id }),
                now,
            ))
        })
        .await?
        .position;
    Ok((position, removed))
}

/// Removes every live media item of the child's school that shows the child: each item's key
/// and file are destroyed first, then its removal is recorded (as the system), the order every
/// destruction keeps. Idempotent.
async fn remove_media_showing(
    state: &AppState,
    child_id: ChildId,
    school: &School,
    rid: Uuid,
) -> ApiResult<Vec<MediaId>> {
    let school_id = school.id()?;
    // A photo posted a moment ago counts too.
    state.catch_up().await?;
    let files = MediaFiles::new(state.media_dir(), Arc::clone(&state.system.vault));
    let mut removed = Vec::new();
    for (post_id, media_id) in
        visibility::live_media_showing(&state.system.db, school_id, child_id).await?
    {
        files.shred(media_id).await?;
        state
            .exec
            .run::<post::Post, _>(
                StreamName::post(post_id),
                Actor::System,
                rid,
                |post, now| {
                    match domain_post::decide(
                        &PostContext { post, school },
                        Command::new(
                            Actor::System,
                            PostAction::RemoveMedia {
                                media_id,
                                reason: RemovalGrounds::ShowsAnErasedChild,
                            },
                        ),
                        now,
                    ) {
                        // Removed meanwhile: its key is gone either way.
                        Err(DomainError::ContentRemoved { .. }) => Ok(Vec::new()),
                        other => other,
                    }
                },
            )
            .await?;
        removed.push(media_id);
    }
    Ok(removed)
}

// ---------------------------------------------------------------------------------------------
// Start-up sweep
// ---------------------------------------------------------------------------------------------

/// What [`sweep`] completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Person erasures that were requested but not recorded as done.
    pub people_erased: usize,
    /// Child erasures that were requested but not recorded as done.
    pub children_erased: usize,
    /// Approved invitations whose guardian link was still missing.
    pub guardians_linked: usize,
    /// People and children in the erasure ledger whose erasure the log did not show (a restored
    /// backup taken before it): erased again, as the operator.
    pub erasures_from_the_ledger: usize,
    /// Posts and media items whose keys a removal destroyed without recording the removal
    /// (the process stopped between the two): recorded now, by the system.
    pub removals_recorded: usize,
    /// Completions that failed (logged; tried again at the next start).
    pub failed: usize,
}

const SWEPT_TYPES: &[&str] = &[
    "PersonErasureRequested",
    "PersonErased",
    "ChildErasureRequested",
    "ChildErased",
    "InvitationApproved",
    "GuardianLinked",
    "PostPublished",
    "PostRemoved",
    "PostExpired",
    "MediaRemoved",
];

/// Completes what a process that stopped between two writes left half done: erasures requested
/// but not recorded (the key is destroyed, then the erasure recorded) and approved invitations
/// without their guardian link. People and children in the erasure ledger whose erasure the
/// log does not show (a backup taken before it was restored) are erased again, as the operator. Reads the whole log once (decoding only those event types);
/// every completion is idempotent, so running it beside live requests or on several instances
/// is safe.
///
/// # Errors
/// Store, vault and read failures; a completion the domain refuses.
pub async fn sweep(state: &AppState) -> ApiResult<SweepReport> {
    let mut people: BTreeSet<PersonId> = BTreeSet::new();
    let mut children: BTreeMap<ChildId, SchoolId> = BTreeMap::new();
    let mut approved: BTreeSet<InvitationId> = BTreeSet::new();
    let mut erased_people: BTreeSet<PersonId> = BTreeSet::new();
    let mut erased_children: BTreeSet<ChildId> = BTreeSet::new();
    // Live posts and their live media items.
    let mut live: BTreeMap<PostId, BTreeSet<MediaId>> = BTreeMap::new();
    let mut after = 0;
    loop {
        let batch = state.system.store.read_all(after, DEFAULT_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for r in batch
            .iter()
            .filter(|r| SWEPT_TYPES.contains(&r.event_type.as_str()))
        {
            let event = r.decode().map_err(ApiError::internal)?;
            match event {
                Event::Person(PersonEvent::PersonErasureRequested(e)) => {
                    people.insert(e.person_id);
                }
                Event::Person(PersonEvent::PersonErased(e)) => {
                    people.remove(&e.person_id);
                    erased_people.insert(e.person_id);
                }
                Event::Child(ChildEvent::ChildErasureRequested(e)) => {
                    children.insert(e.child_id, e.school_id);
                }
                Event::Child(ChildEvent::ChildErased(e)) => {
                    children.remove(&e.child_id);
                    erased_children.insert(e.child_id);
                }
                Event::Invitation(InvitationEvent::InvitationApproved(e)) => {
                    approved.insert(e.invitation_id);
                }
                Event::School(SchoolEvent::GuardianLinked(e)) => {
                    approved.remove(&e.invitation_id);
                }
                Event::Post(PostEvent::PostPublished(e)) => {
                    live.insert(e.post_id, e.media.iter().map(|m| m.media_id).collect());
                }
                Event::Post(PostEvent::PostRemoved(e)) => {
                    live.remove(&e.post_id);
                }
                Event::Post(PostEvent::PostExpired(e)) => {
                    live.remove(&e.post_id);
                }
                Event::Post(PostEvent::MediaRemoved(e)) => {
                    if let Some(media) = live.get_mut(&e.post_id) {
                        media.remove(&e.media_id);
                    }
                }
                _ => {}
            }
        }
    }
    let rid = Uuid::now_v7();
    let mut report = SweepReport::default();
    // One failure (say, a child unenrolled since) must not keep the others undone.
    let log_failure = |what: String, e: &ApiError| {
        tracing::error!(error = %e.explain(), code = e.code.as_str(), "start-up sweep: {what} failed");
    };
    // Completed below: not again from the ledger.
    erased_people.extend(people.iter().copied());
    erased_children.extend(children.keys().copied());
    for person_id in people {
        match complete_person_erasure(state, person_id, &School::default(), rid).await {
            Ok(_) => report.people_erased += 1,
            Err(e) => {
                log_failure(format!("erasure of person {person_id}"), &e);
                report.failed += 1;
            }
        }
    }
    for (child_id, school_id) in children {
        let done = match state.exec.school(school_id).await {
            Ok(school) => complete_child_erasure(state, child_id, &school.state, rid)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match done {
            Ok(_) => report.children_erased += 1,
            Err(e) => {
                log_failure(format!("erasure of child {child_id}"), &e);
                report.failed += 1;
            }
        }
    }
    // The ledger outlives a restore; the restored log may not show its latest erasures. Their
    // keys are destroyed already (by the restore): end the relations and record the erasure too.
    let ledger_entries = match state.system.vault.ledger() {
        Some(ledger) => ledger
            .entries()
            .map_err(|e| ApiError::internal(e.to_string()))?,
        None => Vec::new(),
    };
    for entry in &ledger_entries {
        let erased = match entry.subject {
            Subject::Person(id) if !erased_people.contains(&id) => {
                erased_people.insert(id);
                erase_person(
                    State(state.clone()),
                    Caller::Operator,
                    RequestId(rid),
                    Path(id),
                )
                .await
                .map(drop)
            }
            Subject::Child(id) if !erased_children.contains(&id) => {
                erased_children.insert(id);
                erase_child(
                    State(state.clone()),
                    Caller::Operator,
                    RequestId(rid),
                    Path(id),
                )
                .await
                .map(drop)
            }
            _ => continue,
        };
        match erased {
            Ok(()) => report.erasures_from_the_ledger += 1,
            // Not in the restored log at all: nothing of theirs to end or record.
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => {
                log_failure(
                    format!("erasure of {:?} from the ledger", entry.subject),
                    &e,
                );
                report.failed += 1;
            }
        }
    }
    // A removal destroys the keys first (naming them in the ledger), then records itself.
    for entry in ledger_entries {
        let (post_id, action) = match entry.subject {
            // The retention job expires; the sweep records what fits (see `record_removal`).
            Subject::Post(id) if live.contains_key(&id) => (id, PostAction::Expire),
            Subject::Media(media_id) => {
                let Some((post_id, _)) = live.iter().find(|(_, m)| m.contains(&media_id)) else {
                    continue;
                };
                (
                    *post_id,
                    PostAction::RemoveMedia {
                        media_id,
                        reason: RemovalGrounds::InterruptedRemoval,
                    },
                )
            }
            _ => continue,
        };
        if let PostAction::RemoveMedia { media_id, .. } = &action {
            if let Some(media) = live.get_mut(&post_id) {
                media.remove(media_id);
            }
        } else {
            live.remove(&post_id);
        }
        match record_removal(state, post_id, action, rid).await {
            Ok(()) => report.removals_recorded += 1,
            Err(e) => {
                log_failure(format!("the removal of {:?}", entry.subject), &e);
                report.failed += 1;
            }
        }
    }
    for invitation_id in approved {
        let invitation = state
            .exec
            .load::<invitation::Invitation>(&StreamName::invitation(invitation_id))
            .await?
            .state;
        if !matches!(invitation.status, InvitationStatus::Approved { .. }) {
            continue;
        }
        match crate::routes::invitations::link_guardian(state, invitation, Actor::System, rid).await
        {
            Ok(_) => report.guardians_linked += 1,
            Err(e) => {
                log_failure(
                    format!("the guardian link of invitation {invitation_id}"),
                    &e,
                );
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// Records a removal whose keys are destroyed already, by the system. A whole post
/// ([`PostAction::Expire`] asked) is recorded as expired when its retention period has run out
/// (the retention job stopped halfway), and as removed otherwise.
async fn record_removal(
    state: &AppState,
    post_id: PostId,
    action: PostAction,
    rid: Uuid,
) -> ApiResult<()> {
    let post = state
        .exec
        .load::<post::Post>(&StreamName::post(post_id))
        .await?
        .state;
    let school_id = post
        .school_id
        .ok_or_else(|| ApiError::internal(format!("post {post_id} without its school")))?;
    let roster = state.exec.school(school_id).await?.state;
    state
        .exec
        .run::<post::Post, _>(StreamName::post(post_id), Actor::System, rid, |p, now| {
            let context = PostContext {
                post: p,
                school: &roster,
            };
            let decide = |action: PostAction| {
                domain_post::decide(&context, Command::new(Actor::System, action), now)
            };
            match &action {
                PostAction::Expire => decide(PostAction::Expire).or_else(|_| {
                    decide(PostAction::Remove {
                        reason: RemovalGrounds::InterruptedRemoval,
                    })
                }),
                other => decide(other.clone()),
            }
        })
        .await?;
    Ok(())
}

/// Runs [`sweep`] and logs what it did (for a background task at start-up).
pub async fn sweep_in_background(state: AppState) {
    match sweep(&state).await {
        Ok(report) if report == SweepReport::default() => {}
        Ok(report) => tracing::warn!(?report, "completed interrupted erasures and approvals"),
        Err(e) => {
            tracing::error!(error = %e.explain(), code = e.code.as_str(), "start-up sweep failed")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Access log and verification
// ---------------------------------------------------------------------------------------------

/// The schools where the caller is a compliance officer (their current rosters).
async fn officer_schools(state: &AppState, caller: Caller) -> ApiResult<Vec<Arc<School>>> {
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
    pub subject: Option<String>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Only entries after this position (the previous page's `next_after`).
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
