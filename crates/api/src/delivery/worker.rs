//! The delivery worker: one process at a time follows the log, turns released notifications
//! into jobs by their channel and sends what is due, recording every attempt.
//!
//! Who delivers: on PostgreSQL the process holding a session advisory lock (a detached
//! connection: when the process dies its session ends and another takes over); on SQLite the
//! process holding an exclusive lock on `DATA_DIR/delivery.lock`. At least once: a job is
//! recorded as delivered only after the channel accepted it, so a crash in between sends it
//! again — with the same idempotency key.

use super::store::{self, Job, JobKind, JobState, NewJob};
use super::{follow, mail, Channel, Deliver, Delivery, Message, SendError};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kring_domain::invitation::{self, InvitationEvent, InvitationStatus};
use kring_domain::person::{self, PersonAction, PersonContext};
use kring_domain::push::PushEndpoint;
use kring_domain::school::School;
use kring_domain::{Actor, Command, Event, InvitationId, Opened, PersonId, Sealed, StreamName};
use kring_projections::db::Backend;
use kring_projections::models::conversations;
use kring_projections::models::outbox::{self, Notification, NotificationId};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The PostgreSQL advisory lock of the delivering process.
const LEADER_LOCK_KEY: i64 = 0x6b72_696e_6700_0002;

/// Jobs sent at once.
const CONCURRENCY: usize = 8;

/// Events the follower reads per step.
const FOLLOW_BATCH: usize = 1000;

/// Holding this makes the process the one that delivers.
enum Lead {
    Postgres(AnyConnection),
    File(#[allow(dead_code)] std::fs::File),
}

impl Lead {
    async fn alive(&mut self) -> bool {
        match self {
            Self::Postgres(conn) => sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok(),
            Self::File(_) => true,
        }
    }
}

async fn lead(state: &AppState) -> ApiResult<Lead> {
    if state.system.db.backend() == Backend::Postgres {
        loop {
            let mut conn = state
                .system
                .db
                .pool()
                .acquire()
                .await
                .map_err(|e| ApiError::from_database("the delivery lock", e))?
                .detach();
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK_KEY)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| ApiError::from_database("the delivery lock", e))?;
            if got {
                return Ok(Lead::Postgres(conn));
            }
            drop(conn);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let path = state.system.config.data_dir.join("delivery.lock");
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ApiError::internal)?;
        match file.try_lock() {
            Ok(()) => return Ok(Lead::File(file)),
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ApiError::internal(e)),
        }
    }
}

/// Runs the worker for good: waits to lead, then delivers round after round.
pub async fn run(state: AppState, delivery: Arc<Delivery>) {
    loop {
        let mut lead = match lead(&state).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e.explain(), "delivery: cannot take the lock; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        tracing::info!("delivery worker running");
        let mut head = state.system.store.watch_head();
        while lead.alive().await {
            match round(&state, &delivery, Utc::now()).await {
                Ok(0) => {
                    tokio::select! {
                        () = tokio::time::sleep(delivery.config.poll_interval) => {}
                        _ = head.changed() => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.explain(), "delivery round failed; trying again");
                    tokio::time::sleep(delivery.config.poll_interval.max(Duration::from_secs(1)))
                        .await;
                }
            }
        }
        tracing::warn!("delivery worker lost its lock");
    }
}

/// One round: follow the log, make jobs of released notifications, send what is due. Answers
/// how much it did (0: nothing to do).
///
/// # Errors
/// Store and database failures.
pub async fn round(state: &AppState, delivery: &Delivery, now: DateTime<Utc>) -> ApiResult<usize> {
    let mut did = 0;
    loop {
        let read = follow::follow(state, FOLLOW_BATCH).await?;
        did += read;
        if read < FOLLOW_BATCH {
            break;
        }
    }
    did += enqueue(state, delivery, now).await?;
    did += send_due(state, delivery, now).await?;
    Ok(did)
}

/// The channel of a released notification. A stored name this version does not know (a newer
/// version wrote it during a rolling upgrade, or the row is damaged) is reported as an error
/// and read as `push`, the built-in default of every kind ([`outbox::read_channel`]): reading it
/// as `off` would drop the notification in silence, refusing it would stop delivery for
/// everyone behind it. See docs/decisions/0023.
fn channel_of(id: NotificationId, stored: &str) -> Channel {
    stored
        .parse()
        .unwrap_or_else(|e: kring_domain::person::UnknownChannel| {
            let reads_as = outbox::read_channel(stored);
            tracing::error!(notification_id = %id, error = %e, reads_as = %reads_as,
            "delivery: a notification with a channel this version does not know");
            reads_as
        })
}

/// The idempotency key of `notification` on `channel` (`push` names the subscription too).
#[must_use]
pub fn notification_key(notification: NotificationId, channel: &str) -> String {
    format!("{notification}/{channel}")
}

async fn enqueue(state: &AppState, delivery: &Delivery, now: DateTime<Utc>) -> ApiResult<usize> {
    let db = &state.system.db;
    // The late-delivery limit: older notifications are left to the apps.
    let since = chrono::Duration::from_std(delivery.config.max_age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .unwrap_or(DateTime::UNIX_EPOCH);
    let released = match store::released(db, now, since, delivery.config.batch).await {
        Ok(r) => r,
        // The outbox is made by the projector when it starts: nothing released before that.
        Err(e) if e.status.is_server_error() && store::cursor(db).await.is_ok() => {
            tracing::debug!(error = %e.explain(), "delivery: the outbox is not there yet");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    if released.is_empty() {
        return Ok(0);
    }
    let mails = delivery.smtp.is_some();
    let mut jobs = Vec::new();
    let mut not_sent = Vec::new();
    let mut digests: BTreeMap<(PersonId, DateTime<Utc>), Vec<NotificationId>> = BTreeMap::new();
    for r in &released {
        let recipient = r.id.recipient_id;
        match channel_of(r.id, &r.channel) {
            Channel::Email if mails => jobs.push(NewJob {
                key: notification_key(r.id, "email"),
                recipient_id: recipient,
                kind: JobKind::Notification,
                channel: "email",
                target: None,
                notification_ids: vec![r.id],
            }),
            Channel::Digest if mails => digests
                .entry((recipient, r.release_at))
                .or_default()
                .push(r.id),
            Channel::Off | Channel::Email | Channel::Digest => not_sent.push(r.id),
            Channel::Push => {
                let subscriptions = store::addresses(db, recipient, "push").await?;
                if subscriptions.is_empty() {
                    not_sent.push(r.id);
                }
                for (subscription, _) in subscriptions {
                    jobs.push(NewJob {
                        key: format!("{}/{subscription}", notification_key(r.id, "push")),
                        recipient_id: recipient,
                        kind: JobKind::Notification,
                        channel: "push",
                        target: Some(subscription),
                        notification_ids: vec![r.id],
                    });
                }
            }
        }
    }
    for ((recipient, release_at), ids) in digests {
        let mut hash = Sha256::new();
        for id in &ids {
            hash.update(id.to_string().as_bytes());
        }
        let digest = hex::encode(&hash.finalize()[..8]);
        jobs.push(NewJob {
            key: format!(
                "digest:{recipient}:{}:{digest}/email",
                release_at.timestamp_micros()
            ),
            recipient_id: recipient,
            kind: JobKind::Digest,
            channel: "email",
            target: None,
            notification_ids: ids,
        });
    }
    store::enqueue(db, &jobs, &not_sent, now).await?;
    Ok(released.len())
}

async fn send_due(state: &AppState, delivery: &Delivery, now: DateTime<Utc>) -> ApiResult<usize> {
    let mut channels = vec!["push"];
    if delivery.smtp.is_some() {
        channels.push("email");
    }
    let jobs = store::due(&state.system.db, now, &channels, delivery.config.batch).await?;
    let n = jobs.len();
    let results: Vec<ApiResult<()>> = futures::stream::iter(jobs)
        .map(|job| async move {
            let outcome = attempt(state, delivery, &job).await;
            settle(state, delivery, &job, outcome).await
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n)
}

/// What one attempt came to.
#[derive(Debug)]
enum Outcome {
    /// Sent: the notifications it carried are delivered.
    Sent(Vec<NotificationId>),
    /// Not to be sent, for this reason.
    Drop(&'static str),
    /// Failed.
    Failed(SendError),
}

async fn settle(
    state: &AppState,
    delivery: &Delivery,
    job: &Job,
    outcome: ApiResult<Outcome>,
) -> ApiResult<()> {
    let db = &state.system.db;
    let now = Utc::now();
    let attempts = job.attempts.saturating_add(1);
    let outcome = match outcome {
        Ok(o) => o,
        // Our own failure (the database, the vault): counts as a transient failure.
        Err(e) => {
            tracing::warn!(delivery_id = %job.delivery_id, error = %e.explain(), "delivery attempt failed here");
            Outcome::Failed(SendError::Transient(super::Reason::new("server")))
        }
    };
    match outcome {
        Outcome::Sent(ids) => {
            store::record(db, job, JobState::Delivered, attempts, now, None, now).await?;
            if !ids.is_empty() {
                outbox::mark_delivered(db, &ids, now).await?;
            }
        }
        Outcome::Drop(reason) => {
            store::record(
                db,
                job,
                JobState::Dropped,
                job.attempts,
                now,
                Some(reason),
                now,
            )
            .await?;
        }
        Outcome::Failed(SendError::Gone(status)) => {
            expire_subscription(state, job, status).await?;
            let reason = format!("subscription gone {status}");
            store::record(
                db,
                job,
                JobState::Dropped,
                attempts,
                now,
                Some(&reason),
                now,
            )
            .await?;
        }
        Outcome::Failed(e @ SendError::Permanent(_)) => {
            store::record(
                db,
                job,
                JobState::Dead,
                attempts,
                now,
                Some(&e.stored()),
                now,
            )
            .await?;
        }
        Outcome::Failed(e @ SendError::Transient(_)) => {
            if attempts >= delivery.config.max_attempts {
                tracing::warn!(delivery_id = %job.delivery_id, attempts, "delivery given up: a dead letter");
                store::record(
                    db,
                    job,
                    JobState::Dead,
                    attempts,
                    now,
                    Some(&e.stored()),
                    now,
                )
                .await?;
            } else {
                let next = now
                    + chrono::Duration::from_std(delivery.config.backoff(attempts))
                        .unwrap_or_default();
                store::record(
                    db,
                    job,
                    JobState::Pending,
                    attempts,
                    next,
                    Some(&e.stored()),
                    now,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Records that the push service no longer knows the job's subscription (the system decides it
/// on the person's stream; the follower then drops the address).
async fn expire_subscription(state: &AppState, job: &Job, status: u16) -> ApiResult<()> {
    let Some(subscription_id) = job.target.as_deref().and_then(|t| t.parse::<Uuid>().ok()) else {
        return Ok(());
    };
    let person_id = job.recipient_id;
    let nowhere = School::default();
    let written = state
        .exec
        .run::<person::Person, _>(
            StreamName::person(person_id),
            Actor::System,
            Uuid::now_v7(),
            |s, now| {
                person::decide(
                    &PersonContext {
                        person: s,
                        school: &nowhere,
                    },
                    Command::new(
                        Actor::System,
                        PersonAction::ExpirePush {
                            person_id,
                            subscription_id,
                            status,
                        },
                    ),
                    now,
                )
            },
        )
        .await;
    match written {
        Ok(_) => Ok(()),
        // Removed meanwhile.
        Err(e) if e.status.is_client_error() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens a stored sealed field: its value, or `None` when the subject was erased.
async fn open<T: serde::de::DeserializeOwned + Clone>(
    state: &AppState,
    stored: &str,
) -> ApiResult<Option<T>> {
    let sealed: Sealed<T> = serde_json::from_str(stored).map_err(ApiError::internal)?;
    Ok(match state.system.vault.open(&sealed).await? {
        Opened::Value(v) => Some(v),
        Opened::Erased(_) => None,
    })
}

async fn email_of(state: &AppState, person: PersonId) -> ApiResult<Option<String>> {
    match store::address(&state.system.db, person, "email").await? {
        Some(stored) => open(state, &stored).await,
        None => Ok(None),
    }
}

async fn attempt(state: &AppState, delivery: &Delivery, job: &Job) -> ApiResult<Outcome> {
    match job.kind {
        JobKind::Invitation => invitation_mail(state, delivery, job).await,
        JobKind::Notification | JobKind::Digest => notification_message(state, delivery, job).await,
    }
}

async fn invitation_mail(state: &AppState, delivery: &Delivery, job: &Job) -> ApiResult<Outcome> {
    let Some(smtp) = &delivery.smtp else {
        return Ok(Outcome::Failed(SendError::Transient(super::Reason::new(
            "no smtp",
        ))));
    };
    let Some(invitation_id) = job.target.as_deref().and_then(|t| t.parse::<Uuid>().ok()) else {
        return Ok(Outcome::Drop("invitation unknown"));
    };
    let stream = StreamName::invitation(InvitationId::from_uuid(invitation_id));
    let loaded = state.exec.load::<invitation::Invitation>(&stream).await?;
    let open_now = loaded.state.status == InvitationStatus::Pending
        && loaded.state.expires_at.is_some_and(|at| Utc::now() < at);
    if !open_now {
        return Ok(Outcome::Drop("invitation closed"));
    }
    let invited = state
        .exec
        .events_of(&stream)
        .await?
        .into_iter()
        .find_map(|(_, e)| match e {
            Event::Invitation(InvitationEvent::Invited(i)) => Some(i),
            _ => None,
        });
    let Some(invited) = invited else {
        return Ok(Outcome::Drop("invitation unknown"));
    };
    let Some(code) = &invited.code else {
        return Ok(Outcome::Drop("invitation code not kept"));
    };
    let (Opened::Value(email), Opened::Value(code)) = (
        state.system.vault.open(&invited.email).await?,
        state.system.vault.open(code).await?,
    ) else {
        return Ok(Outcome::Drop("recipient erased"));
    };
    let school = store::school_name(&state.system.db, invited.school_id).await?;
    let message = mail::invitation(
        &job.key,
        school.as_deref(),
        &code,
        &delivery.config.public_url,
    );
    Ok(match smtp.send(&email, &message).await {
        Ok(()) => Outcome::Sent(Vec::new()),
        Err(e) => Outcome::Failed(e),
    })
}

/// The school's name for a notification that is still the recipient's to be told about (as the
/// app's list rules it): they take part in the conversation; or they are staff of the school, a
/// guardian of the child, a guardian in the group's audience, a guardian of a child of the
/// school. `None` when it no longer is.
async fn still_theirs(state: &AppState, n: &Notification) -> ApiResult<Option<Option<String>>> {
    let person = n.recipient_id;
    let (school, allowed) = if let Some(conversation) = n.conversation_id {
        let Some(c) = conversations::conversation(&state.system.db, conversation).await? else {
            return Ok(None);
        };
        let roster = state.exec.school(c.school_id).await?.state;
        (
            c.school_id,
            kring_domain::conversation::takes_part(&roster, person, c.child_id),
        )
    } else if let Some(school) = n.school_id {
        let roster = state.exec.school(school).await?.state;
        let staff = roster.staff.contains_key(&person);
        let allowed = match (n.group_id, n.child_id) {
            (_, Some(child)) => staff || roster.is_guardian(person, child),
            (Some(group), None) => staff || roster.is_guardian_in_group(person, group),
            (None, None) => roster
                .children
                .values()
                .any(|e| e.guardians.contains(&person)),
        };
        (school, allowed)
    } else {
        return Ok(None);
    };
    if !allowed {
        return Ok(None);
    }
    Ok(Some(store::school_name(&state.system.db, school).await?))
}

async fn notification_message(
    state: &AppState,
    delivery: &Delivery,
    job: &Job,
) -> ApiResult<Outcome> {
    let db = &state.system.db;
    let mut items = Vec::new();
    let mut ids = Vec::new();
    for id in &job.notification_ids {
        let Some(n) = outbox::notification(db, *id).await? else {
            continue;
        };
        if n.delivered && job.attempts == 0 {
            // Acknowledged in the app before the worker came to it.
            continue;
        }
        let Some(school) = still_theirs(state, &n).await? else {
            continue;
        };
        items.push((school, n.kind.as_str().to_owned(), n.id));
        ids.push(n.id);
    }
    if items.is_empty() {
        return Ok(Outcome::Drop("nothing left to tell"));
    }
    let public_url = &delivery.config.public_url;
    let message: Message = match job.kind {
        JobKind::Digest => mail::digest(
            &job.key,
            &items
                .iter()
                .map(|(s, k, _)| (s.clone(), k.clone()))
                .collect::<Vec<_>>(),
            public_url,
        ),
        _ => {
            let (school, kind, id) = &items[0];
            mail::notification(
                &job.key,
                kind,
                school.as_deref(),
                &id.to_string(),
                public_url,
            )
        }
    };
    let sent = if job.channel == "push" {
        let Some(subscription) = job.target.as_deref() else {
            return Ok(Outcome::Drop("subscription removed"));
        };
        let Some(stored) = store::address(db, job.recipient_id, subscription).await? else {
            return Ok(Outcome::Drop("subscription removed"));
        };
        let Some(endpoint) = open::<PushEndpoint>(state, &stored).await? else {
            return Ok(Outcome::Drop("recipient erased"));
        };
        delivery.push.send(&endpoint, &message).await
    } else {
        let Some(smtp) = &delivery.smtp else {
            return Ok(Outcome::Failed(SendError::Transient(super::Reason::new(
                "no smtp",
            ))));
        };
        let Some(email) = email_of(state, job.recipient_id).await? else {
            return Ok(Outcome::Drop("no e-mail address"));
        };
        smtp.send(&email, &message).await
    };
    Ok(match sent {
        Ok(()) => Outcome::Sent(ids),
        Err(e) => Outcome::Failed(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_stored_channel_is_sent_by_push_not_dropped() {
        let id = NotificationId {
            about: Uuid::now_v7(),
            recipient_id: PersonId::from_uuid(Uuid::now_v7()),
        };
        assert_eq!(channel_of(id, "sms"), Channel::Push);
        assert_eq!(channel_of(id, "email"), Channel::Email);
        assert_eq!(channel_of(id, "off"), Channel::Off);
    }
}
