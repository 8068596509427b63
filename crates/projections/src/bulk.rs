//! Multi-row writes: a projection buffers a batch's rows and writes them in a few statements
//! in [`crate::Projection::flush`]. On SQLite every statement is a round trip to the
//! connection's worker thread, so statements, not rows, are what a rebuild pays for.

use crate::error::ProjectionError;
use crate::projection::{Buffer, Tables};
use crate::writer::Tx;
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// An integer (ids of time, positions, flags).
    Int(i64),
    /// Text (ids, names of things, sealed envelopes).
    Text(String),
    /// SQL NULL in a text column.
    Null,
    /// SQL NULL in an integer column (PostgreSQL types a parameter by how it is bound).
    NullInt,
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<&String> for Cell {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Self::Int(i64::from(v))
    }
}

impl<T: Into<Self>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Binds `cells` to `query`, in order.
pub fn bind_cells<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    cells: &'q [Cell],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for cell in cells {
        query = match cell {
            Cell::Int(v) => query.bind(*v),
            Cell::Text(v) => query.bind(v.as_str()),
            Cell::Null => query.bind(Option::<String>::None),
            Cell::NullInt => query.bind(Option::<i64>::None),
        };
    }
    query
}

/// Rows for one multi-row `INSERT … VALUES (…), (…) [suffix]`.
#[derive(Debug)]
pub struct Bulk {
    head: String,
    suffix: &'static str,
    width: usize,
    cells: Vec<Cell>,
}

/// Parameters per command of a [`Script`].
const MAX_PARAMS: usize = 1_000;

/// Parameters per multi-row `INSERT` of a [`Bulk`] (SQLite allows 32,766, PostgreSQL 65,535).
/// Each statement is a hand-off to SQLite's worker thread, so fewer, larger statements make a
/// rebuild faster; beyond 4,000 they were no faster (`docs/benchmarks-history-2026.md`). Only a
/// table's full-size statement is kept prepared (one text per table); the smaller last
/// statement of a batch, a different text each time, is not: caching every text costs memory.
const BULK_PARAMS: usize = 4_000;

/// Appends the `n`th (1-based) bind parameter: `$n` on PostgreSQL, an anonymous `?` on SQLite.
///
/// Numbered parameters cost SQLite quadratically: sqlx binds each by looking up its name, and
/// SQLite finds a name by scanning the list of all of them (with `$n`, most of a rebuild went to
/// `sqlite3_bind_parameter_name`). Anonymous parameters have no name to look up.
fn placeholder(sql: &mut String, sqlite: bool, n: usize) {
    if sqlite {
        sql.push('?');
    } else {
        sql.push('$');
        sql.push_str(&n.to_string());
    }
}

/// Where queries of [`select_in`] and [`select_packed`] run: a connection of its own (the
/// queries of the read models) or a projector's [`Tx`] (their loads, after the writes queued
/// before them).
#[async_trait]
pub trait Fetch: Send {
    /// Whether it is SQLite.
    fn is_sqlite(&self) -> bool;

    /// Runs `sql` with `cells` bound in order and returns its rows; prepared to be kept
    /// (`persistent`) or not.
    ///
    /// # Errors
    /// Database failures.
    async fn fetch(
        &mut self,
        sql: String,
        cells: Vec<Cell>,
        persistent: bool,
    ) -> Result<Vec<AnyRow>, ProjectionError>;
}

#[async_trait]
impl Fetch for AnyConnection {
    fn is_sqlite(&self) -> bool {
        crate::db::Backend::of(self) == crate::db::Backend::Sqlite
    }

    async fn fetch(
        &mut self,
        sql: String,
        cells: Vec<Cell>,
        persistent: bool,
    ) -> Result<Vec<AnyRow>, ProjectionError> {
        Ok(bind_cells(sqlx::query(&sql).persistent(persistent), &cells)
            .fetch_all(self)
            .await?)
    }
}

#[async_trait]
impl Fetch for Tx {
    fn is_sqlite(&self) -> bool {
        Tx::is_sqlite(self)
    }

    async fn fetch(
        &mut self,
        sql: String,
        cells: Vec<Cell>,
        persistent: bool,
    ) -> Result<Vec<AnyRow>, ProjectionError> {
        self.fetch_with(sql, cells, persistent).await
    }
}

impl Bulk {
    /// `head` is `INSERT INTO table (a, b, c)` (physical table name), `suffix` e.g. an
    /// `ON CONFLICT …` clause, `width` the number of columns.
    #[must_use]
    pub const fn new(head: String, width: usize, suffix: &'static str) -> Self {
        Self {
            head,
            suffix,
            width,
            cells: Vec::new(),
        }
    }

    /// Adds a row; it must have `width` cells.
    pub fn row<const N: usize>(&mut self, cells: [Cell; N]) {
        debug_assert_eq!(N, self.width);
        self.cells.extend(cells);
    }

    /// Adds rows given flat, `width` cells each.
    pub fn rows(&mut self, cells: Vec<Cell>) {
        debug_assert_eq!(cells.len() % self.width.max(1), 0);
        if self.cells.is_empty() {
            self.cells = cells;
        } else {
            self.cells.extend(cells);
        }
    }

    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Forgets the rows.
    pub fn clear(&mut self) {
        self.cells.clear();
    }

    /// Queues as many full-size statements of the rows as there are on `tx` and forgets those
    /// rows, keeping the rest (fewer than one statement's) for later: a read model that makes
    /// many rows per batch writes them while it makes them, so that it holds at most about one
    /// statement's rows instead of the batch's.
    ///
    /// # Errors
    /// See [`Tx::execute`].
    pub async fn execute_full(&mut self, tx: &mut Tx) -> Result<(), ProjectionError> {
        let per_statement = (BULK_PARAMS / self.width.max(1)).max(1) * self.width.max(1);
        let full = self.cells.len() / per_statement * per_statement;
        if full == 0 {
            return Ok(());
        }
        let rest = self.cells.split_off(full);
        self.execute(tx).await?;
        self.cells = rest;
        Ok(())
    }

    /// Queues the rows on `tx` (in as few statements as the parameter limit allows) and
    /// forgets them.
    ///
    /// # Errors
    /// See [`Tx::execute`].
    pub async fn execute(&mut self, tx: &mut Tx) -> Result<(), ProjectionError> {
        let rows_per_statement = (BULK_PARAMS / self.width.max(1)).max(1);
        let sqlite = tx.is_sqlite();
        let mut cells = std::mem::take(&mut self.cells).into_iter();
        loop {
            // Each statement's cells moved into a vector of their own, for the queue.
            let chunk: Vec<Cell> = cells
                .by_ref()
                .take(rows_per_statement * self.width)
                .collect();
            if chunk.is_empty() {
                break;
            }
            let mut sql =
                String::with_capacity(self.head.len() + chunk.len() * 6 + self.suffix.len() + 16);
            sql.push_str(&self.head);
            sql.push_str(" VALUES ");
            for (i, _) in chunk.iter().enumerate() {
                if i % self.width == 0 {
                    if i > 0 {
                        sql.push_str("),");
                    }
                    sql.push('(');
                } else {
                    sql.push(',');
                }
                placeholder(&mut sql, sqlite, i + 1);
            }
            sql.push_str(") ");
            sql.push_str(self.suffix);
            // Only the full-size text recurs (see BULK_PARAMS).
            let full = chunk.len() == rows_per_statement * self.width;
            tx.queue(sql, chunk, full, false).await?;
        }
        Ok(())
    }
}

/// Statements run in order, each with its own parameters: a buffered read model's
/// per-event statements (updates, deletes, upserts that depend on each other), written in
/// [`crate::Projection::flush`].
///
/// They go to the database in commands of up to `SCRIPT_STATEMENTS` statements and `MAX_PARAMS`
/// parameters each, not one by one:
///
/// - On SQLite a command is a multi-statement text: one hand-off to the connection's worker
///   thread instead of one per statement (a hand-off that wakes an idle thread costs more than
///   a small statement itself). Not kept prepared (the texts rarely repeat).
/// - On PostgreSQL, whose extended protocol takes one statement per command, a command is one
///   call of the function `kring_script_v1` (installed by [`crate::db::ReadDb::connect`]):
///   one round trip, in which the server runs the statements in order. The values are still
///   bound, never written into SQL: the call binds the statement texts and the values as two
///   JSON arrays, and each statement names its values as elements of the second (`$n` becomes
///   `($1->>k)`, or `(($1->>k)::int8)` for an integer, the types they are bound with one by
///   one). See `docs/decisions/0025-read-model-scripts-in-one-call.md`.
///
/// A statement that names a parameter it has no cell for is refused before anything is queued.
#[derive(Debug, Default)]
pub struct Script {
    /// Each statement's text (parameters `$1`, `$2`, … of its own) and its cells.
    statements: Vec<(String, std::ops::Range<usize>)>,
    cells: Vec<Cell>,
}

/// Statements per command of a [`Script`]. On PostgreSQL commands of 500 statements (and 5,000
/// parameters) made a rebuild slower, not faster (`docs/benchmarks.md`).
const SCRIPT_STATEMENTS: usize = 100;

/// The call that runs a command of a [`Script`] on PostgreSQL.
const RUN_SCRIPT: &str = include_str!("sql/postgres/run_script.sql");
/// Creates (or replaces) the function [`RUN_SCRIPT`] calls.
const SCRIPT_FUNCTION: &str = include_str!("sql/postgres/script_function.sql");
/// Whether that function exists.
const SCRIPT_FUNCTION_PRESENT: &str = include_str!("sql/postgres/script_function_present.sql");

/// Creates the function a [`Script`] runs through on PostgreSQL, unless it exists; safe to call
/// from several processes at once.
pub(crate) async fn ensure_script_function(pool: &sqlx::AnyPool) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    async fn present(conn: &mut sqlx::AnyConnection) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(SCRIPT_FUNCTION_PRESENT)
            .fetch_one(conn)
            .await
    }
    let mut conn = pool.acquire().await?;
    if present(&mut conn).await? {
        return Ok(());
    }
    match conn.execute(SCRIPT_FUNCTION).await {
        Ok(_) => Ok(()),
        // Another process created it at the same moment (its commit is what failed this
        // one: a unique key of the catalogue, or "tuple concurrently updated").
        Err(e) => match present(&mut conn).await {
            Ok(true) => Ok(()),
            _ => Err(e),
        },
    }
}

impl Script {
    /// Adds a statement: `sql` names its parameters `$1`, `$2`, … (each may recur), bound to
    /// `cells` in that order.
    pub fn push(&mut self, sql: String, cells: impl IntoIterator<Item = Cell>) {
        let start = self.cells.len();
        self.cells.extend(cells);
        self.statements.push((sql, start..self.cells.len()));
    }

    /// Whether there is nothing to run.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Queues the statements on `tx`, in order, and forgets them.
    ///
    /// # Errors
    /// [`ProjectionError::Invalid`] if a statement names a parameter it has no cell for (then
    /// nothing is queued); otherwise see [`Tx::execute`]: a statement that fails poisons the
    /// transaction, and the ones after it do not run.
    pub async fn execute(&mut self, tx: &mut Tx) -> Result<(), ProjectionError> {
        let statements = std::mem::take(&mut self.statements);
        let cells = std::mem::take(&mut self.cells);
        for (sql, range) in &statements {
            check_parameters(sql, range.len())?;
        }
        let sqlite = tx.is_sqlite();
        // On SQLite each command's cells are moved, in order, into a vector of their own; on
        // PostgreSQL they are written into the call's arguments.
        let (mut owned, cells) = if sqlite {
            (cells.into_iter(), Vec::new())
        } else {
            (Vec::new().into_iter(), cells)
        };
        let mut rest = &statements[..];
        while let Some((_, first)) = rest.first() {
            let base = first.start;
            let take = rest
                .iter()
                .take(SCRIPT_STATEMENTS)
                .enumerate()
                .take_while(|(i, (_, range))| *i == 0 || range.end - base <= MAX_PARAMS)
                .count();
            let (chunk, after) = rest.split_at(take);
            let end = chunk.last().map_or(base, |(_, range)| range.end);
            if sqlite {
                let mut text = String::new();
                for (sql, range) in chunk {
                    renumber(&mut text, sql, range.start - base);
                    text.push_str(";\n");
                }
                tx.execute_once(text, owned.by_ref().take(end - base).collect())
                    .await?;
            } else {
                let (texts, arguments) = script_call(chunk, &cells[base..end], base)?;
                tx.execute(RUN_SCRIPT, vec![Cell::Text(texts), Cell::Text(arguments)])
                    .await?;
            }
            rest = after;
        }
        Ok(())
    }
}

/// Refuses a statement that names `$0`, or a parameter beyond its `cells`.
fn check_parameters(sql: &str, cells: usize) -> Result<(), ProjectionError> {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let n = rest[..digits].parse::<usize>().unwrap_or(usize::MAX);
            if n == 0 || n > cells {
                return Err(ProjectionError::Invalid(format!(
                    "a statement names ${} but has {cells} parameters: {sql}",
                    &rest[..digits]
                )));
            }
        }
        rest = &rest[digits..];
    }
    Ok(())
}

/// The two arguments of a PostgreSQL call of a [`Script`] command: the statements' texts (each
/// `$n` of a statement rewritten as its value's element of the arguments) and the arguments,
/// both as JSON arrays. `cells` are the command's, the first of them the script's `base`th.
fn script_call(
    chunk: &[(String, std::ops::Range<usize>)],
    cells: &[Cell],
    base: usize,
) -> Result<(String, String), ProjectionError> {
    let mut texts = Vec::with_capacity(chunk.len() * 128);
    texts.push(b'[');
    let mut text = String::new();
    for (i, (sql, range)) in chunk.iter().enumerate() {
        text.clear();
        let own = &cells[range.start - base..range.end - base];
        name_arguments(&mut text, sql, own, range.start - base);
        if i > 0 {
            texts.push(b',');
        }
        serde_json::to_writer(&mut texts, &text)?;
    }
    texts.push(b']');
    let mut arguments = Vec::with_capacity(cells.len() * 40);
    arguments.push(b'[');
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            arguments.push(b',');
        }
        match cell {
            Cell::Int(v) => arguments.extend_from_slice(v.to_string().as_bytes()),
            Cell::Text(v) => serde_json::to_writer(&mut arguments, v)?,
            Cell::Null | Cell::NullInt => arguments.extend_from_slice(b"null"),
        }
    }
    arguments.push(b']');
    let utf8 = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|e| ProjectionError::Invalid(e.to_string()))
    };
    Ok((utf8(texts)?, utf8(arguments)?))
}

/// Appends `sql` with each parameter `$n` (checked: `1..=own.len()`) replaced by its value's
/// element of the call's arguments (the `offset + n - 1`th, 0-based), typed as the value is
/// bound one by one: text for [`Cell::Text`] and [`Cell::Null`], `int8` for [`Cell::Int`] and
/// [`Cell::NullInt`]. The text holds no value, only positions.
fn name_arguments(out: &mut String, sql: &str, own: &[Cell], offset: usize) {
    use std::fmt::Write as _;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) if (1..=own.len()).contains(&n) => {
                let k = offset + n - 1;
                let _ = match own[n - 1] {
                    Cell::Int(_) | Cell::NullInt => write!(out, "(($1->>{k})::int8)"),
                    Cell::Text(_) | Cell::Null => write!(out, "($1->>{k})"),
                };
            }
            _ => {
                out.push('$');
                out.push_str(&rest[..digits]);
            }
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// One statement of a [`Deferred`] event: its template (tables as `{name}`, see
/// [`Tables::sql`]) and its parameters.
#[derive(Debug)]
pub struct Statement {
    template: &'static str,
    binds: Vec<Cell>,
}

impl Statement {
    /// `template` with `binds` for its `$1`, `$2`, ….
    #[must_use]
    pub const fn new(template: &'static str, binds: Vec<Cell>) -> Self {
        Self { template, binds }
    }
}

/// The statements of a read model that writes each event with statements of its own (updates
/// and deletes that depend on what came before), deferred from `apply` to the batch's `flush`
/// and run there, in order, as one [`Script`].
#[derive(Debug, Default)]
pub struct Deferred {
    pending: Buffer<Vec<Statement>>,
}

impl Deferred {
    /// Notes the statements of the event at `position`, for the batch of `tables`.
    pub fn push(&self, tables: &Tables, position: u64, statements: Vec<Statement>) {
        self.pending.push(
            tables,
            position,
            (!statements.is_empty()).then_some(statements),
        );
    }

    /// Queues the batch's statements on `tx`.
    ///
    /// # Errors
    /// See [`Script::execute`].
    pub async fn flush(&self, tx: &mut Tx, tables: &Tables) -> Result<(), ProjectionError> {
        let mut script = Script::default();
        for statement in self.pending.take(tables).into_iter().flatten() {
            script.push(tables.sql(statement.template), statement.binds);
        }
        script.execute(tx).await
    }
}

/// Appends `sql` with each parameter `$n` renamed `$<offset + n>`. In a multi-statement
/// command sqlx-sqlite binds a parameter named `$n` to the command's `n`th argument, whichever
/// statement it is in.
fn renumber(out: &mut String, sql: &str, offset: usize) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(offset + n).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// Runs `sql` — whose `{in}` stands for a list of parameters after the `fixed` ones, which `sql`
/// names `$1`, `$2`, … (at most 9, each used once, in order) — once per
/// chunk of `ids`, and returns every row: one statement per few thousand ids instead of one per
/// id. Used for the bulk loads of buffered read models.
///
/// # Errors
/// Database failures.
pub async fn select_in<C: Fetch + ?Sized>(
    conn: &mut C,
    sql: &str,
    fixed: &[Cell],
    ids: &[String],
) -> Result<Vec<AnyRow>, ProjectionError> {
    // Prepared statements are cached per text: keep the number of distinct texts small.
    const PER: usize = 1_000;
    let sqlite = conn.is_sqlite();
    let mut sql = sql.to_owned();
    if sqlite {
        for i in (1..=fixed.len()).rev() {
            sql = sql.replace(&format!("${i}"), "?");
        }
    }
    let mut out = Vec::new();
    for chunk in ids.chunks(PER) {
        let mut list = String::with_capacity(chunk.len() * 6);
        for i in 0..chunk.len() {
            if i > 0 {
                list.push(',');
            }
            placeholder(&mut list, sqlite, fixed.len() + i + 1);
        }
        let text = sql.replace("{in}", &list);
        let mut cells = Vec::with_capacity(fixed.len() + chunk.len());
        cells.extend_from_slice(fixed);
        cells.extend(chunk.iter().map(|id| Cell::Text(id.clone())));
        out.extend(conn.fetch(text, cells, chunk.len() == PER).await?);
    }
    Ok(out)
}

/// Separates the fields of a packed row.
const FIELD: char = '\u{1f}';
/// Separates packed rows.
const RECORD: char = '\u{1e}';
/// Stands for SQL NULL in a packed row.
const NULL: &str = "\u{1d}";

/// Like [`select_in`] for a `SELECT a, b, … FROM …` of plain columns, but each statement
/// returns its rows packed into one text (fields joined by U+001F, rows by U+001E, NULL as
/// U+001D; every value as text), unpacked here. Rows come in no particular order.
///
/// Why: on SQLite every row of a result crosses from the connection's worker thread to the
/// async side through a channel of 50, so a load of thousands of rows hands off once per row,
/// and each hand-off wakes a thread; packed, a load is one hand-off per statement. The values
/// must not contain those three characters:
/// ids, numbers, enum names and JSON (whose strings escape control characters) do not.
///
/// # Errors
/// Database failures; `sql` not of that form.
pub async fn select_packed<C: Fetch + ?Sized>(
    conn: &mut C,
    sql: &str,
    fixed: &[Cell],
    ids: &[String],
) -> Result<Packed, ProjectionError> {
    let bad = || ProjectionError::Invalid(format!("not a SELECT of plain columns: {sql}"));
    let rest = sql.trim_start().strip_prefix("SELECT ").ok_or_else(bad)?;
    let from = rest
        .find(" FROM ")
        .or_else(|| rest.find("\nFROM "))
        .ok_or_else(bad)?;
    let (columns, from) = rest.split_at(from);
    let (join, sep, null, agg) = if conn.is_sqlite() {
        ("char(31)", "char(30)", "char(29)", "group_concat")
    } else {
        ("chr(31)", "chr(30)", "chr(29)", "string_agg")
    };
    let fields: Vec<String> = columns
        .split(',')
        .map(|c| format!("coalesce(CAST({} AS TEXT), {null})", c.trim()))
        .collect();
    // Built here: it wraps whatever columns and FROM clause the caller's query has.
    let packed = format!(
        "SELECT {agg}({}, {sep}){from}",
        fields.join(&format!(" || {join} || "))
    );
    let mut texts = Vec::new();
    for row in select_in(conn, &packed, fixed, ids).await? {
        if let Some(text) = row.try_get::<Option<String>, _>(0)? {
            texts.push(text);
        }
    }
    Ok(Packed {
        texts,
        columns: fields.len(),
    })
}

/// Rows loaded by [`select_packed`].
#[derive(Debug)]
pub struct Packed {
    texts: Vec<String>,
    columns: usize,
}

impl Packed {
    /// The rows.
    ///
    /// # Errors
    /// (Per row) a row without the number of columns asked for.
    pub fn rows(&self) -> impl Iterator<Item = Result<PackedRow<'_>, ProjectionError>> {
        let columns = self.columns;
        self.texts
            .iter()
            .flat_map(|text| text.split(RECORD))
            .map(move |row| {
                let fields: Vec<&str> = row.split(FIELD).collect();
                if fields.len() == columns {
                    Ok(PackedRow { fields })
                } else {
                    Err(ProjectionError::Invalid(format!(
                        "a packed row of {} fields, not {columns}",
                        fields.len()
                    )))
                }
            })
    }
}

/// One row of a [`Packed`] load.
#[derive(Debug)]
pub struct PackedRow<'a> {
    fields: Vec<&'a str>,
}

impl PackedRow<'_> {
    /// Field `i` (0-based) as a `T`.
    ///
    /// # Errors
    /// NULL where `T` is not an `Option`, or text that is not a `T`.
    pub fn try_get<T: FromPacked>(&self, i: usize) -> Result<T, ProjectionError> {
        let field = self.fields.get(i).copied().unwrap_or(NULL);
        T::from_packed((field != NULL).then_some(field))
    }
}

/// A value of a packed field: `None` for NULL.
pub trait FromPacked: Sized {
    /// Reads it.
    ///
    /// # Errors
    /// The field is NULL or not a `Self`.
    fn from_packed(field: Option<&str>) -> Result<Self, ProjectionError>;
}

impl FromPacked for String {
    fn from_packed(field: Option<&str>) -> Result<Self, ProjectionError> {
        field
            .map(str::to_owned)
            .ok_or_else(|| ProjectionError::Invalid("NULL where text is required".into()))
    }
}

impl FromPacked for i64 {
    fn from_packed(field: Option<&str>) -> Result<Self, ProjectionError> {
        let field = field
            .ok_or_else(|| ProjectionError::Invalid("NULL where a number is required".into()))?;
        field
            .parse()
            .map_err(|e| ProjectionError::Invalid(format!("{field:?} is not a number: {e}")))
    }
}

impl<T: FromPacked> FromPacked for Option<T> {
    fn from_packed(field: Option<&str>) -> Result<Self, ProjectionError> {
        field.map(|f| T::from_packed(Some(f))).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::{check_parameters, name_arguments, renumber, script_call, Cell};

    #[test]
    fn renumber_shifts_every_parameter_and_nothing_else() {
        let mut out = String::new();
        renumber(
            &mut out,
            "UPDATE t SET a = $2, b = $1 || $1 WHERE k = $12 AND c = '$'",
            7,
        );
        assert_eq!(
            out,
            "UPDATE t SET a = $9, b = $8 || $8 WHERE k = $19 AND c = '$'"
        );
        let mut out = String::new();
        renumber(&mut out, "SELECT $1", 0);
        assert_eq!(out, "SELECT $1");
    }

    #[test]
    fn postgres_statements_name_their_values_by_position_and_bound_type() {
        let mut own = vec![Cell::Text("x".into()), Cell::Int(5)];
        own.extend((3..=11).map(|_| Cell::Null));
        own.push(Cell::NullInt);
        let mut out = String::new();
        name_arguments(
            &mut out,
            "UPDATE t SET a = $2, b = $1 || $1 WHERE k = $12 AND c = '$'",
            &own,
            7,
        );
        assert_eq!(
            out,
            "UPDATE t SET a = (($1->>8)::int8), b = ($1->>7) || ($1->>7) \
             WHERE k = (($1->>18)::int8) AND c = '$'"
        );
    }

    #[test]
    fn a_call_carries_statements_and_values_as_json_with_no_value_in_a_statement() {
        let hostile = "'); DROP TABLE t; -- \\ \" $1 $$ \u{1f} é";
        let chunk = vec![
            ("INSERT INTO t VALUES ($1, $2)".to_owned(), 3..5),
            ("DELETE FROM t WHERE k = $1".to_owned(), 5..6),
        ];
        let cells = [
            Cell::Text(hostile.into()),
            Cell::Int(i64::MIN),
            Cell::NullInt,
        ];
        let (texts, arguments) = script_call(&chunk, &cells, 3).unwrap();
        let texts: Vec<String> = serde_json::from_str(&texts).unwrap();
        assert_eq!(
            texts,
            [
                "INSERT INTO t VALUES (($1->>0), (($1->>1)::int8))",
                "DELETE FROM t WHERE k = (($1->>2)::int8)"
            ]
        );
        let arguments: serde_json::Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(arguments, serde_json::json!([hostile, i64::MIN, null]));
    }

    #[test]
    fn a_parameter_beyond_the_cells_or_zero_is_refused() {
        assert!(check_parameters("SELECT $1, $2, '$'", 2).is_ok());
        assert!(check_parameters("SELECT $3", 2).is_err());
        assert!(check_parameters("SELECT $0", 2).is_err());
        assert!(check_parameters("SELECT $99999999999999999999999", 2).is_err());
    }
}
