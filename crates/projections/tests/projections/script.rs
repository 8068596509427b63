//! `bulk::Script` on a projector's `Tx`: statements that depend on each other run in order, each
//! with its own parameters, across several multi-statement commands on SQLite and one by one on
//! PostgreSQL; a failing one poisons the transaction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::Harness;
use kring_projections::bulk::{Cell, Script};
use kring_projections::writer::Fault;
use kring_projections::{ProjectionError, Tx};
use kring_store::EventStore;
use sqlx::Row;
use std::collections::BTreeMap;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![]), postgres: |_| common::postgres(vec![]);
    a_script_runs_its_statements_in_order_with_their_own_parameters,
    a_failing_statement_poisons_the_transaction_and_nothing_of_it_is_kept,
);

const CREATE: &str =
    "CREATE TABLE script_t (k TEXT PRIMARY KEY, v BIGINT NOT NULL, note TEXT, a BIGINT, b BIGINT)";
const INSERT: &str = "INSERT INTO script_t (k, v, note) VALUES ($1, $2, $3)";
// `$1` twice, and `$2` before `$1`: each statement's own numbering.
const BUMP: &str = "UPDATE script_t SET v = v + $2, note = $1 || ':' || $1 WHERE k = $3";
const DELETE: &str = "DELETE FROM script_t WHERE k = $1";
// Twelve parameters: `$10`, `$11` and `$12` must not be read as `$1` followed by a digit.
const WIDE: &str = "UPDATE script_t SET a = $1 + $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, \
                    b = $10 * $11 WHERE k = $12";

/// A row's (v, note, a, b), by key.
type Table = BTreeMap<String, (i64, Option<String>, Option<i64>, Option<i64>)>;

async fn rows<S: EventStore + Clone>(h: &Harness<S>) -> Table {
    let rows = sqlx::query("SELECT k, v, note, a, b FROM script_t")
        .fetch_all(h.db.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect()
}

async fn a_script_runs_its_statements_in_order_with_their_own_parameters<S: EventStore + Clone>(
    h: Harness<S>,
) {
    sqlx::query(CREATE).execute(h.db.pool()).await.unwrap();
    // The same steps on a map: what the table must hold afterwards.
    let mut model = Table::new();
    let mut script = Script::default();
    // 600 statements and ~2,400 parameters: several commands of at most 100 statements and
    // 1,000 parameters each, with statements that depend on earlier ones in other commands.
    for i in 0..150_i64 {
        let k = format!("k{:03}", i % 40);
        if model.contains_key(&k) {
            script.push(
                BUMP.into(),
                [
                    Cell::Text(format!("n{i}")),
                    Cell::Int(i),
                    Cell::Text(k.clone()),
                ],
            );
            let row = model.get_mut(&k).unwrap();
            row.0 += i;
            row.1 = Some(format!("n{i}:n{i}"));
        } else {
            script.push(
                INSERT.into(),
                [Cell::Text(k.clone()), Cell::Int(i), Cell::Null],
            );
            model.insert(k.clone(), (i, None, None, None));
        }
        let mut wide: Vec<Cell> = (1..=11).map(|n| Cell::Int(n * i)).collect();
        wide.push(Cell::Text(k.clone()));
        script.push(WIDE.into(), wide);
        if let Some(row) = model.get_mut(&k) {
            row.2 = Some((1..=9).map(|n| n * i).sum());
            row.3 = Some(10 * i * 11 * i);
        }
        if i % 7 == 3 {
            script.push(DELETE.into(), [Cell::Text(k.clone())]);
            model.remove(&k);
        }
        // A statement whose parameter a later statement's renumbering must not disturb.
        script.push(
            "UPDATE script_t SET v = v WHERE k = $1".into(),
            [Cell::Text("absent".into())],
        );
    }
    assert!(!script.is_empty());
    let mut tx = Tx::start(h.db.pool().acquire().await.unwrap());
    script.execute(&mut tx).await.unwrap();
    assert!(script.is_empty(), "a queued script is forgotten");
    assert!(tx.sync().await.unwrap().is_none(), "every statement ran");
    tx.finish().await.unwrap();
    assert!(!model.is_empty());
    assert_eq!(rows(&h).await, model);
}

async fn a_failing_statement_poisons_the_transaction_and_nothing_of_it_is_kept<
    S: EventStore + Clone,
>(
    h: Harness<S>,
) {
    sqlx::query(CREATE).execute(h.db.pool()).await.unwrap();
    let mut script = Script::default();
    for i in 0..250_i64 {
        script.push(
            INSERT.into(),
            [Cell::Text(format!("k{i}")), Cell::Int(i), Cell::Null],
        );
    }
    // A duplicate key in the third command.
    script.push(
        INSERT.into(),
        [Cell::Text("k7".into()), Cell::Int(0), Cell::Null],
    );
    for i in 250..260_i64 {
        script.push(
            INSERT.into(),
            [Cell::Text(format!("k{i}")), Cell::Int(i), Cell::Null],
        );
    }
    let mut tx = Tx::start(h.db.pool().acquire().await.unwrap());
    tx.begin_write().await.unwrap();
    // Queued: the failure comes later.
    script.execute(&mut tx).await.unwrap();
    let failure = tx.sync().await.unwrap().expect("the duplicate key fails");
    assert!(
        matches!(&failure.fault, Fault::Error(ProjectionError::Database(e)) if e.as_database_error().is_some()),
        "a constraint violation, not {:?}",
        failure.fault
    );
    assert!(
        tx.sync().await.unwrap().is_none(),
        "a failure is handed over once"
    );
    // Poisoned: no more writes or queries, and no commit, until a rollback.
    assert!(tx.is_poisoned());
    assert!(tx
        .execute(
            INSERT,
            vec![Cell::Text("late".into()), Cell::Int(1), Cell::Null]
        )
        .await
        .is_err());
    assert!(tx
        .fetch_all("SELECT k FROM script_t", vec![])
        .await
        .is_err());
    assert!(
        tx.commit().await.is_err(),
        "a poisoned transaction is never committed"
    );
    tx.rollback().await.unwrap();
    assert!(!tx.is_poisoned());
    assert!(
        tx.fetch_all("SELECT k FROM script_t", vec![])
            .await
            .unwrap()
            .is_empty(),
        "the rollback kept nothing"
    );
    tx.finish().await.unwrap();
    assert!(rows(&h).await.is_empty());
}
