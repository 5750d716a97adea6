//! A real single-node Kubernetes data plane for the node tests
//! (`tests/k8s/`): containerd 1.6 and runc from Debian, the CNI reference
//! plugins, and kubelet, kube-proxy, kube-scheduler,
//! kube-controller-manager (Kubernetes v1.34.4) and CoreDNS (v1.12.1)
//! built by `tests/components/build.sh`, joined to the shared
//! [`Cluster`]'s API server. Pods really run: the kubelet resolves their
//! `secretKeyRef`s, probes them, and runs their preStop hooks; kube-proxy
//! routes Services to the ready ones.
//!
//! **Isolation.** The test binary re-executes itself ([`isolated`]) in new
//! network, mount and PID namespaces, with `tests/support/init.py` as PID 1.
//! Everything of the run lives there: the API server, ESO, Envoy Gateway,
//! moto, the pods, the load. The network namespace has only `lo` (with the
//! node's address [`NODE_IP`]) and the pods' bridge, no route off the
//! machine, and takes kube-proxy's iptables chains and sysctls with it; the
//! mount namespace takes the kubelet's and containerd's mounts (the
//! kubelet's fixed `/var/lib/kubelet` and `/var/log/pods` are tmpfs there);
//! when PID 1 exits the kernel kills whatever is left. Global sysctls the
//! kubelet sets (`kernel.panic`, `vm.overcommit_memory`, …) are files bound
//! over their `/proc/sys` entries inside the namespace, so the machine's
//! stay as they were. What survives the namespaces, the pods' cgroups and
//! the run's directory, the outer process removes after the inner one
//! exited, whatever its outcome.
//!
//! Test-only, and why (none of it is in what `render gateway` emits):
//! - the cluster runs with an admin token; the kubelet allows every
//!   authenticated request (it listens only inside the namespace);
//! - the node image ([`crate::image`]) is imported under Envoy Gateway's
//!   default image names;
//! - Envoy Gateway runs out of cluster (`crate::egk8s`) and is made known to
//!   the pods as the headless Service `envoy-gateway` it would have in the
//!   cluster, with the node's address as its endpoint ([`Node::expose_eg`]).

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::build;
use crate::cluster::{Cluster, Service, components, wait_for};
use crate::image;

/// The node's address: a /32 on the namespace's `lo`, where the kubelet,
/// kube-proxy's NodePorts and CoreDNS listen, and what the pods reach the
/// out-of-cluster components (Envoy Gateway, the test upstreams) at.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 243, 0, 1);
/// The node's name.
pub const NODE_NAME: &str = "edge-hmac-node";
/// The pods' addresses (the CNI bridge's host-local range).
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The CNI bridge.
const BRIDGE: &str = "ehk0";

/// Set in the re-executed test binary: it runs inside the namespaces, and
/// this is the run's directory.
const INNER_ENV: &str = "EDGE_HMAC_NODE_DIR";

/// Paths the kubelet and containerd use whatever their configuration says:
/// a tmpfs each inside the mount namespace.
const FIXED_PATHS: &[&str] = &[
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/netns",
];

/// Global sysctls the kubelet writes (`setupKernelTunables`): shadowed
/// inside the mount namespace by files of the run.
const KUBELET_SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// The cgroup the kubelet puts every pod under (`cgroupRoot`), in every v1
/// hierarchy; the outer process removes it.
const CGROUP_ROOT: &str = "edge-hmac-node";

#[track_caller]
fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The run's directory, inside the namespaces.
pub fn run_dir() -> PathBuf {
    PathBuf::from(std::env::var_os(INNER_ENV).expect("inside the node's namespaces"))
}

/// Runs the node tests in their namespaces: in the outer process, re-executes
/// this binary there, cleans up after it and returns its exit code; inside,
/// prepares the namespaces and returns `None` (run the tests).
pub fn isolated() -> Option<ExitCode> {
    if std::env::var_os(INNER_ENV).is_some() {
        prepare_namespaces();
        return None;
    }
    if !nix_is_root() {
        eprintln!(
            "the node tests start containerd, a kubelet and kube-proxy in namespaces of their own: they need root (CI runs as root)"
        );
        return Some(ExitCode::FAILURE);
    }
    sweep_stale_cgroups();
    let dir = tempfile::Builder::new()
        .prefix("edge-hmac-node-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string()).unwrap();
    let created: Vec<&str> = FIXED_PATHS
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    let rules_before = kube_rules();
    // Every temporary directory of the inner process (the control plane's,
    // Envoy Gateway's, moto's) goes under the run's, removed below.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let status = Command::new("unshare")
        .args([
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
        ])
        .arg(build::venv().join("bin/python"))
        .arg(build::workspace().join("tests/support/init.py"))
        .arg(std::env::current_exe().unwrap())
        .args(&args)
        .env(INNER_ENV, dir.path())
        .env("TMPDIR", &tmp)
        .status()
        .expect("unshare (util-linux)");
    // The namespaces are gone with their last process: mounts, iptables
    // chains, the bridge, every container. What remains on the machine:
    remove_cgroups(CGROUP_ROOT);
    for p in &created {
        let _ = std::fs::remove_dir(p);
    }
    let run = dir.path().to_path_buf();
    drop(dir);
    // The teardown is part of what these tests show: nothing of the run is
    // left on the machine, whatever the tests' outcome.
    let left = leftovers(&run, &created, &rules_before);
    if !left.is_empty() {
        eprintln!("node tests: the run left behind:\n  {}", left.join("\n  "));
        return Some(ExitCode::FAILURE);
    }
    Some(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// What a finished run left on the machine: its cgroups, its directory,
/// the fixed paths it made, mounts of either, processes of the node, the
/// bridge, `KUBE-*` iptables rules that were not there before (none of
/// these should exist outside the namespaces).
fn leftovers(run: &Path, created: &[&str], rules_before: &[String]) -> Vec<String> {
    let mut left: Vec<String> = cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(CGROUP_ROOT))
        .filter(|p| p.exists())
        .map(|p| format!("cgroup {}", p.display()))
        .collect();
    left.extend(
        std::iter::once(run)
            .chain(created.iter().map(Path::new))
            .filter(|p| p.exists())
            .map(|p| format!("directory {}", p.display())),
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    left.extend(
        mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| {
                m.starts_with(&*run.to_string_lossy())
                    || FIXED_PATHS.iter().any(|p| m.starts_with(p))
            })
            .map(|m| format!("mount {m}")),
    );
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmd.contains(&*run.to_string_lossy()) {
                left.push(format!(
                    "process {}: {cmd}",
                    p.file_name().to_string_lossy()
                ));
            }
        }
    }
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        left.push(format!("network interface {BRIDGE}"));
    }
    left.extend(
        kube_rules()
            .into_iter()
            .filter(|r| !rules_before.contains(r))
            .take(5)
            .map(|r| format!("rule {r}")),
    );
    left
}

/// The machine's `KUBE-*` iptables and ip6tables rules (nat and filter).
fn kube_rules() -> Vec<String> {
    let mut rules = Vec::new();
    for iptables in ["iptables", "ip6tables"] {
        for table in ["nat", "filter"] {
            if let Ok(out) = Command::new(iptables)
                .args(["-w", "-t", table, "-S"])
                .output()
            {
                rules.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter(|l| l.contains("KUBE-"))
                        .map(|l| format!("{iptables} -t {table} {l}")),
                );
            }
        }
    }
    rules
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The v1 hierarchies mounted under `/sys/fs/cgroup`.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the cgroup `name` (and everything under it) from every
/// hierarchy, deepest first; their processes are gone by now.
fn remove_cgroups(name: &str) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    remove(&e.path());
                }
            }
        }
        // A cgroup's directory holds only the kernel's files: rmdir works
        // once it has no children and no processes.
        for _ in 0..50 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("node tests: could not remove cgroup {}", dir.display());
    }
    for h in cgroup_hierarchies() {
        let dir = h.join(name);
        if dir.exists() {
            remove(&dir);
        }
    }
}

/// A run killed before its cleanup left its cgroups: remove them when no
/// node run is alive (its directory's owner).
fn sweep_stale_cgroups() {
    let runs: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("edge-hmac-node-")
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    for run in runs {
        let alive = std::fs::read_to_string(run.join("owner.pid"))
            .is_ok_and(|pid| Path::new("/proc").join(pid.trim()).exists());
        assert!(
            !alive,
            "another node test run is going on ({}): one at a time",
            run.display()
        );
        let _ = std::fs::remove_dir_all(&run);
    }
    remove_cgroups(CGROUP_ROOT);
}

/// Inside the namespaces, before anything starts: loopback up with the
/// node's address, mounts shared within the namespace (the kubelet needs
/// it), tmpfs on the fixed paths, the kubelet's sysctls shadowed, and the
/// pods' cgroup root made.
fn prepare_namespaces() {
    sh("ip", &["link", "set", "lo", "up"]);
    sh(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"],
    );
    sh("mount", &["--make-rshared", "/"]);
    for p in FIXED_PATHS {
        std::fs::create_dir_all(p).unwrap();
        sh("mount", &["-t", "tmpfs", "tmpfs", p]);
    }
    let dir = run_dir();
    for s in KUBELET_SYSCTLS {
        let proc = Path::new("/proc/sys").join(s);
        let shadow = dir.join("sysctl").join(s);
        std::fs::create_dir_all(shadow.parent().unwrap()).unwrap();
        std::fs::copy(&proc, &shadow).unwrap();
        sh(
            "mount",
            &["--bind", shadow.to_str().unwrap(), proc.to_str().unwrap()],
        );
    }
    for h in cgroup_hierarchies() {
        let cg = h.join(CGROUP_ROOT);
        std::fs::create_dir_all(&cg).unwrap();
        // cpuset: a child starts with no CPUs or memory nodes.
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                std::fs::write(cg.join(f), v.trim()).unwrap();
            }
        }
    }
}

/// The node, running.
pub struct Node {
    /// containerd's socket.
    pub containerd_socket: PathBuf,
    services: Vec<Service>,
    dir: PathBuf,
}

impl Node {
    /// Starts the controller-manager and scheduler against `cluster`, then
    /// containerd (the node image imported), CoreDNS, the kubelet and
    /// kube-proxy, and waits until the node is Ready.
    pub fn start(cluster: &Cluster) -> Node {
        let c = components();
        let dir = run_dir().join("node");
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.as_path();
        let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_owned();
        let state = cluster.state_dir();
        let mut services = Vec::new();

        let mut kcm = Command::new(c.node_bin_dir.join("kube-controller-manager"));
        kcm.arg(format!("--kubeconfig={kubeconfig}"))
            .arg(format!("--authentication-kubeconfig={kubeconfig}"))
            .arg(format!("--authorization-kubeconfig={kubeconfig}"))
            .arg(format!(
                "--service-account-private-key-file={}",
                state.join("sa.key").display()
            ))
            .arg(format!(
                "--root-ca-file={}",
                state.join("certs/apiserver.crt").display()
            ))
            .args([
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                // No cloud, no node IPAM (the bridge's range is fixed).
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                "--v=1",
            ]);
        services.push(Service::start(
            "kube-controller-manager",
            &kcm,
            &d.join("kube-controller-manager.log"),
        ));
        let mut sched = Command::new(c.node_bin_dir.join("kube-scheduler"));
        sched
            .arg(format!("--kubeconfig={kubeconfig}"))
            .arg(format!("--authentication-kubeconfig={kubeconfig}"))
            .arg(format!("--authorization-kubeconfig={kubeconfig}"))
            .args([
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--v=1",
            ]);
        services.push(Service::start(
            "kube-scheduler",
            &sched,
            &d.join("kube-scheduler.log"),
        ));

        // containerd: CRI with the CNI bridge below, the sandbox image from
        // the node image. restrict_oom_score_adj: this machine lacks
        // CAP_SYS_RESOURCE (else every sandbox fails in runc).
        let cni_conf = d.join("cni");
        std::fs::create_dir_all(&cni_conf).unwrap();
        std::fs::write(
            cni_conf.join("10-edge-hmac.conflist"),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "edge-hmac",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": true,
                        "ipMasq": false,
                        "hairpinMode": true,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": d.join("cni-ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": true}},
                ],
            })
            .to_string(),
        )
        .unwrap();
        let socket = d.join("containerd/containerd.sock");
        let config = d.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
"#,
                root = d.join("containerd/root").display(),
                state = d.join("containerd/state").display(),
                socket = socket.display(),
                pause = image::PAUSE_IMAGE,
                cni = cni_conf.display(),
            ),
        )
        .unwrap();
        let mut containerd = Command::new("containerd");
        containerd.arg("--config").arg(&config);
        services.push(Service::start(
            "containerd",
            &containerd,
            &d.join("containerd.log"),
        ));
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .args(["--namespace", "k8s.io"])
                .args(args)
                .output()
                .expect("ctr (Debian's containerd)")
        };
        let up = wait_for(Duration::from_secs(30), || {
            ctr(&["version"]).status.success().then_some(())
        });
        assert!(
            up.is_some(),
            "containerd did not start\n{}",
            services[2].log_tail(30)
        );
        let archive = image::node_image(
            d,
            &[
                image::PAUSE_IMAGE,
                image::ENVOY_IMAGE,
                image::SHUTDOWN_MANAGER_IMAGE,
                image::MODULE_IMAGE,
            ],
        );
        let out = ctr(&["images", "import", archive.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&archive).unwrap();

        // CoreDNS: the cluster.local zone from the API server, on the node.
        let corefile = d.join("Corefile");
        std::fs::write(
            &corefile,
            format!(
                "cluster.local:53 {{\n    bind {NODE_IP}\n    errors\n    kubernetes cluster.local {{\n        kubeconfig {kubeconfig} test\n    }}\n}}\n"
            ),
        )
        .unwrap();
        let mut coredns = Command::new(c.coredns_bin_dir.join("coredns"));
        coredns.arg("-conf").arg(&corefile);
        services.push(Service::start("coredns", &coredns, &d.join("coredns.log")));

        // The kubelet. Eviction off: a test machine's disk may be fuller
        // than a node's thresholds allow.
        let resolv = d.join("resolv.conf");
        std::fs::write(&resolv, "# the pods resolve through the cluster DNS only\n").unwrap();
        let kubelet_config = d.join("kubelet.yaml");
        std::fs::write(
            &kubelet_config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication: {{anonymous: {{enabled: true}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: /{CGROUP_ROOT}
containerRuntimeEndpoint: unix://{socket}
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [{NODE_IP}]
resolvConf: {resolv}
evictionHard: {{memory.available: '0%', nodefs.available: '0%', imagefs.available: '0%', nodefs.inodesFree: '0%'}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 5s
fileCheckFrequency: 5s
",
                socket = socket.display(),
                resolv = resolv.display(),
            ),
        )
        .unwrap();
        let mut kubelet = Command::new(c.node_bin_dir.join("kubelet"));
        kubelet
            .arg(format!("--config={}", kubelet_config.display()))
            .arg(format!("--kubeconfig={kubeconfig}"))
            .arg("--root-dir=/var/lib/kubelet")
            .arg(format!("--cert-dir={}", d.join("kubelet-pki").display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg(format!("--node-ip={NODE_IP}"))
            .arg("--v=1");
        services.push(Service::start("kubelet", &kubelet, &d.join("kubelet.log")));

        // kube-proxy: iptables, NodePorts on the node's address; conntrack
        // sysctls left alone (they are the machine's).
        let proxy_config = d.join("kube-proxy.yaml");
        std::fs::write(
            &proxy_config,
            format!(
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
hostnameOverride: {NODE_NAME}
bindAddress: {NODE_IP}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: {POD_CIDR}
nodePortAddresses: [{NODE_IP}/32, 127.0.0.0/8]
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"
            ),
        )
        .unwrap();
        let mut proxy = Command::new(c.node_bin_dir.join("kube-proxy"));
        proxy.arg(format!("--config={}", proxy_config.display()));
        services.push(Service::start(
            "kube-proxy",
            &proxy,
            &d.join("kube-proxy.log"),
        ));

        let node = Node {
            containerd_socket: socket,
            services,
            dir,
        };
        let ready = wait_for(Duration::from_secs(90), || {
            node.assert_running();
            let out = cluster.kubectl(&[
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
        assert!(
            ready.is_some(),
            "the node is not Ready in 90 s\n{}",
            node.logs()
        );
        // The pods' service account in every namespace, and the cluster
        // CA they mount, come from the controller-manager.
        let sa = wait_for(Duration::from_secs(60), || {
            cluster
                .kubectl(&["-n", "default", "get", "serviceaccount", "default"])
                .status
                .success()
                .then_some(())
        });
        assert!(sa.is_some(), "no default ServiceAccount\n{}", node.logs());
        node
    }

    /// Panics with the logs when a component exited.
    #[track_caller]
    pub fn assert_running(&self) {
        for s in &self.services {
            if let Some(status) = s.exited() {
                panic!("a node component exited ({status})\n{}", self.logs());
            }
        }
    }

    /// The tail of every component's log, for failure messages.
    pub fn logs(&self) -> String {
        self.services
            .iter()
            .map(|s| s.log_tail(25))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The run's directory for the node's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the out-of-cluster Envoy Gateway known to the pods the way its
    /// in-cluster Service would: `envoy-gateway.envoy-gateway-system`
    /// (xDS 18000, wasm cache 18002), headless, its one endpoint the node.
    pub fn expose_eg(&self, cluster: &Cluster) {
        cluster.namespace(crate::egk8s::EG_NAMESPACE);
        cluster.apply(&format!(
            "apiVersion: v1
kind: Service
metadata: {{name: envoy-gateway, namespace: {ns}}}
spec:
  clusterIP: None
  ports:
  - {{name: grpc, port: 18000, protocol: TCP}}
  - {{name: wasm, port: 18002, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: envoy-gateway-node
  namespace: {ns}
  labels: {{kubernetes.io/service-name: envoy-gateway}}
addressType: IPv4
endpoints: [{{addresses: ['{NODE_IP}'], conditions: {{ready: true}}}}]
ports:
- {{name: grpc, port: 18000, protocol: TCP}}
- {{name: wasm, port: 18002, protocol: TCP}}
",
            ns = crate::egk8s::EG_NAMESPACE
        ));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet first, so that it does not restart what goes away;
        // the PID namespace's end takes the containers.
        while let Some(s) = self.services.pop() {
            s.stop();
        }
    }
}
