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
//!
//! A subject without a key yet (a new media item) gets one that is stored only when its stream
//! is complete ([`KeyVault::end_stream`]): a stream that is abandoned (an upload refused or cut
//! off) leaves nothing in the vault.

use super::{aad, db, subject_key, KeyVault, VaultError};
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::stream::{EncryptorBE32, NewStream, StreamBE32, StreamPrimitive};
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
    /// The wrapped key, when the subject had none and it is not stored yet.
    unstored: Option<Vec<u8>>,
}

/// A stream whose last chunk is sealed; [`KeyVault::end_stream`] stores its key if it is new.
#[must_use = "the stream's key may not be stored yet: pass this to KeyVault::end_stream"]
pub struct StreamEnd {
    subject: Subject,
    key_id: Uuid,
    unstored: Option<Vec<u8>>,
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

    /// Seals the last chunk in place (it may be empty) and ends the stream; its key is stored by
    /// [`KeyVault::end_stream`].
    ///
    /// # Errors
    /// [`VaultError::StreamTooLong`] when the chunk cannot be sealed.
    pub fn seal_last(self, chunk: &mut Vec<u8>) -> Result<StreamEnd, VaultError> {
        let subject = self.subject;
        self.inner
            .encrypt_last_in_place(&self.aad, chunk)
            .map_err(|_| VaultError::StreamTooLong { subject })?;
        Ok(StreamEnd {
            subject,
            key_id: self.key_id,
            unstored: self.unstored,
        })
    }
}

/// Opens one stream's chunks in the order they were sealed ([`StreamOpener::open_last`] ends
/// it), or any chunk by its position ([`StreamOpener::open_at`], for range reads).
pub struct StreamOpener {
    subject: Subject,
    aad: Vec<u8>,
    inner: StreamBE32<XChaCha20Poly1305>,
    /// The position of the next chunk [`StreamOpener::open_next`] opens.
    position: u32,
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
        let position = self.position;
        self.open_at(position, false, chunk)?;
        self.position = position
            .checked_add(1)
            .ok_or(VaultError::Undecryptable { subject })?;
        Ok(())
    }

    /// Opens the last chunk in place and ends the stream.
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] for a chunk that was not sealed as this stream's last one
    /// at this position (tampered with, or the stream was cut short).
    pub fn open_last(self, chunk: &mut Vec<u8>) -> Result<(), VaultError> {
        self.open_at(self.position, true, chunk)
    }

    /// Opens the chunk sealed at `position` in place (`last`: as the stream's last chunk),
    /// without opening the ones before it: a range read opens only the chunks it needs. Chunks
    /// are still bound to their position, their stream and their being last.
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] for a chunk that was not sealed at this position of this
    /// stream with this `last`.
    pub fn open_at(
        &self,
        position: u32,
        last: bool,
        chunk: &mut Vec<u8>,
    ) -> Result<(), VaultError> {
        let subject = self.subject;
        self.inner
            .decrypt_in_place(position, last, &self.aad, chunk)
            .map_err(|_| VaultError::Undecryptable { subject })
    }
}

impl KeyVault {
    /// A sealer for a new stream of `subject`'s data (media bytes), under the subject's key and a
    /// fresh random nonce prefix. A subject without a key gets a new one, stored only by
    /// [`KeyVault::end_stream`].
    ///
    /// # Errors
    /// [`VaultError::SubjectErased`] for an erased subject; database failures.
    pub async fn stream_sealer(&self, subject: Subject) -> Result<StreamSealer, VaultError> {
        self.watch.validate(&self.cache).await?;
        let (key, unstored) = match self.key(subject, false).await? {
            Some(key) => (key, None),
            None if self.is_erased(subject).await? => {
                return Err(VaultError::SubjectErased(subject))
            }
            None => {
                let (key_id, wrapped) = self.new_wrapped_key(subject)?;
                (self.unwrap_key(subject, key_id, &wrapped)?, Some(wrapped))
            }
        };
        let mut nonce = [0_u8; STREAM_NONCE_PREFIX];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(subject, key.key_id);
        Ok(StreamSealer {
            subject,
            key_id: key.key_id,
            nonce,
            aad,
            inner: EncryptorBE32::from_aead(key.cipher, (&nonce).into()),
            unstored,
        })
    }

    /// Stores the key of a completed stream when the stream made it. Call it before the sealed
    /// data is kept anywhere, so that no kept data lacks its key.
    ///
    /// # Errors
    /// [`VaultError::SubjectErased`] when the subject was erased meanwhile;
    /// [`VaultError::KeyReplaced`] when another key was stored for the subject meanwhile (the
    /// stream cannot be opened: seal it again); database failures.
    pub async fn end_stream(&self, end: StreamEnd) -> Result<(), VaultError> {
        let StreamEnd {
            subject,
            key_id,
            unstored,
        } = end;
        let Some(wrapped) = unstored else {
            return Ok(());
        };
        let name = subject_key(subject);
        self.db
            .insert_key_if_absent(&name, key_id, &wrapped)
            .await?;
        match self.db.key(&name).await? {
            Some(db::KeyRow {
                key_id: stored,
                wrapped: Some(wrapped),
            }) if stored == key_id => {
                let key = self.unwrap_key(subject, key_id, &wrapped)?;
                // The subject may be cached as keyless from when the stream began.
                let epoch = self.cache.epoch();
                self.cache.put(subject, Some(key), epoch);
                Ok(())
            }
            Some(db::KeyRow { wrapped: None, .. }) => Err(VaultError::SubjectErased(subject)),
            _ => Err(VaultError::KeyReplaced { subject }),
        }
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
        self.watch.validate(&self.cache).await?;
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
            inner: StreamBE32::from_aead(key.cipher, (&nonce).into()),
            position: 0,
        }))
    }
}

#[cfg(test)]
mod tests {

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
        vault
            .end_stream(sealer.seal_last(&mut c).unwrap())
            .await
            .unwrap();
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
    async fn a_new_subjects_key_is_stored_only_when_its_stream_ends() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path()).await;
        let subject = Subject::Media(MediaId::generate());
        let mut abandoned = vault.stream_sealer(subject).await.unwrap();
        let mut chunk = b"first".to_vec();
        abandoned.seal_next(&mut chunk).unwrap();
        drop(abandoned);
        assert!(vault.db.key(&subject_key(subject)).await.unwrap().is_none());

        let (key_id, nonce, sealed) = seal(&vault, subject, &[b"whole"]).await;
        let row = vault.db.key(&subject_key(subject)).await.unwrap().unwrap();
        assert_eq!(row.key_id, key_id);
        let opened = open(&vault, subject, key_id, &nonce, &sealed)
            .await
            .unwrap();
        assert_eq!(opened.as_deref(), Some(&b"whole"[..]));

        // A second stream of the same subject uses the stored key.
        let (again, _, _) = seal(&vault, subject, &[b"more"]).await;
        assert_eq!(again, key_id);

        // Two streams begun before either ended: the second to end finds the key replaced.
        let racing = Subject::Media(MediaId::generate());
        let one = vault.stream_sealer(racing).await.unwrap();
        let two = vault.stream_sealer(racing).await.unwrap();
        vault
            .end_stream(one.seal_last(&mut Vec::new()).unwrap())
            .await
            .unwrap();
        assert!(matches!(
            vault.end_stream(two.seal_last(&mut Vec::new()).unwrap()).await,
            Err(VaultError::KeyReplaced { subject: s }) if s == racing
        ));
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

    #[tokio::test]
    async fn a_chunk_opens_by_its_position_alone_and_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path()).await;
        let subject = Subject::Media(MediaId::generate());
        let (key_id, nonce, sealed) = seal(&vault, subject, &[b"one.", b"two.", b"three"]).await;
        let opener = vault
            .stream_opener(subject, key_id, &nonce)
            .await
            .unwrap()
            .unwrap();
        let at = |position, last, chunk: &Vec<u8>| {
            let mut c = chunk.clone();
            opener.open_at(position, last, &mut c).map(|()| c)
        };
        assert_eq!(at(1, false, &sealed[1]).unwrap(), b"two.");
        assert_eq!(at(2, true, &sealed[2]).unwrap(), b"three");
        // Elsewhere, or with the wrong last flag, it does not open.
        assert!(at(0, false, &sealed[1]).is_err());
        assert!(at(2, false, &sealed[2]).is_err());
        assert!(at(1, true, &sealed[1]).is_err());
    }
}
