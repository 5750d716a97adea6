//! A real Secrets Manager API on loopback: moto in server mode, started once
//! per test binary (and dying with it), driven through its HTTP API; plus two
//! misbehaving endpoints moto cannot imitate (throttling, no answer), and a
//! clean environment for running the CLI against them.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::build;
use crate::client::{Body, Conn, Req};

/// Fake, test-only credentials (moto accepts any).
pub const ACCESS_KEY: &str = "testing";
/// Fake, test-only credentials.
pub const SECRET_KEY: &str = "testing";

/// A running moto server.
pub struct Moto {
    /// Its address.
    pub addr: SocketAddr,
    /// Credentials of the IAM user without permissions (`--deny` mode).
    pub denied_user: Option<(String, String)>,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

static SHARED: OnceLock<Moto> = OnceLock::new();

impl Moto {
    /// Starts `tests/support/moto_server.py` with `args`.
    pub fn start(args: &[&str]) -> Moto {
        let python = build::venv().join("bin/python");
        assert!(
            python.exists(),
            "no Python venv at {}: run `make venv` (installs moto)",
            build::venv().display()
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let mut child = Command::new(python)
            .arg(build::workspace().join("tests/support/moto_server.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start moto");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut denied_user = None;
        let port = loop {
            let line = lines
                .next()
                .expect("moto exited before it was ready")
                .unwrap();
            if let Some(rest) = line.strip_prefix("USER ") {
                let (k, s) = rest.split_once(' ').unwrap();
                denied_user = Some((k.to_owned(), s.to_owned()));
            } else if let Some(port) = line.strip_prefix("READY ") {
                break port.trim().parse::<u16>().unwrap();
            }
        };
        Moto {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            denied_user,
            log,
            _dir: dir,
            _child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
        }
    }

    /// The shared instance of this test binary.
    pub fn shared() -> &'static Moto {
        SHARED.get_or_init(|| Moto::start(&[]))
    }

    /// The shared instance, if a test has started it.
    pub fn started() -> Option<&'static Moto> {
        SHARED.get()
    }

    /// What moto wrote to standard error (warnings, tracebacks).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls Secrets Manager action `target` with a JSON body (region
    /// eu-central-1, fake credentials).
    pub async fn call(&self, target: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, text) = self.try_call(target, body).await;
        assert_eq!(status, 200, "{target}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Like [`Moto::call`], returning the status and body whatever they are.
    pub async fn try_call(&self, target: &str, body: serde_json::Value) -> (u16, String) {
        self.try_call_in("eu-central-1", target, body).await
    }

    /// Like [`Moto::try_call`], in `region` (moto keeps one store per region).
    pub async fn try_call_in(
        &self,
        region: &str,
        target: &str,
        body: serde_json::Value,
    ) -> (u16, String) {
        let mut req = Req::new("POST", "/")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("secretsmanager.{target}"))
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/secretsmanager/aws4_request, SignedHeaders=host, Signature=00"),
            )
            .body(Body::Full(body.to_string().into_bytes()));
        req.authority = self.addr.to_string();
        let mut conn = Conn::h1(self.addr).await.unwrap();
        let resp = conn.send(&req).await.unwrap();
        (resp.status, resp.text())
    }

    /// The `hmac_secret` of the version staged `stage` of `name`, as a
    /// client reads it (registered with the suite-wide leak scan: keys made
    /// by `edge-hmac rotate` are not known to the test otherwise); `None`
    /// when no version carries the stage.
    pub async fn key_at(&self, name: &str, stage: &str) -> Option<String> {
        self.key_at_in("eu-central-1", name, stage).await
    }

    /// Like [`Moto::key_at`], in `region`.
    pub async fn key_at_in(&self, region: &str, name: &str, stage: &str) -> Option<String> {
        let (status, text) = self
            .try_call_in(
                region,
                "GetSecretValue",
                serde_json::json!({"SecretId": name, "VersionStage": stage}),
            )
            .await;
        if status != 200 {
            assert!(
                text.contains("ResourceNotFoundException"),
                "{stage}: {status} {text}"
            );
            return None;
        }
        let out: serde_json::Value = serde_json::from_str(&text).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(out["SecretString"].as_str().unwrap()).unwrap();
        let key = value["hmac_secret"].as_str().unwrap().to_owned();
        crate::secrets::register(&key);
        Some(key)
    }

    /// Version id -> stages of `name`.
    pub async fn stages(&self, name: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        let out = self
            .call("DescribeSecret", serde_json::json!({"SecretId": name}))
            .await;
        serde_json::from_value(out["VersionIdsToStages"].clone()).unwrap()
    }

    /// Creates secret `name` with `value`; returns its first version id.
    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        let out = self
            .call(
                "CreateSecret",
                serde_json::json!({"Name": name, "SecretString": value}),
            )
            .await;
        out["VersionId"].as_str().unwrap().to_owned()
    }

    /// Creates secret `name` with `value` in `region`.
    pub async fn create_secret_in(&self, region: &str, name: &str, value: &str) {
        let (status, text) = self
            .try_call_in(
                region,
                "CreateSecret",
                serde_json::json!({"Name": name, "SecretString": value}),
            )
            .await;
        assert_eq!(status, 200, "CreateSecret in {region}: {text}");
    }

    /// Puts a new AWSCURRENT version (the old one becomes AWSPREVIOUS).
    pub async fn put_secret_value(&self, name: &str, value: &str) -> String {
        let out = self
            .call(
                "PutSecretValue",
                serde_json::json!({"SecretId": name, "SecretString": value}),
            )
            .await;
        out["VersionId"].as_str().unwrap().to_owned()
    }
}

/// The JSON value of an edge secret.
pub fn edge_value(secret: &str, environment: &str) -> String {
    serde_json::json!({"hmac_secret": secret, "environment": environment}).to_string()
}

/// A unique environment name for one test (tests share one moto).
pub fn unique_env() -> String {
    format!("t{}", crate::secrets::random_hex(4))
}

/// How a [`FakeEndpoint`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Answer every request with HTTP 400 ThrottlingException.
    Throttle,
    /// Accept connections and never answer.
    Silent,
}

/// A loopback HTTP endpoint that answers the way Secrets Manager does when
/// it throttles, or not at all; counts requests.
pub struct FakeEndpoint {
    /// Its address.
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeEndpoint {
    /// Starts it.
    pub async fn start(mode: Misbehaviour) -> FakeEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        // One request per connection is all the SDK sends here.
                        if let Some(end) = find(&seen, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if seen.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    match mode {
                        Misbehaviour::Silent => {
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        }
                        Misbehaviour::Throttle => {
                            let body =
                                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                            let resp = format!(
                                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-errortype: ThrottlingException\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = stream.write_all(resp.as_bytes()).await;
                        }
                    }
                });
            }
        });
        FakeEndpoint {
            addr,
            requests,
            task,
        }
    }

    /// Requests received.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A command for the `edge-hmac` CLI with a clean AWS environment: fake
/// credentials, no profile files, no instance metadata lookups (the machine
/// has no network beyond loopback), `HOME` in `home`.
pub fn cli(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(build::loader_bin());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("AWS_")
            || k.starts_with("HMAC_")
            || k == "ENVOY_BIN"
            || k == "EDGE_HMAC_DEV_SECRET"
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .stdin(Stdio::null());
    cmd
}

/// A loopback HTTP proxy in front of moto that forwards every request,
/// except that while [`FaultyProxy::fail`] is set, requests for that Secrets
/// Manager operation get HTTP 500 `InternalFailure` — the transient service
/// failure moto cannot produce. Counts the requests it failed.
pub struct FaultyProxy {
    /// Its address.
    pub addr: SocketAddr,
    failing: Arc<Mutex<Option<String>>>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyProxy {
    /// Starts it in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultyProxy {
        use http_body_util::{BodyExt as _, Full};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failing: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let failed = Arc::new(AtomicUsize::new(0));
        let (fail_op, fail_count) = (Arc::clone(&failing), Arc::clone(&failed));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (fail_op, fail_count) = (Arc::clone(&fail_op), Arc::clone(&fail_count));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (fail_op, fail_count) =
                                (Arc::clone(&fail_op), Arc::clone(&fail_count));
                            async move {
                                let target = req
                                    .headers()
                                    .get("x-amz-target")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned();
                                let op = fail_op.lock().unwrap().clone();
                                if op.is_some_and(|op| target == format!("secretsmanager.{op}")) {
                                    fail_count.fetch_add(1, Ordering::SeqCst);
                                    let body = r#"{"__type":"InternalFailure","message":"injected by the test"}"#;
                                    return Ok::<_, std::io::Error>(
                                        hyper::Response::builder()
                                            .status(500)
                                            .header("content-type", "application/x-amz-json-1.1")
                                            .header("x-amzn-errortype", "InternalFailure")
                                            .body(Full::new(bytes::Bytes::from(body)))
                                            .unwrap(),
                                    );
                                }
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map_err(std::io::Error::other)?
                                    .to_bytes();
                                let stream = tokio::net::TcpStream::connect(upstream).await?;
                                let (mut sender, conn) = hyper::client::conn::http1::handshake(
                                    hyper_util::rt::TokioIo::new(stream),
                                )
                                .await
                                .map_err(std::io::Error::other)?;
                                tokio::spawn(conn);
                                let resp = sender
                                    .send_request(hyper::Request::from_parts(
                                        parts,
                                        Full::new(body),
                                    ))
                                    .await
                                    .map_err(std::io::Error::other)?;
                                let (parts, body) = resp.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map_err(std::io::Error::other)?
                                    .to_bytes();
                                Ok(hyper::Response::from_parts(parts, Full::new(body)))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultyProxy {
            addr,
            failing,
            failed,
            task,
        }
    }

    /// From now on, fail operation `op` (e.g. `GetSecretValue`); `None` heals.
    pub fn fail(&self, op: Option<&str>) {
        *self.failing.lock().unwrap() = op.map(str::to_owned);
    }

    /// Requests failed so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
