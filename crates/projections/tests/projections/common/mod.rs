//! Test harness: a real event store, a real read-model database and a key vault, on SQLite
//! files or a fresh PostgreSQL database; a simulated school written through the vault.

#![allow(dead_code, clippy::unwrap_used)]

use kring_domain::simulation::World;
use kring_projections::{Projection, Projector, ReadDb};
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{KeyVault, MasterKey};
use kring_store::{EventStore, ExpectedVersion, Metadata};
use std::sync::Arc;

/// Everything a read-model test needs.
pub struct Harness<S> {
    /// The event log.
    pub store: S,
    /// The read models.
    pub db: ReadDb,
    /// The key vault.
    pub vault: Arc<KeyVault>,
    /// The projector.
    pub projector: Projector<S>,
    /// How much of the world's log was written.
    pub written: usize,
    _guard: Option<tempfile::TempDir>,
}

/// A harness on SQLite files in a temp dir.
pub async fn sqlite(projections: Vec<Arc<dyn Projection>>) -> Harness<SqliteStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let db = ReadDb::sqlite(&dir.path().join("read.db")).await.unwrap();
    let vault = KeyVault::open_sqlite(&dir.path().join("events.db"), &MasterKey::generate())
        .await
        .unwrap();
    assemble(store, db, vault, projections, Some(dir)).await
}

/// A harness on a fresh PostgreSQL database (log, read models and vault in one database).
pub async fn postgres(
    projections: Vec<Arc<dyn Projection>>,
) -> Harness<kring_store::postgres::PostgresStore> {
    let pg = kring_testkit::fresh_postgres_database("projections").await;
    let store = kring_store::postgres::PostgresStore::connect(pg.url())
        .await
        .unwrap();
    let db = ReadDb::connect(pg.url()).await.unwrap();
    let vault = KeyVault::open_postgres(pg.url(), &MasterKey::generate())
        .await
        .unwrap();
    assemble(store, db, vault, projections, None).await
}

/// A harness of these parts, its projector over `projections`.
async fn assemble<S: EventStore + Clone>(
    store: S,
    db: ReadDb,
    vault: KeyVault,
    projections: Vec<Arc<dyn Projection>>,
    guard: Option<tempfile::TempDir>,
) -> Harness<S> {
    let projector = Projector::new(store.clone(), db.clone(), projections)
        .await
        .unwrap();
    Harness {
        store,
        db,
        vault: Arc::new(vault),
        projector,
        written: 0,
        _guard: guard,
    }
}

impl<S: EventStore + Clone> Harness<S> {
    /// Seals and appends the part of the world's log not written yet.
    pub async fn write(&mut self, world: &World) {
        for r in &world.log[self.written..] {
            let meta = Metadata::new(r.at, r.actor);
            let sealed = self.vault.seal(&r.event, meta).await.unwrap();
            self.store
                .append(&r.stream, ExpectedVersion::Any, vec![sealed])
                .await
                .unwrap();
        }
        self.written = world.log.len();
    }

    /// Writes the world and projects everything.
    pub async fn sync(&mut self, world: &World) {
        self.write(world).await;
        self.projector.catch_up().await.unwrap();
    }
}

/// Asserts that a stored text column holds a sealed envelope and nothing of `plains`.
///
/// The nonce and ciphertext are random base64, so a short plaintext such as "Juf" can
/// appear in them by chance; they are left out of the search. What remains (the envelope's
/// shape and its subject) must be free of every plaintext.
#[allow(dead_code)]
pub fn assert_sealed_at_rest(stored: &str, plains: &[&str]) {
    let mut value: serde_json::Value =
        serde_json::from_str(stored).unwrap_or_else(|e| panic!("not JSON ({e}): {stored}"));
    let envelope = value
        .get_mut("$sealed")
        .and_then(serde_json::Value::as_object_mut)
        .unwrap_or_else(|| panic!("not a sealed envelope: {stored}"));
    let mut fields: Vec<&str> = envelope.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["ciphertext", "key_id", "nonce", "subject"],
        "{stored}"
    );
    envelope.remove("nonce");
    envelope.remove("ciphertext");
    let rest = value.to_string();
    for plain in plains {
        assert!(!rest.contains(plain), "plaintext at rest: {stored}");
    }
}
