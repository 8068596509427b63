//! Content checksums of read models: the same rows give the same checksum on SQLite and
//! PostgreSQL, whatever their physical order or generation.
//!
//! A row is hashed (SHA-256) over its cells, each tagged by kind (NULL, integer, real, text,
//! bytes) and length-prefixed; a table's checksum is the hash of its sorted row hashes (a
//! multiset hash), and a projection's the hash of its tables' names, row counts and checksums.

use futures::TryStreamExt;
use kring_projections::{Backend, Projection, ReadDb};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Acquire, AnyConnection, Column, Row};

/// One table's content.
#[derive(Debug, Clone, Serialize)]
pub struct TableSum {
    /// The logical table (the view the API queries).
    pub table: String,
    /// How many rows.
    pub rows: u64,
    /// The checksum, hex.
    pub checksum: String,
    /// Each row's hash with a short description of the row, sorted by hash (for diffs).
    #[serde(skip)]
    pub row_hashes: Vec<([u8; 32], String)>,
}

/// One projection's content.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionSum {
    /// The checksum over its tables, hex.
    pub checksum: String,
    /// Its tables.
    pub tables: Vec<TableSum>,
}

/// Where a projection's active generation stands.
#[derive(Debug, Clone, Serialize)]
pub struct Active {
    /// The projection.
    pub name: String,
    /// Its active generation.
    pub generation: i64,
    /// The last position applied.
    pub position: u64,
    /// Why it stopped, if it did.
    pub failure: Option<String>,
    /// Its content, when asked for.
    pub sum: Option<ProjectionSum>,
}

/// The read models' state, read in one snapshot: every projection's checkpoint and, when
/// `with_sums`, the checksum of its content at exactly that checkpoint. `None` when the read
/// models were never built. Read-only: the transaction is rolled back.
///
/// # Errors
/// Database failures.
pub async fn snapshot(
    db: &ReadDb,
    projections: &[std::sync::Arc<dyn Projection>],
    with_sums: bool,
) -> Result<Option<Vec<Active>>, sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let exists: i64 = match db.backend() {
        Backend::Postgres => {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
            sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'projection_generations'")
                .fetch_one(&mut *tx)
                .await?
        }
        Backend::Sqlite => {
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'projection_generations'")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    if exists == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT name, generation, position, failure FROM projection_generations WHERE active = 1 ORDER BY name",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut all = Vec::new();
    for row in rows {
        let name: String = row.try_get(0)?;
        let mut active = Active {
            generation: row.try_get(1)?,
            position: u64::try_from(row.try_get::<i64, _>(2)?).unwrap_or_default(),
            failure: row.try_get(3)?,
            sum: None,
            name,
        };
        if with_sums {
            if let Some(p) = projections.iter().find(|p| p.name() == active.name) {
                active.sum = Some(projection_sum(&mut tx, p.as_ref()).await?);
            }
        }
        all.push(active);
    }
    tx.rollback().await?;
    Ok(Some(all))
}

/// The checksum of a projection's tables, read through their views.
///
/// # Errors
/// Database failures.
pub async fn projection_sum(
    conn: &mut AnyConnection,
    projection: &dyn Projection,
) -> Result<ProjectionSum, sqlx::Error> {
    let mut tables = Vec::new();
    let mut h = Sha256::new();
    for table in projection.tables() {
        let sum = table_sum(conn, table).await?;
        h.update(table.as_bytes());
        h.update(sum.rows.to_be_bytes());
        h.update(sum.checksum.as_bytes());
        tables.push(sum);
    }
    Ok(ProjectionSum {
        checksum: hex::encode(h.finalize()),
        tables,
    })
}

/// The checksum of one table (or view).
///
/// # Errors
/// Database failures; a cell of a type no read model uses.
pub async fn table_sum(conn: &mut AnyConnection, table: &str) -> Result<TableSum, sqlx::Error> {
    let sql = format!("SELECT * FROM {table}");
    let mut hashes = Vec::new();
    {
        let mut rows = sqlx::query(&sql).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            hashes.push(row_hash(&row)?);
        }
    }
    hashes.sort_unstable_by_key(|a| a.0);
    let mut h = Sha256::new();
    for (hash, _) in &hashes {
        h.update(hash);
    }
    Ok(TableSum {
        table: table.to_owned(),
        rows: hashes.len() as u64,
        checksum: hex::encode(h.finalize()),
        row_hashes: hashes,
    })
}

/// A cell as hashed.
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

fn cell(row: &AnyRow, i: usize) -> Result<Cell, sqlx::Error> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map_or(Cell::Null, Cell::Int));
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v.map_or(Cell::Null, Cell::Text));
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return Ok(v.map_or(Cell::Null, Cell::Real));
    }
    row.try_get::<Option<Vec<u8>>, _>(i)
        .map(|v| v.map_or(Cell::Null, Cell::Bytes))
}

fn row_hash(row: &AnyRow) -> Result<([u8; 32], String), sqlx::Error> {
    let mut h = Sha256::new();
    let mut key = Vec::new();
    for i in 0..row.len() {
        let c = cell(row, i)?;
        let shown = match &c {
            Cell::Null => {
                h.update([0]);
                "NULL".to_owned()
            }
            Cell::Int(v) => {
                h.update([1]);
                h.update(v.to_be_bytes());
                v.to_string()
            }
            Cell::Real(v) => {
                h.update([2]);
                h.update(v.to_be_bytes());
                v.to_string()
            }
            Cell::Text(v) => {
                h.update([3]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
                v.clone()
            }
            Cell::Bytes(v) => {
                h.update([4]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v);
                hex::encode(v)
            }
        };
        // The first two columns (the key, in every read model) describe a differing row.
        if i < 2 {
            let shown = if shown.chars().count() > 40 {
                format!("{}…", shown.chars().take(40).collect::<String>())
            } else {
                shown
            };
            key.push(format!("{}={shown}", row.column(i).name()));
        }
    }
    Ok((h.finalize().into(), key.join(", ")))
}
