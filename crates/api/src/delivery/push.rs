//! Web Push: RFC 8030 delivery, the payload encrypted for the device (RFC 8291, `aes128gcm`)
//! and signed for the push service with the installation's VAPID key (RFC 8292), built by the
//! pure-Rust `web-push-native` and sent with `reqwest` (rustls).
//!
//! Endpoints are checked twice against server-side request forgery: when a device subscribes
//! (an `https` URL whose host is a name or a public address) and when sending (the name must
//! resolve to public addresses only; redirects are not followed). `http://` to a loopback
//! address is accepted only with the test-only `--push-allow-loopback-http`.

use super::{Deliver, Message, Reason, SendError, SetupError};
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use kring_domain::push::PushEndpoint;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::WebPushBuilder;

/// How long a push service keeps an undelivered message (`TTL`).
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The Web Push channel.
pub struct Push {
    client: reqwest::Client,
    key: ES256KeyPair,
    contact: String,
    allow_loopback_http: bool,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("contact", &self.contact)
            .finish_non_exhaustive()
    }
}

/// Whether `ip` is a public unicast address (or, when `loopback` allows it, a loopback one).
#[must_use]
pub fn allowed_ip(ip: IpAddr, loopback: bool) -> bool {
    if ip.is_loopback() {
        return loopback;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return allowed_ip(IpAddr::V4(v4), loopback);
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Checks a subscription's endpoint: an `https` URL (or, when allowed for tests, `http` to a
/// loopback address) of at most 2,048 characters whose host is a public name or address.
///
/// # Errors
/// Why it is refused, for a `422`.
pub fn check_endpoint(endpoint: &str, allow_loopback_http: bool) -> Result<reqwest::Url, String> {
    if endpoint.len() > 2048 {
        return Err("endpoint: at most 2048 characters".to_owned());
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("endpoint: not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("endpoint: must not hold credentials".to_owned());
    }
    let host = url
        .host()
        .ok_or_else(|| "endpoint: the URL has no host".to_owned())?;
    let loopback = match &host {
        url::Host::Ipv4(ip) => {
            let ip = IpAddr::V4(*ip);
            if !allowed_ip(ip, allow_loopback_http) {
                return Err("endpoint: the host is not a public address".to_owned());
            }
            ip.is_loopback()
        }
        url::Host::Ipv6(ip) => {
            let ip = IpAddr::V6(*ip);
            if !allowed_ip(ip, allow_loopback_http) {
                return Err("endpoint: the host is not a public address".to_owned());
            }
            ip.is_loopback()
        }
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            #[expect(
                clippy::case_sensitive_file_extension_comparisons,
                reason = "a host name, lower-cased above, not a file name"
            )]
            let local = name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".local")
                || name.ends_with(".internal")
                || !name.contains('.');
            if local && !(allow_loopback_http && name == "localhost") {
                return Err("endpoint: the host is not a public name".to_owned());
            }
            name == "localhost"
        }
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_loopback_http && loopback => Ok(url),
        _ => Err("endpoint: must be an https URL".to_owned()),
    }
}

/// Checks a subscription's keys: `p256dh` a P-256 public key (65 bytes uncompressed) and `auth`
/// 16 bytes, both base64url (padding tolerated).
///
/// # Errors
/// Why they are refused, for a `422`.
pub fn check_keys(p256dh: &str, auth: &str) -> Result<(), String> {
    let key = decode(p256dh).ok_or("keys.p256dh: not base64url")?;
    if key.len() != 65 || key[0] != 4 {
        return Err("keys.p256dh: must be a 65-byte uncompressed P-256 public key".to_owned());
    }
    web_push_native::p256::PublicKey::from_sec1_bytes(&key)
        .map_err(|_| "keys.p256dh: not a point on P-256".to_owned())?;
    let auth = decode(auth).ok_or("keys.auth: not base64url")?;
    if auth.len() != 16 {
        return Err("keys.auth: must be 16 bytes".to_owned());
    }
    Ok(())
}

fn decode(text: &str) -> Option<Vec<u8>> {
    B64URL.decode(text.trim().trim_end_matches('=')).ok()
}

/// Resolves push services' names to public addresses only (loopback too, for tests, when
/// allowed).
struct PublicOnly {
    loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let loopback = self.loopback;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let addrs: Vec<SocketAddr> = found.filter(|a| allowed_ip(a.ip(), loopback)).collect();
            if addrs.is_empty() {
                return Err("the push service's name resolves to no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The installation's VAPID key: `configured` (base64url, 32 bytes), or the one in
/// `DATA_DIR/vapid.key`, made (owner-only) on first use.
///
/// # Errors
/// A key that does not parse; the file cannot be read or made.
pub fn vapid_key(configured: Option<&str>, data_dir: &Path) -> Result<ES256KeyPair, SetupError> {
    let path = super::vapid_key_path(data_dir);
    let fail = |where_: &str, reason: String| SetupError::Vapid {
        path: where_.to_owned(),
        reason,
    };
    if let Some(text) = configured.filter(|t| !t.trim().is_empty()) {
        let bytes =
            decode(text).ok_or_else(|| fail("KRING_VAPID_PRIVATE_KEY", "not base64url".into()))?;
        return ES256KeyPair::from_bytes(&bytes)
            .map_err(|e| fail("KRING_VAPID_PRIVATE_KEY", e.to_string()));
    }
    let shown = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = decode(&text).ok_or_else(|| fail(&shown, "not base64url".into()))?;
            ES256KeyPair::from_bytes(&bytes).map_err(|e| fail(&shown, e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ES256KeyPair::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail(&shown, e.to_string()))?;
            }
            match kring_store::vault::create_private(
                &path,
                B64URL.encode(key.to_bytes()).as_bytes(),
            ) {
                Ok(()) => Ok(key),
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    vapid_key(None, data_dir)
                }
                Err(e) => Err(fail(&shown, e.to_string())),
            }
        }
        Err(e) => Err(fail(&shown, e.to_string())),
    }
}

/// The `Topic` of the push message with idempotency key `key`: 32 base64url characters, so that
/// a push service replaces an undelivered repeat instead of delivering both.
#[must_use]
pub fn topic(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    B64URL.encode(&digest[..24])
}

/// The JSON a device receives (decrypted by its browser): the key, the title, the text and the
/// link.
#[must_use]
pub fn payload(message: &Message) -> Vec<u8> {
    serde_json::json!({
        "idempotency_key": message.key,
        "title": message.subject,
        "body": message.text,
        "url": message.link,
    })
    .to_string()
    .into_bytes()
}

impl Push {
    /// The channel, signing with `key` and naming `contact` (a `mailto:` or `https:` URL) in its
    /// VAPID claims.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        key: ES256KeyPair,
        contact: String,
        allow_loopback_http: bool,
    ) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly {
                loopback: allow_loopback_http,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        Ok(Self {
            client,
            key,
            contact,
            allow_loopback_http,
        })
    }

    /// The VAPID public key (65 bytes uncompressed, base64url): what a browser's
    /// `pushManager.subscribe` takes as `applicationServerKey`.
    #[must_use]
    pub fn public_key(&self) -> String {
        B64URL.encode(self.key.public_key().public_key().to_bytes_uncompressed())
    }
}

#[async_trait]
impl Deliver for Push {
    type Address = PushEndpoint;

    async fn send(&self, to: &PushEndpoint, message: &Message) -> Result<(), SendError> {
        let refused = |what| SendError::Permanent(Reason::new(what));
        let url = check_endpoint(&to.endpoint, self.allow_loopback_http)
            .map_err(|_| refused("push endpoint refused"))?;
        let ua_public = decode(&to.p256dh)
            .and_then(|k| web_push_native::p256::PublicKey::from_sec1_bytes(&k).ok())
            .ok_or_else(|| refused("push keys unusable"))?;
        let auth = decode(&to.auth)
            .filter(|a| a.len() == 16)
            .ok_or_else(|| refused("push keys unusable"))?;
        let uri: http::Uri = url
            .as_str()
            .parse()
            .map_err(|_| refused("push endpoint refused"))?;
        let request = WebPushBuilder::new(
            uri,
            ua_public,
            web_push_native::Auth::clone_from_slice(&auth),
        )
        .with_valid_duration(TTL)
        .with_vapid(&self.key, &self.contact)
        .build(payload(message))
        .map_err(|_| refused("push encryption"))?;
        let (parts, body) = request.into_parts();
        let answer = self
            .client
            .post(url)
            .headers(parts.headers)
            .header("Topic", topic(&message.key))
            .header("Urgency", "normal")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                SendError::Transient(Reason::new(if e.is_timeout() {
                    "push timeout"
                } else {
                    "push connection"
                }))
            })?;
        let status = answer.status().as_u16();
        match status {
            200..=299 => Ok(()),
            404 | 410 => Err(SendError::Gone(status)),
            408 | 429 | 500..=599 => Err(SendError::Transient(Reason::status("push", status))),
            _ => Err(SendError::Permanent(Reason::status("push", status))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_to_public_hosts() {
        assert!(check_endpoint("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(check_endpoint("http://fcm.googleapis.com/fcm/send/abc", false).is_err());
        for private in [
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://10.0.0.8/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://printer.local/x",
            "https://intranet/x",
            "https://user:pw@push.example.com/x",
        ] {
            assert!(check_endpoint(private, false).is_err(), "{private}");
        }
        assert!(check_endpoint("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_endpoint("http://10.0.0.8/x", true).is_err());
    }

    #[test]
    fn keys_must_decode_to_their_sizes() {
        let key = ES256KeyPair::generate();
        let p256dh = B64URL.encode(key.public_key().public_key().to_bytes_uncompressed());
        let auth = B64URL.encode([7_u8; 16]);
        assert!(check_keys(&p256dh, &auth).is_ok());
        assert!(check_keys(&p256dh, &B64URL.encode([7_u8; 15])).is_err());
        assert!(check_keys("not base64!", &auth).is_err());
        assert!(check_keys(&B64URL.encode([4_u8; 65]), &auth).is_err());
    }

    #[test]
    fn a_topic_is_32_base64url_characters() {
        let t = topic("0190:0191/push");
        assert_eq!(t.len(), 32);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
