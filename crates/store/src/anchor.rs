//! Signed anchors: the log's head position and its global hash, signed with an Ed25519 key kept
//! outside the database, appended as one JSON line to a file outside the database.
//!
//! Anyone with write access to the database can rewrite an event and recompute every hash after
//! it; nobody without the anchor key can sign a new anchor. So [`verify`](crate::EventStoreExt)
//! given the anchors file and the public key names a log that no longer holds an anchored hash
//! at an anchored position, or that ends before one.
//!
//! The key file holds the 32-byte Ed25519 seed as 64 hex digits. An anchor line:
//!
//! ```json
//! {"format":"kring-anchor-v1","position":1234,"log_hash":"<64 hex>","signed_at":"2026-09-01T08:00:00.123456Z","key_id":"<16 hex>","signature":"<128 hex>"}
//! ```
//!
//! The signature covers `kring-anchor-v1`, the position (8 bytes, big-endian), the global hash
//! (32 bytes) and `signed_at` (microseconds since the Unix epoch, 8 bytes, big-endian). The key
//! id is the first 8 bytes of SHA-256 over the public key, in hex: it tells which key signed.

use crate::{EventHash, EventStore, Position, StoreError};
use chrono::{DateTime, SubsecRound, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The `format` of every anchor line this build writes and reads.
pub const ANCHOR_FORMAT: &str = "kring-anchor-v1";

/// What can go wrong with an anchor key or an anchors file.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// A file could not be read, created or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold 64 hex digits.
    #[error("{}: not an anchor key (expected 64 hex digits, as `replay-tool anchor-key` writes)", path.display())]
    MalformedKey {
        /// The file.
        path: PathBuf,
    },
    /// A public key is not 64 hex digits of a valid Ed25519 point.
    #[error("malformed anchor public key {0:?}: expected 64 hex digits")]
    MalformedPublicKey(String),
    /// The backend keeps no global chain, so there is nothing to anchor.
    #[error("this event store keeps no global chain (EventStoreDB): nothing to anchor")]
    NoGlobalChain,
    /// The log is empty.
    #[error("the event log is empty: nothing to anchor yet")]
    EmptyLog,
    /// The last anchor of the file no longer matches the log: the log changed since it was
    /// anchored. Nothing was appended; run `verify` with the anchors to see what changed.
    #[error("the last anchor (position {position}) no longer matches the log: {problem}; not anchoring over it (run verify with the anchors)")]
    PreviousAnchorBroken {
        /// The anchored position.
        position: Position,
        /// What differs.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnchorError + '_ {
    move |source| AnchorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The private key that signs anchors. Keep it outside the database and its backups.
pub struct AnchorKey(SigningKey);

impl AnchorKey {
    /// A fresh random key.
    ///
    /// # Errors
    /// The operating system has no randomness to give.
    pub fn generate() -> Result<Self, AnchorError> {
        let mut seed = [0_u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| AnchorError::Io {
            path: PathBuf::from("<system randomness>"),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Reads the key file at `path`.
    ///
    /// # Errors
    /// The file cannot be read or is not 64 hex digits.
    pub fn read(path: &Path) -> Result<Self, AnchorError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut seed = [0_u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| AnchorError::MalformedKey {
            path: path.to_path_buf(),
        })?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Writes the key to a new file at `path` (never over an existing one), readable by its
    /// owner only.
    ///
    /// # Errors
    /// The file exists already or cannot be written.
    pub fn write_new(&self, path: &Path) -> Result<(), AnchorError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io(path))?;
        writeln!(file, "{}", hex::encode(self.0.to_bytes())).map_err(io(path))?;
        file.sync_all().map_err(io(path))
    }

    /// The public key that checks this key's signatures.
    #[must_use]
    pub fn public_key(&self) -> AnchorPublicKey {
        AnchorPublicKey(self.0.verifying_key())
    }

    /// Signs `log_hash` at `position`, now.
    #[must_use]
    pub fn sign(&self, position: Position, log_hash: EventHash) -> Anchor {
        let signed_at = Utc::now().trunc_subsecs(6);
        let message = message(position, &log_hash, signed_at);
        Anchor {
            format: ANCHOR_FORMAT.to_owned(),
            position,
            log_hash,
            signed_at,
            key_id: self.public_key().key_id(),
            signature: hex::encode(self.0.sign(&message).to_bytes()),
        }
    }
}

/// The public half of an anchor key: what `verify` checks anchors with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AnchorPublicKey(VerifyingKey);

impl AnchorPublicKey {
    /// The first 8 bytes of SHA-256 over the key, in hex: which key signed an anchor.
    #[must_use]
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }
}

impl FromStr for AnchorPublicKey {
    type Err = AnchorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || AnchorError::MalformedPublicKey(s.to_owned());
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| malformed())?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| malformed())
    }
}

impl fmt::Display for AnchorPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for AnchorPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnchorPublicKey({self})")
    }
}

/// One signed anchor: the log held `log_hash` at `position` when it was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Always [`ANCHOR_FORMAT`].
    pub format: String,
    /// The anchored position (the log's head when signed).
    pub position: Position,
    /// The global hash of the event at that position.
    pub log_hash: EventHash,
    /// When it was signed (microseconds).
    pub signed_at: DateTime<Utc>,
    /// Which key signed it ([`AnchorPublicKey::key_id`]).
    pub key_id: String,
    /// The Ed25519 signature, in hex.
    pub signature: String,
}

impl Anchor {
    /// Checks the signature with `key`.
    ///
    /// # Errors
    /// What is wrong, in words: another format, another key, a malformed or invalid signature.
    pub fn check_signature(&self, key: &AnchorPublicKey) -> Result<(), String> {
        if self.format != ANCHOR_FORMAT {
            return Err(format!("unknown anchor format {:?}", self.format));
        }
        if self.key_id != key.key_id() {
            return Err(format!(
                "signed with key {}, not with the given key {}",
                self.key_id,
                key.key_id()
            ));
        }
        let mut bytes = [0_u8; 64];
        hex::decode_to_slice(&self.signature, &mut bytes)
            .map_err(|_| "the signature is not 128 hex digits".to_owned())?;
        key.0
            .verify(
                &message(self.position, &self.log_hash, self.signed_at),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| "the signature does not match the anchor's content".to_owned())
    }

    /// Appends this anchor as one line to the anchors file at `path` (created if missing), and
    /// syncs it to disk.
    ///
    /// # Errors
    /// The file cannot be opened or written.
    pub fn append_to(&self, path: &Path) -> Result<(), AnchorError> {
        let line = serde_json::to_string(self).map_err(|e| AnchorError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path))?;
        writeln!(file, "{line}").map_err(io(path))?;
        file.sync_all().map_err(io(path))
    }
}

/// The bytes an anchor's signature covers.
fn message(position: Position, log_hash: &EventHash, signed_at: DateTime<Utc>) -> Vec<u8> {
    let mut m = Vec::with_capacity(ANCHOR_FORMAT.len() + 48);
    m.extend_from_slice(ANCHOR_FORMAT.as_bytes());
    m.extend_from_slice(&position.to_be_bytes());
    m.extend_from_slice(&log_hash.0);
    m.extend_from_slice(&signed_at.timestamp_micros().to_be_bytes());
    m
}

/// One line of an anchors file: the anchor, or why it cannot be read.
#[derive(Debug, Clone)]
pub struct AnchorLine {
    /// 1-based line number.
    pub line: usize,
    /// The anchor, or what is wrong with the line.
    pub anchor: Result<Anchor, String>,
}

/// The anchors `verify` checks the log against, and the key that signed them.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// The trusted public key.
    pub key: AnchorPublicKey,
    /// Every non-empty line of the anchors file.
    pub lines: Vec<AnchorLine>,
}

impl Anchors {
    /// Reads the anchors file at `path`; a missing file is an error (an installation that
    /// anchors always has one).
    ///
    /// # Errors
    /// The file cannot be read. An unreadable line is not an error but a finding of `verify`.
    pub fn read(path: &Path, key: AnchorPublicKey) -> Result<Self, AnchorError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        Ok(Self {
            key,
            lines: parse_lines(&text),
        })
    }
}

fn parse_lines(text: &str) -> Vec<AnchorLine> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| AnchorLine {
            line: i + 1,
            anchor: serde_json::from_str(l).map_err(|e| format!("not an anchor: {e}")),
        })
        .collect()
}

/// Signs the log's head with `key` and appends the anchor to `path`.
///
/// Refuses (writing nothing) when the last anchor of the file that `key` signed no longer
/// matches the log: anchoring a changed log would bless the change.
///
/// # Errors
/// [`AnchorError::NoGlobalChain`] on EventStoreDB, [`AnchorError::EmptyLog`],
/// [`AnchorError::PreviousAnchorBroken`], file and store failures.
pub async fn anchor_head<S: EventStore + ?Sized>(
    store: &S,
    key: &AnchorKey,
    path: &Path,
) -> Result<Anchor, AnchorError> {
    if !store.keeps_global_chain() {
        return Err(AnchorError::NoGlobalChain);
    }
    let previous = match std::fs::read_to_string(path) {
        Ok(text) => parse_lines(&text).into_iter().rev().find_map(|l| {
            l.anchor
                .ok()
                .filter(|a| a.check_signature(&key.public_key()).is_ok())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(path)(e)),
    };
    if let Some(previous) = previous {
        if let Some(problem) = mismatch(store, &previous).await? {
            return Err(AnchorError::PreviousAnchorBroken {
                position: previous.position,
                problem,
            });
        }
    }
    let head = store.head().await?;
    let event = store
        .read_all(head.saturating_sub(1), 1)
        .await?
        .into_iter()
        .next()
        .ok_or(AnchorError::EmptyLog)?;
    let log_hash = event.log_hash.ok_or_else(|| {
        AnchorError::Store(StoreError::Corrupt {
            position: event.position,
            reason: "the event has no global hash".into(),
        })
    })?;
    let anchor = key.sign(event.position, log_hash);
    anchor.append_to(path)?;
    Ok(anchor)
}

/// How the log differs from `anchor` at its position, if it does.
async fn mismatch<S: EventStore + ?Sized>(
    store: &S,
    anchor: &Anchor,
) -> Result<Option<String>, StoreError> {
    let found = store
        .read_all(anchor.position.saturating_sub(1), 1)
        .await?
        .into_iter()
        .next();
    Ok(match found {
        None => Some(format!("the log ends at position {}", store.head().await?)),
        Some(e) if e.position != anchor.position => {
            Some(format!("no event at position {}", anchor.position))
        }
        Some(e) if e.log_hash != Some(anchor.log_hash) => Some(format!(
            "its global hash is {}, the anchor signed {}",
            e.log_hash
                .map_or_else(|| "missing".to_owned(), |h| h.to_string()),
            anchor.log_hash
        )),
        Some(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_verifies_with_its_key_and_not_when_changed_or_checked_with_another() {
        let key = AnchorKey::generate().expect("in this test");
        let anchor = key.sign(42, EventHash([3; 32]));
        assert_eq!(anchor.check_signature(&key.public_key()), Ok(()));
        let line = serde_json::to_string(&anchor).unwrap_or_default();
        let read: Anchor = serde_json::from_str(&line).expect("in this test");
        assert_eq!(read, anchor, "an anchor survives its JSON line");
        let mut moved = anchor.clone();
        moved.position = 41;
        assert!(moved.check_signature(&key.public_key()).is_err());
        let mut rehashed = anchor.clone();
        rehashed.log_hash = EventHash([4; 32]);
        assert!(rehashed.check_signature(&key.public_key()).is_err());
        let other = AnchorKey::generate().expect("in this test");
        assert!(anchor.check_signature(&other.public_key()).is_err());
    }

    #[test]
    fn a_public_key_round_trips_through_hex_and_garbage_is_refused() {
        let key = AnchorKey::generate().expect("in this test");
        let public = key.public_key();
        assert_eq!(
            public.to_string().parse::<AnchorPublicKey>().ok(),
            Some(public)
        );
        assert!("abc".parse::<AnchorPublicKey>().is_err());
    }
}
