//! The log follower: what the delivery worker must know from the log, kept as sealed copies in
//! its own tables ([`super::store`]).
//!
//! - `StaffJoined` and `Invited`: the person's e-mail address (the sealed field itself);
//! - `Invited` with a sealed code: a job to e-mail the invitation (decision 0018);
//! - `PushSubscribed`, `PushUnsubscribed`, `PushSubscriptionExpired`: the person's devices;
//! - `PersonErasureRequested`, `PersonErased`: the person's addresses and pending jobs go.

use super::store::{self, Change, JobKind, NewJob};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::Utc;
use kring_domain::invitation::InvitationEvent;
use kring_domain::person::PersonEvent;
use kring_domain::school::SchoolEvent;
use kring_domain::Event;

/// The stored types the follower reads; every other event is skipped undecoded.
const TYPES: &[&str] = &[
    "StaffJoined",
    "Invited",
    "PushSubscribed",
    "PushUnsubscribed",
    "PushSubscriptionExpired",
    "PersonErasureRequested",
    "PersonErased",
];

/// The idempotency key of an invitation's mail.
#[must_use]
pub fn invitation_key(invitation: kring_domain::InvitationId) -> String {
    format!("invitation:{invitation}/email")
}

/// Reads up to `batch` events after the worker's place in the log and applies what they say;
/// answers how many were read (fewer than `batch`: caught up).
///
/// # Errors
/// Store and database failures (nothing applied then; the next round reads them again).
pub async fn follow(state: &AppState, batch: usize) -> ApiResult<usize> {
    let db = &state.system.db;
    let after = store::cursor(db).await?;
    let events = state.system.store.read_all(after, batch).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(0);
    };
    let mut changes = Vec::new();
    for recorded in &events {
        if !TYPES.contains(&recorded.event_type.as_str()) {
            continue;
        }
        let event = Event::decode_str(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )
        .map_err(ApiError::internal)?;
        match event {
            Event::School(SchoolEvent::StaffJoined(s)) => changes.push(Change::Address {
                person: s.person_id,
                address_id: "email".to_owned(),
                channel: "email",
                sealed: serde_json::to_string(&s.email).map_err(ApiError::internal)?,
                position: recorded.position,
            }),
            Event::Invitation(InvitationEvent::Invited(i)) => {
                changes.push(Change::Address {
                    person: i.invitee_id,
                    address_id: "email".to_owned(),
                    channel: "email",
                    sealed: serde_json::to_string(&i.email).map_err(ApiError::internal)?,
                    position: recorded.position,
                });
                if i.code.is_some() {
                    changes.push(Change::Job(NewJob {
                        key: invitation_key(i.invitation_id),
                        recipient_id: i.invitee_id,
                        kind: JobKind::Invitation,
                        channel: "email",
                        target: Some(i.invitation_id.to_string()),
                        notification_ids: Vec::new(),
                    }));
                }
            }
            Event::Person(PersonEvent::PushSubscribed(p)) => changes.push(Change::Address {
                person: p.person_id,
                address_id: p.subscription_id.to_string(),
                channel: "push",
                sealed: serde_json::to_string(&p.subscription).map_err(ApiError::internal)?,
                position: recorded.position,
            }),
            Event::Person(PersonEvent::PushUnsubscribed(p)) => changes.push(Change::Unsubscribed {
                person: p.person_id,
                subscription: p.subscription_id,
            }),
            Event::Person(PersonEvent::PushSubscriptionExpired(p)) => {
                changes.push(Change::Unsubscribed {
                    person: p.person_id,
                    subscription: p.subscription_id,
                });
            }
            Event::Person(PersonEvent::PersonErasureRequested(p)) => {
                changes.push(Change::Erased(p.person_id));
            }
            Event::Person(PersonEvent::PersonErased(p)) => {
                changes.push(Change::Erased(p.person_id));
            }
            _ => {}
        }
    }
    store::apply(db, &changes, last, Utc::now()).await?;
    Ok(events.len())
}
