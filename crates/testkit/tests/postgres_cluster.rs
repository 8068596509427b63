//! The test cluster is real: a query round trip, and databases that are separate.

use kring_testkit::fresh_postgres_database;
use sqlx::{Connection, PgConnection, Row};

#[tokio::test]
async fn a_fresh_database_runs_real_queries_in_a_transaction() {
    let db = fresh_postgres_database("roundtrip").await;
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("CREATE TABLE groups (id INT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("INSERT INTO groups VALUES (1, 'Groep 5b'), (2, 'Groep 8')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let rows = sqlx::query("SELECT id, name FROM groups ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![(1, "Groep 5b".to_owned()), (2, "Groep 8".to_owned())]
    );
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!version.is_empty());
}

#[tokio::test]
async fn each_test_database_is_separate() {
    let a = fresh_postgres_database("separate_a").await;
    let b = fresh_postgres_database("separate_b").await;
    assert_ne!(a.name(), b.name());
    let mut ca = PgConnection::connect(a.url()).await.unwrap();
    let mut cb = PgConnection::connect(b.url()).await.unwrap();
    sqlx::query("CREATE TABLE only_in_a (x INT)")
        .execute(&mut ca)
        .await
        .unwrap();
    let in_b: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_in_a'",
    )
    .fetch_one(&mut cb)
    .await
    .unwrap();
    assert_eq!(in_b, 0);
}
