//! Sealing many events at once ([`KeyVault::seal_all`], the bulk import's path) gives what
//! sealing them one by one gives: every personal field sealed with its subject's one key,
//! stored durably before the events; and an erased subject in the batch refuses the whole batch
//! without creating a key. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kring_domain::access::Subject;
use kring_domain::sealed::{PLAIN_KEY, SEALED_KEY};
use kring_domain::simulation::{Recorded, World};
use kring_domain::{Actor, Purpose};
use kring_store::vault::{holds_plain, KeyVault, MasterKey, VaultError};
use kring_store::{Metadata, NewEvent};
use serde_json::Value;
use sqlx::Connection;
use std::collections::HashMap;
use uuid::Uuid;

/// Where the vault keeps its keys, read by a connection of the test's own.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Db {
    async fn key_rows(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM subject_keys";
        match self {
            Self::Sqlite(path) => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            Self::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }
}

/// A school with posts (a key per post and media item), consent decisions and tags.
fn school() -> World {
    school_of(2, 3)
}

/// [`school`] with `groups` classes of `children` children, each with two guardians.
fn school_of(groups: usize, children: usize) -> World {
    let mut world = World::with_classes(groups, children, 2);
    let teacher = Actor::Person(world.staff[1]);
    let group = world.groups[0];
    let (a, b) = (world.child_ids[0], world.child_ids[1]);
    let guardian = world.guardians_of(a)[0];
    world
        .decide_consent(guardian, a, Purpose::GroupCommunication, true)
        .unwrap();
    world
        .publish(teacher, group, &[vec![a], vec![a, b]])
        .unwrap();
    world.publish(teacher, group, &[vec![b]]).unwrap();
    world
}

fn batch(log: &[Recorded]) -> impl Iterator<Item = (&kring_domain::Event, Metadata)> {
    log.iter().map(|r| (&r.event, Metadata::new(r.at, r.actor)))
}

/// The event's payload with every `$plain` marker replaced by its value: what opening the
/// sealed payload must give.
fn plain(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(PLAIN_KEY) => {
            map[PLAIN_KEY]["value"].clone()
        }
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
        Value::Array(items) => items.iter().map(plain).collect(),
        other => other.clone(),
    }
}

/// Every sealed field's (subject, key id) in a stored payload.
fn keys_used(value: &Value, out: &mut Vec<(Subject, Uuid)>) {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key(SEALED_KEY) => {
            let envelope: kring_domain::sealed::Envelope =
                serde_json::from_value(map[SEALED_KEY].clone()).unwrap();
            out.push((envelope.subject, envelope.key_id));
        }
        Value::Object(map) => map.values().for_each(|v| keys_used(v, out)),
        Value::Array(items) => items.iter().for_each(|v| keys_used(v, out)),
        _ => {}
    }
}

/// One key per subject over all `events`.
fn key_per_subject(events: &[NewEvent]) -> HashMap<Subject, Uuid> {
    let mut keys = HashMap::new();
    for e in events {
        let mut used = Vec::new();
        keys_used(&serde_json::from_str(&e.payload).unwrap(), &mut used);
        for (subject, key_id) in used {
            let first = *keys.entry(subject).or_insert(key_id);
            assert_eq!(first, key_id, "{subject:?} sealed with two keys");
        }
    }
    keys
}

/// The batch seals as one-by-one sealing would; a second vault on the same database (another
/// process) opens every field, so the keys were stored; a later single seal uses the same key.
async fn seals_every_field_with_its_subjects_stored_key(
    world: &World,
    vault: &KeyVault,
    other: &KeyVault,
) {
    let sealed = vault.seal_all(batch(&world.log)).await.unwrap();
    assert_eq!(sealed.len(), world.log.len());
    let keys = key_per_subject(&sealed);
    assert!(
        keys.len() >= 6,
        "the school's people, children, posts and media each have a key: {keys:?}"
    );
    for (r, e) in world.log.iter().zip(&sealed) {
        assert_eq!(e.event_type, r.event.event_type());
        assert!(
            !holds_plain(&e.payload),
            "an unsealed field in {}",
            e.payload
        );
        let mut opened: Value = serde_json::from_str(&e.payload).unwrap();
        assert_eq!(other.open_value(&mut opened).await.unwrap(), 0);
        assert_eq!(opened, plain(&r.event.to_payload().unwrap()));
    }
    // Sealed again, one by one and as a batch: the same keys.
    let mut again = Vec::new();
    for r in &world.log {
        again.push(
            other
                .seal(&r.event, Metadata::new(r.at, r.actor))
                .await
                .unwrap(),
        );
    }
    again.extend(vault.seal_all(batch(&world.log)).await.unwrap());
    for (subject, key_id) in key_per_subject(&again) {
        assert_eq!(
            keys.get(&subject),
            Some(&key_id),
            "{subject:?} got a new key"
        );
    }
}

/// A batch with an erased subject is refused, naming it, and creates no key for the new
/// subjects it also holds.
async fn an_erased_subject_refuses_the_batch_and_creates_no_key(db: &Db, vault: &KeyVault) {
    let mut world = school();
    let first = vault.seal_all(batch(&world.log)).await.unwrap();
    let teacher = Subject::Person(world.staff[1]);
    assert!(
        key_per_subject(&first).contains_key(&teacher),
        "the school's log seals a field of the teacher"
    );
    vault.erase(teacher).await.unwrap();
    let before = db.key_rows().await;
    let from = world.log.len();
    world
        .publish(Actor::Person(world.staff[2]), world.groups[1], &[vec![]])
        .unwrap();
    let result = vault.seal_all(batch(&world.log)).await;
    assert!(
        matches!(result, Err(VaultError::SubjectErased(s)) if s == teacher),
        "got {result:?}"
    );
    assert_eq!(
        db.key_rows().await,
        before,
        "a key was created for a refused batch"
    );
    // Without the erased subject's events the new post seals.
    let new = vault.seal_all(batch(&world.log[from..])).await.unwrap();
    assert_eq!(new.len(), world.log.len() - from);
    assert!(db.key_rows().await > before);
}

async fn sqlite() -> (tempfile::TempDir, Db, KeyVault, KeyVault) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.db");
    let master = MasterKey::generate();
    let a = KeyVault::open_sqlite(&path, &master).await.unwrap();
    let b = KeyVault::open_sqlite(&path, &master).await.unwrap();
    (dir, Db::Sqlite(path), a, b)
}

async fn postgres(label: &str) -> (kring_testkit::PgTestDatabase, Db, KeyVault, KeyVault) {
    let db = kring_testkit::fresh_postgres_database(label).await;
    let master = MasterKey::generate();
    let a = KeyVault::open_postgres(db.url(), &master).await.unwrap();
    let b = KeyVault::open_postgres(db.url(), &master).await.unwrap();
    let url = db.url().to_owned();
    (db, Db::Postgres(url), a, b)
}

#[tokio::test]
async fn seal_all_seals_every_field_with_its_subjects_stored_key_on_sqlite() {
    let (_dir, _db, a, b) = sqlite().await;
    seals_every_field_with_its_subjects_stored_key(&school(), &a, &b).await;
}

/// More new subjects in one batch than one `INSERT` of keys takes on SQLite (500): they are
/// stored in one transaction of several statements, every one of them.
#[tokio::test]
async fn seal_all_stores_more_keys_than_one_insert_takes_on_sqlite() {
    let (_dir, db, a, b) = sqlite().await;
    let world = school_of(10, 30);
    seals_every_field_with_its_subjects_stored_key(&world, &a, &b).await;
    let rows = db.key_rows().await;
    assert!(
        rows > 500,
        "{rows} keys stored, not more than one INSERT takes"
    );
}

#[tokio::test]
async fn seal_all_seals_every_field_with_its_subjects_stored_key_on_postgres() {
    let (_db, _, a, b) = postgres("seal_all_keys").await;
    seals_every_field_with_its_subjects_stored_key(&school(), &a, &b).await;
}

#[tokio::test]
async fn seal_all_refuses_a_batch_with_an_erased_subject_on_sqlite() {
    let (_dir, db, a, _b) = sqlite().await;
    an_erased_subject_refuses_the_batch_and_creates_no_key(&db, &a).await;
}

#[tokio::test]
async fn seal_all_refuses_a_batch_with_an_erased_subject_on_postgres() {
    let (_pg, db, a, _b) = postgres("seal_all_erased").await;
    an_erased_subject_refuses_the_batch_and_creates_no_key(&db, &a).await;
}
