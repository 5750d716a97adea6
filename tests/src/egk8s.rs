//! The real Envoy Gateway (v1.9.0) with its **Kubernetes provider**, run
//! out of cluster against the shared [`Cluster`]'s API server: it reads the
//! Gateway API and Envoy Gateway objects there and writes their status
//! conditions (GatewayClass Accepted, Gateway Programmed, a policy's
//! Accepted / Conflicted / Overridden), which the File provider of
//! [`crate::eg::EnvoyGateway`] only prints. No kubelet runs the proxy
//! Deployment it creates.
//!
//! Test-only, and why (none of it is in what `render gateway` emits):
//! - **`/certs`**: in Kubernetes mode EG loads its xDS / wasm-cache TLS from
//!   the fixed paths `/certs/{ca.crt,tls.crt,tls.key}` (a pod mount). The
//!   process runs in a private mount namespace over a tmpfs-backed overlay
//!   of `/` with `chroot`, the certificates `envoy-gateway certgen` put in
//!   the cluster bound at `/certs`; nothing outside the test's directory is
//!   written (needs root, as CI runs).
//! - **kubelet and a load balancer**: once EG created the proxy Deployment
//!   and Service, the harness writes their status (one available replica,
//!   ingress 127.0.0.1) so EG can report the Gateway `Programmed`
//!   ([`EgKubernetes::stand_in_for_kubelet`]).
//! - Leader election, the topology-injector webhook and EG's own metrics
//!   are off; admin on 127.0.0.1:19100. xDS (18000), the wasm cache (18002),
//!   health (8081) and controller metrics (8080) are fixed, so it holds the
//!   same lock as the host-mode EG ([`crate::eg::exclusive`]).

use std::process::Command;
use std::sync::{MutexGuard, OnceLock};
use std::time::Duration;

use base64::Engine as _;

use crate::cluster::{Cluster, Service, components, wait_for};

/// EG's own namespace (its certificates, the proxy Deployments it creates).
pub const EG_NAMESPACE: &str = "envoy-gateway-system";

/// Envoy Gateway with the Kubernetes provider, running.
pub struct EgKubernetes {
    service: Option<Service>,
    _dir: tempfile::TempDir,
    _lock: MutexGuard<'static, ()>,
}

/// `envoy-gateway certgen` against the cluster, once per test process: the
/// Secrets `envoy-gateway`, `envoy`, `envoy-rate-limit`, `envoy-oidc-hmac`.
fn certgen(cluster: &Cluster) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        cluster.namespace(EG_NAMESPACE);
        let out = Command::new(components().eg_bin_dir.join("envoy-gateway"))
            .args(["certgen", "--disable-topology-injector"])
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .expect("envoy-gateway certgen");
        assert!(
            out.status.success(),
            "certgen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

impl EgKubernetes {
    /// Starts EG against `cluster` (certgen first, once).
    pub fn start(cluster: &Cluster) -> EgKubernetes {
        let lock = crate::eg::exclusive();
        certgen(cluster);
        let dir = tempfile::Builder::new()
            .prefix("edge-hmac-egk8s-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let certs = d.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        let secret = cluster
            .get_json("secret", EG_NAMESPACE, "envoy-gateway")
            .expect("certgen's Secret envoy-gateway");
        for key in ["ca.crt", "tls.crt", "tls.key"] {
            let b64 = secret["data"][key].as_str().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            std::fs::write(certs.join(key), bytes).unwrap();
        }
        std::fs::write(
            d.join("eg.yaml"),
            "apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyGateway
gateway:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
provider:
  type: Kubernetes
  kubernetes:
    leaderElection:
      disable: true
    proxyTopologyInjector:
      disabled: true
logging:
  level:
    default: info
admin:
  address:
    host: 127.0.0.1
    port: 19100
telemetry:
  metrics:
    prometheus:
      disable: true
extensionApis:
  enableBackend: true
  enableEnvoyPatchPolicy: true
  enableLua: true
",
        )
        .unwrap();
        let script = format!(
            r#"set -e
D={d}
mkdir -p "$D/ovl"
mount -t tmpfs tmpfs "$D/ovl"
mkdir -p "$D/ovl/u" "$D/ovl/w" "$D/ovl/m"
mount -t overlay overlay -o "lowerdir=/,upperdir=$D/ovl/u,workdir=$D/ovl/w" "$D/ovl/m"
for p in proc sys dev tmp; do mount --rbind "/$p" "$D/ovl/m/$p"; done
mkdir -p "$D/ovl/m/certs"
mount --bind "$D/certs" "$D/ovl/m/certs"
cd /
exec chroot "$D/ovl/m" {eg} server --config-path "$D/eg.yaml"
"#,
            d = d.display(),
            eg = components().eg_bin_dir.join("envoy-gateway").display(),
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "bash", "-c", &script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", d)
            .env("KUBECONFIG", &cluster.kubeconfig);
        let service = Service::start("envoy-gateway (kubernetes)", &cmd, &d.join("eg.log"));
        EgKubernetes {
            service: Some(service),
            _dir: dir,
            _lock: lock,
        }
    }

    /// EG's log tail, for failure messages.
    pub fn logs(&self) -> String {
        self.service
            .as_ref()
            .map(|s| s.log_tail(40))
            .unwrap_or_default()
    }

    /// Waits (60 s at most) until `probe` returns something, failing with
    /// EG's log.
    pub fn wait<T>(&self, what: &str, probe: impl FnMut() -> Option<T>) -> T {
        let got = wait_for(Duration::from_secs(60), probe);
        assert!(
            self.service.as_ref().is_some_and(|s| s.exited().is_none()),
            "Envoy Gateway (kubernetes) exited\n{}",
            self.logs()
        );
        got.unwrap_or_else(|| panic!("{what} not seen in 60 s\n{}", self.logs()))
    }

    /// What kubelet and a load-balancer controller would do for the proxy
    /// of Gateway `ns/name`: its Deployment reports one available replica
    /// and its Service an ingress address, so EG reports the Gateway
    /// Programmed.
    pub fn stand_in_for_kubelet(&self, cluster: &Cluster, ns: &str, name: &str) {
        let selector = format!(
            "gateway.envoyproxy.io/owning-gateway-name={name},gateway.envoyproxy.io/owning-gateway-namespace={ns}"
        );
        let deployment = self.wait("the proxy Deployment EG creates", || {
            let out = cluster.kubectl(&[
                "-n",
                EG_NAMESPACE,
                "get",
                "deployment",
                "-l",
                &selector,
                "-o",
                "name",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (!text.is_empty()).then_some(text)
        });
        let service = deployment.replace("deployment.apps/", "service/");
        self.wait("the proxy Service EG creates", || {
            cluster
                .kubectl(&["-n", EG_NAMESPACE, "get", &service])
                .status
                .success()
                .then_some(())
        });
        cluster.kubectl_ok(&[
            "-n", EG_NAMESPACE, "patch", &deployment, "--subresource=status", "--type=merge",
            "-p", r#"{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1,"updatedReplicas":1}}"#,
        ]);
        cluster.kubectl_ok(&[
            "-n",
            EG_NAMESPACE,
            "patch",
            &service,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.1"}]}}}"#,
        ]);
    }

    /// Stops EG (the status it wrote stays in the API server).
    pub fn stop(mut self) {
        if let Some(s) = self.service.take() {
            s.stop();
        }
    }
}

impl Drop for EgKubernetes {
    fn drop(&mut self) {
        if let Some(s) = self.service.take() {
            s.stop();
        }
    }
}
