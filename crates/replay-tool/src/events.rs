//! `events`: the log itself, one event per line, payloads opened where keys exist.

use crate::error::{exit, ToolError};
use crate::output::{csv_line, print, Format};
use crate::time::format_time;
use kring_domain::StreamName;
use kring_projections::System;
use kring_store::{actor_to_string, EventStore, EventStoreExt, Position, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct EventsQuery {
    /// Only this stream.
    pub stream: Option<StreamName>,
    /// From this global position on (inclusive).
    pub from: Option<Position>,
    /// Keep following the log for new events.
    pub follow: bool,
    /// At most this many events.
    pub limit: Option<u64>,
    /// Leave personal fields sealed.
    pub sealed: bool,
}

/// One event as printed.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
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
    /// Its payload's schema version: the current one once upcast, the stored one with
    /// `--sealed`.
    pub schema_version: u16,
    /// When it was decided.
    pub occurred_at: String,
    /// When it was recorded.
    pub recorded_at: String,
    /// Who caused it.
    pub actor: String,
    /// The request or process.
    pub correlation_id: Uuid,
    /// What caused it.
    pub causation_id: Option<Uuid>,
    /// The payload, read as every reader reads it (upcast) with personal fields opened (or
    /// `[erased]`); with `--sealed`, as stored.
    pub payload: Value,
}

const COLUMNS: [(&str, usize); 7] = [
    ("POSITION", 8),
    ("OCCURRED_AT", 27),
    ("STREAM", 49),
    ("VERSION", 7),
    ("EVENT_TYPE", 24),
    ("ACTOR", 43),
    ("PAYLOAD", 0),
];

struct Printer {
    format: Format,
    sealed: bool,
    printed: u64,
    limit: Option<u64>,
}

impl Printer {
    fn header(&self) -> std::io::Result<()> {
        match self.format {
            Format::Json => Ok(()),
            Format::Csv => print(&csv_line(
                [
                    "position",
                    "event_id",
                    "stream",
                    "version",
                    "event_type",
                    "schema_version",
                    "occurred_at",
                    "recorded_at",
                    "actor",
                    "payload",
                ]
                .into_iter(),
            )),
            Format::Table => print(&table_line(COLUMNS.iter().map(|(h, _)| (*h).to_owned()))),
        }
    }

    fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.printed >= l)
    }

    async fn event(&mut self, system: &System, r: &RecordedEvent) -> Result<(), ToolError> {
        let (mut schema_version, mut payload): (u16, Value) =
            (r.schema_version, serde_json::from_str(&r.payload)?);
        if !self.sealed {
            // Read as every reader reads it (an older schema version upcast), then opened. A
            // field that does not decrypt (tampered with) stays as stored.
            let (version, mut opened) = crate::export::as_read(r)?;
            if system.vault.open_value(&mut opened).await.is_ok() {
                (schema_version, payload) = (version, opened);
            }
        }
        let line = EventLine {
            position: r.position,
            event_id: r.event_id,
            stream: r.stream.to_string(),
            version: r.version,
            event_type: r.event_type.clone(),
            schema_version,
            occurred_at: format_time(r.occurred_at),
            recorded_at: format_time(r.recorded_at),
            actor: actor_to_string(&r.actor),
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            payload,
        };
        let text = match self.format {
            Format::Json => {
                let mut t = serde_json::to_string(&line)?;
                t.push('\n');
                t
            }
            Format::Csv => csv_line(
                [
                    line.position.to_string(),
                    line.event_id.to_string(),
                    line.stream.clone(),
                    line.version.to_string(),
                    line.event_type.clone(),
                    line.schema_version.to_string(),
                    line.occurred_at.clone(),
                    line.recorded_at.clone(),
                    line.actor.clone(),
                    line.payload.to_string(),
                ]
                .iter()
                .map(String::as_str),
            ),
            Format::Table => table_line(
                [
                    line.position.to_string(),
                    line.occurred_at,
                    line.stream,
                    line.version.to_string(),
                    line.event_type,
                    line.actor,
                    line.payload.to_string(),
                ]
                .into_iter(),
            ),
        };
        print(&text).map_err(|e| ToolError::Io(format!("stdout: {e}")))?;
        self.printed += 1;
        Ok(())
    }
}

/// One line of the streamed events table. Columns have fixed widths ([`COLUMNS`]) because the
/// log is printed as it is read: a table crate would hold every row to measure them first.
fn table_line(cells: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for (cell, (_, width)) in cells.zip(COLUMNS) {
        if !out.is_empty() {
            out.push_str("  ");
        }
        let pad = width.saturating_sub(cell.chars().count());
        if width == 8 {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&cell);
        } else {
            out.push_str(&cell);
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Prints the events asked for, streaming; with `follow`, keeps printing new events as they
/// are committed (through the store's subscription) until interrupted.
///
/// # Errors
/// [`ToolError::NotFound`] for a stream without events (unless following); store failures.
pub async fn events(system: &System, query: EventsQuery, format: Format) -> Result<u8, ToolError> {
    let mut printer = Printer {
        format,
        sealed: query.sealed,
        printed: 0,
        limit: query.limit,
    };
    let mut after = query.from.map_or(0, |f| f.saturating_sub(1));
    let stdout_err = |e: std::io::Error| ToolError::Io(format!("stdout: {e}"));
    if let Some(stream) = query.stream {
        let all = system.store.read_stream_to_end(&stream).await?;
        if all.is_empty() && !query.follow {
            return Err(ToolError::NotFound(format!("no events in stream {stream}")));
        }
        printer.header().map_err(stdout_err)?;
        let start = after;
        for r in all.iter().filter(|r| r.position > start) {
            if printer.done() {
                return Ok(exit::OK);
            }
            printer.event(system, r).await?;
            after = r.position;
        }
    } else {
        printer.header().map_err(stdout_err)?;
        loop {
            let batch = system
                .store
                .read_all(after, kring_store::DEFAULT_BATCH)
                .await?;
            let Some(last) = batch.last() else { break };
            after = last.position;
            for r in &batch {
                if printer.done() {
                    return Ok(exit::OK);
                }
                printer.event(system, r).await?;
            }
        }
    }
    if !query.follow {
        return Ok(exit::OK);
    }
    let mut live = system.store.subscribe(after);
    while !printer.done() {
        let r = live.next().await?;
        if query.stream.is_none_or(|s| s == r.stream) {
            printer.event(system, &r).await?;
        }
    }
    Ok(exit::OK)
}
