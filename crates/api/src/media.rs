//! Media items, each encrypted with its own key, kept in a media store
//! ([`crate::media_store`]: local files by default, PostgreSQL, or S3).
//!
//! An upload becomes one object; in the local store, one file `<media dir>/<media id>.kmedia`
//! (the other stores keep the same head and body, [`crate::media_store`]):
//!
//! ```text
//! KRINGMEDIA2\n
//! {"uploaded_by": …, "content_type": …, "size": …, "uploaded_at": …, "subject": …, "key_id": …, "nonce": …, "chunk_size": 65536}   \n
//! <chunk 0: 65,536 bytes of ciphertext + 16-byte tag> <chunk 1> … <last chunk: 0–65,536 bytes + tag>
//! ```
//!
//! The bytes are sealed chunk by chunk with the key of `Subject::Media(id)` (the STREAM
//! construction over XChaCha20-Poly1305, [`KeyVault::stream_sealer`]; `nonce` is the stream's
//! 19-byte nonce prefix), so an upload is encrypted as it arrives and a download decrypted as it
//! is sent, and neither is ever held whole in memory. A chunk that was altered, moved, or taken
//! from another file fails to open, and so does a file cut short: only the last chunk is sealed
//! as the last. The plaintext size fixes the number of chunks (`⌈size / chunk_size⌉`, at least
//! one), so the file's length is checked before anything is sent.
//!
//! Files of the first format (`KRINGMEDIA1`, the bytes sealed whole under one 24-byte nonce) are
//! still read, whole, up to the upload limit.
//!
//! The header holds no personal data (a pseudonymous person id, a content type, a size); the
//! bytes only ever leave the process encrypted. The store makes an object visible only once its
//! head is written, after the body and after the item's key is stored, so a reader never sees
//! half an object, and an upload that is refused or cut off leaves nothing visible. A download
//! may ask for a plaintext range ([`MediaFiles::open_range`]): only the chunks holding it are
//! fetched and opened. Removing content destroys the item's key in the vault (crypto-shredding:
//! every copy of the object is unreadable from then on; a restore destroys the key again from
//! the erasure ledger) and then deletes the object too.
//!
//! Attaching an upload to a post is claimed in the store ([`MediaFiles::claim`], exclusive),
//! so one upload cannot end up in two posts even when two requests race.

use crate::error::{ApiError, ApiResult, Code};
use crate::media_store::local::LocalStore;
use crate::media_store::{Chunks, DynMediaStore, Piece};
use axum::body::Bytes;
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use kring_domain::access::Subject;
use kring_domain::sealed::Envelope;
use kring_domain::{MediaId, PersonId, PostId};
use kring_store::vault::{KeyVault, StreamOpener, StreamSealer, STREAM_TAG};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The first line of a file sealed whole (the first format).
const MAGIC_WHOLE: &[u8] = b"KRINGMEDIA1\n";
/// The first line of a file sealed in chunks.
const MAGIC_CHUNKED: &[u8] = b"KRINGMEDIA2\n";
/// Both magic lines have this length.
const MAGIC_LEN: usize = 12;
/// The header line is small; anything longer is not one of our files.
const MAX_HEADER: usize = 4096;
/// Plaintext bytes per sealed chunk of new files.
pub const CHUNK_SIZE: usize = CHUNK_SIZE_DECLARED as usize;
/// [`CHUNK_SIZE`] as a new file's header declares it.
const CHUNK_SIZE_DECLARED: u32 = 64 * 1024;
/// The largest chunk size a file may declare.
const MAX_CHUNK_SIZE: u32 = 1024 * 1024;
/// Bytes of an upload's start that are enough to check its signature ([`sniff`]).
pub const SNIFF_BYTES: usize = 16;
/// The upload limit when none is set ([`crate::state::Limits::media_body`]'s default).
const DEFAULT_LIMIT: u64 = 20 * 1024 * 1024;

/// What is known about an upload without decrypting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaHeader {
    /// Who uploaded it: the only person who may attach it to a post, and who sees it until then.
    pub uploaded_by: PersonId,
    /// Its content type (`image/*` or `video/*`, lower case, without parameters).
    pub content_type: String,
    /// Its size in bytes, before encryption.
    pub size: u64,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
    subject: Subject,
    key_id: Uuid,
    nonce: String,
    /// Plaintext bytes per chunk; absent in files sealed whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_size: Option<u32>,
}

impl MediaHeader {
    /// How many chunks a file of this header holds (`None`: sealed whole).
    fn chunks(&self) -> Option<u64> {
        let chunk = u64::from(self.chunk_size?);
        Some(self.size.div_ceil(chunk).max(1))
    }

    /// The length of the ciphertext after the header line.
    fn body_len(&self) -> u64 {
        let tag = STREAM_TAG as u64;
        // Saturating: the header of a damaged file may claim any size.
        self.size
            .saturating_add(tag.saturating_mul(self.chunks().unwrap_or(1)))
    }
}

/// The decrypted bytes of a media item, chunk by chunk. A chunk that does not open ends the
/// stream with an error: nothing unauthenticated is ever yielded.
pub type MediaBytes = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

pub use crate::media_store::Claim;

/// The media items of an installation, sealed here and kept in its media store.
#[derive(Clone)]
pub struct MediaFiles {
    store: DynMediaStore,
    vault: Arc<KeyVault>,
    limit: u64,
}

/// `413 payload_too_large` for an upload over `limit` bytes.
#[must_use]
pub fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::PayloadTooLarge,
        format!("a media upload may be at most {limit} bytes"),
    )
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("media file {what} {}: {e}", path.display()))
}

fn damaged(media_id: MediaId, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("media object of {media_id}: {e}"))
}

/// An upload being sealed: the body's bytes in, sealed chunks out, then the head.
struct Sealing<'a> {
    body: Pin<Box<dyn Stream<Item = ApiResult<Bytes>> + Send + 'a>>,
    vault: Arc<KeyVault>,
    sealer: Option<StreamSealer>,
    header: MediaHeader,
    reserved: usize,
    limit: u64,
    size: u64,
    chunk: Vec<u8>,
    rest: Bytes,
    /// The head, once the last chunk is out.
    head: Option<Bytes>,
    done: bool,
}

impl Sealing<'_> {
    /// The next piece for the store: a sealed chunk, or (last) the head.
    async fn next_piece(&mut self) -> ApiResult<Option<Piece>> {
        if let Some(head) = self.head.take() {
            self.done = true;
            return Ok(Some(Piece::Head(head)));
        }
        if self.done {
            return Ok(None);
        }
        loop {
            // A full chunk is sealed only once more bytes follow: the last one is sealed as the
            // last.
            if self.chunk.len() == CHUNK_SIZE && !self.rest.is_empty() {
                let sealer = self
                    .sealer
                    .as_mut()
                    .ok_or_else(|| ApiError::internal("sealed twice"))?;
                sealer.seal_next(&mut self.chunk)?;
                let sealed =
                    std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_SIZE + STREAM_TAG));
                return Ok(Some(Piece::Chunk(Bytes::from(sealed))));
            }
            if !self.rest.is_empty() {
                let n = self.rest.len().min(CHUNK_SIZE - self.chunk.len());
                self.chunk.extend_from_slice(&self.rest.split_to(n));
                continue;
            }
            match self.body.next().await {
                Some(data) => {
                    let data = data?;
                    self.size += data.len() as u64;
                    if self.size > self.limit {
                        return Err(too_large(self.limit));
                    }
                    self.rest = data;
                }
                None => {
                    let sealer = self
                        .sealer
                        .take()
                        .ok_or_else(|| ApiError::internal("sealed twice"))?;
                    let mut last = std::mem::take(&mut self.chunk);
                    let end = sealer.seal_last(&mut last)?;
                    // The item's key is stored only now, and before the store makes the object
                    // visible (the head comes after this chunk): a refused or broken upload
                    // leaves no key behind, and no object is ever without its key.
                    self.vault.end_stream(end).await?;
                    self.header.size = self.size;
                    self.header.uploaded_at = Utc::now();
                    let mut head = MAGIC_CHUNKED.to_vec();
                    head.extend(header_line(&self.header, self.reserved)?);
                    self.head = Some(Bytes::from(head));
                    return Ok(Some(Piece::Chunk(Bytes::from(last))));
                }
            }
        }
    }
}

impl MediaFiles {
    /// The files in `dir` (the local store), encrypted with keys of `vault`, with the default
    /// upload limit.
    #[must_use]
    pub fn new(dir: PathBuf, vault: Arc<KeyVault>) -> Self {
        Self::over(Arc::new(LocalStore::new(dir)), vault)
    }

    /// The items kept in `store`, encrypted with keys of `vault`, with the default upload limit.
    #[must_use]
    pub fn over(store: DynMediaStore, vault: Arc<KeyVault>) -> Self {
        Self {
            store,
            vault,
            limit: DEFAULT_LIMIT,
        }
    }

    /// These files with uploads (and files of the first format, read whole) limited to `limit`
    /// bytes.
    #[must_use]
    pub fn with_limit(self, limit: u64) -> Self {
        Self { limit, ..self }
    }

    /// The store the items are kept in.
    #[must_use]
    pub fn media_store(&self) -> &DynMediaStore {
        &self.store
    }

    /// Encrypts the bytes of `body` chunk by chunk with the key of `media_id` as they arrive and
    /// hands them to the store; the object appears only once it is complete.
    ///
    /// # Errors
    /// `413 payload_too_large` past the limit; `400` when the body cannot be read (cut off);
    /// vault or store failures. Nothing is left behind then.
    pub async fn store<S, E>(
        &self,
        media_id: MediaId,
        uploaded_by: PersonId,
        content_type: &str,
        body: S,
    ) -> ApiResult<MediaHeader>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let sealer = self.vault.stream_sealer(Subject::Media(media_id)).await?;
        let header = MediaHeader {
            uploaded_by,
            content_type: content_type.to_owned(),
            size: u64::MAX,
            uploaded_at: Utc::now(),
            subject: sealer.subject(),
            key_id: sealer.key_id(),
            nonce: B64.encode(sealer.nonce_prefix()),
            chunk_size: Some(CHUNK_SIZE_DECLARED),
        };
        // The size is known only at the end: the line is reserved with the widest size and
        // padded with spaces (JSON allows them) to the same length.
        let reserved = serde_json::to_vec(&header)
            .map_err(ApiError::internal)?
            .len();
        if MAGIC_LEN + reserved + 1 > MAX_HEADER {
            return Err(ApiError::validation("the content type is too long"));
        }
        let body = body.map(|data| {
            data.map_err(|e| ApiError::bad_request(format!("the upload could not be read: {e}")))
        });
        let sealing = Sealing {
            body: Box::pin(body),
            vault: Arc::clone(&self.vault),
            sealer: Some(sealer),
            header,
            reserved,
            limit: self.limit,
            size: 0,
            chunk: Vec::with_capacity(CHUNK_SIZE + STREAM_TAG),
            rest: Bytes::new(),
            head: None,
            done: false,
        };
        let pieces = futures::stream::try_unfold(sealing, |mut sealing| async move {
            Ok(sealing.next_piece().await?.map(|piece| (piece, sealing)))
        });
        let head_len = MAGIC_LEN + reserved + 1;
        self.store.put(media_id, head_len, Box::pin(pieces)).await?;
        let stat =
            self.store.stat(media_id).await?.ok_or_else(|| {
                ApiError::internal(format!("media object of {media_id} vanished"))
            })?;
        parse_head(media_id, &stat.head)
    }

    /// The header of `media_id`'s object; `None` when there is no such object.
    ///
    /// # Errors
    /// Store failures; an object that is not a media object.
    pub async fn header(&self, media_id: MediaId) -> ApiResult<Option<MediaHeader>> {
        match self.store.stat(media_id).await? {
            Some(stat) => parse_head(media_id, &stat.head).map(Some),
            None => Ok(None),
        }
    }

    /// The header of `media_id` and its bytes, decrypted as they are read; `None` when there is
    /// no object or its key was destroyed (removed or erased content). The first chunk is
    /// opened before this answers, so an object that is cut short, of the wrong length, or
    /// whose first chunk was altered fails here; a later chunk that does not open ends the
    /// stream with an error (and is logged).
    ///
    /// # Errors
    /// Store failures; an object that does not decrypt (tampered with).
    pub async fn open(&self, media_id: MediaId) -> ApiResult<Option<(MediaHeader, MediaBytes)>> {
        self.open_range(media_id, None).await
    }

    /// Like [`MediaFiles::open`] for the plaintext bytes `range` only (`None`: all of them).
    /// Only the sealed chunks that hold the range are fetched from the store and opened. The
    /// range must lie within the item ([`MediaHeader::size`]) and not be empty.
    ///
    /// # Errors
    /// As [`MediaFiles::open`]; an empty range or one beyond the item.
    pub async fn open_range(
        &self,
        media_id: MediaId,
        range: Option<Range<u64>>,
    ) -> ApiResult<Option<(MediaHeader, MediaBytes)>> {
        let Some(stat) = self.store.stat(media_id).await? else {
            return Ok(None);
        };
        let header = parse_head(media_id, &stat.head)?;
        // Checked: a damaged header may claim a size near `u64::MAX`.
        if stat.body_len != header.body_len() {
            return Err(damaged(
                media_id,
                format!(
                    "its body of {} bytes is not that of {} bytes: cut short or altered",
                    stat.body_len, header.size
                ),
            ));
        }
        if header.subject != Subject::Media(media_id) {
            return Err(damaged(
                media_id,
                format!("it is sealed for {:?}", header.subject),
            ));
        }
        let wanted = range.clone().unwrap_or(0..header.size);
        if range.is_some() && (wanted.start >= wanted.end || wanted.end > header.size) {
            return Err(ApiError::internal(format!(
                "media range {}..{} is not within {} bytes",
                wanted.start, wanted.end, header.size
            )));
        }
        let Some(chunks) = header.chunks() else {
            return self
                .open_whole(media_id, header, stat.body_len, wanted)
                .await;
        };
        let nonce = B64
            .decode(&header.nonce)
            .map_err(|e| damaged(media_id, e))?;
        let Some(opener) = self
            .vault
            .stream_opener(header.subject, header.key_id, &nonce)
            .await?
        else {
            return Ok(None);
        };
        let chunk_size = u64::from(header.chunk_size.unwrap_or_default());
        let sealed = chunk_size + STREAM_TAG as u64;
        // The chunks holding the range (an empty item has one empty chunk).
        let (first, last) = if range.is_some() {
            (wanted.start / chunk_size, (wanted.end - 1) / chunk_size)
        } else {
            (0, chunks - 1)
        };
        let from = first * sealed;
        let to = ((last + 1) * sealed).min(stat.body_len);
        let Some(bytes) = self.store.get(media_id, from..to).await? else {
            return Ok(None);
        };
        let mut reading = Reading {
            media_id,
            bytes,
            buffer: BytesMut::new(),
            opener,
            chunk_size,
            size: header.size,
            chunks,
            next: first,
            last,
            skip: wanted.start - first * chunk_size,
            end: wanted.end,
        };
        let first = reading
            .next_chunk()
            .await
            .map_err(|e| damaged(media_id, e))?;
        let rest = futures::stream::try_unfold(reading, |mut reading| async move {
            if reading.next > reading.last {
                return Ok(None);
            }
            let chunk = reading.next_chunk().await?;
            Ok(Some((chunk, reading)))
        });
        let bytes = futures::stream::iter([Ok(first)]).chain(rest);
        Ok(Some((header, Box::pin(bytes))))
    }

    /// An object of the first format, sealed whole: read whole (up to the upload limit),
    /// decrypted, and cut to `range`.
    async fn open_whole(
        &self,
        media_id: MediaId,
        header: MediaHeader,
        body_len: u64,
        range: Range<u64>,
    ) -> ApiResult<Option<(MediaHeader, MediaBytes)>> {
        if header.size > self.limit {
            return Err(damaged(
                media_id,
                "an object sealed whole is larger than the upload limit",
            ));
        }
        let Some(mut bytes) = self.store.get(media_id, 0..body_len).await? else {
            return Ok(None);
        };
        let mut ciphertext = Vec::new();
        while let Some(piece) = bytes.next().await {
            ciphertext.extend_from_slice(&piece?);
        }
        let plain = decrypt_whole(&self.vault, &header, &ciphertext).await?;
        Ok(plain.map(|b| {
            let (start, end) = (
                usize::try_from(range.start)
                    .unwrap_or(usize::MAX)
                    .min(b.len()),
                usize::try_from(range.end)
                    .unwrap_or(usize::MAX)
                    .min(b.len()),
            );
            let once = futures::stream::iter([Ok(Bytes::from(b).slice(start..end))]);
            (header, Box::pin(once) as MediaBytes)
        }))
    }

    /// Destroys the key of `media_id` (every copy of its object is unreadable from then on) and
    /// deletes its object and claim. Idempotent.
    ///
    /// # Errors
    /// Vault failures. An object that cannot be deleted is only logged: without its key it is
    /// noise (and a later removal or sweep deletes it).
    pub async fn shred(&self, media_id: MediaId) -> ApiResult<()> {
        self.vault.erase(Subject::Media(media_id)).await?;
        if let Err(e) = self.store.delete(media_id).await {
            tracing::warn!(%media_id, store = self.store.kind(), error = %e.explain(),
                "a shredded media object could not be deleted; its key is gone");
        }
        Ok(())
    }

    /// Destroys the key of a removed (or expired) post's text and shreds each of its media
    /// items. Idempotent.
    ///
    /// # Errors
    /// As [`MediaFiles::shred`].
    pub async fn shred_post(
        &self,
        post_id: PostId,
        media: impl IntoIterator<Item = MediaId>,
    ) -> ApiResult<()> {
        self.vault.erase(Subject::Post(post_id)).await?;
        for media_id in media {
            self.shred(media_id).await?;
        }
        Ok(())
    }

    /// Claims `media_id` for `post`: [`Claim::Taken`] when this call created the claim, else who
    /// holds it.
    ///
    /// # Errors
    /// Store failures.
    pub async fn claim(&self, media_id: MediaId, post: PostId) -> ApiResult<Claim> {
        self.store.claim(media_id, post).await
    }

    /// Drops the claim of `post` on `media_id` (its post was not written, or the claim is stale);
    /// a claim held by another post stays.
    ///
    /// # Errors
    /// Store failures.
    pub async fn release(&self, media_id: MediaId, post: PostId) -> ApiResult<()> {
        self.store.release(media_id, post).await
    }

    /// Cleans the store up: shreds what incomplete uploads left behind once older than
    /// `orphans_after` (a crash between writing an object and completing it: never served),
    /// and uploads never attached to a post (no claim) once older than `unattached_after`.
    /// Their keys are destroyed too (an orphan's key may have been stored).
    ///
    /// # Errors
    /// Store or vault failures; what was swept before stays swept.
    pub async fn sweep(
        &self,
        orphans_after: Duration,
        unattached_after: Duration,
    ) -> ApiResult<SweepReport> {
        let mut report = SweepReport::default();
        for media_id in self.store.sweep_orphans(orphans_after).await? {
            self.vault.erase(Subject::Media(media_id)).await?;
            report.orphans.push(media_id);
        }
        for listed in self.store.list().await? {
            if listed.complete && !listed.claimed && listed.age >= unattached_after {
                // The sweep claims it first, as an attachment would (for nobody's post): an
                // attachment that claimed it since the listing wins, and one that comes after
                // finds it claimed.
                let nobody = PostId::from_uuid(Uuid::nil());
                if self.store.claim(listed.media_id, nobody).await? != Claim::Taken {
                    continue;
                }
                self.shred(listed.media_id).await?;
                report.unattached.push(listed.media_id);
            }
        }
        Ok(report)
    }
}

/// What one [`MediaFiles::sweep`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Incomplete uploads (orphans), deleted and their keys destroyed.
    pub orphans: Vec<MediaId>,
    /// Uploads never attached to a post, shredded.
    pub unattached: Vec<MediaId>,
}

/// The header in an object's head.
fn parse_head(media_id: MediaId, head: &[u8]) -> ApiResult<MediaHeader> {
    let mut reader = head;
    let (header, at) = read_header(&mut reader, Path::new(&format!("{media_id}")))?;
    if at != head.len() as u64 {
        return Err(damaged(
            media_id,
            "its head has bytes after the header line",
        ));
    }
    Ok(header)
}

/// A chunked object being decrypted, chunk by chunk.
struct Reading {
    media_id: MediaId,
    bytes: Chunks,
    buffer: BytesMut,
    opener: StreamOpener,
    chunk_size: u64,
    size: u64,
    chunks: u64,
    /// The next chunk to open, and the last one wanted.
    next: u64,
    last: u64,
    /// Plaintext bytes to drop from the front of the next chunk.
    skip: u64,
    /// Where the wanted plaintext ends.
    end: u64,
}

impl Reading {
    /// Reads and opens the next chunk, cut to the range; an error (logged) when it does not
    /// open.
    async fn next_chunk(&mut self) -> std::io::Result<Bytes> {
        let is_last = self.next + 1 == self.chunks;
        let start = self.next * self.chunk_size;
        let plain = if is_last {
            self.size - start
        } else {
            self.chunk_size
        };
        let want = usize::try_from(plain).map_err(std::io::Error::other)? + STREAM_TAG;
        while self.buffer.len() < want {
            match self.bytes.next().await {
                Some(Ok(piece)) => self.buffer.extend_from_slice(&piece),
                Some(Err(e)) => return Err(std::io::Error::other(e.explain().to_owned())),
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the media object ended before its last chunk",
                    ))
                }
            }
        }
        let mut chunk = self.buffer.split_to(want).to_vec();
        let position = u32::try_from(self.next).map_err(std::io::Error::other)?;
        if let Err(e) = self.opener.open_at(position, is_last, &mut chunk) {
            tracing::error!(media_id = %self.media_id, chunk = self.next, error = %e,
                "a media object's chunk does not open: tampered with or corrupt; its download is cut off here");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
        self.next += 1;
        let to =
            usize::try_from(self.end.min(start + plain) - start).map_err(std::io::Error::other)?;
        let from =
            usize::try_from(std::mem::take(&mut self.skip)).map_err(std::io::Error::other)?;
        Ok(Bytes::from(chunk).slice(from..to))
    }
}

/// The header line of `header`, padded with spaces to `width` bytes before its newline.
fn header_line(header: &MediaHeader, width: usize) -> ApiResult<Vec<u8>> {
    let mut line = serde_json::to_vec(header).map_err(ApiError::internal)?;
    if line.len() > width {
        return Err(ApiError::internal(
            "a media header outgrew its reserved space",
        ));
    }
    line.resize(width, b' ');
    line.push(b'\n');
    Ok(line)
}

/// Reads a file's magic and header line: the header, and where the ciphertext starts.
fn read_header(reader: &mut impl BufRead, path: &Path) -> ApiResult<(MediaHeader, u64)> {
    let mut magic = [0_u8; MAGIC_LEN];
    reader
        .read_exact(&mut magic)
        .map_err(|e| io("read", path, e))?;
    let chunked = match &magic[..] {
        m if m == MAGIC_CHUNKED => true,
        m if m == MAGIC_WHOLE => false,
        _ => return Err(io("read", path, "not a Kring media file")),
    };
    let mut line = Vec::new();
    reader
        .take(MAX_HEADER as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| io("read", path, e))?;
    if line.last() != Some(&b'\n') {
        return Err(io("read", path, "header line missing or too long"));
    }
    let header: MediaHeader = serde_json::from_slice(&line).map_err(|e| io("read", path, e))?;
    let well_formed = match header.chunk_size {
        Some(c) => chunked && (1..=MAX_CHUNK_SIZE).contains(&c),
        None => !chunked,
    };
    if !well_formed {
        return Err(io("read", path, "its header does not fit its format"));
    }
    Ok((header, (MAGIC_LEN + line.len()) as u64))
}

/// Decrypts the ciphertext of a file sealed whole: `None` when the item's key was destroyed.
async fn decrypt_whole(
    vault: &KeyVault,
    header: &MediaHeader,
    ciphertext: &[u8],
) -> ApiResult<Option<Vec<u8>>> {
    let envelope = Envelope {
        subject: header.subject,
        key_id: header.key_id,
        nonce: header.nonce.clone(),
        ciphertext: B64.encode(ciphertext),
    };
    Ok(vault.decrypt(&envelope).await?)
}

/// Decrypts a whole media file of either format held in memory (for audits and tests): `None`
/// when the item's key was destroyed.
///
/// # Errors
/// Not a media file; a file that does not open with the existing key (tampered with, cut short);
/// vault failures.
pub async fn decrypt_file(vault: &KeyVault, file: &[u8]) -> ApiResult<Option<Vec<u8>>> {
    let (header, mut ciphertext) = parse_file(file)?;
    let Some(chunks) = header.chunks() else {
        return decrypt_whole(vault, &header, ciphertext).await;
    };
    let bad = || ApiError::internal("a media file does not decrypt: tampered with or cut short");
    if ciphertext.len() as u64 != header.body_len() {
        return Err(bad());
    }
    let nonce = B64.decode(&header.nonce).map_err(|_| bad())?;
    let Some(mut opener) = vault
        .stream_opener(header.subject, header.key_id, &nonce)
        .await?
    else {
        return Ok(None);
    };
    let sealed =
        usize::try_from(header.chunk_size.unwrap_or_default()).map_err(|_| bad())? + STREAM_TAG;
    let mut bytes = Vec::new();
    for _ in 1..chunks {
        let (this, rest) = ciphertext.split_at(sealed);
        let mut chunk = this.to_vec();
        opener.open_next(&mut chunk)?;
        bytes.extend(chunk);
        ciphertext = rest;
    }
    let mut chunk = ciphertext.to_vec();
    opener.open_last(&mut chunk)?;
    bytes.extend(chunk);
    Ok(Some(bytes))
}

/// Splits a raw media file into its header and ciphertext (for audits and tests).
///
/// # Errors
/// Not a media file.
pub fn parse_file(file: &[u8]) -> ApiResult<(MediaHeader, &[u8])> {
    let mut reader = file;
    let (header, _) = read_header(&mut reader, Path::new("<bytes>"))?;
    Ok((header, reader))
}

/// The content type of an upload from its `Content-Type` header: `image/*` or `video/*`, lower
/// case, parameters dropped. SVG is refused: it is a document that can carry scripts.
///
/// # Errors
/// A message for the `415` answer.
pub fn content_type(header: Option<&str>) -> Result<String, String> {
    let Some(value) = header else {
        return Err("a Content-Type header (image/* or video/*) is required".into());
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let valid = essence.split_once('/').is_some_and(|(top, sub)| {
        (top == "image" || top == "video")
            && !sub.is_empty()
            && sub
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    });
    if !valid {
        return Err(format!(
            "content type {value:?} is not accepted: upload image/* or video/*"
        ));
    }
    if essence == "image/svg+xml" {
        return Err("SVG images are not accepted: they can carry scripts".into());
    }
    Ok(essence)
}

/// Checks the bytes against the declared type's signature ("magic bytes") for the formats
/// schools use; other `image/*` and `video/*` subtypes are taken as declared (and always served
/// with `X-Content-Type-Options: nosniff`).
///
/// # Errors
/// A message for the `415` answer when the bytes are not what the type says.
pub fn sniff(content_type: &str, bytes: &[u8]) -> Result<(), String> {
    let starts = |sig: &[u8]| bytes.starts_with(sig);
    let iso_brand = |brands: &[&[u8]]| {
        bytes.len() >= 12 && &bytes[4..8] == b"ftyp" && brands.iter().any(|b| &bytes[8..12] == *b)
    };
    let iso = bytes.len() >= 12 && &bytes[4..8] == b"ftyp";
    let matches = match content_type {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => starts(&[0xFF, 0xD8, 0xFF]),
        "image/png" => starts(b"\x89PNG\r\n\x1a\n"),
        "image/gif" => starts(b"GIF87a") || starts(b"GIF89a"),
        "image/webp" => starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP"),
        "image/bmp" => starts(b"BM"),
        "image/tiff" => starts(b"II*\0") || starts(b"MM\0*"),
        "image/heic" | "image/heif" => iso_brand(&[
            b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis",
        ]),
        "image/avif" => iso_brand(&[b"avif", b"avis", b"mif1"]),
        "video/mp4" | "video/quicktime" | "video/3gpp" | "video/3gpp2" | "video/x-m4v" => {
            iso || (content_type == "video/quicktime" && bytes.get(4..8) == Some(b"moov"))
        }
        "video/webm" | "video/x-matroska" => starts(&[0x1A, 0x45, 0xDF, 0xA3]),
        "video/ogg" => starts(b"OggS"),
        "video/mpeg" => starts(&[0, 0, 1, 0xBA]) || starts(&[0, 0, 1, 0xB3]),
        _ => return Ok(()),
    };
    if matches {
        Ok(())
    } else {
        Err(format!(
            "the uploaded bytes are not {content_type}: their signature does not match"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_normalised_and_checked() {
        assert_eq!(
            content_type(Some("Image/JPEG; charset=binary")).as_deref(),
            Ok("image/jpeg")
        );
        assert_eq!(content_type(Some("video/mp4")).as_deref(), Ok("video/mp4"));
        for bad in [
            None,
            Some("application/json"),
            Some("image/"),
            Some("text/html"),
            Some("image/svg+xml"),
            Some("image/a/b"),
        ] {
            assert!(content_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn known_formats_must_carry_their_signature() {
        assert!(sniff("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0, 1, 2]).is_ok());
        assert!(sniff("image/jpeg", b"\x89PNG\r\n\x1a\n....").is_err());
        assert!(sniff("image/png", b"\x89PNG\r\n\x1a\n....").is_ok());
        assert!(sniff("video/mp4", b"\0\0\0\x18ftypmp42\0\0\0\0").is_ok());
        assert!(sniff("video/mp4", b"<html><script>").is_err());
        assert!(sniff("image/x-unknown-but-fine", b"anything").is_ok());
    }
}
