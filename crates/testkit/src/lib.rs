//! Test support: each test gets its own, real PostgreSQL database on the throwaway cluster
//! that `scripts/test` starts (or on the server `DATABASE_URL` names).
#![forbid(unsafe_code)]

pub mod smtp;

use sqlx::{Connection, PgConnection};

/// The environment variable naming the PostgreSQL server tests create their databases on.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// A database made for one test. The cluster is thrown away after the run, so it is not dropped.
#[derive(Debug, Clone)]
pub struct PgTestDatabase {
    url: String,
    name: String,
}

impl PgTestDatabase {
    /// The connection URL of this test's database.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The server URL from `DATABASE_URL`.
///
/// # Panics
/// When `DATABASE_URL` is not set: run the tests with `scripts/test`, which starts a throwaway
/// PostgreSQL cluster and sets it.
#[must_use]
pub fn server_url() -> String {
    std::env::var(DATABASE_URL).unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set. Run the tests with `scripts/test`: it starts a throwaway \
             PostgreSQL cluster for the run and sets DATABASE_URL (or set it to a server you own)."
        )
    })
}

/// Creates a fresh, empty database named after `label` on the test server.
///
/// # Panics
/// When `DATABASE_URL` is unset or the server refuses: a test cannot go on without it.
pub async fn fresh_postgres_database(label: &str) -> PgTestDatabase {
    fresh_postgres_database_on(&server_url(), label).await
}

/// Creates a fresh, empty database named after `label` on the PostgreSQL server at `server`
/// (a cluster a test started itself, say).
///
/// # Panics
/// When the server refuses: a test cannot go on without it.
pub async fn fresh_postgres_database_on(server: &str, label: &str) -> PgTestDatabase {
    let server = server.to_owned();
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let name = format!("kring_{clean}_{}", uuid::Uuid::now_v7().simple());
    let name: String = name.chars().take(63).collect();
    let mut admin = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at DATABASE_URL: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = admin.close().await;
    PgTestDatabase {
        url: with_database(&server, &name),
        name,
    }
}

/// `url` with its database path replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs each named `async fn(fixture)` as two tests, `on_sqlite::<name>` and
/// `on_postgres::<name>`, on the multi-threaded runtime.
///
/// `sqlite` and `postgres` are called with the test's name (a label for its database) and
/// return a future of the fixture. They are written as seen from inside the generated modules,
/// which import everything of the calling module.
///
/// ```text
/// kring_testkit::on_both_backends!(
///     sqlite: |_| Api::sqlite(),
///     postgres: Api::postgres;
///     a_test, another_test,
/// );
/// ```
#[macro_export]
macro_rules! on_both_backends {
    (sqlite: $sqlite:expr, postgres: $postgres:expr; $($name:ident),* $(,)?) => {
        mod on_sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = ($sqlite)(stringify!($name)).await;
                    super::$name(fixture).await;
                }
            )*
        }
        mod on_postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fixture = ($postgres)(stringify!($name)).await;
                    super::$name(fixture).await;
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_keep_host_and_parameters() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5433/postgres", "t1"),
            "postgres://u@127.0.0.1:5433/t1"
        );
        assert_eq!(
            with_database("postgres://u@h:1", "t2"),
            "postgres://u@h:1/t2"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t3"),
            "postgres://u@h/t3?sslmode=disable"
        );
    }
}
