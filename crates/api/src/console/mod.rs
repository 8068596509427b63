//! The compliance console: server-rendered HTML at `/console` for compliance officers and
//! directors, over the same routes, rules and access logging as the API.
//!
//! Every page that shows personal data is decided and logged by the API's own handlers (they
//! are called here as functions) or, where the console shows more than a route does, through
//! [`crate::audit`] with the console's reasons. No JavaScript; one stylesheet; every response
//! carries a strict Content-Security-Policy; every form carries the session's CSRF token and
//! every `POST` without it is refused (`403`). See `docs/console.md`.
//!
//! A page's handler answers `Result<Response, Response>`: the error is the error page itself,
//! built once per request, so its size does not matter.
#![allow(clippy::result_large_err)]

mod messages;
pub mod oidc;
mod pages;
mod posts;
pub mod session;
mod verify;
mod view;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
pub use session::{link_url, mint_link, Session};
use std::collections::HashMap;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes.
pub fn router() -> Router<AppState> {
    use axum::routing::post;
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/console.css", get(stylesheet))
        .route("/console/lang/{lang}", get(pages::set_lang))
        .route(
            "/console/sign-in",
            get(pages::sign_in_page).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/oidc/sign-in", get(oidc::start))
        .route(oidc::CALLBACK_PATH, get(oidc::callback))
        .route("/console/children", get(pages::find_children))
        .route("/console/children/{child_id}", get(pages::child))
        .route(
            "/console/children/{child_id}/export",
            get(pages::export_child),
        )
        .route(
            "/console/children/{child_id}/erasure",
            get(pages::erase_child_confirm).post(pages::erase_child),
        )
        .route("/console/people", get(pages::find_people))
        .route("/console/people/{person_id}", get(pages::person))
        .route(
            "/console/people/{person_id}/export",
            get(pages::export_person),
        )
        .route(
            "/console/people/{person_id}/erasure",
            get(pages::erase_person_confirm).post(pages::erase_person),
        )
        .route("/console/media", get(pages::find_media))
        .route("/console/media/{media_id}", get(pages::media))
        .route("/console/access-log", get(pages::access_log))
        .route("/console/posts", get(posts::group_posts))
        .route("/console/verify", get(verify::show).post(verify::run))
        .layer(middleware::map_response(security_headers))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

/// The security headers of every console response.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    set(h, "strict-transport-security", "max-age=31536000");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    response
}

/// The console's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Nederlands.
    Nl,
    /// English.
    En,
}

/// The cookie that keeps the chosen language.
const LANG_COOKIE: &str = "kring_console_lang";

impl Lang {
    /// The text in this language.
    #[must_use]
    pub const fn t(self, en: &'static str, nl: &'static str) -> &'static str {
        match self {
            Self::En => en,
            Self::Nl => nl,
        }
    }

    /// The `lang` attribute.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Nl => "nl",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim().get(..2)?.to_ascii_lowercase().as_str() {
            "en" => Some(Self::En),
            "nl" => Some(Self::Nl),
            _ => None,
        }
    }

    /// The chosen language (cookie), else the first of `Accept-Language` the console speaks,
    /// else Dutch.
    #[must_use]
    pub fn of(headers: &axum::http::HeaderMap) -> Self {
        if let Some(l) = session::cookie(headers, LANG_COOKIE).and_then(|v| Self::parse(&v)) {
            return l;
        }
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',')
                    .find_map(|part| Self::parse(part.split(';').next()?))
            })
            .unwrap_or(Self::Nl)
    }
}

/// What every page needs: the language, the session (if signed in), the request id and path.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The language.
    pub lang: Lang,
    /// The signed-in officer.
    pub session: Option<Session>,
    /// The session's CSRF token (empty without a session).
    pub csrf: String,
    /// The request's id (what the access log's entries of this page carry).
    pub rid: uuid::Uuid,
    /// The path and query, for the language switch.
    pub here: String,
    /// The time zone times are shown and read in: the officer's school's.
    pub tz: chrono_tz::Tz,
}

/// The time zone without a school's: the Netherlands'.
pub const DEFAULT_TZ: chrono_tz::Tz = chrono_tz::Europe::Amsterdam;

/// The time zone of the first school where `person` is a compliance officer or director.
async fn zone_of(
    state: &AppState,
    person: kring_domain::PersonId,
) -> crate::error::ApiResult<chrono_tz::Tz> {
    Ok(pages::console_schools(state, person)
        .await?
        .first()
        .map_or(DEFAULT_TZ, |(_, roster)| roster.settings.tz()))
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = Lang::of(&parts.headers);
        let crate::state::RequestId(rid) =
            crate::state::RequestId::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
        let session = session::session_of(state, &parts.headers)
            .await
            .map_err(|e| view::error(lang, None, &e))?;
        let csrf = session.map(|s| s.csrf(&state.auth)).unwrap_or_default();
        let tz = match session {
            Some(s) => zone_of(state, s.person)
                .await
                .map_err(|e| view::error(lang, None, &e))?,
            None => DEFAULT_TZ,
        };
        Ok(Self {
            tz,
            lang,
            session,
            csrf,
            rid,
            here: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/console".to_owned(), ToString::to_string),
        })
    }
}

impl Ctx {
    /// The session, or the answer that sends the browser to the sign-in page.
    ///
    /// # Errors
    /// `303` to `/console` without a session.
    pub fn signed_in(&self) -> Result<Session, Response> {
        self.session.ok_or_else(|| {
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/console")]).into_response()
        })
    }

    /// The page for an API error.
    #[must_use]
    pub fn error(&self, e: &ApiError) -> Response {
        view::error(self.lang, Some(self), e)
    }
}

/// A form posted with the session's CSRF token: the only way a console `POST` handler reads
/// its body. Without a session, or without the right token, the request is refused (`403`).
pub struct CsrfForm {
    /// The page context (signed in).
    pub ctx: Ctx,
    /// The session.
    pub session: Session,
    /// The form's fields.
    pub fields: HashMap<String, String>,
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, state).await?;
        let refuse = |ctx: &Ctx, why: &'static str| {
            view::error(ctx.lang, Some(ctx), &ApiError::forbidden(why))
        };
        let Some(session) = ctx.session else {
            return Err(refuse(&ctx, "this form needs a signed-in console session"));
        };
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| refuse(&ctx, "the form could not be read"))?;
        let fields: HashMap<String, String> = form_urlencoded(&bytes);
        let ok = fields
            .get("csrf")
            .is_some_and(|t| session.csrf_ok(&state.auth, t));
        if !ok {
            return Err(refuse(
                &ctx,
                "the form's CSRF token is missing or not this session's: reload the page and try again",
            ));
        }
        Ok(Self {
            ctx,
            session,
            fields,
        })
    }
}

/// Parses an `application/x-www-form-urlencoded` body.
fn form_urlencoded(bytes: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes)
        .unwrap_or_default()
        .into_iter()
        .collect()
}
