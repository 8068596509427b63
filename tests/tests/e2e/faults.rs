//! Crashes and faults: nothing acknowledged is ever lost.
//!
//! Twelve clients write at once — consent decisions, posts, conversation messages — and every
//! write answered 2xx is remembered with what it said. Then the fault: `kill -9` of the server
//! (three rounds on one installation), of the active projector beside two API instances,
//! PostgreSQL stopped and started under the running server, the SQLite file system full. Every
//! acknowledged write must afterwards be readable through the API (the post, the message, the
//! decision in the consent history), stand in the event log at the position it was answered
//! with, and `replay-tool verify` must pass: hash chains intact and every read model equal to a
//! fresh replay of the log.

use crate::harness::{Body, PgCluster, Server, Who};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// The purpose every consent decision of these scenarios is about.
const PURPOSE: &str = "group_communication";
/// Families in the class: each gives a consent client, a message client and a post client.
const FAMILIES: usize = 4;

/// A child with one guardian and a conversation between that guardian and the teacher.
struct Family {
    child: Uuid,
    guardian: Uuid,
    conversation: Uuid,
}

/// A school with one class, its teacher, and [`FAMILIES`] families.
struct Class {
    teacher: Uuid,
    group: Uuid,
    families: Vec<Family>,
}

/// A write answered 2xx, with what it wrote.
#[derive(Debug, Clone)]
enum Ack {
    Consent {
        child: Uuid,
        guardian: Uuid,
        granted: bool,
        position: u64,
    },
    Post {
        post: Uuid,
        body: String,
        position: u64,
    },
    Message {
        conversation: Uuid,
        message: Uuid,
        body: String,
        position: u64,
    },
}

impl Ack {
    const fn position(&self) -> u64 {
        match self {
            Self::Consent { position, .. }
            | Self::Post { position, .. }
            | Self::Message { position, .. } => *position,
        }
    }

    /// The stream its event must be in.
    fn stream(&self) -> String {
        match self {
            Self::Consent { child, .. } => format!("child-{child}"),
            Self::Post { post, .. } => format!("post-{post}"),
            Self::Message { conversation, .. } => format!("conversation-{conversation}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Consent,
    Post,
    Message,
}

/// What the clients of one burst saw.
#[derive(Default)]
struct Load {
    acks: Mutex<Vec<Ack>>,
    /// Writes answered 2xx.
    answered: AtomicU64,
    /// `409 concurrency_conflict` (decided twice on a stream that moved): not acknowledged.
    conflicts: AtomicU64,
    /// 503/504 problem+json answers while the fault lasted.
    refused: AtomicU64,
    /// Anything else: a failure of the scenario.
    unexpected: Mutex<Vec<String>>,
    /// Set by the scenario while the fault lasts (after it is set, answers may be refusals).
    faulted: AtomicBool,
    /// Whether a client stops at the first request that gets no answer (the server is gone).
    stop_when_unanswered: bool,
    /// Set by the scenario to end the burst.
    stop: AtomicBool,
    /// Clients still running.
    running: AtomicUsize,
}

impl Load {
    fn new(stop_when_unanswered: bool) -> Self {
        Self {
            stop_when_unanswered,
            ..Self::default()
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("acks").clone()
    }

    /// Asserts that every answer was one the scenario allows.
    #[track_caller]
    fn assert_clean(&self, api: &Server) {
        let unexpected = self.unexpected.lock().expect("unexpected").clone();
        assert!(
            unexpected.is_empty(),
            "{unexpected:#?}\nthe server's log:\n{}",
            api.log_tail()
        );
    }

    /// Waits (polling the counters) until `done` holds or every client has stopped.
    async fn until(&self, done: impl Fn(&Self) -> bool) {
        while !done(self) && self.running.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The school, its class and families, built through `api`.
async fn class(api: &Server) -> Class {
    let created = api
        .post(
            "/v1/schools",
            Who::Operator,
            json!({"name": "De Storm", "brin": "99ZZ"}),
        )
        .await;
    created.expect(201);
    let school = created.id("school_id");
    let staff = |by: Who, role: &'static str, name: &'static str| {
        let email = format!("{role}-{}@storm.example", Uuid::now_v7().simple());
        async move {
            let added = api
                .post(
                    &format!("/v1/schools/{school}/staff"),
                    by,
                    json!({"display_name": name, "email": email, "role": role}),
                )
                .await;
            added.expect(201);
            added.id("person_id")
        }
    };
    let director = staff(Who::Operator, "director", "Dora Directeur").await;
    let teacher = staff(Who::Person(director), "teacher", "Juf Storm").await;
    let group = api
        .post(
            &format!("/v1/schools/{school}/groups"),
            Who::Person(director),
            json!({"name": "Groep 7"}),
        )
        .await;
    group.expect(201);
    let group = group.id("group_id");
    api.post(
        &format!("/v1/groups/{group}/staff"),
        Who::Person(director),
        json!({"person_id": teacher}),
    )
    .await
    .expect(200);
    let mut families = Vec::new();
    for i in 0..FAMILIES {
        let enrolled = api
            .post(
                &format!("/v1/groups/{group}/children"),
                Who::Person(teacher),
                json!({"first_name": format!("Kind{i}"), "last_initial": "S"}),
            )
            .await;
        enrolled.expect(201);
        let child = enrolled.id("child_id");
        let invited = api
            .post(
                "/v1/invitations",
                Who::Person(teacher),
                json!({"child_id": child, "email": format!("ouder{i}-{}@thuis.example", Uuid::now_v7().simple())}),
            )
            .await;
        invited.expect(201);
        let accepted = api
            .post(
                "/v1/invitations/accept",
                Who::Anonymous,
                json!({"code": invited.body["code"], "display_name": format!("Ouder {i}")}),
            )
            .await;
        accepted.expect(200);
        let guardian = accepted.id("person_id");
        api.post(
            &format!("/v1/invitations/{}/approve", invited.id("invitation_id")),
            Who::Person(teacher),
            json!({}),
        )
        .await
        .expect(200);
        let started = api
            .post(
                "/v1/conversations",
                Who::Person(guardian),
                json!({"child_id": child, "body": "Goedemorgen juf"}),
            )
            .await;
        started.expect(201);
        families.push(Family {
            child,
            guardian,
            conversation: started.id("conversation_id"),
        });
    }
    Class {
        teacher,
        group,
        families,
    }
}

/// One client: writes of `kind` for family `i` in a loop until the burst stops (or, when the
/// load says so, until a request gets no answer), recording every 2xx with what it wrote.
async fn client(api: &Server, class: &Class, kind: Kind, i: usize, tag: &str, load: &Load) {
    let family = &class.families[i];
    let mut n = 0_u64;
    while !load.stop.load(Ordering::SeqCst) {
        n += 1;
        let granted = n % 2 == 1;
        let text = format!("{tag}-{kind:?}-{i}-{n}");
        let (path, who, body) = match kind {
            Kind::Consent => (
                format!("/v1/children/{}/consents/{PURPOSE}", family.child),
                family.guardian,
                json!({"granted": granted}),
            ),
            Kind::Post => (
                format!("/v1/groups/{}/posts", class.group),
                class.teacher,
                json!({"body": text}),
            ),
            Kind::Message => (
                format!("/v1/conversations/{}/messages", family.conversation),
                family.guardian,
                json!({"body": text}),
            ),
        };
        let method = match kind {
            Kind::Consent => Method::PUT,
            Kind::Post | Kind::Message => Method::POST,
        };
        let answer = api
            .try_send(method, &path, Who::Person(who), Body::Json(body))
            .await;
        match answer {
            Ok(a) if a.status < 300 => {
                let position = a.body["position"].as_u64().expect("a position");
                let ack = match kind {
                    Kind::Consent => Ack::Consent {
                        child: family.child,
                        guardian: family.guardian,
                        granted,
                        position,
                    },
                    Kind::Post => Ack::Post {
                        post: a.id("post_id"),
                        body: text,
                        position,
                    },
                    Kind::Message => Ack::Message {
                        conversation: family.conversation,
                        message: a.id("message_id"),
                        body: text,
                        position,
                    },
                };
                load.acks.lock().expect("acks").push(ack);
                load.answered.fetch_add(1, Ordering::SeqCst);
            }
            Ok(a) if a.status == 409 && a.body["code"] == "concurrency_conflict" => {
                load.conflicts.fetch_add(1, Ordering::SeqCst);
            }
            Ok(a)
                if load.faulted.load(Ordering::SeqCst)
                    && matches!(a.status, 503 | 504 | 507)
                    && a.is_problem() =>
            {
                load.refused.fetch_add(1, Ordering::SeqCst);
                // Refusals come fast; give the server room to come back.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(a) => {
                load.unexpected.lock().expect("unexpected").push(format!(
                    "{}: {} {}",
                    a.request,
                    a.status,
                    a.text()
                ));
                break;
            }
            Err(e) => {
                if load.stop_when_unanswered && load.faulted.load(Ordering::SeqCst) {
                    break;
                }
                load.unexpected
                    .lock()
                    .expect("unexpected")
                    .push(format!("no answer: {e}"));
                break;
            }
        }
    }
}

/// Runs the 3 × [`FAMILIES`] clients against `api` together with `scenario`, which sets the
/// fault and, when it is done, `load.stop`.
async fn burst<F: std::future::Future<Output = ()>>(
    api: &Server,
    class: &Class,
    tag: &str,
    load: &Load,
    scenario: F,
) {
    let mut clients = Vec::new();
    for i in 0..FAMILIES {
        for kind in [Kind::Consent, Kind::Post, Kind::Message] {
            clients.push(client(api, class, kind, i, tag, load));
        }
    }
    load.running.store(clients.len(), Ordering::SeqCst);
    let clients = futures::future::join_all(clients.into_iter().map(|c| async {
        c.await;
        load.running.fetch_sub(1, Ordering::SeqCst);
    }));
    tokio::join!(clients, scenario);
}

/// Every acknowledged write is readable through `api`: each decision in its child's consent
/// history (position, guardian, granted), each post with its text, each message in its
/// conversation with its text.
async fn check_acknowledged(api: &Server, class: &Class, acks: &[Ack]) {
    api.sync().await;
    let mut decisions: BTreeMap<Uuid, BTreeSet<(u64, Uuid, bool)>> = BTreeMap::new();
    let mut messages: BTreeMap<Uuid, BTreeMap<Uuid, String>> = BTreeMap::new();
    for family in &class.families {
        let history = api
            .get(
                &format!("/v1/children/{}/consents/history", family.child),
                Who::Person(family.guardian),
            )
            .await;
        let entries = history.expect(200)["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["position"].as_u64().expect("a position"),
                    crate::harness::uuid_at(e, "guardian_id"),
                    e["granted"].as_bool().expect("granted"),
                )
            })
            .collect();
        decisions.insert(family.child, entries);
        let mut found = BTreeMap::new();
        let mut before: Option<u64> = None;
        loop {
            let page = before.map_or_else(String::new, |b| format!("&before={b}"));
            let listed = api
                .get(
                    &format!(
                        "/v1/conversations/{}/messages?limit=200{page}",
                        family.conversation
                    ),
                    Who::Person(family.guardian),
                )
                .await;
            let body = listed.expect(200);
            for m in body["messages"].as_array().expect("messages") {
                found.insert(
                    crate::harness::uuid_at(m, "message_id"),
                    m["body"].as_str().expect("a body").to_owned(),
                );
            }
            before = body["next_before"].as_u64();
            if before.is_none() {
                break;
            }
        }
        messages.insert(family.conversation, found);
    }
    for ack in acks {
        match ack {
            Ack::Consent {
                child,
                guardian,
                granted,
                position,
            } => assert!(
                decisions[child].contains(&(*position, *guardian, *granted)),
                "the acknowledged decision {ack:?} is not in the consent history: {:?}",
                decisions[child]
            ),
            Ack::Post { post, body, .. } => {
                let read = api
                    .get(&format!("/v1/posts/{post}"), Who::Person(class.teacher))
                    .await;
                assert_eq!(
                    read.expect(200)["body"],
                    body.as_str(),
                    "the acknowledged post {ack:?}"
                );
            }
            Ack::Message {
                conversation,
                message,
                body,
                ..
            } => assert_eq!(
                messages[conversation].get(message),
                Some(body),
                "the acknowledged message {ack:?} is not in its conversation"
            ),
        }
    }
}

/// Every acknowledged write is in the event log, at the position it was answered with and in
/// its stream, and `replay-tool verify` passes: hash chains, dense positions, and each read
/// model equal to a fresh replay of the log. Answers the verification report.
fn check_log(api: &Server, acks: &[Ack]) -> Value {
    let out = api.replay_tool(&["events", "--sealed"]);
    assert!(
        out.status.success(),
        "replay-tool events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: BTreeMap<u64, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("one JSON event per line");
            (
                event["position"].as_u64().expect("a position"),
                event["stream"].as_str().expect("a stream").to_owned(),
            )
        })
        .collect();
    for ack in acks {
        assert_eq!(
            events.get(&ack.position()),
            Some(&ack.stream()),
            "the acknowledged write {ack:?} is not in the log where it was answered"
        );
    }
    let out = api.replay_tool(&["verify"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == true,
        "replay-tool verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// Three rounds on one installation: twelve clients write, and once the round has 40 more
/// acknowledged writes the server is killed with SIGKILL in the middle of the others; it is
/// started again on the same data, and every write acknowledged in any round so far must be
/// there.
async fn kill_9_rounds(mut api: Server, backend: &str) {
    const ROUNDS: usize = 3;
    const ACKS_PER_ROUND: u64 = 40;
    let class = class(&api).await;
    let mut acks: Vec<Ack> = Vec::new();
    for round in 0..ROUNDS {
        let load = Load::new(true);
        let api_ref = &api;
        burst(&api, &class, &format!("r{round}"), &load, async {
            load.until(|l| l.answered.load(Ordering::SeqCst) >= ACKS_PER_ROUND)
                .await;
            load.faulted.store(true, Ordering::SeqCst);
            api_ref.kill();
            load.stop.store(true, Ordering::SeqCst);
        })
        .await;
        load.assert_clean(&api);
        let round_acks = load.acks();
        assert!(
            round_acks.len() as u64 >= ACKS_PER_ROUND,
            "round {round}: only {} writes acknowledged",
            round_acks.len()
        );
        eprintln!(
            "faults: {backend}: round {round}: {} writes acknowledged before kill -9 ({} conflicts)",
            round_acks.len(),
            load.conflicts.load(Ordering::SeqCst)
        );
        acks.extend(round_acks);
        api.restart().await;
        api.ready().await;
        check_acknowledged(&api, &class, &acks).await;
    }
    api.kill();
    let report = check_log(&api, &acks);
    eprintln!(
        "faults: {backend}: {} acknowledged writes over {ROUNDS} kill -9 rounds, none lost; verify ok over {} events",
        acks.len(),
        report["chain"]["events_checked"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_writes_loses_nothing_acknowledged_on_sqlite() {
    kill_9_rounds(Server::start_with(None, &[]).await, "sqlite").await;
}

/// On a cluster of its own started durable (`fsync` and `synchronous_commit` on): the run's
/// shared cluster runs with `fsync=off` for speed, and a durability test must not rest on that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_writes_loses_nothing_acknowledged_on_postgres() {
    let cluster = PgCluster::start(true)
        .await
        .unwrap_or_else(|why| panic!("a durable PostgreSQL cluster of its own: {why}"));
    let url = cluster.fresh_database("kill9").await;
    kill_9_rounds(Server::start_with(Some(url), &[]).await, "postgres").await;
}

/// PostgreSQL stopped (`pg_ctl stop -m fast`) and started again under a serving `kring-api`
/// with twelve clients writing: while it is down every request is answered `503` or `504`
/// problem+json (never a 500, never a dropped connection), the process stays up and answers
/// `/healthz`, and once the database is back it serves again with every acknowledged write
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_while_serving_refuses_with_503_and_loses_nothing() {
    let cluster = PgCluster::start(true)
        .await
        .unwrap_or_else(|why| panic!("a PostgreSQL cluster of its own: {why}"));
    let url = cluster.fresh_database("restart").await;
    let api = Server::start_with(Some(url), &[]).await;
    let class = class(&api).await;
    let family = &class.families[0];
    let load = Load::new(false);
    let outage = Mutex::new(Vec::new());
    burst(&api, &class, "pg", &load, async {
        load.until(|l| l.answered.load(Ordering::SeqCst) >= 30)
            .await;
        load.faulted.store(true, Ordering::SeqCst);
        let began = std::time::Instant::now();
        cluster.stop().await;
        // As many refusals as there are clients (requests in flight when the database went,
        // or sent while it was down), and a read of our own meanwhile.
        let refused = load.refused.load(Ordering::SeqCst);
        let history = format!("/v1/children/{}/consents/history", family.child);
        let ((), read) = tokio::join!(
            load.until(|l| l.refused.load(Ordering::SeqCst) >= refused + 12),
            api.try_send(
                Method::GET,
                &history,
                Who::Person(family.guardian),
                Body::Empty,
            )
        );
        outage.lock().expect("outage").push(read);
        let health = api
            .try_send(Method::GET, "/healthz", Who::Anonymous, Body::Empty)
            .await;
        outage.lock().expect("outage").push(health);
        assert!(
            api.is_running(),
            "kring-api exited while PostgreSQL was down"
        );
        let down = began.elapsed();
        cluster.start_again().await;
        let answered = load.answered.load(Ordering::SeqCst);
        load.until(|l| l.answered.load(Ordering::SeqCst) >= answered + 30)
            .await;
        eprintln!(
            "faults: postgres restart: down for {down:.1?}, serving 30 writes again {:.1?} after it came back",
            began.elapsed().checked_sub(down).unwrap()
        );
        load.stop.store(true, Ordering::SeqCst);
    })
    .await;
    load.assert_clean(&api);
    let outage = outage.into_inner().expect("outage");
    let read = outage[0].as_ref().expect("the read is answered");
    assert!(
        matches!(read.status, 503 | 504) && read.is_problem(),
        "a read while PostgreSQL is down: {} {}",
        read.status,
        read.text()
    );
    let health = outage[1].as_ref().expect("/healthz is answered");
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(api.is_running(), "kring-api exited");
    let acks = load.acks();
    eprintln!(
        "faults: postgres restart: {} writes acknowledged, {} refused with 503/504 while the database was down",
        acks.len(),
        load.refused.load(Ordering::SeqCst)
    );
    api.ready().await;
    check_acknowledged(&api, &class, &acks).await;
    api.kill();
    check_log(&api, &acks);
}

/// A file system of a fixed size for the SQLite files, unmounted when dropped: a tmpfs, or
/// else an ext4 loop file; `Err` says why neither could be mounted.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size_mib: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mountpoint = dir.path().join("fs");
        std::fs::create_dir(&mountpoint).map_err(|e| e.to_string())?;
        let tmpfs = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&mountpoint)
            .output()
            .map_err(|e| e.to_string())?;
        if tmpfs.status.success() {
            return Ok(Self { dir });
        }
        let image = dir.path().join("fs.img");
        let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(u64::from(size_mib) << 20)
            .map_err(|e| e.to_string())?;
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .output()
            .map_err(|e| format!("mkfs.ext4: {e}"))?;
        let looped = std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint)
            .output()
            .map_err(|e| e.to_string())?;
        if mkfs.status.success() && looped.status.success() {
            return Ok(Self { dir });
        }
        Err(format!(
            "mount -t tmpfs: {}; mount -o loop: {}",
            String::from_utf8_lossy(&tmpfs.stderr).trim(),
            String::from_utf8_lossy(&looped.stderr).trim()
        ))
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("fs")
    }

    /// Fills the file system to the last byte, then frees `leave` bytes of it; answers the
    /// filler file.
    fn fill(&self, leave: u64) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("the filler");
        for chunk in [1 << 20, 4096, 1] {
            let bytes = vec![0x5a_u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        let len = file.metadata().expect("the filler's size").len();
        file.set_len(len.saturating_sub(leave))
            .expect("the filler cut");
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .output();
    }
}

/// The SQLite files on a small file system that is then filled to the last byte, while twelve
/// clients write: every write is either acknowledged (and then kept) or refused with `507`
/// (or `503`) problem+json, a refused one is nowhere in the log, the server stays up, and once
/// the space is freed writes succeed again and the read models catch up with the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_507_and_all_goes_on_once_space_is_freed_on_sqlite() {
    let disk = match SmallDisk::mount(48) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!(
                "faults: a_full_disk_…: IGNORED: no small file system can be mounted here ({why})"
            );
            return;
        }
    };
    let dir = tempfile::tempdir_in(disk.path()).expect("a data dir on the small disk");
    let api = Server::start_in_dir(dir, None, &[]).await;
    let class = class(&api).await;

    let before = Load::new(false);
    burst(&api, &class, "before", &before, async {
        before
            .until(|l| l.answered.load(Ordering::SeqCst) >= 24)
            .await;
        before.stop.store(true, Ordering::SeqCst);
    })
    .await;
    before.assert_clean(&api);
    let mut acks = before.acks();
    api.ready().await;

    // A little room is left: writes are acknowledged until the event log or the read models
    // run out of it, whichever comes first.
    let filler = disk.fill(256 << 10);
    let full = Load::new(false);
    full.faulted.store(true, Ordering::SeqCst);
    let projector_failures = Mutex::new(BTreeSet::new());
    burst(&api, &class, "full", &full, async {
        full.until(|l| l.refused.load(Ordering::SeqCst) >= 36).await;
        full.stop.store(true, Ordering::SeqCst);
        let ready = api
            .try_send(Method::GET, "/readyz", Who::Anonymous, Body::Empty)
            .await
            .unwrap_or_else(|e| panic!("/readyz: {e}\n{}", api.log_tail()));
        let mut failures = projector_failures.lock().expect("failures");
        if let Some(e) = ready.body["projector_error"].as_str() {
            failures.insert(format!("projector: {e}"));
        }
        for p in ready.body["projections"].as_array().into_iter().flatten() {
            if let Some(f) = p["failure"].as_str() {
                failures.insert(format!("{}: {f}", p["name"]));
            }
        }
    })
    .await;
    full.assert_clean(&api);
    assert!(
        full.refused.load(Ordering::SeqCst) >= 36,
        "writes were refused on a full disk"
    );
    // The answer a client gets, once more, for the record.
    let refused = api
        .try_send(
            Method::POST,
            &format!(
                "/v1/conversations/{}/messages",
                class.families[0].conversation
            ),
            Who::Person(class.families[0].guardian),
            Body::Json(json!({"body": "full-probe"})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", api.log_tail()));
    assert!(
        matches!(refused.status, 507 | 503) && refused.is_problem(),
        "a write on a full disk: {} {}",
        refused.status,
        refused.text()
    );
    assert!(api.is_running(), "kring-api exited on a full disk");
    let full_acks = full.acks();
    eprintln!(
        "faults: disk full: {} writes acknowledged and {} refused ({} {}) on the full disk; the projector on the full disk: {:?}",
        full_acks.len(),
        full.refused.load(Ordering::SeqCst),
        refused.status,
        refused.body["code"],
        projector_failures.lock().expect("failures")
    );
    acks.extend(full_acks);

    std::fs::remove_file(&filler).expect("space freed");
    let after = Load::new(false);
    burst(&api, &class, "after", &after, async {
        after
            .until(|l| l.answered.load(Ordering::SeqCst) >= 24)
            .await;
        after.stop.store(true, Ordering::SeqCst);
    })
    .await;
    after.assert_clean(&api);
    acks.extend(after.acks());
    api.ready().await;
    check_acknowledged(&api, &class, &acks).await;
    api.kill();
    check_log(&api, &acks);
    // Nothing of a refused write is in the log: the probe's text is nowhere.
    let out = api.replay_tool(&["events"]);
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("full-probe"),
        "a refused write was stored"
    );
}

/// One message written through `writer` and read back through `reader` with the position the
/// write answered (`?min_position=`): read-your-writes across API instances.
async fn message_read_on_the_other(
    writer: &Server,
    reader: &Server,
    family: &Family,
    text: String,
) -> Ack {
    let sent = writer
        .post(
            &format!("/v1/conversations/{}/messages", family.conversation),
            Who::Person(family.guardian),
            json!({"body": text}),
        )
        .await;
    sent.expect(201);
    let position = sent.body["position"].as_u64().expect("a position");
    let message = sent.id("message_id");
    let read = reader
        .send(
            Method::GET,
            &format!(
                "/v1/conversations/{}/messages?limit=1&min_position={position}",
                family.conversation
            ),
            Who::Person(family.guardian),
            Body::Empty,
        )
        .await;
    let latest = &read.expect(200)["messages"][0];
    assert_eq!(
        (latest["message_id"].as_str(), latest["body"].as_str()),
        (Some(message.to_string().as_str()), Some(text.as_str())),
        "a message written on one instance is read on the other at its position"
    );
    Ack::Message {
        conversation: family.conversation,
        message,
        body: text,
        position,
    }
}

/// Two `kring-api projector` workers and two `serve --no-projectors` instances on one
/// PostgreSQL database. Writes alternate between the instances, each read back on the other
/// with `min_position`; the active projector is killed with SIGKILL, the waiting one takes over
/// (reads with positions keep being answered), and in the end every read model has reached the
/// log's head with contents equal to a fresh replay (`replay-tool verify` and `status
/// --checksums` agree).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_projector_takes_over_from_a_killed_one_and_reads_follow_writes_across_instances(
) {
    let url = kring_testkit::fresh_postgres_database("takeover")
        .await
        .url()
        .to_owned();
    let a = Server::start_with(Some(url), &["--no-projectors"]).await;
    let mut active = a.projector();
    // The read models' tables are the projector's to create. Until they exist an instance
    // answers 503 not_caught_up (never a 500); wait until every read model `/readyz` names is
    // there.
    let mut built = false;
    for _ in 0..600 {
        let me = a
            .try_send(Method::GET, "/v1/me", Who::Operator, Body::Empty)
            .await
            .expect("an answer");
        assert!(
            me.status == 200 || (me.status == 503 && me.body["code"] == "not_caught_up"),
            "before the read models exist: {} {}",
            me.status,
            me.text()
        );
        let ready = a
            .try_send(Method::GET, "/readyz", Who::Anonymous, Body::Empty)
            .await
            .expect("an answer");
        let status = a.replay_tool(&["status"]);
        let status: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
        let made = status["projections"].as_array().map_or(0, Vec::len);
        let named = ready.body["projections"].as_array().map_or(0, Vec::len);
        if named > 0 && made == named {
            built = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(built, "the projector never built the read models");
    let class = class(&a).await;
    // The first worker leads (it holds the projector lock) once the read models caught up.
    a.ready().await;
    let mut waiting = a.projector();
    let b = a.start_beside(&["--no-projectors"]).await;
    let mut acks = Vec::new();
    for n in 0..8 {
        let (writer, reader) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let family = &class.families[n % FAMILIES];
        acks.push(message_read_on_the_other(writer, reader, family, format!("voor-{n}")).await);
    }
    active.kill();
    for n in 0..16 {
        let (writer, reader) = if n % 2 == 0 { (&b, &a) } else { (&a, &b) };
        let family = &class.families[n % FAMILIES];
        acks.push(message_read_on_the_other(writer, reader, family, format!("na-{n}")).await);
    }
    assert!(waiting.is_running(), "the worker that took over still runs");
    a.ready().await;
    b.ready().await;
    check_acknowledged(&b, &class, &acks).await;
    let status = a.replay_tool(&["status", "--checksums"]);
    assert!(status.status.success(), "{status:?}");
    let status: Value = serde_json::from_slice(&status.stdout).expect("status as JSON");
    let head = status["head"].as_u64().expect("the head");
    let report = check_log(&a, &acks);
    let checks = report["read_models"].as_array().expect("read models");
    assert!(!checks.is_empty());
    for check in checks {
        let name = &check["name"];
        assert_eq!(check["position"], head, "{name} reached the head: {check}");
        assert!(
            check["checksum"].is_string() && check["checksum"] == check["replay_checksum"],
            "{name} equals a fresh replay: {check}"
        );
        let serving = status["projections"]
            .as_array()
            .expect("projections")
            .iter()
            .find(|p| p["name"] == *name)
            .unwrap_or_else(|| panic!("{name} in the status"));
        assert_eq!(serving["checksum"], check["checksum"], "{name}");
        assert_eq!(serving["lag"], 0, "{name}");
    }
    eprintln!(
        "faults: projector takeover: {} writes read across instances; {} read models at head {head} equal a fresh replay",
        acks.len(),
        checks.len()
    );
    waiting.kill();
}
