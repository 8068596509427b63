//! The console's page frame and the small pieces every page uses.

use super::{Ctx, Lang};
use crate::error::ApiError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use std::fmt::Write as _;

/// A whole page: the frame (skip link, header with navigation, language switch and sign-out)
/// around `body`.
pub fn page(ctx: &Ctx, title: &str, body: &Markup) -> Markup {
    let l = ctx.lang;
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (l.t("Kring compliance console", "Kring privacyconsole")) }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                a.skip href="#main" { (l.t("Skip to content", "Naar de inhoud")) }
                header.top {
                    a.brand href="/console" { (l.t("Kring compliance console", "Kring privacyconsole")) }
                    @if ctx.session.is_some() {
                        nav aria-label=(l.t("Main", "Hoofdmenu")) {
                            a href="/console" { (l.t("Search", "Zoeken")) }
                            a href="/console/access-log" { (l.t("Access log", "Inzagelog")) }
                            a href="/console/verify" { (l.t("Verification", "Verificatie")) }
                        }
                    }
                    nav aria-label=(l.t("Language", "Taal")) {
                        @let back = urlencode(&ctx.here);
                        @if l == Lang::Nl {
                            a href={"/console/lang/en?back=" (back)} lang="en" { "English" }
                        } @else {
                            a href={"/console/lang/nl?back=" (back)} lang="nl" { "Nederlands" }
                        }
                    }
                    @if ctx.session.is_some() {
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            button type="submit" { (l.t("Sign out", "Afmelden")) }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// An HTML answer.
pub fn respond(status: StatusCode, markup: &Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.clone().into_string(),
    )
        .into_response()
}

/// The page for an API error, with its status.
pub fn error(lang: Lang, ctx: Option<&Ctx>, e: &ApiError) -> Response {
    let title = match e.status {
        StatusCode::NOT_FOUND => lang.t("Not found", "Niet gevonden"),
        StatusCode::FORBIDDEN => lang.t("Not allowed", "Niet toegestaan"),
        StatusCode::UNAUTHORIZED => lang.t("Not signed in", "Niet aangemeld"),
        s if s.is_client_error() => lang.t("Cannot do that", "Dat kan niet"),
        _ => lang.t("Something went wrong", "Er ging iets mis"),
    };
    let body = html! {
        div.panel.error role="alert" {
            p { (e.detail) }
            p { a href="/console" { (lang.t("Back to the console", "Terug naar de console")) } }
        }
    };
    let fallback;
    let ctx = if let Some(c) = ctx {
        c
    } else {
        fallback = Ctx {
            lang,
            session: None,
            csrf: String::new(),
            rid: uuid::Uuid::nil(),
            here: "/console".to_owned(),
        };
        &fallback
    };
    respond(e.status, &page(ctx, title, &body))
}

/// A moment as the console shows it: UTC to the second (the full value in `title`).
pub fn moment(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)) {
            (t.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// A moment to the microsecond (the as-of headings: two moments a decision apart differ there).
pub fn moment_precise(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(moment_value(t)) { (t.format("%Y-%m-%d %H:%M:%S%.6f UTC")) }
    }
}

/// A moment in the form the as-of fields take.
pub fn moment_value(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Reads an as-of field: RFC 3339, or a date and time (UTC) with or without seconds, or a date
/// (its start, UTC). Empty is none.
///
/// # Errors
/// `422` for anything else.
pub fn parse_moment(text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, f) {
            return Ok(Some(t.and_utc()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()));
    }
    Err(ApiError::validation(format!(
        "{text:?} is not a moment: write it as 2026-12-07T10:15:00Z (UTC)"
    )))
}

/// A purpose's name in the console's language.
pub fn purpose(l: Lang, p: &str) -> &'static str {
    match p {
        "education_reporting" => l.t("Education reporting", "Verslaglegging onderwijs"),
        "group_communication" => l.t("Group communication", "Groepscommunicatie"),
        "school_communication" => l.t("School communication", "Schoolcommunicatie"),
        "public_communication" => l.t("Public communication", "Openbare communicatie"),
        "internal_research" => l.t("Internal research", "Intern onderzoek"),
        "internal_training" => l.t("Internal training", "Interne scholing"),
        "external_research" => l.t("External research", "Extern onderzoek"),
        _ => l.t("Unknown purpose", "Onbekend doel"),
    }
}

/// Yes or no, marked for the eye and for the screen reader alike.
pub fn yes_no(
    l: Lang,
    yes: bool,
    (y, n): ((&'static str, &'static str), (&'static str, &'static str)),
) -> Markup {
    html! {
        @if yes { span.yes { "✓ " (l.t(y.0, y.1)) } } @else { span.no { "✗ " (l.t(n.0, n.1)) } }
    }
}

/// Percent-encodes a query value.
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char);
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}
