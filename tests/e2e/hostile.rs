//! Hostile input at the edges of a real Envoy: header maps at Envoy's
//! limits, look-alike and non-UTF-8 headers, HTTP/2 pseudo-header tricks,
//! requests reset mid-body. After each, Envoy is checked: still ready, the
//! wasm VM never restarted, no filter internal error, no stream left open.
//! The harness's leak scan of the log and `/config_dump` runs at the end of
//! each test as everywhere; the last test shows that scan can fail.

use std::net::SocketAddr;

use std::time::Duration;

use edge_hmac::render::envoy::Module;
use edge_hmac_core::config::parse;
use edge_hmac_tests::client::{Body, Req, send};
use edge_hmac_tests::envoy::Envoy;
use edge_hmac_tests::python::raw_h2;
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::target::Target;
use edge_hmac_tests::upstream::Upstream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ENV: &str = "dev";

struct Edge {
    envoy: Envoy,
    upstream: Upstream,
    addr: SocketAddr,
    secret: String,
    /// V8 VMs created at start (the wasm build; `None` for the native
    /// module, which has no VM to crash: Envoy itself would).
    vms_at_start: Option<u64>,
}

async fn edge(t: Target) -> Edge {
    let upstream = Upstream::start().await;
    let config = t.local(
        upstream.addr,
        parse(br#"{"expected_environment": "dev"}"#).unwrap(),
    );
    let secret = secret();
    let envoy = t
        .start(
            &config,
            &[("HMAC_SECRET", secret.as_str()), ("HMAC_ENVIRONMENT", ENV)],
        )
        .await;
    let addr = envoy.listener("edge_hmac").await;
    let vms_at_start = match t.module {
        Module::Wasm => {
            let vms = envoy.stat("wasm.envoy.wasm.runtime.v8.created").await;
            assert!(vms > 0, "no V8 VM stat: {}", envoy.stats().await);
            Some(vms)
        }
        Module::Native => None,
    };
    Edge {
        envoy,
        upstream,
        addr,
        secret,
        vms_at_start,
    }
}

impl Edge {
    fn signed(&self, req: Req) -> Req {
        req.signed(&self.secret, ENV)
    }

    /// The paths of every request the upstream received.
    async fn upstream_paths(&self) -> Vec<String> {
        let records = self.upstream.settled_records().await;
        records.into_iter().map(|r| r.path).collect()
    }

    /// Envoy is ready, the VM was never re-created, the filter never hit an
    /// internal error, no downstream request is still open, and a signed
    /// request still passes while an unsigned one is still refused.
    async fn assert_healthy(&self) {
        let ready = edge_hmac_tests::client::get(self.envoy.admin, "/ready")
            .await
            .unwrap();
        assert_eq!(ready.status, 200, "Envoy not ready");
        if let Some(vms) = self.vms_at_start {
            assert_eq!(
                self.envoy.stat("wasm.envoy.wasm.runtime.v8.created").await,
                vms,
                "the wasm VM was re-created (a crash)"
            );
        }
        assert_eq!(self.envoy.counter("internal_error").await, 0);
        let mut open = u64::MAX;
        for _ in 0..100 {
            open = self.envoy.stat("http.edge_hmac.downstream_rq_active").await;
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(open, 0, "a downstream request is stuck");
        let ok = send(self.addr, &self.signed(Req::new("GET", "/after"))).await;
        assert_eq!(ok.status, 200, "{}", ok.text());
        let refused = send(self.addr, &Req::new("GET", "/after")).await;
        assert_eq!(refused.status, 401);
    }
}

/// Writes `raw` on a new connection and returns the status of the response
/// (0 when the connection closed without one).
async fn raw_h1(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = conn.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `req` as HTTP/1.1 bytes, headers as given (raw bytes allowed).
fn h1_bytes(req: &Req, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        req.method, req.path, req.authority
    )
    .into_bytes();
    for (n, v) in &req.headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// An HTTP/2 header list, names and values as raw bytes.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// Signed pseudo-headers and x-crawbl-* headers of `req`, for HTTP/2.
fn h2_headers(req: &Req) -> Headers {
    let mut h: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), req.method.as_bytes().to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":authority".to_vec(), req.authority.as_bytes().to_vec()),
        (b":path".to_vec(), req.path.as_bytes().to_vec()),
    ];
    h.extend(
        req.headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.clone())),
    );
    h
}

fn refs(h: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    h.iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect()
}

/// Header maps at Envoy's limits (100 headers, 60 KiB): a signed request
/// just under them verifies; over them Envoy refuses it (431) before the
/// filter runs, and nothing reaches the upstream.
async fn header_maps_at_envoys_limits(t: Target) {
    let e = edge(t).await;
    // The signed request has host + 2 x-crawbl-* headers + connection; 90
    // more stay under Envoy's default of 100.
    let mut many = Req::new("GET", "/many");
    for i in 0..90 {
        many = many.header(&format!("x-filler-{i}"), "v");
    }
    let many = e.signed(many);
    assert_eq!(raw_h1(e.addr, &h1_bytes(&many, b"")).await, 200);
    let mut too_many = Req::new("GET", "/too-many");
    for i in 0..110 {
        too_many = too_many.header(&format!("x-filler-{i}"), "v");
    }
    let too_many = e.signed(too_many);
    assert_eq!(raw_h1(e.addr, &h1_bytes(&too_many, b"")).await, 431);
    // One large header: 50 KiB passes, 70 KiB is over Envoy's 60 KiB.
    let big = e.signed(Req::new("GET", "/big").header("x-big", "a".repeat(50 * 1024)));
    assert_eq!(raw_h1(e.addr, &h1_bytes(&big, b"")).await, 200);
    let huge = e.signed(Req::new("GET", "/huge").header("x-big", "a".repeat(70 * 1024)));
    assert_eq!(raw_h1(e.addr, &h1_bytes(&huge, b"")).await, 431);
    // The same over HTTP/2: over the count limit the stream is refused.
    let mut h = h2_headers(&e.signed(Req::new("GET", "/h2-many")));
    for i in 0..110 {
        h.push((format!("x-filler-{i}").into_bytes(), b"v".to_vec()));
    }
    let r = raw_h2(e.addr, &refs(&h), None, false).await;
    assert_ne!(r.status, Some(200), "{r:?}");
    let paths = e.upstream_paths().await;
    assert_eq!(paths, ["/many", "/big"], "only the verified requests pass");
    e.assert_healthy().await;
}

/// Look-alike x-crawbl-* headers are ignored (they are not the signature);
/// a second copy of a real one is `malformed_signature`; raw non-UTF-8
/// bytes in any header value neither crash the filter nor verify.
async fn look_alike_and_non_utf8_headers(t: Target) {
    let e = edge(t).await;
    let mut req = Req::new("GET", "/look-alikes");
    for name in [
        "x-crawbl-signature-2",
        "x-crawbl-signaturex",
        "x-crawbl-",
        "x-crawbl-timestamp-old",
        "x-crawbl-nonce2",
        "x-crawbl-content-sha256x",
        "x-crawbl-environment",
    ] {
        req = req.header(name, "v1=00");
    }
    for i in 0..40 {
        req = req.header(&format!("x-crawbl-{i}"), [0xffu8, 0xfe, b'x', 0x80]);
    }
    let req = e.signed(req);
    assert_eq!(raw_h1(e.addr, &h1_bytes(&req, b"")).await, 200);
    // With an underscore, Envoy (as Envoy Gateway configures it) refuses
    // the request itself: such names can alias dashed ones upstream.
    let underscore = e.signed(Req::new("GET", "/underscore").header("x-crawbl_signature", "v1=00"));
    assert_eq!(raw_h1(e.addr, &h1_bytes(&underscore, b"")).await, 400);
    let signed = e.signed(Req::new("GET", "/dup"));
    let sig = signed.get("x-crawbl-signature").unwrap();
    let dup = signed.clone().header("X-Crawbl-Signature", sig);
    let r = send(e.addr, &dup).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code().as_deref(), Some("malformed_signature"));
    for name in ["x-crawbl-signature", "x-crawbl-timestamp"] {
        let bad = signed
            .clone()
            .set(name, [b'v', b'1', b'=', 0xff, 0xc3, 0x28]);
        let status = raw_h1(e.addr, &h1_bytes(&bad, b"")).await;
        assert_eq!(status, 401, "{name} with raw bytes");
    }
    // Raw bytes in the path: Envoy refuses them before the filter (§7).
    let mut raw_path = h1_bytes(&signed, b"");
    let at = raw_path.iter().position(|&b| b == b' ').unwrap() + 2;
    raw_path.splice(at..at, [0xff, 0xfe]);
    assert_eq!(raw_h1(e.addr, &raw_path).await, 400);
    let paths = e.upstream_paths().await;
    assert_eq!(paths, ["/look-alikes"]);
    e.assert_healthy().await;
}

/// HTTP/2 pseudo-header tricks: duplicated or misplaced pseudo-headers,
/// upper-case names, connection-specific headers and a `:path` without a
/// slash are refused by Envoy's codec; `:authority` and `host` that differ
/// are verified on `:authority`, which is also what the upstream receives.
async fn http2_pseudo_header_tricks(t: Target) {
    let e = edge(t).await;
    let good = e.signed(Req::new("GET", "/h2"));
    let base = h2_headers(&good);
    let r = raw_h2(e.addr, &refs(&base), None, false).await;
    assert_eq!(r.status, Some(200), "{r:?}");

    let with = |extra: &[(&[u8], &[u8])], at: usize| {
        let mut h = base.clone();
        for (i, (n, v)) in extra.iter().enumerate() {
            h.insert((at + i).min(h.len()), (n.to_vec(), v.to_vec()));
        }
        h
    };
    let tricks: Vec<(&str, Headers)> = vec![
        ("second :path", with(&[(b":path", b"/admin")], 4)),
        (
            "second :authority",
            with(&[(b":authority", b"evil.test")], 4),
        ),
        (
            "pseudo-header after a regular one",
            with(&[(b":path", b"/x")], 99),
        ),
        (
            "upper-case name",
            with(&[(b"X-Crawbl-Nonce", b"0123456789abcdef")], 99),
        ),
        (
            "connection header",
            with(&[(b"connection", b"keep-alive")], 99),
        ),
        ("unknown pseudo-header", with(&[(b":crawbl", b"1")], 4)),
        ("path without slash", {
            let mut h = base.clone();
            h[3].1 = b"h2".to_vec();
            h
        }),
    ];
    for (what, headers) in &tricks {
        let r = raw_h2(e.addr, &refs(headers), None, false).await;
        assert_ne!(r.status, Some(200), "{what}: {r:?}");
        assert!(
            r.status.is_some() || r.reset_by_peer.is_some() || r.goaway.is_some() || r.closed,
            "{what}: no answer at all: {r:?}"
        );
    }

    // :authority signed, a different host added: verified on :authority.
    let h = with(&[(b"host", b"other.test")], 99);
    let r = raw_h2(e.addr, &refs(&h), None, false).await;
    // Either Envoy refuses the disagreement or it forwards :authority; it
    // never forwards the unsigned host.
    let records = e.upstream.settled_records().await;
    for rec in &records {
        assert_eq!(
            rec.header("host"),
            Some("api.example.test"),
            "{r:?} {rec:?}"
        );
    }
    // Signed for the host value instead: never verified when :authority differs.
    let signed_for_host = {
        let mut req = Req::new("GET", "/h2-host");
        req.authority = "other.test".into();
        e.signed(req)
    };
    let mut h = h2_headers(&signed_for_host);
    h[2].1 = b"api.example.test".to_vec();
    h.push((b"host".to_vec(), b"other.test".to_vec()));
    let r = raw_h2(e.addr, &refs(&h), None, false).await;
    assert_ne!(r.status, Some(200), "{r:?}");
    let paths = e.upstream_paths().await;
    assert!(
        paths.iter().all(|p| p == "/h2"),
        "a trick reached the upstream: {paths:?}"
    );
    e.assert_healthy().await;
}

/// A signed upload that the client abandons mid-body (HTTP/1 connection
/// closed, HTTP/2 stream reset) leaves no stream open, is never completed
/// at the upstream, and leaves the filter working.
async fn requests_reset_mid_body(t: Target) {
    let e = edge(t).await;
    let body = vec![b'z'; 100_000];
    let req = e.signed(Req::new("POST", "/upload").body(Body::Full(body.clone())));
    // HTTP/1: declare 100000 bytes, send 30000, close.
    let mut head = h1_bytes(&req.clone().header("content-length", "100000"), b"");
    head.truncate(head.len() - b"connection: close\r\n\r\n".len());
    head.extend_from_slice(b"\r\n");
    {
        let mut conn = tokio::net::TcpStream::connect(e.addr).await.unwrap();
        conn.write_all(&head).await.unwrap();
        conn.write_all(&body[..30_000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // HTTP/2: headers, 30000 bytes of data, RST_STREAM.
    let mut h = h2_headers(&req);
    h.push((b"content-length".to_vec(), b"100000".to_vec()));
    let r = raw_h2(e.addr, &refs(&h), Some(&body[..30_000]), true).await;
    assert_eq!(
        r.status, None,
        "answered before the body was complete: {r:?}"
    );
    let records = e.upstream.settled_records().await;
    assert!(
        records.iter().all(|r| !r.complete),
        "an abandoned upload completed upstream: {records:?}"
    );
    e.assert_healthy().await;
    // The whole upload, signed, still passes.
    let ok = send(e.addr, &req).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

/// The suite-wide leak scan is real: a test key that reaches Envoy's log
/// (here Envoy's own debug log of request headers) fails the test that
/// started that Envoy, when the Envoy is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_envoys_log_fails_the_test_that_started_it() {
    let e = edge(Target::WASM_1_40).await;
    let leaked = secret();
    let debug = edge_hmac_tests::client::Req::new("POST", "/logging?http=debug");
    let mut admin = edge_hmac_tests::client::Conn::h1(e.envoy.admin)
        .await
        .unwrap();
    let mut debug = debug;
    debug.authority = e.envoy.admin.to_string();
    assert_eq!(admin.send(&debug).await.unwrap().status, 200);
    let _ = send(e.addr, &Req::new("GET", "/x").header("x-oops", &leaked)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Edge { envoy, .. } = e;
    let scan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(envoy)));
    assert!(scan.is_err(), "the scan missed a key in Envoy's log");
}

edge_hmac_tests::matrix!(
    header_maps_at_envoys_limits,
    look_alike_and_non_utf8_headers,
    http2_pseudo_header_tricks,
    requests_reset_mid_body,
);
