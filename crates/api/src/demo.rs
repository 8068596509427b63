//! `kring-api serve --demo`: a living school to try in a minute.
//!
//! Seeds, once (it is skipped when `DIR/demo.json` exists), a school with two class groups and
//! the school group, staff (a director, two teachers, a compliance officer), children, guardians
//! linked through real invitations with mixed consents, and posts with photos; then writes
//! `DIR/demo.json` with every id and a token per demo person.

use crate::state::AppState;
use std::path::PathBuf;

/// Seeds the demo school unless it exists; answers the path of `demo.json`.
///
/// # Errors
/// A command of the seed failed.
pub async fn seed(state: &AppState) -> Result<PathBuf, String> {
    let path = state.system.config.data_dir.join("demo.json");
    if path.exists() {
        return Ok(path);
    }
    Err("the demo seed is not built yet".to_owned())
}
