//! The service's Prometheus metrics (OpenMetrics text through
//! `prometheus-client`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::backend::FailureKind;

type Labels = [(&'static str, &'static str); 1];

/// Claim outcomes, the `result` label.
pub const RESULTS: [&str; 4] = ["fresh", "replayed", "unavailable", "invalid"];

/// Upper bounds of the claim latency buckets, in seconds: 0.25 ms to 1 s.
pub const BUCKETS: [f64; 11] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Every metric, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    claims: Family<Labels, Counter>,
    redis_errors: Family<Labels, Counter>,
    duration: Histogram,
    ready: Gauge,
}

impl Metrics {
    /// Registers every metric, each label value present from the start (at 0).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let claims = Family::<Labels, Counter>::default();
        let redis_errors = Family::<Labels, Counter>::default();
        let duration = Histogram::new(BUCKETS);
        let ready = Gauge::default();
        registry.register(
            "edge_hmac_nonce_store_claims",
            "Claims answered, by result",
            claims.clone(),
        );
        registry.register(
            "edge_hmac_nonce_store_redis_errors",
            "Redis operations (claims and readiness probes) that failed, by kind",
            redis_errors.clone(),
        );
        registry.register(
            "edge_hmac_nonce_store_claim_duration_seconds",
            "Time to answer a well-formed claim, Redis included",
            duration.clone(),
        );
        registry.register(
            "edge_hmac_nonce_store_ready",
            "1 when the last readiness probe passed, else 0",
            ready.clone(),
        );
        for r in RESULTS {
            let _ = claims.get_or_create(&[("result", r)]);
        }
        for k in FailureKind::ALL {
            let _ = redis_errors.get_or_create(&[("kind", k.label())]);
        }
        Metrics {
            registry,
            claims,
            redis_errors,
            duration,
            ready,
        }
    }

    /// Counts a claim answered `result` (one of [`RESULTS`]).
    pub fn claim(&self, result: &'static str) {
        self.claims.get_or_create(&[("result", result)]).inc();
    }

    /// Counts a Redis failure.
    pub fn redis_error(&self, kind: FailureKind) {
        self.redis_errors
            .get_or_create(&[("kind", kind.label())])
            .inc();
    }

    /// Records how long a claim took.
    pub fn observe(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// Sets the readiness gauge.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The OpenMetrics text of every metric.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Every series is present from the start, with the names the docs give.
    #[test]
    fn the_series_and_names() {
        let m = Metrics::new();
        m.claim("fresh");
        m.redis_error(FailureKind::Timeout);
        m.observe(0.0003);
        m.set_ready(true);
        let text = m.text();
        for line in [
            "edge_hmac_nonce_store_claims_total{result=\"fresh\"} 1",
            "edge_hmac_nonce_store_claims_total{result=\"invalid\"} 0",
            "edge_hmac_nonce_store_redis_errors_total{kind=\"timeout\"} 1",
            "edge_hmac_nonce_store_redis_errors_total{kind=\"refused_write\"} 0",
            "edge_hmac_nonce_store_claim_duration_seconds_bucket{le=\"0.0005\"} 1",
            "edge_hmac_nonce_store_claim_duration_seconds_count 1",
            "edge_hmac_nonce_store_ready 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
