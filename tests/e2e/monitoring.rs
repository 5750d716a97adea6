//! `edge-hmac render monitoring`: the checked-in renderings, promtool's unit
//! tests of every alert, and a real Prometheus (Debian's 2.42) scraping two
//! real Envoys, one with the proxy-wasm filter and one with the native
//! module, under signed, wrong-key and replayed `edge-hmac load`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_hmac::render::monitoring::{
    CHECKED_IN_DASHBOARD, CHECKED_IN_KIT, CHECKED_IN_RULES, MonitoringOptions, RANGE, RATE_INTERVAL,
};
use edge_hmac_tests::aws::cli;
use edge_hmac_tests::build::workspace;
use edge_hmac_tests::cli::run;
use edge_hmac_tests::client::get;
use edge_hmac_tests::cluster::free_port;
use edge_hmac_tests::kit::render_what;
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::target::Target;
use serde_json::Value;

use crate::load::{dev_proxy_on, load_cmd};
use crate::loader::home;
use crate::render::assert_snapshot;

/// The unit tests of the alerts, without their annotations.
const CASES: &str = "tests/monitoring/alerts.cases.yaml";

/// `promtool` or `prometheus`, installed by `make prometheus`.
fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: run `make prometheus` (Debian's prometheus package)"
    );
    Command::new(name)
}

/// The checked-in kit, rule file and dashboard are what the renderer makes
/// with its defaults, and what the CLI prints with no flags.
#[test]
fn checked_in_monitoring_is_what_the_renderer_makes() {
    let o = MonitoringOptions::default();
    let kit = o.to_yaml("edge-hmac render monitoring").unwrap();
    let rules = o
        .rules_yaml("edge-hmac render monitoring --format rules")
        .unwrap();
    let dashboard = o.dashboard_json().unwrap();
    assert_snapshot(CHECKED_IN_KIT, &kit);
    assert_snapshot(CHECKED_IN_RULES, &rules);
    assert_snapshot(CHECKED_IN_DASHBOARD, &dashboard);
    let h = home();
    for (args, expected) in [
        (&["render", "monitoring"][..], &kit),
        (&["render", "monitoring", "--format", "rules"][..], &rules),
        (
            &["render", "monitoring", "--format", "dashboard"][..],
            &dashboard,
        ),
    ] {
        let out = cli(h.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert_eq!(&String::from_utf8_lossy(&out.stdout), expected, "{args:?}");
    }
}

/// A bad threshold is refused naming its flag, exit 2, nothing printed.
#[test]
fn bad_thresholds_are_refused() {
    let h = home();
    for (flag, value) in [
        ("--rejection-for", "10 minutes"),
        ("--rate-window", "0s"),
        ("--rejection-ratio", "5"),
        ("--label", "release"),
    ] {
        let out = cli(h.path())
            .args(["render", "monitoring", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(out.stdout.is_empty(), "{flag}");
        assert!(
            err.contains(flag) || err.contains("KEY=VALUE"),
            "{flag}: {err}"
        );
    }
}

/// Replaces `{{ $labels.NAME }}` in `text` with the alert's labels.
fn expand(text: &str, labels: &serde_json::Map<String, Value>) -> String {
    let re = regex::Regex::new(r"\{\{ \$labels\.([a-z_]+) \}\}").unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        labels[&c[1]]
            .as_str()
            .unwrap_or_else(|| panic!("no label {} in {labels:?}", &c[1]))
            .to_owned()
    })
    .into_owned()
}

/// `promtool check rules` accepts the checked-in rule file, and `promtool
/// test rules` passes tests/monitoring/alerts.cases.yaml, in which every
/// alert fires in one case and stays silent in another (annotations
/// included, filled in from the rules).
#[test]
fn promtool_tests_every_alert() {
    let rules_path = workspace().join(CHECKED_IN_RULES);
    let out = tool("promtool")
        .args(["check", "rules"])
        .arg(&rules_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules: Value =
        serde_norway::from_str(&std::fs::read_to_string(&rules_path).unwrap()).unwrap();
    let annotations: BTreeMap<String, serde_json::Map<String, Value>> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["annotations"].as_object().unwrap().clone(),
            )
        })
        .collect();
    let mut cases: Value =
        serde_norway::from_str(&std::fs::read_to_string(workspace().join(CASES)).unwrap()).unwrap();
    cases["rule_files"] = serde_json::json!([rules_path.to_str().unwrap()]);
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for test in cases["tests"].as_array_mut().unwrap() {
        for check in test["alert_rule_test"].as_array_mut().unwrap() {
            let alert = check["alertname"].as_str().unwrap().to_owned();
            let expected = check["exp_alerts"].as_array_mut().unwrap();
            if expected.is_empty() {
                silent.insert(alert.clone());
            } else {
                fires.insert(alert.clone());
            }
            for a in expected {
                let labels = a["exp_labels"].as_object().unwrap().clone();
                let filled: serde_json::Map<String, Value> = annotations[&alert]
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(expand(v.as_str().unwrap(), &labels))))
                    .collect();
                a["exp_annotations"] = Value::Object(filled);
            }
        }
    }
    let all: BTreeSet<String> = annotations.keys().cloned().collect();
    assert_eq!(fires, all, "every alert needs a case where it fires");
    assert_eq!(
        silent, all,
        "every alert needs a case where it stays silent"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.test.yaml");
    std::fs::write(&file, serde_norway::to_string(&cases).unwrap()).unwrap();
    let out = tool("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server on loopback, stopped on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` and the rule file `rules`, waits for
    /// `/-/ready`.
    async fn start(config: &str, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("rules.yaml"), rules).unwrap();
        std::fs::write(d.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = d.join("prometheus.log");
        let child = tool("prometheus")
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let p = Prometheus {
            child,
            addr,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if get(p.addr, "/-/ready").await.is_ok_and(|r| r.status == 200) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready: {}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path?params` of the HTTP API; its `data`.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let resp = get(self.addr, &format!("{path}?{query}")).await.unwrap();
        let body: Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// The instant vector `expr` evaluates to now.
    async fn query(&self, expr: &str) -> Vec<Value> {
        self.api("/api/v1/query", &[("query", expr)]).await["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Pending and firing alerts: (name, labels, state).
    async fn alerts(&self) -> Vec<(String, Value, String)> {
        self.api("/api/v1/alerts", &[]).await["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_owned(),
                    a["labels"].clone(),
                    a["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PodMonitor's job (`--namespace edge-test`).
const JOB: &str = "edge-test/edge-hmac";

/// `render monitoring --namespace edge-test ARGS` through the CLI.
fn render(args: &[&str]) -> String {
    let mut all = vec!["--namespace", "edge-test"];
    all.extend_from_slice(args);
    render_what("monitoring", &all)
}

/// The codes EdgeHmacRejectionsHigh is pending or firing for, by state.
fn rejection_alerts(alerts: &[(String, Value, String)]) -> BTreeSet<(String, String)> {
    alerts
        .iter()
        .filter(|(name, ..)| name == "EdgeHmacRejectionsHigh")
        .map(|(_, labels, state)| (labels["code"].as_str().unwrap().to_owned(), state.clone()))
        .collect()
}

/// A real Prometheus scraping two real Envoys, the wasm filter on 1.39 and
/// the native module on 1.40, with the rendered rules (short windows): the
/// filter's metrics have the same labelled names on both hosts; valid load
/// raises no rejection alert; wrong-key and replayed load make
/// EdgeHmacRejectionsHigh fire for invalid_signature and replayed_request
/// and nothing else; no proxy counts as keyless; and every dashboard
/// panel's query returns data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_alerts_on_refusals_and_every_panel_has_data() {
    let h = home();
    let (wasm, wasm_addr) = dev_proxy_on(Target::WASM_1_39, h.path(), &["--require-nonce"]).await;
    let (native, native_addr) =
        dev_proxy_on(Target::NATIVE_1_40, h.path(), &["--require-nonce"]).await;
    let rules = render(&[
        "--format",
        "rules",
        "--scrape-interval",
        "1s",
        "--rate-window",
        "15s",
        "--rejection-for",
        "3s",
        "--rejection-min-rate",
        "1",
        "--no-key-for",
        "2s",
    ]);
    let dashboard: Value = serde_json::from_str(&render(&["--format", "dashboard"])).unwrap();
    // What the PodMonitor gives each target: job <ns>/<name>, namespace, pod.
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yaml]\nscrape_configs:\n- job_name: {JOB}\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: ['{}']\n    labels: {{namespace: edge-proxies, pod: edge-wasm, container: envoy}}\n  - targets: ['{}']\n    labels: {{namespace: edge-proxies, pod: edge-native, container: envoy}}\n",
        wasm.admin(),
        native.admin()
    );
    let prom = Prometheus::start(&config, &rules).await;

    // Valid, signed load through both proxies: no rejection alert at any time.
    let valid = |addr| {
        let mut cmd = load_cmd(
            h.path(),
            addr,
            &["--dev", "--nonce", "--rate", "40", "--duration", "8s"],
        );
        cmd.args(["--output", "json"]);
        tokio::spawn(run(cmd))
    };
    let loads = [valid(wasm_addr), valid(native_addr)];
    while !loads.iter().all(|l| l.is_finished()) {
        let seen = rejection_alerts(&prom.alerts().await);
        assert!(seen.is_empty(), "valid traffic raised {seen:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for l in loads {
        let out = l.await.unwrap();
        assert_eq!(out.code, 0, "{}", out.all());
    }
    // Both proxies' verified requests reached Prometheus under one name.
    let verified = prom
        .query(&format!("edge_hmac_verified{{job=\"{JOB}\"}} > 100"))
        .await;
    let pods: BTreeSet<&str> = verified
        .iter()
        .map(|s| s["metric"]["pod"].as_str().unwrap())
        .collect();
    assert_eq!(
        pods,
        BTreeSet::from(["edge-native", "edge-wasm"]),
        "{verified:?}"
    );
    assert!(rejection_alerts(&prom.alerts().await).is_empty());

    // Wrong-key load on one proxy, replayed load on the other.
    let wrong = h.path().join("wrong.key");
    std::fs::write(&wrong, secret()).unwrap();
    let mut wrong_key = load_cmd(
        h.path(),
        wasm_addr,
        &[
            "--secret-file",
            wrong.to_str().unwrap(),
            "--env",
            "dev",
            "--nonce",
            "--rate",
            "20",
            "--duration",
            "12s",
        ],
    );
    wrong_key.args(["--output", "json"]);
    let mut replayed = load_cmd(
        h.path(),
        native_addr,
        &[
            "--dev",
            "--nonce",
            "--replay",
            "--rate",
            "20",
            "--duration",
            "12s",
        ],
    );
    replayed.args(["--output", "json"]);
    let loads = [tokio::spawn(run(wrong_key)), tokio::spawn(run(replayed))];
    let expected = BTreeSet::from([
        "invalid_signature".to_owned(),
        "replayed_request".to_owned(),
    ]);
    let mut firing = BTreeSet::new();
    let mut pending = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while firing != expected {
        if loads.iter().any(|l| l.is_finished()) && firing.is_empty() && pending.is_empty() {
            let rates = prom
                .query(&format!(
                    "sum by (code) (rate(edge_hmac_rejected{{job=\"{JOB}\"}}[15s]))"
                ))
                .await;
            let [a, b] = loads;
            let (a, b) = (a.await.unwrap(), b.await.unwrap());
            panic!(
                "a load ended before any alert; rates {rates:?}, alerts {:?}\nwrong key: {}\nreplayed: {}",
                prom.alerts().await,
                a.all(),
                b.all()
            );
        }
        for (code, state) in rejection_alerts(&prom.alerts().await) {
            assert!(expected.contains(&code), "an alert for {code}");
            if state == "firing" {
                firing.insert(code);
            } else {
                pending.insert(code);
            }
        }
        assert!(
            Instant::now() < deadline,
            "EdgeHmacRejectionsHigh fired for {firing:?} (pending {pending:?}), not {expected:?}\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let [wrong_out, replay_out] = loads;
    let wrong_out = wrong_out.await.unwrap();
    assert_eq!(
        wrong_out.code,
        4,
        "no request with the wrong key passes: {}",
        wrong_out.all()
    );
    let report: Value = serde_json::from_str(wrong_out.stdout.trim()).unwrap();
    assert!(
        report["errors"]["invalid_signature"].as_u64().unwrap() > 0,
        "{report}"
    );
    let replay_out = replay_out.await.unwrap();
    assert_eq!(replay_out.code, 0, "{}", replay_out.all());
    let report: Value = serde_json::from_str(replay_out.stdout.trim()).unwrap();
    let replays = report["errors"]["replayed_request"].as_u64().unwrap();
    let passed = report["status"]["200"].as_u64().unwrap();
    assert!(
        replays > 0 && replays.abs_diff(passed) <= 2,
        "every copy refused: {report}"
    );

    // Both proxies hold the current key: never "without key", metrics
    // present; and both sides of that rule's `unless` see both proxies, so
    // it could fire.
    for side in [
        format!("max by (namespace, pod) (envoy_server_live{{job=\"{JOB}\"}} == 1)"),
        format!("max by (namespace, pod) (edge_hmac_key{{job=\"{JOB}\",slot=\"current\"}} > 0)"),
    ] {
        assert_eq!(prom.query(&side).await.len(), 2, "{side}");
    }
    let others: Vec<_> = prom
        .alerts()
        .await
        .into_iter()
        .filter(|(name, ..)| name != "EdgeHmacRejectionsHigh")
        .collect();
    assert!(
        !others
            .iter()
            .any(|(n, ..)| n == "EdgeHmacProxyWithoutKey" || n == "EdgeHmacInternalError"),
        "{others:?}"
    );

    // Every dashboard panel's query returns data on this Prometheus.
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace(RATE_INTERVAL, "1m")
                .replace(RANGE, "5m");
            let result = prom.query(&expr).await;
            assert!(
                !result.is_empty(),
                "panel {:?} query {expr} returns no data",
                panel["title"]
            );
            // The series this load made are above zero.
            let title = panel["title"].as_str().unwrap();
            let legend = target["legendFormat"].as_str().unwrap();
            let must_move = matches!(
                (title, legend),
                ("Requests verified and refused", "verified" | "refused")
                    | (
                        "Refused by code" | "Verified by key slot" | "Verified by format",
                        _
                    )
                    | (
                        "Share refused" | "Current keys in use" | "Keys held per proxy",
                        _
                    )
                    | ("Replays and the replay table", "replays refused")
            );
            let max = result
                .iter()
                .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
                .fold(0.0, f64::max);
            assert!(
                !must_move || max > 0.0,
                "panel {title:?} {legend}: {result:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} queries");
    // The keys panel: both proxies, one current key, the same fingerprint.
    let keys = prom
        .query(&format!(
            "max by (pod, slot, fingerprint) (edge_hmac_key{{job=\"{JOB}\"}} > 0)"
        ))
        .await;
    let held: BTreeSet<(&str, &str)> = keys
        .iter()
        .map(|s| {
            (
                s["metric"]["slot"].as_str().unwrap(),
                s["metric"]["fingerprint"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(held.len(), 1, "{keys:?}");
    assert!(held.iter().all(|(slot, _)| *slot == "current"));
    // The rotation panel says "steady".
    let phase = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Rotation phase")
        .unwrap()["targets"][0]["expr"]
        .as_str()
        .unwrap()
        .to_owned();
    let value = prom.query(&phase).await;
    assert_eq!(value[0]["value"][1], "0", "{value:?}");
    wasm.terminate().await;
    native.terminate().await;
}
