//! `serve --demo`: the seed goes through the real HTTP API, writes `demo.json` once, and the
//! school it makes behaves as documented (a withdrawal withholds a photo from other parents).
#![allow(clippy::unwrap_used)]

use kring_api::server::{start, ServeOptions};
use kring_projections::Config;
use serde_json::Value;

async fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn seeded(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url,
        eventstore_url: None,
    };
    let running = start(ServeOptions::new(config).without_rate_limits())
        .await
        .unwrap();
    let path = kring_api::demo::seed(&running.state, &running.url())
        .await
        .unwrap();
    let demo: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let head = running.state.system.store.head().await.unwrap();
    // A second seed keeps the school: nothing more is written.
    kring_api::demo::seed(&running.state, &running.url())
        .await
        .unwrap();
    assert_eq!(running.state.system.store.head().await.unwrap(), head);

    let base = running.url();
    let people = &demo["people"];
    let token = |who: &str| people[who]["token"].as_str().unwrap().to_owned();
    let photo = demo["posts"][0]["media"][1].as_str().unwrap();
    let daan = demo["children"][1]["child_id"].as_str().unwrap();
    // The photo shows Daan, whose second parent withdrew group communication.
    let warnings = demo["posts"][0]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["child_id"], daan);
    assert_eq!(warnings[0]["withheld_from"], 4);
    let (status, _) = get(
        &base,
        &token("parent_sanne_1"),
        &format!("/v1/media/{photo}?min_position={head}"),
    )
    .await;
    assert_eq!(status, 404, "Sanne's parent may not see a photo of Daan");
    let (status, _) = get(
        &base,
        &token("parent_daan_1"),
        &format!("/v1/media/{photo}"),
    )
    .await;
    assert_eq!(status, 200, "Daan's own parent sees it");
    let (status, viewers) = get(
        &base,
        &token("teacher_groep_3"),
        &format!("/v1/media/{photo}/viewers"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(viewers["withheld"].as_array().unwrap().len(), 4);
    // Every demo person's token works and the profile shows their own e-mail only to them.
    let (status, me) = get(&base, &token("director"), "/v1/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "directie@regenboog.example");
    let (status, feed) = get(&base, &token("parent_liam_1"), "/v1/feed").await;
    assert_eq!(status, 200);
    let posts = feed["posts"].as_array().unwrap();
    assert_eq!(
        posts.len(),
        1,
        "a Groep 6 parent (Liam moved there) sees only the school post: {posts:?}"
    );

    // The director's year: settings, policy version 2, a moved child.
    let school = demo["school_id"].as_str().unwrap();
    let (_, settings) = get(
        &base,
        &token("teacher_groep_3"),
        &format!("/v1/schools/{school}/settings"),
    )
    .await;
    assert_eq!(settings["retention_days"], 730);
    assert_eq!(
        settings["default_quiet_hours"]["weekly"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(demo["consent_policy_version"], 2);
    let (_, consents) = get(
        &base,
        &token("parent_sanne_1"),
        &format!(
            "/v1/children/{}/consents",
            demo["children"][0]["child_id"].as_str().unwrap()
        ),
    )
    .await;
    let school_communication = consents["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "school_communication")
        .unwrap();
    assert_eq!(school_communication["needs_decision"], true, "{consents}");
    assert_eq!(school_communication["effective"], false);
    let liam = &demo["children"][3];
    assert_eq!(liam["first_name"], "Liam");
    assert_eq!(demo["moved"]["child_id"], liam["child_id"]);
    let (_, group6) = get(
        &base,
        &token("director"),
        &format!("/v1/groups/{}", liam["group_id"].as_str().unwrap()),
    )
    .await;
    assert!(group6
        .to_string()
        .contains(liam["child_id"].as_str().unwrap()));

    // The year transition on the demo school: Groep 3 goes up into a new Groep 4, Groep 5
    // joins Groep 6, both old groups end. The preview is what applying writes, once.
    let groups = demo["groups"].as_array().unwrap();
    let (g3, g5, g6) = (
        &groups[0]["group_id"],
        &groups[1]["group_id"],
        &groups[2]["group_id"],
    );
    let body = |dry_run: bool| {
        serde_json::json!({"dry_run": dry_run, "effective_on": "2027-08-30",
            "new_groups": [{"name": "Groep 4"}],
            "groups": [
                {"group_id": g3, "children_to_new": "Groep 4", "archive": true},
                {"group_id": g5, "children_to": g6, "archive": true}]})
    };
    let transition = |dry_run: bool| {
        let base = base.clone();
        let token = token("director");
        let body = body(dry_run);
        async move {
            let res = reqwest::Client::new()
                .post(format!("{base}/v1/schools/{school}/year-transition"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let preview = transition(true).await;
    let kinds: Vec<&str> = preview["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "group_created",
            "child_moved",
            "child_moved",
            "child_moved",
            "child_moved",
            "child_moved",
            "group_archived",
            "group_archived"
        ]
    );
    let applied = transition(false).await;
    assert_eq!(applied["changes"], preview["changes"]);
    assert_eq!(transition(false).await["changes"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_school_on_sqlite() {
    seeded(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_school_on_postgres() {
    let pg = kring_testkit::fresh_postgres_database("demo").await;
    seeded(Some(pg.url().to_owned())).await;
}
