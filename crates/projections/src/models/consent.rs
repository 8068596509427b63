//! Current consent per child and purpose, and the consent history: the audit trail of every
//! decision with the effective value after it.

use crate::bulk::{Bulk, Cell};
use crate::db::{from_micros, micros, to_i64, to_u64, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Projected, Projection, Tables};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::child::ChildEvent;
use kring_domain::consent::{self, ConsentMethod};
use kring_domain::{ChildId, Event, PersonId, Purpose};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use uuid::Uuid;

/// The projection. It buffers a batch's rows and writes them in a few statements on flush.
#[derive(Debug, Default)]
pub struct ConsentProjection {
    batch: Mutex<Batch>,
}

/// What one batch has seen and will write.
#[derive(Debug, Default)]
struct Batch {
    /// Each guardian's latest decision per (child, purpose) touched in this batch.
    latest: HashMap<(String, Purpose), BTreeMap<String, bool>>,
    /// Decisions to upsert, one per (child, purpose, guardian).
    decisions: BTreeMap<(String, Purpose, String), [Cell; 7]>,
    /// History rows to insert.
    history: Vec<[Cell; 12]>,
}

/// Its name.
pub const NAME: &str = "consent";

const SCHEMA: &str = "
CREATE TABLE {consent_decisions} (
    child_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    granted BIGINT NOT NULL,
    at BIGINT NOT NULL,
    policy_version BIGINT NOT NULL,
    method TEXT NOT NULL,
    PRIMARY KEY (child_id, purpose, guardian_id)
);
CREATE TABLE {consent_history} (
    position BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted BIGINT NOT NULL,
    guardian_id TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    method TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    effective_after BIGINT NOT NULL
);
CREATE INDEX {consent_history}_by_child ON {consent_history} (child_id, purpose, occurred_at)";

const UPSERT: &str = "INSERT INTO {consent_decisions} (child_id, purpose, guardian_id, granted, at, policy_version, method)";
const UPSERT_SUFFIX: &str =
    "ON CONFLICT (child_id, purpose, guardian_id) DO UPDATE SET granted = excluded.granted,
    at = excluded.at, policy_version = excluded.policy_version, method = excluded.method";
const LATEST: &str =
    "SELECT guardian_id, granted FROM {consent_decisions} WHERE child_id = $1 AND purpose = $2";
const HISTORY: &str = "INSERT INTO {consent_history} (position, event_id, child_id, school_id, purpose, granted, guardian_id,
    policy_version, method, occurred_at, recorded_at, effective_after)";

#[async_trait]
impl Projection for ConsentProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["consent_decisions", "consent_history"]
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    async fn apply(
        &self,
        tx: &mut AnyConnection,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let Event::Child(ChildEvent::ConsentDecided(d)) = e.event else {
            return Ok(());
        };
        let child = d.child_id.to_string();
        let key = (child.clone(), d.purpose);
        let cached = self.lock().latest.contains_key(&key);
        if !cached {
            let rows = sqlx::query(&t.sql(LATEST))
                .bind(&child)
                .bind(d.purpose.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let loaded = rows
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) != 0))
                .collect();
            self.lock().latest.insert(key.clone(), loaded);
        }
        let guardian = d.guardian_id.to_string();
        let mut batch = self.lock();
        let latest = batch.latest.entry(key).or_default();
        latest.insert(guardian.clone(), d.granted);
        let effective = consent::effective(latest.values().copied());
        batch.decisions.insert(
            (child.clone(), d.purpose, guardian.clone()),
            [
                child.as_str().into(),
                d.purpose.as_str().into(),
                guardian.as_str().into(),
                d.granted.into(),
                micros(d.at).into(),
                i64::from(d.policy_version).into(),
                method_str(d.method).into(),
            ],
        );
        batch.history.push([
            to_i64(e.recorded.position).into(),
            e.recorded.event_id.to_string().into(),
            child.into(),
            d.school_id.to_string().into(),
            d.purpose.as_str().into(),
            d.granted.into(),
            guardian.into(),
            i64::from(d.policy_version).into(),
            method_str(d.method).into(),
            micros(e.recorded.occurred_at).into(),
            micros(e.recorded.recorded_at).into(),
            effective.into(),
        ]);
        Ok(())
    }

    async fn flush(&self, tx: &mut AnyConnection, t: &Tables) -> Result<(), ProjectionError> {
        let batch = std::mem::take(&mut *self.lock());
        let mut decisions = Bulk::new(t.sql(UPSERT), 7, UPSERT_SUFFIX);
        for row in batch.decisions.into_values() {
            decisions.row(row);
        }
        decisions.execute(tx).await?;
        let mut history = Bulk::new(t.sql(HISTORY), 12, "");
        for row in batch.history {
            history.row(row);
        }
        history.execute(tx).await?;
        Ok(())
    }

    fn reset(&self) {
        *self.lock() = Batch::default();
    }
}

impl ConsentProjection {
    fn lock(&self) -> std::sync::MutexGuard<'_, Batch> {
        // A panic while holding the lock only poisons a buffer that `reset` rebuilds.
        self.batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

const fn method_str(m: ConsentMethod) -> &'static str {
    match m {
        ConsentMethod::App => "app",
        ConsentMethod::Paper => "paper",
    }
}

fn method_from(s: &str) -> ConsentMethod {
    if s == "paper" {
        ConsentMethod::Paper
    } else {
        ConsentMethod::App
    }
}

fn uuid(s: &str) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(s)
        .map_err(|e| ProjectionError::Invalid(format!("bad id {s:?} in a read model: {e}")))
}

fn purpose(s: &str) -> Result<Purpose, ProjectionError> {
    s.parse()
        .map_err(|e| ProjectionError::Invalid(format!("{e}")))
}

/// One guardian's latest decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardianDecision {
    /// The guardian.
    pub guardian_id: PersonId,
    /// Granted or withdrawn.
    pub granted: bool,
    /// When.
    pub at: DateTime<Utc>,
    /// Policy version answered.
    pub policy_version: u32,
    /// How it was given.
    pub method: ConsentMethod,
}

/// Current consent for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeConsent {
    /// The purpose.
    pub purpose: Purpose,
    /// Whether consent holds.
    pub effective: bool,
    /// Each guardian's latest decision.
    pub decisions: Vec<GuardianDecision>,
}

/// The current consent of `child` for every purpose.
///
/// # Errors
/// Database failures.
pub async fn current_consent(
    db: &ReadDb,
    child: ChildId,
) -> Result<Vec<PurposeConsent>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT purpose, guardian_id, granted, at, policy_version, method FROM consent_decisions WHERE child_id = $1 ORDER BY purpose, guardian_id",
    )
    .bind(child.to_string())
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<PurposeConsent> = Purpose::ALL
        .into_iter()
        .map(|purpose| PurposeConsent {
            purpose,
            effective: false,
            decisions: Vec::new(),
        })
        .collect();
    for row in rows {
        let p = purpose(&row.get::<String, _>(0))?;
        if let Some(slot) = out.iter_mut().find(|c| c.purpose == p) {
            slot.decisions.push(GuardianDecision {
                guardian_id: PersonId::from_uuid(uuid(&row.get::<String, _>(1))?),
                granted: row.get::<i64, _>(2) != 0,
                at: from_micros(row.get(3)),
                policy_version: u32::try_from(row.get::<i64, _>(4)).unwrap_or_default(),
                method: method_from(&row.get::<String, _>(5)),
            });
        }
    }
    for c in &mut out {
        c.effective = consent::effective(c.decisions.iter().map(|d| d.granted));
    }
    Ok(out)
}

/// Whether consent for (`child`, `purpose`) holds now.
///
/// # Errors
/// Database failures.
pub async fn is_effective(
    db: &ReadDb,
    child: ChildId,
    purpose: Purpose,
) -> Result<bool, ProjectionError> {
    let latest: Vec<i64> = sqlx::query_scalar(
        "SELECT granted FROM consent_decisions WHERE child_id = $1 AND purpose = $2",
    )
    .bind(child.to_string())
    .bind(purpose.as_str())
    .fetch_all(db.pool())
    .await?;
    Ok(consent::effective(latest.iter().map(|g| *g != 0)))
}

/// One decision of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The event that recorded it.
    pub event_id: Uuid,
    /// Its global position.
    pub position: u64,
    /// The child.
    pub child_id: ChildId,
    /// The purpose.
    pub purpose: Purpose,
    /// Granted or withdrawn.
    pub granted: bool,
    /// The guardian who decided.
    pub guardian_id: PersonId,
    /// Policy version answered.
    pub policy_version: u32,
    /// How it was given.
    pub method: ConsentMethod,
    /// When it was decided.
    pub occurred_at: DateTime<Utc>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Whether consent for the purpose held after it.
    pub effective_after: bool,
}

/// The consent history of `child`, in order, optionally for one purpose and a period
/// (`from` inclusive, `to` exclusive, on the decision time).
///
/// # Errors
/// Database failures.
pub async fn consent_history(
    db: &ReadDb,
    child: ChildId,
    purpose_filter: Option<Purpose>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<HistoryEntry>, ProjectionError> {
    let rows = sqlx::query(
        "SELECT event_id, position, purpose, granted, guardian_id, policy_version, method, occurred_at, recorded_at, effective_after
         FROM consent_history
         WHERE child_id = $1 AND ($2 = '' OR purpose = $2) AND occurred_at >= $3 AND occurred_at < $4
         ORDER BY position",
    )
    .bind(child.to_string())
    .bind(purpose_filter.map_or("", |p| p.as_str()))
    .bind(from.map_or(i64::MIN, micros))
    .bind(to.map_or(i64::MAX, micros))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HistoryEntry {
                event_id: uuid(&row.get::<String, _>(0))?,
                position: to_u64(row.get(1)),
                child_id: child,
                purpose: purpose(&row.get::<String, _>(2))?,
                granted: row.get::<i64, _>(3) != 0,
                guardian_id: PersonId::from_uuid(uuid(&row.get::<String, _>(4))?),
                policy_version: u32::try_from(row.get::<i64, _>(5)).unwrap_or_default(),
                method: method_from(&row.get::<String, _>(6)),
                occurred_at: from_micros(row.get(7)),
                recorded_at: from_micros(row.get(8)),
                effective_after: row.get::<i64, _>(9) != 0,
            })
        })
        .collect()
}
