//! Monitoring for the edge: the Prometheus Operator `PodMonitor` that
//! scrapes Envoy Gateway's proxies, the `PrometheusRule` with the edge's
//! alerts, and a Grafana dashboard (JSON, also as a ConfigMap for Grafana's
//! dashboard sidecar), all from the Prometheus names the filter's metrics get
//! under the stats tags of every rendered bootstrap
//! ([`edge_hmac_core::metrics::prom`]). docs/monitoring.md explains each
//! alert; its sections are the alerts' `runbook_url`s.

use std::collections::BTreeMap;

use edge_hmac_core::metrics::prom;
use serde::Serialize;

use crate::render::gateway::{Labels, Metadata, Object, ROTATION_SECRET, TARGET_SECRET};

/// Name of the PodMonitor, PrometheusRule and dashboard ConfigMap.
pub const NAME: &str = "edge-hmac";
/// The port Envoy Gateway names its proxies' Prometheus listener (19001).
pub const METRICS_PORT: &str = "metrics";
/// The path of Envoy Gateway's proxy metrics endpoint.
pub const METRICS_PATH: &str = "/stats/prometheus";
/// The dashboard's file name inside its ConfigMap.
pub const DASHBOARD_FILE: &str = "edge-hmac.json";
/// The dashboard's Grafana uid.
pub const DASHBOARD_UID: &str = "edge-hmac";
/// Where the runbooks are, relative to `--runbook-base-url`.
pub const RUNBOOK_PATH: &str = "docs/monitoring.md";
/// The checked-in rendering of the kit.
pub const CHECKED_IN_KIT: &str = "envoy/monitoring/edge-hmac-monitoring.yaml";
/// The checked-in rule file (the PrometheusRule's spec; what promtool tests).
pub const CHECKED_IN_RULES: &str = "envoy/monitoring/edge-hmac-rules.yaml";
/// The checked-in dashboard.
pub const CHECKED_IN_DASHBOARD: &str = "envoy/monitoring/edge-hmac-dashboard.json";
/// The Grafana variable the panel queries use as their rate window.
pub const RATE_INTERVAL: &str = "$__rate_interval";
/// The Grafana variable for the dashboard's time range (totals over it).
pub const RANGE: &str = "$__range";

/// Thresholds and `for:` durations of the alerts (render flags; the
/// defaults are documented in docs/monitoring.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// The window of the `rate()`s and `increase()`s.
    pub rate_window: String,
    /// Share of requests refused with one code above which
    /// `EdgeHmacRejectionsHigh` fires.
    pub rejection_ratio: f64,
    /// …and only when that code is refused at least this often (per second).
    pub rejection_min_rate: f64,
    /// How long the share must stay above the threshold.
    pub rejection_for: String,
    /// How long an internal error keeps `EdgeHmacInternalError` pending.
    pub internal_error_for: String,
    /// How long a full replay table or an unavailable store must last.
    pub replay_for: String,
    /// How long proxies may disagree on the current key (a rollout).
    pub key_mismatch_for: String,
    /// How long a pending key may stay staged.
    pub pending_key_for: String,
    /// The window over which the previous key counts as in use.
    pub previous_key_window: String,
    /// How long after a promotion the previous key may keep verifying.
    pub previous_key_for: String,
    /// How long a proxy may hold no current key.
    pub no_key_for: String,
    /// How long an ExternalSecret may stay not Ready.
    pub external_secret_for: String,
    /// How long the edge's metrics may be absent.
    pub absent_for: String,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            rate_window: "5m".into(),
            rejection_ratio: 0.05,
            rejection_min_rate: 0.1,
            rejection_for: "10m".into(),
            internal_error_for: "0s".into(),
            replay_for: "2m".into(),
            key_mismatch_for: "30m".into(),
            pending_key_for: "1d".into(),
            previous_key_window: "1h".into(),
            previous_key_for: "1d".into(),
            no_key_for: "5m".into(),
            external_secret_for: "15m".into(),
            absent_for: "10m".into(),
        }
    }
}

/// Everything `render monitoring` varies.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitoringOptions {
    /// Namespace of the PodMonitor, PrometheusRule and ConfigMap.
    pub namespace: String,
    /// Namespace of the proxy pods (and of the ExternalSecrets).
    pub proxy_namespace: String,
    /// The Gateway whose proxies are scraped.
    pub gateway_name: String,
    /// Its namespace.
    pub gateway_namespace: String,
    /// Scrape interval.
    pub scrape_interval: String,
    /// Labels of the PodMonitor and PrometheusRule (the Prometheus
    /// Operator's `podMonitorSelector` / `ruleSelector`).
    pub labels: Labels,
    /// Labels of the dashboard ConfigMap (Grafana's sidecar label).
    pub dashboard_labels: Labels,
    /// Prefix of every `runbook_url` (empty: a path relative to this
    /// repository).
    pub runbook_base_url: String,
    /// The alerts' thresholds.
    pub thresholds: Thresholds,
}

impl Default for MonitoringOptions {
    fn default() -> Self {
        Self {
            namespace: "envoy-gateway-system".into(),
            proxy_namespace: "envoy-gateway-system".into(),
            gateway_name: "edge".into(),
            gateway_namespace: "edge".into(),
            scrape_interval: "15s".into(),
            labels: Labels::new(),
            dashboard_labels: [("grafana_dashboard".to_owned(), "1".to_owned())]
                .into_iter()
                .collect(),
            runbook_base_url: String::new(),
            thresholds: Thresholds::default(),
        }
    }
}

/// Why a monitoring option is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MonitoringError {
    /// Not a Prometheus duration.
    #[error(
        "{flag} {value:?} is not a Prometheus duration: use a number and a unit, largest first, e.g. 30s, 5m, 1h30m, 1d (units ms, s, m, h, d, w, y)"
    )]
    Duration {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
    },
    /// A duration that must not be zero.
    #[error("{flag} must be longer than zero")]
    Zero {
        /// The flag.
        flag: &'static str,
    },
    /// A window too short for the scrape interval.
    #[error(
        "{flag} {value} is shorter than two scrape intervals (--scrape-interval {scrape}): rate() needs two samples in its window, so the alerts could never fire; use at least twice, better four times, the scrape interval"
    )]
    Window {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// The scrape interval.
        scrape: String,
    },
    /// A ratio outside (0, 1).
    #[error("--rejection-ratio {0} is not a share: use a number between 0 and 1, e.g. 0.05")]
    Ratio(f64),
    /// A negative or non-finite rate.
    #[error("--rejection-min-rate {0} is not a rate: use requests per second, 0 or more")]
    Rate(f64),
}

/// Checks a Prometheus duration (`model.ParseDuration`'s grammar: one or
/// more `<number><unit>` with units in the order y, w, d, h, m, s, ms).
/// Hand-written: the grammar is eight units, and no crate parses exactly
/// Prometheus's form (humantime accepts `1hour`, which Prometheus refuses).
pub fn check_duration(flag: &'static str, value: &str) -> Result<u64, MonitoringError> {
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1_000),
        ("", 0),
    ];
    // Prometheus's order of units, largest first.
    const ORDER: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let bad = || MonitoringError::Duration {
        flag,
        value: value.to_owned(),
    };
    if value == "0" {
        return Ok(0);
    }
    let mut rest = value;
    let mut last: Option<usize> = None;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 15 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, ms) = UNITS
            .iter()
            .find(|(u, _)| !u.is_empty() && rest.starts_with(u))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        let at = ORDER.iter().position(|u| u == unit).ok_or_else(bad)?;
        if last.is_some_and(|l| at <= l) {
            return Err(bad());
        }
        last = Some(at);
        total = n
            .checked_mul(*ms)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
    }
    // Prometheus keeps durations in int64 nanoseconds (~292 years).
    if total > i64::MAX as u64 / 1_000_000 {
        return Err(bad());
    }
    Ok(total)
}

impl MonitoringOptions {
    /// Refuses a threshold Prometheus would refuse, or one that can never
    /// fire.
    pub fn validate(&self) -> Result<(), MonitoringError> {
        let t = &self.thresholds;
        for (flag, value, may_be_zero) in [
            ("--scrape-interval", &self.scrape_interval, false),
            ("--rate-window", &t.rate_window, false),
            ("--rejection-for", &t.rejection_for, true),
            ("--internal-error-for", &t.internal_error_for, true),
            ("--replay-for", &t.replay_for, true),
            ("--key-mismatch-for", &t.key_mismatch_for, true),
            ("--pending-key-for", &t.pending_key_for, true),
            ("--previous-key-window", &t.previous_key_window, false),
            ("--previous-key-for", &t.previous_key_for, true),
            ("--no-key-for", &t.no_key_for, true),
            ("--external-secret-for", &t.external_secret_for, true),
            ("--absent-for", &t.absent_for, true),
        ] {
            if check_duration(flag, value)? == 0 && !may_be_zero {
                return Err(MonitoringError::Zero { flag });
            }
        }
        // rate() and increase() need two samples in their window: a window
        // under two scrape intervals leaves the alerts nothing to fire on.
        let scrape = check_duration("--scrape-interval", &self.scrape_interval)?;
        for (flag, value) in [
            ("--rate-window", &t.rate_window),
            ("--previous-key-window", &t.previous_key_window),
        ] {
            if check_duration(flag, value)? < 2 * scrape {
                return Err(MonitoringError::Window {
                    flag,
                    value: value.clone(),
                    scrape: self.scrape_interval.clone(),
                });
            }
        }
        if !(t.rejection_ratio > 0.0 && t.rejection_ratio < 1.0) {
            return Err(MonitoringError::Ratio(t.rejection_ratio));
        }
        if !(t.rejection_min_rate.is_finite() && t.rejection_min_rate >= 0.0) {
            return Err(MonitoringError::Rate(t.rejection_min_rate));
        }
        Ok(())
    }

    /// The `job` label the Prometheus Operator gives the PodMonitor's
    /// targets (`<namespace>/<name>`); every query selects it, so other
    /// Envoys in the same Prometheus never count.
    pub fn job(&self) -> String {
        format!("{}/{NAME}", self.namespace)
    }

    /// `{job="…"}` plus `extra` matchers.
    fn sel(&self, extra: &str) -> String {
        if extra.is_empty() {
            format!("{{job=\"{}\"}}", self.job())
        } else {
            format!("{{job=\"{}\",{extra}}}", self.job())
        }
    }

    fn runbook(&self, alert: &str) -> String {
        let base = self.runbook_base_url.trim_end_matches('/');
        let anchor = alert.to_ascii_lowercase();
        if base.is_empty() {
            format!("{RUNBOOK_PATH}#{anchor}")
        } else {
            format!("{base}/{RUNBOOK_PATH}#{anchor}")
        }
    }

    /// The PodMonitor: Envoy Gateway's proxies of this Gateway, port
    /// `metrics` (19001), `/stats/prometheus`.
    pub fn pod_monitor(&self) -> Object<PodMonitorSpec> {
        let mut metadata = Metadata::namespaced(NAME, &self.namespace);
        metadata.labels.extend(self.labels.clone());
        // Envoy Gateway's labels on every proxy pod of one Gateway
        // (internal/infrastructure/kubernetes/proxy/resource.go
        // EnvoyAppLabel, internal/gatewayapi OwningGateway*Label).
        let selector: Labels = [
            ("app.kubernetes.io/name", "envoy"),
            ("app.kubernetes.io/component", "proxy"),
            ("app.kubernetes.io/managed-by", "envoy-gateway"),
            (
                "gateway.envoyproxy.io/owning-gateway-name",
                &self.gateway_name,
            ),
            (
                "gateway.envoyproxy.io/owning-gateway-namespace",
                &self.gateway_namespace,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Object {
            api_version: "monitoring.coreos.com/v1",
            kind: "PodMonitor",
            metadata,
            spec: Some(PodMonitorSpec {
                selector: MatchLabels {
                    match_labels: selector,
                },
                namespace_selector: NamespaceSelector {
                    match_names: vec![self.proxy_namespace.clone()],
                },
                pod_metrics_endpoints: vec![PodMetricsEndpoint {
                    port: METRICS_PORT,
                    path: METRICS_PATH,
                    interval: self.scrape_interval.clone(),
                }],
            }),
        }
    }

    /// The alerts, as one rule group.
    pub fn rules(&self) -> RulesSpec {
        let t = &self.thresholds;
        let w = &t.rate_window;
        let all = self.sel("");
        let rejected = format!("{}{all}", prom::REJECTED);
        let verified = format!("{}{all}", prom::VERIFIED);
        let key = |slot: &str| format!("{}{}", prom::KEY, self.sel(&format!("slot=\"{slot}\"")));
        let es_names = format!("{TARGET_SECRET}|{ROTATION_SECRET}");
        let rules = vec![
            Rule::alert(
                "EdgeHmacRejectionsHigh",
                format!(
                    "(\n  sum by (code) (rate({rejected}[{w}]))\n  / scalar(sum(rate({verified}[{w}])) + sum(rate({rejected}[{w}])))\n) > {ratio}\nand\nsum by (code) (rate({rejected}[{w}])) > {min}",
                    ratio = t.rejection_ratio,
                    min = t.rejection_min_rate,
                ),
                &t.rejection_for,
                "warning",
                "Requests at the edge are refused with {{ $labels.code }} above the threshold",
                "Over the last {w}, more than {pct} of the requests the edge filter judged were refused with code {{ $labels.code }}. invalid_signature: a client signs with a key the proxies do not hold (a retired key, the wrong environment) or an attack; stale_timestamp: client clocks; replayed_request: retries that reuse a nonce, or replays. Find the client from the access log and the code's row in docs/monitoring.md.",
                self.runbook("EdgeHmacRejectionsHigh"),
            )
            .with_values(t.rejection_ratio, w),
            Rule::alert(
                "EdgeHmacInternalError",
                format!(
                    "sum by (namespace, pod) (increase({}{all}[{w}])) > 0",
                    prom::INTERNAL_ERROR
                ),
                &t.internal_error_for,
                "critical",
                "The edge filter on {{ $labels.pod }} failed to read its input",
                "The filter answered 500 internal_error: Envoy did not give it a header, a body or a property it needs. It failed closed (the request was refused). Collect the proxy's log at debug level and the Envoy version, then file a bug.",
                self.runbook("EdgeHmacInternalError"),
            ),
            Rule::alert(
                "EdgeHmacReplayTableFull",
                format!(
                    "sum by (namespace, pod) (increase({}{all}[{w}])) > 0",
                    prom::NONCE_CACHE_FULL
                ),
                &t.replay_for,
                "warning",
                "The replay table on {{ $labels.pod }} is full: requests with fresh nonces are refused",
                "Requests carrying fresh nonces are refused 503 replay_cache_unavailable (\"replay cache is full for this nonce\") because one bucket of the proxy's replay table is full: more nonces arrive within the timestamp window than nonce_cache_max_entries allows (a flood, or growth). Raise nonce_cache_max_entries, shorten nonce_ttl_seconds, or add replicas.",
                self.runbook("EdgeHmacReplayTableFull"),
            ),
            Rule::alert(
                "EdgeHmacNonceStoreUnavailable",
                format!(
                    "sum by (namespace, pod) (increase({}{all}[{w}])) > 0",
                    prom::NONCE_STORE_UNAVAILABLE
                ),
                &t.replay_for,
                "critical",
                "The shared nonce store does not answer {{ $labels.pod }}",
                "Claims to edge-hmac nonce-store failed (timeout, 503 from the store, no connection). Requests with fresh nonces are refused 503 replay_cache_unavailable (or fall back to the local table with on_unavailable: local). Check the store's /readyz and Redis.",
                self.runbook("EdgeHmacNonceStoreUnavailable"),
            ),
            Rule::alert(
                "EdgeHmacCurrentKeyMismatch",
                format!(
                    "count by (namespace) (count by (namespace, fingerprint) ({} > 0)) > 1",
                    key("current")
                ),
                &t.key_mismatch_for,
                "warning",
                "Proxies in {{ $labels.namespace }} disagree on the current key",
                "Some proxies verify with one current key and others with another for longer than a rollout: a rotation stuck half-way (the ExternalSecret not force-synced, or the proxies not restarted). Clients signing with the new key are refused by the old proxies. Finish the step of docs/rotation.md you are at.",
                self.runbook("EdgeHmacCurrentKeyMismatch"),
            ),
            Rule::alert(
                "EdgeHmacPendingKeyStaged",
                format!(
                    "count by (namespace, fingerprint) ({} > 0) > 0",
                    key("pending")
                ),
                &t.pending_key_for,
                "info",
                "A pending key ({{ $labels.fingerprint }}) has been staged for a long time",
                "A rotation began (edge-hmac rotate begin) and was neither promoted nor cancelled. Promote it once clients sign with it, or cancel it (docs/rotation.md).",
                self.runbook("EdgeHmacPendingKeyStaged"),
            ),
            Rule::alert(
                "EdgeHmacPreviousKeyInUse",
                format!(
                    "sum by (namespace) (increase({}{}[{pw}])) > 0",
                    prom::VERIFIED_KEY,
                    self.sel("slot=\"previous\""),
                    pw = t.previous_key_window
                ),
                &t.previous_key_for,
                "warning",
                "Requests in {{ $labels.namespace }} still verify with the previous key long after a promotion",
                "A client team still signs with the key that was current before the last promotion. Find it (access log, client ids) and move it to the current key before you retire the previous one, or it will be refused.",
                self.runbook("EdgeHmacPreviousKeyInUse"),
            ),
            Rule::alert(
                "EdgeHmacProxyWithoutKey",
                format!(
                    "max by (namespace, pod) (envoy_server_live{all} == 1)\nunless on (namespace, pod)\nmax by (namespace, pod) ({} > 0)",
                    key("current")
                ),
                &t.no_key_for,
                "critical",
                "Proxy {{ $labels.pod }} runs without the edge filter's key",
                "The proxy is live but reports no current key: the filter is not loaded (its configuration was refused, the EnvoyExtensionPolicy or dynamic module is missing) and every request through it is refused, or it is not protected at all. Check the proxy's log for edge-hmac and the EnvoyExtensionPolicy's status.",
                self.runbook("EdgeHmacProxyWithoutKey"),
            ),
            Rule::alert(
                "EdgeHmacExternalSecretNotReady",
                // ESO's own `namespace` label is the ExternalSecret's; a
                // scrape without honorLabels (ESO's chart's default) renames
                // it `exported_namespace` and sets `namespace` to ESO's.
                format!(
                    "max by (namespace, name) (\n  label_replace(externalsecret_status_condition{{exported_namespace=\"{ns}\",{es}}}, \"namespace\", \"$1\", \"exported_namespace\", \"(.+)\")\n  or\n  externalsecret_status_condition{{namespace=\"{ns}\",exported_namespace=\"\",{es}}}\n) == 1",
                    ns = self.proxy_namespace,
                    es = format!("name=~\"{es_names}\",condition=\"Ready\",status=\"False\""),
                ),
                &t.external_secret_for,
                "warning",
                "ExternalSecret {{ $labels.namespace }}/{{ $labels.name }} is not Ready",
                "External Secrets Operator cannot sync the edge's key from Secrets Manager (deleted secret, credentials, network). Running proxies keep the last synced Secret, but a rotation cannot reach them. kubectl describe externalsecret shows why.",
                self.runbook("EdgeHmacExternalSecretNotReady"),
            ),
            Rule::alert(
                "EdgeHmacMetricsAbsent",
                format!("absent({verified})"),
                &t.absent_for,
                "critical",
                "No edge proxy reports the signature filter's metrics",
                "Prometheus scrapes no proxy that runs the edge filter: the PodMonitor selects nothing, the proxies are down, or the filter is not loaded anywhere (then requests pass unchecked or are all refused).",
                self.runbook("EdgeHmacMetricsAbsent"),
            ),
        ];
        RulesSpec {
            groups: vec![RuleGroup {
                name: "edge-hmac".into(),
                rules,
            }],
        }
    }

    /// The PrometheusRule.
    pub fn prometheus_rule(&self) -> Object<RulesSpec> {
        let mut metadata = Metadata::namespaced(NAME, &self.namespace);
        metadata.labels.extend(self.labels.clone());
        Object {
            api_version: "monitoring.coreos.com/v1",
            kind: "PrometheusRule",
            metadata,
            spec: Some(self.rules()),
        }
    }

    /// The Grafana dashboard.
    pub fn dashboard(&self) -> Dashboard {
        let all = self.sel("");
        let r = RATE_INTERVAL;
        let rate = |name: &str, sel: &str| format!("rate({name}{sel}[{r}])");
        let key = |slot: &str| format!("{}{}", prom::KEY, self.sel(&format!("slot=\"{slot}\"")));
        let mut b = PanelBuilder::default();
        b.row("Requests");
        b.panel(
            "timeseries",
            "Requests verified and refused",
            "Requests per second the filter verified, refused, or let through unsigned (exempt paths, CORS preflights).",
            "reqps",
            12,
            vec![
                (format!("sum({})", rate(prom::VERIFIED, &all)), "verified"),
                (format!("sum({})", rate(prom::REJECTED, &all)), "refused"),
                (format!("sum({})", rate(prom::EXEMPT, &all)), "exempt"),
                (format!("sum({})", rate(prom::CORS_PREFLIGHT, &all)), "CORS preflight"),
            ],
        );
        b.panel(
            "timeseries",
            "Refused by code",
            "Refusals per second by outcome code (docs/signature-v1.md §4).",
            "reqps",
            12,
            vec![(
                format!("sum by (code) ({})", rate(prom::REJECTED, &all)),
                "{{code}}",
            )],
        );
        b.panel(
            "stat",
            "Share refused",
            "Refused / (verified + refused) across every proxy.",
            "percentunit",
            6,
            vec![(
                format!(
                    "sum({rej}) / (sum({ver}) + sum({rej}))",
                    rej = rate(prom::REJECTED, &all),
                    ver = rate(prom::VERIFIED, &all)
                ),
                "refused",
            )],
        );
        b.panel(
            "timeseries",
            "Verified by key slot",
            "Which key verified requests: current, previous (clients not yet moved after a promotion) or pending (clients already on the next key).",
            "reqps",
            9,
            vec![(format!("sum by (slot) ({})", rate(prom::VERIFIED_KEY, &all)), "{{slot}}")],
        );
        b.panel(
            "timeseries",
            "Verified by format",
            "Verified requests per wire format: v1 (CRAWBL-HMAC-SHA256-V1) or rfc9421.",
            "reqps",
            9,
            vec![(
                format!("sum by (format) ({})", rate(prom::VERIFIED_FORMAT, &all)),
                "{{format}}",
            )],
        );
        b.row("Keys and rotation");
        b.rotation_panel(vec![(
            format!(
                "(count(count by (fingerprint) ({cur} > 0)) > 1) * 0 + 3\nor (count({pend} > 0) > 0) * 0 + 1\nor (count({prev} > 0) > 0) * 0 + 2\nor vector(0)",
                cur = key("current"),
                pend = key("pending"),
                prev = key("previous"),
            ),
            "phase",
        )]);
        b.panel(
            "stat",
            "Current keys in use",
            "Distinct current-key fingerprints across the proxies: 1 when steady; 2 during a rollout; longer than that is a rotation stuck half-way.",
            "none",
            6,
            vec![(
                format!("count(count by (fingerprint) ({} > 0))", key("current")),
                "fingerprints",
            )],
        );
        b.panel(
            "table",
            "Keys held per proxy",
            "Every key each proxy holds, by slot and fingerprint (the fingerprint is the first 4 bytes of SHA-256 of the key, as edge-hmac prints it).",
            "none",
            12,
            vec![(
                format!("max by (pod, slot, fingerprint) ({}{all} > 0)", prom::KEY),
                "{{pod}} {{slot}} {{fingerprint}}",
            )],
        );
        b.row("Replay protection");
        b.panel(
            "timeseries",
            "Replays and the replay table",
            "Replays refused (local table or shared store) and nonces refused because the replay table was full.",
            "reqps",
            12,
            vec![
                (
                    format!(
                        "sum({})",
                        rate(prom::REJECTED, &self.sel("code=\"replayed_request\""))
                    ),
                    "replays refused",
                ),
                (format!("sum({})", rate(prom::NONCE_CACHE_FULL, &all)), "table full"),
            ],
        );
        b.panel(
            "timeseries",
            "Shared nonce store",
            "Claims sent to edge-hmac nonce-store, replays it caught, claims it did not answer, and nonces kept only locally (on_unavailable: local). All zero without a store.",
            "reqps",
            12,
            vec![
                (format!("sum({})", rate(prom::NONCE_STORE_CLAIMS, &all)), "claims"),
                (format!("sum({})", rate(prom::NONCE_STORE_REPLAYED, &all)), "replayed"),
                (format!("sum({})", rate(prom::NONCE_STORE_UNAVAILABLE, &all)), "unavailable"),
                (format!("sum({})", rate(prom::NONCE_STORE_FALLBACK, &all)), "local fallback"),
            ],
        );
        b.panel(
            "stat",
            "Internal errors",
            "Requests the filter refused in the dashboard's time range because Envoy did not give it its input (should stay 0).",
            "none",
            6,
            vec![(
                format!("sum(increase({}{all}[{RANGE}]))", prom::INTERNAL_ERROR),
                "internal errors",
            )],
        );
        Dashboard {
            title: "Edge HMAC signatures".into(),
            uid: DASHBOARD_UID.into(),
            tags: vec!["edge-hmac".into(), "envoy-gateway".into()],
            schema_version: 39,
            time: TimeRange {
                from: "now-6h".into(),
                to: "now".into(),
            },
            refresh: "30s".into(),
            templating: Templating {
                list: vec![Variable {
                    name: "datasource".into(),
                    label: "Prometheus".into(),
                    kind: "datasource".into(),
                    query: "prometheus".into(),
                }],
            },
            panels: b.panels,
        }
    }

    /// The dashboard as the JSON Grafana imports.
    pub fn dashboard_json(&self) -> Result<String, serde_json::Error> {
        let mut s = serde_json::to_string_pretty(&self.dashboard())?;
        s.push('\n');
        Ok(s)
    }

    /// The dashboard ConfigMap (for Grafana's dashboard sidecar).
    pub fn dashboard_config_map(&self) -> Result<ConfigMap, serde_json::Error> {
        let mut metadata = Metadata::namespaced(&format!("{NAME}-dashboard"), &self.namespace);
        metadata.labels.extend(self.dashboard_labels.clone());
        Ok(ConfigMap {
            api_version: "v1",
            kind: "ConfigMap",
            metadata,
            data: [(DASHBOARD_FILE.to_owned(), self.dashboard_json()?)]
                .into_iter()
                .collect(),
        })
    }

    /// The rule file (`groups:`), what plain Prometheus and promtool load.
    pub fn rules_yaml(&self, command: &str) -> Result<String, serde_norway::Error> {
        Ok(format!(
            "# The edge-hmac alerts as a Prometheus rule file (the PrometheusRule's spec).\n# Rendered by: {command}\n# Do not edit by hand; re-render (see docs/monitoring.md).\n{}",
            serde_norway::to_string(&self.rules())?
        ))
    }

    /// The kit: PodMonitor, PrometheusRule and dashboard ConfigMap.
    pub fn to_yaml(&self, command: &str) -> Result<String, crate::error::Error> {
        let yaml =
            |e: serde_norway::Error| crate::error::Error::Other(format!("cannot render YAML: {e}"));
        let mut out = format!(
            "# Monitoring for the edge-hmac filter: a PodMonitor for Envoy Gateway's proxies of\n\
             # Gateway {gns}/{gw} ({pns}, port {METRICS_PORT}, {METRICS_PATH}), the alerts\n\
             # (PrometheusRule) and a Grafana dashboard (ConfigMap for the dashboard sidecar).\n\
             # Needs the Prometheus Operator's CRDs, and the labels of the filter's metrics that\n\
             # `render gateway` puts into the EnvoyProxy (stats tags). Rendered by: {command}\n\
             # Do not edit by hand; re-render (see docs/monitoring.md).\n",
            gns = self.gateway_namespace,
            gw = self.gateway_name,
            pns = self.proxy_namespace,
        );
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&self.pod_monitor()).map_err(yaml)?);
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&self.prometheus_rule()).map_err(yaml)?);
        out.push_str("---\n");
        let cm = self
            .dashboard_config_map()
            .map_err(|e| crate::error::Error::Other(format!("cannot render JSON: {e}")))?;
        out.push_str(&serde_norway::to_string(&cm).map_err(yaml)?);
        Ok(out)
    }
}

/// `PodMonitor.spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// The proxy pods.
    pub selector: MatchLabels,
    /// Their namespace.
    pub namespace_selector: NamespaceSelector,
    /// The metrics endpoint.
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

/// A selector by labels.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchLabels {
    /// Labels.
    pub match_labels: Labels,
}

/// `namespaceSelector`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Namespaces.
    pub match_names: Vec<String>,
}

/// `podMetricsEndpoints[]`.
#[derive(Debug, Clone, Serialize)]
pub struct PodMetricsEndpoint {
    /// Port name.
    pub port: &'static str,
    /// Path.
    pub path: &'static str,
    /// Scrape interval.
    pub interval: String,
}

/// A rule file / `PrometheusRule.spec`.
#[derive(Debug, Clone, Serialize)]
pub struct RulesSpec {
    /// Rule groups.
    pub groups: Vec<RuleGroup>,
}

/// One rule group.
#[derive(Debug, Clone, Serialize)]
pub struct RuleGroup {
    /// Its name.
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// One alerting rule.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Alert name.
    pub alert: String,
    /// PromQL.
    pub expr: String,
    /// How long it must hold before it fires (absent: at once).
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// `severity`.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook_url`.
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    fn alert(
        name: &str,
        expr: String,
        for_: &str,
        severity: &str,
        summary: &str,
        description: &str,
        runbook_url: String,
    ) -> Self {
        let zero = matches!(check_duration("for", for_), Ok(0));
        Self {
            alert: name.into(),
            expr,
            for_: (!zero).then(|| for_.to_owned()),
            labels: [("severity".to_owned(), severity.to_owned())]
                .into_iter()
                .collect(),
            annotations: [
                ("summary".to_owned(), summary.to_owned()),
                ("description".to_owned(), description.to_owned()),
                ("runbook_url".to_owned(), runbook_url),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// Puts the threshold, as a percentage, and the window into the
    /// description.
    fn with_values(mut self, ratio: f64, window: &str) -> Self {
        if let Some(d) = self.annotations.get_mut("description") {
            *d = d
                .replace("{pct}", &format!("{}%", (ratio * 10_000.0).round() / 100.0))
                .replace("{w}", window);
        }
        self
    }
}

/// A ConfigMap.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// `v1`.
    pub api_version: &'static str,
    /// `ConfigMap`.
    pub kind: &'static str,
    /// Metadata.
    pub metadata: Metadata,
    /// Files.
    pub data: BTreeMap<String, String>,
}

/// A Grafana dashboard (the fields this one uses).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// Title.
    pub title: String,
    /// Stable uid (links survive re-imports).
    pub uid: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Grafana's dashboard schema version.
    pub schema_version: u32,
    /// Default time range.
    pub time: TimeRange,
    /// Refresh interval.
    pub refresh: String,
    /// Variables.
    pub templating: Templating,
    /// Panels and rows.
    pub panels: Vec<Panel>,
}

/// `time`.
#[derive(Debug, Clone, Serialize)]
pub struct TimeRange {
    /// From.
    pub from: String,
    /// To.
    pub to: String,
}

/// `templating`.
#[derive(Debug, Clone, Serialize)]
pub struct Templating {
    /// Variables.
    pub list: Vec<Variable>,
}

/// A dashboard variable (the Prometheus data source).
#[derive(Debug, Clone, Serialize)]
pub struct Variable {
    /// `datasource`.
    pub name: String,
    /// Its label.
    pub label: String,
    /// `datasource`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `prometheus`.
    pub query: String,
}

/// A panel or a row.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    /// Unique id.
    pub id: u32,
    /// `timeseries`, `stat`, `table` or `row`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Title.
    pub title: String,
    /// What it shows.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Position.
    pub grid_pos: GridPos,
    /// `${datasource}` (absent on rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DataSource>,
    /// Queries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    /// Unit and value names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_config: Option<FieldConfig>,
}

/// `gridPos`.
#[derive(Debug, Clone, Serialize)]
pub struct GridPos {
    /// Height.
    pub h: u32,
    /// Width (of 24).
    pub w: u32,
    /// Column.
    pub x: u32,
    /// Row.
    pub y: u32,
}

/// A data source reference.
#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    /// `prometheus`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `${datasource}`.
    pub uid: &'static str,
}

const DATASOURCE: DataSource = DataSource {
    kind: "prometheus",
    uid: "${datasource}",
};

/// One query.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `A`, `B`, …
    pub ref_id: String,
    /// PromQL (Grafana's `$__rate_interval` as the rate window).
    pub expr: String,
    /// Series name.
    pub legend_format: String,
    /// `${datasource}`.
    pub datasource: DataSource,
    /// Only the latest value (tables).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub instant: bool,
    /// `table` for table panels (one row per series).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
}

/// `fieldConfig`.
#[derive(Debug, Clone, Serialize)]
pub struct FieldConfig {
    /// Defaults of every field.
    pub defaults: FieldDefaults,
}

/// `fieldConfig.defaults`.
#[derive(Debug, Clone, Serialize)]
pub struct FieldDefaults {
    /// Grafana unit.
    pub unit: &'static str,
    /// Value names (the rotation phase).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mappings: Vec<ValueMapping>,
}

/// A `value` mapping.
#[derive(Debug, Clone, Serialize)]
pub struct ValueMapping {
    /// `value`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Value → text.
    pub options: BTreeMap<String, MappedText>,
}

/// The text of one mapped value.
#[derive(Debug, Clone, Serialize)]
pub struct MappedText {
    /// Text shown.
    pub text: String,
    /// Order.
    pub index: u32,
}

/// The rotation phases the rotation panel names (its query's values).
pub const ROTATION_PHASES: [(u32, &str); 4] = [
    (0, "steady: one key"),
    (1, "pending key staged (rotate begin)"),
    (2, "promoted: previous key still accepted"),
    (3, "proxies disagree on the current key"),
];

/// Lays panels out left to right, wrapping at 24 columns.
#[derive(Default)]
struct PanelBuilder {
    panels: Vec<Panel>,
    x: u32,
    y: u32,
}

impl PanelBuilder {
    const H: u32 = 8;

    fn next_id(&self) -> u32 {
        u32::try_from(self.panels.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    fn place(&mut self, w: u32, h: u32) -> GridPos {
        if self.x + w > 24 {
            self.x = 0;
            self.y += Self::H;
        }
        let pos = GridPos {
            h,
            w,
            x: self.x,
            y: self.y,
        };
        self.x += w;
        pos
    }

    fn row(&mut self, title: &str) {
        if self.x > 0 {
            self.x = 0;
            self.y += Self::H;
        }
        let id = self.next_id();
        self.panels.push(Panel {
            id,
            kind: "row",
            title: title.into(),
            description: String::new(),
            grid_pos: GridPos {
                h: 1,
                w: 24,
                x: 0,
                y: self.y,
            },
            datasource: None,
            targets: Vec::new(),
            field_config: None,
        });
        self.y += 1;
    }

    fn targets(kind: &str, queries: Vec<(String, &str)>) -> Vec<Target> {
        let table = kind == "table";
        queries
            .into_iter()
            .zip('A'..='Z')
            .map(|((expr, legend), id)| Target {
                ref_id: id.to_string(),
                expr,
                legend_format: legend.to_owned(),
                datasource: DATASOURCE,
                instant: table,
                format: table.then_some("table"),
            })
            .collect()
    }

    fn panel(
        &mut self,
        kind: &'static str,
        title: &str,
        description: &str,
        unit: &'static str,
        w: u32,
        queries: Vec<(String, &str)>,
    ) {
        let id = self.next_id();
        let grid_pos = self.place(w, Self::H);
        self.panels.push(Panel {
            id,
            kind,
            title: title.into(),
            description: description.into(),
            grid_pos,
            datasource: Some(DATASOURCE),
            targets: Self::targets(kind, queries),
            field_config: Some(FieldConfig {
                defaults: FieldDefaults {
                    unit,
                    mappings: Vec::new(),
                },
            }),
        });
    }

    fn rotation_panel(&mut self, queries: Vec<(String, &str)>) {
        self.panel(
            "stat",
            "Rotation phase",
            "Where a key rotation stands, from the keys the proxies hold (docs/rotation.md): steady, pending key staged, promoted with the previous key still accepted, or proxies disagreeing on the current key (a rollout, or a rotation stuck half-way).",
            "none",
            6,
            queries,
        );
        if let Some(p) = self.panels.last_mut() {
            p.field_config = Some(FieldConfig {
                defaults: FieldDefaults {
                    unit: "none",
                    mappings: vec![ValueMapping {
                        kind: "value",
                        options: ROTATION_PHASES
                            .iter()
                            .map(|(v, text)| {
                                (
                                    v.to_string(),
                                    MappedText {
                                        text: (*text).to_owned(),
                                        index: *v,
                                    },
                                )
                            })
                            .collect(),
                    }],
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus durations are checked as Prometheus parses them.
    #[test]
    fn durations() {
        for ok in ["5m", "1h30m", "1d", "0s", "0", "500ms", "1w2d", "30s"] {
            assert!(check_duration("--x", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "5",
            "m",
            "1hour",
            "30m1h",
            "1.5h",
            "-1m",
            "5 m",
            "1m1m",
            "300y",
            "99999999999999y",
        ] {
            assert!(check_duration("--x", bad).is_err(), "{bad}");
        }
        assert_eq!(check_duration("--x", "1h30m"), Ok(5_400_000));
    }

    /// Bad thresholds are refused with the flag's name; defaults pass.
    #[test]
    fn thresholds_are_validated() {
        assert_eq!(MonitoringOptions::default().validate(), Ok(()));
        let mut o = MonitoringOptions::default();
        o.thresholds.rate_window = "0s".into();
        assert_eq!(
            o.validate(),
            Err(MonitoringError::Zero {
                flag: "--rate-window"
            })
        );
        let mut o = MonitoringOptions::default();
        o.thresholds.rate_window = "20s".into();
        assert!(matches!(o.validate(), Err(MonitoringError::Window { .. })));
        o.thresholds.rate_window = "30s".into();
        assert_eq!(o.validate(), Ok(()));
        let mut o = MonitoringOptions::default();
        o.thresholds.rejection_ratio = 1.5;
        assert!(o.validate().unwrap_err().to_string().contains("0.05"));
        let mut o = MonitoringOptions::default();
        o.thresholds.rejection_for = "ten minutes".into();
        assert!(
            o.validate()
                .unwrap_err()
                .to_string()
                .starts_with("--rejection-for")
        );
    }

    /// Every alert has a summary, a description, a runbook link into
    /// docs/monitoring.md and a severity; a zero `for` is left out.
    #[test]
    fn alerts_are_annotated() {
        let o = MonitoringOptions {
            runbook_base_url: "https://docs.example.com/edge-hmac/".into(),
            ..MonitoringOptions::default()
        };
        let rules = o.rules();
        let rules = &rules.groups[0].rules;
        assert_eq!(rules.len(), 10);
        for r in rules {
            for k in ["summary", "description", "runbook_url"] {
                assert!(!r.annotations[k].is_empty(), "{} {k}", r.alert);
            }
            assert_eq!(
                r.annotations["runbook_url"],
                format!(
                    "https://docs.example.com/edge-hmac/docs/monitoring.md#{}",
                    r.alert.to_ascii_lowercase()
                )
            );
            assert!(!r.annotations["description"].contains("{pct}"));
            assert!(!r.annotations["description"].contains("{w}"));
            // Annotations name labels only (promtool tests match them exactly).
            assert!(!r.annotations["summary"].contains("$value"), "{}", r.alert);
        }
        let internal = rules
            .iter()
            .find(|r| r.alert == "EdgeHmacInternalError")
            .unwrap();
        assert_eq!(internal.for_, None);
        let mut o = MonitoringOptions::default();
        o.thresholds.rejection_ratio = 0.07;
        let rules = o.rules();
        assert!(rules.groups[0].rules[0].annotations["description"].contains("more than 7% of"));
    }

    /// Every dashboard query selects the PodMonitor's job and uses Grafana's
    /// rate window; panel ids are unique and panels fit the 24-column grid.
    #[test]
    fn dashboard_queries_and_layout() {
        let o = MonitoringOptions::default();
        let d = o.dashboard();
        let mut ids = std::collections::HashSet::new();
        for p in &d.panels {
            assert!(ids.insert(p.id));
            assert!(p.grid_pos.x + p.grid_pos.w <= 24, "{}", p.title);
            for t in &p.targets {
                assert!(
                    t.expr.contains("job=\"envoy-gateway-system/edge-hmac\""),
                    "{}",
                    t.expr
                );
            }
        }
        assert!(d.panels.iter().any(|p| p.title == "Rotation phase"));
    }
}
