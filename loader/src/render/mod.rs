//! Configuration rendered from Rust types: the local Envoy bootstrap and the
//! Envoy Gateway / External Secrets manifests.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::run::FilterOpts;

pub mod admission;
pub mod envoy;
pub mod gateway;
pub mod monitoring;
pub mod rbac;

/// What `edge-hmac render` can render.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RenderCmd {
    /// The Envoy bootstrap for local runs (envoy/envoy-local.yaml is this with no flags)
    Envoy(Box<RenderEnvoyArgs>),
    /// The Envoy Gateway + External Secrets resources for one environment, with the admission policy that keeps the filter on every route
    Gateway(Box<RenderGatewayArgs>),
    /// Monitoring for the edge: a PodMonitor for Envoy Gateway's proxies, the alerts (PrometheusRule) and a Grafana dashboard (ConfigMap); or the plain rule file or the dashboard JSON (--format)
    Monitoring(Box<RenderMonitoringArgs>),
    /// The RBAC `edge-hmac check` needs, for one user, group or ServiceAccount: a ClusterRole, Roles in the Gateway's and the proxies' namespaces, and their bindings (read-only, Secrets by name, port-forward to the proxy pods)
    CheckRbac(Box<RenderCheckRbacArgs>),
}

/// Arguments of `edge-hmac render check-rbac` (the names as `check` takes them).
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["user", "group", "service_account"])))]
pub struct RenderCheckRbacArgs {
    /// Grant it to this user
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Grant it to this group
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Grant it to this ServiceAccount (NAMESPACE/NAME), e.g. for a CronJob that runs check
    #[arg(long, value_name = "NS/NAME")]
    pub service_account: Option<String>,
    /// Name of the ClusterRole, Roles and bindings
    #[arg(long, value_name = "NAME", default_value = "edge-hmac-check")]
    pub name: String,
    /// Which kit
    #[command(flatten)]
    pub names: crate::check::NamesArgs,
    /// TLS certificate Secret of the HTTPS listener (repeatable; none with --no-https)
    #[arg(
        long = "tls-certificate-secret",
        value_name = "SECRET",
        default_value = "edge-tls"
    )]
    pub tls_certificate_secrets: Vec<String>,
    /// The Gateway has no HTTPS listener (no TLS Secret to read)
    #[arg(long)]
    pub no_https: bool,
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl RenderCheckRbacArgs {
    /// The RBAC to render.
    pub fn rbac(&self) -> Result<rbac::CheckRbac> {
        let subject = match (&self.user, &self.group, &self.service_account) {
            (Some(u), None, None) => rbac::Subject::User(u.clone()),
            (None, Some(g), None) => rbac::Subject::Group(g.clone()),
            (None, None, Some(sa)) => match sa.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    rbac::Subject::ServiceAccount {
                        namespace: ns.into(),
                        name: name.into(),
                    }
                }
                _ => {
                    return Err(Error::Usage(format!(
                        "--service-account {sa:?} must be NAMESPACE/NAME (e.g. monitoring/edge-hmac-check)"
                    )));
                }
            },
            _ => {
                return Err(Error::Usage(
                    "give exactly one of --user, --group, --service-account".into(),
                ));
            }
        };
        Ok(rbac::CheckRbac {
            subject,
            name: self.name.clone(),
            gateway_name: self.names.gateway_name.clone(),
            gateway_namespace: self.names.gateway_namespace.clone(),
            policy_name: self.names.policy_name.clone(),
            proxy_namespace: self.names.proxy_namespace.clone(),
            store_name: self.names.store_name.clone(),
            tls_secrets: if self.no_https {
                Vec::new()
            } else {
                self.tls_certificate_secrets.clone()
            },
        })
    }
}

/// What `render monitoring` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MonitoringFormat {
    /// PodMonitor, PrometheusRule and the dashboard ConfigMap (Prometheus Operator + Grafana sidecar)
    Kit,
    /// The alerts as a Prometheus rule file (plain Prometheus, promtool)
    Rules,
    /// The Grafana dashboard JSON (import it by hand)
    Dashboard,
}

/// Arguments of `edge-hmac render monitoring` (defaults in docs/monitoring.md).
#[derive(Debug, Clone, clap::Args)]
pub struct RenderMonitoringArgs {
    /// What to write
    #[arg(long, value_enum, default_value_t = MonitoringFormat::Kit)]
    pub format: MonitoringFormat,
    /// Namespace of the PodMonitor, PrometheusRule and dashboard ConfigMap (the alerts and the dashboard select job="<NAMESPACE>/edge-hmac", the job label the Prometheus Operator gives the PodMonitor's targets)
    #[arg(long, default_value = "envoy-gateway-system")]
    pub namespace: String,
    /// Namespace of the Envoy proxy pods and of the hmac-wasm-config ExternalSecrets (as in render gateway)
    #[arg(long, default_value = "envoy-gateway-system")]
    pub proxy_namespace: String,
    /// Gateway whose proxies are scraped
    #[arg(long, default_value = "edge")]
    pub gateway_name: String,
    /// Its namespace
    #[arg(long, default_value = "edge")]
    pub gateway_namespace: String,
    /// Scrape interval of the PodMonitor
    #[arg(long, default_value = "15s")]
    pub scrape_interval: String,
    /// Label of the PodMonitor and PrometheusRule, KEY=VALUE, for your Prometheus's podMonitorSelector and ruleSelector (e.g. release=kube-prometheus-stack); repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Label of the dashboard ConfigMap, KEY=VALUE, for Grafana's dashboard sidecar; repeatable [default: grafana_dashboard=1]
    #[arg(long = "dashboard-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub dashboard_labels: Vec<(String, String)>,
    /// Prefix of the alerts' runbook_url, where this repository's docs/ is browsable (e.g. https://git.example.com/edge-hmac/-/blob/main) [default: none, a relative docs/monitoring.md#… link]
    #[arg(long, value_name = "URL", default_value = "")]
    pub runbook_base_url: String,
    /// Window of the alerts' rate() and increase()
    #[arg(long, default_value = "5m")]
    pub rate_window: String,
    /// EdgeHmacRejectionsHigh: share of judged requests refused with one code
    #[arg(long, default_value_t = 0.05)]
    pub rejection_ratio: f64,
    /// EdgeHmacRejectionsHigh: …and at least this many refusals per second with that code
    #[arg(long, default_value_t = 0.1)]
    pub rejection_min_rate: f64,
    /// EdgeHmacRejectionsHigh: for
    #[arg(long, default_value = "10m")]
    pub rejection_for: String,
    /// EdgeHmacInternalError: for (0s: at once)
    #[arg(long, default_value = "0s")]
    pub internal_error_for: String,
    /// EdgeHmacReplayTableFull and EdgeHmacNonceStoreUnavailable: for
    #[arg(long, default_value = "2m")]
    pub replay_for: String,
    /// EdgeHmacCurrentKeyMismatch: for (longer than a rollout of the proxies)
    #[arg(long, default_value = "30m")]
    pub key_mismatch_for: String,
    /// EdgeHmacPendingKeyStaged: for
    #[arg(long, default_value = "1d")]
    pub pending_key_for: String,
    /// EdgeHmacPreviousKeyInUse: window in which one request verified with the previous key counts as use
    #[arg(long, default_value = "1h")]
    pub previous_key_window: String,
    /// EdgeHmacPreviousKeyInUse: for
    #[arg(long, default_value = "1d")]
    pub previous_key_for: String,
    /// EdgeHmacProxyWithoutKey: for
    #[arg(long, default_value = "5m")]
    pub no_key_for: String,
    /// EdgeHmacExternalSecretNotReady: for
    #[arg(long, default_value = "15m")]
    pub external_secret_for: String,
    /// EdgeHmacMetricsAbsent: for
    #[arg(long, default_value = "10m")]
    pub absent_for: String,
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `KEY=VALUE` for a Kubernetes label.
fn parse_label(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE (e.g. release=kube-prometheus-stack)"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty label name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

impl RenderMonitoringArgs {
    /// The options these flags give, checked.
    pub fn options(&self) -> Result<monitoring::MonitoringOptions> {
        let defaults = monitoring::MonitoringOptions::default();
        let o = monitoring::MonitoringOptions {
            namespace: self.namespace.clone(),
            proxy_namespace: self.proxy_namespace.clone(),
            gateway_name: self.gateway_name.clone(),
            gateway_namespace: self.gateway_namespace.clone(),
            scrape_interval: self.scrape_interval.clone(),
            labels: self.labels.iter().cloned().collect(),
            dashboard_labels: if self.dashboard_labels.is_empty() {
                defaults.dashboard_labels
            } else {
                self.dashboard_labels.iter().cloned().collect()
            },
            runbook_base_url: self.runbook_base_url.clone(),
            thresholds: monitoring::Thresholds {
                rate_window: self.rate_window.clone(),
                rejection_ratio: self.rejection_ratio,
                rejection_min_rate: self.rejection_min_rate,
                rejection_for: self.rejection_for.clone(),
                internal_error_for: self.internal_error_for.clone(),
                replay_for: self.replay_for.clone(),
                key_mismatch_for: self.key_mismatch_for.clone(),
                pending_key_for: self.pending_key_for.clone(),
                previous_key_window: self.previous_key_window.clone(),
                previous_key_for: self.previous_key_for.clone(),
                no_key_for: self.no_key_for.clone(),
                external_secret_for: self.external_secret_for.clone(),
                absent_for: self.absent_for.clone(),
            },
        };
        o.validate().map_err(|e| Error::Usage(e.to_string()))?;
        Ok(o)
    }
}

/// Arguments of `edge-hmac render gateway`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderGatewayArgs {
    /// Environment: reads the secret crawbl/<ENV>/<scope>/<name>, and the filter refuses a secret whose "environment" is not ENV (expected_environment)
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// Secret id (instead of the path convention)
    #[arg(long, value_name = "ID")]
    pub secret_id: Option<String>,
    /// Scope part of the path convention
    #[arg(long, default_value = crate::secret::DEFAULT_SCOPE)]
    pub scope: String,
    /// Name part of the path convention
    #[arg(long, default_value = crate::secret::DEFAULT_NAME)]
    pub name: String,
    /// AWS region of the secret
    #[arg(long, default_value = crate::aws::DEFAULT_REGION)]
    pub region: String,
    /// HTTP(S) URL Envoy Gateway downloads the .wasm from (with --wasm-sha256 or --wasm-file)
    #[arg(long, value_name = "URL", conflicts_with = "wasm_image")]
    pub wasm_url: Option<String>,
    /// SHA-256 (hex) of the .wasm at --wasm-url
    #[arg(
        long,
        value_name = "HEX",
        requires = "wasm_url",
        conflicts_with = "wasm_file"
    )]
    pub wasm_sha256: Option<String>,
    /// The .wasm you publish at --wasm-url: its SHA-256 goes into the policy
    #[arg(long, value_name = "PATH", requires = "wasm_url")]
    pub wasm_file: Option<PathBuf>,
    /// OCI image with the .wasm, pinned: registry/repo@sha256:DIGEST (or a tag with --wasm-image-sha256)
    #[arg(long, value_name = "REF")]
    pub wasm_image: Option<String>,
    /// Digest (hex) of the OCI image, when not in --wasm-image
    #[arg(long, value_name = "HEX", requires = "wasm_image")]
    pub wasm_image_sha256: Option<String>,
    /// Which build of the filter the proxies run: the proxy-wasm filter (--wasm-url/--wasm-image) or the native dynamic module (--module-image or --module-path; Envoy Gateway ≥ 1.8 with Envoy ≥ 1.39)
    #[arg(long, value_enum, default_value_t = crate::render::envoy::Module::Wasm)]
    pub module: crate::render::envoy::Module,
    /// --module native: OCI image with libedge-hmac.so at its root, pinned (registry/repo@sha256:DIGEST), mounted into every proxy pod as an image volume (Kubernetes ≥ 1.35, or ≥ 1.33 with the ImageVolume feature gate)
    #[arg(long, value_name = "REF", conflicts_with_all = ["module_path", "wasm_url", "wasm_image"])]
    pub module_image: Option<String>,
    /// --module native: absolute path of libedge-hmac.so on every proxy, put there by you (init container, custom image; see docs/deploy.md)
    #[arg(long, value_name = "PATH", conflicts_with_all = ["wasm_url", "wasm_image"])]
    pub module_path: Option<String>,
    /// Refused: Envoy loads a remote dynamic module fail-open (see docs/deploy.md)
    #[arg(long, value_name = "URL", hide = true)]
    pub module_url: Option<String>,
    /// Gateway name
    #[arg(long, default_value = "edge")]
    pub gateway_name: String,
    /// Gateway namespace (the policies go there too)
    #[arg(long, default_value = "edge")]
    pub gateway_namespace: String,
    /// GatewayClass name
    #[arg(long, default_value = "edge-hmac")]
    pub gateway_class: String,
    /// TLS certificate Secret (type kubernetes.io/tls, in the Gateway namespace, e.g. issued by cert-manager) of the HTTPS listener
    #[arg(long, value_name = "SECRET", default_value = "edge-tls")]
    pub tls_certificate_secret: String,
    /// HTTPS listener port of the Gateway
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Also listen in plain HTTP (signatures give no confidentiality, and a captured request can be replayed within the window on every replica: only behind a TLS-terminating load balancer or for tests)
    #[arg(long)]
    pub plain_http: bool,
    /// Plain-HTTP listener port (with --plain-http)
    #[arg(long, default_value_t = 80, requires = "plain_http")]
    pub http_port: u16,
    /// Leave the HTTPS listener out (needs --plain-http; TLS is then terminated in front of the Gateway)
    #[arg(long, requires = "plain_http")]
    pub no_https: bool,
    /// Namespace of the Envoy proxy pods and of the hmac-wasm-config Secret
    #[arg(long, default_value = "envoy-gateway-system")]
    pub proxy_namespace: String,
    /// How often ESO re-reads the secret
    #[arg(long, default_value = "1h")]
    pub refresh_interval: String,
    /// Bootstrap AWS credential Secret for ESO (created outside this kit)
    #[arg(long, default_value = "aws-credentials")]
    pub aws_credentials_secret: String,
    /// Its namespace
    #[arg(long, default_value = "external-secrets")]
    pub aws_credentials_namespace: String,
    /// Key of the access key id in it
    #[arg(long, default_value = "access-key")]
    pub access_key_id_key: String,
    /// Key of the secret access key in it
    #[arg(long, default_value = "secret-access-key")]
    pub secret_access_key_key: String,
    /// Share one-time nonces across every proxy replica: also render `edge-hmac nonce-store` (Deployment, Service, NetworkPolicy, PodDisruptionBudget in --proxy-namespace), the Envoy cluster `edge_hmac_nonce_store` (EnvoyProxy bootstrap, Merge) and the filter's nonce_store option. NAME is a Secret in --proxy-namespace you create, key `redis-url`: redis://[user:password@]host:port[/db] or redis+sentinel://[user:password@]host:port[,host:port...]/service[/db] (see docs/deploy.md "Replay protection across replicas")
    #[arg(long, value_name = "NAME", requires = "nonce_store_image")]
    pub nonce_store_secret: Option<String>,
    /// With --nonce-store-secret: the image of the store, pinned (registry/repo@sha256:DIGEST). No image is published: build one holding the `edge-hmac` binary on its PATH (cargo build --release -p edge-hmac; e.g. FROM gcr.io/distroless/cc-debian12:nonroot, COPY it to /usr/local/bin/edge-hmac; see docs/deploy.md)
    #[arg(long, value_name = "REF", requires = "nonce_store_secret")]
    pub nonce_store_image: Option<String>,
    /// With --nonce-store-secret: replicas of the store
    #[arg(long, value_name = "N", default_value_t = gateway::DEFAULT_NONCE_STORE_REPLICAS,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub nonce_store_replicas: u16,
    /// Filter options
    #[command(flatten)]
    pub filter: FilterOpts,
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Checks a `--wasm-url`: an absolute `http` or `https`
/// URL with a host, parsed by the `http` crate (hyper's), nothing else.
pub fn check_download_url(flag: &str, url: &str) -> Result<()> {
    let bad = |why: &str| Error::Usage(format!("{flag} {url:?} is not usable: {why}"));
    if !url.contains("://") && !url.contains(char::is_whitespace) {
        return Err(bad("no scheme; use https://host/path"));
    }
    let uri: http::Uri = url.parse().map_err(|e| {
        bad(&format!(
            "not a URL ({e}); percent-encode spaces and quotes"
        ))
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(bad(&format!("scheme {other:?}; use https:// (or http://)"))),
        None => return Err(bad("no scheme; use https://host/path")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if uri.path().len() <= 1 {
        return Err(bad("no path to the file"));
    }
    Ok(())
}

/// Checks an OCI image reference as Envoy Gateway takes it
/// (`registry/repo[:tag][@sha256:DIGEST]`, no scheme), by the grammar of
/// the OCI distribution reference (a dependency-free check: the crates that
/// parse references pull in a whole OCI client).
pub fn check_image_ref(flag: &str, image: &str) -> Result<()> {
    static REF: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = REF.get_or_init(|| {
        let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let domain = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?";
        regex::Regex::new(&format!(
            r"^{domain}/{component}(?:/{component})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
        ))
        .ok()
    });
    let ok = re.as_ref().is_some_and(|re| re.is_match(image));
    if ok {
        return Ok(());
    }
    let why = if image.contains("://") {
        "no scheme: write registry/repo@sha256:DIGEST"
    } else if image.contains('@') && !image.contains("@sha256:") {
        "only sha256 digests are accepted"
    } else if image.contains("@sha256:") {
        "the digest must be 64 lowercase hex digits after @sha256:"
    } else if !image.contains('/') {
        "name the registry: registry.example.com/repo@sha256:DIGEST"
    } else {
        "expected registry/repo[:tag][@sha256:DIGEST] (lowercase repository, no spaces)"
    };
    Err(Error::Usage(format!(
        "{flag} {image:?} is not an image reference: {why}"
    )))
}

/// A Kubernetes object name of the DNS-subdomain kind (Secrets).
fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl RenderGatewayArgs {
    /// The options these arguments describe.
    pub fn options(&self) -> Result<gateway::GatewayOptions> {
        use edge_hmac_core::scheme::validate_environment;
        validate_environment(&self.environment).map_err(|e| Error::Usage(e.to_string()))?;
        let native = matches!(self.module, crate::render::envoy::Module::Native);
        if let Some(url) = &self.module_url {
            return Err(Error::Usage(format!(
                "--module-url {url:?} is refused: Envoy loads a remote dynamic module fail-open (when the download or its sha256 check fails it skips the filter and requests pass unverified). Put the module on the proxies' disk instead: --module-image registry/repo@sha256:DIGEST (an image volume) or --module-path /abs/libedge-hmac.so (docs/deploy.md)"
            )));
        }
        if !native && (self.module_path.is_some() || self.module_image.is_some()) {
            return Err(Error::Usage(
                "--module-image and --module-path locate the native module: add --module native"
                    .into(),
            ));
        }
        let code = if native {
            self.native_code()?
        } else {
            self.wasm_code()?
        };
        for h in [&self.wasm_sha256, &self.wasm_image_sha256]
            .into_iter()
            .flatten()
        {
            if !is_hex64(&h.to_ascii_lowercase()) {
                return Err(Error::Usage(format!(
                    "{h:?} is not a SHA-256 (64 hex digits)"
                )));
            }
        }
        self.finish_options(code)
    }

    /// Where the proxies get the native module.
    fn native_code(&self) -> Result<gateway::WasmCode> {
        match (&self.module_path, &self.module_image) {
            (Some(path), None) => {
                if !path.starts_with('/') || path.contains(char::is_whitespace) {
                    return Err(Error::Usage(format!(
                        "--module-path {path:?} must be an absolute path on the proxy (e.g. /var/lib/edge-hmac/libedge-hmac.so): Envoy Gateway passes it to Envoy as it is"
                    )));
                }
                Ok(gateway::WasmCode::NativeLocal { path: path.clone() })
            }
            (None, Some(image)) => {
                check_image_ref("--module-image", image)?;
                let pinned = image
                    .rsplit_once("@sha256:")
                    .is_some_and(|(_, digest)| is_hex64(digest));
                if !pinned {
                    return Err(Error::Usage(format!(
                        "--module-image {image:?} is not pinned: use registry/repo@sha256:DIGEST, so a re-pushed tag cannot change the code at the edge"
                    )));
                }
                Ok(gateway::WasmCode::NativeImage {
                    reference: image.clone(),
                })
            }
            _ => Err(Error::Usage(
                "say where the proxies find the native module: --module-image registry/repo@sha256:DIGEST (an image volume), or --module-path /abs/libedge-hmac.so (see docs/deploy.md)".into(),
            )),
        }
    }

    /// Where Envoy Gateway downloads the proxy-wasm filter.
    fn wasm_code(&self) -> Result<gateway::WasmCode> {
        let code = match (&self.wasm_url, &self.wasm_image) {
            (Some(url), None) => {
                check_download_url("--wasm-url", url)?;
                let sha256 = match (&self.wasm_sha256, &self.wasm_file) {
                    (Some(h), _) => Some(h.to_ascii_lowercase()),
                    (None, Some(path)) => {
                        let bytes = std::fs::read(path).map_err(|source| Error::Io {
                            path: path.clone(),
                            source,
                        })?;
                        Some(hex::encode(edge_hmac_core::scheme::sha256(&bytes)))
                    }
                    (None, None) => {
                        return Err(Error::Usage(
                            "--wasm-url needs the module's checksum: --wasm-file PATH (computed) or --wasm-sha256 HEX".into(),
                        ));
                    }
                };
                gateway::WasmCode::Http {
                    url: url.clone(),
                    sha256,
                }
            }
            (None, Some(image)) => {
                check_image_ref("--wasm-image", image)?;
                let pinned = image
                    .rsplit_once("@sha256:")
                    .is_some_and(|(_, digest)| is_hex64(digest));
                if !pinned && self.wasm_image_sha256.is_none() {
                    return Err(Error::Usage(format!(
                        "--wasm-image {image:?} is not pinned: use registry/repo@sha256:DIGEST or add --wasm-image-sha256, so a re-pushed tag cannot change the code at the edge"
                    )));
                }
                gateway::WasmCode::Image {
                    url: image.clone(),
                    sha256: self
                        .wasm_image_sha256
                        .as_ref()
                        .map(|h| h.to_ascii_lowercase()),
                }
            }
            _ => {
                return Err(Error::Usage(
                    "say where Envoy Gateway downloads the filter: --wasm-url URL --wasm-file PATH, or --wasm-image REF (see docs/deploy.md)".into(),
                ));
            }
        };
        Ok(code)
    }

    /// The shared nonce store, when `--nonce-store-secret` asks for it.
    fn nonce_store(&self) -> Result<Option<gateway::NonceStoreDeployment>> {
        let (Some(secret), Some(image)) = (&self.nonce_store_secret, &self.nonce_store_image)
        else {
            return Ok(None);
        };
        if !is_dns_subdomain(secret) {
            return Err(Error::Usage(format!(
                "--nonce-store-secret {secret:?} is not a Secret name: lowercase letters, digits and '-', at most 253 characters, starting and ending alphanumeric"
            )));
        }
        check_image_ref("--nonce-store-image", image)?;
        let pinned = image
            .rsplit_once("@sha256:")
            .is_some_and(|(_, digest)| is_hex64(digest));
        if !pinned {
            return Err(Error::Usage(format!(
                "--nonce-store-image {image:?} is not pinned: use registry/repo@sha256:DIGEST (docker buildx imagetools inspect REF prints the digest), so a re-pushed tag cannot change what answers the proxies' claims"
            )));
        }
        Ok(Some(gateway::NonceStoreDeployment {
            secret: secret.clone(),
            image: image.clone(),
            replicas: self.nonce_store_replicas,
        }))
    }

    fn finish_options(&self, code: gateway::WasmCode) -> Result<gateway::GatewayOptions> {
        let mut plugin = self.filter.plugin_config()?;
        let nonce_store = self.nonce_store()?;
        if nonce_store.is_some() {
            plugin = self
                .filter
                .with_nonce_store(plugin, envoy::NONCE_STORE_CLUSTER)?;
        }
        // Last: the options are validated with a stand-in environment.
        plugin.expected_environment = Some(self.environment.clone());
        let mut o = gateway::GatewayOptions::new(&self.environment, code, plugin);
        o.secret_id = self.secret_id.clone().unwrap_or_else(|| {
            crate::secret::secret_id(&self.environment, &self.scope, &self.name)
        });
        o.region = self.region.clone();
        o.gateway_name = self.gateway_name.clone();
        o.gateway_namespace = self.gateway_namespace.clone();
        o.gateway_class = self.gateway_class.clone();
        o.http_port = self.http_port;
        o.plain_http = self.plain_http;
        o.https_port = self.https_port;
        o.tls_certificate_secret = (!self.no_https).then(|| self.tls_certificate_secret.clone());
        o.proxy_namespace = self.proxy_namespace.clone();
        o.refresh_interval = self.refresh_interval.clone();
        o.credentials_secret = self.aws_credentials_secret.clone();
        o.credentials_namespace = self.aws_credentials_namespace.clone();
        o.access_key_id_key = self.access_key_id_key.clone();
        o.secret_access_key_key = self.secret_access_key_key.clone();
        o.nonce_store = nonce_store;
        Ok(o)
    }
}

/// The command line that reproduces a rendering, for the file header.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("edge-hmac {}", args.join(" "))
}

/// Arguments of `edge-hmac render envoy`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderEnvoyArgs {
    /// Listener address
    #[arg(long, value_name = "ADDR", default_value = envoy::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Admin address
    #[arg(long, value_name = "ADDR", default_value = envoy::DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Upstream address
    #[arg(long, value_name = "ADDR", default_value = envoy::DEFAULT_UPSTREAM)]
    pub upstream: SocketAddr,
    /// Which build of the filter: the proxy-wasm filter in V8, or the native dynamic module (Envoy ≥ 1.39)
    #[arg(long, value_enum, default_value_t = envoy::Module::Wasm)]
    pub module: envoy::Module,
    /// Path of the proxy-wasm filter as Envoy will see it (relative to Envoy's working directory)
    #[arg(long, value_name = "PATH", default_value = envoy::DEFAULT_WASM)]
    pub wasm: PathBuf,
    /// Path of the native module as Envoy will see it, with --module native (absolute is safest: Envoy loads it by this path)
    #[arg(long, value_name = "PATH", default_value = envoy::DEFAULT_MODULE)]
    pub module_path: PathBuf,
    /// Filter options
    #[command(flatten)]
    pub filter: FilterOpts,
    /// The upstream speaks HTTP/2 (h2c, e.g. a gRPC server), as Envoy Gateway renders a GRPCRoute backend; its route allows no websocket upgrades (as a GRPCRoute)
    #[arg(long)]
    pub upstream_http2: bool,
    /// Also render baseline listeners for benchmarks: `plain` (no wasm) on
    /// the listen port + 1 and `noop` (this no-op .wasm) on port + 2
    #[arg(long, value_name = "NOOP_WASM")]
    pub with_baselines: Option<PathBuf>,
    /// Also render an `ext_authz` listener on the listen port + 3: Envoy's
    /// ext_authz filter asking the HTTP authorization service at this
    /// address (the benchmark's edge-hmac-ext-authz), body included
    #[arg(long, value_name = "ADDR")]
    pub with_ext_authz: Option<SocketAddr>,
    /// Also render the native build of the filter (this .so, same options) as the listener `edge_hmac_native` on the listen port + 4, beside the main one (benchmarks)
    #[arg(long, value_name = "MODULE")]
    pub with_native: Option<PathBuf>,
    /// Also render `noop_native` (this no-op native module: the floor of any native module) on the listen port + 5 (benchmarks)
    #[arg(long, value_name = "NOOP_MODULE")]
    pub with_noop_module: Option<PathBuf>,
    /// Address of `edge-hmac nonce-store`: renders its cluster (HTTP/2) and the filter's nonce_store option, so every proxy sharing that store refuses a nonce any of them accepted (see docs/replay-cache.md)
    #[arg(long, value_name = "ADDR")]
    pub nonce_store_address: Option<SocketAddr>,
    /// What Envoy does when the wasm VM fails (Envoy Gateway with failOpen: false is FAIL_CLOSED)
    #[arg(long, value_name = "POLICY", default_value = "FAIL_RELOAD", value_parser = ["FAIL_RELOAD", "FAIL_CLOSED", "FAIL_OPEN"])]
    pub failure_policy: String,
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `edge-hmac render ...`.
pub fn run(cmd: RenderCmd) -> Result<()> {
    let (text, output) = match cmd {
        RenderCmd::Envoy(a) => {
            let mut plugin = a.filter.plugin_config()?;
            if a.nonce_store_address.is_some() {
                plugin = a
                    .filter
                    .with_nonce_store(plugin, envoy::NONCE_STORE_CLUSTER)?;
            }
            let mut local = envoy::LocalEnvoy::single_module(
                a.listen,
                a.admin,
                a.upstream,
                a.module,
                match a.module {
                    envoy::Module::Wasm => a.wasm.clone(),
                    envoy::Module::Native => a.module_path.clone(),
                },
                plugin.clone(),
            );
            local.nonce_store = a.nonce_store_address;
            local.failure_policy = match a.failure_policy.as_str() {
                "FAIL_CLOSED" => "FAIL_CLOSED",
                "FAIL_OPEN" => "FAIL_OPEN",
                _ => "FAIL_RELOAD",
            };
            local.upstream_http2 = a.upstream_http2;
            // Extra listeners sit at fixed offsets from --listen (port 0
            // stays 0: the kernel chooses).
            let port = |offset: u16| {
                let mut addr = a.listen;
                if addr.port() != 0 {
                    addr.set_port(addr.port().saturating_add(offset));
                }
                addr
            };
            if let Some(noop) = &a.with_baselines {
                local.listeners.push(envoy::ListenerSpec {
                    name: "plain".into(),
                    address: port(1),
                    filter: envoy::ListenerFilter::None,
                });
                local.listeners.push(envoy::ListenerSpec {
                    name: "noop".into(),
                    address: port(2),
                    filter: envoy::ListenerFilter::NoopWasm { wasm: noop.clone() },
                });
            }
            if let Some(service) = a.with_ext_authz {
                local.listeners.push(envoy::ListenerSpec {
                    name: "ext_authz".into(),
                    address: port(3),
                    filter: envoy::ListenerFilter::ExtAuthz {
                        service,
                        max_request_bytes: u32::try_from(a.filter.max_body_bytes)
                            .unwrap_or(u32::MAX),
                    },
                });
            }
            if let Some(module) = &a.with_native {
                local.listeners.push(envoy::ListenerSpec {
                    name: "edge_hmac_native".into(),
                    address: port(4),
                    filter: envoy::ListenerFilter::EdgeHmacNative {
                        module: module.clone(),
                        config: Box::new(plugin.clone()),
                    },
                });
            }
            if let Some(module) = &a.with_noop_module {
                local.listeners.push(envoy::ListenerSpec {
                    name: "noop_native".into(),
                    address: port(5),
                    filter: envoy::ListenerFilter::NoopNative {
                        module: module.clone(),
                    },
                });
            }
            let text = local
                .to_yaml()
                .map_err(|e| Error::Other(format!("cannot render: {e}")))?;
            (text, a.output)
        }
        RenderCmd::Gateway(a) => {
            let text = a
                .options()?
                .to_yaml(&command_line())
                .map_err(|e| Error::Other(format!("cannot render: {e}")))?;
            (text, a.output.clone())
        }
        RenderCmd::CheckRbac(a) => {
            let text = a
                .rbac()?
                .to_yaml(&command_line())
                .map_err(|e| Error::Other(format!("cannot render: {e}")))?;
            (text, a.output.clone())
        }
        RenderCmd::Monitoring(a) => {
            let o = a.options()?;
            let text = match a.format {
                MonitoringFormat::Kit => o.to_yaml(&command_line())?,
                MonitoringFormat::Rules => o
                    .rules_yaml(&command_line())
                    .map_err(|e| Error::Other(format!("cannot render: {e}")))?,
                MonitoringFormat::Dashboard => o
                    .dashboard_json()
                    .map_err(|e| Error::Other(format!("cannot render: {e}")))?,
            };
            (text, a.output.clone())
        }
    };
    match output {
        None => print!("{text}"),
        Some(path) => std::fs::write(&path, text).map_err(|source| Error::Io { path, source })?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway_args(extra: &[&str]) -> std::result::Result<RenderGatewayArgs, String> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: RenderGatewayArgs,
        }
        let image = format!("r.example.com/f@sha256:{}", "a".repeat(64));
        // Not `dev`: the options are checked with a stand-in environment
        // of that name before expected_environment is set.
        let argv = ["x", "--env", "prod", "--wasm-image", &image]
            .into_iter()
            .chain(extra.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    /// `render check-rbac` needs exactly one subject, a ServiceAccount as
    /// NAMESPACE/NAME; Secrets are granted by name only, the TLS Secret
    /// left out with --no-https.
    #[test]
    fn check_rbac_subjects_are_checked() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: RenderCheckRbacArgs,
        }
        let parse = |argv: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(std::iter::once("x").chain(argv.iter().copied()))
                .map_err(|e| e.to_string())
                .and_then(|c| c.args.rbac().map_err(|e| e.to_string()))
        };
        assert!(parse(&[]).is_err(), "no subject");
        assert!(
            parse(&["--user", "a", "--group", "b"]).is_err(),
            "two subjects"
        );
        let err = parse(&["--service-account", "just-a-name"]).unwrap_err();
        assert!(err.contains("NAMESPACE/NAME"), "{err}");
        let rbac = parse(&["--service-account", "monitoring/checker"]).unwrap();
        assert_eq!(
            rbac.subject,
            rbac::Subject::ServiceAccount {
                namespace: "monitoring".into(),
                name: "checker".into()
            }
        );
        let yaml = rbac.to_yaml("test").unwrap();
        let secrets_rules: Vec<&str> = yaml
            .split("- apiGroups:")
            .filter(|r| r.contains("- secrets"))
            .collect();
        assert_eq!(secrets_rules.len(), 2, "{yaml}");
        assert!(
            secrets_rules
                .iter()
                .all(|r| r.contains("resourceNames:") && !r.contains("- list")),
            "{yaml}"
        );
        let no_tls = parse(&["--user", "a", "--no-https"])
            .unwrap()
            .to_yaml("test")
            .unwrap();
        assert!(!no_tls.contains("edge-tls"), "{no_tls}");
    }

    /// `--nonce-store-secret` needs a pinned `--nonce-store-image` and a
    /// Secret name; with them the plugin calls the store's cluster.
    #[test]
    fn nonce_store_flags_are_checked() {
        let pinned = format!("r.example.com/edge-hmac@sha256:{}", "b".repeat(64));
        let err = gateway_args(&["--nonce-store-secret", "redis"]).unwrap_err();
        assert!(err.contains("--nonce-store-image"), "{err}");
        for (secret, image, why) in [
            ("redis", "r.example.com/edge-hmac:1", "not pinned"),
            ("Redis_URL", pinned.as_str(), "not a Secret name"),
        ] {
            let args =
                gateway_args(&["--nonce-store-secret", secret, "--nonce-store-image", image])
                    .unwrap();
            let err = args.options().unwrap_err().to_string();
            assert!(err.contains(why), "{secret} {image}: {err}");
        }
        let o = gateway_args(&[
            "--nonce-store-secret",
            "redis",
            "--nonce-store-image",
            &pinned,
            "--nonce-store-replicas",
            "3",
            "--nonce-store-on-unavailable",
            "local",
        ])
        .unwrap()
        .options()
        .unwrap();
        assert_eq!(o.nonce_store.as_ref().map(|s| s.replicas), Some(3));
        let store = o.plugin.nonce_store.unwrap();
        assert_eq!(store.cluster, envoy::NONCE_STORE_CLUSTER);
        assert_eq!(
            store.on_unavailable,
            edge_hmac_core::config::OnUnavailable::Local
        );
        let plain = gateway_args(&[]).unwrap().options().unwrap();
        assert!(plain.nonce_store.is_none() && plain.plugin.nonce_store.is_none());
    }

    /// Module locations are validated before anything is rendered: the
    /// strings of issue 25 are refused with the reason, real ones pass.
    #[test]
    fn module_locations_are_checked() {
        let digest = "a".repeat(64);
        for ok in [
            format!("registry.example.com/edge/hmac@sha256:{digest}"),
            format!("localhost:5000/edge-hmac:0.1.0@sha256:{digest}"),
            "ghcr.io/acme/edge-hmac:v1".to_owned(),
        ] {
            assert!(check_image_ref("--wasm-image", &ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            (
                format!("url: registry.example.com/edge@sha256:{digest}"),
                "not an image reference",
            ),
            (
                format!("oci://registry.example.com/edge@sha256:{digest}"),
                "no scheme",
            ),
            (
                "registry.example.com/edge@sha256:abc".to_owned(),
                "64 lowercase hex",
            ),
            (
                "registry.example.com/edge@md5:abc".to_owned(),
                "only sha256",
            ),
            ("edge-hmac".to_owned(), "name the registry"),
        ] {
            let err = check_image_ref("--wasm-image", &bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        for ok in [
            "https://files.example.com/edge_hmac_filter.wasm",
            "http://127.0.0.1:8080/f.wasm",
        ] {
            assert!(check_download_url("--wasm-url", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ftp://x y", "not a URL"),
            ("ftp://files.example.com/f.wasm", "scheme \"ftp\""),
            ("files.example.com/f.wasm", "no scheme"),
            ("https://files.example.com", "no path"),
        ] {
            let err = check_download_url("--wasm-url", bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
