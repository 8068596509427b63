//! The read-model database: SQLite (embedded default) or PostgreSQL, through sqlx's `Any`
//! driver so that every read model is written once, in SQL both understand.
//!
//! Portable SQL conventions used by every read model: ids are `TEXT` (hyphenated UUIDs), times
//! are `BIGINT` microseconds since the Unix epoch (UTC), dates are `TEXT` `YYYY-MM-DD`, flags are
//! `BIGINT` 0/1, sealed personal fields are `TEXT` (the envelope's JSON). Parameters are `$1`,
//! `$2`, … in order of first appearance.

use chrono::{DateTime, Utc};
use kring_domain::school::School;
use kring_domain::SchoolId;
use sqlx::any::{install_default_drivers, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How every SQLite read-model connection is set up: for a fast rebuild within its 256 MiB
/// memory budget (the measurements: `docs/benchmarks-history-2026.md`).
///
/// - `page_size = 16384` (new files only; an existing file keeps its pages): a quarter of the
///   pages, B-trees a level shallower, and a quarter of the WAL frames — each frame is two
///   `pwrite`s.
/// - `journal_mode = WAL`, `synchronous = NORMAL`: read models can always be rebuilt from the
///   log, and a lost tail of commits is re-projected from the (equally lost) checkpoint.
/// - `wal_autocheckpoint = 4096` pages (64 MiB): a hot page is copied into the database once
///   per checkpoint; the default (1,000 pages) checkpointed at nearly every commit. A long run
///   of projector units (catching up, rebuilding) turns it off on its connection and
///   checkpoints beside it instead (`crate::writer`, `WalCheckpoints`).
/// - `cache_size = -16384` (16 MiB per connection, the default is 2 MiB): the pages a batch
///   loads and writes back stay in memory instead of being read again with `pread`. A larger
///   cache is barely faster and, with the projector's writes on a thread of their own
///   (`crate::writer`), takes a rebuild over the memory budget.
/// - `temp_store = MEMORY`: statement journals (every multi-row `INSERT … ON CONFLICT` keeps
///   one, to undo just that statement) live in memory instead of temporary files that are
///   created, written and deleted hundreds of times per rebuild.
const SQLITE_PRAGMAS: &str = include_str!("sql/sqlite/pragmas.sql");

/// The automatic checkpoint setting of [`SQLITE_PRAGMAS`], to put back on a connection that
/// turned it off (`crate::writer`).
pub(crate) const SQLITE_WAL_AUTOCHECKPOINT: &str =
    include_str!("sql/sqlite/wal_autocheckpoint.sql");

/// Begins a write transaction on SQLite, taking the write lock at once.
pub(crate) const BEGIN_IMMEDIATE: &str = include_str!("sql/sqlite/begin_immediate.sql");

/// Which database a [`ReadDb`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, one file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The database `conn` talks to.
    #[must_use]
    pub fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME {
            Self::Sqlite
        } else {
            Self::Postgres
        }
    }
}

/// The read-model database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ReadDb {
    pool: AnyPool,
    backend: Backend,
    rosters: Arc<RosterCache>,
}

/// Parsed school rosters of the visibility read model, each with the generation and checkpoint
/// of the read that loaded it. A roster (hundreds of children) costs far more to parse than the
/// rest of a "who may see" answer; it only changes in a projector transaction, which also moves
/// the checkpoint, so a roster read at the same (generation, checkpoint) is still the same.
#[derive(Debug, Default)]
pub struct RosterCache {
    map: Mutex<HashMap<SchoolId, Cached>>,
}

/// A roster with the (generation, checkpoint) it was read at.
type Cached = (i64, i64, Arc<School>);

impl RosterCache {
    /// The roster of `school` if it was read at `at` (generation, checkpoint).
    #[must_use]
    pub fn get(&self, school: SchoolId, at: (i64, i64)) -> Option<Arc<School>> {
        let map = self.map.lock().ok()?;
        map.get(&school)
            .filter(|(g, p, _)| (*g, *p) == at)
            .map(|(_, _, s)| Arc::clone(s))
    }

    /// Remembers the roster of `school` as read at `at`.
    pub fn put(&self, school: SchoolId, at: (i64, i64), roster: Arc<School>) {
        if let Ok(mut map) = self.map.lock() {
            map.insert(school, (at.0, at.1, roster));
        }
    }
}

impl ReadDb {
    /// On SQLite, a connection of its own outside the pool, for checkpointing the WAL beside a
    /// long run of projector writes ([`crate::writer::Tx::start_with_checkpoints`]); `None` on
    /// PostgreSQL, or if it cannot be opened (the writer then checkpoints as usual).
    pub(crate) async fn checkpoint_connection(&self) -> Option<sqlx::AnyConnection> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        sqlx::ConnectOptions::connect(&*self.pool.connect_options())
            .await
            .ok()
    }

    /// The read models in the SQLite file at `path` (created if missing).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub async fn sqlite(path: &Path) -> Result<Self, sqlx::Error> {
        Self::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// The read models at `url`: `sqlite://…` or `postgres://…`. PostgreSQL connections get
    /// the guards of [`kring_store::postgres::link`] (statement and lock timeouts, keepalives),
    /// and the database the function read models' scripts run through ([`crate::bulk::Script`]).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        install_default_drivers();
        let (backend, url) = if url.starts_with("postgres") {
            (
                Backend::Postgres,
                kring_store::postgres::link::guarded_url(url)?,
            )
        } else {
            (Backend::Sqlite, url.to_owned())
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(if backend == Backend::Sqlite {
                Duration::from_secs(30)
            } else {
                kring_store::postgres::link::ACQUIRE_TIMEOUT
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if backend == Backend::Postgres {
            crate::bulk::ensure_script_function(&pool).await?;
        }
        Ok(Self {
            pool,
            backend,
            rosters: Arc::default(),
        })
    }

    /// The parsed-roster cache of the visibility queries.
    #[must_use]
    pub fn rosters(&self) -> &RosterCache {
        &self.rosters
    }

    /// The pool.
    #[must_use]
    pub const fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    #[must_use]
    pub const fn backend(&self) -> Backend {
        self.backend
    }
}

/// Microseconds since the Unix epoch: how times are stored.
#[must_use]
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A stored time.
///
/// # Errors
/// [`crate::ProjectionError::Invalid`] for microseconds no time has.
pub fn from_micros(m: i64) -> Result<DateTime<Utc>, crate::ProjectionError> {
    DateTime::from_timestamp_micros(m)
        .ok_or_else(|| crate::ProjectionError::Invalid(format!("{m} is not a stored time")))
}

/// A stored position or count (non-negative `BIGINT`).
#[must_use]
pub fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored non-negative `BIGINT`.
///
/// # Errors
/// [`crate::ProjectionError::Invalid`] for a negative value.
pub fn to_u64(n: i64) -> Result<u64, crate::ProjectionError> {
    u64::try_from(n).map_err(|_| {
        crate::ProjectionError::Invalid(format!("{n} where a position or count is stored"))
    })
}

/// An id stored as text in a read model.
///
/// # Errors
/// [`crate::ProjectionError::Invalid`] for text that is not a UUID.
pub fn uuid(s: &str) -> Result<uuid::Uuid, crate::ProjectionError> {
    uuid::Uuid::parse_str(s)
        .map_err(|e| crate::ProjectionError::Invalid(format!("bad id {s:?} in a read model: {e}")))
}

/// The stored form of a personal field: the sealed envelope's JSON. A field that is still plain
/// (`what` names it, e.g. "a message body") is refused: plaintext personal data never rests in a
/// read model.
///
/// # Errors
/// [`crate::ProjectionError::Invalid`] for an unsealed field.
pub fn sealed_text(
    field: &kring_domain::Sealed<String>,
    what: &str,
) -> Result<String, crate::ProjectionError> {
    if field.envelope().is_none() {
        return Err(crate::ProjectionError::Invalid(format!(
            "{what} reached a read model unsealed; refusing to store plaintext"
        )));
    }
    Ok(serde_json::to_string(field)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_autocheckpoint_put_back_is_the_one_every_connection_starts_with() {
        let setting = super::SQLITE_WAL_AUTOCHECKPOINT.trim();
        assert!(super::SQLITE_PRAGMAS.contains(&format!("{setting};")));
    }
}
