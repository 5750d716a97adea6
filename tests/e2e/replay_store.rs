//! One-time nonces across proxies: real Envoys with the filter (both builds,
//! both Envoy versions) calling a real `edge-hmac nonce-store` over a real
//! Debian `redis-server`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edge_hmac::nonce_store::{self, NonceStoreConfig, NonceStoreHandle, RedisUrl};
use edge_hmac::render::envoy::NONCE_STORE_CLUSTER;
use edge_hmac_core::config::parse;
use edge_hmac_core::scheme::{Payload, TagEncoding};
use edge_hmac_tests::client::{Body, Req, Resp, now, send};
use edge_hmac_tests::envoy::Envoy;
use edge_hmac_tests::matrix;
use edge_hmac_tests::redis::{Redis, RedisOpts};
use edge_hmac_tests::secrets::{assert_no_secret, nonce, secret};
use edge_hmac_tests::target::Target;
use edge_hmac_tests::upstream::Upstream;

use edge_hmac_tests::cluster::free_port;
use serde_json::json;

use crate::loader::{Running, home, run_cmd};
use crate::newcomer::write_dev_secret;
use crate::streams::{at, crawbl_headers, events, peer_client, peer_server};

const ENV: &str = "dev";

/// A store in front of `redis`, on a free loopback port.
async fn store(redis: &Redis) -> NonceStoreHandle {
    let mut cfg = NonceStoreConfig::new(RedisUrl::parse(&redis.url()).unwrap());
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    nonce_store::start(cfg).await.unwrap()
}

/// One proxy: an Envoy with the filter calling the store at `store`.
async fn proxy(
    t: Target,
    upstream: SocketAddr,
    store: SocketAddr,
    secret: &str,
    options: &str,
) -> (Envoy, SocketAddr) {
    proxy_with(t, upstream, store, secret, "", options).await
}

/// Like [`proxy`], with more top-level settings (`extra`, each preceded by a
/// comma) and `options` inside `nonce_store`.
async fn proxy_with(
    t: Target,
    upstream: SocketAddr,
    store: SocketAddr,
    secret: &str,
    extra: &str,
    options: &str,
) -> (Envoy, SocketAddr) {
    let json = format!(
        r#"{{"require_nonce":false{extra},"nonce_store":{{"cluster":"{NONCE_STORE_CLUSTER}"{options}}}}}"#
    );
    let mut config = t.local(upstream, parse(json.as_bytes()).unwrap());
    config.nonce_store = Some(store);
    let envoy = t
        .start(
            &config,
            &[("HMAC_SECRET", secret), ("HMAC_ENVIRONMENT", ENV)],
        )
        .await;
    let addr = envoy.listener("edge_hmac").await;
    (envoy, addr)
}

fn get_with_nonce(secret: &str, n: &str) -> Req {
    Req::new("GET", "/v1/pay").signed_with(secret, ENV, now(), Some(n), TagEncoding::Hex)
}

#[track_caller]
fn assert_code(resp: &Resp, status: u16, code: &str) {
    assert_eq!(
        (resp.status, resp.error_code().as_deref()),
        (status, Some(code)),
        "body: {}",
        resp.text()
    );
}

/// Two Envoy processes sharing one store: a nonce accepted by one is
/// refused by the other (the store's answer), by the first (its own table,
/// no call), and by the first again once it was restarted with an empty
/// table; a POST's replay never reaches the upstream complete.
async fn a_nonce_is_used_once_across_proxies(t: Target) {
    let redis = Redis::start(RedisOpts::default());
    let store = store(&redis).await;
    let upstream = Upstream::start().await;
    let secret = secret();
    let (a, a_addr) = proxy(t, upstream.addr, store.local_addr(), &secret, "").await;
    let (b, b_addr) = proxy(t, upstream.addr, store.local_addr(), &secret, "").await;

    let n = nonce();
    let req = get_with_nonce(&secret, &n);
    assert_eq!(send(a_addr, &req).await.status, 200);
    assert_code(&send(b_addr, &req).await, 401, "replayed_request");
    assert_code(&send(a_addr, &req).await, 401, "replayed_request");
    assert_eq!(
        a.counter("nonce_store.claims").await,
        1,
        "a local hit makes no call"
    );
    assert_eq!(b.counter("nonce_store.replayed").await, 1);

    // A fresh process (its table empty) still refuses: the store remembers.
    drop(a);
    let (a2, a2_addr) = proxy(t, upstream.addr, store.local_addr(), &secret, "").await;
    assert_code(&send(a2_addr, &req).await, 401, "replayed_request");
    assert_eq!(a2.counter("nonce_store.replayed").await, 1);

    // A body: accepted once with its body intact; its replay through the
    // other proxy is refused and never reaches the upstream complete.
    let body = br#"{"pay":42}"#.to_vec();
    let post = Req::new("POST", "/v1/pay")
        .body(Body::Full(body.clone()))
        .signed_with(&secret, ENV, now(), Some(&nonce()), TagEncoding::Hex);
    assert_eq!(send(b_addr, &post).await.status, 200);
    assert_code(&send(a2_addr, &post).await, 401, "replayed_request");
    let records = upstream.settled_records().await;
    let complete: Vec<_> = records.iter().filter(|r| r.complete).collect();
    assert_eq!(complete.len(), 2, "{records:?}");
    assert_eq!(complete[1].body, body);
    // Without a nonce, no call is made and nothing changes.
    let plain = Req::new("GET", "/v1/x").signed(&secret, ENV);
    assert_eq!(send(b_addr, &plain).await.status, 200);
    assert_eq!(b.counter("nonce_store.claims").await, 2);
    store.shutdown().await;
}

/// Under a store, requests whose data is not held otherwise wait at their
/// headers for the claim: an `UNSIGNED-PAYLOAD` upload with a nonce streams
/// through complete once the store said fresh; its replay through the
/// other proxy is refused and nothing of it reaches the upstream.
async fn a_streamed_body_waits_at_its_headers(t: Target) {
    let redis = Redis::start(RedisOpts::default());
    let store = store(&redis).await;
    let upstream = Upstream::start().await;
    let secret = secret();
    let extra = r#","unsigned_payload_paths":["/v1/upload"]"#;
    let mut proxies = Vec::new();
    for _ in 0..2 {
        proxies.push(proxy_with(t, upstream.addr, store.local_addr(), &secret, extra, "").await);
    }
    let body: Vec<Vec<u8>> = (0..4).map(|i| vec![b'a' + i; 16 * 1024]).collect();
    let upload = Req::new("POST", "/v1/upload")
        .body(Body::Chunks {
            chunks: body.clone(),
            delay: Duration::from_millis(20),
        })
        .sign_payload(
            &secret,
            ENV,
            now(),
            Some(&nonce()),
            TagEncoding::Hex,
            Some(Payload::Unsigned),
        );
    let resp = send(proxies[0].1, &upload).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_code(&send(proxies[1].1, &upload).await, 401, "replayed_request");
    let records = upstream.settled_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].complete);
    assert_eq!(records[0].body, body.concat());
    store.shutdown().await;
}

/// Under a store, a websocket handshake with a nonce waits at its headers
/// for the claim, then upgrades and streams both ways; its replay through
/// the other proxy is refused and the server sees one connection only.
async fn a_websocket_with_a_nonce_upgrades_once(t: Target) {
    let redis = Redis::start(RedisOpts::default());
    let store = store(&redis).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = peer_server(
        &["ws-server", &port.to_string()],
        port,
        &dir.path().join("ws.log"),
    );
    let secret = secret();
    let upstream = SocketAddr::from(([127, 0, 0, 1], port));
    let (_a, a_addr) = proxy(t, upstream, store.local_addr(), &secret, "").await;
    let (_b, b_addr) = proxy(t, upstream, store.local_addr(), &secret, "").await;
    let n = nonce();
    let handshake = |addr: SocketAddr| {
        let authority = format!("127.0.0.1:{}", addr.port());
        let signed = at(&authority, "GET", "/ws/chat").signed_with(
            &secret,
            ENV,
            now(),
            Some(&n),
            TagEncoding::Hex,
        );
        json!({
            "url": format!("ws://{authority}/ws/chat"),
            "headers": crawbl_headers(&signed),
            "messages": ["hello", "bye"],
        })
    };
    let out = peer_client("ws-client", handshake(a_addr)).await;
    assert_eq!(out["status"], 101, "{out}");
    assert_eq!(out["echoes"], json!(["hello", "bye"]));
    let out = peer_client("ws-client", handshake(b_addr)).await;
    assert_eq!(out["status"], 401, "{out}");
    assert!(
        out["body"].as_str().unwrap().contains("replayed_request"),
        "{out}"
    );
    let opened = events(&server)
        .into_iter()
        .filter(|e| e["event"] == "ws_open")
        .count();
    assert_eq!(opened, 1);
    store.shutdown().await;
}

/// Bounded load through two proxies while every accepted request is
/// replayed at once through the other: no replay is accepted and no fresh
/// nonce is refused.
async fn replays_under_load_are_all_refused(t: Target) {
    let redis = Redis::start(RedisOpts::default());
    let store = store(&redis).await;
    let upstream = Upstream::start().await;
    let secret = Arc::new(secret());
    let (_a, a_addr) = proxy(t, upstream.addr, store.local_addr(), &secret, "").await;
    let (_b, b_addr) = proxy(t, upstream.addr, store.local_addr(), &secret, "").await;
    let accepted = Arc::new(AtomicU64::new(0));
    let fresh_refused = Arc::new(AtomicU64::new(0));
    let replays_accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // 8 clients × 40 requests, alternating proxies.
    for client in 0..8u32 {
        let (secret, accepted, fresh_refused, replays_accepted) = (
            Arc::clone(&secret),
            Arc::clone(&accepted),
            Arc::clone(&fresh_refused),
            Arc::clone(&replays_accepted),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..40u32 {
                let (first, other) = if (client + i) % 2 == 0 {
                    (a_addr, b_addr)
                } else {
                    (b_addr, a_addr)
                };
                let req = get_with_nonce(&secret, &nonce());
                if send(first, &req).await.status == 200 {
                    accepted.fetch_add(1, Ordering::Relaxed);
                } else {
                    fresh_refused.fetch_add(1, Ordering::Relaxed);
                }
                if send(other, &req).await.status == 200 {
                    replays_accepted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for task in tasks {
        tokio::time::timeout(deadline - Instant::now(), task)
            .await
            .expect("load finished within 60 s")
            .unwrap();
    }
    assert_eq!(
        (
            accepted.load(Ordering::Relaxed),
            fresh_refused.load(Ordering::Relaxed),
            replays_accepted.load(Ordering::Relaxed)
        ),
        (320, 0, 0)
    );
    store.shutdown().await;
}

/// Redis down: every fresh nonce is `503 replay_cache_unavailable` with
/// `Retry-After` (none accepted without a claim), a nonce already in the
/// proxy's table is still `401`, a request without a nonce passes; when
/// Redis returns, fresh nonces are accepted again without a restart.
async fn redis_down_fails_closed_and_recovers(t: Target) {
    let mut redis = Redis::start(RedisOpts::default());
    let store = store(&redis).await;
    let upstream = Upstream::start().await;
    let secret = secret();
    let (envoy, addr) = proxy(t, upstream.addr, store.local_addr(), &secret, "").await;
    let known = get_with_nonce(&secret, &nonce());
    assert_eq!(send(addr, &known).await.status, 200);

    redis.kill();
    for _ in 0..3 {
        let resp = send(addr, &get_with_nonce(&secret, &nonce())).await;
        assert_code(&resp, 503, "replay_cache_unavailable");
        assert_eq!(
            resp.headers.get("retry-after").map(|v| v.to_str().unwrap()),
            Some("1")
        );
    }
    assert_code(&send(addr, &known).await, 401, "replayed_request");
    let plain = Req::new("GET", "/v1/x").signed(&secret, ENV);
    assert_eq!(send(addr, &plain).await.status, 200);
    assert_eq!(envoy.counter("nonce_store.unavailable").await, 3);
    assert_eq!(envoy.counter("verified").await, 2);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = send(addr, &get_with_nonce(&secret, &nonce())).await;
        if resp.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", resp.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Exactly the accepted requests reached the upstream.
    let records = upstream.settled_records().await;
    assert_eq!(records.len() as u64, envoy.counter("verified").await);
    store.shutdown().await;
}

/// A stopped Redis (SIGSTOP) answers nothing: the claim is `503` within the
/// store's timeout; a store that never answers at all is `503` within the
/// filter's own `timeout_ms`; no stream is left hanging.
async fn a_silent_store_times_out(t: Target) {
    let mut redis = Redis::start(RedisOpts::default());
    let store = store(&redis).await;
    let upstream = Upstream::start().await;
    let secret = secret();
    let (_envoy, addr) = proxy(t, upstream.addr, store.local_addr(), &secret, "").await;
    redis.pause();
    let started = Instant::now();
    let resp = send(addr, &get_with_nonce(&secret, &nonce())).await;
    assert_code(&resp, 503, "replay_cache_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    redis.resume();

    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let (envoy, addr) = proxy(
        t,
        upstream.addr,
        silent_addr,
        &secret,
        r#","timeout_ms":300"#,
    )
    .await;
    let started = Instant::now();
    let resp = send(addr, &get_with_nonce(&secret, &nonce())).await;
    assert_code(&resp, 503, "replay_cache_unavailable");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(envoy.counter("nonce_store.unavailable").await, 1);
    hold.abort();
    store.shutdown().await;
}

/// `on_unavailable: local`: with Redis down a fresh nonce is accepted on the
/// proxy's own table (counted as a fallback) and its replay through the same
/// proxy is still refused.
async fn local_fallback_when_the_store_is_down(t: Target) {
    let mut redis = Redis::start(RedisOpts::default());
    let store = store(&redis).await;
    let upstream = Upstream::start().await;
    let secret = secret();
    let (envoy, addr) = proxy(
        t,
        upstream.addr,
        store.local_addr(),
        &secret,
        r#","on_unavailable":"local""#,
    )
    .await;
    redis.kill();
    let req = get_with_nonce(&secret, &nonce());
    assert_eq!(send(addr, &req).await.status, 200);
    assert_code(&send(addr, &req).await, 401, "replayed_request");
    assert_eq!(envoy.counter("nonce_store.fallback").await, 1);
    assert_eq!(envoy.counter("nonce_store.unavailable").await, 1);
    store.shutdown().await;
}

/// The local flow users run: two `edge-hmac run --dev --require-nonce`
/// processes given one password-protected Redis through
/// `--nonce-store-url-file` behave as two replicas (a nonce accepted by one
/// is refused by the other). The password is in neither process's output
/// nor Envoy's `/config_dump`; on the command line it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_share_a_password_protected_store() {
    let password = format!("pw-{}", nonce());
    edge_hmac_tests::secrets::register(&password);
    let redis = Redis::start(RedisOpts {
        password: Some(password.clone()),
        ..RedisOpts::default()
    });
    let h = home();
    let key = write_dev_secret(h.path());
    let url_file = h.path().join("redis-url");
    std::fs::write(&url_file, redis.url_with_password()).unwrap();
    let start = || {
        let mut cmd = run_cmd(h.path());
        cmd.args(["--dev", "--require-nonce", "--nonce-store-url-file"])
            .arg(&url_file);
        Running::start(cmd)
    };
    let mut a = start();
    let a_addr = a.listener().await;
    let mut b = start();
    let b_addr = b.listener().await;
    let req = get_with_nonce(&key, &nonce());
    assert_eq!(send(a_addr, &req).await.status, 200);
    assert_code(&send(b_addr, &req).await, 401, "replayed_request");
    for running in [&a, &b] {
        let dump = edge_hmac_tests::client::get(running.admin(), "/config_dump")
            .await
            .unwrap();
        assert_eq!(dump.status, 200);
        assert_no_secret(&dump.text(), &[&password]);
    }
    // `terminate` scans each process's output for every registered secret.
    let (code, out) = a.terminate().await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nonce store: http://127.0.0.1:"), "{out}");
    b.terminate().await;

    let mut on_command_line = run_cmd(h.path());
    on_command_line.args(["--dev", "--nonce-store", &redis.url_with_password()]);
    let out = edge_hmac_tests::cli::run(on_command_line).await;
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("--nonce-store-url-file"),
        "{}",
        out.stderr
    );
    assert_no_secret(&out.all(), &[&password]);
}

matrix!(
    a_nonce_is_used_once_across_proxies,
    a_streamed_body_waits_at_its_headers,
    a_websocket_with_a_nonce_upgrades_once,
    replays_under_load_are_all_refused,
    redis_down_fails_closed_and_recovers,
    a_silent_store_times_out,
    local_fallback_when_the_store_is_down,
);
