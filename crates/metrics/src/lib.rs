//! Prometheus metrics of ferry's daemons (`ferry host`, `ferry control`, `ferry ran`).
//!
//! - [`Registry`]: one per daemon (not the process-wide default: a test may run several
//!   daemons in one process), served at [`PATH`] in the text exposition format by [`serve`].
//!   Who may read it is the daemon's access rule (the operator's certificate or the
//!   `metrics` identity's; see each daemon).
//! - What every daemon measures the same way lives here: its HTTP API ([`HttpMetrics`],
//!   requests by route template, method and status, and their latency) and its notification
//!   deliveries ([`DeliveryMetrics`]). What is a daemon's own (migrations, relocations,
//!   handovers) is defined in that daemon's crate on the same registry.
//! - [`exposition`]: a strict reader of the text format, for tests and tools that check a
//!   scrape.
//!
//! Every metric is named `ferry_...`; label values come from ferry's own enums and route
//! templates, never from request input, so the number of series stays bounded.

pub mod exposition;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use prometheus;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    TextEncoder,
};

/// Where every daemon serves its metrics.
pub const PATH: &str = "/metrics";

/// Buckets (seconds) for what takes from milliseconds to minutes: migration phases,
/// downtime, relocations.
pub fn phase_buckets() -> Vec<f64> {
    // 5 ms .. 164 s, doubling.
    prometheus::exponential_buckets(0.005, 2.0, 16).unwrap_or_default()
}

/// Buckets (seconds) for what takes from a tenth of a millisecond to seconds: store
/// transactions, API requests.
pub fn fast_buckets() -> Vec<f64> {
    // 100 us .. 5.9 s, x3.
    prometheus::exponential_buckets(0.0001, 3.0, 11).unwrap_or_default()
}

/// One daemon's metrics. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Registry {
    inner: prometheus::Registry,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a metric. Definitions are constants of ferry's code (each daemon's are made
    /// in its unit tests), so a failure is a bug: logged, and the metric is not exported.
    fn register<M: prometheus::core::Collector + Clone + 'static>(&self, m: M) -> M {
        if let Err(e) = self.inner.register(Box::new(m.clone())) {
            tracing::error!("metric not registered: {e}");
        }
        m
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(Opts::new(name, help)).expect("metric definition"))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition"))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(Opts::new(name, help)).expect("metric definition"))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
        self.register(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("metric definition"),
        )
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        self.register(
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("metric definition"),
        )
    }

    /// Everything registered, in the text exposition format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.inner.gather(), &mut out) {
            tracing::error!("metrics not encoded: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `GET /metrics`: the registry in the text exposition format.
pub async fn serve(State(registry): State<Registry>) -> Response {
    let body = registry.encode();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// A daemon's HTTP API: requests by route template, method and status, and how long they
/// took until the answer's head.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    seconds: HistogramVec,
}

impl HttpMetrics {
    pub fn new(registry: &Registry) -> HttpMetrics {
        HttpMetrics {
            requests: registry.counter_vec(
                "ferry_http_requests_total",
                "API requests answered, by route template (unmatched: no route), method and status",
                &["route", "method", "status"],
            ),
            seconds: registry.histogram_vec(
                "ferry_http_request_duration_seconds",
                "Time from a request to its answer's head, by route template and method",
                &["route", "method"],
                fast_buckets(),
            ),
        }
    }
}

/// The method as a label: the standard ones by name, anything else as `OTHER` (a client
/// chooses the method; the label's values must stay few).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware counting every request of a router. Add it with `Router::layer` after the
/// routes, so it sees the matched route's template (a request no route matched counts as
/// `unmatched`, never as its path).
pub async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    m.requests
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    m.seconds
        .with_label_values(&[route.as_str(), method])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// How a producer's notifications to subscribers fare (`mec_http::notify`).
#[derive(Clone, Debug)]
pub struct DeliveryMetrics {
    pub delivered: IntCounter,
    pub refused: IntCounter,
    pub lost: IntCounter,
    pub merged: IntCounter,
    pub retries: IntCounter,
}

impl DeliveryMetrics {
    pub fn new(registry: &Registry) -> DeliveryMetrics {
        let results = registry.counter_vec(
            "ferry_notifications_total",
            "Notifications to subscribers by result: delivered (2xx), refused (4xx, not retried), \
             lost (dropped or given up), merged (folded into a later one of the same key)",
            &["result"],
        );
        DeliveryMetrics {
            delivered: results.with_label_values(&["delivered"]),
            refused: results.with_label_values(&["refused"]),
            lost: results.with_label_values(&["lost"]),
            merged: results.with_label_values(&["merged"]),
            retries: registry.counter(
                "ferry_notification_retries_total",
                "POSTs of a notification that failed (no answer, 5xx, 429) and were tried again",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn requests_are_counted_by_route_template_not_by_path() {
        let registry = Registry::new();
        let http = HttpMetrics::new(&registry);
        let app = axum::Router::new()
            .route("/things/{id}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(http, track));
        for path in ["/things/1", "/things/2", "/nothing"] {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let scrape = exposition::parse(&registry.encode()).unwrap();
        let count = |route: &str, status: &str| {
            scrape.value(
                "ferry_http_requests_total",
                &[("route", route), ("method", "GET"), ("status", status)],
            )
        };
        assert_eq!(count("/things/{id}", "200"), Some(2.0));
        assert_eq!(count("unmatched", "404"), Some(1.0));
        assert!(!registry.encode().contains("/things/1"));
        let h = scrape.histogram(
            "ferry_http_request_duration_seconds",
            &[("route", "/things/{id}"), ("method", "GET")],
        );
        assert_eq!(h.map(|h| h.count), Some(2));
    }

    #[test]
    fn delivery_counters_share_one_family() {
        let registry = Registry::new();
        let d = DeliveryMetrics::new(&registry);
        d.delivered.inc();
        d.lost.inc_by(3);
        d.retries.inc();
        let scrape = exposition::parse(&registry.encode()).unwrap();
        assert_eq!(
            scrape.value("ferry_notifications_total", &[("result", "lost")]),
            Some(3.0)
        );
        assert_eq!(
            scrape.value("ferry_notification_retries_total", &[]),
            Some(1.0)
        );
        assert_eq!(
            scrape.families["ferry_notifications_total"].kind,
            exposition::Kind::Counter
        );
    }
}
