//! The kit run by the real Envoy Gateway (v1.9.0, standalone: the File
//! provider and Host infrastructure) with the filter delivered as users
//! deliver it (an HTTP URL and its sha256, through EG's wasm cache), the
//! proxy's keys coming from the Secrets the real ESO wrote.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use edge_hmac::nonce_store::{self, NonceStoreConfig, RedisUrl};
use edge_hmac::render::envoy::{Module, NONCE_STORE_CLUSTER};
use edge_hmac_core::config::parse;
use edge_hmac_core::scheme::TagEncoding;
use edge_hmac_tests::aws::{Moto, edge_value, unique_env};
use edge_hmac_tests::build::{filter_wasm, module_so};
use edge_hmac_tests::client::{Body, Req, now, send};
use edge_hmac_tests::cluster::{Cluster, free_port};
use edge_hmac_tests::eg::{
    EnvoyGateway, FileServer, egctl_bootstrap, env_from_envoy_proxy,
    test_only_nonce_store_on_loopback,
};
use edge_hmac_tests::envoy::validate_file_on;
use edge_hmac_tests::eso::{
    Eso, create_aws_credentials, force_sync, secret_data, wait_external_secret,
};
use edge_hmac_tests::kit::{
    NONCE_STORE_ARGS, filter_entry, gateway_side, kind, render_cli, routes_on,
};
use edge_hmac_tests::redis::{Redis, RedisOpts};
use edge_hmac_tests::secrets::{assert_no_secret, nonce, secret};
use edge_hmac_tests::target::{EnvoyVersion, Target};
use edge_hmac_tests::upstream::Upstream;
use edge_hmac_tests::yaml::documents;
use serde_json::Value;

/// The kit as `render gateway --module native` emits it for `env`, with
/// the native module at its (absolute) path on this host, which is the
/// proxy's, and the listener on `port`.
fn render_native_kit(env: &str, port: u16, extra: &str) -> String {
    render_cli(&format!(
        "--env {env} --module native --module-path {} --plain-http --no-https --http-port {port} {extra}",
        module_so().display()
    ))
}

/// The kit as `render gateway` emits it for `env`, with the module at
/// `files` and the listener on `port`; every other setting is the default
/// (Gateway `edge/edge`, proxies and Secrets in `envoy-gateway-system`,
/// bootstrap credential `external-secrets/aws-credentials`).
fn render_kit(env: &str, files: &FileServer, port: u16, extra: &str) -> String {
    render_cli(&format!(
        "--env {env} --wasm-url http://{}/edge_hmac_filter.wasm --wasm-file {} --plain-http --no-https --http-port {port} {extra}",
        files.addr,
        filter_wasm().display()
    ))
}

/// A fresh environment, the built filter served on loopback, a free
/// listener port and the kit rendered for them.
fn kit_with_module() -> (String, FileServer, u16, String) {
    let env = unique_env();
    let wasm = std::fs::read(filter_wasm()).unwrap();
    let files = FileServer::start(&[("edge_hmac_filter.wasm", &wasm)]);
    let port = free_port();
    let kit = render_kit(&env, &files, port, "");
    (env, files, port, kit)
}

/// The resources EG reads: the kit's Gateway-side documents (the ESO
/// objects and the admission policy belong to the API server), plus an
/// HTTPRoute `ns/name` on `prefix` to a loopback Backend.
fn gateway_resources(kit: &str, routes: &[(&str, &str, &str, SocketAddr)]) -> String {
    gateway_side(kit) + &routes_on(("edge", "edge"), routes)
}

/// Sends an unsigned `GET path` every 250 ms until the edge answers
/// `status` (90 s at most; panics with EG's logs otherwise). `check` sees
/// every answer on the way, for what must never happen meanwhile.
pub(crate) async fn wait_for_status(
    eg: &EnvoyGateway,
    addr: SocketAddr,
    path: &str,
    status: u16,
    check: impl Fn(&edge_hmac_tests::client::Resp),
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut last = String::from("no answer");
    while std::time::Instant::now() < deadline {
        assert!(!eg.exited(), "Envoy Gateway exited\n{}", eg.logs());
        if let Ok(mut conn) = edge_hmac_tests::client::Conn::h1(addr).await
            && let Ok(resp) = conn.send(&Req::new("GET", path)).await
        {
            check(&resp);
            if resp.status == status {
                return;
            }
            last = format!("{} {}", resp.status, resp.text());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "the edge never answered {status} on {path} (last: {last})\n{}",
        eg.logs()
    );
}

/// Waits until the edge answers an unsigned request with `401` (EG has
/// translated, Envoy has fetched the module from EG's wasm cache and
/// configured the filter).
async fn wait_filter_ready(eg: &EnvoyGateway, addr: SocketAddr, path: &str) {
    wait_for_status(eg, addr, path, 401, |_| {}).await;
}

/// The Envoy container's environment as kubelet would resolve it from the
/// rendered EnvoyProxy, with `hmac-wasm-config` holding `key` for `env` as
/// ESO writes it (no rotation Secret).
fn kubelet_env(docs: &[Value], key: &str, env: &str) -> Vec<(String, String)> {
    env_from_envoy_proxy(
        kind(docs, "EnvoyProxy"),
        &secrets_of(BTreeMap::from([(
            "hmac-wasm-config",
            BTreeMap::from([
                ("hmac_secret".to_owned(), key.to_owned()),
                ("environment".to_owned(), env.to_owned()),
            ]),
        )])),
    )
    .unwrap()
}

fn secrets_of(
    data: BTreeMap<&str, BTreeMap<String, String>>,
) -> impl Fn(&str) -> Option<BTreeMap<String, String>> {
    move |name| data.get(name).cloned()
}

/// Envoy Gateway, fed the rendered Gateway resources and an HTTPRoute to a
/// recording upstream, runs Envoy with the filter as EG renders it:
/// signed, unsigned, tampered, wrong-key and replayed requests get the
/// documented answers; a 1 MiB signed body passes (the ClientTrafficPolicy
/// buffer works) and a larger one is refused by the filter; and the path
/// table of docs/signature-v1.md §7 holds under EG's real listener settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gateway_runs_the_filter_as_rendered() {
    let (env, _files, port, kit) = kit_with_module();
    runs_as_rendered(&env, port, &kit, "wasmcustom.").await;
}

/// The same through `render gateway --module native`: EG v1.9 registers the
/// module from `EnvoyProxy.spec.dynamicModules` (a local path), attaches it
/// from the `EnvoyExtensionPolicy` `dynamicModule` entry, and Envoy 1.39.0
/// loads it: every answer of the wasm test holds, and the filter's stats
/// carry the native prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gateway_runs_the_native_module_as_rendered() {
    let env = unique_env();
    let port = free_port();
    let kit = render_native_kit(&env, port, "");
    let docs = documents(&kit);
    assert_eq!(
        kind(&docs, "EnvoyProxy")["spec"]["dynamicModules"][0]["source"]["local"]["path"],
        module_so().display().to_string()
    );
    assert!(kind(&docs, "EnvoyExtensionPolicy")["spec"]["wasm"].is_null());
    runs_as_rendered(&env, port, &kit, "dynamicmodulescustom.").await;
}

/// The checks of the two tests above on `kit`; `stats_prefix` is the
/// filter build's prefix in Envoy's stats.
async fn runs_as_rendered(env: &str, port: u16, kit: &str, stats_prefix: &str) {
    let env = env.to_owned();
    let docs = documents(kit);
    let upstream = Upstream::start().await;
    let key = secret();
    let proxy_env = kubelet_env(&docs, &key, &env);
    let eg = EnvoyGateway::start(
        &gateway_resources(kit, &[("team", "api", "/", upstream.addr)]),
        &proxy_env,
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_filter_ready(&eg, addr, "/v1/ready").await;
    let seen = upstream.settled_records().await.len();
    assert_eq!(seen, 0, "an unsigned request reached the upstream");

    let ok = send(addr, &Req::new("GET", "/v1/hello?x=1").signed(&key, &env)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let unsigned = send(addr, &Req::new("GET", "/v1/hello")).await;
    assert_eq!(
        (unsigned.status, unsigned.error_code().as_deref()),
        (401, Some("missing_signature"))
    );
    let mut tampered = Req::new("GET", "/v1/a").signed(&key, &env);
    tampered.path = "/v1/b".into();
    let resp = send(addr, &tampered).await;
    assert_eq!(
        (resp.status, resp.error_code().as_deref()),
        (401, Some("invalid_signature"))
    );
    let wrong = send(addr, &Req::new("GET", "/v1/a").signed(&secret(), &env)).await;
    assert_eq!(wrong.error_code().as_deref(), Some("invalid_signature"));
    let n = nonce();
    let once =
        Req::new("GET", "/v1/once").signed_with(&key, &env, now(), Some(&n), TagEncoding::Hex);
    assert_eq!(send(addr, &once).await.status, 200);
    let replay = send(addr, &once).await;
    assert_eq!(
        (replay.status, replay.error_code().as_deref()),
        (401, Some("replayed_request"))
    );
    let records = upstream.settled_records().await;
    assert_eq!(
        records.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/v1/hello?x=1", "/v1/once"],
        "only verified requests reach the upstream"
    );

    // The ClientTrafficPolicy raises EG's 32 KiB buffer: a signed body of
    // max_body_bytes passes whole; one byte more is the filter's 413.
    let max = 1024 * 1024;
    let big = Req::new("POST", "/v1/upload")
        .body(Body::Full(vec![b'b'; max]))
        .signed(&key, &env);
    let resp = send(addr, &big).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let last = upstream.settled_records().await.pop().unwrap();
    assert_eq!((last.body.len(), last.complete), (max, true));
    let over = Req::new("POST", "/v1/upload")
        .body(Body::Full(vec![b'c'; max + 1]))
        .signed(&key, &env);
    let resp = send(addr, &over).await;
    assert_eq!(
        (resp.status, resp.error_code().as_deref()),
        (413, Some("body_too_large"))
    );

    // docs/signature-v1.md §7, re-measured behind EG's listener: each path
    // is signed as the verifier should see it and sent as written.
    let table: &[(&str, &str)] = &[
        ("/a/./b/../c", "/a/c"),
        ("/a/%2e%2e/b", "/b"),
        ("/a//b", "/a/b"),
        ("/a\\b", "/a/b"),
        ("/%7Euser", "/~user"),
        ("/a%41b", "/aAb"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/caf%c3%a9", "/caf%c3%a9"),
        ("/a%20b", "/a%20b"),
        ("/a;b", "/a;b"),
        ("/x?y=%2F//../z", "/x?y=%2F//../z"),
        // Issue 23: Envoy 1.39 (EG v1.9.0's) keeps a raw `..;` (1.40
        // resolves it like `..`), an encoded one is decoded after the dot
        // segments were resolved and reaches the filter (and the upstream)
        // as `..;`; escapes of escapes pass through. None of these is ever
        // an exempt path.
        ("/a/..;/b", "/a/..;/b"),
        ("/a/%2e%2e;/b", "/a/..;/b"),
        ("/a/.%2E;/b", "/a/..;/b"),
        ("/a/..%3b/b", "/a/..%3b/b"),
        ("/a/%2e%2e%3B/b", "/a/..%3B/b"),
        ("/a/%252e%252e/b", "/a/%252e%252e/b"),
    ];
    for (sent, verified) in table {
        let mut req = Req::new("GET", verified).signed(&key, &env);
        req.path = (*sent).into();
        let resp = send(addr, &req).await;
        assert_eq!(
            resp.status,
            200,
            "{sent} (signed as {verified}): {}",
            resp.text()
        );
        let got = upstream.settled_records().await.pop().unwrap();
        assert_eq!(got.path, *verified, "{sent}");
    }
    // Raw non-ASCII bytes in the path: EG's listener refuses the request
    // (the local bootstrap percent-encodes them instead).
    let resp = send(addr, &Req::new("GET", "/caf\u{e9}").signed(&key, &env)).await;
    assert_eq!(resp.status, 400, "raw UTF-8 path: {}", resp.text());
    for sent in ["/a%2Fb", "/a%2fb"] {
        let resp = send(addr, &Req::new("GET", sent).signed(&key, &env)).await;
        assert_eq!(resp.status, 307, "{sent}");
        assert_eq!(
            resp.headers.get("location").and_then(|v| v.to_str().ok()),
            Some("/a/b"),
            "{sent}"
        );
    }

    // Downstream retry headers cannot make EG's proxy deliver one signed
    // request twice (EG renders no retry policy and Envoy ignores an
    // external client's x-envoy-retry-on).
    let before = upstream.records().len();
    let retried = Req::new("POST", "/v1/pay")
        .header("x-test-status", "503")
        .header("x-envoy-retry-on", "5xx,reset,retriable-status-codes")
        .header("x-envoy-retriable-status-codes", "503")
        .header("x-envoy-max-retries", "3")
        .body(Body::Full(b"pay 10".to_vec()))
        .signed(&key, &env);
    assert_eq!(send(addr, &retried).await.status, 503);
    assert_eq!(
        upstream.settled_records().await.len(),
        before + 1,
        "a signed request was delivered more than once"
    );

    // The filter's counters, under the build's prefix.
    let admin = proxy_admin(&eg);
    let stats = edge_hmac_tests::client::get(admin, "/stats?filter=edge_hmac")
        .await
        .unwrap()
        .text();
    assert!(
        stats.contains(&format!(
            "{stats_prefix}edge_hmac.rejected.replayed_request: 1"
        )),
        "{stats}"
    );

    // The Prometheus output of EG's proxy: the filter's metrics with the
    // labels of the stats tags EG merged from the EnvoyProxy bootstrap, under
    // the same names for both builds. (Read from the proxy's admin: EG's
    // 19001 listener, which the PodMonitor scrapes in Kubernetes, routes to
    // this same admin path, but in host mode EG itself holds port 19001.)
    let metrics = edge_hmac_tests::client::get(admin, "/stats/prometheus")
        .await
        .unwrap()
        .text();
    let fp = edge_hmac_core::scheme::fingerprint(key.as_bytes());
    for line in [
        "edge_hmac_rejected{code=\"replayed_request\"} 1".to_owned(),
        "edge_hmac_rejected{code=\"missing_signature\"} ".to_owned(),
        "edge_hmac_verified_format{format=\"v1\"} ".to_owned(),
        "edge_hmac_verified_key{slot=\"current\"} ".to_owned(),
        format!("edge_hmac_key{{slot=\"current\",fingerprint=\"{fp}\"}} "),
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&line)),
            "no {line:?} at EG's metrics endpoint: {}",
            metrics
                .lines()
                .filter(|l| l.contains("edge_hmac"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    assert_no_secret(&eg.all_output(), &[&key]);
    let dump = eg.config_dump().expect("Envoy's config dump");
    assert_no_secret(&dump.to_string(), &[&key]);
}

/// The admin address of the proxy EG runs now (once func-e wrote it).
fn proxy_admin(eg: &EnvoyGateway) -> SocketAddr {
    // After a restart the previous run's file may still be the newest for
    // a moment; its Envoy is gone, so take an address that answers.
    edge_hmac_tests::cluster::wait_for(Duration::from_secs(20), || {
        eg.proxy_admin()
            .filter(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
    })
    .unwrap_or_else(|| panic!("no admin address for the proxy\n{}", eg.logs()))
}

/// `edge-hmac rotate <args> --env env --admin admin` against moto.
async fn rotate(
    moto: &Moto,
    env: &str,
    admin: SocketAddr,
    args: &[&str],
) -> edge_hmac_tests::cli::Out {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = edge_hmac_tests::aws::cli(home.path());
    cmd.arg("rotate")
        .args(args)
        .args(["--env", env, "--endpoint-url", &moto.endpoint()])
        .args(["--admin", &admin.to_string()]);
    edge_hmac_tests::cli::run(cmd).await
}

/// The rotation of docs/rotation.md on the real chain — Secrets Manager
/// (moto) → ESO → Secrets → proxy environment → filter — driven by
/// `edge-hmac rotate` with the commands it prints (force-sync, restart):
/// `begin` stages AWSPENDING, which ESO syncs as the optional pending key;
/// `promote` refuses until the restarted proxy holds it, then moves
/// AWSCURRENT; after the next sync and restart both keys verify; `retire`
/// removes AWSPREVIOUS, and after a last sync and restart the old key is
/// refused. Before promotion a client reading AWSCURRENT still gets the old
/// key, which every proxy generation accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_through_eso_and_a_proxy_restart() {
    let cluster = Cluster::shared();
    let _eso = Eso::shared();
    let moto = Moto::shared();
    let (env, _files, port, kit) = kit_with_module();
    let docs = documents(&kit);
    let ns = "envoy-gateway-system".to_owned();
    let secret_id = format!("crawbl/{env}/edge/hmac");
    let k1 = secret();
    moto.create_secret(&secret_id, &edge_value(&k1, &env)).await;

    // The kit's ESO side, applied to the API server as rendered, with the
    // bootstrap credential where the seed puts it. (The other ESO tests use
    // namespaces and stores of their own; this one is on the defaults.)
    create_aws_credentials(cluster, "external-secrets", "aws-credentials");
    cluster.namespace(&ns);
    for d in &docs {
        if d["kind"] == "ClusterSecretStore" || d["kind"] == "ExternalSecret" {
            cluster.apply(&d.to_string());
        }
    }
    let sync = Duration::from_secs(90);
    wait_external_secret(cluster, &ns, "hmac-wasm-config", "True", sync);
    wait_external_secret(cluster, &ns, "hmac-wasm-config-rotation", "True", sync);
    let kubelet = || {
        env_from_envoy_proxy(kind(&docs, "EnvoyProxy"), &|name: &str| {
            secret_data(cluster, &ns, name)
        })
        .unwrap()
    };
    let has = |e: &[(String, String)], k: &str, v: &str| e.iter().any(|(n, x)| n == k && x == v);
    let upstream = Upstream::start().await;
    let mut eg = EnvoyGateway::start(
        &gateway_resources(&kit, &[("team", "api", "/", upstream.addr)]),
        &kubelet(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let status = async |key: &str| {
        send(addr, &Req::new("GET", "/v1/r").signed(key, &env))
            .await
            .status
    };
    wait_filter_ready(&eg, addr, "/v1/ready").await;
    assert_eq!(status(&k1).await, 200);
    let admin = proxy_admin(&eg);

    // begin: the new key is staged; ESO syncs it as the pending key.
    let out = rotate(moto, &env, admin, &["begin"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let k2 = moto.key_at(&secret_id, "AWSPENDING").await.unwrap();
    for printed in [
        "kubectl -n envoy-gateway-system annotate externalsecret hmac-wasm-config-rotation force-sync=$(date +%s) --overwrite",
        "rollout restart deployment -l gateway.envoyproxy.io/owning-gateway-name=edge,gateway.envoyproxy.io/owning-gateway-namespace=edge",
    ] {
        assert!(out.stdout.contains(printed), "{}", out.stdout);
    }
    force_sync(cluster, &ns, "hmac-wasm-config-rotation");
    let synced = edge_hmac_tests::cluster::wait_for(sync, || {
        has(&kubelet(), "HMAC_SECRET_PENDING", &k2).then_some(())
    });
    assert!(synced.is_some(), "ESO did not sync the pending key");
    // The running proxy has not loaded it: promote refuses.
    let out = rotate(moto, &env, admin, &["promote"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert_eq!(status(&k2).await, 401);
    eg.restart(&kubelet());
    wait_filter_ready(&eg, addr, "/v1/ready").await;
    let admin = proxy_admin(&eg);
    assert_eq!(status(&k1).await, 200, "current key after the restart");
    assert_eq!(status(&k2).await, 200, "pending key after the restart");

    // promote: AWSCURRENT moves; after sync + restart both keys verify.
    let out = rotate(moto, &env, admin, &["promote"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(moto.key_at(&secret_id, "AWSCURRENT").await.unwrap(), k2);
    force_sync(cluster, &ns, "hmac-wasm-config");
    force_sync(cluster, &ns, "hmac-wasm-config-rotation");
    let synced = edge_hmac_tests::cluster::wait_for(sync, || {
        let e = kubelet();
        (has(&e, "HMAC_SECRET", &k2)
            && has(&e, "HMAC_SECRET_PREVIOUS", &k1)
            && !e.iter().any(|(n, _)| n == "HMAC_SECRET_PENDING"))
        .then_some(())
    });
    assert!(synced.is_some(), "ESO did not sync the promotion");
    assert_eq!(
        status(&k2).await,
        200,
        "the new key works before the restart (pending)"
    );
    eg.restart(&kubelet());
    wait_filter_ready(&eg, addr, "/v1/ready").await;
    let admin = proxy_admin(&eg);
    assert_eq!(status(&k2).await, 200, "new key after the restart");
    assert_eq!(status(&k1).await, 200, "old key accepted as previous");

    // retire: nobody signed with k1 in the window; sync, restart: refused.
    let out = rotate(moto, &env, admin, &["retire", "--window", "2s"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    force_sync(cluster, &ns, "hmac-wasm-config-rotation");
    let retired = edge_hmac_tests::cluster::wait_for(sync, || {
        (!kubelet().iter().any(|(n, _)| n == "HMAC_SECRET_PREVIOUS")).then_some(())
    });
    assert!(retired.is_some(), "ESO did not drop the retired key");
    eg.restart(&kubelet());
    wait_filter_ready(&eg, addr, "/v1/ready").await;
    assert_eq!(status(&k2).await, 200);
    assert_eq!(status(&k1).await, 401, "the retired key still verifies");
    assert_no_secret(&eg.all_output(), &[&k1, &k2]);
}

/// Reproduced: a team's EnvoyExtensionPolicy on its own HTTPRoute under
/// the edge Gateway replaces the edge-hmac policy for that route — an
/// unsigned request passes (fail open). The same policy with `mergeType`
/// (what the kit's admission policy requires) keeps the signature check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_policy_replaces_the_check_unless_it_merges() {
    let (env, _files, port, kit) = kit_with_module();
    let upstream = Upstream::start().await;
    let key = secret();
    let proxy_env = vec![
        ("HMAC_SECRET".to_owned(), key.clone()),
        ("HMAC_ENVIRONMENT".to_owned(), env.clone()),
    ];
    let team_policy = |name: &str, merge: Option<&str>| {
        let mut spec = serde_json::json!({
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": name}],
            "lua": [{"type": "Inline", "inline": "function envoy_on_request(h) h:headers():add('x-team-lua', '1') end"}],
        });
        if let Some(m) = merge {
            spec["mergeType"] = Value::from(m);
        }
        format!(
            "---\n{}\n",
            serde_json::json!({
                "apiVersion": "gateway.envoyproxy.io/v1alpha1",
                "kind": "EnvoyExtensionPolicy",
                "metadata": {"name": format!("{name}-lua"), "namespace": "team"},
                "spec": spec,
            })
        )
    };
    let mut resources = gateway_resources(
        &kit,
        &[
            ("team", "replaced", "/replaced", upstream.addr),
            ("team", "merged", "/merged", upstream.addr),
        ],
    );
    resources.push_str(&team_policy("replaced", None));
    resources.push_str(&team_policy("merged", Some("StrategicMerge")));
    let eg = EnvoyGateway::start(&resources, &proxy_env);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_filter_ready(&eg, addr, "/merged/ready").await;

    // Fail open, reproduced: no signature, yet the upstream answers.
    let open = send(addr, &Req::new("GET", "/replaced/x")).await;
    assert_eq!(
        open.status, 200,
        "the route policy did not replace the edge check"
    );
    // Merged: the team's Lua runs and the signature is still required.
    let refused = send(addr, &Req::new("GET", "/merged/x")).await;
    assert_eq!(
        (refused.status, refused.error_code().as_deref()),
        (401, Some("missing_signature"))
    );
    let ok = send(addr, &Req::new("GET", "/merged/x").signed(&key, &env)).await;
    assert_eq!(ok.status, 200);
    let records = upstream.settled_records().await;
    let merged = records.iter().find(|r| r.path == "/merged/x").unwrap();
    assert_eq!(merged.header("x-team-lua"), Some("1"), "the team's Lua ran");
    assert!(
        records
            .iter()
            .filter(|r| r.path.starts_with("/merged"))
            .count()
            == 1,
        "an unsigned request reached the merged route's upstream"
    );
}

/// A module whose bytes do not match the policy's sha256 (a swapped file at
/// the URL) is refused by Envoy Gateway, and with `failOpen: false` the
/// routes under the edge Gateway answer 500: nothing passes unverified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_module_fails_closed() {
    let env = unique_env();
    let port = free_port();
    // The URL serves other bytes than the rendered checksum (of the real
    // filter) promises.
    let files = FileServer::start(&[("edge_hmac_filter.wasm", b"\0asm not the filter")]);
    let kit = render_kit(&env, &files, port, "");
    let upstream = Upstream::start().await;
    let eg = EnvoyGateway::start(
        &gateway_resources(&kit, &[("team", "api", "/", upstream.addr)]),
        &[
            ("HMAC_SECRET".to_owned(), secret()),
            ("HMAC_ENVIRONMENT".to_owned(), env.clone()),
        ],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_status(&eg, addr, "/v1/x", 500, |resp| {
        assert_ne!(resp.status, 200, "an unverified request passed");
    })
    .await;
    assert!(upstream.settled_records().await.is_empty());
}

/// The native module missing from the path the EnvoyProxy names (a typo, a
/// volume not mounted): Envoy 1.39.0 under EG refuses the listener that
/// would load it ("Failed to load dynamic module"), so the edge port never
/// serves a request, let alone an unverified one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_native_module_fails_closed() {
    let env = unique_env();
    let port = free_port();
    let kit = render_cli(&format!(
        "--env {env} --module native --module-path /nonexistent/edge-hmac/libedge-hmac.so --plain-http --no-https --http-port {port}"
    ));
    let upstream = Upstream::start().await;
    let eg = EnvoyGateway::start(
        &gateway_resources(&kit, &[("team", "api", "/", upstream.addr)]),
        &[
            ("HMAC_SECRET".to_owned(), secret()),
            ("HMAC_ENVIRONMENT".to_owned(), env),
        ],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut attempts = 0;
    loop {
        assert!(!eg.exited(), "Envoy Gateway exited\n{}", eg.logs());
        if let Ok(mut conn) = edge_hmac_tests::client::Conn::h1(addr).await
            && let Ok(resp) = conn.send(&Req::new("GET", "/v1/x")).await
        {
            assert_ne!(resp.status, 200, "an unverified request passed");
        }
        attempts += 1;
        if eg.all_output().contains("Failed to load dynamic module") && attempts > 8 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Envoy never refused the module's listener\n{}",
            eg.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        edge_hmac_tests::client::Conn::h1(addr).await.is_err(),
        "the edge port is open without its listener's filter"
    );
    assert!(upstream.settled_records().await.is_empty());
}

/// Reproduced: of two EnvoyExtensionPolicies on the edge Gateway only the
/// first in EG's order applies (creation time, then namespace, then name;
/// the File provider drops creation times, so here the name decides) and
/// the other is `Conflicted`. A team policy that sorts first takes the check
/// away: unsigned requests pass. In a cluster that is a policy older than
/// the kit's (the kit's deleted and re-applied). The kit's admission policy
/// refuses such a second policy (`apiserver::admission_policy_keeps_the_filter_on_every_route`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_policy_that_sorts_first_takes_the_check_away() {
    let (env, _files, port, kit) = kit_with_module();
    let upstream = Upstream::start().await;
    let mut resources = gateway_resources(&kit, &[("team", "api", "/", upstream.addr)]);
    resources.push_str(&format!(
        "---\n{}\n",
        serde_json::json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyExtensionPolicy",
            "metadata": {"name": "a-team-lua", "namespace": "edge"},
            "spec": {
                "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"}],
                "lua": [{"type": "Inline", "inline": "function envoy_on_request(h) h:headers():add('x-older', '1') end"}],
            },
        })
    ));
    let eg = EnvoyGateway::start(
        &resources,
        &[
            ("HMAC_SECRET".to_owned(), secret()),
            ("HMAC_ENVIRONMENT".to_owned(), env),
        ],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_status(&eg, addr, "/v1/x", 200, |_| {}).await;
    let records = upstream.settled_records().await;
    assert_eq!(records.last().unwrap().header("x-older"), Some("1"));
    assert!(
        eg.all_output().contains("reason: Conflicted"),
        "the kit's policy is not reported Conflicted\n{}",
        eg.logs()
    );
}

/// EG v1.9.0's own translation for the Kubernetes provider (`egctl x
/// translate --type bootstrap`) merges the rendered EnvoyProxy bootstrap:
/// `edge_hmac_nonce_store` sits beside `xds_cluster` as rendered (STRICT_DNS
/// to the Service's cluster DNS name, port 9380, HTTP/2), and Envoy 1.39.0
/// validates that cluster.
#[test]
fn envoy_gateway_merges_the_nonce_store_cluster_into_its_bootstrap() {
    let kit = render_cli(&format!(
        "--env dev --wasm-image registry.example.com/f@sha256:{} {NONCE_STORE_ARGS}",
        "a".repeat(64)
    ));
    let bootstrap = egctl_bootstrap(&gateway_resources(&kit, &[]));
    let clusters = bootstrap["staticResources"]["clusters"]
        .as_array()
        .unwrap_or_else(|| panic!("no static clusters in {bootstrap}"));
    let names: Vec<&str> = clusters.iter().filter_map(|c| c["name"].as_str()).collect();
    assert!(names.contains(&"xds_cluster"), "{names:?}");
    let store = clusters
        .iter()
        .find(|c| c["name"] == NONCE_STORE_CLUSTER)
        .unwrap_or_else(|| panic!("{NONCE_STORE_CLUSTER} not merged: {names:?}"));
    assert_eq!(store["type"], "STRICT_DNS");
    assert_eq!(
        store["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]["socketAddress"],
        serde_json::json!({
            "address": "edge-hmac-nonce-store.envoy-gateway-system.svc.cluster.local",
            "portValue": 9380
        })
    );
    assert!(
        store["typedExtensionProtocolOptions"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            ["explicitHttpConfig"]["http2ProtocolOptions"]
            .is_object(),
        "{store}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store-cluster.json");
    std::fs::write(
        &file,
        serde_json::json!({"staticResources": {"clusters": [store]}}).to_string(),
    )
    .unwrap();
    let out = validate_file_on(&EnvoyVersion::V1_39.bin(), &file, &[]);
    assert!(
        out.status.success(),
        "Envoy 1.39.0 refused the merged cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// EG v1.9.0's translation for the Kubernetes provider keeps its own stats
/// tags and runtime layer and appends the filter's from the rendered
/// EnvoyProxy bootstrap; Envoy 1.39.0 accepts that `stats_config` and
/// `layered_runtime`.
#[test]
fn envoy_gateway_merges_the_metric_labels_into_its_bootstrap() {
    let kit = render_cli(&format!(
        "--env dev --wasm-image registry.example.com/f@sha256:{}",
        "a".repeat(64)
    ));
    let bootstrap = egctl_bootstrap(&gateway_resources(&kit, &[]));
    let tags: Vec<&str> = bootstrap["statsConfig"]["statsTags"]
        .as_array()
        .unwrap_or_else(|| panic!("no stats tags in {bootstrap}"))
        .iter()
        .filter_map(|t| t["tagName"].as_str())
        .collect();
    for tag in ["from_zone", "to_zone"]
        .into_iter()
        .chain(edge_hmac_core::metrics::STATS_TAGS.iter().map(|t| t.name))
    {
        assert!(tags.contains(&tag), "{tag} missing: {tags:?}");
    }
    let layers = bootstrap["layeredRuntime"]["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["global_config", "edge_hmac"], "{layers:?}");
    assert_eq!(
        layers[1]["staticLayer"][edge_hmac_core::metrics::STRIP_NAMESPACE_RUNTIME_KEY],
        true
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stats.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "statsConfig": bootstrap["statsConfig"],
            "layeredRuntime": bootstrap["layeredRuntime"],
        })
        .to_string(),
    )
    .unwrap();
    let out = validate_file_on(&EnvoyVersion::V1_39.bin(), &file, &[]);
    assert!(
        out.status.success(),
        "Envoy 1.39.0 refused the merged stats config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Through EG v1.9.0's proxy (host mode, the rendered EnvoyProxy bootstrap
/// merged by EG, the filter config from the rendered policy) and a second
/// plain Envoy sharing one in-process nonce store over a real redis-server,
/// with the proxy-wasm filter: a nonce accepted by either is `401
/// replayed_request` at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_used_once_across_envoy_gateway_and_another_proxy() {
    nonce_once_across_eg_and_another_proxy(Target::WASM_1_39).await;
}

/// The same with the native module (`render gateway --module native`):
/// its HTTP callout reaches the cluster EG merged into the bootstrap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_used_once_across_envoy_gateway_and_another_proxy_native() {
    nonce_once_across_eg_and_another_proxy(Target::NATIVE_1_39).await;
}

/// The body of the two tests above: `t` is the build on both proxies (and
/// Envoy 1.39.0, EG v1.9.0's, for both). The store's Deployment is not run
/// here (no kubelet): `edge_hmac::nonce_store::start` serves the same
/// service on loopback, and [`test_only_nonce_store_on_loopback`] points
/// the rendered cluster at it.
async fn nonce_once_across_eg_and_another_proxy(t: Target) {
    let env = unique_env();
    let port = free_port();
    let redis = Redis::start(RedisOpts::default());
    let mut cfg = NonceStoreConfig::new(RedisUrl::parse(&redis.url()).unwrap());
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let store = nonce_store::start(cfg).await.unwrap();
    let wasm = std::fs::read(filter_wasm()).unwrap();
    let files = FileServer::start(&[("edge_hmac_filter.wasm", &wasm)]);
    let kit = match t.module {
        Module::Wasm => render_kit(&env, &files, port, NONCE_STORE_ARGS),
        Module::Native => render_native_kit(&env, port, NONCE_STORE_ARGS),
    };
    let docs = documents(&kit);
    let plugin = filter_entry(&docs)["config"].clone();
    assert_eq!(plugin["nonce_store"]["cluster"], NONCE_STORE_CLUSTER);

    let upstream = Upstream::start().await;
    let key = secret();
    let proxy_env = kubelet_env(&docs, &key, &env);
    let eg = EnvoyGateway::start(
        &gateway_resources(
            &test_only_nonce_store_on_loopback(&kit, store.local_addr()),
            &[("team", "api", "/", upstream.addr)],
        ),
        &proxy_env,
    );
    let eg_addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_filter_ready(&eg, eg_addr, "/v1/ready").await;

    // The other proxy: the local bootstrap with the same filter config (the
    // policy's JSON, nonce_store included) and its own cluster of that name.
    let mut local = t.local(upstream.addr, parse(plugin.to_string().as_bytes()).unwrap());
    local.nonce_store = Some(store.local_addr());
    let other = t
        .start(
            &local,
            &[
                ("HMAC_SECRET", key.as_str()),
                ("HMAC_ENVIRONMENT", env.as_str()),
            ],
        )
        .await;
    let other_addr = other.listener("edge_hmac").await;

    let once = |path: &str| {
        Req::new("GET", path).signed_with(&key, &env, now(), Some(&nonce()), TagEncoding::Hex)
    };
    let replayed = |resp: &edge_hmac_tests::client::Resp| {
        (resp.status, resp.error_code()) == (401, Some("replayed_request".to_owned()))
    };
    let first = once("/v1/eg-first");
    let resp = send(eg_addr, &first).await;
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), eg.logs());
    let resp = send(other_addr, &first).await;
    assert!(replayed(&resp), "{} {}", resp.status, resp.text());
    let second = once("/v1/other-first");
    let resp = send(other_addr, &second).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = send(eg_addr, &second).await;
    assert!(
        replayed(&resp),
        "{} {}\n{}",
        resp.status,
        resp.text(),
        eg.logs()
    );
    assert_eq!(
        upstream
            .settled_records()
            .await
            .iter()
            .map(|r| r.path.as_str())
            .collect::<Vec<_>>(),
        ["/v1/eg-first", "/v1/other-first"],
        "only the first use of each nonce reaches the upstream"
    );

    // EG's proxy asked the store both times (the cluster EG merged), and
    // runs the cluster and the option as rendered.
    let admin = proxy_admin(&eg);
    let stats = edge_hmac_tests::client::get(admin, "/stats?filter=nonce_store")
        .await
        .unwrap()
        .text();
    let prefix = t.module.stats_prefix();
    for line in [
        format!("{prefix}edge_hmac.nonce_store.claims: 2"),
        format!("{prefix}edge_hmac.nonce_store.replayed: 1"),
    ] {
        assert!(stats.contains(&line), "{line} not in\n{stats}");
    }
    assert_eq!(other.counter("nonce_store.replayed").await, 1);
    let dump = edge_hmac_tests::client::get(admin, "/config_dump")
        .await
        .unwrap()
        .text();
    assert!(
        dump.contains(&format!("\"name\": \"{NONCE_STORE_CLUSTER}\"")),
        "no {NONCE_STORE_CLUSTER} cluster in EG's Envoy"
    );
    assert!(
        dump.contains("nonce_store"),
        "no nonce_store option in EG's filter config"
    );
    assert_no_secret(&eg.all_output(), &[&key]);
    drop(other);
    store.shutdown().await;
}
