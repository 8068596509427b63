//! Where the sealed bytes of media items are kept: the media store port and its adapters.
//!
//! A store sees only ciphertext. [`crate::media`] seals every item with its own key from the key
//! vault, chunk by chunk, before a byte leaves the process, and opens it as it is read back; a
//! store keeps, per media item, one *object*: a small *head* (the item's metadata as
//! [`crate::media`] writes it: no personal data, no key) and a *body* (the sealed chunks). An
//! object is written from a stream and read as a stream or by byte range, so no item is ever
//! held whole in memory.
//!
//! | `KRING_MEDIA_URL`        | adapter                 | where                                          |
//! |--------------------------|-------------------------|------------------------------------------------|
//! | unset (the default)      | [`local::LocalStore`]   | `<data dir>/media/<id>.kmedia` (head ‖ body)   |
//! | `postgres`, `postgres://…` | [`postgres::PgMediaStore`] | tables `media_objects`, `media_parts`, `media_claims` |
//! | `s3://bucket/prefix`     | [`s3::S3MediaStore`]    | objects `<prefix>/<id>.body`, `.head`, `.post` |
//!
//! The head is written last, and an object without its head is never served: a crash (or a
//! failure) between writing the body and writing the head leaves an *orphan*, which
//! [`MediaStore::sweep_orphans`] deletes once it is older than an upload can take.
//!
//! Attaching an upload to a post is claimed in the store too ([`MediaStore::claim`]): once,
//! exclusively, so that one upload ends up in at most one post even when several API instances
//! share the store.

pub mod local;
pub mod postgres;
pub mod s3;
pub mod sweep;

use crate::error::{ApiError, ApiResult};
use async_trait::async_trait;
use axum::body::Bytes;
use futures::stream::BoxStream;
use kring_domain::{MediaId, PostId};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable (and `serve --media-url`) that chooses the media store.
pub const MEDIA_URL_ENV: &str = "KRING_MEDIA_URL";

/// The largest head a store keeps.
pub const MAX_HEAD: usize = 4096;

/// Bytes read back from a store, in pieces of the store's choosing.
pub type Chunks = BoxStream<'static, ApiResult<Bytes>>;

/// What an upload hands to [`MediaStore::put`]: sealed chunks of the body, in order, and then
/// exactly once the head, of the length announced to `put`.
#[derive(Debug)]
pub enum Piece {
    /// The next ciphertext of the body.
    Chunk(Bytes),
    /// The head, known only once the body has ended; it comes last.
    Head(Bytes),
}

/// The pieces of one upload.
pub type Pieces<'a> = BoxStream<'a, ApiResult<Piece>>;

/// A stored object, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The head.
    pub head: Bytes,
    /// The body's length in bytes.
    pub body_len: u64,
}

/// One object (or orphan) of a store's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The media item.
    pub media_id: MediaId,
    /// Whether it is complete (has its head); an incomplete one is an orphan or being written.
    pub complete: bool,
    /// Whether an attachment to a post has claimed it.
    pub claimed: bool,
    /// How long ago it was written.
    pub age: Duration,
}

/// Who holds the claim on attaching an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This request now holds it.
    Taken,
    /// `post` claimed it before; `age` ago.
    Held {
        /// The post that claimed it.
        post: PostId,
        /// How old the claim is.
        age: Duration,
    },
}

/// Where media objects are kept. Every method is idempotent where that makes sense; none
/// decrypts anything.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// The adapter's name (`local`, `postgres`, `s3`), for logs and figures.
    fn kind(&self) -> &'static str;

    /// Stores the object of `media_id` from `pieces`: body chunks, then its head of `head_len`
    /// bytes (at most [`MAX_HEAD`]). The object becomes visible only once complete, head
    /// included; a stream that fails (its error is returned as it is), a refusal or a dropped
    /// future leaves no visible object (at worst an orphan for [`MediaStore::sweep_orphans`]).
    /// Answers the body's length.
    ///
    /// # Errors
    /// The stream's own error; `507` when the store is full; an object that exists already;
    /// the store failing.
    async fn put(&self, media_id: MediaId, head_len: usize, pieces: Pieces<'_>) -> ApiResult<u64>;

    /// The head and body length of the complete object of `media_id`; `None` when there is none.
    ///
    /// # Errors
    /// The store failing; an object that is not one of ours.
    async fn stat(&self, media_id: MediaId) -> ApiResult<Option<Stat>>;

    /// The bytes `range` of the body of `media_id`, as a stream; `None` when there is no
    /// complete object. Only the stored bytes of the range are read.
    ///
    /// # Errors
    /// The store failing; a range beyond the body.
    async fn get(&self, media_id: MediaId, range: Range<u64>) -> ApiResult<Option<Chunks>>;

    /// Whether a complete object of `media_id` exists.
    ///
    /// # Errors
    /// The store failing.
    async fn exists(&self, media_id: MediaId) -> ApiResult<bool> {
        Ok(self.stat(media_id).await?.is_some())
    }

    /// Deletes the object of `media_id` (its head first: it is never served again), its claim,
    /// and any orphan of it. Idempotent.
    ///
    /// # Errors
    /// The store failing.
    async fn delete(&self, media_id: MediaId) -> ApiResult<()>;

    /// Every object and orphan in the store.
    ///
    /// # Errors
    /// The store failing.
    async fn list(&self) -> ApiResult<Vec<Listed>>;

    /// Deletes what incomplete uploads left behind (bodies without a head, temporary files)
    /// once older than `older_than`, and answers whose they were.
    ///
    /// # Errors
    /// The store failing.
    async fn sweep_orphans(&self, older_than: Duration) -> ApiResult<Vec<MediaId>>;

    /// Claims `media_id` for `post`: [`Claim::Taken`] when this call created the claim, else
    /// who holds it. Exclusive across processes sharing the store.
    ///
    /// # Errors
    /// The store failing.
    async fn claim(&self, media_id: MediaId, post: PostId) -> ApiResult<Claim>;

    /// Drops the claim of `post` on `media_id`; a claim held by another post stays.
    ///
    /// # Errors
    /// The store failing.
    async fn release(&self, media_id: MediaId, post: PostId) -> ApiResult<()>;
}

/// A shared media store.
pub type DynMediaStore = Arc<dyn MediaStore>;

/// Which store `KRING_MEDIA_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaUrl {
    /// Files in this directory (the default: `<data dir>/media`).
    Local(PathBuf),
    /// PostgreSQL: `None` for the deployment's own database (`KRING_DATABASE_URL`).
    Postgres(Option<String>),
    /// S3-compatible object storage: `s3://bucket[/prefix]`.
    S3(String),
}

impl MediaUrl {
    /// Reads a `KRING_MEDIA_URL` value: absent or empty is the local directory `default_dir`;
    /// `file:///path` another directory; `postgres` (or `postgresql`) the deployment's
    /// database; `postgres://…` another one; `s3://bucket/prefix` object storage.
    ///
    /// # Errors
    /// A message for anything else.
    pub fn parse(value: Option<&str>, default_dir: PathBuf) -> Result<Self, String> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Self::Local(default_dir));
        };
        if value == "postgres" || value == "postgresql" {
            return Ok(Self::Postgres(None));
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Self::Postgres(Some(value.to_owned())));
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            if rest.split('/').next().unwrap_or_default().is_empty() {
                return Err(format!(
                    "{MEDIA_URL_ENV}={value}: name a bucket, s3://bucket/prefix"
                ));
            }
            return Ok(Self::S3(value.to_owned()));
        }
        if let Some(path) = value.strip_prefix("file://") {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if value == "local" {
            return Ok(Self::Local(default_dir));
        }
        Err(format!(
            "{MEDIA_URL_ENV}={value} is not a media store: leave it unset (files in the data \
             directory), or give `postgres`, `postgres://…`, `s3://bucket/prefix` or `file:///dir`"
        ))
    }

    /// Opens the store: `database_url` is the deployment's PostgreSQL database, for
    /// [`MediaUrl::Postgres`]`(None)`.
    ///
    /// # Errors
    /// A message when the store cannot be reached or set up.
    pub async fn open(&self, database_url: Option<&str>) -> Result<DynMediaStore, String> {
        Ok(match self {
            Self::Local(dir) => Arc::new(local::LocalStore::new(dir.clone())),
            Self::Postgres(url) => {
                let url = url.as_deref().or(database_url).ok_or_else(|| {
                    format!(
                        "{MEDIA_URL_ENV}=postgres keeps media in the deployment's PostgreSQL \
                         database, but KRING_DATABASE_URL is not set"
                    )
                })?;
                Arc::new(
                    postgres::PgMediaStore::connect(url)
                        .await
                        .map_err(|e| format!("media store in PostgreSQL: {}", e.explain()))?,
                )
            }
            Self::S3(url) => Arc::new(
                s3::S3MediaStore::from_env(url)
                    .map_err(|e| format!("media store at {url}: {}", e.explain()))?,
            ),
        })
    }
}

/// The head a store is handed must have the announced length.
pub(crate) fn check_head(head: &[u8], head_len: usize) -> ApiResult<()> {
    if head.len() != head_len || head_len > MAX_HEAD {
        return Err(ApiError::internal(format!(
            "a media head of {} bytes where {head_len} were announced",
            head.len()
        )));
    }
    Ok(())
}

/// The stream ended without the head: the upload is incomplete.
pub(crate) fn no_head() -> ApiError {
    ApiError::internal("a media upload ended without its head")
}

/// A range beyond a body of `len` bytes.
pub(crate) fn check_range(range: &Range<u64>, len: u64) -> ApiResult<()> {
    if range.start > range.end || range.end > len {
        return Err(ApiError::internal(format!(
            "media range {}..{} is beyond the body's {len} bytes",
            range.start, range.end
        )));
    }
    Ok(())
}
