//! Running the API: `serve` (API + in-process projectors), `projector` (projectors only), and
//! an in-process server on a real socket for tests and benchmarks.

use crate::auth::{Auth, AuthSetupError};
use crate::backup::{BackupError, DataDirLock};
use crate::state::{AppState, Limits};
use kring_projections::{Config, Mode, ProjectionError, System, SystemError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the data lives.
    pub config: Config,
    /// The address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Whether to run the projectors in this process.
    pub projectors: bool,
    /// Trust this OpenID Connect issuer (`iss`) too…
    pub oidc_issuer: Option<String>,
    /// …with the keys of this JWKS file or URL…
    pub oidc_jwks: Option<String>,
    /// …for tokens naming this audience (`aud`).
    pub oidc_audience: Option<String>,
    /// The console's sign-in through that issuer (authorization code flow with PKCE), when
    /// given.
    pub console_oidc: Option<crate::console::oidc::Options>,
    /// Limits.
    pub limits: Limits,
    /// Whether to run the background jobs in this process: retention ([`crate::retention`]) and
    /// invitation expiry ([`crate::invitation_expiry`]); on by default.
    pub retention: bool,
    /// Delivery: SMTP, Web Push, and whether this process runs the delivery worker (off by
    /// default here; `kring-api serve` turns it on).
    pub delivery: crate::delivery::Config,
    /// Where media objects are kept (`KRING_MEDIA_URL`, [`crate::media_store::MediaUrl`]):
    /// `None` for files in the data directory.
    pub media_url: Option<String>,
}

impl ServeOptions {
    /// Defaults for `config`: a free loopback port, projectors in-process.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self {
            config,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            projectors: true,
            oidc_issuer: None,
            oidc_jwks: None,
            oidc_audience: None,
            console_oidc: None,
            limits: Limits::default(),
            retention: true,
            delivery: crate::delivery::Config::default(),
            media_url: None,
        }
    }

    /// The same options without rate limits (tests and benchmarks that drive one server hard
    /// from one address).
    #[must_use]
    pub fn without_rate_limits(mut self) -> Self {
        self.limits = self.limits.without_rate_limits();
        self
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The installation could not be opened.
    #[error(transparent)]
    System(#[from] SystemError),
    /// Authentication could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory is being restored (or its lock cannot be taken).
    #[error(transparent)]
    DataDir(#[from] BackupError),
    /// Delivery cannot be set up (SMTP URL, sender, VAPID key).
    #[error(transparent)]
    Delivery(#[from] crate::delivery::SetupError),
    /// `--oidc-issuer`, `--oidc-jwks` and `--oidc-audience` go together.
    #[error("--oidc-issuer, --oidc-jwks and --oidc-audience must be given together")]
    OidcHalfConfigured,
    /// The console's sign-in through the issuer cannot be set up.
    #[error(transparent)]
    ConsoleOidc(#[from] crate::console::oidc::SetupError),
    /// The media store (`KRING_MEDIA_URL`) cannot be used.
    #[error("{0}")]
    Media(String),
}

/// A running server.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (the installation, the executor, …).
    pub state: AppState,
    server: JoinHandle<std::io::Result<()>>,
    projector: Option<JoinHandle<Result<(), ProjectionError>>>,
    lock: std::sync::Mutex<Option<DataDirLock>>,
}

impl Running {
    /// `http://<addr>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops (it does not on its own).
    ///
    /// # Errors
    /// The server or the projector failed.
    pub async fn wait(mut self) -> Result<(), String> {
        let server = &mut self.server;
        let projector = async {
            match self.projector.as_mut() {
                Some(p) => p
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = server => r.map_err(|e| e.to_string())?.map_err(|e| e.to_string()),
            r = projector => r,
        }
    }

    /// Stops serving and projecting, and releases the data directory (a restore may run then).
    pub fn stop(&self) {
        self.server.abort();
        if let Some(p) = &self.projector {
            p.abort();
        }
        if let Ok(mut lock) = self.lock.lock() {
            lock.take();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the authentication of `options`.
///
/// # Errors
/// As [`Auth::local`] and [`Auth::with_oidc`].
pub async fn auth(options: &ServeOptions) -> Result<Auth, StartError> {
    let auth = Auth::local(&options.config.data_dir)?;
    match (
        &options.oidc_issuer,
        &options.oidc_jwks,
        &options.oidc_audience,
    ) {
        (Some(issuer), Some(jwks), Some(audience)) => {
            Ok(auth.with_oidc(issuer, jwks, audience).await?)
        }
        (None, None, None) => Ok(auth),
        _ => Err(StartError::OidcHalfConfigured),
    }
}

/// Opens the installation (creating the embedded default when missing), starts the projectors
/// (unless turned off) and serves the API.
///
/// # Errors
/// [`StartError`].
pub async fn start(options: ServeOptions) -> Result<Running, StartError> {
    // Not while a restore replaces the files about to be opened.
    let _opening = lock_data_dir(&options.config)?;
    let system = System::open(options.config.clone(), Mode::CreateIfMissing).await?;
    start_on(system, options).await
}

/// Like [`start`] on an already open installation.
///
/// # Errors
/// [`StartError`].
pub async fn start_on(system: System, options: ServeOptions) -> Result<Running, StartError> {
    let lock = lock_data_dir(&system.config)?;
    let auth = auth(&options).await?;
    let console_oidc = match (&options.console_oidc, auth.issuer()) {
        (None, _) => None,
        (Some(_), None) => return Err(crate::console::oidc::SetupError::NoIssuer.into()),
        (Some(o), Some(issuer)) => Some(Arc::new(
            crate::console::oidc::Client::new(issuer, o, crate::auth::FETCH_TIMEOUT).await?,
        )),
    };
    // Deliveries live outside the projections' generations (a rebuild keeps them).
    kring_projections::models::outbox::ensure_delivery_table(&system.db)
        .await
        .map_err(|e| StartError::System(SystemError::Projection(e)))?;
    crate::idempotency::ensure_table(&system.db)
        .await
        .map_err(|e| StartError::System(SystemError::Projection(e.into())))?;
    // The delivery worker's tables, outside the projections' generations too.
    crate::delivery::store::ensure_tables(&system.db)
        .await
        .map_err(|e| {
            StartError::System(SystemError::Projection(ProjectionError::Invalid(
                e.explain().to_owned(),
            )))
        })?;
    let delivery = Arc::new(crate::delivery::Delivery::new(
        options.delivery.clone(),
        &system.config.data_dir,
    )?);
    let (board, projector) = if options.projectors {
        let projector = Arc::new(system.projector().await?);
        let board = projector.board();
        let handle = tokio::spawn(async move { projector.run().await });
        (Some(board), Some(handle))
    } else {
        (None, None)
    };
    let media = crate::media_store::MediaUrl::parse(
        options.media_url.as_deref(),
        system.config.media_dir(),
    )
    .map_err(StartError::Media)?
    .open(system.config.database_url.as_deref())
    .await
    .map_err(StartError::Media)?;
    let mut state = AppState::new(system, auth, board, options.limits.clone());
    state.delivery = Some(Arc::clone(&delivery));
    state.console_oidc = console_oidc;
    state.media = media;
    if options.delivery.run_worker {
        tokio::spawn(crate::delivery::worker::run(state.clone(), delivery));
    }
    // Complete erasures and approvals a stopped process left half done (idempotent).
    tokio::spawn(crate::erasure::sweep_in_background(state.clone()));
    // Expire content past its school's retention period and invitations past their date, now
    // and every hour.
    if options.retention {
        tokio::spawn(crate::retention::run_in_background(state.clone()));
        tokio::spawn(crate::invitation_expiry::run_in_background(state.clone()));
        tokio::spawn(crate::media_store::sweep::run_in_background(state.clone()));
    }
    let listener =
        TcpListener::bind(options.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: options.listen,
                source,
            })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: options.listen,
        source,
    })?;
    let app = crate::app::router(state.clone());
    let limits = options.limits.clone();
    let server = tokio::spawn(async move {
        crate::listener::serve(listener, app, &limits).await;
        Ok::<(), std::io::Error>(())
    });
    tracing::info!(%addr, projectors = options.projectors, "kring-api listening");
    Ok(Running {
        addr,
        state,
        server,
        projector,
        lock: std::sync::Mutex::new(lock),
    })
}

/// Holds the data directory's lock shared while its databases are in use, so that `restore`
/// cannot replace them underneath (only when the databases are files there).
fn lock_data_dir(config: &Config) -> Result<Option<DataDirLock>, StartError> {
    if config.database_url.is_some() {
        return Ok(None);
    }
    Ok(Some(DataDirLock::shared(&config.data_dir)?))
}

/// Runs only the projectors (the `projector` mode of a deployment with many API instances).
///
/// # Errors
/// The installation cannot be opened; the projector fails for good.
pub async fn run_projectors(config: Config) -> Result<(), StartError> {
    let _lock = lock_data_dir(&config)?;
    let system = System::open(config, Mode::CreateIfMissing).await?;
    let projector = system.projector().await?;
    projector
        .run()
        .await
        .map_err(|e| StartError::System(SystemError::Projection(e)))
}
