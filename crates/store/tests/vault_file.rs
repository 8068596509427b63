//! The key vault in a SQLite file of its own: the move out of the event log's file, a secure
//! deletion a reader holds back, and the erasure ledger written before a key is destroyed.

#![allow(clippy::unwrap_used)]

use kring_domain::access::Subject;
use kring_domain::ChildId;
use kring_store::vault::{ErasureLedger, KeyVault, MasterKey, VaultError};
use sqlx::{Connection, SqliteConnection};
use std::path::Path;

async fn connect(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn has_vault_tables(path: &Path) -> bool {
    let mut conn = connect(path).await;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE name IN ('subject_keys', 'vault_meta')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n > 0
}

async fn wrapped(path: &Path, subject: Subject) -> Option<Vec<u8>> {
    let mut conn = connect(path).await;
    let key = sqlx::query_scalar("SELECT wrapped_key FROM subject_keys WHERE subject = ?")
        .bind(kring_store::vault::subject_name(subject))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    key
}

/// Whether `needle` occurs in any file of `dir` (the databases, their WAL and shared memory).
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // A closing connection may remove its WAL and shared memory as we look.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn a_vault_inside_the_event_log_moves_to_its_own_file_and_leaves_no_key_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (events, vault_file) = (dir.path().join("events.db"), dir.path().join("vault.db"));
    let master = MasterKey::generate();
    let _log = kring_store::sqlite::SqliteStore::open(&events)
        .await
        .unwrap();
    // An installation from before the move: the vault in the event log's file.
    let old = KeyVault::open_sqlite(&events, &master).await.unwrap();
    let (kept, erased) = (
        Subject::Child(ChildId::generate()),
        Subject::Child(ChildId::generate()),
    );
    let sealed = old.encrypt(kept, b"Kind1").await.unwrap();
    old.encrypt(erased, b"Kind2").await.unwrap();
    old.erase(erased).await.unwrap();
    old.close().await;
    let key = wrapped(&events, kept).await.expect("a live key");
    assert!(!vault_file.exists());

    let moved = KeyVault::open_sqlite_moving_from(&vault_file, &events, &master)
        .await
        .unwrap();
    assert_eq!(
        moved.decrypt(&sealed).await.unwrap().as_deref(),
        Some(&b"Kind1"[..])
    );
    assert!(moved.is_erased(erased).await.unwrap(), "still erased");
    assert!(
        !has_vault_tables(&events).await,
        "the event log holds no keys"
    );
    assert!(has_vault_tables(&vault_file).await);
    moved.close().await;
    assert_eq!(
        files_holding(dir.path(), &key),
        vec!["vault.db".to_owned()],
        "the live key is only in vault.db: the old copy was securely deleted"
    );
    // Opening again (every later start) moves nothing and keeps everything.
    let again = KeyVault::open_sqlite_moving_from(&vault_file, &events, &master)
        .await
        .unwrap();
    assert!(again.decrypt(&sealed).await.unwrap().is_some());
    assert!(again.is_erased(erased).await.unwrap());
}

#[tokio::test]
async fn a_wal_truncation_held_back_by_a_reader_is_an_error_and_repeating_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let vault = KeyVault::open_sqlite(&path, &MasterKey::generate())
        .await
        .unwrap();
    let child = Subject::Child(ChildId::generate());
    let sealed = vault.encrypt(child, b"Kind1").await.unwrap();
    let key = wrapped(&path, child).await.expect("a key");

    // A reader in the middle of a transaction keeps the old page image in the WAL alive.
    let mut reader = connect(&path).await;
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_keys")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    let err = vault
        .erase(child)
        .await
        .expect_err("the WAL cannot be truncated");
    assert!(matches!(err, VaultError::SecureDeletion { .. }), "{err:?}");
    assert!(err.to_string().contains("repeated"), "{err}");
    // The key itself is gone already: nothing opens.
    assert!(vault.is_erased(child).await.unwrap());
    assert_eq!(vault.decrypt(&sealed).await.unwrap(), None);

    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    vault.erase(child).await.expect("nothing holds it back now");
    vault.close().await;
    assert!(
        files_holding(dir.path(), &key).is_empty(),
        "no copy of the wrapped key in vault.db or its WAL"
    );
}

#[tokio::test]
async fn an_erasure_is_in_the_ledger_before_the_key_goes_and_an_unwritable_ledger_destroys_nothing()
{
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate();
    let ledger = ErasureLedger::in_data_dir(dir.path());
    let vault = KeyVault::open_sqlite(&dir.path().join("vault.db"), &master)
        .await
        .unwrap()
        .with_ledger(ledger.clone());
    let child = Subject::Child(ChildId::generate());
    vault.encrypt(child, b"Kind1").await.unwrap();
    vault.erase(child).await.unwrap();
    let entries = ledger.entries().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].subject, child);

    // A ledger that cannot be written (here a directory in its place) refuses the erasure.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    let vault = vault.with_ledger(ErasureLedger::at(&blocked));
    let other = Subject::Child(ChildId::generate());
    let sealed = vault.encrypt(other, b"Kind2").await.unwrap();
    let err = vault.erase(other).await.expect_err("no ledger, no erasure");
    assert!(matches!(err, VaultError::Ledger(_)), "{err:?}");
    assert!(!vault.is_erased(other).await.unwrap(), "nothing destroyed");
    assert!(vault.decrypt(&sealed).await.unwrap().is_some());
}
