//! `edge-hmac-ext-authz`: the HTTP authorization service of the Envoy load
//! benchmark's `ext_authz` listener (see the library docs).
//!
//! `HMAC_SECRET=… HMAC_ENVIRONMENT=dev edge-hmac-ext-authz --listen 127.0.0.1:18185`
//! answers each check request 200 (allow) or with the filter's refusal
//! (status and `{"error":"<code>"}`), which Envoy sends to the client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use edge_hmac_ext_authz::Authorizer;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Verifies Envoy ext_authz check requests with the edge-hmac core.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (HTTP/1.1 and h2c)
    #[arg(long, default_value = "127.0.0.1:18185")]
    listen: SocketAddr,
    /// The filter's plugin configuration (JSON); keys come from the environment it names (HMAC_SECRET, HMAC_ENVIRONMENT by default)
    #[arg(long, default_value = "{}")]
    config: String,
    /// Runtime threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn main() {
    let args = Args::parse();
    let authz = match Authorizer::new(args.config.as_bytes(), |k| std::env::var(k).ok(), now()) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("edge-hmac-ext-authz: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edge-hmac-ext-authz: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(args.listen, authz)) {
        eprintln!("edge-hmac-ext-authz: {e}");
        std::process::exit(1);
    }
}

async fn serve(listen: SocketAddr, authz: Arc<Authorizer>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "edge-hmac-ext-authz: listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let authz = Arc::clone(&authz);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let authz = Arc::clone(&authz);
                async move { Ok::<_, Infallible>(answer(&authz, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    authz: &Authorizer,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return respond(400, r#"{"error":"malformed_request"}"#),
    };
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .filter(|(n, _)| *n != hyper::header::HOST)
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let a = authz.check(
        parts.method.as_str(),
        &authority,
        &path,
        &headers,
        &body,
        now(),
    );
    respond(a.status, a.body)
}

fn respond(status: u16, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::FORBIDDEN);
    if !body.is_empty() {
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
    }
    resp
}
