//! The real External Secrets Operator controller (v0.20.4, built by
//! `tests/components/build.sh`) against the shared [`Cluster`] and moto's
//! Secrets Manager, plus helpers to put the kit's ESO resources into the
//! cluster and read what ESO wrote.
//!
//! Test-only wiring (not part of the kit): ESO runs as a local process with
//! the admin kubeconfig, and `AWS_SECRETSMANAGER_ENDPOINT` points its AWS
//! provider at moto (ESO honours it: pkg/provider/aws/secretsmanager/resolver.go).
//! Credentials are the fake ones in the bootstrap Secret.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::aws::{self, Moto};
use crate::cluster::{Cluster, Service, components, free_port, wait_for};

/// The running ESO controller.
pub struct Eso {
    /// Its process (log included).
    pub service: Service,
    /// Its Prometheus metrics endpoint (`/metrics`).
    pub metrics: std::net::SocketAddr,
}

static SHARED: OnceLock<Eso> = OnceLock::new();

/// The suite-wide scan (see [`crate::secrets`]) of the shared control plane:
/// no key this test process knows is in ESO's, kube-apiserver's or etcd's
/// log (those that were started). Run by [`wait_external_secret`] and when
/// an [`crate::eg::EnvoyGateway`] is dropped.
#[track_caller]
pub fn scan_logs() {
    use crate::secrets::assert_no_known_secret;
    if let Some(eso) = SHARED.get() {
        assert_no_known_secret("ESO's log", &eso.service.log_text());
    }
    if let Some(cluster) = Cluster::started() {
        assert_no_known_secret("kube-apiserver's log", &cluster.apiserver.log_text());
        assert_no_known_secret("etcd's log", &cluster.etcd.log_text());
    }
}

impl Eso {
    /// The controller shared by this test binary, started on first use
    /// against [`Cluster::shared`] and [`Moto::shared`].
    pub fn shared() -> &'static Eso {
        SHARED.get_or_init(|| {
            let cluster = Cluster::shared();
            let moto = Moto::shared();
            let mut cmd = Command::new(components().eso_bin_dir.join("external-secrets"));
            let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
            cmd.arg(format!("--metrics-addr={metrics}"));
            cmd.args([
                "--enable-leader-election=false",
                "--live-addr=0",
                "--concurrent=4",
                "--loglevel=info",
                "--zap-time-encoding=iso8601",
                "--enable-push-secret-reconciler=false",
                "--enable-cluster-push-secret-reconciler=false",
                "--enable-cluster-external-secret-reconciler=false",
            ]);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("AWS_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("KUBECONFIG", &cluster.kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .env("AWS_SECRETSMANAGER_ENDPOINT", moto.endpoint())
                // Safety nets: every AWS call stays on loopback.
                .env("AWS_STS_ENDPOINT", moto.endpoint())
                .env("AWS_ENDPOINT_URL", moto.endpoint())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_ACCESS_KEY_ID", aws::ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", aws::SECRET_KEY)
                .env("AWS_REGION", "eu-central-1");
            let service = Service::start("external-secrets", &cmd, &cluster.dir().join("eso.log"));
            std::thread::sleep(Duration::from_millis(500));
            assert!(
                service.exited().is_none(),
                "ESO exited at start\n{}",
                service.log_tail(40)
            );
            Eso { service, metrics }
        })
    }
}

/// The `Ready` condition of an object: `(status, reason, message)`.
pub fn ready_condition(obj: &Value) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// Waits until ExternalSecret `ns/name` has `Ready` = `status` (`"True"` or
/// `"False"`); returns its reason and message. Panics with ESO's log after
/// `timeout`.
#[track_caller]
pub fn wait_external_secret(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    status: &str,
    timeout: Duration,
) -> (String, String) {
    let got = wait_for(timeout, || {
        let es = cluster.get_json("externalsecret", ns, name)?;
        let (s, reason, message) = ready_condition(&es)?;
        (s == status).then_some((reason, message))
    });
    match got {
        Some(v) => {
            scan_logs();
            v
        }
        None => panic!(
            "ExternalSecret {ns}/{name} not Ready={status} in {timeout:?}: {:?}\n{}",
            cluster
                .get_json("externalsecret", ns, name)
                .map(|es| es["status"].clone()),
            Eso::shared().service.log_tail(30)
        ),
    }
}

/// The data of Secret `ns/name`, decoded; `None` when it does not exist.
/// Callers must not print it: it holds test secrets.
pub fn secret_data(cluster: &Cluster, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let secret = cluster.get_json("secret", ns, name)?;
    let mut out = BTreeMap::new();
    if let Some(data) = secret["data"].as_object() {
        for (k, v) in data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .expect("base64 Secret data");
            out.insert(
                k.clone(),
                String::from_utf8(bytes).expect("UTF-8 Secret data"),
            );
        }
    }
    Some(out)
}

/// The bootstrap credential the seed describes (`aws-credentials` with
/// `access-key` / `secret-access-key`), holding moto's fake credentials.
pub fn create_aws_credentials(cluster: &Cluster, ns: &str, name: &str) {
    cluster.namespace(ns);
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n  access-key: {}\n  secret-access-key: {}\n",
        aws::ACCESS_KEY,
        aws::SECRET_KEY
    ));
}

/// `kubectl -n NS annotate externalsecret NAME force-sync=$(date +%s) --overwrite`,
/// the seed's rotation step. (Two in the same second would not change the
/// annotation and so sync nothing: the tests never force-sync one
/// ExternalSecret twice within a second.)
pub fn force_sync(cluster: &Cluster, ns: &str, name: &str) {
    let now = crate::client::now();
    cluster.kubectl_ok(&[
        "-n",
        ns,
        "annotate",
        "externalsecret",
        name,
        &format!("force-sync={now}"),
        "--overwrite",
    ]);
}
