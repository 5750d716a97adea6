//! `edge-hmac nonce-store` against a real redis-server (and redis-sentinel):
//! the claim protocol, TTLs and namespaces, malformed claims, Redis killed,
//! paused, evicting, full, password-protected, failed over; graceful
//! shutdown; the password never in any output.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edge_hmac::nonce_store::{self, NonceStoreConfig, RedisUrl};
use edge_hmac_tests::cli;
use edge_hmac_tests::client::{self, Conn, Req};
use edge_hmac_tests::cluster::free_port;
use edge_hmac_tests::redis::{NonceStoreProc, Redis, RedisOpts, nonce_store_command};
use edge_hmac_tests::secrets::{assert_no_known_secret, random_hex, secret};

/// A fresh nonce id (64 lowercase hex, as SHA-256 of a nonce).
fn new_id() -> String {
    random_hex(32)
}

fn claim_req(addr: SocketAddr, id: &str, env: &str, ttl_ms: &str) -> Req {
    let mut req = Req::new("POST", "/v1/claim")
        .header("x-edge-hmac-nonce-id", id)
        .header("x-edge-hmac-environment", env)
        .header("x-edge-hmac-ttl-ms", ttl_ms);
    req.authority = addr.to_string();
    req
}

/// Status, `x-edge-hmac-claim` and body of one request on a new connection.
async fn send(addr: SocketAddr, req: &Req, h2: bool) -> (u16, String, String) {
    let mut conn = if h2 {
        Conn::h2(addr).await
    } else {
        Conn::h1(addr).await
    }
    .expect("connect to the nonce store");
    let resp = tokio::time::timeout(Duration::from_secs(10), conn.send(req))
        .await
        .expect("an answer within 10 s")
        .expect("a response");
    let claim = resp
        .headers
        .get("x-edge-hmac-claim")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (resp.status, claim, resp.text())
}

async fn claim(addr: SocketAddr, id: &str, env: &str, ttl_ms: u64) -> (u16, String, String) {
    send(addr, &claim_req(addr, id, env, &ttl_ms.to_string()), false).await
}

/// Asserts a claim's whole answer for outcome `want`.
#[track_caller]
fn assert_claim(got: &(u16, String, String), want: &str) {
    let status = if want == "unavailable" { 503 } else { 200 };
    assert_eq!(
        got,
        &(status, want.to_owned(), format!("{{\"claim\":\"{want}\"}}")),
        "claim answer"
    );
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = client::get(addr, path).await.expect(path);
    (resp.status, resp.text())
}

/// The value of the series `series` (name with labels) in `/metrics`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Claims fresh ids until one is `fresh`, for up to `within`; returns how
/// long it took.
async fn until_fresh(addr: SocketAddr, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = claim(addr, &new_id(), "dev", 60_000).await;
        if got.1 == "fresh" {
            assert_claim(&got, "fresh");
            return start.elapsed();
        }
        assert_claim(&got, "unavailable");
        assert!(
            start.elapsed() < within,
            "no fresh claim within {within:?} of Redis coming back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until_ready(addr: SocketAddr, within: Duration) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = get(addr, "/readyz").await;
        if status == 200 {
            return body;
        }
        assert!(
            start.elapsed() < within,
            "readyz still {status} after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 64 concurrent claims of one nonce id, half over HTTP/2 and half over
/// HTTP/1.1 (library `start()`), give exactly one `fresh`; 64 distinct ids
/// are all fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nonce_store_parallel_claims_of_one_id_have_one_winner() {
    let redis = Redis::start(RedisOpts::default());
    let mut cfg = NonceStoreConfig::new(RedisUrl::parse(&redis.url()).unwrap());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    // Generous: 64 connections at once on a 2-core machine under a test run.
    cfg.redis_timeout = Duration::from_millis(2000);
    let handle = nonce_store::start(cfg).await.unwrap();
    let addr = handle.local_addr();

    for same in [true, false] {
        let shared = new_id();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(64));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let id = if same { shared.clone() } else { new_id() };
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let req = claim_req(addr, &id, "dev", "60000");
                let mut conn = if i % 2 == 0 {
                    Conn::h2(addr).await
                } else {
                    Conn::h1(addr).await
                }
                .unwrap();
                barrier.wait().await;
                let resp = conn.send(&req).await.unwrap();
                assert_eq!(resp.status, 200, "{}", resp.text());
                resp.headers["x-edge-hmac-claim"]
                    .to_str()
                    .unwrap()
                    .to_owned()
            }));
        }
        let mut fresh = 0;
        let mut replayed = 0;
        for t in tasks {
            match t.await.unwrap().as_str() {
                "fresh" => fresh += 1,
                "replayed" => replayed += 1,
                other => panic!("claim answered {other}"),
            }
        }
        if same {
            assert_eq!((fresh, replayed), (1, 63), "one id claimed 64 times");
        } else {
            assert_eq!((fresh, replayed), (64, 0), "64 distinct ids");
        }
    }
    assert_eq!(redis.dbsize(), 65);
    let (_, m) = get(addr, "/metrics").await;
    assert_eq!(
        metric(&m, "edge_hmac_nonce_store_claims_total{result=\"fresh\"}"),
        65.0
    );
    assert_eq!(
        metric(
            &m,
            "edge_hmac_nonce_store_claims_total{result=\"replayed\"}"
        ),
        63.0
    );
    assert_eq!(
        metric(&m, "edge_hmac_nonce_store_claim_duration_seconds_count"),
        128.0
    );
    handle.shutdown().await;
}

/// A claim writes `edge-hmac:nonce:v1:<env>:<id>` = 1 with the claim's TTL;
/// once it expires the same id is fresh again.
#[tokio::test]
async fn nonce_store_claims_expire_with_their_ttl() {
    let redis = Redis::start(RedisOpts::default());
    let ns = NonceStoreProc::start(&["--redis-url", &redis.url()], &[]).await;
    let id = new_id();
    assert_claim(&claim(ns.addr, &id, "prod-eu", 300).await, "fresh");
    let key = format!("edge-hmac:nonce:v1:prod-eu:{id}");
    assert_eq!(redis.cmd(&["GET", &key]).text(), "1");
    let pttl = redis.cmd(&["PTTL", &key]).int();
    assert!(pttl > 0 && pttl <= 300, "PTTL {pttl}");
    assert_eq!(redis.dbsize(), 1, "the one key and nothing else");
    assert_claim(&claim(ns.addr, &id, "prod-eu", 300).await, "replayed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(redis.cmd(&["EXISTS", &key]).int(), 0);
    assert_claim(&claim(ns.addr, &id, "prod-eu", 300).await, "fresh");
    // The longest TTL is accepted.
    let id = new_id();
    assert_claim(&claim(ns.addr, &id, "prod-eu", 86_400_000).await, "fresh");
    let pttl = redis
        .cmd(&["PTTL", &format!("edge-hmac:nonce:v1:prod-eu:{id}")])
        .int();
    assert!(pttl > 86_000_000 && pttl <= 86_400_000, "PTTL {pttl}");
}

/// The same nonce id in two environments is two claims, both fresh.
#[tokio::test]
async fn nonce_store_environments_are_separate_namespaces() {
    let redis = Redis::start(RedisOpts::default());
    let ns = NonceStoreProc::start(&["--redis-url", &redis.url()], &[]).await;
    let id = new_id();
    assert_claim(&claim(ns.addr, &id, "staging", 60_000).await, "fresh");
    assert_claim(&claim(ns.addr, &id, "prod", 60_000).await, "fresh");
    assert_claim(&claim(ns.addr, &id, "prod", 60_000).await, "replayed");
    assert_claim(&claim(ns.addr, &id, "staging", 60_000).await, "replayed");
    assert_eq!(redis.dbsize(), 2);
}

/// Malformed claims get 400 `invalid` naming the header, over HTTP/1.1 and
/// HTTP/2, and write nothing to Redis; other paths and methods get 404/405.
#[tokio::test]
async fn nonce_store_malformed_claims_are_refused_and_write_nothing() {
    let redis = Redis::start(RedisOpts::default());
    let ns = NonceStoreProc::start(&["--redis-url", &redis.url()], &[]).await;
    let addr = ns.addr;
    let id = new_id();
    let good = || claim_req(addr, &id, "dev", "60000");
    let cases: Vec<(&str, Req)> = vec![
        (
            "x-edge-hmac-nonce-id",
            good().set("x-edge-hmac-nonce-id", "zz".repeat(32)),
        ),
        (
            "x-edge-hmac-nonce-id",
            good().set("x-edge-hmac-nonce-id", id.to_uppercase()),
        ),
        (
            "x-edge-hmac-nonce-id",
            good().set("x-edge-hmac-nonce-id", &id[..62]),
        ),
        (
            "x-edge-hmac-nonce-id",
            good().set("x-edge-hmac-nonce-id", format!("{id}00")),
        ),
        (
            "x-edge-hmac-nonce-id",
            good().without("x-edge-hmac-nonce-id"),
        ),
        (
            "x-edge-hmac-nonce-id",
            good().header("x-edge-hmac-nonce-id", &id),
        ),
        (
            "x-edge-hmac-environment",
            good().set("x-edge-hmac-environment", "Prod"),
        ),
        (
            "x-edge-hmac-environment",
            good().set("x-edge-hmac-environment", "a:b"),
        ),
        (
            "x-edge-hmac-environment",
            good().set("x-edge-hmac-environment", "e".repeat(65)),
        ),
        (
            "x-edge-hmac-environment",
            good().set("x-edge-hmac-environment", ""),
        ),
        (
            "x-edge-hmac-environment",
            good().without("x-edge-hmac-environment"),
        ),
        ("x-edge-hmac-ttl-ms", good().set("x-edge-hmac-ttl-ms", "0")),
        (
            "x-edge-hmac-ttl-ms",
            good().set("x-edge-hmac-ttl-ms", "86400001"),
        ),
        ("x-edge-hmac-ttl-ms", good().set("x-edge-hmac-ttl-ms", "-5")),
        (
            "x-edge-hmac-ttl-ms",
            good().set("x-edge-hmac-ttl-ms", "1e3"),
        ),
        ("x-edge-hmac-ttl-ms", good().without("x-edge-hmac-ttl-ms")),
    ];
    let n = cases.len();
    for (i, (header, req)) in cases.into_iter().enumerate() {
        let (status, claim, body) = send(addr, &req, i % 2 == 1).await;
        assert_eq!(
            (status, claim.as_str()),
            (400, "invalid"),
            "{header}: {body}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], header, "{body}");
    }
    assert_eq!(redis.dbsize(), 0, "a malformed claim wrote to Redis");
    let (_, m) = get(addr, "/metrics").await;
    assert_eq!(
        metric(&m, "edge_hmac_nonce_store_claims_total{result=\"invalid\"}"),
        n as f64
    );

    let mut other = good();
    other.path = "/v1/other".into();
    assert_eq!(send(addr, &other, false).await.0, 404);
    let mut get_claim = good();
    get_claim.method = "GET".into();
    assert_eq!(send(addr, &get_claim, true).await.0, 405);
    let mut post_health = Req::new("POST", "/healthz");
    post_health.authority = addr.to_string();
    assert_eq!(send(addr, &post_health, false).await.0, 405);
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
    // A body is ignored.
    let with_body = good().body(client::Body::Full(b"ignored".to_vec()));
    assert_claim(&send(addr, &with_body, false).await, "fresh");
    assert_eq!(redis.dbsize(), 1);
}

/// Redis killed: claims answer 503 `unavailable` within a second and readyz
/// 503; Redis restarted on the same port: claims are fresh and readyz 200
/// again without restarting the service.
#[tokio::test]
async fn nonce_store_recovers_when_redis_comes_back() {
    let mut redis = Redis::start(RedisOpts::default());
    let ns = NonceStoreProc::start(&["--redis-url", &redis.url()], &[]).await;
    assert_claim(&claim(ns.addr, &new_id(), "dev", 60_000).await, "fresh");
    assert_eq!(get(ns.addr, "/readyz").await.0, 200);

    redis.kill();
    for _ in 0..3 {
        let t = Instant::now();
        assert_claim(
            &claim(ns.addr, &new_id(), "dev", 60_000).await,
            "unavailable",
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "took {:?}",
            t.elapsed()
        );
    }
    let (status, body) = get(ns.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("redis unreachable"), "{body}");

    redis.restart();
    let took = until_fresh(ns.addr, Duration::from_secs(10)).await;
    eprintln!("fresh again {took:?} after Redis restarted");
    until_ready(ns.addr, Duration::from_secs(5)).await;
    let (_, m) = get(ns.addr, "/metrics").await;
    assert!(
        metric(
            &m,
            "edge_hmac_nonce_store_redis_errors_total{kind=\"connection\"}"
        ) >= 3.0
    );
    assert!(
        metric(
            &m,
            "edge_hmac_nonce_store_claims_total{result=\"unavailable\"}"
        ) >= 3.0
    );
    assert_eq!(metric(&m, "edge_hmac_nonce_store_ready"), 1.0);
}

/// The service starts while Redis is down (claims `unavailable`, readyz
/// 503) and starts claiming once Redis is up.
#[tokio::test]
async fn nonce_store_starts_while_redis_is_down() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let ns = NonceStoreProc::start(&["--redis-url", &url], &[]).await;
    assert_claim(
        &claim(ns.addr, &new_id(), "dev", 60_000).await,
        "unavailable",
    );
    assert_eq!(get(ns.addr, "/readyz").await.0, 503);
    let redis = Redis::start_on(port, RedisOpts::default());
    until_fresh(ns.addr, Duration::from_secs(10)).await;
    until_ready(ns.addr, Duration::from_secs(5)).await;
    assert_eq!(redis.dbsize(), 1);
}

/// Redis paused (SIGSTOP: connections accepted, nothing answered): a claim
/// answers 503 within the 100 ms timeout plus a margin, never hangs; resumed
/// (SIGCONT), claims are fresh again.
#[tokio::test]
async fn nonce_store_answers_within_the_timeout_when_redis_hangs() {
    let mut redis = Redis::start(RedisOpts::default());
    let ns = NonceStoreProc::start(
        &["--redis-url", &redis.url(), "--redis-timeout-ms", "100"],
        &[],
    )
    .await;
    assert_claim(&claim(ns.addr, &new_id(), "dev", 60_000).await, "fresh");
    redis.pause();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        assert_claim(
            &claim(ns.addr, &new_id(), "dev", 60_000).await,
            "unavailable",
        );
        slowest = slowest.max(t.elapsed());
    }
    let t = Instant::now();
    let (status, body) = get(ns.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    slowest = slowest.max(t.elapsed());
    eprintln!("slowest answer while Redis was paused: {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "took {slowest:?}");
    redis.resume();
    until_fresh(ns.addr, Duration::from_secs(5)).await;
    until_ready(ns.addr, Duration::from_secs(5)).await;
    let (_, m) = get(ns.addr, "/metrics").await;
    assert!(
        metric(
            &m,
            "edge_hmac_nonce_store_redis_errors_total{kind=\"timeout\"}"
        ) >= 5.0
    );
}

/// An evicting maxmemory-policy makes readyz 503 naming the policy;
/// noeviction (or no memory limit at all) makes it 200; a full noeviction
/// Redis refuses the write (OOM) and the claim answers `unavailable`.
#[tokio::test]
async fn nonce_store_readiness_follows_the_eviction_policy() {
    let redis = Redis::start(RedisOpts {
        maxmemory: Some("64mb".into()),
        policy: Some("allkeys-lru".into()),
        ..RedisOpts::default()
    });
    let ns = NonceStoreProc::start(&["--redis-url", &redis.url()], &[]).await;
    let (status, body) = get(ns.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("maxmemory-policy is allkeys-lru"), "{body}");
    assert!(body.contains("set maxmemory-policy noeviction"), "{body}");
    let (_, m) = get(ns.addr, "/metrics").await;
    assert_eq!(metric(&m, "edge_hmac_nonce_store_ready"), 0.0);

    redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "volatile-ttl"]);
    assert_eq!(get(ns.addr, "/readyz").await.0, 503);
    redis.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    let (status, body) = get(ns.addr, "/readyz").await;
    assert_eq!(status, 200, "no limit, nothing evicted: {body}");
    assert!(body.contains("maxmemory 0"), "{body}");

    redis.cmd(&["CONFIG", "SET", "maxmemory", "64mb"]);
    redis.cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    let (status, body) = get(ns.addr, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ready: redis maxmemory-policy is noeviction\n")
    );
    let (_, m) = get(ns.addr, "/metrics").await;
    assert_eq!(metric(&m, "edge_hmac_nonce_store_ready"), 1.0);
    assert_claim(&claim(ns.addr, &new_id(), "dev", 60_000).await, "fresh");

    // Full: any limit below what Redis already uses.
    redis.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    let t = Instant::now();
    assert_claim(
        &claim(ns.addr, &new_id(), "dev", 60_000).await,
        "unavailable",
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    let (status, body) = get(ns.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("redis is full"), "{body}");
    let (_, m) = get(ns.addr, "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "edge_hmac_nonce_store_redis_errors_total{kind=\"refused_write\"}"
        ),
        1.0
    );
    assert_eq!(redis.dbsize(), 1);
}

/// A password-protected Redis: the URL from a file and from
/// EDGE_HMAC_REDIS_URL works; `--redis-url` with a password exits 26 and
/// points at both; a wrong password is `unavailable`; the password is in no
/// output, log, metrics or readyz body.
#[tokio::test]
async fn nonce_store_keeps_the_redis_password_secret() {
    let password = secret();
    let wrong = secret();
    let redis = Redis::start(RedisOpts {
        password: Some(password.clone()),
        ..RedisOpts::default()
    });
    let url = redis.url_with_password();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis-url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let mut seen = String::new();

    let by_file = NonceStoreProc::start(&["--redis-url-file", file.to_str().unwrap()], &[]).await;
    let by_env = NonceStoreProc::start(&[], &[("EDGE_HMAC_REDIS_URL", &url)]).await;
    for ns in [&by_file, &by_env] {
        assert_claim(&claim(ns.addr, &new_id(), "dev", 60_000).await, "fresh");
        let (status, body) = get(ns.addr, "/readyz").await;
        assert_eq!(status, 200, "{body}");
        seen.push_str(&body);
        seen.push_str(&get(ns.addr, "/metrics").await.1);
    }
    assert_eq!(redis.dbsize(), 2);

    let out = cli::output(nonce_store_command(
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        &["--redis-url", &url],
    ));
    assert_eq!(out.code, 26, "{}", out.all());
    assert!(out.stderr.contains("--redis-url-file"), "{}", out.stderr);
    assert!(out.stderr.contains("EDGE_HMAC_REDIS_URL"), "{}", out.stderr);

    let bad_url = format!("redis://:{wrong}@127.0.0.1:{}", redis.port);
    let bad = NonceStoreProc::start(&[], &[("EDGE_HMAC_REDIS_URL", &bad_url)]).await;
    assert_claim(
        &claim(bad.addr, &new_id(), "dev", 60_000).await,
        "unavailable",
    );
    let (status, body) = get(bad.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("authentication failed"), "{body}");
    assert!(body.contains("redis://***@127.0.0.1:"), "{body}");
    seen.push_str(&body);
    seen.push_str(&get(bad.addr, "/metrics").await.1);
    // A malformed URL's error names neither password.
    let out = cli::output(nonce_store_command(
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        &[],
    ));
    assert_eq!(out.code, 26, "{}", out.all());
    let mut cmd = nonce_store_command(SocketAddr::from(([127, 0, 0, 1], free_port())), &[]);
    cmd.env(
        "EDGE_HMAC_REDIS_URL",
        format!("rediss://:{password}@127.0.0.1:1"),
    );
    let out = cli::output(cmd);
    assert_eq!(out.code, 26, "{}", out.all());
    assert!(
        out.stderr.contains("redis://***@") || out.stderr.contains("rediss://***@"),
        "{}",
        out.stderr
    );

    assert_no_known_secret("readyz and metrics bodies", &seen);
    let logs = format!(
        "{}{}{}",
        by_file.log_text(),
        by_env.log_text(),
        bad.log_text()
    );
    assert!(logs.contains("authentication failed"), "{logs}");
    assert_no_known_secret("the nonce store's logs", &logs);
    // Each NonceStoreProc scans its own output again when dropped.
}

/// SIGTERM: a claim in flight (Redis paused under it) still finishes
/// `fresh`, new connections are refused, and the process exits 0 within the
/// grace period.
#[tokio::test]
async fn nonce_store_shuts_down_gracefully_on_sigterm() {
    let mut redis = Redis::start(RedisOpts::default());
    let mut ns = NonceStoreProc::start(
        &[
            "--redis-url",
            &redis.url(),
            "--redis-timeout-ms",
            "3000",
            "--shutdown-grace-seconds",
            "5",
        ],
        &[],
    )
    .await;
    let addr = ns.addr;
    assert_claim(&claim(addr, &new_id(), "dev", 60_000).await, "fresh");
    redis.pause();
    let id = new_id();
    let in_flight = {
        let id = id.clone();
        tokio::spawn(async move { claim(addr, &id, "dev", 60_000).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    ns.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    redis.resume();
    assert_claim(&in_flight.await.unwrap(), "fresh");
    let status = ns
        .wait_exit(Duration::from_secs(6))
        .await
        .expect("exit within the grace period");
    eprintln!("exited {:?} after SIGTERM", t.elapsed());
    assert_eq!(status.code(), Some(0), "{}", ns.log_text());
    assert!(ns.log_text().contains("shutting down"), "{}", ns.log_text());
    assert_eq!(
        redis
            .cmd(&["EXISTS", &format!("edge-hmac:nonce:v1:dev:{id}")])
            .int(),
        1
    );
}

/// Polls `f` every 100 ms until it returns `Some`, for up to `within`.
async fn poll<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `field:value` of an INFO text.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Through `redis+sentinel://` (a primary, one replica, one Sentinel):
/// claims go to the primary; after `SENTINEL FAILOVER` they go to the
/// promoted replica, fresh, within 4 s of the promotion, without restarting
/// the service.
#[tokio::test]
async fn nonce_store_follows_a_sentinel_failover() {
    let primary = Redis::start(RedisOpts::default());
    let replica = Redis::start(RedisOpts {
        replica_of: Some(primary.port),
        ..RedisOpts::default()
    });
    poll(Duration::from_secs(15), "replica in sync", || {
        let info = replica.cmd(&["INFO", "replication"]).text();
        (info_field(&info, "master_link_status").as_deref() == Some("up")).then_some(())
    })
    .await;
    let sentinel = Redis::sentinel(primary.port, "edgenonce", None);
    poll(
        Duration::from_secs(20),
        "the Sentinel knows the replica",
        || match sentinel.cmd(&["SENTINEL", "REPLICAS", "edgenonce"]) {
            edge_hmac_tests::redis::Reply::Array(Some(r)) if !r.is_empty() => Some(()),
            _ => None,
        },
    )
    .await;

    let url = format!("redis+sentinel://127.0.0.1:{}/edgenonce", sentinel.port);
    let ns = NonceStoreProc::start(&["--redis-url", &url], &[]).await;
    until_fresh(ns.addr, Duration::from_secs(5)).await;
    let (status, body) = get(ns.addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let id = new_id();
    assert_claim(&claim(ns.addr, &id, "dev", 60_000).await, "fresh");
    let key = format!("edge-hmac:nonce:v1:dev:{id}");
    assert_eq!(
        primary.cmd(&["EXISTS", &key]).int(),
        1,
        "written to the primary"
    );

    let failover = Instant::now();
    poll(
        Duration::from_secs(20),
        "SENTINEL FAILOVER accepted",
        || match sentinel.command(&["SENTINEL", "FAILOVER", "edgenonce"]) {
            Ok(edge_hmac_tests::redis::Reply::Status(_)) => Some(()),
            _ => None,
        },
    )
    .await;
    poll(Duration::from_secs(20), "the replica promoted", || {
        let info = replica.cmd(&["INFO", "replication"]).text();
        (info_field(&info, "role").as_deref() == Some("master")).then_some(())
    })
    .await;
    let promoted = failover.elapsed();

    // Claims land on the new primary: a fresh claim whose key is there.
    let mut unavailable = 0;
    let mut on_old = 0;
    let switched = loop {
        let id = new_id();
        let got = claim(ns.addr, &id, "dev", 60_000).await;
        match got.1.as_str() {
            "fresh" => {
                let key = format!("edge-hmac:nonce:v1:dev:{id}");
                if replica.cmd(&["EXISTS", &key]).int() == 1 {
                    break failover.elapsed();
                }
                on_old += 1;
            }
            "unavailable" => unavailable += 1,
            other => panic!("claim answered {other}"),
        }
        assert!(
            failover.elapsed() < Duration::from_secs(30),
            "claims never reached the promoted replica ({unavailable} unavailable, {on_old} fresh elsewhere); log:\n{}",
            ns.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "failover: replica promoted after {promoted:?}; first claim on it after {switched:?} ({unavailable} claims unavailable, {on_old} fresh on the old primary in between)"
    );
    // The service asks the Sentinels every second: claims follow the
    // promotion within a few seconds, not when the Sentinels finally demote
    // the old primary (~10 s later; until then it still takes writes).
    assert!(
        switched < promoted + Duration::from_secs(4),
        "claims reached the new primary {switched:?} after the failover, {promoted:?} after the promotion"
    );
    // The claim made before the failover was replicated: still replayed.
    assert_claim(&claim(ns.addr, &id, "dev", 60_000).await, "replayed");
    until_ready(ns.addr, Duration::from_secs(10)).await;
    assert!(
        ns.log_text()
            .contains(&format!("127.0.0.1:{}", replica.port)),
        "the log names the new primary:\n{}",
        ns.log_text()
    );
}
