//! The HTTP side: routing, the claim handler, readiness, metrics, and the
//! accept loop with graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::backend::{Backend, Claimed};
use super::claim::{ClaimRequest, HEADER_CLAIM};
use super::log;
use super::metrics::Metrics;

/// Shared by every connection.
pub struct State {
    backend: Arc<Backend>,
    metrics: Metrics,
    /// Set once shutdown began: readyz 503, late claims `unavailable`.
    pub shutting_down: AtomicBool,
    /// The Redis URL as it may be shown.
    pub redis_redacted: String,
}

impl State {
    /// State over `backend`.
    pub fn new(backend: Arc<Backend>, redis_redacted: String) -> State {
        State {
            backend,
            metrics: Metrics::new(),
            shutting_down: AtomicBool::new(false),
            redis_redacted,
        }
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

fn claim_response(status: StatusCode, claim: &'static str, body: String) -> Resp {
    let mut resp = respond(status, "application/json", body);
    resp.headers_mut()
        .insert(HEADER_CLAIM, http::HeaderValue::from_static(claim));
    resp
}

fn outcome(claim: &'static str) -> Resp {
    let status = if claim == "unavailable" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    claim_response(status, claim, format!("{{\"claim\":\"{claim}\"}}"))
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        format!("method not allowed: use {allow}\n"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}

async fn handle(state: Arc<State>, req: http::Request<Incoming>) -> Result<Resp, Infallible> {
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    Ok(match req.uri().path() {
        "/v1/claim" if req.method() == Method::POST => claim(&state, req.headers()).await,
        "/v1/claim" => method_not_allowed("POST"),
        "/healthz" if get => respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" if get => ready(&state).await,
        "/metrics" if get => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.text(),
        ),
        "/healthz" | "/readyz" | "/metrics" => method_not_allowed("GET"),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: POST /v1/claim, GET /healthz, /readyz, /metrics\n",
        ),
    })
}

async fn claim(state: &State, headers: &http::HeaderMap) -> Resp {
    let request = match ClaimRequest::from_headers(headers) {
        Ok(r) => r,
        Err(bad) => {
            state.metrics.claim("invalid");
            let body = serde_json::json!({"error": bad.header, "why": bad.why}).to_string();
            return claim_response(StatusCode::BAD_REQUEST, "invalid", body);
        }
    };
    if state.shutting_down.load(Ordering::SeqCst) {
        state.metrics.claim("unavailable");
        return outcome("unavailable");
    }
    let started = Instant::now();
    let result = state.backend.claim(&request.key(), request.ttl_ms).await;
    state.metrics.observe(started.elapsed().as_secs_f64());
    let claim = match result {
        Ok(Claimed::Fresh) => "fresh",
        Ok(Claimed::Replayed) => "replayed",
        Err(f) => {
            state.metrics.redis_error(f.kind);
            "unavailable"
        }
    };
    state.metrics.claim(claim);
    outcome(claim)
}

async fn ready(state: &State) -> Resp {
    let text = "text/plain; charset=utf-8";
    if state.shutting_down.load(Ordering::SeqCst) {
        state.metrics.set_ready(false);
        return respond(StatusCode::SERVICE_UNAVAILABLE, text, "shutting down\n");
    }
    let probe = state.backend.probe().await;
    state.metrics.set_ready(probe.ready);
    if let Some(kind) = probe.failure {
        state.metrics.redis_error(kind);
    }
    let status = if probe.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    respond(status, text, format!("{}\n", probe.reason))
}

/// Accepts connections until `stop` turns true, then shuts every connection
/// down gracefully and waits up to `grace` for them.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    let conn_stop = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        log(&format!("accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                conns.spawn(connection(stream, Arc::clone(&state), conn_stop.clone()));
            }
            () = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    state.shutting_down.store(true, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + grace;
    while !conns.is_empty() {
        match tokio::time::timeout_at(deadline, conns.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                log(&format!(
                    "{} connection(s) still open after the {} s grace period: closing them",
                    conns.len(),
                    grace.as_secs()
                ));
                conns.abort_all();
                while conns.join_next().await.is_some() {}
            }
        }
    }
    state.backend.close();
}

async fn connection(
    stream: tokio::net::TcpStream,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| handle(Arc::clone(&state), req));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stopped(&mut stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Returns once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
