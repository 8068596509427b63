//! Current consent per child and purpose, and the consent history: the audit trail of every
//! decision with the effective value after it. Each school's consent-policy versions are kept
//! too: a decision counts only under the version that gave its purpose its current meaning
//! ([`ConsentPolicy::holds`]), now and as of any moment.

use crate::bulk::{select_packed, Bulk, Cell};
use crate::db::{from_micros, micros, to_i64, to_u64, uuid, ReadDb};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::child::ChildEvent;
use kring_domain::child::ConsentDecided;
use kring_domain::consent::{ConsentMethod, Consents, LatestDecision};
use kring_domain::school::{ConsentPolicy, ConsentPolicyPublished, PolicyPurpose, SchoolEvent};
use kring_domain::{ChildId, Event, PersonId, Purpose, SchoolId};
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

const POLICY: &str = include_str!("consent/sql/policy.sql");
const CURRENT_CONSENT: &str = include_str!("consent/sql/current_consent.sql");
const CONSENT_HISTORY: &str = include_str!("consent/sql/consent_history.sql");

/// The projection. It buffers a batch's decisions and policy versions, loads the guardians'
/// latest decisions of the children concerned and the policies of their schools with a query
/// each, and writes the batch in a few statements on flush.
#[derive(Debug, Default)]
pub struct ConsentProjection {
    buffer: Buffer<Needed>,
}

/// What the projection needs of an event, in log order.
#[derive(Debug)]
enum Needed {
    Decision(Decision),
    Policy(ConsentPolicyPublished, DateTime<Utc>),
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

const SCHEMA: &str = include_str!("consent/sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("consent/sql/query_indexes.sql");

const UPSERT: &str = include_str!("consent/sql/upsert.sql");
const UPSERT_SUFFIX: &str = include_str!("consent/sql/upsert_suffix.sql");
const LATEST: &str = include_str!("consent/sql/latest.sql");
const POLICIES: &str = include_str!("consent/sql/policies.sql");
const INSERT_POLICY: &str = include_str!("consent/sql/insert_policy.sql");
const INSERT_HISTORY: &str = include_str!("consent/sql/insert_history.sql");

#[async_trait]
impl Projection for ConsentProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["consent_decisions", "consent_history", "consent_policies"]
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
            Event::Child(ChildEvent::ConsentDecided(d)) => Some(Needed::Decision(Decision {
                position: e.recorded.position,
                event_id: e.recorded.event_id,
                occurred_at: e.recorded.occurred_at,
                recorded_at: e.recorded.recorded_at,
                decided: d.clone(),
            })),
            Event::School(SchoolEvent::ConsentPolicyPublished(p)) => {
                Some(Needed::Policy(p.clone(), e.recorded.occurred_at))
            }
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
        // Every guardian's latest decision per (child, purpose) of the children concerned, and
        // the policy versions of their schools.
        let mut children = BTreeSet::new();
        let mut schools = BTreeSet::new();
        for needed in &batch {
            match needed {
                Needed::Decision(d) => {
                    children.insert(d.decided.child_id.to_string());
                    schools.insert(d.decided.school_id.to_string());
                }
                Needed::Policy(p, _) => {
                    schools.insert(p.school_id.to_string());
                }
            }
        }
        let children: Vec<String> = children.into_iter().collect();
        let schools: Vec<String> = schools.into_iter().collect();
        // Only what the rule reads is loaded: when and how each decision was given is not.
        let mut latest: HashMap<String, Consents> = HashMap::new();
        for row in select_packed(tx, &t.sql(LATEST), &[], &children)
            .await?
            .rows()
        {
            let row = row?;
            latest.entry(row.try_get(0)?).or_default().record(
                purpose(&row.try_get::<String>(1)?)?,
                PersonId::from_uuid(uuid(&row.try_get::<String>(2)?)?),
                LatestDecision {
                    granted: row.try_get::<i64>(3)? != 0,
                    at: DateTime::<Utc>::default(),
                    policy_version: version(row.try_get(4)?)?,
                    method: ConsentMethod::default(),
                },
            );
        }
        // Each school's versions, folded in order.
        let mut versions: BTreeMap<(String, u32), Vec<PolicyPurpose>> = BTreeMap::new();
        for row in select_packed(tx, &t.sql(POLICIES), &[], &schools)
            .await?
            .rows()
        {
            let row = row?;
            versions.insert(
                (row.try_get(0)?, version(row.try_get(1)?)?),
                serde_json::from_str(&row.try_get::<String>(2)?)?,
            );
        }
        let mut policies: HashMap<String, ConsentPolicy> = HashMap::new();
        for ((school, version), purposes) in versions {
            let next = ConsentPolicy::following(policies.get(&school), version, purposes);
            policies.insert(school, next);
        }
        let mut decisions: BTreeMap<(String, Purpose, String), [Cell; 8]> = BTreeMap::new();
        let mut history = Bulk::new(t.sql(INSERT_HISTORY), 13, "");
        let mut published = Bulk::new(t.sql(INSERT_POLICY), 4, "");
        for needed in batch {
            let Decision {
                position,
                event_id,
                occurred_at,
                recorded_at,
                decided: d,
            } = match needed {
                Needed::Decision(d) => d,
                Needed::Policy(p, at) => {
                    let school = p.school_id.to_string();
                    published.row([
                        school.as_str().into(),
                        i64::from(p.version).into(),
                        micros(at).into(),
                        serde_json::to_string(&p.purposes)?.into(),
                    ]);
                    let next =
                        ConsentPolicy::following(policies.get(&school), p.version, p.purposes);
                    policies.insert(school, next);
                    continue;
                }
            };
            let child = d.child_id.to_string();
            let guardian = d.guardian_id.to_string();
            let school = d.school_id.to_string();
            let consents = latest.entry(child.clone()).or_default();
            consents.record(d.purpose, d.guardian_id, (&d).into());
            let effective = policies
                .get(&school)
                .is_some_and(|p| p.holds(consents, d.purpose));
            decisions.insert(
                (child.clone(), d.purpose, guardian.clone()),
                [
                    child.as_str().into(),
                    d.purpose.as_str().into(),
                    guardian.as_str().into(),
                    school.as_str().into(),
                    d.granted.into(),
                    micros(d.at).into(),
                    i64::from(d.policy_version).into(),
                    d.method.as_str().into(),
                ],
            );
            history.row([
                to_i64(position).into(),
                event_id.to_string().into(),
                child.into(),
                school.into(),
                d.purpose.as_str().into(),
                d.granted.into(),
                guardian.into(),
                i64::from(d.policy_version).into(),
                d.method.as_str().into(),
                micros(occurred_at).into(),
                micros(recorded_at).into(),
                effective.into(),
                d.recorded_by.map(|p| p.to_string()).into(),
            ]);
        }
        let mut upserts = Bulk::new(t.sql(UPSERT), 8, UPSERT_SUFFIX);
        for row in decisions.into_values() {
            upserts.row(row);
        }
        published.execute(tx).await?;
        upserts.execute(tx).await?;
        history.execute(tx).await?;
        Ok(())
    }
}

fn version(v: i64) -> Result<u32, ProjectionError> {
    u32::try_from(v).map_err(|_| {
        ProjectionError::Invalid(format!("policy version {v} in the consent read model"))
    })
}

fn method_from(s: &str) -> Result<ConsentMethod, ProjectionError> {
    s.parse().map_err(ProjectionError::Invalid)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_that_does_not_parse_is_an_error_not_a_default() {
        assert_eq!(method_from("paper").ok(), Some(ConsentMethod::Paper));
        assert!(matches!(
            method_from("fax"),
            Err(ProjectionError::Invalid(_))
        ));
        assert!(matches!(version(-1), Err(ProjectionError::Invalid(_))));
        assert!(matches!(
            crate::db::to_u64(-1),
            Err(ProjectionError::Invalid(_))
        ));
        assert!(matches!(
            crate::db::from_micros(i64::MAX),
            Err(ProjectionError::Invalid(_))
        ));
    }
}
