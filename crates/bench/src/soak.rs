//! The soak: `kring-api serve` as a child process on an imported school-year log (SQLite), under
//! a steady open-loop load over HTTP for many minutes, sampled every [`SAMPLE_EVERY`]: the
//! server's resident set (`VmRSS`), its open file descriptors (entries of `/proc/<pid>/fd`), the
//! size of the SQLite write-ahead logs in its data directory (every `*-wal` file) and the p99
//! latency of the requests answered in the last interval.
//!
//! The load is the who-may-see scenario's ([`crate::http`]) reads with writes beside them, in a
//! fixed rotation: of every four requests two ask `GET /v1/media/{id}/viewers` as the media's
//! teacher, one reads `GET /v1/feed` as a guardian and one is a consent decision by that guardian
//! (`PUT /v1/children/{id}/consents/{purpose}`, granting and withdrawing in turn), so the log and
//! the read models keep growing while the soak runs.
//!
//! A figure is *flat* when the median of its samples in the last minute is at most 10 % above
//! the median of its samples in the second minute (the first minute is warm-up: caches and
//! connection pools fill). [`verdicts`] decides; the run fails when one is not flat.

use crate::install::{Backend, Installation};
use crate::stats::Latencies;
use kring_api::auth::{Auth, Caller};
use kring_domain::simulation::workload::{Workload, WorkloadConfig};
use kring_domain::simulation::World;
use kring_domain::Purpose;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Growth over the second minute's median that still counts as flat.
pub const FLAT_TOLERANCE: f64 = 0.10;

/// Requests in flight at most; a tick beyond it waits (and the report shows a lower rate).
const IN_FLIGHT: u32 = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// How long the load runs.
    pub minutes: u64,
    /// Requests per second, sent at a steady pace whatever the answers' latency.
    pub rate: u32,
    /// Events of the school-year log imported before the server starts.
    pub events: u64,
    /// The `kring-api` binary to run.
    pub server: PathBuf,
}

/// One sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub at_secs: u64,
    /// The server's resident set, KiB.
    pub rss_kib: u64,
    /// The server's open file descriptors.
    pub fds: u64,
    /// Bytes of every `*-wal` file in the data directory.
    pub wal_bytes: u64,
    /// The p99 latency of the interval's answered requests, ms.
    pub p99_ms: f64,
    /// Requests answered with a 2xx in the interval.
    pub ok: u64,
    /// Requests answered otherwise (or not at all) in the interval.
    pub failed: u64,
}

/// Whether one figure stayed flat.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The figure.
    pub figure: &'static str,
    /// The median of the second minute's samples (or of all, in a run of under two minutes).
    pub baseline: f64,
    /// The median of the last minute's samples.
    pub end: f64,
    /// `end` over `baseline`, minus one.
    pub growth: f64,
    /// Whether the growth is within [`FLAT_TOLERANCE`].
    pub flat: bool,
}

/// A whole soak.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    /// Minutes of load.
    pub minutes: u64,
    /// Requests per second asked for.
    pub rate: u32,
    /// Events in the log when the server started.
    pub events: u64,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// One verdict per figure.
    pub verdicts: Vec<Verdict>,
    /// The first failed request's status or error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

impl Soak {
    /// Whether every figure stayed flat.
    #[must_use]
    pub fn flat(&self) -> bool {
        self.verdicts.iter().all(|v| v.flat)
    }

    /// The samples and the verdicts as Markdown.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = format!(
            "# kring-bench soak: {} min at {} requests/s on a {}-event log (sqlite)\n\n",
            self.minutes, self.rate, self.events
        );
        out.push_str("| t (s) | RSS (MiB) | fds | WAL (MiB) | p99 (ms) | ok | failed |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
        for s in &self.samples {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {:.2} | {:.2} | {} | {} |",
                s.at_secs,
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.wal_bytes as f64 / (1024.0 * 1024.0),
                s.p99_ms,
                s.ok,
                s.failed
            );
        }
        out.push_str("\n| figure | 2nd minute (median) | last minute (median) | growth | flat |\n");
        out.push_str("|---|---:|---:|---:|---|\n");
        for v in &self.verdicts {
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:+.1} % | {} |",
                v.figure,
                v.baseline,
                v.end,
                v.growth * 100.0,
                if v.flat { "yes" } else { "NO" }
            );
        }
        if let Some(f) = &self.first_failure {
            let _ = writeln!(out, "\nfirst failed request: {f}");
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.flat() {
                "every figure stayed flat"
            } else {
                "NOT FLAT: see the figures marked NO"
            }
        );
        out
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        f64::midpoint(values[mid - 1], values[mid])
    } else {
        values[mid]
    }
}

/// A figure's name and how to read it from a sample.
type Figure = (&'static str, fn(&Sample) -> f64);

/// The verdict on each figure of `samples` (taken every [`SAMPLE_EVERY`] from the start of the
/// load): the median of the last minute's samples against the median of the second minute's.
/// A run of under two minutes compares its last minute with all of its samples.
#[must_use]
pub fn verdicts(samples: &[Sample]) -> Vec<Verdict> {
    let end_secs = samples.last().map_or(0, |s| s.at_secs);
    let second_minute: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_secs > 60 && s.at_secs <= 120)
        .collect();
    let baseline_set: Vec<&Sample> = if end_secs >= 180 && !second_minute.is_empty() {
        second_minute
    } else {
        samples.iter().collect()
    };
    let last_minute: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_secs + 60 > end_secs)
        .collect();
    let figures: [Figure; 4] = [
        ("RSS (MiB)", |s| s.rss_kib as f64 / 1024.0),
        ("open fds", |s| s.fds as f64),
        ("WAL (MiB)", |s| s.wal_bytes as f64 / (1024.0 * 1024.0)),
        ("p99 (ms)", |s| s.p99_ms),
    ];
    figures
        .into_iter()
        .map(|(figure, read)| {
            let baseline = median(baseline_set.iter().map(|s| read(s)).collect());
            let end = median(last_minute.iter().map(|s| read(s)).collect());
            let growth = if baseline > 0.0 {
                end / baseline - 1.0
            } else if end > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            Verdict {
                figure,
                baseline,
                end,
                growth,
                flat: growth <= FLAT_TOLERANCE,
            }
        })
        .collect()
}

/// A field of `/proc/<pid>/status`, KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-wal"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// One request of the rotation.
#[derive(Debug, Clone)]
enum Request {
    Viewers {
        media: String,
        token: String,
    },
    Feed {
        token: String,
    },
    Decide {
        path: String,
        granted: bool,
        token: String,
    },
}

/// The rotation's inputs: the who-may-see targets, and guardians with one of their children.
struct Plan {
    viewers: Vec<(String, String)>,
    guardians: Vec<(String, String)>,
}

impl Plan {
    fn new(world: &World, auth: &Auth) -> Result<Self, String> {
        let viewers = crate::http::targets(world, auth)?;
        if viewers.is_empty() {
            return Err("the workload left no media to ask about".into());
        }
        let mut tokens: HashMap<_, String> = HashMap::new();
        let mut guardians = Vec::new();
        for child in &world.child_ids {
            for guardian in world.guardians_of(*child) {
                let token = match tokens.get(&guardian) {
                    Some(t) => t.clone(),
                    None => {
                        let t = auth
                            .mint(Caller::Person(guardian), chrono::Duration::days(1))
                            .map_err(crate::commands::show)?;
                        tokens.insert(guardian, t.clone());
                        t
                    }
                };
                guardians.push((child.to_string(), token));
                if guardians.len() == 512 {
                    break;
                }
            }
        }
        if guardians.is_empty() {
            return Err("the workload left no linked guardian".into());
        }
        Ok(Self { viewers, guardians })
    }

    /// The `n`-th request of the rotation.
    fn request(&self, n: usize) -> Request {
        let (child, token) = &self.guardians[(n / 4) % self.guardians.len()];
        match n % 4 {
            0 | 2 => {
                let (media, token) = &self.viewers[(n / 2) % self.viewers.len()];
                Request::Viewers {
                    media: media.clone(),
                    token: token.clone(),
                }
            }
            1 => Request::Feed {
                token: token.clone(),
            },
            _ => {
                // Each guardian's turn comes once per pass over the list: a pass decides one
                // purpose, and every three passes grants turn into withdrawals and back.
                let pass = n / 4 / self.guardians.len();
                let purpose = [
                    Purpose::GroupCommunication,
                    Purpose::SchoolCommunication,
                    Purpose::PublicCommunication,
                ][pass % 3];
                Request::Decide {
                    path: format!("/v1/children/{child}/consents/{}", purpose.as_str()),
                    granted: (pass / 3).is_multiple_of(2),
                    token: token.clone(),
                }
            }
        }
    }
}

/// Interval statistics shared by the load and the sampler.
#[derive(Default)]
struct Window {
    latencies: Vec<Duration>,
    failed: u64,
    first_failure: Option<String>,
}

async fn send(client: &reqwest::Client, base: &str, request: Request) -> Result<(), String> {
    let response = match request {
        Request::Viewers { media, token } => {
            client
                .get(format!("{base}/v1/media/{media}/viewers"))
                .bearer_auth(token)
                .send()
                .await
        }
        Request::Feed { token } => {
            client
                .get(format!("{base}/v1/feed"))
                .bearer_auth(token)
                .send()
                .await
        }
        Request::Decide {
            path,
            granted,
            token,
        } => {
            client
                .put(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "granted": granted }))
                .send()
                .await
        }
    }
    .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// Imports a school-year log of `options.events` events into a fresh SQLite installation,
/// starts `options.server` on it and runs the soak.
///
/// # Errors
/// Setting up, starting the server or reading `/proc` failed, as text. A soak that is not flat
/// is not an error: see [`Soak::flat`].
pub async fn run(options: &SoakOptions) -> Result<Soak, String> {
    eprintln!("soak: importing {} events (sqlite)", options.events);
    let install = Installation::create(Backend::Sqlite, None, "soak")
        .await
        .map_err(|e| e.to_string())?;
    let (chunks, generator) =
        crate::import::generated(Workload::new(WorkloadConfig::school_years(options.events)));
    let events = crate::import::write(&install.system, chunks)
        .await
        .map_err(|e| e.to_string())?;
    let (workload, _) = generator
        .join()
        .map_err(|_| "the workload's generator panicked".to_owned())?;
    let auth = Auth::local(install.dir()).map_err(|e| e.to_string())?;
    let plan = Arc::new(Plan::new(workload.world(), &auth)?);
    let dir = install.dir().to_path_buf();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    eprintln!("soak: starting {}", options.server.display());
    let mut child = tokio::process::Command::new(&options.server)
        .arg("serve")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--rate-per-address", "0", "--rate-per-token", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", options.server.display()))?;
    let outcome = soak(&mut child, &dir, &base, plan, options, events).await;
    let _ = child.kill().await;
    drop(install);
    outcome
}

async fn ready(
    client: &reqwest::Client,
    base: &str,
    child: &mut tokio::process::Child,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("the server exited before it was ready: {status}"));
        }
        if Instant::now() > deadline {
            return Err("the server was not ready within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn soak(
    child: &mut tokio::process::Child,
    dir: &Path,
    base: &str,
    plan: Arc<Plan>,
    options: &SoakOptions,
    events: u64,
) -> Result<Soak, String> {
    let pid = child.id().ok_or("the server has no process id")?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT as usize)
        .build()
        .map_err(|e| e.to_string())?;
    ready(&client, base, child).await?;
    eprintln!(
        "soak: {} requests/s for {} min, a sample every {} s",
        options.rate,
        options.minutes,
        SAMPLE_EVERY.as_secs()
    );

    let window = Arc::new(Mutex::new(Window::default()));
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs(options.minutes * 60);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(options.rate.max(1)),
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next_sample = start + SAMPLE_EVERY;
    let mut samples = Vec::new();
    let mut first_failure = None;
    let mut n = 0_usize;
    loop {
        let now = tokio::select! {
            t = ticks.tick() => t,
            () = tokio::time::sleep_until(next_sample) => next_sample,
        };
        if now >= next_sample {
            let taken = std::mem::take(&mut *window.lock().map_err(|e| e.to_string())?);
            if first_failure.is_none() {
                first_failure = taken.first_failure;
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("the server exited during the soak: {status}"));
            }
            let latencies = Latencies::new(taken.latencies);
            let sample = Sample {
                at_secs: (next_sample - start).as_secs(),
                rss_kib: status_kib(pid, "VmRSS:").ok_or("cannot read the server's VmRSS")?,
                fds: open_fds(pid).ok_or("cannot list the server's /proc/<pid>/fd")?,
                wal_bytes: wal_bytes(dir),
                p99_ms: latencies.percentile_ms(99.0),
                ok: latencies.len() as u64,
                failed: taken.failed,
            };
            eprintln!(
                "soak: {:>4} s  RSS {:.1} MiB  fds {}  WAL {:.2} MiB  p99 {:.2} ms  ok {}  failed {}",
                sample.at_secs,
                sample.rss_kib as f64 / 1024.0,
                sample.fds,
                sample.wal_bytes as f64 / (1024.0 * 1024.0),
                sample.p99_ms,
                sample.ok,
                sample.failed
            );
            samples.push(sample);
            next_sample += SAMPLE_EVERY;
            if next_sample > end {
                break;
            }
            continue;
        }
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let request = plan.request(n);
        let (client, base, window) = (client.clone(), base.to_owned(), Arc::clone(&window));
        tokio::spawn(async move {
            let t = Instant::now();
            let outcome = send(&client, &base, request).await;
            let elapsed = t.elapsed();
            drop(permit);
            if let Ok(mut w) = window.lock() {
                match outcome {
                    Ok(()) => w.latencies.push(elapsed),
                    Err(e) => {
                        w.failed += 1;
                        if w.first_failure.is_none() {
                            w.first_failure = Some(e);
                        }
                    }
                }
            }
        });
        n += 1;
    }
    // Let the last requests finish before the server is stopped.
    let _ = slots.acquire_many(IN_FLIGHT).await;
    let verdicts = verdicts(&samples);
    Ok(Soak {
        minutes: options.minutes,
        rate: options.rate,
        events,
        samples,
        verdicts,
        first_failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_secs: u64, rss_mib: u64, p99_ms: f64) -> Sample {
        Sample {
            at_secs,
            rss_kib: rss_mib * 1024,
            fds: 40,
            wal_bytes: 4 << 20,
            p99_ms,
            ok: 1000,
            failed: 0,
        }
    }

    fn verdict<'a>(v: &'a [Verdict], figure: &str) -> &'a Verdict {
        v.iter()
            .find(|v| v.figure == figure)
            .expect("every figure has a verdict")
    }

    #[test]
    #[allow(
        clippy::float_cmp,
        reason = "the figures are means of whole numbers of MiB, exact in f64"
    )]
    fn growth_after_the_first_minute_is_not_flat_and_warm_up_is_ignored() {
        // Warm-up from 50 to 100 MiB in the first minute, then flat, then a leak in the last.
        let samples: Vec<Sample> = (1..=30)
            .map(|i| {
                let t = i * 10;
                let rss = match t {
                    0..=60 => 50 + t,
                    61..=240 => 100,
                    _ => 120,
                };
                sample(t, rss, 3.0)
            })
            .collect();
        let v = verdicts(&samples);
        let rss = verdict(&v, "RSS (MiB)");
        assert_eq!(rss.baseline, 100.0);
        assert_eq!(rss.end, 120.0);
        assert!(!rss.flat);
        assert!(verdict(&v, "open fds").flat);
        assert!(verdict(&v, "p99 (ms)").flat);
    }

    #[test]
    fn growth_within_ten_percent_is_flat_and_one_spike_does_not_count() {
        let samples: Vec<Sample> = (1..=30)
            .map(|i| {
                let t = i * 10;
                let p99 = if t == 290 {
                    40.0
                } else {
                    3.0 + (t as f64) / 1000.0
                };
                sample(t, 100 + t / 60, p99)
            })
            .collect();
        let v = verdicts(&samples);
        assert!(v.iter().all(|v| v.flat), "{v:?}");
    }
}
