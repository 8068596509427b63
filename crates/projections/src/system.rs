//! Opening a Kring installation: the event log, the key vault and the read models, chosen by
//! configuration the same way for every binary (`kring-api`, `replay-tool`, `kring-bench`).
//!
//! | configuration                         | event log            | key vault        | read models      |
//! |---------------------------------------|----------------------|------------------|------------------|
//! | nothing (the embedded default)        | `DIR/events.db`      | `DIR/vault.db`   | `DIR/read.db`    |
//! | `KRING_DATABASE_URL=postgres://…`     | that database        | that database    | that database    |
//! | `KRING_EVENTSTORE_URL=esdb://…` alone | EventStoreDB         | `DIR/vault.db`   | `DIR/read.db`    |
//! | both                                  | EventStoreDB         | the database     | the database     |
//!
//! The master key comes from `KRING_MASTER_KEY`, else from `DIR/master.key` (generated with
//! owner-only permissions on first use). `DIR` is the data directory (`./kring-data` by default).
//! Every erasure is recorded in `DIR/erasures.ledger` before the key is destroyed (see
//! `docs/decisions/0013-backups-and-the-erasure-ledger.md`). Older installations kept the vault
//! inside `events.db` (or `read.db`): opening one moves its keys into `vault.db`.

use crate::{models, Projector, ReadDb};
use kring_store::esdb::EsdbStore;
use kring_store::postgres::PostgresStore;
use kring_store::sqlite::SqliteStore;
use kring_store::vault::{ErasureLedger, KeyVault, MasterKey, VaultError};
use kring_store::{DynStore, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable naming the read-model (and default event-log) database.
pub const DATABASE_URL_ENV: &str = "KRING_DATABASE_URL";
/// The environment variable naming an EventStoreDB / KurrentDB event log.
pub const EVENTSTORE_URL_ENV: &str = "KRING_EVENTSTORE_URL";
/// The data directory when none is given.
pub const DEFAULT_DATA_DIR: &str = "kring-data";

/// Where an installation keeps its data.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data directory: SQLite files, the master key file, media files.
    pub data_dir: PathBuf,
    /// `postgres://…` for read models, vault and (unless `eventstore_url`) the event log.
    pub database_url: Option<String>,
    /// `esdb://…` / `kurrentdb://…` for the event log.
    pub eventstore_url: Option<String>,
}

impl Config {
    /// The configuration for `data_dir`, with the URLs from the environment (empty values
    /// count as unset).
    #[must_use]
    pub fn from_env(data_dir: impl Into<PathBuf>) -> Self {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Self {
            data_dir: data_dir.into(),
            database_url: var(DATABASE_URL_ENV),
            eventstore_url: var(EVENTSTORE_URL_ENV),
        }
    }

    /// Where media files are kept (encrypted) in this installation.
    #[must_use]
    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    /// The embedded event log's file.
    #[must_use]
    pub fn events_file(&self) -> PathBuf {
        self.data_dir.join("events.db")
    }

    /// The key vault's file (when the vault is not in PostgreSQL).
    #[must_use]
    pub fn vault_file(&self) -> PathBuf {
        self.data_dir.join("vault.db")
    }

    /// The read models' file (when they are not in PostgreSQL).
    #[must_use]
    pub fn read_file(&self) -> PathBuf {
        read_file(&self.data_dir)
    }

    /// The erasure ledger (in the data directory whatever the backends).
    #[must_use]
    pub fn ledger(&self) -> ErasureLedger {
        ErasureLedger::in_data_dir(&self.data_dir)
    }

    /// Whether everything lives in SQLite files under the data directory.
    #[must_use]
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none() && self.eventstore_url.is_none()
    }
}

/// Whether opening may create a fresh installation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Create the data directory and databases when missing (`kring-api serve`).
    CreateIfMissing,
    /// Fail with [`SystemError::NoDataDir`] when the embedded data directory does not exist
    /// (tools that inspect an installation must not create an empty one).
    MustExist,
}

/// Why an installation could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The embedded default's data directory does not exist.
    #[error("data directory {0} does not exist")]
    NoDataDir(PathBuf),
    /// The data directory exists but holds no event log.
    #[error("{0} holds no Kring event log (events.db)")]
    NoEventLog(PathBuf),
    /// The event log failed to open.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The key vault failed to open (a wrong master key among others).
    #[error("key vault: {0}")]
    Vault(#[from] VaultError),
    /// The read-model database failed to open.
    #[error("read-model database: {0}")]
    ReadDb(#[from] sqlx::Error),
    /// The read models could not be prepared.
    #[error("read models: {0}")]
    Projection(#[from] crate::ProjectionError),
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// An open installation. Cheap to clone.
#[derive(Clone)]
pub struct System {
    /// How it was opened.
    pub config: Config,
    /// The event log.
    pub store: DynStore,
    /// The key vault.
    pub vault: Arc<KeyVault>,
    /// The read models.
    pub db: ReadDb,
}

impl System {
    /// Opens the installation `config` describes.
    ///
    /// # Errors
    /// [`SystemError`]: a missing data directory (in [`Mode::MustExist`]), an unreachable
    /// database, a wrong master key.
    pub async fn open(config: Config, mode: Mode) -> Result<Self, SystemError> {
        let dir = &config.data_dir;
        let needs_dir = config.database_url.is_none();
        if needs_dir && mode == Mode::MustExist {
            if !dir.is_dir() {
                return Err(SystemError::NoDataDir(dir.clone()));
            }
            if config.eventstore_url.is_none() && !config.events_file().is_file() {
                return Err(SystemError::NoEventLog(dir.clone()));
            }
        }
        if mode == Mode::CreateIfMissing {
            std::fs::create_dir_all(dir).map_err(|source| SystemError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let master = MasterKey::from_env_or_data_dir(dir)?;
        let store: DynStore = match (&config.eventstore_url, &config.database_url) {
            (Some(url), _) => Arc::new(EsdbStore::connect(url).await?),
            (None, Some(url)) => Arc::new(PostgresStore::connect(url).await?),
            (None, None) => Arc::new(SqliteStore::open(config.events_file()).await?),
        };
        let (vault, db) = match (&config.database_url, &config.eventstore_url) {
            (Some(url), _) => (
                KeyVault::open_postgres(url, &master).await?,
                ReadDb::connect(url).await?,
            ),
            (None, None) => (
                KeyVault::open_sqlite_moving_from(
                    &config.vault_file(),
                    &config.events_file(),
                    &master,
                )
                .await?,
                ReadDb::sqlite(&read_file(dir)).await?,
            ),
            (None, Some(_)) => (
                KeyVault::open_sqlite_moving_from(&config.vault_file(), &read_file(dir), &master)
                    .await?,
                ReadDb::sqlite(&read_file(dir)).await?,
            ),
        };
        let ledger = config.ledger();
        if mode == Mode::CreateIfMissing {
            ledger.create().map_err(VaultError::from)?;
        }
        Ok(Self {
            config,
            store,
            vault: Arc::new(vault.with_ledger(ledger)),
            db,
        })
    }

    /// A projector over every read model of [`models::all`].
    ///
    /// # Errors
    /// The read-model database failed while preparing the tables.
    pub async fn projector(&self) -> Result<Projector<DynStore>, SystemError> {
        Ok(Projector::new(self.store.clone(), self.db.clone(), models::all()).await?)
    }
}

fn read_file(dir: &Path) -> PathBuf {
    dir.join("read.db")
}
