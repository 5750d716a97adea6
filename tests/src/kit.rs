//! The kit as the CLI renders it, for tests of both binaries.

use std::process::Command;

use edge_hmac::render::gateway::CHECKED_IN_ARGS;
use std::net::SocketAddr;

use serde_json::Value;

use crate::build::{filter_wasm, loader_bin};
use crate::yaml::documents;

/// `edge-hmac render gateway ARGS` (the CLI), its standard output.
pub fn render_cli(args: &str) -> String {
    let args: Vec<&str> = args.split_whitespace().collect();
    render_what("gateway", &args)
}

/// `edge-hmac render WHAT ARGS` (the CLI), its standard output (checked
/// for every key the tests know).
pub fn render_what(what: &str, args: &[&str]) -> String {
    let out = Command::new(loader_bin())
        .args(["render", what])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    // The suite-wide scan (crate::secrets): no key in a rendered file.
    crate::secrets::assert_no_known_secret("a rendered file", &yaml);
    yaml
}

/// The first document of kind `kind` (panics when there is none).
pub fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// The edge-hmac entry of a rendered EnvoyExtensionPolicy: `wasm[0]` for
/// the proxy-wasm filter, `dynamicModule[0]` for the native module (both
/// carry the same `config`).
pub fn filter_entry(docs: &[Value]) -> &Value {
    let spec = &kind(docs, "EnvoyExtensionPolicy")["spec"];
    if spec["wasm"].is_array() {
        &spec["wasm"][0]
    } else {
        &spec["dynamicModule"][0]
    }
}

/// `render gateway` flags that add the shared nonce store (an example
/// image, pinned as the renderer requires).
pub const NONCE_STORE_ARGS: &str = "--nonce-store-secret edge-hmac-redis --nonce-store-image registry.example.com/crawbl/edge-hmac@sha256:0d1e2f3a4b5c6d7e8f904f9a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";

/// Renderings covering every option that changes the shape of a manifest.
pub fn renderings() -> Vec<(String, String)> {
    let wasm = filter_wasm().display().to_string();
    [
        CHECKED_IN_ARGS.to_string(),
        "--env prod --wasm-image registry.example.com/crawbl/edge-hmac-filter@sha256:4f9a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90".into(),
        format!("--env dev --wasm-url https://artifacts.example.com/edge-hmac/edge_hmac_filter.wasm --wasm-file {wasm} --require-nonce --max-body-bytes 4194304 --exempt-path /healthz --exempt-path /public/* --allow-cors-preflight --tls-certificate-secret public-tls --plain-http --http-port 8080 --gateway-namespace apps --gateway-name public"),
        "--env test --wasm-image registry.example.com/f@sha256:4f9a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90 --plain-http --no-https".into(),
        "--env stage --secret-id arn:aws:secretsmanager:eu-central-1:123456789012:secret:crawbl/stage/edge/hmac-AbCdEf --wasm-image registry.example.com/f:1 --wasm-image-sha256 4f9a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90".into(),
        // The native module, from a path on the proxies and from an image
        // volume.
        "--env dev --module native --module-path /var/lib/edge-hmac/libedge-hmac.so --require-nonce".into(),
        "--env prod --module native --module-image registry.example.com/crawbl/edge-hmac-module@sha256:4f9a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90".into(),
        // The shared nonce store, with either build and non-default
        // Gateway and proxy namespaces.
        format!("--env dev --wasm-image registry.example.com/crawbl/edge-hmac-filter@sha256:4f9a6b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f90 {NONCE_STORE_ARGS}"),
        format!("--env prod --module native --module-path /var/lib/edge-hmac/libedge-hmac.so --require-nonce --gateway-name public --gateway-namespace apps --proxy-namespace edge-proxies {NONCE_STORE_ARGS} --nonce-store-replicas 3 --nonce-store-on-unavailable local --nonce-store-timeout-ms 100"),
    ]
    .into_iter()
    .map(|args| (args.clone(), render_cli(&args)))
    .collect()
}

/// The kit's Gateway-side documents, those EG reads.
pub fn gateway_side(kit: &str) -> String {
    let mut out = String::new();
    for d in documents(kit) {
        let k = d["kind"].as_str().unwrap();
        if matches!(
            k,
            "Namespace"
                | "EnvoyProxy"
                | "GatewayClass"
                | "Gateway"
                | "ClientTrafficPolicy"
                | "EnvoyExtensionPolicy"
        ) {
            out.push_str(&format!("---\n{}\n", serde_json::to_string(&d).unwrap()));
        }
    }
    out
}

/// For each `(ns, name, prefix, upstream)`: an HTTPRoute `ns/name` on the
/// Gateway `(namespace, name)` for path `prefix`, to a Backend `ns/name` at
/// `upstream` (test-only: a recording upstream, on loopback or, for the
/// node tests, the node's address), and its namespace.
pub fn routes_on(gateway: (&str, &str), routes: &[(&str, &str, &str, SocketAddr)]) -> String {
    let (gw_ns, gw) = gateway;
    let mut out = String::new();
    for (ns, name, prefix, upstream) in routes {
        out.push_str(&format!(
            "---
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {ns}}}
spec:
  parentRefs: [{{name: {gw}, namespace: {gw_ns}}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
    backendRefs: [{{group: gateway.envoyproxy.io, kind: Backend, name: {name}}}]
---
# Test-only backend: a recording upstream.
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata: {{name: {name}, namespace: {ns}}}
spec:
  endpoints: [{{ip: {{address: {ip}, port: {port}}}}}]
",
            ip = upstream.ip(),
            port = upstream.port()
        ));
    }
    out
}
