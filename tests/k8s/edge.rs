//! The kit as `render gateway` emits it, on the node: Envoy Gateway's
//! Kubernetes provider makes the proxies, the kubelet gives them their keys.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use edge_hmac_core::scheme::TagEncoding;
use edge_hmac_tests::aws::{Moto, edge_value, unique_env};
use edge_hmac_tests::build::filter_wasm;
use edge_hmac_tests::client::{Body, Req, assert_rejected, get, now, send};
use edge_hmac_tests::cluster::{Cluster, wait_for};
use edge_hmac_tests::eg::FileServer;
use edge_hmac_tests::egk8s::{EG_NAMESPACE, EgKubernetes};
use edge_hmac_tests::eso::{Eso, create_aws_credentials, secret_data, wait_external_secret};
use edge_hmac_tests::image;
use edge_hmac_tests::kit::{render_cli, routes_on};
use edge_hmac_tests::node::{NODE_IP, Node};
use edge_hmac_tests::secrets::{assert_no_secret, nonce, secret};
use edge_hmac_tests::upstream::Upstream;

/// The node, started once per run.
fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| Node::start(Cluster::shared()))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The label selector of the proxies of the kit's Gateway `edge/edge`.
pub(crate) const PROXIES: &str = "gateway.envoyproxy.io/owning-gateway-name=edge,gateway.envoyproxy.io/owning-gateway-namespace=edge";

/// `kubectl -n envoy-gateway-system get KIND -l PROXIES -o OUTPUT`, its
/// standard output (empty when there is nothing, or on an error).
pub(crate) fn get_proxies(kind: &str, output: &str) -> String {
    let out =
        Cluster::shared().kubectl(&["-n", EG_NAMESPACE, "get", kind, "-l", PROXIES, "-o", output]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The proxy pods, as JSON, those terminating left out.
pub(crate) fn proxy_pods() -> Vec<serde_json::Value> {
    let pods: serde_json::Value = serde_json::from_str(&get_proxies("pods", "json")).unwrap();
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

/// One kit on the node: its environment and key in moto, the filter served
/// over HTTP, everything `render gateway` emits applied, Envoy Gateway
/// (Kubernetes provider) running, a test route to a recording upstream.
pub(crate) struct Edge {
    pub(crate) env: String,
    pub(crate) key: String,
    pub(crate) upstream: Upstream,
    pub(crate) eg: EgKubernetes,
    _files: FileServer,
}

/// Which build of the filter the kit runs, and how it reaches the proxies.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Build {
    /// proxy-wasm from an HTTP URL with its sha256, through EG's wasm cache.
    Wasm,
    /// The native module at [`MODULE_PATH`], put there by an init container.
    Native,
}

/// Where the native module is on the proxies (`render gateway
/// --module-path`).
const MODULE_PATH: &str = "/var/lib/edge-hmac/libedge-hmac.so";

/// Test-only, the user's part of `--module-path` (the kit leaves delivery
/// to them): an init container copies the module from its image into an
/// emptyDir the proxy mounts read-only at the path's directory. (Image
/// volumes, what `--module-image` renders, need containerd 2.1 or newer;
/// this node runs Debian's 1.6.)
fn module_init_container_patch() -> String {
    let dir = MODULE_PATH.rsplit_once('/').unwrap().0;
    serde_json::json!({"spec": {"provider": {"kubernetes": {"envoyDeployment": {
        "initContainers": [{
            "name": "edge-hmac-module",
            "image": image::MODULE_IMAGE,
            "command": ["/usr/local/bin/install-file", image::MODULE_IN_IMAGE, MODULE_PATH],
            "volumeMounts": [{"name": "edge-hmac-module", "mountPath": dir}],
        }],
        "pod": {"volumes": [{"name": "edge-hmac-module", "emptyDir": {}}]},
        "container": {"volumeMounts": [
            {"name": "edge-hmac-module", "mountPath": dir, "readOnly": true},
        ]},
    }}}}})
    .to_string()
}

impl Edge {
    pub(crate) async fn start() -> Edge {
        Edge::start_with(Build::Wasm).await
    }

    pub(crate) async fn start_with(build: Build) -> Edge {
        let cluster = Cluster::shared();
        let node = node();
        let _eso = Eso::shared();
        let moto = Moto::shared();
        let env = unique_env();
        let key = secret();
        moto.create_secret(&format!("crawbl/{env}/edge/hmac"), &edge_value(&key, &env))
            .await;
        let wasm = std::fs::read(filter_wasm()).unwrap();
        let files = FileServer::start(&[("edge_hmac_filter.wasm", &wasm)]);
        // The filter as users deliver it: an HTTP URL and its sha256,
        // fetched by Envoy Gateway and served to the proxies by its cache.
        let kit = match build {
            Build::Wasm => render_cli(&format!(
                "--env {env} --wasm-url http://{}/edge_hmac_filter.wasm --wasm-file {} --plain-http --no-https",
                files.addr,
                filter_wasm().display()
            )),
            Build::Native => render_cli(&format!(
                "--env {env} --module native --module-path {MODULE_PATH} --plain-http --no-https"
            )),
        };
        create_aws_credentials(cluster, "external-secrets", "aws-credentials");
        // A proxy of an earlier test holds that test's keys: gone before
        // EG makes a new one below (its pods too, or kube-proxy could send
        // requests to one still draining).
        for kind in ["deployment", "pods"] {
            cluster.kubectl_ok(&[
                "-n",
                EG_NAMESPACE,
                "delete",
                kind,
                "-l",
                PROXIES,
                "--ignore-not-found",
                "--grace-period=0",
                "--force",
                "--wait=true",
            ]);
        }
        // Everything the kit holds, as rendered, in EG's namespace (where
        // EG's install put it).
        cluster.namespace(EG_NAMESPACE);
        cluster.apply(&kit);
        if build == Build::Native {
            cluster.kubectl_ok(&[
                "-n",
                EG_NAMESPACE,
                "patch",
                "envoyproxy",
                "edge-hmac",
                "--type=merge",
                "-p",
                &module_init_container_patch(),
            ]);
        }
        let sync = Duration::from_secs(90);
        wait_external_secret(cluster, EG_NAMESPACE, "hmac-wasm-config", "True", sync);
        let synced = wait_for(sync, || {
            secret_data(cluster, EG_NAMESPACE, "hmac-wasm-config")
                .filter(|d| d.get("environment") == Some(&env))
                .map(|_| ())
        });
        assert!(
            synced.is_some(),
            "ESO did not write this environment's Secret"
        );
        let upstream = Upstream::start_on(NODE_IP).await;
        // Test-only: the route to the recording upstream, and EG's Service.
        cluster.apply(&routes_on(
            ("edge", "edge"),
            &[("team", "api", "/", upstream.addr)],
        ));
        node.expose_eg(cluster);
        let eg = EgKubernetes::start(cluster);
        Edge {
            env,
            key,
            upstream,
            eg,
            _files: files,
        }
    }

    /// The proxy Service's NodePort, on 127.0.0.1, once EG made it.
    pub(crate) fn node_port(&self) -> SocketAddr {
        let port = self.eg.wait("the proxy Service with a NodePort", || {
            get_proxies("service", "jsonpath={.items[0].spec.ports[0].nodePort}")
                .parse::<u16>()
                .ok()
        });
        // kube-proxy's NodePort on loopback (localhost NodePorts).
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Waits (3 min at most: the first pod imports nothing, but EG, the
    /// wasm cache and the filter all have to be ready) until every proxy
    /// pod is Ready and the edge refuses an unsigned request.
    pub(crate) async fn wait_serving(&self, addr: SocketAddr) {
        let cluster = Cluster::shared();
        self.eg.wait("the proxy Deployment EG creates", || {
            (!get_proxies("deployment", "name").is_empty()).then_some(())
        });
        let rolled = cluster.kubectl(&[
            "-n",
            EG_NAMESPACE,
            "wait",
            "--for=condition=Available",
            "deployment",
            "-l",
            PROXIES,
            "--timeout=180s",
        ]);
        assert!(
            rolled.status.success(),
            "the proxy Deployment is not available: {}\n{}\n{}\n{}",
            String::from_utf8_lossy(&rolled.stderr),
            cluster.kubectl_ok(&["-n", EG_NAMESPACE, "get", "pods", "-o", "wide"]),
            self.eg.logs(),
            node().logs()
        );
        let mut last = None;
        for _ in 0..120 {
            // kube-proxy may not route the NodePort yet: refused meanwhile.
            match get(addr, "/v1/ready").await {
                Ok(resp) if resp.error_code().as_deref() == Some("missing_signature") => return,
                Ok(resp) => last = Some(format!("{} {}", resp.status, resp.text())),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "the edge at {addr} does not check signatures: last answer {last:?}\n{}",
            self.eg.logs()
        );
    }
}

/// EG's Kubernetes provider creates the proxy Deployment from the kit's
/// EnvoyProxy; the kubelet starts it with `HMAC_SECRET` and
/// `HMAC_ENVIRONMENT` from the Secret ESO synced from moto (the optional
/// rotation keys absent); through kube-proxy's NodePort a signed request
/// reaches the upstream, and unsigned, tampered and replayed ones are
/// refused with their codes.
pub fn the_kit_runs_on_a_node_with_the_keys_the_kubelet_injects() {
    runs_on_the_node(Build::Wasm);
}

/// The same with the native module (`render gateway --module native
/// --module-path`), copied into the proxy pods by an init container from
/// its image: EG registers it from the EnvoyProxy's `dynamicModules`, and
/// Envoy 1.39 (EG v1.9.0's default) loads it; the same answers.
pub fn the_native_module_runs_on_a_node_from_an_init_container() {
    runs_on_the_node(Build::Native);
}

fn runs_on_the_node(build: Build) {
    runtime().block_on(async {
        let edge = Edge::start_with(build).await;
        let addr = edge.node_port();
        edge.wait_serving(addr).await;

        // What the kubelet gave the proxy: the pod spec references the
        // Secrets; the values are what the filter verifies with below.
        let pods = proxy_pods();
        assert_eq!(pods.len(), 1, "one proxy pod: {pods:?}");
        let envoy = pods[0]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "envoy")
            .expect("an envoy container")
            .clone();
        let refs: Vec<(String, String, String)> = envoy["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                let r = &e["valueFrom"]["secretKeyRef"];
                Some((
                    e["name"].as_str()?.to_owned(),
                    r["name"].as_str()?.to_owned(),
                    r["key"].as_str()?.to_owned(),
                ))
            })
            .collect();
        for (var, secret, key) in [
            ("HMAC_SECRET", "hmac-wasm-config", "hmac_secret"),
            ("HMAC_ENVIRONMENT", "hmac-wasm-config", "environment"),
        ] {
            assert!(
                refs.contains(&(var.into(), secret.into(), key.into())),
                "{var} from {secret}/{key}: {refs:?}"
            );
        }
        for s in pods[0]["status"]["containerStatuses"].as_array().unwrap() {
            assert_eq!(s["ready"], true, "{s}");
        }
        if build == Build::Native {
            let init = &pods[0]["status"]["initContainerStatuses"][0];
            assert_eq!(init["name"], "edge-hmac-module", "{init}");
            assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
        }

        let (key, env) = (&edge.key, &edge.env);
        let signed = send(addr, &Req::new("GET", "/v1/orders").signed(key, env)).await;
        assert_eq!(signed.status, 200, "signed: {}", signed.text());
        assert_rejected(
            &send(addr, &Req::new("GET", "/v1/orders")).await,
            401,
            "missing_signature",
        );
        let tampered = Req::new("POST", "/v1/orders")
            .body(Body::Full(b"original".to_vec()))
            .signed(key, env)
            .body(Body::Full(b"modified".to_vec()));
        assert_rejected(&send(addr, &tampered).await, 401, "content_mismatch");
        let wrong_key = Req::new("GET", "/v1/orders").signed(&secret(), env);
        assert_rejected(&send(addr, &wrong_key).await, 401, "invalid_signature");
        let n = nonce();
        let once =
            Req::new("GET", "/v1/orders").signed_with(key, env, now(), Some(&n), TagEncoding::Hex);
        assert_eq!(send(addr, &once).await.status, 200);
        assert_rejected(&send(addr, &once).await, 401, "replayed_request");
        // The two that passed reached the upstream whole; of the refused
        // ones nothing did but, for the tampered POST, its headers (the
        // filter lets headers go on and holds the body it checks).
        let records = edge.upstream.settled_records().await;
        let whole: Vec<_> = records.iter().filter(|r| r.complete).collect();
        assert_eq!(whole.len(), 2, "{records:?}");
        assert!(
            records.iter().all(|r| r.body != b"modified"),
            "the tampered body reached the upstream: {records:?}"
        );

        // No key in what the node's components and EG logged.
        assert_no_secret(&edge.eg.logs(), &[key]);
        assert_no_secret(&node().logs(), &[key]);
    });
}
