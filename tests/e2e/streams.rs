//! Streams through a real Envoy with the filter: websocket upgrades (the
//! `websockets` package), gRPC unary and streaming calls (`grpcio`), chunked
//! uploads on an unsigned-payload path, `Expect: 100-continue`, and exempt
//! paths that stay closed to bodies and upgrades. Envoy is rendered the way
//! Envoy Gateway renders an HTTPRoute (websocket upgrades on the route, an
//! HTTP/1.1 upstream) or a GRPCRoute (an HTTP/2 upstream, no upgrades).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_hmac_core::config::parse;
use edge_hmac_core::scheme::sha256;
use edge_hmac_tests::build::{venv, workspace};
use edge_hmac_tests::client::{Body, Req, send, stream_request};
use edge_hmac_tests::cluster::{Service, free_port, wait_for};
use edge_hmac_tests::envoy::Envoy;
use edge_hmac_tests::python::run_json;
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::target::Target;
use edge_hmac_tests::upstream::Upstream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ENV: &str = "dev";

/// Envoy with the filter (`config_json`) in front of `upstream`.
async fn envoy(
    t: Target,
    upstream: SocketAddr,
    config_json: &str,
    http2: bool,
    secret: &str,
) -> Envoy {
    let mut local = t.local(upstream, parse(config_json.as_bytes()).unwrap());
    local.upstream_http2 = http2;
    t.start(
        &local,
        &[("HMAC_SECRET", secret), ("HMAC_ENVIRONMENT", ENV)],
    )
    .await
}

/// A recording upstream behind Envoy with the filter (`config_json`, a new
/// key): the upstream, Envoy, its listener and the key.
async fn with_recording_upstream(
    t: Target,
    config_json: &str,
) -> (Upstream, Envoy, SocketAddr, String) {
    let upstream = Upstream::start().await;
    let secret = secret();
    let envoy = envoy(t, upstream.addr, config_json, false, &secret).await;
    let addr = envoy.listener("edge_hmac").await;
    (upstream, envoy, addr, secret)
}

/// A peer server from `tests/support/stream_peers.py`, listening on `port`.
pub(crate) fn peer_server(args: &[&str], port: u16, log: &Path) -> Service {
    let mut cmd = Command::new(venv().join("bin/python"));
    cmd.arg(workspace().join("tests/support/stream_peers.py"))
        .args(args)
        .env("PYTHONUNBUFFERED", "1");
    let service = Service::start(args[0], &cmd, log);
    let up = wait_for(Duration::from_secs(20), || {
        service
            .log_text()
            .contains(&format!(r#""port": {port}"#))
            .then_some(())
    });
    assert!(up.is_some(), "{}", service.log_tail(30));
    service
}

/// The JSON events a peer server logged.
pub(crate) fn events(service: &Service) -> Vec<Value> {
    service
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs a peer client with `request` on stdin; its JSON result.
pub(crate) async fn peer_client(kind: &str, request: Value) -> Value {
    run_json(
        "stream_peers.py",
        &[kind],
        &request,
        Duration::from_secs(40),
    )
    .await
}

/// Envoy's heap in use, from admin `/memory` (asked of the allocator at the
/// time of the call; `server.memory_allocated` in `/stats` only moves at
/// each stats flush).
async fn heap(envoy: &Envoy) -> u64 {
    let resp = edge_hmac_tests::client::get(envoy.admin, "/memory")
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&resp.body).unwrap();
    doc["allocated"].as_str().unwrap().parse().unwrap()
}

/// A gRPC call refused by the filter: Envoy's 401 as `UNAUTHENTICATED`,
/// with the JSON error (carrying `code`) as the message.
#[track_caller]
fn assert_grpc_refused(out: &Value, code: &str) {
    assert_eq!(out["code"], "UNAUTHENTICATED", "{out}");
    let details = out["details"].as_str().unwrap_or_default();
    assert_eq!(details, format!(r#"{{"error":"{code}"}}"#), "{out}");
}

/// The `x-crawbl-*` headers of `req`, as `[name, value]` pairs.
pub(crate) fn crawbl_headers(req: &Req) -> Vec<[String; 2]> {
    req.headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-crawbl-"))
        .map(|(n, v)| [n.clone(), String::from_utf8_lossy(v).into_owned()])
        .collect()
}

pub(crate) fn at(authority: &str, method: &str, path: &str) -> Req {
    let mut req = Req::new(method, path);
    req.authority = authority.into();
    req
}

/// A signed websocket handshake gets 101 and messages flow both ways; an
/// unsigned or tampered handshake, or one on an exempt path, is refused and
/// never reaches the upstream.
async fn websocket_upgrade_verified_then_streams(t: Target) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = peer_server(
        &["ws-server", &port.to_string()],
        port,
        &dir.path().join("ws.log"),
    );
    let secret = secret();
    let envoy = envoy(
        t,
        ([127, 0, 0, 1], port).into(),
        r#"{"exempt_paths":["/healthz"]}"#,
        false,
        &secret,
    )
    .await;
    let addr = envoy.listener("edge_hmac").await;
    let authority = format!("127.0.0.1:{}", addr.port());
    let ws = |path: &str, headers: Vec<[String; 2]>, messages: Vec<String>| json!({"url": format!("ws://{authority}{path}"), "headers": headers, "messages": messages});

    // Signed: 101, then echoes of every message, one larger than Envoy's
    // per-connection buffer.
    let big = "x".repeat(2 * 1024 * 1024);
    let messages = vec!["hello".to_string(), big.clone(), "bye".to_string()];
    let signed = at(&authority, "GET", "/ws/chat").signed(&secret, ENV);
    let out = peer_client(
        "ws-client",
        ws("/ws/chat", crawbl_headers(&signed), messages.clone()),
    )
    .await;
    assert_eq!(out["status"], 101, "{out}\n{}", envoy.log_tail(20));
    assert_eq!(out["echoes"], json!(messages));

    // Unsigned, tampered (signed for another path), exempt path unsigned.
    let out = peer_client("ws-client", ws("/ws/chat", vec![], vec!["x".into()])).await;
    assert_eq!(out["status"], 401, "{out}");
    assert!(
        out["body"].as_str().unwrap().contains("missing_signature"),
        "{out}"
    );
    let other = at(&authority, "GET", "/ws/other").signed(&secret, ENV);
    let out = peer_client(
        "ws-client",
        ws("/ws/chat", crawbl_headers(&other), vec!["x".into()]),
    )
    .await;
    assert_eq!(out["status"], 401, "{out}");
    assert!(
        out["body"].as_str().unwrap().contains("invalid_signature"),
        "{out}"
    );
    let out = peer_client("ws-client", ws("/healthz", vec![], vec!["x".into()])).await;
    assert_eq!(out["status"], 401, "{out}");

    let opened: Vec<Value> = events(&server)
        .into_iter()
        .filter(|e| e["event"] == "ws_open")
        .collect();
    assert_eq!(
        opened,
        vec![json!({"event": "ws_open", "path": "/ws/chat"})]
    );
    assert_eq!(envoy.counter("verified_upgrade").await, 1);
    assert_eq!(envoy.counter("rejected.missing_signature").await, 2);
}

/// gRPC over HTTP/2 to an HTTP/2 upstream (a GRPCRoute): unary with the
/// gRPC-framed body signed; client streaming and bidi with UNSIGNED-PAYLOAD
/// on unsigned-payload paths, the first message reaching the server before
/// the client ends; the same stream on another path, or unsigned, refused
/// before the server sees it.
async fn grpc_unary_and_streams(t: Target) {
    let dir = tempfile::tempdir().unwrap();
    let markers = dir.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let port = free_port();
    let server = peer_server(
        &["grpc-server", &port.to_string(), markers.to_str().unwrap()],
        port,
        &dir.path().join("grpc.log"),
    );
    let secret = secret();
    let envoy = envoy(
        t,
        ([127, 0, 0, 1], port).into(),
        r#"{"unsigned_payload_paths":["/edge.Echo/Collect","/edge.Echo/Chat"]}"#,
        true,
        &secret,
    )
    .await;
    let addr = envoy.listener("edge_hmac").await;
    let target = format!("127.0.0.1:{}", addr.port());
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let call =
        |kind: &str, method: &str, metadata: Vec<[String; 2]>, messages: &[&[u8]], id: &str| {
            json!({
                "target": target, "kind": kind, "method": method, "metadata": metadata,
                "messages": messages.iter().map(|m| hex(m)).collect::<Vec<_>>(),
                "marker_dir": markers, "id": id,
            })
        };

    // Unary: the content hash covers the gRPC-framed message
    // (compression flag, 4-byte big-endian length, message).
    let message = b"unary hello";
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let unary = at(&target, "POST", "/edge.Echo/Unary")
        .body(Body::Full(framed.clone()))
        .signed(&secret, ENV);
    assert_eq!(
        unary.get("x-crawbl-content-sha256").unwrap(),
        hex(&sha256(&framed))
    );
    let out = peer_client(
        "grpc-client",
        call(
            "unary",
            "/edge.Echo/Unary",
            crawbl_headers(&unary),
            &[message],
            "",
        ),
    )
    .await;
    assert_eq!(out["code"], "OK", "{out}\n{}", envoy.log_tail(20));
    assert_eq!(out["replies"], json!([hex(message)]));
    // The same signature with another message: the body check refuses it.
    let out = peer_client(
        "grpc-client",
        call(
            "unary",
            "/edge.Echo/Unary",
            crawbl_headers(&unary),
            &[b"unary HELLO"],
            "",
        ),
    )
    .await;
    assert_grpc_refused(&out, "content_mismatch");

    // Client streaming on an unsigned-payload path.
    let collect = at(&target, "POST", "/edge.Echo/Collect").signed_unsigned_payload(&secret, ENV);
    let msgs: [&[u8]; 3] = [b"first:collect-1", b"second", b"third"];
    let out = peer_client(
        "grpc-client",
        call(
            "collect",
            "/edge.Echo/Collect",
            crawbl_headers(&collect),
            &msgs,
            "collect-1",
        ),
    )
    .await;
    assert_eq!(out["code"], "OK", "{out}\n{}", envoy.log_tail(20));
    assert_eq!(out["replies"], json!([hex(b"3")]));
    assert_eq!(out["first_seen_before_end"], true, "{out}");

    // Bidi: each message comes back before the next is sent.
    let chat = at(&target, "POST", "/edge.Echo/Chat").signed_unsigned_payload(&secret, ENV);
    let msgs: [&[u8]; 3] = [b"ping-1", b"ping-2", b"ping-3"];
    let out = peer_client(
        "grpc-client",
        call("chat", "/edge.Echo/Chat", crawbl_headers(&chat), &msgs, ""),
    )
    .await;
    assert_eq!(out["code"], "OK", "{out}");
    assert_eq!(
        out["replies"],
        json!(msgs.iter().map(|m| hex(m)).collect::<Vec<_>>())
    );
    assert_eq!(out["first_seen_before_end"], true, "{out}");

    // The same stream on a path that does not allow UNSIGNED-PAYLOAD, and
    // unsigned on the allowed path.
    let strict = at(&target, "POST", "/edge.Strict/Collect").signed_unsigned_payload(&secret, ENV);
    let msgs: [&[u8]; 2] = [b"first:strict", b"more"];
    let out = peer_client(
        "grpc-client",
        call(
            "collect",
            "/edge.Strict/Collect",
            crawbl_headers(&strict),
            &msgs,
            "strict",
        ),
    )
    .await;
    assert_grpc_refused(&out, "malformed_signature");
    let out = peer_client(
        "grpc-client",
        call("collect", "/edge.Echo/Collect", vec![], &msgs, "unsigned"),
    )
    .await;
    assert_grpc_refused(&out, "missing_signature");

    let seen = events(&server);
    let calls: Vec<&str> = seen
        .iter()
        .filter(|e| e["event"] == "grpc_call")
        .filter_map(|e| e["path"].as_str())
        .filter(|p| *p != "/edge.Echo/Unary")
        .collect();
    assert_eq!(
        calls,
        ["/edge.Echo/Collect", "/edge.Echo/Chat"],
        "the refused streams never reached the server"
    );
    // The tampered unary's headers may reach the server (they are
    // authenticated) before the reset; its message never does.
    let delivered: Vec<&str> = seen
        .iter()
        .filter(|e| e["event"] == "unary_message")
        .filter_map(|e| e["hex"].as_str())
        .collect();
    assert_eq!(delivered, [hex(message)]);
    assert!(!markers.join("strict").exists());
    assert_eq!(envoy.counter("verified_unsigned_payload").await, 2);
}

/// A chunked upload on an unsigned-payload path streams: its first chunk
/// reaches the upstream while the client is still sending, and 50 MiB (far
/// over max_body_bytes and Envoy's buffer limit) pass with Envoy's heap flat
/// (while a 12 MiB body held for its hash check grows it by over 8 MiB: the
/// measurement sees buffering). The same claim on another path is refused
/// with nothing upstream.
async fn unsigned_payload_upload_streams(t: Target) {
    let (upstream, envoy, addr, secret) =
        with_recording_upstream(t, r#"{"unsigned_payload_paths":["/upload/*"]}"#).await;
    let baseline = heap(&envoy).await;
    assert!(baseline > 0, "allocated in admin /memory");

    let req = Req::new("POST", "/upload/big").signed_unsigned_payload(&secret, ENV);
    let stream = stream_request(addr, &req).await;
    let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
    stream.body.send(chunk.clone()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if upstream
                .records()
                .first()
                .is_some_and(|r| !r.body.is_empty())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        first.is_ok(),
        "the first chunk did not reach the upstream while the client was still sending"
    );

    let total_chunks = 200; // 50 MiB
    let mut peak = baseline;
    let started = Instant::now();
    for i in 1..total_chunks {
        stream.body.send(chunk.clone()).await.unwrap();
        if i % 8 == 0 {
            peak = peak.max(heap(&envoy).await);
        }
    }
    let resp = stream.finish(Duration::from_secs(60)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    peak = peak.max(heap(&envoy).await);
    let records = upstream.settled_records().await;
    assert_eq!(records.len(), 1);
    assert!(records[0].complete);
    assert_eq!(records[0].body.len(), total_chunks * chunk.len());
    // Buffering the body would take 50 MiB; streaming stays within a few
    // buffers. (Elapsed time is printed, not asserted.)
    let grown = peak.saturating_sub(baseline);
    println!(
        "50 MiB unsigned-payload upload in {:?}; Envoy heap grew by {grown} bytes at most",
        started.elapsed()
    );
    assert!(
        grown < 16 * 1024 * 1024,
        "Envoy's heap grew by {grown} bytes"
    );
    assert_eq!(envoy.counter("verified_unsigned_payload").await, 1);
    // The measurement sees a body that is held: 12 MiB signed with its hash
    // (max_body_bytes 16 MiB) grows the heap by about its size.
    let held = held_body_growth(t, &upstream, &secret).await;
    assert!(
        held > 8 * 1024 * 1024,
        "a held 12 MiB body grew the heap by {held} bytes only"
    );

    // The claim on a path not listed: 401 before any body byte goes up.
    let before = upstream.records().len();
    let req = Req::new("POST", "/v1/orders")
        .body(Body::Full(b"payload".to_vec()))
        .signed_unsigned_payload(&secret, ENV);
    let resp = send(addr, &req).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error_code().as_deref(), Some("malformed_signature"));
    assert_eq!(upstream.settled_records().await.len(), before);
}

/// Peak growth of Envoy's heap while a 12 MiB body signed with its hash
/// (held until checked) streams in.
async fn held_body_growth(t: Target, upstream: &Upstream, secret: &str) -> u64 {
    let envoy = envoy(
        t,
        upstream.addr,
        r#"{"max_body_bytes":16777216}"#,
        false,
        secret,
    )
    .await;
    let addr = envoy.listener("edge_hmac").await;
    let chunk = Bytes::from(vec![b'h'; 256 * 1024]);
    let req = Req::new("POST", "/v1/held")
        .body(Body::Full(chunk.repeat(48)))
        .signed(secret, ENV);
    let baseline = heap(&envoy).await;
    let stream = stream_request(addr, &req).await;
    for _ in 0..48 {
        stream.body.send(chunk.clone()).await.unwrap();
    }
    // All sent, none released: the body sits in Envoy until it ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak = heap(&envoy).await;
    let resp = stream.finish(Duration::from_secs(30)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    peak.saturating_sub(baseline)
}

/// Reads from `stream` until the end of a response head; the head.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.unwrap();
            assert!(
                n > 0,
                "connection closed after {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
    })
    .await
    .expect("a response head within 10 s");
    String::from_utf8_lossy(&head).into_owned()
}

/// A signed upload that waits for `100 Continue` gets it and then passes;
/// a body that differs from the signed one after the 100 is refused.
async fn expect_100_continue(t: Target) {
    let (upstream, envoy, addr, secret) = with_recording_upstream(t, "{}").await;
    let body = vec![b'c'; 4096];
    let req = Req::new("POST", "/v1/upload")
        .body(Body::Full(body.clone()))
        .signed(&secret, ENV);
    for (sent, expected) in [(body.clone(), "200"), (vec![b'C'; 4096], "401")] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut head = format!(
            "POST /v1/upload HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n",
            req.authority,
            body.len()
        );
        for [n, v] in crawbl_headers(&req) {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let interim = read_head(&mut stream).await;
        assert!(
            interim.starts_with("HTTP/1.1 100 Continue\r\n"),
            "{interim}"
        );
        stream.write_all(&sent).await.unwrap();
        let fin = read_head(&mut stream).await;
        assert!(fin.starts_with(&format!("HTTP/1.1 {expected} ")), "{fin}");
    }
    let delivered: Vec<_> = upstream
        .settled_records()
        .await
        .into_iter()
        .filter(|r| !r.body.is_empty())
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body, body);
    assert_eq!(envoy.counter("rejected.content_mismatch").await, 1);
}

/// An exempt path lets through only requests that carry nothing: a GET with
/// a body there is verified (401 unsigned) and nothing reaches the upstream.
async fn exempt_path_with_a_body_is_verified(t: Target) {
    let (upstream, envoy, addr, _) =
        with_recording_upstream(t, r#"{"exempt_paths":["/healthz"]}"#).await;
    assert_eq!(send(addr, &Req::new("GET", "/healthz")).await.status, 200);
    let with_body = Req::new("GET", "/healthz").body(Body::Full(b"smuggled".to_vec()));
    let resp = send(addr, &with_body).await;
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.error_code().as_deref(), Some("missing_signature"));
    let records = upstream.settled_records().await;
    assert_eq!(records.len(), 1, "only the bare health check went up");
    assert!(records[0].body.is_empty());
    assert_eq!(envoy.counter("exempt").await, 1);
}

edge_hmac_tests::matrix!(
    websocket_upgrade_verified_then_streams,
    grpc_unary_and_streams,
    unsigned_payload_upload_streams,
    expect_100_continue,
    exempt_path_with_a_body_is_verified,
);
