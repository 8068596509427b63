//! The same consent-decision workload on cqrs-es 0.5 with postgres-es, on the same PostgreSQL
//! server, for Kring/cqrs-es ratios (feature `compare-cqrs-es`).
//!
//! The cqrs-es aggregate wraps Kring's own child state and calls Kring's own `decide` and
//! `evolve`, with the school roster as its service: the domain work is identical, only the
//! framework and the storage differ. cqrs-es stores each event as externally tagged JSON
//! (`{"ConsentDecided": {…}}`) in postgres-es's documented `events` table; there are no
//! snapshots (`postgres_cqrs`), as in Kring. It does less than Kring per event: no global
//! position, no hash chain, no sealing of personal fields, and it reads its roster from memory
//! where Kring refreshes it from the log on every command.

use crate::commands::Decision;
use crate::stats::Latencies;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore};
use kring_domain::child::{self, ChildAction, ChildContext, ChildEvent};
use kring_domain::school::School;
use kring_domain::{Actor, Command, DomainError};
use postgres_es::PostgresEventRepository;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::postgres::PgPoolOptions;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// postgres-es's table, as its `db/init.sql` creates it.
const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS events (
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        sequence bigint CHECK (sequence >= 0) NOT NULL,
        event_type text NOT NULL,
        event_version text NOT NULL,
        payload json NOT NULL,
        metadata json NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE IF NOT EXISTS snapshots (
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
        current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
        payload json NOT NULL,
        PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
];

/// A child's event as cqrs-es stores it: externally tagged JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildEventJson(ChildEvent);

impl Serialize for ChildEventJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let payload = self.0.to_payload().map_err(serde::ser::Error::custom)?;
        let mut map = BTreeMap::new();
        map.insert(self.0.event_type(), payload);
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChildEventJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let (event_type, payload) = map
            .into_iter()
            .next()
            .ok_or_else(|| D::Error::custom("an event needs its type"))?;
        ChildEvent::from_payload(&event_type, payload)
            .ok_or_else(|| D::Error::custom(format!("unknown event type {event_type}")))?
            .map(Self)
            .map_err(D::Error::custom)
    }
}

impl DomainEvent for ChildEventJson {
    fn event_type(&self) -> String {
        self.0.event_type().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Kring's child state as a cqrs-es aggregate.
#[derive(Debug, Default)]
pub struct ChildAggregate(child::Child);

// cqrs-es asks every aggregate to serialise for snapshots, which this comparison does not
// use; the consents stand for the state.
impl Serialize for ChildAggregate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.consents.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ChildAggregate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(child::Child {
            consents: Deserialize::deserialize(d)?,
            ..child::Child::default()
        }))
    }
}

/// A command to the cqrs-es aggregate.
#[derive(Debug)]
pub enum ChildCommand {
    /// Decide as Kring's domain decides.
    Decide {
        /// Who.
        actor: Actor,
        /// What.
        action: ChildAction,
    },
    /// Write a prepared history (to set up a long-history aggregate).
    Import(Vec<ChildEvent>),
}

/// The school roster, from memory.
pub struct Roster(pub Arc<School>);

impl Aggregate for ChildAggregate {
    const TYPE: &'static str = "child";
    type Command = ChildCommand;
    type Event = ChildEventJson;
    type Error = DomainError;
    type Services = Roster;

    async fn handle(
        &mut self,
        command: ChildCommand,
        roster: &Roster,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        let events = match command {
            ChildCommand::Decide { actor, action } => {
                let ctx = ChildContext {
                    child: &self.0,
                    school: &roster.0,
                };
                child::decide(&ctx, Command::new(actor, action), chrono::Utc::now())?
            }
            ChildCommand::Import(events) => events,
        };
        for event in events {
            sink.write(ChildEventJson(event), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ChildEventJson) {
        self.0 = child::evolve(std::mem::take(&mut self.0), &event.0);
    }
}

type Cqrs =
    CqrsFramework<ChildAggregate, PersistedEventStore<PostgresEventRepository, ChildAggregate>>;

/// cqrs-es on one PostgreSQL database.
pub struct CqrsEs {
    cqrs: Arc<Cqrs>,
    store: PersistedEventStore<PostgresEventRepository, ChildAggregate>,
}

impl CqrsEs {
    /// Creates postgres-es's tables in the (empty) database at `url` and the framework over
    /// it, with one connection per writer so the pool never throttles it.
    ///
    /// # Errors
    /// The server refused.
    pub async fn open(url: &str, roster: School, writers: u32) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(writers.max(1))
            .connect(url)
            .await?;
        for sql in SCHEMA {
            sqlx::query(sql).execute(&pool).await?;
        }
        let roster = Arc::new(roster);
        let cqrs = postgres_es::postgres_cqrs(pool.clone(), vec![], Roster(Arc::clone(&roster)));
        let store = PersistedEventStore::new_event_store(PostgresEventRepository::new(pool));
        Ok(Self {
            cqrs: Arc::new(cqrs),
            store,
        })
    }

    /// Runs one decision, deciding once more on a conflict (as Kring's executor does).
    async fn run_one(&self, decision: Decision) -> Result<(), AggregateError<DomainError>> {
        let id = decision.child.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let command = ChildCommand::Decide {
                actor: Actor::Person(decision.guardian),
                action: decision.action(),
            };
            match self.cqrs.execute(&id, command).await {
                Err(AggregateError::AggregateConflict) if attempt < 2 => {}
                other => return other,
            }
        }
    }

    /// Runs every list on its own concurrent writer; returns (commands, failed, elapsed,
    /// latencies).
    pub async fn run_writers(
        self: &Arc<Self>,
        lists: Vec<Vec<Decision>>,
    ) -> (u64, u64, Duration, Latencies) {
        let start = Instant::now();
        let tasks: Vec<_> = lists
            .into_iter()
            .map(|list| {
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    let (mut ok, mut failed, mut lat) = (0_u64, 0_u64, Vec::new());
                    for decision in list {
                        let t = Instant::now();
                        match me.run_one(decision).await {
                            Ok(()) => {
                                ok += 1;
                                lat.push(t.elapsed());
                            }
                            Err(e) => {
                                if failed == 0 {
                                    eprintln!("  a cqrs-es command failed: {e}");
                                }
                                failed += 1;
                            }
                        }
                    }
                    (ok, failed, lat)
                })
            })
            .collect();
        let (mut ok, mut failed, mut lat) = (0, 0, Vec::new());
        for task in tasks {
            if let Ok((o, f, l)) = task.await {
                ok += o;
                failed += f;
                lat.extend(l);
            }
        }
        (ok, failed, start.elapsed(), Latencies::new(lat))
    }

    /// Writes `events` as the history of the aggregate `id`, in commits of 1,000.
    ///
    /// # Errors
    /// As cqrs-es.
    pub async fn import(
        &self,
        id: &str,
        events: &[ChildEvent],
    ) -> Result<(), AggregateError<DomainError>> {
        for chunk in events.chunks(1000) {
            self.cqrs
                .execute(id, ChildCommand::Import(chunk.to_vec()))
                .await?;
        }
        Ok(())
    }

    /// Loads the aggregate `id` (every event, folded).
    ///
    /// # Errors
    /// As cqrs-es.
    pub async fn load(&self, id: &str) -> Result<(), AggregateError<DomainError>> {
        let mut context = self.store.load_aggregate(id).await?;
        std::hint::black_box(cqrs_es::AggregateContext::aggregate(&mut context));
        Ok(())
    }
}

/// `n` consent decisions by the guardians of one child, alternating purposes, decided by the
/// domain one after the other.
#[must_use]
pub fn history(world: &mut kring_domain::simulation::World, n: usize) -> Vec<ChildEvent> {
    let Some(&child_id) = world.child_ids.first() else {
        return Vec::new();
    };
    let guardians = world.guardians_of(child_id);
    let mut rng = fastrand::Rng::with_seed(7);
    let start = world.log.len();
    for _ in 0..n {
        let Some(&guardian) = rng.choice(guardians.iter()) else {
            break;
        };
        let purpose = kring_domain::Purpose::ALL[rng.usize(..kring_domain::Purpose::ALL.len())];
        let _ = world.decide_consent(guardian, child_id, purpose, rng.usize(..2) == 0);
    }
    world.log[start..]
        .iter()
        .filter_map(|r| match &r.event {
            kring_domain::Event::Child(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}
