//! `kring-api`: the HTTP API server, the projector worker, and development tokens.
//!
//! ```text
//! kring-api serve     [--data-dir DIR] [--listen ADDR] [--demo] [--no-projectors]
//!                     [--oidc-issuer ISS --oidc-jwks FILE|URL --oidc-audience AUD
//!                      [--oidc-client-id ID [--oidc-client-secret S] [--oidc-redirect-url URL]
//!                       [--oidc-authorization-endpoint URL --oidc-token-endpoint URL]]]
//!                     [--rate-per-address N] [--rate-per-token N] [--max-connections N]
//!                     [--no-delivery] [--smtp-url URL] [--mail-from ADDR] [--public-url URL]
//!                     [--vapid-private-key KEY] [--delivery-max-attempts N]
//!                     [--delivery-retry-base-ms MS] [--delivery-max-age-hours H]
//!                     [--push-allow-loopback-http (tests only)]
//!                     [--media-url (postgres|postgres://…|s3://BUCKET/PREFIX)]
//! kring-api projector [--data-dir DIR]
//! kring-api token     [--data-dir DIR] (--person ID | --operator) [--ttl-hours H]
//! kring-api token     [--data-dir DIR] --revoke TOKEN_ID
//! kring-api token     [--data-dir DIR] --console --person ID [--url BASE]
//! kring-api backup    [--data-dir DIR] --to BACKUP
//! kring-api restore   [--data-dir DIR] --from BACKUP [--without-erasure-ledger]
//! ```
//!
//! Exit codes: 0 ok, 1 the server or projector failed while running (or a backup or restore
//! failed midway), 2 bad usage (and a backup or restore refused before changing anything),
//! 3 start-up failed (data directory, database, master key, listen address).
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use kring_api::exec::Executor;
use kring_api::routes::sign_in::record_revocation;
use kring_api::server::{self, ServeOptions};
use kring_api::throttle::Rate;
use kring_api::{Auth, Caller};
use kring_domain::PersonId;
use kring_projections::{Config, Mode, System};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: rebuilds and reads allocate per event, and glibc's malloc spends much of that time
/// in its own bookkeeping; mimalloc far less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kring's HTTP API.
#[derive(Parser)]
#[command(name = "kring-api", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct Data {
    /// The data directory: SQLite files, keys and media of the embedded default.
    #[arg(long, global = true, env = "KRING_DATA_DIR", default_value = kring_projections::system::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

/// Delivery by e-mail and Web Push (`docs/api.md`, "Delivery").
#[derive(Args, Clone)]
struct DeliveryArgs {
    /// Do not run the delivery worker in this process (one instance delivers at a time anyway).
    #[arg(long)]
    no_delivery: bool,
    /// The SMTP server: smtp://[user:password@]host:port (?tls=required for STARTTLS) or
    /// smtps://… (TLS). No e-mail without it.
    #[arg(long, env = "KRING_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The sender of every mail, e.g. "Kring <kring@school.example>".
    #[arg(long, env = "KRING_MAIL_FROM")]
    mail_from: Option<String>,
    /// Where people open Kring: the base of the links in mails and push messages.
    #[arg(
        long,
        env = "KRING_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    public_url: String,
    /// The VAPID private key (base64url, 32 bytes; the same on every instance). Default: made
    /// once into DIR/vapid.key.
    #[arg(long, env = "KRING_VAPID_PRIVATE_KEY", hide_env_values = true)]
    vapid_private_key: Option<String>,
    /// TEST ONLY: accept push endpoints over plain http to a loopback address.
    #[arg(long, env = "KRING_PUSH_ALLOW_LOOPBACK_HTTP")]
    push_allow_loopback_http: bool,
    /// Attempts before a delivery becomes a dead letter.
    #[arg(long, env = "KRING_DELIVERY_MAX_ATTEMPTS", default_value_t = kring_api::delivery::DEFAULT_MAX_ATTEMPTS)]
    delivery_max_attempts: u32,
    /// The first retry's delay in milliseconds (doubling per failure, with jitter, up to six
    /// hours).
    #[arg(long, env = "KRING_DELIVERY_RETRY_BASE_MS", default_value_t = 30_000)]
    delivery_retry_base_ms: u64,
    /// The late-delivery limit: a notification released more than this many hours before the
    /// worker comes to it is not sent (it stays listed in the person's app until acknowledged
    /// or out of the outbox's retention window). At most the window: 720 hours.
    #[arg(long, env = "KRING_DELIVERY_MAX_AGE_HOURS", default_value_t = kring_api::delivery::DEFAULT_MAX_AGE_HOURS,
        value_parser = clap::value_parser!(u64).range(1..=kring_api::delivery::MAX_AGE_HOURS_LIMIT))]
    delivery_max_age_hours: u64,
}

impl DeliveryArgs {
    fn config(self) -> kring_api::delivery::Config {
        kring_api::delivery::Config {
            run_worker: !self.no_delivery,
            smtp_url: self.smtp_url.filter(|u| !u.is_empty()),
            mail_from: self.mail_from.filter(|f| !f.is_empty()),
            public_url: self.public_url,
            vapid_private_key: self.vapid_private_key,
            push_allow_loopback_http: self.push_allow_loopback_http,
            max_attempts: self.delivery_max_attempts.max(1),
            retry_base: std::time::Duration::from_millis(self.delivery_retry_base_ms),
            max_age: std::time::Duration::from_secs(
                self.delivery_max_age_hours.saturating_mul(3600),
            ),
            ..kring_api::delivery::Config::default()
        }
    }
}

/// The compliance console's sign-in through the OpenID Connect issuer (`docs/console.md`).
#[derive(Args, Clone)]
struct ConsoleOidcArgs {
    /// The console's client id at the issuer: offers "Sign in with <issuer>" on the console
    /// (authorization code flow with PKCE; the ID token's audience).
    #[arg(long, env = "KRING_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    oidc_client_id: Option<String>,
    /// The client's secret, for a confidential client (prefer the environment variable).
    #[arg(
        long,
        env = "KRING_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        requires = "oidc_client_id"
    )]
    oidc_client_secret: Option<String>,
    /// The issuer's authorization endpoint. Default: from its discovery document
    /// (`<issuer>/.well-known/openid-configuration`).
    #[arg(
        long,
        env = "KRING_OIDC_AUTHORIZATION_ENDPOINT",
        requires = "oidc_client_id"
    )]
    oidc_authorization_endpoint: Option<String>,
    /// The issuer's token endpoint. Default: from its discovery document.
    #[arg(long, env = "KRING_OIDC_TOKEN_ENDPOINT", requires = "oidc_client_id")]
    oidc_token_endpoint: Option<String>,
    /// Where the issuer sends the browser back, as registered there. Default:
    /// `<--public-url>/console/oidc/callback`.
    #[arg(long, env = "KRING_OIDC_REDIRECT_URL", requires = "oidc_client_id")]
    oidc_redirect_url: Option<String>,
}

impl ConsoleOidcArgs {
    fn options(self, public_url: &str) -> Option<kring_api::console::oidc::Options> {
        let client_id = self.oidc_client_id.filter(|c| !c.is_empty())?;
        Some(kring_api::console::oidc::Options {
            client_id,
            client_secret: self.oidc_client_secret,
            authorization_endpoint: self.oidc_authorization_endpoint,
            token_endpoint: self.oidc_token_endpoint,
            redirect_url: self.oidc_redirect_url.unwrap_or_else(|| {
                format!(
                    "{}{}",
                    public_url.trim_end_matches('/'),
                    kring_api::console::oidc::CALLBACK_PATH
                )
            }),
        })
    }
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; boxing the options would only add noise"
)]
enum Cmd {
    /// Serve the API (with the projectors in-process unless --no-projectors).
    ///
    /// `KRING_DATABASE_URL=postgres://…` puts read models, key vault and (unless
    /// `KRING_EVENTSTORE_URL=esdb://…` says otherwise) the event log in PostgreSQL.
    /// `KRING_MASTER_KEY` (base64, 32 bytes) overrides DIR/master.key.
    Serve {
        #[command(flatten)]
        data: Data,
        /// The address to listen on.
        #[arg(long, env = "KRING_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Seed a demo school once and write DIR/demo.json (ids and a token per demo person).
        #[arg(long)]
        demo: bool,
        /// Do not run the projectors here (run `kring-api projector` elsewhere).
        #[arg(long)]
        no_projectors: bool,
        /// Also trust tokens of this OpenID Connect issuer (`iss`).
        #[arg(long, env = "KRING_OIDC_ISSUER", requires_all = ["oidc_jwks", "oidc_audience"])]
        oidc_issuer: Option<String>,
        /// The issuer's public keys: a JWKS file or an http(s) URL.
        #[arg(long, env = "KRING_OIDC_JWKS", requires = "oidc_issuer")]
        oidc_jwks: Option<String>,
        /// The audience (`aud`) the issuer's tokens must name: Kring's client id there.
        #[arg(long, env = "KRING_OIDC_AUDIENCE", requires = "oidc_issuer")]
        oidc_audience: Option<String>,
        #[command(flatten)]
        console_oidc: Box<ConsoleOidcArgs>,
        /// Requests per second per client address (bursts of five seconds' worth; 0: no limit).
        /// Behind a reverse proxy every client has the proxy's address: limit there instead.
        #[arg(long, env = "KRING_RATE_PER_ADDRESS", default_value_t = kring_api::state::DEFAULT_RATE_PER_ADDRESS)]
        rate_per_address: u32,
        /// Requests per second per bearer token (bursts of five seconds' worth; 0: no limit).
        #[arg(long, env = "KRING_RATE_PER_TOKEN", default_value_t = kring_api::state::DEFAULT_RATE_PER_TOKEN)]
        rate_per_token: u32,
        /// Connections served at once; more wait to be accepted.
        #[arg(long, env = "KRING_MAX_CONNECTIONS", default_value_t = kring_api::state::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Where media objects are kept: unset for files in DIR/media; `postgres` for the
        /// deployment's PostgreSQL database (or `postgres://…` for another); `s3://bucket/prefix`
        /// for S3-compatible object storage, configured by the usual `AWS_*` variables
        /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
        /// `AWS_ALLOW_HTTP=true` for a local store). See docs/media.md.
        #[arg(long, env = "KRING_MEDIA_URL")]
        media_url: Option<String>,
        #[command(flatten)]
        delivery: DeliveryArgs,
    },
    /// Run only the projectors (one active per projection; others wait and take over).
    Projector {
        #[command(flatten)]
        data: Data,
    },
    /// Print a bearer token signed with the data directory's key (its id goes to stderr), or
    /// revoke one by its id.
    Token {
        #[command(flatten)]
        data: Data,
        /// The person the token is for.
        #[arg(
            long,
            conflicts_with_all = ["operator", "revoke"],
            required_unless_present_any = ["operator", "revoke"]
        )]
        person: Option<PersonId>,
        /// Revoke the token with this id (its `jti`): every server refuses it from then on.
        #[arg(long, conflicts_with_all = ["operator", "console"])]
        revoke: Option<uuid::Uuid>,
        /// A token for the platform operator.
        #[arg(long, conflicts_with = "console")]
        operator: bool,
        /// Print a one-time sign-in link to the compliance console for --person instead (valid
        /// for ten minutes, once).
        #[arg(long, requires = "person")]
        console: bool,
        /// The server's address, as the officer's browser reaches it (for --console).
        #[arg(
            long,
            env = "KRING_CONSOLE_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        url: String,
        /// How long the token is valid (at most 90 days).
        #[arg(long, default_value_t = 24 * 30)]
        ttl_hours: i64,
    },
    /// Copy the embedded installation (event log, key vault, read models, media, keys) into a
    /// new or empty directory, online. The erasure ledger is not copied.
    Backup {
        #[command(flatten)]
        data: Data,
        /// Where the backup goes (must not exist, or be empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Bring a backup back into a stopped installation's data directory (same configuration),
    /// then erase again every subject in the data directory's erasure ledger.
    Restore {
        #[command(flatten)]
        data: Data,
        /// The backup to restore (a directory written by `backup`).
        #[arg(long)]
        from: PathBuf,
        /// Restore although the data directory has no erasure ledger (an installation that
        /// never erased anything).
        #[arg(long)]
        without_erasure_ledger: bool,
    },
}

/// 2 for a backup or restore refused before anything changed, 1 for one that failed midway.
fn backup_failure(e: &kring_api::backup::BackupError) -> ExitCode {
    use kring_api::backup::BackupError as E;
    let code = match e {
        E::UnsupportedBackend(_)
        | E::TargetNotEmpty(_)
        | E::NoInstallation(_)
        | E::VaultNotMoved(_)
        | E::NotABackup(_)
        | E::Damaged { .. }
        | E::InUse(_)
        | E::NoLedger(_)
        | E::OtherBackend { .. }
        | E::Ledger(_)
        | E::Manifest { .. }
        // The restored vault is opened and erased before anything is put in place.
        | E::Vault(_) => 2,
        _ => 1,
    };
    fail(code, e)
}

/// Records the revocation of token `jti` in the installation's log.
async fn revoke(data: Data, jti: uuid::Uuid) -> ExitCode {
    let system = match System::open(Config::from_env(data.data_dir), Mode::MustExist).await {
        Ok(s) => s,
        Err(e) => return fail(3, e),
    };
    let exec = Executor::new(system.store.clone(), std::sync::Arc::clone(&system.vault));
    match record_revocation(&exec, Caller::Operator, uuid::Uuid::now_v7(), jti).await {
        Ok(position) => {
            eprintln!("kring-api: token {jti} revoked (position {position})");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e.explain()),
    }
}

fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kring-api: {message}");
    ExitCode::from(code)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve {
            data,
            listen,
            demo,
            no_projectors,
            oidc_issuer,
            oidc_jwks,
            oidc_audience,
            console_oidc,
            rate_per_address,
            rate_per_token,
            max_connections,
            media_url,
            delivery,
        } => {
            logs();
            let mut options = ServeOptions::new(Config::from_env(data.data_dir));
            options.limits.rate_per_address = Rate::per_second(rate_per_address);
            options.limits.rate_per_token = Rate::per_second(rate_per_token);
            options.limits.max_connections = max_connections;
            options.listen = listen;
            options.projectors = !no_projectors;
            options.oidc_issuer = oidc_issuer;
            options.oidc_jwks = oidc_jwks;
            options.oidc_audience = oidc_audience;
            options.console_oidc = console_oidc.options(&delivery.public_url);
            options.delivery = delivery.config();
            options.media_url = media_url;
            let running = match server::start(options).await {
                Ok(r) => r,
                Err(e) => return fail(3, e),
            };
            if demo {
                match kring_api::demo::seed(&running.state, &running.url()).await {
                    Ok(path) => eprintln!(
                        "kring-api: demo school ready; ids and tokens in {}",
                        path.display()
                    ),
                    Err(e) => return fail(3, format!("demo: {e}")),
                }
            }
            eprintln!("kring-api: listening on {}", running.url());
            tokio::select! {
                r = running.wait() => match r {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(1, e),
                },
                _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            }
        }
        Cmd::Projector { data } => {
            logs();
            match server::run_projectors(Config::from_env(data.data_dir)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(1, e),
            }
        }
        Cmd::Token {
            data,
            revoke: Some(jti),
            ..
        } => revoke(data, jti).await,
        Cmd::Token {
            data,
            person: Some(person),
            console: true,
            url,
            ..
        } => {
            let auth = match Auth::local(&data.data_dir) {
                Ok(a) => a,
                Err(e) => return fail(3, e),
            };
            match kring_api::console::mint_link(&auth, person) {
                Ok((secret, _)) => {
                    println!("{}", kring_api::console::link_url(&url, &secret));
                    eprintln!("kring-api: the link signs in once, within ten minutes");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e.explain()),
            }
        }
        Cmd::Token {
            data,
            person,
            operator: _,
            console: _,
            url: _,
            revoke: None,
            ttl_hours,
        } => {
            let auth = match Auth::local(&data.data_dir) {
                Ok(a) => a,
                Err(e) => return fail(3, e),
            };
            let caller = person.map_or(Caller::Operator, Caller::Person);
            match auth.mint_with_id(caller, chrono::Duration::hours(ttl_hours)) {
                Ok((token, jti)) => {
                    println!("{token}");
                    eprintln!(
                        "kring-api: token id {jti} (revoke with `kring-api token --revoke {jti}`)"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e.explain()),
            }
        }
        Cmd::Backup { data, to } => {
            match kring_api::backup::backup(&Config::from_env(data.data_dir), &to).await {
                Ok(manifest) => {
                    println!(
                        "kring-api: backup of {} files written to {}",
                        manifest.files.len(),
                        to.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => backup_failure(&e),
            }
        }
        Cmd::Restore {
            data,
            from,
            without_erasure_ledger,
        } => {
            let config = Config::from_env(data.data_dir);
            match kring_api::backup::restore(&config, &from, without_erasure_ledger).await {
                Ok(report) => {
                    println!(
                        "kring-api: restored {} files of the backup taken at {} into {}; erased again {} subjects of the erasure ledger",
                        report.files,
                        report.backup_taken_at.to_rfc3339(),
                        config.data_dir.display(),
                        report.erasures_reapplied
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => backup_failure(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::Parser;

    #[test]
    fn the_late_delivery_limit_is_at_most_the_outbox_retention_window() {
        let parse = |hours: &str| {
            Cli::try_parse_from(["kring-api", "serve", "--delivery-max-age-hours", hours])
        };
        assert!(parse("720").is_ok());
        for refused in ["721", "0"] {
            let kind = parse(refused).err().map(|e| e.kind());
            assert_eq!(
                kind,
                Some(clap::error::ErrorKind::ValueValidation),
                "{refused}"
            );
        }
    }
}
