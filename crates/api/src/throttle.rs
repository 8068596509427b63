//! Rate limits per client address and per bearer token (`tower_governor`), answered with
//! `429 rate_limited` problem+json and `Retry-After`.
//!
//! The address limit comes first, so a client cannot get around it by sending made-up tokens;
//! requests without a token are limited per address at the token rate as well. The limiters'
//! state is keyed by caller input, so a background task drops every key whose bucket is full
//! again ([`forget_idle_keys`]): what they hold is bounded by the rate times that interval.

use crate::error::{ApiError, Code};
use axum::extract::ConnectInfo;
use axum::http::{header, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use governor::middleware::NoOpMiddleware;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests allowed at once before the rate applies.
    pub burst: u32,
}

impl Rate {
    /// `per_second` with a burst of five seconds' worth; `None` for 0 (no limit).
    #[must_use]
    pub fn per_second(per_second: u32) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second,
            burst: per_second.saturating_mul(5),
        })
    }
}

/// How often keys of full buckets are dropped.
const FORGET_EVERY: Duration = Duration::from_secs(30);

/// The peer's address (set by the accept loop).
#[derive(Debug, Clone, Copy)]
struct PeerAddress;

impl KeyExtractor for PeerAddress {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        peer(req).ok_or(GovernorError::UnableToExtractKey)
    }
}

/// The bearer token (a keyed hash of it), or the address for requests without one.
#[derive(Debug, Clone)]
struct BearerToken(std::collections::hash_map::RandomState);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TokenKey {
    Token(u64),
    Anonymous(IpAddr),
}

impl KeyExtractor for BearerToken {
    type Key = TokenKey;

    fn extract<T>(&self, req: &Request<T>) -> Result<TokenKey, GovernorError> {
        match req.headers().get(header::AUTHORIZATION) {
            Some(value) => Ok(TokenKey::Token(self.0.hash_one(value.as_bytes()))),
            None => peer(req)
                .map(TokenKey::Anonymous)
                .ok_or(GovernorError::UnableToExtractKey),
        }
    }
}

fn peer<T>(req: &Request<T>) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

fn config<K: tower_governor::key_extractor::KeyExtractor>(
    key: K,
    rate: Rate,
) -> Arc<GovernorConfig<K, NoOpMiddleware<governor::clock::QuantaInstant>>> {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(rate.per_second.max(1)));
    Arc::new(
        GovernorConfigBuilder::default()
            .key_extractor(key)
            .period(period)
            .burst_size(rate.burst.max(1))
            .finish()
            .unwrap_or_else(|| unreachable!("period and burst are positive")),
    )
}

fn too_many(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let wait = wait_time.max(1);
            let mut response = ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                Code::RateLimited,
                format!("too many requests; try again in {wait} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.into());
            response
        }
        // No peer address: only when served without the accept loop, which never happens.
        _ => ApiError::internal("the client's address is unknown").into_response(),
    }
}

/// `router` with the limits that are set (the address limit outermost), and the task that keeps
/// their state bounded.
pub fn limit<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    per_address: Option<Rate>,
    per_token: Option<Rate>,
) -> Router<S> {
    let mut router = router;
    if let Some(rate) = per_token {
        let config = config(
            BearerToken(std::collections::hash_map::RandomState::new()),
            rate,
        );
        forget_idle_keys(&config);
        router = router.layer(GovernorLayer::new(config).error_handler(too_many));
    }
    if let Some(rate) = per_address {
        let config = config(PeerAddress, rate);
        forget_idle_keys(&config);
        router = router.layer(GovernorLayer::new(config).error_handler(too_many));
    }
    router
}

/// Drops, every [`FORGET_EVERY`], the keys whose bucket is full again.
fn forget_idle_keys<K>(
    config: &Arc<GovernorConfig<K, NoOpMiddleware<governor::clock::QuantaInstant>>>,
) where
    K: KeyExtractor + Send + Sync + 'static,
    K::Key: Send + Sync + 'static,
{
    let weak = Arc::downgrade(config);
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FORGET_EVERY).await;
            let Some(config) = weak.upgrade() else { return };
            config.limiter().retain_recent();
            config.limiter().shrink_to_fit();
        }
    });
}
