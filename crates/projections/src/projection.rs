//! What a read model implements.

use crate::error::ProjectionError;
use crate::writer::Tx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kring_domain::Event;
use kring_store::RecordedEvent;
use std::collections::HashMap;
use std::sync::Mutex;

/// One event handed to a projection: the recorded envelope and the decoded domain event.
#[derive(Debug, Clone, Copy)]
pub struct Projected<'a> {
    /// The envelope: position, stream, times, actor, event id.
    pub recorded: &'a RecordedEvent,
    /// The decoded, upcast domain event.
    pub event: &'a Event,
}

/// A read model fed by the global log.
///
/// Its tables are declared in [`Projection::schema`] with `{table}` placeholders: each
/// generation (a rebuild makes a new one) gets its own physical tables `{table}_g<N>`, and a view
/// named `{table}` points at the active generation. Writes go through [`Tables::sql`]; queries
/// read the views. A read model reads and writes only its own tables while it projects: the
/// projector's queue lets its queries pass other read models' writes (see [`Tx`]).
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name, also the checkpoint's key.
    fn name(&self) -> &'static str;

    /// The logical table names it owns.
    fn tables(&self) -> &'static [&'static str];

    /// Portable DDL creating its tables, statements separated by `;`, tables as `{name}`. It
    /// holds the indexes the projection's own statements need. `{without_rowid}` after a
    /// table's closing parenthesis keeps it, on SQLite, in its primary key's order (`WITHOUT
    /// ROWID`; nothing on PostgreSQL): for a table whose rows are upserted and read back by key
    /// in bulk, where a row's entry in the key's index and the row itself would otherwise be on
    /// two randomly placed pages of two B-trees.
    fn schema(&self) -> &'static str;

    /// Portable DDL creating the indexes that only queries use, never the projection's own
    /// statements; written like [`Projection::schema`]. A generation made by a rebuild gets
    /// them after its fill and before it serves: sorting the rows once is far cheaper than
    /// keeping such an index in order through every insert (in a rebuild into SQLite, their
    /// random inserts would be most of the pages written).
    fn query_indexes(&self) -> &'static str {
        ""
    }

    /// Bump when what a row holds changes without a change to the DDL: a state column's
    /// encoding, the meaning of a value. Part of [`Projection::fingerprint`].
    fn revision(&self) -> u32 {
        1
    }

    /// What the tables of a generation were made by: a hash of [`Projection::schema`],
    /// [`Projection::query_indexes`] and [`Projection::revision`], stored with each generation.
    /// A projector never writes to an active generation made by another fingerprint (another
    /// version of the read model); the one that leads rebuilds it when it starts
    /// (`Projector::run`), the old generation serving until the fresh one is switched to.
    fn fingerprint(&self) -> String {
        fingerprint(&[
            self.schema(),
            self.query_indexes(),
            &self.revision().to_string(),
        ])
    }

    /// Applies one event inside the batch's transaction. Events it does not care about are
    /// ignored (return `Ok`). Writes on `tx` are queued and run in order while the projector
    /// goes on; a query on it runs after them (see [`Tx`]).
    ///
    /// # Errors
    /// Anything that keeps the event from being applied; the runtime stops this projection,
    /// naming the event, and keeps the others running.
    async fn apply(
        &self,
        tx: &mut Tx,
        tables: &Tables,
        event: Projected<'_>,
    ) -> Result<(), ProjectionError>;

    /// Called at the end of each batch, inside the transaction, to write what `apply` buffered.
    /// The transaction may hold several batches and commit later; the next batch's `apply`
    /// and `flush` see this one's writes.
    ///
    /// # Errors
    /// As [`Projection::apply`].
    async fn flush(&self, _tx: &mut Tx, _tables: &Tables) -> Result<(), ProjectionError> {
        Ok(())
    }

    /// Forgets anything buffered or cached since the last commit: the transaction rolled back,
    /// or the checkpoint moved under the projection.
    fn reset(&self) {}

    /// Told before the projector applies the log up to its newest event in large units
    /// (catching up, filling a rebuild's generation): that event's recorded time
    /// (`occurred_at`), for the generation of `tables`. Every event up to it will be applied
    /// to that generation unless the projection stops. A read model whose rows depend on how
    /// far the log has come (a retention window) may leave out what that event will make
    /// obsolete anyway, instead of writing it and taking it back. Ignored by default.
    fn log_head(&self, _tables: &Tables, _occurred_at: DateTime<Utc>) {}
}

/// FNV-1a (64-bit) over `parts`, each followed by a 0 byte, as 16 hex digits: stable across
/// builds and Rust versions, unlike `std`'s hashers, because it is stored.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The physical table names of one generation of a projection.
#[derive(Debug)]
pub struct Tables {
    generation: i64,
    names: Vec<(&'static str, String)>,
    rendered: Mutex<HashMap<usize, String>>,
}

impl Tables {
    /// The tables of `generation` for the logical `names`.
    #[must_use]
    pub fn new(names: &[&'static str], generation: i64) -> Self {
        Self {
            generation,
            names: names
                .iter()
                .map(|n| (*n, format!("{n}_g{generation}")))
                .collect(),
            rendered: Mutex::new(HashMap::new()),
        }
    }

    /// The generation.
    #[must_use]
    pub const fn generation(&self) -> i64 {
        self.generation
    }

    /// Physical name of a logical table.
    #[must_use]
    pub fn physical(&self, logical: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(l, _)| *l == logical)
            .map(|(_, p)| p.as_str())
    }

    /// Each logical name with its physical one.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.names.iter().map(|(l, p)| (*l, p.as_str()))
    }

    /// `template` with every `{table}` replaced by this generation's physical name; rendered
    /// once per template (keyed by its address, so pass `'static` strings).
    #[must_use]
    pub fn sql(&self, template: &'static str) -> String {
        let key = template.as_ptr() as usize;
        if let Ok(cache) = self.rendered.lock() {
            if let Some(sql) = cache.get(&key) {
                return sql.clone();
            }
        }
        let sql = self.render(template);
        if let Ok(mut cache) = self.rendered.lock() {
            cache.insert(key, sql.clone());
        }
        sql
    }

    /// `template` with every `{table}` replaced, uncached.
    #[must_use]
    pub fn render(&self, template: &str) -> String {
        let mut sql = template.to_owned();
        for (logical, physical) in &self.names {
            sql = sql.replace(&format!("{{{logical}}}"), physical);
        }
        sql
    }
}

/// The events of one batch a buffered read model needs, kept until its `flush`, per generation
/// of tables (the runtime shares one projection instance between the serving generation and one
/// being rebuilt).
///
/// A read model that buffers in `apply` and writes in bulk in `flush` loads the state it needs
/// with one query per batch instead of one per event: on SQLite every statement is a hand-off to
/// the connection's worker thread, which dominates per-event costs.
///
/// Positions rise within a batch, and `flush` takes the buffer away. A buffer still holding
/// events at or past a new event's position belongs to a batch that rolled back before its
/// flush (an error, a cancelled future): the runtime is re-applying from its checkpoint, so the
/// buffer starts over. That, not `Projection::reset`, is what forgets such a buffer.
#[derive(Debug)]
pub struct Buffer<E> {
    batches: Mutex<HashMap<i64, (u64, Vec<E>)>>,
}

impl<E> Default for Buffer<E> {
    fn default() -> Self {
        Self {
            batches: Mutex::new(HashMap::new()),
        }
    }
}

impl<E> Buffer<E> {
    /// Notes the event at `position` for the batch of `tables`, keeping `needed` if any.
    pub fn push(&self, tables: &Tables, position: u64, needed: Option<E>) {
        let mut batches = self
            .batches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, events) = batches.entry(tables.generation()).or_default();
        if *last >= position {
            events.clear();
        }
        *last = position;
        if let Some(e) = needed {
            events.push(e);
        }
    }

    /// Takes the batch of `tables` (empty when nothing was needed).
    pub fn take(&self, tables: &Tables) -> Vec<E> {
        self.batches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&tables.generation())
            .map(|(_, events)| events)
            .unwrap_or_default()
    }
}
