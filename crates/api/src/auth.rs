//! Authentication: JWT bearer tokens.
//!
//! - The embedded default signs HS256 tokens with a secret kept in `DIR/jwt.key` (owner-only
//!   permissions, generated on first use; `KRING_JWT_SECRET` overrides it); `kring-api token`
//!   mints them.
//! - A deployment can instead (or as well) trust an OpenID Connect issuer: its public keys come
//!   from a JWKS file or URL (`--oidc-jwks`), and tokens must name `--oidc-issuer` as `iss` and
//!   `--oidc-audience` in `aud`.
//!
//! A token's `sub` is a Kring person id, or `operator` — the platform operator only in a locally
//! signed token: no external issuer can make anyone the operator. Rights never come from
//! claims: they are decided from event-sourced state by each route.

use crate::error::ApiError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kring_domain::{Actor, PersonId};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The environment variable holding the local signing secret (base64), overriding the file.
pub const JWT_SECRET_ENV: &str = "KRING_JWT_SECRET";
/// The issuer named by locally minted tokens.
pub const LOCAL_ISSUER: &str = "kring-local";
/// The longest a local token may be valid: minted for longer, or presented with a later expiry,
/// it is refused.
pub const MAX_TOKEN_DAYS: i64 = 90;
/// The shortest local signing secret accepted (HS256 wants at least its 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A staff member or a guardian.
    Person(PersonId),
    /// The platform operator.
    Operator,
}

impl Caller {
    /// The domain actor for commands.
    #[must_use]
    pub const fn actor(self) -> Actor {
        match self {
            Self::Person(p) => Actor::Person(p),
            Self::Operator => Actor::Operator,
        }
    }

    /// The person, unless the operator.
    #[must_use]
    pub const fn person(self) -> Option<PersonId> {
        match self {
            Self::Person(p) => Some(p),
            Self::Operator => None,
        }
    }
}

/// The claims Kring reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// A person id or `operator`.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: i64,
    /// The issuer.
    #[serde(default)]
    pub iss: String,
}

/// Why authentication setup failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The key file could not be read or written.
    #[error("signing key {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The JWKS could not be read.
    #[error("JWKS {source_name}: {reason}")]
    Jwks {
        /// The file or URL.
        source_name: String,
        /// What failed.
        reason: String,
    },
}

/// An external OpenID Connect issuer.
#[derive(Clone)]
struct Oidc {
    issuer: String,
    audience: String,
    keys: JwkSet,
}

/// Verifies (and, locally, mints) bearer tokens.
#[derive(Clone)]
pub struct Auth {
    secret: Vec<u8>,
    oidc: Option<Oidc>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("oidc", &self.oidc.as_ref().map(|o| &o.issuer))
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The local signing key of `data_dir` (created on first use), or `KRING_JWT_SECRET`.
    ///
    /// # Errors
    /// The key file cannot be read or created; a malformed or short secret.
    pub fn local(data_dir: &Path) -> Result<Self, AuthSetupError> {
        let (source, secret) = match std::env::var(JWT_SECRET_ENV) {
            Ok(text) if !text.is_empty() => (
                JWT_SECRET_ENV.to_owned(),
                B64.decode(text.trim())
                    .map_err(|e| AuthSetupError::KeyFile {
                        path: JWT_SECRET_ENV.to_owned(),
                        reason: format!("not base64: {e}"),
                    })?,
            ),
            _ => {
                let path = data_dir.join("jwt.key");
                (path.display().to_string(), key_file(&path)?)
            }
        };
        Self::with_secret(&source, secret)
    }

    /// Local tokens signed with `secret` (from `source`, for the error).
    ///
    /// # Errors
    /// A secret shorter than [`MIN_SECRET_BYTES`].
    pub fn with_secret(source: &str, secret: Vec<u8>) -> Result<Self, AuthSetupError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthSetupError::KeyFile {
                path: source.to_owned(),
                reason: format!(
                    "the secret has {} bytes; at least {MIN_SECRET_BYTES} are needed",
                    secret.len()
                ),
            });
        }
        Ok(Self { secret, oidc: None })
    }

    /// Also trusts tokens of `issuer` for `audience` signed by a key of `jwks` (a file path or
    /// an http(s) URL).
    ///
    /// # Errors
    /// The JWKS cannot be read or parsed.
    pub async fn with_oidc(
        mut self,
        issuer: &str,
        jwks: &str,
        audience: &str,
    ) -> Result<Self, AuthSetupError> {
        let fail = |reason: String| AuthSetupError::Jwks {
            source_name: jwks.to_owned(),
            reason,
        };
        let text = if jwks.starts_with("http://") || jwks.starts_with("https://") {
            reqwest::get(jwks)
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| fail(e.to_string()))?
                .text()
                .await
                .map_err(|e| fail(e.to_string()))?
        } else {
            std::fs::read_to_string(jwks).map_err(|e| fail(e.to_string()))?
        };
        let keys: JwkSet = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        self.oidc = Some(Oidc {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys,
        });
        Ok(self)
    }

    /// A locally signed token for `caller`, valid for `ttl` (at most [`MAX_TOKEN_DAYS`]).
    ///
    /// # Errors
    /// `422` for a lifetime over the maximum or not positive; signing failed (it does not with
    /// an HMAC key).
    pub fn mint(&self, caller: Caller, ttl: chrono::Duration) -> Result<String, ApiError> {
        if ttl <= chrono::Duration::zero() || ttl > chrono::Duration::days(MAX_TOKEN_DAYS) {
            return Err(ApiError::validation(format!(
                "a token is valid for more than nothing and at most {MAX_TOKEN_DAYS} days"
            )));
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: match caller {
                Caller::Person(p) => p.to_string(),
                Caller::Operator => "operator".to_owned(),
            },
            exp: now + ttl.num_seconds(),
            iat: now,
            iss: LOCAL_ISSUER.to_owned(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .map_err(ApiError::internal)
    }

    /// The caller a bearer token names, if it verifies.
    ///
    /// # Errors
    /// `401 unauthenticated`: malformed, expired, or signed by a key this server does not trust.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let bad = |e: jsonwebtoken::errors::Error| {
            ApiError::unauthenticated(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "the token has expired".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "the token is not signed by a key this server trusts".to_owned()
                }
                _ => format!("the token is not valid: {e}"),
            })
        };
        let header = jsonwebtoken::decode_header(token).map_err(bad)?;
        let local = header.alg == Algorithm::HS256;
        let claims = if local {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_issuer(&[LOCAL_ISSUER]);
            validation.leeway = 5;
            let claims = jsonwebtoken::decode::<Claims>(
                token,
                &DecodingKey::from_secret(&self.secret),
                &validation,
            )
            .map_err(bad)?
            .claims;
            // A leaked key must not mint tokens that outlive the bound.
            let latest = chrono::Utc::now().timestamp() + MAX_TOKEN_DAYS * 24 * 3600 + 60;
            if claims.exp > latest {
                return Err(ApiError::unauthenticated(format!(
                    "the token is valid for more than {MAX_TOKEN_DAYS} days"
                )));
            }
            claims
        } else {
            let oidc = self.oidc.as_ref().ok_or_else(|| {
                ApiError::unauthenticated("the token is not signed by a key this server trusts")
            })?;
            let jwk = header
                .kid
                .as_deref()
                .and_then(|kid| oidc.keys.find(kid))
                .ok_or_else(|| {
                    ApiError::unauthenticated("the token's key id is not among the issuer's keys")
                })?;
            let key = DecodingKey::from_jwk(jwk).map_err(bad)?;
            let mut validation = Validation::new(header.alg);
            validation.set_issuer(&[oidc.issuer.as_str()]);
            // A token the issuer made for another application is not for Kring.
            validation.set_audience(&[oidc.audience.as_str()]);
            validation.leeway = 5;
            jsonwebtoken::decode::<Claims>(token, &key, &validation)
                .map_err(bad)?
                .claims
        };
        // Only the local key makes the platform operator: an external issuer's `operator` is
        // a subject like any other, and no Kring person.
        if local && claims.sub == "operator" {
            return Ok(Caller::Operator);
        }
        claims
            .sub
            .parse::<PersonId>()
            .map(Caller::Person)
            .map_err(|_| ApiError::unauthenticated("the token's subject is not a Kring person id"))
    }
}

/// Reads the secret at `path`, generating it (32 random bytes, owner-only) when missing.
fn key_file(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    let fail = |reason: String| AuthSetupError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => B64
            .decode(text.trim())
            .map_err(|e| fail(format!("not base64: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0_u8; 32];
            getrandom::getrandom(&mut secret).map_err(|e| fail(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
            }
            match kring_store::vault::create_private(path, B64.encode(&secret).as_bytes()) {
                Ok(()) => Ok(secret),
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(path),
                Err(e) => Err(fail(e.to_string())),
            }
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::with_secret("test", vec![7; MIN_SECRET_BYTES]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(Auth::with_secret("test", vec![7; MIN_SECRET_BYTES - 1]).is_err());
    }

    #[test]
    fn local_tokens_live_at_most_ninety_days() {
        let auth = auth();
        assert!(auth
            .mint(Caller::Operator, chrono::Duration::days(MAX_TOKEN_DAYS))
            .is_ok());
        for ttl in [
            chrono::Duration::days(MAX_TOKEN_DAYS + 1),
            chrono::Duration::zero(),
        ] {
            assert!(auth.mint(Caller::Operator, ttl).is_err(), "{ttl}");
        }
        // Signed with the key, but for a year: refused.
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: "operator".into(),
            exp: now + 365 * 24 * 3600,
            iat: now,
            iss: LOCAL_ISSUER.into(),
        };
        let long = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&auth.secret),
        )
        .unwrap_or_default();
        assert_eq!(
            auth.verify(&long).err().map(|e| e.code),
            Some("unauthenticated")
        );
        let fine = auth
            .mint(Caller::Operator, chrono::Duration::hours(1))
            .unwrap_or_default();
        assert_eq!(auth.verify(&fine).ok(), Some(Caller::Operator));
    }
}
