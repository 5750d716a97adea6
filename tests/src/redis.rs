//! A real `redis-server` (and `redis-sentinel`) on loopback, Debian's
//! package (`make redis`): started on a free port with a temporary
//! directory and no persistence, polled with `PING` until ready, killed
//! (`SIGKILL`), restarted on the same port, paused and resumed
//! (`SIGSTOP`/`SIGCONT`); its log printed when a test fails, everything
//! killed on drop. Plus a small RESP client to look inside, and the
//! `edge-hmac nonce-store` process with its output kept for the suite-wide
//! leak scan.

use std::io::{BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::build;
use crate::cluster::free_port;

/// `redis-server`, or a failure that says how to get it.
pub fn redis_server_bin() -> PathBuf {
    find("redis-server")
}

/// `redis-sentinel`, or a failure that says how to get it.
pub fn redis_sentinel_bin() -> PathBuf {
    find("redis-sentinel")
}

fn find(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} not found: run `make redis` (Debian package redis-server)")
        })
}

/// A Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Int(i64),
    /// `$n` (None: nil).
    Bulk(Option<String>),
    /// `*n` (None: nil).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer of an `Int` reply.
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// The text of a bulk or status reply ("" for nil).
    pub fn text(&self) -> String {
        match self {
            Reply::Bulk(Some(s)) | Reply::Status(s) => s.clone(),
            Reply::Bulk(None) => String::new(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }
}

fn read_reply(r: &mut impl std::io::BufRead) -> std::io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(1);
    let bad = || std::io::Error::other(format!("bad RESP line {line:?}"));
    Ok(match kind {
        "+" => Reply::Status(rest.into()),
        "-" => Reply::Error(rest.into()),
        ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Reply::Array(None)
            } else {
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(read_reply(r)?);
                }
                Reply::Array(Some(items))
            }
        }
        _ => return Err(bad()),
    })
}

/// Sends one command to `addr` (after `AUTH password` when given) on a new
/// connection; `Err` when it cannot connect or gets no answer in 5 s.
pub fn command_at(
    addr: SocketAddr,
    password: Option<&str>,
    args: &[&str],
) -> std::io::Result<Reply> {
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut send = |args: &[&str]| -> std::io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        writer.write_all(&out)?;
        read_reply(&mut reader)
    };
    if let Some(pw) = password {
        match send(&["AUTH", pw])? {
            Reply::Status(_) => {}
            other => return Err(std::io::Error::other(format!("AUTH: {other:?}"))),
        }
    }
    send(args)
}

/// How to start a Redis server.
#[derive(Debug, Clone, Default)]
pub struct RedisOpts {
    /// `--requirepass` (and `--masterauth`, for a replica).
    pub password: Option<String>,
    /// `--maxmemory`, e.g. `10mb`.
    pub maxmemory: Option<String>,
    /// `--maxmemory-policy`, e.g. `allkeys-lru` (default `noeviction`).
    pub policy: Option<String>,
    /// `--replicaof 127.0.0.1 PORT`.
    pub replica_of: Option<u16>,
}

/// A running `redis-server` (or `redis-sentinel`).
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The password it requires, if any.
    pub password: Option<String>,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    paused: bool,
    name: &'static str,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free port with `opts` and waits for `PING`.
    pub fn start(opts: RedisOpts) -> Redis {
        Redis::start_on(free_port(), opts)
    }

    /// Like [`Redis::start`] on `port`.
    pub fn start_on(port: u16, opts: RedisOpts) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.path().display().to_string(),
            "--daemonize",
            "no",
            "--maxmemory-policy",
            opts.policy.as_deref().unwrap_or("noeviction"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(pw) = &opts.password {
            args.extend(["--requirepass".into(), pw.clone()]);
            args.extend(["--masterauth".into(), pw.clone()]);
        }
        if let Some(mm) = &opts.maxmemory {
            args.extend(["--maxmemory".into(), mm.clone()]);
        }
        if let Some(p) = opts.replica_of {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), p.to_string()]);
        }
        let mut redis = Redis {
            port,
            password: opts.password,
            program: redis_server_bin(),
            args,
            child: None,
            log: dir.path().join("redis.log"),
            paused: false,
            name: "redis-server",
            dir,
        };
        redis.spawn();
        redis
    }

    /// Starts `redis-sentinel` on a free port monitoring the primary on
    /// `primary_port` as `service` (quorum 1, down after 1 s).
    pub fn sentinel(primary_port: u16, service: &str, password: Option<&str>) -> Redis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("sentinel.conf");
        let mut text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor {service} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 5000\n\
             sentinel parallel-syncs {service} 1\n",
            dir.path().display()
        );
        if let Some(pw) = password {
            text.push_str(&format!("sentinel auth-pass {service} {pw}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        let mut redis = Redis {
            port,
            password: None,
            program: redis_sentinel_bin(),
            args: vec![conf.display().to_string()],
            child: None,
            log: dir.path().join("sentinel.log"),
            paused: false,
            name: "redis-sentinel",
            dir,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
        self.paused = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited with {status} before it was ready; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if let Ok(Reply::Status(s)) = self.command(&["PING"])
                && s == "PONG"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not answering PING after 10 s; its log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT` (no credentials).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT` (the password it requires).
    pub fn url_with_password(&self) -> String {
        let pw = self.password.as_deref().expect("a Redis with a password");
        format!("redis://:{pw}@127.0.0.1:{}", self.port)
    }

    /// Sends one command (authenticated when it has a password).
    pub fn command(&self, args: &[&str]) -> std::io::Result<Reply> {
        command_at(self.addr(), self.password.as_deref(), args)
    }

    /// Like [`Redis::command`], failing the test on an error.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.command(args)
            .unwrap_or_else(|e| panic!("{} {args:?}: {e}", self.name))
    }

    /// `DBSIZE`.
    pub fn dbsize(&self) -> i64 {
        self.cmd(&["DBSIZE"]).int()
    }

    /// Kills it with SIGKILL and waits.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Starts it again on the same port with the same arguments (its data
    /// is gone: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    }

    /// SIGSTOP: the port still accepts connections, nothing answers.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- {} :{} log (last 40 lines) ----\n{}",
                self.name,
                self.port,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        if self.paused {
            self.resume();
        }
        self.kill();
    }
}

/// A running `edge-hmac nonce-store` (the real binary), its standard output
/// and error in one log file: printed when a test fails, scanned for every
/// known test secret when it is dropped.
pub struct NonceStoreProc {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The `edge-hmac nonce-store` command with `args`, listening on `listen`,
/// without any Redis URL from the test's own environment.
pub fn nonce_store_command(listen: SocketAddr, args: &[&str]) -> Command {
    let mut cmd = Command::new(build::loader_bin());
    cmd.arg("nonce-store")
        .arg("--listen")
        .arg(listen.to_string())
        .args(args)
        .env_remove("EDGE_HMAC_REDIS_URL")
        .stdin(Stdio::null());
    cmd
}

impl NonceStoreProc {
    /// Starts `edge-hmac nonce-store ARGS` with `env` on a free port and
    /// waits until `/healthz` answers 200 (it does not wait for Redis).
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> NonceStoreProc {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nonce-store.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = nonce_store_command(addr, args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start edge-hmac nonce-store");
        let mut proc = NonceStoreProc {
            addr,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!(
                    "edge-hmac nonce-store exited with {status}; its output:\n{}",
                    proc.log_text()
                );
            }
            if let Ok(resp) = crate::client::get(addr, "/healthz").await
                && resp.status == 200
            {
                return proc;
            }
            assert!(
                Instant::now() < deadline,
                "edge-hmac nonce-store not healthy after 20 s; its output:\n{}",
                proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for it to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Everything it printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for NonceStoreProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- edge-hmac nonce-store output ----\n{}",
                self.log_text()
            );
        } else {
            crate::secrets::assert_no_known_secret(
                "edge-hmac nonce-store's output",
                &self.log_text(),
            );
        }
    }
}
