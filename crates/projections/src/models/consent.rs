//! Current consent per child and purpose, and the consent history: the audit trail of every
//! decision with the effective value after it.

use crate::bulk::{select_packed, Bulk, Cell};
use crate::db::{from_micros, micros, to_i64, to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::child::ChildEvent;
use kring_domain::child::ConsentDecided;
use kring_domain::consent::{self, ConsentMethod};
use kring_domain::{ChildId, Event, PersonId, Purpose};
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// The projection. It buffers a batch's decisions, loads the guardians' latest decisions of
/// the children concerned with one query, and writes the batch in a few statements on flush.
#[derive(Debug, Default)]
pub struct ConsentProjection {
    buffer: Buffer<Decision>,
}

/// One decision as the batch saw it.
#[derive(Debug)]
struct Decision {
    position: u64,
    event_id: Uuid,
    occurred_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    decided: ConsentDecided,
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
){without_rowid};
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
    effective_after BIGINT NOT NULL,
    recorded_by TEXT
)";

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = "
CREATE INDEX {consent_history}_by_child ON {consent_history} (child_id, purpose, occurred_at)";

const UPSERT: &str = "INSERT INTO {consent_decisions} (child_id, purpose, guardian_id, granted, at, policy_version, method)";
const UPSERT_SUFFIX: &str =
    "ON CONFLICT (child_id, purpose, guardian_id) DO UPDATE SET granted = excluded.granted,
    at = excluded.at, policy_version = excluded.policy_version, method = excluded.method";
const LATEST: &str =
    "SELECT child_id, purpose, guardian_id, granted FROM {consent_decisions} WHERE child_id IN ({in})";
const HISTORY: &str = "INSERT INTO {consent_history} (position, event_id, child_id, school_id, purpose, granted, guardian_id,
    policy_version, method, occurred_at, recorded_at, effective_after, recorded_by)";

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

    fn query_indexes(&self) -> &'static str {
        QUERY_INDEXES
    }

    async fn apply(
        &self,
        _tx: &mut Tx,
        t: &Tables,
        e: Projected<'_>,
    ) -> Result<(), ProjectionError> {
        let needed = match e.event {
            Event::Child(ChildEvent::ConsentDecided(d)) => Some(Decision {
                position: e.recorded.position,
                event_id: e.recorded.event_id,
                occurred_at: e.recorded.occurred_at,
                recorded_at: e.recorded.recorded_at,
                decided: d.clone(),
            }),
            _ => None,
        };
        self.buffer.push(t, e.recorded.position, needed);
        Ok(())
    }

    async fn flush(&self, tx: &mut Tx, t: &Tables) -> Result<(), ProjectionError> {
        let batch = self.buffer.take(t);
        if batch.is_empty() {
            return Ok(());
        }
        // Every guardian's latest decision per (child, purpose) of the children concerned.
        let children: BTreeSet<String> = batch
            .iter()
            .map(|d| d.decided.child_id.to_string())
            .collect();
        let children: Vec<String> = children.into_iter().collect();
        let mut latest: HashMap<(String, Purpose), BTreeMap<String, bool>> = HashMap::new();
        for row in select_packed(tx, &t.sql(LATEST), &[], &children)
            .await?
            .rows()
        {
            let row = row?;
            let key = (
                row.try_get::<String>(0)?,
                purpose(&row.try_get::<String>(1)?)?,
            );
            latest
                .entry(key)
                .or_default()
                .insert(row.try_get(2)?, row.try_get::<i64>(3)? != 0);
        }
        let mut decisions: BTreeMap<(String, Purpose, String), [Cell; 7]> = BTreeMap::new();
        let mut history = Bulk::new(t.sql(HISTORY), 13, "");
        for Decision {
            position,
            event_id,
            occurred_at,
            recorded_at,
            decided: d,
        } in batch
        {
            let child = d.child_id.to_string();
            let guardian = d.guardian_id.to_string();
            let of_purpose = latest.entry((child.clone(), d.purpose)).or_default();
            of_purpose.insert(guardian.clone(), d.granted);
            let effective = consent::effective(of_purpose.values().copied());
            decisions.insert(
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
            history.row([
                to_i64(position).into(),
                event_id.to_string().into(),
                child.into(),
                d.school_id.to_string().into(),
                d.purpose.as_str().into(),
                d.granted.into(),
                guardian.into(),
                i64::from(d.policy_version).into(),
                method_str(d.method).into(),
                micros(occurred_at).into(),
                micros(recorded_at).into(),
                effective.into(),
                d.recorded_by.map(|p| p.to_string()).into(),
            ]);
        }
        let mut upserts = Bulk::new(t.sql(UPSERT), 7, UPSERT_SUFFIX);
        for row in decisions.into_values() {
            upserts.row(row);
        }
        upserts.execute(tx).await?;
        history.execute(tx).await?;
        Ok(())
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
    /// The staff member who entered the guardian's paper form, if one did.
    pub recorded_by: Option<PersonId>,
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
        "SELECT event_id, position, purpose, granted, guardian_id, policy_version, method, occurred_at, recorded_at, effective_after, recorded_by
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
                recorded_by: row
                    .get::<Option<String>, _>(10)
                    .map(|p| uuid(&p).map(PersonId::from_uuid))
                    .transpose()?,
            })
        })
        .collect()
}
