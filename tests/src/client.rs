//! A small HTTP/1.1 and HTTP/2 (prior knowledge) client on hyper, able to
//! send duplicate and non-UTF-8 headers, bodies in timed chunks, and trailers;
//! plus signing with the project's own [`Signer`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edge_hmac_core::scheme::{Payload, SecretKey, SignRequest, Signer, TagEncoding};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body (headers end the stream).
    Empty,
    /// One buffer.
    Full(Vec<u8>),
    /// Several data frames sent with a pause between them.
    Chunks {
        /// The frames.
        chunks: Vec<Vec<u8>>,
        /// Pause before each frame after the first.
        delay: Duration,
    },
    /// Data followed by trailers.
    WithTrailers {
        /// The data.
        data: Vec<u8>,
        /// Trailer fields.
        trailers: Vec<(String, String)>,
    },
}

impl Body {
    /// All data bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Empty => vec![],
            Body::Full(b) => b.clone(),
            Body::Chunks { chunks, .. } => chunks.concat(),
            Body::WithTrailers { data, .. } => data.clone(),
        }
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Req {
    /// Method.
    pub method: String,
    /// Path and query, sent as-is.
    pub path: String,
    /// Authority (`Host` / `:authority`).
    pub authority: String,
    /// Extra headers, in order; duplicates allowed; values may be any bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Body,
}

impl Req {
    /// A request with no headers and no body.
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            authority: "api.example.test".into(),
            headers: vec![],
            body: Body::Empty,
        }
    }

    /// With this body.
    pub fn body(mut self, body: Body) -> Req {
        self.body = body;
        self
    }

    /// With this header added.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Req {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// The value of header `name` (first occurrence).
    pub fn get(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// With header `name` replaced (all occurrences) by `value`.
    pub fn set(mut self, name: &str, value: impl AsRef<[u8]>) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.header(name, value)
    }

    /// Without header `name`.
    pub fn without(mut self, name: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// Signs the request as a client would, now, with the body's hash.
    pub fn signed(self, secret: &str, environment: &str) -> Req {
        self.signed_with(secret, environment, now(), None, TagEncoding::Hex)
    }

    /// Signs as a client would, now, with `x-crawbl-content-sha256:
    /// UNSIGNED-PAYLOAD` (the body is not covered).
    pub fn signed_unsigned_payload(self, secret: &str, environment: &str) -> Req {
        self.sign_payload(
            secret,
            environment,
            now(),
            None,
            TagEncoding::Hex,
            Some(Payload::Unsigned),
        )
    }

    /// Signs with every choice explicit.
    pub fn signed_with(
        self,
        secret: &str,
        environment: &str,
        timestamp: u64,
        nonce: Option<&str>,
        encoding: TagEncoding,
    ) -> Req {
        let payload = Payload::of(&self.body.bytes());
        self.sign_payload(secret, environment, timestamp, nonce, encoding, payload)
    }

    /// Signs with every choice explicit, the payload claim included
    /// (`Payload::Unsigned` for `UNSIGNED-PAYLOAD`).
    pub fn sign_payload(
        mut self,
        secret: &str,
        environment: &str,
        timestamp: u64,
        nonce: Option<&str>,
        encoding: TagEncoding,
        payload: Option<Payload>,
    ) -> Req {
        let signer = Signer::new(
            SecretKey::new(secret.as_bytes(), "current").unwrap(),
            environment,
        )
        .unwrap();
        let headers = signer
            .sign(
                &SignRequest {
                    method: &self.method,
                    authority: &self.authority,
                    path: &self.path,
                    timestamp,
                    nonce,
                    payload,
                },
                encoding,
            )
            .unwrap();
        for (n, v) in headers.pairs() {
            self = self.set(n, v);
        }
        self
    }
}

/// Unix time now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` code of a JSON error body.
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .get("error")?
            .as_str()
            .map(str::to_owned)
    }
}

/// A body fed from a channel of frames (for timed chunks and trailers).
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

type ReqBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn build(req: &Req, http2: bool) -> Request<ReqBody> {
    let body: ReqBody = match &req.body {
        Body::Empty => http_body_util::Empty::new().boxed(),
        Body::Full(b) => http_body_util::Full::new(Bytes::from(b.clone())).boxed(),
        Body::Chunks { chunks, delay } => {
            let (tx, rx) = mpsc::channel(4);
            let chunks = chunks.clone();
            let delay = *delay;
            tokio::spawn(async move {
                for (i, c) in chunks.into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(delay).await;
                    }
                    if tx.send(Frame::data(Bytes::from(c))).await.is_err() {
                        return;
                    }
                }
            });
            ChannelBody(rx).boxed()
        }
        Body::WithTrailers { data, trailers } => {
            let (tx, rx) = mpsc::channel(4);
            let data = data.clone();
            let mut map = HeaderMap::new();
            for (n, v) in trailers {
                map.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            tokio::spawn(async move {
                let _ = tx.send(Frame::data(Bytes::from(data))).await;
                let _ = tx.send(Frame::trailers(map)).await;
            });
            ChannelBody(rx).boxed()
        }
    };
    let mut builder = Request::builder().method(req.method.as_str());
    if http2 {
        builder = builder.uri(format!("http://{}{}", req.authority, req.path));
    } else {
        builder = builder
            .uri(req.path.as_str())
            .header("host", req.authority.as_str());
    }
    let mut request = builder.body(body).unwrap();
    for (n, v) in &req.headers {
        request.headers_mut().append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    if let (Body::Full(b), false) = (&req.body, http2) {
        // Declared length, as most clients send it.
        if !req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            request
                .headers_mut()
                .insert("content-length", HeaderValue::from(b.len()));
        }
    }
    request
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

/// One client connection, HTTP/1.1 or HTTP/2, kept open across requests.
pub struct Conn {
    sender: Sender,
}

impl Conn {
    /// An HTTP/1.1 connection to `addr`.
    pub async fn h1(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Conn {
            sender: Sender::H1(sender),
        })
    }

    /// An HTTP/2 (prior knowledge, cleartext) connection to `addr`.
    pub async fn h2(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Conn {
            sender: Sender::H2(sender),
        })
    }

    /// Sends `req` and reads the whole response.
    pub async fn send(&mut self, req: &Req) -> Result<Resp, String> {
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(build(req, false)).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(build(req, true)).await
            }
        }
        .map_err(|e| e.to_string())?;
        read_response(response).await
    }
}

/// Reads a whole response.
async fn read_response(response: http::Response<hyper::body::Incoming>) -> Result<Resp, String> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Sends `req` over a new HTTP/1.1 connection.
pub async fn send(addr: SocketAddr, req: &Req) -> Resp {
    let mut conn = Conn::h1(addr).await.expect("connect");
    tokio::time::timeout(Duration::from_secs(30), conn.send(req))
        .await
        .expect("response within 30 s")
        .expect("response")
}

/// GET `path` from `addr` (admin endpoints).
pub async fn get(addr: SocketAddr, path: &str) -> Result<Resp, String> {
    let mut conn = Conn::h1(addr).await?;
    let mut req = Req::new("GET", path);
    req.authority = addr.to_string();
    tokio::time::timeout(Duration::from_secs(10), conn.send(&req))
        .await
        .map_err(|_| "timeout".to_string())?
}

/// A request whose body the caller feeds while it is in flight.
pub struct Streaming {
    /// Send body data here; drop it to end the body.
    pub body: mpsc::Sender<Bytes>,
    /// The response, once the request ends.
    pub response: tokio::task::JoinHandle<Result<Resp, String>>,
}

impl Streaming {
    /// Ends the body and waits up to `timeout` for the response.
    pub async fn finish(self, timeout: Duration) -> Resp {
        drop(self.body);
        tokio::time::timeout(timeout, self.response)
            .await
            .unwrap_or_else(|_| panic!("no response within {timeout:?} of the body's end"))
            .expect("the request task")
            .expect("a response")
    }
}

/// Starts `req` (its headers; `req.body` is ignored) over a new HTTP/1.1
/// connection with a chunked body that the caller feeds through
/// [`Streaming::body`].
pub async fn stream_request(addr: SocketAddr, req: &Req) -> Streaming {
    let mut conn = Conn::h1(addr).await.expect("connect");
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let (frames_tx, frames_rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if frames_tx.send(Frame::data(chunk)).await.is_err() {
                return;
            }
        }
    });
    let mut request = build(&req.clone().body(Body::Empty), false);
    *request.body_mut() = ChannelBody(frames_rx).boxed();
    let response = tokio::spawn(async move {
        let Sender::H1(s) = &mut conn.sender else {
            unreachable!("an HTTP/1.1 connection")
        };
        s.ready().await.map_err(|e| e.to_string())?;
        let response = s.send_request(request).await.map_err(|e| e.to_string())?;
        read_response(response).await
    });
    Streaming { body: tx, response }
}

/// Asserts a refusal as the filter answers it: `status`, the JSON body's
/// `code`, `content-type: application/json`.
#[track_caller]
pub fn assert_rejected(resp: &Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(
        resp.error_code().as_deref(),
        Some(code),
        "body: {}",
        resp.text()
    );
    assert_eq!(
        resp.headers
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("application/json")
    );
}
