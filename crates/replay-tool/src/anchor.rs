//! `anchor` and `anchor-key`: sign the log's head into an anchors file kept outside the
//! database, and make the key that signs it (`kring_store::anchor` has the format).

use crate::error::ToolError;
use crate::output::{Report, Rows};
use kring_store::anchor::{anchor_head, Anchor, AnchorKey};
use kring_store::DynStore;
use serde::Serialize;
use std::path::Path;

/// The anchor `anchor` appended.
#[derive(Debug, Clone, Serialize)]
pub struct Anchored {
    /// The anchors file.
    pub file: String,
    /// The anchor as written.
    pub anchor: Anchor,
}

/// Signs the log's head with the key at `key` and appends the anchor to `anchors`.
///
/// # Errors
/// An unreadable key, the last anchor no longer held by the log, an empty log, a backend
/// without a global chain, file and store failures.
pub async fn anchor(store: &DynStore, key: &Path, anchors: &Path) -> Result<Anchored, ToolError> {
    let key = AnchorKey::read(key)?;
    let anchor = anchor_head(store.as_ref(), &key, anchors).await?;
    Ok(Anchored {
        file: anchors.display().to_string(),
        anchor,
    })
}

impl Report for Anchored {
    fn summary(&self) -> Vec<String> {
        vec![format!(
            "Anchored position {} in {}",
            self.anchor.position, self.file
        )]
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&["position", "log_hash", "signed_at", "key_id"]);
        rows.push(vec![
            self.anchor.position.to_string(),
            self.anchor.log_hash.to_string(),
            self.anchor.signed_at.to_rfc3339(),
            self.anchor.key_id.clone(),
        ]);
        rows
    }
}

/// A new anchor key.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    /// The key file written.
    pub file: String,
    /// The public key, for `verify --anchor-public-key`.
    pub public_key: String,
    /// The key id anchors signed with it carry.
    pub key_id: String,
}

/// Generates a key and writes it to a new file at `path`.
///
/// # Errors
/// The file exists already or cannot be written.
pub fn new_key(path: &Path) -> Result<NewKey, ToolError> {
    let key = AnchorKey::generate()?;
    key.write_new(path)?;
    let public = key.public_key();
    Ok(NewKey {
        file: path.display().to_string(),
        public_key: public.to_string(),
        key_id: public.key_id(),
    })
}

impl Report for NewKey {
    fn summary(&self) -> Vec<String> {
        vec![format!(
            "Wrote a new anchor key to {}; keep it outside the database and its backups. \
             Verify with --anchor-public-key {}",
            self.file, self.public_key
        )]
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&["file", "public_key", "key_id"]);
        rows.push(vec![
            self.file.clone(),
            self.public_key.clone(),
            self.key_id.clone(),
        ]);
        rows
    }
}
