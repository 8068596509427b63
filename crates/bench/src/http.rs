//! Who-may-see over HTTP on loopback: `GET /v1/media/{id}/viewers` of the real API router
//! (`kring_api::server::start_on`, on 127.0.0.1:0) under concurrent load from in-process
//! clients, each asking as the teacher of the media's class.
//!
//! Client and server share the machine's cores, so the figure is a floor of what the server
//! alone would serve.

use crate::install::Installation;
use crate::report::Row;
use crate::stats::Latencies;
use kring_api::auth::{Auth, Caller};
use kring_api::server::{start_on, ServeOptions};
use kring_domain::simulation::World;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCENARIO: &str = "3. who-may-see over HTTP";

/// Media of `world` that still exist (at most 256, newest first), each with a token of its
/// class's teacher.
///
/// # Errors
/// Minting a token failed, as text.
pub fn targets(world: &World, auth: &Auth) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (post_id, media_id) in world.media_ids.iter().rev() {
        let Some(post) = world.posts.get(post_id) else {
            continue;
        };
        if post.removed || !post.media.contains_key(media_id) {
            continue;
        }
        let Some(g) = post
            .group_id
            .and_then(|group| world.groups.iter().position(|x| *x == group))
        else {
            continue;
        };
        // `with_classes` adds the director first, then one teacher per class.
        let Some(teacher) = world.staff.get(1 + g) else {
            continue;
        };
        let token = auth
            .mint(Caller::Person(*teacher), chrono::Duration::hours(1))
            .map_err(crate::commands::show)?;
        out.push((media_id.to_string(), token));
        if out.len() == 256 {
            break;
        }
    }
    Ok(out)
}

/// Serves the installation's API and loads it for `seconds` with `clients` concurrent
/// clients. A route the API does not have yet makes the row pending.
pub async fn measure(install: &Installation, world: &World, seconds: u64, clients: usize) -> Row {
    let name = install.backend.name();
    match load(install, world, seconds, clients).await {
        Ok(row) => row,
        Err(e) => Row::new(SCENARIO, name).pending(e),
    }
}

async fn load(
    install: &Installation,
    world: &World,
    seconds: u64,
    clients: usize,
) -> Result<Row, String> {
    let name = install.backend.name();
    let mut options = ServeOptions::new(install.system.config.clone()).without_rate_limits();
    // The generated school years run from 2026-09-01: once their posts are older than the
    // retention period, the job would expire them while the clients measure.
    options.retention = false;
    let auth = Auth::local(install.dir()).map_err(|e| e.to_string())?;
    let targets = Arc::new(targets(world, &auth)?);
    if targets.is_empty() {
        return Err("the workload left no media to ask about".into());
    }
    let server = start_on(install.system.clone(), options)
        .await
        .map_err(|e| e.to_string())?;
    server
        .state
        .catch_up()
        .await
        .map_err(|e| format!("read models did not catch up: {}", crate::commands::show(e)))?;
    let base = server.url();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .map_err(|e| e.to_string())?;

    // One probe first: a missing route answers an empty 404, a wrong request a problem.
    let (media, token) = &targets[0];
    let probe = client
        .get(format!("{base}/v1/media/{media}/viewers"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = probe.status();
    let body = probe.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::NOT_FOUND && body.is_empty() {
        return Err("the HTTP API has no GET /v1/media/{id}/viewers yet".into());
    }
    if !status.is_success() {
        return Err(format!("the probe answered {status}: {body}"));
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let targets = Arc::clone(&targets);
            let base = base.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failed = 0_u64;
                let mut i = c;
                while Instant::now() < deadline {
                    let (media, token) = &targets[i % targets.len()];
                    i += clients;
                    let t = Instant::now();
                    let ok = match client
                        .get(format!("{base}/v1/media/{media}/viewers"))
                        .bearer_auth(token)
                        .send()
                        .await
                    {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for task in tasks {
        if let Ok((l, f)) = task.await {
            latencies.extend(l);
            failed += f;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    server.stop();
    let latencies = Latencies::new(latencies);
    if latencies.is_empty() {
        return Err(format!("no request succeeded ({failed} failed)"));
    }
    let per_sec = latencies.len() as f64 / secs;
    let p99 = latencies.percentile_ms(99.0);
    let (target, rate, p99_limit) = match install.backend {
        crate::install::Backend::Sqlite => ("≥ 15k requests/s, p99 < 5 ms", 15_000.0, 5.0),
        crate::install::Backend::Postgres => ("≥ 8k requests/s, p99 < 10 ms", 8_000.0, 10.0),
    };
    let mut note = format!(
        "{clients} clients in-process, {} media, {} requests",
        targets.len(),
        latencies.len()
    );
    if failed > 0 {
        let _ = write!(note, "; {failed} failed");
    }
    Ok(Row::new(SCENARIO, name)
        .figure("", per_sec, "requests/s")
        .figure("p50", latencies.percentile_ms(50.0), "ms")
        .figure("p99", p99, "ms")
        .target(target, per_sec >= rate && p99 < p99_limit)
        .note(note))
}
