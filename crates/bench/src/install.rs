//! Fresh installations to measure: a temp data directory (SQLite files, the master key) and,
//! on PostgreSQL, a database of its own on the server `DATABASE_URL` names, dropped afterwards.

use kring_projections::{Config, Mode, System, SystemError};
use sqlx::{Connection, PgConnection};
use std::path::Path;
use std::sync::Mutex;

/// The two backends every scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Event log, vault and read models in SQLite files (the embedded default).
    Sqlite,
    /// Event log, vault and read models in one PostgreSQL database.
    Postgres,
}

impl Backend {
    /// Its name in the report.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Why a run could not set up what it measures.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The PostgreSQL server refused.
    #[error("PostgreSQL at DATABASE_URL: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The installation could not be opened.
    #[error(transparent)]
    System(#[from] SystemError),
    /// A temp directory could not be made.
    #[error("temp directory: {0}")]
    Io(#[from] std::io::Error),
}

/// The PostgreSQL server the benchmark databases are made on.
#[derive(Debug)]
pub struct PgServer {
    url: String,
    made: Mutex<Vec<String>>,
}

impl PgServer {
    /// The server at `url` (its own database is only used to create and drop others).
    #[must_use]
    pub fn new(url: String) -> Self {
        Self {
            url,
            made: Mutex::new(Vec::new()),
        }
    }

    /// Creates an empty database for `label`; returns its URL.
    ///
    /// # Errors
    /// The server refused.
    pub async fn create(&self, label: &str) -> Result<String, SetupError> {
        let name = format!("kring_bench_{label}_{}", std::process::id());
        let mut admin = PgConnection::connect(&self.url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await?;
        let _ = admin.close().await;
        if let Ok(mut made) = self.made.lock() {
            made.push(name.clone());
        }
        Ok(with_database(&self.url, &name))
    }

    /// Drops every database this run made.
    pub async fn drop_all(&self) {
        let names = self
            .made
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        let Ok(mut admin) = PgConnection::connect(&self.url).await else {
            return;
        };
        for name in names {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if let Err(e) = sqlx::query(&sql).execute(&mut admin).await {
                eprintln!("could not drop benchmark database {name}: {e}");
            }
        }
        let _ = admin.close().await;
    }
}

/// `url` with its database path replaced by `name` (query parameters kept).
#[must_use]
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| {
        i + 3 + base[i + 3..].find('/').unwrap_or(base.len() - i - 3)
    });
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// One fresh installation.
pub struct Installation {
    /// The open installation.
    pub system: System,
    /// The backend.
    pub backend: Backend,
    dir: tempfile::TempDir,
}

impl Installation {
    /// A fresh installation on `backend` (`pg` must be given for PostgreSQL).
    ///
    /// # Errors
    /// [`SetupError`].
    pub async fn create(
        backend: Backend,
        pg: Option<&PgServer>,
        label: &str,
    ) -> Result<Self, SetupError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kring-bench-{label}-"))
            .tempdir()?;
        let database_url = match (backend, pg) {
            (Backend::Postgres, Some(pg)) => Some(pg.create(label).await?),
            _ => None,
        };
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            database_url,
            eventstore_url: None,
        };
        let system = System::open(config, Mode::CreateIfMissing).await?;
        Ok(Self {
            system,
            backend,
            dir,
        })
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PostgreSQL URL, if any.
    #[must_use]
    pub fn database_url(&self) -> Option<&str> {
        self.system.config.database_url.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_options_kept() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "x"),
            "postgres://u@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
    }
}
