//! `serve --demo`: the seed goes through the real HTTP API, writes `demo.json` once, and the
//! school it makes behaves as documented (a withdrawal withholds a photo from other parents).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    let running = start(ServeOptions::new(config)).await.unwrap();
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
        "a Groep 5 parent sees only the school post: {posts:?}"
    );
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
