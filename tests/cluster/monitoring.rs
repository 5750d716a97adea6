//! The monitoring kit (`render monitoring`) against the real kube-apiserver
//! with the Prometheus Operator's CRDs of its pinned release
//! (tests/components/prometheus-operator-crds.sh): the checked-in PodMonitor,
//! PrometheusRule and dashboard ConfigMap, and a rendering with every option
//! set, are accepted; a rule the operator's schema refuses is refused.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use edge_hmac::render::monitoring::CHECKED_IN_KIT;
use edge_hmac_tests::build::workspace;
use edge_hmac_tests::cluster::{Cluster, wait_for};
use edge_hmac_tests::yaml::documents;

use edge_hmac_tests::kit::render_what;

use crate::apiserver::{assert_accepted, dry_run};
use serde_json::Value;

/// Fetches (first time) or finds the CRDs; their directory.
fn crds() -> PathBuf {
    let script = workspace().join("tests/components/prometheus-operator-crds.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--env")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "fetching the Prometheus Operator CRDs failed: run `make components` to see why"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("PROMETHEUS_OPERATOR_CRDS="))
        .map(PathBuf::from)
        .expect("the script printed no PROMETHEUS_OPERATOR_CRDS")
}

/// Installs the PodMonitor and PrometheusRule CRDs and waits until served.
fn install_crds(cluster: &Cluster) {
    let dir = crds();
    for kind in ["podmonitors", "prometheusrules"] {
        let yaml = std::fs::read_to_string(dir.join(format!("monitoring.coreos.com_{kind}.yaml")))
            .unwrap();
        cluster.apply(&yaml);
        let name = format!("crd/{kind}.monitoring.coreos.com");
        let out = cluster.kubectl(&[
            "wait",
            "--for=condition=Established",
            &name,
            "--timeout=60s",
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Discovery catches up with the new kinds.
    wait_for(std::time::Duration::from_secs(30), || {
        cluster
            .kubectl(&["get", "podmonitors,prometheusrules", "-A"])
            .status
            .success()
            .then_some(())
    })
    .expect("the monitoring kinds are served");
}

/// The API server, with the Prometheus Operator's CRDs, accepts the
/// checked-in monitoring kit and one rendered with every option (all
/// objects, strict field validation), and refuses a PrometheusRule whose
/// `for` is not a duration (so the schema really is enforced).
#[test]
fn apiserver_accepts_the_monitoring_kit() {
    let cluster = Cluster::shared();
    install_crds(cluster);
    let checked_in = std::fs::read_to_string(workspace().join(CHECKED_IN_KIT)).unwrap();
    let custom = render_what(
        "monitoring",
        &[
            "--namespace",
            "monitoring",
            "--proxy-namespace",
            "edge-proxies",
            "--label",
            "release=kube-prometheus-stack",
            "--dashboard-label",
            "grafana_dashboard=edge",
            "--runbook-base-url",
            "https://git.example.com/edge-hmac/-/blob/main",
            "--rejection-for",
            "1h30m",
            "--internal-error-for",
            "1m",
        ],
    );
    for (what, yaml) in [("checked-in kit", &checked_in), ("custom kit", &custom)] {
        let docs = documents(yaml);
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            ["PodMonitor", "PrometheusRule", "ConfigMap"],
            "{what}"
        );
        for d in &docs {
            cluster.namespace(d["metadata"]["namespace"].as_str().unwrap());
        }
        assert_accepted(cluster, what, &docs);
    }
    let mut docs = documents(&checked_in);
    docs[1]["spec"]["groups"][0]["rules"][0]["for"] = Value::from("ten minutes");
    let out = dry_run(cluster, &docs[1..2]);
    assert!(!out.status.success(), "a bad `for` was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("for"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
