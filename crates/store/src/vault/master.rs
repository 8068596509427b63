//! The master key that wraps every data key.

use super::VaultError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use std::io::Write;
use std::path::Path;

/// The environment variable holding the master key (32 bytes, base64 or 64 hex digits).
pub const MASTER_KEY_ENV: &str = "KRING_MASTER_KEY";

/// 32 secret bytes.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    /// Parses base64 or hex.
    ///
    /// # Errors
    /// Anything that is not 32 bytes in either form.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| VaultError::MasterKey(e.to_string()))?
        } else {
            B64.decode(text)
                .map_err(|_| VaultError::MasterKey("not base64 or hex".into()))?
        };
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VaultError::MasterKey("must be exactly 32 bytes".into()))?;
        Ok(Self(bytes))
    }

    /// A fresh random key.
    #[must_use]
    pub fn generate() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// The key as base64, for `KRING_MASTER_KEY`.
    #[must_use]
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// From `KRING_MASTER_KEY` if set; otherwise from `<data_dir>/master.key`, generating it
    /// (owner-only permissions) on first use.
    ///
    /// # Errors
    /// A malformed key, or a key file that cannot be read or written.
    pub fn from_env_or_data_dir(data_dir: &Path) -> Result<Self, VaultError> {
        if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
            return Self::parse(&text);
        }
        let path = data_dir.join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                std::fs::create_dir_all(data_dir)
                    .map_err(|e| VaultError::MasterKey(e.to_string()))?;
                create_private(&path, key.to_base64().as_bytes())
                    .map_err(|e| VaultError::MasterKey(format!("{}: {e}", path.display())))?;
                Ok(key)
            }
            Err(e) => Err(VaultError::MasterKey(format!("{}: {e}", path.display()))),
        }
    }

    pub(crate) const fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Creates `path` (it must not exist) readable and writable by its owner only, writes `bytes`
/// and syncs them: for keys, secrets and tokens kept in the data directory.
///
/// # Errors
/// The file exists already (`AlreadyExists`) or cannot be written.
pub fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
