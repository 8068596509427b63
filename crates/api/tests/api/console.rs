//! The compliance console against the real `kring-api serve --demo` binary: its HTTP rules
//! (plain requests) and the officer's path in headless Chromium over WebDriver.
//!
//! The browser test needs `chromium` and `chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `scripts/test` installs them when missing). Without them it fails, with
//! the reason. With `KRING_CONSOLE_SCREENSHOTS=DIR` it saves a screenshot of each main page
//! there (how `docs/console/` is made).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use crate::oidc_provider;
use oidc_provider::Provider;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kring-api");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process ended when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kring-api serve --demo` on a free port, in a fresh directory: on SQLite, or on the
/// PostgreSQL database `database` names.
struct Demo {
    _server: Running,
    _dir: tempfile::TempDir,
    data: PathBuf,
    base: String,
    demo: Value,
}

impl Demo {
    async fn start(database: Option<String>) -> Self {
        Self::start_with(database, None).await
    }

    /// The demo server, signing the console in through `provider` too when given (its issuer
    /// trusted for bearer tokens as well, with the console's client id as audience).
    async fn start_with(database: Option<String>, provider: Option<&Provider>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let base = format!("http://127.0.0.1:{}", free_port());
        let mut server = Command::new(BIN);
        server.arg("serve");
        if let Some(p) = provider {
            server
                .args(["--oidc-issuer", &p.issuer, "--oidc-jwks", &p.jwks_url()])
                .args(["--oidc-audience", oidc_provider::CLIENT_ID])
                .args(["--oidc-client-id", oidc_provider::CLIENT_ID])
                .env("KRING_OIDC_CLIENT_SECRET", oidc_provider::CLIENT_SECRET)
                .env("KRING_PUBLIC_URL", &base);
        }
        server
            .args(["--demo", "--rate-per-address", "0", "--rate-per-token", "0"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg(base.trim_start_matches("http://"))
            .env_remove("KRING_DATABASE_URL")
            .env_remove("KRING_EVENTSTORE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database {
            server.env("KRING_DATABASE_URL", url);
        }
        let server = Running(server.spawn().unwrap());
        // The seed writes demo.json when the school is ready.
        let path = data.join("demo.json");
        let deadline = Instant::now() + Duration::from_secs(180);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "the demo server did not seed in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let demo: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        Self {
            _server: server,
            _dir: dir,
            data,
            base,
            demo,
        }
    }

    fn person(&self, who: &str) -> String {
        self.demo["people"][who]["person_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn token(&self, who: &str) -> String {
        self.demo["people"][who]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn daan(&self) -> String {
        self.demo["children"][1]["child_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A one-time sign-in link, as `kring-api token --console` prints it.
    fn link(&self, who: &str) -> String {
        let out = Command::new(BIN)
            .args(["token", "--console", "--person", &self.person(who)])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--url", &self.base])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(
            link.starts_with(&format!("{}/console/sign-in?link=", self.base)),
            "{link}"
        );
        link
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn secret(link: &str) -> String {
    link.split_once("link=").unwrap().1.to_owned()
}

/// Posts the link's secret as the sign-in form does.
async fn sign_in(base: &str, link: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/console/sign-in"))
        .form(&[("link", secret(link))])
        .send()
        .await
        .unwrap()
}

fn session_cookie(res: &reqwest::Response) -> String {
    let set = res
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=3600",
    ] {
        assert!(set.contains(attribute), "{set}: no {attribute}");
    }
    set.split(';').next().unwrap().to_owned()
}

async fn get(base: &str, cookie: &str, path: &str) -> (u16, String) {
    let res = client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

async fn api(base: &str, token: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
    let res = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

#[tokio::test]
async fn console_sign_in_sessions_csrf_and_scope() {
    sign_in_sessions_csrf_and_scope(None).await;
}

#[tokio::test]
async fn console_sign_in_sessions_csrf_and_scope_on_postgres() {
    let db = kring_testkit::fresh_postgres_database("console").await;
    sign_in_sessions_csrf_and_scope(Some(db.url().to_owned())).await;
}

async fn sign_in_sessions_csrf_and_scope(database: Option<String>) {
    let demo = Demo::start(database).await;
    let base = &demo.base;

    // A parent's link is refused, and so is a link used twice.
    let parent = sign_in(base, &demo.link("parent_daan_1")).await;
    assert_eq!(parent.status().as_u16(), 403);
    assert!(parent.headers().get("set-cookie").is_none());
    let link = demo.link("compliance_officer");
    let first = sign_in(base, &link).await;
    assert_eq!(first.status().as_u16(), 303);
    let cookie = session_cookie(&first);
    assert_eq!(
        sign_in(base, &link).await.status().as_u16(),
        401,
        "a link signs in once"
    );
    // An API bearer token is no sign-in link.
    let bearer = format!(
        "{base}/console/sign-in?link={}",
        demo.token("compliance_officer")
    );
    assert_eq!(sign_in(base, &bearer).await.status().as_u16(), 401);

    // The session's pages carry the security headers.
    let res = client()
        .get(format!("{base}/console"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let h = res.headers();
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    let home = res.text().await.unwrap();
    assert!(!home.contains("<script"), "the console has no JavaScript");
    let csrf = csrf_of(&home);

    // A form posted without its CSRF token, or with another, is refused and changes nothing.
    for body in [vec![], vec![("csrf", "0".repeat(64))]] {
        let res = client()
            .post(format!("{base}/console/sign-out"))
            .header("cookie", &cookie)
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 403);
    }
    let daan = demo.daan();
    let erase = client()
        .post(format!("{base}/console/children/{daan}/erasure"))
        .header("cookie", &cookie)
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(erase.status().as_u16(), 403);
    let (status, page) = get(base, &cookie, &format!("/console/children/{daan}")).await;
    assert_eq!(status, 200, "still signed in, Daan not erased: {page}");
    assert!(page.contains("Daan K."), "{page}");
    // A child's export holds its meeting booking; the place is the teacher's text, withheld.
    let booked = demo.demo["children"][0]["child_id"].as_str().unwrap();
    let booking = demo.demo["meeting_rounds"][0]["bookings"][0]
        .as_str()
        .unwrap();
    let (status, export) = get(base, &cookie, &format!("/console/children/{booked}/export")).await;
    assert_eq!(status, 200);
    assert!(
        export.contains("MeetingBooked") && export.contains(booking),
        "{export}"
    );
    assert!(!export.contains("Lokaal 3"), "{export}");

    // Another school's child is not found.
    let operator = demo.demo["operator_token"].as_str().unwrap();
    let other = api(
        base,
        operator,
        reqwest::Method::POST,
        "/v1/schools",
        serde_json::json!({"name": "De Linde", "brin": "98YY"}),
    )
    .await;
    let school = other["school_id"].as_str().unwrap();
    let director = api(
        base,
        operator,
        reqwest::Method::POST,
        &format!("/v1/schools/{school}/staff"),
        serde_json::json!({"display_name": "Directeur Linde", "email": "d@linde.example", "role": "director"}),
    )
    .await;
    let director_token = Command::new(BIN)
        .args(["token", "--person", director["person_id"].as_str().unwrap()])
        .arg("--data-dir")
        .arg(&demo.data)
        .output()
        .unwrap();
    let director_token = String::from_utf8(director_token.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let group = api(
        base,
        &director_token,
        reqwest::Method::POST,
        &format!("/v1/schools/{school}/groups"),
        serde_json::json!({"name": "Groep 1"}),
    )
    .await;
    let child = api(
        base,
        &director_token,
        reqwest::Method::POST,
        &format!(
            "/v1/groups/{}/children",
            group["group_id"].as_str().unwrap()
        ),
        serde_json::json!({"first_name": "Daan", "last_initial": "L"}),
    )
    .await;
    let other_child = child["child_id"].as_str().unwrap();
    let (status, _) = get(base, &cookie, &format!("/console/children/{other_child}")).await;
    assert_eq!(status, 404);
    let (status, _) = get(
        base,
        &cookie,
        &format!("/console/children/{other_child}/export"),
    )
    .await;
    assert_eq!(status, 404);
    let (_, found) = get(base, &cookie, "/console/children?name=daan").await;
    assert!(
        found.contains(&daan) && !found.contains(other_child),
        "{found}"
    );

    // The pages' reads are in the access log, as the API's are.
    let log = api(
        base,
        &demo.token("compliance_officer"),
        reqwest::Method::GET,
        &format!("/v1/audit/access-log?subject=child:{daan}"),
        Value::Null,
    )
    .await;
    let reasons: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for reason in [
        "GET /console/search",
        "GET /v1/children/{child_id}/consents",
        "GET /v1/children/{child_id}/consents/history",
    ] {
        assert!(reasons.contains(&reason), "{reason} not in {reasons:?}");
    }

    // Verification on this backend: every read model equals a fresh replay.
    let (status, page) = verify(base, &cookie, &csrf, "en").await;
    assert_eq!(status, 200, "{page}");
    let verdicts = attrs(&page, "data-ok");
    assert!(
        verdicts.len() >= 10 && verdicts.iter().all(|ok| ok == "true"),
        "{page}"
    );

    // Signing out with the token ends the session.
    let res = client()
        .post(format!("{base}/console/sign-out"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let (status, _) = get(base, &cookie, &format!("/console/children/{daan}")).await;
    assert_eq!(status, 303, "a signed-out session is sent to sign in");
}

/// A signed-in officer's cookie.
async fn officer(demo: &Demo) -> String {
    session_cookie(&sign_in(&demo.base, &demo.link("compliance_officer")).await)
}

/// A page in language `lang` (`Accept-Language`).
async fn get_in(base: &str, cookie: &str, path: &str, lang: &str) -> (u16, String) {
    let res = client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("accept-language", lang)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Posts the console's verification form.
async fn verify(base: &str, cookie: &str, csrf: &str, lang: &str) -> (u16, String) {
    let res = client()
        .post(format!("{base}/console/verify"))
        .header("cookie", cookie)
        .header("accept-language", lang)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The values of attribute `name` in `page`, in order.
fn attrs(page: &str, name: &str) -> Vec<String> {
    let needle = format!("{name}=\"");
    page.match_indices(&needle)
        .map(|(at, _)| {
            page[at + needle.len()..]
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn console_verify_names_a_tampered_read_model() {
    let demo = Demo::start(None).await;
    let base = &demo.base;
    let cookie = officer(&demo).await;
    let (status, page) = get(base, &cookie, "/console/verify").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page.contains("data-ok="),
        "nothing runs before it is asked for"
    );
    let csrf = csrf_of(&page);

    // Without the session's token the form is refused.
    let (status, _) = verify(base, &cookie, "0", "en").await;
    assert_eq!(status, 403);

    // An untouched installation: the log is intact and every read model equals its replay.
    let (status, page) = verify(base, &cookie, &csrf, "en").await;
    assert_eq!(status, 200, "{page}");
    let models = attrs(&page, "data-model");
    assert!(
        models.len() >= 10 && models.contains(&"consent".to_owned()),
        "{models:?}"
    );
    assert!(
        attrs(&page, "data-ok").iter().all(|ok| ok == "true"),
        "{page}"
    );
    assert!(page.contains("All is well"), "{page}");

    // A consent decision changed in the read model's table, behind the projector's back.
    let url = format!("sqlite://{}", demo.data.join("read.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let table: String = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'consent_history_g%' ORDER BY name DESC",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let changed = sqlx::query(&format!(
        "UPDATE {table} SET effective_after = 1 - effective_after WHERE rowid = (SELECT MIN(rowid) FROM {table})"
    ))
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    db.close().await;

    // Verification names that read model, and only that one, in either language.
    let (status, page) = verify(base, &cookie, &csrf, "en").await;
    assert_eq!(status, 200, "{page}");
    let failed: Vec<String> = page
        .match_indices("data-ok=\"false\"")
        .map(|(at, _)| attrs(&page[..at], "data-model").pop().unwrap())
        .collect();
    assert_eq!(failed, ["consent"], "{page}");
    assert!(page.contains("differs from a fresh replay"), "{page}");
    assert!(page.contains("table consent_history differs"), "{page}");
    assert!(
        page.contains("id=\"verify-result\""),
        "the log itself is intact: {page}"
    );
    assert!(page.contains("Something is wrong"), "{page}");
    let (_, page) = verify(base, &cookie, &csrf, "nl").await;
    assert!(page.contains("wijkt af van een verse herbouw"), "{page}");
    assert!(page.contains("Er klopt iets niet"), "{page}");
}

#[tokio::test]
async fn console_exports_lists_posts_and_speaks_both_languages() {
    use chrono::TimeZone as _;
    let demo = Demo::start(None).await;
    let base = &demo.base;
    let cookie = officer(&demo).await;
    let daan = demo.daan();
    let parent = demo.person("parent_daan_1");
    let teacher = demo.token("teacher_groep_3");
    let post = reqwest::Method::POST;

    // A conversation about Daan: the teacher writes, his parent answers.
    let talk = api(
        base,
        &teacher,
        post.clone(),
        "/v1/conversations",
        serde_json::json!({"child_id": daan, "body": "Daan was vandaag wat stil in de klas."}),
    )
    .await;
    let talk = talk["conversation_id"].as_str().unwrap().to_owned();
    api(
        base,
        &demo.token("parent_daan_1"),
        post.clone(),
        &format!("/v1/conversations/{talk}/messages"),
        serde_json::json!({"body": "Dank u, we letten erop."}),
    )
    .await;

    // The console's export of the parent is the API's export of her: the same document, with
    // the conversation's messages.
    let res = client()
        .get(format!("{base}/console/people/{parent}/export"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let console: Value = res.json().await.unwrap();
    let own: Value = api(
        base,
        &demo.token("parent_daan_1"),
        reqwest::Method::GET,
        "/v1/me/export",
        Value::Null,
    )
    .await;
    assert_eq!(console["person_id"], own["person_id"]);
    assert_eq!(console["profile"], own["profile"]);
    assert_eq!(
        console["events"], own["events"],
        "the same events, opened the same way"
    );
    let conversation = |doc: &Value| -> Vec<Value> {
        doc["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["stream"] == format!("conversation-{talk}"))
            .cloned()
            .collect()
    };
    let messages = conversation(&console);
    assert!(messages.len() >= 2, "{messages:?}");
    let text = serde_json::to_string(&messages).unwrap();
    assert!(
        text.contains("wat stil in de klas") && text.contains("we letten erop"),
        "{text}"
    );

    // The child's export holds the conversation about him, as his parent's does.
    let (status, child) = get(base, &cookie, &format!("/console/children/{daan}/export")).await;
    assert_eq!(status, 200);
    let child: Value = serde_json::from_str(&child).unwrap();
    assert_eq!(conversation(&child), messages);

    // A group's posts, newest first, twenty a page.
    let groep3 = demo.demo["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Groep 3")
        .unwrap()["group_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 1..=21 {
        api(
            base,
            &teacher,
            post.clone(),
            &format!("/v1/groups/{groep3}/posts"),
            serde_json::json!({"body": format!("Nieuws nummer {i}")}),
        )
        .await;
    }
    let (status, first) = get(base, &cookie, &format!("/console/posts?group={groep3}")).await;
    assert_eq!(status, 200, "{first}");
    let ids = attrs(&first, "data-post");
    assert_eq!(ids.len(), 20);
    assert!(first.find("Nieuws nummer 21").unwrap() < first.find("Nieuws nummer 20").unwrap());
    let times = attrs(&first, "datetime");
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let next = attrs(&first, "href")
        .into_iter()
        .find(|h| h.starts_with("/console/posts?"))
        .expect("a next page")
        .replace("&amp;", "&");
    let (_, second) = get(base, &cookie, &next).await;
    let more = attrs(&second, "data-post");
    let demo_post = demo.demo["posts"][0]["post_id"].as_str().unwrap();
    assert_eq!(more.len(), 2, "22 posts in Groep 3: {more:?}");
    assert_eq!(more[1], demo_post, "the demo's post is the oldest");
    assert!(
        more.iter().all(|p| !ids.contains(p)),
        "no post on two pages"
    );
    assert!(
        second.contains("Nieuws nummer 1<") && more.contains(&demo_post.to_owned()),
        "{second}"
    );
    let photo = demo.demo["posts"][0]["media"][0].as_str().unwrap();
    assert!(
        second.contains(&format!("/console/media/{photo}")),
        "the demo post's photos link to their viewers"
    );
    assert!(!second.contains("id=\"next\""), "the last page");
    // Another school's group is not found.
    let (status, _) = get(
        base,
        &cookie,
        &format!("/console/posts?group={}", uuid_like()),
    )
    .await;
    assert_eq!(status, 404);

    // Times in the school's time zone, named.
    let (_, page) = get_in(base, &cookie, &format!("/console/children/{daan}"), "en").await;
    assert!(
        page.contains("Times in the time zone <strong>Europe/Amsterdam</strong>"),
        "{page}"
    );
    let at = page.find("<time datetime=\"").unwrap() + 16;
    let exact = &page[at..at + page[at..].find('"').unwrap()];
    let shown = page[at..]
        .split('>')
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let local = chrono::DateTime::parse_from_rfc3339(exact)
        .unwrap()
        .with_timezone(&chrono_tz::Europe::Amsterdam)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string();
    assert_eq!(shown, local);
    // A moment typed in is read in that zone: 10:00 in Amsterdam in winter is 09:00 UTC.
    let (status, page) = get_in(
        base,
        &cookie,
        &format!("/console/children/{daan}?as_of=2026-01-15+10:00"),
        "en",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let expected = chrono_tz::Europe::Amsterdam
        .with_ymd_and_hms(2026, 1, 15, 10, 0, 0)
        .unwrap();
    assert_eq!(
        expected.with_timezone(&chrono::Utc).to_rfc3339(),
        "2026-01-15T09:00:00+00:00"
    );
    assert!(
        page.contains("datetime=\"2026-01-15T09:00:00.000000Z\""),
        "{page}"
    );
    assert!(page.contains("2026-01-15 10:00:00.000000 CET"), "{page}");

    // Errors in the officer's language.
    let nobody = uuid_like();
    for (lang, not_found, no_moment, no_token) in [
        (
            "en",
            "Child not found: it does not exist, or not at your schools.",
            "is not a moment",
            "CSRF token is missing",
        ),
        (
            "nl",
            "Dit kind bestaat niet, of niet op uw scholen.",
            "is geen moment",
            "het CSRF-token ontbreekt of klopt niet",
        ),
    ] {
        let (status, page) =
            get_in(base, &cookie, &format!("/console/children/{nobody}"), lang).await;
        assert_eq!(status, 404);
        assert!(page.contains(not_found), "{lang}: {page}");
        dutch_only(lang, &page);
        let (status, page) = get_in(
            base,
            &cookie,
            &format!("/console/children/{daan}?as_of=gisteren"),
            lang,
        )
        .await;
        assert_eq!(status, 422);
        assert!(page.contains(no_moment), "{lang}: {page}");
        dutch_only(lang, &page);
        let res = client()
            .post(format!("{base}/console/sign-out"))
            .header("cookie", &cookie)
            .header("accept-language", lang)
            .form(&[("csrf", "0")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 403);
        let page = res.text().await.unwrap();
        assert!(page.contains(no_token), "{lang}: {page}");
        dutch_only(lang, &page);
    }
}

/// A Dutch page holds none of the API's English error texts.
fn dutch_only(lang: &str, page: &str) {
    if lang == "nl" {
        for english in [
            "not found",
            "not a moment",
            "CSRF token",
            "Not found",
            "Cannot do that",
        ] {
            assert!(!page.contains(english), "{english}: {page}");
        }
    }
}

/// An id no school holds.
fn uuid_like() -> String {
    "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee".to_owned()
}

// ---------------------------------------------------------------------------------------------
// In a browser.

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

async fn shot(browser: &fantoccini::Client, name: &str) {
    if let Some(dir) = std::env::var_os("KRING_CONSOLE_SCREENSHOTS") {
        let png = browser.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn rows(browser: &fantoccini::Client, css: &str) -> usize {
    browser
        .find_all(fantoccini::Locator::Css(css))
        .await
        .unwrap()
        .len()
}

/// What the keyboard can reach on a page.
const FOCUSABLE: &str = "a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex='-1'])";

/// Tabs through the page at `url` from its start: every focusable element is reached, and each
/// focused one has a visible focus indicator (an outline at least 2px wide).
async fn keyboard_reaches_everything(browser: &fantoccini::Client, url: &str) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    use fantoccini::key::Key;
    browser.goto(url).await.unwrap();
    let count = browser
        .execute(
            &format!("return document.querySelectorAll(\"{FOCUSABLE}\").length"),
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(count > 0, "{url}");
    let probe = format!(
        "const e = document.activeElement; const s = getComputedStyle(e); \
         return [Array.from(document.querySelectorAll(\"{FOCUSABLE}\")).indexOf(e), \
                 s.outlineStyle, parseFloat(s.outlineWidth), e.outerHTML.slice(0, 80)]"
    );
    let mut reached = std::collections::BTreeSet::new();
    for _ in 0..count + 2 {
        let tab = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Tab.into(),
            });
        browser.perform_actions(tab).await.unwrap();
        let seen = browser.execute(&probe, vec![]).await.unwrap();
        let index = seen[0].as_i64().unwrap();
        if index < 0 {
            continue;
        }
        assert!(
            seen[1] != "none" && seen[2].as_f64().unwrap() >= 2.0,
            "{url}: no visible focus on {}",
            seen[3]
        );
        reached.insert(index);
    }
    assert_eq!(
        reached.len() as u64,
        count,
        "{url}: Tab reaches {reached:?} of {count} focusable elements"
    );
}

#[tokio::test]
async fn an_officer_follows_a_withdrawal_in_the_browser() {
    use fantoccini::Locator::{Css, LinkText};
    let chromium = which("chromium").or_else(|| which("chromium-browser"));
    let driver = which("chromedriver");
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        panic!(
            "the console's browser test needs chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver; scripts/test installs them)"
        );
    };
    let provider = Provider::start().await;
    let demo = Demo::start_with(None, Some(&provider)).await;
    let port = free_port();
    let _driver = Running(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // A profile of its own, and none of Chromium's background traffic: the machine's network is
    // closed, and connections it refuses slow the browser's start and its shutdown.
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.path().display()),
                     "--window-size=1280,1000", "--lang=en-GB"],
            "prefs": {"intl.accept_languages": "en-GB,en"}
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let browser = loop {
        // chromedriver listens on the loopback: plain HTTP, no TLS.
        match fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps.clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "chromedriver did not start: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // A click that navigates may return before the next page is there: wait for the element,
    // and find it again when the page it was found on went away before its text was read.
    let text = |css: &'static str| {
        let browser = browser.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let element = browser.wait().for_element(Css(css)).await.unwrap();
                match element.text().await {
                    Ok(text) => break text,
                    Err(fantoccini::error::CmdError::Standard(e))
                        if e.error == fantoccini::error::ErrorStatus::StaleElementReference
                            && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("the text of {css}: {e}"),
                }
            }
        }
    };

    // Sign in with the one-time link.
    browser
        .goto(&demo.link("compliance_officer"))
        .await
        .unwrap();
    browser
        .find(Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text("h1").await, "Search", "Accept-Language picks English");
    shot(&browser, "search").await;

    // Find Daan in Groep 3.
    let form = browser
        .form(Css("form[action='/console/children']"))
        .await
        .unwrap();
    form.set_by_name("name", "daan").await.unwrap();
    browser
        .find(Css("select[name=group] option"))
        .await
        .unwrap();
    browser
        .find(Css("select[name=group]"))
        .await
        .unwrap()
        .select_by_label("Groep 3")
        .await
        .unwrap();
    form.submit().await.unwrap();
    browser
        .find(LinkText("Daan K."))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text("h1").await, "Daan K.");

    // His timeline: both parents granted group communication, then one withdrew it.
    let withdrawn = "#history tr[data-granted=false]";
    assert_eq!(rows(&browser, withdrawn).await, 1);
    assert!(text("#history tr[data-granted=false]")
        .await
        .contains("Group communication"));
    assert_eq!(
        rows(
            &browser,
            "#consents tr[data-purpose=group_communication] td[data-effective=false]"
        )
        .await,
        1
    );
    shot(&browser, "child").await;

    // Step back to just before the withdrawal, beside the moment of it: consent held then.
    browser
        .find(Css("#history tr[data-granted=false] a.before"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        rows(
            &browser,
            "#consents tr[data-purpose=group_communication] td[data-effective=true]"
        )
        .await,
        1
    );
    assert_eq!(
        rows(
            &browser,
            "#consents tr.changed[data-purpose=group_communication]"
        )
        .await,
        1
    );
    shot(&browser, "child-as-of").await;

    // The class photo of Daan: withheld from the four other parents now, from nobody then.
    browser
        .find(Css("a.photo"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(rows(&browser, "#now-withheld tbody tr").await, 4);
    assert_eq!(rows(&browser, "#then-withheld tbody tr").await, 0);
    assert!(
        rows(&browser, "#then-viewers tbody tr").await
            > rows(&browser, "#now-viewers tbody tr").await
    );
    assert!(text("#now-withheld tbody tr").await.contains("Daan K."));
    shot(&browser, "photo").await;

    // The access log shows this visit's reads of Daan, by the officer.
    let daan = demo.daan();
    browser
        .goto(&format!(
            "{}/console/access-log?subject=child:{daan}",
            demo.base
        ))
        .await
        .unwrap();
    let log = text("#access-log tbody").await;
    assert!(log.contains("Pieter Jansen (FG) (you)"), "{log}");
    assert!(
        log.contains("GET /v1/children/{child_id}/consents/history"),
        "{log}"
    );
    shot(&browser, "access-log").await;

    // Verification: the log is intact.
    browser
        .find(LinkText("Verification"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Css("form[action='/console/verify'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The verification replays the whole log before the page answers: wait for it.
    browser
        .wait()
        .at_most(Duration::from_secs(300))
        .for_element(Css("#verify-result"))
        .await
        .unwrap();
    assert!(text("#verify-result").await.starts_with("✓"));
    let models = rows(&browser, "#model-checks tbody tr").await;
    assert!(models >= 10);
    assert_eq!(
        rows(&browser, "#model-checks tbody tr[data-ok=true]").await,
        models
    );
    shot(&browser, "verify").await;

    // A group's posts: the class photo's post is among them.
    browser
        .goto(&format!("{}/console", demo.base))
        .await
        .unwrap();
    let form = browser
        .form(Css("form[action='/console/posts']"))
        .await
        .unwrap();
    browser
        .find(Css("form[action='/console/posts'] select[name=group]"))
        .await
        .unwrap()
        .select_by_label("Groep 3")
        .await
        .unwrap();
    form.submit().await.unwrap();
    assert!(text("h1").await.contains("Groep 3"));
    assert!(rows(&browser, "#posts tbody tr").await >= 1);
    assert!(rows(&browser, "#posts a.photo").await >= 2);
    shot(&browser, "posts").await;

    // The keyboard reaches every link, button and field of the main pages, and each shows
    // where the focus is.
    let child_page = format!("/console/children/{daan}");
    let photo = demo.demo["posts"][0]["media"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let photo_page = format!("/console/media/{photo}?as_of=2026-01-01");
    for path in [
        "/console",
        child_page.as_str(),
        photo_page.as_str(),
        "/console/access-log",
        "/console/verify",
    ] {
        keyboard_reaches_everything(&browser, &format!("{}{path}", demo.base)).await;
    }

    // Export: the child page's link, with the browser's session.
    browser
        .goto(&format!("{}/console/children/{daan}", demo.base))
        .await
        .unwrap();
    let href = browser
        .find(Css("#export"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let cookie = browser.get_named_cookie("kring_console").await.unwrap();
    assert!(cookie.secure().unwrap_or(false) && cookie.http_only().unwrap_or(false));
    let res = client()
        .get(format!("{}{href}", demo.base))
        .header("cookie", format!("kring_console={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let export: Value = res.json().await.unwrap();
    assert_eq!(export["child_id"], daan);
    assert!(export["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["granted"] == false));
    assert!(export["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_type"] == "ChildEnrolled"
            || e["stream"].as_str().unwrap().starts_with("child-")));

    // Nederlands.
    browser
        .find(LinkText("Nederlands"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text("h1").await, "Daan K.");
    assert_eq!(
        browser
            .find(Css("html"))
            .await
            .unwrap()
            .attr("lang")
            .await
            .unwrap()
            .as_deref(),
        Some("nl")
    );
    assert!(text("#timeline").await.contains("Tijdlijn"));
    browser.set_window_size(390, 844).await.unwrap();
    shot(&browser, "child-phone-nl").await;
    browser.set_window_size(1280, 1000).await.unwrap();

    // Signed out, the officer signs in again through the school board's sign-in service (the
    // identity there linked once to the Kring account): it approves at once, and the console's
    // answer moves on to the console.
    api(
        &demo.base,
        &demo.token("compliance_officer"),
        reqwest::Method::POST,
        "/v1/me/sso-identity",
        serde_json::json!({"token": provider.token("privacy@board", oidc_provider::CLIENT_ID)}),
    )
    .await;
    provider.signs_in("privacy@board");
    browser
        .find(Css("form[action='/console/sign-out'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Signing out is a form post answered by a redirect: wait for the sign-in page it leads to.
    let offer = browser
        .wait()
        .for_element(Css("#sign-in-oidc"))
        .await
        .unwrap();
    assert_eq!(offer.text().await.unwrap(), "Aanmelden met 127.0.0.1");
    shot(&browser, "sign-in").await;
    offer.click().await.unwrap();
    browser
        .wait()
        .for_element(Css("form[action='/console/children']"))
        .await
        .unwrap();
    assert_eq!(text("h1").await, "Zoeken");
    assert_eq!(browser.current_url().await.unwrap().path(), "/console");
    assert_eq!(provider.exchanges(), 1);
    assert_eq!(
        provider.last_authorization()["code_challenge_method"],
        "S256"
    );
    let cookie = browser.get_named_cookie("kring_console").await.unwrap();
    assert!(cookie.secure().unwrap_or(false) && cookie.http_only().unwrap_or(false));
    // Ending the WebDriver session is teardown, not something Kring does: on a loaded machine
    // chromedriver can time out while Chromium quits. Say so, and let the guard end chromedriver.
    if let Err(e) = browser.close().await {
        eprintln!("chromedriver did not end the browser session cleanly: {e}");
    }
}
