//! The command line: subcommands, options, help texts.

use crate::output::Format;
use crate::time::parse_time;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use kring_domain::{ChildId, MediaId, PersonId, Purpose, StreamName};
use kring_store::anchor::AnchorPublicKey;
use std::path::PathBuf;
use std::str::FromStr;

/// The exit codes, as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  verify found a finding: a broken stream or global hash chain, a missing position, an anchor the
     log no longer holds or with a bad signature, or a read model that differs from a fresh replay;
     anchor refused because the log no longer holds the last anchor
  2  bad usage: unknown option, malformed id, time, purpose, stream, position or public key,
     unknown projection
  3  not found: no such child, person or media item in the log, no event in the stream asked for,
     an empty log to anchor
  4  the installation could not be opened or read: no data directory or event log, no or a wrong
     master key, an unreachable database, an unreadable event, a failed rebuild, an unreadable
     anchor key or anchors file, a backend without a global chain to anchor

Times are RFC 3339, e.g. 2026-09-01T08:00:00Z. Everything but `rebuild` leaves the databases as
they are; `anchor` appends to the anchors file, `anchor-key` writes a new key file.";

/// Work with Kring's event log directly: rebuild read models, replay consent history as of any
/// moment, check who could see a photo when, verify the log and the read models, export
/// everything about a person or child.
///
/// Opens the same installation as `kring-api`: the SQLite files in --data-dir by default, or
/// the databases `KRING_DATABASE_URL` (PostgreSQL) and `KRING_EVENTSTORE_URL` (EventStoreDB) name.
/// The master key comes from `KRING_MASTER_KEY` or DIR/master.key.
#[derive(Debug, Parser)]
#[command(name = "replay-tool", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The data directory of the embedded default (event log, read models, master key).
    #[arg(
        long,
        global = true,
        env = "KRING_DATA_DIR",
        value_name = "DIR",
        default_value = kring_projections::system::DEFAULT_DATA_DIR
    )]
    pub data_dir: PathBuf,

    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rebuild read models from zero (all by default) and switch to them atomically.
    ///
    /// A fresh generation of tables fills from position 0 while the current one keeps
    /// serving; then the views switch. Prints events processed, duration and events/s.
    /// The only subcommand that writes.
    Rebuild {
        /// A read model to rebuild (repeatable): consent, memberships, conversations,
        /// absences, activities, visibility, outbox, `access_log`, reads.
        #[arg(long = "projection", value_name = "NAME")]
        projections: Vec<String>,
    },

    /// A child's consent audit trail, from the event log alone.
    ///
    /// Every decision in order: time, guardian, purpose, granted or withdrawn, policy
    /// version, method, event id and position, and whether consent for the purpose held
    /// after it. No read model is consulted.
    ConsentHistory {
        /// The child.
        #[arg(long, value_name = "ID", value_parser = parse_id::<ChildId>)]
        child: ChildId,
        /// Only decisions for this purpose.
        #[arg(long, value_name = "PURPOSE", value_parser = parse_purpose)]
        purpose: Option<Purpose>,
        /// Only decisions at or after this time.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<DateTime<Utc>>,
        /// Only decisions before this time.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: Option<DateTime<Utc>>,
    },

    /// A child's effective consent per purpose at a moment, with the decisions that made it so.
    ConsentAsOf {
        /// The child.
        #[arg(long, value_name = "ID", value_parser = parse_id::<ChildId>)]
        child: ChildId,
        /// The moment.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: DateTime<Utc>,
    },

    /// Who could see a media item at a moment and why; who was withheld because of which
    /// child and purpose.
    ///
    /// Replays the school's roster, the post and the tagged children's consents up to the
    /// moment and applies the domain's visibility rule. JSON: `{media_id, at, viewers:
    /// [{person_id, reason}], withheld: [{person_id, because: [{child_id, purpose}]}]}`.
    WhoMaySee {
        /// The media item.
        #[arg(long, value_name = "ID", value_parser = parse_id::<MediaId>)]
        media: MediaId,
        /// The moment [default: now, with every event of the log].
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
    },

    /// Check every stream's hash chain, the global chain over the log, the signed anchors, and
    /// that each read model equals a fresh replay.
    ///
    /// The global chain links every event to the event at the previous position, and positions
    /// must be dense: a deleted event or stream is named (EventStoreDB keeps no global chain;
    /// the report says so). With --anchors and --anchor-public-key, every anchor's signature is
    /// checked and the log must still hold each anchored hash at its position: a rewritten and
    /// rehashed log, or a tail cut off after an anchor, is named. The fresh replay goes into a
    /// temporary SQLite database, each read model up to the position its serving copy reached;
    /// contents are compared by checksum. Exits 1 naming the first finding.
    Verify {
        /// The anchors file to hold the log against (one signed JSON anchor per line).
        #[arg(
            long,
            env = "KRING_ANCHORS",
            value_name = "FILE",
            requires = "anchor_public_key"
        )]
        anchors: Option<PathBuf>,
        /// The public key the anchors are signed with (64 hex digits, as `anchor-key` prints).
        #[arg(long, env = "KRING_ANCHOR_PUBLIC_KEY", value_name = "HEX", value_parser = parse_public_key)]
        anchor_public_key: Option<AnchorPublicKey>,
    },

    /// Sign the log's head (its last position and global hash) and append the anchor to the
    /// anchors file.
    ///
    /// Run it regularly (e.g. hourly from cron) and keep the key and the anchors file outside
    /// the database and its backups. Refuses (exit 1, nothing appended) when the log no longer
    /// holds the file's last anchor. Not available on EventStoreDB. JSON: the anchor as written.
    Anchor {
        /// The Ed25519 key file (as `anchor-key` writes it).
        #[arg(long, env = "KRING_ANCHOR_KEY", value_name = "FILE")]
        anchor_key: PathBuf,
        /// The anchors file to append to (created if missing).
        #[arg(long, env = "KRING_ANCHORS", value_name = "FILE")]
        anchors: PathBuf,
    },

    /// Generate an anchor key: write the Ed25519 key to a new file (never over an existing one,
    /// readable by its owner only) and print its public key, which `verify --anchor-public-key`
    /// takes. Needs no installation.
    AnchorKey {
        /// The key file to create.
        #[arg(long, env = "KRING_ANCHOR_KEY", value_name = "FILE")]
        anchor_key: PathBuf,
    },

    /// Everything the log holds about a person or a child, as JSON (GDPR art. 15).
    ///
    /// The subject's personal fields are opened; erased ones read `"[erased]"`; fields sealed
    /// for someone else are withheld.
    Export {
        /// Whose data.
        #[command(flatten)]
        subject: ExportSubject,
    },

    /// Print the log, payloads opened where keys exist.
    ///
    /// JSON prints one object per line.
    Events {
        /// Only this stream, e.g. child-0190a6f2-7c3e-7000-8000-000000000000.
        #[arg(long, value_name = "STREAM", value_parser = parse_stream)]
        stream: Option<StreamName>,
        /// From this global position on (inclusive).
        #[arg(long, value_name = "POSITION", value_parser = parse_position)]
        from: Option<u64>,
        /// Keep printing new events as they are committed (until interrupted).
        #[arg(long)]
        follow: bool,
        /// At most this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Leave personal fields sealed.
        #[arg(long)]
        sealed: bool,
    },

    /// Where each read model stands: generation, position, lag, failure, and with
    /// --checksums its content checksum.
    Status {
        /// Also compute each read model's content checksum (reads every row).
        #[arg(long)]
        checksums: bool,
    },
}

/// Whose data to export: exactly one.
#[derive(Debug, Clone, Copy, Args)]
#[group(required = true, multiple = false)]
pub struct ExportSubject {
    /// A person (staff member or guardian).
    #[arg(long, value_name = "ID", value_parser = parse_id::<PersonId>)]
    pub person: Option<PersonId>,
    /// A child.
    #[arg(long, value_name = "ID", value_parser = parse_id::<ChildId>)]
    pub child: Option<ChildId>,
}

fn parse_id<T: FromStr>(text: &str) -> Result<T, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "malformed id {text:?}: expected a UUID such as 0190a6f2-7c3e-7000-8000-000000000000"
        )
    })
}

fn parse_purpose(text: &str) -> Result<Purpose, String> {
    text.parse()
        .map_err(|e: kring_domain::purpose::UnknownPurpose| e.to_string())
}

fn parse_stream(text: &str) -> Result<StreamName, String> {
    text.parse()
        .map_err(|e: kring_domain::stream::MalformedStreamName| e.to_string())
}

fn parse_public_key(text: &str) -> Result<AnchorPublicKey, String> {
    text.parse()
        .map_err(|e: kring_store::anchor::AnchorError| e.to_string())
}

fn parse_position(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "malformed position {text:?}: expected a whole number from 1"
        )),
    }
}
