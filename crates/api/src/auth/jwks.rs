//! An OpenID Connect issuer's public keys (a JWKS), fetched and kept fresh.
//!
//! - Fetched with a timeout: an issuer that hangs fails start-up (or the refresh) instead of
//!   holding requests.
//! - Kept as long as the answer's `Cache-Control: max-age` says (an hour when it says nothing;
//!   [`MIN_FRESH`] at the least), then fetched again on the next token. A failed refresh keeps
//!   the keys it has and tries again on a later token.
//! - A token naming a key id the set does not hold makes one refresh (the issuer rotated its
//!   keys), at most once per [`UNKNOWN_KID_REFRESH`], so tokens with made-up key ids cannot
//!   turn the server into a load generator against the issuer.
//! - A file path instead of a URL is read the same way (no `Cache-Control`: an hour).

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::Algorithm;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// How long a fetch of the key set may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time a fetched key set is kept, whatever `Cache-Control` says.
pub const MIN_FRESH: Duration = Duration::from_secs(1);
/// How long a key set is kept when its answer names no `max-age`.
pub const DEFAULT_FRESH: Duration = Duration::from_secs(3600);
/// The most time a key set is kept, whatever `Cache-Control` says.
pub const MAX_FRESH: Duration = Duration::from_secs(24 * 3600);
/// The least time between two refreshes caused by unknown key ids.
pub const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(60);

struct Held {
    keys: JwkSet,
    fresh_until: Instant,
    fetched_at: Instant,
    /// When an unknown key id last made a refresh.
    unknown_kid_refresh: Option<Instant>,
}

/// Why a key was not found or not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key of the set has the token's key id, even after a refresh.
    #[error("the token's key id is not among the issuer's keys")]
    UnknownKid,
    /// The key says it is for something else than signatures.
    #[error("the issuer's key {0} is not a signing key")]
    NotForSigning(String),
    /// The key names another algorithm than the token's header.
    #[error("the issuer's key {0} is for another algorithm than the token's")]
    WrongAlgorithm(String),
}

/// The key set of one issuer.
pub struct Jwks {
    source: String,
    client: reqwest::Client,
    held: RwLock<Held>,
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Fetches the key set at `source` (an http(s) URL or a file path) for the first time.
    ///
    /// # Errors
    /// The set cannot be fetched within `timeout`, or is not a JWKS.
    pub async fn load(source: &str, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let (keys, fresh) = fetch(&client, source).await?;
        let now = Instant::now();
        Ok(Self {
            source: source.to_owned(),
            client,
            held: RwLock::new(Held {
                keys,
                fresh_until: now + fresh,
                fetched_at: now,
                unknown_kid_refresh: None,
            }),
            refreshing: Mutex::new(()),
        })
    }

    /// The key `kid` for a token signed with `alg`, refreshing the set when it is stale or
    /// does not hold `kid` (the latter at most once per [`UNKNOWN_KID_REFRESH`]).
    ///
    /// # Errors
    /// [`KeyError`]: no such key, or a key not meant for this token.
    pub async fn key(&self, kid: &str, alg: Algorithm) -> Result<Jwk, KeyError> {
        let (found, stale, recently, seen) = {
            let held = self.held.read().await;
            let now = Instant::now();
            (
                held.keys.find(kid).cloned(),
                now >= held.fresh_until,
                held.unknown_kid_refresh
                    .is_some_and(|t| now.duration_since(t) < UNKNOWN_KID_REFRESH),
                held.fetched_at,
            )
        };
        let jwk = match found {
            Some(jwk) if !stale => jwk,
            found => {
                if stale {
                    self.refresh(seen, false).await;
                } else if !recently {
                    self.refresh(seen, true).await;
                }
                match self.held.read().await.keys.find(kid).cloned() {
                    Some(jwk) => jwk,
                    None => found.ok_or(KeyError::UnknownKid)?,
                }
            }
        };
        usable(&jwk, kid, alg)?;
        Ok(jwk)
    }

    /// Fetches the set again, unless it changed since `seen` (one fetch at a time; a caller
    /// that waited for another's fetch uses its result). A failed fetch keeps the keys held and is logged.
    async fn refresh(&self, seen: Instant, for_unknown_kid: bool) {
        let _one = self.refreshing.lock().await;
        if self.held.read().await.fetched_at != seen {
            // Someone refreshed while we waited: take theirs.
            return;
        }
        let fetched = fetch(&self.client, &self.source).await;
        let now = Instant::now();
        let mut held = self.held.write().await;
        match fetched {
            Ok((keys, fresh)) => {
                held.keys = keys;
                held.fresh_until = now + fresh;
            }
            Err(reason) => {
                tracing::warn!(source = %self.source, %reason, "the issuer's keys could not be refreshed; keeping the keys held");
                // Not again on every request: once per minimum freshness.
                held.fresh_until = now + MIN_FRESH;
            }
        }
        held.fetched_at = now;
        if for_unknown_kid {
            held.unknown_kid_refresh = Some(now);
        }
    }
}

/// Whether `jwk` may verify a token signed with `alg`: a signing key (when it says) for that
/// algorithm (when it says).
fn usable(jwk: &Jwk, kid: &str, alg: Algorithm) -> Result<(), KeyError> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return Err(KeyError::NotForSigning(kid.to_owned()));
    }
    if let Some(key_alg) = &jwk.common.key_algorithm {
        let named = serde_json::to_value(key_alg).ok();
        if named.is_none() || named != serde_json::to_value(alg).ok() {
            return Err(KeyError::WrongAlgorithm(kid.to_owned()));
        }
    }
    Ok(())
}

async fn fetch(client: &reqwest::Client, source: &str) -> Result<(JwkSet, Duration), String> {
    let (text, fresh) = if source.starts_with("http://") || source.starts_with("https://") {
        let res = client
            .get(source)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?;
        let fresh = res
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map_or(DEFAULT_FRESH, max_age);
        (res.text().await.map_err(|e| e.to_string())?, fresh)
    } else {
        (
            tokio::fs::read_to_string(source)
                .await
                .map_err(|e| e.to_string())?,
            DEFAULT_FRESH,
        )
    };
    let keys = serde_json::from_str(&text).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok((keys, fresh))
}

/// How long a `Cache-Control` value lets the answer be kept, within [`MIN_FRESH`] and
/// [`MAX_FRESH`]. `no-store`/`no-cache` keep it for the minimum.
fn max_age(cache_control: &str) -> Duration {
    let mut fresh = DEFAULT_FRESH;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return MIN_FRESH;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                fresh = Duration::from_secs(seconds);
            }
        }
    }
    fresh.clamp(MIN_FRESH, MAX_FRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_read_within_bounds() {
        assert_eq!(max_age("public, max-age=600"), Duration::from_secs(600));
        assert_eq!(max_age("max-age=0"), MIN_FRESH);
        assert_eq!(max_age("no-store"), MIN_FRESH);
        assert_eq!(max_age("max-age=99999999"), MAX_FRESH);
        assert_eq!(max_age("private"), DEFAULT_FRESH);
        assert_eq!(max_age("max-age=soon"), DEFAULT_FRESH);
    }
}
