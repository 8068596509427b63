//! Tamper scenarios both SQL adapters must name: real events appended through the store, then
//! changed behind its back by SQL on the same database, as someone with database access but
//! without the anchor key would. `tamper_suite!` stamps them out for one adapter.

// Each test binary reaches its own database kind only.
#![allow(dead_code, clippy::unwrap_used)]

use kring_domain::StreamName;
use kring_store::anchor::{anchor_head, Anchor, AnchorKey, Anchors};
use kring_store::conformance::{event, stream};
use kring_store::{
    log_hash, EventHash, EventStore, EventStoreExt, ExpectedVersion, Finding, GlobalChain,
    Position, RecordedEvent, VerifyReport,
};
use std::collections::HashMap;
use std::path::PathBuf;
use uuid::Uuid;

/// Stamps out every scenario for an adapter. `$make` is an async fn returning
/// `(store, Db, guard)`; `$reopen` an async fn taking `&guard` and opening the store again.
macro_rules! tamper_suite {
    ($make:path, $reopen:path) => {
        $crate::tamper::tamper_suite!(@tests $make,
            an_untampered_log_verifies_with_its_anchors
            a_deleted_last_event_of_a_stream_is_named_by_the_gap_and_the_global_chain
            a_deleted_stream_is_named_by_the_gap_and_the_global_chain
            a_deleted_last_event_of_a_stream_covered_up_is_named_by_the_anchor
            a_deleted_stream_covered_up_is_named_by_the_anchor
            a_rewritten_and_rehashed_payload_is_named_by_the_anchor
            a_tail_cut_after_an_anchor_is_named
            a_forged_anchor_is_named_as_a_bad_signature
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_log_stored_before_the_global_chain_gets_it_on_open() {
            let (store, db, guard) = $make().await;
            $crate::tamper::backfill(store, &db, || $reopen(&guard)).await;
        }
    };
    (@tests $make:path, $($name:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, db, _guard) = $make().await;
                $crate::tamper::$name(store, &db).await;
            }
        )*
    };
}
pub(crate) use tamper_suite;

/// The database behind the store, as an attacker reaches it.
pub enum Db {
    /// The SQLite file.
    Sqlite(sqlx::SqlitePool),
    /// The PostgreSQL database.
    Postgres(sqlx::PgPool),
}

/// A statement parameter.
pub enum Param {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Id(Uuid),
}

impl Db {
    /// A connection of its own to the store's SQLite file.
    pub async fn sqlite(path: &std::path::Path) -> Self {
        let url = format!("sqlite://{}", path.display());
        Self::Sqlite(sqlx::SqlitePool::connect(&url).await.unwrap())
    }

    /// A connection of its own to the store's PostgreSQL database.
    pub async fn postgres(url: &str) -> Self {
        Self::Postgres(sqlx::PgPool::connect(url).await.unwrap())
    }

    /// Runs one statement (`$1`, `$2`, … parameters on both); the number of rows it changed.
    pub async fn run(&self, sql: &str, params: Vec<Param>) -> u64 {
        match self {
            Self::Sqlite(pool) => {
                let mut q = sqlx::query(sql);
                for p in params {
                    q = match p {
                        Param::Int(v) => q.bind(v),
                        Param::Text(v) => q.bind(v),
                        Param::Bytes(v) => q.bind(v),
                        Param::Id(v) => q.bind(v),
                    };
                }
                q.execute(pool).await.unwrap().rows_affected()
            }
            Self::Postgres(pool) => {
                let mut q = sqlx::query(sql);
                for p in params {
                    q = match p {
                        Param::Int(v) => q.bind(v),
                        Param::Text(v) => q.bind(v),
                        Param::Bytes(v) => q.bind(v),
                        Param::Id(v) => q.bind(v),
                    };
                }
                q.execute(pool).await.unwrap().rows_affected()
            }
        }
    }
}

fn pos(p: Position) -> Param {
    Param::Int(i64::try_from(p).unwrap())
}

/// A small log: stream `a` (versions 0, 1, then 2 later), stream `b` (two events), stream `c`
/// (one event, the head). No victim below is the log's last event, unless the scenario cuts
/// the tail.
struct Story {
    a: StreamName,
    b: StreamName,
    a_last: Position,
    b_first: Position,
    b_last: Position,
    head: Position,
}

async fn story<S: EventStore>(store: &S) -> Story {
    let (a, b, c) = (stream(), stream(), stream());
    store
        .append(&a, ExpectedVersion::NoStream, vec![event(0), event(1)])
        .await
        .unwrap();
    let b_last = store
        .append(&b, ExpectedVersion::NoStream, vec![event(0), event(1)])
        .await
        .unwrap()
        .position;
    let a_last = store
        .append(&a, ExpectedVersion::Exact(1), vec![event(2)])
        .await
        .unwrap()
        .position;
    let head = store
        .append(&c, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap()
        .position;
    Story {
        a,
        b,
        a_last,
        b_first: b_last - 1,
        b_last,
        head,
    }
}

/// An anchors file in a directory of its own, and the key that signs it.
struct Anchoring {
    _dir: tempfile::TempDir,
    file: PathBuf,
    key: AnchorKey,
}

impl Anchoring {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("anchors");
        Self {
            _dir: dir,
            file,
            key: AnchorKey::generate().unwrap(),
        }
    }

    async fn anchor<S: EventStore>(&self, store: &S) -> Anchor {
        anchor_head(store, &self.key, &self.file).await.unwrap()
    }

    async fn verify<S: EventStore + Clone>(&self, store: &S) -> VerifyReport {
        let anchors = Anchors::read(&self.file, self.key.public_key()).unwrap();
        store.verify_anchored(&anchors).await.unwrap()
    }
}

async fn all_events<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RecordedEvent| e.position);
        let batch = store.read_all(after, 1000).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// What an attacker without the anchor key does after deleting or rewriting events: number the
/// positions densely again and recompute every stream hash and every global hash, so that the
/// log is consistent in itself.
async fn cover_up<S: EventStore>(store: &S, db: &Db) {
    let mut stream_hashes: HashMap<StreamName, EventHash> = HashMap::new();
    let mut global = EventHash::GENESIS;
    for (i, mut e) in all_events(store).await.into_iter().enumerate() {
        let previous = stream_hashes
            .get(&e.stream)
            .copied()
            .unwrap_or(EventHash::GENESIS);
        e.hash = e.expected_hash(&previous);
        stream_hashes.insert(e.stream, e.hash);
        let position = i as u64 + 1;
        global = log_hash(&global, position, &e.hash);
        // Ascending, positions only move down into slots already vacated.
        db.run(
            "UPDATE events SET position = $1, hash = $2, log_hash = $3 WHERE event_id = $4",
            vec![
                pos(position),
                Param::Bytes(e.hash.0.to_vec()),
                Param::Bytes(global.0.to_vec()),
                Param::Id(e.event_id),
            ],
        )
        .await;
    }
}

async fn delete_position(db: &Db, position: Position) {
    let n = db
        .run(
            "DELETE FROM events WHERE position = $1",
            vec![pos(position)],
        )
        .await;
    assert_eq!(n, 1);
}

async fn delete_stream(db: &Db, stream: &StreamName) -> u64 {
    db.run(
        "DELETE FROM events WHERE stream = $1",
        vec![Param::Text(stream.to_string())],
    )
    .await
}

/// Every finding but the global-chain breaks' free-text problems, for exact comparisons.
fn kinds(report: &VerifyReport) -> Vec<Finding> {
    report
        .findings
        .iter()
        .cloned()
        .map(|f| match f {
            Finding::GlobalChainBroken { position, .. } => Finding::GlobalChainBroken {
                position,
                event_id: Uuid::nil(),
                problem: String::new(),
            },
            Finding::AnchorBadSignature { line, position, .. } => Finding::AnchorBadSignature {
                line,
                position,
                problem: String::new(),
            },
            other => other,
        })
        .collect()
}

fn global_break(position: Position) -> Finding {
    Finding::GlobalChainBroken {
        position,
        event_id: Uuid::nil(),
        problem: String::new(),
    }
}

pub async fn an_untampered_log_verifies_with_its_anchors<S: EventStore + Clone>(
    store: S,
    _db: &Db,
) {
    let anchoring = Anchoring::new();
    let first = story(&store).await;
    let early = anchoring.anchor(&store).await;
    assert_eq!(early.position, first.head);
    story(&store).await;
    let late = anchoring.anchor(&store).await;
    let report = anchoring.verify(&store).await;
    assert!(report.ok, "{:?}", report.findings);
    assert_eq!(report.global_chain, GlobalChain::Checked);
    assert_eq!(report.anchors_checked, 2);
    assert_eq!(report.events_checked, 12);
    assert_eq!(report.head, late.position);
    assert_eq!(report.head_hash, Some(late.log_hash));
}

pub async fn a_deleted_last_event_of_a_stream_is_named_by_the_gap_and_the_global_chain<
    S: EventStore + Clone,
>(
    store: S,
    db: &Db,
) {
    let story = story(&store).await;
    assert!(store.verify().await.unwrap().ok);
    delete_position(db, story.a_last).await;
    let report = store.verify().await.unwrap();
    assert!(!report.ok);
    assert!(report.failures.is_empty(), "the stream's chain still holds");
    assert_eq!(
        kinds(&report),
        vec![
            Finding::MissingPositions {
                first: story.a_last,
                last: story.a_last
            },
            global_break(story.a_last + 1),
        ]
    );
    assert_eq!(store.read_stream_to_end(&story.a).await.unwrap().len(), 2);
}

pub async fn a_deleted_stream_is_named_by_the_gap_and_the_global_chain<S: EventStore + Clone>(
    store: S,
    db: &Db,
) {
    let story = story(&store).await;
    assert_eq!(delete_stream(db, &story.b).await, 2);
    let report = store.verify().await.unwrap();
    assert!(!report.ok);
    assert!(report.failures.is_empty(), "no remaining stream is broken");
    assert_eq!(
        kinds(&report),
        vec![
            Finding::MissingPositions {
                first: story.b_first,
                last: story.b_last
            },
            global_break(story.b_last + 1),
        ]
    );
}

pub async fn a_deleted_last_event_of_a_stream_covered_up_is_named_by_the_anchor<
    S: EventStore + Clone,
>(
    store: S,
    db: &Db,
) {
    let anchoring = Anchoring::new();
    let story = story(&store).await;
    anchoring.anchor(&store).await;
    delete_position(db, story.a_last).await;
    cover_up(&store, db).await;
    assert!(
        store.verify().await.unwrap().ok,
        "covered up: the log is consistent in itself"
    );
    let report = anchoring.verify(&store).await;
    assert!(!report.ok);
    assert_eq!(
        kinds(&report),
        vec![Finding::LogEndsBeforeAnchor {
            line: 1,
            position: story.head,
            head: story.head - 1
        }]
    );
}

pub async fn a_deleted_stream_covered_up_is_named_by_the_anchor<S: EventStore + Clone>(
    store: S,
    db: &Db,
) {
    let anchoring = Anchoring::new();
    let story = story(&store).await;
    anchoring.anchor(&store).await;
    delete_stream(db, &story.b).await;
    cover_up(&store, db).await;
    assert!(store.verify().await.unwrap().ok, "covered up");
    let report = anchoring.verify(&store).await;
    assert_eq!(
        kinds(&report),
        vec![Finding::LogEndsBeforeAnchor {
            line: 1,
            position: story.head,
            head: story.head - 2
        }]
    );
}

pub async fn a_rewritten_and_rehashed_payload_is_named_by_the_anchor<S: EventStore + Clone>(
    store: S,
    db: &Db,
) {
    let anchoring = Anchoring::new();
    let story = story(&store).await;
    let anchor = anchoring.anchor(&store).await;
    let victim = store.read_stream(&story.a, 1, 1).await.unwrap().remove(0);
    let changed = db
        .run(
            "UPDATE events SET payload = $1 WHERE event_id = $2",
            vec![
                Param::Text("{\"n\":1000}".into()),
                Param::Id(victim.event_id),
            ],
        )
        .await;
    assert_eq!(changed, 1);
    let naive = store.verify().await.unwrap();
    assert!(
        matches!(naive.findings.first(), Some(Finding::StreamChainBroken(f)) if f.event_id == victim.event_id),
        "{:?}",
        naive.findings
    );
    cover_up(&store, db).await;
    assert!(store.verify().await.unwrap().ok, "covered up");
    let report = anchoring.verify(&store).await;
    let now = all_events(&store).await.pop().unwrap();
    assert_eq!(now.position, anchor.position, "nothing was renumbered");
    assert_ne!(now.log_hash, Some(anchor.log_hash));
    assert_eq!(
        kinds(&report),
        vec![Finding::AnchorMismatch {
            line: 1,
            position: anchor.position,
            anchored: anchor.log_hash,
            found: now.log_hash,
        }]
    );
}

pub async fn a_tail_cut_after_an_anchor_is_named<S: EventStore + Clone>(store: S, db: &Db) {
    let anchoring = Anchoring::new();
    let story = story(&store).await;
    anchoring.anchor(&store).await;
    delete_position(db, story.head).await;
    assert!(
        store.verify().await.unwrap().ok,
        "a cut tail leaves no trace in the log itself"
    );
    let report = anchoring.verify(&store).await;
    assert_eq!(
        kinds(&report),
        vec![Finding::LogEndsBeforeAnchor {
            line: 1,
            position: story.head,
            head: story.head - 1
        }]
    );
}

pub async fn a_forged_anchor_is_named_as_a_bad_signature<S: EventStore + Clone>(store: S, db: &Db) {
    let anchoring = Anchoring::new();
    let story = story(&store).await;
    let genuine = anchoring.anchor(&store).await;
    // The attacker rewrites the log and anchors the result with a key of their own, under the
    // genuine key's id; and changes a genuine anchor's hash.
    delete_position(db, story.a_last).await;
    cover_up(&store, db).await;
    let now = all_events(&store).await.pop().unwrap();
    let mut forged = AnchorKey::generate()
        .unwrap()
        .sign(now.position, now.log_hash.unwrap());
    forged.key_id.clone_from(&genuine.key_id);
    forged.append_to(&anchoring.file).unwrap();
    let mut altered = genuine.clone();
    altered.log_hash = now.log_hash.unwrap();
    altered.append_to(&anchoring.file).unwrap();
    std::fs::write(
        &anchoring.file,
        std::fs::read_to_string(&anchoring.file).unwrap() + "not an anchor\n",
    )
    .unwrap();
    let report = anchoring.verify(&store).await;
    assert_eq!(report.anchors_checked, 1, "only the genuine anchor counts");
    let findings = kinds(&report);
    assert_eq!(
        findings[..3],
        [
            Finding::LogEndsBeforeAnchor {
                line: 1,
                position: story.head,
                head: story.head - 1
            },
            Finding::AnchorBadSignature {
                line: 2,
                position: now.position,
                problem: String::new()
            },
            Finding::AnchorBadSignature {
                line: 3,
                position: genuine.position,
                problem: String::new()
            },
        ]
    );
    assert!(
        matches!(findings[3], Finding::AnchorUnreadable { line: 4, .. }),
        "{findings:?}"
    );
    assert_eq!(findings.len(), 4);
}

/// Rows stored before the global chain existed (their `log_hash` empty) get it, in position
/// order, when the store opens: the same hashes the writer computed.
pub async fn backfill<S, R, F>(store: S, db: &Db, reopen: R)
where
    S: EventStore + Clone,
    R: FnOnce() -> F,
    F: std::future::Future<Output = S>,
{
    story(&store).await;
    story(&store).await;
    let written: Vec<Option<EventHash>> = all_events(&store)
        .await
        .iter()
        .map(|e| e.log_hash)
        .collect();
    assert!(written.iter().all(Option::is_some));
    db.run("UPDATE events SET log_hash = NULL", vec![]).await;
    let report = store.verify().await.unwrap();
    assert_eq!(
        report.findings.len(),
        written.len(),
        "every event without a global hash is named"
    );
    drop(store);
    let store = reopen().await;
    let filled: Vec<Option<EventHash>> = all_events(&store)
        .await
        .iter()
        .map(|e| e.log_hash)
        .collect();
    assert_eq!(filled, written);
    let next = store
        .append(&stream(), ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let report = store.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.findings);
    assert_eq!(report.head, next.position);
}
