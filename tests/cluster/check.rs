//! `edge-hmac check` against the real thing: the kit applied to the real
//! kube-apiserver, synced by the real ESO from moto, statuses written by the
//! real Envoy Gateway with its Kubernetes provider ([`EgKubernetes`]), and a
//! proxy run by the real Envoy Gateway in host mode ([`EnvoyGateway`]),
//! reached through `--admin`. What stays untested: reaching proxy pods by
//! port-forward (no kubelet runs pods here).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use edge_hmac::render::gateway::{GatewayOptions, Resource, WasmCode};
use edge_hmac_core::config::PluginConfig;
use edge_hmac_tests::aws::{Moto, edge_value, unique_env};
use edge_hmac_tests::build::{filter_wasm, module_so};
use edge_hmac_tests::client::{Req, send};
use edge_hmac_tests::cluster::{Cluster, free_port, wait_for};
use edge_hmac_tests::eg::{EnvoyGateway, FileServer, env_from_envoy_proxy};
use edge_hmac_tests::egk8s::EgKubernetes;
use edge_hmac_tests::eso::{Eso, force_sync, secret_data, wait_external_secret};
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::upstream::Upstream;
use edge_hmac_tests::yaml::documents;
use serde_json::Value;

const SYNC: Duration = Duration::from_secs(90);

/// One environment's kit in the shared cluster, with names of its own.
struct Edge {
    o: GatewayOptions,
    kit: String,
    /// Serves the module (kept alive for Envoy Gateway's downloads).
    _files: FileServer,
    port: u16,
    upstream: Upstream,
    dir: tempfile::TempDir,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A self-signed certificate valid for `days`, as a `kubernetes.io/tls`
/// Secret manifest.
fn tls_secret(dir: &std::path::Path, ns: &str, name: &str, days: u32) -> String {
    let (crt, key) = (
        dir.join(format!("{days}.crt")),
        dir.join(format!("{days}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=edge.test",
            "-days",
        ])
        .arg(days.to_string())
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine as _;
    let b64 = |p: &std::path::Path| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap())
    };
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": ns},
        "data": {"tls.crt": b64(&crt), "tls.key": b64(&key)},
    })
    .to_string()
}

/// The HTTPRoutes `<env>-team/api` (`/`) and `<env>-team/open` (`/open`)
/// on the edge Gateway, each to a loopback Backend (test-only, as in
/// `gateway.rs`).
fn route(o: &GatewayOptions, upstream: SocketAddr) -> String {
    let ns = format!("{}-team", o.environment);
    edge_hmac_tests::kit::routes_on(
        (&o.gateway_namespace, &o.gateway_name),
        &[
            (&ns, "api", "/", upstream),
            (&ns, "open", "/open", upstream),
        ],
    )
}

/// A team's Lua policy on the route `open`, without `mergeType`: it
/// replaces the edge check there.
fn team_policy(o: &GatewayOptions) -> String {
    serde_json::json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": {"name": "open-lua", "namespace": format!("{}-team", o.environment)},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "open"}],
            "lua": [{"type": "Inline", "inline": "function envoy_on_request(h) end"}],
        },
    })
    .to_string()
}

impl Edge {
    /// The kit for a fresh environment applied to the API server and synced;
    /// `native`: the native module at its path on this host (the proxy's).
    async fn start(native: bool) -> Edge {
        let cluster = Cluster::shared();
        let _eso = Eso::shared();
        let moto = Moto::shared();
        let env = unique_env();
        let wasm = std::fs::read(filter_wasm()).unwrap();
        let files = FileServer::start(&[("edge_hmac_filter.wasm", &wasm)]);
        let mut o = crate::eso::kit(&env);
        o.code = if native {
            WasmCode::NativeLocal {
                path: module_so().display().to_string(),
            }
        } else {
            WasmCode::Http {
                url: format!("http://{}/edge_hmac_filter.wasm", files.addr),
                sha256: Some(sha256_hex(&wasm)),
            }
        };
        o.plugin = PluginConfig {
            expected_environment: Some(env.clone()),
            ..PluginConfig::default()
        };
        o.gateway_class = format!("{env}-edge-hmac");
        o.envoy_proxy_name = format!("{env}-edge-hmac");
        let port = free_port();
        o.plain_http = true;
        o.http_port = port;
        o.https_port = free_port();
        let kit = o
            .to_yaml("edge-hmac render gateway (tests/cluster/check.rs)")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let upstream = Upstream::start().await;

        moto.create_secret(&o.secret_id, &edge_value(&secret(), &env))
            .await;
        edge_hmac_tests::eso::create_aws_credentials(
            cluster,
            &o.credentials_namespace,
            &o.credentials_secret,
        );
        cluster.namespace(&o.proxy_namespace);
        cluster.namespace(&o.gateway_namespace);
        for r in o.resources() {
            cluster.apply(&serde_json::to_string(&r).unwrap());
        }
        cluster.apply(&tls_secret(
            dir.path(),
            &o.gateway_namespace,
            "edge-tls",
            90,
        ));
        cluster.apply(&route(&o, upstream.addr));
        wait_external_secret(cluster, &o.proxy_namespace, &o.target_secret, "True", SYNC);
        wait_external_secret(
            cluster,
            &o.proxy_namespace,
            &o.rotation_secret,
            "True",
            SYNC,
        );
        Edge {
            o,
            kit,
            _files: files,
            port,
            upstream,
            dir,
        }
    }

    fn cluster(&self) -> &'static Cluster {
        Cluster::shared()
    }

    /// Envoy Gateway (Kubernetes provider) writes the status of the current
    /// objects: waits until the kit's policy shows `want` (a condition type
    /// that is True, or, with `!`, that is absent or not True), then stops.
    fn statuses(&self, want: &str) {
        let cluster = self.cluster();
        let eg = EgKubernetes::start(cluster);
        let (negate, kind) = match want.strip_prefix('!') {
            Some(k) => (true, k),
            None => (false, want),
        };
        let ns = &self.o.gateway_namespace;
        let name = &self.o.envoy_proxy_name;
        eg.wait(&format!("policy condition {want}"), || {
            let p = cluster.get_json("envoyextensionpolicy", ns, name)?;
            let conds = p["status"]["ancestors"][0]["conditions"]
                .as_array()?
                .clone();
            // Only once EG has looked at it at all.
            conds.iter().find(|c| c["type"] == "Accepted")?;
            let on = conds
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True");
            (on != negate).then_some(())
        });
        eg.stand_in_for_kubelet(cluster, ns, &self.o.gateway_name);
        eg.wait("Gateway Programmed", || {
            let gw = cluster.get_json("gateway", ns, &self.o.gateway_name)?;
            gw["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Programmed" && c["status"] == "True")
                .then_some(())
        });
        eg.stop();
    }

    /// The resources the host-mode EG reads: the kit's Gateway side, the
    /// TLS Secret, the route (and `extra`).
    fn eg_resources(&self, extra: &str) -> String {
        let mut out = edge_hmac_tests::kit::gateway_side(&self.kit);
        let tls = self
            .cluster()
            .get_json("secret", &self.o.gateway_namespace, "edge-tls")
            .unwrap();
        out.push_str(&format!(
            "---\n{}\n",
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "edge-tls", "namespace": self.o.gateway_namespace}, "data": tls["data"]})
        ));
        out.push_str(&route(&self.o, self.upstream.addr));
        out.push_str(extra);
        out
    }

    /// The proxy's environment as kubelet resolves it from the Secrets ESO
    /// wrote now.
    fn kubelet_env(&self) -> Vec<(String, String)> {
        let docs = documents(&self.kit);
        let ep = docs.iter().find(|d| d["kind"] == "EnvoyProxy").unwrap();
        let ns = self.o.proxy_namespace.clone();
        env_from_envoy_proxy(ep, &|name| secret_data(self.cluster(), &ns, name)).unwrap()
    }

    /// Host-mode EG serving the kit (and `extra`); returns once an unsigned
    /// request gets `status`.
    async fn proxy(&self, extra: &str, status: u16) -> EnvoyGateway {
        let eg = EnvoyGateway::start(&self.eg_resources(extra), &self.kubelet_env());
        self.wait_serving(&eg, status).await;
        eg
    }

    /// Waits until an unsigned request gets `status` from the edge.
    async fn wait_serving(&self, eg: &EnvoyGateway, status: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        crate::gateway::wait_for_status(eg, addr, "/x", status, |_| {}).await;
    }

    /// `edge-hmac check` for this kit (JSON), with `extra` flags.
    fn check(&self, admin: &str, extra: &[&str]) -> (i32, Value) {
        let out = self.check_out(admin, &[&["--output", "json"], extra].concat());
        let code = out.code;
        let report: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}), exit {code}: {}", out.all()));
        assert_eq!(report["exit_code"], code, "{report:#}");
        (code, report)
    }

    /// `edge-hmac check` for this kit (human output): exit code, stdout.
    fn check_raw(&self, admin: &str, extra: &[&str]) -> (i32, String) {
        let out = self.check_out(admin, extra);
        (out.code, out.stdout)
    }

    /// Runs `edge-hmac check` on this kit's names, the kubeconfig in
    /// `KUBECONFIG`, `--admin admin`, a 1 s window unless `extra` sets one.
    fn check_out(&self, admin: &str, extra: &[&str]) -> edge_hmac_tests::cli::Out {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = edge_hmac_tests::aws::cli(&home);
        cmd.args([
            "check",
            "--env",
            &self.o.environment,
            "--endpoint-url",
            &Moto::shared().endpoint(),
        ])
        // The kubeconfig as kubectl finds it; a test may override it with
        // --kubeconfig.
        .env("KUBECONFIG", &self.cluster().kubeconfig)
        .args(["--gateway-namespace", &self.o.gateway_namespace])
        .args(["--proxy-namespace", &self.o.proxy_namespace])
        .args(["--policy-name", &self.o.envoy_proxy_name])
        .args(["--store-name", &self.o.store_name])
        .args(["--admin", admin, "--timeout", "5"])
        .args(extra);
        if !extra.contains(&"--window") {
            cmd.args(["--window", "1s"]);
        }
        // Scanned: no key this test process knows is in the output.
        edge_hmac_tests::cli::output(cmd)
    }
}

/// `(group/name, status)` of every check not ok.
fn problems(report: &Value) -> BTreeMap<String, String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| {
            (
                format!(
                    "{}/{}",
                    c["group"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                ),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn find<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

/// Every check that is not ok has a hint and a doc link.
#[track_caller]
fn assert_hints(report: &Value) {
    for c in report["checks"].as_array().unwrap() {
        if c["status"] != "ok" {
            assert!(
                c["hint"].as_str().is_some_and(|h| !h.is_empty()),
                "no hint: {c}"
            );
            assert!(
                c["doc"].as_str().is_some_and(|d| d.starts_with("docs/")),
                "no doc link: {c}"
            );
        }
    }
}

/// Exactly `want` (`group/name`, status) are not ok, each with its hint.
#[track_caller]
fn expect(report: &Value, want: &[(&str, &str)]) {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(problems(report), want, "{report:#}");
    assert_hints(report);
}

fn admin_of(eg: &EnvoyGateway) -> String {
    eg.proxy_admin()
        .expect("the host-mode proxy's admin address")
        .to_string()
}

/// A healthy kit passes every check (exit 0, human and JSON); then each way
/// of breaking it fails the matching check, with its hint, and only that
/// one: a certificate expiring in 3 days (warning, exit 0), the admission
/// policy deleted, Secrets Manager rotated without a force-sync, a
/// force-sync without a proxy restart, refused traffic in the window
/// (warning), the current secret deleted (the checks that compare with it
/// cannot be made), an unreachable proxy or API server, an identity
/// without `render check-rbac`'s access (could not check, exit 31); with
/// that access, the same verdict as the admin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_a_healthy_edge_and_names_each_break() {
    let edge = Edge::start(false).await;
    let cluster = edge.cluster();
    let moto = Moto::shared();
    let o = &edge.o;
    edge.statuses("!Overridden");
    let mut eg = edge.proxy("", 401).await;
    let admin = admin_of(&eg);

    // Healthy: every check ok.
    let (code, report) = edge.check(&admin, &[]);
    expect(&report, &[]);
    assert_eq!(code, 0);
    assert!(
        report["checks"].as_array().unwrap().len() >= 20,
        "{report:#}"
    );
    let (code, text) = edge.check_raw(&admin, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("✔ routes [") && text.contains("Status: the edge is protected"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "colour on a pipe");

    // A certificate expiring in 3 days: a warning; exit 0.
    cluster.apply(&tls_secret(
        edge.dir.path(),
        &o.gateway_namespace,
        "edge-tls",
        3,
    ));
    let (code, report) = edge.check(&admin, &[]);
    expect(&report, &[("envoy-gateway/certificate", "warn")]);
    assert_eq!(code, 0);
    assert!(
        find(&report, "certificate")["message"]
            .as_str()
            .unwrap()
            .contains("expires in 2 days")
            || find(&report, "certificate")["message"]
                .as_str()
                .unwrap()
                .contains("expires in 3 days")
    );
    cluster.apply(&tls_secret(
        edge.dir.path(),
        &o.gateway_namespace,
        "edge-tls",
        90,
    ));

    // The admission policy deleted.
    let vap = o.admission_policy_name();
    cluster.kubectl_ok(&["delete", "validatingadmissionpolicy", &vap]);
    let (code, report) = edge.check(&admin, &[]);
    expect(&report, &[("envoy-gateway/admission-policy", "fail")]);
    assert_eq!(code, 30);
    for r in o.resources() {
        if matches!(r, Resource::ValidatingAdmissionPolicy(_)) {
            cluster.apply(&serde_json::to_string(&r).unwrap());
        }
    }

    // Secrets Manager rotated, the ExternalSecrets not force-synced: the
    // Secrets no longer mirror it (the proxy still matches its Secret).
    let new_key = secret();
    moto.put_secret_value(&o.secret_id, &edge_value(&new_key, &o.environment))
        .await;
    let (code, report) = edge.check(&admin, &[]);
    expect(
        &report,
        &[
            ("external-secrets/secret-current", "fail"),
            ("external-secrets/secret-rotation", "fail"),
        ],
    );
    assert_eq!(code, 30);
    assert!(
        find(&report, "secret-current")["hint"]
            .as_str()
            .unwrap()
            .contains("force-sync")
    );

    // Force-synced, the proxy not restarted.
    force_sync(cluster, &o.proxy_namespace, &o.target_secret);
    force_sync(cluster, &o.proxy_namespace, &o.rotation_secret);
    let synced = wait_for(SYNC, || {
        (secret_data(cluster, &o.proxy_namespace, &o.target_secret)?["hmac_secret"] == new_key)
            .then_some(())
    });
    assert!(synced.is_some(), "ESO did not sync the new key");
    let synced = wait_for(SYNC, || {
        secret_data(cluster, &o.proxy_namespace, &o.rotation_secret)?
            .contains_key("hmac_secret_previous")
            .then_some(())
    });
    assert!(synced.is_some(), "ESO did not sync the previous key");
    let (_, report) = edge.check(&admin, &[]);
    expect(&report, &[("proxies/keys", "fail")]);
    assert!(
        find(&report, "keys")["hint"]
            .as_str()
            .unwrap()
            .contains("rollout restart")
    );

    // Restarted: healthy again.
    eg.restart(&edge.kubelet_env());
    edge.wait_serving(&eg, 401).await;
    let admin = admin_of(&eg);
    let (code, report) = edge.check(&admin, &[]);
    expect(&report, &[]);
    assert_eq!(code, 0);

    // Refused requests during the window: the share by code warns (exit 0).
    let addr = SocketAddr::from(([127, 0, 0, 1], edge.port));
    let traffic = tokio::spawn(async move {
        // After check's first read of the counters, inside its window.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        for _ in 0..20 {
            send(addr, &Req::new("GET", "/unsigned")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (code, report) = tokio::task::block_in_place(|| {
        edge.check(&admin, &["--window", "4s", "--min-rejected", "5"])
    });
    traffic.await.unwrap();
    expect(&report, &[("proxies/rejections", "warn")]);
    assert_eq!(code, 0);
    let msg = find(&report, "rejections")["message"].as_str().unwrap();
    assert!(
        msg.contains("100.0% of 20 requests refused") && msg.contains("missing_signature 20"),
        "{msg}"
    );

    // Run as an identity that has only what `render check-rbac` grants
    // (impersonated through the admin kubeconfig): the same verdict. As
    // one without it: every cluster check could not be made, with the hint.
    let env = &o.environment;
    let user = format!("{env}-checker");
    cluster.apply(&edge_hmac_tests::kit::render_what(
        "check-rbac",
        &[
            "--user",
            &user,
            "--name",
            &format!("{env}-edge-hmac-check"),
            "--gateway-namespace",
            &o.gateway_namespace,
            "--proxy-namespace",
            &o.proxy_namespace,
            "--policy-name",
            &o.envoy_proxy_name,
            "--store-name",
            &o.store_name,
        ],
    ));
    let as_user = |name: &str| {
        let path = edge.dir.path().join(format!("kubeconfig-as-{name}"));
        let text = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            if line.trim_start().starts_with("token: ") {
                out.push_str(&format!("    as: {name}\n"));
            }
        }
        assert!(out.contains("as: "), "{text}");
        std::fs::write(&path, out).unwrap();
        path
    };
    let granted = as_user(&user);
    let (code, report) = edge.check(&admin, &["--kubeconfig", granted.to_str().unwrap()]);
    expect(&report, &[]);
    assert_eq!(code, 0);
    let denied = as_user(&format!("{env}-nobody"));
    let (code, report) = edge.check(&admin, &["--kubeconfig", denied.to_str().unwrap()]);
    assert_eq!(code, 31, "{report:#}");
    let p = problems(&report);
    assert!(
        p.len() >= 10 && p.values().all(|s| s == "unknown"),
        "{report:#}"
    );
    // The proxy's keys are still compared with Secrets Manager; which
    // build the policy names cannot be known, so `filter` cannot pass.
    assert!(
        p.keys().all(|k| k.starts_with("external-secrets/")
            || k.starts_with("envoy-gateway/")
            || k == "proxies/filter"),
        "{report:#}"
    );
    assert_eq!(
        p.get("proxies/filter").map(String::as_str),
        Some("unknown"),
        "{report:#}"
    );
    assert_hints(&report);
    assert!(
        find(&report, "gateway")["message"]
            .as_str()
            .unwrap()
            .contains("render check-rbac"),
        "{report:#}"
    );

    // An unreachable proxy, then an unreachable API server: could not
    // check (31), never a pass.
    let closed = format!("127.0.0.1:{}", free_port());
    let (code, report) = edge.check(&closed, &[]);
    expect(&report, &[("proxies/reachable", "unknown")]);
    assert_eq!(code, 31);
    let bad = edge.dir.path().join("unreachable-kubeconfig");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cluster.kubeconfig)
            .unwrap()
            .replace(
                &cluster.server,
                &format!("https://127.0.0.1:{}", free_port()),
            ),
    )
    .unwrap();
    let (code, report) = edge.check(&admin, &["--kubeconfig", bad.to_str().unwrap()]);
    assert_eq!(code, 31, "{report:#}");
    let p = problems(&report);
    assert_eq!(
        p.get("external-secrets/api-server").map(String::as_str),
        Some("unknown"),
        "{report:#}"
    );
    assert_eq!(
        p.get("envoy-gateway/api-server").map(String::as_str),
        Some("unknown"),
        "{report:#}"
    );
    assert!(p.values().all(|s| s == "unknown"), "{report:#}");
    assert_eq!(
        p.get("proxies/filter").map(String::as_str),
        Some("unknown"),
        "{report:#}"
    );
    assert_hints(&report);

    // The current secret deleted in Secrets Manager.
    moto.call(
        "DeleteSecret",
        serde_json::json!({"SecretId": o.secret_id, "ForceDeleteWithoutRecovery": true}),
    )
    .await;
    let (code, report) = edge.check(&admin, &[]);
    assert_eq!(code, 30);
    let p = problems(&report);
    assert_eq!(
        p.get("secrets-manager/current-version").map(String::as_str),
        Some("fail"),
        "{report:#}"
    );
    assert_eq!(
        p.values().filter(|s| *s == "fail").count(),
        1,
        "only the secret fails: {report:#}"
    );
    assert_eq!(
        p.keys().cloned().collect::<Vec<_>>(),
        [
            "external-secrets/secret-current",
            "external-secrets/secret-rotation",
            "secrets-manager/current-version"
        ]
        .map(String::from),
        "the mirrors cannot be judged: {report:#}"
    );
    assert_hints(&report);
    drop(eg);
}

/// A route policy without `mergeType` that predates the admission policy
/// (which refuses it now) takes the signature check off its route:
/// `check` names the route and the policy three ways — from the objects
/// (the admission rule applied to what exists), from Envoy Gateway's status
/// (the kit's policy Overridden) and from the proxy's `/config_dump` (the
/// filter not enabled on that route) — and nothing else fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_a_route_policy_created_before_the_admission_policy() {
    let edge = Edge::start(false).await;
    let cluster = edge.cluster();
    let o = &edge.o;
    // The policy as it would be had it been created before the admission
    // policy: put straight into storage (every kit's admission policy in
    // this shared cluster refuses it now).
    let team: Value = serde_json::from_str(&team_policy(o)).unwrap();
    cluster.put_past_admission("gateway.envoyproxy.io", "envoyextensionpolicies", &team);
    let team_ns = format!("{}-team", o.environment);
    let seen = wait_for(Duration::from_secs(30), || {
        cluster.get_json("envoyextensionpolicy", &team_ns, "open-lua")
    });
    assert!(
        seen.is_some(),
        "the API server does not show the stored policy"
    );
    // The same policy is refused now (a server-side dry run). Which of the
    // shared cluster's kit admission policies the API server names is not
    // fixed (each refuses it cluster-wide); that this kit's own is
    // installed as rendered and denies is `check`'s `admission-policy`,
    // which stays ok below.
    let refused = wait_for(Duration::from_secs(30), || {
        let again = cluster.kubectl_stdin(
            &["apply", "--dry-run=server", "-f", "-"],
            &team_policy(o).replace("open-lua", "open-lua-2"),
        );
        let err = String::from_utf8_lossy(&again.stderr).into_owned();
        (!again.status.success() && err.contains("keep-signature-check")).then_some(())
    });
    assert!(
        refused.is_some(),
        "no admission policy refuses the same policy"
    );

    edge.statuses("Overridden");
    let eg = edge.proxy(&format!("---\n{}\n", team_policy(o)), 401).await;
    let unsigned = send(
        SocketAddr::from(([127, 0, 0, 1], edge.port)),
        &Req::new("GET", "/open/x"),
    )
    .await;
    assert_eq!(
        unsigned.status, 200,
        "reproduced: the replaced route answers unsigned requests"
    );

    let (code, report) = edge.check(&admin_of(&eg), &[]);
    expect(
        &report,
        &[
            ("envoy-gateway/routes-objects", "fail"),
            ("envoy-gateway/routes-status", "fail"),
            ("proxies/routes", "fail"),
        ],
    );
    assert_eq!(code, 30);
    let team = format!("{}-team", o.environment);
    let objects = find(&report, "routes-objects")["message"].as_str().unwrap();
    assert!(
        objects.contains(&format!("policy {team}/open-lua on HTTPRoute {team}/open")),
        "{objects}"
    );
    let status = find(&report, "routes-status")["message"].as_str().unwrap();
    assert!(
        status.contains("Overridden") && status.contains(&format!("{team}/open")),
        "{status}"
    );
    let dump = find(&report, "routes")["message"].as_str().unwrap();
    assert!(
        dump.contains(&format!("httproute/{team}/open/"))
            && !dump.contains(&format!("httproute/{team}/api/")),
        "{dump}"
    );
}

/// The native module as the kit delivers it (a local path the EnvoyProxy
/// registers): a healthy edge passes every check, and the proxy is seen to
/// run the native module the policy names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_a_healthy_native_edge() {
    let edge = Edge::start(true).await;
    edge.statuses("!Overridden");
    let eg = edge.proxy("", 401).await;
    let (code, report) = edge.check(&admin_of(&eg), &[]);
    expect(&report, &[]);
    assert_eq!(code, 0);
    let filter = find(&report, "filter")["message"].as_str().unwrap();
    assert_eq!(filter, "runs the native module, as the policy names");
    let pinned = find(&report, "module-pinned")["message"].as_str().unwrap();
    assert!(pinned.contains("local path"), "{pinned}");
}

/// The module's sha256 removed from the kit's policy: `module-pinned`
/// fails; Envoy Gateway (stopped) has not looked at the changed policy, so
/// its status is stale and the checks that read it cannot be made, rather
/// than passing on the old status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_an_unpinned_module_and_distrusts_stale_status() {
    let edge = Edge::start(false).await;
    let cluster = edge.cluster();
    edge.statuses("!Overridden");
    let eg = edge.proxy("", 401).await;
    let policy = edge
        .o
        .resources()
        .into_iter()
        .find(|r| matches!(r, Resource::EnvoyExtensionPolicy(_)))
        .unwrap();
    let mut unpinned = serde_json::to_value(&policy).unwrap();
    unpinned["spec"]["wasm"][0]["code"]["http"]
        .as_object_mut()
        .unwrap()
        .remove("sha256");
    cluster.apply(&unpinned.to_string());
    let (code, report) = edge.check(&admin_of(&eg), &[]);
    expect(
        &report,
        &[
            ("envoy-gateway/module-pinned", "fail"),
            ("envoy-gateway/extension-policy", "unknown"),
            ("envoy-gateway/routes-status", "unknown"),
        ],
    );
    assert_eq!(code, 30);
    assert!(
        find(&report, "module-pinned")["message"]
            .as_str()
            .unwrap()
            .contains("without a sha256"),
        "{report:#}"
    );
}
