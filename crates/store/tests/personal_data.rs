//! Personal data sealed per subject; erasure and content removal by destroying the key.
//! On SQLite (every file of the data directory) and PostgreSQL (a dump of all tables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kring_domain::access::Subject;
use kring_domain::child::ChildAction;
use kring_domain::person::PersonAction;
use kring_domain::post::PostAction;
use kring_domain::simulation::World;
use kring_domain::{Actor, Event, Purpose, StreamName};
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{KeyVault, MasterKey, VaultError};
use kring_store::{EventStore, EventStoreExt, ExpectedVersion, Metadata, NewEvent, StoreError};
use std::path::Path;

/// Personal values the simulated school writes, that must never rest on disk in plain text.
const PERSONAL: &[&str] = &[
    "Juf Staff 1",
    "staff1@school.example",
    "parent1@mail.example",
    "Kind1",
    "Uitje naar het bos",
    "Hoe gaat het?",
    "Bruiloft",
    REMOVAL_REASON,
];

/// Free text a teacher typed when removing a photo: it names a child.
const REMOVAL_REASON: &str = "Sam's ouders vroegen het";

/// A school with a post, a conversation and an absence, each personal value written once.
fn school() -> World {
    let mut world = World::with_classes(1, 2, 2);
    let teacher = Actor::Person(world.staff[1]);
    let (group, child) = (world.groups[0], world.child_ids[0]);
    let guardian = world.guardians_of(child)[0];
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, true)
        .unwrap();
    world
        .decide_consent(guardian, child, Purpose::GroupCommunication, false)
        .unwrap();
    world.publish(teacher, group, &[vec![child]]).unwrap();
    let (second, media) = world.publish(teacher, group, &[vec![]]).unwrap();
    world
        .post(
            teacher,
            second,
            PostAction::RemoveMedia {
                media_id: media[0],
                reason: REMOVAL_REASON.into(),
            },
        )
        .unwrap();
    let conversation_id = kring_domain::ConversationId::generate();
    world
        .conversation(
            Actor::Person(guardian),
            conversation_id,
            kring_domain::conversation::ConversationAction::Start {
                conversation_id,
                child_id: child,
                participants: vec![],
                message_id: kring_domain::MessageId::generate(),
                body: "Hoe gaat het?".into(),
            },
        )
        .unwrap();
    let from = kring_domain::child::earliest_absence_day(world.now, 1);
    world
        .child(
            Actor::Person(guardian),
            child,
            ChildAction::ReportAbsence {
                child_id: child,
                absence_id: kring_domain::AbsenceId::generate(),
                from,
                to: from,
                reason: "Bruiloft".into(),
            },
        )
        .unwrap();
    world
}

fn meta(r: &kring_domain::simulation::Recorded) -> Metadata {
    Metadata::new(r.at, r.actor)
}

/// Seals and appends every event of the world's log, from `from` on.
async fn write<S: EventStore>(store: &S, vault: &KeyVault, world: &World, from: usize) {
    for r in &world.log[from..] {
        let sealed = vault.seal(&r.event, meta(r)).await.unwrap();
        store
            .append(&r.stream, ExpectedVersion::Any, vec![sealed])
            .await
            .unwrap();
    }
}

/// Every sealed field of every stored event, opened: (stream, opened payload, erased count).
async fn open_all<S: EventStore + Clone>(
    store: &S,
    vault: &KeyVault,
) -> Vec<(StreamName, serde_json::Value, usize)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 500).await.unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in batch {
            let mut payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
            let erased = vault.open_value(&mut payload).await.unwrap();
            // Every reader can still decode the event itself.
            e.decode().unwrap();
            out.push((e.stream, payload, erased));
        }
    }
    out
}

fn assert_no_plaintext(haystack: &[u8], place: &str) {
    for needle in PERSONAL {
        let found = haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes());
        assert!(!found, "{needle:?} found in plain text in {place}");
    }
}

/// Not personal, stored as it is: proves the search can see text in these files at all.
const CONTROL: &str = "De Regenboog";

fn assert_dir_holds_no_plaintext(dir: &Path) {
    let mut files = 0;
    let mut control_seen = false;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // A closing pool may remove its WAL and shared memory as we look.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert_no_plaintext(&bytes, &path.display().to_string());
        control_seen |= bytes
            .windows(CONTROL.len())
            .any(|w| w == CONTROL.as_bytes());
        files += 1;
    }
    assert!(
        files >= 2,
        "the data directory holds the log and the master key"
    );
    assert!(
        control_seen,
        "the school's name must be visible: the search works"
    );
}

/// The embedded layout: the event log in `events.db`, the vault in `vault.db`.
async fn sqlite_dir() -> (tempfile::TempDir, SqliteStore, KeyVault) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let master = MasterKey::from_env_or_data_dir(dir.path()).unwrap();
    let vault = KeyVault::open_sqlite(&dir.path().join("vault.db"), &master)
        .await
        .unwrap();
    (dir, store, vault)
}

/// The stored (wrapped) key of `subject`, read from `vault.db` by a connection of its own.
async fn wrapped_key(dir: &Path, subject: &str) -> Vec<u8> {
    use sqlx::Connection;
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.join("vault.db").display()))
            .await
            .unwrap();
    let wrapped = sqlx::query_scalar("SELECT wrapped_key FROM subject_keys WHERE subject = ?")
        .bind(subject)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    wrapped
}

#[tokio::test]
async fn no_plaintext_personal_data_rests_in_any_file_of_the_data_directory() {
    let (dir, store, vault) = sqlite_dir().await;
    let world = school();
    write(&store, &vault, &world, 0).await;
    let opened = open_all(&store, &vault).await;
    let text =
        serde_json::to_string(&opened.iter().map(|(_, p, _)| p).collect::<Vec<_>>()).unwrap();
    for needle in PERSONAL {
        assert!(
            text.contains(needle),
            "{needle:?} was written and opens again"
        );
    }
    vault.close().await;
    store.pool().close().await;
    assert_dir_holds_no_plaintext(dir.path());
}

#[tokio::test]
async fn the_store_refuses_unsealed_personal_data() {
    let (_dir, store, _vault) = sqlite_dir().await;
    let world = school();
    let r = world
        .log
        .iter()
        .find(|r| r.event.event_type() == "StaffJoined")
        .unwrap();
    let unsealed = NewEvent::from_domain(&r.event, meta(r)).unwrap();
    let err = store
        .append(&r.stream, ExpectedVersion::Any, vec![unsealed])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnsealedPersonalData { .. }),
        "{err:?}"
    );
    assert_eq!(store.head().await.unwrap(), 0, "nothing written");
}

#[tokio::test]
async fn erasing_a_person_and_a_child_erases_every_read_but_keeps_consent_history_and_the_chain() {
    let (dir, store, vault) = sqlite_dir().await;
    let mut world = school();
    write(&store, &vault, &world, 0).await;
    let child = world.child_ids[0];
    let guardian = world.guardians_of(child)[0];
    let director = Actor::Person(world.director);
    let before = world.log.len();
    world
        .child(
            director,
            child,
            ChildAction::RequestErasure { child_id: child },
        )
        .unwrap();
    world
        .person(
            director,
            guardian,
            PersonAction::RequestErasure {
                person_id: guardian,
            },
        )
        .unwrap();
    vault.erase(Subject::Child(child)).await.unwrap();
    vault.erase(Subject::Person(guardian)).await.unwrap();
    world
        .child(
            Actor::System,
            child,
            ChildAction::RecordErasure { child_id: child },
        )
        .unwrap();
    world
        .person(
            Actor::System,
            guardian,
            PersonAction::RecordErasure {
                person_id: guardian,
            },
        )
        .unwrap();
    write(&store, &vault, &world, before).await;

    let opened = open_all(&store, &vault).await;
    let text =
        serde_json::to_string(&opened.iter().map(|(_, p, _)| p).collect::<Vec<_>>()).unwrap();
    for gone in ["Kind1", "parent1@mail.example", "Hoe gaat het?", "Bruiloft"] {
        assert!(
            !text.contains(gone),
            "{gone:?} still readable after erasure"
        );
    }
    assert!(text.contains("Kind2"), "other children are untouched");
    assert!(opened.iter().map(|(_, _, erased)| erased).sum::<usize>() >= 5);
    // The consent history still lists each decision, with every non-personal fact.
    let decisions: Vec<&serde_json::Value> = opened
        .iter()
        .filter(|(s, p, _)| *s == StreamName::child(child) && p.get("granted").is_some())
        .map(|(_, p, _)| p)
        .collect();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["guardian_id"], guardian.to_string());
    assert_eq!(
        (
            decisions[0]["granted"].as_bool(),
            decisions[1]["granted"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(decisions[1]["policy_version"], 1);
    // Nothing new can be sealed for an erased subject.
    let err = vault
        .encrypt(Subject::Child(child), b"again")
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::SubjectErased(_)));
    let report = store.verify().await.unwrap();
    assert!(report.ok, "{:?}", report.failures);
    vault.close().await;
    store.pool().close().await;
    assert_dir_holds_no_plaintext(dir.path());
}

/// A removal's reason rests sealed for the person who removed: readable while they exist, and
/// erased with them (the removal itself, its ids and its time, stay).
#[tokio::test]
async fn a_removal_reason_is_sealed_for_its_remover_and_erased_with_them() {
    let (dir, store, vault) = sqlite_dir().await;
    let world = school();
    write(&store, &vault, &world, 0).await;
    let teacher = world.staff[1];
    let reason_of = |opened: &[(StreamName, serde_json::Value, usize)]| {
        opened
            .iter()
            .find(|(_, p, _)| p.get("media_id").is_some() && p.get("reason").is_some())
            .map(|(_, p, _)| p["reason"].clone())
            .expect("the removal is in the log")
    };
    let stored = store.read_all(0, 10_000).await.unwrap();
    let removal = stored
        .iter()
        .find(|r| r.event_type == "MediaRemoved")
        .unwrap();
    assert_eq!(removal.schema_version, 2);
    let payload: serde_json::Value = serde_json::from_str(&removal.payload).unwrap();
    assert_eq!(payload["reason"]["kind"], "given");
    assert_eq!(
        payload["reason"]["text"]["$sealed"]["subject"],
        serde_json::json!({"kind": "person", "id": teacher})
    );
    assert_eq!(
        reason_of(&open_all(&store, &vault).await),
        serde_json::json!({"kind": "given", "text": REMOVAL_REASON})
    );
    vault.erase(Subject::Person(teacher)).await.unwrap();
    assert_eq!(
        reason_of(&open_all(&store, &vault).await),
        serde_json::json!({"kind": "given", "text": "[erased]"})
    );
    assert!(store.verify().await.unwrap().ok);
    vault.close().await;
    store.pool().close().await;
    assert_dir_holds_no_plaintext(dir.path());
}

#[tokio::test]
async fn removed_post_body_and_media_can_no_longer_be_decrypted_by_anyone() {
    let (dir, store, vault) = sqlite_dir().await;
    let mut world = school();
    let post_id = world.post_ids[0];
    let (_, media_id) = world.media_ids[0];
    let photo = b"\xff\xd8\xff\xe0 fake jpeg bytes of a class photo";
    let stored_photo = vault
        .encrypt(Subject::Media(media_id), photo)
        .await
        .unwrap();
    assert_eq!(
        vault.decrypt(&stored_photo).await.unwrap().as_deref(),
        Some(&photo[..])
    );
    write(&store, &vault, &world, 0).await;
    let teacher = Actor::Person(world.staff[1]);
    let before = world.log.len();
    world
        .post(
            teacher,
            post_id,
            PostAction::Remove {
                reason: "Op verzoek van een ouder".into(),
            },
        )
        .unwrap();
    vault.erase(Subject::Post(post_id)).await.unwrap();
    vault.erase(Subject::Media(media_id)).await.unwrap();
    write(&store, &vault, &world, before).await;
    assert_eq!(
        vault.decrypt(&stored_photo).await.unwrap(),
        None,
        "media bytes unreadable"
    );
    let events = store
        .read_stream_to_end(&StreamName::post(post_id))
        .await
        .unwrap();
    let Event::Post(kring_domain::post::PostEvent::PostPublished(published)) =
        events[0].decode().unwrap()
    else {
        panic!()
    };
    assert!(vault.open(&published.body).await.unwrap().is_erased());
    // A second vault on the same file (a restart, another reader) cannot open it either.
    let master = MasterKey::from_env_or_data_dir(dir.path()).unwrap();
    let again = KeyVault::open_sqlite(&dir.path().join("vault.db"), &master)
        .await
        .unwrap();
    assert!(again.open(&published.body).await.unwrap().is_erased());
}

#[tokio::test]
async fn a_wrong_master_key_fails_at_start_up() {
    let (dir, _store, vault) = sqlite_dir().await;
    vault
        .encrypt(Subject::Child(kring_domain::ChildId::generate()), b"x")
        .await
        .unwrap();
    let db = dir.path().join("vault.db");
    let wrong = MasterKey::generate();
    let err = KeyVault::open_sqlite(&db, &wrong)
        .await
        .err()
        .expect("a wrong key must fail");
    assert!(matches!(err, VaultError::WrongMasterKey));
    assert!(err.to_string().contains("master key"));
    assert!(MasterKey::parse("too short").is_err());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "master.key is readable by its owner only");
    }
}

#[tokio::test]
async fn an_erased_key_leaves_no_copy_in_the_vault_file_its_wal_or_the_event_log() {
    let (dir, store, vault) = sqlite_dir().await;
    let world = school();
    write(&store, &vault, &world, 0).await;
    let (child, other) = (world.child_ids[0], world.child_ids[1]);
    let wrapped = wrapped_key(dir.path(), &format!("child:{child}")).await;
    let kept = wrapped_key(dir.path(), &format!("child:{other}")).await;
    vault.erase(Subject::Child(child)).await.unwrap();
    vault.close().await;
    store.pool().close().await;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        // A closing connection may remove its WAL and shared memory as we look.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        assert!(
            !bytes.windows(wrapped.len()).any(|w| w == wrapped),
            "wrapped key still in {}",
            path.display()
        );
        if bytes.windows(kept.len()).any(|w| w == kept) {
            files.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    // The search finds a key that was not erased, and only in the vault's own file.
    assert_eq!(files, vec!["vault.db".to_owned()]);
}

#[tokio::test]
async fn no_plaintext_personal_data_rests_in_a_postgres_dump_of_all_tables() {
    let db = kring_testkit::fresh_postgres_database("personal_data").await;
    let store = kring_store::postgres::PostgresStore::connect(db.url())
        .await
        .unwrap();
    let vault = KeyVault::open_postgres(db.url(), &MasterKey::generate())
        .await
        .unwrap();
    let mut world = school();
    write(&store, &vault, &world, 0).await;
    let child = world.child_ids[1];
    let before = world.log.len();
    world
        .child(
            Actor::Person(world.director),
            child,
            ChildAction::RequestErasure { child_id: child },
        )
        .unwrap();
    vault.erase(Subject::Child(child)).await.unwrap();
    world
        .child(
            Actor::System,
            child,
            ChildAction::RecordErasure { child_id: child },
        )
        .unwrap();
    write(&store, &vault, &world, before).await;
    let opened = open_all(&store, &vault).await;
    let text =
        serde_json::to_string(&opened.iter().map(|(_, p, _)| p).collect::<Vec<_>>()).unwrap();
    assert!(
        text.contains("Kind1") && !text.contains("Kind2"),
        "erasure of the second child only"
    );
    assert!(store.verify().await.unwrap().ok);
    let dump = pg_dump(db.url());
    assert!(
        dump.contains("ConsentDecided") && dump.contains(CONTROL),
        "the dump holds the log"
    );
    assert_no_plaintext(dump.as_bytes(), "the PostgreSQL dump");
}

/// `pg_dump` of a whole database, with the server's own client binary.
fn pg_dump(url: &str) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("bin/pg_dump"))
                .filter(|p| p.exists())
                .max()
        })
        .unwrap_or_else(|| "pg_dump".into());
    let out = std::process::Command::new(bin)
        .arg("--data-only")
        .arg(url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
