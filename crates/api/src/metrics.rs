//! `/metrics` in the OpenMetrics text format (which Prometheus reads): requests and latencies
//! per route, events appended, and each projection's lag behind the log.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The media type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// One series of the request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    method: &'static str,
    route: String,
    status: u16,
}

/// One projection's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Projection {
    projection: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The process's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<Request, Counter>,
    latency: Family<Request, Histogram, fn() -> Histogram>,
    appended: Counter,
    head: Gauge,
    lag: Family<Projection, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Request, Counter>::default();
        let latency = Family::<Request, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let appended = Counter::default();
        let head = Gauge::default();
        let lag = Family::<Projection, Gauge>::default();
        registry.register(
            "kring_http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "kring_http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        registry.register(
            "kring_events_appended",
            "Events appended by this process",
            appended.clone(),
        );
        registry.register(
            "kring_log_head_position",
            "The event log's last global position",
            head.clone(),
        );
        registry.register(
            "kring_projection_lag_events",
            "Events in the log a projection has not applied yet",
            lag.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            appended,
            head,
            lag,
        }
    }
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let series = Request {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        self.latency
            .get_or_create(&series)
            .observe(took.as_secs_f64());
        self.requests.get_or_create(&series).inc();
    }

    /// The exposition, with the log's head, the events this process appended and each
    /// projection's position.
    #[must_use]
    pub fn render(&self, head: u64, appended: u64, projections: &[(String, u64)]) -> String {
        self.appended.inner().fetch_max(appended, Ordering::Relaxed);
        self.head.set(gauge_value(head));
        for (name, position) in projections {
            self.lag
                .get_or_create(&Projection {
                    projection: name.clone(),
                })
                .set(gauge_value(head.saturating_sub(*position)));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A position as a gauge's value (positions stay far below `i64::MAX`).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_each_series_once_with_its_labels() {
        let m = Metrics::default();
        m.observe("GET", "/v1/me", 200, Duration::from_millis(3));
        m.observe("GET", "/v1/me", 200, Duration::from_millis(30));
        m.observe("BREW", "unmatched", 404, Duration::from_millis(1));
        let out = m.render(10, 4, &[("visibility".to_owned(), 7)]);
        for line in [
            "kring_http_requests_total{method=\"GET\",route=\"/v1/me\",status=\"200\"} 2",
            "kring_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 1",
            "kring_events_appended_total 4",
            "kring_log_head_position 10",
            "kring_projection_lag_events{projection=\"visibility\"} 3",
            "# EOF",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
        assert!(out.contains("kring_http_request_duration_seconds_bucket{le=\"0.005\",method=\"GET\",route=\"/v1/me\",status=\"200\"} 1"), "{out}");
    }
}
