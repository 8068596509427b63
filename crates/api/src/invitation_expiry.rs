//! The invitation-expiry job: an invitation still pending when its validity (the school's
//! `invitation_valid_days`, 14 by default) runs out is recorded as expired, by the system.
//!
//! `kring-api serve` runs it beside the retention job ([`run_in_background`]): once at start and
//! then every [`INTERVAL`]. Each run asks the memberships read model which pending invitations
//! are past their date ([`memberships::pending_past`]), at most [`PER_RUN`]; for each, the
//! domain's `Expire` decides on the invitation's own state, so a read model that lags cannot
//! expire one that was accepted meanwhile. An expired invitation can be sent again with a new
//! code (`POST /v1/invitations/{invitation_id}/resend`).
//!
//! Several processes may run it at once: an invitation is expired once — the second attempt
//! finds it no longer pending, or loses the append's version check.

use crate::error::ApiResult;
use crate::state::AppState;
use chrono::{DateTime, Utc};
use kring_domain::invitation::{self, InvitationAction, InvitationContext};
use kring_domain::{Actor, Command, InvitationId, StreamName};
use kring_projections::models::memberships;
use std::time::Duration;
use uuid::Uuid;

/// Time between two runs of the background job.
pub const INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Invitations expired at most per run; the next run goes on with the rest.
pub const PER_RUN: u32 = 1_000;

/// Records every pending invitation past its date as of `now` (at most [`PER_RUN`]) as expired;
/// answers those it expired.
///
/// # Errors
/// The read model or the event store failing; what was expired before stays expired.
pub async fn expire_due(state: &AppState, now: DateTime<Utc>) -> ApiResult<Vec<InvitationId>> {
    let mut expired = Vec::new();
    for invitation_id in memberships::pending_past(&state.system.db, now, PER_RUN).await? {
        let stream = StreamName::invitation(invitation_id);
        let Some(school_id) = state
            .exec
            .load::<invitation::Invitation>(&stream)
            .await?
            .state
            .school_id
        else {
            continue;
        };
        let roster = state.exec.school(school_id).await?.state;
        let outcome = state
            .exec
            .run::<invitation::Invitation, _>(stream, Actor::System, Uuid::now_v7(), |s, _| {
                invitation::decide(
                    &InvitationContext {
                        invitation: s,
                        school: &roster,
                    },
                    Command::new(Actor::System, InvitationAction::Expire),
                    now,
                )
            })
            .await;
        match outcome {
            Ok(_) => expired.push(invitation_id),
            // Accepted, revoked or expired meanwhile (the read model lags): nothing to do.
            Err(e) if e.status.is_client_error() => {
                tracing::debug!(%invitation_id, code = e.code.as_str(), detail = %e.explain(), "invitation not expired");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(expired)
}

/// Runs [`expire_due`] now and then every [`INTERVAL`], logging what each run did.
pub async fn run_in_background(state: AppState) {
    crate::retention::every(INTERVAL, "invitation expiry", || async {
        let expired = expire_due(&state, Utc::now()).await?;
        if !expired.is_empty() {
            tracing::info!(
                expired = expired.len(),
                "invitations past their date recorded as expired"
            );
        }
        Ok(())
    })
    .await;
}
