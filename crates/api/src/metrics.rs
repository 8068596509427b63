//! `/metrics` in the Prometheus text format: requests and latencies per route, events
//! appended, and each projection's lag behind the log.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Route {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request counters and latency histograms, keyed by (method, route template, status).
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String, u16), Route>>,
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        if let Ok(mut routes) = self.routes.lock() {
            let r = routes
                .entry((method_label(method).to_owned(), route.to_owned(), status))
                .or_default();
            r.count += 1;
            r.sum += secs;
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    r.buckets[i] += 1;
                }
            }
        }
    }

    /// The text exposition, with the log's head, the events this process appended and each
    /// projection's position.
    #[must_use]
    pub fn render(&self, head: u64, appended: u64, projections: &[(String, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP kring_http_requests_total HTTP requests by method, route and status.\n# TYPE kring_http_requests_total counter\n");
        let routes = self.routes.lock().map(|r| {
            r.iter()
                .map(|(k, v)| (k.clone(), v.count, v.sum, v.buckets))
                .collect::<Vec<_>>()
        });
        let routes = routes.unwrap_or_default();
        for ((method, route, status), count, _, _) in &routes {
            let _ = writeln!(
                out,
                "kring_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP kring_http_request_duration_seconds HTTP request latency.\n# TYPE kring_http_request_duration_seconds histogram\n");
        for ((method, route, status), count, sum, buckets) in &routes {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (bound, n) in BUCKETS.iter().zip(buckets) {
                let _ = writeln!(
                    out,
                    "kring_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "kring_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "kring_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "kring_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP kring_events_appended_total Events appended by this process.\n# TYPE kring_events_appended_total counter\nkring_events_appended_total {appended}");
        let _ = writeln!(out, "# HELP kring_log_head_position The event log's last global position.\n# TYPE kring_log_head_position gauge\nkring_log_head_position {head}");
        out.push_str("# HELP kring_projection_lag_events Events in the log a projection has not applied yet.\n# TYPE kring_projection_lag_events gauge\n");
        for (name, position) in projections {
            let _ = writeln!(
                out,
                "kring_projection_lag_events{{projection=\"{name}\"}} {}",
                head.saturating_sub(*position)
            );
        }
        out
    }
}

/// The method label of a request: a standard method by its name, any other as `other`, so that
/// no client can grow the set of series (the route label is the matched route's template, or
/// `unmatched`).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}
