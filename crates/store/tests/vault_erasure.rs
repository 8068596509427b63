//! An erasure reaches every process that has the vault open, and a seal racing an erasure
//! cannot bring the key back. Two vaults opened on one database stand for two processes (two
//! API instances, or an API instance and the projector); on SQLite (one `vault.db`) and on
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kring_domain::access::Subject;
use kring_domain::sealed::Envelope;
use kring_domain::ChildId;
use kring_store::vault::{subject_name, KeyVault, MasterKey, VaultError};
use sqlx::Connection;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the two vaults keep their keys, read by a connection of the test's own.
enum Db {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    /// The stored row of `subject`: `None` without a row, `Some(None)` for an erased key.
    async fn stored_key(&self, subject: Subject) -> Option<Option<Vec<u8>>> {
        match self {
            Self::Sqlite(path) => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                let row =
                    sqlx::query_scalar("SELECT wrapped_key FROM subject_keys WHERE subject = ?")
                        .bind(subject_name(subject))
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap();
                conn.close().await.unwrap();
                row
            }
            Self::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let row =
                    sqlx::query_scalar("SELECT wrapped_key FROM subject_keys WHERE subject = $1")
                        .bind(subject_name(subject))
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap();
                conn.close().await.unwrap();
                row
            }
        }
    }

    /// Whether another process's erasure must be seen at once (SQLite), or once the
    /// notification arrived (PostgreSQL).
    fn strict(&self) -> bool {
        matches!(self, Self::Sqlite(_))
    }
}

/// Two vaults on one SQLite file, as two processes open `vault.db`.
async fn sqlite_pair() -> (tempfile::TempDir, Db, Arc<KeyVault>, Arc<KeyVault>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let master = MasterKey::generate();
    let a = KeyVault::open_sqlite(&path, &master).await.unwrap();
    let b = KeyVault::open_sqlite(&path, &master).await.unwrap();
    (dir, Db::Sqlite(path), Arc::new(a), Arc::new(b))
}

/// Two vaults on one PostgreSQL database, each with its listener connected.
async fn postgres_pair(
    label: &str,
) -> (
    kring_testkit::PgTestDatabase,
    Db,
    Arc<KeyVault>,
    Arc<KeyVault>,
) {
    let db = kring_testkit::fresh_postgres_database(label).await;
    let master = MasterKey::generate();
    let a = KeyVault::open_postgres(db.url(), &master).await.unwrap();
    let b = KeyVault::open_postgres(db.url(), &master).await.unwrap();
    for vault in [&a, &b] {
        eventually("the vault's listener connects", || async {
            vault.is_listening()
        })
        .await;
    }
    let url = db.url().to_owned();
    (db, Db::Postgres(url), Arc::new(a), Arc::new(b))
}

/// Waits (at most 10 s) until `check` holds; fails naming `what` otherwise.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: still not so after 10 s");
}

/// `vault` no longer opens `sealed`: at once when `strict`, else within the bounded wait.
async fn opens_as_erased(vault: &KeyVault, sealed: &Envelope, strict: bool, who: &str) {
    if strict {
        assert_eq!(
            vault.decrypt(sealed).await.unwrap(),
            None,
            "{who} opened a field of an erased subject"
        );
    } else {
        eventually(&format!("{who} reports the field erased"), || async {
            vault.decrypt(sealed).await.unwrap().is_none()
        })
        .await;
    }
}

fn assert_erased_error<T: std::fmt::Debug>(result: Result<T, VaultError>, who: &str) {
    match result {
        Err(VaultError::SubjectErased(_)) => {}
        other => panic!("{who}: a seal after the erasure must be refused, got {other:?}"),
    }
}

/// A cached by B, erased by A: B's next open reports erased (SQLite: that very open;
/// PostgreSQL: once the notification arrived), B's next seal is refused at once, and B's other
/// cached keys keep working.
async fn a_key_cached_by_one_vault_is_not_served_after_another_erases_it(
    db: &Db,
    a: &KeyVault,
    b: &KeyVault,
) {
    let child = Subject::Child(ChildId::generate());
    let other = Subject::Child(ChildId::generate());
    let sealed = a.encrypt(child, b"Kind1").await.unwrap();
    let kept = a.encrypt(other, b"Kind2").await.unwrap();
    // B opens both: their keys are in B's cache now.
    assert_eq!(
        b.decrypt(&sealed).await.unwrap().as_deref(),
        Some(&b"Kind1"[..])
    );
    assert!(b.decrypt(&kept).await.unwrap().is_some());

    a.erase(child).await.unwrap();
    assert_erased_error(b.encrypt(child, b"again").await, "the other vault");
    opens_as_erased(b, &sealed, db.strict(), "the other vault").await;
    opens_as_erased(a, &sealed, true, "the erasing vault").await;
    assert!(b.is_erased(child).await.unwrap());
    assert_eq!(db.stored_key(child).await, Some(None), "no key is stored");
    assert_eq!(
        b.decrypt(&kept).await.unwrap().as_deref(),
        Some(&b"Kind2"[..]),
        "other subjects are not erased"
    );
    // A key created after the erasure is served to the other vault as well.
    let fresh = Subject::Child(ChildId::generate());
    let sealed_fresh = b.encrypt(fresh, b"Kind3").await.unwrap();
    assert!(a.decrypt(&sealed_fresh).await.unwrap().is_some());
    assert!(b.decrypt(&sealed_fresh).await.unwrap().is_some());
}

/// Many subjects, each sealed repeatedly through both vaults while one of them erases it.
/// After every erasure has returned: no key is stored for any of them, both vaults call them
/// erased and refuse to seal for them, and nothing sealed for them opens, whichever vault asks.
async fn seals_racing_erasures_across_two_vaults_never_bring_a_key_back(
    db: &Db,
    a: Arc<KeyVault>,
    b: Arc<KeyVault>,
) {
    const SUBJECTS: usize = 48;
    const SEALS: usize = 4;
    let mut tasks = Vec::new();
    for i in 0..SUBJECTS {
        let subject = Subject::Child(ChildId::generate());
        let (a, b) = (Arc::clone(&a), Arc::clone(&b));
        // One permit per seal that went through: the erasure of a third of the subjects waits
        // for none, of a third for one, of the rest for two, so it lands at different points.
        let sealed_so_far = Arc::new(tokio::sync::Semaphore::new(0));
        tasks.push(tokio::spawn(async move {
            let (eraser, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let seal = |vault: Arc<KeyVault>| {
                let sealed_so_far = Arc::clone(&sealed_so_far);
                async move {
                    let mut sealed = Vec::new();
                    for n in 0..SEALS {
                        match vault.encrypt(subject, format!("Kind {n}").as_bytes()).await {
                            Ok(envelope) => {
                                // Opened once, so the key is cached when the erasure comes.
                                vault.decrypt(&envelope).await.unwrap();
                                sealed.push(envelope);
                                sealed_so_far.add_permits(1);
                            }
                            Err(VaultError::SubjectErased(_)) => {}
                            Err(e) => panic!("seal failed: {e}"),
                        }
                        tokio::task::yield_now().await;
                    }
                    sealed
                }
            };
            let erase = async {
                let wait_for = u32::try_from(i % 3).unwrap();
                let _permits = sealed_so_far.acquire_many(wait_for).await.unwrap();
                // Under this much traffic the WAL truncation after the erasure may be held back
                // by readers: the key is destroyed, and repeating the erasure completes the wipe
                // (done below, once the race is over).
                let wiped = match eraser.erase(subject).await {
                    Ok(()) => true,
                    Err(VaultError::SecureDeletion { .. }) => false,
                    Err(e) => panic!("erasure failed: {e}"),
                };
                // Once the erasure has returned, no vault seals for the subject any more.
                assert_erased_error(eraser.encrypt(subject, b"late").await, "the erasing vault");
                assert_erased_error(other.encrypt(subject, b"late").await, "the other vault");
                wiped
            };
            let (mut by_a, by_b, wiped) =
                tokio::join!(seal(Arc::clone(&a)), seal(Arc::clone(&b)), erase);
            by_a.extend(by_b);
            (subject, by_a, i % 2 == 0, wiped)
        }));
    }
    let mut sealed_total = 0;
    for task in tasks {
        let (subject, sealed, erased_by_a, wiped) = task.await.unwrap();
        if !wiped {
            a.erase(subject)
                .await
                .expect("a repeated erasure completes the wipe");
        }
        assert_eq!(
            db.stored_key(subject).await,
            Some(None),
            "an erased subject has no key"
        );
        for vault in [&a, &b] {
            assert!(vault.is_erased(subject).await.unwrap());
            assert_erased_error(vault.encrypt(subject, b"after").await, "a vault");
        }
        let (eraser, other) = if erased_by_a { (&a, &b) } else { (&b, &a) };
        for envelope in &sealed {
            opens_as_erased(eraser, envelope, true, "the erasing vault").await;
            opens_as_erased(other, envelope, db.strict(), "the other vault").await;
        }
        sealed_total += sealed.len();
    }
    assert!(
        sealed_total > 0,
        "some seals came before their erasure: the race was run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_key_cached_by_one_vault_is_not_served_after_another_erases_it() {
    let (_dir, db, a, b) = sqlite_pair().await;
    a_key_cached_by_one_vault_is_not_served_after_another_erases_it(&db, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_key_cached_by_one_vault_is_not_served_after_another_erases_it() {
    let (_db, db, a, b) = postgres_pair("vault_cached_erase").await;
    a_key_cached_by_one_vault_is_not_served_after_another_erases_it(&db, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_seals_racing_erasures_across_two_vaults_never_bring_a_key_back() {
    let (_dir, db, a, b) = sqlite_pair().await;
    seals_racing_erasures_across_two_vaults_never_bring_a_key_back(&db, a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_seals_racing_erasures_across_two_vaults_never_bring_a_key_back() {
    let (_db, db, a, b) = postgres_pair("vault_race").await;
    seals_racing_erasures_across_two_vaults_never_bring_a_key_back(&db, a, b).await;
}

/// The listeners' connections are cut: an erasure made meanwhile is not announced to them, and
/// the other vault still stops serving the key (it reads the erasures table until its listener
/// is back and has caught up), and listens again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_erasure_made_while_the_listener_is_cut_off_still_reaches_the_cache() {
    let (pg, db, a, b) = postgres_pair("vault_listener_cut").await;
    let child = Subject::Child(ChildId::generate());
    let sealed = a.encrypt(child, b"Kind1").await.unwrap();
    assert!(b.decrypt(&sealed).await.unwrap().is_some(), "cached by B");

    let mut admin = sqlx::PgConnection::connect(pg.url()).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    a.erase(child).await.unwrap();

    opens_as_erased(&b, &sealed, db.strict(), "the cut-off vault").await;
    assert_eq!(cut, vec![true, true], "both listeners were cut off");
    assert!(b.is_erased(child).await.unwrap());
    eventually("the listener reconnects", || async { b.is_listening() }).await;
    // And the notifications flow again.
    let later = Subject::Child(ChildId::generate());
    let sealed_later = a.encrypt(later, b"Kind2").await.unwrap();
    assert!(b.decrypt(&sealed_later).await.unwrap().is_some());
    a.erase(later).await.unwrap();
    opens_as_erased(&b, &sealed_later, false, "the reconnected vault").await;
    admin.close().await.unwrap();
}

/// A cached by B, erased by A, then `sync_erasures` on B: B's very next open reports the field
/// erased, on PostgreSQL too, without waiting for the notification (what a read at the
/// erasure's position on another API instance relies on). Other cached keys stay usable.
async fn an_erasure_is_seen_at_once_after_a_sync(db: &Db, a: &KeyVault, b: &KeyVault) {
    let child = Subject::Child(ChildId::generate());
    let other = Subject::Child(ChildId::generate());
    let sealed = a.encrypt(child, b"Kind1").await.unwrap();
    let kept = a.encrypt(other, b"Kind2").await.unwrap();
    assert!(b.decrypt(&sealed).await.unwrap().is_some(), "cached by B");
    assert!(b.decrypt(&kept).await.unwrap().is_some(), "cached by B");
    a.erase(child).await.unwrap();
    b.sync_erasures().await.unwrap();
    assert_eq!(
        b.decrypt(&sealed).await.unwrap(),
        None,
        "after a sync the other vault opens nothing of the erased subject"
    );
    assert_eq!(db.stored_key(child).await, Some(None), "no key is stored");
    assert!(
        b.decrypt(&kept).await.unwrap().is_some(),
        "the other key stays"
    );
    // Nothing new: a second sync changes nothing.
    b.sync_erasures().await.unwrap();
    assert!(b.decrypt(&kept).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_erasure_is_seen_at_once_after_a_sync() {
    let (_dir, db, a, b) = sqlite_pair().await;
    an_erasure_is_seen_at_once_after_a_sync(&db, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_erasure_is_seen_at_once_after_a_sync() {
    let (_db, db, a, b) = postgres_pair("vault_sync").await;
    an_erasure_is_seen_at_once_after_a_sync(&db, &a, &b).await;
}
