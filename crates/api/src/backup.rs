//! `kring-api backup --to DIR` and `kring-api restore --from DIR`, for the embedded installation
//! (SQLite files, media and keys in the data directory) and for PostgreSQL (one database for
//! log, vault and read models; media and keys in the data directory), and the data-directory
//! lock that keeps a restore away from a running server.
//!
//! A backup is an online, consistent copy. On SQLite each database is copied with `VACUUM
//! INTO` (one read transaction each, no free pages carried over), the read models first and the
//! vault last, so the copied read models are never ahead of the copied log and every key the
//! copied log or media need is in the copied vault. On PostgreSQL `pg_dump` copies the whole
//! database from one snapshot (`database.pgdump`, custom format). Media files and the key files
//! follow. `kring-backup.json`, written last, lists every file with its SHA-256; a directory
//! without it is not a backup.
//!
//! A backup never holds the erasure ledger (`erasures.ledger`). A restore keeps the data
//! directory's ledger, refuses to run without one (unless told the installation never had one),
//! and destroys again the key of every subject in it, so nothing erased after the backup was
//! taken comes back. See `docs/decisions/0013-backups-and-the-erasure-ledger.md`.

use kring_domain::access::Subject;
use kring_projections::Config;
use kring_store::vault::{KeyVault, LedgerError, MasterKey, VaultError, LEDGER_FILE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Connection, SqliteConnection};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The manifest every backup ends with.
pub const MANIFEST: &str = "kring-backup.json";
/// The lock file of a data directory: `serve` and `projector` hold it shared, `restore`
/// exclusively.
pub const LOCK_FILE: &str = "kring.lock";
/// The manifest's format.
const FORMAT: u32 = 1;
/// The databases of the embedded installation.
const DATABASES: [&str; 3] = ["read.db", "events.db", "vault.db"];
/// Secrets copied as they are (when present): the master key and the token-signing key.
const KEY_FILES: [&str; 2] = ["master.key", "jwt.key"];
/// Where media files are kept, inside the data directory.
const MEDIA: &str = "media";
/// Where a restore assembles the backup's files before it replaces anything.
const STAGING: &str = ".restore-staging";
/// The PostgreSQL database of a backup (`pg_dump --format=custom`).
const PG_DUMP: &str = "database.pgdump";

/// Where an installation keeps its log, vault and read models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// SQLite files in the data directory (the embedded default).
    #[default]
    Sqlite,
    /// One PostgreSQL database (`KRING_DATABASE_URL`).
    Postgres,
}

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The installation keeps its log where kring-api cannot copy it.
    #[error("backup and restore are not supported on {0}: kring-api backs up the embedded SQLite installation and PostgreSQL (KRING_DATABASE_URL without KRING_EVENTSTORE_URL); use the database's own tools and keep the data directory's {LEDGER_FILE} out of them")]
    UnsupportedBackend(&'static str),
    /// The backup was taken of another kind of installation.
    #[error("the backup is of a {backup:?} installation, this one is {installation:?}")]
    OtherBackend {
        /// The backup's.
        backup: Backend,
        /// The installation's.
        installation: Backend,
    },
    /// `pg_dump` or `pg_restore` failed (or is not installed).
    #[error("{tool}: {detail}")]
    PgTool {
        /// The program.
        tool: &'static str,
        /// Its error output, or why it did not run.
        detail: String,
    },
    /// `--to` names a directory that already holds files.
    #[error("{0} exists and is not empty: a backup goes into a new or empty directory")]
    TargetNotEmpty(PathBuf),
    /// The data directory holds no installation.
    #[error("{0} holds no Kring installation (no events.db)")]
    NoInstallation(PathBuf),
    /// The installation still keeps its vault inside the event log.
    #[error("{0} has no vault.db: start the installation once with this version (it moves the key vault into vault.db), then back it up")]
    VaultNotMoved(PathBuf),
    /// `--from` is not a complete backup.
    #[error("{0} is not a complete Kring backup (no {MANIFEST})")]
    NotABackup(PathBuf),
    /// A backup file is missing or was altered.
    #[error("backup {dir}: {file} {problem}; nothing was restored")]
    Damaged {
        /// The backup.
        dir: PathBuf,
        /// The file.
        file: String,
        /// What is wrong.
        problem: String,
    },
    /// A server or projector runs on the data directory (or another restore does).
    #[error("{0} is in use by a running kring-api (serve or projector) or another restore: stop it before restoring")]
    InUse(PathBuf),
    /// The data directory has no erasure ledger.
    #[error("{0} has no erasure ledger ({LEDGER_FILE}): without it, data erased after the backup was taken would come back. Copy the installation's ledger into the data directory first, or pass --without-erasure-ledger if this installation never erased anything")]
    NoLedger(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A database could not be copied.
    #[error("{path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: sqlx::Error,
    },
    /// The manifest is not the JSON a backup writes.
    #[error("backup manifest {path}: {source}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// The restored vault failed (a master key that does not open it among others).
    #[error("restored key vault: {0}")]
    Vault(#[from] VaultError),
    /// The erasure ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackedUpFile {
    /// Its path inside the backup, `/`-separated.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// `kring-backup.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest's format.
    pub format: u32,
    /// What kind of installation it is a backup of.
    #[serde(default)]
    pub backend: Backend,
    /// When the copy was taken.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Every file, with its checksum.
    pub files: Vec<BackedUpFile>,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// When the restored backup was taken.
    pub backup_taken_at: chrono::DateTime<chrono::Utc>,
    /// Files put in place.
    pub files: usize,
    /// Erasures of the ledger applied again to the restored vault.
    pub erasures_reapplied: usize,
}

fn backend(config: &Config) -> Result<(Backend, Option<&str>), BackupError> {
    match (&config.database_url, &config.eventstore_url) {
        (None, None) => Ok((Backend::Sqlite, None)),
        (Some(url), None) => Ok((Backend::Postgres, Some(url.as_str()))),
        (_, Some(_)) => Err(BackupError::UnsupportedBackend("EventStoreDB")),
    }
}

/// The connection URL as libpq (`pg_dump`, `pg_restore`) reads it: without the
/// `options[…]` parameters sqlx takes and libpq does not.
fn libpq_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("options%5B") && !p.starts_with("options["))
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// Runs a PostgreSQL client program; its error output becomes the error.
async fn pg_tool(tool: &'static str, args: Vec<std::ffi::OsString>) -> Result<(), BackupError> {
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(tool)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    });
    let out = run
        .await
        .map_err(|e| BackupError::PgTool {
            tool,
            detail: e.to_string(),
        })?
        .map_err(|e| BackupError::PgTool {
            tool,
            detail: format!(
                "{e} (install PostgreSQL's client programs, e.g. Debian's postgresql-client)"
            ),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BackupError::PgTool {
            tool,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Takes a consistent copy of the running (or stopped) embedded installation into `to`, which
/// must not exist or be empty. The erasure ledger is not copied.
///
/// # Errors
/// [`BackupError`]; a failed backup may leave a partial directory without a manifest, which
/// `restore` refuses.
pub async fn backup(config: &Config, to: &Path) -> Result<Manifest, BackupError> {
    let (backend, url) = backend(config)?;
    let dir = &config.data_dir;
    if backend == Backend::Sqlite {
        if !config.events_file().is_file() {
            return Err(BackupError::NoInstallation(dir.clone()));
        }
        if !config.vault_file().is_file() {
            return Err(BackupError::VaultNotMoved(dir.clone()));
        }
    }
    // Not while a restore replaces the files.
    let _lock = DataDirLock::shared(dir)?;
    if to.exists() {
        let mut entries = fs::read_dir(to).map_err(io(to))?;
        if entries.next().is_some() {
            return Err(BackupError::TargetNotEmpty(to.to_owned()));
        }
    }
    fs::create_dir_all(to).map_err(io(to))?;
    let mut names = Vec::new();
    if let Some(url) = url {
        // One snapshot of log, vault and read models together.
        pg_tool(
            "pg_dump",
            vec![
                "--format=custom".into(),
                "--no-owner".into(),
                "--no-privileges".into(),
                format!("--file={}", to.join(PG_DUMP).display()).into(),
                format!("--dbname={}", libpq_url(url)).into(),
            ],
        )
        .await?;
        File::open(to.join(PG_DUMP))
            .and_then(|f| f.sync_all())
            .map_err(io(&to.join(PG_DUMP)))?;
        names.push(PG_DUMP.to_owned());
    }
    // The read models before the log: the copied read models are never ahead of the copied log.
    for db in ["read.db", "events.db"] {
        let source = dir.join(db);
        // Read models may be missing (never started); the log is checked above.
        if backend == Backend::Sqlite && source.is_file() {
            vacuum_into(&source, &to.join(db)).await?;
            names.push(db.to_owned());
        }
    }
    // Media after the log (a file whose event is not in the copy is harmless), the vault last:
    // keys are created before anything uses them, so every copied event and file has its key.
    let media = config.media_dir();
    if media.is_dir() {
        let target = to.join(MEDIA);
        fs::create_dir_all(&target).map_err(io(&target))?;
        for entry in fs::read_dir(&media).map_err(io(&media))? {
            let path = entry.map_err(io(&media))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let extension = Path::new(name).extension().and_then(|e| e.to_str());
            if name.starts_with('.') || !matches!(extension, Some("kmedia" | "post")) {
                continue;
            }
            match copy_synced(&path, &target.join(name)) {
                Ok(()) => names.push(format!("{MEDIA}/{name}")),
                // Shredded while we copied: it is gone in the installation too.
                Err(BackupError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    if backend == Backend::Sqlite {
        vacuum_into(&config.vault_file(), &to.join("vault.db")).await?;
        names.push("vault.db".to_owned());
    }
    for key in KEY_FILES {
        let source = dir.join(key);
        if source.is_file() {
            copy_synced(&source, &to.join(key))?;
            names.push(key.to_owned());
        }
    }
    let mut files = Vec::new();
    for name in names {
        files.push(describe(to, &name)?);
    }
    let manifest = Manifest {
        format: FORMAT,
        backend,
        created_at: chrono::Utc::now(),
        files,
    };
    let path = to.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).map_err(|source| BackupError::Manifest {
        path: path.clone(),
        source,
    })?;
    write_synced(&path, &text)?;
    sync_dir(to)?;
    Ok(manifest)
}

/// Copies the SQLite database `source` into the new file `target` in one read transaction.
async fn vacuum_into(source: &Path, target: &Path) -> Result<(), BackupError> {
    let db_err = |source_err| BackupError::Database {
        path: source.to_owned(),
        source: source_err,
    };
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(source)
        .busy_timeout(std::time::Duration::from_secs(10));
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(db_err)?;
    sqlx::query("VACUUM INTO ?")
        .bind(target.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .map_err(db_err)?;
    conn.close().await.map_err(db_err)?;
    File::open(target)
        .and_then(|f| f.sync_all())
        .map_err(io(target))
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), BackupError> {
    fs::copy(from, to).map_err(io(from))?;
    File::open(to).and_then(|f| f.sync_all()).map_err(io(to))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

fn describe(root: &Path, name: &str) -> Result<BackedUpFile, BackupError> {
    let path = root.join(name);
    let mut file = File::open(&path).map_err(io(&path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(&path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha256 = hex::encode(hasher.finalize());
    Ok(BackedUpFile {
        path: name.to_owned(),
        bytes,
        sha256,
    })
}

/// Reads and checks a backup: its manifest, and every file's size and checksum.
///
/// # Errors
/// [`BackupError::NotABackup`], [`BackupError::Damaged`].
pub fn verify(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::NotABackup(from.to_owned()))
        }
        Err(e) => return Err(io(&path)(e)),
    };
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|source| BackupError::Manifest {
            path: path.clone(),
            source,
        })?;
    let damaged = |file: &str, problem: &str| BackupError::Damaged {
        dir: from.to_owned(),
        file: file.to_owned(),
        problem: problem.to_owned(),
    };
    if manifest.format != FORMAT {
        return Err(damaged(MANIFEST, "has a format this version does not know"));
    }
    let needed: &[&str] = match manifest.backend {
        Backend::Sqlite => &["events.db", "vault.db"],
        Backend::Postgres => &[PG_DUMP],
    };
    for name in needed {
        if !manifest.files.iter().any(|f| f.path == *name) {
            return Err(damaged(name, "is missing from the manifest"));
        }
    }
    for file in &manifest.files {
        let allowed = DATABASES.contains(&file.path.as_str())
            || (manifest.backend == Backend::Postgres && file.path == PG_DUMP)
            || KEY_FILES.contains(&file.path.as_str())
            || file.path.strip_prefix("media/").is_some_and(|name| {
                !name.is_empty() && !name.contains('/') && !name.starts_with('.')
            });
        if !allowed {
            return Err(damaged(&file.path, "is not a file a backup holds"));
        }
        if !from.join(&file.path).is_file() {
            return Err(damaged(&file.path, "is missing"));
        }
        if describe(from, &file.path)? != *file {
            return Err(damaged(&file.path, "does not match its checksum"));
        }
    }
    Ok(manifest)
}

/// A lock on a data directory: shared for `serve` and `projector`, exclusive for `restore`.
/// Released when dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    fn open(dir: &Path) -> Result<File, BackupError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))
    }

    /// Takes the lock shared (several servers and projectors may run on one data directory).
    ///
    /// # Errors
    /// [`BackupError::InUse`] while a restore runs.
    pub fn shared(dir: &Path) -> Result<Self, BackupError> {
        let file = Self::open(dir)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::InUse(dir.to_owned())),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&dir.join(LOCK_FILE))(e)),
        }
    }

    /// Takes the lock exclusively.
    ///
    /// # Errors
    /// [`BackupError::InUse`] while a server, projector or restore holds it.
    pub fn exclusive(dir: &Path) -> Result<Self, BackupError> {
        let file = Self::open(dir)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::InUse(dir.to_owned())),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&dir.join(LOCK_FILE))(e)),
        }
    }
}

/// Brings the backup in `from` back into the (stopped) embedded installation `config`
/// describes, with the key of every subject in the data directory's erasure ledger destroyed
/// again and their media files deleted before the files are put in place. Nothing is changed when the backup is incomplete or
/// damaged, the ledger is missing (unless `without_ledger`) or unreadable, or a server runs.
///
/// # Errors
/// [`BackupError`].
pub async fn restore(
    config: &Config,
    from: &Path,
    without_ledger: bool,
) -> Result<RestoreReport, BackupError> {
    let (backend, url) = backend(config)?;
    let dir = &config.data_dir;
    let manifest = verify(from)?;
    if manifest.backend != backend {
        return Err(BackupError::OtherBackend {
            backup: manifest.backend,
            installation: backend,
        });
    }
    let ledger = config.ledger();
    if !ledger.exists() && !without_ledger {
        return Err(BackupError::NoLedger(dir.clone()));
    }
    let entries = ledger.entries()?;
    let _lock = DataDirLock::exclusive(dir)?;

    // Assemble everything beside the data and apply the ledger there; only then swap it in.
    let staging = dir.join(STAGING);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let subjects: Vec<Subject> = entries.iter().map(|e| e.subject).collect();
    if let Err(e) = stage(&manifest, from, &staging, &subjects).await {
        // Nothing in the data directory was touched yet.
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    if let Some(url) = url {
        // The database in one transaction (all of it or none), then the ledger's erasures
        // again before anything can read it.
        if let Err(e) = restore_postgres(url, &staging, &subjects).await {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    }
    for db in DATABASES {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            remove_if_present(&dir.join(format!("{db}{suffix}")))?;
        }
    }
    let media = config.media_dir();
    if media.exists() {
        fs::remove_dir_all(&media).map_err(io(&media))?;
    }
    fs::rename(staging.join(MEDIA), &media).map_err(io(&media))?;
    for name in DATABASES.iter().chain(KEY_FILES.iter()) {
        let staged = staging.join(name);
        if staged.is_file() {
            fs::rename(&staged, dir.join(name)).map_err(io(&staged))?;
        }
    }
    fs::remove_dir_all(&staging).map_err(io(&staging))?;
    sync_dir(dir)?;
    Ok(RestoreReport {
        backup_taken_at: manifest.created_at,
        files: manifest.files.len(),
        erasures_reapplied: subjects.len(),
    })
}

/// Copies the backup into `staging`, then destroys the key of every `erased` subject in the
/// copied vault (with the master key of `KRING_MASTER_KEY`, else the backup's `master.key`) and
/// deletes the copied media files of erased media items. Every erasure the ledger knows, whether
/// before or after the backup: destroying a key twice is harmless, missing one is not.
async fn stage(
    manifest: &Manifest,
    from: &Path,
    staging: &Path,
    erased: &[Subject],
) -> Result<(), BackupError> {
    fs::create_dir_all(staging.join(MEDIA)).map_err(io(staging))?;
    for file in &manifest.files {
        copy_synced(&from.join(&file.path), &staging.join(&file.path))?;
    }
    let master = master_key(staging)?;
    if manifest.backend == Backend::Sqlite {
        let vault = KeyVault::open_sqlite(&staging.join("vault.db"), &master).await?;
        let outcome = vault.erase_again(erased).await;
        vault.close().await;
        outcome?;
    }
    for subject in erased {
        if let Subject::Media(id) = subject {
            for path in [
                staging.join(MEDIA).join(format!("{id}.kmedia")),
                staging.join(MEDIA).join(format!("{id}.post")),
            ] {
                remove_if_present(&path)?;
            }
        }
    }
    Ok(())
}

/// The master key of the backed-up installation: `KRING_MASTER_KEY`, else the backup's
/// `master.key`.
fn master_key(staging: &Path) -> Result<MasterKey, BackupError> {
    if std::env::var_os(kring_store::vault::MASTER_KEY_ENV).is_some()
        || staging.join("master.key").is_file()
    {
        Ok(MasterKey::from_env_or_data_dir(staging)?)
    } else {
        Err(VaultError::MasterKey(format!(
            "the backup holds no master.key: set {} to the key of the backed-up installation",
            kring_store::vault::MASTER_KEY_ENV
        ))
        .into())
    }
}

/// Replaces the database at `url` by the staged dump (`pg_restore --clean --single-transaction`:
/// the whole database or nothing), then destroys the key of every `erased` subject in it again.
async fn restore_postgres(
    url: &str,
    staging: &Path,
    erased: &[Subject],
) -> Result<(), BackupError> {
    let master = master_key(staging)?;
    pg_tool(
        "pg_restore",
        vec![
            "--clean".into(),
            "--if-exists".into(),
            "--no-owner".into(),
            "--no-privileges".into(),
            "--single-transaction".into(),
            "--exit-on-error".into(),
            format!("--dbname={}", libpq_url(url)).into(),
            staging.join(PG_DUMP).into_os_string(),
        ],
    )
    .await?;
    let vault = KeyVault::open_postgres(url, &master).await?;
    let outcome = vault.erase_again(erased).await;
    vault.close().await;
    outcome?;
    remove_if_present(&staging.join(PG_DUMP))
}

fn remove_if_present(path: &Path) -> Result<(), BackupError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}
