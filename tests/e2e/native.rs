//! The native module's own guarantees, beyond the matrix every other test
//! runs it in: its ABI surface matches both Envoy binaries, a panic in a
//! hook never crosses into Envoy, and Envoy's memory stays flat under a
//! bounded soak of signed load with bodies.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_hmac_core::config::parse;
use edge_hmac_tests::build::{module_so, module_so_panic_test};
use edge_hmac_tests::client::{Body, Req, send};
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::target::{EnvoyVersion, Target};
use edge_hmac_tests::upstream::Upstream;

const ENV: &str = "dev";

/// `nm -D` of `file`, defined or undefined symbols.
fn dynamic_symbols(file: &std::path::Path, defined: bool) -> BTreeSet<String> {
    let flag = if defined {
        "--defined-only"
    } else {
        "--undefined-only"
    };
    let out = Command::new("nm")
        .args(["-D", flag])
        .arg(file)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_owned)
        .collect()
}

/// The HTTP-filter hook names an Envoy binary looks up in a module (the
/// strings `envoy_dynamic_module_on_http_filter_*` it carries).
fn hooks_looked_up(envoy: &std::path::Path) -> BTreeSet<String> {
    let out = Command::new("strings")
        .args(["-n", "30"])
        .arg(envoy)
        .output()
        .expect("run strings (binutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("envoy_dynamic_module_on_http_filter_"))
        .filter(|l| l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(str::to_owned)
        .collect()
}

/// Every `envoy_dynamic_module_callback_*` the module imports is exported
/// by both Envoy binaries (1.39.0 and 1.40.0), and the module exports every
/// HTTP-filter hook either looks up but the optional ones (a cheap check of
/// names; the matrix checks the signatures by running on both).
#[test]
fn abi_surface_matches_both_envoys() {
    let module = module_so();
    let imports: BTreeSet<String> = dynamic_symbols(module, false)
        .into_iter()
        .filter(|s| s.starts_with("envoy_dynamic_module_callback_"))
        .collect();
    let exports = dynamic_symbols(module, true);
    assert!(imports.len() > 10, "{imports:?}");
    assert!(exports.contains("envoy_dynamic_module_on_program_init"));
    // Looked up, but Envoy goes on without them.
    let optional = |hook: &str| {
        hook.starts_with("envoy_dynamic_module_on_http_filter_config_scheduled")
            || hook.starts_with("envoy_dynamic_module_on_http_filter_config_http_")
            || hook == "envoy_dynamic_module_on_http_filter_local_reply"
    };
    for version in [EnvoyVersion::V1_39, EnvoyVersion::V1_40] {
        let envoy = edge_hmac_tests::eg::real_binary(&version.bin().program);
        let exported_by_envoy = dynamic_symbols(&envoy, true);
        let missing: Vec<&String> = imports
            .iter()
            .filter(|s| !exported_by_envoy.contains(*s))
            .collect();
        assert!(
            missing.is_empty(),
            "Envoy {} does not export {missing:?}",
            version.version()
        );
        let hooks = hooks_looked_up(&envoy);
        assert!(
            hooks.len() >= 20,
            "{} hooks in Envoy {}",
            hooks.len(),
            version.version()
        );
        let absent: Vec<&String> = hooks
            .iter()
            .filter(|h| !optional(h) && !exports.contains(*h))
            .collect();
        assert!(
            absent.is_empty(),
            "the module lacks hooks Envoy {} requires: {absent:?}",
            version.version()
        );
    }
}

/// The module loads where Envoy's own images run it: it needs glibc alone
/// (no `libgcc_s.so.1`, which `envoyproxy/envoy:distroless-*` — Envoy
/// Gateway's default proxy image, `distroless/base-nossl-debian12` — does
/// not ship), at most glibc 2.36 (Debian 12's); and it is never unloaded
/// (`NODELETE`), so its process-wide replay tables outlive a listener
/// removed and added again.
#[test]
fn module_needs_only_glibc_and_stays_loaded() {
    let module = module_so();
    let out = Command::new("readelf")
        .arg("-d")
        .arg(module)
        .output()
        .expect("run readelf (binutils)");
    assert!(out.status.success());
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    let glibc = [
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "ld-linux-x86-64.so.2",
    ];
    assert!(needed.contains(&"libc.so.6"), "{dynamic}");
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("(FLAGS_1)") && l.contains("NODELETE")),
        "the module can be unloaded (no -z nodelete): {dynamic}"
    );
    let foreign: Vec<&&str> = needed.iter().filter(|l| !glibc.contains(l)).collect();
    assert!(
        foreign.is_empty(),
        "the module needs {foreign:?} beyond glibc: Envoy's distroless image cannot load it"
    );
    let out = Command::new("objdump")
        .arg("-T")
        .arg(module)
        .output()
        .expect("run objdump (binutils)");
    let symbols = String::from_utf8_lossy(&out.stdout);
    let newest = symbols
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .unwrap_or((0, 0));
    assert!(
        newest <= (2, 36),
        "the module needs glibc {}.{}: newer than Debian 12's 2.36 (Envoy's distroless base)",
        newest.0,
        newest.1
    );
}

/// A panic in the request hook (the test-only `panic-test` build, asked for
/// by a header) answers that request `500 internal_error`, is logged and
/// counted, and Envoy keeps serving: the next requests verify as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_hook_is_a_500_and_envoy_keeps_serving() {
    for version in [EnvoyVersion::V1_39, EnvoyVersion::V1_40] {
        let upstream = Upstream::start().await;
        let t = Target {
            envoy: version,
            ..Target::NATIVE_1_40
        };
        let mut config = t.local(upstream.addr, parse(b"{}").unwrap());
        if let Some(l) = config.listeners.first_mut()
            && let edge_hmac::render::envoy::ListenerFilter::EdgeHmacNative { module, .. } =
                &mut l.filter
        {
            *module = module_so_panic_test().to_path_buf();
        }
        let key = secret();
        let envoy = t
            .start(&config, &[("HMAC_SECRET", &key), ("HMAC_ENVIRONMENT", ENV)])
            .await;
        let addr = envoy.listener("edge_hmac").await;
        for _ in 0..3 {
            let boom = Req::new("POST", "/v1/x")
                .header("x-edge-hmac-test-panic", "1")
                .body(Body::Full(b"body".to_vec()))
                .signed(&key, ENV);
            let resp = send(addr, &boom).await;
            assert_eq!(resp.status, 500, "{}", resp.text());
            assert_eq!(resp.error_code().as_deref(), Some("internal_error"));
            let ok = send(addr, &Req::new("GET", "/v1/x").signed(&key, ENV)).await;
            assert_eq!(ok.status, 200, "{}", ok.text());
        }
        assert_eq!(envoy.counter("internal_error").await, 3);
        assert_eq!(envoy.counter("verified").await, 3);
        assert!(
            envoy
                .log()
                .contains("a panic in request_headers was contained"),
            "{}",
            envoy.log_tail(30)
        );
        let ready = edge_hmac_tests::client::get(envoy.admin, "/ready")
            .await
            .unwrap();
        assert_eq!(ready.status, 200);
        // Nothing of a panicked request reached the upstream.
        assert!(
            upstream
                .settled_records()
                .await
                .iter()
                .all(|r| r.method == "GET"),
            "a request whose hook panicked went upstream"
        );
    }
}

/// A bounded soak: 60 s of signed load with 4 KiB bodies and fresh nonces
/// through the native module (Envoy 1.39.0) leaves Envoy's resident memory
/// flat once warm (under 8 MiB of growth between the first and the last
/// third of the run; the replay table is sized to hold the run's nonces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_flat_under_a_soak() {
    let upstream = Upstream::start().await;
    let t = Target::NATIVE_1_39;
    let config = t.local(
        upstream.addr,
        parse(br#"{"nonce_cache_max_entries": 200000}"#).unwrap(),
    );
    let key = secret();
    let envoy = t
        .start(&config, &[("HMAC_SECRET", &key), ("HMAC_ENVIRONMENT", ENV)])
        .await;
    let addr = envoy.listener("edge_hmac").await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, &key).unwrap();
    let mut load = tokio::process::Command::new(edge_hmac_tests::build::loader_bin());
    load.args(["load", "--url", &format!("http://{addr}/v1/soak")])
        .args(["--secret-file", key_file.to_str().unwrap(), "--env", ENV])
        .args(["-X", "POST", "--body-size", "4096", "--nonce"])
        .args(["-c", "4", "--rate", "400", "--duration", "60s"])
        .args(["--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let child = load.spawn().unwrap();
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        samples.push(envoy.rss_kib());
    }
    let out = child.wait_with_output().await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["status"]["200"].as_u64(),
        report["requests"].as_u64(),
        "{report}"
    );
    let third = samples.len() / 3;
    let early = samples[third..2 * third].iter().copied().max().unwrap();
    let late = samples[2 * third..].iter().copied().max().unwrap();
    eprintln!("native soak RSS KiB: {samples:?}");
    assert!(
        late <= early + 8 * 1024,
        "Envoy RSS grew from {early} to {late} KiB: {samples:?}"
    );
    assert_eq!(envoy.counter("internal_error").await, 0);
    drop(envoy);
}

/// Serves `bytes` to every request on 127.0.0.1 (the module's download
/// location); stops when the task is dropped.
async fn serve_bytes(bytes: Vec<u8>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bytes = bytes::Bytes::from(bytes);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let body = Full::new(bytes.clone());
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// The local bootstrap of `t` with the module fetched by Envoy from
/// `http://{server}/libedge-hmac.so` and checked against `sha256`
/// (`AsyncDataSource.remote`, what Envoy Gateway renders for a `Remote`
/// module source), as JSON.
fn remote_module_bootstrap(
    t: Target,
    upstream: std::net::SocketAddr,
    server: std::net::SocketAddr,
    sha256: &str,
) -> String {
    let yaml = t.local(upstream, parse(b"{}").unwrap()).to_yaml().unwrap();
    let mut doc = edge_hmac_tests::yaml::documents(&yaml).remove(0);
    let remote = serde_json::json!({"remote": {
        "http_uri": {
            "uri": format!("http://{server}/libedge-hmac.so"),
            "cluster": "module_server",
            "timeout": "5s",
        },
        "sha256": sha256,
    }});
    let mut patched = 0;
    for listener in doc["static_resources"]["listeners"].as_array_mut().unwrap() {
        for filter in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            .as_array_mut()
            .unwrap()
        {
            if filter["name"] == "envoy.filters.http.dynamic_modules" {
                filter["typed_config"]["dynamic_module_config"]["module"] = remote.clone();
                patched += 1;
            }
        }
    }
    assert_eq!(patched, 1, "{yaml}");
    doc["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "module_server",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "module_server", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": server.port()}}}}
            ]}]},
        }));
    serde_json::to_string_pretty(&doc).unwrap()
}

/// Envoy (1.39.0 and 1.40.0) loads a *remote* dynamic module fail-open:
/// with the module's right SHA-256 an unsigned request is refused, with a
/// wrong one Envoy skips the filter and the unsigned request reaches the
/// upstream. This is why `render gateway` puts the native module on the
/// proxy's disk (`--module-path`, `--module-image`) and has no remote source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_loads_a_remote_module_fail_open() {
    let so = std::fs::read(module_so()).unwrap();
    let hex = |digest: &[u8]| {
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let right = hex(&edge_hmac_core::scheme::sha256(&so));
    let wrong = hex(&edge_hmac_core::scheme::sha256(b"another build"));
    let (server, _serving) = serve_bytes(so).await;
    let key = secret();
    for version in [EnvoyVersion::V1_39, EnvoyVersion::V1_40] {
        let t = Target {
            envoy: version,
            ..Target::NATIVE_1_40
        };
        for (sha256, checksum_matches) in [(&right, true), (&wrong, false)] {
            let upstream = Upstream::start().await;
            let yaml = remote_module_bootstrap(t, upstream.addr, server, sha256);
            let envoy = edge_hmac_tests::envoy::Envoy::try_start_on(
                &version.bin(),
                t.module,
                &yaml,
                &[("HMAC_SECRET", &key), ("HMAC_ENVIRONMENT", ENV)],
            )
            .await
            .unwrap_or_else(|e| panic!("Envoy {}: {e}", version.version()));
            let addr = envoy.listener("edge_hmac").await;
            let unsigned = send(addr, &Req::new("GET", "/v1/x")).await;
            let reached = upstream.settled_records().await.len();
            if checksum_matches {
                assert_eq!(unsigned.status, 401, "{}", unsigned.text());
                assert_eq!(reached, 0);
            } else {
                // Envoy's behaviour, not ours: the filter is simply absent.
                assert_eq!(unsigned.status, 200, "{}", unsigned.text());
                assert_eq!(reached, 1);
                // 1.39: "Remote dynamic module fetch returned empty data;
                // module will not be loaded"; later: "… (fail-open)".
                let log = envoy.log();
                assert!(
                    log.contains("module will not be loaded") || log.contains("fail-open"),
                    "Envoy {}: {}",
                    version.version(),
                    envoy.log_tail(30)
                );
            }
        }
    }
}
