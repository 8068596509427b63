//! The server's memory while it takes large media uploads at once: `kring-api serve --demo` as a
//! child process on a fresh data directory (rate limits off), its resident set read from
//! `/proc/<pid>/status` when idle and sampled every 10 ms while `uploads` clients each send one
//! upload of `size` bytes (`POST /v1/media` as the demo school's director), all at the same time.
//!
//! The client runs in this process and holds one copy of the upload's bytes, shared by every
//! request; what is measured is the server process alone.
//!
//! Then every upload is downloaded back at once (`GET /v1/media/{id}`, the bodies counted, not
//! kept), and both directions' throughput is reported (MiB/s over all uploads). The server
//! inherits this process's environment: `KRING_MEDIA_URL` (and `KRING_DATABASE_URL`, `AWS_*`)
//! choose the media store measured (`docs/media.md`).

use crate::report::Row;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct UploadMemory {
    /// Concurrent uploads.
    pub uploads: usize,
    /// Bytes per upload.
    pub size: usize,
    /// The server's resident set once started and seeded, before the uploads, KiB.
    pub idle_kib: u64,
    /// The highest resident set sampled during the uploads, KiB.
    pub peak_kib: u64,
    /// The kernel's high-water mark of the resident set after the uploads (`VmHWM`, start-up
    /// included), KiB.
    pub hwm_kib: u64,
    /// Uploads answered `201`.
    pub stored: usize,
    /// The first answer other than `201` (a status or an error), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_refusal: Option<String>,
    /// Seconds from the first request to the last answer.
    pub seconds: f64,
    /// The media store (`KRING_MEDIA_URL`'s adapter: `local`, `postgres`, `s3`).
    pub store: String,
    /// Downloads answered `200` with every byte.
    pub downloaded: usize,
    /// Seconds from the first download request to the last byte.
    pub download_seconds: f64,
}

impl UploadMemory {
    /// Upload throughput over all uploads, MiB/s.
    #[must_use]
    pub fn upload_mib_s(&self) -> f64 {
        (self.stored * self.size) as f64 / (1024.0 * 1024.0) / self.seconds.max(f64::EPSILON)
    }

    /// Download throughput over all downloads, MiB/s.
    #[must_use]
    pub fn download_mib_s(&self) -> f64 {
        (self.downloaded * self.size) as f64
            / (1024.0 * 1024.0)
            / self.download_seconds.max(f64::EPSILON)
    }

    /// The peak above idle, KiB.
    #[must_use]
    pub fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.idle_kib)
    }

    /// This run as a report row, against the target of under 100 MiB above idle.
    #[must_use]
    pub fn row(&self) -> Row {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let growth = mib(self.growth_kib());
        let row = Row::new(
            format!(
                "5. media uploads: {} × {} MiB at once",
                self.uploads,
                self.size / (1024 * 1024)
            ),
            format!("sqlite, {} media", self.store),
        )
        .figure("upload", self.upload_mib_s(), "MiB/s")
        .figure("download", self.download_mib_s(), "MiB/s")
        .figure("idle", mib(self.idle_kib), "MiB")
        .figure("peak", mib(self.peak_kib), "MiB")
        .figure("above idle", growth, "MiB")
        .target(
            "< 100 MiB above idle",
            growth < 100.0 && self.stored == self.uploads && self.downloaded == self.stored,
        );
        let mut note = format!(
            "server RSS sampled every 10 ms through uploads and downloads; VmHWM {:.1} MiB; \
             up {:.1} s, down {:.1} s ({} downloaded)",
            mib(self.hwm_kib),
            self.seconds,
            self.download_seconds,
            self.downloaded
        );
        if self.stored != self.uploads {
            let _ = write!(
                note,
                "; only {} of {} stored (first refusal: {})",
                self.stored,
                self.uploads,
                self.first_refusal.as_deref().unwrap_or("?")
            );
        }
        row.note(note)
    }
}

/// A field of `/proc/<pid>/status`, KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// The `kring-api` binary next to this one (the same build profile).
///
/// # Errors
/// This executable's path is unknown.
pub fn sibling_server() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Ok(exe.with_file_name("kring-api"))
}

/// The demo school's director token, once the server has written `demo.json`.
async fn director_token(dir: &Path, child: &mut tokio::process::Child) -> Result<String, String> {
    let path = dir.join("demo.json");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(demo) = serde_json::from_str::<serde_json::Value>(&text) {
                return demo["people"]["director"]["token"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{} has no director token", path.display()));
            }
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("the server exited before it was ready: {status}"));
        }
        if Instant::now() > deadline {
            return Err("the server did not seed its demo school within 5 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `server` on a fresh data directory, waits until it is seeded and idle, then sends
/// `uploads` uploads of `size` bytes at once and reports the server's memory.
///
/// # Errors
/// The server does not start, or `/proc` cannot be read, as text.
pub async fn measure(server: &Path, uploads: usize, size: usize) -> Result<UploadMemory, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(server)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--demo")
        .args(["--rate-per-address", "0", "--rate-per-token", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
    let outcome = run(&mut child, dir.path(), &base, uploads, size).await;
    let _ = child.kill().await;
    outcome
}

async fn run(
    child: &mut tokio::process::Child,
    dir: &Path,
    base: &str,
    uploads: usize,
    size: usize,
) -> Result<UploadMemory, String> {
    let pid = child.id().ok_or("the server has no process id")?;
    let token = director_token(dir, child).await?;
    // Let start-up work (projectors catching up on the seed) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = status_kib(pid, "VmRSS:").ok_or("cannot read the server's VmRSS")?;

    let peak = Arc::new(AtomicU64::new(idle_kib));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = status_kib(pid, "VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // A JPEG signature, then bytes that do not compress.
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while bytes.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(size);
    // One copy for the whole run, shared by every request (a `'static` slice is sent without
    // copying); it lives until the benchmark process ends.
    let shared: &'static [u8] = Box::leak(bytes.into_boxed_slice());

    let http = reqwest::Client::new();
    let start = Instant::now();
    let sends = (0..uploads).map(|_| {
        http.post(format!("{base}/v1/media"))
            .bearer_auth(&token)
            .header("content-type", "image/jpeg")
            .body(shared)
            .send()
    });
    let answers = futures::future::join_all(sends).await;
    let seconds = start.elapsed().as_secs_f64();
    let mut ids = Vec::new();
    let mut answers_kept = Vec::new();
    for answer in answers {
        match answer {
            Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                ids.push(v["media_id"].as_str().unwrap_or_default().to_owned());
                answers_kept.push(Ok(reqwest::StatusCode::CREATED));
            }
            Ok(r) => answers_kept.push(Ok(r.status())),
            Err(e) => answers_kept.push(Err(e)),
        }
    }
    let answers = answers_kept;
    // Every upload back at once, its bytes counted as they come.
    let start = Instant::now();
    let gets = ids.iter().map(|id| {
        let request = http
            .get(format!("{base}/v1/media/{id}"))
            .bearer_auth(&token)
            .send();
        async move {
            let mut response = request.await.ok()?;
            if response.status() != reqwest::StatusCode::OK {
                return None;
            }
            let mut n = 0;
            while let Some(chunk) = response.chunk().await.ok()? {
                n += chunk.len();
            }
            Some(n)
        }
    });
    let downloaded = futures::future::join_all(gets)
        .await
        .into_iter()
        .filter(|n| *n == Some(size))
        .count();
    let download_seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let hwm_kib = status_kib(pid, "VmHWM:").unwrap_or(0);
    if let Some(rss) = status_kib(pid, "VmRSS:") {
        peak.fetch_max(rss, Ordering::Relaxed);
    }
    let stored = ids.len();
    let first_refusal = answers.iter().find_map(|a| match a {
        Ok(s) if *s == reqwest::StatusCode::CREATED => None,
        Ok(s) => Some(s.to_string()),
        Err(e) => Some(e.to_string()),
    });
    Ok(UploadMemory {
        uploads,
        size,
        idle_kib,
        peak_kib: peak.load(Ordering::Relaxed),
        hwm_kib,
        stored,
        first_refusal,
        seconds,
        store: store_kind(),
        downloaded,
        download_seconds,
    })
}

/// The media store the server is told to use, as `KRING_MEDIA_URL` names it.
fn store_kind() -> String {
    match std::env::var("KRING_MEDIA_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        None => "local".into(),
        Some(v) if v.starts_with("s3://") => "s3".into(),
        Some(v) if v.starts_with("postgres") => "postgres".into(),
        Some(v) => v,
    }
}
