//! Generations of a projection's tables: the state table, creating, indexing, switching the
//! views to, and dropping a generation.

use crate::db::{to_u64, Backend, BEGIN_IMMEDIATE};
use crate::error::ProjectionError;
use crate::projection::{Projection, Tables};
use sqlx::{Acquire, AnyConnection, Executor, Row};

const HAS_FINGERPRINT_SQLITE: &str = include_str!("sql/sqlite/has_fingerprint.sql");
const HAS_FINGERPRINT_POSTGRES: &str = include_str!("sql/postgres/has_fingerprint.sql");
const ADD_FINGERPRINT: &str = include_str!("sql/add_fingerprint.sql");
const ACTIVE: &str = include_str!("sql/active.sql");
/// On PostgreSQL, serialises preparing and creating generations across processes.
pub(super) const LOCK_GENERATIONS: &str = include_str!("sql/postgres/lock_generations.sql");
pub(super) const ACTIVATE: &str = include_str!("sql/activate.sql");
const LATEST_GENERATION: &str = include_str!("sql/latest_generation.sql");
const INSERT_GENERATION: &str = include_str!("sql/insert_generation.sql");
const TEMP_STORE_FILE: &str = include_str!("sql/sqlite/temp_store_file.sql");
const NO_STATEMENT_TIMEOUT: &str = include_str!("sql/postgres/no_statement_timeout.sql");
const TEMP_STORE_MEMORY: &str = include_str!("sql/sqlite/temp_store_memory.sql");
const DELETE_GENERATION: &str = include_str!("sql/delete_generation.sql");

pub(super) const STATE_TABLE: &str = include_str!("sql/state_table.sql");

/// Adds `fingerprint` to a state table made before it existed (its rows get NULL, which no
/// projection's fingerprint equals: their generations are replaced).
pub(super) async fn add_fingerprint_column(
    conn: &mut AnyConnection,
) -> Result<(), ProjectionError> {
    let sql = if Backend::of(conn) == Backend::Sqlite {
        HAS_FINGERPRINT_SQLITE
    } else {
        HAS_FINGERPRINT_POSTGRES
    };
    let present: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
    if present == 0 {
        conn.execute(ADD_FINGERPRINT).await?;
    }
    Ok(())
}

/// Begins a transaction that writes read-model tables. On SQLite it takes the write lock at
/// once (`BEGIN IMMEDIATE`). A deferred transaction that reads before it writes — as a batch
/// does (projections load state, then write) — is refused the upgrade to a writer with
/// "database is locked" (`SQLITE_BUSY`, or `SQLITE_BUSY_SNAPSHOT` once another connection has
/// committed since its read) without the busy handler waiting. That failed a rebuild, or the
/// live catch-up beside it, whenever the two wrote at the same moment (found by the oracle test,
/// `tests/oracle.rs`). Taken up front, the lock is waited for (`busy_timeout`) like any other.
pub(super) async fn begin_write(
    conn: &mut AnyConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    if Backend::of(conn) == Backend::Sqlite {
        sqlx::Connection::begin_with(conn, BEGIN_IMMEDIATE).await
    } else {
        conn.begin().await
    }
}

/// The active generation of a projection: its number, position and fingerprint.
pub(super) async fn active(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<(i64, u64, Option<String>)>, ProjectionError> {
    let row = sqlx::query(ACTIVE)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        Ok((
            r.try_get::<i64, _>(0)?,
            to_u64(r.try_get(1)?)?,
            r.try_get::<Option<String>, _>(2)?,
        ))
    })
    .transpose()
}

/// The active generation of `projection`, its position and the fingerprint of the code that
/// made it ([`Projection::fingerprint`]); when there is none, generation 1 is created for this
/// code and made active.
/// In one write transaction (under a lock on PostgreSQL), so that two processes starting
/// together agree.
pub(super) async fn current_generation(
    conn: &mut AnyConnection,
    projection: &dyn Projection,
) -> Result<(i64, u64, Option<String>), ProjectionError> {
    let mut tx = begin_write(conn).await?;
    if Backend::of(&tx) != Backend::Sqlite {
        tx.execute(LOCK_GENERATIONS).await?;
    }
    let name = projection.name();
    if let Some((generation, position, fingerprint)) = active(&mut tx, name).await? {
        tx.commit().await?;
        return Ok((generation, position, fingerprint));
    }
    let generation = next_generation(&mut tx, name).await?;
    let tables = Tables::new(projection.tables(), generation);
    create_generation(&mut tx, projection, &tables, generation, true).await?;
    switch_views(&mut tx, &tables).await?;
    sqlx::query(ACTIVATE)
        .bind(name)
        .bind(generation)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((generation, 0, Some(projection.fingerprint())))
}

/// The number for a new generation of `name`, inside the write transaction that creates it (on
/// PostgreSQL under the preparation lock): two processes creating generations at once (a
/// rebuild and a first start, two rebuilds) never pick the same number, so neither drops the
/// other's tables.
pub(super) async fn next_generation(
    tx: &mut AnyConnection,
    name: &str,
) -> Result<i64, ProjectionError> {
    let latest: Option<i64> = sqlx::query_scalar(LATEST_GENERATION)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
    Ok(latest.unwrap_or(0) + 1)
}

/// Drops the tables of `generation` of `projection` and forgets it.
pub(super) async fn drop_generation(
    conn: &mut AnyConnection,
    projection: &dyn Projection,
    generation: i64,
) -> Result<(), ProjectionError> {
    for (_, physical) in Tables::new(projection.tables(), generation).pairs() {
        // Built here: a generation's table names are known only at run time.
        conn.execute(format!("DROP TABLE IF EXISTS {physical}").as_str())
            .await?;
    }
    sqlx::query(DELETE_GENERATION)
        .bind(projection.name())
        .bind(generation)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates `generation` of `projection`'s tables (dropping any left over under the same names),
/// inactive and at position 0. A generation that serves at once gets its query indexes now; a
/// rebuild's gets them from [`create_query_indexes`] after its fill.
pub(super) async fn create_generation(
    tx: &mut AnyConnection,
    projection: &dyn Projection,
    tables: &Tables,
    generation: i64,
    query_indexes: bool,
) -> Result<(), ProjectionError> {
    for (_, physical) in tables.pairs() {
        // Built here: a generation's table names are known only at run time.
        tx.execute(format!("DROP TABLE IF EXISTS {physical}").as_str())
            .await?;
    }
    execute_ddl(tx, tables, projection.schema()).await?;
    if query_indexes {
        execute_ddl(tx, tables, projection.query_indexes()).await?;
    }
    sqlx::query(DELETE_GENERATION)
        .bind(projection.name())
        .bind(generation)
        .execute(&mut *tx)
        .await?;
    sqlx::query(INSERT_GENERATION)
        .bind(projection.name())
        .bind(generation)
        .bind(projection.fingerprint())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Creates the query indexes of a filled generation, in one transaction.
///
/// On SQLite the sort spills to temporary files while it runs: with the connection's
/// `temp_store = MEMORY` the runs of sorted keys stay in memory, and sorting a large table
/// takes a rebuild's peak memory up to its 256 MiB budget.
pub(super) async fn create_query_indexes(
    conn: &mut AnyConnection,
    projection: &dyn Projection,
    tables: &Tables,
) -> Result<(), ProjectionError> {
    let sqlite = Backend::of(conn) == Backend::Sqlite;
    if sqlite {
        conn.execute(TEMP_STORE_FILE).await?;
    }
    let created = async {
        let mut tx = begin_write(conn).await?;
        if !sqlite {
            // Indexing a whole generation takes as long as it takes; the connection's statement
            // timeout (`kring_store::postgres::link`) applies again after this transaction.
            tx.execute(NO_STATEMENT_TIMEOUT).await?;
        }
        execute_ddl(&mut tx, tables, projection.query_indexes()).await?;
        tx.commit().await?;
        Ok::<_, ProjectionError>(())
    }
    .await;
    if sqlite {
        conn.execute(TEMP_STORE_MEMORY).await?;
    }
    created
}

/// Runs `ddl` (statements separated by `;`, tables as `{name}`, `{without_rowid}` after a
/// table that SQLite should keep in its primary key's order; see [`Projection::schema`]) for
/// `tables`.
async fn execute_ddl(
    tx: &mut AnyConnection,
    tables: &Tables,
    ddl: &str,
) -> Result<(), ProjectionError> {
    let clustered = match Backend::of(tx) {
        Backend::Sqlite => " WITHOUT ROWID",
        Backend::Postgres => "",
    };
    for statement in tables
        .render(ddl)
        .replace("{without_rowid}", clustered)
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        tx.execute(statement).await?;
    }
    Ok(())
}

pub(super) async fn switch_views(
    tx: &mut AnyConnection,
    tables: &Tables,
) -> Result<(), ProjectionError> {
    for (logical, physical) in tables.pairs() {
        // Built here: the view and table names are known only at run time.
        tx.execute(format!("DROP VIEW IF EXISTS {logical}").as_str())
            .await?;
        tx.execute(format!("CREATE VIEW {logical} AS SELECT * FROM {physical}").as_str())
            .await?;
    }
    Ok(())
}
