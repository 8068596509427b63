//! Finding a post or photo without its id: the live posts of one group of the officer's
//! schools, newest first, a page at a time, each with its photos.

use super::pages::{console_schools, log_reads, names_of, ok, or_page, Named, Page};
use super::view::{self, moment, person_link, status, table, urlencode};
use super::Ctx;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Query, State};
use kring_domain::access::{AccessReason, Subject};
use kring_domain::{GroupId, PostId};
use kring_projections::models::visibility;
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

/// Posts on a page.
pub const PAGE: u32 = 20;

/// How much of a post's text the list shows.
const EXCERPT: usize = 140;

#[derive(Deserialize)]
pub struct PostsQuery {
    group: Option<String>,
    /// The page after the post published at `at` (RFC 3339) with id `post`.
    at: Option<String>,
    post: Option<String>,
}

/// `GET /console/posts?group=&at=&post=`: the group's live posts, newest first. Each post and
/// author listed is logged as a console search result (`GET /console/search`).
pub async fn group_posts(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<PostsQuery>,
) -> Page {
    let session = ctx.signed_in()?;
    let l = ctx.lang;
    let bad = |what: &'static str| ctx.error(&ApiError::validation(what));
    let group: GroupId = q
        .group
        .as_deref()
        .unwrap_or_default()
        .trim()
        .parse()
        .map_err(|_| bad("group: not a group id"))?;
    let after = match (q.at.as_deref(), q.post.as_deref()) {
        (Some(at), Some(post)) => Some((
            chrono::DateTime::parse_from_rfc3339(at)
                .map_err(|_| bad("not a page of posts"))?
                .with_timezone(&chrono::Utc),
            post.parse::<PostId>()
                .map_err(|_| bad("not a page of posts"))?,
        )),
        _ => None,
    };
    let schools = or_page(&ctx, console_schools(&state, session.person).await)?;
    let Some((school, roster, name)) = schools.iter().find_map(|(school, roster)| {
        roster
            .groups
            .get(&group)
            .map(|g| (school.clone(), Arc::clone(roster), g.name.clone()))
    }) else {
        return Err(ctx.error(&ApiError::not_found(format!("group {group}"))));
    };
    let mut posts = or_page(
        &ctx,
        visibility::group_posts(&state.system.db, group, PAGE + 1, after)
            .await
            .map_err(ApiError::from),
    )?;
    let more = posts.len() > PAGE as usize;
    posts.truncate(PAGE as usize);
    let mut texts = Vec::with_capacity(posts.len());
    for p in &posts {
        let text = or_page(&ctx, state.open(&p.body).await)?;
        texts.push(excerpt(&text));
    }
    let authors = names_of(
        &state,
        &ctx,
        Named::People,
        posts
            .iter()
            .map(|p| p.author_id.as_uuid())
            .collect::<Vec<_>>(),
    )
    .await?;
    let subjects: Vec<Subject> = posts
        .iter()
        .flat_map(|p| [Subject::Post(p.post_id), Subject::Person(p.author_id)])
        .collect();
    log_reads(&state, &ctx, &roster, subjects, AccessReason::ConsoleSearch).await?;
    let next = posts.last().filter(|_| more).map(|p| {
        format!(
            "/console/posts?group={group}&at={}&post={}",
            urlencode(&view::moment_value(p.posted_at)),
            p.post_id
        )
    });
    let body = html! {
        p { (school) " — " (l.t("newest first", "nieuwste eerst")) ". "
            (l.t("Removed and expired posts are not listed.", "Verwijderde en verlopen berichten staan er niet bij.")) }
        @if posts.is_empty() {
            (status(l, ("No posts (more).", "Geen (verdere) berichten.")))
        } @else {
            (table(l, Some("posts"), &[("Posted", "Geplaatst"), ("By", "Door"), ("Text", "Tekst"), ("Photos", "Foto's")], &html! {
                @for (p, text) in posts.iter().zip(&texts) {
                    tr data-post=(p.post_id) {
                        td { (moment(ctx.tz, p.posted_at)) }
                        td { (person_link(p.author_id, authors.get(&p.author_id.as_uuid()).map_or("", String::as_str))) }
                        td { (text) }
                        td { @if p.media.is_empty() { span.muted { (l.t("none", "geen")) } } @else {
                            ul.plain { @for (i, m) in p.media.iter().enumerate() {
                                li { a.photo href={"/console/media/" (m)} { (l.t("Photo", "Foto")) " " (i + 1) } }
                            } }
                        } }
                    }
                }
            }))
        }
        @if let Some(href) = next {
            p { a #next rel="next" href=(href) { (l.t("Older posts", "Oudere berichten")) } }
        }
        p { a href="/console" { (l.t("New search", "Nieuwe zoekopdracht")) } }
    };
    ok(
        &ctx,
        &format!("{} {name}", l.t("Posts of", "Berichten van")),
        &body,
    )
}

/// The first [`EXCERPT`] characters of `text`, on one line.
fn excerpt(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= EXCERPT {
        return line;
    }
    let mut out: String = line.chars().take(EXCERPT).collect();
    out.push('…');
    out
}
