//! Consent decisions as commands: the same seeded list for Kring and for cqrs-es.
//!
//! Kring runs them the way the HTTP API does ([`kring_api::exec::Executor`]): refresh the
//! cached school roster, load the child's stream and fold it, decide with the domain's pure
//! `decide`, seal, append with the stream's version as the expectation (deciding once more on
//! a conflict).

use crate::stats::Latencies;
use kring_api::exec::Executor;
use kring_domain::child::{self, ChildAction, ChildContext};
use kring_domain::consent::ConsentMethod;
use kring_domain::simulation::World;
use kring_domain::{Actor, ChildId, Command, PersonId, Purpose, SchoolId, StreamName};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One guardian's consent decision.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// The child.
    pub child: ChildId,
    /// The deciding guardian.
    pub guardian: PersonId,
    /// The purpose.
    pub purpose: Purpose,
    /// Granted or withdrawn.
    pub granted: bool,
}

impl Decision {
    /// The domain command.
    #[must_use]
    pub const fn action(&self) -> ChildAction {
        ChildAction::DecideConsent {
            child_id: self.child,
            purpose: self.purpose,
            granted: self.granted,
            method: ConsentMethod::App,
        }
    }
}

/// `writers` lists of `each` decisions by the guardians of `world`'s children.
#[must_use]
pub fn decisions(world: &World, seed: u64, writers: usize, each: usize) -> Vec<Vec<Decision>> {
    let children: Vec<(ChildId, Vec<PersonId>)> = world
        .child_ids
        .iter()
        .map(|c| (*c, world.guardians_of(*c)))
        .filter(|(_, g)| !g.is_empty())
        .collect();
    (0..writers)
        .map(|w| {
            let mut rng =
                fastrand::Rng::with_seed(seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            (0..each)
                .map(|_| {
                    let (child, guardians) = &children[rng.usize(..children.len())];
                    Decision {
                        child: *child,
                        guardian: guardians[rng.usize(..guardians.len())],
                        purpose: [
                            Purpose::GroupCommunication,
                            Purpose::SchoolCommunication,
                            Purpose::PublicCommunication,
                        ][rng.usize(..3)],
                        granted: rng.usize(..10) > 2,
                    }
                })
                .collect()
        })
        .collect()
}

/// What a run of commands did.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    /// Commands that wrote.
    pub commands: u64,
    /// Events written.
    pub events: u64,
    /// Commands refused (a second conflict, a rule).
    pub failed: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Per-command latency.
    pub latencies: Latencies,
}

impl Throughput {
    /// Events per second.
    #[must_use]
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// An API error as one line.
#[must_use]
pub fn show(e: kring_api::ApiError) -> String {
    format!("{} {}: {}", e.status, e.code, e.detail)
}

/// Runs one decision as the API does; returns the global position and the events written.
///
/// # Errors
/// The API's error (a rule, a second conflict, a store failure), as text.
pub async fn run_one(
    exec: &Executor,
    school_id: SchoolId,
    decision: Decision,
) -> Result<(u64, usize), String> {
    let roster = exec.school(school_id).await.map_err(show)?;
    let actor = Actor::Person(decision.guardian);
    let written = exec
        .run::<child::Child, _>(
            StreamName::child(decision.child),
            actor,
            uuid::Uuid::now_v7(),
            |state, now| {
                let ctx = ChildContext {
                    child: state,
                    school: &roster.state,
                };
                child::decide(&ctx, Command::new(actor, decision.action()), now)
            },
        )
        .await
        .map_err(show)?;
    Ok((written.position, written.events.len()))
}

/// Runs every list on its own concurrent writer, all at once.
pub async fn run_writers(
    exec: &Executor,
    school_id: SchoolId,
    lists: Vec<Vec<Decision>>,
) -> Throughput {
    let start = Instant::now();
    let exec = Arc::new(exec.clone());
    let tasks: Vec<_> = lists
        .into_iter()
        .map(|list| {
            let exec = Arc::clone(&exec);
            tokio::spawn(async move {
                let mut out = (0_u64, 0_u64, 0_u64, Vec::with_capacity(list.len()));
                for decision in list {
                    let t = Instant::now();
                    match run_one(&exec, school_id, decision).await {
                        Ok((_, n)) => {
                            out.0 += 1;
                            out.1 += n as u64;
                            out.3.push(t.elapsed());
                        }
                        Err(e) => {
                            if out.2 == 0 {
                                eprintln!("  a command failed: {e}");
                            }
                            out.2 += 1;
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut total = Throughput::default();
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok((commands, events, failed, l)) = task.await {
            total.commands += commands;
            total.events += events;
            total.failed += failed;
            latencies.extend(l);
        }
    }
    total.elapsed = start.elapsed();
    total.latencies = Latencies::new(latencies);
    total
}
