//! Where the vault keeps its keys: a table beside the event log (SQLite or PostgreSQL).

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
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

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subject_keys (
    subject     TEXT PRIMARY KEY,          -- person:<uuid> | child:<uuid> | post:<uuid> | media:<uuid>
    key_id      BLOB NOT NULL,
    wrapped_key BLOB,                      -- nonce || data key sealed with the master key; NULL once erased
    created_at  INTEGER NOT NULL,
    erased_at   INTEGER
);
CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subject_keys (
    subject     TEXT PRIMARY KEY,
    key_id      UUID NOT NULL,
    wrapped_key BYTEA,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    erased_at   TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS vault_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL);";

impl VaultDb {
    pub async fn sqlite(path: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
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
            PgPoolOptions::new().max_connections(4).connect(url).await?,
        ))
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

    /// Destroys the key (or records a never-keyed subject as erased), then makes sure no copy
    /// survives on disk.
    pub async fn erase(&self, subject: &str) -> Result<(), sqlx::Error> {
        let now = chrono::Utc::now();
        match self {
            Self::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO subject_keys (subject, key_id, wrapped_key, created_at, erased_at) VALUES (?, ?, NULL, ?, ?)
                     ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, erased_at = COALESCE(erased_at, excluded.erased_at)",
                )
                .bind(subject)
                .bind(Uuid::nil())
                .bind(now.timestamp_micros())
                .bind(now.timestamp_micros())
                .execute(pool)
                .await?;
                // Copy the WAL back into the file (secure_delete zeroes the old row there) and
                // truncate it, so the old page image does not linger in the WAL. A busy reader
                // can hold the checkpoint back; try a few times.
                for _ in 0..20 {
                    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .fetch_one(pool)
                        .await?;
                    let busy: i64 = row.try_get(0)?;
                    if busy == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(())
            }
            Self::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO subject_keys (subject, key_id, wrapped_key, erased_at) VALUES ($1, $2, NULL, now())
                     ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, erased_at = COALESCE(subject_keys.erased_at, now())",
                )
                .bind(subject)
                .bind(Uuid::nil())
                .execute(pool)
                .await?;
                // The old row version stays in the heap until vacuumed: vacuum now.
                sqlx::query("VACUUM subject_keys")
                    .execute(pool)
                    .await
                    .map(drop)
            }
        }
    }
}
