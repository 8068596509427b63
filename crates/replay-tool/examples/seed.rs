//! Seeds a data directory with a simulated school year, to try the tool on and to measure it.
//!
//! ```sh
//! cargo run --release -p kring-replay-tool --example seed -- /tmp/kring-demo 50000
//! replay-tool --data-dir /tmp/kring-demo rebuild
//! ```
//!
//! Writes about EVENTS events (default 50,000) of one school — 20 classes of 25 children with
//! two guardians each, consent decisions and tagged photos day after day — sealed through the
//! key vault into `DIR/events.db` and `DIR/vault.db`, projects the read models into `DIR/read.db`, and prints a
//! child id and a media id to ask about.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Duration;
use kring_domain::simulation::World;
use kring_domain::{Actor, Purpose};
use kring_projections::{Config, Mode, System};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: seed DIR [EVENTS]");
    let target: usize = args.next().map_or(50_000, |n| n.parse().expect("EVENTS"));

    let started = Instant::now();
    let mut world = World::with_classes(20, 25, 2);
    let mut day = 0_usize;
    while world.log.len() < target {
        day += 1;
        world.advance(Duration::days(1));
        let children = world.child_ids.clone();
        for (i, child) in children.iter().enumerate() {
            let guardians = world.guardians_of(*child);
            let guardian = guardians[(i + day) % guardians.len()];
            let purpose = Purpose::ALL[(i * 3 + day) % Purpose::ALL.len()];
            let granted = !(i + day).is_multiple_of(5);
            world
                .decide_consent(guardian, *child, purpose, granted)
                .unwrap();
        }
        for (g, group) in world.groups.clone().into_iter().enumerate() {
            let teacher = world.staff[g + 1];
            let class: Vec<_> = world
                .school
                .children
                .iter()
                .filter(|(_, e)| e.group_id == group)
                .map(|(c, _)| *c)
                .collect();
            let tagged = vec![class[day % class.len()], class[(day + 7) % class.len()]];
            world
                .publish(Actor::Person(teacher), group, &[tagged])
                .unwrap();
        }
    }
    eprintln!(
        "simulated {} events over {day} school days in {:.1} s",
        world.log.len(),
        started.elapsed().as_secs_f64()
    );

    let config = Config::from_env(&dir);
    let system = System::open(config, Mode::CreateIfMissing).await.unwrap();
    let started = Instant::now();
    let mut i = 0;
    while i < world.log.len() {
        // Consecutive events of one stream go in one append, as one command's would.
        let stream = world.log[i].stream;
        let mut batch = Vec::new();
        while i < world.log.len() && world.log[i].stream == stream && batch.len() < 100 {
            let r = &world.log[i];
            let meta = Metadata::new(r.at, r.actor);
            batch.push(system.vault.seal(&r.event, meta).await.unwrap());
            i += 1;
        }
        system
            .store
            .append(&stream, ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
    eprintln!(
        "wrote {} events in {:.1} s",
        world.log.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let read = system.projector().await.unwrap().catch_up().await.unwrap();
    eprintln!(
        "projected {read} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("child {}", world.child_ids[0]);
    println!("media {}", world.media_ids.last().map(|(_, m)| *m).unwrap());
}
