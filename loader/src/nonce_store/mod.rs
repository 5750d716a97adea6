//! `edge-hmac nonce-store`: a small stateless HTTP service that makes a
//! request nonce single-use across every proxy replica by claiming it in
//! Redis with one atomic `SET key 1 NX PX ttl`.
//!
//! The proxies (the proxy-wasm filter through `dispatch_http_call`, the
//! native module through an HTTP callout) send `POST /v1/claim` with the
//! nonce's SHA-256, the environment and the claim's lifetime in headers, and
//! get `fresh`, `replayed` or `unavailable` back. The protocol, the flags,
//! the readiness rule and the metrics are in `docs/nonce-store.md`.
//!
//! Start it in-process with [`start`] (what `edge-hmac run` does beside
//! Envoy) or as `edge-hmac nonce-store` ([`run`]).

mod backend;
mod claim;
mod metrics;
mod service;
mod url;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use backend::{FailureKind, Probe, readiness};
pub use claim::{
    ClaimRequest, HEADER_CLAIM, HEADER_ENVIRONMENT, HEADER_NONCE_ID, HEADER_TTL_MS, InvalidClaim,
    KEY_PREFIX, MAX_TTL_MS,
};
pub use url::{
    DEFAULT_REDIS_PORT, DEFAULT_SENTINEL_PORT, REDIS_URL_ENV, RedisUrl, Target, UrlError,
};

/// Where the service listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9380";
/// Default Redis timeout in milliseconds: below the filter's default claim
/// timeout (250 ms), so the filter hears `unavailable` before it gives up.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 100;
/// Longest accepted `--redis-timeout-ms`.
pub const MAX_REDIS_TIMEOUT_MS: u64 = 5_000;
/// Default time in-flight claims get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;

/// Arguments of `edge-hmac nonce-store`.
#[derive(Debug, Clone, clap::Args)]
pub struct NonceStoreArgs {
    /// Address to listen on (HTTP/1.1 and h2c prior knowledge on the same port)
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// File holding the Redis URL: redis://[user:password@]host:port[/db] or
    /// redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]
    /// [default: the EDGE_HMAC_REDIS_URL environment variable]
    #[arg(long, value_name = "PATH", conflicts_with = "redis_url")]
    pub redis_url_file: Option<PathBuf>,
    /// The Redis URL, only when it holds no password (a password belongs in
    /// --redis-url-file or EDGE_HMAC_REDIS_URL)
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Timeout of every Redis operation in milliseconds; keep it below the
    /// filter's claim timeout (250 ms by default)
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_REDIS_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_REDIS_TIMEOUT_MS))]
    pub redis_timeout_ms: u64,
    /// Seconds in-flight claims get to finish after SIGTERM/SIGINT
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECONDS)]
    pub shutdown_grace_seconds: u64,
}

impl NonceStoreArgs {
    /// The configuration these arguments describe: the Redis URL from
    /// `--redis-url-file`, `--redis-url` (no password) or
    /// `EDGE_HMAC_REDIS_URL`, in that order.
    pub fn config(&self) -> Result<NonceStoreConfig, NonceStoreError> {
        let redis = if let Some(path) = &self.redis_url_file {
            RedisUrl::from_file(path)?
        } else if let Some(url) = &self.redis_url {
            RedisUrl::from_command_line(url)?
        } else {
            RedisUrl::from_env()?.ok_or(UrlError::Missing)?
        };
        Ok(NonceStoreConfig {
            listen: self.listen,
            redis,
            redis_timeout: Duration::from_millis(self.redis_timeout_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
        })
    }
}

/// What the service needs to run.
#[derive(Debug, Clone)]
pub struct NonceStoreConfig {
    /// Address to listen on (port 0: any free port, see
    /// [`NonceStoreHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Where claims go.
    pub redis: RedisUrl,
    /// Bound on every Redis operation (a claim, a readiness probe).
    pub redis_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl NonceStoreConfig {
    /// A configuration with the defaults: listen on [`DEFAULT_LISTEN`],
    /// [`DEFAULT_REDIS_TIMEOUT_MS`], [`DEFAULT_SHUTDOWN_GRACE_SECONDS`].
    pub fn new(redis: RedisUrl) -> NonceStoreConfig {
        NonceStoreConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9380)),
            redis,
            redis_timeout: Duration::from_millis(DEFAULT_REDIS_TIMEOUT_MS),
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECONDS),
        }
    }
}

/// Why the service could not start. No message holds the Redis password.
#[derive(Debug, thiserror::Error)]
pub enum NonceStoreError {
    /// The Redis URL is missing, malformed, unsupported or on the command
    /// line with a password.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Something already listens there.
    #[error(
        "nonce-store address {0} is already in use (another edge-hmac nonce-store?): stop it, or pick a free address with --listen"
    )]
    AddressInUse(SocketAddr),
    /// Listening failed otherwise.
    #[error("nonce-store cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The timeout is out of range.
    #[error("the Redis timeout must be 1 to {MAX_REDIS_TIMEOUT_MS} ms, got {0} ms")]
    Timeout(u128),
    /// The Redis client could not be set up.
    #[error("cannot set up the Redis client for {url}: {detail}")]
    Redis {
        /// The URL, redacted.
        url: String,
        /// What failed (no URL text).
        detail: String,
    },
    /// The process cannot catch SIGTERM/SIGINT.
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

impl From<NonceStoreError> for crate::error::Error {
    fn from(e: NonceStoreError) -> Self {
        match e {
            NonceStoreError::Url(u) => crate::error::Error::RedisUrl(u.to_string()),
            NonceStoreError::AddressInUse(addr) => crate::error::Error::AddressInUse {
                what: "nonce-store listener",
                flag: "--listen",
                addr,
            },
            other => crate::error::Error::NonceStore(other.to_string()),
        }
    }
}

/// A running nonce store. Dropping it starts a graceful shutdown in the
/// background; [`NonceStoreHandle::shutdown`] waits for it.
pub struct NonceStoreHandle {
    local_addr: SocketAddr,
    state: Arc<service::State>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NonceStoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceStoreHandle")
            .field("local_addr", &self.local_addr)
            .field("redis", &self.state.redis_redacted)
            .finish()
    }
}

impl NonceStoreHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Graceful shutdown: `/readyz` answers 503 at once, no new connection is
    /// accepted, open connections are told to close (HTTP/2 GOAWAY, HTTP/1.1
    /// `connection: close` after the request in flight), in-flight claims
    /// finish; connections still open after the grace period are cut.
    /// Returns when all of that is done.
    pub async fn shutdown(mut self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for NonceStoreHandle {
    fn drop(&mut self) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }
}

/// Starts the service: binds `cfg.listen`, sets up the Redis client (which
/// connects lazily: the service starts and answers `unavailable` while Redis
/// is down, and recovers by itself when it comes back) and serves until
/// [`NonceStoreHandle::shutdown`]. Must be called within a Tokio runtime.
pub async fn start(cfg: NonceStoreConfig) -> Result<NonceStoreHandle, NonceStoreError> {
    if cfg.redis_timeout.is_zero()
        || cfg.redis_timeout > Duration::from_millis(MAX_REDIS_TIMEOUT_MS)
    {
        return Err(NonceStoreError::Timeout(cfg.redis_timeout.as_millis()));
    }
    let listener = TcpListener::bind(cfg.listen).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            NonceStoreError::AddressInUse(cfg.listen)
        } else {
            NonceStoreError::Listen {
                addr: cfg.listen,
                source,
            }
        }
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| NonceStoreError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let redacted = cfg.redis.redacted();
    let backend = backend::Backend::new(cfg.redis, cfg.redis_timeout).map_err(|f| {
        NonceStoreError::Redis {
            url: redacted.clone(),
            detail: f.detail,
        }
    })?;
    let state = Arc::new(service::State::new(backend, redacted));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(service::serve(
        listener,
        Arc::clone(&state),
        stopped,
        cfg.shutdown_grace,
    ));
    Ok(NonceStoreHandle {
        local_addr,
        state,
        stop,
        task: Some(task),
    })
}

/// Writes one log line to standard error. Callers never pass the Redis URL
/// unredacted nor a Redis error's text.
pub(crate) fn log(msg: &str) {
    eprintln!("edge-hmac nonce-store: {msg}");
}

/// Runs `edge-hmac nonce-store` until SIGTERM or SIGINT, then shuts down
/// gracefully and returns `Ok`.
pub async fn run(args: NonceStoreArgs) -> crate::error::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(NonceStoreError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(NonceStoreError::Signals)?;
    let cfg = args.config()?;
    let timeout = cfg.redis_timeout;
    let grace = cfg.shutdown_grace;
    let redacted = cfg.redis.redacted();
    let handle = start(cfg).await?;
    log(&format!(
        "listening on http://{} (POST /v1/claim, GET /healthz /readyz /metrics); redis {redacted}, timeout {} ms",
        handle.local_addr(),
        timeout.as_millis()
    ));
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    log(&format!(
        "shutting down: readyz 503, no new connections, in-flight claims get up to {} s",
        grace.as_secs()
    ));
    handle.shutdown().await;
    log("stopped");
    Ok(())
}
