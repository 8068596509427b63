//! Media files on local disk, each encrypted with its own media item's key.
//!
//! An upload becomes one file `<media dir>/<media id>.kmedia`:
//!
//! ```text
//! KRINGMEDIA1\n
//! {"uploaded_by": …, "content_type": …, "size": …, "uploaded_at": …, "subject": …, "key_id": …, "nonce": …}\n
//! <XChaCha20-Poly1305 ciphertext of the bytes, sealed with the key of Subject::Media(id)>
//! ```
//!
//! The header holds no personal data (a pseudonymous person id, a content type, a size); the
//! bytes are only ever on disk encrypted. A file is written to a temporary name, synced and
//! renamed, so a reader never sees half a file. Removing content destroys the item's key in the
//! vault (crypto-shredding: every copy of the file is unreadable from then on; a restore destroys
//! the key again from the erasure ledger) and then deletes the file too.
//!
//! Attaching an upload to a post is claimed with `<media id>.post` (created exclusively, holding
//! the post id), so one upload cannot end up in two posts even when two requests race.

use crate::error::{ApiError, ApiResult};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use kring_domain::access::Subject;
use kring_domain::sealed::Envelope;
use kring_domain::{MediaId, PersonId, PostId};
use kring_store::vault::KeyVault;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

const MAGIC: &[u8] = b"KRINGMEDIA1\n";
/// The header line is small; anything longer is not one of our files.
const MAX_HEADER: usize = 4096;

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

/// The media files of an installation.
#[derive(Clone)]
pub struct MediaFiles {
    dir: PathBuf,
    vault: Arc<KeyVault>,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("media file {what} {}: {e}", path.display()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

impl MediaFiles {
    /// The files in `dir`, encrypted with keys of `vault`.
    #[must_use]
    pub fn new(dir: PathBuf, vault: Arc<KeyVault>) -> Self {
        Self { dir, vault }
    }

    /// Where the file of `media_id` is kept.
    #[must_use]
    pub fn path(&self, media_id: MediaId) -> PathBuf {
        self.dir.join(format!("{media_id}.kmedia"))
    }

    fn claim_path(&self, media_id: MediaId) -> PathBuf {
        self.dir.join(format!("{media_id}.post"))
    }

    /// Encrypts `bytes` with the key of `media_id` and stores them durably.
    ///
    /// # Errors
    /// Vault or file-system failures (nothing is left behind then).
    pub async fn store(
        &self,
        media_id: MediaId,
        uploaded_by: PersonId,
        content_type: &str,
        bytes: &[u8],
    ) -> ApiResult<MediaHeader> {
        let envelope = self.vault.encrypt(Subject::Media(media_id), bytes).await?;
        let ciphertext = B64
            .decode(&envelope.ciphertext)
            .map_err(ApiError::internal)?;
        let header = MediaHeader {
            uploaded_by,
            content_type: content_type.to_owned(),
            size: bytes.len() as u64,
            uploaded_at: Utc::now(),
            subject: envelope.subject,
            key_id: envelope.key_id,
            nonce: envelope.nonce,
        };
        let line = serde_json::to_vec(&header).map_err(ApiError::internal)?;
        let dir = self.dir.clone();
        let path = self.path(media_id);
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| io("directory", &dir, e))?;
            let tmp = dir.join(format!(".{media_id}.{}.tmp", Uuid::now_v7().simple()));
            let written = (|| {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&tmp)?;
                file.write_all(MAGIC)?;
                file.write_all(&line)?;
                file.write_all(b"\n")?;
                file.write_all(&ciphertext)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                // The rename is durable once the directory is.
                std::fs::File::open(&dir)?.sync_all()
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(io("write", &path, e));
            }
            Ok(())
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
            read_header(&mut reader, &path).map(Some)
        })
        .await
    }

    /// The decrypted bytes and header of `media_id`; `None` when there is no file or its key was
    /// destroyed (removed or erased content).
    ///
    /// # Errors
    /// File-system failures; a file that does not decrypt (tampered with).
    pub async fn open(&self, media_id: MediaId) -> ApiResult<Option<(MediaHeader, Vec<u8>)>> {
        let path = self.path(media_id);
        let read = blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io("open", &path, e)),
            };
            let mut reader = std::io::BufReader::new(file);
            let header = read_header(&mut reader, &path)?;
            let mut ciphertext = Vec::new();
            reader
                .read_to_end(&mut ciphertext)
                .map_err(|e| io("read", &path, e))?;
            Ok(Some((header, ciphertext)))
        })
        .await?;
        let Some((header, ciphertext)) = read else {
            return Ok(None);
        };
        if header.subject != Subject::Media(media_id) {
            return Err(ApiError::internal(format!(
                "media file of {media_id} is sealed for {:?}",
                header.subject
            )));
        }
        let bytes = decrypt_file(&self.vault, &header, &ciphertext).await?;
        Ok(bytes.map(|b| (header, b)))
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
            std::fs::create_dir_all(&dir).map_err(|e| io("directory", &dir, e))?;
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

fn read_header(reader: &mut impl BufRead, path: &Path) -> ApiResult<MediaHeader> {
    let mut magic = [0_u8; MAGIC.len()];
    reader
        .read_exact(&mut magic)
        .map_err(|e| io("read", path, e))?;
    if magic != MAGIC {
        return Err(io("read", path, "not a Kring media file"));
    }
    let mut line = Vec::new();
    reader
        .take(MAX_HEADER as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| io("read", path, e))?;
    if line.last() != Some(&b'\n') {
        return Err(io("read", path, "header line missing or too long"));
    }
    serde_json::from_slice(&line).map_err(|e| io("read", path, e))
}

/// Decrypts a media file's ciphertext: `None` when the item's key was destroyed.
///
/// # Errors
/// A ciphertext that does not open with the existing key (tampered with); vault failures.
pub async fn decrypt_file(
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

/// Splits a raw media file into its header and ciphertext (for audits and tests).
///
/// # Errors
/// Not a media file.
pub fn parse_file(file: &[u8]) -> ApiResult<(MediaHeader, &[u8])> {
    let mut reader = file;
    let header = read_header(&mut reader, Path::new("<bytes>"))?;
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
