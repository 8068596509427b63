//! The media sweep: `kring-api serve` runs it in the background with the retention job, now
//! and every [`INTERVAL`]. It deletes what incomplete uploads left in the media store (an
//! object without its head, a temporary file: a crash between writing an object and completing
//! it) once older than [`ORPHANS_AFTER`], and shreds uploads never attached to a post once
//! older than [`UNATTACHED_AFTER`]. Destroying keys and deleting objects is idempotent, so
//! several instances may sweep one store.

use crate::state::AppState;
use std::time::Duration;

/// Time between two sweeps.
pub const INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Age after which an incomplete upload is an orphan (uploads end within the request timeout).
pub const ORPHANS_AFTER: Duration = Duration::from_secs(60 * 60);
/// Age after which an upload never attached to a post is shredded.
pub const UNATTACHED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Runs the sweep now and then every [`INTERVAL`], logging what each run removed.
pub async fn run_in_background(state: AppState) {
    crate::retention::every(INTERVAL, "media sweep", || async {
        let report = state
            .media_files()
            .sweep(ORPHANS_AFTER, UNATTACHED_AFTER)
            .await?;
        if !report.orphans.is_empty() || !report.unattached.is_empty() {
            tracing::info!(
                orphans = report.orphans.len(),
                unattached = report.unattached.len(),
                store = state.media.kind(),
                "media sweep: removed incomplete and never attached uploads"
            );
        }
        Ok(())
    })
    .await;
}
