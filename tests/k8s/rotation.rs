//! The seed's rotation on the node, with its own commands, under load.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge_hmac_tests::aws::Moto;
use edge_hmac_tests::cli::Out;
use edge_hmac_tests::client::{Req, send};
use edge_hmac_tests::cluster::{Cluster, components, wait_for};
use edge_hmac_tests::egk8s::EG_NAMESPACE;
use edge_hmac_tests::eso::{force_sync, wait_external_secret};
use edge_hmac_tests::secrets::assert_no_secret;
use serde_json::Value;

use crate::edge::{Edge, PROXIES, get_proxies, proxy_pods, runtime};

/// `kubectl port-forward` to port 19000 (Envoy's admin, on the pod's
/// loopback) of every running proxy pod: what `rotate --admin` is given on
/// Kubernetes. The forwards end when the children are dropped.
struct AdminForwards {
    children: Vec<Child>,
    addrs: Vec<String>,
}

impl AdminForwards {
    fn open(cluster: &Cluster) -> AdminForwards {
        // The pods that serve: running and ready (not terminating).
        let pods: Vec<String> = proxy_pods()
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["containerStatuses"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().all(|c| c["ready"] == true))
            })
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        let mut children = Vec::new();
        let mut addrs = Vec::new();
        for pod in &pods {
            let mut child = cluster
                .kubectl_cmd()
                .args([
                    "-n",
                    EG_NAMESPACE,
                    "port-forward",
                    &format!("pod/{pod}"),
                    ":19000",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            // "Forwarding from 127.0.0.1:41234 -> 19000"
            let addr = line
                .split_whitespace()
                .find(|w| w.starts_with("127.0.0.1:"))
                .unwrap_or_else(|| panic!("port-forward to {pod} said: {line:?}"))
                .to_owned();
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            children.push(child);
            addrs.push(addr);
        }
        AdminForwards { children, addrs }
    }

    fn args(&self) -> Vec<String> {
        self.addrs
            .iter()
            .flat_map(|a| ["--admin".to_owned(), a.clone()])
            .collect()
    }
}

impl Drop for AdminForwards {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `edge-hmac rotate ARGS` against moto, with the proxies' admin forwards.
fn rotate(edge: &Edge, args: &[&str], forwards: &AdminForwards) -> Out {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = edge_hmac_tests::aws::cli(home.path());
    cmd.arg("rotate")
        .args(args)
        .args([
            "--env",
            &edge.env,
            "--endpoint-url",
            &Moto::shared().endpoint(),
        ])
        .args(forwards.args());
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the cluster steps `rotate` printed (its `kubectl` lines and the
/// `until …; do sleep 2; done` waits between them) as a user pastes them
/// into a shell, `$(date +%s)` included, in order; how many there were.
fn run_printed_steps(cluster: &Cluster, out: &Out) -> usize {
    let steps: Vec<&str> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("kubectl ") || l.starts_with("until "))
        .collect();
    let path = format!(
        "{}:{}",
        components().kube_bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -e\n{}\n", steps.join("\n"));
    let run = Command::new("timeout")
        .args(["300", "bash", "-c", &script])
        .env("PATH", &path)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the printed steps failed:\n{script}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    steps.len()
}

/// `edge-hmac load` against the edge, again and again in runs of 3 s (each
/// run reads AWSCURRENT, as a client that re-reads its key does), until
/// stopped; every run's JSON result.
struct Load {
    stop: Arc<AtomicBool>,
    runs: std::thread::JoinHandle<Vec<Value>>,
}

impl Load {
    fn start(edge: &Edge, url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let env = edge.env.clone();
        let runs = std::thread::spawn(move || {
            let mut results = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let home = tempfile::tempdir().unwrap();
                let mut cmd = edge_hmac_tests::aws::cli(home.path());
                cmd.args(["load", "--url", &url, "--env", &env])
                    .args(["--endpoint-url", &Moto::shared().endpoint()])
                    .args(["--concurrency", "4", "--duration", "3s", "--output", "json"]);
                let out = cmd.output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let json: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                    panic!(
                        "edge-hmac load printed no result: {text}\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
                results.push(json);
            }
            results
        });
        Load { stop, runs }
    }

    /// Stops after the current run; every run's result.
    fn finish(self) -> Vec<Value> {
        self.stop.store(true, Ordering::SeqCst);
        self.runs.join().unwrap()
    }
}

/// The number of 200s and everything else over all `runs`.
fn tally(runs: &[Value]) -> (u64, Vec<Value>) {
    let mut ok = 0;
    let mut bad = Vec::new();
    for r in runs {
        for (status, n) in r["status"].as_object().unwrap() {
            if status == "200" {
                ok += n.as_u64().unwrap();
            } else {
                bad.push(serde_json::json!({"status": status, "count": n, "errors": r["errors"]}));
            }
        }
    }
    (ok, bad)
}

/// Waits until the proxy Deployment has rolled out `replicas` ready pods
/// of its latest generation.
fn wait_rolled_out(cluster: &Cluster, replicas: u32) {
    let ok = wait_for(Duration::from_secs(180), || {
        let got = get_proxies(
            "deployment",
            "jsonpath={.items[0].status.updatedReplicas}/{.items[0].status.readyReplicas}/{.items[0].status.replicas}",
        );
        (got == format!("{replicas}/{replicas}/{replicas}")).then_some(())
    });
    assert!(
        ok.is_some(),
        "the proxies did not roll out to {replicas} ready replicas\n{}",
        cluster.kubectl_ok(&["-n", EG_NAMESPACE, "get", "pods", "-o", "wide"])
    );
}

/// The seed's rotation end to end with its own commands, on two proxy
/// replicas under continuous signed load: `edge-hmac rotate begin`,
/// `promote` and `retire`, each followed by the `kubectl annotate …
/// force-sync` and `kubectl rollout restart` lines it prints, run as
/// printed; `edge-hmac load` (re-reading AWSCURRENT every 3 s) sees no
/// failed request through three rolling restarts, and at the end the
/// retired key is refused.
pub fn rotation_under_load_with_two_replicas_fails_no_request() {
    runtime().block_on(async {
        let edge = Edge::start().await;
        let cluster = Cluster::shared();
        let addr = edge.node_port();
        edge.wait_serving(addr).await;
        wait_external_secret(
            cluster,
            EG_NAMESPACE,
            "hmac-wasm-config-rotation",
            "True",
            Duration::from_secs(90),
        );
        // Two replicas: EG leaves the count to the user when the EnvoyProxy
        // does not set one (it omits the field from its apply).
        cluster.kubectl_ok(&[
            "-n", EG_NAMESPACE, "scale", "deployment", "-l", PROXIES, "--replicas=2",
        ]);
        wait_rolled_out(cluster, 2);
        let k1 = edge.key.clone();
        let secret_id = format!("crawbl/{}/edge/hmac", edge.env);
        let moto = Moto::shared();

        let load = Load::start(&edge, format!("http://{addr}/v1/load"));
        let mut printed = 0;
        // begin: AWSPENDING staged; sync the rotation Secret, restart.
        let out = rotate(&edge, &["begin"], &AdminForwards::open(cluster));
        assert_eq!(out.code, 0, "{}", out.all());
        let k2 = moto.key_at(&secret_id, "AWSPENDING").await.unwrap();
        printed += run_printed_steps(cluster, &out);
        wait_rolled_out(cluster, 2);
        // promote: every proxy holds the pending key (checked by rotate
        // through the forwards), AWSCURRENT moves; sync both, restart.
        let mut last = None;
        let promoted = wait_for(Duration::from_secs(90), || {
            let out = rotate(&edge, &["promote"], &AdminForwards::open(cluster));
            if out.code == 0 {
                return Some(out);
            }
            last = Some(out.all());
            None
        })
        .unwrap_or_else(|| panic!("promote kept refusing after the restart: {last:?}"));
        assert_eq!(moto.key_at(&secret_id, "AWSCURRENT").await.unwrap(), k2);
        printed += run_printed_steps(cluster, &promoted);
        wait_rolled_out(cluster, 2);
        // retire: AWSPREVIOUS removed after a quiet window; sync, restart.
        let forwards = AdminForwards::open(cluster);
        let out = rotate(&edge, &["retire", "--window", "5s"], &forwards);
        drop(forwards);
        assert_eq!(out.code, 0, "{}", out.all());
        printed += run_printed_steps(cluster, &out);
        wait_rolled_out(cluster, 2);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let runs = load.finish();
        assert!(printed >= 6, "rotate printed {printed} kubectl steps");

        let (ok, bad) = tally(&runs);
        println!(
            "rotation under load: {ok} requests answered 200, {} runs of `edge-hmac load`, {} not 200",
            runs.len(),
            bad.len()
        );
        assert!(bad.is_empty(), "failed requests during the rotation: {bad:?}");
        assert!(ok >= 200, "only {ok} requests were sent in {} runs", runs.len());
        let addr = edge.node_port();
        let k2_status = send(addr, &Req::new("GET", "/v1/after").signed(&k2, &edge.env)).await;
        assert_eq!(k2_status.status, 200, "{}", k2_status.text());
        let k1_status = send(addr, &Req::new("GET", "/v1/after").signed(&k1, &edge.env)).await;
        assert_eq!(k1_status.status, 401, "the retired key: {}", k1_status.text());
        assert_no_secret(&edge.eg.logs(), &[&k1, &k2]);
    });
}

/// A deleted current secret in Secrets Manager: the ExternalSecret goes
/// Ready=False, the running proxies keep verifying with the key they hold,
/// and after `kubectl rollout restart` the new pods start from the Secret
/// ESO kept (the kit's `Retain`) and verify with it too.
pub fn a_deleted_secret_keeps_the_edge_serving_through_a_restart() {
    runtime().block_on(async {
        let edge = Edge::start().await;
        let cluster = Cluster::shared();
        let addr = edge.node_port();
        edge.wait_serving(addr).await;
        let signed = || Req::new("GET", "/v1/kept").signed(&edge.key, &edge.env);
        assert_eq!(send(addr, &signed()).await.status, 200);
        let before = pod_names();

        Moto::shared()
            .call(
                "DeleteSecret",
                serde_json::json!({
                    "SecretId": format!("crawbl/{}/edge/hmac", edge.env),
                    "ForceDeleteWithoutRecovery": true,
                }),
            )
            .await;
        force_sync(cluster, EG_NAMESPACE, "hmac-wasm-config");
        let (reason, _) = wait_external_secret(
            cluster,
            EG_NAMESPACE,
            "hmac-wasm-config",
            "False",
            Duration::from_secs(90),
        );
        assert_eq!(reason, "SecretSyncedError");
        let resp = send(addr, &signed()).await;
        assert_eq!(resp.status, 200, "the running proxy: {}", resp.text());

        cluster.kubectl_ok(&[
            "-n",
            EG_NAMESPACE,
            "rollout",
            "restart",
            "deployment",
            "-l",
            PROXIES,
        ]);
        wait_rolled_out(cluster, 1);
        let after = pod_names();
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "no new pod: {before:?} -> {after:?}"
        );
        edge.wait_serving(addr).await;
        let resp = send(addr, &signed()).await;
        assert_eq!(resp.status, 200, "the restarted proxy: {}", resp.text());
    });
}

/// The names of the proxy pods that are not terminating.
fn pod_names() -> Vec<String> {
    proxy_pods()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}
