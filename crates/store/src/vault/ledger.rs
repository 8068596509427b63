//! The erasure ledger: an append-only text file naming every subject whose key was destroyed,
//! kept outside what a backup holds, so that a restore destroys those keys again.
//!
//! One line per erasure: `<RFC 3339 time> <subject>`, e.g.
//! `2026-05-04T09:30:00.000000Z person:0190c3…`. A line is written and synced before the key is
//! destroyed, so an acknowledged erasure is always in the ledger. The ledger holds no personal
//! data: subject ids are pseudonymous and the erased data is unreadable anyway.

use chrono::{DateTime, SecondsFormat, Utc};
use kring_domain::access::Subject;
use kring_domain::{ChildId, MediaId, PersonId, PostId};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The ledger's file name in the data directory.
pub const LEDGER_FILE: &str = "erasures.ledger";

/// What can go wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file could not be read, written or synced.
    #[error("erasure ledger {path}: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not `<time> <subject>`: the file was edited or damaged.
    #[error("erasure ledger {path}, line {line}: {reason} (each line must read `<RFC 3339 time> <kind>:<uuid>`)")]
    Malformed {
        /// The ledger file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// One recorded erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    /// When the key was destroyed.
    pub at: DateTime<Utc>,
    /// Whose key.
    pub subject: Subject,
}

/// The ledger file of an installation.
#[derive(Debug, Clone)]
pub struct ErasureLedger {
    path: PathBuf,
}

impl ErasureLedger {
    /// The ledger at `path` (created on the first erasure, or by [`ErasureLedger::create`]).
    #[must_use]
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The ledger in `data_dir`.
    #[must_use]
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::at(data_dir.join(LEDGER_FILE))
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// Creates the (empty) file when missing, owner-only, so its absence later says it was lost.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(&self) -> Result<(), LedgerError> {
        self.open_for_append().map(drop)
    }

    fn io(&self, source: std::io::Error) -> LedgerError {
        LedgerError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn open_for_append(&self) -> Result<std::fs::File, LedgerError> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&self.path).map_err(|e| self.io(e))
    }

    /// Appends `subject` with the time `at` and syncs the file. One `write` of one short line
    /// on a file opened for appending: lines of concurrent processes do not interleave.
    ///
    /// # Errors
    /// The file cannot be written or synced.
    pub fn record(&self, subject: Subject, at: DateTime<Utc>) -> Result<(), LedgerError> {
        let line = format!(
            "{} {}\n",
            at.to_rfc3339_opts(SecondsFormat::Micros, true),
            subject_name(subject)
        );
        let mut file = self.open_for_append()?;
        file.write_all(line.as_bytes()).map_err(|e| self.io(e))?;
        file.sync_data().map_err(|e| self.io(e))
    }

    /// Every recorded erasure, oldest first; none when the file does not exist.
    ///
    /// # Errors
    /// The file cannot be read, or a line is malformed.
    pub fn entries(&self) -> Result<Vec<LedgerEntry>, LedgerError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut entries = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| self.io(e))?;
            if line.trim().is_empty() {
                continue;
            }
            let malformed = |reason: String| LedgerError::Malformed {
                path: self.path.clone(),
                line: i + 1,
                reason,
            };
            let (at, subject) = line
                .split_once(' ')
                .ok_or_else(|| malformed("no space between time and subject".into()))?;
            let at = DateTime::parse_from_rfc3339(at)
                .map_err(|e| malformed(format!("time {at:?}: {e}")))?
                .with_timezone(&Utc);
            let subject = parse_subject_name(subject.trim()).map_err(malformed)?;
            entries.push(LedgerEntry { at, subject });
        }
        Ok(entries)
    }
}

/// The vault's and the ledger's name for a subject: `child:<uuid>` etc.
#[must_use]
pub fn subject_name(subject: Subject) -> String {
    let kind = match subject {
        Subject::Person(_) => "person",
        Subject::Child(_) => "child",
        Subject::Post(_) => "post",
        Subject::Media(_) => "media",
    };
    format!("{kind}:{}", subject.uuid())
}

/// The subject a [`subject_name`] names.
///
/// # Errors
/// An unknown kind or a malformed UUID, described.
pub fn parse_subject_name(name: &str) -> Result<Subject, String> {
    let (kind, id) = name
        .split_once(':')
        .ok_or_else(|| format!("subject {name:?} is not `<kind>:<uuid>`"))?;
    let uuid: Uuid = id.parse().map_err(|e| format!("subject {name:?}: {e}"))?;
    match kind {
        "person" => Ok(Subject::Person(PersonId::from_uuid(uuid))),
        "child" => Ok(Subject::Child(ChildId::from_uuid(uuid))),
        "post" => Ok(Subject::Post(PostId::from_uuid(uuid))),
        "media" => Ok(Subject::Media(MediaId::from_uuid(uuid))),
        other => Err(format!(
            "unknown subject kind {other:?} (person, child, post or media)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_erasures_read_back_in_order_and_a_damaged_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ErasureLedger::in_data_dir(dir.path());
        assert!(ledger.entries().unwrap().is_empty(), "no file, no entries");
        let child = Subject::Child(ChildId::generate());
        let media = Subject::Media(MediaId::generate());
        let at = Utc::now();
        ledger.record(child, at).unwrap();
        ledger.record(media, at).unwrap();
        let entries = ledger.entries().unwrap();
        assert_eq!(
            entries.iter().map(|e| e.subject).collect::<Vec<_>>(),
            vec![child, media]
        );
        assert_eq!(entries[0].at.timestamp_micros(), at.timestamp_micros());
        std::fs::write(ledger.path(), "2026-01-01T00:00:00Z pupil:123\n").unwrap();
        let err = ledger.entries().unwrap_err();
        assert!(
            matches!(err, LedgerError::Malformed { line: 1, .. }),
            "{err}"
        );
    }
}
