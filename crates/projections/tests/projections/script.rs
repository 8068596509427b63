//! `bulk::Script` on a projector's `Tx`: statements that depend on each other run in order, each
//! with its own parameters, across several commands (multi-statement texts on SQLite, calls of
//! `kring_script_v1` on PostgreSQL); a failing one poisons the transaction; hostile text is
//! stored byte for byte and never runs as SQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::Harness;
use kring_projections::bulk::{Cell, Script};
use kring_projections::db::Backend;
use kring_projections::writer::Fault;
use kring_projections::{ProjectionError, ReadDb, Tx};
use kring_store::EventStore;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sqlx::Row;
use std::collections::BTreeMap;
use std::fmt::Write as _;

kring_testkit::on_both_backends!(sqlite: |_| common::sqlite(vec![]), postgres: |_| common::postgres(vec![]);
    a_script_runs_its_statements_in_order_with_their_own_parameters,
    a_failing_statement_poisons_the_transaction_and_nothing_of_it_is_kept,
    hostile_text_is_stored_byte_for_byte_and_never_runs_as_sql,
    statements_past_the_parameter_limits_run_in_order,
    a_statement_naming_a_parameter_it_lacks_is_refused_before_anything_runs,
    text_with_a_nul_fails_on_postgresql_as_a_bound_value_does,
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
    // The error is the failing statement's own: it names the key that collided.
    let Fault::Error(ProjectionError::Database(e)) = &failure.fault else {
        unreachable!()
    };
    let message = e.as_database_error().unwrap().message().to_owned();
    assert!(
        message.contains("script_t_pkey") || message.contains("script_t.k"),
        "{message}"
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

const CANARY: &str = "CREATE TABLE script_canary (k BIGINT PRIMARY KEY)";

/// Text a statement must store as it is: quotes, backslashes, dollar signs (dollar-quote tags
/// and parameter names among them), JSON and SQL syntax, control characters and any other
/// character but NUL (which PostgreSQL's text cannot hold; see below).
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "'", "''", "\\", "\\'", "\\\\", "$", "$1", "$2", "$$", "$body$", "$1->>0",
            "(($1->>0)::int8)", "\"", "\\\"", "\\u0000", "\\n", "E'", "e'\\'", "U&'\\0041'",
            "'; DROP TABLE script_canary; --", "\"); DELETE FROM script_t; --", "/*", "*/",
            "--", ";", "\n", "\r\n", "\t", "\u{1}", "\u{1f}", "\u{7f}", "\u{85}", "é", "ß",
            "ĳ", "\u{301}", "😀", "\u{feff}", "\u{2028}", "\u{fffd}", "\u{10ffff}", "NULL",
            "null", "[", "]", "{", "}", ",", ":", "true",
        ])
        .prop_map(str::to_owned),
        2 => any::<char>()
            .prop_filter("no NUL", |c| *c != '\0')
            .prop_map(String::from),
        1 => "[a-z ]{0,8}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

async fn hostile_text_is_stored_byte_for_byte_and_never_runs_as_sql<S: EventStore + Clone>(
    h: Harness<S>,
) {
    sqlx::query(CREATE).execute(h.db.pool()).await.unwrap();
    sqlx::query(CANARY).execute(h.db.pool()).await.unwrap();
    sqlx::query("INSERT INTO script_canary (k) VALUES (1)")
        .execute(h.db.pool())
        .await
        .unwrap();
    let case = (
        prop::collection::vec((hostile_text(), any::<i64>()), 1..40),
        hostile_text(),
    );
    let mut runner = TestRunner::deterministic();
    for _ in 0..48 {
        let (values, tail) = case.new_tree(&mut runner).unwrap().current();
        let mut script = Script::default();
        let mut model = Table::new();
        for (i, (text, number)) in values.iter().enumerate() {
            // The text in the key, the value and a later statement's condition, and appended
            // to itself; the number at the edges of its type too.
            let k = format!("{i}:{text}");
            let number = match i {
                0 => i64::MIN,
                1 => i64::MAX,
                _ => *number,
            };
            script.push(
                INSERT.into(),
                [Cell::Text(k.clone()), Cell::Int(number), Cell::Null],
            );
            script.push(
                "UPDATE script_t SET note = $1 || $2, a = $3 WHERE k = $4".into(),
                [
                    Cell::Text(text.clone()),
                    Cell::Text(tail.clone()),
                    if i % 2 == 0 {
                        Cell::NullInt
                    } else {
                        Cell::Int(-number / 2)
                    },
                    Cell::Text(k.clone()),
                ],
            );
            let a = (i % 2 == 1).then(|| -number / 2);
            model.insert(k, (number, Some(format!("{text}{tail}")), a, None));
        }
        let mut tx = Tx::start(h.db.pool().acquire().await.unwrap());
        tx.begin_write().await.unwrap();
        script.execute(&mut tx).await.unwrap();
        if let Some(failure) = tx.sync().await.unwrap() {
            panic!("{values:?} / {tail:?} failed: {:?}", failure.fault);
        }
        tx.commit().await.unwrap();
        tx.finish().await.unwrap();
        assert_eq!(rows(&h).await, model, "{values:?} / {tail:?}");
        let canary: i64 = sqlx::query_scalar("SELECT count(*) FROM script_canary")
            .fetch_one(h.db.pool())
            .await
            .unwrap();
        assert_eq!(canary, 1, "{values:?} / {tail:?}");
        sqlx::query("DELETE FROM script_t")
            .execute(h.db.pool())
            .await
            .unwrap();
    }
}

async fn statements_past_the_parameter_limits_run_in_order<S: EventStore + Clone>(h: Harness<S>) {
    sqlx::query(CREATE).execute(h.db.pool()).await.unwrap();
    let mut script = Script::default();
    // One statement of 3,000 parameters (more than a command's 1,000): a command of its own.
    let mut wide = String::from("INSERT INTO script_t (k, v, note) VALUES ");
    let mut cells = Vec::new();
    for i in 0..1_000_usize {
        if i > 0 {
            wide.push(',');
        }
        write!(wide, "(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3).unwrap();
        cells.extend([
            Cell::Text(format!("w{i:04}")),
            Cell::Int(i64::try_from(i).unwrap()),
            Cell::Text(format!("'{i}'$")),
        ]);
    }
    script.push(
        "INSERT INTO script_t (k, v, note) VALUES ($1, $2, $3)".into(),
        [Cell::Text("first".into()), Cell::Int(-1), Cell::Null],
    );
    script.push(wide, cells);
    // 24,000 statements and 72,000 parameters after it (more than PostgreSQL binds in one
    // statement), each depending on the one before.
    for i in 0..24_000_i64 {
        script.push(
            "UPDATE script_t SET v = v + $1, a = $2 WHERE k = $3".into(),
            [
                Cell::Int(1),
                Cell::Int(i),
                Cell::Text(format!("w{:04}", i % 1_000)),
            ],
        );
    }
    let mut tx = Tx::start(h.db.pool().acquire().await.unwrap());
    tx.begin_write().await.unwrap();
    script.execute(&mut tx).await.unwrap();
    assert!(tx.sync().await.unwrap().is_none(), "every statement ran");
    tx.commit().await.unwrap();
    tx.finish().await.unwrap();
    let table = rows(&h).await;
    assert_eq!(table.len(), 1_001);
    assert_eq!(table["first"], (-1, None, None, None));
    for i in 0..1_000_i64 {
        // 24 bumps each; the last update of row i was number 23,000 + i.
        assert_eq!(
            table[&format!("w{i:04}")],
            (i + 24, Some(format!("'{i}'$")), Some(23_000 + i), None)
        );
    }
}

async fn a_statement_naming_a_parameter_it_lacks_is_refused_before_anything_runs<
    S: EventStore + Clone,
>(
    h: Harness<S>,
) {
    sqlx::query(CREATE).execute(h.db.pool()).await.unwrap();
    let mut tx = Tx::start(h.db.pool().acquire().await.unwrap());
    tx.begin_write().await.unwrap();
    for (bad, cells) in [
        ("UPDATE script_t SET v = $2 WHERE k = $1", 1),
        ("UPDATE script_t SET v = 1 WHERE k = $0", 1),
    ] {
        let mut script = Script::default();
        script.push(
            INSERT.into(),
            [Cell::Text("k".into()), Cell::Int(1), Cell::Null],
        );
        script.push(bad.into(), (0..cells).map(|_| Cell::Text("k".into())));
        let refused = script.execute(&mut tx).await.unwrap_err();
        assert!(
            matches!(&refused, ProjectionError::Invalid(m) if m.contains(bad)),
            "{refused}"
        );
        assert!(script.is_empty(), "a refused script is forgotten");
    }
    assert!(tx.sync().await.unwrap().is_none());
    tx.commit().await.unwrap();
    tx.finish().await.unwrap();
    assert!(rows(&h).await.is_empty(), "nothing of a refused script ran");
}

/// PostgreSQL's text holds no NUL: bound one by one, such a value was refused; in a script it
/// fails the command (and poisons the transaction) the same way. SQLite stores it.
async fn text_with_a_nul_fails_on_postgresql_as_a_bound_value_does<S: EventStore + Clone>(
    h: Harness<S>,
) {
    sqlx::query(CREATE).execute(h.db.pool()).await.unwrap();
    let mut script = Script::default();
    script.push(
        INSERT.into(),
        [Cell::Text("a\0b".into()), Cell::Int(1), Cell::Null],
    );
    let mut tx = Tx::start(h.db.pool().acquire().await.unwrap());
    tx.begin_write().await.unwrap();
    script.execute(&mut tx).await.unwrap();
    let failure = tx.sync().await.unwrap();
    if h.db.backend() == Backend::Postgres {
        let failure = failure.expect("PostgreSQL refuses NUL in text");
        assert!(matches!(
            failure.fault,
            Fault::Error(ProjectionError::Database(_))
        ));
        assert!(tx.is_poisoned());
        tx.rollback().await.unwrap();
        tx.finish().await.unwrap();
        assert!(rows(&h).await.is_empty());
    } else {
        assert!(failure.is_none());
        tx.commit().await.unwrap();
        tx.finish().await.unwrap();
        assert!(rows(&h).await.contains_key("a\0b"));
    }
}

/// Processes starting at once on a fresh PostgreSQL database each find the function scripts run
/// through missing, and try to create it: every one of them starts, and can run a script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_at_once_on_postgresql_all_get_the_script_function() {
    let pg = kring_testkit::fresh_postgres_database("script_function").await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = pg.url().to_owned();
            tokio::spawn(async move { ReadDb::connect(&url).await })
        })
        .collect();
    let mut dbs = Vec::new();
    for start in starts {
        dbs.push(start.await.unwrap().expect("every process starts"));
    }
    sqlx::query(CREATE).execute(dbs[0].pool()).await.unwrap();
    for (i, db) in dbs.iter().enumerate() {
        let mut script = Script::default();
        script.push(
            INSERT.into(),
            [Cell::Text(format!("p{i}")), Cell::Int(1), Cell::Null],
        );
        let mut tx = Tx::start(db.pool().acquire().await.unwrap());
        tx.begin_write().await.unwrap();
        script.execute(&mut tx).await.unwrap();
        assert!(tx.sync().await.unwrap().is_none());
        tx.commit().await.unwrap();
        tx.finish().await.unwrap();
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM script_t")
        .fetch_one(dbs[0].pool())
        .await
        .unwrap();
    assert_eq!(count, 6);
}
