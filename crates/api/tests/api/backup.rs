//! `kring-api backup` and `kring-api restore` (the real binary) on a real installation served
//! over a real socket: a restore never brings back what was erased after the backup was taken,
//! and every refusal changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::school_server;
use kring_api::server::{start, ServeOptions};
use kring_domain::access::Subject;
use kring_domain::{MediaId, StreamName};
use kring_projections::Config;
use school_server::{Api, School};
use serde_json::{json, Value};
use sqlx::{Connection, SqliteConnection};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use uuid::Uuid;

/// Runs the `kring-api` binary with `args`, with none of the caller's `KRING_*` settings.
fn kring_api(args: &[&str]) -> Output {
    kring_api_with(args, &[])
}

/// Runs the `kring-api` binary with `args` and these `KRING_*` settings only.
fn kring_api_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kring-api"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KRING_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` whose bytes contain `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

async fn connect(path: &Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

/// The wrapped key of `subject` in the vault file `path`.
async fn wrapped(path: &Path, subject: Subject) -> Vec<u8> {
    let mut conn = connect(path).await;
    let key: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM subject_keys WHERE subject = ?")
            .bind(kring_store::vault::subject_name(subject))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    key.expect("a live key")
}

async fn tables(path: &Path) -> Vec<String> {
    let mut conn = connect(path).await;
    let names = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    names
}

fn jpeg(marker: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    for _ in 0..64 {
        bytes.extend_from_slice(marker.as_bytes());
    }
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

/// Uploads a photo of `child` as `teacher` and posts it to `group`: the media id.
async fn post_photo(api: &Api, s: &School) -> Uuid {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/media", api.running.url()))
        .bearer_auth(api.person(s.teacher))
        .header("content-type", "image/jpeg")
        .body(jpeg("SANNE-ON-THE-SWING"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let media: Value = res.json().await.unwrap();
    let media_id: Uuid = media["media_id"].as_str().unwrap().parse().unwrap();
    let r = api
        .post(
            &format!("/v1/groups/{}/posts", s.group),
            Some(&api.person(s.teacher)),
            json!({"body": "Buiten spelen", "media": [{"media_id": media_id, "tagged_children": [s.child_a]}]}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    media_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_never_brings_back_what_was_erased_after_the_backup() {
    let mut api = Api::sqlite().await;
    let config = api.running.state.system.config.clone();
    let dir = config.data_dir.clone();
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let media_id = post_photo(&api, &s).await;
    api.caught_up().await;

    // The vault is a file of its own; the event log holds no keys.
    assert!(tables(&dir.join("vault.db"))
        .await
        .contains(&"subject_keys".to_owned()));
    assert!(!tables(&dir.join("events.db"))
        .await
        .contains(&"subject_keys".to_owned()));

    let subjects = [
        Subject::Person(mum),
        Subject::Child(s.child_a),
        Subject::Media(MediaId::from_uuid(media_id)),
    ];
    let mut keys = Vec::new();
    for subject in subjects {
        keys.push(wrapped(&dir.join("vault.db"), subject).await);
    }

    // Online: the server keeps running.
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("monday");
    let out = kring_api(&["backup", "--data-dir", arg(&dir), "--to", arg(&backup)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(backup.join("kring-backup.json").is_file());
    assert!(
        !backup.join("erasures.ledger").exists(),
        "never in a backup"
    );
    for key in &keys {
        assert_eq!(
            holding(&backup, key),
            vec![backup.join("vault.db")],
            "the backup holds the keys of that moment"
        );
    }
    assert!(backup
        .join("media")
        .join(format!("{media_id}.kmedia"))
        .is_file());
    let head_at_backup = api.head().await;

    // After the backup: the parent and the child are erased through the API.
    api.post(
        &format!("/v1/people/{mum}/erasure"),
        Some(&api.operator()),
        json!({}),
    )
    .await
    .expect(202);
    let r = api
        .post(
            &format!("/v1/children/{}/erasure", s.child_a),
            Some(&api.operator()),
            json!({}),
        )
        .await
        .expect(202);
    assert_eq!(r.body["removed_media"], json!([media_id]));
    let ledger = std::fs::read_to_string(dir.join("erasures.ledger")).unwrap();
    for subject in subjects {
        assert!(
            ledger.contains(&kring_store::vault::subject_name(subject)),
            "{subject:?} in the ledger: {ledger}"
        );
    }
    assert!(api.head().await > head_at_backup);

    // A restore is refused while the server runs, and changes nothing.
    let out = kring_api(&["restore", "--data-dir", arg(&dir), "--from", arg(&backup)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("in use"), "{}", text(&out));
    assert!(api.head().await > head_at_backup);

    api.running.stop();
    let out = kring_api(&["restore", "--data-dir", arg(&dir), "--from", arg(&backup)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("erased again 3 subjects"),
        "{}",
        text(&out)
    );
    assert!(dir.join("erasures.ledger").is_file(), "the ledger stays");
    assert!(!dir
        .join("media")
        .join(format!("{media_id}.kmedia"))
        .exists());

    // No copy of the erased keys, and no plain text of theirs, anywhere in the data directory.
    for key in &keys {
        assert!(holding(&dir, key).is_empty(), "{:?}", holding(&dir, key));
    }
    for plain in ["Mama", "mama@home.example", "Sanne", "SANNE-ON-THE-SWING"] {
        assert!(
            holding(&dir, plain.as_bytes()).is_empty(),
            "{plain:?} in {:?}",
            holding(&dir, plain.as_bytes())
        );
    }

    // The restored installation serves the backup's log, with the erased fields erased.
    api.running = start(ServeOptions::new(Config {
        data_dir: dir.clone(),
        database_url: None,
        eventstore_url: None,
    }))
    .await
    .unwrap();
    // The backup's log is back; what follows it (the start-up sweep may already be writing)
    // can only be the erasures the ledger re-applies.
    let head = api.head().await;
    assert!(
        head >= head_at_backup,
        "the backup's log is back: {head} < {head_at_backup}"
    );
    let after = api
        .running
        .state
        .system
        .store
        .read_all(head_at_backup, 1000)
        .await
        .unwrap();
    for e in &after {
        assert!(
            matches!(
                e.actor,
                kring_domain::Actor::Operator | kring_domain::Actor::System
            ),
            "{} by {:?} after the restore",
            e.event_type,
            e.actor
        );
    }
    let vault = &api.running.state.system.vault;
    for subject in subjects {
        assert!(vault.is_erased(subject).await.unwrap(), "{subject:?}");
    }
    let me = api.get_fresh("/v1/me", &api.person(mum)).await.expect(200);
    assert_eq!(me.body["display_name"], "[erased]");
    assert_eq!(me.body["email"], "[erased]");
    let group = api
        .get_fresh(&format!("/v1/groups/{}", s.group), &api.person(s.teacher))
        .await
        .expect(200);
    assert!(!group.text.contains("Sanne"), "{}", group.text);
    assert!(group.text.contains("[erased]"), "{}", group.text);
    assert!(
        group.text.contains("Daan"),
        "the other child is restored: {}",
        group.text
    );
    // At start-up the erasures the restored log does not show are recorded again from the
    // ledger, ending the parent's relations.
    kring_api::erasure::sweep(&api.running.state).await.unwrap();
    let mut recorded = false;
    for _ in 0..100 {
        let person = api.event_types(StreamName::person(mum)).await;
        let child = api.event_types(StreamName::child(s.child_a)).await;
        if person.last().map(String::as_str) == Some("PersonErased")
            && child.last().map(String::as_str) == Some("ChildErased")
        {
            recorded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recorded, "the erasures are in the log again");
    let group = api
        .get_fresh(&format!("/v1/groups/{}", s.group), &api.person(s.teacher))
        .await
        .expect(200);
    assert!(
        !group.text.contains(&mum.to_string()),
        "her guardianship ended: {}",
        group.text
    );
    let photo = reqwest::Client::new()
        .get(format!("{}/v1/media/{media_id}", api.running.url()))
        .bearer_auth(api.person(s.teacher))
        .send()
        .await
        .unwrap();
    assert!(
        !photo.status().is_success(),
        "the erased child's photo does not open: {}",
        photo.status()
    );
}

/// The same on PostgreSQL: `pg_dump` takes log, vault and read models from one snapshot;
/// `pg_restore` puts them back in one transaction and the ledger's erasures are applied again
/// before anything reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restore_never_brings_back_what_was_erased_after_the_backup() {
    let mut api = Api::postgres("backup").await;
    let config = api.running.state.system.config.clone();
    let dir = config.data_dir.clone();
    let url = config.database_url.clone().unwrap();
    let env = [("KRING_DATABASE_URL", url.as_str())];
    let s = School::build(&api, "De Regenboog").await;
    let mum = s.guardian(&api, s.child_a, "Mama").await;
    let media_id = post_photo(&api, &s).await;
    api.caught_up().await;
    let subjects = [
        Subject::Person(mum),
        Subject::Child(s.child_a),
        Subject::Media(MediaId::from_uuid(media_id)),
    ];

    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("monday");
    let out = kring_api_with(
        &["backup", "--data-dir", arg(&dir), "--to", arg(&backup)],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("kring-backup.json")).unwrap()).unwrap();
    assert_eq!(manifest["backend"], "postgres");
    assert!(backup.join("database.pgdump").is_file());
    assert!(!backup.join("vault.db").exists() && !backup.join("erasures.ledger").exists());
    let head_at_backup = api.head().await;

    for path in [
        format!("/v1/people/{mum}/erasure"),
        format!("/v1/children/{}/erasure", s.child_a),
    ] {
        api.post(&path, Some(&api.operator()), json!({}))
            .await
            .expect(202);
    }
    // A backup of PostgreSQL does not restore into the embedded installation.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = kring_api(&[
        "restore",
        "--data-dir",
        arg(elsewhere.path()),
        "--from",
        arg(&backup),
        "--without-erasure-ledger",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    api.running.stop();
    let out = kring_api_with(
        &["restore", "--data-dir", arg(&dir), "--from", arg(&backup)],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("erased again 3 subjects"),
        "{}",
        text(&out)
    );
    api.running = start(ServeOptions::new(config).without_rate_limits())
        .await
        .unwrap();
    assert!(api.head().await >= head_at_backup);
    let vault = &api.running.state.system.vault;
    for subject in subjects {
        assert!(vault.is_erased(subject).await.unwrap(), "{subject:?}");
    }
    assert!(!dir
        .join("media")
        .join(format!("{media_id}.kmedia"))
        .exists());
    let me = api.get_fresh("/v1/me", &api.person(mum)).await.expect(200);
    assert_eq!(me.body["display_name"], "[erased]");
    let group = api
        .get_fresh(&format!("/v1/groups/{}", s.group), &api.person(s.teacher))
        .await
        .expect(200);
    assert!(!group.text.contains("Sanne"), "{}", group.text);
    assert!(group.text.contains("Daan"), "{}", group.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_refuse_bad_targets_and_change_nothing() {
    let api = Api::sqlite().await;
    let dir = api.running.state.system.config.data_dir.clone();
    School::build(&api, "De Regenboog").await;
    let work = tempfile::tempdir().unwrap();

    // A backup never goes into a directory that holds something.
    let busy = work.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "keep me").unwrap();
    let out = kring_api(&["backup", "--data-dir", arg(&dir), "--to", arg(&busy)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert_eq!(files_under(&busy), vec![busy.join("notes.txt")]);

    // A PostgreSQL server that cannot be reached: pg_dump's error, and no backup.
    let out = Command::new(env!("CARGO_BIN_EXE_kring-api"))
        .args(["backup", "--data-dir", arg(&dir), "--to"])
        .arg(work.path().join("pg"))
        .env("KRING_DATABASE_URL", "postgres://nowhere.invalid/kring")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("pg_dump"), "{}", text(&out));
    assert!(!work.path().join("pg").join("kring-backup.json").exists());
    // EventStoreDB installations are not backed up by kring-api.
    let out = Command::new(env!("CARGO_BIN_EXE_kring-api"))
        .args(["backup", "--data-dir", arg(&dir), "--to"])
        .arg(work.path().join("esdb"))
        .env("KRING_EVENTSTORE_URL", "esdb://nowhere.invalid:2113")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not supported"), "{}", text(&out));
    assert!(!work.path().join("esdb").exists());

    let backup = work.path().join("b");
    let out = kring_api(&["backup", "--data-dir", arg(&dir), "--to", arg(&backup)]);
    assert!(out.status.success(), "{}", text(&out));
    api.running.stop();
    let events = std::fs::read(dir.join("events.db")).unwrap();

    // Not a backup; a damaged backup; a data directory without its ledger.
    let out = kring_api(&["restore", "--data-dir", arg(&dir), "--from", arg(&busy)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a complete Kring backup"));
    let damaged = work.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for file in files_under(&backup) {
        let to = damaged.join(file.strip_prefix(&backup).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
    let mut bytes = std::fs::read(damaged.join("events.db")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(damaged.join("events.db"), bytes).unwrap();
    let out = kring_api(&["restore", "--data-dir", arg(&dir), "--from", arg(&damaged)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("checksum"), "{}", text(&out));
    // Another master key than the backup's: the staged vault does not open.
    let out = Command::new(env!("CARGO_BIN_EXE_kring-api"))
        .args(["restore", "--data-dir", arg(&dir), "--from", arg(&backup)])
        .env(
            "KRING_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("master key"), "{}", text(&out));
    std::fs::rename(dir.join("erasures.ledger"), work.path().join("ledger")).unwrap();
    let out = kring_api(&["restore", "--data-dir", arg(&dir), "--from", arg(&backup)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no erasure ledger"), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.join("events.db")).unwrap(),
        events,
        "nothing was touched"
    );
    assert!(!dir.join(".restore-staging").exists());
}
