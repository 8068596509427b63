//! Media objects as files in a directory (the embedded default): `<dir>/<media id>.kmedia` holds
//! the head and then the body (the format [`crate::media`] describes), and `<media id>.post` the
//! claim of the post it was attached to.
//!
//! An upload is written to `.<media id>.<uuid>.tmp` (owner-only), its head written over the
//! space reserved at its start once the body has ended, synced, renamed to its name and the
//! directory synced: a reader never sees half a file. A failed or dropped upload removes its
//! temporary file; one cut short by a crash leaves it, and [`LocalStore::sweep_orphans`]
//! removes it later. A claim is written whole to `.<media id>.<uuid>.claiming` and then
//! hard-linked to its name, which fails when the name is taken: racing claims never read half
//! a claim, and the sweep removes what a crash left of one.

use super::{
    check_head, check_range, no_head, Chunks, Claim, Listed, MediaStore, Piece, Pieces, Stat,
    MAX_HEAD,
};
use crate::error::{ApiError, ApiResult};
use async_trait::async_trait;
use axum::body::Bytes;
use futures::StreamExt;
use kring_domain::{MediaId, PostId};
use std::io::{BufRead, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

/// Bytes read from a file at once.
const READ: u64 = 64 * 1024 + 16;

/// The media files in one directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("media file {what} {}: {e}", path.display()))
}

/// A failed write of a media file: `507` when the disk is full, else an internal error.
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
                        "an unfinished media file could not be removed");
                }
            }
        }
    }
}

/// Reads a file's head: its first two lines (the magic line and the header line), at most
/// [`MAX_HEAD`] bytes.
fn read_head(reader: &mut impl BufRead, path: &Path) -> ApiResult<Vec<u8>> {
    let mut head = Vec::new();
    for _ in 0..2 {
        let room = (MAX_HEAD - head.len()) as u64;
        reader
            .take(room)
            .read_until(b'\n', &mut head)
            .map_err(|e| io("read", path, e))?;
        if head.last() != Some(&b'\n') {
            return Err(io(
                "read",
                path,
                "not a Kring media file: head missing or too long",
            ));
        }
    }
    Ok(head)
}

impl LocalStore {
    /// The files in `dir` (created on the first upload).
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where the file of `media_id` is kept.
    #[must_use]
    pub fn path(&self, media_id: MediaId) -> PathBuf {
        self.dir.join(format!("{media_id}.kmedia"))
    }

    fn claim_path(&self, media_id: MediaId) -> PathBuf {
        self.dir.join(format!("{media_id}.post"))
    }

    /// The open file of `media_id` and the length of its head; `None` when there is none.
    fn open_file(path: &Path) -> ApiResult<Option<(std::fs::File, Vec<u8>, u64)>> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("open", path, e)),
        };
        let len = file.metadata().map_err(|e| io("read", path, e))?.len();
        let mut reader = std::io::BufReader::new(file);
        let head = read_head(&mut reader, path)?;
        Ok(Some((reader.into_inner(), head, len)))
    }
}

/// The media id a file name of this directory belongs to, and what the file is: `kmedia`,
/// `post` (its claim), `tmp` (an upload being written) or `claiming` (a claim being written).
fn media_of(name: &str) -> Option<(MediaId, &'static str)> {
    if let Some(tmp) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
        let id = tmp.split('.').next()?;
        return Some((id.parse().ok()?, "tmp"));
    }
    if let Some(claiming) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".claiming"))
    {
        let id = claiming.split('.').next()?;
        return Some((id.parse().ok()?, "claiming"));
    }
    if let Some(id) = name.strip_suffix(".kmedia") {
        return Some((id.parse().ok()?, "kmedia"));
    }
    if let Some(id) = name.strip_suffix(".post") {
        return Some((id.parse().ok()?, "post"));
    }
    None
}

fn age_of(meta: &std::fs::Metadata) -> Duration {
    meta.modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

#[async_trait]
impl MediaStore for LocalStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn put(&self, media_id: MediaId, head_len: usize, pieces: Pieces<'_>) -> ApiResult<u64> {
        if head_len > MAX_HEAD {
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
        // The head's place, written over once the body has ended.
        file.write_all(&vec![b' '; head_len])
            .await
            .map_err(write_err)?;
        let mut pieces = pieces;
        let mut body_len = 0_u64;
        let mut head = None;
        while let Some(piece) = pieces.next().await {
            match piece? {
                Piece::Chunk(bytes) if head.is_none() => {
                    body_len += bytes.len() as u64;
                    file.write_all(&bytes).await.map_err(write_err)?;
                }
                Piece::Head(bytes) if head.is_none() => head = Some(bytes),
                _ => return Err(ApiError::internal("media pieces after the head")),
            }
        }
        let head = head.ok_or_else(no_head)?;
        check_head(&head, head_len)?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(write_err)?;
        file.write_all(&head).await.map_err(write_err)?;
        file.flush().await.map_err(write_err)?;
        file.sync_all().await.map_err(write_err)?;
        drop(file);
        blocking(move || {
            if path.exists() {
                return Err(ApiError::internal(format!(
                    "media file {} exists already",
                    path.display()
                )));
            }
            std::fs::rename(&tmp, &path).map_err(|e| write_failed("write", &path, e))?;
            unfinished.done();
            // The rename is durable once the directory is.
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| write_failed("write", &dir, e))
        })
        .await?;
        Ok(body_len)
    }

    async fn stat(&self, media_id: MediaId) -> ApiResult<Option<Stat>> {
        let path = self.path(media_id);
        blocking(move || {
            Ok(Self::open_file(&path)?.map(|(_, head, len)| Stat {
                body_len: len - head.len() as u64,
                head: Bytes::from(head),
            }))
        })
        .await
    }

    async fn get(&self, media_id: MediaId, range: Range<u64>) -> ApiResult<Option<Chunks>> {
        let path = self.path(media_id);
        let opened = blocking({
            let path = path.clone();
            move || Self::open_file(&path)
        })
        .await?;
        let Some((file, head, len)) = opened else {
            return Ok(None);
        };
        let at = head.len() as u64;
        check_range(&range, len - at)?;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(std::io::SeekFrom::Start(at + range.start))
            .await
            .map_err(|e| io("read", &path, e))?;
        let left = range.end - range.start;
        let chunks =
            futures::stream::try_unfold((file, left, path), |(mut file, left, path)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let n = left.min(READ);
                let mut buf = vec![0_u8; usize::try_from(n).map_err(ApiError::internal)?];
                file.read_exact(&mut buf)
                    .await
                    .map_err(|e| io("read", &path, e))?;
                Ok(Some((Bytes::from(buf), (file, left - n, path))))
            });
        Ok(Some(Box::pin(chunks)))
    }

    async fn delete(&self, media_id: MediaId) -> ApiResult<()> {
        let files = [self.path(media_id), self.claim_path(media_id)];
        blocking(move || {
            for path in files {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("delete", &path, e)),
                }
            }
            Ok(())
        })
        .await
    }

    async fn list(&self) -> ApiResult<Vec<Listed>> {
        let dir = self.dir.clone();
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io("list", &dir, e)),
            };
            let mut found = std::collections::BTreeMap::<MediaId, Listed>::new();
            for entry in entries {
                let entry = entry.map_err(|e| io("list", &dir, e))?;
                let name = entry.file_name();
                let Some((media_id, kind)) = name.to_str().and_then(media_of) else {
                    continue;
                };
                if kind == "claiming" {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                let listed = found.entry(media_id).or_insert(Listed {
                    media_id,
                    complete: false,
                    claimed: false,
                    age: Duration::ZERO,
                });
                match kind {
                    "kmedia" => {
                        listed.complete = true;
                        listed.age = age_of(&meta);
                    }
                    "post" => listed.claimed = true,
                    _ if !listed.complete => listed.age = listed.age.max(age_of(&meta)),
                    _ => {}
                }
            }
            Ok(found.into_values().collect())
        })
        .await
    }

    async fn sweep_orphans(&self, older_than: Duration) -> ApiResult<Vec<MediaId>> {
        let dir = self.dir.clone();
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io("list", &dir, e)),
            };
            let mut swept = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| io("list", &dir, e))?;
                let name = entry.file_name();
                let Some((media_id, kind @ ("tmp" | "claiming"))) =
                    name.to_str().and_then(media_of)
                else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if age_of(&meta) < older_than {
                    continue;
                }
                match std::fs::remove_file(entry.path()) {
                    // A claim a crash left half made is no orphan of the media's: only removed.
                    Ok(()) if kind == "claiming" => {}
                    Ok(()) => swept.push(media_id),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("delete", &entry.path(), e)),
                }
            }
            swept.sort();
            swept.dedup();
            Ok(swept)
        })
        .await
    }

    async fn claim(&self, media_id: MediaId, post: PostId) -> ApiResult<Claim> {
        let path = self.claim_path(media_id);
        let dir = self.dir.clone();
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| write_failed("directory", &dir, e))?;
            // Written whole to a file of its own and then linked to its name: the link fails
            // when the name is taken, and a racing claim never reads half a claim.
            let claiming = dir.join(format!(".{media_id}.{}.claiming", Uuid::now_v7().simple()));
            std::fs::File::create_new(&claiming)
                .and_then(|mut file| {
                    file.write_all(post.to_string().as_bytes())?;
                    file.sync_all()
                })
                .map_err(|e| io("claim", &claiming, e))?;
            let _claiming = Unfinished(Some(claiming.clone()));
            for _ in 0..3 {
                match std::fs::hard_link(&claiming, &path) {
                    Ok(()) => {
                        // The link is durable once the directory is.
                        std::fs::File::open(&dir)
                            .and_then(|d| d.sync_all())
                            .map_err(|e| io("claim", &dir, e))?;
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
                    .map(|m| age_of(&m))
                    .unwrap_or_default();
                return Ok(held(&text, age));
            }
            Err(io("claim", &path, "keeps changing"))
        })
        .await
    }

    async fn release(&self, media_id: MediaId, post: PostId) -> ApiResult<()> {
        let path = self.claim_path(media_id);
        blocking(move || {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io("claim", &path, e)),
            };
            if !releases(&text, post) {
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

/// The claim a stored text records, `age` old; one written half by a crash is held by nobody
/// (the nil post) for ever, so that it is taken over.
pub(crate) fn held(text: &str, age: Duration) -> Claim {
    match text.trim().parse() {
        Ok(post) => Claim::Held { post, age },
        Err(_) => Claim::Held {
            post: PostId::from_uuid(Uuid::nil()),
            age: Duration::MAX,
        },
    }
}

/// Whether `post` may release a claim recording `text` (its own, or an unreadable one).
pub(crate) fn releases(text: &str, post: PostId) -> bool {
    text.trim()
        .parse::<PostId>()
        .ok()
        .is_none_or(|holder| holder == post)
}
