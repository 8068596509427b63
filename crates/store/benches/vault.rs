//! The cost of sealed personal data on a full read of the log: read + decode every event, with
//! and without opening every sealed field, cold (fresh vault: keys unwrapped on first use) and
//! warm (keys cached). SQLite; `cargo bench -p kring-store --bench vault [-- --quick]`.

#![allow(clippy::unwrap_used)]

use kring_domain::simulation::World;
use kring_domain::Purpose;
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{KeyVault, MasterKey};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::time::Instant;

fn history(target: usize) -> World {
    let mut world = World::with_classes(8, 25, 2);
    let teachers: Vec<_> = world.staff[1..].to_vec();
    let mut i = 0_usize;
    while world.log.len() < target {
        let g = i % world.groups.len();
        let child = world.child_ids[i % world.child_ids.len()];
        let guardian = world.guardians_of(child)[i % 2];
        let _ = world.decide_consent(guardian, child, Purpose::ALL[i % 7], !i.is_multiple_of(5));
        if i.is_multiple_of(4) {
            let group = world.groups[g];
            let _ = world.publish(
                kring_domain::Actor::Person(teachers[g]),
                group,
                &[vec![child]],
            );
        }
        i += 1;
    }
    world
}

async fn full_read(store: &SqliteStore, vault: Option<&KeyVault>) -> (usize, usize, f64) {
    let start = Instant::now();
    let (mut events, mut fields) = (0, 0);
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 1000).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in batch {
            e.decode().unwrap();
            if let Some(vault) = vault {
                let mut payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
                let before = payload.to_string().matches("$sealed").count();
                vault.open_value(&mut payload).await.unwrap();
                fields += before;
            }
            events += 1;
        }
    }
    (events, fields, start.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let world = history(if quick { 10_000 } else { 100_000 });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("events.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let master = MasterKey::generate();
    let vault = KeyVault::open_sqlite(&db, &master).await.unwrap();
    let start = Instant::now();
    for chunk in world.log.chunks(1) {
        let r = &chunk[0];
        let meta = Metadata::new(r.at, r.actor);
        let sealed = vault.seal(&r.event, meta).await.unwrap();
        store
            .append(&r.stream, ExpectedVersion::Any, vec![sealed])
            .await
            .unwrap();
    }
    println!(
        "wrote {} sealed events one append at a time in {:.1} s",
        world.log.len(),
        start.elapsed().as_secs_f64()
    );
    let (n, _, plain) = full_read(&store, None).await;
    println!(
        "full read + decode, fields left sealed : {:>8.0} events/s  ({:.2} us/event)",
        n as f64 / plain,
        plain * 1e6 / n as f64
    );
    let cold_vault = KeyVault::open_sqlite(&db, &master).await.unwrap();
    let (n, fields, cold) = full_read(&store, Some(&cold_vault)).await;
    println!("full read + decode + open, cold keys  : {:>8.0} events/s  ({:.2} us/event, {fields} sealed fields)", n as f64 / cold, cold * 1e6 / n as f64);
    let (n, _, warm) = full_read(&store, Some(&cold_vault)).await;
    println!(
        "full read + decode + open, warm keys  : {:>8.0} events/s  ({:.2} us/event)",
        n as f64 / warm,
        warm * 1e6 / n as f64
    );
    println!(
        "decrypt cost per event: {:.2} us warm, {:.2} us cold; per sealed field {:.2} us warm",
        (warm - plain) * 1e6 / n as f64,
        (cold - plain) * 1e6 / n as f64,
        (warm - plain) * 1e6 / fields.max(1) as f64
    );
    // The cache hit path alone: one cached field opened again and again (each open first checks
    // for erasures committed by other connections).
    let subject = kring_domain::access::Subject::Child(world.child_ids[0]);
    let envelope = cold_vault.encrypt(subject, b"Kind1").await.unwrap();
    cold_vault.decrypt(&envelope).await.unwrap();
    let opens = if quick { 20_000 } else { 200_000 };
    let start = Instant::now();
    for _ in 0..opens {
        assert!(cold_vault.decrypt(&envelope).await.unwrap().is_some());
    }
    let hit = start.elapsed().as_secs_f64();
    println!(
        "open of a cached field                : {:>8.0} opens/s   ({:.2} us/open)",
        f64::from(opens) / hit,
        hit * 1e6 / f64::from(opens)
    );
}
