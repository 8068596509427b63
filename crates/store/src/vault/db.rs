//! Where the vault keeps its keys: a SQLite file of its own (`vault.db` in the data directory)
//! or tables in the PostgreSQL database.

use super::VaultError;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgPool, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

/// A stored key: `wrapped` is `None` once erased.
pub(super) struct KeyRow {
    pub key_id: Uuid,
    pub wrapped: Option<Vec<u8>>,
}

pub(super) enum VaultDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// How long a vault statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subject_keys (
    subject     TEXT PRIMARY KEY,          -- person:<uuid> | child:<uuid> | post:<uuid> | media:<uuid>
    key_id      BLOB NOT NULL,
    wrapped_key BLOB,                      -- nonce || data key sealed with the master key; NULL once erased
    created_at  INTEGER NOT NULL,
    erased_at   INTEGER
);
CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
-- Append-only: one row per erasure, written in the transaction that destroys the key, so that
-- every process with the vault open can evict exactly the erased subjects from its key cache.
CREATE TABLE IF NOT EXISTS vault_erasures (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    subject   TEXT NOT NULL,
    erased_at INTEGER NOT NULL
);";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subject_keys (
    subject     TEXT PRIMARY KEY,
    key_id      UUID NOT NULL,
    wrapped_key BYTEA,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    erased_at   TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS vault_erasures (
    id        BIGSERIAL PRIMARY KEY,
    subject   TEXT NOT NULL,
    erased_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// The channel on which an erasure is announced to every vault on the database (payload
/// `<erasure id> <subject>`); PostgreSQL delivers it when the erasing transaction commits.
pub(super) const ERASURE_CHANNEL: &str = "kring_vault_erasures";

/// Held by every erasing transaction on PostgreSQL, so that erasure ids become visible in the
/// order they were drawn: a reader that has seen erasure `n` has seen every erasure below it.
const ERASURE_LOCK: i64 = 74_726_106;

/// Keys one `INSERT` stores on SQLite (4 parameters each, well under its limit of 32,766).
const KEYS_PER_INSERT: usize = 500;

impl VaultDb {
    pub async fn sqlite(path: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // Deleted content is overwritten with zeros, so an erased key leaves no trace in
            // free pages.
            .pragma("secure_delete", "ON");
        Ok(Self::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await?,
        ))
    }

    pub async fn postgres(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self::Postgres(
            PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(crate::postgres::link::ACQUIRE_TIMEOUT)
                .connect_with(
                    crate::postgres::link::connect_options(url)?.application_name("kring-vault"),
                )
                .await?,
        ))
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }

    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::raw_sql(SQLITE_SCHEMA).execute(pool).await.map(drop),
            Self::Postgres(pool) => {
                // Several processes may start at once: serialise the CREATEs.
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(74726105)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(POSTGRES_SCHEMA).execute(&mut *tx).await?;
                tx.commit().await
            }
        }
    }

    pub async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar("SELECT value FROM vault_meta WHERE name = ?")
                    .bind(name)
                    .fetch_optional(pool)
                    .await
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT value FROM vault_meta WHERE name = $1")
                    .bind(name)
                    .fetch_optional(pool)
                    .await
            }
        }
    }

    pub async fn set_meta_if_absent(&self, name: &str, value: &[u8]) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::query(
                "INSERT INTO vault_meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(value)
            .execute(pool)
            .await
            .map(drop),
            Self::Postgres(pool) => sqlx::query(
                "INSERT INTO vault_meta (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(value)
            .execute(pool)
            .await
            .map(drop),
        }
    }

    pub async fn key(&self, subject: &str) -> Result<Option<KeyRow>, sqlx::Error> {
        let row = match self {
            Self::Sqlite(pool) => {
                sqlx::query("SELECT key_id, wrapped_key FROM subject_keys WHERE subject = ?")
                    .bind(subject)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| {
                        Ok::<_, sqlx::Error>(KeyRow {
                            key_id: r.try_get(0)?,
                            wrapped: r.try_get(1)?,
                        })
                    })
            }
            Self::Postgres(pool) => {
                sqlx::query("SELECT key_id, wrapped_key FROM subject_keys WHERE subject = $1")
                    .bind(subject)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| {
                        Ok::<_, sqlx::Error>(KeyRow {
                            key_id: r.try_get(0)?,
                            wrapped: r.try_get(1)?,
                        })
                    })
            }
        };
        row.transpose()
    }

    pub async fn insert_key_if_absent(
        &self,
        subject: &str,
        key_id: Uuid,
        wrapped: &[u8],
    ) -> Result<(), sqlx::Error> {
        let now = chrono::Utc::now();
        match self {
            Self::Sqlite(pool) => sqlx::query(
                "INSERT INTO subject_keys (subject, key_id, wrapped_key, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(subject)
            .bind(key_id)
            .bind(wrapped)
            .bind(now.timestamp_micros())
            .execute(pool)
            .await
            .map(drop),
            Self::Postgres(pool) => sqlx::query(
                "INSERT INTO subject_keys (subject, key_id, wrapped_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(subject)
            .bind(key_id)
            .bind(wrapped)
            .execute(pool)
            .await
            .map(drop),
        }
    }

    /// The stored rows of `subjects`, by subject name: one query.
    pub async fn keys(
        &self,
        subjects: &[String],
    ) -> Result<std::collections::HashMap<String, KeyRow>, sqlx::Error> {
        let mut out = std::collections::HashMap::with_capacity(subjects.len());
        if subjects.is_empty() {
            return Ok(out);
        }
        let rows = match self {
            Self::Sqlite(pool) => {
                let names = serde_json::Value::from(subjects.to_vec()).to_string();
                sqlx::query(
                    "SELECT subject, key_id, wrapped_key FROM subject_keys
                     WHERE subject IN (SELECT value FROM json_each(?))",
                )
                .bind(names)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<Vec<(String, Uuid, Option<Vec<u8>>)>, sqlx::Error>>()?
            }
            Self::Postgres(pool) => sqlx::query(
                "SELECT subject, key_id, wrapped_key FROM subject_keys WHERE subject = ANY($1)",
            )
            .bind(subjects)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<(String, Uuid, Option<Vec<u8>>)>, sqlx::Error>>()?,
        };
        for (subject, key_id, wrapped) in rows {
            out.insert(subject, KeyRow { key_id, wrapped });
        }
        Ok(out)
    }

    /// Stores new keys, each only where its subject has no row yet (a racing process may have
    /// created one, or erased the subject): one transaction, so one durable write for all.
    pub async fn insert_keys_if_absent(
        &self,
        keys: &[(String, Uuid, Vec<u8>)],
    ) -> Result<(), sqlx::Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        match self {
            Self::Sqlite(pool) => {
                // Multi-row statements: each statement is a hand-off to the connection's thread
                // and back, so one per key made a batch's keys hundreds of them.
                let insert = |chunk: &[(String, Uuid, Vec<u8>)]| {
                    let mut sql = String::from(
                        "INSERT INTO subject_keys (subject, key_id, wrapped_key, created_at) VALUES ",
                    );
                    sql.push_str(&vec!["(?, ?, ?, ?)"; chunk.len()].join(", "));
                    sql.push_str(" ON CONFLICT DO NOTHING");
                    sql
                };
                let mut conn = pool.acquire().await?;
                let several = keys.len() > KEYS_PER_INSERT;
                if several {
                    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                }
                let result = async {
                    for chunk in keys.chunks(KEYS_PER_INSERT) {
                        let sql = insert(chunk);
                        let mut query = sqlx::query(&sql);
                        for (subject, key_id, wrapped) in chunk {
                            query = query
                                .bind(subject)
                                .bind(key_id)
                                .bind(wrapped)
                                .bind(now.timestamp_micros());
                        }
                        query.execute(&mut *conn).await?;
                    }
                    Ok::<_, sqlx::Error>(())
                }
                .await;
                if several {
                    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                    sqlx::query(end).execute(&mut *conn).await?;
                }
                result
            }
            Self::Postgres(pool) => {
                let (subjects, rest): (Vec<&str>, Vec<(Uuid, &[u8])>) = keys
                    .iter()
                    .map(|(s, id, w)| (s.as_str(), (*id, w.as_slice())))
                    .unzip();
                let (ids, wrapped): (Vec<Uuid>, Vec<&[u8]>) = rest.into_iter().unzip();
                sqlx::query(
                    "INSERT INTO subject_keys (subject, key_id, wrapped_key)
                     SELECT * FROM unnest($1::text[], $2::uuid[], $3::bytea[])
                     ON CONFLICT DO NOTHING",
                )
                .bind(subjects)
                .bind(ids)
                .bind(wrapped)
                .execute(pool)
                .await
                .map(drop)
            }
        }
    }

    /// Destroys the keys (or records never-keyed subjects as erased), then makes sure no copy
    /// survives on disk: on SQLite the vault's WAL is checkpointed into the file (where
    /// `secure_delete` zeroed the old rows) and truncated; on PostgreSQL the table is vacuumed.
    /// The vault has a database of its own, so none of this holds up appends to the event log.
    pub async fn erase(&self, subjects: &[String]) -> Result<(), VaultError> {
        let now = chrono::Utc::now();
        match self {
            Self::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for subject in subjects {
                    sqlx::query(
                        "INSERT INTO subject_keys (subject, key_id, wrapped_key, created_at, erased_at) VALUES (?, ?, NULL, ?, ?)
                         ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, erased_at = COALESCE(erased_at, excluded.erased_at)",
                    )
                    .bind(subject)
                    .bind(Uuid::nil())
                    .bind(now.timestamp_micros())
                    .bind(now.timestamp_micros())
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("INSERT INTO vault_erasures (subject, erased_at) VALUES (?, ?)")
                        .bind(subject)
                        .bind(now.timestamp_micros())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                truncate_wal(&mut conn, subjects).await
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(ERASURE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                for subject in subjects {
                    sqlx::query(
                        "INSERT INTO subject_keys (subject, key_id, wrapped_key, erased_at) VALUES ($1, $2, NULL, now())
                         ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, erased_at = COALESCE(subject_keys.erased_at, now())",
                    )
                    .bind(subject)
                    .bind(Uuid::nil())
                    .execute(&mut *tx)
                    .await?;
                    // Announced at commit, to every listening vault, in commit order.
                    sqlx::query(
                        "WITH e AS (INSERT INTO vault_erasures (subject) VALUES ($1) RETURNING id, subject)
                         SELECT pg_notify($2, e.id::text || ' ' || e.subject) FROM e",
                    )
                    .bind(subject)
                    .bind(ERASURE_CHANNEL)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                // The old row version stays in the heap until vacuumed: vacuum now. Appends do
                // not wait for it: they write other tables.
                sqlx::query("VACUUM subject_keys").execute(pool).await?;
                Ok(())
            }
        }
    }
}

/// How long one checkpoint attempt waits for the vault's readers, and how many attempts.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(1500);
const CHECKPOINT_ATTEMPTS: usize = 3;

/// Copies the WAL back into the file and truncates it, so the erased rows' old page images do
/// not linger in the WAL. A reader with an older snapshot holds the checkpoint back: it is tried
/// a few times, then reported as [`VaultError::SecureDeletion`]; never taken as done.
async fn truncate_wal(conn: &mut SqliteConnection, subjects: &[String]) -> Result<(), VaultError> {
    let wait = format!("PRAGMA busy_timeout = {}", CHECKPOINT_WAIT.as_millis());
    sqlx::query(&wait).execute(&mut *conn).await?;
    let mut outcome = Ok(());
    for attempt in 0..CHECKPOINT_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        outcome = match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(row) => {
                let busy: i64 = row.try_get(0)?;
                if busy == 0 {
                    Ok(())
                } else {
                    Err("a reader of the vault held the checkpoint back".to_owned())
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if outcome.is_ok() {
            break;
        }
    }
    let normal = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
    sqlx::query(&normal).execute(&mut *conn).await?;
    outcome.map_err(|reason| VaultError::SecureDeletion {
        subjects: subjects.join(", "),
        reason,
    })
}

/// Moves the vault's tables out of the SQLite file `legacy` (where older installations kept
/// them, beside the event log) into `path`: rows are copied (an erasure in either place wins),
/// then the tables are dropped from `legacy` with `secure_delete` on and its WAL truncated.
/// Idempotent, and safe to repeat after a crash at any step. Answers how many keys were moved.
pub async fn move_sqlite_tables(legacy: &Path, path: &Path) -> Result<u64, VaultError> {
    if !legacy.is_file() || legacy == path {
        return Ok(0);
    }
    let options = SqliteConnectOptions::new()
        .filename(legacy)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("secure_delete", "ON");
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let has_vault: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'subject_keys'",
    )
    .fetch_optional(&mut conn)
    .await?;
    if has_vault.is_none() {
        conn.close().await?;
        return Ok(0);
    }
    // Create the new file with its own settings first, so it is a WAL database like every
    // vault opened by [`VaultDb::sqlite`].
    let vault = VaultDb::sqlite(path).await?;
    vault.migrate().await?;
    vault.close().await;
    sqlx::query("ATTACH DATABASE ? AS vault")
        .bind(path.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await?;
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    let moved = sqlx::query(
        "INSERT INTO vault.subject_keys (subject, key_id, wrapped_key, created_at, erased_at)
         SELECT subject, key_id, wrapped_key, created_at, erased_at FROM main.subject_keys WHERE true
         ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL,
             erased_at = COALESCE(vault.subject_keys.erased_at, excluded.erased_at)
         WHERE excluded.wrapped_key IS NULL",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let has_meta: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'vault_meta'",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if has_meta.is_some() {
        sqlx::query(
            "INSERT INTO vault.vault_meta (name, value) SELECT name, value FROM main.vault_meta WHERE true
             ON CONFLICT DO NOTHING",
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    // The new file must hold the keys durably before the old copies are destroyed.
    sqlx::query("PRAGMA vault.wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    sqlx::query("DETACH DATABASE vault")
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS subject_keys; DROP TABLE IF EXISTS vault_meta; DROP TABLE IF EXISTS vault_erasures;",
    )
        .execute(&mut conn)
        .await?;
    let legacy_name = [format!("the old vault in {}", legacy.display())];
    truncate_wal(&mut conn, &legacy_name).await?;
    conn.close().await?;
    Ok(moved)
}

impl VaultDb {
    /// The newest erasure id (0 when there is none).
    pub async fn last_erasure(&self) -> Result<i64, sqlx::Error> {
        match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM vault_erasures")
                    .fetch_one(pool)
                    .await
            }
            Self::Postgres(pool) => {
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0)::BIGINT FROM vault_erasures")
                    .fetch_one(pool)
                    .await
            }
        }
    }
}
