//! A rebuild builds its query indexes after the fill: the generation it switches to must still
//! have every index a generation created up front has.

#![allow(clippy::unwrap_used)]

mod common;

use common::Harness;
use kring_domain::simulation::World;
use kring_projections::{models, Backend, Projection, ReadDb, Tables};
use kring_store::EventStore;
use sqlx::Row;
use std::collections::BTreeSet;

both_backends!(models::all();
    a_rebuilt_generation_has_every_index_of_a_fresh_one,
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
