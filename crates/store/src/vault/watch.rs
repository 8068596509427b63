//! The key cache, and how it learns of erasures made by any process with the same vault open
//! (`docs/decisions/0015-erasure-reaches-every-process.md`).
//!
//! Every erasure appends a row to `vault_erasures` (an increasing id and the subject) in the
//! transaction that destroys the key. A cache hit is served only after the cache has evicted
//! every subject erased so far:
//!
//! - **SQLite**: a connection of the vault's own asks `PRAGMA data_version`, which changes
//!   exactly when another connection (of this process or another) committed to the file. Only
//!   then are the erasures above the last one seen read and their subjects evicted. In WAL mode
//!   the pragma reads the shared-memory index: no disk I/O. A query is a round trip to the
//!   connection's worker thread, so the check first compares the WAL-index header in the `-shm`
//!   file (rewritten by every commit) with its value at the last check, and asks only when it
//!   changed. Strict: an open that starts after an erasure committed anywhere never uses the
//!   erased key.
//! - **PostgreSQL**: the erasing transaction `NOTIFY`s (delivered at commit, in commit order)
//!   and a task per vault `LISTEN`s and evicts. While that listener is not connected (at start,
//!   after a lost connection, until it listens again and has read the erasures it may have
//!   missed), every cache hit reads the erasures above the last one seen instead. Asynchronous:
//!   another process may serve an erased key until its listener has received the notification.
//!
//! A key read from the database is cached only if no erasure was processed while it was being
//! read: otherwise an erasure processed between the read and the insertion would be missed.

use super::db::{VaultDb, ERASURE_CHANNEL};
use super::{parse_subject_name, DataKey, VaultError};
use kring_domain::access::Subject;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a cached key is trusted before the vault reads it again. Erasures do not wait for
/// it (they are evicted as described above); it bounds what a listener that silently stopped
/// receiving could serve.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Cached keys before the cache starts over.
const CACHE_LIMIT: usize = 100_000;
/// The longest pause between two attempts to connect the PostgreSQL listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Cached {
    /// `None`: the subject is erased.
    key: Option<DataKey>,
    at: Instant,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<Subject, Cached>,
    /// Counts the batches of erasures processed; a key read while it changed is not cached.
    epoch: u64,
}

/// The keys of one vault, bounded in size and age.
#[derive(Default)]
pub(super) struct KeyCache {
    state: Mutex<CacheState>,
}

impl KeyCache {
    /// The cached key (`Some(None)`: erased), if fresh.
    #[allow(
        clippy::option_option,
        reason = "not cached, cached as erased and cached: the caller matches all three"
    )]
    pub fn get(&self, subject: Subject) -> Option<Option<DataKey>> {
        let state = self.state.lock().ok()?;
        state
            .entries
            .get(&subject)
            .filter(|c| c.at.elapsed() < CACHE_TTL)
            .map(|c| c.key.clone())
    }

    /// Taken before reading a key from the database, handed to [`KeyCache::put`] after.
    pub fn epoch(&self) -> u64 {
        self.state.lock().map_or(u64::MAX, |s| s.epoch)
    }

    /// Caches `key`, unless erasures were processed since `epoch` was taken: one of them may be
    /// of this subject and committed after the key was read.
    pub fn put(&self, subject: Subject, key: Option<DataKey>, epoch: u64) {
        if let Ok(mut state) = self.state.lock() {
            if state.epoch != epoch {
                return;
            }
            if state.entries.len() >= CACHE_LIMIT {
                state.entries.clear();
            }
            state.entries.insert(
                subject,
                Cached {
                    key,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Forgets the keys of erased subjects (committed erasures: call after the commit).
    pub fn evict(&self, subjects: impl IntoIterator<Item = Subject>) {
        // A poisoned lock is never read again ([`KeyCache::get`] misses), so it holds no
        // erased key that could be served.
        if let Ok(mut state) = self.state.lock() {
            state.epoch = state.epoch.wrapping_add(1);
            for subject in subjects {
                state.entries.remove(&subject);
            }
        }
    }

    fn evict_names(&self, names: &[(i64, String)]) {
        self.evict(
            names
                .iter()
                .filter_map(|(_, name)| parse_subject_name(name).ok()),
        );
    }
}

/// How a vault keeps its cache in step with erasures committed by any process.
pub(super) enum Watch {
    Sqlite(tokio::sync::Mutex<SqliteWatch>),
    Postgres(PgWatch),
}

pub(super) struct SqliteWatch {
    /// A connection of its own: `data_version` does not change for its own commits, and it
    /// makes none. `None` once closed.
    conn: Option<SqliteConnection>,
    data_version: i64,
    last_id: i64,
    /// The vault's WAL index (`vault.db-shm`), whose header every commit rewrites.
    shm: Option<std::fs::File>,
    /// Both copies of the WAL-index header as read before the last full check.
    shm_header: Option<[u8; SHM_HEADER]>,
}

/// The WAL-index header: two copies of 48 bytes at the start of the `-shm` file, rewritten (a
/// change counter, the last frame, checksums) by every commit to the database
/// (<https://www.sqlite.org/walformat.html>, "The WAL-Index Header").
const SHM_HEADER: usize = 96;

impl SqliteWatch {
    /// The WAL-index header now, if it can be read (WAL mode on a unix file system).
    fn shm_header(&self) -> Option<[u8; SHM_HEADER]> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            let mut header = [0_u8; SHM_HEADER];
            self.shm.as_ref()?.read_exact_at(&mut header, 0).ok()?;
            Some(header)
        }
        #[cfg(not(unix))]
        {
            None
        }
    }
}

pub(super) struct PgWatch {
    shared: Arc<PgShared>,
    task: tokio::task::JoinHandle<()>,
}

struct PgShared {
    pool: PgPool,
    cache: Arc<KeyCache>,
    /// Whether the listener is connected, listening, and has read what it may have missed.
    listening: AtomicBool,
    /// The newest erasure evicted; held while reading or applying erasures.
    last_id: tokio::sync::Mutex<i64>,
    /// How many reads of the erasure table ([`PgShared::catch_up`]) have begun, and the number
    /// of the last one finished: a caller that waited for the lock while a read that began after
    /// its call finished needs no read of its own. Many concurrent reads at a position then
    /// share one query instead of queueing one each.
    catch_ups_begun: std::sync::atomic::AtomicU64,
    catch_up_finished: std::sync::atomic::AtomicU64,
}

impl Watch {
    /// Starts watching `db` for erasures; the cache starts empty, so older ones are skipped.
    pub async fn start(db: &VaultDb, cache: Arc<KeyCache>) -> Result<Self, sqlx::Error> {
        match db {
            VaultDb::Sqlite(pool) => {
                let mut conn = SqliteConnection::connect_with(&pool.connect_options()).await?;
                // The version first: an erasure committed after it is seen by the next check.
                let data_version = data_version(&mut conn).await?;
                let last_id = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM vault_erasures")
                    .fetch_one(&mut conn)
                    .await?;
                let mut shm_path = pool.connect_options().get_filename().as_os_str().to_owned();
                shm_path.push("-shm");
                Ok(Self::Sqlite(tokio::sync::Mutex::new(SqliteWatch {
                    conn: Some(conn),
                    data_version,
                    last_id,
                    shm: std::fs::File::open(shm_path).ok(),
                    shm_header: None,
                })))
            }
            VaultDb::Postgres(pool) => {
                let last_id = db.last_erasure().await?;
                let shared = Arc::new(PgShared {
                    pool: pool.clone(),
                    cache,
                    listening: AtomicBool::new(false),
                    last_id: tokio::sync::Mutex::new(last_id),
                    catch_ups_begun: std::sync::atomic::AtomicU64::new(0),
                    catch_up_finished: std::sync::atomic::AtomicU64::new(0),
                });
                let task = tokio::spawn(listen(Arc::clone(&shared)));
                Ok(Self::Postgres(PgWatch { shared, task }))
            }
        }
    }

    /// Evicts every subject whose erasure committed before this call (on PostgreSQL: whose
    /// notification the listener received, or every one while it is not listening).
    pub async fn validate(&self, cache: &KeyCache) -> Result<(), VaultError> {
        match self {
            Self::Sqlite(watch) => {
                let mut watch = watch.lock().await;
                let watch = &mut *watch;
                if watch.conn.is_none() {
                    return Err(sqlx::Error::PoolClosed.into());
                }
                // The fast path: a WAL-index header unchanged since the last full check means
                // nothing was committed since (a read from shared memory, no lock, no query).
                // Read before the check, so a commit after this read is seen next time.
                let header = watch.shm_header();
                if header.is_some() && header == watch.shm_header {
                    return Ok(());
                }
                let conn = watch.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
                let version = data_version(conn).await?;
                if version == watch.data_version {
                    watch.shm_header = header;
                    return Ok(());
                }
                let erased: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, subject FROM vault_erasures WHERE id > ? ORDER BY id",
                )
                .bind(watch.last_id)
                .fetch_all(&mut *conn)
                .await?;
                if let Some((id, _)) = erased.last() {
                    cache.evict_names(&erased);
                    watch.last_id = *id;
                }
                watch.data_version = version;
                watch.shm_header = header;
                Ok(())
            }
            Self::Postgres(watch) => {
                if watch.shared.listening.load(Ordering::Acquire) {
                    return Ok(());
                }
                watch.shared.catch_up().await.map_err(VaultError::from)
            }
        }
    }

    /// Evicts every subject whose erasure committed before this call, in any process, on both
    /// backends: on PostgreSQL the erasures above the last one seen are read from the table
    /// whether or not the listener has delivered them yet (one indexed read); on SQLite it is
    /// [`Watch::validate`], already strict.
    pub async fn sync(&self, cache: &KeyCache) -> Result<(), VaultError> {
        match self {
            Self::Sqlite(_) => self.validate(cache).await,
            Self::Postgres(watch) => watch.shared.catch_up().await.map_err(VaultError::from),
        }
    }

    /// Whether the watch is the asynchronous PostgreSQL listener (seals then check the
    /// database themselves).
    pub fn is_asynchronous(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Whether the PostgreSQL listener is connected and up to date (always true on SQLite).
    pub fn is_listening(&self) -> bool {
        match self {
            Self::Sqlite(_) => true,
            Self::Postgres(watch) => watch.shared.listening.load(Ordering::Acquire),
        }
    }

    /// Stops watching: closes the SQLite connection, stops the PostgreSQL listener.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(watch) => {
                if let Some(conn) = watch.lock().await.conn.take() {
                    let _ = conn.close().await;
                }
            }
            Self::Postgres(watch) => {
                watch.shared.listening.store(false, Ordering::Release);
                watch.task.abort();
            }
        }
    }
}

impl Drop for PgWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn data_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
}

impl PgShared {
    /// Reads and evicts the erasures above the last one seen.
    async fn catch_up(&self) -> Result<(), sqlx::Error> {
        // Reads numbered above `arrived` began after this call did, so they see every erasure
        // committed before it.
        let arrived = self.catch_ups_begun.load(Ordering::Acquire);
        let mut last_id = self.last_id.lock().await;
        if self.catch_up_finished.load(Ordering::Acquire) > arrived {
            return Ok(());
        }
        let this = self.catch_ups_begun.fetch_add(1, Ordering::AcqRel) + 1;
        let erased: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, subject FROM vault_erasures WHERE id > $1 ORDER BY id")
                .bind(*last_id)
                .fetch_all(&self.pool)
                .await?;
        if let Some((id, _)) = erased.last() {
            self.cache.evict_names(&erased);
            *last_id = *id;
        }
        self.catch_up_finished.store(this, Ordering::Release);
        Ok(())
    }

    /// Applies one notification, `<erasure id> <subject>`.
    async fn notified(&self, payload: &str) {
        let mut last_id = self.last_id.lock().await;
        let parsed = payload
            .split_once(' ')
            .and_then(|(id, name)| Some((id.parse::<i64>().ok()?, name.to_owned())));
        match parsed {
            Some((id, name)) => {
                self.cache.evict_names(&[(id, name)]);
                *last_id = (*last_id).max(id);
            }
            // Not ours to understand: make sure nothing is missed.
            None => {
                drop(last_id);
                self.listening.store(false, Ordering::Release);
            }
        }
    }
}

/// The listener task: connects, listens, catches up, then evicts on every notification; on
/// any failure it stops vouching for the cache (hits read the erasures table) and reconnects.
async fn listen(shared: Arc<PgShared>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let _ = listen_once(&shared, &mut backoff).await;
        shared.listening.store(false, Ordering::Release);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn listen_once(shared: &PgShared, backoff: &mut Duration) -> Result<(), sqlx::Error> {
    // A connection of its own, outside the vault's pool.
    let options = (*shared.pool.connect_options()).clone();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.eager_reconnect(false);
    listener.listen(ERASURE_CHANNEL).await?;
    // Erasures committed before LISTEN took effect were not announced to us: read them.
    shared.catch_up().await?;
    shared.listening.store(true, Ordering::Release);
    *backoff = Duration::from_millis(50);
    while let Some(notification) = listener.try_recv().await? {
        shared.notified(notification.payload()).await;
        if !shared.listening.load(Ordering::Acquire) {
            break;
        }
    }
    Ok(())
}
