//! Access logging.
//!
//! When the operator (support) or a compliance officer reads a subject's personal data or
//! content, the read is recorded first, as an `AccessLogged` event in the subject's
//! `access-<id>` stream; the answer is only given once the record is durable. Routes call
//! [`log_if_audited`] (or [`log_access`] when they decided themselves that the read is audited).
//! Not logged: a person reading their own data (the export), and reading the access log itself,
//! which holds ids and reasons, no personal data or content — logging it would turn every audit
//! read into a write.

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use chrono::Utc;
use kring_domain::access::{self, AccessReason, LogAccess, Subject};
use kring_domain::school::{School, StaffRole};
use kring_domain::{Command, Event, StreamName};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use uuid::Uuid;

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
/// a typed value: no text from a request enters the access log), as an `AccessLogged` event in
/// the stream `access-<subject id>`; answers its global position. Call it before answering, so
/// that no audited read goes unrecorded.
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
