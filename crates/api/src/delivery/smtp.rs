//! E-mail over SMTP (`lettre`, on tokio with rustls: no OpenSSL).
//!
//! `KRING_SMTP_URL=smtp://[user:password@]host:port` (add `?tls=required` for STARTTLS) or
//! `smtps://…` (TLS from the start); `KRING_MAIL_FROM` is the sender. Every mail carries its
//! idempotency key as `X-Kring-Idempotency-Key` and in its `Message-ID`, so a receiving system
//! can drop a repeat after a crash between sending and recording. A `4xx` answer is tried again
//! later; a `5xx` makes the job a dead letter at once.

use super::{Deliver, Message, Reason, SendError, SetupError};
use async_trait::async_trait;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

/// The header holding a mail's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "X-Kring-Idempotency-Key";

#[derive(Debug, Clone)]
struct IdempotencyKey(String);

impl Header for IdempotencyKey {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(IDEMPOTENCY_HEADER)
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The SMTP channel.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The `Message-ID` of the mail with idempotency key `key`: the key with every character a
/// message id cannot hold as `.`, at the sender's domain.
#[must_use]
pub fn message_id(key: &str, domain: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("<{local}@{domain}>")
}

impl Smtp {
    /// The channel for `url`, sending as `from`.
    ///
    /// # Errors
    /// A URL `lettre` cannot use; a sender that is not an address.
    pub fn new(url: &str, from: &str) -> Result<Self, SetupError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| SetupError::From(format!("{from:?} is not a mail address: {e}")))?;
        let domain = from.email.domain().to_owned();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| SetupError::Smtp(e.to_string()))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        Ok(Self {
            transport,
            from,
            domain,
        })
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> SendError {
    let status = e.status().map(u16::from);
    match status {
        Some(s) if e.is_permanent() => SendError::Permanent(Reason::status("smtp", s)),
        Some(s) => SendError::Transient(Reason::status("smtp", s)),
        None if e.is_timeout() => SendError::Transient(Reason::new("smtp timeout")),
        None if e.is_tls() => SendError::Transient(Reason::new("smtp tls")),
        None => SendError::Transient(Reason::new("smtp connection")),
    }
}

#[async_trait]
impl Deliver for Smtp {
    type Address = String;

    async fn send(&self, to: &String, message: &Message) -> Result<(), SendError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| SendError::Permanent(Reason::new("address unusable")))?;
        let mail = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&message.subject)
            .message_id(Some(message_id(&message.key, &self.domain)))
            .header(IdempotencyKey(message.key.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(message.text.clone())
            .map_err(|_| SendError::Permanent(Reason::new("mail unbuildable")))?;
        self.transport
            .send(mail)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_holds_the_key_readably() {
        assert_eq!(
            message_id("0190:0191/email", "school.example"),
            "<0190.0191.email@school.example>"
        );
    }
}
