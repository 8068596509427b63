//! Verification: the event log's hash chains and every read model against a fresh replay of the
//! log — `replay-tool verify`'s own code ([`kring_replay_tool::verify::verify`]), run when the
//! officer asks for it (a `POST` with the session's CSRF token), one at a time per server and
//! for at most [`LIMIT`].
//!
//! The replay goes into a temporary SQLite database (ADR 0006): nothing is written where the
//! API serves from.

use super::view::{self, page, post_form, respond, status, table, yes_no};
use super::{CsrfForm, Ctx, Lang};
use crate::error::{ApiError, ApiResult, Code};
use crate::routes::rights;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use kring_replay_tool::verify::{ReadModelCheck, Verification};
use kring_store::{EventStore, Finding, GlobalChain};
use maud::{html, Markup};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long one verification may take before it is given up (its temporary database removed).
pub const LIMIT: Duration = Duration::from_secs(10 * 60);

/// One verification at a time on a server: each replays the whole log.
static RUNNING: Semaphore = Semaphore::const_new(1);

/// The console's verification follows the API's rule: compliance officers (and the operator,
/// who has no console session).
async fn allowed(state: &AppState, ctx: &Ctx) -> Result<(), Response> {
    let session = ctx.signed_in()?;
    let schools = rights::officer_schools(state, session.caller())
        .await
        .map_err(|e| ctx.error(&e))?;
    if schools.is_empty() {
        return Err(ctx.error(&ApiError::forbidden(
            "only compliance officers and the operator verify the event log",
        )));
    }
    Ok(())
}

fn explanation(ctx: &Ctx) -> Markup {
    let l = ctx.lang;
    html! {
        p { (l.t("Verification walks every stream's hash chain and the global chain of the event log, then replays the log into a temporary database and compares each read model with its replay, up to the position the read model has reached — what `replay-tool verify` does.",
                 "De verificatie loopt de hashketen van elke stroom en de globale keten van het gebeurtenissenlog na, herbouwt daarna het log in een tijdelijke database en vergelijkt elk leesmodel met die herbouw, tot de positie die het leesmodel heeft bereikt — wat `replay-tool verify` doet.")) }
        p.note { (l.t("It reads the whole log and changes nothing. One runs at a time; one that takes longer than ten minutes is stopped.",
                      "Ze leest het hele log en wijzigt niets. Er loopt er één tegelijk; een die langer dan tien minuten duurt, wordt gestopt.")) }
        (post_form(ctx, "/console/verify", &html! {}, "", ("Verify now", "Nu verifiëren")))
    }
}

/// `GET /console/verify`: what verification does, where each read model stands, and the
/// button that runs it.
pub async fn show(State(state): State<AppState>, ctx: Ctx) -> Result<Response, Response> {
    allowed(&state, &ctx).await?;
    let l = ctx.lang;
    let head = state
        .system
        .store
        .head()
        .await
        .map_err(|e| ctx.error(&e.into()))?;
    let mut rows = Vec::new();
    for name in state.projections.iter() {
        let position = state
            .checkpoints
            .position(name)
            .await
            .map_err(|e| ctx.error(&ApiError::from(e)))?;
        rows.push((*name, position));
    }
    let body = html! {
        section.panel { (explanation(&ctx)) }
        h2 { (l.t("Where the read models stand", "Waar de leesmodellen staan")) }
        (table(l, Some("positions"), &[("Read model", "Leesmodel"), ("Position", "Positie")], &html! {
            @for (name, position) in &rows { tr { td { code { (name) } } td { (position) " / " (head) } } }
        }))
    };
    Ok(respond(
        StatusCode::OK,
        &page(&ctx, l.t("Verification", "Verificatie"), &body),
    ))
}

/// `POST /console/verify`: runs the verification and shows its result.
pub async fn run(State(state): State<AppState>, form: CsrfForm) -> Result<Response, Response> {
    let ctx = &form.ctx;
    allowed(&state, ctx).await?;
    let result = verify(&state).await.map_err(|e| ctx.error(&e))?;
    Ok(respond(
        StatusCode::OK,
        &page(
            ctx,
            ctx.lang.t("Verification", "Verificatie"),
            &report(ctx, &result),
        ),
    ))
}

/// `replay-tool verify` over the server's installation, bounded.
///
/// # Errors
/// `429` while another runs, `504` past [`LIMIT`], `503`/`500` for store failures.
async fn verify(state: &AppState) -> ApiResult<Verification> {
    let Ok(_permit) = RUNNING.try_acquire() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            "a verification is already running on this server: try again when it has finished",
        ));
    };
    match tokio::time::timeout(
        LIMIT,
        kring_replay_tool::verify::verify(&state.system, None),
    )
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::internal(e.one_line())),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            Code::Timeout,
            format!(
                "the verification took longer than {} minutes and was stopped",
                LIMIT.as_secs() / 60
            ),
        )),
    }
}

fn report(ctx: &Ctx, v: &Verification) -> Markup {
    let l = ctx.lang;
    let chain = &v.chain;
    let equal = v.read_models.iter().filter(|c| c.ok).count();
    html! {
        @if v.ok {
            (status(l, ("All is well: the log is intact and every read model equals a fresh replay of it.",
                        "Alles klopt: het log is intact en elk leesmodel is gelijk aan een verse herbouw ervan.")))
        } @else {
            div.panel.error role="alert" { p { (l.t("Something is wrong: see below.", "Er klopt iets niet: zie hieronder.")) } }
        }
        section.panel #log-verify {
            h2 { (l.t("Event log", "Gebeurtenissenlog")) }
            p #verify-result { (yes_no(l, chain.ok, (("intact: every hash chain holds and no position is missing", "intact: elke hashketen klopt en er ontbreekt geen positie"),
                                                      ("broken: see the findings", "gebroken: zie de bevindingen")))) }
            p { (chain.streams_checked) " " (l.t("streams", "stromen")) ", " (chain.events_checked) " "
                (l.t("events checked; head", "gebeurtenissen gecontroleerd; kop")) " " (chain.head) ". "
                (l.t("Global chain", "Globale keten")) ": "
                @match chain.global_chain {
                    GlobalChain::Checked => (l.t("checked", "gecontroleerd")),
                    GlobalChain::NotAvailable => (l.t("not kept by this event store", "niet bijgehouden door deze gebeurtenissenopslag")),
                }
            }
            @if !chain.findings.is_empty() { ul #log-findings { @for f in &chain.findings { li { (finding(l, f)) } } } }
        }
        section.panel #models {
            h2 { (l.t("Read models", "Leesmodellen")) }
            p #models-result { (equal) " " (l.t("of", "van")) " " (v.read_models.len()) " "
                (l.t("read models equal a fresh replay of the log.", "leesmodellen zijn gelijk aan een verse herbouw van het log.")) }
            (table(l, Some("model-checks"), &[("Read model", "Leesmodel"), ("Position", "Positie"), ("Result", "Uitkomst"), ("Checksum", "Controlesom")], &html! {
                @for c in &v.read_models {
                    tr data-model=(c.name) data-ok=(c.ok) {
                        th scope="row" { code { (c.name) } }
                        td { (c.position) }
                        td { (model_result(l, c)) }
                        td { code { (c.checksum.as_deref().map(|s| s.chars().take(16).collect::<String>()).unwrap_or_default()) } }
                    }
                }
            }))
        }
        section.panel { (explanation(ctx)) }
    }
}

/// A log finding in the console's language.
fn finding(l: Lang, f: &Finding) -> Markup {
    match f {
        Finding::StreamChainBroken(v) => html! {
            (l.t("Hash chain broken in stream", "Hashketen gebroken in stroom")) " " code { (v.stream) }
            " " (l.t("at version", "bij versie")) " " (v.version) " (" (l.t("position", "positie")) " " (v.position) ")"
        },
        Finding::GlobalChainBroken { position, .. } => html! {
            (l.t("Global chain broken at position", "Globale keten gebroken bij positie")) " " (position)
        },
        Finding::MissingPositions { first, last } => html! {
            (l.t("Missing from the log: positions", "Ontbreken in het log: posities")) " " (first) "–" (last)
        },
        other => html! { (l.t("Anchor finding", "Bevinding bij een anker")) ": " code { (other) } },
    }
}

/// A read model's result in the console's language: equal, or what differs (the table and row
/// it names are shown as they are).
fn model_result(l: Lang, c: &ReadModelCheck) -> Markup {
    let Some(problem) = &c.problem else {
        return yes_no(
            l,
            true,
            (
                ("equals a fresh replay", "gelijk aan een verse herbouw"),
                ("", ""),
            ),
        );
    };
    let (en, nl): view::Text = if problem.starts_with("table ") {
        (
            "differs from a fresh replay",
            "wijkt af van een verse herbouw",
        )
    } else if problem.starts_with("never built") {
        ("never built", "nooit opgebouwd")
    } else if problem.starts_with("stopped while projecting") {
        ("stopped on an event", "gestopt bij een gebeurtenis")
    } else if problem.starts_with("a fresh replay stops") {
        (
            "a fresh replay stops on an event",
            "een verse herbouw stopt bij een gebeurtenis",
        )
    } else if problem.starts_with("it is at position") {
        ("ahead of what the log gives", "verder dan het log toelaat")
    } else {
        (
            "differs from a fresh replay",
            "wijkt af van een verse herbouw",
        )
    };
    html! {
        span.no { "✗ " (l.t(en, nl)) }
        br;
        code.detail { (problem) }
    }
}
