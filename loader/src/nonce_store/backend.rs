//! Redis access: one multiplexed [`ConnectionManager`] shared by every
//! claim, rebuilt when the connection it holds can no longer serve writes;
//! every error classified and described without formatting the
//! [`redis::RedisError`] itself (which may carry connection details).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ErrorKind, IntoConnectionInfo as _, RedisError, ServerErrorKind};
use tokio::sync::{Mutex, Notify, watch};

use super::log;
use super::url::{RedisUrl, Target};

/// What kind of Redis failure a claim or probe met (the `kind` label of
/// `edge_hmac_nonce_store_redis_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No answer within `--redis-timeout-ms`.
    Timeout,
    /// No usable connection: refused, reset, authentication failed, no
    /// primary known to the Sentinels.
    Connection,
    /// Redis answered the write with an error: OOM under noeviction,
    /// READONLY, NOREPLICAS, LOADING, MISCONF, ...
    RefusedWrite,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Every kind, in label order.
    pub const ALL: [FailureKind; 4] = [
        FailureKind::Timeout,
        FailureKind::Connection,
        FailureKind::RefusedWrite,
        FailureKind::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::RefusedWrite => "refused_write",
            FailureKind::Other => "other",
        }
    }
}

/// A Redis failure as it may be shown: its kind and a description built
/// only from error kinds and codes, never from the error's text.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Its kind.
    pub kind: FailureKind,
    /// What happened, safe to log.
    pub detail: String,
    /// The connection is unusable: build a new one (and, with Sentinel, ask
    /// the Sentinels for the primary again).
    reconnect: bool,
}

impl Failure {
    fn timeout(after: Duration) -> Failure {
        Failure {
            kind: FailureKind::Timeout,
            detail: format!("no answer within {} ms", after.as_millis()),
            reconnect: false,
        }
    }
}

/// Classifies `e` and describes it from its kind, server error code and
/// I/O error kind only.
pub fn classify(e: &RedisError) -> Failure {
    let io_kind = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    if e.is_timeout() {
        return Failure {
            kind: FailureKind::Timeout,
            detail: "timed out".into(),
            reconnect: false,
        };
    }
    let code = e.code().map(|c| {
        // A server error code is one short upper-case word; anything else
        // is not shown.
        if c.len() <= 32 && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            c.to_owned()
        } else {
            "?".to_owned()
        }
    });
    match e.kind() {
        ErrorKind::Io => Failure {
            kind: FailureKind::Connection,
            detail: match io_kind {
                Some(k) => format!("I/O error: {k}"),
                None => "I/O error".into(),
            },
            reconnect: true,
        },
        ErrorKind::AuthenticationFailed => Failure {
            kind: FailureKind::Connection,
            detail: "authentication failed (check the user and password in the Redis URL)".into(),
            reconnect: true,
        },
        ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound => Failure {
            kind: FailureKind::Connection,
            detail: e.category().to_owned(),
            reconnect: true,
        },
        ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel
        | ErrorKind::EmptySentinelList => Failure {
            kind: FailureKind::Connection,
            detail: format!("sentinel: {}", e.category()),
            reconnect: true,
        },
        ErrorKind::Server(_) | ErrorKind::Extension => {
            let code = code.unwrap_or_else(|| "?".into());
            let auth = matches!(code.as_str(), "NOAUTH" | "WRONGPASS" | "NOPERM");
            Failure {
                kind: if auth {
                    FailureKind::Connection
                } else {
                    FailureKind::RefusedWrite
                },
                detail: format!("redis answered {code}"),
                // A replica (after a failover) or a primary that lost its
                // role: the connection points at the wrong server.
                reconnect: auth
                    || matches!(
                        e.kind(),
                        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                    ),
            }
        }
        _ => Failure {
            kind: FailureKind::Other,
            detail: e.category().to_owned(),
            reconnect: false,
        },
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// `SET NX` wrote the key: the nonce is new.
    Fresh,
    /// The key exists: the nonce was seen.
    Replayed,
}

/// What a readiness probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Ready to take claims.
    pub ready: bool,
    /// One line: why (not) ready.
    pub reason: String,
    /// The Redis failure that made the probe fail, if one did.
    pub failure: Option<FailureKind>,
}

#[derive(Clone)]
struct Slot {
    generation: u64,
    manager: Option<ConnectionManager>,
    built: Instant,
}

/// The Redis side of the service.
pub struct Backend {
    url: RedisUrl,
    timeout: Duration,
    config: ConnectionManagerConfig,
    slot: watch::Sender<Slot>,
    /// Set while a Sentinel lookup is wanted.
    lookup: Notify,
    sentinel: Option<Mutex<SentinelClient>>,
    last_ok: std::sync::Mutex<Instant>,
    failing: AtomicBool,
    log_state: std::sync::Mutex<(Instant, u64)>,
    closed: AtomicBool,
}

/// How often the Sentinels are asked whether the primary moved.
pub const SENTINEL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The longest time a Sentinel lookup may take.
fn lookup_timeout(timeout: Duration) -> Duration {
    (timeout * 10).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// How long timeouts must last without a single success before the
/// connection is presumed dead (a peer gone without a reset) and rebuilt.
fn stale_after(timeout: Duration) -> Duration {
    (timeout * 10).max(Duration::from_secs(1))
}

impl Backend {
    /// A backend for `url` with per-operation `timeout`. Connects lazily:
    /// nothing here waits for Redis. With Sentinel, spawns the task that
    /// looks up the primary (first lookup at once).
    pub fn new(url: RedisUrl, timeout: Duration) -> Result<Arc<Backend>, Failure> {
        let connect = (timeout * 10).clamp(Duration::from_millis(250), Duration::from_secs(5));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let sentinel = match url.target() {
            Target::Direct { .. } => None,
            Target::Sentinel { .. } => Some(Mutex::new(sentinel_client(&url)?)),
        };
        let slot = Slot {
            generation: 0,
            manager: None,
            built: Instant::now(),
        };
        let backend = Arc::new(Backend {
            url,
            timeout,
            config,
            slot: watch::Sender::new(slot),
            lookup: Notify::new(),
            sentinel,
            last_ok: std::sync::Mutex::new(Instant::now()),
            failing: AtomicBool::new(false),
            log_state: std::sync::Mutex::new((Instant::now(), 0)),
            closed: AtomicBool::new(false),
        });
        if backend.sentinel.is_some() {
            tokio::spawn(Arc::clone(&backend).follow_sentinels());
        } else {
            let manager = backend.direct_manager()?;
            backend.slot.send_modify(|s| s.manager = Some(manager));
        }
        Ok(backend)
    }

    /// Stops the Sentinel task.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.lookup.notify_one();
    }

    fn direct_manager(&self) -> Result<ConnectionManager, Failure> {
        let Target::Direct { host, port } = self.url.target() else {
            return Err(Failure {
                kind: FailureKind::Other,
                detail: "not a direct URL".into(),
                reconnect: false,
            });
        };
        let info = ConnectionAddr::Tcp(host.clone(), *port)
            .into_connection_info()
            .map_err(|e| classify(&e))?
            .set_redis_settings(self.url.redis_settings())
            .set_tcp_settings(tcp_settings(self.timeout));
        let client = redis::Client::open(info).map_err(|e| classify(&e))?;
        ConnectionManager::new_lazy_with_config(client, self.config.clone())
            .map_err(|e| classify(&e))
    }

    /// The current connection, waiting until `deadline` for one (while the
    /// Sentinels are asked for the primary).
    async fn manager(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<(u64, ConnectionManager), Failure> {
        let mut rx = self.slot.subscribe();
        let waited = tokio::time::timeout_at(deadline, rx.wait_for(|s| s.manager.is_some())).await;
        match waited {
            Ok(Ok(slot)) => match &slot.manager {
                Some(m) => Ok((slot.generation, m.clone())),
                None => Err(Failure::timeout(self.timeout)),
            },
            Ok(Err(_)) | Err(_) => Err(Failure {
                kind: FailureKind::Connection,
                detail: "no Redis primary known yet (the Sentinels have not named one)".into(),
                reconnect: false,
            }),
        }
    }

    /// Drops connection `generation` (if still current) and builds the next.
    fn reconnect(&self, generation: u64) {
        let sentinel = self.sentinel.is_some();
        let next = if sentinel {
            None
        } else {
            match self.direct_manager() {
                Ok(m) => Some(m),
                Err(f) => {
                    self.note_failure(&f);
                    return;
                }
            }
        };
        let changed = self.slot.send_if_modified(|s| {
            if s.generation != generation {
                return false;
            }
            s.generation += 1;
            s.manager = next;
            s.built = Instant::now();
            true
        });
        if changed && sentinel {
            self.lookup.notify_one();
        }
    }

    /// Runs `op` on the current connection within the timeout; on failure,
    /// rebuilds the connection when the failure calls for it.
    async fn with_connection<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut generation = None;
        let attempt = async {
            let (g, manager) = self.manager(deadline).await?;
            generation = Some(g);
            op(manager).await.map_err(|e| classify(&e))
        };
        let result = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Failure::timeout(self.timeout)),
        };
        match &result {
            Ok(_) => self.note_success(),
            Err(f) => {
                self.note_failure(f);
                let current = self.slot.borrow().generation;
                let g = generation.unwrap_or(current);
                if f.reconnect {
                    self.reconnect(g);
                } else if f.kind == FailureKind::Timeout {
                    // Timeouts alone never reconnect (a paused Redis answers
                    // on the same connection once it resumes), unless nothing
                    // has succeeded for a long while: then the peer may be
                    // gone without a reset.
                    let stale = stale_after(self.timeout);
                    let last_ok = *self.last_ok.lock().unwrap_or_else(|e| e.into_inner());
                    let built = self.slot.borrow().built;
                    if last_ok.elapsed() > stale && built.elapsed() > stale {
                        self.reconnect(g);
                    }
                }
            }
        }
        result
    }

    /// Claims `key` for `ttl_ms` milliseconds: one `SET key 1 NX PX ttl_ms`.
    pub async fn claim(&self, key: &str, ttl_ms: u64) -> Result<Claimed, Failure> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
        self.with_connection(|mut m| async move {
            let answer: Option<String> = cmd.query_async(&mut m).await?;
            Ok(match answer {
                Some(_) => Claimed::Fresh,
                None => Claimed::Replayed,
            })
        })
        .await
    }

    /// Probes Redis now: `PING`, `INFO memory`, `INFO replication` in one
    /// round trip within the timeout. Ready when the server is a primary and
    /// either its `maxmemory_policy` is `noeviction` or it has no memory
    /// limit (`maxmemory:0`: nothing is ever evicted).
    pub async fn probe(&self) -> Probe {
        let result = self
            .with_connection(|mut m| async move {
                let mut pipe = redis::pipe();
                pipe.cmd("PING")
                    .cmd("INFO")
                    .arg("memory")
                    .cmd("INFO")
                    .arg("replication");
                let (_pong, memory, replication): (String, String, String) =
                    pipe.query_async(&mut m).await?;
                Ok((memory, replication))
            })
            .await;
        match result {
            Err(f) => Probe {
                ready: false,
                reason: format!("redis unreachable ({}): {}", self.url.redacted(), f.detail),
                failure: Some(f.kind),
            },
            Ok((memory, replication)) => readiness(&memory, &replication),
        }
    }

    fn note_success(&self) {
        *self.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if self.failing.swap(false, Ordering::SeqCst) {
            let suppressed = {
                let mut st = self.log_state.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::replace(&mut st.1, 0)
            };
            log(&format!(
                "redis answers again ({}){}",
                self.url.redacted(),
                if suppressed > 0 {
                    format!(" after {suppressed} more failures")
                } else {
                    String::new()
                }
            ));
        }
    }

    /// Logs a failure: the first of a run at once, then at most one line
    /// every 10 s with the count in between.
    fn note_failure(&self, f: &Failure) {
        let first = !self.failing.swap(true, Ordering::SeqCst);
        let mut st = self.log_state.lock().unwrap_or_else(|e| e.into_inner());
        if first || st.0.elapsed() >= Duration::from_secs(10) {
            let more = std::mem::replace(&mut st.1, 0);
            st.0 = Instant::now();
            drop(st);
            log(&format!(
                "redis {} ({}): {}{}",
                f.kind.label(),
                self.url.redacted(),
                f.detail,
                if more > 0 {
                    format!(" ({more} more failures since the last line)")
                } else {
                    String::new()
                }
            ));
        } else {
            st.1 += 1;
        }
    }

    /// The Sentinel task: asks the Sentinels for the primary at once
    /// whenever the connection is dropped (retrying with backoff), and every
    /// [`SENTINEL_CHECK_INTERVAL`] while it works; connects to the primary
    /// they name whenever it is not the one in use. The periodic check is
    /// what moves claims after a failover while the old primary still
    /// accepts writes (until the Sentinels demote it, ~10 s later).
    async fn follow_sentinels(self: Arc<Backend>) {
        let Some(sentinel) = &self.sentinel else {
            return;
        };
        let mut current = String::new();
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            if self.slot.borrow().manager.is_some() {
                tokio::select! {
                    () = self.lookup.notified() => {}
                    () = tokio::time::sleep(SENTINEL_CHECK_INTERVAL) => {}
                }
                if self.closed.load(Ordering::SeqCst) {
                    return;
                }
            }
            let found = {
                let mut client = sentinel.lock().await;
                match tokio::time::timeout(lookup_timeout(self.timeout), client.async_get_client())
                    .await
                {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => Err(classify(&e)),
                    Err(_) => {
                        // A Sentinel that hangs keeps a cached connection:
                        // start again from the URL.
                        if let Ok(fresh) = sentinel_client(&self.url) {
                            *client = fresh;
                        }
                        Err(Failure::timeout(lookup_timeout(self.timeout)))
                    }
                }
            };
            let connected = self.slot.borrow().manager.is_some();
            let built = found.and_then(|client| {
                let primary = client.get_connection_info().addr().to_string();
                if connected && primary == current {
                    return Ok(None);
                }
                let info = client
                    .get_connection_info()
                    .clone()
                    .set_tcp_settings(tcp_settings(self.timeout));
                let client = redis::Client::open(info).map_err(|e| classify(&e))?;
                ConnectionManager::new_lazy_with_config(client, self.config.clone())
                    .map(|m| Some((primary, m)))
                    .map_err(|e| classify(&e))
            });
            match built {
                Ok(None) => backoff = Duration::from_millis(50),
                Ok(Some((primary, manager))) => {
                    backoff = Duration::from_millis(50);
                    log(&format!(
                        "the Sentinels name {primary} as the primary of {}{}",
                        self.url.redacted(),
                        if current.is_empty() {
                            String::new()
                        } else {
                            format!(" (was {current}): claims go there now")
                        }
                    ));
                    current = primary;
                    self.slot.send_modify(|s| {
                        s.generation += 1;
                        s.manager = Some(manager);
                        s.built = Instant::now();
                    });
                }
                Err(f) => {
                    self.note_failure(&Failure {
                        detail: format!("asking the Sentinels for the primary: {}", f.detail),
                        ..f
                    });
                    if !connected {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.close();
    }
}

fn tcp_settings(timeout: Duration) -> redis::io::tcp::TcpSettings {
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(stale_after(timeout));
    #[cfg(not(target_os = "linux"))]
    let _ = timeout;
    settings
}

fn sentinel_client(url: &RedisUrl) -> Result<SentinelClient, Failure> {
    let Target::Sentinel { nodes, service } = url.target() else {
        return Err(Failure {
            kind: FailureKind::Other,
            detail: "not a Sentinel URL".into(),
            reconnect: false,
        });
    };
    let addrs = nodes
        .iter()
        .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
    let mut builder = SentinelClientBuilder::new(addrs, service, SentinelServerType::Master)
        .map_err(|e| classify(&e))?
        .set_client_to_redis_db(url.db());
    if let Some(user) = url.username() {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(pass) = url.password() {
        builder = builder.set_client_to_redis_password(pass);
    }
    builder.build().map_err(|e| classify(&e))
}

/// The readiness rule over the text of `INFO memory` and `INFO replication`.
pub fn readiness(memory: &str, replication: &str) -> Probe {
    let field = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    let probe = |ready: bool, reason: String| Probe {
        ready,
        reason,
        failure: None,
    };
    let role = field(replication, "role");
    if let Some(role) = role.as_deref()
        && role != "master"
    {
        return probe(
            false,
            format!(
                "redis is a replica (role:{role}): claims must go to the primary; point the URL at it or use redis+sentinel://"
            ),
        );
    }
    let maxmemory = field(memory, "maxmemory").and_then(|v| v.parse::<u64>().ok());
    let used = field(memory, "used_memory").and_then(|v| v.parse::<u64>().ok());
    let policy = field(memory, "maxmemory_policy");
    if let (Some(limit), Some(used)) = (maxmemory, used)
        && limit > 0
        && used >= limit
        && policy.as_deref() == Some("noeviction")
    {
        return probe(
            false,
            format!(
                "redis is full (used_memory {used} >= maxmemory {limit}, noeviction): every claim is refused with OOM; raise maxmemory or shorten the claim TTL"
            ),
        );
    }
    match (policy.as_deref(), maxmemory) {
        (Some("noeviction"), _) => {
            probe(true, "ready: redis maxmemory-policy is noeviction".into())
        }
        (Some(_), Some(0)) => probe(
            true,
            "ready: redis has no memory limit (maxmemory 0), so nothing is evicted".into(),
        ),
        (Some(p), _) => probe(
            false,
            format!(
                "redis maxmemory-policy is {}: an evicting policy silently drops live nonces; set maxmemory-policy noeviction",
                shown_word(p)
            ),
        ),
        (None, _) => probe(
            false,
            "redis INFO memory reports no maxmemory_policy: cannot tell whether it evicts nonces"
                .into(),
        ),
    }
}

/// A word from Redis, shown only if it looks like one.
fn shown_word(w: &str) -> &str {
    if w.len() <= 32
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        w
    } else {
        "?"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// noeviction is ready, an evicting policy with a limit is not (and
    /// says which), no limit at all is, a replica is not.
    #[test]
    fn the_readiness_rule() {
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n";
        let mem = |limit: u64, policy: &str| {
            format!(
                "# Memory\r\nused_memory:1\r\nmaxmemory:{limit}\r\nmaxmemory_human:0B\r\nmaxmemory_policy:{policy}\r\n"
            )
        };
        assert!(readiness(&mem(1 << 20, "noeviction"), primary).ready);
        assert!(readiness(&mem(0, "noeviction"), primary).ready);
        let p = readiness(&mem(1 << 20, "allkeys-lru"), primary);
        assert!(!p.ready);
        assert!(p.reason.contains("allkeys-lru"), "{}", p.reason);
        assert!(p.reason.contains("noeviction"), "{}", p.reason);
        assert!(!readiness(&mem(1 << 20, "volatile-ttl"), primary).ready);
        let p = readiness(&mem(0, "allkeys-lru"), primary);
        assert!(p.ready, "{}", p.reason);
        assert!(p.reason.contains("maxmemory 0"));
        let p = readiness(&mem(0, "noeviction"), "role:slave\r\n");
        assert!(!p.ready);
        assert!(p.reason.contains("replica"));
        assert!(!readiness("# Memory\r\n", primary).ready);
        let full = "used_memory:2000\r\nmaxmemory:1000\r\nmaxmemory_policy:noeviction\r\n";
        let p = readiness(full, primary);
        assert!(!p.ready);
        assert!(p.reason.contains("full"), "{}", p.reason);
    }

    /// Errors are classified by kind and code, and described without the
    /// error's own text.
    #[test]
    fn failures_are_classified() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "redis://:hunter2@h:1",
        ));
        let f = classify(&io);
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(f.reconnect);
        assert!(!f.detail.contains("hunter2"), "{}", f.detail);
        let t = classify(&RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "x",
        )));
        assert_eq!(t.kind, FailureKind::Timeout);
        let oom = redis::make_extension_error("OOM".into(), Some("hunter2 over maxmemory".into()));
        let f = classify(&oom);
        assert_eq!(f.kind, FailureKind::RefusedWrite);
        assert_eq!(f.detail, "redis answered OOM");
        let auth = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
            "hunter2".to_string(),
        ));
        let f = classify(&auth);
        assert_eq!(f.kind, FailureKind::Connection);
        assert!(!f.detail.contains("hunter2"));
    }
}
