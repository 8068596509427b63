//! `verify`, `rebuild` and `status` against a real installation, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Backend, Installation, Story};
use kring_domain::StreamName;
use kring_projections::models::consent;
use kring_store::EventStoreExt;
use serde_json::Value;
use std::collections::BTreeMap;

async fn installation(backend: Backend) -> (Installation, Story) {
    let story = Story::play();
    let mut inst = Installation::new(backend).await;
    // Projected in two steps, as a running server would: incremental, not one rebuild.
    let half = story.world.log.len() / 2;
    let mut first = Story::play();
    first.world.log.truncate(half);
    inst.sync(&first.world).await;
    inst.sync(&story.world).await;
    (inst, story)
}

/// Each projection's (generation, position, checksum) from `status --checksums`.
fn states(inst: &Installation) -> BTreeMap<String, (i64, u64, String)> {
    let status = inst
        .run(&["status", "--checksums", "--format", "json"])
        .ok()
        .json();
    status["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                (
                    p["generation"].as_i64().unwrap(),
                    p["position"].as_u64().unwrap(),
                    p["checksum"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

async fn tamper(inst: &Installation, position: u64) {
    let sql = "UPDATE events SET payload = REPLACE(payload, '\"granted\":false', '\"granted\":true') WHERE position = $1";
    assert_eq!(execute(inst, sql, position).await, 1);
}

/// Runs `sql` with `position` as `$1` on the installation's event log; the rows it changed.
async fn execute(inst: &Installation, sql: &str, position: u64) -> u64 {
    match &inst.database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let n = sqlx::query(sql)
                .bind(i64::try_from(position).unwrap())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            n.rows_affected()
        }
        None => {
            let url = format!("sqlite://{}", inst.data_dir.join("events.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let n = sqlx::query(sql)
                .bind(i64::try_from(position).unwrap())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            n.rows_affected()
        }
    }
}

async fn verify_passes_then_names_the_tampered_event(backend: Backend) {
    let (inst, story) = installation(backend).await;
    let ok = inst.run(&["verify", "--format", "json"]).ok().json();
    assert_eq!(ok["ok"], true, "{ok:#}");
    assert_eq!(ok["chain"]["events_checked"], story.world.log.len());
    let checks = ok["read_models"].as_array().unwrap();
    assert_eq!(
        checks.len(),
        kring_replay_tool::rebuild::projection_names().len()
    );
    assert!(checks
        .iter()
        .all(|c| c["ok"] == true && c["checksum"] == c["replay_checksum"]));

    // Turn the withdrawal into a grant, behind the store's back.
    let child = inst
        .system
        .store
        .read_stream_to_end(&StreamName::child(story.child))
        .await
        .unwrap();
    let withdrawal = child
        .iter()
        .find(|r| r.payload.contains("\"granted\":false"))
        .unwrap();
    tamper(&inst, withdrawal.position).await;

    let bad = inst.run(&["verify", "--format", "json"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert_eq!(bad.stderr.lines().count(), 1, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("verify failed: hash chain broken at event"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains(&withdrawal.event_id.to_string()),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr
            .contains(&format!("position {}", withdrawal.position)),
        "{}",
        bad.stderr
    );
    let report = bad.json();
    assert_eq!(report["ok"], false);
    let failures = report["chain"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "one stream broken: {failures:?}");
    assert_eq!(
        failures[0]["event_id"],
        withdrawal.event_id.to_string().as_str()
    );
    assert_eq!(failures[0]["position"], withdrawal.position);
    // The consent read model was projected from the true event; a replay of the tampered log
    // disagrees, and says so.
    let consent = report["read_models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "consent")
        .unwrap()
        .clone();
    assert_eq!(consent["ok"], false);
    assert!(consent["problem"]
        .as_str()
        .unwrap()
        .contains("differs from a fresh replay"));
}

async fn rebuild_leaves_every_read_model_as_it_was(backend: Backend) {
    let (inst, story) = installation(backend).await;
    let before = states(&inst);
    assert_eq!(
        before.len(),
        kring_replay_tool::rebuild::projection_names().len()
    );
    let history = |db| async move {
        consent::consent_history(db, story.child, None, None, None)
            .await
            .unwrap()
    };
    let history_before = history(&inst.system.db).await;
    assert_eq!(history_before.len(), story.decisions.len());

    let rebuilt = inst.run(&["rebuild", "--format", "json"]).ok().json();
    assert_eq!(rebuilt["events"], story.world.log.len());
    assert!(rebuilt["events_per_second"].as_f64().unwrap() > 0.0);

    let after = states(&inst);
    for (name, (generation, position, checksum)) in &before {
        let (g, p, c) = &after[name];
        assert_eq!(c, checksum, "{name}: same content");
        assert_eq!(*p, *position, "{name}: same position");
        assert_eq!(*g, generation + 1, "{name}: a fresh generation serves");
    }
    assert_eq!(history(&inst.system.db).await, history_before);

    // One read model alone; the others keep their generation.
    inst.run(&[
        "rebuild",
        "--projection",
        "consent",
        "--projection",
        "consent",
    ])
    .ok();
    let once_more = states(&inst);
    for (name, (generation, _, checksum)) in &after {
        let (g, _, c) = &once_more[name];
        assert_eq!(c, checksum);
        let expected = if name == "consent" {
            generation + 1
        } else {
            *generation
        };
        assert_eq!(*g, expected, "{name}");
    }
    let verified = inst.run(&["verify"]).ok().json();
    assert_eq!(verified["ok"], Value::Bool(true));
}

async fn verify_finds_a_read_model_edited_behind_the_projectors_back(backend: Backend) {
    let (inst, story) = installation(backend).await;
    // The serving copy claims consent held after the withdrawal.
    let sql =
        "UPDATE consent_history_g1 SET effective_after = 1 WHERE child_id = $1 AND granted = 0";
    let n = sqlx::query(sql)
        .bind(story.child.to_string())
        .execute(inst.system.db.pool())
        .await
        .unwrap();
    assert_eq!(n.rows_affected(), 1);
    let out = inst.run(&["verify", "--format", "json"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("read model consent: table consent_history differs from a fresh replay"),
        "{}",
        out.stderr
    );
    let report = out.json();
    assert_eq!(report["chain"]["ok"], true, "the log itself is intact");
    let bad: Vec<&str> = report["read_models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(bad, vec!["consent"]);
}

async fn verify_holds_the_log_against_its_signed_anchors(backend: Backend) {
    let (inst, _story) = installation(backend).await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("anchor.key");
    let anchors = keys.path().join("anchors");
    let (key, anchors) = (key.to_str().unwrap(), anchors.to_str().unwrap());
    let made = inst
        .run(&["anchor-key", "--anchor-key", key, "--format", "json"])
        .ok()
        .json();
    let public = made["public_key"].as_str().unwrap().to_owned();
    let again = inst.run(&["anchor-key", "--anchor-key", key]);
    assert_eq!(again.code, 4, "an existing key is never overwritten");

    let anchored = inst
        .run(&[
            "anchor",
            "--anchor-key",
            key,
            "--anchors",
            anchors,
            "--format",
            "json",
        ])
        .ok()
        .json();
    let head = inst.system.store.head().await.unwrap();
    assert_eq!(anchored["anchor"]["position"], head);
    assert_eq!(anchored["anchor"]["key_id"], made["key_id"]);
    let verify = [
        "verify",
        "--anchors",
        anchors,
        "--anchor-public-key",
        &public,
    ];
    let ok = inst
        .run(&[&verify[..], &["--format", "json"]].concat())
        .ok()
        .json();
    assert_eq!(ok["chain"]["anchors_checked"], 1);
    assert_eq!(ok["chain"]["global_chain"], "checked");
    assert_eq!(ok["chain"]["head"], head);
    let missing_key = inst.run(&["verify", "--anchors", anchors]);
    assert_eq!(missing_key.code, 2, "{}", missing_key.stderr);

    // Cut off the anchored head: the log is consistent in itself, the anchor names it.
    assert_eq!(
        execute(&inst, "DELETE FROM events WHERE position = $1", head).await,
        1
    );
    let bad = inst.run(&verify);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(
        bad.stderr.contains(&format!(
            "verify failed: anchor at line 1: the log ends at position {}, before the anchored position {head}",
            head - 1
        )),
        "{}",
        bad.stderr
    );
    let report = bad.json();
    assert_eq!(report["chain"]["failures"].as_array().unwrap().len(), 0);
    assert_eq!(
        report["chain"]["findings"][0]["kind"],
        "log_ends_before_anchor"
    );
    let refused = inst.run(&["anchor", "--anchor-key", key, "--anchors", anchors]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("no longer matches the log"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_to_string(anchors).unwrap().lines().count(),
        1,
        "nothing appended"
    );
}

kring_testkit::on_both_backends!(sqlite: |_| async { common::Backend::Sqlite }, postgres: |_| async { common::Backend::Postgres };
    verify_holds_the_log_against_its_signed_anchors,
    verify_passes_then_names_the_tampered_event,
    rebuild_leaves_every_read_model_as_it_was,
    verify_finds_a_read_model_edited_behind_the_projectors_back,
);
