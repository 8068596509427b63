//! The console's pages.

use super::view::{
    self, child_link, field, moment, moment_field, moment_precise, moment_value, page, person_link,
    purpose, query_form, respond, rights, status, table, urlencode, yes_no, Text,
};
use super::{session, CsrfForm, Ctx, Lang};
use crate::audit::log_if_audited;
use crate::error::{ApiError, ApiResult};
use crate::routes::{consent, posts, rights as rights_routes};
use crate::state::{AppState, MinPosition, Q};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use chrono::{DateTime, Duration, Utc};
use kring_domain::access::{AccessReason, Subject};
use kring_domain::consent::Consents;
use kring_domain::school::{GroupKind, School, StaffRole};
use kring_domain::{Aggregate, ChildId, MediaId, PersonId, StreamName};
use kring_projections::models::consent as consent_model;
use kring_projections::models::{conversations, memberships, visibility};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

pub type Page = Result<Response, Response>;

/// Turns an API error into its page.
pub fn or_page<T>(ctx: &Ctx, r: ApiResult<T>) -> Result<T, Response> {
    r.map_err(|e| ctx.error(&e))
}

/// A page answered `200`, as the `Page` every handler returns.
#[expect(
    clippy::unnecessary_wraps,
    reason = "every page handler ends in `ok(..)` and answers a `Page`"
)]
pub fn ok(ctx: &Ctx, title: &str, body: &Markup) -> Page {
    Ok(respond(StatusCode::OK, &page(ctx, title, body)))
}

/// The id in a path: an id that does not parse is a `404` of `what`, as an unknown one is.
fn path_id<T: FromStr>(ctx: &Ctx, text: &str, what: &str) -> Result<T, Response> {
    text.parse()
        .map_err(|_| ctx.error(&ApiError::not_found(what)))
}

/// Logs the console's read of each of `subjects` (of the school `roster`) for `reason`.
pub async fn log_reads(
    state: &AppState,
    ctx: &Ctx,
    roster: &School,
    subjects: impl IntoIterator<Item = Subject>,
    reason: AccessReason,
) -> Result<(), Response> {
    let session = ctx.signed_in()?;
    let mut seen = BTreeSet::new();
    for subject in subjects {
        if seen.insert(subject) {
            or_page(
                ctx,
                log_if_audited(state, session.caller(), ctx.rid, roster, subject, reason).await,
            )?;
        }
    }
    Ok(())
}

/// Whose names [`names_of`] looks up.
#[derive(Clone, Copy)]
pub enum Named {
    /// People (staff and guardians).
    People,
    /// Children.
    Children,
}

/// The names of the people or children `ids`.
pub async fn names_of(
    state: &AppState,
    ctx: &Ctx,
    named: Named,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, String>, Response> {
    let mut names = HashMap::new();
    for id in ids {
        if let Entry::Vacant(v) = names.entry(id) {
            let name = match named {
                Named::People => person_name(state, PersonId::from_uuid(id)).await,
                Named::Children => child_name(state, ChildId::from_uuid(id)).await,
            };
            v.insert(or_page(ctx, name)?);
        }
    }
    Ok(names)
}

/// The schools where `person` is a compliance officer or director, with their names.
pub async fn console_schools(
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

/// A choice of the groups of `schools` (only class groups with `classes`), with `any` first.
fn group_select(
    l: Lang,
    schools: &[(String, Arc<School>)],
    classes: bool,
    any: Option<Text>,
) -> Markup {
    html! {
        label { (l.t("Group", "Groep"))
            select name="group" {
                @if let Some((en, nl)) = any { option value="" { (l.t(en, nl)) } }
                @for (school, roster) in schools {
                    optgroup label=(school) {
                        @for (id, g) in &roster.groups {
                            @if !classes || g.kind == GroupKind::Class { option value=(id) { (g.name) } }
                        }
                    }
                }
            }
        }
    }
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
    let section = |id: &str, title: Text, form: Markup| {
        html! {
            section.panel aria-labelledby=(id) {
                h2 id=(id) { (l.t(title.0, title.1)) }
                (form)
            }
        }
    };
    let name = |label: Text| field(l, label, "name", "search", "");
    let body = html! {
        (section("find-child", ("Find a child", "Een kind zoeken"), query_form(l, "/console/children", &html! {
            (group_select(l, &schools, true, Some(("All groups", "Alle groepen"))))
            (name(("First name", "Voornaam")))
        }, ("Find", "Zoeken"))))
        (section("find-person", ("Find a person", "Een persoon zoeken"),
            query_form(l, "/console/people", &name(("Name", "Naam")), ("Find", "Zoeken"))))
        (section("find-post", ("Find a post or photo", "Een bericht of foto zoeken"), html! {
            p.note { (l.t("A group's posts, newest first, each with its photos; a child's page lists the photos that show the child.",
                          "De berichten van een groep, nieuwste eerst, elk met zijn foto's; de pagina van een kind toont de foto's waarop het kind staat.")) }
            (query_form(l, "/console/posts", &group_select(l, &schools, false, None), ("Show posts", "Berichten tonen")))
            (query_form(l, "/console/media", &field(l, ("Photo id", "Foto-id"), "id", "text", ""), ("Open", "Openen")))
        }))
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
    let group: Option<kring_domain::GroupId> = q
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
        log_reads(
            &state,
            &ctx,
            roster,
            [Subject::Child(*child)],
            AccessReason::ConsoleSearch,
        )
        .await?;
    }
    let body = html! {
        p { a href="/console" { (l.t("New search", "Nieuwe zoekopdracht")) } }
        @if found.is_empty() {
            (status(l, ("No child found at your schools.", "Geen kind gevonden op uw scholen.")))
        } @else {
            p.muted { (found.len()) " " (l.t("found", "gevonden")) }
            (table(l, None, &[("Child", "Kind"), ("Group", "Groep")], &html! {
                @for (_, id, name, group) in &found { tr { td { (child_link(id, name)) } td { (group) } } }
            }))
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
        log_reads(
            &state,
            &ctx,
            roster,
            [Subject::Person(*p)],
            AccessReason::ConsoleSearch,
        )
        .await?;
    }
    let body = html! {
        p { a href="/console" { (l.t("New search", "Nieuwe zoekopdracht")) } }
        @if found.is_empty() {
            (status(l, ("Nobody found at your schools.", "Niemand gevonden op uw scholen.")))
        } @else {
            (table(l, None, &[("Person", "Persoon"), ("School", "School")], &html! {
                @for (id, name, school, _) in &found { tr { td { (person_link(id, name)) } td { (school) } } }
            }))
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
    let child_id: ChildId = path_id(&ctx, &child_id, "child")?;
    let as_of = or_page(&ctx, view::parse_moment(ctx.tz, q.as_of.as_deref()))?;
    let compare = or_page(&ctx, view::parse_moment(ctx.tz, q.compare.as_deref()))?;
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
    let people = history
        .entries
        .iter()
        .flat_map(|e| std::iter::once(e.guardian_id).chain(e.recorded_by))
        .chain(
            now.purposes
                .iter()
                .flat_map(|p| p.decisions.iter().map(|d| d.guardian_id)),
        );
    let names = names_of(&state, &ctx, Named::People, people.collect::<Vec<_>>()).await?;
    let who = |p: &Uuid| names.get(p).cloned().unwrap_or_else(|| p.to_string());
    let photos = or_page(
        &ctx,
        visibility::live_media_showing(&state.system.db, place.school_id, child_id)
            .await
            .map_err(ApiError::from),
    )?;
    let media_query = as_of
        .map(|t| format!("?as_of={}", urlencode(&moment_value(t))))
        .unwrap_or_default();
    let tz = ctx.tz;
    let holds = |yes: bool| yes_no(l, yes, (("yes", "ja"), ("no", "nee")));
    let here = format!("/console/children/{child_id}");
    let mut head: Vec<Text> = vec![("Purpose", "Doel"), ("Consent holds", "Toestemming geldt")];
    if other.is_some() {
        head.push(("At the moment compared", "Op het vergeleken moment"));
    }
    head.push((
        "Each guardian's latest decision",
        "Laatste besluit per ouder/verzorger",
    ));
    let body = html! {
        p { (l.t("Group", "Groep")) ": " strong { (group) } }
        (query_form(l, &here, &html! {
            (moment_field(&ctx, ("Consent as of", "Toestemming per moment"), "as_of", as_of))
            (moment_field(&ctx, ("Compare with", "Vergelijken met"), "compare", compare))
        }, ("Show", "Tonen")))
        p { a href=(here) { (l.t("Back to now", "Terug naar nu")) } }
        h2 #consent {
            (l.t("Consent", "Toestemming")) " — "
            @if as_of.is_some() { (moment_precise(tz, now.as_of)) } @else { (l.t("now", "nu")) }
            @if let Some(o) = &other { " " (l.t("compared with", "vergeleken met")) " " (moment_precise(tz, o.as_of)) }
        }
        (table(l, Some("consents"), &head, &html! { @for p in &now.purposes {
            @let then = other.as_ref().and_then(|o| o.purposes.iter().find(|x| x.purpose == p.purpose));
            @let changed = then.is_some_and(|t| t.effective != p.effective);
            tr class=[changed.then_some("changed")] data-purpose=(p.purpose) {
                th scope="row" { (purpose(l, &p.purpose)) }
                td data-effective=(p.effective) {
                    (holds(p.effective))
                    @if p.needs_decision { br; span.muted { (l.t("asked to decide again", "opnieuw gevraagd")) } }
                }
                @if other.is_some() { td { @if let Some(t) = then {
                    (holds(t.effective))
                    @if changed { " " strong { (l.t("changed", "gewijzigd")) } }
                } } }
                td { ul.plain { @for d in &p.decisions {
                    li { (who(&d.guardian_id)) ": " (decided(l, d.granted)) " " span.muted { (moment(tz, d.at)) } }
                } } }
            }
        } }))
        h2 #timeline { (l.t("Timeline", "Tijdlijn")) }
        (table(l, Some("history"), &[("When", "Wanneer"), ("Purpose", "Doel"), ("Guardian", "Ouder/verzorger"),
            ("Decision", "Besluit"), ("Method", "Wijze"), ("Policy version", "Beleidsversie"),
            ("Recorded by", "Vastgelegd door"), ("Holds after", "Geldt daarna"), ("View", "Bekijken")], &html! {
            @for e in &history.entries {
                tr data-granted=(e.granted) {
                    td { (moment(tz, e.occurred_at)) }
                    td { (purpose(l, &e.purpose)) }
                    td { (who(&e.guardian_id)) }
                    td { (decided(l, e.granted)) }
                    td { @match e.method { consent::Method::App => (l.t("app", "app")), consent::Method::Paper => (l.t("paper form", "papieren formulier")) } }
                    td { (e.policy_version) }
                    td { @match e.recorded_by { Some(p) => (who(&p)), None => span.muted { (l.t("the guardian, in the app", "de ouder zelf, in de app")) } } }
                    td { (holds(e.effective_after)) }
                    td {
                        a.before href={(here) "?as_of=" (urlencode(&moment_value(e.occurred_at - Duration::microseconds(1)))) "&compare=" (urlencode(&moment_value(e.occurred_at)))} {
                            (l.t("just before", "vlak ervoor"))
                        }
                    }
                }
            }
        }))
        h2 #photos { (l.t("Photos showing the child", "Foto's waarop het kind staat")) }
        @if photos.is_empty() {
            p.muted { (l.t("None.", "Geen.")) }
        } @else {
            ul { @for (post, media) in &photos {
                li { a.photo href={"/console/media/" (media) (media_query)} { (l.t("Photo", "Foto")) " " code { (media) } }
                     " " span.muted { (l.t("in post", "in bericht")) " " code { (post) } } }
            } }
        }
        (rights(l, &here, &format!("child:{child_id}"), ("Erase this child's data…", "Gegevens van dit kind wissen…"),
            ("Who read this child's data", "Wie de gegevens van dit kind las")))
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
    let media_id: MediaId = path_id(&ctx, &media_id, "photo")?;
    let at = or_page(&ctx, view::parse_moment(ctx.tz, q.as_of.as_deref()))?;
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
    let mut people: Vec<Uuid> = Vec::new();
    let mut shown_children: Vec<Uuid> = Vec::new();
    for s in std::iter::once(&now_shown).chain(then.as_ref().map(|(_, _, s)| s)) {
        people.extend(s.viewers.iter().map(|v| v.0));
        for (p, because) in &s.withheld {
            people.push(*p);
            shown_children.extend(because.iter().map(|b| b.0));
        }
    }
    let names = names_of(&state, &ctx, Named::People, people).await?;
    let children = names_of(&state, &ctx, Named::Children, shown_children).await?;
    let name_of = |p: &Uuid| names.get(p).map_or("", String::as_str);
    let tables = |id: &str, s: &Shown| {
        html! {
            h3 { (l.t("May see it", "Mag de foto zien")) " (" (s.viewers.len()) ")" }
            (table(l, Some(&format!("{id}-viewers")), &[("Person", "Persoon"), ("Why", "Waarom")], &html! {
                @for (p, why) in &s.viewers { tr { td { (person_link(p, name_of(p))) } td { (why) } } }
            }))
            h3 { (l.t("Withheld from", "Niet getoond aan")) " (" (s.withheld.len()) ")" }
            (table(l, Some(&format!("{id}-withheld")), &[("Guardian", "Ouder/verzorger"), ("Because of", "Vanwege")], &html! {
                @for (p, because) in &s.withheld { tr {
                    td { (person_link(p, name_of(p))) }
                    td { ul.plain { @for (c, purp) in because { li {
                        (child_link(c, children.get(c).map_or("", String::as_str))) ": "
                        (l.t("no consent for", "geen toestemming voor")) " " (purpose(l, purp))
                    } } } }
                } }
            }))
        }
    };
    let body = html! {
        p { (l.t("Photo", "Foto")) " " code { (media_id) } }
        (query_form(l, &format!("/console/media/{media_id}"),
            &moment_field(&ctx, ("Also show as of", "Ook tonen per moment"), "as_of", at), ("Show", "Tonen")))
        section #now {
            h2 { (l.t("Now", "Nu")) }
            (tables("now", &now_shown))
        }
        @if let Some((t, later, s)) = &then {
            section #then {
                h2 { (l.t("As of", "Per")) " " (moment_precise(ctx.tz, *t)) }
                @if *later {
                    p.note { (l.t("The photo was published after this moment: shown is who would have seen it under the school's membership and consent of that moment.",
                                  "De foto is na dit moment geplaatst: getoond is wie hem had mogen zien met de groepsindeling en toestemming van dat moment.")) }
                }
                (tables("then", s))
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
    let person_id: PersonId = path_id(&ctx, &person_id, "person")?;
    let roster = or_page(&ctx, person_roster(&state, session.person, person_id).await)?;
    log_reads(
        &state,
        &ctx,
        &roster,
        [Subject::Person(person_id)],
        AccessReason::ConsoleReadPerson,
    )
    .await?;
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
            ul { @for (id, n) in &kids { li { (child_link(id, n)) } } }
        }
        (rights(l, &format!("/console/people/{person_id}"), &format!("person:{person_id}"),
            ("Erase this person's data…", "Gegevens van deze persoon wissen…"),
            ("Who read this person's data", "Wie de gegevens van deze persoon las")))
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

/// `GET /console/children/{id}/export`: the child's data as JSON (directors and compliance
/// officers of its school; logged): the events the API's export holds of a child
/// ([`rights_routes::export_events`]: its streams, the roster facts naming it, the
/// conversations about it), and its consent history.
pub async fn export_child(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(child_id): Path<String>,
) -> Page {
    let session = ctx.signed_in()?;
    let child_id: ChildId = path_id(&ctx, &child_id, "child")?;
    let place = or_page(
        &ctx,
        consent::child_place(&state, session.caller(), child_id).await,
    )?;
    if !place.is(&[StaffRole::Director, StaffRole::ComplianceOfficer]) {
        return Err(ctx.error(&ApiError::forbidden(
            "only directors and compliance officers export a child's data",
        )));
    }
    log_reads(
        &state,
        &ctx,
        &place.roster.state,
        [Subject::Child(child_id)],
        AccessReason::ConsoleExport,
    )
    .await?;
    let db = &state.system.db;
    let talks = or_page(
        &ctx,
        conversations::about_child(db, child_id)
            .await
            .map_err(ApiError::from),
    )?;
    let schools = BTreeSet::from([place.school_id]);
    let events = or_page(
        &ctx,
        rights_routes::export_events(&state, None, &[child_id], &schools, &talks).await,
    )?;
    let history = or_page(
        &ctx,
        consent_model::consent_history(db, child_id, None, None, None)
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

/// `GET /console/people/{id}/export`: the person's data as JSON (logged): the document the
/// person gets from `GET /v1/me/export` ([`rights_routes::person_export`]).
pub async fn export_person(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(person_id): Path<String>,
) -> Page {
    let session = ctx.signed_in()?;
    let person_id: PersonId = path_id(&ctx, &person_id, "person")?;
    let roster = or_page(&ctx, person_roster(&state, session.person, person_id).await)?;
    log_reads(
        &state,
        &ctx,
        &roster,
        [Subject::Person(person_id)],
        AccessReason::ConsoleExport,
    )
    .await?;
    let doc = or_page(&ctx, rights_routes::person_export(&state, person_id).await)?;
    let doc = or_page(&ctx, serde_json::to_value(doc).map_err(ApiError::internal))?;
    Ok(json_download(
        &format!("kring-person-{person_id}.json"),
        &doc,
    ))
}

/// Whose data an erasure destroys.
#[derive(Clone, Copy)]
enum Erase {
    Child(ChildId),
    Person(PersonId),
}

impl Erase {
    fn action(self) -> String {
        match self {
            Self::Child(id) => format!("/console/children/{id}/erasure"),
            Self::Person(id) => format!("/console/people/{id}/erasure"),
        }
    }
}

/// The confirmation page: what erasing `who` destroys and keeps, and the form.
async fn erase_confirm(state: &AppState, ctx: &Ctx, who: Erase) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let (name, what) = match who {
        Erase::Child(child_id) => {
            let place = or_page(
                ctx,
                consent::child_place(state, session.caller(), child_id).await,
            )?;
            let photos = or_page(
                ctx,
                visibility::live_media_showing(&state.system.db, place.school_id, child_id)
                    .await
                    .map_err(ApiError::from),
            )?;
            (
                or_page(ctx, child_name(state, child_id).await)?,
                html! {
                    ul {
                        li { (l.t("The child's key: the name and absence reasons read [erased] everywhere from then on.",
                                  "De sleutel van het kind: naam en verzuimredenen lezen daarna overal [gewist].")) }
                        li { (photos.len()) " " (l.t("photos showing the child are removed, with their files.",
                                                     "foto's waarop het kind staat worden verwijderd, met hun bestanden.")) }
                        li { (l.t("Kept: the consent decisions (to demonstrate consent) and the access log.",
                                  "Blijft: de toestemmingsbesluiten (om toestemming aan te tonen) en het inzagelog.")) }
                    }
                    p.note { (l.t("Only a director of the child's school may erase.", "Alleen een directeur van de school van het kind mag wissen.")) }
                },
            )
        }
        Erase::Person(person_id) => {
            or_page(ctx, person_roster(state, session.person, person_id).await)?;
            (
                or_page(ctx, person_name(state, person_id).await)?,
                html! {
                    ul {
                        li { (l.t("The person's key: their name and e-mail address read [erased] everywhere from then on.",
                                  "De sleutel van de persoon: naam en e-mailadres lezen daarna overal [gewist].")) }
                        li { (l.t("Their relations end: guardianships and staff roles.", "Hun relaties eindigen: ouderschap en rollen.")) }
                        li { (l.t("Kept: the facts (consent decisions, roles held) and the access log.",
                                  "Blijft: de feiten (toestemmingsbesluiten, gehouden rollen) en het inzagelog.")) }
                    }
                    p.note { (l.t("Only a director of a school the person belongs to may erase.", "Alleen een directeur van een school van de persoon mag wissen.")) }
                },
            )
        }
    };
    let confirm = html! {
        p { label { span { input type="checkbox" name="confirm" value="yes" required; " "
            (l.t("I understand what will be destroyed", "Ik begrijp wat vernietigd wordt")) } } }
    };
    let body = html! {
        div.panel role="alert" {
            h2 { (l.t("What will be destroyed", "Wat vernietigd wordt")) }
            (what)
            p { strong { (l.t("This cannot be undone.", "Dit kan niet ongedaan worden gemaakt.")) } }
        }
        (view::post_form(ctx, &who.action(), &confirm, "danger", ("Erase", "Wissen")))
    };
    ok(ctx, &format!("{} {name}", l.t("Erase", "Wissen:")), &body)
}

/// Erases `who` with the API's erasure and its rules, once the form confirms it.
async fn erase(state: &AppState, form: &CsrfForm, who: Erase) -> Page {
    let ctx = &form.ctx;
    let l = ctx.lang;
    if form.fields.get("confirm").map(String::as_str) != Some("yes") {
        return Err(ctx.error(&ApiError::validation("confirm the erasure first")));
    }
    let caller = form.session.caller();
    let done = match who {
        Erase::Child(id) => crate::erasure::erase_child(state, caller, ctx.rid, id).await,
        Erase::Person(id) => crate::erasure::erase_person(state, caller, ctx.rid, id).await,
    };
    let done = or_page(ctx, done)?;
    let body = html! { p.panel role="status" {
        (l.t("Erased.", "Gewist."))
        @if matches!(who, Erase::Child(_)) { " " (l.t("Photos removed: ", "Verwijderde foto's: ")) (done.removed_media.len()) }
    } };
    ok(ctx, l.t("Erased", "Gewist"), &body)
}

/// `GET /console/children/{id}/erasure`: what erasing the child destroys, and the form.
pub async fn erase_child_confirm(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(child_id): Path<String>,
) -> Page {
    let who = Erase::Child(path_id(&ctx, &child_id, "child")?);
    erase_confirm(&state, &ctx, who).await
}

/// `POST /console/children/{id}/erasure`: erases the child (the API's erasure and its rules).
pub async fn erase_child(
    State(state): State<AppState>,
    Path(child_id): Path<String>,
    form: CsrfForm,
) -> Page {
    let who = Erase::Child(path_id(&form.ctx, &child_id, "child")?);
    erase(&state, &form, who).await
}

/// `GET /console/people/{id}/erasure`: what erasing the person destroys, and the form.
pub async fn erase_person_confirm(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(person_id): Path<String>,
) -> Page {
    let who = Erase::Person(path_id(&ctx, &person_id, "person")?);
    erase_confirm(&state, &ctx, who).await
}

/// `POST /console/people/{id}/erasure`: erases the person (the API's erasure and its rules).
pub async fn erase_person(
    State(state): State<AppState>,
    Path(person_id): Path<String>,
    form: CsrfForm,
) -> Page {
    let who = Erase::Person(path_id(&form.ctx, &person_id, "person")?);
    erase(&state, &form, who).await
}

// ---------------------------------------------------------------------------------------------
// The access log.

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
    let from = or_page(&ctx, view::parse_moment(ctx.tz, q.from.as_deref()))?;
    let to = or_page(&ctx, view::parse_moment(ctx.tz, q.to.as_deref()))?;
    let subject = q
        .subject
        .clone()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_owned());
    let accessor = q.accessor.clone().unwrap_or_default().trim().to_owned();
    let reason = q.reason.clone().unwrap_or_default();
    let Json(page_) = or_page(
        &ctx,
        rights_routes::access_log(
            State(state.clone()),
            session.caller(),
            Q(MinPosition::default()),
            Q(rights_routes::AccessLogQuery {
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
    let names = names_of(
        &state,
        &ctx,
        Named::People,
        entries
            .iter()
            .filter_map(|e| e.accessor.person_id)
            .collect::<Vec<_>>(),
    )
    .await?;
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
        (query_form(l, "/console/access-log", &html! {
            (field(l, ("Whose data (e.g. child:<id>)", "Wiens gegevens (bijv. child:<id>)"), "subject", "text", &subject.clone().unwrap_or_default()))
            (field(l, ("Who read (person id)", "Wie las (persoon-id)"), "accessor", "text", &accessor))
            label { (l.t("Why", "Waarom"))
                select name="reason" {
                    option value="" { (l.t("Any reason", "Elke reden")) }
                    @for (v, label) in reasons { option value=(v) selected[reason == v] { (label) } }
                } }
            (moment_field(&ctx, ("From", "Vanaf"), "from", from))
            (moment_field(&ctx, ("Until", "Tot"), "to", to))
        }, ("Filter", "Filteren")))
        p.note { (l.t("The access log records every read of personal data by a compliance officer or the operator; reading the log itself is not recorded (it holds ids, no personal data).",
                      "Het inzagelog legt elke inzage van persoonsgegevens door een privacyfunctionaris of de beheerder vast; het log zelf lezen wordt niet vastgelegd (het bevat id's, geen persoonsgegevens).")) }
        (table(l, Some("access-log"), &[("When", "Wanneer"), ("Who read", "Wie las"), ("Whose data", "Wiens gegevens"), ("Why", "Waarom")], &html! {
            @for e in entries.iter().rev() {
                tr {
                    td { (moment(ctx.tz, e.at)) }
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
            }
        }))
        @if let Some(next) = page_.next_after {
            p { a href={"/console/access-log?after=" (next) "&subject=" (urlencode(&subject.unwrap_or_default()))} { (l.t("Next page", "Volgende pagina")) } }
        }
    };
    ok(&ctx, l.t("Access log", "Inzagelog"), &body)
}
