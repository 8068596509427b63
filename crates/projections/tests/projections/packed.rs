//! `bulk::select_packed`: rows loaded as one packed text per statement come back as the plain
//! query's rows, NULLs and numbers included, across several statements.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::Harness;
use kring_projections::bulk::select_packed;
use kring_projections::ProjectionError;
use kring_store::EventStore;
use std::collections::BTreeSet;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![]), postgres: |_| common::postgres(vec![]);
    packed_rows_are_the_rows_of_the_plain_query,
    a_statement_that_is_not_a_select_of_columns_is_refused,
);

/// (id, label, count, note) rows; `note` is NULL for every third row and JSON for the others.
async fn table<S: EventStore + Clone>(
    h: &Harness<S>,
    n: usize,
) -> Vec<(String, String, i64, Option<String>)> {
    sqlx::query("CREATE TABLE packed_t (id TEXT PRIMARY KEY, label TEXT NOT NULL, count BIGINT NOT NULL, note TEXT)")
        .execute(h.db.pool())
        .await
        .unwrap();
    let mut rows = Vec::new();
    for i in 0..n {
        let note = (i % 3 != 0).then(|| format!("{{\"a\":[{i},\"x, y\"]}}"));
        let row = (
            format!("id-{i:05}"),
            format!("label {i}"),
            i64::try_from(i).unwrap() - 7,
            note,
        );
        sqlx::query("INSERT INTO packed_t (id, label, count, note) VALUES ($1, $2, $3, $4)")
            .bind(row.0.clone())
            .bind(row.1.clone())
            .bind(row.2)
            .bind(row.3.clone())
            .execute(h.db.pool())
            .await
            .unwrap();
        rows.push(row);
    }
    rows
}

async fn packed_rows_are_the_rows_of_the_plain_query<S: EventStore + Clone>(h: Harness<S>) {
    // More ids than one statement takes (1,000), some of them absent.
    let rows = table(&h, 2_500).await;
    let mut ids: Vec<String> = rows.iter().map(|r| r.0.clone()).step_by(2).collect();
    ids.push("absent".into());
    let mut conn = h.db.pool().acquire().await.unwrap();
    let packed = select_packed(
        &mut *conn,
        "SELECT id, label, count, note FROM packed_t WHERE id IN ({in})",
        &[],
        &ids,
    )
    .await
    .unwrap();
    let mut got = BTreeSet::new();
    for row in packed.rows() {
        let row = row.unwrap();
        got.insert((
            row.try_get::<String>(0).unwrap(),
            row.try_get::<String>(1).unwrap(),
            row.try_get::<i64>(2).unwrap(),
            row.try_get::<Option<String>>(3).unwrap(),
        ));
    }
    let wanted: BTreeSet<_> = rows.into_iter().step_by(2).collect();
    assert_eq!(got.len(), 1_250);
    assert_eq!(got, wanted);

    // A NULL is not text, and nothing matching is no rows.
    let note_of = |id: &str| [id.to_owned()];
    let sql = "SELECT id, note FROM packed_t WHERE id IN ({in})";
    let null = select_packed(&mut *conn, sql, &[], &note_of("id-00000"))
        .await
        .unwrap();
    let row = null.rows().next().unwrap().unwrap();
    assert!(row.try_get::<String>(1).is_err());
    assert_eq!(row.try_get::<Option<String>>(1).unwrap(), None);
    let none = select_packed(&mut *conn, sql, &[], &note_of("absent"))
        .await
        .unwrap();
    assert_eq!(none.rows().count(), 0);
}

async fn a_statement_that_is_not_a_select_of_columns_is_refused<S: EventStore + Clone>(
    h: Harness<S>,
) {
    let mut conn = h.db.pool().acquire().await.unwrap();
    let refused = select_packed(
        &mut *conn,
        "DELETE FROM projection_generations WHERE name IN ({in})",
        &[],
        &["consent".to_owned()],
    )
    .await;
    assert!(
        matches!(refused, Err(ProjectionError::Invalid(_))),
        "{refused:?}"
    );
}
