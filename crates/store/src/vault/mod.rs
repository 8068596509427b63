//! The key vault: one data key per subject (a person, a child, one content item), stored
//! wrapped by a master key in a database of its own (`vault.db` in the embedded default; tables
//! of their own on PostgreSQL), cached for replay speed. Erasures made by any process reach the
//! cache (`watch.rs`; ADR 0015): at once on SQLite, by notification on PostgreSQL.
//!
//! - [`KeyVault::seal`] turns a decided domain event into a [`NewEvent`] whose personal fields
//!   are encrypted (XChaCha20-Poly1305, RustCrypto) with their subject's key. The store refuses
//!   payloads that still hold a plain value.
//! - [`KeyVault::open`] opens a [`Sealed`] field, or says it was erased.
//! - [`KeyVault::stream_sealer`] and [`KeyVault::stream_opener`] seal and open long data (media
//!   bytes) chunk by chunk with a subject's key (the STREAM construction).
//! - [`KeyVault::erase`] destroys a subject's key: from then on every reader sees its fields as
//!   erased. On SQLite the row is overwritten with `secure_delete` on and the WAL is truncated,
//!   so no copy of the wrapped key lingers in free pages or the WAL; a truncation a reader held
//!   back is an error, never a silent success. The subject is first written to the
//!   [`ErasureLedger`] (when the vault has one), so a restored backup can be erased again.
//!
//! The master key comes from `KRING_MASTER_KEY` (32 bytes, base64 or hex) or, in the embedded
//! default, from `<data dir>/master.key`, generated on first use with owner-only permissions.
//! A check value sealed with it at creation makes a wrong master key fail at start-up.

mod db;
mod flight;
mod ledger;
mod master;
mod stream;
mod watch;

pub use ledger::{
    parse_subject_name, subject_name, ErasureLedger, LedgerEntry, LedgerError, LEDGER_FILE,
};
pub use master::{create_private, MasterKey, MASTER_KEY_ENV};
pub use stream::{StreamEnd, StreamOpener, StreamSealer, STREAM_NONCE_PREFIX, STREAM_TAG};

use crate::{Metadata, NewEvent, StoreError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use db::VaultDb;
use flight::SingleFlight;
use kring_domain::access::Subject;
use kring_domain::sealed::{Envelope, Opened, Sealed, PLAIN_KEY, SEALED_KEY};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;
use watch::{KeyCache, Watch};

const CHECK_PLAINTEXT: &[u8] = b"kring master key check v1";

/// What can go wrong with the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key does not open this vault: it is not the key the vault was created with.
    #[error("the master key does not match this data directory's key vault (check KRING_MASTER_KEY or <data dir>/master.key)")]
    WrongMasterKey,
    /// The master key could not be read or is malformed.
    #[error("master key: {0}")]
    MasterKey(String),
    /// New personal data for an erased subject is refused.
    #[error("{0:?} was erased; no new personal data can be sealed for it")]
    SubjectErased(Subject),
    /// Decryption failed although the key exists: the ciphertext or key was tampered with.
    #[error("sealed field of {subject:?} does not decrypt: tampered with or corrupt")]
    Undecryptable {
        /// Whose field.
        subject: Subject,
    },
    /// A stream of chunks is longer than its nonce counter allows (2³² − 1 chunks).
    #[error("data of {subject:?} is too long to seal as one stream")]
    StreamTooLong {
        /// Whose data.
        subject: Subject,
    },
    /// Another key was stored for a subject while a stream was sealed with a new one: the stream
    /// cannot be opened and must be sealed again.
    #[error(
        "another key of {subject:?} was stored while its data was being sealed; seal it again"
    )]
    KeyReplaced {
        /// Whose key.
        subject: Subject,
    },
    /// The vault's database failed.
    #[error("key vault database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The keys were destroyed, but their old copies could not yet be wiped from the vault's
    /// write-ahead log. Repeat the erasure (it is idempotent) once the reader is gone.
    #[error("the keys of {subjects} were destroyed, but the key vault's write-ahead log could not be truncated ({reason}); an old copy may remain on disk until the erasure is repeated")]
    SecureDeletion {
        /// Whose keys.
        subjects: String,
        /// Why the truncation did not complete.
        reason: String,
    },
    /// The erasure ledger could not be written or read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A payload is not the JSON the domain wrote.
    #[error("payload: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<VaultError> for StoreError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Database(e) => e.into(),
            other => Self::Backend(other.to_string()),
        }
    }
}

#[derive(Clone)]
struct DataKey {
    key_id: Uuid,
    cipher: XChaCha20Poly1305,
}

/// The key vault. Cheap to share behind an `Arc`.
pub struct KeyVault {
    db: VaultDb,
    master: XChaCha20Poly1305,
    cache: Arc<KeyCache>,
    /// Keeps the cache in step with erasures committed by other processes.
    watch: Watch,
    ledger: Option<ErasureLedger>,
    /// One load from the database per subject at a time: readers that miss the cache for the
    /// same subject at once (a page of posts by one teacher, a round opened by one person)
    /// wait for the first one's load instead of each taking a connection for the same row.
    loading: SingleFlight,
}

/// How a sealed field of another subject reads in an opened payload.
pub const WITHHELD: &str = "[withheld]";

/// What [`KeyVault::open_value_for`] did not open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opening {
    /// Fields whose subject was erased.
    pub erased: usize,
    /// Fields of other subjects.
    pub withheld: usize,
}

impl KeyVault {
    /// The vault in the SQLite file at `path` (`vault.db` in the embedded default).
    ///
    /// # Errors
    /// [`VaultError::WrongMasterKey`] when the vault was created with another master key.
    pub async fn open_sqlite(
        path: &std::path::Path,
        master: &MasterKey,
    ) -> Result<Self, VaultError> {
        Self::start(VaultDb::sqlite(path).await?, master).await
    }

    /// The vault in the SQLite file at `path`, after moving the keys an older installation kept
    /// in the SQLite file `legacy` (the event log's or the read models' file) into it; the old
    /// copies are then securely deleted from `legacy`.
    ///
    /// # Errors
    /// As [`KeyVault::open_sqlite`]; the move failed (it is repeated at the next start).
    pub async fn open_sqlite_moving_from(
        path: &std::path::Path,
        legacy: &std::path::Path,
        master: &MasterKey,
    ) -> Result<Self, VaultError> {
        db::move_sqlite_tables(legacy, path).await?;
        Self::open_sqlite(path, master).await
    }

    /// The vault in a PostgreSQL database.
    ///
    /// # Errors
    /// [`VaultError::WrongMasterKey`] when the vault was created with another master key.
    pub async fn open_postgres(url: &str, master: &MasterKey) -> Result<Self, VaultError> {
        Self::start(VaultDb::postgres(url).await?, master).await
    }

    async fn start(db: VaultDb, master: &MasterKey) -> Result<Self, VaultError> {
        db.migrate().await?;
        let cipher = XChaCha20Poly1305::new(master.bytes().into());
        match db.meta("master_check").await? {
            Some(stored) => {
                // A stored value shorter than a nonce is damaged: it opens with no key.
                let opened = split_nonce(&stored).and_then(|(nonce, ciphertext)| {
                    cipher
                        .decrypt(
                            nonce,
                            Payload {
                                msg: ciphertext,
                                aad: b"check",
                            },
                        )
                        .ok()
                });
                if opened.as_deref() != Some(CHECK_PLAINTEXT) {
                    return Err(VaultError::WrongMasterKey);
                }
            }
            None => {
                let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
                let sealed = cipher
                    .encrypt(
                        &nonce,
                        Payload {
                            msg: CHECK_PLAINTEXT,
                            aad: b"check",
                        },
                    )
                    .map_err(|_| VaultError::MasterKey("cannot seal the check value".into()))?;
                let mut stored = nonce.to_vec();
                stored.extend(sealed);
                db.set_meta_if_absent("master_check", &stored).await?;
                // Another process may have won the race with another key: check again.
                return Box::pin(Self::start(db, master)).await;
            }
        }
        let cache = Arc::new(KeyCache::default());
        let watch = Watch::start(&db, Arc::clone(&cache)).await?;
        Ok(Self {
            db,
            master: cipher,
            cache,
            watch,
            ledger: None,
            loading: SingleFlight::default(),
        })
    }

    /// Encodes a decided domain event for the store, sealing every personal field with its
    /// subject's key (created on first use).
    ///
    /// # Errors
    /// [`VaultError::SubjectErased`] for new data of an erased subject; database failures.
    pub async fn seal(
        &self,
        event: &kring_domain::Event,
        meta: Metadata,
    ) -> Result<NewEvent, VaultError> {
        let mut payload = event.to_payload()?;
        self.seal_value(&mut payload).await?;
        Ok(NewEvent::new(
            event.event_type(),
            event.schema_version(),
            &payload,
            meta,
        ))
    }

    /// Seals many decided events at once, as [`KeyVault::seal`] seals one, in order: the keys
    /// of all their subjects are read in one query and the missing ones created in one
    /// transaction — one durable write for the lot instead of one per new subject (a bulk
    /// import creates a key for nearly every post, media item and conversation). All or
    /// nothing: when one subject was erased, nothing is sealed and no key is created.
    ///
    /// # Errors
    /// As [`KeyVault::seal`].
    pub async fn seal_all<'e>(
        &self,
        events: impl IntoIterator<Item = (&'e kring_domain::Event, Metadata)>,
    ) -> Result<Vec<NewEvent>, VaultError> {
        struct Pending {
            event_type: &'static str,
            schema_version: u16,
            payload: Value,
            meta: Metadata,
            fields: Vec<(String, Subject, Vec<u8>)>,
        }
        let mut pending = Vec::new();
        let mut subjects = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (event, meta) in events {
            let payload = event.to_payload()?;
            let mut paths = Vec::new();
            collect_marked(&payload, PLAIN_KEY, &mut paths);
            let mut fields = Vec::with_capacity(paths.len());
            for path in paths {
                let slot = if path.is_empty() {
                    Some(&payload)
                } else {
                    payload.pointer(&path)
                };
                let Some(marker) = slot.and_then(|slot| slot.get(PLAIN_KEY)) else {
                    continue;
                };
                let subject: Subject = serde_json::from_value(marker["subject"].clone())?;
                let plaintext = serde_json::to_vec(&marker["value"])?;
                if seen.insert(subject) {
                    subjects.push(subject);
                }
                fields.push((path, subject, plaintext));
            }
            pending.push(Pending {
                event_type: event.event_type(),
                schema_version: event.schema_version(),
                payload,
                meta,
                fields,
            });
        }
        let keys = if subjects.is_empty() {
            std::collections::HashMap::new()
        } else {
            // One check for erasures by other processes for the whole batch.
            self.watch.validate(&self.cache).await?;
            self.keys_for_sealing(&subjects).await?
        };
        pending
            .into_iter()
            .map(|mut p| {
                for (path, subject, plaintext) in p.fields {
                    let key = keys
                        .get(&subject)
                        .ok_or(VaultError::SubjectErased(subject))?;
                    let envelope = seal_with(key, subject, &plaintext)?;
                    if let Some(slot) = pointer_mut(&mut p.payload, &path) {
                        *slot = serde_json::json!({ SEALED_KEY: envelope });
                    }
                }
                Ok(NewEvent::new(
                    p.event_type,
                    p.schema_version,
                    &p.payload,
                    p.meta,
                ))
            })
            .collect()
    }

    /// The keys to seal for `subjects` (distinct), created where missing, as
    /// [`KeyVault::key`] with `create` gives them one by one; the caller has just validated
    /// the cache. Nothing is created when one of them is erased.
    async fn keys_for_sealing(
        &self,
        subjects: &[Subject],
    ) -> Result<std::collections::HashMap<Subject, DataKey>, VaultError> {
        let mut keys = std::collections::HashMap::with_capacity(subjects.len());
        let mut to_read = Vec::new();
        for &subject in subjects {
            match self.cache.get(subject) {
                Some(None) => return Err(VaultError::SubjectErased(subject)),
                Some(Some(key)) => {
                    keys.insert(subject, key);
                    // On PostgreSQL another process's erasure reaches the cache asynchronously:
                    // the database is asked whether the key still exists (see `key`).
                    if self.watch.is_asynchronous() {
                        to_read.push(subject);
                    }
                }
                None => to_read.push(subject),
            }
        }
        if to_read.is_empty() {
            return Ok(keys);
        }
        let epoch = self.cache.epoch();
        let names: Vec<String> = to_read.iter().map(|s| subject_key(*s)).collect();
        let mut rows = self.db.keys(&names).await?;
        for (subject, name) in to_read.iter().zip(&names) {
            if let Some(db::KeyRow { wrapped: None, .. }) = rows.get(name) {
                if keys.contains_key(subject) {
                    self.cache.evict([*subject]);
                } else {
                    self.cache.put(*subject, None, epoch);
                }
                return Err(VaultError::SubjectErased(*subject));
            }
        }
        let mut created = Vec::new();
        for (subject, name) in to_read.iter().zip(&names) {
            if !rows.contains_key(name) {
                let (key_id, stored) = self.new_wrapped_key(*subject)?;
                created.push((name.clone(), key_id, stored));
            }
        }
        if !created.is_empty() {
            // Committed before any event that uses them: a crash can orphan keys, never lose
            // one. A racing process may have created or erased some first: the insert never
            // replaces a row, and the winners are read back.
            self.db.insert_keys_if_absent(&created).await?;
            let names: Vec<String> = created.into_iter().map(|(name, _, _)| name).collect();
            rows.extend(self.db.keys(&names).await?);
        }
        for (subject, name) in to_read.iter().zip(&names) {
            match rows.remove(name) {
                Some(db::KeyRow {
                    key_id,
                    wrapped: Some(wrapped),
                }) => {
                    if keys.contains_key(subject) {
                        continue;
                    }
                    let key = self.unwrap_key(*subject, key_id, &wrapped)?;
                    self.cache.put(*subject, Some(key.clone()), epoch);
                    keys.insert(*subject, key);
                }
                Some(db::KeyRow { wrapped: None, .. }) => {
                    self.cache.put(*subject, None, epoch);
                    return Err(VaultError::SubjectErased(*subject));
                }
                None => return Err(VaultError::SubjectErased(*subject)),
            }
        }
        Ok(keys)
    }

    /// Replaces every `{"$plain": …}` marker in `value` by its sealed envelope.
    ///
    /// # Errors
    /// As [`KeyVault::seal`].
    pub async fn seal_value(&self, value: &mut Value) -> Result<(), VaultError> {
        let mut plains = Vec::new();
        collect_marked(value, PLAIN_KEY, &mut plains);
        if plains.is_empty() {
            return Ok(());
        }
        // One check for erasures by other processes for the whole payload.
        self.watch.validate(&self.cache).await?;
        for path in plains {
            let Some(slot) = pointer_mut(value, &path) else {
                continue;
            };
            let Some(marker) = slot.get(PLAIN_KEY).cloned() else {
                continue;
            };
            let subject: Subject = serde_json::from_value(marker["subject"].clone())?;
            let plaintext = serde_json::to_vec(&marker["value"])?;
            let envelope = self.encrypt_validated(subject, &plaintext).await?;
            *slot = serde_json::json!({ SEALED_KEY: envelope });
        }
        Ok(())
    }

    /// Replaces every sealed envelope in a stored payload by its plain value, or by
    /// `"[erased]"` when its subject's key was destroyed; returns how many were erased.
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] for a tampered ciphertext; database failures.
    pub async fn open_value(&self, value: &mut Value) -> Result<usize, VaultError> {
        Ok(self.open_value_for(value, |_| true).await?.erased)
    }

    /// Like [`KeyVault::open_value`], but opens only the fields whose subject `allow`s; every
    /// other sealed field becomes [`WITHHELD`] (an export shows a subject their own data, not
    /// the personal data of others in the same events: GDPR art. 15(4)).
    ///
    /// # Errors
    /// As [`KeyVault::open_value`].
    pub async fn open_value_for(
        &self,
        value: &mut Value,
        allow: impl Fn(&Subject) -> bool + Send,
    ) -> Result<Opening, VaultError> {
        let mut opening = Opening::default();
        // A plain marker comes from an upcast of a payload written before the field was
        // sealed: it is shown as a sealed field of its subject would be.
        let mut plains = Vec::new();
        collect_marked(value, PLAIN_KEY, &mut plains);
        for path in plains {
            let Some(slot) = pointer_mut(value, &path) else {
                continue;
            };
            let marker = slot[PLAIN_KEY].take();
            let subject: Subject = serde_json::from_value(marker["subject"].clone())?;
            *slot = if !allow(&subject) {
                opening.withheld += 1;
                Value::String(WITHHELD.to_owned())
            } else if self.is_erased(subject).await? {
                opening.erased += 1;
                Value::String(kring_domain::sealed::ERASED.to_owned())
            } else {
                marker["value"].clone()
            };
        }
        let mut paths = Vec::new();
        collect_marked(value, SEALED_KEY, &mut paths);
        if paths.is_empty() {
            return Ok(opening);
        }
        // One check for erasures by other processes for the whole payload.
        self.watch.validate(&self.cache).await?;
        for path in paths {
            let Some(slot) = pointer_mut(value, &path) else {
                continue;
            };
            let envelope: Envelope = serde_json::from_value(slot[SEALED_KEY].clone())?;
            *slot = if allow(&envelope.subject) {
                match self.decrypt_validated(&envelope).await? {
                    Some(bytes) => serde_json::from_slice(&bytes)?,
                    None => {
                        opening.erased += 1;
                        Value::String(kring_domain::sealed::ERASED.to_owned())
                    }
                }
            } else {
                opening.withheld += 1;
                Value::String(WITHHELD.to_owned())
            };
        }
        Ok(opening)
    }

    /// Opens a sealed field: its value, or erased when the subject's key was destroyed.
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] for a tampered ciphertext; database failures.
    pub async fn open<T: DeserializeOwned + Clone>(
        &self,
        sealed: &Sealed<T>,
    ) -> Result<Opened<T>, VaultError> {
        let plaintext = match sealed.envelope() {
            Some(envelope) => self.decrypt(envelope).await?,
            None => None,
        };
        sealed.open_with(|_| Ok::<_, VaultError>(plaintext))
    }

    /// Opens a field to text: its value, or `[erased]`.
    ///
    /// # Errors
    /// As [`KeyVault::open`].
    pub async fn open_text(&self, sealed: &Sealed<String>) -> Result<String, VaultError> {
        Ok(self.open(sealed).await?.to_string())
    }

    /// Encrypts `plaintext` for `subject` (used for media bytes on disk too).
    ///
    /// # Errors
    /// [`VaultError::SubjectErased`] for an erased subject; database failures.
    pub async fn encrypt(
        &self,
        subject: Subject,
        plaintext: &[u8],
    ) -> Result<Envelope, VaultError> {
        self.watch.validate(&self.cache).await?;
        self.encrypt_validated(subject, plaintext).await
    }

    /// [`KeyVault::encrypt`] after the cache was brought up to date with erasures.
    async fn encrypt_validated(
        &self,
        subject: Subject,
        plaintext: &[u8],
    ) -> Result<Envelope, VaultError> {
        let key = self
            .key(subject, true)
            .await?
            .ok_or(VaultError::SubjectErased(subject))?;
        seal_with(&key, subject, plaintext)
    }

    /// Decrypts an envelope: the plaintext, or `None` when the subject's key was destroyed.
    ///
    /// # Errors
    /// [`VaultError::Undecryptable`] when the key exists but the envelope does not open.
    pub async fn decrypt(&self, envelope: &Envelope) -> Result<Option<Vec<u8>>, VaultError> {
        self.watch.validate(&self.cache).await?;
        self.decrypt_validated(envelope).await
    }

    /// [`KeyVault::decrypt`] after the cache was brought up to date with erasures.
    async fn decrypt_validated(&self, envelope: &Envelope) -> Result<Option<Vec<u8>>, VaultError> {
        let subject = envelope.subject;
        let Some(key) = self.key(subject, false).await? else {
            return Ok(None);
        };
        if key.key_id != envelope.key_id {
            return Err(VaultError::Undecryptable { subject });
        }
        let bad = |_| VaultError::Undecryptable { subject };
        let nonce = B64.decode(&envelope.nonce).map_err(bad)?;
        let ciphertext = B64.decode(&envelope.ciphertext).map_err(bad)?;
        if nonce.len() != 24 {
            return Err(VaultError::Undecryptable { subject });
        }
        let aad = aad(subject, key.key_id);
        key.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map(Some)
            .map_err(|_| VaultError::Undecryptable { subject })
    }

    /// Records every erasure in `ledger` from now on, before the key is destroyed.
    #[must_use]
    pub fn with_ledger(mut self, ledger: ErasureLedger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The erasure ledger this vault writes, if any.
    #[must_use]
    pub fn ledger(&self) -> Option<&ErasureLedger> {
        self.ledger.as_ref()
    }

    /// Destroys `subject`'s key. Idempotent; afterwards nothing sealed for it can be opened
    /// and nothing new can be sealed for it. The erasure is written to the ledger first, so an
    /// acknowledged erasure is never missing from it.
    ///
    /// # Errors
    /// The ledger cannot be written (then nothing was destroyed); database failures;
    /// [`VaultError::SecureDeletion`] when the old copy could not yet be wiped from disk.
    pub async fn erase(&self, subject: Subject) -> Result<(), VaultError> {
        if let Some(ledger) = self.ledger.clone() {
            let at = chrono::Utc::now();
            let path = ledger.path().to_owned();
            tokio::task::spawn_blocking(move || ledger.record(subject, at))
                .await
                .map_err(|e| LedgerError::Io {
                    path,
                    source: std::io::Error::other(e),
                })??;
        }
        let outcome = self.db.erase(&[subject_key(subject)]).await;
        // Even when the wipe failed, the key row is gone: do not serve it from the cache. A key
        // being read for it concurrently is not cached either (the eviction moves the epoch).
        self.cache.evict([subject]);
        outcome
    }

    /// Destroys the keys of every `subjects` again, without writing the ledger (they come from
    /// it): used after a restore. One transaction and one secure deletion for all of them.
    ///
    /// # Errors
    /// As [`KeyVault::erase`].
    pub async fn erase_again(&self, subjects: &[Subject]) -> Result<(), VaultError> {
        let names: Vec<String> = subjects.iter().map(|s| subject_key(*s)).collect();
        let outcome = self.db.erase(&names).await;
        self.cache.evict(subjects.iter().copied());
        outcome
    }

    /// Closes the vault's database connections.
    pub async fn close(&self) {
        self.watch.close().await;
        self.db.close().await;
    }

    /// Whether this vault currently learns of other processes' erasures as they commit: always
    /// on SQLite; on PostgreSQL while its listener is connected and caught up (until then every
    /// cached key is checked against the erasures table before it is used).
    #[must_use]
    pub fn is_listening(&self) -> bool {
        self.watch.is_listening()
    }

    /// Brings the key cache up to date with every erasure committed before this call, in any
    /// process. On PostgreSQL another process's erasure otherwise reaches the cache when its
    /// notification arrives ([`KeyVault::is_listening`]); after this call, every open reports
    /// it at once. A read that must see a write made through another process (a read at that
    /// write's position) calls it before opening anything. One indexed read on PostgreSQL; on
    /// SQLite every use already checks.
    ///
    /// # Errors
    /// Database failures.
    pub async fn sync_erasures(&self) -> Result<(), VaultError> {
        self.watch.sync(&self.cache).await
    }

    /// Whether `subject`'s key was destroyed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn is_erased(&self, subject: Subject) -> Result<bool, VaultError> {
        Ok(matches!(
            self.db.key(&subject_key(subject)).await?,
            Some(db::KeyRow { wrapped: None, .. })
        ))
    }

    /// `subject`'s key, created when `create`s. The caller has just brought the cache up to
    /// date with erasures committed by other processes ([`Watch::validate`]): a cached key is
    /// used only if its subject was not erased before the operation began.
    async fn key(&self, subject: Subject, create: bool) -> Result<Option<DataKey>, VaultError> {
        let name = subject_key(subject);
        if let Some(cached) = self.cached(subject, &name, create).await? {
            return Ok(cached);
        }
        let _turn = self.loading.turn(subject).await;
        // Whoever loaded the key while this reader waited has cached it (unless an erasure
        // was processed meanwhile: then it is read again).
        if let Some(cached) = self.cached(subject, &name, create).await? {
            return Ok(cached);
        }
        let epoch = self.cache.epoch();
        let row = match self.db.key(&name).await? {
            Some(row) => Some(row),
            None if create => {
                let (key_id, stored) = self.new_wrapped_key(subject)?;
                // Committed before any event that uses it: a crash can orphan a key, never
                // lose one. A racing process may have created one first, or erased the subject
                // (its row stays, without a key): the insert never replaces a row, and the
                // winner is read back.
                self.db.insert_key_if_absent(&name, key_id, &stored).await?;
                self.db.key(&name).await?
            }
            // No key yet: nothing to cache (a key created later must not read as erased).
            None => return Ok(None),
        };
        let key = match row {
            Some(db::KeyRow {
                key_id,
                wrapped: Some(wrapped),
            }) => Some(self.unwrap_key(subject, key_id, &wrapped)?),
            Some(db::KeyRow { wrapped: None, .. }) => None,
            None => return Ok(None),
        };
        self.cache.put(subject, key.clone(), epoch);
        if key.is_none() && create {
            return Err(VaultError::SubjectErased(subject));
        }
        Ok(key)
    }

    /// `subject`'s key as the cache has it (`Some(None)`: erased), `None` when it is not cached.
    #[allow(
        clippy::option_option,
        reason = "not cached, cached as erased and cached: the caller tells all three apart"
    )]
    async fn cached(
        &self,
        subject: Subject,
        name: &str,
        create: bool,
    ) -> Result<Option<Option<DataKey>>, VaultError> {
        match self.cache.get(subject) {
            Some(None) if create => Err(VaultError::SubjectErased(subject)),
            // On PostgreSQL another process's erasure reaches this cache asynchronously: a seal
            // (rare next to opens) asks the database whether the key still exists, so new data
            // is never sealed for a subject whose erasure was acknowledged anywhere.
            Some(Some(key)) if create && self.watch.is_asynchronous() => {
                if let Some(db::KeyRow { wrapped: None, .. }) = self.db.key(name).await? {
                    self.cache.evict([subject]);
                    return Err(VaultError::SubjectErased(subject));
                }
                Ok(Some(Some(key)))
            }
            cached => Ok(cached),
        }
    }

    /// A new random data key for `subject`: its id and the key wrapped by the master key.
    fn new_wrapped_key(&self, subject: Subject) -> Result<(Uuid, Vec<u8>), VaultError> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let key_id = Uuid::now_v7();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let wrapped = self
            .master
            .encrypt(
                &nonce,
                Payload {
                    msg: key.as_slice(),
                    aad: &aad(subject, key_id),
                },
            )
            .map_err(|_| VaultError::MasterKey("cannot wrap a data key".into()))?;
        let mut stored = nonce.to_vec();
        stored.extend(wrapped);
        Ok((key_id, stored))
    }

    /// Unwraps a stored data key with the master key.
    fn unwrap_key(
        &self,
        subject: Subject,
        key_id: Uuid,
        wrapped: &[u8],
    ) -> Result<DataKey, VaultError> {
        let (nonce, ciphertext) = split_nonce(wrapped).ok_or(VaultError::WrongMasterKey)?;
        let raw = self
            .master
            .decrypt(
                nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad(subject, key_id),
                },
            )
            .map_err(|_| VaultError::WrongMasterKey)?;
        let cipher =
            XChaCha20Poly1305::new_from_slice(&raw).map_err(|_| VaultError::WrongMasterKey)?;
        Ok(DataKey { key_id, cipher })
    }
}

/// Encrypts `plaintext` for `subject` with its data key `key`.
fn seal_with(key: &DataKey, subject: Subject, plaintext: &[u8]) -> Result<Envelope, VaultError> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = aad(subject, key.key_id);
    let ciphertext = key
        .cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| VaultError::Undecryptable { subject })?;
    Ok(Envelope {
        subject,
        key_id: key.key_id,
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(ciphertext),
    })
}

/// Splits a stored `nonce ‖ ciphertext` into its 24-byte nonce and the rest; `None` when it is
/// shorter than a nonce (damaged: `XNonce::from_slice` would panic on it).
fn split_nonce(stored: &[u8]) -> Option<(&XNonce, &[u8])> {
    (stored.len() >= 24).then(|| {
        let (nonce, rest) = stored.split_at(24);
        (XNonce::from_slice(nonce), rest)
    })
}

/// The vault's name for a subject: `child:<uuid>` etc.
fn subject_key(subject: Subject) -> String {
    subject_name(subject)
}

/// Binds a ciphertext to its subject and key, so an envelope cannot be moved to another.
fn aad(subject: Subject, key_id: Uuid) -> Vec<u8> {
    format!("{}|{key_id}", subject_key(subject)).into_bytes()
}

/// JSON pointers of every `{marker: …}` object (`$plain` or `$sealed`) in `value`.
fn collect_marked(value: &Value, marker: &str, out: &mut Vec<String>) {
    fn walk(value: &Value, marker: &str, path: &mut String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) if map.len() == 1 && map.contains_key(marker) => {
                out.push(path.clone());
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(v, marker, path, out);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    walk(v, marker, path, out);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    walk(value, marker, &mut String::new(), out);
}

fn pointer_mut<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    if path.is_empty() {
        Some(value)
    } else {
        value.pointer_mut(path)
    }
}

/// Whether a canonical payload still holds a plain (unsealed) personal value. Inside JSON
/// strings a quote is always escaped, so the sequence can only be an object key.
#[must_use]
pub fn holds_plain(payload: &str) -> bool {
    payload.contains(&format!("\"{PLAIN_KEY}\":"))
}
