//! Delivery: what the outbox releases — and the invitations staff send — reaches people by
//! e-mail (SMTP) and Web Push, at least once, from a worker inside `kring-api serve`.
//!
//! - [`store`]: the worker's tables beside the read models, outside the projections'
//!   generations (a rebuild keeps them): jobs with their attempts, back-off and dead letters,
//!   the sealed addresses (e-mail, push subscriptions) and the worker's place in the log.
//! - [`follow`]: reads the log for what the worker needs to know — e-mail addresses (staff
//!   joining, invitations), push subscriptions, invitations to e-mail, erasures — and keeps
//!   only sealed copies; an erased person's addresses and pending jobs go at once.
//! - [`worker`]: one process at a time delivers (a PostgreSQL session lock, or a file lock in the
//!   data directory on SQLite); it turns released notifications into jobs by their channel
//!   (push, email, digest — one mail per recipient for all digest notifications released
//!   together — or off) and sends them, retrying with capped exponential back-off and jitter,
//!   until a bound of attempts makes a job a dead letter the operator can retry.
//! - [`smtp`] and [`push`]: the two [`Channel`]s; [`mail`] writes what is said — the kind and the
//!   school's name and a link, never a message's text, a child's name or a photo.
//!
//! Every job has an idempotency key (the notification id and the channel; the invitation for
//! its mail), sent as the mail's `Message-ID` and `X-Kring-Idempotency-Key` and in the push
//! payload and `Topic`, so a receiver can drop a repeat after a crash between sending and
//! recording.

pub mod follow;
pub mod mail;
pub mod push;
pub mod smtp;
pub mod store;
pub mod worker;

use async_trait::async_trait;
use std::path::Path;
use std::time::Duration;

/// How a notification is to reach its recipient (the recipient's preference for its kind).
pub use kring_domain::person::Channel;

/// Delivery's configuration (`serve` flags and `KRING_…` variables).
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether this process runs the delivery worker (`serve` does; in-process test servers only
    /// when asked).
    pub run_worker: bool,
    /// `smtp://[user:password@]host:port` (STARTTLS when the server offers it and
    /// `?tls=required` asks for it) or `smtps://…` (TLS from the start). No mail without it.
    pub smtp_url: Option<String>,
    /// The sender of every mail (`KRING_MAIL_FROM`).
    pub mail_from: Option<String>,
    /// The base of links in mails and push messages (`KRING_PUBLIC_URL`).
    pub public_url: String,
    /// The VAPID private key (base64url, 32 bytes); generated into `DATA_DIR/vapid.key` when
    /// not set.
    pub vapid_private_key: Option<String>,
    /// Test-only: accept push endpoints `http://` on a loopback address (never in production).
    pub push_allow_loopback_http: bool,
    /// Attempts before a job becomes a dead letter.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, up to [`Config::retry_cap`].
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_cap: Duration,
    /// How often the worker looks for work when there was none.
    pub poll_interval: Duration,
    /// Jobs sent per round (and at most this many notifications turned into jobs).
    pub batch: u32,
    /// The late-delivery limit (`--delivery-max-age-hours`, at most [`MAX_AGE_HOURS_LIMIT`]): a
    /// notification released longer ago than this when the worker comes to it is not sent by
    /// any channel; it stays listed in the recipient's app until acknowledged there (or out of
    /// the outbox's retention window). A worker started on an old installation (or back after a
    /// long outage) does not mail its history.
    pub max_age: Duration,
}

/// The default bound of attempts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// The default late-delivery limit, in hours: three days.
pub const DEFAULT_MAX_AGE_HOURS: u64 = 72;

/// The longest late-delivery limit, in hours: the outbox's retention window
/// ([`RETENTION_DAYS`](kring_projections::models::outbox::RETENTION_DAYS)). A notification the
/// worker may still send is then always still in the outbox (the window counts back from the
/// log's newest event, never later than now).
pub const MAX_AGE_HOURS_LIMIT: u64 = kring_projections::models::outbox::RETENTION_DAYS * 24;

impl Default for Config {
    fn default() -> Self {
        Self {
            run_worker: false,
            smtp_url: None,
            mail_from: None,
            public_url: "http://127.0.0.1:8080".to_owned(),
            vapid_private_key: None,
            push_allow_loopback_http: false,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(6 * 3600),
            poll_interval: Duration::from_secs(1),
            batch: 200,
            max_age: Duration::from_secs(DEFAULT_MAX_AGE_HOURS * 3600),
        }
    }
}

impl Config {
    /// Whether e-mail can be sent.
    #[must_use]
    pub fn mails(&self) -> bool {
        self.smtp_url.is_some()
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failed ones: the base doubled
    /// per failure, capped, with up to half of it drawn at random (jitter) so that many jobs
    /// failing together do not retry together.
    #[must_use]
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .retry_base
            .saturating_mul(2_u32.saturating_pow(attempts.saturating_sub(1)));
        let capped = exp.min(self.retry_cap);
        let half = capped / 2;
        let jitter = half.mul_f64(fastrand::f64());
        half + jitter
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt later (a 4xx from SMTP, a 5xx or 429 from a push service, no
    /// connection).
    #[error("transient: {0}")]
    Transient(Reason),
    /// Will fail again (a 5xx from SMTP, a 4xx from a push service): a dead letter at once.
    #[error("permanent: {0}")]
    Permanent(Reason),
    /// The push subscription is gone (`404`/`410`): drop it, never retry.
    #[error("subscription gone ({0})")]
    Gone(u16),
}

/// Why a send failed, as stored: a fixed reason and a status code, never a server's own words
/// (they may quote an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    /// What failed.
    pub what: &'static str,
    /// The status the server answered, if it answered.
    pub status: Option<u16>,
}

impl Reason {
    /// A reason without a status.
    #[must_use]
    pub const fn new(what: &'static str) -> Self {
        Self { what, status: None }
    }

    /// A reason with the server's status.
    #[must_use]
    pub const fn status(what: &'static str, status: u16) -> Self {
        Self {
            what,
            status: Some(status),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} {s}", self.what),
            None => f.write_str(self.what),
        }
    }
}

impl SendError {
    /// The stored text of the failure.
    #[must_use]
    pub fn stored(&self) -> String {
        self.to_string()
    }
}

/// What is sent, whatever the channel: composed by [`mail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The idempotency key.
    pub key: String,
    /// The subject line (mail) or title (push).
    pub subject: String,
    /// The text.
    pub text: String,
    /// Where to open it in Kring.
    pub link: String,
}

/// A way to reach a person.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Where to.
    type Address: Send + Sync;

    /// Sends `message` to `to`, once (the worker retries).
    ///
    /// # Errors
    /// [`SendError`].
    async fn send(&self, to: &Self::Address, message: &Message) -> Result<(), SendError>;
}

/// Why delivery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `KRING_SMTP_URL` does not parse.
    #[error("KRING_SMTP_URL: {0}")]
    Smtp(String),
    /// `KRING_MAIL_FROM` is missing or not an address.
    #[error("KRING_MAIL_FROM: {0}")]
    From(String),
    /// The VAPID key cannot be read, made or parsed.
    #[error("VAPID key {path}: {reason}")]
    Vapid {
        /// Where it was looked for.
        path: String,
        /// Why.
        reason: String,
    },
    /// The push client cannot be built.
    #[error("push client: {0}")]
    Client(String),
}

/// The file of the generated VAPID key in the data directory.
#[must_use]
pub fn vapid_key_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("vapid.key")
}

/// Delivery as a running server has it: the configuration and the channels.
#[derive(Debug)]
pub struct Delivery {
    /// The configuration.
    pub config: Config,
    /// E-mail, when configured.
    pub smtp: Option<smtp::Smtp>,
    /// Web Push (always: its key is generated when not configured).
    pub push: push::Push,
}

impl Delivery {
    /// The channels of `config`; the VAPID key from the configuration or `data_dir`.
    ///
    /// # Errors
    /// [`SetupError`].
    pub fn new(config: Config, data_dir: &Path) -> Result<Self, SetupError> {
        let from = config
            .mail_from
            .as_deref()
            .map(|f| {
                f.parse::<lettre::message::Mailbox>()
                    .map_err(|e| SetupError::From(format!("{f:?} is not a mail address: {e}")))
            })
            .transpose()?;
        let smtp = match (&config.smtp_url, &config.mail_from) {
            (Some(url), Some(from)) => Some(smtp::Smtp::new(url, from)?),
            (Some(_), None) => {
                return Err(SetupError::From(
                    "a sender is needed when KRING_SMTP_URL is set".to_owned(),
                ))
            }
            (None, _) => None,
        };
        let key = push::vapid_key(config.vapid_private_key.as_deref(), data_dir)?;
        let contact = from.map_or_else(
            || config.public_url.clone(),
            |m| format!("mailto:{}", m.email),
        );
        let push = push::Push::new(key, contact, config.push_allow_loopback_http)?;
        Ok(Self { config, smtp, push })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_never_below_half() {
        let c = Config {
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(60),
            ..Config::default()
        };
        for _ in 0..50 {
            let first = c.backoff(1);
            assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10));
            let third = c.backoff(3);
            assert!(third >= Duration::from_secs(20) && third <= Duration::from_secs(40));
            let late = c.backoff(30);
            assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
        }
    }
}
