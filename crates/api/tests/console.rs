//! The compliance console against the real `kring-api serve --demo` binary: its HTTP rules
//! (plain requests) and the officer's path in headless Chromium over WebDriver.
//!
//! The browser test needs `chromium` and `chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `scripts/test` installs them when missing). Without them it fails, with
//! the reason. With `KRING_CONSOLE_SCREENSHOTS=DIR` it saves a screenshot of each main page
//! there (how `docs/console/` is made).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod oidc_provider;

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
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
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
    let text = |css: &'static str| {
        let browser = browser.clone();
        async move { browser.find(Css(css)).await.unwrap().text().await.unwrap() }
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
    assert!(text("#verify-result").await.starts_with("✓"));
    shot(&browser, "verify").await;

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
    let offer = browser.find(Css("#sign-in-oidc")).await.unwrap();
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
    browser.close().await.unwrap();
}
