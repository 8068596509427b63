//! Opening the installation the API serves, without ever creating one.

use crate::error::ToolError;
use kring_projections::{Config, Mode, System, SystemError};
use kring_store::vault::MASTER_KEY_ENV;
use std::path::Path;

/// Opens the installation at `data_dir` (or the databases `KRING_DATABASE_URL` /
/// `KRING_EVENTSTORE_URL` name), exactly as `kring-api` does, but never creates a data
/// directory, an event log or a master key.
///
/// # Errors
/// [`ToolError::Open`] for a missing data directory or event log, an unreachable database, a
/// wrong master key; [`ToolError::NoMasterKey`] when there is no key at all.
pub async fn open(data_dir: &Path) -> Result<System, ToolError> {
    let config = Config::from_env(data_dir);
    if config.database_url.is_none() && !config.data_dir.is_dir() {
        return Err(SystemError::NoDataDir(config.data_dir).into());
    }
    if config.is_embedded() && !config.events_file().is_file() {
        return Err(SystemError::NoEventLog(config.data_dir).into());
    }
    let key_file = config.data_dir.join("master.key");
    let key_in_env = std::env::var(MASTER_KEY_ENV).is_ok_and(|v| !v.trim().is_empty());
    if !key_in_env && !key_file.is_file() {
        // The vault would make a fresh key here, which opens nothing: say so instead.
        return Err(ToolError::NoMasterKey(format!(
            "no master key: set {MASTER_KEY_ENV} or provide {}",
            key_file.display()
        )));
    }
    Ok(System::open(config, Mode::MustExist).await?)
}
