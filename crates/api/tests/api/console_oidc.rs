//! The compliance console's sign-in through an OpenID Connect issuer, over real sockets: a small
//! OpenID provider in the test (discovery, JWKS, an authorization endpoint that approves at once,
//! a token endpoint that checks the PKCE verifier) and the server configured to use it, on
//! SQLite and on PostgreSQL. What a browser would do — follow redirects, keep cookies — the test
//! does by hand, so that each step can be looked at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use crate::{oidc_provider, school_server};
use kring_api::console::oidc::Options;
use oidc_provider::{Provider, Twist, CLIENT_ID, CLIENT_SECRET};
use reqwest::Method;
use school_server::{Api, School};
use serde_json::json;
use std::collections::HashMap;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The server, trusting the provider for bearer tokens (audience: the console's client id) and
/// signing the console in through it (endpoints from its discovery document).
async fn server(provider: &Provider, database: Option<&str>) -> Api {
    let port = free_port();
    let configure = |o: &mut kring_api::server::ServeOptions| {
        o.listen = ([127, 0, 0, 1], port).into();
        // Nothing but the test writes to the log: its head tells what a step wrote.
        o.retention = false;
        o.oidc_issuer = Some(provider.issuer.clone());
        o.oidc_jwks = Some(provider.jwks_url());
        o.oidc_audience = Some(CLIENT_ID.to_owned());
        o.console_oidc = Some(Options {
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(CLIENT_SECRET.to_owned()),
            authorization_endpoint: None,
            token_endpoint: None,
            redirect_url: format!("http://127.0.0.1:{port}/console/oidc/callback"),
        });
    };
    match database {
        None => Api::sqlite_with(configure).await,
        Some(label) => Api::postgres_with(label, configure).await,
    }
}

/// The value of the `Set-Cookie` named `name` (`name=value`), with its attributes.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// A sign-in attempt: the attempt cookie and the authorization request.
struct Attempt {
    cookie: String,
    authorize: String,
}

/// `GET /console/oidc/sign-in`, as the button does.
async fn begin(base: &str) -> Attempt {
    let res = browser()
        .get(format!("{base}/console/oidc/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let set = set_cookie(&res, "kring_console_oidc").expect("an attempt cookie");
    for attribute in [
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/console/oidc",
        "Max-Age=600",
    ] {
        assert!(set.contains(attribute), "{set}: no {attribute}");
    }
    Attempt {
        cookie: set.split(';').next().unwrap().to_owned(),
        authorize: location(&res),
    }
}

/// The provider's answer to the attempt's authorization request: the callback URL.
async fn authorize(attempt: &Attempt) -> String {
    let res = browser().get(&attempt.authorize).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303, "{}", res.text().await.unwrap());
    location(&res)
}

/// The callback, with `cookie` (or none).
async fn callback(url: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = browser().get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

/// The failure page's reason, asserting the status and that no session started.
async fn refused(res: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(res.status().as_u16(), status);
    assert!(set_cookie(&res, "kring_console").is_none(), "no session");
    let page = res.text().await.unwrap();
    let at = page.find("data-reason=\"").expect("a failure page") + 13;
    (page[at..].split('"').next().unwrap().to_owned(), page)
}

/// A whole sign-in as `subject`: the callback's answer.
async fn sign_in_as(api: &Api, provider: &Provider, subject: &str) -> reqwest::Response {
    let attempt = begin(&api.running.url()).await;
    provider.signs_in(subject);
    let back = authorize(&attempt).await;
    callback(&back, Some(&attempt.cookie)).await
}

async fn link_identity(api: &Api, provider: &Provider, token: &str, subject: &str) {
    api.post(
        "/v1/me/sso-identity",
        Some(token),
        json!({"token": provider.token(subject, CLIENT_ID)}),
    )
    .await
    .expect(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_through_the_issuer() {
    signs_in_through_the_issuer(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_through_the_issuer_on_postgres() {
    signs_in_through_the_issuer(Some("console_oidc")).await;
}

async fn signs_in_through_the_issuer(database: Option<&str>) {
    let provider = Provider::start().await;
    let api = server(&provider, database).await;
    let base = api.running.url();
    let school = School::build(&api, "De Linde").await;
    link_identity(
        &api,
        &provider,
        &api.person(school.officer),
        "privacy@board",
    )
    .await;

    // The sign-in pages offer the issuer.
    for path in ["/console", "/console/sign-in"] {
        let page = browser()
            .get(format!("{base}{path}"))
            .header("accept-language", "en")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("href=\"/console/oidc/sign-in\"")
                && page.contains("Sign in with 127.0.0.1"),
            "{page}"
        );
    }

    // The authorization request: code flow, PKCE S256, state and nonce, to the configured
    // redirect URL.
    let attempt = begin(&base).await;
    let request = query_of(&attempt.authorize);
    assert!(attempt
        .authorize
        .starts_with(&format!("{}/authorize?", provider.issuer)));
    assert_eq!(request["response_type"], "code");
    assert_eq!(request["client_id"], CLIENT_ID);
    assert_eq!(request["scope"], "openid");
    assert_eq!(request["code_challenge_method"], "S256");
    assert_eq!(request["code_challenge"].len(), 43);
    assert_eq!(
        request["redirect_uri"],
        format!("{base}/console/oidc/callback")
    );
    assert!(request["state"].len() >= 43 && request["nonce"].len() >= 43);
    assert_ne!(request["state"], request["nonce"]);
    // Another attempt has its own state, nonce and challenge.
    let other = query_of(&begin(&base).await.authorize);
    for k in ["state", "nonce", "code_challenge"] {
        assert_ne!(request[k], other[k], "{k}");
    }

    // The officer signs in: one event (the attempt spent), a session, the attempt cookie gone.
    provider.signs_in("privacy@board");
    let back = authorize(&attempt).await;
    let head = api.head().await;
    let res = callback(&back, Some(&attempt.cookie)).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["refresh"], "0; url=/console");
    let session = set_cookie(&res, "kring_console").expect("a session");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attribute), "{session}: no {attribute}");
    }
    assert!(set_cookie(&res, "kring_console_oidc")
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(api.head().await, head + 1, "the spent attempt, as a link's");
    assert_eq!(provider.exchanges(), 1);
    let session = session.split(';').next().unwrap().to_owned();
    let home = browser()
        .get(format!("{base}/console"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(home.status().as_u16(), 200);
    let home = home.text().await.unwrap();
    assert!(
        home.contains("action=\"/console/children\"")
            && home.contains("action=\"/console/sign-out\""),
        "signed in: {home}"
    );

    // The same answer again: refused here, before it reaches the issuer.
    let head = api.head().await;
    let (reason, _) = refused(callback(&back, Some(&attempt.cookie)).await, 400).await;
    assert_eq!(reason, "used");
    assert_eq!(provider.exchanges(), 1);
    assert_eq!(api.head().await, head);

    // A wrong or missing state, or no attempt in this browser: refused, nothing changes.
    let attempt = begin(&base).await;
    let back = authorize(&attempt).await;
    let state = query_of(&back)["state"].clone();
    let code = query_of(&back)["code"].clone();
    let callback_url = |state: Option<&str>, code: &str| {
        let mut url = url::Url::parse(&format!("{base}/console/oidc/callback")).unwrap();
        url.query_pairs_mut().append_pair("code", code);
        if let Some(s) = state {
            url.query_pairs_mut().append_pair("state", s);
        }
        url.to_string()
    };
    let head = api.head().await;
    for (url, cookie) in [
        (
            callback_url(Some("not-the-state"), &code),
            Some(attempt.cookie.as_str()),
        ),
        (callback_url(None, &code), Some(attempt.cookie.as_str())),
        (back.clone(), None),
        (back.clone(), Some("kring_console_oidc=forged")),
    ] {
        let res = callback(&url, cookie).await;
        assert!(
            set_cookie(&res, "kring_console_oidc").is_none(),
            "the attempt is left alone"
        );
        let (reason, page) = refused(res, 400).await;
        assert_eq!(reason, "bad_state", "{url}");
        assert!(
            page.contains("Er is niets veranderd"),
            "Dutch by default: {page}"
        );
    }
    assert_eq!(api.head().await, head);
    assert_eq!(provider.exchanges(), 1);
    // The right state with a code the issuer never gave: the exchange fails.
    let (reason, _) = refused(
        callback(
            &callback_url(Some(&state), "made-up"),
            Some(&attempt.cookie),
        )
        .await,
        502,
    )
    .await;
    assert_eq!(reason, "exchange_failed");

    // The issuer said no: its error is shown, nothing changes.
    let attempt = begin(&base).await;
    let state = query_of(&attempt.authorize)["state"].clone();
    let mut url = url::Url::parse(&format!("{base}/console/oidc/callback")).unwrap();
    url.query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("error_description", "the user declined")
        .append_pair("state", &state);
    let head = api.head().await;
    let res = browser()
        .get(url.as_str())
        .header("cookie", &attempt.cookie)
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let (reason, page) = refused(res, 401).await;
    assert_eq!(reason, "issuer_error");
    assert!(
        page.contains("access_denied: the user declined") && page.contains("did not sign you in"),
        "{page}"
    );
    assert_eq!(api.head().await, head);

    // An ID token with another nonce, or for another audience: refused.
    for (twist, why) in [
        (
            Twist {
                nonce: Some("another nonce".into()),
                ..Twist::default()
            },
            "nonce",
        ),
        (
            Twist {
                audience: Some("another-app".into()),
                ..Twist::default()
            },
            "audience",
        ),
    ] {
        provider.twist(twist);
        let (reason, page) = refused(sign_in_as(&api, &provider, "privacy@board").await, 401).await;
        assert_eq!(reason, "token_invalid", "{why}");
        assert!(page.contains(why), "{why}: {page}");
    }
    provider.twist(Twist::default());

    // A parent, a teacher, and a subject that is nobody at Kring: refused.
    let parent = school.guardian(&api, school.child_a, "Ouder").await;
    link_identity(&api, &provider, &api.person(parent), "ouder@board").await;
    link_identity(&api, &provider, &api.person(school.teacher), "juf@board").await;
    for subject in ["ouder@board", "juf@board"] {
        let (reason, _) = refused(sign_in_as(&api, &provider, subject).await, 403).await;
        assert_eq!(reason, "not_allowed", "{subject}");
    }
    let (reason, _) = refused(sign_in_as(&api, &provider, "nobody@board").await, 401).await;
    assert_eq!(reason, "not_linked");

    // The officer still signs in.
    assert_eq!(
        sign_in_as(&api, &provider, "privacy@board")
            .await
            .status()
            .as_u16(),
        200
    );
    // The bearer path is unchanged by the console's client: the issuer's token signs in.
    api.call(
        Method::GET,
        "/v1/me",
        Some(&provider.token("privacy@board", CLIENT_ID)),
        None,
    )
    .await
    .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_the_console_offers_only_links() {
    let api = Api::sqlite().await;
    let base = api.running.url();
    let page = browser()
        .get(format!("{base}/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("/console/oidc/sign-in"), "{page}");
    let res = browser()
        .get(format!("{base}/console/oidc/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let (reason, _) = refused(
        callback(
            &format!("{base}/console/oidc/callback?code=x&state=y"),
            None,
        )
        .await,
        404,
    )
    .await;
    assert_eq!(reason, "not_configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_trusted_issuer_or_a_usable_redirect_does_not_start() {
    let provider = Provider::start().await;
    let options = Options {
        client_id: CLIENT_ID.to_owned(),
        client_secret: None,
        authorization_endpoint: None,
        token_endpoint: None,
        redirect_url: "http://127.0.0.1:1/console/oidc/callback".to_owned(),
    };
    let dir = tempfile::tempdir().unwrap();
    let start = |configure: &dyn Fn(&mut kring_api::server::ServeOptions)| {
        let mut o = kring_api::server::ServeOptions::new(kring_projections::Config {
            data_dir: dir.path().to_owned(),
            database_url: None,
            eventstore_url: None,
        });
        o.console_oidc = Some(options.clone());
        configure(&mut o);
        kring_api::server::start(o)
    };
    let no_issuer = start(&|_| {}).await.err().map(|e| e.to_string());
    assert!(no_issuer.is_some_and(|e| e.contains("--oidc-issuer")));
    let trusting = |o: &mut kring_api::server::ServeOptions| {
        o.oidc_issuer = Some(provider.issuer.clone());
        o.oidc_jwks = Some(provider.jwks_url());
        o.oidc_audience = Some(CLIENT_ID.to_owned());
    };
    for (redirect, why) in [
        ("http://kring.example/console/oidc/callback", "https"),
        ("https://kring.example/console/", "/console/oidc/callback"),
    ] {
        let e = start(&|o| {
            trusting(o);
            o.console_oidc.as_mut().unwrap().redirect_url = redirect.to_owned();
        })
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("--oidc-redirect-url") && e.contains(why), "{e}");
    }
    // An issuer whose discovery document names another issuer.
    let e = start(&|o| {
        trusting(o);
        o.oidc_issuer = Some(format!("{}/", provider.issuer));
    })
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("names the issuer"), "{e}");
    // Configured right, it starts, with the endpoints of the discovery document.
    let running = start(&trusting).await.unwrap();
    let client = running.state.console_oidc.clone().unwrap();
    assert_eq!(
        client.authorization_endpoint(),
        format!("{}/authorize", provider.issuer)
    );
    assert_eq!(
        client.token_endpoint(),
        format!("{}/token", provider.issuer)
    );
}
