//! The benchmark's peer: Envoy's `ext_authz` filter asking
//! `edge-hmac-ext-authz` (the filter's core over HTTP). A benchmark of it
//! only means something if it takes the same decisions as the filter.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use edge_hmac::render::envoy::{ListenerFilter, ListenerSpec, LocalEnvoy};
use edge_hmac_core::scheme::TagEncoding;
use edge_hmac_tests::aws::cli;
use edge_hmac_tests::build::{ext_authz_bin, filter_wasm};
use edge_hmac_tests::cli::run;
use edge_hmac_tests::client::{Body, Req, now, send};
use edge_hmac_tests::envoy::Envoy;
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::upstream::Upstream;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the service with `key`; returns it and its address.
fn start_service(key: &str) -> (Service, SocketAddr) {
    let mut child = Command::new(ext_authz_bin())
        .args(["--listen", "127.0.0.1:0"])
        .env("HMAC_SECRET", key)
        .env("HMAC_ENVIRONMENT", "dev")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"))
        .trim()
        .parse()
        .unwrap();
    (Service(child), addr)
}

/// Through Envoy's ext_authz filter the service allows what the filter
/// allows (signed, with a body and a fresh nonce, sent by `edge-hmac load`)
/// and refuses what it refuses, with the same status and error code;
/// refused requests never reach the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_peer_takes_the_filters_decisions() {
    let key = secret();
    let (_service, service) = start_service(&key);
    let upstream = Upstream::start().await;
    let mut local = LocalEnvoy::single(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        upstream.addr,
        filter_wasm().to_path_buf(),
        edge_hmac_core::config::PluginConfig::default(),
    );
    local.listeners = vec![ListenerSpec {
        name: "ext_authz".into(),
        address: "127.0.0.1:0".parse().unwrap(),
        filter: ListenerFilter::ExtAuthz {
            service,
            max_request_bytes: 1024 * 1024,
        },
    }];
    let envoy = Envoy::start(&local, &[]).await;
    let addr = envoy.listener("ext_authz").await;

    let h = tempfile::tempdir().unwrap();
    let key_file = h.path().join("key");
    std::fs::write(&key_file, &key).unwrap();
    let mut load = cli(h.path());
    load.arg("load")
        .args(["--url", &format!("http://{addr}/v1/orders?page=1")])
        .args(["--secret-file", key_file.to_str().unwrap(), "--env", "dev"])
        .args(["-X", "POST", "-d", r#"{"sku":"A-1"}"#, "--nonce"])
        .args(["-c", "2", "-n", "50", "--output", "json"]);
    let out = run(load).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["status"], serde_json::json!({"200": 50}), "{report}");
    assert_eq!(upstream.records().len(), 50);

    let base = |path: &str| {
        let mut r = Req::new("POST", path).body(Body::Full(br#"{"sku":"A-1"}"#.to_vec()));
        r.authority = addr.to_string();
        r
    };
    let refused = |code: &str| format!(r#"{{"error":"{code}"}}"#);
    let unsigned = send(addr, &base("/v1/orders")).await;
    assert_eq!(
        (unsigned.status, unsigned.text()),
        (401, refused("missing_signature"))
    );
    let tampered = base("/v1/orders")
        .signed(&key, "dev")
        .body(Body::Full(br#"{"sku":"B-2"}"#.to_vec()));
    let tampered = send(addr, &tampered).await;
    assert_eq!(
        (tampered.status, tampered.text()),
        (401, refused("content_mismatch"))
    );
    let once = base("/v1/orders").signed_with(
        &key,
        "dev",
        now(),
        Some("ext-authz-nonce-0001"),
        TagEncoding::Hex,
    );
    assert_eq!(send(addr, &once).await.status, 200);
    let again = send(addr, &once).await;
    assert_eq!(
        (again.status, again.text()),
        (401, refused("replayed_request"))
    );
    assert_eq!(upstream.records().len(), 51);
}
