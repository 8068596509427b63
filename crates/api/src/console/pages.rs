//! The console's pages.

use super::view::{
    self, moment, moment_precise, moment_value, page, purpose, respond, urlencode, yes_no,
};
use super::{session, CsrfForm, Ctx, Lang};
use crate::audit::log_if_audited;
use crate::error::{ApiError, ApiResult};
use crate::routes::{consent, posts, rights};
use crate::state::{AppState, MinPosition, Q};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use chrono::{DateTime, Duration, Utc};
use kring_domain::access::{AccessReason, Subject};
use kring_domain::consent::Consents;
use kring_domain::school::{GroupKind, School, StaffRole};
use kring_domain::{Aggregate, ChildId, GroupId, MediaId, PersonId, SchoolId, StreamName};
use kring_projections::models::consent as consent_model;
use kring_projections::models::{memberships, visibility};
use kring_store::EventStoreExt;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use uuid::Uuid;

type Page = Result<Response, Response>;

/// Turns an API error into its page.
fn or_page<T>(ctx: &Ctx, r: ApiResult<T>) -> Result<T, Response> {
    r.map_err(|e| ctx.error(&e))
}

/// A page answered `200`, as the `Page` every handler returns.
#[expect(
    clippy::unnecessary_wraps,
    reason = "every page handler ends in `ok(..)` and answers a `Page`"
)]
fn ok(ctx: &Ctx, title: &str, body: &Markup) -> Page {
    Ok(respond(StatusCode::OK, &page(ctx, title, body)))
}

/// The schools where `person` is a compliance officer or director, with their names.
async fn console_schools(
    state: &AppState,
    person: PersonId,
) -> ApiResult<Vec<(String, Arc<School>)>> {
    let profile = memberships::person(&state.system.db, person).await?;
    let mut out = Vec::new();
    for s in profile.map(|p| p.schools).unwrap_or_default() {
        let roster = state.exec.school(s.school_id).await?.state;
        if matches!(
            roster.role(person),
            Some(StaffRole::ComplianceOfficer | StaffRole::Director)
        ) {
            out.push((s.name, roster));
        }
    }
    Ok(out)
}

async fn person_name(state: &AppState, person: PersonId) -> ApiResult<String> {
    let profile = memberships::person(&state.system.db, person).await?;
    Ok(state
        .open_opt(profile.and_then(|p| p.display_name).as_ref())
        .await?
        .unwrap_or_else(|| person.to_string()))
}

async fn child_name(state: &AppState, child: ChildId) -> ApiResult<String> {
    Ok(match memberships::child(&state.system.db, child).await? {
        Some(c) => format!(
            "{} {}.",
            state.open(&c.first_name).await?,
            state.open(&c.last_initial).await?
        ),
        None => child.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// Sign-in, sign-out, language.

/// `GET /console`: the search forms, or how to sign in.
pub async fn home(State(state): State<AppState>, ctx: Ctx) -> Page {
    let l = ctx.lang;
    let Some(session) = ctx.session else {
        let body = html! {
            div.panel {
                p { (l.t("Sign in with a one-time link. An administrator of this installation makes one for you:",
                         "Meld u aan met een eenmalige link. Een beheerder van deze installatie maakt er een voor u:")) }
                pre { code { "kring-api token --console --person <id>" } }
                p.note { (l.t("The link works once, for ten minutes. A session lasts an hour.",
                              "De link werkt één keer, tien minuten lang. Een sessie duurt een uur.")) }
                (super::oidc::offer(&state, l))
            }
        };
        return ok(&ctx, l.t("Sign in", "Aanmelden"), &body);
    };
    let schools = or_page(&ctx, console_schools(&state, session.person).await)?;
    let body = html! {
        section.panel aria-labelledby="find-child" {
            h2 #find-child { (l.t("Find a child", "Een kind zoeken")) }
            form.inline method="get" action="/console/children" {
                label { (l.t("Group", "Groep"))
                    select name="group" {
                        option value="" { (l.t("All groups", "Alle groepen")) }
                        @for (school, roster) in &schools {
                            optgroup label=(school) {
                                @for (id, g) in &roster.groups {
                                    @if g.kind == GroupKind::Class {
                                        option value=(id) { (g.name) }
                                    }
                                }
                            }
                        }
                    }
                }
                label { (l.t("First name", "Voornaam")) input type="search" name="name" autocomplete="off"; }
                button type="submit" { (l.t("Find", "Zoeken")) }
            }
        }
        section.panel aria-labelledby="find-person" {
            h2 #find-person { (l.t("Find a person", "Een persoon zoeken")) }
            form.inline method="get" action="/console/people" {
                label { (l.t("Name", "Naam")) input type="search" name="name" autocomplete="off"; }
                button type="submit" { (l.t("Find", "Zoeken")) }
            }
        }
        section.panel aria-labelledby="find-media" {
            h2 #find-media { (l.t("Find a photo", "Een foto zoeken")) }
            p.note { (l.t("A child's page lists the photos that show the child; or give a photo's id.",
                          "De pagina van een kind toont de foto's waarop het kind staat; of geef het id van een foto.")) }
            form.inline method="get" action="/console/media" {
                label { (l.t("Photo id", "Foto-id")) input type="text" name="id" autocomplete="off"; }
                button type="submit" { (l.t("Open", "Openen")) }
            }
        }
    };
    ok(&ctx, l.t("Search", "Zoeken"), &body)
}

#[derive(Deserialize)]
pub struct Back {
    back: Option<String>,
}

/// `GET /console/lang/{lang}?back=`: keeps the chosen language in a cookie and goes back.
pub async fn set_lang(Path(lang): Path<String>, Query(q): Query<Back>) -> Response {
    let lang = if lang == "en" { "en" } else { "nl" };
    // Only back into the console: never an open redirect.
    let back = q
        .back
        .filter(|b| b.starts_with("/console") && !b.starts_with("//"))
        .unwrap_or_else(|| "/console".to_owned());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, back),
            (
                header::SET_COOKIE,
                format!(
                    "{}={lang}; Path=/console; Max-Age=31536000; Secure; HttpOnly; SameSite=Strict",
                    super::LANG_COOKIE
                ),
            ),
        ],
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LinkQuery {
    link: Option<String>,
}

/// `GET /console/sign-in?link=`: a button that spends the link (a link opened by a mail
/// scanner or a preview is not spent).
pub async fn sign_in_page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<LinkQuery>,
) -> Page {
    let l = ctx.lang;
    let body = html! {
        div.panel {
            @if let Some(link) = q.link.filter(|s| !s.is_empty()) {
                p { (l.t("Sign in to the compliance console with this one-time link.",
                         "Meld u aan bij de privacyconsole met deze eenmalige link.")) }
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="link" value=(link);
                    button type="submit" #sign-in { (l.t("Sign in", "Aanmelden")) }
                }
            } @else {
                p { (l.t("This address holds no sign-in link.", "Dit adres bevat geen aanmeldlink.")) }
                (super::oidc::offer(&state, l))
            }
        }
    };
    ok(&ctx, l.t("Sign in", "Aanmelden"), &body)
}

#[derive(Deserialize)]
pub struct SignInForm {
    link: String,
}

/// `POST /console/sign-in`: spends the link and starts the session. (No CSRF token: there is
/// no session yet; the link's single-use secret is what the form proves.)
pub async fn sign_in(State(state): State<AppState>, ctx: Ctx, Form(f): Form<SignInForm>) -> Page {
    let (_, cookie) = or_page(&ctx, session::sign_in(&state, ctx.rid, &f.link).await)?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console".to_owned()),
            (header::SET_COOKIE, session::set_cookie(&cookie)),
        ],
    )
        .into_response())
}

/// `POST /console/sign-out`: ends the session everywhere (its id is revoked) and clears the
/// cookie.
pub async fn sign_out(State(state): State<AppState>, form: CsrfForm) -> Page {
    let ctx = &form.ctx;
    match crate::routes::sign_in::record_revocation(
        &state.exec,
        crate::auth::Caller::Operator,
        ctx.rid,
        form.session.id,
    )
    .await
    {
        Ok(p) => or_page(ctx, state.wait_for(p).await)?,
        Err(e) if e.status == StatusCode::CONFLICT => {}
        Err(e) => return Err(ctx.error(&e)),
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/console".to_owned()),
            (header::SET_COOKIE, session::clear_cookie()),
        ],
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Finding.

#[derive(Deserialize)]
pub struct FindChild {
    group: Option<String>,
    name: Option<String>,
}

/// `GET /console/children?group=&name=`: the children of the officer's schools in a class
/// group whose first name contains `name`. Each child listed is logged (a search result names
/// it).
pub async fn find_children(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<FindChild>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let group: Option<GroupId> = q
        .group
        .as_deref()
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.parse()
                .map_err(|_| ctx.error(&ApiError::validation("group: not a group id")))
        })
        .transpose()?;
    let needle = q.name.unwrap_or_default().trim().to_lowercase();
    let schools = or_page(&ctx, console_schools(&state, session.person).await)?;
    let mut found = Vec::new();
    for (_, roster) in &schools {
        for (gid, g) in &roster.groups {
            if g.kind != GroupKind::Class || group.is_some_and(|want| want != *gid) {
                continue;
            }
            let Some(view) = or_page(
                &ctx,
                memberships::group(&state.system.db, *gid)
                    .await
                    .map_err(ApiError::from),
            )?
            else {
                continue;
            };
            for c in view.children {
                let first = or_page(&ctx, state.open(&c.first_name).await)?;
                if !needle.is_empty() && !first.to_lowercase().contains(&needle) {
                    continue;
                }
                let initial = or_page(&ctx, state.open(&c.last_initial).await)?;
                found.push((
                    Arc::clone(roster),
                    c.child_id,
                    format!("{first} {initial}."),
                    g.name.clone(),
                ));
            }
        }
    }
    for (roster, child, _, _) in &found {
        or_page(
            &ctx,
            log_if_audited(
                &state,
                session.caller(),
                ctx.rid,
                roster,
                Subject::Child(*child),
                AccessReason::ConsoleSearch,
            )
            .await,
        )?;
    }
    let body = html! {
        p { a href="/console" { (l.t("New search", "Nieuwe zoekopdracht")) } }
        @if found.is_empty() {
            p.panel role="status" { (l.t("No child found at your schools.", "Geen kind gevonden op uw scholen.")) }
        } @else {
            div.table-wrap { table {
                caption.muted { (found.len()) " " (l.t("found", "gevonden")) }
                thead { tr { th scope="col" { (l.t("Child", "Kind")) } th scope="col" { (l.t("Group", "Groep")) } } }
                tbody { @for (_, id, name, group) in &found {
                    tr { td { a href={"/console/children/" (id)} { (name) } } td { (group) } }
                } }
            } }
        }
    };
    ok(&ctx, l.t("Children", "Kinderen"), &body)
}

#[derive(Deserialize)]
pub struct FindPerson {
    name: Option<String>,
}

/// `GET /console/people?name=`: staff and guardians of the officer's schools whose name
/// contains `name`; each listed is logged.
pub async fn find_people(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<FindPerson>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let needle = q.name.unwrap_or_default().trim().to_lowercase();
    let schools = or_page(&ctx, console_schools(&state, session.person).await)?;
    let mut seen = BTreeMap::new();
    for (school, roster) in &schools {
        let staff = roster.staff.keys().copied();
        let guardians = roster
            .children
            .values()
            .flat_map(|e| e.guardians.iter().copied());
        for p in staff.chain(guardians) {
            seen.entry(p)
                .or_insert_with(|| (school.clone(), Arc::clone(roster)));
        }
    }
    let mut found = Vec::new();
    for (p, (school, roster)) in seen {
        let name = or_page(&ctx, person_name(&state, p).await)?;
        if needle.is_empty() || name.to_lowercase().contains(&needle) {
            found.push((p, name, school, roster));
        }
    }
    for (p, _, _, roster) in &found {
        or_page(
            &ctx,
            log_if_audited(
                &state,
                session.caller(),
                ctx.rid,
                roster,
                Subject::Person(*p),
                AccessReason::ConsoleSearch,
            )
            .await,
        )?;
    }
    let body = html! {
        p { a href="/console" { (l.t("New search", "Nieuwe zoekopdracht")) } }
        @if found.is_empty() {
            p.panel role="status" { (l.t("Nobody found at your schools.", "Niemand gevonden op uw scholen.")) }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { (l.t("Person", "Persoon")) } th scope="col" { (l.t("School", "School")) } } }
                tbody { @for (id, name, school, _) in &found {
                    tr { td { a href={"/console/people/" (id)} { (name) } } td { (school) } }
                } }
            } }
        }
    };
    ok(&ctx, l.t("People", "Personen"), &body)
}

#[derive(Deserialize)]
pub struct FindMedia {
    id: Option<String>,
}

/// `GET /console/media?id=`: to the photo's page.
pub async fn find_media(ctx: Ctx, Query(q): Query<FindMedia>) -> Page {
    ctx.signed_in()?;
    let id: MediaId =
        q.id.as_deref()
            .unwrap_or_default()
            .trim()
            .parse()
            .map_err(|_| ctx.error(&ApiError::validation("not a photo id")))?;
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/console/media/{id}"))],
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// A child's consent.

#[derive(Deserialize)]
pub struct AsOfQuery {
    as_of: Option<String>,
    compare: Option<String>,
}

fn decided(l: Lang, granted: bool) -> Markup {
    yes_no(
        l,
        granted,
        (("granted", "gegeven"), ("withdrawn", "ingetrokken")),
    )
}

/// `GET /console/children/{id}?as_of=&compare=`: the child's consent per purpose (now or at a
/// moment, and at a second moment beside it), the full timeline, and the photos that show the
/// child. Reads through the API's consent routes (their rules, their access-log entries).
pub async fn child(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(child_id): Path<String>,
    Query(q): Query<AsOfQuery>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let caller = session.caller();
    let child_id: ChildId = child_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("child")))?;
    let as_of = or_page(&ctx, view::parse_moment(q.as_of.as_deref()))?;
    let compare = or_page(&ctx, view::parse_moment(q.compare.as_deref()))?;
    let consents_at = |t: Option<DateTime<Utc>>| {
        consent::consents(
            State(state.clone()),
            caller,
            crate::state::RequestId(ctx.rid),
            Path(child_id),
            Q(MinPosition::default()),
            Q(consent::AsOf { as_of: t }),
        )
    };
    let Json(now) = or_page(&ctx, consents_at(as_of).await)?;
    let other = match compare {
        Some(t) => Some(or_page(&ctx, consents_at(Some(t)).await)?.0),
        None => None,
    };
    let Json(history) = or_page(
        &ctx,
        consent::history(
            State(state.clone()),
            caller,
            crate::state::RequestId(ctx.rid),
            Path(child_id),
            Q(MinPosition::default()),
            Q(consent::HistoryFilter::default()),
        )
        .await,
    )?;
    let place = or_page(&ctx, consent::child_place(&state, caller, child_id).await)?;
    let name = or_page(&ctx, child_name(&state, child_id).await)?;
    let group = place
        .roster
        .state
        .groups
        .get(&place.group_id)
        .map(|g| g.name.clone())
        .unwrap_or_default();
    let mut names: HashMap<Uuid, String> = HashMap::new();
    let people = history
        .entries
        .iter()
        .flat_map(|e| std::iter::once(e.guardian_id).chain(e.recorded_by))
        .chain(
            now.purposes
                .iter()
                .flat_map(|p| p.decisions.iter().map(|d| d.guardian_id)),
        );
    for p in people.collect::<Vec<_>>() {
        if let Entry::Vacant(v) = names.entry(p) {
            v.insert(or_page(
                &ctx,
                person_name(&state, PersonId::from_uuid(p)).await,
            )?);
        }
    }
    let who = |p: &Uuid| names.get(p).cloned().unwrap_or_else(|| p.to_string());
    let photos = or_page(
        &ctx,
        visibility::live_media_showing(&state.system.db, place.school_id, child_id)
            .await
            .map_err(ApiError::from),
    )?;
    let at_text = as_of.map(moment_value).unwrap_or_default();
    let media_query = as_of
        .map(|t| format!("?as_of={}", urlencode(&moment_value(t))))
        .unwrap_or_default();
    let body = html! {
        p { (l.t("Group", "Groep")) ": " strong { (group) } }
        form.inline.panel method="get" action={"/console/children/" (child_id)} {
            label { (l.t("Consent as of (UTC)", "Toestemming per moment (UTC)"))
                input type="text" name="as_of" #as_of value=(at_text) placeholder="2026-12-07T10:15:00Z"; }
            label { (l.t("Compare with (UTC)", "Vergelijken met (UTC)"))
                input type="text" name="compare" #compare value=(compare.map(moment_value).unwrap_or_default()) placeholder="2026-12-01"; }
            button type="submit" #show { (l.t("Show", "Tonen")) }
            a href={"/console/children/" (child_id)} { (l.t("Now", "Nu")) }
        }
        h2 #consent {
            (l.t("Consent", "Toestemming")) " — "
            @if as_of.is_some() { (moment_precise(now.as_of)) } @else { (l.t("now", "nu")) }
        }
        div.table-wrap { table #consents {
            thead { tr {
                th scope="col" { (l.t("Purpose", "Doel")) }
                th scope="col" { (l.t("Consent holds", "Toestemming geldt")) }
                @if let Some(o) = &other { th scope="col" { (l.t("At", "Op")) " " (moment_precise(o.as_of)) } }
                th scope="col" { (l.t("Each guardian's latest decision", "Laatste besluit per ouder/verzorger")) }
            } }
            tbody { @for p in &now.purposes {
                @let then = other.as_ref().and_then(|o| o.purposes.iter().find(|x| x.purpose == p.purpose));
                @let changed = then.is_some_and(|t| t.effective != p.effective);
                tr class=[changed.then_some("changed")] data-purpose=(p.purpose) {
                    th scope="row" { (purpose(l, &p.purpose)) }
                    td data-effective=(p.effective) {
                        (yes_no(l, p.effective, (("yes", "ja"), ("no", "nee"))))
                        @if p.needs_decision { br; span.muted { (l.t("asked to decide again", "opnieuw gevraagd")) } }
                    }
                    @if other.is_some() { td { @if let Some(t) = then {
                        (yes_no(l, t.effective, (("yes", "ja"), ("no", "nee"))))
                        @if changed { " " strong { (l.t("changed", "gewijzigd")) } }
                    } } }
                    td { ul.plain { @for d in &p.decisions {
                        li { (who(&d.guardian_id)) ": " (decided(l, d.granted)) " " span.muted { (moment(d.at)) } }
                    } } }
                }
            } }
        } }
        h2 #timeline { (l.t("Timeline", "Tijdlijn")) }
        div.table-wrap { table #history {
            thead { tr {
                th scope="col" { (l.t("When", "Wanneer")) }
                th scope="col" { (l.t("Purpose", "Doel")) }
                th scope="col" { (l.t("Guardian", "Ouder/verzorger")) }
                th scope="col" { (l.t("Decision", "Besluit")) }
                th scope="col" { (l.t("Method", "Wijze")) }
                th scope="col" { (l.t("Policy version", "Beleidsversie")) }
                th scope="col" { (l.t("Recorded by", "Vastgelegd door")) }
                th scope="col" { (l.t("Holds after", "Geldt daarna")) }
                th scope="col" { (l.t("View", "Bekijken")) }
            } }
            tbody { @for e in &history.entries {
                tr data-granted=(e.granted) {
                    td { (moment(e.occurred_at)) }
                    td { (purpose(l, &e.purpose)) }
                    td { (who(&e.guardian_id)) }
                    td { (decided(l, e.granted)) }
                    td { @match e.method { consent::Method::App => (l.t("app", "app")), consent::Method::Paper => (l.t("paper form", "papieren formulier")) } }
                    td { (e.policy_version) }
                    td { @match e.recorded_by { Some(p) => (who(&p)), None => span.muted { (l.t("the guardian, in the app", "de ouder zelf, in de app")) } } }
                    td { (yes_no(l, e.effective_after, (("yes", "ja"), ("no", "nee")))) }
                    td {
                        a.before href={"/console/children/" (child_id) "?as_of=" (urlencode(&moment_value(e.occurred_at - Duration::microseconds(1)))) "&compare=" (urlencode(&moment_value(e.occurred_at)))} {
                            (l.t("just before", "vlak ervoor"))
                        }
                    }
                }
            } }
        } }
        h2 #photos { (l.t("Photos showing the child", "Foto's waarop het kind staat")) }
        @if photos.is_empty() {
            p.muted { (l.t("None.", "Geen.")) }
        } @else {
            ul { @for (post, media) in &photos {
                li { a.photo href={"/console/media/" (media) (media_query)} { (l.t("Photo", "Foto")) " " code { (media) } }
                     " " span.muted { (l.t("in post", "in bericht")) " " code { (post) } } }
            } }
        }
        h2 { (l.t("Rights", "Rechten")) }
        p {
            a.button #export href={"/console/children/" (child_id) "/export"} download { (l.t("Export (JSON)", "Exporteren (JSON)")) }
            " "
            a href={"/console/children/" (child_id) "/erasure"} { (l.t("Erase this child's data…", "Gegevens van dit kind wissen…")) }
        }
    };
    ok(&ctx, &name, &body)
}

// ---------------------------------------------------------------------------------------------
// A photo's viewers.

#[derive(Deserialize)]
pub struct MomentQuery {
    as_of: Option<String>,
}

/// Who may see `media_id` at `t`: the domain's rule over the school's roster and the tagged
/// children's consent as they were at `t`, and the post as it was then (or, for a photo
/// published later, as published: who would have seen it). `None` when the item is unknown.
async fn viewers_at(
    state: &AppState,
    media_id: MediaId,
    t: DateTime<Utc>,
) -> ApiResult<Option<(kring_domain::visibility::MediaVisibility, bool)>> {
    let Some(place) = visibility::media_place(&state.system.db, media_id).await? else {
        return Ok(None);
    };
    let until = |events: Vec<(kring_store::RecordedEvent, kring_domain::Event)>| {
        events
            .into_iter()
            .filter(|(r, _)| r.occurred_at <= t)
            .map(|(_, e)| e)
            .collect::<Vec<_>>()
    };
    let school = School::fold(&until(
        state
            .exec
            .events_of(&StreamName::school(place.school_id))
            .await?,
    ));
    let post_events = state
        .exec
        .events_of(&StreamName::post(place.post_id))
        .await?;
    let then = kring_domain::post::Post::fold(&until(post_events.clone()));
    let (post, published_later) = if then.media.contains_key(&media_id) {
        (then, false)
    } else {
        let all: Vec<_> = post_events.into_iter().map(|(_, e)| e).collect();
        (kring_domain::post::Post::fold(&all), true)
    };
    let Some(item) = post.media.get(&media_id) else {
        return Ok(None);
    };
    let until_t = t.checked_add_signed(Duration::microseconds(1)).unwrap_or(t);
    let mut consents: HashMap<ChildId, Consents> = HashMap::new();
    for child in &item.tagged {
        let mut c = Consents::default();
        for e in consent_model::consent_history(&state.system.db, *child, None, None, Some(until_t))
            .await?
        {
            c.record(e.purpose, e.guardian_id, (&e).into());
        }
        consents.insert(*child, c);
    }
    let lookup = |child: ChildId, purpose, counting_from| {
        consents
            .get(&child)
            .is_some_and(|c| c.is_effective(purpose, counting_from))
    };
    let answer = kring_domain::visibility::who_may_see(&school, &post, media_id, &lookup)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Some((answer, published_later)))
}

struct Shown {
    viewers: Vec<(Uuid, &'static str)>,
    withheld: Vec<(Uuid, Vec<(Uuid, String)>)>,
}

/// `GET /console/media/{id}?as_of=`: who may see the photo now (the API's viewers route, its
/// rule and its access-log entry) and at a chosen moment, with the reason for each viewer and,
/// for each withheld guardian, the child and purpose that withhold it.
pub async fn media(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(media_id): Path<String>,
    Query(q): Query<MomentQuery>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let media_id: MediaId = media_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("photo")))?;
    let at = or_page(&ctx, view::parse_moment(q.as_of.as_deref()))?;
    // The API's route decides (and logs) the read.
    let Json(current) = or_page(
        &ctx,
        posts::media_viewers(
            State(state.clone()),
            session.caller(),
            crate::state::RequestId(ctx.rid),
            Path(media_id),
            Q(MinPosition::default()),
        )
        .await,
    )?;
    let reason = |r: &posts::Reason| match r {
        posts::Reason::Staff => l.t("staff of the group", "personeel van de groep"),
        posts::Reason::Audience => l.t(
            "parent in the group; every child shown has consent",
            "ouder in de groep; elk getoond kind heeft toestemming",
        ),
        posts::Reason::OwnChild => l.t("parent of a child shown", "ouder van een getoond kind"),
    };
    let now_shown = Shown {
        viewers: current
            .viewers
            .iter()
            .map(|v| (v.person_id, reason(&v.reason)))
            .collect(),
        withheld: current
            .withheld
            .iter()
            .map(|w| {
                (
                    w.person_id,
                    w.because
                        .iter()
                        .map(|b| (b.child_id, b.purpose.clone()))
                        .collect(),
                )
            })
            .collect(),
    };
    let then = match at {
        Some(t) => or_page(&ctx, viewers_at(&state, media_id, t).await)?.map(|(v, later)| {
            let r = |r: kring_domain::visibility::ViewReason| reason(&posts::Reason::from(r));
            (
                t,
                later,
                Shown {
                    viewers: v
                        .viewers
                        .iter()
                        .map(|x| (x.person_id.as_uuid(), r(x.reason)))
                        .collect(),
                    withheld: v
                        .withheld
                        .iter()
                        .map(|w| {
                            (
                                w.person_id.as_uuid(),
                                w.because
                                    .iter()
                                    .map(|b| (b.child_id.as_uuid(), b.purpose.as_str().to_owned()))
                                    .collect(),
                            )
                        })
                        .collect(),
                },
            )
        }),
        None => None,
    };
    let mut names: HashMap<Uuid, String> = HashMap::new();
    let mut children: HashMap<Uuid, String> = HashMap::new();
    let mut people: Vec<Uuid> = Vec::new();
    let mut shown_children: Vec<Uuid> = Vec::new();
    let mut all: Vec<&Shown> = vec![&now_shown];
    if let Some((_, _, s)) = &then {
        all.push(s);
    }
    for s in all {
        for v in &s.viewers {
            people.push(v.0);
        }
        for w in &s.withheld {
            people.push(w.0);
            for b in &w.1 {
                shown_children.push(b.0);
            }
        }
    }
    for p in people {
        if let Entry::Vacant(v) = names.entry(p) {
            v.insert(or_page(
                &ctx,
                person_name(&state, PersonId::from_uuid(p)).await,
            )?);
        }
    }
    for c in shown_children {
        if let Entry::Vacant(v) = children.entry(c) {
            v.insert(or_page(
                &ctx,
                child_name(&state, ChildId::from_uuid(c)).await,
            )?);
        }
    }
    let table = |id: &str, s: &Shown| {
        html! {
            h3 { (l.t("May see it", "Mag de foto zien")) " (" (s.viewers.len()) ")" }
            div.table-wrap { table id={(id) "-viewers"} {
                thead { tr { th scope="col" { (l.t("Person", "Persoon")) } th scope="col" { (l.t("Why", "Waarom")) } } }
                tbody { @for (p, why) in &s.viewers { tr { td { a href={"/console/people/" (p)} { (names.get(p).cloned().unwrap_or_default()) } } td { (why) } } } }
            } }
            h3 { (l.t("Withheld from", "Niet getoond aan")) " (" (s.withheld.len()) ")" }
            div.table-wrap { table id={(id) "-withheld"} {
                thead { tr { th scope="col" { (l.t("Guardian", "Ouder/verzorger")) } th scope="col" { (l.t("Because of", "Vanwege")) } } }
                tbody { @for (p, because) in &s.withheld { tr {
                    td { a href={"/console/people/" (p)} { (names.get(p).cloned().unwrap_or_default()) } }
                    td { ul.plain { @for (c, purp) in because { li {
                        a href={"/console/children/" (c)} { (children.get(c).cloned().unwrap_or_default()) } ": "
                        (l.t("no consent for", "geen toestemming voor")) " " (purpose(l, purp))
                    } } } }
                } } }
            } }
        }
    };
    let body = html! {
        p { (l.t("Photo", "Foto")) " " code { (media_id) } }
        form.inline.panel method="get" action={"/console/media/" (media_id)} {
            label { (l.t("Also show as of (UTC)", "Ook tonen per moment (UTC)"))
                input type="text" name="as_of" #as_of value=(at.map(moment_value).unwrap_or_default()) placeholder="2026-12-07T10:15:00Z"; }
            button type="submit" #show { (l.t("Show", "Tonen")) }
        }
        section #now {
            h2 { (l.t("Now", "Nu")) }
            (table("now", &now_shown))
        }
        @if let Some((t, later, s)) = &then {
            section #then {
                h2 { (l.t("As of", "Per")) " " (moment_precise(*t)) }
                @if *later {
                    p.note { (l.t("The photo was published after this moment: shown is who would have seen it under the school's membership and consent of that moment.",
                                  "De foto is na dit moment geplaatst: getoond is wie hem had mogen zien met de groepsindeling en toestemming van dat moment.")) }
                }
                (table("then", s))
            }
        }
    };
    ok(
        &ctx,
        l.t("Who may see this photo", "Wie deze foto mag zien"),
        &body,
    )
}

// ---------------------------------------------------------------------------------------------
// A person.

/// The roster of one of the officer's schools that `person` belongs to (staff or guardian);
/// `404` when none: whom the officer may not know of, the console does not show.
async fn person_roster(
    state: &AppState,
    officer: PersonId,
    person: PersonId,
) -> ApiResult<Arc<School>> {
    for (_, roster) in console_schools(state, officer).await? {
        if roster.staff.contains_key(&person)
            || roster
                .children
                .values()
                .any(|e| e.guardians.contains(&person))
        {
            return Ok(roster);
        }
    }
    Err(ApiError::not_found(format!(
        "person {person} at your schools"
    )))
}

/// `GET /console/people/{id}`: a person's name, roles and children at the officer's schools.
pub async fn person(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(person_id): Path<String>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let person_id: PersonId = person_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("person")))?;
    let roster = or_page(&ctx, person_roster(&state, session.person, person_id).await)?;
    or_page(
        &ctx,
        log_if_audited(
            &state,
            session.caller(),
            ctx.rid,
            &roster,
            Subject::Person(person_id),
            AccessReason::ConsoleReadPerson,
        )
        .await,
    )?;
    let profile = or_page(
        &ctx,
        memberships::person(&state.system.db, person_id)
            .await
            .map_err(ApiError::from),
    )?;
    let name = or_page(&ctx, person_name(&state, person_id).await)?;
    let mut kids = Vec::new();
    for c in profile
        .as_ref()
        .map(|p| p.children.clone())
        .unwrap_or_default()
    {
        if roster.children.contains_key(&c.child_id) {
            kids.push((
                c.child_id,
                or_page(&ctx, child_name(&state, c.child_id).await)?,
            ));
        }
    }
    let role = roster.role(person_id);
    let body = html! {
        p { (l.t("Role", "Rol")) ": "
            @match role {
                Some(StaffRole::Teacher) => (l.t("teacher", "leerkracht")),
                Some(StaffRole::Director) => (l.t("director", "directeur")),
                Some(StaffRole::ComplianceOfficer) => (l.t("compliance officer", "privacyfunctionaris")),
                None => (l.t("parent or guardian", "ouder of verzorger")),
            }
        }
        @if !kids.is_empty() {
            h2 { (l.t("Children", "Kinderen")) }
            ul { @for (id, n) in &kids { li { a href={"/console/children/" (id)} { (n) } } } }
        }
        h2 { (l.t("Rights", "Rechten")) }
        p {
            a.button href={"/console/people/" (person_id) "/export"} download { (l.t("Export (JSON)", "Exporteren (JSON)")) }
            " "
            a href={"/console/people/" (person_id) "/erasure"} { (l.t("Erase this person's data…", "Gegevens van deze persoon wissen…")) }
        }
        p { a href={"/console/access-log?subject=person:" (person_id)} { (l.t("Who read this person's data", "Wie de gegevens van deze persoon las")) } }
    };
    ok(&ctx, &name, &body)
}

// ---------------------------------------------------------------------------------------------
// Export and erasure.

fn json_download(name: &str, value: &serde_json::Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        serde_json::to_string_pretty(value).unwrap_or_default(),
    )
        .into_response()
}

/// The events of `streams`, and the roster facts of `school` naming `id`, with the personal
/// fields of `subject` opened (everyone else's `[withheld]`).
async fn subject_events(
    state: &AppState,
    subject: Subject,
    streams: Vec<StreamName>,
    school: Option<SchoolId>,
) -> ApiResult<Vec<rights::ExportedEvent>> {
    let allow = move |s: &Subject| *s == subject;
    let mut events = Vec::new();
    for stream in &streams {
        for r in state.system.store.read_stream_to_end(stream).await? {
            events.push(rights::exported(&state.system.vault, r, &allow).await?);
        }
    }
    if let Some(school) = school {
        let id = subject.uuid().to_string();
        for r in state
            .system
            .store
            .read_stream_to_end(&StreamName::school(school))
            .await?
        {
            if r.payload.contains(&id) {
                events.push(rights::exported(&state.system.vault, r, &allow).await?);
            }
        }
    }
    events.sort_by_key(|e| e.position);
    Ok(events)
}

/// `GET /console/children/{id}/export`: the child's data as JSON (directors and compliance
/// officers of its school; logged).
pub async fn export_child(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(child_id): Path<String>,
) -> Page {
    let session = ctx.signed_in()?;
    let child_id: ChildId = child_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("child")))?;
    let place = or_page(
        &ctx,
        consent::child_place(&state, session.caller(), child_id).await,
    )?;
    if !place.is(&[StaffRole::Director, StaffRole::ComplianceOfficer]) {
        return Err(ctx.error(&ApiError::forbidden(
            "only directors and compliance officers export a child's data",
        )));
    }
    or_page(
        &ctx,
        log_if_audited(
            &state,
            session.caller(),
            ctx.rid,
            &place.roster.state,
            Subject::Child(child_id),
            AccessReason::ConsoleExport,
        )
        .await,
    )?;
    let events = or_page(
        &ctx,
        subject_events(
            &state,
            Subject::Child(child_id),
            vec![
                StreamName::child(child_id),
                StreamName::access(child_id.as_uuid()),
            ],
            Some(place.school_id),
        )
        .await,
    )?;
    let history = or_page(
        &ctx,
        consent_model::consent_history(&state.system.db, child_id, None, None, None)
            .await
            .map_err(ApiError::from),
    )?;
    let doc = serde_json::json!({
        "child_id": child_id,
        "school_id": place.school_id,
        "group_id": place.group_id,
        "exported_at": Utc::now(),
        "exported_by": session.person,
        "consent_history": history.iter().map(|e| serde_json::json!({
            "purpose": e.purpose.as_str(), "granted": e.granted, "guardian_id": e.guardian_id,
            "policy_version": e.policy_version, "occurred_at": e.occurred_at,
            "effective_after": e.effective_after, "recorded_by": e.recorded_by,
        })).collect::<Vec<_>>(),
        "events": events,
    });
    Ok(json_download(&format!("kring-child-{child_id}.json"), &doc))
}

/// `GET /console/people/{id}/export`: the person's data as JSON (logged).
pub async fn export_person(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(person_id): Path<String>,
) -> Page {
    let session = ctx.signed_in()?;
    let person_id: PersonId = person_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("person")))?;
    let roster = or_page(&ctx, person_roster(&state, session.person, person_id).await)?;
    or_page(
        &ctx,
        log_if_audited(
            &state,
            session.caller(),
            ctx.rid,
            &roster,
            Subject::Person(person_id),
            AccessReason::ConsoleExport,
        )
        .await,
    )?;
    let mut streams = vec![
        StreamName::person(person_id),
        StreamName::access(person_id.as_uuid()),
    ];
    for i in or_page(
        &ctx,
        memberships::invitations_of_invitee(&state.system.db, person_id)
            .await
            .map_err(ApiError::from),
    )? {
        streams.push(StreamName::invitation(i.invitation_id));
    }
    let events = or_page(
        &ctx,
        subject_events(
            &state,
            Subject::Person(person_id),
            streams,
            roster.school_id,
        )
        .await,
    )?;
    let doc = serde_json::json!({
        "person_id": person_id,
        "exported_at": Utc::now(),
        "exported_by": session.person,
        "events": events,
    });
    Ok(json_download(
        &format!("kring-person-{person_id}.json"),
        &doc,
    ))
}

fn erase_form(ctx: &Ctx, action: &str, what: &Markup) -> Markup {
    let l = ctx.lang;
    html! {
        div.panel role="alert" {
            h2 { (l.t("What will be destroyed", "Wat vernietigd wordt")) }
            (what)
            p { strong { (l.t("This cannot be undone.", "Dit kan niet ongedaan worden gemaakt.")) } }
        }
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(ctx.csrf);
            p { label { span { input type="checkbox" name="confirm" value="yes" required; " "
                (l.t("I understand what will be destroyed", "Ik begrijp wat vernietigd wordt")) } } }
            button.danger type="submit" { (l.t("Erase", "Wissen")) }
        }
    }
}

/// `GET /console/children/{id}/erasure`: what erasing the child destroys, and the form.
pub async fn erase_child_confirm(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(child_id): Path<String>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let child_id: ChildId = child_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("child")))?;
    let place = or_page(
        &ctx,
        consent::child_place(&state, session.caller(), child_id).await,
    )?;
    let photos = or_page(
        &ctx,
        visibility::live_media_showing(&state.system.db, place.school_id, child_id)
            .await
            .map_err(ApiError::from),
    )?;
    let name = or_page(&ctx, child_name(&state, child_id).await)?;
    let what = html! {
        ul {
            li { (l.t("The child's key: the name and absence reasons read [erased] everywhere from then on.",
                      "De sleutel van het kind: naam en verzuimredenen lezen daarna overal [gewist].")) }
            li { (photos.len()) " " (l.t("photos showing the child are removed, with their files.",
                                         "foto's waarop het kind staat worden verwijderd, met hun bestanden.")) }
            li { (l.t("Kept: the consent decisions (to demonstrate consent) and the access log.",
                      "Blijft: de toestemmingsbesluiten (om toestemming aan te tonen) en het inzagelog.")) }
        }
        p.note { (l.t("Only a director of the child's school may erase.", "Alleen een directeur van de school van het kind mag wissen.")) }
    };
    let action = format!("/console/children/{child_id}/erasure");
    let body = erase_form(&ctx, &action, &what);
    ok(&ctx, &format!("{} {name}", l.t("Erase", "Wissen:")), &body)
}

/// `POST /console/children/{id}/erasure`: erases the child (the API's erasure and its rules).
pub async fn erase_child(
    State(state): State<AppState>,
    Path(child_id): Path<String>,
    form: CsrfForm,
) -> Page {
    let ctx = &form.ctx;
    let l = ctx.lang;
    let child_id: ChildId = child_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("child")))?;
    if form.fields.get("confirm").map(String::as_str) != Some("yes") {
        return Err(ctx.error(&ApiError::validation("confirm the erasure first")));
    }
    let done = or_page(
        ctx,
        crate::erasure::erase_child(&state, form.session.caller(), ctx.rid, child_id).await,
    )?;
    let body = html! { p.panel role="status" { (l.t("Erased. Photos removed: ", "Gewist. Verwijderde foto's: ")) (done.removed_media.len()) } };
    ok(ctx, l.t("Erased", "Gewist"), &body)
}

/// `GET /console/people/{id}/erasure`: what erasing the person destroys, and the form.
pub async fn erase_person_confirm(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(person_id): Path<String>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let person_id: PersonId = person_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("person")))?;
    or_page(&ctx, person_roster(&state, session.person, person_id).await)?;
    let name = or_page(&ctx, person_name(&state, person_id).await)?;
    let what = html! {
        ul {
            li { (l.t("The person's key: their name and e-mail address read [erased] everywhere from then on.",
                      "De sleutel van de persoon: naam en e-mailadres lezen daarna overal [gewist].")) }
            li { (l.t("Their relations end: guardianships and staff roles.", "Hun relaties eindigen: ouderschap en rollen.")) }
            li { (l.t("Kept: the facts (consent decisions, roles held) and the access log.",
                      "Blijft: de feiten (toestemmingsbesluiten, gehouden rollen) en het inzagelog.")) }
        }
        p.note { (l.t("Only a director of a school the person belongs to may erase.", "Alleen een directeur van een school van de persoon mag wissen.")) }
    };
    let action = format!("/console/people/{person_id}/erasure");
    let body = erase_form(&ctx, &action, &what);
    ok(&ctx, &format!("{} {name}", l.t("Erase", "Wissen:")), &body)
}

/// `POST /console/people/{id}/erasure`: erases the person (the API's erasure and its rules).
pub async fn erase_person(
    State(state): State<AppState>,
    Path(person_id): Path<String>,
    form: CsrfForm,
) -> Page {
    let ctx = &form.ctx;
    let l = ctx.lang;
    let person_id: PersonId = person_id
        .parse()
        .map_err(|_| ctx.error(&ApiError::not_found("person")))?;
    if form.fields.get("confirm").map(String::as_str) != Some("yes") {
        return Err(ctx.error(&ApiError::validation("confirm the erasure first")));
    }
    or_page(
        ctx,
        crate::erasure::erase_person(&state, form.session.caller(), ctx.rid, person_id).await,
    )?;
    let body = html! { p.panel role="status" { (l.t("Erased.", "Gewist.")) } };
    ok(ctx, l.t("Erased", "Gewist"), &body)
}

// ---------------------------------------------------------------------------------------------
// The access log and verification.

#[derive(Deserialize)]
pub struct LogQuery {
    subject: Option<String>,
    accessor: Option<String>,
    reason: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<u64>,
}

/// `GET /console/access-log?subject=&accessor=&reason=&from=&to=&after=`: the API's access
/// log (its scope: reads of subjects of the officer's schools), filtered by who read, whose
/// data, when and why.
pub async fn access_log(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<LogQuery>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let from = or_page(&ctx, view::parse_moment(q.from.as_deref()))?;
    let to = or_page(&ctx, view::parse_moment(q.to.as_deref()))?;
    let subject = q
        .subject
        .clone()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_owned());
    let accessor = q.accessor.clone().unwrap_or_default().trim().to_owned();
    let reason = q.reason.clone().unwrap_or_default();
    let Json(page_) = or_page(
        &ctx,
        rights::access_log(
            State(state.clone()),
            session.caller(),
            Q(MinPosition::default()),
            Q(rights::AccessLogQuery {
                subject: subject.clone(),
                limit: Some(1000),
                after: q.after,
            }),
        )
        .await,
    )?;
    let entries: Vec<_> = page_
        .entries
        .iter()
        .filter(|e| {
            accessor.is_empty()
                || e.accessor
                    .person_id
                    .is_some_and(|p| p.to_string() == accessor)
                || (accessor == "operator" && e.accessor.kind == "operator")
        })
        .filter(|e| reason.is_empty() || e.reason.contains(reason.as_str()))
        .filter(|e| from.is_none_or(|f| e.at >= f) && to.is_none_or(|t| e.at < t))
        .collect();
    let mut names: HashMap<Uuid, String> = HashMap::new();
    for p in entries.iter().filter_map(|e| e.accessor.person_id) {
        if let Entry::Vacant(v) = names.entry(p) {
            v.insert(or_page(
                &ctx,
                person_name(&state, PersonId::from_uuid(p)).await,
            )?);
        }
    }
    let reasons = [
        ("consents", l.t("consent", "toestemming")),
        (
            "history",
            l.t("consent history", "toestemmingsgeschiedenis"),
        ),
        (
            "viewers",
            l.t("who may see a photo", "wie een foto mag zien"),
        ),
        ("/v1/media/", l.t("photos", "foto's")),
        ("/v1/posts/", l.t("posts", "berichten")),
        (
            "/console/search",
            l.t("console search", "zoeken in de console"),
        ),
        (
            "/console/people/",
            l.t("console person page", "persoonspagina in de console"),
        ),
        ("/console/export/", l.t("export", "export")),
    ];
    let body = html! {
        form.inline.panel method="get" action="/console/access-log" {
            label { (l.t("Whose data (e.g. child:<id>)", "Wiens gegevens (bijv. child:<id>)"))
                input type="text" name="subject" value=(subject.clone().unwrap_or_default()); }
            label { (l.t("Who read (person id)", "Wie las (persoon-id)"))
                input type="text" name="accessor" value=(accessor); }
            label { (l.t("Why", "Waarom"))
                select name="reason" {
                    option value="" { (l.t("Any reason", "Elke reden")) }
                    @for (v, label) in reasons { option value=(v) selected[reason == v] { (label) } }
                } }
            label { (l.t("From (UTC)", "Vanaf (UTC)")) input type="text" name="from" value=(q.from.clone().unwrap_or_default()) placeholder="2026-12-01"; }
            label { (l.t("Until (UTC)", "Tot (UTC)")) input type="text" name="to" value=(q.to.clone().unwrap_or_default()) placeholder="2026-12-31"; }
            button type="submit" { (l.t("Filter", "Filteren")) }
        }
        p.note { (l.t("The access log records every read of personal data by a compliance officer or the operator; reading the log itself is not recorded (it holds ids, no personal data).",
                      "Het inzagelog legt elke inzage van persoonsgegevens door een privacyfunctionaris of de beheerder vast; het log zelf lezen wordt niet vastgelegd (het bevat id's, geen persoonsgegevens).")) }
        div.table-wrap { table #access-log {
            thead { tr {
                th scope="col" { (l.t("When", "Wanneer")) }
                th scope="col" { (l.t("Who read", "Wie las")) }
                th scope="col" { (l.t("Whose data", "Wiens gegevens")) }
                th scope="col" { (l.t("Why", "Waarom")) }
            } }
            tbody { @for e in entries.iter().rev() {
                tr {
                    td { (moment(e.at)) }
                    td { @match e.accessor.person_id {
                        Some(p) => { (names.get(&p).cloned().unwrap_or_default()) @if p == session.person.as_uuid() { " " span.muted { (l.t("(you)", "(u)")) } } },
                        None => (l.t("the operator", "de beheerder")),
                    } }
                    td { @let href = match e.subject.kind.as_str() {
                            "child" => Some(format!("/console/children/{}", e.subject.id)),
                            "person" => Some(format!("/console/people/{}", e.subject.id)),
                            "media" => Some(format!("/console/media/{}", e.subject.id)),
                            _ => None,
                        };
                        (e.subject.kind) " "
                        @if let Some(h) = href { a href=(h) { code { (e.subject.id) } } } @else { code { (e.subject.id) } }
                    }
                    td { code { (e.reason) } }
                }
            } }
        } }
        @if let Some(next) = page_.next_after {
            p { a href={"/console/access-log?after=" (next) "&subject=" (urlencode(&subject.unwrap_or_default()))} { (l.t("Next page", "Volgende pagina")) } }
        }
    };
    ok(&ctx, l.t("Access log", "Inzagelog"), &body)
}

/// `GET /console/verify`: the event log's hash chains (the API's verify) and where each read
/// model stands against the log.
pub async fn verify(State(state): State<AppState>, ctx: Ctx) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let Json(report) = or_page(
        &ctx,
        rights::verify(
            State(state.clone()),
            session.caller(),
            Q(MinPosition::default()),
        )
        .await,
    )?;
    let mut models = Vec::new();
    for name in state.projections.iter() {
        models.push((
            (*name).to_owned(),
            or_page(
                &ctx,
                state
                    .checkpoints
                    .position(name)
                    .await
                    .map_err(ApiError::from),
            )?,
        ));
    }
    let failures: HashMap<String, Option<String>> = state
        .board
        .as_ref()
        .map(|b| b.all().into_iter().map(|s| (s.name, s.failure)).collect())
        .unwrap_or_default();
    let body = html! {
        section.panel #log-verify {
            h2 { (l.t("Event log", "Gebeurtenissenlog")) }
            p #verify-result { (yes_no(l, report.ok, (("intact: every hash chain holds and no position is missing", "intact: elke hashketen klopt en er ontbreekt geen positie"),
                                                       ("broken: see the findings", "gebroken: zie de bevindingen")))) }
            p { (report.streams_checked) " " (l.t("streams", "stromen")) ", " (report.events_checked) " " (l.t("events checked; head", "gebeurtenissen gecontroleerd; kop")) " " (report.head)
                ". " (l.t("Global chain", "Globale keten")) ": " (report.global_chain) }
            @if !report.findings.is_empty() { ul { @for f in &report.findings { li { code { (f) } } } } }
        }
        section.panel #models {
            h2 { (l.t("Read models", "Leesmodellen")) }
            div.table-wrap { table {
                thead { tr { th scope="col" { (l.t("Read model", "Leesmodel")) } th scope="col" { (l.t("Position", "Positie")) } th scope="col" { (l.t("State", "Toestand")) } } }
                tbody { @for (name, pos) in &models {
                    @let failure = failures.get(name).cloned().flatten();
                    tr { td { code { (name) } } td { (pos) " / " (report.head) } td {
                        @if let Some(f) = failure { span.no { (f) } }
                        @else { (yes_no(l, *pos >= report.head, (("caught up", "bij"), ("catching up", "loopt achter")))) }
                    } }
                } }
            } }
            p.note { (l.t("A read model is rebuilt from the log and compared with `replay-tool verify`.", "Een leesmodel wordt uit het log herbouwd en vergeleken met `replay-tool verify`.")) }
        }
    };
    ok(&ctx, l.t("Verification", "Verificatie"), &body)
}
