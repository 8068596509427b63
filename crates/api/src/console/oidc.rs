//! Console sign-in through the single sign-on issuer: OpenID Connect's authorization code flow
//! with PKCE (S256).
//!
//! - `GET /console/oidc/sign-in` starts an attempt: a fresh `state`, `nonce` and PKCE
//!   `code_verifier`, sealed with the attempt's id into the cookie [`COOKIE`]
//!   (XChaCha20-Poly1305 under a key derived from the installation's signing secret; `Secure`,
//!   `HttpOnly`, `SameSite=Lax` so that it comes back with the issuer's redirect, path
//!   `/console/oidc`, [`ATTEMPT_MINUTES`]), then a redirect to the issuer's authorization
//!   endpoint.
//! - `GET /console/oidc/callback` takes the issuer's answer. The `state` must be the attempt's
//!   (else nothing changes). The attempt's id is then spent — recorded as used in the log, as a
//!   one-time link's is — so a replayed answer is refused on every server; the code is exchanged
//!   at the token endpoint with the `code_verifier`; the ID token is verified as the API
//!   verifies the issuer's bearer tokens (a key of its JWKS, `iss`, `exp`:
//!   [`crate::auth::Auth::verify_id_token`]) for the audience of the console's client id and
//!   with the attempt's `nonce`; its subject finds the person as a bearer token's does
//!   ([`AppState::person_of_identity`]); the person must be allowed in the console, as with a
//!   link; and the same session starts ([`super::session::open_session`]).
//!
//! The answer that starts the session is a page that moves on to `/console` by itself: the
//! session cookie is `SameSite=Strict`, and a browser does not send it on a redirect chain that
//! began at the issuer's site.

use super::view::{page, respond};
use super::{session, Ctx, Lang};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use url::Url;
use uuid::Uuid;

/// The cookie that carries a sign-in attempt from the redirect to the issuer to its answer.
pub const COOKIE: &str = "kring_console_oidc";
/// How long a sign-in attempt may take.
pub const ATTEMPT_MINUTES: i64 = 10;
/// The path of the issuer's answer.
pub const CALLBACK_PATH: &str = "/console/oidc/callback";
/// What the attempt cookie is sealed for (the derived key and the associated data).
const PURPOSE: &[u8] = b"kring-console-oidc-attempt-v1";

/// How the console signs in through the issuer (`kring-api serve --oidc-client-id …`).
#[derive(Clone)]
pub struct Options {
    /// The console's client id at the issuer: the ID token's audience.
    pub client_id: String,
    /// The client's secret, for a confidential client (sent with HTTP Basic, or in the form
    /// when the issuer's discovery document offers only that).
    pub client_secret: Option<String>,
    /// The issuer's authorization endpoint (default: from its discovery document).
    pub authorization_endpoint: Option<String>,
    /// The issuer's token endpoint (default: from its discovery document).
    pub token_endpoint: Option<String>,
    /// Where the issuer sends the browser back: the console's public
    /// `…/console/oidc/callback`, exactly as registered at the issuer.
    pub redirect_url: String,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

/// Why the console's sign-in through the issuer cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No issuer is trusted.
    #[error("console sign-in through the issuer (--oidc-client-id) needs --oidc-issuer, --oidc-jwks and --oidc-audience")]
    NoIssuer,
    /// An empty client id.
    #[error("--oidc-client-id is empty")]
    NoClientId,
    /// The discovery document could not be read, and the endpoints were not given.
    #[error("the issuer's discovery document {url}: {reason} (or give --oidc-authorization-endpoint and --oidc-token-endpoint)")]
    Discovery {
        /// Where it was looked for.
        url: String,
        /// What failed.
        reason: String,
    },
    /// An endpoint or the redirect URL is not usable.
    #[error("{what} {url:?}: {reason}")]
    Url {
        /// Which setting.
        what: &'static str,
        /// Its value.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The issuer says it does not take S256 code challenges.
    #[error("the issuer does not offer PKCE with S256 (its code_challenge_methods_supported)")]
    NoPkce,
}

/// The issuer's discovery document, as far as the console reads it.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// The console's client at the issuer.
pub struct Client {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    /// The secret goes in the token request's form (`client_secret_post`) instead of HTTP
    /// Basic (`client_secret_basic`).
    secret_in_form: bool,
    authorization_endpoint: Url,
    token_endpoint: Url,
    redirect_url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "authorization_endpoint",
                &self.authorization_endpoint.as_str(),
            )
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

/// `text` as an endpoint: an absolute `https` URL (or `http` to a loopback address), no
/// fragment.
fn endpoint(what: &'static str, text: &str) -> Result<Url, SetupError> {
    let bad = |reason: &str| SetupError::Url {
        what,
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(text.trim()).map_err(|e| bad(&e.to_string()))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(bad(
                "not an https URL (plain http only to a loopback address)",
            ))
        }
    }
    if url.fragment().is_some() {
        return Err(bad("a URL with a fragment (#…)"));
    }
    Ok(url)
}

impl Client {
    /// The console's client for `issuer` (the trusted issuer, `--oidc-issuer`): the endpoints
    /// as given, else from `<issuer>/.well-known/openid-configuration` (fetched within
    /// `timeout`, naming the same issuer).
    ///
    /// # Errors
    /// [`SetupError`].
    pub async fn new(
        issuer: &str,
        options: &Options,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        if options.client_id.trim().is_empty() {
            return Err(SetupError::NoClientId);
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError::Discovery {
                url: issuer.to_owned(),
                reason: e.to_string(),
            })?;
        let redirect = endpoint("--oidc-redirect-url", &options.redirect_url)?;
        if !redirect.path().ends_with(CALLBACK_PATH) {
            return Err(SetupError::Url {
                what: "--oidc-redirect-url",
                url: options.redirect_url.clone(),
                reason: format!("the console's answer path is {CALLBACK_PATH}"),
            });
        }
        let discovery = match (&options.authorization_endpoint, &options.token_endpoint) {
            (Some(_), Some(_)) => None,
            _ => Some(discover(&http, issuer).await?),
        };
        if discovery
            .as_ref()
            .and_then(|d| d.code_challenge_methods_supported.as_ref())
            .is_some_and(|methods| !methods.iter().any(|m| m == "S256"))
        {
            return Err(SetupError::NoPkce);
        }
        let pick = |given: &Option<String>,
                    found: Option<&String>,
                    what: &'static str|
         -> Result<Url, SetupError> {
            match given.as_ref().or(found) {
                Some(url) => endpoint(what, url),
                None => Err(SetupError::Discovery {
                    url: discovery_url(issuer),
                    reason: format!("it names no {}", what.trim_start_matches("--oidc-")),
                }),
            }
        };
        let authorization_endpoint = pick(
            &options.authorization_endpoint,
            discovery
                .as_ref()
                .and_then(|d| d.authorization_endpoint.as_ref()),
            "--oidc-authorization-endpoint",
        )?;
        let token_endpoint = pick(
            &options.token_endpoint,
            discovery.as_ref().and_then(|d| d.token_endpoint.as_ref()),
            "--oidc-token-endpoint",
        )?;
        // HTTP Basic unless the issuer says it takes the secret only in the form.
        let secret_in_form = discovery
            .as_ref()
            .and_then(|d| d.token_endpoint_auth_methods_supported.as_ref())
            .is_some_and(|m| {
                !m.iter().any(|m| m == "client_secret_basic")
                    && m.iter().any(|m| m == "client_secret_post")
            });
        Ok(Self {
            issuer: issuer.to_owned(),
            client_id: options.client_id.trim().to_owned(),
            client_secret: options.client_secret.clone().filter(|s| !s.is_empty()),
            secret_in_form,
            authorization_endpoint,
            token_endpoint,
            redirect_url: redirect.to_string(),
            http,
        })
    }

    /// The issuer as the sign-in button names it: its host.
    #[must_use]
    pub fn name(&self) -> String {
        Url::parse(&self.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| self.issuer.clone())
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Where the issuer sends the browser back.
    #[must_use]
    pub fn redirect_url(&self) -> &str {
        &self.redirect_url
    }

    /// The authorization endpoint.
    #[must_use]
    pub fn authorization_endpoint(&self) -> &str {
        self.authorization_endpoint.as_str()
    }

    /// The token endpoint.
    #[must_use]
    pub fn token_endpoint(&self) -> &str {
        self.token_endpoint.as_str()
    }

    /// The authorization request for `attempt`.
    fn authorization_url(&self, attempt: &Attempt) -> Url {
        let mut url = self.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_url)
            .append_pair("scope", "openid")
            .append_pair("state", &attempt.state)
            .append_pair("nonce", &attempt.nonce)
            .append_pair("code_challenge", &challenge(&attempt.verifier))
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges `code` at the token endpoint with the attempt's `verifier`: the ID token.
    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, String> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", verifier),
            ("client_id", self.client_id.as_str()),
        ];
        let mut request = self
            .http
            .post(self.token_endpoint.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        match &self.client_secret {
            Some(secret) if self.secret_in_form => form.push(("client_secret", secret)),
            // RFC 6749 2.3.1: id and secret form-encoded, then Basic.
            Some(secret) => {
                request =
                    request.basic_auth(form_encode(&self.client_id), Some(form_encode(secret)));
            }
            None => {}
        }
        let body = serde_urlencoded::to_string(&form).map_err(|e| e.to_string())?;
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the token endpoint did not answer: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("the token endpoint's answer could not be read: {e}"))?;
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() {
            let said = |k: &str| answer[k].as_str().unwrap_or_default().to_owned();
            return Err(format!(
                "the token endpoint answered {status}: {} {}",
                said("error"),
                said("error_description")
            )
            .trim()
            .to_owned());
        }
        answer["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "the token endpoint's answer holds no id_token".to_owned())
    }
}

fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, SetupError> {
    let url = discovery_url(issuer);
    let fail = |reason: String| SetupError::Discovery {
        url: url.clone(),
        reason,
    };
    let doc: Discovery = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(e.to_string()))?
        .json()
        .await
        .map_err(|e| fail(format!("not a discovery document: {e}")))?;
    // OpenID Connect Discovery 4.3: the document names the issuer it was fetched for.
    if doc.issuer != issuer {
        return Err(fail(format!(
            "it names the issuer {:?}, not {issuer:?}",
            doc.issuer
        )));
    }
    Ok(doc)
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The S256 code challenge of `verifier` (RFC 7636 4.2).
#[must_use]
pub fn challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// The attempt.

/// One sign-in attempt, sealed into [`COOKIE`].
#[derive(Serialize, Deserialize)]
struct Attempt {
    /// What spends it.
    id: Uuid,
    state: String,
    nonce: String,
    verifier: String,
    /// Until when (seconds since the epoch).
    exp: i64,
}

fn random(bytes: usize) -> ApiResult<String> {
    let mut buf = vec![0_u8; bytes];
    getrandom::getrandom(&mut buf).map_err(ApiError::internal)?;
    Ok(B64URL.encode(buf))
}

impl Attempt {
    fn new() -> ApiResult<Self> {
        Ok(Self {
            id: Uuid::now_v7(),
            state: random(32)?,
            nonce: random(32)?,
            // 43 characters of the unreserved set (RFC 7636 4.1).
            verifier: random(32)?,
            exp: chrono::Utc::now().timestamp() + ATTEMPT_MINUTES * 60,
        })
    }

    fn cipher(auth: &Auth) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&auth.derived_secret(PURPOSE).into())
    }

    fn seal(&self, auth: &Auth) -> ApiResult<String> {
        let mut nonce = [0_u8; 24];
        getrandom::getrandom(&mut nonce).map_err(ApiError::internal)?;
        let plain = serde_json::to_vec(self).map_err(ApiError::internal)?;
        let sealed = Self::cipher(auth)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: PURPOSE,
                },
            )
            .map_err(|_| ApiError::internal("sealing the sign-in attempt failed"))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(B64URL.encode(out))
    }

    /// The attempt of a cookie's value, if it was sealed here and has not expired.
    fn open(auth: &Auth, value: &str) -> Option<Self> {
        let bytes = B64URL.decode(value.trim()).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        let plain = Self::cipher(auth)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: PURPOSE,
                },
            )
            .ok()?;
        let attempt: Self = serde_json::from_slice(&plain).ok()?;
        let now = chrono::Utc::now().timestamp();
        (attempt.exp > now && attempt.exp <= now + ATTEMPT_MINUTES * 60 + 60).then_some(attempt)
    }
}

fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/console/oidc; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        ATTEMPT_MINUTES * 60
    )
}

fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console/oidc; Max-Age=0; Secure; HttpOnly; SameSite=Lax")
}

/// Compares in constant time.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

// ---------------------------------------------------------------------------------------------
// Pages.

/// The "Sign in with <issuer>" button, when the console signs in through an issuer.
#[must_use]
pub fn offer(state: &AppState, l: Lang) -> Markup {
    html! {
        @if let Some(client) = &state.console_oidc {
            p {
                a.button #sign-in-oidc href="/console/oidc/sign-in" {
                    (l.t("Sign in with ", "Aanmelden met ")) (client.name())
                }
            }
        }
    }
}

/// `GET /console/oidc/sign-in`: starts an attempt and sends the browser to the issuer.
pub async fn start(State(state): State<AppState>, ctx: Ctx) -> Response {
    let Some(client) = state.console_oidc.clone() else {
        return failure(&ctx, &Failure::NotConfigured);
    };
    let begun =
        Attempt::new().and_then(|a| Ok((client.authorization_url(&a), a.seal(&state.auth)?)));
    match begun {
        Ok((url, sealed)) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url.to_string()),
                (header::SET_COOKIE, set_cookie(&sealed)),
            ],
        )
            .into_response(),
        Err(e) => ctx.error(&e),
    }
}

/// Why a sign-in through the issuer failed.
#[derive(Debug)]
enum Failure {
    NotConfigured,
    BadState,
    IssuerSaid(String),
    NoCode,
    Used,
    Exchange(String),
    Token(String),
    NotLinked(String),
    NotAllowed(String),
    Internal(ApiError),
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotConfigured => StatusCode::NOT_FOUND,
            Self::BadState | Self::NoCode | Self::Used => StatusCode::BAD_REQUEST,
            Self::IssuerSaid(_) | Self::Token(_) | Self::NotLinked(_) => StatusCode::UNAUTHORIZED,
            Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Exchange(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(e) => e.status,
        }
    }

    /// A stable name (the page's `data-reason`).
    fn reason(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::BadState => "bad_state",
            Self::IssuerSaid(_) => "issuer_error",
            Self::NoCode => "no_code",
            Self::Used => "used",
            Self::Exchange(_) => "exchange_failed",
            Self::Token(_) => "token_invalid",
            Self::NotLinked(_) => "not_linked",
            Self::NotAllowed(_) => "not_allowed",
            Self::Internal(_) => "internal",
        }
    }

    fn explain(&self, l: Lang) -> &'static str {
        match self {
            Self::NotConfigured => l.t(
                "This installation does not offer sign-in through a single sign-on service.",
                "Deze installatie biedt geen aanmelding via een single sign-on-dienst.",
            ),
            Self::BadState => l.t(
                "This answer does not belong to a sign-in started in this browser, or the sign-in took longer than ten minutes. Nothing was changed: start again.",
                "Dit antwoord hoort niet bij een aanmelding die in deze browser begon, of de aanmelding duurde langer dan tien minuten. Er is niets veranderd: begin opnieuw.",
            ),
            Self::IssuerSaid(_) => l.t(
                "The sign-in service did not sign you in.",
                "De aanmelddienst heeft u niet aangemeld.",
            ),
            Self::NoCode => l.t(
                "The sign-in service's answer holds no code.",
                "Het antwoord van de aanmelddienst bevat geen code.",
            ),
            Self::Used => l.t(
                "This sign-in was used before: start again.",
                "Deze aanmelding is al eens gebruikt: begin opnieuw.",
            ),
            Self::Exchange(_) => l.t(
                "The sign-in service did not confirm the sign-in (the code could not be exchanged).",
                "De aanmelddienst bevestigde de aanmelding niet (de code kon niet worden ingewisseld).",
            ),
            Self::Token(_) => l.t(
                "The sign-in service's answer could not be verified.",
                "Het antwoord van de aanmelddienst kon niet worden gecontroleerd.",
            ),
            Self::NotLinked(_) => l.t(
                "This identity is not linked to anyone at Kring: ask the school to add you with your single sign-on identity.",
                "Deze identiteit is aan niemand bij Kring gekoppeld: vraag de school u toe te voegen met uw single sign-on-identiteit.",
            ),
            Self::NotAllowed(_) => l.t(
                "The console is for compliance officers and directors.",
                "De console is voor privacyfunctionarissen en directeuren.",
            ),
            Self::Internal(_) => l.t("Something went wrong.", "Er ging iets mis."),
        }
    }

    fn detail(&self) -> Option<&str> {
        match self {
            Self::IssuerSaid(d)
            | Self::Exchange(d)
            | Self::Token(d)
            | Self::NotLinked(d)
            | Self::NotAllowed(d) => Some(d),
            Self::Internal(e) => Some(&e.detail),
            _ => None,
        }
    }
}

/// The page of a failed sign-in.
fn failure(ctx: &Ctx, f: &Failure) -> Response {
    let l = ctx.lang;
    // The language switch leads to the sign-in page, not back into this answer.
    let ctx = Ctx {
        here: "/console/sign-in".to_owned(),
        ..ctx.clone()
    };
    let body = html! {
        div.panel.error #oidc-error role="alert" data-reason=(f.reason()) {
            p { (f.explain(l)) }
            @if let Some(detail) = f.detail() {
                p.note { (detail) }
            }
            p {
                @if !matches!(f, Failure::NotConfigured) {
                    a href="/console/oidc/sign-in" { (l.t("Sign in again", "Opnieuw aanmelden")) }
                    " · "
                }
                a href="/console" { (l.t("Back to the console", "Terug naar de console")) }
            }
        }
    };
    respond(
        f.status(),
        &page(&ctx, l.t("Sign-in failed", "Aanmelden mislukt"), &body),
    )
}

/// `GET /console/oidc/callback?code=&state=` (or `?error=&state=`): the issuer's answer.
pub async fn callback(
    State(state): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = super::form_urlencoded(query.unwrap_or_default().as_bytes());
    let Some(client) = state.console_oidc.clone() else {
        return failure(&ctx, &Failure::NotConfigured);
    };
    // Before the state matches, nothing is touched: not even this browser's attempt.
    let attempt = session::cookie(&headers, COOKIE).and_then(|v| Attempt::open(&state.auth, &v));
    let Some(attempt) = attempt.filter(|a| q.get("state").is_some_and(|s| same(s, &a.state)))
    else {
        return failure(&ctx, &Failure::BadState);
    };
    match finish(&state, &ctx, &client, &attempt, &q).await {
        Ok(cookie) => {
            let l = ctx.lang;
            let body = html! {
                div.panel #signed-in {
                    p { a href="/console" { (l.t("Continue to the console", "Verder naar de console")) } }
                }
            };
            let mut response = respond(
                StatusCode::OK,
                &page(&ctx, l.t("Signed in", "Aangemeld"), &body),
            );
            let h = response.headers_mut();
            h.insert(
                header::REFRESH,
                header::HeaderValue::from_static("0; url=/console"),
            );
            for cookie in [session::set_cookie(&cookie), clear_cookie()] {
                if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                    h.append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Err(f) => {
            let mut response = failure(&ctx, &f);
            if let Ok(v) = header::HeaderValue::from_str(&clear_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
    }
}

/// The rest of the answer, once its state is the attempt's: the session cookie's value.
async fn finish(
    state: &AppState,
    ctx: &Ctx,
    client: &Client,
    attempt: &Attempt,
    q: &std::collections::HashMap<String, String>,
) -> Result<String, Failure> {
    // RFC 9207: an answer that names its issuer names ours.
    if q.get("iss").is_some_and(|iss| *iss != client.issuer) {
        return Err(Failure::Token(
            "the answer names another issuer (iss)".to_owned(),
        ));
    }
    if let Some(error) = q.get("error") {
        let description = q
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(Failure::IssuerSaid(format!("{error}{description}")));
    }
    let code = q
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(Failure::NoCode)?;
    // Spent before the exchange, as a link is before anything else: a replayed answer is
    // refused here, on every server, and never reaches the issuer.
    if !session::spend(state, ctx.rid, attempt.id)
        .await
        .map_err(Failure::Internal)?
    {
        return Err(Failure::Used);
    }
    let id_token = client
        .exchange(code, &attempt.verifier)
        .await
        .map_err(Failure::Exchange)?;
    let (_, digest) = state
        .auth
        .verify_id_token(&id_token, &client.client_id, &attempt.nonce)
        .await
        .map_err(|e| Failure::Token(e.detail))?;
    let person = state
        .person_of_identity(&digest)
        .await
        .map_err(|e| match e.status {
            StatusCode::UNAUTHORIZED => Failure::NotLinked(e.detail),
            _ => Failure::Internal(e),
        })?;
    session::open_session(state, person)
        .await
        .map_err(|e| match e.status {
            StatusCode::FORBIDDEN => Failure::NotAllowed(e.detail),
            _ => Failure::Internal(e),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::with_secret("test", vec![3; crate::auth::MIN_SECRET_BYTES]).expect("a secret")
    }

    #[test]
    fn an_attempt_opens_only_where_it_was_sealed_and_unaltered() {
        let a = Attempt::new().expect("random");
        let sealed = a.seal(&auth()).expect("sealed");
        let opened = Attempt::open(&auth(), &sealed).expect("opens");
        assert_eq!((opened.id, opened.state), (a.id, a.state.clone()));
        let other =
            Auth::with_secret("test", vec![4; crate::auth::MIN_SECRET_BYTES]).expect("a secret");
        assert!(Attempt::open(&other, &sealed).is_none());
        let mut bytes = B64URL.decode(&sealed).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(Attempt::open(&auth(), &B64URL.encode(bytes)).is_none());
        let old = Attempt {
            exp: chrono::Utc::now().timestamp() - 1,
            ..Attempt::new().expect("random")
        };
        assert!(Attempt::open(&auth(), &old.seal(&auth()).expect("sealed")).is_none());
    }

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn endpoints_are_https_or_loopback() {
        for ok in [
            "https://login.example/authorize",
            "http://127.0.0.1:9000/authorize",
            "http://localhost/authorize",
            "http://[::1]:80/a",
        ] {
            assert!(endpoint("x", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://login.example/authorize",
            "ftp://127.0.0.1/",
            "/authorize",
            "https://login.example/a#b",
        ] {
            assert!(endpoint("x", bad).is_err(), "{bad}");
        }
    }
}
