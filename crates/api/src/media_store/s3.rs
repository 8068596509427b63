//! Media objects in S3-compatible object storage, through the `object_store` crate.
//!
//! `KRING_MEDIA_URL=s3://bucket/prefix` keeps, per media item:
//!
//! - `<prefix>/<id>.body`: the body, written as a multipart upload of [`PART_SIZE`] parts (at
//!   most [`IN_FLIGHT`] of them in flight), so an upload is never held whole in memory. S3 takes
//!   no part under 5 MiB, so every upload holds whole parts while it fills and sends them; the
//!   parts held by all uploads of the process together stay within [`PARTS_IN_MEMORY`]: an
//!   upload that finds the budget spent waits (its client's bytes wait in the socket), so the
//!   memory of many large uploads at once is bounded by the budget, not by their number;
//! - `<prefix>/<id>.head`: the head and then the body's length (8 bytes, big endian), written
//!   once the body is complete. A body without a head is an orphan: never served, and deleted
//!   by [`S3MediaStore::sweep_orphans`];
//!   A download reads the body in ranged `GET`s of [`WINDOW`] bytes, one after the other, so
//!   that no request outlives the client's timeout however slowly it is read;
//! - `<prefix>/<id>.post`: the claim of the post it was attached to, created with a
//!   conditional put (`If-None-Match: *`), so that it is exclusive across instances.
//!
//! The endpoint, region and credentials come from the usual `AWS_*` environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, …). Requests are path-style (`endpoint/bucket/key`, what self-hosted
//! stores expect) unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`; plain `http://` endpoints need
//! `AWS_ALLOW_HTTP=true`.

use super::{
    check_head, check_range, no_head, Chunks, Claim, Listed, MediaStore, Piece, Pieces, Stat,
    MAX_HEAD,
};
use crate::error::{ApiError, ApiResult};
use async_trait::async_trait;
use axum::body::Bytes;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use kring_domain::{MediaId, PostId};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectStore, PutMode, PutOptions, PutPayload,
};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Bytes per part of a body's multipart upload (S3's smallest part but the last is 5 MiB).
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts of one upload sent at once.
pub const IN_FLIGHT: usize = 2;
/// Parts held in memory (filling or in flight) by all uploads of one store together.
pub const PARTS_IN_MEMORY: usize = 12;
/// Bytes asked for by one ranged `GET` of a download.
pub const WINDOW: usize = 8 * 1024 * 1024;

/// Media objects in a bucket, under a prefix.
#[derive(Debug, Clone)]
pub struct S3MediaStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// [`PARTS_IN_MEMORY`] permits, one per part held by an upload.
    parts: Arc<Semaphore>,
}

fn s3(e: object_store::Error) -> ApiError {
    ApiError::internal(format!("media store (S3): {e}"))
}

fn age_of(meta: &object_store::ObjectMeta) -> Duration {
    (chrono::Utc::now() - meta.last_modified)
        .to_std()
        .unwrap_or_default()
}

impl S3MediaStore {
    /// The store `url` (`s3://bucket/prefix`) names, configured from the `AWS_*` environment.
    ///
    /// # Errors
    /// A URL or configuration `object_store` refuses.
    pub fn from_env(url: &str) -> ApiResult<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| ApiError::internal(format!("{url} is not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(s3)?;
        Ok(Self::on(Arc::new(store), prefix))
    }

    /// The store on an `object_store` client, its objects under `prefix`.
    #[must_use]
    pub fn on(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            parts: Arc::new(Semaphore::new(PARTS_IN_MEMORY)),
        }
    }

    fn path(&self, media_id: MediaId, suffix: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(format!("{media_id}.{suffix}"))
        } else {
            Path::from(format!("{}/{media_id}.{suffix}", self.prefix))
        }
    }

    async fn read_small(
        &self,
        path: &Path,
    ) -> ApiResult<Option<(Bytes, object_store::ObjectMeta)>> {
        match self.store.get(path).await {
            Ok(got) => {
                let meta = got.meta.clone();
                let bytes = got.bytes().await.map_err(s3)?;
                Ok(Some((bytes, meta)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3(e)),
        }
    }

    async fn delete_path(&self, path: &Path) -> ApiResult<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3(e)),
        }
    }

    async fn write_body(&self, media_id: MediaId, pieces: Pieces<'_>) -> ApiResult<(u64, Bytes)> {
        let mut upload = self
            .store
            .put_multipart(&self.path(media_id, "body"))
            .await
            .map_err(s3)?;
        let mut sending = JoinSet::new();
        let written = match self.send_parts(&mut *upload, &mut sending, pieces).await {
            Ok(done) => {
                async {
                    while let Some(part) = sending.join_next().await {
                        part.map_err(ApiError::internal)?.map_err(s3)?;
                    }
                    Ok(done)
                }
                .await
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(done) => {
                upload.complete().await.map_err(s3)?;
                Ok(done)
            }
            Err(e) => {
                sending.abort_all();
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(%media_id, error = %abort, "an unfinished media upload could not be aborted");
                }
                Err(e)
            }
        }
    }

    /// Cuts the body of `pieces` into parts and sends them through `upload`, each holding a
    /// permit of the store's part budget from when it starts filling until it is sent; at most
    /// [`IN_FLIGHT`] of this upload's parts are sent at once. Returns the body's length and the
    /// head; parts may still be in flight in `sending`.
    async fn send_parts(
        &self,
        upload: &mut dyn MultipartUpload,
        sending: &mut JoinSet<object_store::Result<()>>,
        mut pieces: Pieces<'_>,
    ) -> ApiResult<(u64, Bytes)> {
        let mut body_len = 0_u64;
        let mut head = None;
        let mut part: Option<(BytesMut, OwnedSemaphorePermit)> = None;
        while let Some(piece) = pieces.next().await {
            match piece? {
                Piece::Chunk(mut bytes) if head.is_none() => {
                    body_len += bytes.len() as u64;
                    while !bytes.is_empty() {
                        if part.is_none() {
                            while sending.len() >= IN_FLIGHT {
                                if let Some(sent) = sending.join_next().await {
                                    sent.map_err(ApiError::internal)?.map_err(s3)?;
                                }
                            }
                            let permit = Arc::clone(&self.parts)
                                .acquire_owned()
                                .await
                                .map_err(ApiError::internal)?;
                            part = Some((BytesMut::with_capacity(PART_SIZE), permit));
                        }
                        let mut full = false;
                        if let Some((buf, _)) = &mut part {
                            let n = bytes.len().min(PART_SIZE - buf.len());
                            buf.extend_from_slice(&bytes.split_to(n));
                            full = buf.len() == PART_SIZE;
                        }
                        if full {
                            if let Some((buf, permit)) = part.take() {
                                send_part(upload, sending, buf, permit);
                            }
                        }
                    }
                }
                Piece::Head(bytes) if head.is_none() => head = Some(bytes),
                _ => return Err(ApiError::internal("media pieces after the head")),
            }
        }
        let head = head.ok_or_else(no_head)?;
        if let Some((buf, permit)) = part.take() {
            send_part(upload, sending, buf, permit);
        }
        Ok((body_len, head))
    }
}

/// Sends one part; its permit of the part budget is released when the part is sent (or fails).
fn send_part(
    upload: &mut dyn MultipartUpload,
    sending: &mut JoinSet<object_store::Result<()>>,
    part: BytesMut,
    permit: OwnedSemaphorePermit,
) {
    let put = upload.put_part(PutPayload::from(part.freeze()));
    sending.spawn(async move {
        let sent = put.await;
        drop(permit);
        sent
    });
}

#[async_trait]
impl MediaStore for S3MediaStore {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, media_id: MediaId, head_len: usize, pieces: Pieces<'_>) -> ApiResult<u64> {
        if head_len > MAX_HEAD {
            return Err(ApiError::validation("the content type is too long"));
        }
        let (body_len, head) = self.write_body(media_id, pieces).await?;
        check_head(&head, head_len)?;
        let mut record = head.to_vec();
        record.extend_from_slice(&body_len.to_be_bytes());
        let created = self
            .store
            .put_opts(
                &self.path(media_id, "head"),
                PutPayload::from(record),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match created {
            Ok(_) => Ok(body_len),
            Err(e) => {
                // The body stays an orphan for the sweep if this fails too.
                let _ = self.delete_path(&self.path(media_id, "body")).await;
                Err(s3(e))
            }
        }
    }

    async fn stat(&self, media_id: MediaId) -> ApiResult<Option<Stat>> {
        let Some((record, _)) = self.read_small(&self.path(media_id, "head")).await? else {
            return Ok(None);
        };
        if record.len() < 8 {
            return Err(ApiError::internal(format!(
                "media head of {media_id} is cut short"
            )));
        }
        let (head, len) = record.split_at(record.len() - 8);
        let body_len = u64::from_be_bytes(len.try_into().map_err(ApiError::internal)?);
        Ok(Some(Stat {
            head: Bytes::copy_from_slice(head),
            body_len,
        }))
    }

    async fn get(&self, media_id: MediaId, range: Range<u64>) -> ApiResult<Option<Chunks>> {
        let Some(stat) = self.stat(media_id).await? else {
            return Ok(None);
        };
        check_range(&range, stat.body_len)?;
        if range.is_empty() {
            return Ok(Some(Box::pin(futures::stream::empty())));
        }
        // One ranged GET per window, each asked for when the one before is read: no request
        // outlives the client's timeout however slowly a download is read.
        let (store, path) = (Arc::clone(&self.store), self.path(media_id, "body"));
        let end = range.end;
        let windows = (range.start..range.end)
            .step_by(WINDOW)
            .map(move |start| start..end.min(start + WINDOW as u64));
        let chunks = futures::stream::iter(windows)
            .then(move |window| {
                let (store, path) = (Arc::clone(&store), path.clone());
                async move {
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(window)),
                        ..GetOptions::default()
                    };
                    let got = store.get_opts(&path, options).await.map_err(s3)?;
                    Ok::<_, ApiError>(got.into_stream().map_err(s3))
                }
            })
            .try_flatten();
        Ok(Some(Box::pin(chunks)))
    }

    async fn delete(&self, media_id: MediaId) -> ApiResult<()> {
        // The head first: from then on it is never served, whatever happens next.
        for suffix in ["head", "body", "post"] {
            self.delete_path(&self.path(media_id, suffix)).await?;
        }
        Ok(())
    }

    async fn list(&self) -> ApiResult<Vec<Listed>> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let mut listing = self.store.list(prefix.as_ref());
        let mut found: BTreeMap<MediaId, Listed> = BTreeMap::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(s3)?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Some((id, suffix)) = name.rsplit_once('.') else {
                continue;
            };
            let Ok(media_id) = id.parse::<MediaId>() else {
                continue;
            };
            let listed = found.entry(media_id).or_insert(Listed {
                media_id,
                complete: false,
                claimed: false,
                age: Duration::ZERO,
            });
            match suffix {
                "head" => {
                    listed.complete = true;
                    listed.age = age_of(&meta);
                }
                "body" if !listed.complete => listed.age = age_of(&meta),
                "post" => listed.claimed = true,
                _ => {}
            }
        }
        Ok(found.into_values().collect())
    }

    async fn sweep_orphans(&self, older_than: Duration) -> ApiResult<Vec<MediaId>> {
        let mut swept = Vec::new();
        for listed in self.list().await? {
            if listed.complete || listed.age < older_than {
                continue;
            }
            let body = self.path(listed.media_id, "body");
            // Completed since the listing: not an orphan.
            if self.stat(listed.media_id).await?.is_some() {
                continue;
            }
            match self.store.head(&body).await {
                Ok(_) => {
                    self.delete_path(&body).await?;
                    swept.push(listed.media_id);
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3(e)),
            }
        }
        Ok(swept)
    }

    async fn claim(&self, media_id: MediaId, post: PostId) -> ApiResult<Claim> {
        let path = self.path(media_id, "post");
        for _ in 0..3 {
            let created = self
                .store
                .put_opts(
                    &path,
                    PutPayload::from(post.to_string().into_bytes()),
                    PutOptions::from(PutMode::Create),
                )
                .await;
            match created {
                Ok(_) => return Ok(Claim::Taken),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(s3(e)),
            }
            // Released in between: try again.
            if let Some((text, meta)) = self.read_small(&path).await? {
                let text = String::from_utf8_lossy(&text);
                return Ok(super::local::held(&text, age_of(&meta)));
            }
        }
        Err(ApiError::internal(format!(
            "the claim on media {media_id} keeps changing"
        )))
    }

    async fn release(&self, media_id: MediaId, post: PostId) -> ApiResult<()> {
        let path = self.path(media_id, "post");
        let Some((text, _)) = self.read_small(&path).await? else {
            return Ok(());
        };
        if super::local::releases(&String::from_utf8_lossy(&text), post) {
            self.delete_path(&path).await?;
        }
        Ok(())
    }
}
