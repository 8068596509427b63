//! Long plaintexts (media files) sealed chunk by chunk with a subject's data key.
//!
//! The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár: "Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance"), as RustCrypto's
//! `aead::stream::StreamBE32` instantiates it over XChaCha20-Poly1305: each chunk is sealed
//! separately under the nonce `prefix (19 random bytes) ‖ counter (u32, big endian) ‖ last flag
//! (1 byte)`, with the same associated data as a sealed field (the subject and key id). A chunk
//! moved to another position, a chunk from another file, a dropped final chunk or a flipped bit
//! fails to open; the last chunk is the only one sealed with the flag, so a stream cut short at
//! a chunk boundary is refused too.

use super::{aad, KeyVault, VaultError};
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::XChaCha20Poly1305;
use kring_domain::access::Subject;
use uuid::Uuid;

/// Bytes of the random nonce prefix of a stream (24-byte XChaCha nonce less the 5 bytes of
/// counter and last-chunk flag).
pub const STREAM_NONCE_PREFIX: usize = 19;
/// Bytes the authentication tag adds to each chunk.
pub const STREAM_TAG: usize = 16;

/// Seals one stream's chunks in order; [`StreamSealer::seal_last`] ends it.
pub struct StreamSealer {
    subject: Subject,
    key_id: Uuid,
    nonce: [u8; STREAM_NONCE_PREFIX],
    aad: Vec<u8>,
    inner: EncryptorBE32<XChaCha20Poly1305>,
}

impl std::fmt::Debug for StreamSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSealer")
            .field("subject", &self.subject)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl StreamSealer {
    /// Whose key seals the stream.
    #[must_use]
    pub fn subject(&self) -> Subject {
        self.subject
    }

    /// Which of the subject's keys.
    #[must_use]
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    /// The stream's random nonce prefix, to store beside the ciphertext.
    #[must_use]
    pub fn nonce_prefix(&self) -> [u8; STREAM_NONCE_PREFIX] {
        self.nonce
    }

    /// Seals the next chunk in place (its tag is appended).
    ///
    /// # Errors
    /// [`VaultError::StreamTooLong`] after 2³² − 1 chunks.
    pub fn seal_next(&mut self, chunk: &mut Vec<u8>) -> Result<(), VaultError> {
        let subject = self.subject;
        self.inner
            .encrypt_next_in_place(&self.aad, chunk)
            .map_err(|_| VaultError::StreamTooLong { subject })
    }

    /// Seals the last chunk in place (it may be empty) and ends the stream.
    ///
    /// # Errors
    /// [`VaultError::StreamTooLong`] when the chunk cannot be sealed.
    pub fn seal_last(self, chunk: &mut Vec<u8>) -> Result<(), VaultError> {
        let subject = self.subject;
        self.inner
            .encrypt_last_in_place(&self.aad, chunk)
            .map_err(|_| VaultError::StreamTooLong { subject })
    }
}

/// Opens one stream's chunks in the order they were sealed; [`StreamOpener::open_last`] ends it.
pub struct StreamOpener {
    subject: Subject,
    aad: Vec<u8>,
    inner: DecryptorBE32<XChaCha20Poly1305>,
}

impl std::fmt::Debug for StreamOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOpener")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl StreamOpener {
    /// Opens the next chunk in place (its tag is removed).
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] for a chunk that was not sealed at this position of this
    /// stream (tampered with, reordered, or the stream's last chunk).
    pub fn open_next(&mut self, chunk: &mut Vec<u8>) -> Result<(), VaultError> {
        let subject = self.subject;
        self.inner
            .decrypt_next_in_place(&self.aad, chunk)
            .map_err(|_| VaultError::Undecryptable { subject })
    }

    /// Opens the last chunk in place and ends the stream.
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] for a chunk that was not sealed as this stream's last one
    /// at this position (tampered with, or the stream was cut short).
    pub fn open_last(self, chunk: &mut Vec<u8>) -> Result<(), VaultError> {
        let subject = self.subject;
        self.inner
            .decrypt_last_in_place(&self.aad, chunk)
            .map_err(|_| VaultError::Undecryptable { subject })
    }
}

impl KeyVault {
    /// A sealer for a new stream of `subject`'s data (media bytes), under the subject's key
    /// (created on first use) and a fresh random nonce prefix.
    ///
    /// # Errors
    /// [`VaultError::SubjectErased`] for an erased subject; database failures.
    pub async fn stream_sealer(&self, subject: Subject) -> Result<StreamSealer, VaultError> {
        let key = self
            .key(subject, true)
            .await?
            .ok_or(VaultError::SubjectErased(subject))?;
        let mut nonce = [0_u8; STREAM_NONCE_PREFIX];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(subject, key.key_id);
        Ok(StreamSealer {
            subject,
            key_id: key.key_id,
            nonce,
            aad,
            inner: EncryptorBE32::from_aead(key.cipher, (&nonce).into()),
        })
    }

    /// An opener for a stream sealed for `subject` with key `key_id` and `nonce_prefix`; `None`
    /// when the subject's key was destroyed.
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] when the key is not the one the stream was sealed with or
    /// the prefix is malformed; database failures.
    pub async fn stream_opener(
        &self,
        subject: Subject,
        key_id: Uuid,
        nonce_prefix: &[u8],
    ) -> Result<Option<StreamOpener>, VaultError> {
        let Some(key) = self.key(subject, false).await? else {
            return Ok(None);
        };
        let nonce: [u8; STREAM_NONCE_PREFIX] = nonce_prefix
            .try_into()
            .map_err(|_| VaultError::Undecryptable { subject })?;
        if key.key_id != key_id {
            return Err(VaultError::Undecryptable { subject });
        }
        Ok(Some(StreamOpener {
            subject,
            aad: aad(subject, key_id),
            inner: DecryptorBE32::from_aead(key.cipher, (&nonce).into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::vault::MasterKey;
    use kring_domain::MediaId;

    async fn vault(dir: &std::path::Path) -> KeyVault {
        KeyVault::open_sqlite(&dir.join("vault.db"), &MasterKey::generate())
            .await
            .unwrap()
    }

    /// Seals `chunks` as one stream; the sealed chunks and the nonce prefix.
    async fn seal(
        vault: &KeyVault,
        subject: Subject,
        chunks: &[&[u8]],
    ) -> (Uuid, [u8; STREAM_NONCE_PREFIX], Vec<Vec<u8>>) {
        let mut sealer = vault.stream_sealer(subject).await.unwrap();
        let (key_id, nonce) = (sealer.key_id(), sealer.nonce_prefix());
        let mut sealed = Vec::new();
        let (last, rest) = chunks.split_last().unwrap();
        for chunk in rest {
            let mut c = chunk.to_vec();
            sealer.seal_next(&mut c).unwrap();
            sealed.push(c);
        }
        let mut c = last.to_vec();
        sealer.seal_last(&mut c).unwrap();
        sealed.push(c);
        (key_id, nonce, sealed)
    }

    /// Opens `sealed` as one stream, the last chunk as the last.
    async fn open(
        vault: &KeyVault,
        subject: Subject,
        key_id: Uuid,
        nonce: &[u8],
        sealed: &[Vec<u8>],
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let Some(mut opener) = vault.stream_opener(subject, key_id, nonce).await? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let (last, rest) = sealed.split_last().unwrap();
        for chunk in rest {
            let mut c = chunk.clone();
            opener.open_next(&mut c)?;
            out.extend(c);
        }
        let mut c = last.clone();
        opener.open_last(&mut c)?;
        out.extend(c);
        Ok(Some(out))
    }

    #[tokio::test]
    async fn a_stream_opens_only_whole_in_order_and_unaltered_and_never_after_erasure() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path()).await;
        let subject = Subject::Media(MediaId::generate());
        let (key_id, nonce, sealed) = seal(&vault, subject, &[b"one.", b"two.", b"three"]).await;
        assert_eq!(sealed[0].len(), 4 + STREAM_TAG);
        let opened = open(&vault, subject, key_id, &nonce, &sealed)
            .await
            .unwrap();
        assert_eq!(opened.as_deref(), Some(&b"one.two.three"[..]));

        let undecryptable = |r: Result<Option<Vec<u8>>, VaultError>| matches!(r, Err(VaultError::Undecryptable { subject: s }) if s == subject);
        // Cut short at a chunk boundary: the new last chunk was not sealed as the last.
        let cut = open(&vault, subject, key_id, &nonce, &sealed[..2]).await;
        assert!(undecryptable(cut));
        // Two chunks swapped.
        let swapped = [sealed[1].clone(), sealed[0].clone(), sealed[2].clone()];
        assert!(undecryptable(
            open(&vault, subject, key_id, &nonce, &swapped).await
        ));
        // One bit flipped.
        let mut flipped = sealed.clone();
        flipped[1][2] ^= 1;
        assert!(undecryptable(
            open(&vault, subject, key_id, &nonce, &flipped).await
        ));
        // Another stream's chunk, another subject, another nonce prefix.
        let other = Subject::Media(MediaId::generate());
        let (_, other_nonce, other_sealed) = seal(&vault, other, &[b"one.", b"two."]).await;
        let mixed = [sealed[0].clone(), other_sealed[1].clone()];
        assert!(undecryptable(
            open(&vault, subject, key_id, &nonce, &mixed).await
        ));
        assert!(undecryptable(
            open(&vault, subject, key_id, &other_nonce, &sealed).await
        ));
        assert!(matches!(
            vault.stream_opener(subject, key_id, &nonce[1..]).await,
            Err(VaultError::Undecryptable { .. })
        ));

        // Erased: nothing opens, and nothing new is sealed.
        vault.erase(subject).await.unwrap();
        assert_eq!(
            open(&vault, subject, key_id, &nonce, &sealed)
                .await
                .unwrap(),
            None
        );
        assert!(matches!(
            vault.stream_sealer(subject).await,
            Err(VaultError::SubjectErased(s)) if s == subject
        ));
    }
}
