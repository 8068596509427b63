//! Media objects in PostgreSQL, in the database the deployment already uses (or another one),
//! in tables of their own:
//!
//! - `media_parts (media_id, upload, seq, data, written_at)`: the body, in parts of
//!   [`PART_SIZE`] bytes (the last one shorter), one row each, written one statement at a time as
//!   the upload arrives (no transaction is held open for an upload's length). `upload` tells
//!   one attempt's parts from another's. `data` is stored `EXTERNAL`: ciphertext does not
//!   compress, so PostgreSQL does not try.
//! - `media_objects (media_id, upload, head, body_len, part_size, stored_at)`: the head, written
//!   last, naming the upload whose parts are the body. Parts without it are an orphan.
//! - `media_claims (media_id, post_id, claimed_at)`: the claim of the post it was attached to
//!   (its primary key makes it exclusive).
//!
//! A backup of the database (`kring-api backup`, `pg_dump`) holds the media too.

use super::{
    check_head, check_range, no_head, Chunks, Claim, Listed, MediaStore, Piece, Pieces, Stat,
    MAX_HEAD,
};
use crate::error::{ApiError, ApiResult};
use async_trait::async_trait;
use axum::body::Bytes;
use bytes::BytesMut;
use futures::StreamExt;
use kring_domain::{MediaId, PostId};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
use std::ops::Range;
use std::time::Duration;
use uuid::Uuid;

/// Bytes of ciphertext per row of `media_parts` (the last part of a body is shorter).
pub const PART_SIZE: usize = 1024 * 1024;

/// Connections the media store keeps (besides the read models' pool).
const CONNECTIONS: u32 = 8;

/// Media objects in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgMediaStore {
    pool: PgPool,
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::internal(format!("media store (PostgreSQL): {e}"))
}

fn age(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default()
}

impl PgMediaStore {
    /// Connects to the database at `url` and creates the tables when missing.
    ///
    /// # Errors
    /// The database cannot be reached or the tables cannot be created.
    pub async fn connect(url: &str) -> ApiResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect(url)
            .await
            .map_err(db)?;
        Self::on(pool).await
    }

    /// The store on an open pool; creates the tables when missing.
    ///
    /// # Errors
    /// The tables cannot be created.
    pub async fn on(pool: PgPool) -> ApiResult<Self> {
        let mut tx = pool.begin().await.map_err(db)?;
        // One creator at a time (several instances may start together).
        sqlx::query("SELECT pg_advisory_xact_lock(7316385001)")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for statement in [
            "CREATE TABLE IF NOT EXISTS media_parts (
                media_id UUID NOT NULL, upload UUID NOT NULL, seq INTEGER NOT NULL,
                data BYTEA NOT NULL, written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (media_id, upload, seq))",
            "ALTER TABLE media_parts ALTER COLUMN data SET STORAGE EXTERNAL",
            "CREATE TABLE IF NOT EXISTS media_objects (
                media_id UUID PRIMARY KEY, upload UUID NOT NULL, head BYTEA NOT NULL,
                body_len BIGINT NOT NULL, part_size INTEGER NOT NULL,
                stored_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE TABLE IF NOT EXISTS media_claims (
                media_id UUID PRIMARY KEY, post_id UUID NOT NULL,
                claimed_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        ] {
            sqlx::query(statement).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(Self { pool })
    }

    async fn insert_part(
        &self,
        media_id: MediaId,
        upload: Uuid,
        seq: i32,
        data: &[u8],
    ) -> ApiResult<()> {
        sqlx::query(
            "INSERT INTO media_parts (media_id, upload, seq, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(media_id.as_uuid())
        .bind(upload)
        .bind(seq)
        .bind(data)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn write(
        &self,
        media_id: MediaId,
        upload: Uuid,
        head_len: usize,
        mut pieces: Pieces<'_>,
    ) -> ApiResult<u64> {
        let mut part = BytesMut::with_capacity(PART_SIZE);
        let mut seq = 0_i32;
        let mut body_len = 0_u64;
        let mut head = None;
        while let Some(piece) = pieces.next().await {
            match piece? {
                Piece::Chunk(mut bytes) if head.is_none() => {
                    body_len += bytes.len() as u64;
                    while !bytes.is_empty() {
                        let n = bytes.len().min(PART_SIZE - part.len());
                        part.extend_from_slice(&bytes.split_to(n));
                        if part.len() == PART_SIZE {
                            self.insert_part(media_id, upload, seq, &part).await?;
                            part.clear();
                            seq += 1;
                        }
                    }
                }
                Piece::Head(bytes) if head.is_none() => head = Some(bytes),
                _ => return Err(ApiError::internal("media pieces after the head")),
            }
        }
        let head = head.ok_or_else(no_head)?;
        check_head(&head, head_len)?;
        if !part.is_empty() {
            self.insert_part(media_id, upload, seq, &part).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO media_objects (media_id, upload, head, body_len, part_size) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (media_id) DO NOTHING",
        )
        .bind(media_id.as_uuid())
        .bind(upload)
        .bind(&head[..])
        .bind(i64::try_from(body_len).map_err(ApiError::internal)?)
        .bind(i32::try_from(PART_SIZE).map_err(ApiError::internal)?)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            return Err(ApiError::internal(format!(
                "media object {media_id} exists already"
            )));
        }
        Ok(body_len)
    }
}

#[async_trait]
impl MediaStore for PgMediaStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn put(&self, media_id: MediaId, head_len: usize, pieces: Pieces<'_>) -> ApiResult<u64> {
        if head_len > MAX_HEAD {
            return Err(ApiError::validation("the content type is too long"));
        }
        let upload = Uuid::now_v7();
        let written = self.write(media_id, upload, head_len, pieces).await;
        if written.is_err() {
            // Best effort: what is left is an orphan for the sweep.
            let removed =
                sqlx::query("DELETE FROM media_parts WHERE media_id = $1 AND upload = $2")
                    .bind(media_id.as_uuid())
                    .bind(upload)
                    .execute(&self.pool)
                    .await;
            if let Err(e) = removed {
                tracing::warn!(%media_id, error = %e, "an unfinished media upload's parts could not be removed");
            }
        }
        written
    }

    async fn stat(&self, media_id: MediaId) -> ApiResult<Option<Stat>> {
        let row = sqlx::query("SELECT head, body_len FROM media_objects WHERE media_id = $1")
            .bind(media_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|row| {
            Ok(Stat {
                head: Bytes::from(row.try_get::<Vec<u8>, _>("head").map_err(db)?),
                body_len: u64::try_from(row.try_get::<i64, _>("body_len").map_err(db)?)
                    .map_err(ApiError::internal)?,
            })
        })
        .transpose()
    }

    async fn get(&self, media_id: MediaId, range: Range<u64>) -> ApiResult<Option<Chunks>> {
        let Some(row) = sqlx::query(
            "SELECT upload, body_len, part_size FROM media_objects WHERE media_id = $1",
        )
        .bind(media_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let upload: Uuid = row.try_get("upload").map_err(db)?;
        let body_len = u64::try_from(row.try_get::<i64, _>("body_len").map_err(db)?)
            .map_err(ApiError::internal)?;
        let part = u64::try_from(row.try_get::<i32, _>("part_size").map_err(db)?)
            .map_err(ApiError::internal)?
            .max(1);
        check_range(&range, body_len)?;
        let pool = self.pool.clone();
        // One part at a time, each its own query: no connection is held while the client reads.
        let chunks = futures::stream::try_unfold(range, move |range| {
            let pool = pool.clone();
            async move {
                if range.start >= range.end {
                    return Ok(None);
                }
                let seq = range.start / part;
                let data: Vec<u8> = sqlx::query_scalar(
                    "SELECT data FROM media_parts WHERE media_id = $1 AND upload = $2 AND seq = $3",
                )
                .bind(media_id.as_uuid())
                .bind(upload)
                .bind(i32::try_from(seq).map_err(ApiError::internal)?)
                .fetch_optional(&pool)
                .await
                .map_err(db)?
                .ok_or_else(|| {
                    ApiError::internal(format!("media object {media_id} lacks part {seq}"))
                })?;
                let from = usize::try_from(range.start - seq * part).map_err(ApiError::internal)?;
                let to = usize::try_from(range.end.min((seq + 1) * part) - seq * part)
                    .map_err(ApiError::internal)?;
                if to > data.len() || from > to {
                    return Err(ApiError::internal(format!(
                        "media object {media_id}: part {seq} is shorter than its body says"
                    )));
                }
                let next = (seq + 1) * part;
                Ok(Some((Bytes::from(data).slice(from..to), next..range.end)))
            }
        });
        Ok(Some(Box::pin(chunks)))
    }

    async fn delete(&self, media_id: MediaId) -> ApiResult<()> {
        // The head first: from then on it is never served, whatever happens next.
        for statement in [
            "DELETE FROM media_objects WHERE media_id = $1",
            "DELETE FROM media_parts WHERE media_id = $1",
            "DELETE FROM media_claims WHERE media_id = $1",
        ] {
            sqlx::query(statement)
                .bind(media_id.as_uuid())
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn list(&self) -> ApiResult<Vec<Listed>> {
        let rows = sqlx::query(
            "SELECT o.media_id, TRUE AS complete, \
                    EXISTS (SELECT 1 FROM media_claims c WHERE c.media_id = o.media_id) AS claimed, \
                    EXTRACT(EPOCH FROM now() - o.stored_at)::float8 AS age \
             FROM media_objects o \
             UNION ALL \
             SELECT p.media_id, FALSE, \
                    EXISTS (SELECT 1 FROM media_claims c WHERE c.media_id = p.media_id), \
                    EXTRACT(EPOCH FROM now() - max(p.written_at))::float8 \
             FROM media_parts p \
             WHERE NOT EXISTS (SELECT 1 FROM media_objects o \
                               WHERE o.media_id = p.media_id AND o.upload = p.upload) \
             GROUP BY p.media_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|row| {
                Ok(Listed {
                    media_id: MediaId::from_uuid(row.try_get("media_id").map_err(db)?),
                    complete: row.try_get("complete").map_err(db)?,
                    claimed: row.try_get("claimed").map_err(db)?,
                    age: age(row.try_get("age").map_err(db)?),
                })
            })
            .collect()
    }

    async fn sweep_orphans(&self, older_than: Duration) -> ApiResult<Vec<MediaId>> {
        // The parts of an upload without its head whose newest part is older than `older_than`.
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "WITH orphans AS ( \
                 SELECT p.media_id, p.upload FROM media_parts p \
                 WHERE NOT EXISTS (SELECT 1 FROM media_objects o \
                                   WHERE o.media_id = p.media_id AND o.upload = p.upload) \
                 GROUP BY p.media_id, p.upload \
                 HAVING max(p.written_at) <= now() - make_interval(secs => $1)) \
             DELETE FROM media_parts p USING orphans \
             WHERE p.media_id = orphans.media_id AND p.upload = orphans.upload \
             RETURNING p.media_id",
        )
        .bind(older_than.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut ids: Vec<MediaId> = ids.into_iter().map(MediaId::from_uuid).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn claim(&self, media_id: MediaId, post: PostId) -> ApiResult<Claim> {
        for _ in 0..3 {
            let taken = sqlx::query(
                "INSERT INTO media_claims (media_id, post_id) VALUES ($1, $2) \
                 ON CONFLICT (media_id) DO NOTHING",
            )
            .bind(media_id.as_uuid())
            .bind(post.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
            if taken == 1 {
                return Ok(Claim::Taken);
            }
            let held = sqlx::query(
                "SELECT post_id, EXTRACT(EPOCH FROM now() - claimed_at)::float8 AS age \
                 FROM media_claims WHERE media_id = $1",
            )
            .bind(media_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            // Released in between: try again.
            if let Some(row) = held {
                return Ok(Claim::Held {
                    post: PostId::from_uuid(row.try_get("post_id").map_err(db)?),
                    age: age(row.try_get("age").map_err(db)?),
                });
            }
        }
        Err(ApiError::internal(format!(
            "the claim on media {media_id} keeps changing"
        )))
    }

    async fn release(&self, media_id: MediaId, post: PostId) -> ApiResult<()> {
        sqlx::query("DELETE FROM media_claims WHERE media_id = $1 AND post_id = $2")
            .bind(media_id.as_uuid())
            .bind(post.as_uuid())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
