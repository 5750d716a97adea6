//! The filter in a real Envoy (2 workers) in front of a recording upstream.

use std::net::SocketAddr;
use std::time::Duration;

use edge_hmac::render::envoy::{LocalEnvoy, Module};
use edge_hmac_core::config::buffer_limit_for;
use edge_hmac_core::config::{PluginConfig, parse};
use edge_hmac_core::scheme::TagEncoding;
use edge_hmac_tests::client::{Body, Conn, Req, assert_rejected, now, send};
use edge_hmac_tests::envoy::{Envoy, validate_file_on};
use edge_hmac_tests::secrets::{assert_no_secret, nonce, secret};
use edge_hmac_tests::target::Target;
use edge_hmac_tests::upstream::Upstream;

const ENV: &str = "dev";

struct Setup {
    envoy: Envoy,
    upstream: Upstream,
    addr: SocketAddr,
    secret: String,
}

fn plugin_config(json: &str) -> PluginConfig {
    parse(json.as_bytes()).expect("test plugin config parses")
}

async fn setup_with(
    t: Target,
    config_json: &str,
    previous: Option<&str>,
    tweak: impl FnOnce(&mut LocalEnvoy),
) -> Setup {
    let upstream = Upstream::start().await;
    let mut config = t.local(upstream.addr, plugin_config(config_json));
    tweak(&mut config);
    let secret = secret();
    let mut env = vec![("HMAC_SECRET", secret.as_str()), ("HMAC_ENVIRONMENT", ENV)];
    if let Some(p) = previous {
        env.push(("HMAC_SECRET_PREVIOUS", p));
    }
    let envoy = t.start(&config, &env).await;
    let addr = envoy.listener("edge_hmac").await;
    Setup {
        envoy,
        upstream,
        addr,
        secret,
    }
}

async fn setup(t: Target, config_json: &str) -> Setup {
    setup_with(t, config_json, None, |_| {}).await
}

fn json_body() -> Vec<u8> {
    br#"{"order":{"sku":"A-100","qty":2},"note":"e2e"}"#.to_vec()
}

/// Valid GET and POST requests (hex and base64 tags) reach the upstream with
/// the body intact and are counted as verified.
async fn valid_requests_reach_upstream_intact(t: Target) {
    let s = setup(t, "{}").await;
    let get = Req::new("GET", "/v1/orders?limit=10").signed(&s.secret, ENV);
    assert_eq!(send(s.addr, &get).await.status, 200);
    for encoding in [TagEncoding::Hex, TagEncoding::Base64] {
        let post = Req::new("POST", "/v1/orders")
            .body(Body::Full(json_body()))
            .signed_with(&s.secret, ENV, now(), None, encoding);
        let resp = send(s.addr, &post).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    let records = s.upstream.records();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].path, "/v1/orders?limit=10");
    assert!(records[0].header("x-crawbl-signature").is_some());
    for r in &records[1..] {
        assert!(r.complete);
        assert_eq!(r.body, json_body());
    }
    assert_eq!(s.envoy.counter("verified").await, 3);
}

/// Each rejection code comes with its status and JSON body, is counted, and
/// nothing of a rejected request reaches the upstream.
async fn every_rejection_code_with_status(t: Target) {
    let s = setup(t, r#"{"max_body_bytes": 1024}"#).await;
    let signed_get = || Req::new("GET", "/v1/x").signed(&s.secret, ENV);

    // missing_signature
    assert_rejected(
        &send(s.addr, &Req::new("GET", "/v1/x")).await,
        401,
        "missing_signature",
    );
    // malformed_signature: the signature header twice
    let sig = signed_get().get("x-crawbl-signature").unwrap();
    let dup = signed_get().header("x-crawbl-signature", &sig);
    assert_rejected(&send(s.addr, &dup).await, 401, "malformed_signature");
    // malformed_signature: unknown scheme
    let v2 = signed_get().set("x-crawbl-signature", sig.replacen("v1=", "v2=", 1));
    assert_rejected(&send(s.addr, &v2).await, 401, "malformed_signature");
    // stale_timestamp (host clock)
    let stale =
        Req::new("GET", "/v1/x").signed_with(&s.secret, ENV, now() - 1000, None, TagEncoding::Hex);
    assert_rejected(&send(s.addr, &stale).await, 401, "stale_timestamp");
    // invalid_signature
    let wrong = Req::new("GET", "/v1/x").signed(&secret(), ENV);
    assert_rejected(&send(s.addr, &wrong).await, 401, "invalid_signature");
    // replayed_request
    let n = nonce();
    let once =
        Req::new("GET", "/v1/x").signed_with(&s.secret, ENV, now(), Some(&n), TagEncoding::Hex);
    assert_eq!(send(s.addr, &once).await.status, 200);
    assert_rejected(&send(s.addr, &once).await, 401, "replayed_request");
    // content_mismatch
    let tampered = Req::new("POST", "/v1/x")
        .body(Body::Full(b"original".to_vec()))
        .signed(&s.secret, ENV)
        .body(Body::Full(b"modified".to_vec()));
    assert_rejected(&send(s.addr, &tampered).await, 401, "content_mismatch");
    // body_too_large, declared by content-length
    let big = Req::new("POST", "/v1/x")
        .body(Body::Full(vec![b'x'; 2048]))
        .signed(&s.secret, ENV);
    assert_rejected(&send(s.addr, &big).await, 413, "body_too_large");
    // body_too_large, streamed without content-length
    let streamed = Req::new("POST", "/v1/x")
        .body(Body::Chunks {
            chunks: vec![vec![b'y'; 600]; 3],
            delay: Duration::from_millis(5),
        })
        .signed(&s.secret, ENV);
    assert_rejected(&send(s.addr, &streamed).await, 413, "body_too_large");

    for (code, n) in [
        ("missing_signature", 1),
        ("malformed_signature", 2),
        ("stale_timestamp", 1),
        ("invalid_signature", 1),
        ("replayed_request", 1),
        ("content_mismatch", 1),
        ("body_too_large", 2),
    ] {
        assert_eq!(
            s.envoy.counter(&format!("rejected.{code}")).await,
            n,
            "{code}"
        );
    }
    // Only the accepted nonce request reached the upstream completely; the
    // streamed bodies were never delivered.
    let records = s.upstream.settled_records().await;
    let complete: Vec<_> = records.iter().filter(|r| r.complete).collect();
    assert_eq!(complete.len(), 1, "{records:#?}");
    assert!(records.iter().all(|r| r.body.is_empty()), "{records:#?}");
}

/// A request refused at the headers is answered without anything reaching
/// the upstream, even with a body on the way.
async fn rejected_at_headers_never_reaches_upstream(t: Target) {
    let s = setup(t, "{}").await;
    let reqs = [
        Req::new("POST", "/v1/x").body(Body::Full(vec![1; 5000])),
        Req::new("POST", "/v1/x")
            .body(Body::Full(vec![1; 5000]))
            .signed(&secret(), ENV),
        Req::new("POST", "/v1/x")
            .body(Body::Chunks {
                chunks: vec![vec![2; 1000]; 5],
                delay: Duration::from_millis(20),
            })
            .signed(&secret(), ENV),
    ];
    for r in &reqs {
        assert_eq!(send(s.addr, r).await.status, 401);
    }
    assert!(s.upstream.settled_records().await.is_empty());
}

/// A tampered body is never delivered: the upstream sees at most the signed
/// headers and a reset, never a body byte.
async fn tampered_body_never_delivered(t: Target) {
    let s = setup(t, "{}").await;
    let chunks: Vec<Vec<u8>> = (0..8).map(|i| vec![b'a' + i; 4096]).collect();
    let mut bad = chunks.clone();
    bad[7][4095] ^= 1; // the very last byte
    let req = Req::new("PUT", "/v1/blob")
        .body(Body::Chunks {
            chunks,
            delay: Duration::from_millis(10),
        })
        .signed(&s.secret, ENV)
        .body(Body::Chunks {
            chunks: bad,
            delay: Duration::from_millis(10),
        });
    assert_rejected(&send(s.addr, &req).await, 401, "content_mismatch");
    let records = s.upstream.settled_records().await;
    assert!(records.len() <= 1, "{records:#?}");
    for r in &records {
        assert!(
            r.body.is_empty(),
            "upstream received {} body bytes",
            r.body.len()
        );
        assert!(!r.complete);
    }
}

/// During a rotation the previous key is accepted and counted separately; an
/// unrelated key is not.
async fn previous_key_accepted_and_counted(t: Target) {
    let old = secret();
    let s = setup_with(t, "{}", Some(&old), |_| {}).await;
    let with_old = Req::new("GET", "/v1/x").signed(&old, ENV);
    assert_eq!(send(s.addr, &with_old).await.status, 200);
    let with_new = Req::new("GET", "/v1/x").signed(&s.secret, ENV);
    assert_eq!(send(s.addr, &with_new).await.status, 200);
    assert_rejected(
        &send(s.addr, &Req::new("GET", "/v1/x").signed(&secret(), ENV)).await,
        401,
        "invalid_signature",
    );
    assert_eq!(s.envoy.counter("verified").await, 2);
    assert_eq!(s.envoy.counter("verified_previous_key").await, 1);
    assert_no_secret(&s.envoy.log(), &[&old, &s.secret]);
}

/// A nonce accepted on one worker is refused on the other: two connections
/// held open with exact balancing land on different workers (checked in the
/// per-worker listener stats).
async fn replay_refused_across_workers(t: Target) {
    let s = setup_with(t, r#"{"require_nonce": true}"#, None, |c| {
        c.exact_balance = true
    })
    .await;
    let mut a = Conn::h1(s.addr).await.unwrap();
    let mut b = Conn::h1(s.addr).await.unwrap();
    let n = nonce();
    let req =
        Req::new("GET", "/v1/pay").signed_with(&s.secret, ENV, now(), Some(&n), TagEncoding::Hex);
    assert_eq!(a.send(&req).await.unwrap().status, 200);
    let replay_b = b.send(&req).await.unwrap();
    assert_rejected(&replay_b, 401, "replayed_request");
    let replay_a = a.send(&req).await.unwrap();
    assert_rejected(&replay_a, 401, "replayed_request");
    // Both workers hold one of the two connections.
    let prefix = "listener.edge_hmac";
    for worker in 0..2 {
        let active = s
            .envoy
            .stat(&format!("{prefix}.worker_{worker}.downstream_cx_active"))
            .await;
        assert_eq!(
            active,
            1,
            "worker {worker} connections:\n{}",
            s.envoy.stats().await
        );
    }
    // Without a nonce, require_nonce refuses.
    let no_nonce = Req::new("GET", "/v1/pay").signed(&s.secret, ENV);
    assert_rejected(&b.send(&no_nonce).await.unwrap(), 401, "missing_signature");
    assert_eq!(s.upstream.records().len(), 1);
}

/// When the bounded nonce cache is full, requests with a new nonce fail
/// closed (503) and the condition shows in stats; requests without a nonce
/// still pass.
async fn full_nonce_cache_fails_closed(t: Target) {
    // 16 entries: rounded up to a single bucket.
    let s = setup(t, r#"{"nonce_cache_max_entries": 16}"#).await;
    for _ in 0..edge_hmac_core::replay::BUCKET_CAPACITY {
        let req = Req::new("GET", "/v1/x").signed_with(
            &s.secret,
            ENV,
            now(),
            Some(&nonce()),
            TagEncoding::Hex,
        );
        assert_eq!(send(s.addr, &req).await.status, 200);
    }
    let req = Req::new("GET", "/v1/x").signed_with(
        &s.secret,
        ENV,
        now(),
        Some(&nonce()),
        TagEncoding::Hex,
    );
    assert_rejected(&send(s.addr, &req).await, 503, "replay_cache_unavailable");
    assert_eq!(s.envoy.counter("nonce_cache_full").await, 1);
    assert_eq!(
        send(s.addr, &Req::new("GET", "/v1/x").signed(&s.secret, ENV))
            .await
            .status,
        200
    );
}

/// Exempt paths (exact and prefix) pass unsigned; CORS preflights pass only
/// when allowed; everything else still needs a signature.
async fn exempt_paths_and_cors_preflight(t: Target) {
    let s = setup(
        t,
        r#"{"exempt_paths": ["/healthz", "/public/*"], "allow_cors_preflight": true}"#,
    )
    .await;
    for path in ["/healthz", "/healthz?probe=1", "/public/logo.svg"] {
        assert_eq!(
            send(s.addr, &Req::new("GET", path)).await.status,
            200,
            "{path}"
        );
    }
    for path in ["/healthz/x", "/publicity", "/v1/healthz"] {
        assert_eq!(
            send(s.addr, &Req::new("GET", path)).await.status,
            401,
            "{path}"
        );
    }
    let preflight = Req::new("OPTIONS", "/v1/orders")
        .header("origin", "https://app.example.test")
        .header("access-control-request-method", "POST");
    assert_eq!(send(s.addr, &preflight).await.status, 200);
    assert_eq!(
        send(s.addr, &Req::new("OPTIONS", "/v1/orders"))
            .await
            .status,
        401
    );
    // Exempt paths are for GET/HEAD health checks only, and a "preflight"
    // with a body is not one: both are verified, nothing reaches upstream.
    let post = Req::new("POST", "/healthz").body(Body::Full(b"{}".to_vec()));
    assert_eq!(send(s.addr, &post).await.status, 401);
    let smuggled = preflight.clone().body(Body::Full(b"smuggled".to_vec()));
    assert_eq!(send(s.addr, &smuggled).await.status, 401);
    assert!(
        s.upstream.records().iter().all(|r| r.body.is_empty()),
        "an unsigned body reached the upstream"
    );
    assert_eq!(s.envoy.counter("exempt").await, 3);
    assert_eq!(s.envoy.counter("cors_preflight").await, 1);
}

/// A 2 MiB body and a body sent in many small chunks are verified and
/// delivered intact (listener buffer raised above max_body_bytes).
async fn large_and_chunked_bodies(t: Target) {
    let s = setup(t, r#"{"max_body_bytes": 4194304}"#).await;
    let big: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let req = Req::new("POST", "/v1/upload")
        .body(Body::Full(big.clone()))
        .signed(&s.secret, ENV);
    let resp = send(s.addr, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let chunks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 257]).collect();
    let req = Req::new("POST", "/v1/stream")
        .body(Body::Chunks {
            chunks: chunks.clone(),
            delay: Duration::from_millis(2),
        })
        .signed(&s.secret, ENV);
    assert_eq!(send(s.addr, &req).await.status, 200);
    let records = s.upstream.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].body, big);
    assert_eq!(records[1].body, chunks.concat());
    assert_eq!(s.envoy.counter("verified").await, 2);
}

/// Envoy's own per-connection buffer limit, when below the filter's
/// max_body_bytes: the wasm filter gets a plain 413 from Envoy before it can
/// decide (the two must be set together); the native module raises its
/// stream's limit itself, so the same body is verified and delivered.
async fn envoy_buffer_limit_below_max_body(t: Target) {
    let s = setup_with(t, r#"{"max_body_bytes": 1048576}"#, None, |c| {
        c.buffer_limit_bytes = 32 * 1024
    })
    .await;
    let req = Req::new("POST", "/v1/upload")
        .body(Body::Full(vec![7; 200 * 1024]))
        .signed(&s.secret, ENV);
    let resp = send(s.addr, &req).await;
    assert_eq!(buffer_limit_for(1024 * 1024), 1024 * 1024 + 64 * 1024);
    if t.module == Module::Native {
        assert_eq!(resp.status, 200, "{}", resp.text());
        let records = s.upstream.settled_records().await;
        assert_eq!(records[0].body.len(), 200 * 1024);
        return;
    }
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.error_code(),
        None,
        "Envoy's own 413, not the filter's: {}",
        resp.text()
    );
    assert!(
        s.upstream
            .settled_records()
            .await
            .iter()
            .all(|r| r.body.is_empty())
    );
}

/// HTTP/2: header names arrive lowercase, bodies ending with trailers are
/// checked at the end of the stream (the trailers callback), tampering is
/// refused.
async fn http2_with_trailers(t: Target) {
    let s = setup(t, "{}").await;
    let mut conn = Conn::h2(s.addr).await.unwrap();
    let get = Req::new("GET", "/v1/h2").signed(&s.secret, ENV);
    assert_eq!(conn.send(&get).await.unwrap().status, 200);
    let data = b"grpc-like payload".to_vec();
    let trailers = vec![("x-checksum".to_string(), "abc".to_string())];
    let post = Req::new("POST", "/v1/h2")
        .body(Body::WithTrailers {
            data: data.clone(),
            trailers: trailers.clone(),
        })
        .signed(&s.secret, ENV);
    let resp = conn.send(&post).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let tampered = post.clone().body(Body::WithTrailers {
        data: b"grpc-like PAYLOAD".to_vec(),
        trailers,
    });
    assert_rejected(
        &conn.send(&tampered).await.unwrap(),
        401,
        "content_mismatch",
    );
    let records = s.upstream.settled_records().await;
    let delivered: Vec<_> = records.iter().filter(|r| !r.body.is_empty()).collect();
    assert_eq!(delivered.len(), 1, "{records:#?}");
    assert_eq!(delivered[0].body, data);
    // The HTTP/1.1 upstream gets no trailers: Envoy Gateway does not enable
    // them (ClientTrafficPolicy http1.enableTrailers), and neither does the
    // local bootstrap. The body check does not depend on them.
    assert!(delivered[0].complete);
    assert!(
        delivered[0].trailers.is_empty(),
        "{:?}",
        delivered[0].trailers
    );
    assert_eq!(s.envoy.counter("verified").await, 2);
}

/// The counters appear in Envoy's /stats under the prefix of the build, and
/// in /stats/prometheus under the same labelled names for both builds (the
/// rendered bootstrap's stats tags and runtime flag; docs/monitoring.md).
async fn counters_in_stats_and_prometheus(t: Target) {
    let s = setup(t, "{}").await;
    send(s.addr, &Req::new("GET", "/v1/x").signed(&s.secret, ENV)).await;
    send(s.addr, &Req::new("GET", "/v1/x")).await;
    let stats = s.envoy.stats().await;
    let prefix = t.module.stats_prefix();
    assert!(
        stats.contains(&format!("{prefix}edge_hmac.verified: 1")),
        "{stats}"
    );
    assert!(
        stats.contains(&format!("{prefix}edge_hmac.rejected.missing_signature: 1")),
        "{stats}"
    );
    let prom = edge_hmac_tests::client::get(s.envoy.admin, "/stats/prometheus")
        .await
        .unwrap()
        .text();
    for line in [
        "edge_hmac_verified{} 1",
        "edge_hmac_rejected{code=\"missing_signature\"} 1",
        "edge_hmac_rejected{code=\"invalid_signature\"} 0",
        "edge_hmac_verified_key{slot=\"current\"} 1",
        "edge_hmac_verified_format{format=\"v1\"} 1",
        "edge_hmac_verified_format{format=\"rfc9421\"} 0",
    ] {
        assert!(
            prom.lines().any(|l| l == line),
            "no {line:?} in prometheus output: {}",
            prom.lines()
                .filter(|l| l.contains("edge_hmac"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        prom.lines()
            .any(|l| l.starts_with("edge_hmac_key{slot=\"current\",fingerprint=\"")),
        "no key gauge"
    );
    assert!(
        !prom.contains("dynamicmodulescustom"),
        "native names differ"
    );
}

/// Hostile header values (non-UTF-8 bytes, oversized values) are refused
/// and never crash the VM: later valid requests still pass.
async fn hostile_headers_do_not_crash_the_vm(t: Target) {
    let s = setup(t, "{}").await;
    let odd = Req::new("GET", "/v1/x")
        .signed(&s.secret, ENV)
        .set("x-crawbl-signature", b"v1=\xff\xfe\xfd")
        .header("x-other", b"\xc3\x28\xa0\xa1");
    assert_rejected(&send(s.addr, &odd).await, 401, "malformed_signature");
    let huge_nonce = Req::new("GET", "/v1/x")
        .signed(&s.secret, ENV)
        .set("x-crawbl-nonce", "n".repeat(8000));
    assert_rejected(&send(s.addr, &huge_nonce).await, 401, "malformed_signature");
    let odd_value = Req::new("GET", "/v1/x")
        .signed(&s.secret, ENV)
        .header("x-trace", b"\x80\x81");
    assert_eq!(send(s.addr, &odd_value).await.status, 200);
    for _ in 0..4 {
        assert_eq!(
            send(s.addr, &Req::new("GET", "/v1/x").signed(&s.secret, ENV))
                .await
                .status,
            200
        );
    }
    assert_eq!(s.envoy.counter("internal_error").await, 0);
    assert!(
        !s.envoy.log().contains("panicked"),
        "{}",
        s.envoy.log_tail(40)
    );
}

/// Envoy normalizes the path before the filter (as Envoy Gateway does), so
/// clients sign the normalized form: docs/signature-v1.md section 7.
async fn path_is_verified_after_normalization(t: Target) {
    let s = setup(t, "{}").await;
    // Signed normalized, sent with merged-away slashes and dot segments: passes.
    let req = Req::new("GET", "/v1/a/b").signed(&s.secret, ENV);
    let mut sent = req.clone();
    sent.path = "/v1//a/./b".into();
    assert_eq!(send(s.addr, &sent).await.status, 200);
    // Signed as sent (not normalized): the verifier sees /v1/a/b and refuses.
    let raw = Req::new("GET", "/v1//a/./b").signed(&s.secret, ENV);
    assert_rejected(&send(s.addr, &raw).await, 401, "invalid_signature");
    // Escaped slashes are redirected before any filter runs.
    let escaped = Req::new("GET", "/v1/a%2Fb").signed(&s.secret, ENV);
    let resp = send(s.addr, &escaped).await;
    assert_eq!(resp.status, 307);
    // The query is untouched and signed verbatim.
    let query = Req::new("GET", "/v1/search?q=a%2Fb//..&x=%C3%A9").signed(&s.secret, ENV);
    assert_eq!(send(s.addr, &query).await.status, 200);
    let paths: Vec<String> = s.upstream.records().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/v1/a/b", "/v1/search?q=a%2Fb//..&x=%C3%A9"]);
}

/// Envoy refuses to start (fail closed) with a bad plugin configuration or a
/// missing or short secret; the log names the problem and never the secret.
async fn envoy_refuses_bad_config_or_missing_secret(t: Target) {
    let upstream = Upstream::start().await;
    let good = secret();
    let yaml = |json: &str| {
        t.local(upstream.addr, plugin_config(json))
            .to_yaml()
            .unwrap()
    };
    let validate = |yaml: &str, env: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, yaml).unwrap();
        validate_file_on(&t.envoy.bin(), &path, env)
    };

    // Unknown field: rendered by hand since our parser would refuse it first.
    let typo = yaml("{}").replace(
        r#"value: '{"hmac_secret_env""#,
        r#"value: '{"require_nonces":true,"hmac_secret_env""#,
    );
    assert!(typo.contains("require_nonces"), "substitution failed");
    let short = "short-secret-value-1234";
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown field",
            typo,
            vec![("HMAC_SECRET", &good), ("HMAC_ENVIRONMENT", ENV)],
            "require_nonces",
        ),
        (
            "missing secret",
            yaml("{}"),
            vec![("HMAC_ENVIRONMENT", ENV)],
            "HMAC_SECRET is unset or empty",
        ),
        (
            "short secret",
            yaml("{}"),
            vec![("HMAC_SECRET", short), ("HMAC_ENVIRONMENT", ENV)],
            "at least 32 bytes",
        ),
        (
            "missing environment",
            yaml("{}"),
            vec![("HMAC_SECRET", &good)],
            "HMAC_ENVIRONMENT is unset",
        ),
        (
            "short previous key",
            yaml("{}"),
            vec![
                ("HMAC_SECRET", &good),
                ("HMAC_SECRET_PREVIOUS", short),
                ("HMAC_ENVIRONMENT", ENV),
            ],
            "previous HMAC secret",
        ),
    ];
    for (what, yaml, env, expected) in cases {
        let out = validate(&yaml, &env);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{what}: validate accepted it");
        assert!(log.contains("configuration rejected"), "{what}: {log}");
        assert!(
            log.contains(expected),
            "{what}: expected {expected:?} in {log}"
        );
        assert_no_secret(&log, &[short, &good]);
        // And a real start fails too, instead of serving unverified traffic.
        let started = Envoy::try_start_on(&t.envoy.bin(), t.module, &yaml, &env).await;
        assert!(started.is_err(), "{what}: Envoy started");
    }
    // The same bootstrap with a good secret validates.
    let out = validate(
        &yaml("{}"),
        &[("HMAC_SECRET", &good), ("HMAC_ENVIRONMENT", ENV)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A body that an earlier filter buffered whole and then resumed (a Lua
/// filter reading `body()` here; ext_authz with a body does the same) is
/// checked once: signed bodies pass whole, a tampered one is
/// `content_mismatch` and never delivered. (Envoy then hands the filter its
/// buffer as the received frame too: read twice, every body would fail.)
async fn body_buffered_by_an_earlier_filter(t: Target) {
    let upstream = Upstream::start().await;
    let yaml = t
        .local(upstream.addr, plugin_config("{}"))
        .to_yaml()
        .unwrap();
    let mut doc = edge_hmac_tests::yaml::documents(&yaml).remove(0);
    // Lua's `body()` buffers the whole body and resumes the chain when it
    // is complete (ext_authz with a body does the same).
    let buffer = serde_json::json!({
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {
                "inline_string": "function envoy_on_request(h) h:body() end",
            },
        },
    });
    for listener in doc["static_resources"]["listeners"].as_array_mut().unwrap() {
        listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            .as_array_mut()
            .unwrap()
            .insert(0, buffer.clone());
    }
    let key = secret();
    let envoy = Envoy::try_start_on(
        &t.envoy.bin(),
        t.module,
        &serde_json::to_string(&doc).unwrap(),
        &[("HMAC_SECRET", &key), ("HMAC_ENVIRONMENT", ENV)],
    )
    .await
    .unwrap();
    let addr = envoy.listener("edge_hmac").await;
    for size in [46, 64 * 1024, 700 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let ok = Req::new("POST", "/v1/buffered")
            .body(Body::Full(body.clone()))
            .signed(&key, ENV);
        let resp = send(addr, &ok).await;
        assert_eq!(resp.status, 200, "{size} B: {}", resp.text());
        let got = upstream.settled_records().await.pop().unwrap();
        assert_eq!((got.body.len(), got.complete), (size, true), "{size} B");
        assert!(got.body == body, "{size} B: the upstream got other bytes");
        let mut tampered = Req::new("POST", "/v1/buffered")
            .body(Body::Full(body.clone()))
            .signed(&key, ENV);
        let mut other = body;
        other[size / 2] ^= 1;
        tampered = tampered.body(Body::Full(other));
        assert_rejected(&send(addr, &tampered).await, 401, "content_mismatch");
    }
    // A tampered request's headers may have gone ahead; its body never.
    let records = upstream.settled_records().await;
    assert_eq!(records.iter().filter(|r| r.complete).count(), 3);
    assert!(
        records.iter().all(|r| r.complete || r.body.is_empty()),
        "a tampered body reached the upstream"
    );
}

edge_hmac_tests::matrix!(
    valid_requests_reach_upstream_intact,
    every_rejection_code_with_status,
    rejected_at_headers_never_reaches_upstream,
    tampered_body_never_delivered,
    previous_key_accepted_and_counted,
    replay_refused_across_workers,
    full_nonce_cache_fails_closed,
    exempt_paths_and_cors_preflight,
    large_and_chunked_bodies,
    http2_with_trailers,
    counters_in_stats_and_prometheus,
    hostile_headers_do_not_crash_the_vm,
    path_is_verified_after_normalization,
    envoy_refuses_bad_config_or_missing_secret,
    envoy_buffer_limit_below_max_body,
    body_buffered_by_an_earlier_filter,
);
