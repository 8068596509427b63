//! A person's calendar feed (iCalendar, RFC 5545): their meetings, and for guardians the
//! activities of their children's groups (those they volunteer for marked so). A calendar app
//! fetches it without a bearer token, authenticated by the secret key in its link
//! (`POST /v1/me/calendar-key` makes a new one; the old one stops working). Only the key's
//! SHA-256 digest is recorded, as with invitation codes.
//!
//! Each event has a stable UID (`meeting-<booking id>@kring`, `activity-<activity id>@kring`),
//! so a moved conversation updates the event in place: its SEQUENCE counts the moves and its
//! LAST-MODIFIED is the time of the last one. The feed names no child: a calendar link is a
//! secret that may end up in more hands than the person's.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::meetings::children_of;
use crate::state::{AppState, RequestId, Q};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, Utc};
use kring_domain::calendar::{self, CalendarAction, CalendarKey};
use kring_domain::{Command, GroupId, StreamName};
use kring_projections::models::{activities, meetings};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/calendar-key", post(new_calendar_key))
        .route("/v1/me/calendar.ics", get(calendar_feed))
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(new_calendar_key, calendar_feed),
    components(schemas(CalendarKeyDoc))
)]
pub struct Doc;

/// A new calendar feed key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CalendarKeyDoc {
    /// The secret key (shown only here, only once).
    pub key: String,
    /// The feed's path with the key, to add to a calendar app after the server's address.
    pub feed_path: String,
    /// The global position of the event written (pass as `min_position` to the feed).
    pub position: u64,
}

/// The SHA-256 of a key, hex.
fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Makes a new calendar feed key for the caller; any earlier key stops working.
#[utoipa::path(post, path = "/v1/me/calendar-key", tag = "meetings",
    responses((status = 201, body = CalendarKeyDoc), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn new_calendar_key(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
) -> ApiResult<(StatusCode, Json<CalendarKeyDoc>)> {
    let Some(person_id) = caller.person() else {
        return Err(ApiError::forbidden("the operator has no calendar"));
    };
    let key = B64URL.encode(crate::idempotency::fresh_secret::<32>()?);
    let key_digest = digest(&key);
    let actor = caller.actor();
    let written = state
        .exec
        .run::<CalendarKey, _>(StreamName::calendar(person_id), actor, rid, |s, _| {
            calendar::decide(
                s,
                Command::new(
                    actor,
                    CalendarAction::Issue {
                        person_id,
                        key_digest: key_digest.clone(),
                    },
                ),
            )
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CalendarKeyDoc {
            feed_path: format!("/v1/me/calendar.ics?key={key}"),
            key,
            position: written.position,
        }),
    ))
}

/// `GET /v1/me/calendar.ics`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The feed key from `POST /v1/me/calendar-key`.
    pub key: String,
    /// Wait until the read models have applied the log up to this position.
    pub min_position: Option<u64>,
}

/// The caller's calendar (iCalendar), authenticated by the key in the link, not by a bearer
/// token; `404` for a key that is not (or no longer) anyone's.
#[utoipa::path(get, path = "/v1/me/calendar.ics", tag = "meetings",
    params(FeedQuery),
    responses((status = 200, description = "An iCalendar (RFC 5545) feed", content_type = "text/calendar", body = String),
        (status = 404, body = crate::error::Problem)))]
pub async fn calendar_feed(
    State(state): State<AppState>,
    Q(q): Q<FeedQuery>,
) -> ApiResult<Response> {
    crate::state::MinPosition {
        min_position: q.min_position,
    }
    .wait(&state)
    .await?;
    let Some(person) =
        meetings::person_of_calendar_key(&state.system.db, &digest(q.key.trim())).await?
    else {
        return Err(ApiError::not_found("calendar feed"));
    };
    let now = Utc::now();
    let mut events = Vec::new();
    let children = children_of(&state, person).await?;
    let child_ids: Vec<_> = children.iter().map(|(c, _)| *c).collect();
    let mut conversations: BTreeMap<_, meetings::Meeting> = BTreeMap::new();
    for m in meetings::staff_schedule(&state.system.db, person)
        .await?
        .into_iter()
        .chain(meetings::family_schedule(&state.system.db, &child_ids).await?)
    {
        conversations.insert(m.booking.booking_id, m);
    }
    for m in conversations.into_values() {
        events.push(VEvent {
            uid: format!("meeting-{}@kring", m.booking.booking_id),
            summary: m.title,
            location: Some(super::meetings::open_place(&state, &m.place).await?),
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            sequence: m.booking.sequence,
            last_modified: Some(m.booking.changed_at),
            cancelled: false,
        });
    }
    let groups: BTreeSet<GroupId> = children.iter().map(|(_, g)| *g).collect();
    for g in groups {
        for a in activities::activities_of_group(&state.system.db, g).await? {
            let volunteering = a.volunteers.contains(&person);
            events.push(VEvent {
                uid: format!("activity-{}@kring", a.activity_id),
                summary: if volunteering {
                    format!("{} (volunteering)", a.title)
                } else {
                    a.title
                },
                location: None,
                starts_at: a.starts_at,
                ends_at: a.ends_at,
                sequence: u32::from(a.cancelled),
                last_modified: a.cancelled_at,
                cancelled: a.cancelled,
            });
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        ics(&events, now),
    )
        .into_response())
}

/// One VEVENT.
struct VEvent {
    uid: String,
    summary: String,
    location: Option<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    sequence: u32,
    last_modified: Option<DateTime<Utc>>,
    cancelled: bool,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// TEXT escaped (RFC 5545 §3.3.11).
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line, folded at 75 octets (RFC 5545 §3.1), ended by CRLF.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

/// The iCalendar document.
fn ics(events: &[VEvent], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    for l in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Kring//Kring//NL",
        "CALSCALE:GREGORIAN",
        "X-WR-CALNAME:Kring",
    ] {
        line(&mut out, l);
    }
    for e in events {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", e.uid));
        line(&mut out, &format!("DTSTAMP:{}", stamp(now)));
        line(&mut out, &format!("DTSTART:{}", stamp(e.starts_at)));
        line(&mut out, &format!("DTEND:{}", stamp(e.ends_at)));
        line(&mut out, &format!("SUMMARY:{}", text(&e.summary)));
        if let Some(l) = &e.location {
            line(&mut out, &format!("LOCATION:{}", text(l)));
        }
        line(&mut out, &format!("SEQUENCE:{}", e.sequence));
        if let Some(t) = e.last_modified {
            line(&mut out, &format!("LAST-MODIFIED:{}", stamp(t)));
        }
        line(
            &mut out,
            if e.cancelled {
                "STATUS:CANCELLED"
            } else {
                "STATUS:CONFIRMED"
            },
        );
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fold_at_75_octets_and_text_is_escaped() {
        let mut out = String::new();
        line(&mut out, &format!("SUMMARY:{}", text(&"é,;".repeat(30))));
        for l in out.split("\r\n") {
            assert!(l.len() <= 75, "{l:?}");
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(
            unfolded.trim_end(),
            format!("SUMMARY:{}", "é\\,\\;".repeat(30))
        );
    }
}
