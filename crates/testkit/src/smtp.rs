//! An SMTP server on a local port for delivery tests and the delivery benchmark: keeps what it
//! is sent, answers `451` to the `DATA` of the next N mails when asked, and can take its time
//! over each mail. It speaks just enough SMTP for a client that needs no extension (no TLS, no
//! authentication).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One mail as received.
#[derive(Debug, Clone)]
pub struct Mail {
    /// `MAIL FROM`.
    pub from: String,
    /// `RCPT TO`s.
    pub to: Vec<String>,
    /// The message, headers and body, dot-stuffing undone.
    pub data: String,
}

impl Mail {
    /// A header's value (unfolded), by name, case-insensitively.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push_str(line.trim_start());
                    continue;
                }
            }
            if value.is_some() {
                return value;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    value = Some(v.trim().to_owned());
                }
            }
        }
        value
    }

    /// The body, its transfer encoding undone (7bit, quoted-printable or base64).
    ///
    /// # Panics
    /// When a base64 body that does not decode.
    #[must_use]
    pub fn body(&self) -> String {
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        match self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "base64" => {
                use base64::Engine as _;
                let joined: String = raw.split_whitespace().collect();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(joined)
                        .unwrap(),
                )
                .unwrap()
            }
            "quoted-printable" => {
                let mut out = Vec::new();
                let bytes = raw.replace("=\r\n", "").into_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'=' && i + 2 < bytes.len() {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).unwrap());
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            }
            _ => raw.to_owned(),
        }
    }

    /// The idempotency key the mail carries.
    #[must_use]
    pub fn key(&self) -> String {
        self.header("X-Kring-Idempotency-Key").unwrap_or_default()
    }
}

/// An SMTP server on a local port.
#[derive(Clone)]
pub struct SmtpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    refuse: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
    delay_ms: Arc<AtomicU64>,
}

impl SmtpSink {
    /// Starts one that takes every mail.
    pub async fn start() -> Self {
        Self::refusing(0).await
    }

    /// Starts one that answers `451` to the `DATA` of the first `n` mails.
    ///
    /// # Panics
    /// When the local port cannot be bound.
    pub async fn refusing(n: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Self {
            addr: listener.local_addr().unwrap(),
            mails: Arc::default(),
            refuse: Arc::new(AtomicU32::new(n)),
            refused: Arc::default(),
            delay_ms: Arc::default(),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(stream).await;
                });
            }
        });
        sink
    }

    /// `smtp://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Refuse the next `n` mails too.
    pub fn refuse_next(&self, n: u32) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// Take `delay` over each mail before answering that it was taken (a slow server: a crash
    /// can then come while mails are in flight).
    ///
    /// # Panics
    /// When the sink's lock was poisoned by a panicking connection.
    pub fn slow(&self, delay: Duration) {
        self.delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }

    /// How many mails were refused.
    #[must_use]
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Every mail taken so far.
    ///
    /// # Panics
    /// When the sink's lock was poisoned by a panicking connection.
    #[must_use]
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits (up to a minute) until `done` holds for the mails taken, and answers them.
    ///
    /// # Panics
    /// When the mails do not arrive within the minute (the calling test fails).
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
        for _ in 0..1200 {
            let mails = self.mails();
            if done(&mails) {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the SMTP sink never saw {what}; it has {:#?}", self.mails());
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 sink ESMTP\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                b"250 OK\r\n"
            } else if upper.starts_with("RSET") {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                from = command[10..].trim().trim_matches(['<', '>']).to_owned();
                from = from
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .trim_matches(['<', '>'])
                    .to_owned();
                b"250 OK\r\n"
            } else if upper.starts_with("RCPT TO:") {
                to.push(command[8..].trim().trim_matches(['<', '>']).to_owned());
                b"250 OK\r\n"
            } else if upper == "DATA" {
                let refuse = self
                    .refuse
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refuse {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    from.clear();
                    to.clear();
                    b"451 4.3.0 try again later\r\n"
                } else {
                    write.write_all(b"354 go ahead\r\n").await?;
                    let mut data = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        if line == ".\r\n" {
                            break;
                        }
                        let l = line.strip_prefix('.').unwrap_or(&line);
                        data.push_str(l);
                    }
                    let delay = self.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    self.mails.lock().unwrap().push(Mail {
                        from: std::mem::take(&mut from),
                        to: std::mem::take(&mut to),
                        data,
                    });
                    b"250 OK queued\r\n"
                }
            } else if upper.starts_with("QUIT") {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                b"500 unknown command\r\n"
            };
            write.write_all(reply).await?;
        }
    }
}
