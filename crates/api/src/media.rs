//! Media files on local disk, each encrypted with its own media item's key.
//!
//! An upload becomes one file `<media dir>/<media id>.kmedia`:
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
//! bytes are only ever on disk encrypted. A file is written to a temporary name, synced and
//! renamed, so a reader never sees half a file, and an upload that is refused or cut off leaves
//! nothing behind. Removing content destroys the item's key in the vault (crypto-shredding: every
//! copy of the file is unreadable from then on; a restore destroys the key again from the erasure
//! ledger) and then deletes the file too.
//!
//! Attaching an upload to a post is claimed with `<media id>.post` (created exclusively, holding
//! the post id), so one upload cannot end up in two posts even when two requests race.

use crate::error::{ApiError, ApiResult, Code};
use axum::body::Bytes;
use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use kring_domain::access::Subject;
use kring_domain::sealed::Envelope;
use kring_domain::{MediaId, PersonId, PostId};
use kring_store::vault::{KeyVault, StreamOpener, STREAM_TAG};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
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

/// The media files of an installation.
#[derive(Clone)]
pub struct MediaFiles {
    dir: PathBuf,
    vault: Arc<KeyVault>,
    limit: u64,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("media file {what} {}: {e}", path.display()))
}

/// A failed write of a media file: `507` when the disk is full (the upload is refused, its
/// temporary file removed), else an internal error.
fn write_failed(what: &str, path: &Path, e: std::io::Error) -> ApiError {
    /// `ENOSPC` on Linux and the BSDs.
    const ENOSPC: i32 = 28;
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(ENOSPC) {
        return ApiError::storage_full(format!("no space left to store the media file: {e}"));
    }
    io(what, path, e)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
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

/// A file being written: removed when dropped before [`Unfinished::done`], so an upload that
/// fails, is refused, or whose request is dropped leaves nothing behind.
struct Unfinished(Option<PathBuf>);

impl Unfinished {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e,
                        "an unfinished media upload could not be removed");
                }
            }
        }
    }
}

impl MediaFiles {
    /// The files in `dir`, encrypted with keys of `vault`, with the default upload limit.
    #[must_use]
    pub fn new(dir: PathBuf, vault: Arc<KeyVault>) -> Self {
        Self {
            dir,
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

    /// Where the file of `media_id` is kept.
    #[must_use]
    pub fn path(&self, media_id: MediaId) -> PathBuf {
        self.dir.join(format!("{media_id}.kmedia"))
    }

    fn claim_path(&self, media_id: MediaId) -> PathBuf {
        self.dir.join(format!("{media_id}.post"))
    }

    /// Encrypts the bytes of `body` chunk by chunk with the key of `media_id` as they arrive and
    /// stores them durably; the file appears only once it is complete.
    ///
    /// # Errors
    /// `413 payload_too_large` past the limit; `400` when the body cannot be read (cut off);
    /// vault or file-system failures. Nothing is left behind then.
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
        let mut sealer = self.vault.stream_sealer(Subject::Media(media_id)).await?;
        let mut header = MediaHeader {
            uploaded_by,
            content_type: content_type.to_owned(),
            size: u64::MAX,
            uploaded_at: Utc::now(),
            subject: sealer.subject(),
            key_id: sealer.key_id(),
            nonce: B64.encode(sealer.nonce_prefix()),
            chunk_size: Some(CHUNK_SIZE_DECLARED),
        };
        // The size is known only at the end: the line is written with the widest size first and
        // rewritten in place, padded with spaces (JSON allows them) to the same length.
        let reserved = serde_json::to_vec(&header)
            .map_err(ApiError::internal)?
            .len();
        if MAGIC_LEN + reserved + 1 > MAX_HEADER {
            return Err(ApiError::validation("the content type is too long"));
        }

        let dir = self.dir.clone();
        blocking({
            let dir = dir.clone();
            move || std::fs::create_dir_all(&dir).map_err(|e| write_failed("directory", &dir, e))
        })
        .await?;
        let path = self.path(media_id);
        let tmp = dir.join(format!(".{media_id}.{}.tmp", Uuid::now_v7().simple()));
        let unfinished = Unfinished(Some(tmp.clone()));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options
            .open(&tmp)
            .await
            .map_err(|e| write_failed("write", &tmp, e))?;
        let write_err = |e: std::io::Error| write_failed("write", &tmp, e);
        file.write_all(MAGIC_CHUNKED).await.map_err(write_err)?;
        file.write_all(&header_line(&header, reserved)?)
            .await
            .map_err(write_err)?;

        let mut body = std::pin::pin!(body);
        let mut chunk = Vec::with_capacity(CHUNK_SIZE + STREAM_TAG);
        let mut size: u64 = 0;
        while let Some(data) = body.next().await {
            let data = data
                .map_err(|e| ApiError::bad_request(format!("the upload could not be read: {e}")))?;
            size += data.len() as u64;
            if size > self.limit {
                return Err(too_large(self.limit));
            }
            let mut rest = &data[..];
            while !rest.is_empty() {
                // A full chunk is sealed only once more bytes follow: the last one is sealed
                // as the last.
                if chunk.len() == CHUNK_SIZE {
                    sealer.seal_next(&mut chunk)?;
                    file.write_all(&chunk).await.map_err(write_err)?;
                    chunk.clear();
                }
                let n = rest.len().min(CHUNK_SIZE - chunk.len());
                chunk.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
        }
        let end = sealer.seal_last(&mut chunk)?;
        file.write_all(&chunk).await.map_err(write_err)?;

        header.size = size;
        header.uploaded_at = Utc::now();
        file.seek(std::io::SeekFrom::Start(MAGIC_LEN as u64))
            .await
            .map_err(write_err)?;
        file.write_all(&header_line(&header, reserved)?)
            .await
            .map_err(write_err)?;
        file.flush().await.map_err(write_err)?;
        file.sync_all().await.map_err(write_err)?;
        drop(file);
        // The item's key is stored only now, and before its file appears: a refused or broken
        // upload leaves no key behind, and no file is ever without its key.
        self.vault.end_stream(end).await?;
        blocking(move || {
            std::fs::rename(&tmp, &path).map_err(|e| write_failed("write", &path, e))?;
            unfinished.done();
            // The rename is durable once the directory is.
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| write_failed("write", &dir, e))
        })
        .await?;
        Ok(header)
    }

    /// The header of `media_id`'s file; `None` when there is no such file.
    ///
    /// # Errors
    /// File-system failures; a file that is not a media file.
    pub async fn header(&self, media_id: MediaId) -> ApiResult<Option<MediaHeader>> {
        let path = self.path(media_id);
        blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io("open", &path, e)),
            };
            let mut reader = std::io::BufReader::new(file);
            read_header(&mut reader, &path).map(|(h, _)| Some(h))
        })
        .await
    }

    /// The header of `media_id` and its bytes, decrypted as they are read; `None` when there is
    /// no file or its key was destroyed (removed or erased content). The first chunk is opened
    /// before this answers, so a file that is cut short, of the wrong length, or whose first
    /// chunk was altered fails here; a later chunk that does not open ends the stream with an
    /// error (and is logged).
    ///
    /// # Errors
    /// File-system failures; a file that does not decrypt (tampered with).
    pub async fn open(&self, media_id: MediaId) -> ApiResult<Option<(MediaHeader, MediaBytes)>> {
        let path = self.path(media_id);
        let read = blocking({
            let path = path.clone();
            move || {
                let file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io("open", &path, e)),
                };
                let len = file.metadata().map_err(|e| io("read", &path, e))?.len();
                let mut reader = std::io::BufReader::new(file);
                let (header, at) = read_header(&mut reader, &path)?;
                // Checked: a damaged header may claim a size near `u64::MAX`.
                if at.checked_add(header.body_len()) != Some(len) {
                    return Err(io(
                        "read",
                        &path,
                        format!(
                            "its length {len} is not that of {} bytes: cut short or altered",
                            header.size
                        ),
                    ));
                }
                let mut file = reader.into_inner();
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(at))
                    .map_err(|e| io("read", &path, e))?;
                Ok(Some((header, file)))
            }
        })
        .await?;
        let Some((header, file)) = read else {
            return Ok(None);
        };
        if header.subject != Subject::Media(media_id) {
            return Err(ApiError::internal(format!(
                "media file of {media_id} is sealed for {:?}",
                header.subject
            )));
        }
        let mut file = tokio::fs::File::from_std(file);
        let Some(chunks) = header.chunks() else {
            if header.size > self.limit {
                return Err(io(
                    "read",
                    &path,
                    "a file sealed whole is larger than the upload limit",
                ));
            }
            let mut ciphertext = Vec::new();
            file.read_to_end(&mut ciphertext)
                .await
                .map_err(|e| io("read", &path, e))?;
            let bytes = decrypt_whole(&self.vault, &header, &ciphertext).await?;
            return Ok(bytes.map(|b| {
                let once = futures::stream::iter([Ok(Bytes::from(b))]);
                (header, Box::pin(once) as MediaBytes)
            }));
        };
        let nonce = B64
            .decode(&header.nonce)
            .map_err(|e| io("read", &path, e))?;
        let Some(opener) = self
            .vault
            .stream_opener(header.subject, header.key_id, &nonce)
            .await?
        else {
            return Ok(None);
        };
        let mut reading = Reading {
            media_id,
            file,
            opener: Some(opener),
            chunk_size: u64::from(header.chunk_size.unwrap_or_default()),
            size: header.size,
            chunks,
            next: 0,
        };
        let first = reading
            .next_chunk()
            .await
            .map_err(|e| io("read", &path, e))?;
        let rest = futures::stream::try_unfold(reading, |mut reading| async move {
            if reading.next == reading.chunks {
                return Ok(None);
            }
            let chunk = reading.next_chunk().await?;
            Ok(Some((chunk, reading)))
        });
        let bytes = futures::stream::iter([Ok(first)]).chain(rest);
        Ok(Some((header, Box::pin(bytes))))
    }

    /// Destroys the key of `media_id` (every copy of its file is unreadable from then on) and
    /// deletes its file and claim. Idempotent.
    ///
    /// # Errors
    /// Vault failures. A file that cannot be deleted is only logged: without its key it is noise.
    pub async fn shred(&self, media_id: MediaId) -> ApiResult<()> {
        self.vault.erase(Subject::Media(media_id)).await?;
        let files = [self.path(media_id), self.claim_path(media_id)];
        blocking(move || {
            for path in files {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(path = %path.display(), error = %e,
                        "a shredded media file could not be deleted; its key is gone"),
                }
            }
            Ok(())
        })
        .await
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
    /// File-system failures.
    pub async fn claim(&self, media_id: MediaId, post: PostId) -> ApiResult<Claim> {
        let path = self.claim_path(media_id);
        let dir = self.dir.clone();
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| write_failed("directory", &dir, e))?;
            for _ in 0..3 {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                match options.open(&path) {
                    Ok(mut file) => {
                        file.write_all(post.to_string().as_bytes())
                            .and_then(|()| file.sync_all())
                            .map_err(|e| io("claim", &path, e))?;
                        return Ok(Claim::Taken);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("claim", &path, e)),
                }
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    // Released in between: try again.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("claim", &path, e)),
                };
                let age = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                return match text.trim().parse() {
                    Ok(post) => Ok(Claim::Held { post, age }),
                    // Written half by a crash: nobody holds it.
                    Err(_) => Ok(Claim::Held {
                        post: PostId::from_uuid(Uuid::nil()),
                        age: Duration::MAX,
                    }),
                };
            }
            Err(io("claim", &path, "keeps changing"))
        })
        .await
    }

    /// Drops the claim of `post` on `media_id` (its post was not written, or the claim is stale);
    /// a claim held by another post stays.
    ///
    /// # Errors
    /// File-system failures.
    pub async fn release(&self, media_id: MediaId, post: PostId) -> ApiResult<()> {
        let path = self.claim_path(media_id);
        blocking(move || {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io("claim", &path, e)),
            };
            let holder = text.trim().parse::<PostId>().ok();
            if holder.is_some_and(|h| h != post) {
                return Ok(());
            }
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("claim", &path, e)),
            }
        })
        .await
    }
}

/// A chunked file being decrypted, chunk by chunk.
struct Reading {
    media_id: MediaId,
    file: tokio::fs::File,
    /// Taken when the last chunk is opened.
    opener: Option<StreamOpener>,
    chunk_size: u64,
    size: u64,
    chunks: u64,
    next: u64,
}

impl Reading {
    /// Reads and opens the next chunk; an error (logged) when it does not open.
    async fn next_chunk(&mut self) -> std::io::Result<Bytes> {
        let last = self.next + 1 == self.chunks;
        let plain = if last {
            self.size - self.next * self.chunk_size
        } else {
            self.chunk_size
        };
        let mut chunk =
            vec![0_u8; usize::try_from(plain).map_err(std::io::Error::other)? + STREAM_TAG];
        self.file.read_exact(&mut chunk).await?;
        let opened = match self.opener.take() {
            Some(opener) if last => opener.open_last(&mut chunk),
            Some(mut opener) => {
                let opened = opener.open_next(&mut chunk);
                self.opener = Some(opener);
                opened
            }
            None => return Err(std::io::Error::other("the media stream has ended")),
        };
        if let Err(e) = opened {
            tracing::error!(media_id = %self.media_id, chunk = self.next, error = %e,
                "a media file's chunk does not open: tampered with or corrupt; its download is cut off here");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
        self.next += 1;
        Ok(Bytes::from(chunk))
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
