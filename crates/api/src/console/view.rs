//! The console's page frame and the small pieces every page uses.

use super::{Ctx, Lang};
use crate::error::ApiError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
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
                    @if ctx.session.is_some() {
                        p.note #zone { (l.t("Times in the time zone", "Tijden in de tijdzone")) " " strong { (ctx.tz.name()) } }
                    }
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
            p { (super::messages::explain(lang, e)) }
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
            tz: super::DEFAULT_TZ,
        };
        &fallback
    };
    respond(e.status, &page(ctx, title, &body))
}

/// A moment as the console shows it: in the officer's time zone to the second, the zone's
/// abbreviation after it and its name in `title` (the exact value in `datetime`).
pub fn moment(tz: Tz, t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(moment_value(t)) title=(tz.name()) {
            (t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z"))
        }
    }
}

/// A moment to the microsecond (the as-of headings: two moments a decision apart differ there).
pub fn moment_precise(tz: Tz, t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(moment_value(t)) title=(tz.name()) {
            (t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S%.6f %Z"))
        }
    }
}

/// A moment in the form the as-of fields take (RFC 3339, UTC: exact whatever the zone).
pub fn moment_value(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Reads an as-of field: RFC 3339 (its own offset), or a date and time with or without
/// seconds, or a date (its start) — those two in the zone `tz`. Empty is none.
///
/// # Errors
/// `422` for anything else, and for a local time the zone skips (the clocks going forward).
pub fn parse_moment(tz: Tz, text: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let bad = || {
        ApiError::validation(format!(
            "{text:?} is not a moment: write it as 2026-12-07T10:15:00Z or 2026-12-07 11:15 (in the time zone shown)"
        ))
    };
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(bad)?;
    // An hour the clocks repeat reads as its first pass.
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| Some(t.with_timezone(&Utc)))
        .ok_or_else(bad)
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

/// A bilingual text: English, Dutch.
pub type Text = (&'static str, &'static str);

/// A table with column headings `head` (each a [`Text`]) over `rows`, scrolled sideways on a
/// narrow screen; `id` names the table.
pub fn table(l: Lang, id: Option<&str>, head: &[Text], rows: &Markup) -> Markup {
    html! {
        div.table-wrap { table id=[id] {
            thead { tr { @for (en, nl) in head { th scope="col" { (l.t(en, nl)) } } } }
            tbody { (rows) }
        } }
    }
}

/// A search or filter form: `fields` beside a submit button labelled `submit`.
pub fn query_form(l: Lang, action: &str, fields: &Markup, submit: Text) -> Markup {
    html! {
        form.inline.panel method="get" action=(action) {
            (fields)
            button type="submit" { (l.t(submit.0, submit.1)) }
        }
    }
}

/// A labelled text field (`kind` the input's type) holding `value`.
pub fn field(l: Lang, label: Text, name: &str, kind: &str, value: &str) -> Markup {
    html! {
        label { (l.t(label.0, label.1))
            input type=(kind) name=(name) value=(value) autocomplete="off"; }
    }
}

/// A field for a moment, read in the officer's time zone (named in its label).
pub fn moment_field(ctx: &Ctx, label: Text, name: &str, value: Option<DateTime<Utc>>) -> Markup {
    let l = ctx.lang;
    html! {
        label { (l.t(label.0, label.1)) " (" (ctx.tz.name()) ")"
            input type="text" name=(name) id=(name) value=(value.map(moment_value).unwrap_or_default())
                placeholder="2026-12-07 10:15" autocomplete="off"; }
    }
}

/// A form that posts to `action` with the session's CSRF token: `inner` and a submit button
/// (`class` its class) labelled `submit`.
pub fn post_form(ctx: &Ctx, action: &str, inner: &Markup, class: &str, submit: Text) -> Markup {
    html! {
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(ctx.csrf);
            (inner)
            button class=(class) type="submit" { (ctx.lang.t(submit.0, submit.1)) }
        }
    }
}

/// A notice: what a page found (`role="status"`).
pub fn status(l: Lang, text: Text) -> Markup {
    html! { p.panel role="status" { (l.t(text.0, text.1)) } }
}

/// The rights section of a child's or person's page: export, erase, and who read the data.
pub fn rights(l: Lang, base: &str, subject: &str, erase: Text, read_by: Text) -> Markup {
    html! {
        h2 { (l.t("Rights", "Rechten")) }
        p {
            a.button #export href={(base) "/export"} download { (l.t("Export (JSON)", "Exporteren (JSON)")) }
            " "
            a href={(base) "/erasure"} { (l.t(erase.0, erase.1)) }
        }
        p { a href={"/console/access-log?subject=" (subject)} { (l.t(read_by.0, read_by.1)) } }
    }
}

/// A link to a person's page.
pub fn person_link(id: impl std::fmt::Display, name: &str) -> Markup {
    html! { a href={"/console/people/" (id)} { (name) } }
}

/// A link to a child's page.
pub fn child_link(id: impl std::fmt::Display, name: &str) -> Markup {
    html! { a href={"/console/children/" (id)} { (name) } }
}
