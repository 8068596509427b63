//! Replaying streams "as of" a moment: the pure folds behind `consent-history`,
//! `consent-as-of` and `who-may-see`, and loading the streams they need.
//!
//! "As of T" means every event whose `occurred_at` is at or before T, applied in log order
//! with the domain's own `evolve` functions, so the answer is the state the deciders saw.
//! The folds here are pure (no I/O) and reusable; [`load`] reads a stream from the store.

use crate::error::ToolError;
use chrono::{DateTime, Utc};
use kring_domain::child::{Child, ChildEvent};
use kring_domain::consent::ConsentMethod;
use kring_domain::post::Post;
use kring_domain::school::School;
use kring_domain::{Aggregate, ChildId, Event, PersonId, Purpose, StreamName};
use kring_store::{EventStore, EventStoreExt, Position, RecordedEvent};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A recorded event with its decoded (upcast) domain event.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The envelope: id, position, times.
    pub recorded: RecordedEvent,
    /// The domain event.
    pub event: Event,
}

/// Decodes recorded events.
///
/// # Errors
/// [`ToolError::Corrupt`] naming the first event this build cannot decode.
pub fn decode(recorded: Vec<RecordedEvent>) -> Result<Vec<Decoded>, ToolError> {
    recorded
        .into_iter()
        .map(|r| match r.decode() {
            Ok(event) => Ok(Decoded { recorded: r, event }),
            Err(e) => Err(ToolError::Corrupt(format!(
                "event {} at position {} ({}) cannot be decoded: {e}",
                r.event_id, r.position, r.stream
            ))),
        })
        .collect()
}

/// Every event of `stream`, decoded.
///
/// # Errors
/// Store failures; an event that cannot be decoded.
pub async fn load<S: EventStore + Clone>(
    store: &S,
    stream: &StreamName,
) -> Result<Vec<Decoded>, ToolError> {
    decode(store.read_stream_to_end(stream).await?)
}

/// Whether an event had happened at `at` (always, when no moment is given).
#[must_use]
pub fn happened_by(recorded: &RecordedEvent, at: Option<DateTime<Utc>>) -> bool {
    at.is_none_or(|at| recorded.occurred_at <= at)
}

/// An aggregate's state as of `at`: the events that had happened by then, folded with the
/// domain's [`Aggregate::fold`] (other aggregates' events in `events` are passed over).
#[must_use]
pub fn as_of<A: Aggregate>(events: &[Decoded], at: Option<DateTime<Utc>>) -> A {
    A::fold(
        events
            .iter()
            .filter(|d| happened_by(&d.recorded, at))
            .map(|d| &d.event),
    )
}

/// The school roster as of `at`.
#[must_use]
pub fn school_as_of(events: &[Decoded], at: Option<DateTime<Utc>>) -> School {
    as_of(events, at)
}

/// A post as of `at`.
#[must_use]
pub fn post_as_of(events: &[Decoded], at: Option<DateTime<Utc>>) -> Post {
    as_of(events, at)
}

/// A child's state (consents above all) as of `at`.
#[must_use]
pub fn child_as_of(events: &[Decoded], at: Option<DateTime<Utc>>) -> Child {
    as_of(events, at)
}

/// One decision of a child's consent audit trail (the API's history entry, plus when the
/// store recorded it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The event that recorded it.
    pub event_id: Uuid,
    /// Its global position.
    pub position: Position,
    /// The purpose.
    pub purpose: Purpose,
    /// Granted (`true`) or withdrawn (`false`).
    pub granted: bool,
    /// The guardian who decided.
    pub guardian_id: PersonId,
    /// The consent-policy version the decision answered.
    pub policy_version: u32,
    /// How it was given.
    pub method: ConsentMethod,
    /// When it was decided.
    pub occurred_at: DateTime<Utc>,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Whether consent for the purpose held right after it.
    pub effective_after: bool,
}

/// Every consent decision of `child_id`, in order, with the effective consent for its purpose
/// right after it under the school's policy of that moment (computed over the whole history,
/// whatever is shown afterwards). `events`: the child's stream and its school's, in log order.
#[must_use]
pub fn consent_trail(child_id: ChildId, events: &[Decoded]) -> Vec<HistoryEntry> {
    let mut state = Child::default();
    let mut roster = School::default();
    let mut trail = Vec::new();
    for d in events {
        if let Some(e) = School::pick_ref(&d.event) {
            roster = roster.evolve(e);
            continue;
        }
        let Some(e) = Child::pick_ref(&d.event) else {
            continue;
        };
        state = state.evolve(e);
        if let ChildEvent::ConsentDecided(c) = e {
            if c.child_id != child_id {
                continue;
            }
            trail.push(HistoryEntry {
                event_id: d.recorded.event_id,
                position: d.recorded.position,
                purpose: c.purpose,
                granted: c.granted,
                guardian_id: c.guardian_id,
                policy_version: c.policy_version,
                method: c.method,
                occurred_at: d.recorded.occurred_at,
                recorded_at: d.recorded.recorded_at,
                effective_after: roster.consent_holds(&state.consents, c.purpose),
            });
        }
    }
    trail
}

/// A guardian's decision in force at a moment, and the event that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionInForce {
    /// The guardian.
    pub guardian_id: PersonId,
    /// Granted or withdrawn.
    pub granted: bool,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The policy version it answered.
    pub policy_version: u32,
    /// How it was given.
    pub method: ConsentMethod,
    /// The event.
    pub event_id: Uuid,
    /// Its position.
    pub position: Position,
}

/// Effective consent for one purpose at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeAsOf {
    /// The purpose.
    pub purpose: Purpose,
    /// Whether consent held.
    pub effective: bool,
    /// Whether the guardians had to decide again (the purpose's meaning had changed since).
    pub needs_decision: bool,
    /// Each guardian's latest decision by then, by guardian id.
    pub decisions: Vec<DecisionInForce>,
}

/// Effective consent per purpose at `at`: every purpose, decided or not (opt-in: undecided is
/// not effective), with each guardian's latest decision by then. The verdict is the domain's
/// own ([`Aggregate::evolve`] of the child and `School::consent_holds` under the policy of that moment).
/// `events`: the child's stream and its school's.
#[must_use]
pub fn consent_as_of(child_id: ChildId, events: &[Decoded], at: DateTime<Utc>) -> Vec<PurposeAsOf> {
    let state = child_as_of(events, Some(at));
    let roster = school_as_of(events, Some(at));
    let mut latest: BTreeMap<Purpose, BTreeMap<PersonId, DecisionInForce>> = BTreeMap::new();
    for d in events.iter().filter(|d| happened_by(&d.recorded, Some(at))) {
        if let Event::Child(ChildEvent::ConsentDecided(c)) = &d.event {
            if c.child_id != child_id {
                continue;
            }
            latest.entry(c.purpose).or_default().insert(
                c.guardian_id,
                DecisionInForce {
                    guardian_id: c.guardian_id,
                    granted: c.granted,
                    at: d.recorded.occurred_at,
                    policy_version: c.policy_version,
                    method: c.method,
                    event_id: d.recorded.event_id,
                    position: d.recorded.position,
                },
            );
        }
    }
    Purpose::ALL
        .into_iter()
        .map(|purpose| PurposeAsOf {
            purpose,
            effective: roster.consent_holds(&state.consents, purpose),
            needs_decision: roster
                .policy
                .as_ref()
                .is_some_and(|p| p.needs_decision(&state.consents, purpose)),
            decisions: latest
                .remove(&purpose)
                .map(|by_guardian| by_guardian.into_values().collect())
                .unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use kring_domain::simulation::World;
    use kring_store::{EventHash, Metadata, NewEvent};

    /// The world's log as if recorded: positions in order, ids fresh.
    fn recorded(world: &World) -> Vec<Decoded> {
        world
            .log
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let meta = Metadata {
                    occurred_at: r.at,
                    actor: r.actor,
                    correlation_id: Uuid::nil(),
                    causation_id: None,
                };
                let new = NewEvent::new(
                    r.event.event_type(),
                    r.event.schema_version(),
                    &serde_json::Value::Null,
                    meta,
                );
                let recorded = RecordedEvent {
                    event_id: new.event_id,
                    stream: r.stream,
                    version: 0,
                    position: i as u64 + 1,
                    event_type: new.event_type,
                    schema_version: new.schema_version,
                    occurred_at: new.occurred_at,
                    recorded_at: new.occurred_at,
                    actor: r.actor,
                    correlation_id: Uuid::nil(),
                    causation_id: None,
                    payload: String::new(),
                    hash: EventHash::GENESIS,
                    log_hash: None,
                };
                Decoded {
                    recorded,
                    event: r.event.clone(),
                }
            })
            .collect()
    }

    #[test]
    fn one_withdrawal_among_two_guardians_ends_effective_consent_from_its_moment() {
        let mut world = World::with_classes(1, 1, 2);
        let child = world.child_ids[0];
        let [a, b] = [world.guardians_of(child)[0], world.guardians_of(child)[1]];
        let p = Purpose::GroupCommunication;
        world.advance(Duration::hours(1));
        let t0 = world.now;
        world.advance(Duration::hours(1));
        world.decide_consent(a, child, p, true).unwrap_or_default();
        let t1 = world.now;
        world.advance(Duration::hours(1));
        world.decide_consent(b, child, p, false).unwrap_or_default();
        let t2 = world.now;
        let log = recorded(&world);
        let of_child: Vec<Decoded> = log
            .into_iter()
            .filter(|d| {
                d.recorded.stream == StreamName::child(child)
                    || d.recorded.stream == StreamName::school(world.school_id)
            })
            .collect();

        let trail = consent_trail(child, &of_child);
        assert_eq!(
            trail
                .iter()
                .map(|e| (e.guardian_id, e.granted, e.effective_after))
                .collect::<Vec<_>>(),
            vec![(a, true, true), (b, false, false)]
        );
        let effective = |at| {
            consent_as_of(child, &of_child, at)
                .into_iter()
                .find(|x| x.purpose == p)
                .map(|x| (x.effective, x.decisions.len()))
        };
        assert_eq!(effective(t0), Some((false, 0)));
        assert_eq!(effective(t1), Some((true, 1)));
        assert_eq!(effective(t2), Some((false, 2)));
    }
}
