//! A rebuild builds its query indexes after the fill: the generation it switches to must still
//! have every index a generation created up front has.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::Harness;
use kring_domain::simulation::World;
use kring_projections::{models, Backend, Projection, ReadDb, Tables};
use kring_store::EventStore;
use sqlx::Row;
use std::collections::BTreeSet;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(models::all()), postgres: |_| common::postgres(models::all());
    a_rebuilt_generation_has_every_index_of_a_fresh_one,
    tables_marked_without_rowid_are_kept_in_key_order_on_sqlite_only,
);

/// The indexes on `projection`'s tables of `generation`, named without the generation suffix.
async fn indexes(db: &ReadDb, projection: &dyn Projection, generation: i64) -> BTreeSet<String> {
    let sql = match db.backend() {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1",
        Backend::Postgres => "SELECT indexname::text FROM pg_indexes WHERE tablename = $1",
    };
    let suffix = format!("_g{generation}");
    let mut out = BTreeSet::new();
    for (_, physical) in Tables::new(projection.tables(), generation).pairs() {
        for row in sqlx::query(sql)
            .bind(physical)
            .fetch_all(db.pool())
            .await
            .unwrap()
        {
            out.insert(row.get::<String, _>(0).replace(&suffix, ""));
        }
    }
    out
}

async fn a_rebuilt_generation_has_every_index_of_a_fresh_one<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    let world = World::with_classes(1, 2, 2);
    h.sync(&world).await;
    let projections = models::all();
    let mut before = Vec::new();
    for p in &projections {
        before.push(indexes(&h.db, p.as_ref(), 1).await);
    }
    h.projector.rebuild(&[]).await.unwrap();
    for status in h.projector.board().all() {
        assert_eq!(status.generation, 2, "{} was rebuilt", status.name);
    }
    for (p, before) in projections.iter().zip(before) {
        let after = indexes(&h.db, p.as_ref(), 2).await;
        assert_eq!(after, before, "indexes of {}", p.name());
        // Each query index is among them, so the comparison is not between two empty sets.
        for statement in p
            .query_indexes()
            .split(';')
            .filter(|s| !s.trim().is_empty())
        {
            let name = statement
                .split_whitespace()
                .nth(2)
                .unwrap()
                .replace(['{', '}'], "");
            assert!(
                after.contains(&name),
                "{name} of {} after a rebuild",
                p.name()
            );
        }
    }
}

/// `{without_rowid}` in a schema makes the table `WITHOUT ROWID` on SQLite, and nothing else;
/// PostgreSQL gets a plain table.
async fn tables_marked_without_rowid_are_kept_in_key_order_on_sqlite_only<S: EventStore + Clone>(
    mut h: Harness<S>,
) {
    h.sync(&World::with_classes(1, 1, 1)).await;
    let mut clustered = BTreeSet::new();
    for p in models::all() {
        let tables = Tables::new(p.tables(), 1);
        for statement in p.schema().split(';') {
            let statement = statement.trim();
            let Some(rest) = statement.strip_prefix("CREATE TABLE {") else {
                continue;
            };
            let logical = &rest[..rest.find('}').unwrap()];
            let physical = tables.physical(logical).unwrap();
            let marked = statement.ends_with("{without_rowid}");
            if marked {
                clustered.insert(logical.to_owned());
            }
            match h.db.backend() {
                Backend::Sqlite => {
                    let sql: String =
                        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = $1")
                            .bind(physical)
                            .fetch_one(h.db.pool())
                            .await
                            .unwrap();
                    assert_eq!(sql.ends_with("WITHOUT ROWID"), marked, "{sql}");
                }
                Backend::Postgres => {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = $1",
                    )
                    .bind(physical)
                    .fetch_one(h.db.pool())
                    .await
                    .unwrap();
                    assert_eq!(n, 1, "{physical} is a plain table");
                }
            }
        }
    }
    for decisions in ["consent_decisions", "visibility_consents"] {
        assert!(clustered.contains(decisions), "{decisions} is marked");
    }
}
