//! Erasure (GDPR art. 17) by crypto-shredding, and the start-up sweep.
//!
//! Three steps: record the request (the person's or child's stream), destroy the subject's key
//! in the vault, record that it was done (by the system). Each step is idempotent — a repeated
//! request is no error, destroying a destroyed key is a no-op, and recording twice writes once —
//! so a process that stops between steps is repaired by repeating the request, and [`sweep`]
//! (run at start-up) completes every request it finds without its `…Erased` event.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::consent::child_place;
use crate::state::AppState;
use axum::http::StatusCode;
use kring_domain::access::Subject;
use kring_domain::child::{self, ChildAction, ChildContext, ChildEvent};
use kring_domain::invitation::{InvitationEvent, InvitationStatus};
use kring_domain::person::{self, PersonAction, PersonContext, PersonEvent};
use kring_domain::post::{self as domain_post, PostAction, PostContext, PostEvent, RemovalGrounds};
use kring_domain::school::{School, SchoolAction, SchoolEvent};
use kring_domain::{invitation, post};
use kring_domain::{
    Actor, ChildId, Command, DomainError, Event, InvitationId, MediaId, PersonId, PostId, SchoolId,
    StreamName,
};
use kring_projections::models::memberships;
use kring_projections::models::visibility;
use kring_store::{EventStore, DEFAULT_BATCH};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

/// An accepted erasure.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasureAccepted {
    /// The global position of the erasure's record (`PersonErased` / `ChildErased`).
    pub position: u64,
    /// The media items removed because they showed the erased child (their keys and files
    /// destroyed, as a removal destroys them); empty for a person.
    pub removed_media: Vec<Uuid>,
}

/// Erases a person's personal data (the operator; a director of a school the person belongs
/// to): records the request, destroys the person's key, records the erasure. Repeating it
/// completes an interrupted erasure.
///
/// # Errors
/// `404` for an unknown person, `403` without the right; store and vault failures.
pub async fn erase_person(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    person_id: PersonId,
) -> ApiResult<ErasureAccepted> {
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
    let position = complete_person_erasure(state, person_id, &roster, rid).await?;
    Ok(ErasureAccepted {
        position,
        removed_media: Vec::new(),
    })
}

/// Erases a child's personal data (the operator; a director of the child's school): records
/// the request, destroys the child's key, removes the media showing the child, records the
/// erasure. Repeating it completes an interrupted erasure.
///
/// # Errors
/// `404` for an unknown child, `403` without the right; store and vault failures.
pub async fn erase_child(
    state: &AppState,
    caller: Caller,
    rid: Uuid,
    child_id: ChildId,
) -> ApiResult<ErasureAccepted> {
    let place = child_place(state, caller, child_id).await?;
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
    let (position, removed) = complete_child_erasure(state, child_id, school, rid).await?;
    Ok(ErasureAccepted {
        position,
        removed_media: removed.into_iter().map(Into::into).collect(),
    })
}

/// A decision that counts "already so" as done: erasure steps are repeatable.
pub(crate) fn repeatable<E>(decided: Result<Vec<E>, DomainError>) -> Result<Vec<E>, DomainError> {
    match decided {
        Err(DomainError::AlreadyDone { .. }) => Ok(Vec::new()),
        other => other,
    }
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
pub(crate) async fn complete_person_erasure(
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

/// Destroys the child's key, removes every media item that shows the child, and records the
/// erasure (by the system). Idempotent. Answers the erasure's position and the items removed.
pub(crate) async fn complete_child_erasure(
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
    let files = state.media_files();
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
            Ok(()) => report.children_erased += 1,
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
                erase_person(state, Caller::Operator, rid, id)
                    .await
                    .map(drop)
            }
            Subject::Child(id) if !erased_children.contains(&id) => {
                erased_children.insert(id);
                erase_child(state, Caller::Operator, rid, id)
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
            tracing::error!(error = %e.explain(), code = e.code.as_str(), "start-up sweep failed");
        }
    }
}
