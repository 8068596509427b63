//! The read side: policies, current consent and the consent history.

use super::{method_from, purpose, version};
use crate::db::{from_micros, micros, to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use chrono::{DateTime, Utc};
use kring_domain::consent::{ConsentMethod, Consents, LatestDecision};
use kring_domain::school::{ConsentPolicy, PolicyPurpose};
use kring_domain::{ChildId, PersonId, Purpose, SchoolId};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

const POLICY: &str = include_str!("sql/policy.sql");
const CURRENT_CONSENT: &str = include_str!("sql/current_consent.sql");
const CONSENT_HISTORY: &str = include_str!("sql/consent_history.sql");

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

impl From<&GuardianDecision> for LatestDecision {
    fn from(d: &GuardianDecision) -> Self {
        Self {
            granted: d.granted,
            at: d.at,
            policy_version: d.policy_version,
            method: d.method,
        }
    }
}

/// Current consent for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeConsent {
    /// The purpose.
    pub purpose: Purpose,
    /// Whether consent holds, counting the decisions made since the school's policy gave the
    /// purpose its current meaning.
    pub effective: bool,
    /// Whether guardians must decide again: they decided, but none since the purpose changed
    /// meaning.
    pub needs_decision: bool,
    /// Each guardian's latest decision (those under an earlier meaning included).
    pub decisions: Vec<GuardianDecision>,
}

/// The school's consent policy as of `at` (now when `None`): every version published by then,
/// folded with [`ConsentPolicy::following`]. `None` before its first version.
///
/// # Errors
/// Database failures; a stored version this build cannot read.
pub async fn policy(
    db: &ReadDb,
    school: SchoolId,
    at: Option<DateTime<Utc>>,
) -> Result<Option<ConsentPolicy>, ProjectionError> {
    let rows = sqlx::query(POLICY)
        .bind(school.to_string())
        .bind(at.map_or(i64::MAX, micros))
        .fetch_all(db.pool())
        .await?;
    let mut folded: Option<ConsentPolicy> = None;
    for row in rows {
        let purposes: Vec<PolicyPurpose> = serde_json::from_str(&row.try_get::<String, _>(1)?)?;
        folded = Some(ConsentPolicy::following(
            folded.as_ref(),
            version(row.try_get(0)?)?,
            purposes,
        ));
    }
    Ok(folded)
}

/// The current consent of `child` for every purpose.
///
/// # Errors
/// Database failures.
pub async fn current_consent(
    db: &ReadDb,
    child: ChildId,
) -> Result<Vec<PurposeConsent>, ProjectionError> {
    let rows = sqlx::query(CURRENT_CONSENT)
        .bind(child.to_string())
        .fetch_all(db.pool())
        .await?;
    let mut out: Vec<PurposeConsent> = Purpose::ALL
        .into_iter()
        .map(|purpose| PurposeConsent {
            purpose,
            effective: false,
            needs_decision: false,
            decisions: Vec::new(),
        })
        .collect();
    let mut school = None;
    for row in &rows {
        let p = purpose(&row.try_get::<String, _>(0)?)?;
        school = Some(row.try_get::<String, _>(6)?);
        if let Some(slot) = out.iter_mut().find(|c| c.purpose == p) {
            slot.decisions.push(GuardianDecision {
                guardian_id: PersonId::from_uuid(uuid(&row.try_get::<String, _>(1)?)?),
                granted: row.try_get::<i64, _>(2)? != 0,
                at: from_micros(row.try_get(3)?)?,
                policy_version: version(row.try_get(4)?)?,
                method: method_from(&row.try_get::<String, _>(5)?)?,
            });
        }
    }
    let Some(school) = school else {
        return Ok(out);
    };
    let Some(policy) = policy(db, SchoolId::from_uuid(uuid(&school)?), None).await? else {
        return Ok(out);
    };
    let mut consents = Consents::default();
    for c in &out {
        for d in &c.decisions {
            consents.record(c.purpose, d.guardian_id, d.into());
        }
    }
    for c in &mut out {
        c.effective = policy.holds(&consents, c.purpose);
        c.needs_decision = policy.needs_decision(&consents, c.purpose);
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
    Ok(current_consent(db, child)
        .await?
        .into_iter()
        .any(|c| c.purpose == purpose && c.effective))
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

impl From<&HistoryEntry> for LatestDecision {
    fn from(e: &HistoryEntry) -> Self {
        Self {
            granted: e.granted,
            at: e.occurred_at,
            policy_version: e.policy_version,
            method: e.method,
        }
    }
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
    let rows = sqlx::query(CONSENT_HISTORY)
        .bind(child.to_string())
        .bind(purpose_filter.map_or("", |p| p.as_str()))
        .bind(from.map_or(i64::MIN, micros))
        .bind(to.map_or(i64::MAX, micros))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(HistoryEntry {
                event_id: uuid(&row.try_get::<String, _>(0)?)?,
                position: to_u64(row.try_get(1)?)?,
                child_id: child,
                purpose: purpose(&row.try_get::<String, _>(2)?)?,
                granted: row.try_get::<i64, _>(3)? != 0,
                guardian_id: PersonId::from_uuid(uuid(&row.try_get::<String, _>(4)?)?),
                policy_version: version(row.try_get(5)?)?,
                method: method_from(&row.try_get::<String, _>(6)?)?,
                occurred_at: from_micros(row.try_get(7)?)?,
                recorded_at: from_micros(row.try_get(8)?)?,
                effective_after: row.try_get::<i64, _>(9)? != 0,
                recorded_by: row
                    .get::<Option<String>, _>(10)
                    .map(|p| uuid(&p).map(PersonId::from_uuid))
                    .transpose()?,
            })
        })
        .collect()
}
