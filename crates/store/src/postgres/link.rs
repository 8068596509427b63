//! How every connection Kring opens to PostgreSQL guards itself — the event log's readers,
//! writer and listener, the key vault, the read models: bounded statements and lock waits, no
//! transaction left idle holding locks, and a server that notices a vanished client.
//!
//! The settings are PostgreSQL parameters sent in the startup packet (`options=-c …`), so they
//! hold from the first statement on every connection a pool opens, reconnects included:
//!
//! - `statement_timeout` (30 s): a runaway query is cancelled instead of holding a pool
//!   connection, or the global-order lock, indefinitely. Statements that are long by nature
//!   lift it for their own transaction (`SET LOCAL statement_timeout = 0`): the migrations, the
//!   global chain's backfill, a rebuild's query indexes.
//! - `lock_timeout` (15 s): a statement waiting that long for a lock — a row, a table, an
//!   advisory lock such as the global-order lock — fails instead of queueing without end.
//! - `idle_in_transaction_session_timeout` (60 s): a session that leaves a transaction open
//!   and goes quiet is ended by the server, releasing its locks.
//! - `tcp_keepalives_idle` / `_interval` / `_count` (30 s / 10 s / 3): TCP keepalives, set on
//!   the server's side of the socket. sqlx exposes no client-side keepalive, and libpq's
//!   `keepalives*` URL parameters are not sqlx's; these make the *server* probe the client, so
//!   that a client that vanished (a crashed host, a dropped network path) is noticed within about
//!   a minute and its backend ends — releasing an advisory lock it held (the global-order lock,
//!   the projector's leadership) instead of keeping it until the kernel gives up, hours later.
//!
//! A deployment overrides any of them in the database URL, which sqlx reads as startup options:
//! `postgres://…/kring?options[statement_timeout]=2min` (or `options=-c statement_timeout=2min`).
//! A setting the URL names is left as the URL says.

use sqlx::postgres::PgConnectOptions;
use std::fmt::Write as _;
use std::time::Duration;

/// How long a caller waits for a connection of a PostgreSQL pool (sqlx's default: 30 s). While
/// the server is down sqlx keeps trying to connect until this runs out, so it is also how long
/// a request takes to be refused with `503` then, instead of the whole request timeout; a pool
/// that has no connection free for this long under load is overloaded anyway.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The guards every Kring connection to PostgreSQL gets unless its URL says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    /// The longest a statement may run (`statement_timeout`).
    pub statement_timeout: Duration,
    /// The longest a statement may wait for a lock (`lock_timeout`).
    pub lock_timeout: Duration,
    /// The longest a transaction may stay open with nothing running
    /// (`idle_in_transaction_session_timeout`).
    pub idle_in_transaction: Duration,
    /// Quiet time before the server's first keepalive probe (`tcp_keepalives_idle`).
    pub keepalive_idle: Duration,
    /// Time between unanswered probes (`tcp_keepalives_interval`).
    pub keepalive_interval: Duration,
    /// Unanswered probes before the server drops the connection (`tcp_keepalives_count`).
    pub keepalive_count: u32,
}

/// The defaults (see the module documentation for the reasons).
pub const DEFAULT_LINK: LinkSettings = LinkSettings {
    statement_timeout: Duration::from_secs(30),
    lock_timeout: Duration::from_secs(15),
    idle_in_transaction: Duration::from_secs(60),
    keepalive_idle: Duration::from_secs(30),
    keepalive_interval: Duration::from_secs(10),
    keepalive_count: 3,
};

impl Default for LinkSettings {
    fn default() -> Self {
        DEFAULT_LINK
    }
}

impl LinkSettings {
    /// The server parameters, as (name, value) pairs PostgreSQL accepts at startup.
    #[must_use]
    pub fn parameters(&self) -> [(&'static str, String); 6] {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let s = |d: Duration| d.as_secs().max(1).to_string();
        [
            ("statement_timeout", ms(self.statement_timeout)),
            ("lock_timeout", ms(self.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction),
            ),
            ("tcp_keepalives_idle", s(self.keepalive_idle)),
            ("tcp_keepalives_interval", s(self.keepalive_interval)),
            ("tcp_keepalives_count", self.keepalive_count.to_string()),
        ]
    }

    /// The parameters the startup options `given` (as a URL's `options` holds them) do not set.
    fn missing(&self, given: Option<&str>) -> Vec<(&'static str, String)> {
        let given = given.unwrap_or_default();
        self.parameters()
            .into_iter()
            .filter(|(name, _)| !names(given, name))
            .collect()
    }

    /// The options to connect to `url` with: the URL's own, plus these guards where it sets none.
    ///
    /// # Errors
    /// The URL is not a valid PostgreSQL URL.
    pub fn connect_options(&self, url: &str) -> Result<PgConnectOptions, sqlx::Error> {
        let options = url.parse::<PgConnectOptions>()?;
        let missing = self.missing(options.get_options());
        Ok(options.options(missing))
    }

    /// `url` with these guards added as `options[…]` query parameters where it sets none: for
    /// pools that take a URL rather than [`PgConnectOptions`] (sqlx's `Any` driver).
    ///
    /// # Errors
    /// The URL is not a valid PostgreSQL URL.
    pub fn url(&self, url: &str) -> Result<String, sqlx::Error> {
        let options = url.parse::<PgConnectOptions>()?;
        let mut out = url.to_owned();
        for (name, value) in self.missing(options.get_options()) {
            out.push(if out.contains('?') { '&' } else { '?' });
            // `[` and `]` percent-encoded; sqlx decodes the query before reading it.
            let _ = write!(out, "options%5B{name}%5D={value}");
        }
        Ok(out)
    }
}

/// Whether startup options `given` (`-c name=value …`, `--name=value`) set `name`.
fn names(given: &str, name: &str) -> bool {
    given
        .split(|c: char| c.is_whitespace())
        .map(|word| {
            word.strip_prefix("--")
                .or_else(|| word.strip_prefix("-c"))
                .unwrap_or(word)
        })
        .any(|word| {
            word.split_once('=')
                .is_some_and(|(n, _)| n.replace('-', "_") == name)
        })
}

/// The options for `url` with the default guards ([`DEFAULT_LINK`]).
///
/// # Errors
/// The URL is not a valid PostgreSQL URL.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    DEFAULT_LINK.connect_options(url)
}

/// `url` with the default guards ([`DEFAULT_LINK`]) as query parameters, for sqlx's `Any` pools.
///
/// # Errors
/// The URL is not a valid PostgreSQL URL.
pub fn guarded_url(url: &str) -> Result<String, sqlx::Error> {
    DEFAULT_LINK.url(url)
}

/// Startup options for connections whose statements are long by nature (the schema
/// migrations): no statement or lock timeout, appended after the guards so that they win.
pub(super) fn unbounded(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("statement_timeout", "0"), ("lock_timeout", "0")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_the_url_names_is_left_as_the_url_says() {
        let url = "postgres://u@h/db?options[statement_timeout]=2min";
        let options = connect_options(url).expect("a valid URL");
        let given = options.get_options().unwrap_or_default();
        assert_eq!(given.matches("statement_timeout").count(), 1, "{given}");
        assert!(given.contains("statement_timeout=2min"), "{given}");
        assert!(given.contains("-c lock_timeout=15000ms"), "{given}");
        assert!(given.contains("-c tcp_keepalives_count=3"), "{given}");
    }

    #[test]
    fn the_url_form_carries_every_guard_the_url_does_not_set() {
        let url =
            guarded_url("postgres://u@h/db?options=-c%20lock_timeout%3D1s").expect("a valid URL");
        let options = url.parse::<PgConnectOptions>().expect("a valid URL");
        let given = options.get_options().unwrap_or_default();
        assert!(given.contains("lock_timeout=1s"), "{given}");
        assert_eq!(given.matches("lock_timeout").count(), 1, "{given}");
        assert!(given.contains("statement_timeout=30000ms"), "{given}");
        assert!(
            given.contains("idle_in_transaction_session_timeout=60000ms"),
            "{given}"
        );
    }
}
