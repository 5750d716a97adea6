//! Issue 23 through a real Envoy with the bootstrap settings Envoy Gateway
//! renders: unsigned requests that tried to leave an exempt prefix, override
//! headers on unsigned requests, RFC 9421 headers that say two things at
//! once, and downstream retry headers. Each case was seen passing before the
//! fix (the unsigned request at the recording upstream); here each is
//! refused, and the legitimate exempt requests still pass unsigned.

use std::net::SocketAddr;

use edge_hmac::render::envoy::{ListenerFilter, LocalEnvoy};
use edge_hmac_core::config::parse;
use edge_hmac_core::paths::PathMatch;
use edge_hmac_core::scheme::rfc9421::{Rfc9421Request, content_digest_header};
use edge_hmac_core::scheme::{SecretKey, Signer};
use edge_hmac_tests::client::{Body, Req, now, send};
use edge_hmac_tests::envoy::Envoy;
use edge_hmac_tests::python::raw_h2;
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::target::Target;
use edge_hmac_tests::upstream::Upstream;

const ENV: &str = "dev";

/// The red-team paths of issue 23 (and their neighbours), all under the
/// exempt prefix `/public/*` as bytes, none of them exempt.
const ESCAPES: [&str; 13] = [
    "/public/%2e%2e;/admin",
    "/public/%2E%2E;/admin",
    "/public/.%2e;/admin",
    "/public/%2e.;/admin",
    "/public/%2e%2e;/%2e%2e;/admin",
    "/public/..%3b/admin",
    "/public/%252e%252e/admin",
    "/public/%2e%2e%3b/admin",
    "/public/%2e%2e;x/admin",
    "/public/%2e%2e;jsessionid=1/admin",
    "/public/%c0%ae%c0%ae/admin",
    "/public/a;jsessionid=0/../../admin",
    "/publicity",
];

struct Edge {
    envoy: Envoy,
    addr: SocketAddr,
    secret: String,
}

/// The filter (exempt `/public/*` and `/healthz`, CORS preflights on, both
/// formats) in front of `upstream`.
async fn edge(t: Target, upstream: SocketAddr) -> Edge {
    let config = t.local(
        upstream,
        parse(
            br#"{"exempt_paths": ["/public/*", "/healthz"], "allow_cors_preflight": true,
                 "formats": ["v1", "rfc9421"]}"#,
        )
        .unwrap(),
    );
    let secret = secret();
    let envoy = t
        .start(
            &config,
            &[("HMAC_SECRET", secret.as_str()), ("HMAC_ENVIRONMENT", ENV)],
        )
        .await;
    let addr = envoy.listener("edge_hmac").await;
    Edge {
        envoy,
        addr,
        secret,
    }
}

/// A second Envoy behind the edge with no filter and the same path
/// normalization (as a sidecar or an internal gateway would run): it reads
/// `/public/..;/admin` as `/admin`.
async fn second_hop(upstream: SocketAddr) -> (Envoy, SocketAddr) {
    let mut config = LocalEnvoy::single(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        upstream,
        edge_hmac_tests::build::filter_wasm().to_path_buf(),
        parse(b"{}").unwrap(),
    );
    config.listeners[0].filter = ListenerFilter::None;
    let envoy = Envoy::start(&config, &[]).await;
    let addr = envoy.listener("edge_hmac").await;
    (envoy, addr)
}

/// No unsigned request escapes `/public/*` through the edge, even to a
/// second normalizing hop: every escape is `401 missing_signature`, the
/// final upstream only ever sees paths under `/public/` (after its own
/// normalization) or signed requests, and `/public/logo.png` and
/// `/healthz` still pass unsigned.
async fn exempt_prefix_cannot_be_escaped(t: Target) {
    let upstream = Upstream::start().await;
    let (_hop, hop_addr) = second_hop(upstream.addr).await;
    let e = edge(t, hop_addr).await;
    for path in ESCAPES {
        let resp = send(e.addr, &Req::new("GET", path)).await;
        assert_eq!(
            (resp.status, resp.error_code().as_deref()),
            (401, Some("missing_signature")),
            "{path}: {}",
            resp.text()
        );
    }
    // An encoded slash never reaches the filter: Envoy redirects it.
    let slash = send(e.addr, &Req::new("GET", "/public/%2e%2e%2fadmin")).await;
    assert_eq!(slash.status, 307);
    for path in [
        "/public/logo.png",
        "/public/",
        "/healthz",
        "/healthz?probe=1",
    ] {
        assert_eq!(
            send(e.addr, &Req::new("GET", path)).await.status,
            200,
            "{path}"
        );
    }
    // A signed request to /admin passes both hops (the chain routes).
    let signed = Req::new("GET", "/admin").signed(&e.secret, ENV);
    assert_eq!(send(e.addr, &signed).await.status, 200);
    let public = PathMatch::parse("exempt_paths", "/public/*").unwrap();
    let records = upstream.settled_records().await;
    for r in &records {
        let signed = r.header("x-crawbl-signature").is_some();
        let exempt = public.covers(r.path.as_bytes()) || r.path.starts_with("/healthz");
        assert!(
            signed || exempt,
            "an unsigned request reached {} behind the edge",
            r.path
        );
    }
    assert_eq!(records.len(), 5, "{records:?}");
    assert_eq!(e.envoy.counter("exempt").await, 4);
}

/// URL and method override headers never reach the upstream on a request
/// that passes unsigned (exempt path, CORS preflight); a signed request
/// keeps them (its sender is authenticated).
async fn override_headers_stripped_from_unsigned_requests(t: Target) {
    let upstream = Upstream::start().await;
    let e = edge(t, upstream.addr).await;
    let overrides = [
        ("X-Original-URL", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-forwarded-prefix", "/admin"),
    ];
    let with = |mut req: Req| {
        for (n, v) in overrides {
            req = req.header(n, v);
        }
        req.header("x-keep", "yes")
    };
    let exempt = with(Req::new("GET", "/healthz"));
    assert_eq!(send(e.addr, &exempt).await.status, 200);
    let preflight = with(
        Req::new("OPTIONS", "/v1/orders")
            .header("origin", "https://app.example.test")
            .header("access-control-request-method", "POST"),
    );
    assert_eq!(send(e.addr, &preflight).await.status, 200);
    let signed = with(Req::new("GET", "/v1/orders")).signed(&e.secret, ENV);
    assert_eq!(send(e.addr, &signed).await.status, 200);
    let records = upstream.settled_records().await;
    assert_eq!(records.len(), 3);
    for r in &records[..2] {
        for (n, _) in overrides {
            assert_eq!(r.header(n), None, "{n} reached {} {}", r.method, r.path);
        }
        assert_eq!(r.header("x-keep"), Some("yes"));
    }
    for (n, v) in overrides {
        assert_eq!(records[2].header(n), Some(v), "signed request lost {n}");
    }
}

/// RFC 9421 through Envoy: a repeated parameter (`created`, `nonce`) or a
/// repeated covered component is `401 malformed_signature` and reaches
/// nothing; and on a plain-text listener a client's `:scheme: https` no
/// longer makes `:443` drop from `@authority` (the connection decides).
async fn rfc9421_ambiguities_refused(t: Target) {
    let upstream = Upstream::start().await;
    let e = edge(t, upstream.addr).await;
    let signer = Signer::new(SecretKey::new(e.secret.as_bytes(), "current").unwrap(), ENV).unwrap();
    let created = now();
    let body = br#"{"a":1}"#;
    let digest = content_digest_header(body);
    let h = signer
        .sign_rfc9421(&Rfc9421Request {
            method: "POST",
            scheme: "http",
            authority: "api.example.test",
            path: "/v1/orders",
            created,
            expires: None,
            nonce: Some("escape-nonce-0123456789"),
            content_digest: Some(&digest),
            fields: &[],
        })
        .unwrap();
    let req = |input: &str| {
        Req::new("POST", "/v1/orders")
            .header("content-digest", &digest)
            .header("signature-input", input)
            .header("signature", &h.signature)
            .body(Body::Full(body.to_vec()))
    };
    for input in [
        h.signature_input.replace(
            &format!("created={created}"),
            &format!("created=1;created={created}"),
        ),
        h.signature_input.replace(
            "nonce=\"escape-nonce-0123456789\"",
            "nonce=\"other-nonce-0123456789\";nonce=\"escape-nonce-0123456789\"",
        ),
        h.signature_input
            .replace("\"@method\"", "\"@method\" \"@method\""),
    ] {
        let resp = send(e.addr, &req(&input)).await;
        assert_eq!(
            (resp.status, resp.error_code().as_deref()),
            (401, Some("malformed_signature")),
            "{input}"
        );
    }
    assert!(upstream.settled_records().await.is_empty());
    // The request as signed passes (so the refusals above were the repeats).
    assert_eq!(send(e.addr, &req(&h.signature_input)).await.status, 200);

    // `https://api.example.test/v1/x` signed; sent over plain-text HTTP/2
    // claiming `:scheme: https` with `:443`: the port is not the
    // connection's default, so it stays in `@authority` and the tag fails.
    let get = signer
        .sign_rfc9421(&Rfc9421Request {
            method: "GET",
            scheme: "https",
            authority: "api.example.test",
            path: "/v1/x",
            created,
            expires: None,
            nonce: None,
            content_digest: None,
            fields: &[],
        })
        .unwrap();
    let h2 = |scheme: &[u8], authority: &[u8]| {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":scheme".to_vec(), scheme.to_vec()),
            (b":authority".to_vec(), authority.to_vec()),
            (b":path".to_vec(), b"/v1/x".to_vec()),
        ];
        for (n, v) in get.pairs() {
            headers.push((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
        headers
    };
    let send_h2 = |headers: Vec<(Vec<u8>, Vec<u8>)>| async move {
        let list: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        raw_h2(e.addr, &list, None, false).await.status
    };
    assert_eq!(
        send_h2(h2(b"https", b"api.example.test:443")).await,
        Some(401)
    );
    assert_eq!(
        send_h2(h2(b"http", b"api.example.test:80")).await,
        Some(200)
    );
}

/// A downstream `x-envoy-retry-on` / `x-envoy-max-retries` cannot make the
/// edge deliver one signed request twice: the upstream answers 503 and
/// still receives it exactly once.
async fn downstream_retry_headers_do_not_redeliver(t: Target) {
    let upstream = Upstream::start().await;
    let e = edge(t, upstream.addr).await;
    for (method, body) in [
        ("GET", Body::Empty),
        ("POST", Body::Full(b"pay 10".to_vec())),
    ] {
        let req = Req::new(method, "/v1/payments")
            .header("x-test-status", "503")
            .header("x-envoy-retry-on", "5xx,reset,retriable-status-codes")
            .header("x-envoy-retriable-status-codes", "503")
            .header("x-envoy-max-retries", "3")
            .body(body)
            .signed(&e.secret, ENV);
        assert_eq!(send(e.addr, &req).await.status, 503, "{method}");
    }
    let records = upstream.settled_records().await;
    assert_eq!(
        records
            .iter()
            .map(|r| r.method.as_str())
            .collect::<Vec<_>>(),
        ["GET", "POST"],
        "a signed request was delivered more than once"
    );
    assert_eq!(e.envoy.stat("cluster.upstream.upstream_rq_retry").await, 0);
}

edge_hmac_tests::matrix!(
    exempt_prefix_cannot_be_escaped,
    override_headers_stripped_from_unsigned_requests,
    rfc9421_ambiguities_refused,
    downstream_retry_headers_do_not_redeliver,
);
