//! The write side: applying decisions and policy versions to the consent read model.

use super::{purpose, version, NAME};
use crate::bulk::{select_packed, Bulk, Cell};
use crate::db::{micros, to_i64, uuid};
use crate::error::ProjectionError;
use crate::projection::{Buffer, Projected, Projection, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::child::ChildEvent;
use kring_domain::child::ConsentDecided;
use kring_domain::consent::{ConsentMethod, Consents, LatestDecision};
use kring_domain::school::{ConsentPolicy, ConsentPolicyPublished, PolicyPurpose, SchoolEvent};
use kring_domain::{Event, PersonId, Purpose};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

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

const SCHEMA: &str = include_str!("sql/schema.sql");

/// Indexes only queries use (see [`Projection::query_indexes`]).
const QUERY_INDEXES: &str = include_str!("sql/query_indexes.sql");

const UPSERT: &str = include_str!("sql/upsert.sql");
const UPSERT_SUFFIX: &str = include_str!("sql/upsert_suffix.sql");
const LATEST: &str = include_str!("sql/latest.sql");
const POLICIES: &str = include_str!("sql/policies.sql");
const INSERT_POLICY: &str = include_str!("sql/insert_policy.sql");
const INSERT_HISTORY: &str = include_str!("sql/insert_history.sql");

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
