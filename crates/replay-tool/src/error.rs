//! What can go wrong, and the exit code each failure gives.

use kring_projections::{ProjectionError, SystemError};
use kring_store::anchor::AnchorError;
use kring_store::vault::VaultError;
use kring_store::StoreError;

/// The process exit codes, the same in `--help` and docs/replay-tool.md.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A finding: `verify` found a broken stream or global hash chain, a missing position, an
    /// anchor the log no longer holds or with a bad signature, or a read model that differs from
    /// a fresh replay of the log; or `anchor` refused because the log no longer holds the last
    /// anchor.
    pub const FINDING: u8 = 1;
    /// Bad usage: an unknown option or subcommand, a malformed id, time, purpose, stream name
    /// or position, an unknown projection name.
    pub const USAGE: u8 = 2;
    /// Not found: no such child, person, media item, no event in the stream asked for, an
    /// empty log to anchor.
    pub const NOT_FOUND: u8 = 3;
    /// The installation could not be opened or read: no data directory, no event log, no or a
    /// wrong master key, an unreachable database, an unreadable event, a failed rebuild, an
    /// unreadable anchor key or anchors file, a backend without a global chain to anchor.
    pub const STORE: u8 = 4;
}

/// Why a command could not do its work. Each variant maps to one exit code.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A bad argument the parser could not catch (an unknown projection name, say).
    #[error("{0}")]
    Usage(String),
    /// What was asked about is not in the log.
    #[error("{0}")]
    NotFound(String),
    /// The installation could not be opened.
    #[error("{}", describe_open(.0))]
    Open(#[from] SystemError),
    /// No master key to open the vault with.
    #[error("{0}")]
    NoMasterKey(String),
    /// The event log failed.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The key vault failed (a tampered ciphertext, a database error).
    #[error("key vault: {0}")]
    Vault(#[from] VaultError),
    /// The read side failed (a projection stopped on an event during a rebuild, say).
    #[error("{0}")]
    Projection(ProjectionError),
    /// The read-model database failed.
    #[error("read-model database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event this build cannot decode.
    #[error("{0}")]
    Corrupt(String),
    /// Local files (the temporary replay database, say).
    #[error("{0}")]
    Io(String),
    /// An anchor key, an anchors file, or an anchor refused.
    #[error("anchor: {0}")]
    Anchor(AnchorError),
}

impl From<AnchorError> for ToolError {
    fn from(e: AnchorError) -> Self {
        match e {
            AnchorError::Store(e) => Self::Store(e),
            other => Self::Anchor(other),
        }
    }
}

impl From<ProjectionError> for ToolError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::UnknownProjection(name) => Self::Usage(format!(
                "unknown projection {name:?}; known: {}",
                crate::rebuild::projection_names().join(", ")
            )),
            ProjectionError::Database(e) => Self::Database(e),
            ProjectionError::Store(e) => Self::Store(e),
            ProjectionError::Vault(e) => Self::Vault(e),
            other => Self::Projection(other),
        }
    }
}

impl From<serde_json::Error> for ToolError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(format!("payload: {e}"))
    }
}

impl ToolError {
    /// The exit code this failure ends the process with.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::NotFound(_) => exit::NOT_FOUND,
            Self::Open(_)
            | Self::NoMasterKey(_)
            | Self::Store(_)
            | Self::Vault(_)
            | Self::Projection(_)
            | Self::Database(_)
            | Self::Corrupt(_)
            | Self::Io(_) => exit::STORE,
            Self::Anchor(e) => match e {
                AnchorError::PreviousAnchorBroken { .. } => exit::FINDING,
                AnchorError::EmptyLog => exit::NOT_FOUND,
                AnchorError::MalformedPublicKey(_) => exit::USAGE,
                _ => exit::STORE,
            },
        }
    }

    /// The message on one line, as printed on stderr.
    #[must_use]
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }
}

/// `text` with line breaks folded into spaces.
#[must_use]
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn describe_open(e: &SystemError) -> String {
    match e {
        SystemError::NoDataDir(dir) => format!(
            "data directory {} does not exist (give --data-dir DIR, or set KRING_DATABASE_URL / KRING_EVENTSTORE_URL)",
            dir.display()
        ),
        SystemError::NoEventLog(dir) => format!(
            "{} holds no Kring event log (events.db); is it a Kring data directory?",
            dir.display()
        ),
        other => other.to_string(),
    }
}
