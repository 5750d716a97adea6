//! A real Kubernetes control plane on loopback: etcd 3.6 and kube-apiserver
//! 1.34 built by `tests/components/build.sh`, with the real CRDs of Gateway
//! API, Envoy Gateway and the External Secrets Operator applied, driven with
//! the real `kubectl`. No kubelet, scheduler or controller-manager: nothing
//! runs pods; the tests start the controllers they need as local processes.
//!
//! Everything here exists to run the components on one machine (a static
//! admin token, a generated service-account key, self-signed serving
//! certificates) and is not part of what the kit renders.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::build;

/// Where `tests/components/build.sh` put the components.
#[derive(Debug, Clone)]
pub struct Components {
    /// `envoy-gateway`, `egctl`.
    pub eg_bin_dir: PathBuf,
    /// Gateway API + Envoy Gateway CRDs of the same EG release.
    pub eg_crds: PathBuf,
    /// `external-secrets` (the ESO controller).
    pub eso_bin_dir: PathBuf,
    /// ESO's CRD bundle.
    pub eso_crds: PathBuf,
    /// `kube-apiserver`, `kubectl`, `etcd`.
    pub kube_bin_dir: PathBuf,
    /// `kubelet`, `kube-proxy`, `kube-scheduler`, `kube-controller-manager`
    /// (the node tests).
    pub node_bin_dir: PathBuf,
    /// `coredns` (the node's cluster DNS).
    pub coredns_bin_dir: PathBuf,
}

/// Builds (first time) or finds (cached) the components, once per test run.
pub fn components() -> &'static Components {
    static C: OnceLock<Components> = OnceLock::new();
    C.get_or_init(|| {
        let script = build::workspace().join("tests/components/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--env")
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "building the cluster components failed: run `make components` to see why (needs Go and the Go module proxy)"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |key: &str| -> PathBuf {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("build.sh printed no {key}"))
        };
        Components {
            eg_bin_dir: get("EG_BIN_DIR"),
            eg_crds: get("EG_CRDS"),
            eso_bin_dir: get("ESO_BIN_DIR"),
            eso_crds: get("ESO_CRDS"),
            kube_bin_dir: get("KUBE_BIN_DIR"),
            node_bin_dir: get("NODE_BIN_DIR"),
            coredns_bin_dir: get("COREDNS_BIN_DIR"),
        }
    })
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A process started through `tests/support/tether.py`: its output goes to a
/// log file, and it (with its whole process group) dies when this value is
/// dropped or the test process exits for any reason.
pub struct Service {
    name: String,
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl Service {
    /// Starts `cmd` (its program and arguments; its environment is kept)
    /// logging to `log`.
    pub fn start(name: &str, cmd: &Command, log: &Path) -> Service {
        let mut tethered = Command::new(build::venv().join("bin/python"));
        tethered
            .arg(build::workspace().join("tests/support/tether.py"))
            .arg(log)
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => tethered.env(k, v),
                None => tethered.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            tethered.current_dir(dir);
        }
        let mut child = tethered
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take();
        Service {
            name: name.into(),
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            log: log.to_path_buf(),
        }
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap().try_wait().ok().flatten()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "---- {} log (last {n} lines of {}) ----\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    /// Its whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it (SIGTERM to its group, SIGKILL after 5 s) and waits.
    pub fn stop(&self) {
        self.stdin.lock().unwrap().take();
        let _ = self.child.lock().unwrap().wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` every 200 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// etcd + kube-apiserver with the CRDs applied.
pub struct Cluster {
    /// The admin kubeconfig (static token, TLS verification off: test only).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// etcd.
    pub etcd: Service,
    /// etcd's client address.
    etcd_client: std::net::SocketAddr,
    /// kube-apiserver.
    pub apiserver: Service,
    dir: tempfile::TempDir,
}

static SHARED_CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The prefix of a cluster's scratch directory in the temp dir.
const DIR_PREFIX: &str = "edge-hmac-cluster-";
/// The file in it naming the test process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Removes the scratch directories (etcd data, logs: ~130 MB each) of test
/// processes that have exited. The shared cluster is a static, which Rust
/// never drops, so its `TempDir` outlives the process; the next run cleans
/// up. A directory without an owner file (older harness) goes once it is an
/// hour old.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) || !path.is_dir() {
            continue;
        }
        let stale = match std::fs::read_to_string(path.join(OWNER_FILE)) {
            Ok(pid) => !Path::new("/proc").join(pid.trim()).exists(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The static bearer token of the test admin (member of `system:masters`).
const ADMIN_TOKEN: &str = "edge-hmac-test-admin-token";

impl Cluster {
    /// The cluster shared by this test binary, started on first use
    /// (about 10 s with the components built).
    pub fn shared() -> &'static Cluster {
        SHARED_CLUSTER.get_or_init(Cluster::start)
    }

    /// The shared cluster, if a test has started it.
    pub fn started() -> Option<&'static Cluster> {
        SHARED_CLUSTER.get()
    }

    /// Starts etcd and kube-apiserver and applies the CRDs.
    pub fn start() -> Cluster {
        let c = components();
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .unwrap();
        let d = dir.path();
        std::fs::write(d.join(OWNER_FILE), std::process::id().to_string()).unwrap();
        let etcd_port = free_port();
        let peer_port = free_port();
        let mut etcd = Command::new(c.kube_bin_dir.join("etcd"));
        etcd.args(["--name", "default", "--data-dir"])
            .arg(d.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .args(["--listen-metrics-urls=", "--log-level=warn"]);
        let etcd = Service::start("etcd", &etcd, &d.join("etcd.log"));

        // The service-account signing key kube-apiserver insists on.
        let key = d.join("sa.key");
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .expect("openssl genrsa");
        assert!(status.success(), "openssl genrsa failed");
        let tokens = d.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{ADMIN_TOKEN},edge-hmac-test-admin,edge-hmac-test-admin,system:masters\n"),
        )
        .unwrap();
        let port = free_port();
        let mut api = Command::new(c.kube_bin_dir.join("kube-apiserver"));
        api.arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg("--cert-dir")
            .arg(d.join("certs"))
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-key-file={}", key.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                key.display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg("--service-cluster-ip-range=10.96.0.0/24")
            // The node tests' kubelet (logs, exec, port-forward): by its
            // address, never through the machine's DNS.
            .arg("--kubelet-preferred-address-types=InternalIP")
            .arg("--enable-priority-and-fairness=false")
            .arg("--v=1");
        let apiserver = Service::start("kube-apiserver", &api, &d.join("kube-apiserver.log"));
        let server = format!("https://127.0.0.1:{port}");
        let kubeconfig = d.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n- name: test\n  context: {{cluster: test, user: admin}}\ncurrent-context: test\n"
            ),
        )
        .unwrap();
        let cluster = Cluster {
            kubeconfig,
            server,
            etcd,
            etcd_client: std::net::SocketAddr::from(([127, 0, 0, 1], etcd_port)),
            apiserver,
            dir,
        };
        let ready = wait_for(Duration::from_secs(90), || {
            if cluster.apiserver.exited().is_some() || cluster.etcd.exited().is_some() {
                panic!(
                    "etcd or kube-apiserver exited while starting\n{}",
                    cluster.logs()
                );
            }
            let out = cluster.kubectl(&["get", "--raw", "/readyz"]);
            out.status.success().then_some(())
        });
        assert!(
            ready.is_some(),
            "kube-apiserver not ready in 90 s\n{}",
            cluster.logs()
        );
        cluster.kubectl_ok(&["apply", "--server-side", "-f", path_str(&c.eg_crds)]);
        cluster.kubectl_ok(&["apply", "--server-side", "-f", path_str(&c.eso_crds)]);
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]);
        cluster
    }

    /// Writes custom resource `obj` straight into etcd, past admission, as
    /// if it predated every admission policy now installed (the shared
    /// cluster holds several kits' policies, which refuse it cluster-wide).
    /// Test-only: custom resources are stored as JSON under
    /// `/registry/<group>/<plural>/<namespace>/<name>`; the API server's
    /// watch sees the write like any other.
    pub fn put_past_admission(&self, group: &str, plural: &str, obj: &serde_json::Value) {
        use base64::Engine as _;
        use std::io::Read as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let meta = &obj["metadata"];
        let key = format!(
            "/registry/{group}/{plural}/{}/{}",
            meta["namespace"].as_str().unwrap(),
            meta["name"].as_str().unwrap()
        );
        let mut stored = obj.clone();
        stored["metadata"]["uid"] =
            format!("{:08x}-0000-4000-8000-000000000000", std::process::id()).into();
        stored["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
        stored["metadata"]["generation"] = 1.into();
        let body = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(stored.to_string().as_bytes())}).to_string();
        let mut conn = std::net::TcpStream::connect(self.etcd_client).expect("etcd");
        write!(
            conn,
            "POST /v3/kv/put HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "etcd refused the put: {answer}"
        );
    }

    /// The control plane's files: `sa.key` (the service-account signing
    /// key) and `certs/apiserver.crt` (its serving certificate), for the
    /// node tests' controller-manager.
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `kubectl` command against this cluster.
    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new(components().kube_bin_dir.join("kubectl"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kubectl args`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).output().expect("run kubectl")
    }

    /// Runs `kubectl args`, panicking with its stderr (and the control
    /// plane's logs) when it fails; returns stdout.
    #[track_caller]
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `kubectl args` with `stdin` as its standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `kubectl apply --server-side -f -` of `yaml`; panics on failure.
    #[track_caller]
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            yaml,
        );
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get KIND NAME -n NS -o json`, `None` when it does not exist.
    pub fn get_json(&self, kind: &str, ns: &str, name: &str) -> Option<serde_json::Value> {
        let out = self.kubectl(&["get", kind, name, "-n", ns, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl -o json"))
    }

    /// Creates namespace `ns` if missing.
    pub fn namespace(&self, ns: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ));
    }

    /// The tails of the etcd and kube-apiserver logs.
    pub fn logs(&self) -> String {
        format!(
            "{}\n{}",
            self.etcd.log_tail(20),
            self.apiserver.log_tail(40)
        )
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
