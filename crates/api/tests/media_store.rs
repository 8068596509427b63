//! One conformance suite for every media store adapter: local files, PostgreSQL, and S3 (run
//! against moto's S3 emulator, which `scripts/test` starts: `scripts/lib/moto.sh`).
//!
//! Each case runs once per adapter (`local::…`, `postgres::…`, `s3::…`). The PostgreSQL cases
//! need `DATABASE_URL` and the S3 cases `KRING_TEST_S3_ENDPOINT` (with the `AWS_*` credentials
//! `start_moto` exports); without them they fail and say how to run them, as every PostgreSQL
//! test of the workspace does. The stores see ciphertext only: these cases hand them opaque
//! bytes, and the large-file case goes through [`MediaFiles`] (sealing and opening) on top.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use kring_api::error::ApiResult;
use kring_api::media::MediaFiles;
use kring_api::media_store::local::LocalStore;
use kring_api::media_store::postgres::PgMediaStore;
use kring_api::media_store::s3::S3MediaStore;
use kring_api::media_store::{Claim, DynMediaStore, Piece, Pieces};
use kring_domain::{MediaId, PersonId, PostId};
use kring_store::vault::{KeyVault, MasterKey};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Turns a complete object into what a crash between writing its body and its head leaves.
type Crash = Box<dyn Fn(MediaId) -> BoxFuture<'static, ()> + Send + Sync>;

/// A store under test, with what must live as long as it.
struct Fixture {
    store: DynMediaStore,
    /// Makes an orphan of a complete object, by the adapter's own means.
    crash: Crash,
    _dir: tempfile::TempDir,
}

#[allow(clippy::unused_async)] // as every fixture
async fn local(_label: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let store = LocalStore::new(media.clone());
    Fixture {
        store: Arc::new(store.clone()),
        // The upload's temporary file, never renamed.
        crash: Box::new(move |id| {
            let (from, to) = (store.path(id), media.join(format!(".{id}.0123.tmp")));
            Box::pin(async move { std::fs::rename(from, to).unwrap() })
        }),
        _dir: dir,
    }
}

async fn postgres(label: &str) -> Fixture {
    let db = kring_testkit::fresh_postgres_database(label).await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    Fixture {
        store: Arc::new(PgMediaStore::connect(db.url()).await.unwrap()),
        // The parts, without the row of the head.
        crash: Box::new(move |id| {
            let pool = pool.clone();
            Box::pin(async move {
                sqlx::query("DELETE FROM media_objects WHERE media_id = $1")
                    .bind(id.as_uuid())
                    .execute(&pool)
                    .await
                    .unwrap();
            })
        }),
        _dir: tempfile::tempdir().unwrap(),
    }
}

#[allow(clippy::unused_async)] // as every fixture
async fn s3(label: &str) -> Fixture {
    let endpoint = std::env::var("KRING_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "KRING_TEST_S3_ENDPOINT is not set. Run the tests with `scripts/test`: it starts \
             moto's S3 emulator for the run (scripts/lib/moto.sh, start_moto) and sets it with \
             the AWS_* credentials (or point it, and AWS_*, at an S3-compatible store you own)."
        )
    });
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e == endpoint),
        "AWS_ENDPOINT_URL must name KRING_TEST_S3_ENDPOINT ({endpoint}): start_moto exports both"
    );
    let bucket = std::env::var("KRING_TEST_S3_BUCKET").unwrap_or_else(|_| "kring-test".into());
    // A prefix per test (and per run): the cases list the store, and must see only their own.
    let prefix = format!("{label}-{}", uuid::Uuid::now_v7().simple());
    let url = format!("s3://{bucket}/{prefix}");
    let raw: Arc<dyn object_store::ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .unwrap(),
    );
    Fixture {
        store: Arc::new(S3MediaStore::from_env(&url).unwrap()),
        // The body, without its head object.
        crash: Box::new(move |id| {
            let (raw, head) = (
                Arc::clone(&raw),
                object_store::path::Path::from(format!("{prefix}/{id}.head")),
            );
            Box::pin(async move { raw.delete(&head).await.unwrap() })
        }),
        _dir: tempfile::tempdir().unwrap(),
    }
}

/// Runs each case against every adapter, as `local::case`, `postgres::case`, `s3::case`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod local_store { use super::*; $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(local(stringify!($case)).await).await }
        )* }
        mod postgres_store { use super::*; $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(postgres(concat!("media_", stringify!($case))).await).await }
        )* }
        mod s3_store { use super::*; $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(s3(stringify!($case)).await).await }
        )* }
    };
}

conformance!(
    put_then_streamed_get,
    range_reads,
    delete_is_final_and_idempotent,
    missing_objects,
    failed_uploads_leave_nothing_visible,
    orphans_are_never_served_and_are_swept,
    claims_are_exclusive,
    a_large_file_streams_through_in_bounded_memory,
    many_uploads_at_once_beyond_the_memory_budget_all_arrive_whole,
);

/// A head of `len` bytes (the shape of a media head: two lines).
fn head(len: usize, mark: u8) -> Bytes {
    let mut h = b"KRINGMEDIA2\n".to_vec();
    h.resize(len - 1, mark);
    h.push(b'\n');
    Bytes::from(h)
}

/// Deterministic "ciphertext" of `len` bytes.
fn body(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let x = u32::try_from(i % (1 << 30))
                .unwrap()
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed);
            x.to_le_bytes()[1]
        })
        .collect()
}

/// The pieces of an upload: `body` in chunks of `chunk` bytes, then `head`.
fn pieces(body: &[u8], chunk: usize, head: Bytes) -> Pieces<'static> {
    let mut out: Vec<ApiResult<Piece>> = body
        .chunks(chunk)
        .map(|c| Ok(Piece::Chunk(Bytes::copy_from_slice(c))))
        .collect();
    out.push(Ok(Piece::Head(head)));
    Box::pin(futures::stream::iter(out))
}

async fn collect(mut s: impl Stream<Item = ApiResult<Bytes>> + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

async fn put(store: &DynMediaStore, id: MediaId, data: &[u8]) -> Bytes {
    let h = head(300, b'h');
    let len = store
        .put(id, h.len(), pieces(data, 65_552, h.clone()))
        .await
        .unwrap();
    assert_eq!(len, data.len() as u64);
    h
}

/// More uploads at once than a store holds parts in memory for (S3 keeps
/// `PARTS_IN_MEMORY` parts of 5 MiB for all uploads together): they wait their turn, none
/// deadlocks, and each reads back byte for byte, its parts in order.
async fn many_uploads_at_once_beyond_the_memory_budget_all_arrive_whole(f: Fixture) {
    const UPLOADS: u32 = 8;
    const LEN: usize = 11 * 1024 * 1024 + 12_345;
    let store = &f.store;
    let ids: Vec<MediaId> = (0..UPLOADS).map(|_| MediaId::generate()).collect();
    let uploads = ids.iter().zip(0..).map(|(id, seed)| async move {
        let data = body(LEN, seed);
        let h = head(300, b'h');
        let len = store
            .put(*id, h.len(), pieces(&data, 65_552, h))
            .await
            .unwrap();
        assert_eq!(len, LEN as u64);
        Sha256::digest(&data)
    });
    let sent = tokio::time::timeout(Duration::from_secs(300), futures::future::join_all(uploads))
        .await
        .expect("every upload finishes: none waits forever for memory another holds");
    for (id, digest) in ids.iter().zip(sent) {
        let stat = store.stat(*id).await.unwrap().unwrap();
        assert_eq!(stat.body_len, LEN as u64);
        let got = collect(store.get(*id, 0..stat.body_len).await.unwrap().unwrap()).await;
        assert_eq!(Sha256::digest(&got), digest, "{id}");
    }
}

async fn put_then_streamed_get(f: Fixture) {
    let store = &f.store;
    let id = MediaId::generate();
    assert!(!store.exists(id).await.unwrap());
    let data = body(1_000_000, 1);
    let h = put(store, id, &data).await;
    assert!(store.exists(id).await.unwrap());
    let stat = store.stat(id).await.unwrap().unwrap();
    assert_eq!(stat.head, h);
    assert_eq!(stat.body_len, data.len() as u64);
    let got = collect(store.get(id, 0..stat.body_len).await.unwrap().unwrap()).await;
    assert_eq!(got, data);
    // An empty body is an object too.
    let empty = MediaId::generate();
    put(store, empty, &[]).await;
    assert_eq!(store.stat(empty).await.unwrap().unwrap().body_len, 0);
    assert!(collect(store.get(empty, 0..0).await.unwrap().unwrap())
        .await
        .is_empty());
    let listed = store.list().await.unwrap();
    let mut ids: Vec<MediaId> = listed
        .iter()
        .filter(|l| l.complete)
        .map(|l| l.media_id)
        .collect();
    ids.sort();
    let mut want = vec![id, empty];
    want.sort();
    assert_eq!(ids, want);
    assert!(listed.iter().all(|l| !l.claimed));
}

async fn range_reads(f: Fixture) {
    let store = &f.store;
    let id = MediaId::generate();
    // Over the PostgreSQL adapter's part size and the S3 adapter's part size.
    let data = body(6 * 1024 * 1024 + 12_345, 2);
    put(store, id, &data).await;
    let n = data.len() as u64;
    for range in [
        0..1,
        0..n,
        1..2,
        65_551..65_553,
        1024 * 1024 - 3..1024 * 1024 + 3,
        5 * 1024 * 1024 - 1..5 * 1024 * 1024 + 1,
        n - 1..n,
        3_000_000..6_000_000,
        n..n,
    ] {
        let got = collect(store.get(id, range.clone()).await.unwrap().unwrap()).await;
        let want =
            &data[usize::try_from(range.start).unwrap()..usize::try_from(range.end).unwrap()];
        assert!(
            got == want,
            "range {range:?}: {} bytes where {} were wanted",
            got.len(),
            want.len()
        );
    }
    // Beyond the body: refused, not cut.
    assert!(store.get(id, 0..n + 1).await.is_err());
}

async fn delete_is_final_and_idempotent(f: Fixture) {
    let store = &f.store;
    let id = MediaId::generate();
    let kept = MediaId::generate();
    put(store, id, &body(200_000, 3)).await;
    put(store, kept, &body(1_000, 4)).await;
    assert_eq!(
        store.claim(id, PostId::generate()).await.unwrap(),
        Claim::Taken
    );
    store.delete(id).await.unwrap();
    assert!(!store.exists(id).await.unwrap());
    assert!(store.stat(id).await.unwrap().is_none());
    assert!(store.get(id, 0..10).await.unwrap().is_none());
    store.delete(id).await.unwrap();
    // The claim went with it, and the other object stayed.
    assert_eq!(
        store.claim(id, PostId::generate()).await.unwrap(),
        Claim::Taken
    );
    assert!(store.exists(kept).await.unwrap());
    let listed: Vec<MediaId> = store
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|l| l.complete)
        .map(|l| l.media_id)
        .collect();
    assert_eq!(listed, vec![kept]);
}

async fn missing_objects(f: Fixture) {
    let store = &f.store;
    let id = MediaId::generate();
    assert!(store.stat(id).await.unwrap().is_none());
    assert!(!store.exists(id).await.unwrap());
    assert!(store.get(id, 0..0).await.unwrap().is_none());
    assert!(store.get(id, 0..100).await.unwrap().is_none());
    store.delete(id).await.unwrap();
    store.release(id, PostId::generate()).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert!(store
        .sweep_orphans(Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

async fn failed_uploads_leave_nothing_visible(f: Fixture) {
    let store = &f.store;
    let id = MediaId::generate();
    // The stream fails half way: its own error comes back, and nothing is visible.
    let data = body(300_000, 5);
    let failing: Pieces<'static> = Box::pin(futures::stream::iter(vec![
        Ok(Piece::Chunk(Bytes::copy_from_slice(&data[..200_000]))),
        Err(kring_api::error::ApiError::bad_request("cut off")),
    ]));
    let e = store.put(id, 300, failing).await.unwrap_err();
    assert_eq!(e.explain(), "cut off");
    assert!(!store.exists(id).await.unwrap());
    // A stream without its head, or a head of the wrong length: refused.
    let headless: Pieces<'static> = Box::pin(futures::stream::iter(vec![Ok(Piece::Chunk(
        Bytes::from_static(b"abc"),
    ))]));
    assert!(store.put(id, 300, headless).await.is_err());
    assert!(store
        .put(id, 300, pieces(&data, 1000, head(299, b'x')))
        .await
        .is_err());
    assert!(!store.exists(id).await.unwrap());
    // Nothing was left that a listing calls complete; the same id still takes an upload.
    assert!(store.list().await.unwrap().iter().all(|l| !l.complete));
    put(store, id, &data).await;
    let got = collect(store.get(id, 0..data.len() as u64).await.unwrap().unwrap()).await;
    assert_eq!(got, data);
}

async fn orphans_are_never_served_and_are_swept(f: Fixture) {
    let store = &f.store;
    let id = MediaId::generate();
    let kept = MediaId::generate();
    put(store, kept, &body(10_000, 6)).await;
    // An upload whose future is dropped half way (a request dropped) leaves nothing visible.
    let dropped = MediaId::generate();
    let (tx, rx) = futures::channel::mpsc::unbounded::<ApiResult<Piece>>();
    tx.unbounded_send(Ok(Piece::Chunk(Bytes::from(body(3_000_000, 7)))))
        .unwrap();
    let cut = tokio::time::timeout(
        Duration::from_secs(3),
        store.put(dropped, 300, Box::pin(rx)),
    );
    assert!(cut.await.is_err(), "the upload cannot end without its head");
    drop(tx);
    assert!(!store.exists(dropped).await.unwrap());
    // A crash between writing the body and writing the head: an orphan.
    put(store, id, &body(2_500_000, 9)).await;
    (f.crash)(id).await;
    assert!(!store.exists(id).await.unwrap());
    assert!(
        store.stat(id).await.unwrap().is_none(),
        "an orphan is never served"
    );
    assert!(
        store.get(id, 0..10).await.unwrap().is_none(),
        "an orphan is never served"
    );
    assert!(store
        .list()
        .await
        .unwrap()
        .iter()
        .any(|l| l.media_id == id && !l.complete));
    // Younger than the grace period: left alone (it may be an upload in progress).
    assert!(store
        .sweep_orphans(Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    let mut swept = store.sweep_orphans(Duration::ZERO).await.unwrap();
    swept.retain(|s| *s != dropped);
    assert_eq!(swept, vec![id]);
    assert!(
        store.list().await.unwrap().iter().all(|l| l.complete),
        "no orphan is left"
    );
    assert!(store
        .sweep_orphans(Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert!(store.exists(kept).await.unwrap());
}

async fn claims_are_exclusive(f: Fixture) {
    let store = &f.store;
    // Racing claims, on several objects (a race lost only now and then is still lost): exactly
    // one takes each, and the other reads whole who holds it.
    for round in 0..8 {
        let id = MediaId::generate();
        put(store, id, &body(100, round)).await;
        let (first, second) = (PostId::generate(), PostId::generate());
        let (a, b) = tokio::join!(store.claim(id, first), store.claim(id, second));
        let (a, b) = (a.unwrap(), b.unwrap());
        let (winner, loser) = match (a, b) {
            (Claim::Taken, Claim::Held { post, .. }) => {
                assert_eq!(post, first, "round {round}: the loser reads the winner");
                (first, second)
            }
            (Claim::Held { post, .. }, Claim::Taken) => {
                assert_eq!(post, second, "round {round}: the loser reads the winner");
                (second, first)
            }
            other => panic!("round {round}: both or neither took the claim: {other:?}"),
        };
        assert!(store
            .list()
            .await
            .unwrap()
            .iter()
            .any(|l| l.media_id == id && l.claimed));
        // The loser cannot release it; the winner can.
        store.release(id, loser).await.unwrap();
        assert!(
            matches!(store.claim(id, loser).await.unwrap(), Claim::Held { post, .. } if post == winner)
        );
        store.release(id, winner).await.unwrap();
        assert_eq!(store.claim(id, loser).await.unwrap(), Claim::Taken);
    }
}

/// What a crash while claiming leaves in the directory (the claim written, never linked to its
/// name) claims nothing, is listed as nothing, and is removed by the sweep without being taken
/// for an orphan upload (whose key the sweep would destroy).
#[tokio::test]
async fn local_claim_cut_short_by_a_crash_is_swept_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let store: DynMediaStore = Arc::new(LocalStore::new(media.clone()));
    let id = MediaId::generate();
    put(&store, id, &body(100, 1)).await;
    let (crashed, post) = (PostId::generate(), PostId::generate());
    let left = media.join(format!(".{id}.{}.claiming", uuid::Uuid::now_v7().simple()));
    std::fs::write(&left, crashed.to_string()).unwrap();
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].complete && !listed[0].claimed);
    assert!(store
        .sweep_orphans(Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert!(!left.exists(), "the sweep removes it");
    assert!(store.exists(id).await.unwrap());
    assert_eq!(store.claim(id, post).await.unwrap(), Claim::Taken);
    let names: Vec<String> = std::fs::read_dir(&media)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".claiming")),
        "a claim leaves no file of its making: {names:?}"
    );
}

/// The process's resident memory: (now, peak) in KiB, from /proc.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One large-file case at a time in this process, so that its memory is its own.
static LARGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 200 MiB uploaded through [`MediaFiles`] (sealed chunk by chunk, handed to the store as a
/// stream), read back as a stream and by a range, in memory far below the file's size.
async fn a_large_file_streams_through_in_bounded_memory(f: Fixture) {
    const SIZE: u64 = 200 * 1024 * 1024;
    const BLOCK: usize = 256 * 1024;
    let _one = LARGE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Arc::new(
        KeyVault::open_sqlite(&dir.path().join("vault.db"), &MasterKey::generate())
            .await
            .unwrap(),
    );
    let files = MediaFiles::over(Arc::clone(&f.store), vault).with_limit(SIZE);
    let block = |i: u64| Bytes::from(body(BLOCK, u32::try_from(i).unwrap()));
    let blocks = SIZE / BLOCK as u64;
    let mut want = Sha256::new();
    for i in 0..blocks {
        want.update(block(i));
    }
    let want = want.finalize();
    // Reset the peak: what follows is measured from here.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (before, _) = rss();
    let id = MediaId::generate();
    let upload =
        futures::stream::iter(0..blocks).map(move |i| Ok::<_, std::convert::Infallible>(block(i)));
    let header = files
        .store(id, PersonId::generate(), "video/mp4", upload)
        .await
        .unwrap();
    assert_eq!(header.size, SIZE);
    let (_, mut bytes) = files.open(id).await.unwrap().unwrap();
    let mut got = Sha256::new();
    let mut read = 0_u64;
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.unwrap();
        read += chunk.len() as u64;
        got.update(&chunk);
    }
    assert_eq!(read, SIZE);
    assert_eq!(
        got.finalize(),
        want,
        "the bytes read back are the bytes uploaded"
    );
    // A range in the middle: only its chunks are fetched and opened.
    let at = 123 * 1024 * 1024 + 777;
    let (_, part) = files
        .open_range(id, Some(at..at + 200_000))
        .await
        .unwrap()
        .unwrap();
    let part =
        collect(part.map(|b| b.map_err(|e| kring_api::error::ApiError::internal(e.to_string()))))
            .await;
    let first = at / BLOCK as u64;
    let mut expected = block(first).to_vec();
    expected.extend_from_slice(&block(first + 1));
    let from = usize::try_from(at - first * BLOCK as u64).unwrap();
    assert_eq!(part, expected[from..from + 200_000]);
    let (after, peak) = rss();
    println!(
        "{} store: 200 MiB up and down; resident memory before {} MiB, after {} MiB, peak {} MiB",
        f.store.kind(),
        before / 1024,
        after / 1024,
        peak / 1024
    );
    // Held whole, the file alone would take 200 MiB (twice, sealed and open).
    assert!(
        peak.saturating_sub(before) < 100 * 1024,
        "peak resident memory grew by {} MiB for a 200 MiB file",
        peak.saturating_sub(before) / 1024
    );
    files.shred(id).await.unwrap();
    assert!(!f.store.exists(id).await.unwrap());
}
