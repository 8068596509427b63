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

    fn unexpected(&self) -> Vec<String> {
        self.unexpected.lock().expect("unexpected").clone()
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
        assert!(load.unexpected().is_empty(), "{:?}", load.unexpected());
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
