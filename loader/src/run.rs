//! `edge-hmac run`: a local Envoy with the filter. Fetches the secret (or uses
//! the development secret), renders the bootstrap, starts Envoy with the
//! secret only in its environment, forwards signals, exits with Envoy's
//! status; with `--watch`, follows rotations by hot restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use edge_hmac_core::config::{
    DEFAULT_ENVIRONMENT_ENV, DEFAULT_MAX_BODY_BYTES, DEFAULT_NONCE_CACHE_MAX_ENTRIES,
    DEFAULT_SECRET_ENV, DEFAULT_SECRET_PENDING_ENV, DEFAULT_SECRET_PREVIOUS_ENV, NonceStoreOptions,
    OnUnavailable, PluginConfig,
};
use edge_hmac_core::scheme::{DEFAULT_CLOCK_SKEW_SECONDS, Format};
use edge_hmac_core::store::{DEFAULT_AUTHORITY, DEFAULT_TIMEOUT_MS};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::aws::{AWSCURRENT, AWSPENDING, AWSPREVIOUS, AwsArgs, SecretArgs, Sm, Stages};
use crate::envoy::{self, EnvoyCmd};
use crate::error::{Error, Result};
use crate::nonce_store::{
    self, NonceStoreConfig, NonceStoreError, REDIS_URL_ENV, RedisUrl, UrlError,
};
use crate::render::envoy::{
    DEFAULT_ADMIN, DEFAULT_LISTEN, LocalEnvoy, Module, NONCE_STORE_CLUSTER,
};
use crate::secret::{EdgeSecret, dev_secret};
use crate::sign::{SignOptions, SignPlan, curl_command, now, split_url};

/// Filter options shared by `run` and `render envoy`.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterOpts {
    /// Allowed distance between a request's timestamp and now, in seconds
    #[arg(long, default_value_t = DEFAULT_CLOCK_SKEW_SECONDS)]
    pub clock_skew: u64,
    /// Largest accepted body in bytes (Envoy's listener buffer limit is set above it)
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: u64,
    /// Refuse requests without x-crawbl-nonce
    #[arg(long)]
    pub require_nonce: bool,
    /// Seconds a used nonce is refused [default: twice --clock-skew]
    #[arg(long, value_name = "SECONDS")]
    pub nonce_ttl: Option<u64>,
    /// Memory bound of the replay cache, in nonces
    #[arg(long, default_value_t = DEFAULT_NONCE_CACHE_MAX_ENTRIES)]
    pub nonce_cache_max_entries: u64,
    /// Path whose GET/HEAD requests with no body and no upgrade skip verification, e.g. a health check (exact, or prefix ending in *); repeatable [default: none]
    #[arg(long = "exempt-path", value_name = "PATH")]
    pub exempt_paths: Vec<String>,
    /// Path where clients may sign x-crawbl-content-sha256: UNSIGNED-PAYLOAD so the body streams unbuffered and unchecked, with no size limit (uploads, gRPC streams; same matching as --exempt-path); repeatable [default: none]
    #[arg(long = "unsigned-payload-path", value_name = "PATH")]
    pub unsigned_payload_paths: Vec<String>,
    /// Let CORS preflight requests pass unsigned
    #[arg(long)]
    pub allow_cors_preflight: bool,
    /// Signature formats the filter accepts: v1 (x-crawbl-* headers) and/or rfc9421 (RFC 9421 Signature-Input/Signature, see docs/signature-rfc9421.md); comma-separated or repeated [default: v1; with run --dev: v1,rfc9421]
    #[arg(long = "formats", value_name = "FORMAT", value_delimiter = ',')]
    pub formats: Vec<String>,
    /// With a nonce store: how long a request with a nonce waits for the store's answer, in milliseconds (then 503 replay_cache_unavailable, or see --nonce-store-on-unavailable)
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_TIMEOUT_MS)]
    pub nonce_store_timeout_ms: u64,
    /// With a nonce store: what a request with a nonce gets when the store cannot answer: refuse (503 replay_cache_unavailable with Retry-After: fail closed) or local (this proxy's own table only, counted as a fallback: a replay through another proxy is then not caught)
    #[arg(long, value_enum, value_name = "WHAT", default_value = "refuse")]
    pub nonce_store_on_unavailable: UnavailablePolicy,
}

/// `--nonce-store-on-unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnavailablePolicy {
    /// 503 replay_cache_unavailable (fail closed).
    Refuse,
    /// Fall back to the proxy's own replay table.
    Local,
}

/// The formats `run --dev` accepts unless `--formats` says otherwise: both,
/// so a local run takes whatever `edge-hmac sign` makes.
pub const DEV_FORMATS: [Format; 2] = [Format::V1, Format::Rfc9421];

impl FilterOpts {
    /// The plugin configuration these options describe (no inline secret);
    /// without `--formats`, the filter's default (`["v1"]`).
    pub fn plugin_config(&self) -> Result<PluginConfig> {
        self.plugin_config_or(&[Format::V1])
    }

    /// Like [`FilterOpts::plugin_config`], with `default` as the formats
    /// when `--formats` is not given.
    pub fn plugin_config_or(&self, default: &[Format]) -> Result<PluginConfig> {
        let formats = if self.formats.is_empty() {
            default.iter().map(|f| f.name().to_owned()).collect()
        } else {
            self.formats.clone()
        };
        let config = PluginConfig {
            clock_skew_seconds: self.clock_skew,
            max_body_bytes: self.max_body_bytes,
            require_nonce: self.require_nonce,
            nonce_ttl_seconds: self.nonce_ttl,
            nonce_cache_max_entries: self.nonce_cache_max_entries,
            exempt_paths: self.exempt_paths.clone(),
            unsigned_payload_paths: self.unsigned_payload_paths.clone(),
            allow_cors_preflight: self.allow_cors_preflight,
            formats,
            ..PluginConfig::default()
        };
        validated(config)
    }

    /// `config` calling the nonce store through Envoy cluster `cluster`,
    /// with this command line's timeout and unavailable policy.
    pub fn with_nonce_store(
        &self,
        mut config: PluginConfig,
        cluster: &str,
    ) -> Result<PluginConfig> {
        config.nonce_store = Some(NonceStoreOptions {
            cluster: cluster.to_owned(),
            authority: DEFAULT_AUTHORITY.to_owned(),
            timeout_ms: self.nonce_store_timeout_ms,
            on_unavailable: match self.nonce_store_on_unavailable {
                UnavailablePolicy::Refuse => OnUnavailable::Refuse,
                UnavailablePolicy::Local => OnUnavailable::Local,
            },
        });
        validated(config)
    }
}

/// `config` once it compiled exactly as the filter will compile it, with a
/// stand-in secret.
fn validated(config: PluginConfig) -> Result<PluginConfig> {
    config
        .compile(|name| match name {
            DEFAULT_SECRET_ENV => Some("x".repeat(32)),
            DEFAULT_ENVIRONMENT_ENV => Some("dev".into()),
            _ => None,
        })
        .map_err(|e| Error::Usage(format!("filter options: {e}")))?;
    Ok(config)
}

/// Arguments of `edge-hmac run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Try it without AWS: a local development secret (created on first use, mode 0600) and a built-in upstream
    #[arg(long)]
    pub dev: bool,
    /// Envoy binary [default: ENVOY_BIN, else func-e on PATH, else envoy on PATH]
    #[arg(long, value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Which build of the filter Envoy runs: the proxy-wasm filter in V8, or the native dynamic module (Envoy ≥ 1.39; faster, see docs/benchmarks.md)
    #[arg(long, value_enum, default_value_t = Module::Wasm)]
    pub module: Module,
    /// The proxy-wasm filter [default: target/wasm32-wasip1/release/edge_hmac_filter.wasm]
    #[arg(long, value_name = "PATH", conflicts_with = "module_path")]
    pub wasm: Option<PathBuf>,
    /// The native module, with --module native [default: target/module/libedge-hmac.so]
    #[arg(long, value_name = "PATH")]
    pub module_path: Option<PathBuf>,
    /// Listener address
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Envoy admin address (keep it on loopback)
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Upstream to route to [default: the built-in echo upstream with --dev]
    #[arg(long, value_name = "ADDR")]
    pub upstream: Option<SocketAddr>,
    /// The --upstream speaks HTTP/2 (h2c, e.g. a gRPC server), as Envoy Gateway renders a GRPCRoute backend; its route allows no websocket upgrades (as a GRPCRoute)
    #[arg(long, requires = "upstream")]
    pub upstream_http2: bool,
    /// Poll the secret this often (e.g. 30s, 5m) and hot-restart Envoy when the version staged AWSCURRENT, AWSPREVIOUS or AWSPENDING changes (a failed poll is retried at the next one)
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    pub watch: Option<Duration>,
    /// Seconds an old Envoy keeps draining connections after a hot restart
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub drain_seconds: u64,
    /// Envoy worker threads [default: Envoy's, one per core]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Share one-time nonces with every proxy that uses this Redis (redis://HOST:PORT[/DB] or redis+sentinel://HOST:PORT[,…]/SERVICE): starts `edge-hmac nonce-store` beside Envoy and wires the filter to it, so a nonce accepted by any of them is refused by all (see docs/replay-cache.md). A URL with a password only through --nonce-store-url-file or --nonce-store-url-env
    #[arg(long, value_name = "URL", conflicts_with_all = ["nonce_store_url_file", "nonce_store_url_env"])]
    pub nonce_store: Option<String>,
    /// Like --nonce-store, with the Redis URL (password included) read from this file
    #[arg(long, value_name = "PATH", conflicts_with = "nonce_store_url_env")]
    pub nonce_store_url_file: Option<PathBuf>,
    /// Like --nonce-store, with the Redis URL (password included) read from the EDGE_HMAC_REDIS_URL environment variable
    #[arg(long)]
    pub nonce_store_url_env: bool,
    /// Envoy log level (the filter's own lines stay at info unless this is debug or trace)
    #[arg(long, default_value = "warning")]
    pub log_level: String,
    /// Filter options
    #[command(flatten)]
    pub filter: FilterOpts,
    /// Which secret (without --dev)
    #[command(flatten)]
    pub secret: SecretArgs,
    /// How to reach AWS (without --dev)
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Parses `30s`, `5m`, `1h` or plain seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30s, 5m, 1h"))?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
    .filter(|ms| *ms <= 7 * 24 * 3_600_000)
    .ok_or_else(|| format!("{s:?}: at most a week"))?;
    if millis < 100 {
        return Err(format!("{s:?}: the interval must be at least 100ms"));
    }
    Ok(Duration::from_millis(millis))
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("edge-hmac: {msg}");
}

/// The keys Envoy is started with, and the Secrets Manager versions they
/// came from.
#[derive(Clone)]
struct Keys {
    current: EdgeSecret,
    previous: Option<EdgeSecret>,
    pending: Option<EdgeSecret>,
    versions: Option<Stages>,
}

impl Keys {
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                DEFAULT_SECRET_ENV,
                self.current.hmac_secret.expose().to_owned(),
            ),
            (DEFAULT_ENVIRONMENT_ENV, self.current.environment.clone()),
        ];
        for (var, key) in [
            (DEFAULT_SECRET_PREVIOUS_ENV, &self.previous),
            (DEFAULT_SECRET_PENDING_ENV, &self.pending),
        ] {
            if let Some(k) = key {
                env.push((var, k.hmac_secret.expose().to_owned()));
            }
        }
        env
    }

    fn describe(&self) -> String {
        let fp = |k: &Option<EdgeSecret>| {
            k.as_ref()
                .map(EdgeSecret::fingerprint)
                .unwrap_or_else(|| "none".into())
        };
        format!(
            "environment {}, current key {}{}, previous key {}, pending key {}",
            self.current.environment,
            self.current.fingerprint(),
            self.versions
                .as_ref()
                .map(|v| format!(" (version {})", v.current))
                .unwrap_or_default(),
            fp(&self.previous),
            fp(&self.pending),
        )
    }
}

/// Runs `edge-hmac run`; returns Envoy's exit status.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    if args.dev && args.watch.is_some() {
        return Err(Error::Usage(
            "--watch follows Secrets Manager; it does not apply to --dev".into(),
        ));
    }
    if args.dev {
        let mut given = args.secret.given_flags();
        given.extend(args.aws.given_flags());
        if !given.is_empty() {
            let names: Vec<&str> = given.iter().map(|(f, _)| *f).collect();
            return Err(Error::Usage(format!(
                "--dev uses the local development secret, so {} would be ignored: drop --dev to run with the key from Secrets Manager, or drop {}",
                names.join(", "),
                if names.len() == 1 { "it" } else { "them" }
            )));
        }
    } else if args.upstream.is_none() {
        // Usage first: no Secrets Manager call for a command that cannot run.
        return Err(Error::Usage(
            "say where to route verified requests: --upstream HOST:PORT (or use --dev for the built-in echo upstream)".into(),
        ));
    }
    // Nothing else may listen where this Envoy will: Envoy's listeners
    // reuse ports, so a second one would share the traffic silently.
    ensure_free(args.listen, "listener", "--listen")?;
    ensure_free(args.admin, "admin interface", "--admin")?;
    let plugin = if args.dev {
        args.filter.plugin_config_or(&DEV_FORMATS)?
    } else {
        args.filter.plugin_config()?
    };
    let redis = match (&args.nonce_store, &args.nonce_store_url_file) {
        (Some(url), _) => Some(RedisUrl::from_command_line(url).map_err(|e| match e {
            UrlError::PasswordOnCommandLine => Error::Usage(format!(
                "--nonce-store must not hold a password (it would show in the process list and shell history): put the URL in a file only you can read and pass --nonce-store-url-file PATH, or export {REDIS_URL_ENV} and pass --nonce-store-url-env"
            )),
            other => NonceStoreError::from(other).into(),
        })?),
        (None, Some(path)) => Some(RedisUrl::from_file(path).map_err(NonceStoreError::from)?),
        (None, None) if args.nonce_store_url_env => Some(
            RedisUrl::from_env()
                .map_err(NonceStoreError::from)?
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--nonce-store-url-env reads {REDIS_URL_ENV}, which is unset or empty: export it (redis://[user:password@]host:port) or use --nonce-store-url-file PATH"
                    ))
                })?,
        ),
        (None, None) => None,
    };
    let plugin = match &redis {
        Some(_) => args.filter.with_nonce_store(plugin, NONCE_STORE_CLUSTER)?,
        None => plugin,
    };
    let envoy_cmd = envoy::find(args.envoy.as_deref())?;
    let filter_path = match args.module {
        Module::Wasm => {
            if args.module_path.is_some() {
                return Err(Error::Usage(
                    "--module-path is the native module's: add --module native (or use --wasm PATH)"
                        .into(),
                ));
            }
            envoy::find_wasm(args.wasm.as_deref())?
        }
        Module::Native => {
            if args.wasm.is_some() {
                return Err(Error::Usage(
                    "--wasm is the proxy-wasm filter's: with --module native pass --module-path PATH"
                        .into(),
                ));
            }
            envoy::find_module(args.module_path.as_deref())?
        }
    };

    let mut aws: Option<(Sm, String)> = None;
    let keys = if args.dev {
        let (secret, path, created) = dev_secret()?;
        say(format!(
            "development secret {} ({}, mode 0600, fingerprint {})",
            path.display(),
            if created { "created" } else { "reused" },
            secret.fingerprint()
        ));
        Keys {
            current: secret,
            previous: None,
            pending: None,
            versions: None,
        }
    } else {
        let id = args.secret.id()?;
        let sm = args.aws.client().await;
        let env = args.secret.environment.as_deref();
        let current = sm.fetch(&id, AWSCURRENT, env).await?;
        let previous = sm.fetch_optional(&id, AWSPREVIOUS, env).await?;
        let pending = pending_or_none(sm.fetch_optional(&id, AWSPENDING, env).await)?;
        say(format!(
            "secret {id} from Secrets Manager in {}",
            sm.region()
        ));
        let versions = current.version_id.clone().map(|c| Stages {
            current: c,
            previous: previous.as_ref().and_then(|p| p.version_id.clone()),
            pending: pending.as_ref().and_then(|p| p.version_id.clone()),
        });
        let keys = Keys {
            current: current.secret,
            previous: previous.map(|p| p.secret),
            pending: pending.map(|p| p.secret),
            versions,
        };
        aws = Some((sm, id));
        keys
    };
    say(format!("keys: {}", keys.describe()));

    // The built-in upstream for --dev (without --dev, --upstream was
    // checked above).
    let upstream = match args.upstream {
        Some(u) => u,
        None => {
            let addr = start_dev_upstream().await?;
            say(format!("upstream: built-in echo on {addr}"));
            addr
        }
    };

    let mut local = LocalEnvoy::single_module(
        args.listen,
        args.admin,
        upstream,
        args.module,
        filter_path.clone(),
        plugin,
    );
    local.upstream_http2 = args.upstream_http2;
    // The nonce store runs in this process for as long as Envoy does (hot
    // restarts included) and stops gracefully with it.
    let store = match redis {
        Some(redis) => {
            let redacted = redis.redacted();
            let mut cfg = NonceStoreConfig::new(redis);
            cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
            let handle = nonce_store::start(cfg).await?;
            say(format!(
                "nonce store: http://{} → {redacted} (Envoy cluster {NONCE_STORE_CLUSTER})",
                handle.local_addr()
            ));
            local.nonce_store = Some(handle.local_addr());
            Some(handle)
        }
        None => None,
    };
    let dir = tempfile::Builder::new()
        .prefix("edge-hmac-run-")
        .tempdir()
        .map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let config_path = dir.path().join("envoy.yaml");
    write_bootstrap(&local, &config_path)?;
    say(format!("envoy: {envoy_cmd}"));
    say(format!(
        "filter: {} ({})",
        filter_path.display(),
        match args.module {
            Module::Wasm => "proxy-wasm in V8",
            Module::Native => "native dynamic module",
        }
    ));
    say(format!(
        "bootstrap: {} (no secrets in it)",
        config_path.display()
    ));

    let mut sup = Supervisor {
        cmd: envoy_cmd,
        config: config_path,
        dir: dir.path().to_path_buf(),
        drain_seconds: args.drain_seconds.max(1),
        concurrency: args.concurrency,
        log_level: args.log_level.clone(),
        epoch: 0,
        base_id: None,
        admin: args.admin,
    };
    let mut current = sup.start(&keys).await?;
    let listeners = envoy::listeners(sup.admin).await;
    let listen = listeners
        .iter()
        .find(|(n, _)| n == "edge_hmac")
        .map(|(_, a)| *a)
        .unwrap_or(args.listen);
    if args.listen.port() == 0 || args.admin.port() == 0 {
        // Pin the ports the kernel chose: a hot-restarted Envoy takes over
        // the listen sockets only when its config names the same addresses.
        local.admin = sup.admin;
        if let Some(l) = local.listeners.first_mut() {
            l.address = listen;
        }
        write_bootstrap(&local, &sup.config)?;
    }
    say(format!(
        "Envoy ready (epoch 0): listener http://{listen}  admin http://{}",
        sup.admin
    ));
    let key_flags = if args.dev {
        "--dev".to_owned()
    } else {
        let mut flags = args.secret.given_flags();
        flags.extend(args.aws.given_flags());
        crate::aws::join_flags(&flags).trim_start().to_owned()
    };
    print_hints(&keys.current, &key_flags, listen, args.filter.clock_skew)?;

    let result = sup.supervise(&mut current, keys, aws, args.watch).await;
    if let Some(store) = store {
        store.shutdown().await;
    }
    drop(dir);
    result
}

/// Renders `local` to `path` (no secret is ever in it).
fn write_bootstrap(local: &LocalEnvoy, path: &std::path::Path) -> Result<()> {
    let yaml = local
        .to_yaml()
        .map_err(|e| Error::Other(format!("cannot render the Envoy bootstrap: {e}")))?;
    std::fs::write(path, yaml).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Refuses `addr` when a socket already listens there (a plain bind, with
/// no `SO_REUSEPORT`, fails then even if the other socket shares its port
/// with its own kind). Port 0 is always free.
fn ensure_free(addr: SocketAddr, what: &'static str, flag: &'static str) -> Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(addr) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(Error::AddressInUse { what, flag, addr })
        }
        Err(e) => Err(Error::Usage(format!(
            "cannot listen on {addr} ({flag}): {e}"
        ))),
    }
}

/// The signed and unsigned curl commands printed once Envoy is ready.
/// `key_flags` is how `edge-hmac sign` reaches the same key.
fn print_hints(secret: &EdgeSecret, key_flags: &str, listen: SocketAddr, skew: u64) -> Result<()> {
    let url = format!("http://{listen}/v1/hello?name={}", secret.environment);
    let wire = split_url(&url)?;
    let plan = SignPlan::new(secret, Format::V1, "GET", wire, SignOptions::default())?;
    let headers = plan.headers(now(), None)?;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    println!(
        "Signed request (valid for {skew} s; make fresh ones with `edge-hmac sign {key_flags} --url URL --curl`):"
    );
    println!("  {}", curl_command("GET", &url, &pairs, None));
    println!("Unsigned request (refused with 401 missing_signature):");
    println!("  curl -sS -i {}", crate::sign::shell_quote(&url));
    println!("Press Ctrl-C to stop.");
    Ok(())
}

struct Supervisor {
    cmd: EnvoyCmd,
    config: PathBuf,
    dir: PathBuf,
    drain_seconds: u64,
    concurrency: Option<u32>,
    log_level: String,
    epoch: u64,
    base_id: Option<String>,
    admin: SocketAddr,
}

impl Supervisor {
    fn command(&self, keys: &Keys) -> Command {
        let mut cmd = Command::new(&self.cmd.program);
        cmd.args(&self.cmd.prefix);
        cmd.arg("-c").arg(&self.config);
        cmd.args(["--restart-epoch", &self.epoch.to_string()]);
        match &self.base_id {
            None => {
                cmd.arg("--use-dynamic-base-id")
                    .arg("--base-id-path")
                    .arg(self.dir.join("base-id"));
            }
            Some(id) => {
                cmd.args(["--base-id", id]);
            }
        }
        cmd.args(["--drain-time-s", &self.drain_seconds.to_string()]);
        cmd.args([
            "--parent-shutdown-time-s",
            &(self.drain_seconds + 5).to_string(),
        ]);
        cmd.args(["-l", &self.log_level]);
        if !matches!(self.log_level.as_str(), "trace" | "debug") {
            cmd.args(["--component-log-level", "wasm:info,dynamic_modules:info"]);
        }
        cmd.arg("--admin-address-path")
            .arg(self.dir.join(format!("admin-{}", self.epoch)));
        if let Some(n) = self.concurrency {
            cmd.args(["--concurrency", &n.to_string()]);
        }
        // The secret goes only into the child's environment.
        for var in [
            DEFAULT_SECRET_ENV,
            DEFAULT_SECRET_PREVIOUS_ENV,
            DEFAULT_SECRET_PENDING_ENV,
            DEFAULT_ENVIRONMENT_ENV,
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in keys.env() {
            cmd.env(k, v);
        }
        cmd.kill_on_drop(true);
        cmd
    }

    /// Starts the next epoch and waits until it serves the admin interface.
    async fn start(&mut self, keys: &Keys) -> Result<Child> {
        let mut child = self.command(keys).spawn().map_err(|e| {
            Error::Envoy(format!("cannot start {}: {e}", self.cmd.program.display()))
        })?;
        let admin_file = self.dir.join(format!("admin-{}", self.epoch));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| Error::Envoy(e.to_string()))? {
                return Err(Error::Envoy(format!(
                    "epoch {} exited with {status} before it was ready (see its log above)",
                    self.epoch
                )));
            }
            if let Ok(text) = std::fs::read_to_string(&admin_file)
                && let Ok(addr) = text.trim().parse()
            {
                self.admin = addr;
                if let Some((state, epoch)) = envoy::server_info(addr).await
                    && state == "LIVE"
                    && epoch == self.epoch
                {
                    break;
                }
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.start_kill();
                return Err(Error::Envoy(format!(
                    "epoch {} not ready after 30 s",
                    self.epoch
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.base_id.is_none() {
            self.base_id = std::fs::read_to_string(self.dir.join("base-id"))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
        }
        Ok(child)
    }

    async fn supervise(
        &mut self,
        current: &mut Child,
        mut keys: Keys,
        aws: Option<(Sm, String)>,
        watch: Option<Duration>,
    ) -> Result<ExitCode> {
        let mut draining: Vec<Child> = Vec::new();
        let mut refused: Option<Stages> = None;
        let mut sigint =
            signal(SignalKind::interrupt()).map_err(|e| Error::Other(e.to_string()))?;
        let mut sigterm =
            signal(SignalKind::terminate()).map_err(|e| Error::Other(e.to_string()))?;
        let mut sighup = signal(SignalKind::hangup()).map_err(|e| Error::Other(e.to_string()))?;
        let period = watch.unwrap_or(Duration::from_secs(3600));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                status = current.wait() => {
                    let status = status.map_err(|e| Error::Envoy(e.to_string()))?;
                    for mut old in draining.drain(..) {
                        let _ = old.start_kill();
                    }
                    say(format!("Envoy exited with {status}"));
                    return Ok(exit_code(status));
                }
                _ = sigint.recv() => forward(current, &draining, libc::SIGINT),
                _ = sigterm.recv() => forward(current, &draining, libc::SIGTERM),
                _ = sighup.recv() => forward(current, &draining, libc::SIGHUP),
                _ = ticker.tick(), if watch.is_some() => {
                    draining.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                    let Some((sm, id)) = &aws else { continue };
                    // Signals are still served while a rotation is under way:
                    // the rotation is dropped (a half-started Envoy is killed).
                    let outcome = tokio::select! {
                        r = self.rotate(sm, id, &keys, &mut refused) => r,
                        _ = sigint.recv() => { forward(current, &draining, libc::SIGINT); continue }
                        _ = sigterm.recv() => { forward(current, &draining, libc::SIGTERM); continue }
                        _ = sighup.recv() => { forward(current, &draining, libc::SIGHUP); continue }
                    };
                    match outcome {
                        Ok(None) => {}
                        Ok(Some((new_keys, child))) => {
                            let old = std::mem::replace(current, child);
                            draining.push(old);
                            keys = new_keys;
                            say(format!("rotation done: epoch {} serving; {}", self.epoch, keys.describe()));
                        }
                        Err(e) if e.is_invalid_value() => say(format!("secret refused, keeping the running Envoy and its keys until a staging label moves: {e}")),
                        Err(e) => say(format!("rotation check failed, keeping the running Envoy and its keys; trying again at the next poll: {e}")),
                    }
                }
            }
        }
    }

    /// Checks which versions are AWSCURRENT, AWSPREVIOUS and AWSPENDING;
    /// when any changed, hot-restarts Envoy with those keys (so staging a
    /// key as AWSPENDING makes the proxy accept it before clients move to
    /// it, promoting it keeps the old key as previous, and removing
    /// AWSPREVIOUS retires it, as in the cluster).
    ///
    /// Only a set of versions whose values were refused (not JSON, too
    /// short, another environment) is remembered in `refused` and not
    /// fetched again until a label moves: one log line per bad version, not
    /// one per poll. Any other failure (network, throttling, credentials,
    /// service errors, Envoy not starting) is tried again at the next poll.
    async fn rotate(
        &mut self,
        sm: &Sm,
        id: &str,
        keys: &Keys,
        refused: &mut Option<Stages>,
    ) -> Result<Option<(Keys, Child)>> {
        let stages = sm.stages(id).await?;
        if keys.versions.as_ref() == Some(&stages) || refused.as_ref() == Some(&stages) {
            return Ok(None);
        }
        let environment = keys.current.environment.clone();
        let fetched = async {
            // By version id, so the keys match the stages just read even
            // if a label moves meanwhile.
            let env = Some(environment.as_str());
            let current = sm.fetch_version(id, &stages.current, env).await?;
            let previous = match &stages.previous {
                Some(v) => Some(sm.fetch_version(id, v, env).await?.secret),
                None => None,
            };
            let pending = match &stages.pending {
                Some(v) => {
                    pending_or_none(sm.fetch_version(id, v, env).await.map(Some))?.map(|f| f.secret)
                }
                None => None,
            };
            Ok::<_, Error>((current, previous, pending))
        }
        .await;
        let (current, previous, pending) = match fetched {
            Ok(f) => f,
            Err(e) => {
                if e.is_invalid_value() {
                    *refused = Some(stages);
                }
                return Err(e);
            }
        };
        let new_keys = Keys {
            current: current.secret,
            previous,
            pending,
            versions: Some(stages.clone()),
        };
        self.epoch += 1;
        say(format!(
            "secret {id} changed (AWSCURRENT {}, AWSPREVIOUS {}, AWSPENDING {}); hot restart to epoch {}",
            stages.current,
            stages.previous.as_deref().unwrap_or("none"),
            stages.pending.as_deref().unwrap_or("none"),
            self.epoch
        ));
        match self.start(&new_keys).await {
            Ok(child) => Ok(Some((new_keys, child))),
            Err(e) => {
                self.epoch -= 1;
                Err(e)
            }
        }
    }
}

/// The pending key is optional: a version staged AWSPENDING whose value is
/// invalid (not one `edge-hmac rotate begin` made) is left out with a
/// warning, so it cannot stop the proxy or the keys it does have.
fn pending_or_none(
    fetched: Result<Option<crate::aws::Fetched>>,
) -> Result<Option<crate::aws::Fetched>> {
    match fetched {
        Err(e) if e.is_invalid_value() => {
            say(format!(
                "warning: the AWSPENDING version is left out: {e} (`edge-hmac rotate cancel` drops it)"
            ));
            Ok(None)
        }
        other => other,
    }
}

fn forward(current: &Child, draining: &[Child], sig: i32) {
    for child in std::iter::once(current).chain(draining) {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            #[allow(unsafe_code)]
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            let _ = unsafe { libc::kill(pid, sig) };
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
        _ => ExitCode::FAILURE,
    }
}

/// The built-in upstream of `--dev` on an ephemeral loopback port.
pub async fn start_dev_upstream() -> Result<SocketAddr> {
    start_echo_upstream(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// An upstream that answers every request with a JSON echo of what it
/// received, after reading the whole body (HTTP/1.1 and HTTP/2).
pub async fn start_echo_upstream(bind: SocketAddr) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Error::Other(format!("cannot start the echo upstream on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let method = req.method().to_string();
                    let path = req.uri().to_string();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().len())
                        .unwrap_or(0);
                    let reply = serde_json::json!({
                        "upstream": "edge-hmac dev echo",
                        "method": method,
                        "path": path,
                        "body_bytes": body,
                    });
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(format!("{reply}\n"))))
                            .unwrap_or_default(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Arguments of `edge-hmac echo-upstream`.
#[derive(Debug, Clone, clap::Args)]
pub struct EchoArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = crate::render::envoy::DEFAULT_UPSTREAM)]
    pub listen: SocketAddr,
}

/// Runs `edge-hmac echo-upstream` until SIGINT/SIGTERM.
pub async fn echo(args: EchoArgs) -> Result<()> {
    let addr = start_echo_upstream(args.listen).await?;
    say(format!("echo upstream on http://{addr}"));
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::Other(e.to_string()))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::Other(e.to_string()))?;
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Watch intervals.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0ms").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
        assert!(parse_duration("5d").is_err());
    }

    /// `--formats` reaches the plugin configuration (comma-separated or
    /// repeated); an unknown format is refused before anything is rendered.
    #[test]
    fn formats_flag() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            filter: FilterOpts,
        }
        let config = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
                .unwrap()
                .filter
                .plugin_config()
        };
        assert_eq!(config(&[]).unwrap().formats, ["v1"]);
        // run --dev's default takes both; an explicit --formats wins.
        let dev = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
                .unwrap()
                .filter
                .plugin_config_or(&DEV_FORMATS)
                .unwrap()
                .formats
        };
        assert_eq!(dev(&[]), ["v1", "rfc9421"]);
        assert_eq!(dev(&["--formats", "v1"]), ["v1"]);
        assert_eq!(
            config(&["--formats", "v1,rfc9421"]).unwrap().formats,
            ["v1", "rfc9421"]
        );
        assert_eq!(
            config(&["--formats", "rfc9421", "--formats", "v1"])
                .unwrap()
                .formats,
            ["rfc9421", "v1"]
        );
        let err = config(&["--formats", "v2"]).unwrap_err().to_string();
        assert!(
            err.contains("formats = ") && err.contains("rfc9421"),
            "{err}"
        );
    }
}
