//! The retention job: a post and its media expire once their school's retention period
//! (`retention_days`, a school setting, 365 by default) has run out since they were posted.
//!
//! `kring-api serve` runs it in the background ([`run_in_background`]): once at start and then
//! every [`INTERVAL`]. Each run asks the visibility read model which live posts are due
//! ([`visibility::due_for_expiry`]), at most [`PER_RUN`] of them. For each one the domain's
//! `Expire` decides on the post's own state (so a read model that lags or a school that
//! lengthened its period since cannot expire a post early); then the post's key and each media
//! item's key and file are destroyed, exactly as a removal destroys them, and only then is
//! `PostExpired` recorded, as the system — the order erasures keep: a process that stops in
//! between leaves a post that is still due, and the next run finishes it (destroying is
//! idempotent). An expired post is shown to nobody from then on.
//!
//! Several processes may run it at once (a deployment with many API instances): a post is
//! expired once — the second attempt finds it no longer live, or loses the append's version
//! check — and destroying keys and files is idempotent.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use kring_domain::post;
use kring_domain::post::{self as domain_post, Post, PostAction, PostContext};
use kring_domain::{Actor, Command, PostId, StreamName};
use kring_projections::models::visibility;
use std::time::Duration;
use uuid::Uuid;

/// Time between two runs of the background job.
pub const INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Posts expired at most per run; a run that finds more leaves the rest to the next one.
pub const PER_RUN: u32 = 1_000;

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// The posts it expired, oldest first.
    pub expired: Vec<PostId>,
    /// Candidates it left alone: already gone (removed or expired, the read model not yet
    /// caught up), or refused by the domain (e.g. the school lengthened its retention period
    /// after the read model was written).
    pub skipped: usize,
}

/// Expires every post due as of `now` (at most [`PER_RUN`]) and destroys its keys and files.
///
/// # Errors
/// The read model, the event store or the key vault failing; what was expired before the
/// failure stays expired, and the next run goes on.
pub async fn expire_due(state: &AppState, now: DateTime<Utc>) -> ApiResult<RetentionReport> {
    let files = state.media_files();
    let mut report = RetentionReport::default();
    for post_id in visibility::due_for_expiry(&state.system.db, now, PER_RUN).await? {
        let stream = StreamName::post(post_id);
        let post = state.exec.load::<post::Post>(&stream).await?.state;
        let Some(school_id) = post.school_id else {
            report.skipped += 1;
            continue;
        };
        let roster = state.exec.school(school_id).await?.state;
        let expire = |post: &Post| {
            domain_post::decide(
                &PostContext {
                    post,
                    school: &roster,
                },
                Command::new(Actor::System, PostAction::Expire),
                now,
            )
        };
        // Gone already (the read model lags) or not due on its own state: nothing to do.
        if let Err(refused) = expire(&post) {
            tracing::debug!(%post_id, %refused, "retention: not expired");
            report.skipped += 1;
            continue;
        }
        files
            .shred_post(post_id, post.media.keys().copied())
            .await?;
        match state
            .exec
            .run::<post::Post, _>(stream, Actor::System, Uuid::now_v7(), |post, _| {
                expire(post)
            })
            .await
        {
            Ok(_) => report.expired.push(post_id),
            // Removed or expired by another process meanwhile: nothing was written, and its
            // keys are gone either way.
            Err(e) if e.status.is_client_error() => {
                tracing::debug!(%post_id, code = e.code.as_str(), detail = %e.explain(), "retention: not expired");
                report.skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Runs [`expire_due`] now and then every [`INTERVAL`], logging what each run did; a failed run
/// is logged and the next one tries again.
pub async fn run_in_background(state: AppState) {
    every(INTERVAL, "retention", || async {
        let report = expire_due(&state, Utc::now()).await?;
        // Idempotency keys are bound to their bodies for a day.
        crate::idempotency::forget_old(&state.system.db)
            .await
            .map_err(ApiError::internal)?;
        if !report.expired.is_empty() {
            tracing::info!(
                expired = report.expired.len(),
                skipped = report.skipped,
                "retention: expired posts past their school's retention period"
            );
        }
        Ok(())
    })
    .await;
}

/// Runs `job` now and then every `interval`, for ever; a failed run is logged (as `what`) and the
/// next one tries again. The background jobs of `serve` run on it.
pub async fn every<F, Fut>(interval: Duration, what: &'static str, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ApiResult<()>>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = job().await {
            tracing::error!(error = %e.explain(), code = e.code.as_str(), "{what} run failed");
        }
    }
}
