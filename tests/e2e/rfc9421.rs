//! RFC 9421 signatures made by real third-party libraries, through a real
//! Envoy with the built filter: the PyPI `http-message-signatures` package
//! (`tests/support/rfc9421_client.py`) and the npm `http-message-signatures`
//! package (`tests/support/rfc9421-node/sign.mjs`), and the Rust `httpsig-hyper`
//! crate (`tests/support/rfc9421-rust`). They sign; the test sends
//! what they produced, as is or tampered with, and checks each outcome. Also
//! the CLI's `sign --format rfc9421` and `verify`, and v1 beside RFC 9421.

use std::net::SocketAddr;
use std::time::Duration;

use edge_hmac_core::config::parse;
use edge_hmac_core::scheme::fingerprint;
use edge_hmac_tests::aws::cli;
use edge_hmac_tests::build::rfc9421_rust_peer_bin;
use edge_hmac_tests::cli::run;
use edge_hmac_tests::client::{Body, Req, Resp, now, send};
use edge_hmac_tests::envoy::Envoy;
use edge_hmac_tests::python::{run_bin_json, run_json, run_node_json};
use edge_hmac_tests::secrets::{assert_no_secret, secret};
use edge_hmac_tests::target::Target;
use edge_hmac_tests::upstream::Upstream;
use serde_json::{Value, json};

use crate::loader::{home, raw_capture};

const ENV: &str = "dev";

/// Envoy with the filter (`config_json`) and key `key` in front of `upstream`.
async fn envoy(
    t: Target,
    upstream: SocketAddr,
    config_json: &str,
    key: &str,
) -> (Envoy, SocketAddr) {
    let local = t.local(upstream, parse(config_json.as_bytes()).unwrap());
    let envoy = t
        .start(&local, &[("HMAC_SECRET", key), ("HMAC_ENVIRONMENT", ENV)])
        .await;
    let addr = envoy.listener("edge_hmac").await;
    (envoy, addr)
}

/// A third-party RFC 9421 library.
#[derive(Debug, Clone, Copy)]
enum Library {
    /// PyPI `http-message-signatures` 3.0.0.
    Python,
    /// npm `http-message-signatures` 1.0.6.
    Node,
    /// crates.io `httpsig-hyper` 0.0.26.
    Rust,
}

/// What a client asks its library to sign.
#[derive(Debug, Clone)]
struct Spec {
    secret: String,
    keyid: String,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<&'static str>,
    created: u64,
    nonce: Option<String>,
    tag: &'static str,
    /// The Rust peer only: a library default to reproduce (see its crate
    /// doc); `None` signs in the profile.
    mode: Option<&'static str>,
}

impl Library {
    /// The request `spec` describes, signed by the library, for `addr`.
    async fn signed(self, addr: SocketAddr, spec: &Spec) -> Req {
        let input = json!({
            "secret": spec.secret,
            "keyid": spec.keyid,
            "method": spec.method,
            "url": format!("http://{addr}{}", spec.path),
            "headers": spec.headers.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "body": spec.body,
            "created": spec.created,
            "nonce": spec.nonce,
            "tag": spec.tag,
            "mode": spec.mode,
        });
        let timeout = Duration::from_secs(60);
        let out: Value = match self {
            Library::Python => run_json("rfc9421_client.py", &[], &input, timeout).await,
            Library::Node => run_node_json("rfc9421-node/sign.mjs", &input, timeout).await,
            Library::Rust => run_bin_json(rfc9421_rust_peer_bin(), &input, timeout).await,
        };
        let mut req = Req::new(spec.method, spec.path);
        req.authority = addr.to_string();
        for pair in out["headers"].as_array().expect("headers") {
            req = req.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        }
        match spec.body {
            Some(b) => req.body(Body::Full(b.as_bytes().to_vec())),
            None => req,
        }
    }
}

/// A fresh nonce (16+ characters of the allowed set).
fn nonce() -> String {
    format!("n-{}", edge_hmac::secret::random_hex(12).unwrap())
}

/// Asserts the filter's answer: `Ok(())` is a pass to the upstream,
/// `Err(code)` a refusal with that JSON error code.
#[track_caller]
fn assert_outcome(resp: &Resp, expected: Result<(), &str>, what: &str) {
    match expected {
        Ok(()) => assert_eq!(resp.status, 200, "{what}: {}", resp.text()),
        Err(code) => {
            assert_ne!(resp.status, 200, "{what}: passed");
            assert_eq!(
                resp.error_code().as_deref(),
                Some(code),
                "{what}: {}",
                resp.text()
            );
        }
    }
}

/// Requests signed by the Python, the npm and the Rust RFC 9421 libraries pass the
/// filter (GET, and POST with Content-Digest); each kind of tampering and a
/// replay is refused with its outcome code and never reaches the upstream;
/// a v1 request passes the same listener (formats both).
async fn third_party_libraries_through_envoy(t: Target) {
    let upstream = Upstream::start().await;
    let key = secret();
    let (_envoy, addr) = envoy(t, upstream.addr, r#"{"formats":["v1","rfc9421"]}"#, &key).await;
    let keyid = fingerprint(key.as_bytes());
    let mut passed = 0;
    for lib in [Library::Python, Library::Node, Library::Rust] {
        let get = Spec {
            secret: key.clone(),
            keyid: keyid.clone(),
            method: "GET",
            path: "/v1/orders?limit=10",
            headers: vec![],
            body: None,
            created: now(),
            nonce: Some(nonce()),
            tag: ENV,
            mode: None,
        };
        let post = Spec {
            method: "POST",
            path: "/v1/items?b=2&a=1",
            headers: vec![("content-type", "application/json")],
            body: Some(r#"{"sku":"A-1","qty":2}"#),
            nonce: Some(nonce()),
            ..get.clone()
        };
        let what = |case: &str| format!("{lib:?}: {case}");

        // Valid GET, then the same request again: a replay.
        let req = lib.signed(addr, &get).await;
        assert!(req.get("signature-input").is_some(), "{req:?}");
        assert_outcome(&send(addr, &req).await, Ok(()), &what("GET"));
        assert_outcome(
            &send(addr, &req).await,
            Err("replayed_request"),
            &what("replayed GET"),
        );
        // Valid POST: the body reaches the upstream.
        let req = lib.signed(addr, &post).await;
        assert!(req.get("content-digest").is_some(), "{req:?}");
        assert_outcome(&send(addr, &req).await, Ok(()), &what("POST"));
        passed += 2;
        let last = upstream.settled_records().await;
        assert_eq!(
            last.last().map(|r| r.body.as_slice()),
            Some(post.body.unwrap().as_bytes()),
            "{lib:?}"
        );

        // Each tampering, on a request signed afresh (new nonce).
        let fresh = |s: &Spec| Spec {
            nonce: Some(nonce()),
            ..s.clone()
        };
        let mut req = lib.signed(addr, &fresh(&post)).await;
        req.path = "/v1/other?b=2&a=1".into();
        assert_outcome(
            &send(addr, &req).await,
            Err("invalid_signature"),
            &what("path"),
        );
        let mut req = lib.signed(addr, &fresh(&post)).await;
        req.path = "/v1/items?b=2&a=2".into();
        assert_outcome(
            &send(addr, &req).await,
            Err("invalid_signature"),
            &what("query"),
        );
        let mut req = lib.signed(addr, &fresh(&post)).await;
        req.method = "PUT".into();
        assert_outcome(
            &send(addr, &req).await,
            Err("invalid_signature"),
            &what("method"),
        );
        let req = lib
            .signed(addr, &fresh(&post))
            .await
            .body(Body::Full(br#"{"sku":"A-1","qty":9}"#.to_vec()));
        assert_outcome(
            &send(addr, &req).await,
            Err("content_mismatch"),
            &what("body"),
        );
        let req = lib
            .signed(addr, &fresh(&post))
            .await
            .set("content-type", "text/plain");
        assert_outcome(
            &send(addr, &req).await,
            Err("invalid_signature"),
            &what("covered header"),
        );
        let stale = Spec {
            created: now() - 400,
            ..fresh(&get)
        };
        let req = lib.signed(addr, &stale).await;
        assert_outcome(
            &send(addr, &req).await,
            Err("stale_timestamp"),
            &what("stale created"),
        );
        let prod = Spec {
            tag: "prod",
            ..fresh(&get)
        };
        let req = lib.signed(addr, &prod).await;
        assert_outcome(
            &send(addr, &req).await,
            Err("invalid_signature"),
            &what("wrong tag"),
        );
        let unknown = Spec {
            keyid: fingerprint(secret().as_bytes()),
            ..fresh(&get)
        };
        let req = lib.signed(addr, &unknown).await;
        assert_outcome(
            &send(addr, &req).await,
            Err("invalid_signature"),
            &what("unknown keyid"),
        );
        // Nothing refused reached the upstream whole: requests refused at
        // the headers never arrive; the tampered body's headers went ahead
        // (the body is held, docs/signature-v1.md §5) and were reset.
        let records = upstream.settled_records().await;
        let whole: Vec<_> = records
            .iter()
            .filter(|r| r.complete && !r.aborted)
            .collect();
        assert_eq!(whole.len(), passed, "{lib:?}: {records:?}");
        assert!(
            records
                .iter()
                .all(|r| !r.body.windows(6).any(|w| w == b"qty\":9")),
            "{lib:?}: the tampered body reached the upstream"
        );
    }
    // v1 on the same listener, formats both.
    let mut v1 = Req::new("GET", "/v1/orders?limit=10");
    v1.authority = addr.to_string();
    assert_outcome(
        &send(addr, &v1.signed(&key, ENV)).await,
        Ok(()),
        "v1 with formats both",
    );
}

/// With `formats` unset (v1 only), a library-signed RFC 9421 request is
/// refused as signed in a format the filter leaves out: 401
/// `unsupported_format`, nothing upstream.
async fn rfc9421_refused_unless_enabled(t: Target) {
    let upstream = Upstream::start().await;
    let key = secret();
    let (_envoy, addr) = envoy(t, upstream.addr, "{}", &key).await;
    let spec = Spec {
        secret: key.clone(),
        keyid: fingerprint(key.as_bytes()),
        method: "GET",
        path: "/v1/orders",
        headers: vec![],
        body: None,
        created: now(),
        nonce: None,
        tag: ENV,
        mode: None,
    };
    let req = Library::Python.signed(addr, &spec).await;
    assert_outcome(
        &send(addr, &req).await,
        Err("unsupported_format"),
        "v1-only filter",
    );
    assert!(upstream.settled_records().await.is_empty());
}

/// `edge-hmac sign --format rfc9421` makes headers the filter accepts (a
/// real Envoy), covering an extra header; `verify` prints the RFC 9421
/// signature base and names the rule a tampered body breaks.
async fn cli_signs_and_verifies_rfc9421(t: Target) {
    let h = home();
    let key = secret();
    let upstream = Upstream::start().await;
    let (_envoy, addr) = envoy(t, upstream.addr, r#"{"formats":["rfc9421"]}"#, &key).await;
    let url = format!("http://{addr}/v1/orders?dry_run=1");
    let mut cmd = cli(h.path());
    cmd.env("HMAC_SECRET", &key).args([
        "sign",
        "--format",
        "rfc9421",
        "--secret-env",
        "HMAC_SECRET",
        "--env",
        ENV,
        "-X",
        "POST",
        "--url",
        &url,
        "-d",
        r#"{"sku":"A-1"}"#,
        "--nonce",
        "-H",
        "X-Client: cli",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let lines: Vec<&str> = out.stdout.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        names,
        ["x-client", "content-digest", "signature-input", "signature"],
        "{}",
        out.stdout
    );
    let mut req =
        Req::new("POST", "/v1/orders?dry_run=1").body(Body::Full(br#"{"sku":"A-1"}"#.to_vec()));
    req.authority = addr.to_string();
    for line in &lines {
        let (n, v) = line.split_once(": ").unwrap();
        req = req.header(n, v);
    }
    assert_outcome(&send(addr, &req).await, Ok(()), "CLI-signed POST");
    // The covered extra header is part of the signature.
    let changed = req.clone().set("x-client", "other");
    assert_outcome(
        &send(addr, &changed).await,
        Err("invalid_signature"),
        "x-client changed",
    );

    let raw = |body: &str| raw_capture(h.path(), addr, &lines, body);
    let verify = |path: std::path::PathBuf| {
        let mut cmd = cli(h.path());
        cmd.env("HMAC_SECRET", &key)
            .args([
                "verify",
                "--scheme",
                "http",
                "--secret-env",
                "HMAC_SECRET",
                "--env",
                ENV,
            ])
            .arg(path);
        cmd
    };
    let ok = run(verify(raw(r#"{"sku":"A-1"}"#))).await;
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(
        ok.stdout.contains("signature base (RFC 9421"),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stdout.contains(r#"  | "@query": ?dry_run=1"#),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stdout.contains(r#"  | "x-client": cli"#),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stdout
            .contains("result:      verified (rfc9421, current key)"),
        "{}",
        ok.stdout
    );
    let bad = run(verify(raw(r#"{"sku":"A-2"}"#))).await;
    assert_eq!(bad.code, 4, "{}", bad.all());
    assert!(
        bad.stdout.contains("refused, HTTP 401: content_mismatch"),
        "{}",
        bad.stdout
    );
    assert_no_secret(&format!("{}{}{}", out.all(), ok.all(), bad.all()), &[&key]);
}

/// Each default of `httpsig` 0.0.26 that the profile refuses, as the
/// library makes it, gets its documented code and never reaches the
/// upstream: a random base64 nonce (`=`) `malformed_signature`; its own
/// base64 keyid `invalid_signature`; a bare `try_new` (only `created`)
/// `malformed_signature`; an explicit `:80` kept in `@authority`
/// `invalid_signature`; an origin-form URI (empty `@authority`)
/// `invalid_signature`. The same request in the profile passes.
async fn rust_library_defaults_get_the_documented_codes(t: Target) {
    let upstream = Upstream::start().await;
    let key = secret();
    let (_envoy, addr) = envoy(t, upstream.addr, r#"{"formats":["rfc9421"]}"#, &key).await;
    let spec = |mode| Spec {
        secret: key.clone(),
        keyid: fingerprint(key.as_bytes()),
        method: "GET",
        path: "/v1/orders?limit=10",
        headers: vec![],
        body: None,
        created: now(),
        nonce: Some(nonce()),
        tag: ENV,
        mode,
    };
    let cases = [
        (Some("random_nonce"), Err("malformed_signature")),
        (Some("key_info"), Err("invalid_signature")),
        (Some("created_only"), Err("malformed_signature")),
        (Some("default_port"), Err("invalid_signature")),
        (Some("origin_form"), Err("invalid_signature")),
        (None, Ok(())),
    ];
    for (mode, expected) in cases {
        let mut req = Library::Rust.signed(addr, &spec(mode)).await;
        if mode == Some("default_port") {
            // Sent as the library's user would: `Host: 127.0.0.1:80`.
            req.authority = format!("{}:80", addr.ip());
        }
        let what = format!("{mode:?}: {:?}", req.get("signature-input"));
        assert_outcome(&send(addr, &req).await, expected, &what);
    }
    let records = upstream.settled_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
}

edge_hmac_tests::matrix!(
    third_party_libraries_through_envoy,
    rust_library_defaults_get_the_documented_codes,
    rfc9421_refused_unless_enabled,
    cli_signs_and_verifies_rfc9421,
);
