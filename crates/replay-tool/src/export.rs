//! `export`: everything the log holds about one person or child (GDPR art. 15).
//!
//! Every event that concerns the subject — its own streams (`person-<id>` / `child-<id>`,
//! `access-<id>`), events it caused, events whose payload names it, and every message of a
//! conversation it takes part in or is about — with the subject's
//! personal fields opened through the key vault. Fields sealed for another subject (another
//! parent's message, a post's text) stay closed: a copy must not adversely affect the rights
//! of others (art. 15(4)). Fields of an erased subject read `[erased]`.

use crate::error::ToolError;
use crate::locate;
use crate::output::{Report, Rows};
use crate::time::format_time;
use chrono::{DateTime, Utc};
use kring_domain::access::Subject;
use kring_domain::{Actor, Category, StreamName};
use kring_projections::System;
use kring_store::vault::KeyVault;
use kring_store::{actor_to_string, EventStore, Position, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use uuid::Uuid;

/// How a field sealed for someone else is shown in an export.
pub use kring_store::vault::WITHHELD;

/// One event of an export, its payload opened for the subject.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedEvent {
    /// Global position.
    pub position: Position,
    /// The event.
    pub event_id: Uuid,
    /// Its stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its type.
    pub event_type: String,
    /// Its schema version.
    pub schema_version: u16,
    /// When it was decided.
    pub occurred_at: DateTime<Utc>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Who caused it (`person:<id>`, `operator`, `system`).
    pub actor: String,
    /// The payload, the subject's fields opened.
    pub payload: Value,
}

/// Everything about one subject.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    /// Whose data.
    pub subject: Subject,
    /// When the export was made.
    pub exported_at: DateTime<Utc>,
    /// The log's last position read.
    pub log_head: Position,
    /// Fields of the subject that were erased (their key destroyed).
    pub erased_fields: usize,
    /// Fields sealed for another subject, left closed.
    pub withheld_fields: usize,
    /// The events, in log order.
    pub events: Vec<ExportedEvent>,
}

/// Everything the log holds about `subject`.
///
/// # Errors
/// [`ToolError::NotFound`] when nothing in the log concerns it; store and vault failures.
pub async fn export(system: &System, subject: Subject) -> Result<Export, ToolError> {
    let id = subject.uuid();
    let needle = id.to_string();
    let own = match subject {
        Subject::Person(_) => Category::Person,
        _ => Category::Child,
    };
    // A conversation the subject takes part in (or is about) concerns it as a whole: every
    // message in it, whoever wrote it. Conversations start before their messages, so one pass
    // over the log finds them.
    let mut conversations: HashSet<StreamName> = HashSet::new();
    let concerns = |r: &RecordedEvent| {
        let stream = r.stream;
        let direct = (stream.id() == id
            && matches!(stream.category(), c if c == own || c == Category::Access))
            || matches!(r.actor, Actor::Person(p) if p.as_uuid() == id)
            || r.payload.contains(&needle);
        if direct && r.event_type == "ConversationStarted" {
            conversations.insert(stream);
        }
        direct || conversations.contains(&stream)
    };
    let head = system.store.head().await?;
    let found = locate::scan(system, "exporting", concerns).await?;
    if found.is_empty() {
        let kind = match subject {
            Subject::Person(_) => "person",
            _ => "child",
        };
        return Err(ToolError::NotFound(format!(
            "nothing in this log concerns {kind} {id}"
        )));
    }
    let mut export = Export {
        subject,
        exported_at: Utc::now(),
        log_head: head,
        erased_fields: 0,
        withheld_fields: 0,
        events: Vec::with_capacity(found.len()),
    };
    for r in found {
        let (schema_version, mut payload) = as_read(&r)?;
        let (erased, withheld) = open_for(&system.vault, subject, &mut payload).await?;
        export.erased_fields += erased;
        export.withheld_fields += withheld;
        export.events.push(ExportedEvent {
            position: r.position,
            event_id: r.event_id,
            stream: r.stream.to_string(),
            version: r.version,
            event_type: r.event_type,
            schema_version,
            occurred_at: r.occurred_at,
            recorded_at: r.recorded_at,
            actor: actor_to_string(&r.actor),
            payload,
        });
    }
    Ok(export)
}

/// A stored event's payload as every reader reads it, with its schema version: an older schema
/// version upcast to the current shape (a field that was plain then, such as a removal's reason,
/// is the sealed field of its subject it is now, so an erasure reaches it too). An event this
/// build cannot decode (a newer build's) is shown as stored.
///
/// # Errors
/// A payload that is not JSON.
pub fn as_read(r: &RecordedEvent) -> Result<(u16, Value), ToolError> {
    match kring_domain::Event::decode_str(&r.event_type, r.schema_version, &r.payload) {
        Ok(event) => Ok((event.schema_version(), event.to_payload()?)),
        Err(_) => Ok((r.schema_version, serde_json::from_str(&r.payload)?)),
    }
}

/// Opens the fields of `value` sealed for `subject` (or marks them erased) and withholds the
/// others; returns how many were erased and how many withheld.
///
/// # Errors
/// A ciphertext that does not decrypt (tampered with); vault failures.
pub async fn open_for(
    vault: &KeyVault,
    subject: Subject,
    value: &mut Value,
) -> Result<(usize, usize), ToolError> {
    let opening = vault.open_value_for(value, |s| *s == subject).await?;
    Ok((opening.erased, opening.withheld))
}

impl Report for Export {
    fn summary(&self) -> Vec<String> {
        vec![format!(
            "Export of {:?} at {}: {} events, {} erased field(s), {} field(s) of others withheld",
            self.subject,
            format_time(self.exported_at),
            self.events.len(),
            self.erased_fields,
            self.withheld_fields
        )]
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::new(&[
            "position",
            "occurred_at",
            "stream",
            "event_type",
            "actor",
            "payload",
        ]);
        for e in &self.events {
            rows.push(vec![
                e.position.to_string(),
                format_time(e.occurred_at),
                e.stream.clone(),
                e.event_type.clone(),
                e.actor.clone(),
                e.payload.to_string(),
            ]);
        }
        rows
    }
}
