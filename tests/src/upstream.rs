//! A real upstream on loopback (HTTP/1.1 and HTTP/2) that records, as they
//! arrive, every request's headers and each body byte, so tests can assert
//! what did and did not reach it — including requests reset halfway.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// What the upstream saw of one request.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes received so far.
    pub body: Vec<u8>,
    /// Trailers, when any arrived.
    pub trailers: Vec<(String, String)>,
    /// The body ended normally.
    pub complete: bool,
    /// The body stream failed (reset by the proxy).
    pub aborted: bool,
}

impl Record {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The recording upstream; stops when dropped.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Record>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Upstream {
        Upstream::start_on(std::net::Ipv4Addr::LOCALHOST).await
    }

    /// Starts on `ip` with an ephemeral port (the node tests' pods reach
    /// it at the node's address).
    pub async fn start_on(ip: std::net::Ipv4Addr) -> Upstream {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let records: Arc<Mutex<Vec<Record>>> = Arc::default();
        let shared = Arc::clone(&records);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let records = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, Arc::clone(&records)));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            records,
            task,
        }
    }

    /// Everything received so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Waits briefly for in-flight records to settle, then returns them.
    pub async fn settled_records(&self) -> Vec<Record> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.records()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    records: Arc<Mutex<Vec<Record>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // A test asks for another status with `x-test-status` (e.g. a 503 that
    // Envoy could retry).
    let status = req
        .headers()
        .get("x-test-status")
        .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
        .unwrap_or(200);
    let index = {
        let mut all = records.lock().unwrap();
        all.push(Record {
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            ..Record::default()
        });
        all.len() - 1
    };
    let mut body = req.into_body();
    let mut received = 0usize;
    loop {
        match body.frame().await {
            None => {
                records.lock().unwrap()[index].complete = true;
                break;
            }
            Some(Err(_)) => {
                records.lock().unwrap()[index].aborted = true;
                break;
            }
            Some(Ok(frame)) => {
                let mut all = records.lock().unwrap();
                if let Some(data) = frame.data_ref() {
                    received += data.len();
                    all[index].body.extend_from_slice(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    all[index].trailers = trailers
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                }
            }
        }
    }
    let reply = serde_json::json!({ "upstream": "ok", "received": received }).to_string();
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply)))
        .unwrap())
}
