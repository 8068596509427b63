//! Multi-row writes: a projection buffers a batch's rows and writes them in a few statements
//! in [`crate::Projection::flush`]. On SQLite every statement is a round trip to the
//! connection's worker thread, so statements, not rows, are what a rebuild pays for.

use sqlx::AnyConnection;

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// An integer (ids of time, positions, flags).
    Int(i64),
    /// Text (ids, names of things, sealed envelopes).
    Text(String),
    /// SQL NULL.
    Null,
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

/// Parameters per statement (SQLite allows 32,766, PostgreSQL 65,535). Every text is a cached
/// prepared statement whose program grows with its parameters: at 6,000 the 1M-event rebuild
/// peaked 28–36 MiB higher than at 1,000, and was no faster (`docs/benchmarks.md`, session 5).
const MAX_PARAMS: usize = 1_000;

/// Appends the `n`th (1-based) bind parameter: `$n` on PostgreSQL, an anonymous `?` on SQLite.
///
/// Numbered parameters cost SQLite quadratically: sqlx binds each by looking up its name, and
/// SQLite finds a name by scanning the list of all of them (measured: with `$n`, two thirds of a
/// rebuild went to `sqlite3_bind_parameter_name`). Anonymous parameters have no name to look up.
fn placeholder(sql: &mut String, sqlite: bool, n: usize) {
    if sqlite {
        sql.push('?');
    } else {
        sql.push('$');
        sql.push_str(&n.to_string());
    }
}

fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
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

    /// Adds a row given as a slice; it must have `width` cells.
    pub fn row_slice(&mut self, cells: &[Cell]) {
        debug_assert_eq!(cells.len(), self.width);
        self.cells.extend_from_slice(cells);
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

    /// Writes the rows (in as few statements as the parameter limit allows) and forgets them.
    ///
    /// # Errors
    /// Database failures.
    pub async fn execute(&mut self, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let rows_per_statement = (MAX_PARAMS / self.width.max(1)).max(1);
        let cells = std::mem::take(&mut self.cells);
        let sqlite = is_sqlite(tx);
        for chunk in cells.chunks(rows_per_statement * self.width) {
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
            bind_cells(sqlx::query(&sql), chunk)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// Runs `sql` — whose `{in}` stands for a list of parameters after the `fixed` ones, which `sql`
/// names `$1`, `$2`, … (at most 9, each used once, in order) — once per
/// chunk of `ids`, and returns every row: one statement per few thousand ids instead of one per
/// id. Used for the bulk loads of buffered read models.
///
/// # Errors
/// Database failures.
pub async fn select_in(
    conn: &mut AnyConnection,
    sql: &str,
    fixed: &[Cell],
    ids: &[String],
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    // Prepared statements are cached per text: keep the number of distinct texts small.
    const PER: usize = 1_000;
    let sqlite = is_sqlite(conn);
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
        let mut query = bind_cells(sqlx::query(&text).persistent(chunk.len() == PER), fixed);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        out.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}
