//! What every handler shares: the installation, the command executor, authentication,
//! read-your-writes, metrics.

use crate::auth::{Auth, Caller, Verified};
use crate::error::{ApiError, ApiResult};
use crate::exec::Executor;
use crate::metrics::Metrics;
use crate::throttle::Rate;
use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::request::Parts;
use kring_domain::{ChildId, GroupId, PersonId, SchoolId, Sealed};
use kring_projections::models::{access_log, memberships};
use kring_projections::{Checkpoints, StatusBoard, System};
use kring_store::EventStore;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Tunables of a running server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON request body.
    pub json_body: usize,
    /// Largest media upload.
    pub media_body: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Longest a GET waits for `min_position`.
    pub min_position_wait: Duration,
    /// Longest a connection may take to send a complete request head.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Requests per client address (`None`: unlimited).
    pub rate_per_address: Option<Rate>,
    /// Requests per bearer token (`None`: unlimited).
    pub rate_per_token: Option<Rate>,
}

/// Requests per second per client address, by default (a whole school can sit behind one).
pub const DEFAULT_RATE_PER_ADDRESS: u32 = 100;
/// Requests per second per bearer token, by default.
pub const DEFAULT_RATE_PER_TOKEN: u32 = 20;
/// Connections served at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            json_body: 256 * 1024,
            media_body: 20 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            min_position_wait: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rate_per_address: Rate::per_second(DEFAULT_RATE_PER_ADDRESS),
            rate_per_token: Rate::per_second(DEFAULT_RATE_PER_TOKEN),
        }
    }
}

impl Limits {
    /// These limits without rate limits (tests and benchmarks that drive one server hard from
    /// one address).
    #[must_use]
    pub fn without_rate_limits(self) -> Self {
        Self {
            rate_per_address: None,
            rate_per_token: None,
            ..self
        }
    }
}

/// The shared state of the API. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The installation.
    pub system: System,
    /// Runs commands.
    pub exec: Executor,
    /// Read-your-writes.
    pub checkpoints: Checkpoints,
    /// The in-process projectors' status, when they run here.
    pub board: Option<Arc<StatusBoard>>,
    /// Verifies tokens.
    pub auth: Arc<Auth>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// Names of every read model, for waits and readiness.
    pub projections: Arc<Vec<&'static str>>,
    /// Delivery's configuration and channels (set by [`crate::server::start`]).
    pub delivery: Option<Arc<crate::delivery::Delivery>>,
    /// The console's sign-in through the issuer, when configured (set by
    /// [`crate::server::start`]).
    pub console_oidc: Option<Arc<crate::console::oidc::Client>>,
    /// Where media objects are kept: files in the data directory unless `KRING_MEDIA_URL` says
    /// otherwise (set by [`crate::server::start`]).
    pub media: crate::media_store::DynMediaStore,
    /// Local tokens found not revoked, and where the access log stood then.
    pub unrevoked: Arc<crate::auth::revocations::Unrevoked>,
}

impl AppState {
    /// State over an open installation.
    #[must_use]
    pub fn new(
        system: System,
        auth: Auth,
        board: Option<Arc<StatusBoard>>,
        limits: Limits,
    ) -> Self {
        let exec = Executor::new(system.store.clone(), Arc::clone(&system.vault));
        let checkpoints = Checkpoints::new(system.db.clone(), board.clone());
        let projections = kring_projections::models::all()
            .iter()
            .map(|p| p.name())
            .collect();
        Self {
            exec,
            checkpoints,
            board,
            auth: Arc::new(auth),
            metrics: Arc::new(Metrics::default()),
            limits,
            projections: Arc::new(projections),
            delivery: None,
            console_oidc: None,
            media: Arc::new(crate::media_store::local::LocalStore::new(
                system.config.media_dir(),
            )),
            unrevoked: Arc::default(),
            system,
        }
    }

    /// The caller a bearer token names: a local token not revoked, or an issuer's token whose
    /// identity belongs to a person.
    ///
    /// # Errors
    /// `401 unauthenticated` for a token that does not verify, was revoked, or names an
    /// identity no person has.
    pub async fn authenticate(&self, token: &str) -> ApiResult<Caller> {
        match self.auth.verify(token).await? {
            Verified::Local { caller, jti } => {
                if self.token_revoked(jti).await? {
                    return Err(ApiError::unauthenticated("the token was revoked"));
                }
                Ok(caller)
            }
            Verified::External { digest, .. } => {
                self.person_of_identity(&digest).await.map(Caller::Person)
            }
        }
    }

    /// Whether the local token (or console session) `jti` was revoked, as the access log's read
    /// model says. One this process found not revoked is not asked about again while that read
    /// model stands where it stood then ([`crate::auth::revocations`]), so a request's sign-in
    /// usually costs no statement.
    ///
    /// # Errors
    /// Database failures.
    pub async fn token_revoked(&self, jti: Uuid) -> ApiResult<bool> {
        let at = self.board.as_deref().and_then(|b| b.at(access_log::NAME));
        if at.is_some_and(|at| self.unrevoked.holds(jti, at)) {
            return Ok(false);
        }
        let revoked = access_log::token_revoked(&self.system.db, jti).await?;
        if let (false, Some(at)) = (revoked, at) {
            self.unrevoked.remember(jti, at);
        }
        Ok(revoked)
    }

    /// The person whose single sign-on identity has `digest` ([`crate::auth::identity_digest`]):
    /// how an issuer's bearer token and a console sign-in through the issuer find their person.
    ///
    /// # Errors
    /// `401 unauthenticated` for an identity no person has.
    pub async fn person_of_identity(&self, digest: &str) -> ApiResult<PersonId> {
        let mut person = memberships::person_of_identity(&self.system.db, digest).await?;
        if person.is_none() {
            // Given a moment ago, perhaps: the issuer signed this token, so a wait for the
            // read models is worth it before saying no.
            self.catch_up().await?;
            person = memberships::person_of_identity(&self.system.db, digest).await?;
        }
        person.ok_or_else(|| {
            ApiError::unauthenticated(
                "this sign-in is not linked to anyone at Kring: ask the school to add you with \
                 your single sign-on identity, or link it from your account",
            )
        })
    }

    /// Where media files are kept by the local media store (the default).
    #[must_use]
    pub fn media_dir(&self) -> PathBuf {
        self.system.config.media_dir()
    }

    /// The media items, sealed with their keys and kept in the media store, with the upload
    /// limit.
    #[must_use]
    pub fn media_files(&self) -> crate::media::MediaFiles {
        crate::media::MediaFiles::over(Arc::clone(&self.media), Arc::clone(&self.system.vault))
            .with_limit(self.limits.media_body as u64)
    }

    /// Waits (bounded) until every read model has reached `position`.
    ///
    /// # Errors
    /// `503 not_caught_up` when the wait runs out.
    pub async fn wait_for(&self, position: u64) -> ApiResult<()> {
        for name in self.projections.iter() {
            self.checkpoints
                .wait_for(name, position, self.limits.min_position_wait)
                .await?;
        }
        Ok(())
    }

    /// Waits until every read model has reached the log's head (used before concluding that
    /// a just-created resource does not exist).
    ///
    /// # Errors
    /// As [`AppState::wait_for`].
    pub async fn catch_up(&self) -> ApiResult<()> {
        let head = self.system.store.head().await?;
        self.wait_for(head).await
    }

    /// The school of `group`: from the memberships read model, waiting for it to catch up
    /// once when the group is not (yet) there.
    ///
    /// # Errors
    /// `404` for an unknown group.
    pub async fn school_of_group(&self, group: GroupId) -> ApiResult<SchoolId> {
        self.locate(|| async move {
            Ok(memberships::group_summary_of(&self.system.db, group)
                .await?
                .map(|g| g.school_id))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("group {group}")))
    }

    /// The child's school and class group, like [`AppState::school_of_group`].
    ///
    /// # Errors
    /// `404` for an unknown child.
    pub async fn place_of_child(&self, child: ChildId) -> ApiResult<(SchoolId, GroupId)> {
        self.locate(|| async move {
            Ok(memberships::child(&self.system.db, child)
                .await?
                .map(|c| (c.school_id, c.group_id)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("child {child}")))
    }

    /// Runs `find`; when it finds nothing, waits for the read models to reach the head of the
    /// log and runs it once more (a resource created a moment ago may not be projected yet).
    ///
    /// # Errors
    /// What `find` fails with.
    pub async fn locate<T, F, Fut>(&self, find: F) -> ApiResult<Option<T>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ApiResult<Option<T>>>,
    {
        if let Some(found) = find().await? {
            return Ok(Some(found));
        }
        self.catch_up().await?;
        find().await
    }

    /// Opens a sealed text for an answer; an erased subject's field reads `[erased]`.
    ///
    /// # Errors
    /// Vault failures other than erasure.
    pub async fn open(&self, sealed: &Sealed<String>) -> ApiResult<String> {
        Ok(self.system.vault.open_text(sealed).await?)
    }

    /// Like [`AppState::open`] for an optional field.
    ///
    /// # Errors
    /// As [`AppState::open`].
    pub async fn open_opt(&self, sealed: Option<&Sealed<String>>) -> ApiResult<Option<String>> {
        match sealed {
            Some(s) => self.open(s).await.map(Some),
            None => Ok(None),
        }
    }
}

/// The placeholder an erased field reads as.
pub const ERASED: &str = kring_domain::sealed::ERASED;

/// `?min_position=N`: every GET takes it and waits (bounded) for the read models.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MinPosition {
    /// Wait until the read models have applied the log up to this position.
    pub min_position: Option<u64>,
}

impl MinPosition {
    /// Waits for the position, if one was asked, and then brings the key vault's cache up to
    /// date with every erasure committed so far (in any process), so that what a removal or
    /// erasure at or before that position destroyed is not opened here.
    ///
    /// # Errors
    /// `422 validation_failed` for a position beyond the log's head (no write answered it: it
    /// would only be waited for in vain); `503 not_caught_up`.
    pub async fn wait(self, state: &AppState) -> ApiResult<()> {
        let Some(p) = self.min_position else {
            return Ok(());
        };
        // The head this process has seen first; the log's own only for a position beyond it
        // (written by another process, or never).
        if p > *state.system.store.watch_head().borrow() {
            let head = state.system.store.head().await?;
            if p > head {
                return Err(ApiError::validation(format!(
                    "min_position {p} is beyond the log's last position {head}: no write answered it"
                )));
            }
        }
        state.wait_for(p).await?;
        // An erasure or removal answered with this position destroyed its keys before it was
        // recorded, perhaps through another instance: this read must not open them from the
        // cache while the vault's notification is still on its way.
        state.system.vault.sync_erasures().await?;
        Ok(())
    }
}

/// The request id (from `x-request-id`), used as the correlation id of what a request writes.
#[derive(Debug, Clone, Copy)]
pub struct RequestId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(Uuid::now_v7),
        ))
    }
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthenticated("an Authorization: Bearer token is required")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthenticated("the Authorization header must be `Bearer <token>`")
            })?;
        state.authenticate(token.trim()).await
    }
}

/// Query-string parsing that answers `400 bad_request` as problem+json.
pub struct Q<T>(pub T);

impl<T, S> FromRequestParts<S> for Q<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}
