//! Full rebuild of every projection from a generated school-year log, into SQLite.
//!
//! `cargo bench -p kring-projections --bench rebuild [-- --events N]` (default 1,000,000;
//! `--quick` = 100,000). Phase 1 generates the log through the real deciders and the key
//! vault; phase 2 runs in a child process so that its peak RSS is the rebuild's alone.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use kring_domain::activity::ActivityAction;
use kring_domain::child::ChildAction;
use kring_domain::conversation::ConversationAction;
use kring_domain::post::PostAction;
use kring_domain::simulation::World;
use kring_domain::{ActivityId, Actor, ConversationId, MessageId, Purpose};
use kring_projections::{models, Projector, ReadDb};
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{KeyVault, MasterKey};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::path::Path;
use std::time::Instant;

/// A tiny deterministic generator (the workload is seeded, not random per run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

async fn flush(world: &mut World, store: &SqliteStore, vault: &KeyVault) {
    let mut pending: Vec<(kring_domain::StreamName, kring_store::NewEvent)> = Vec::new();
    for r in world.log.drain(..) {
        let meta = Metadata {
            occurred_at: r.at,
            actor: r.actor,
            correlation_id: uuid::Uuid::now_v7(),
            causation_id: None,
        };
        pending.push((r.stream, vault.seal(&r.event, meta).await.unwrap()));
    }
    // Consecutive events of one stream go in one append; appends run concurrently in groups.
    let mut appends: Vec<(kring_domain::StreamName, Vec<kring_store::NewEvent>)> = Vec::new();
    for (stream, event) in pending {
        match appends.last_mut() {
            Some((s, events)) if *s == stream => events.push(event),
            _ => appends.push((stream, vec![event])),
        }
    }
    for (stream, events) in appends {
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
}

/// A school year: classes post photos with tagged children, parents change consent, talk with
/// teachers, report absences and volunteer.
async fn generate(dir: &Path, target: u64) {
    let db = dir.join("events.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let vault = KeyVault::open_sqlite(&db, &MasterKey::from_env_or_data_dir(dir).unwrap())
        .await
        .unwrap();
    let mut world = World::with_classes(16, 25, 2);
    let mut written = 0_u64;
    let mut rng = Lcg(20_260_901);
    let teachers: Vec<_> = world.staff[1..].to_vec();
    let mut conversations: Vec<(ConversationId, Actor)> = Vec::new();
    while written < target {
        world.advance(chrono::Duration::minutes(20));
        let g = rng.next(world.groups.len());
        let group = world.groups[g];
        let teacher = Actor::Person(teachers[g]);
        let children: Vec<_> = world.school.audience_children(group).collect();
        let child = children[rng.next(children.len())];
        let guardians = world.guardians_of(child);
        let guardian = guardians[rng.next(guardians.len())];
        match rng.next(100) {
            0..=29 => {
                let tags: Vec<Vec<_>> = (0..3)
                    .map(|_| {
                        vec![
                            children[rng.next(children.len())],
                            children[rng.next(children.len())],
                        ]
                    })
                    .collect();
                let _ = world.publish(teacher, group, &tags);
            }
            30..=49 => {
                let purpose = [
                    Purpose::GroupCommunication,
                    Purpose::SchoolCommunication,
                    Purpose::PublicCommunication,
                ][rng.next(3)];
                let _ = world.decide_consent(guardian, child, purpose, rng.next(10) > 2);
            }
            50..=59 if !world.media_ids.is_empty() => {
                let (post, media) = world.media_ids
                    [world.media_ids.len() - 1 - rng.next(world.media_ids.len().min(50))];
                let tagged = children[rng.next(children.len())];
                let action = if rng.next(2) == 0 {
                    PostAction::Tag {
                        media_id: media,
                        child_id: tagged,
                    }
                } else {
                    PostAction::Untag {
                        media_id: media,
                        child_id: tagged,
                    }
                };
                let _ = world.post(teacher, post, action);
            }
            60..=61 if !world.media_ids.is_empty() => {
                let (post, media) = world.media_ids[rng.next(world.media_ids.len())];
                let _ = world.post(
                    teacher,
                    post,
                    PostAction::RemoveMedia {
                        media_id: media,
                        reason: "Op verzoek".into(),
                    },
                );
            }
            62..=84 => {
                if conversations.is_empty() || rng.next(5) == 0 {
                    let id = ConversationId::generate();
                    let start = ConversationAction::Start {
                        conversation_id: id,
                        child_id: child,
                        participants: vec![],
                        message_id: MessageId::generate(),
                        body: "Vraagje over het huiswerk".into(),
                    };
                    if world
                        .conversation(Actor::Person(guardian), id, start)
                        .is_ok()
                    {
                        conversations.push((id, Actor::Person(guardian)));
                    }
                } else {
                    let (id, author) = conversations[rng.next(conversations.len())];
                    let _ = world.conversation(
                        author,
                        id,
                        ConversationAction::Post {
                            message_id: MessageId::generate(),
                            body: "Dank je wel!".into(),
                        },
                    );
                }
            }
            85..=91 => {
                let from =
                    kring_domain::child::earliest_absence_day(world.now, 1 + rng.next(10) as u32);
                let action = ChildAction::ReportAbsence {
                    child_id: child,
                    absence_id: kring_domain::AbsenceId::generate(),
                    from,
                    to: from,
                    reason: "Bruiloft van tante".into(),
                };
                let _ = world.child(Actor::Person(guardian), child, action);
            }
            _ => {
                if world.activity_ids.is_empty() || rng.next(4) == 0 {
                    let id = ActivityId::generate();
                    let starts_at = world.now + chrono::Duration::days(20);
                    let action = ActivityAction::Schedule {
                        activity_id: id,
                        group_id: group,
                        title: "Schoolreisje".into(),
                        starts_at,
                        ends_at: starts_at + chrono::Duration::hours(6),
                        volunteer_slots: 4,
                    };
                    if world.activity(teacher, id, action).is_ok() {
                        world.activity_ids.push(id);
                    }
                } else {
                    let id = world.activity_ids
                        [world.activity_ids.len() - 1 - rng.next(world.activity_ids.len().min(10))];
                    let _ = world.activity(Actor::Person(guardian), id, ActivityAction::SignUp);
                }
            }
        }
        if world.log.len() >= 5_000 {
            written += world.log.len() as u64;
            flush(&mut world, &store, &vault).await;
        }
    }
    written += world.log.len() as u64;
    flush(&mut world, &store, &vault).await;
    eprintln!("generated {written} events");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn rebuild(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("read.db"));
    let store = SqliteStore::open(dir.join("events.db")).await.unwrap();
    let db = ReadDb::sqlite(&dir.join("read.db")).await.unwrap();
    let projector = Projector::new(store.clone(), db, models::all())
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let start = Instant::now();
    let read = projector.catch_up().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    for status in projector.board().all() {
        assert_eq!(
            status.position, head,
            "{} did not finish: {:?}",
            status.name, status.failure
        );
    }
    println!(
        "rebuild of {} projections from {read} events into SQLite: {secs:.1} s, {:.0} events/s, peak RSS {} MiB",
        projector.board().all().len(),
        read as f64 / secs,
        peak_rss_kib() / 1024
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rebuild-only") {
        rebuild(Path::new(&args[i + 1])).await;
        return;
    }
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if args.iter().any(|a| a == "--quick") {
            100_000
        } else {
            1_000_000
        });
    // `--keep DIR` writes the log there and keeps it, for `--rebuild-only DIR` under a profiler.
    let temp = tempfile::tempdir().unwrap();
    let dir = args
        .iter()
        .position(|a| a == "--keep")
        .map_or_else(|| temp.path().to_path_buf(), |i| args[i + 1].clone().into());
    std::fs::create_dir_all(&dir).unwrap();
    let start = Instant::now();
    generate(&dir, events).await;
    eprintln!("log written in {:.1} s", start.elapsed().as_secs_f64());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--rebuild-only")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
}
