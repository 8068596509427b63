//! The delivery worker's tables, beside the read models and outside the projections'
//! generations (a rebuild keeps them): jobs (one per idempotency key, with attempts, back-off
//! and dead letters), which notifications each job carries, the sealed addresses of people and
//! the worker's place in the log.
//!
//! No address rests in plain text: an e-mail address or a push subscription is kept as the
//! sealed field of the event that gave it, opened only to send. Stored errors are fixed reasons
//! with a status code, never a server's words.

use crate::error::{ApiError, ApiResult};
use chrono::{DateTime, Utc};
use kring_domain::PersonId;
use kring_projections::db::{from_micros, micros, Backend, ReadDb};
use kring_projections::models::outbox::NotificationId;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Acquire, Executor, Row};
use uuid::Uuid;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS delivery_jobs (
    delivery_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    recipient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT,
    notification_ids TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX IF NOT EXISTS delivery_jobs_pending ON delivery_jobs (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS delivery_jobs_recipient ON delivery_jobs (recipient_id, state);
CREATE TABLE IF NOT EXISTS delivery_items (
    notification_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    PRIMARY KEY (notification_id, delivery_id)
);
CREATE TABLE IF NOT EXISTS delivery_addresses (
    person_id TEXT NOT NULL,
    address_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    sealed TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (person_id, address_id)
);
CREATE TABLE IF NOT EXISTS delivery_cursor (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
)";

/// The id of a notification not sent by the server (its channel is off, or the recipient has no
/// address for it): recorded so that it is not looked at again; the app still lists it.
pub const NOT_SENT: &str = "";

/// What a job delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// One notification.
    Notification,
    /// Several notifications in one mail.
    Digest,
    /// An invitation's code, to the invitee.
    Invitation,
}

impl JobKind {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::Digest => "digest",
            Self::Invitation => "invitation",
        }
    }

    fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "notification" => Ok(Self::Notification),
            "digest" => Ok(Self::Digest),
            "invitation" => Ok(Self::Invitation),
            other => Err(ApiError::internal(format!(
                "unknown delivery kind {other:?}"
            ))),
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its next attempt.
    Pending,
    /// Sent.
    Delivered,
    /// Failed as often as allowed (or for good): waits for the operator.
    Dead,
    /// Not to be sent: the recipient was erased, the subscription is gone, the invitation
    /// closed, the notification acknowledged in the app meanwhile.
    Dropped,
}

impl JobState {
    /// The stored name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Dropped => "dropped",
        }
    }

    fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            "dropped" => Ok(Self::Dropped),
            other => Err(ApiError::internal(format!(
                "unknown delivery state {other:?}"
            ))),
        }
    }
}

/// A job: one message to one address, by its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub delivery_id: Uuid,
    /// The idempotency key: the notification id and the channel (the invitation for its mail).
    pub key: String,
    /// To whom.
    pub recipient_id: PersonId,
    /// What.
    pub kind: JobKind,
    /// `email` or `push`.
    pub channel: String,
    /// The invitation (an invitation mail) or the push subscription (a push message).
    pub target: Option<String>,
    /// The notifications it carries.
    pub notification_ids: Vec<NotificationId>,
    /// Where it stands.
    pub state: JobState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt may be made.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was delivered, dropped or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

fn db_err(e: sqlx::Error) -> ApiError {
    ApiError::from_database("the delivery tables", e)
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("a delivery row: {e}"))
}

/// Creates the tables if they do not exist yet (safe from several processes at once).
///
/// # Errors
/// Database failures.
pub async fn ensure_tables(db: &ReadDb) -> ApiResult<()> {
    let mut conn = db.pool().acquire().await.map_err(db_err)?;
    let mut tx = conn.begin().await.map_err(db_err)?;
    if db.backend() == Backend::Postgres {
        // Concurrent `CREATE … IF NOT EXISTS` can collide on PostgreSQL: serialise them.
        tx.execute("SELECT pg_advisory_xact_lock(7077347)")
            .await
            .map_err(db_err)?;
    }
    for statement in TABLES.split(';') {
        tx.execute(statement).await.map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

/// The worker's place in the log.
///
/// # Errors
/// Database failures.
pub async fn cursor(db: &ReadDb) -> ApiResult<u64> {
    let p: Option<i64> =
        sqlx::query_scalar("SELECT position FROM delivery_cursor WHERE name = 'log'")
            .fetch_optional(db.pool())
            .await
            .map_err(db_err)?;
    Ok(p.map_or(0, |p| u64::try_from(p).unwrap_or(0)))
}

/// One change the log follower makes, applied with the cursor in one transaction.
#[derive(Debug, Clone)]
pub enum Change {
    /// A person's address (sealed field as stored JSON).
    Address {
        /// Whose.
        person: PersonId,
        /// `email`, or the push subscription's id.
        address_id: String,
        /// `email` or `push`.
        channel: &'static str,
        /// The sealed field, as stored.
        sealed: String,
        /// The event's position (a later one wins).
        position: u64,
    },
    /// A push subscription removed or gone: its address and pending jobs go.
    Unsubscribed {
        /// Whose.
        person: PersonId,
        /// The subscription.
        subscription: Uuid,
    },
    /// A person erased (or asked to be): every address and pending job of theirs goes.
    Erased(PersonId),
    /// A new job (an invitation mail).
    Job(NewJob),
}

/// A job to make.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The idempotency key.
    pub key: String,
    /// To whom.
    pub recipient_id: PersonId,
    /// What.
    pub kind: JobKind,
    /// `email` or `push`.
    pub channel: &'static str,
    /// The invitation or push subscription.
    pub target: Option<String>,
    /// The notifications it carries.
    pub notification_ids: Vec<NotificationId>,
}

fn ids_text(ids: &[NotificationId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn insert_job(
    tx: &mut sqlx::AnyConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let delivery_id = Uuid::now_v7().to_string();
    let inserted = sqlx::query(
        "INSERT INTO delivery_jobs (delivery_id, idempotency_key, recipient_id, kind, channel, target, \
         notification_ids, state, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&delivery_id)
    .bind(&job.key)
    .bind(job.recipient_id.to_string())
    .bind(job.kind.as_str())
    .bind(job.channel)
    .bind(job.target.clone())
    .bind(ids_text(&job.notification_ids))
    .bind(micros(now))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    if inserted == 1 {
        for id in &job.notification_ids {
            items(tx, &[id.to_string()], &delivery_id).await?;
        }
    }
    Ok(())
}

async fn items(tx: &mut sqlx::AnyConnection, ids: &[String], delivery_id: &str) -> ApiResult<()> {
    for id in ids {
        sqlx::query(
            "INSERT INTO delivery_items (notification_id, delivery_id) VALUES ($1, $2) \
             ON CONFLICT (notification_id, delivery_id) DO NOTHING",
        )
        .bind(id)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// Applies the follower's `changes` and moves the cursor to `position`, in one transaction.
///
/// # Errors
/// Database failures (nothing applied then).
pub async fn apply(
    db: &ReadDb,
    changes: &[Change],
    position: u64,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let mut tx = db.pool().begin().await.map_err(db_err)?;
    for change in changes {
        match change {
            Change::Address {
                person,
                address_id,
                channel,
                sealed,
                position,
            } => {
                sqlx::query(
                    "INSERT INTO delivery_addresses (person_id, address_id, channel, sealed, position) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (person_id, address_id) DO UPDATE \
                     SET sealed = excluded.sealed, position = excluded.position, channel = excluded.channel \
                     WHERE delivery_addresses.position < excluded.position",
                )
                .bind(person.to_string())
                .bind(address_id)
                .bind(*channel)
                .bind(sealed)
                .bind(i64::try_from(*position).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Change::Unsubscribed {
                person,
                subscription,
            } => {
                sqlx::query(
                    "DELETE FROM delivery_addresses WHERE person_id = $1 AND address_id = $2",
                )
                .bind(person.to_string())
                .bind(subscription.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                sqlx::query(
                    "UPDATE delivery_jobs SET state = 'dropped', last_error = 'subscription removed', \
                     finished_at = $3 WHERE recipient_id = $1 AND target = $2 AND state IN ('pending', 'dead')",
                )
                .bind(person.to_string())
                .bind(subscription.to_string())
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Change::Erased(person) => {
                sqlx::query("DELETE FROM delivery_addresses WHERE person_id = $1")
                    .bind(person.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query(
                    "UPDATE delivery_jobs SET state = 'dropped', last_error = 'recipient erased', \
                     finished_at = $2 WHERE recipient_id = $1 AND state IN ('pending', 'dead')",
                )
                .bind(person.to_string())
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Change::Job(job) => insert_job(&mut tx, job, now).await?,
        }
    }
    sqlx::query(
        "INSERT INTO delivery_cursor (name, position) VALUES ('log', $1) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(i64::try_from(position).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

/// The sealed addresses of `person` on `channel`: `(address id, sealed field as stored)`.
///
/// # Errors
/// Database failures.
pub async fn addresses(
    db: &ReadDb,
    person: PersonId,
    channel: &str,
) -> ApiResult<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT address_id, sealed FROM delivery_addresses WHERE person_id = $1 AND channel = $2 \
         ORDER BY address_id",
    )
    .bind(person.to_string())
    .bind(channel)
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
        .collect()
}

/// One address of `person` by its id.
///
/// # Errors
/// Database failures.
pub async fn address(db: &ReadDb, person: PersonId, address_id: &str) -> ApiResult<Option<String>> {
    sqlx::query_scalar(
        "SELECT sealed FROM delivery_addresses WHERE person_id = $1 AND address_id = $2",
    )
    .bind(person.to_string())
    .bind(address_id)
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)
}

/// How many addresses `person` has (any channel): what erasure must leave at zero.
///
/// # Errors
/// Database failures.
pub async fn address_count(db: &ReadDb, person: PersonId) -> ApiResult<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM delivery_addresses WHERE person_id = $1")
        .bind(person.to_string())
        .fetch_one(db.pool())
        .await
        .map_err(db_err)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A notification released and not yet looked at by the worker.
#[derive(Debug, Clone)]
pub struct Released {
    /// Its id.
    pub id: NotificationId,
    /// When it was released.
    pub release_at: DateTime<Utc>,
    /// Its channel's stored name.
    pub channel: String,
}

/// Notifications released at or before `now` (and not before `since`), neither acknowledged in
/// an app nor looked at by the worker, soonest released first, at most `limit`.
///
/// # Errors
/// Database failures (the outbox not made yet, too).
pub async fn released(
    db: &ReadDb,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    limit: u32,
) -> ApiResult<Vec<Released>> {
    let rows = sqlx::query(
        "SELECT n.notification_id, n.release_at, n.channel FROM outbox_notifications n \
         WHERE n.release_at <= $1 AND n.release_at >= $2 \
         AND NOT EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.notification_id = n.notification_id) \
         AND NOT EXISTS (SELECT 1 FROM delivery_items i WHERE i.notification_id = n.notification_id) \
         ORDER BY n.release_at, n.recipient_id, n.notification_id LIMIT $3",
    )
    .bind(micros(now))
    .bind(micros(since))
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            Ok(Released {
                id: r
                    .try_get::<String, _>(0)
                    .map_err(db_err)?
                    .parse()
                    .map_err(bad)?,
                release_at: from_micros(r.try_get(1).map_err(db_err)?).map_err(bad)?,
                channel: r.try_get(2).map_err(db_err)?,
            })
        })
        .collect()
}

/// Makes `jobs` and records `not_sent` as looked at, in one transaction.
///
/// # Errors
/// Database failures (nothing recorded then).
pub async fn enqueue(
    db: &ReadDb,
    jobs: &[NewJob],
    not_sent: &[NotificationId],
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let mut tx = db.pool().begin().await.map_err(db_err)?;
    for job in jobs {
        insert_job(&mut tx, job, now).await?;
    }
    let ids: Vec<String> = not_sent.iter().map(ToString::to_string).collect();
    items(&mut tx, &ids, NOT_SENT).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

const JOB_COLUMNS: &str = "delivery_id, idempotency_key, recipient_id, kind, channel, target, \
    notification_ids, state, attempts, next_attempt_at, last_error, created_at, finished_at";

fn job_from(r: &AnyRow) -> ApiResult<Job> {
    let ids: String = r.try_get(6).map_err(db_err)?;
    Ok(Job {
        delivery_id: r
            .try_get::<String, _>(0)
            .map_err(db_err)?
            .parse()
            .map_err(bad)?,
        key: r.try_get(1).map_err(db_err)?,
        recipient_id: r
            .try_get::<String, _>(2)
            .map_err(db_err)?
            .parse()
            .map_err(bad)?,
        kind: JobKind::parse(&r.try_get::<String, _>(3).map_err(db_err)?)?,
        channel: r.try_get(4).map_err(db_err)?,
        target: r.try_get(5).map_err(db_err)?,
        notification_ids: ids
            .split_whitespace()
            .map(|s| s.parse().map_err(bad))
            .collect::<ApiResult<_>>()?,
        state: JobState::parse(&r.try_get::<String, _>(7).map_err(db_err)?)?,
        attempts: u32::try_from(r.try_get::<i64, _>(8).map_err(db_err)?).unwrap_or(u32::MAX),
        next_attempt_at: from_micros(r.try_get(9).map_err(db_err)?).map_err(bad)?,
        last_error: r.try_get(10).map_err(db_err)?,
        created_at: from_micros(r.try_get(11).map_err(db_err)?).map_err(bad)?,
        finished_at: r
            .try_get::<Option<i64>, _>(12)
            .map_err(db_err)?
            .map(from_micros)
            .transpose()
            .map_err(bad)?,
    })
}

/// Pending jobs whose next attempt is due at `now`, on `channels`, oldest due first, at most
/// `limit`.
///
/// # Errors
/// Database failures.
pub async fn due(
    db: &ReadDb,
    now: DateTime<Utc>,
    channels: &[&str],
    limit: u32,
) -> ApiResult<Vec<Job>> {
    let mut jobs = Vec::new();
    for channel in channels {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM delivery_jobs WHERE state = 'pending' AND channel = $1 \
             AND next_attempt_at <= $2 ORDER BY next_attempt_at, delivery_id LIMIT $3"
        ))
        .bind(*channel)
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await
        .map_err(db_err)?;
        for r in &rows {
            jobs.push(job_from(r)?);
        }
    }
    Ok(jobs)
}

/// One job by its id.
///
/// # Errors
/// Database failures.
pub async fn job(db: &ReadDb, delivery_id: Uuid) -> ApiResult<Option<Job>> {
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM delivery_jobs WHERE delivery_id = $1"
    ))
    .bind(delivery_id.to_string())
    .fetch_optional(db.pool())
    .await
    .map_err(db_err)?;
    row.as_ref().map(job_from).transpose()
}

/// Jobs of `recipient`, newest first (tests and the operator).
///
/// # Errors
/// Database failures.
pub async fn jobs_of(db: &ReadDb, recipient: PersonId) -> ApiResult<Vec<Job>> {
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM delivery_jobs WHERE recipient_id = $1 ORDER BY created_at DESC, delivery_id DESC"
    ))
    .bind(recipient.to_string())
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(job_from).collect()
}

/// Dead letters, oldest first, at most `limit`.
///
/// # Errors
/// Database failures.
pub async fn dead_letters(db: &ReadDb, limit: u32) -> ApiResult<Vec<Job>> {
    let rows = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS} FROM delivery_jobs WHERE state = 'dead' \
         ORDER BY finished_at, delivery_id LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await
    .map_err(db_err)?;
    rows.iter().map(job_from).collect()
}

/// Puts a dead letter back: pending, its attempts counted from zero, due at `now`. `false`
/// when it is not a dead letter (nothing changed).
///
/// # Errors
/// Database failures.
pub async fn retry(db: &ReadDb, delivery_id: Uuid, now: DateTime<Utc>) -> ApiResult<bool> {
    let n = sqlx::query(
        "UPDATE delivery_jobs SET state = 'pending', attempts = 0, next_attempt_at = $2, \
         finished_at = NULL WHERE delivery_id = $1 AND state = 'dead'",
    )
    .bind(delivery_id.to_string())
    .bind(micros(now))
    .execute(db.pool())
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(n == 1)
}

/// Records an attempt's outcome: `state` (delivered, dead, dropped: finished at `now`; pending:
/// due again at `next`), the attempts made, the failure's reason.
///
/// # Errors
/// Database failures.
pub async fn record(
    db: &ReadDb,
    job: &Job,
    state: JobState,
    attempts: u32,
    next: DateTime<Utc>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let finished = (state != JobState::Pending).then(|| micros(now));
    sqlx::query(
        "UPDATE delivery_jobs SET state = $2, attempts = $3, next_attempt_at = $4, \
         last_error = $5, finished_at = $6 WHERE delivery_id = $1",
    )
    .bind(job.delivery_id.to_string())
    .bind(state.as_str())
    .bind(i64::from(attempts))
    .bind(micros(next))
    .bind(error.map(str::to_owned))
    .bind(finished)
    .execute(db.pool())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The name of `school` (not personal data), from the memberships read model.
///
/// # Errors
/// Database failures.
pub async fn school_name(db: &ReadDb, school: kring_domain::SchoolId) -> ApiResult<Option<String>> {
    sqlx::query_scalar("SELECT name FROM membership_schools WHERE school_id = $1")
        .bind(school.to_string())
        .fetch_optional(db.pool())
        .await
        .map_err(db_err)
}
