//! `edge-hmac load`: a bounded load generator that signs every request afresh
//! (new timestamp, optionally a new nonce) with the same core the filter
//! verifies with, over HTTP/1.1 or HTTP/2, closed loop or at a fixed rate
//! with latencies measured from each request's scheduled start (no
//! coordinated omission).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_hmac_core::scheme::Format;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::keys::KeySource;
use crate::secret::random_hex;
use crate::sign::{SignOptions, SignPlan, parse_format, read_body, split_header, split_url};

/// Largest `--concurrency`.
pub const MAX_CONCURRENCY: usize = 1024;
/// Largest `--body-size` (64 MiB, the filter's own `max_body_bytes` limit).
pub const MAX_BODY_SIZE: usize = 64 * 1024 * 1024;
/// Longest `--duration`.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// How long a `--requests` run may take at most when no `--duration` is given.
pub const REQUESTS_TIME_CAP: Duration = Duration::from_secs(600);
/// The run length when neither `--duration` nor `--requests` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Largest `--rate`.
pub const MAX_RATE: f64 = 1_000_000.0;

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A summary table.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `edge-hmac load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Target URL (plain http://; loopback only unless --allow-remote); authority and path+query are signed as sent
    #[arg(long)]
    pub url: String,
    /// HTTP method
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Send this header ("name: value") on every request; with --format rfc9421 it is also covered; repeatable
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Body of every request: @FILE, - for standard input, or the literal text
    #[arg(short = 'd', long, value_name = "DATA", conflicts_with = "body_size")]
    pub data: Option<String>,
    /// Body of every request: this many random bytes (made once)
    #[arg(long, value_name = "BYTES")]
    pub body_size: Option<usize>,
    /// Leave the body unsigned so it streams unchecked (v1: x-crawbl-content-sha256: UNSIGNED-PAYLOAD; rfc9421: no content-digest); for the filter's unsigned_payload_paths
    #[arg(long)]
    pub unsigned_payload: bool,
    /// A fresh random nonce on every request (the filter's replay path)
    #[arg(long)]
    pub nonce: bool,
    /// Send every signed request twice: the copy, right after its original from the same worker (even when the original failed), is a replay the filter must refuse (401 replayed_request; needs --nonce). Half the requests are copies; --requests counts both (an odd last one is left out)
    #[arg(long, requires = "nonce")]
    pub replay: bool,
    /// Signature format: v1 or rfc9421 (the filter must list rfc9421 in its formats)
    #[arg(long, value_name = "FORMAT", default_value = "v1", value_parser = parse_format)]
    pub format: Format,
    /// Requests in flight: HTTP/1.1 connections, or HTTP/2 streams on one connection
    #[arg(short = 'c', long, default_value_t = 1)]
    pub concurrency: usize,
    /// Stop after this long (e.g. 10s, 500ms, 2m; at most 1h) [default: 10s, or a 10 min cap with --requests]
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many requests
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Open loop: start requests at this many per second, latency counted from each scheduled start [default: closed loop, each worker sends as soon as its last response is in]
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Speak HTTP/2 (prior knowledge, h2c) instead of HTTP/1.1
    #[arg(long)]
    pub http2: bool,
    /// Per-request timeout (connect, send, whole response)
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Result format: a summary table, or one JSON object
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Allow a target outside 127.0.0.0/8 and ::1 (only hosts you own: this sends at full speed)
    #[arg(long)]
    pub allow_remote: bool,
    /// Where the key comes from
    #[command(flatten)]
    pub key: KeySource,
}

/// When the run stops and how requests are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Open-loop rate, requests per second (`None`: closed loop).
    pub rate: Option<f64>,
    /// Stop starting requests after this long.
    pub duration: Duration,
    /// Stop after this many requests.
    pub requests: Option<u64>,
}

impl Shape {
    /// The shape `args` ask for, checked.
    pub fn from_args(
        duration: Option<Duration>,
        requests: Option<u64>,
        rate: Option<f64>,
    ) -> Result<Self> {
        if let Some(d) = duration
            && (d.is_zero() || d > MAX_DURATION)
        {
            return Err(Error::Usage(format!(
                "--duration {}: use more than 0 and at most 1h",
                humantime::format_duration(d)
            )));
        }
        if requests == Some(0) {
            return Err(Error::Usage("--requests 0: send at least one".into()));
        }
        if let Some(r) = rate
            && !(r > 0.0 && r <= MAX_RATE)
        {
            return Err(Error::Usage(format!(
                "--rate {r}: use more than 0 and at most {MAX_RATE} requests per second"
            )));
        }
        let duration = match (duration, requests) {
            (Some(d), _) => d,
            (None, Some(_)) => REQUESTS_TIME_CAP,
            (None, None) => DEFAULT_DURATION,
        };
        Ok(Self {
            rate,
            duration,
            requests,
        })
    }

    /// When request `i` is due, from `start` (open loop only).
    pub fn scheduled(&self, start: Instant, i: u64) -> Option<Instant> {
        self.rate
            .map(|r| start + Duration::from_secs_f64(i as f64 / r))
    }
}

/// The address to connect to: `authority` resolved, every address on
/// loopback unless `allow_remote`.
pub async fn resolve(authority: &str, allow_remote: bool) -> Result<SocketAddr> {
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
    }) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| Error::Usage(format!("--url: cannot resolve {authority}: {e}")))?
        .collect();
    let first = addrs
        .first()
        .copied()
        .ok_or_else(|| Error::Usage(format!("--url: {authority} has no address")))?;
    if !allow_remote && let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        let host = with_port
            .rsplit_once(':')
            .map_or(with_port.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let what = if host == remote.ip().to_string() {
            format!("{host} is not a loopback address")
        } else {
            format!("{host} resolves to {}, not a loopback address", remote.ip())
        };
        return Err(Error::Usage(format!(
            "--url: {what}; `edge-hmac load` sends at full speed, so it only targets this machine unless you pass --allow-remote (only for hosts you own)"
        )));
    }
    Ok(first)
}

/// The counts and latencies of a run (one per worker, then merged).
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// Responses by status code, and `no_response`.
    pub status: BTreeMap<String, u64>,
    /// Error codes from refusals' JSON bodies, and the failure kind of
    /// requests with no response (`connect`, `timeout`, `http`).
    pub errors: BTreeMap<String, u64>,
}

/// The `status` key of a request that got no response.
pub const NO_RESPONSE: &str = "no_response";

impl Tally {
    fn new() -> Result<Self> {
        let latency_us = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .map_err(|e| Error::Other(format!("cannot make a histogram: {e}")))?;
        Ok(Self {
            latency_us,
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
        })
    }

    fn record(&mut self, outcome: &Outcome, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency_us.saturating_record(us);
        let (status, error) = match outcome {
            Outcome::Response { status, error } => (status.to_string(), error.clone()),
            Outcome::Failed(kind) => (NO_RESPONSE.to_owned(), Some((*kind).to_owned())),
        };
        *self.status.entry(status).or_default() += 1;
        if let Some(error) = error {
            *self.errors.entry(error).or_default() += 1;
        }
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in &other.status {
            *self.status.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// Requests that finished (with or without a response).
    pub fn requests(&self) -> u64 {
        self.status.values().sum()
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A response, with the `error` code of a JSON body if it has one.
    Response { status: u16, error: Option<String> },
    /// No response: `connect`, `timeout` or `http`.
    Failed(&'static str),
}

/// What every worker shares.
struct Job {
    plan: SignPlan,
    nonce: bool,
    /// Every other request repeats the one before it (`--replay`).
    replay: bool,
    method: http::Method,
    /// Origin-form target (HTTP/1.1) and absolute URI (HTTP/2).
    path: String,
    absolute: String,
    authority: String,
    /// Headers sent but not signed (v1 -H).
    extra: Vec<(String, String)>,
    body: Bytes,
    addr: SocketAddr,
    timeout: Duration,
    shape: Shape,
    start: Instant,
    deadline: Instant,
    next: AtomicU64,
    finished: AtomicU64,
    not_2xx: AtomicU64,
    /// HTTP/2: the one connection, made again after a failure.
    h2: Option<tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>>,
}

enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Job {
    /// The signature headers of the next request: fresh, or with
    /// `--replay` every other time a copy of the last ones (`last` holds
    /// them between the two).
    fn signature(
        &self,
        last: &mut Option<Vec<(String, String)>>,
    ) -> std::result::Result<Vec<(String, String)>, String> {
        if let Some(copy) = last.take() {
            return Ok(copy);
        }
        let nonce = if self.nonce {
            Some(random_hex(16).map_err(|e| format!("no OS randomness: {e}"))?)
        } else {
            None
        };
        let signed = self
            .plan
            .headers(crate::sign::now(), nonce.as_deref())
            .map_err(|e| e.to_string())?;
        if self.replay {
            *last = Some(signed.clone());
        }
        Ok(signed)
    }

    fn request(
        &self,
        h2: bool,
        signed: &[(String, String)],
    ) -> std::result::Result<http::Request<Full<Bytes>>, String> {
        let mut builder = http::Request::builder().method(self.method.clone());
        builder = if h2 {
            builder.uri(self.absolute.as_str())
        } else {
            builder
                .uri(self.path.as_str())
                .header(http::header::HOST, self.authority.as_str())
        };
        for (n, v) in self.extra.iter().chain(signed) {
            builder = builder.header(n.as_str(), v.as_str());
        }
        if !self.body.is_empty() || self.method == http::Method::POST {
            builder = builder.header(http::header::CONTENT_LENGTH, self.body.len());
        }
        builder
            .body(Full::new(self.body.clone()))
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    async fn connect(&self, h2: bool) -> std::result::Result<Conn, &'static str> {
        let stream = TcpStream::connect(self.addr).await.map_err(|_| "connect")?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| "connect")?;
            tokio::spawn(conn);
            Ok(Conn::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(|_| "connect")?;
            tokio::spawn(conn);
            Ok(Conn::H1(sender))
        }
    }

    /// Sends one request on `conn` (connecting first if needed), signed
    /// by [`Job::signature`].
    async fn one(
        &self,
        conn: &mut Option<Conn>,
        last: &mut Option<Vec<(String, String)>>,
    ) -> Outcome {
        let h2 = self.h2.is_some();
        // A connection the server closed after its last response (it said
        // `Connection: close`, drained for a restart, or timed out while
        // idle) takes no request: nothing was sent on it, so this request
        // goes on a new connection, as any HTTP client does, and is not a
        // failure. (One already written when the server closes is.)
        let closed = match conn {
            Some(Conn::H1(s)) => s.is_closed() || s.ready().await.is_err(),
            Some(Conn::H2(s)) => s.is_closed() || s.ready().await.is_err(),
            None => false,
        };
        if closed {
            self.drop_conn(conn).await;
        }
        if conn.is_none() {
            *conn = match &self.h2 {
                Some(shared) => {
                    let mut slot = shared.lock().await;
                    if slot.is_none() {
                        match self.connect(true).await {
                            Ok(Conn::H2(s)) => *slot = Some(s),
                            Ok(Conn::H1(_)) | Err(_) => return Outcome::Failed("connect"),
                        }
                    }
                    slot.clone().map(Conn::H2)
                }
                None => match self.connect(false).await {
                    Ok(c) => Some(c),
                    Err(kind) => return Outcome::Failed(kind),
                },
            };
        }
        let request = match self.signature(last).and_then(|s| self.request(h2, &s)) {
            Ok(r) => r,
            Err(_) => return Outcome::Failed("http"),
        };
        let sent = match conn {
            Some(Conn::H1(s)) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
            Some(Conn::H2(s)) => match s.ready().await {
                Ok(()) => s.send_request(request).await,
                Err(e) => Err(e),
            },
            None => return Outcome::Failed("connect"),
        };
        let response = match sent {
            Ok(r) => r,
            Err(_) => {
                self.drop_conn(conn).await;
                return Outcome::Failed("http");
            }
        };
        let status = response.status().as_u16();
        // HTTP/1.1: the server closes after this response; the next request
        // opens a new connection.
        let closing = !h2
            && response
                .headers()
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
                });
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                self.drop_conn(conn).await;
                return Outcome::Failed("http");
            }
        };
        if closing {
            self.drop_conn(conn).await;
        }
        let error = (!(200..300).contains(&status))
            .then(|| error_code(&body))
            .flatten();
        Outcome::Response { status, error }
    }

    async fn drop_conn(&self, conn: &mut Option<Conn>) {
        *conn = None;
        if let Some(shared) = &self.h2 {
            *shared.lock().await = None;
        }
    }

    async fn worker(self: Arc<Self>) -> Result<Tally> {
        let mut tally = Tally::new()?;
        let mut conn: Option<Conn> = None;
        let mut last = None;
        // With --replay a request claims two places, its own and its copy's.
        let step = if self.replay { 2 } else { 1 };
        loop {
            let scheduled = if last.is_some() {
                // The copy of the request just sent goes right after it,
                // whatever the limits: they were checked for the pair.
                Instant::now()
            } else {
                let i = self.next.fetch_add(step, Ordering::Relaxed);
                if self.shape.requests.is_some_and(|n| i + step > n) {
                    break;
                }
                match self.shape.scheduled(self.start, i) {
                    Some(at) => {
                        if at >= self.deadline {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => {
                        let now = Instant::now();
                        if now >= self.deadline {
                            break;
                        }
                        now
                    }
                }
            };
            let outcome =
                match tokio::time::timeout(self.timeout, self.one(&mut conn, &mut last)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        self.drop_conn(&mut conn).await;
                        Outcome::Failed("timeout")
                    }
                };
            if !matches!(
                outcome,
                Outcome::Response {
                    status: 200..=299,
                    ..
                }
            ) {
                self.not_2xx.fetch_add(1, Ordering::Relaxed);
            }
            tally.record(&outcome, scheduled.elapsed());
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
        Ok(tally)
    }
}

/// The `error` code of a JSON error body (`{"error":"<code>"}`), if any.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("error")?.as_str().map(str::to_owned)
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was counted.
    pub tally: Tally,
    /// From the first request's start to the last response.
    pub elapsed: Duration,
}

impl Report {
    /// The JSON object of `--output json`: `requests`, `duration_s`, `rps`,
    /// `latency_us` {p50, p90, p99, p999, max}, `status`, `errors`, and the
    /// `settings` it ran with.
    pub fn json(&self, settings: serde_json::Value) -> serde_json::Value {
        let h = &self.tally.latency_us;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        let requests = self.tally.requests();
        let secs = self.elapsed.as_secs_f64();
        serde_json::json!({
            "requests": requests,
            "duration_s": round3(secs),
            "rps": round3(if secs > 0.0 { requests as f64 / secs } else { 0.0 }),
            "latency_us": {
                "p50": q(0.5),
                "p90": q(0.9),
                "p99": q(0.99),
                "p999": q(0.999),
                "max": if h.is_empty() { 0 } else { h.max() },
            },
            "status": self.tally.status,
            "errors": self.tally.errors,
            "settings": settings,
        })
    }

    /// The summary table of `--output text`.
    pub fn text(&self, settings: &str) -> String {
        let j = self.json(serde_json::Value::Null);
        let l = &j["latency_us"];
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        format!(
            "edge-hmac load: {} requests in {:.3} s, {:.1} requests/s ({settings})\n\
             latency (µs)  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n\
             status        {}\n\
             errors        {}",
            j["requests"],
            self.elapsed.as_secs_f64(),
            j["rps"].as_f64().unwrap_or(0.0),
            l["p50"],
            l["p90"],
            l["p99"],
            l["p999"],
            l["max"],
            list(&self.tally.status),
            list(&self.tally.errors),
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn body_of(args: &LoadArgs) -> Result<Vec<u8>> {
    match args.body_size {
        Some(n) if n > MAX_BODY_SIZE => Err(Error::Usage(format!(
            "--body-size {n}: at most {MAX_BODY_SIZE} bytes"
        ))),
        Some(n) => {
            let mut bytes = vec![0u8; n];
            getrandom::fill(&mut bytes)
                .map_err(|e| Error::Other(format!("no OS randomness: {e}")))?;
            Ok(bytes)
        }
        None => Ok(read_body(args.data.as_deref())?.bytes),
    }
}

/// Runs `edge-hmac load`; prints the report; fails when no request got a
/// response.
pub async fn run(args: LoadArgs) -> Result<()> {
    if !(1..=MAX_CONCURRENCY).contains(&args.concurrency) {
        return Err(Error::Usage(format!(
            "--concurrency {}: use 1 to {MAX_CONCURRENCY}",
            args.concurrency
        )));
    }
    let shape = Shape::from_args(args.duration, args.requests, args.rate)?;
    let url = split_url(&args.url)?;
    if url.scheme != "http" {
        return Err(Error::Usage(format!(
            "--url {}: `edge-hmac load` speaks plain HTTP only (HTTP/1.1, or h2c with --http2); point it at the proxy's http:// listener",
            args.url
        )));
    }
    let method: http::Method = args
        .method
        .parse()
        .map_err(|_| Error::Usage(format!("-X {:?}: not an HTTP method", args.method)))?;
    let headers = args
        .headers
        .iter()
        .map(|h| split_header(h))
        .collect::<Result<Vec<_>>>()?;
    for (name, value) in &headers {
        if http::HeaderName::try_from(name.as_str()).is_err()
            || http::HeaderValue::try_from(value.as_str()).is_err()
        {
            return Err(Error::Usage(format!(
                "--header {name:?}: not a valid header name and value"
            )));
        }
    }
    let absolute = format!("http://{}{}", url.authority, url.path);
    if absolute.parse::<http::Uri>().is_err() {
        return Err(Error::Usage(format!(
            "--url {}: the path is not a valid request target",
            args.url
        )));
    }
    let addr = resolve(&url.authority, args.allow_remote).await?;
    let body = body_of(&args)?;
    let secret = args.key.resolve().await?;
    let (fields, extra) = match args.format {
        Format::Rfc9421 => (headers, Vec::new()),
        Format::V1 => (Vec::new(), headers),
    };
    let plan = SignPlan::new(
        &secret,
        args.format,
        method.as_str(),
        url.clone(),
        SignOptions {
            body: &body,
            fields,
            unsigned_payload: args.unsigned_payload,
            ..SignOptions::default()
        },
    )?;
    // One signature up front: a key or option problem is a clear error, not
    // a run of failures.
    plan.headers(crate::sign::now(), None)?;
    let settings = serde_json::json!({
        "url": args.url,
        "method": method.as_str(),
        "format": args.format.name(),
        "nonce": args.nonce,
        "replay": args.replay,
        "unsigned_payload": args.unsigned_payload,
        "body_bytes": body.len(),
        "concurrency": args.concurrency,
        "http": if args.http2 { "2" } else { "1.1" },
        "loop": if shape.rate.is_some() { "open" } else { "closed" },
        "rate": shape.rate,
        "duration_limit_s": shape.duration.as_secs_f64(),
        "requests_limit": shape.requests,
    });
    let start = Instant::now();
    let job = Arc::new(Job {
        plan,
        nonce: args.nonce,
        replay: args.replay,
        method,
        path: url.path.clone(),
        absolute,
        authority: url.authority.clone(),
        extra,
        body: Bytes::from(body),
        addr,
        timeout: args.timeout,
        shape,
        start,
        deadline: start + shape.duration,
        next: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        not_2xx: AtomicU64::new(0),
        h2: args.http2.then(|| tokio::sync::Mutex::new(None)),
    });
    let done = Arc::new(AtomicBool::new(false));
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress_line(Arc::clone(&job), Arc::clone(&done))));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(Arc::clone(&job).worker()))
        .collect();
    let mut tally = Tally::new()?;
    for w in workers {
        let t = w
            .await
            .map_err(|e| Error::Other(format!("a load worker stopped: {e}")))??;
        tally.merge(&t);
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let report = Report { tally, elapsed };
    let printed = match args.output {
        Output::Json => report.json(settings).to_string(),
        Output::Text => report.text(&format!(
            "{} {}, {}, {} {}, HTTP/{}{}",
            settings["format"].as_str().unwrap_or(""),
            match (args.nonce, args.replay) {
                (true, true) => "with nonce, each request sent twice",
                (true, false) => "with nonce",
                (false, _) => "no nonce",
            },
            match shape.rate {
                Some(r) => format!("open loop at {r}/s"),
                None => "closed loop".into(),
            },
            args.concurrency,
            workers_noun(args.concurrency, args.http2),
            settings["http"].as_str().unwrap_or(""),
            if job.body.is_empty() {
                String::new()
            } else {
                format!(", {} B body", job.body.len())
            },
        )),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{printed}").and_then(|()| out.flush())
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(Error::Other(format!("cannot write the report: {e}")));
        }
    }
    let answered = report.tally.requests() - report.tally.status.get(NO_RESPONSE).unwrap_or(&0);
    if answered == 0 {
        return Err(Error::Other(format!(
            "no request got a response from {addr} ({}): is the proxy running and listening there?",
            report
                .tally
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let succeeded: u64 = report
        .tally
        .status
        .iter()
        .filter(|(code, _)| code.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    if succeeded == 0 {
        // The report above says why (statuses and the filter's error codes).
        return Err(Error::Refused(format!(
            "none of the {answered} answered requests succeeded (no 2xx); see the error codes above"
        )));
    }
    Ok(())
}

/// What the `-c` workers are, in the report's first line: `1 connection`,
/// `2 connections`, `1 stream`, `4 streams`.
fn workers_noun(n: usize, h2: bool) -> &'static str {
    match (h2, n) {
        (true, 1) => "stream",
        (true, _) => "streams",
        (false, 1) => "connection",
        (false, _) => "connections",
    }
}

/// The live progress line on a terminal (stderr), twice a second.
async fn progress_line(job: Arc<Job>, done: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.tick().await;
    while !done.load(Ordering::Relaxed) {
        tick.tick().await;
        let secs = job.start.elapsed().as_secs_f64();
        let n = job.finished.load(Ordering::Relaxed);
        eprint!(
            "\r\x1b[2K[edge-hmac load] {secs:.1} s  {n} requests  {:.0}/s  {} not 2xx",
            n as f64 / secs.max(1e-9),
            job.not_2xx.load(Ordering::Relaxed)
        );
    }
    eprint!("\r\x1b[2K");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bounds: every run has a time limit, zero and huge values are refused.
    #[test]
    fn a_run_always_has_a_limit() {
        let s = Shape::from_args(None, None, None).unwrap();
        assert_eq!(s.duration, DEFAULT_DURATION);
        let s = Shape::from_args(None, Some(5), None).unwrap();
        assert_eq!((s.duration, s.requests), (REQUESTS_TIME_CAP, Some(5)));
        assert!(Shape::from_args(Some(Duration::ZERO), None, None).is_err());
        assert!(Shape::from_args(Some(Duration::from_secs(7200)), None, None).is_err());
        assert!(Shape::from_args(None, Some(0), None).is_err());
        assert!(Shape::from_args(None, None, Some(0.0)).is_err());
        assert!(Shape::from_args(None, None, Some(f64::NAN)).is_err());
    }

    /// Open loop: request i is due at start + i / rate, whatever the
    /// responses do (latency is counted from there).
    #[test]
    fn open_loop_schedule() {
        let s = Shape::from_args(None, None, Some(200.0)).unwrap();
        let t0 = Instant::now();
        assert_eq!(s.scheduled(t0, 0), Some(t0));
        assert_eq!(s.scheduled(t0, 100), Some(t0 + Duration::from_millis(500)));
        assert_eq!(
            Shape::from_args(None, None, None).unwrap().scheduled(t0, 3),
            None
        );
    }

    /// The report says "1 connection", not "1 connections" (issue 25).
    #[test]
    fn workers_are_counted_in_words() {
        assert_eq!(workers_noun(1, false), "connection");
        assert_eq!(workers_noun(2, false), "connections");
        assert_eq!(workers_noun(1, true), "stream");
        assert_eq!(workers_noun(8, true), "streams");
    }

    /// Loopback names and addresses pass; others need --allow-remote.
    #[tokio::test]
    async fn only_loopback_unless_allowed() {
        assert!(resolve("127.0.0.1:8080", false).await.is_ok());
        assert!(resolve("[::1]:8080", false).await.is_ok());
        assert_eq!(
            resolve("127.0.0.2", false).await.unwrap(),
            "127.0.0.2:80".parse().unwrap()
        );
        let err = resolve("192.0.2.1:80", false)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        // An address is named once, not "10.0.0.1 is 10.0.0.1" (issue 25).
        assert!(
            err.contains("192.0.2.1 is not a loopback address")
                && err.matches("192.0.2.1").count() == 1,
            "{err}"
        );
        assert!(resolve("192.0.2.1:80", true).await.is_ok());
    }

    /// The JSON adds up: status counts sum to `requests`; refusal codes and
    /// failures are counted by name.
    #[test]
    fn the_report_adds_up() {
        let mut t = Tally::new().unwrap();
        let ok = Outcome::Response {
            status: 200,
            error: None,
        };
        let refused = Outcome::Response {
            status: 401,
            error: Some("invalid_signature".into()),
        };
        for _ in 0..7 {
            t.record(&ok, Duration::from_micros(100));
        }
        t.record(&refused, Duration::from_micros(900));
        t.record(&Outcome::Failed("timeout"), Duration::from_secs(10));
        let mut merged = Tally::new().unwrap();
        merged.merge(&t);
        let r = Report {
            tally: merged,
            elapsed: Duration::from_secs(2),
        };
        let j = r.json(serde_json::json!({}));
        assert_eq!(j["requests"], 9);
        assert_eq!(j["rps"], 4.5);
        assert_eq!(j["status"]["200"], 7);
        assert_eq!(j["status"][NO_RESPONSE], 1);
        assert_eq!(j["errors"]["invalid_signature"], 1);
        assert_eq!(j["errors"]["timeout"], 1);
        let sum: u64 = j["status"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(sum, 9);
        assert!(j["latency_us"]["p50"].as_u64().unwrap() >= 100);
        assert!(j["latency_us"]["max"].as_u64().unwrap() >= 9_990_000);
        assert!(r.text("x").contains("401: 1"));
    }

    /// Refusal codes come from the filter's JSON body.
    #[test]
    fn error_codes_from_json_bodies() {
        assert_eq!(
            error_code(br#"{"error":"replayed_request"}"#).as_deref(),
            Some("replayed_request")
        );
        assert_eq!(error_code(b"upstream connect error"), None);
    }
}
