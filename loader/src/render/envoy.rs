//! Envoy bootstrap for running the filter locally (func-e or any Envoy
//! binary), rendered from Rust types.
//!
//! Only the subset of Envoy's v3 API the project uses is modelled; field names
//! follow the proto names so the YAML reads like Envoy's documentation.

use std::net::SocketAddr;
use std::path::PathBuf;

use edge_hmac_core::config::PluginConfig;
use serde::Serialize;

/// What a listener runs in front of the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerFilter {
    /// No wasm filter at all (baseline).
    None,
    /// A wasm filter that only answers Continue (floor for any wasm filter).
    NoopWasm {
        /// Path of the no-op `.wasm`.
        wasm: PathBuf,
    },
    /// Envoy's `ext_authz` filter asking an HTTP authorization service at
    /// this address (the benchmark's `edge-hmac-ext-authz`), with the body.
    ExtAuthz {
        /// Where the authorization service listens.
        service: SocketAddr,
        /// Largest body sent to the service (larger requests get 413).
        max_request_bytes: u32,
    },
    /// The edge-hmac filter.
    EdgeHmac {
        /// Path of `edge_hmac_filter.wasm`.
        wasm: PathBuf,
        /// Plugin configuration (rendered as JSON; never carries a secret).
        config: Box<PluginConfig>,
    },
    /// The edge-hmac native module (`envoy.filters.http.dynamic_modules`).
    EdgeHmacNative {
        /// Absolute path of `libedge-hmac.so`.
        module: PathBuf,
        /// The same plugin configuration, as the module's `filter_config`.
        config: Box<PluginConfig>,
    },
    /// A native module that only answers Continue (floor for any native
    /// module, the benchmark's).
    NoopNative {
        /// Absolute path of the no-op `.so`.
        module: PathBuf,
    },
}

/// Which build of the filter runs in Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Module {
    /// The proxy-wasm filter in V8 (`edge_hmac_filter.wasm`).
    #[default]
    Wasm,
    /// The native dynamic module (`libedge-hmac.so`, Envoy ≥ 1.39).
    Native,
}

impl Module {
    /// The prefix Envoy gives the filter's stats in `/stats`: `wasmcustom.`
    /// or `dynamicmodulescustom.` (then `edge_hmac.…`).
    pub fn stats_prefix(self) -> &'static str {
        match self {
            Module::Wasm => "wasmcustom.",
            Module::Native => "dynamicmodulescustom.",
        }
    }
}

/// One HTTP listener in front of the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Listener name (also its stat prefix).
    pub name: String,
    /// Address to listen on; port 0 lets the kernel choose (read it back from
    /// the admin `/listeners` endpoint).
    pub address: SocketAddr,
    /// What runs in front of the router.
    pub filter: ListenerFilter,
}

/// Everything that varies between local bootstraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEnvoy {
    /// Admin interface address (keep it on loopback).
    pub admin: SocketAddr,
    /// The upstream every listener routes to.
    pub upstream: SocketAddr,
    /// The listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Per-connection buffer limit of each listener, in bytes. Must be at
    /// least the filter's `max_body_bytes`: Envoy answers a plain 413 when a
    /// buffered body passes it, before the filter can decide.
    pub buffer_limit_bytes: u64,
    /// Balance connections exactly across workers (tests use it to put two
    /// connections on two different workers).
    pub exact_balance: bool,
    /// Upstream route timeout in seconds.
    pub route_timeout_seconds: u64,
    /// What Envoy does when the VM fails: `FAIL_RELOAD` locally; Envoy
    /// Gateway's `failOpen: false` means `FAIL_CLOSED`.
    pub failure_policy: &'static str,
    /// The upstream speaks HTTP/2 (h2c), as Envoy Gateway renders a
    /// GRPCRoute backend: for gRPC. Its route, like a GRPCRoute's, allows no
    /// upgrades. Otherwise HTTP/1.1 with websocket upgrades allowed on the
    /// route, as Envoy Gateway renders an HTTPRoute.
    pub upstream_http2: bool,
    /// Address of `edge-hmac nonce-store`: the cluster
    /// [`NONCE_STORE_CLUSTER`] (HTTP/2) the filter's `nonce_store` calls.
    pub nonce_store: Option<SocketAddr>,
}

/// The cluster a local bootstrap gives the nonce store.
pub const NONCE_STORE_CLUSTER: &str = "edge_hmac_nonce_store";

impl LocalEnvoy {
    /// The usual single-listener setup: the filter with `config` in front of
    /// `upstream`, buffer limit derived from `max_body_bytes`.
    pub fn single(
        listen: SocketAddr,
        admin: SocketAddr,
        upstream: SocketAddr,
        wasm: PathBuf,
        config: PluginConfig,
    ) -> Self {
        let buffer_limit_bytes = buffer_limit_for(config.max_body_bytes);
        Self {
            admin,
            upstream,
            listeners: vec![ListenerSpec {
                name: "edge_hmac".into(),
                address: listen,
                filter: ListenerFilter::EdgeHmac {
                    wasm,
                    config: Box::new(config),
                },
            }],
            buffer_limit_bytes,
            exact_balance: false,
            route_timeout_seconds: 30,
            failure_policy: "FAIL_RELOAD",
            upstream_http2: false,
            nonce_store: None,
        }
    }

    /// Like [`LocalEnvoy::single`] with the filter built as `module`, found
    /// at `path` (the `.wasm` or the `.so`).
    pub fn single_module(
        listen: SocketAddr,
        admin: SocketAddr,
        upstream: SocketAddr,
        module: Module,
        path: PathBuf,
        config: PluginConfig,
    ) -> Self {
        let mut local = Self::single(listen, admin, upstream, path.clone(), config);
        if module == Module::Native
            && let Some(l) = local.listeners.first_mut()
            && let ListenerFilter::EdgeHmac { config, .. } = &l.filter
        {
            l.filter = ListenerFilter::EdgeHmacNative {
                module: path,
                config: config.clone(),
            };
        }
        local
    }

    /// The bootstrap as typed values.
    pub fn bootstrap(&self) -> Bootstrap {
        let listeners = self
            .listeners
            .iter()
            .map(|l| self.listener(l))
            .collect::<Vec<_>>();
        Bootstrap {
            node: Node {
                id: "edge-hmac-local".into(),
                cluster: "edge-hmac".into(),
            },
            admin: Admin {
                address: Address::from(self.admin),
            },
            static_resources: StaticResources {
                listeners,
                clusters: self.clusters(),
            },
            stats_config: StatsConfig::edge_hmac(),
            layered_runtime: LayeredRuntime::edge_hmac(),
            overload_manager: OverloadManager::default(),
        }
    }

    fn clusters(&self) -> Vec<Cluster> {
        let mut clusters = vec![Cluster::static_one(
            UPSTREAM_CLUSTER,
            self.upstream,
            self.upstream_http2.then(UpstreamProtocolOptions::http2),
        )];
        if let Some(service) = self.listeners.iter().find_map(|l| match l.filter {
            ListenerFilter::ExtAuthz { service, .. } => Some(service),
            _ => None,
        }) {
            clusters.push(Cluster::static_one(EXT_AUTHZ_CLUSTER, service, None));
        }
        if let Some(store) = self.nonce_store {
            clusters.push(Cluster::static_one(
                NONCE_STORE_CLUSTER,
                store,
                Some(UpstreamProtocolOptions::http2()),
            ));
        }
        clusters
    }

    /// The bootstrap as YAML, with a header comment.
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        let body = serde_norway::to_string(&self.bootstrap())?;
        Ok(format!("{HEADER}{body}"))
    }

    fn listener(&self, spec: &ListenerSpec) -> Listener {
        let mut http_filters = Vec::new();
        match &spec.filter {
            ListenerFilter::None => {}
            ListenerFilter::NoopWasm { wasm } => {
                http_filters.push(HttpFilter::wasm(
                    "noop",
                    wasm,
                    String::new(),
                    Vec::new(),
                    self.failure_policy,
                ));
            }
            ListenerFilter::ExtAuthz {
                max_request_bytes, ..
            } => http_filters.push(HttpFilter::ext_authz(*max_request_bytes)),
            ListenerFilter::EdgeHmac { wasm, config } => {
                let json = serde_json::to_string(config.as_ref()).unwrap_or_else(|_| "{}".into());
                let mut keys: Vec<String> = Vec::new();
                for key in [
                    &config.hmac_secret_env,
                    &config.hmac_secret_previous_env,
                    &config.hmac_secret_pending_env,
                    &config.environment_env,
                ] {
                    if !keys.contains(key) {
                        keys.push(key.clone());
                    }
                }
                http_filters.push(HttpFilter::wasm(
                    "edge-hmac",
                    wasm,
                    json,
                    keys,
                    self.failure_policy,
                ));
            }
            ListenerFilter::EdgeHmacNative { module, config } => {
                let json = serde_json::to_string(config.as_ref()).unwrap_or_else(|_| "{}".into());
                http_filters.push(HttpFilter::dynamic_module(module, "edge-hmac", json));
            }
            ListenerFilter::NoopNative { module } => {
                http_filters.push(HttpFilter::dynamic_module(module, "noop", String::new()));
            }
        }
        http_filters.push(HttpFilter::router());
        Listener {
            name: spec.name.clone(),
            stat_prefix: spec.name.clone(),
            address: Address::from(spec.address),
            per_connection_buffer_limit_bytes: self.buffer_limit_bytes,
            connection_balance_config: self.exact_balance.then_some(ConnectionBalance {
                exact_balance: Empty {},
            }),
            filter_chains: vec![FilterChain {
                filters: vec![NetworkFilter {
                    name: "envoy.filters.network.http_connection_manager",
                    typed_config: Hcm {
                        kind: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        stat_prefix: spec.name.clone(),
                        codec_type: "AUTO",
                        normalize_path: true,
                        merge_slashes: true,
                        path_with_escaped_slashes_action: "UNESCAPE_AND_REDIRECT",
                        common_http_protocol_options: CommonHttpOptions {
                            headers_with_underscores_action: "REJECT_REQUEST",
                        },
                        http2_protocol_options: Http2Options::envoy_gateway(),
                        route_config: RouteConfig {
                            name: "local".into(),
                            virtual_hosts: vec![VirtualHost {
                                name: "all".into(),
                                domains: vec!["*".into()],
                                routes: vec![Route {
                                    r#match: RouteMatch { prefix: "/".into() },
                                    route: RouteAction {
                                        cluster: UPSTREAM_CLUSTER.into(),
                                        timeout: format!("{}s", self.route_timeout_seconds),
                                        upgrade_configs: (!self.upstream_http2).then(|| {
                                            vec![UpgradeConfig {
                                                upgrade_type: "websocket",
                                            }]
                                        }),
                                    },
                                }],
                            }],
                        },
                        http_filters,
                    },
                }],
            }],
        }
    }
}

/// Default listener address of local runs.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10000";
/// Default admin address of local runs.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
/// Default upstream of the checked-in bootstrap.
pub const DEFAULT_UPSTREAM: &str = "127.0.0.1:8080";
/// Where `make wasm` puts the filter, relative to the workspace.
pub const DEFAULT_WASM: &str = "target/wasm32-wasip1/release/edge_hmac_filter.wasm";
/// Where `make module` puts the native module, relative to the workspace.
pub const DEFAULT_MODULE: &str = "target/module/libedge-hmac.so";
/// The checked-in bootstrap, relative to the workspace.
pub const CHECKED_IN_PATH: &str = "envoy/envoy-local.yaml";

/// The bootstrap checked in as `envoy/envoy-local.yaml` (what
/// `edge-hmac render envoy` prints with no flags).
pub fn checked_in() -> LocalEnvoy {
    LocalEnvoy::single(
        parse_addr(DEFAULT_LISTEN),
        parse_addr(DEFAULT_ADMIN),
        parse_addr(DEFAULT_UPSTREAM),
        PathBuf::from(DEFAULT_WASM),
        PluginConfig::default(),
    )
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

pub use edge_hmac_core::config::buffer_limit_for;

const UPSTREAM_CLUSTER: &str = "upstream";
const EXT_AUTHZ_CLUSTER: &str = "ext_authz";

const HEADER: &str = "\
# Envoy bootstrap for the edge-hmac filter, rendered by `edge-hmac render envoy`.
# Do not edit by hand: change the renderer (loader/src/render/envoy.rs) or its flags.
#
# The secret reaches the filter only through the process environment
# (HMAC_SECRET, HMAC_SECRET_PREVIOUS, HMAC_SECRET_PENDING, HMAC_ENVIRONMENT,
# forwarded into the VM by host_env_keys, read by the native module from the
# process); it is never written here. Non-default settings and why:
# - failure_policy FAIL_RELOAD: a crashed VM is reloaded instead of leaving the
#   worker answering 503 forever (Envoy's default FAIL_CLOSED).
# - per_connection_buffer_limit_bytes: above the filter's max_body_bytes, so
#   the filter (not Envoy's plain 413) decides on large bodies.
# - normalize_path, merge_slashes, UNESCAPE_AND_REDIRECT, REJECT_REQUEST for
#   headers with underscores: what Envoy Gateway does, so paths are signed the
#   same way locally and at the edge (docs/signature-v1.md section 7).
# - What Envoy Gateway renders for an HTTPRoute (so local tests do not pass
#   on settings the edge lacks): websocket upgrades allowed per route; HTTP/2
#   stream and connection windows of 64 KiB and 1 MiB, 100 streams per
#   connection; no HTTP/1 trailers (ClientTrafficPolicy http1.enableTrailers
#   is off by default); an HTTP/1.1 upstream.
";

/// Envoy's `Bootstrap` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrap {
    /// Node identity.
    pub node: Node,
    /// Admin interface.
    pub admin: Admin,
    /// Listeners and clusters.
    pub static_resources: StaticResources,
    /// The labels of the filter's metrics in `/stats/prometheus`.
    pub stats_config: StatsConfig,
    /// The native module's metric names in `/stats/prometheus`.
    pub layered_runtime: LayeredRuntime,
    /// Connection limit (silences Envoy's start-up warning, bounds memory).
    pub overload_manager: OverloadManager,
}

/// `config.metrics.v3.StatsConfig`: Envoy's default tags plus the
/// filter's ([`edge_hmac_core::metrics::STATS_TAGS`]), so its Prometheus
/// output carries the outcome code, key slot, fingerprint and format as
/// labels on both hosts (docs/monitoring.md).
#[derive(Debug, Clone, Serialize)]
pub struct StatsConfig {
    /// Tag extractors, tried on every stat name.
    pub stats_tags: Vec<TagSpecifier>,
}

impl StatsConfig {
    /// The filter's labels.
    pub fn edge_hmac() -> Self {
        Self {
            stats_tags: edge_hmac_core::metrics::STATS_TAGS
                .iter()
                .map(|t| TagSpecifier {
                    tag_name: t.name,
                    regex: t.regex,
                })
                .collect(),
        }
    }
}

/// `config.bootstrap.v3.LayeredRuntime` with one static layer, `edge_hmac`,
/// that sets [`edge_hmac_core::metrics::STRIP_NAMESPACE_RUNTIME_KEY`]: the
/// native module's metrics then have the proxy-wasm filter's Prometheus
/// names. (Merged into Envoy Gateway's bootstrap, it is a layer after EG's
/// own `global_config`.)
#[derive(Debug, Clone, Serialize)]
pub struct LayeredRuntime {
    /// The layers.
    pub layers: Vec<RuntimeLayer>,
}

/// One static runtime layer.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeLayer {
    /// Its name (unique among the layers).
    pub name: &'static str,
    /// Its values.
    pub static_layer: std::collections::BTreeMap<&'static str, bool>,
}

impl LayeredRuntime {
    /// The filter's layer.
    pub fn edge_hmac() -> Self {
        Self {
            layers: vec![RuntimeLayer {
                name: "edge_hmac",
                static_layer: [(edge_hmac_core::metrics::STRIP_NAMESPACE_RUNTIME_KEY, true)]
                    .into_iter()
                    .collect(),
            }],
        }
    }
}

/// `config.metrics.v3.TagSpecifier`.
#[derive(Debug, Clone, Serialize)]
pub struct TagSpecifier {
    /// The label's name.
    pub tag_name: &'static str,
    /// RE2: the first group is cut from the name, the second is the value.
    pub regex: &'static str,
}

/// `config.core.v3.Node`.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Node id.
    pub id: String,
    /// Node cluster.
    pub cluster: String,
}

/// `config.bootstrap.v3.Admin`.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    /// Where the admin interface listens.
    pub address: Address,
}

/// `config.core.v3.Address` with a socket address.
#[derive(Debug, Clone, Serialize)]
pub struct Address {
    /// The socket address.
    pub socket_address: SocketAddress,
}

/// `config.core.v3.SocketAddress`.
#[derive(Debug, Clone, Serialize)]
pub struct SocketAddress {
    /// IP address.
    pub address: String,
    /// Port (0: any).
    pub port_value: u16,
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address {
            socket_address: SocketAddress {
                address: addr.ip().to_string(),
                port_value: addr.port(),
            },
        }
    }
}

/// `StaticResources`.
#[derive(Debug, Clone, Serialize)]
pub struct StaticResources {
    /// Listeners.
    pub listeners: Vec<Listener>,
    /// Clusters.
    pub clusters: Vec<Cluster>,
}

/// `config.listener.v3.Listener` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    /// Name.
    pub name: String,
    /// Stat prefix (`listener.<stat_prefix>.*`) instead of the address.
    pub stat_prefix: String,
    /// Bind address.
    pub address: Address,
    /// Read/write buffer limit per connection.
    pub per_connection_buffer_limit_bytes: u64,
    /// Exact balancing across workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_balance_config: Option<ConnectionBalance>,
    /// Filter chains.
    pub filter_chains: Vec<FilterChain>,
}

/// `ConnectionBalanceConfig`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionBalance {
    /// `exact_balance: {}`.
    pub exact_balance: Empty,
}

/// An empty message (`{}`).
#[derive(Debug, Clone, Serialize)]
pub struct Empty {}

/// `FilterChain`.
#[derive(Debug, Clone, Serialize)]
pub struct FilterChain {
    /// Network filters.
    pub filters: Vec<NetworkFilter>,
}

/// A network filter: always the HTTP connection manager here.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkFilter {
    /// Filter name.
    pub name: &'static str,
    /// Its configuration.
    pub typed_config: Hcm,
}

/// `HttpConnectionManager` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct Hcm {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// Stat prefix.
    pub stat_prefix: String,
    /// `AUTO`: HTTP/1.1 and HTTP/2 (prior knowledge) on one port.
    pub codec_type: &'static str,
    /// RFC 3986 path normalization (as Envoy Gateway).
    pub normalize_path: bool,
    /// Merge adjacent slashes (as Envoy Gateway).
    pub merge_slashes: bool,
    /// Escaped slash handling (as Envoy Gateway).
    pub path_with_escaped_slashes_action: &'static str,
    /// Header handling shared by HTTP/1 and HTTP/2.
    pub common_http_protocol_options: CommonHttpOptions,
    /// HTTP/2 options of the downstream side.
    pub http2_protocol_options: Http2Options,
    /// Routes.
    pub route_config: RouteConfig,
    /// HTTP filters, router last.
    pub http_filters: Vec<HttpFilter>,
}

/// `HttpProtocolOptions` (common).
#[derive(Debug, Clone, Serialize)]
pub struct CommonHttpOptions {
    /// What to do with header names containing `_`.
    pub headers_with_underscores_action: &'static str,
}

/// `Http2ProtocolOptions` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct Http2Options {
    /// Concurrent streams per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// Per-stream flow-control window.
    pub initial_stream_window_size: u32,
    /// Per-connection flow-control window.
    pub initial_connection_window_size: u32,
}

impl Http2Options {
    /// What Envoy Gateway v1.9 sets on every listener.
    fn envoy_gateway() -> Self {
        Http2Options {
            max_concurrent_streams: Some(100),
            initial_stream_window_size: 64 * 1024,
            initial_connection_window_size: 1024 * 1024,
        }
    }
}

/// `RouteAction.UpgradeConfig`.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeConfig {
    /// The upgrade allowed (`websocket`).
    pub upgrade_type: &'static str,
}

/// `RouteConfiguration`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteConfig {
    /// Name.
    pub name: String,
    /// Virtual hosts.
    pub virtual_hosts: Vec<VirtualHost>,
}

/// `VirtualHost`.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    /// Name.
    pub name: String,
    /// Domains.
    pub domains: Vec<String>,
    /// Routes.
    pub routes: Vec<Route>,
}

/// `Route`.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Match.
    pub r#match: RouteMatch,
    /// Action.
    pub route: RouteAction,
}

/// `RouteMatch`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteMatch {
    /// Path prefix.
    pub prefix: String,
}

/// `RouteAction`.
#[derive(Debug, Clone, Serialize)]
pub struct RouteAction {
    /// Target cluster.
    pub cluster: String,
    /// Upstream timeout.
    pub timeout: String,
    /// Upgrades allowed on the route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_configs: Option<Vec<UpgradeConfig>>,
}

/// An HTTP filter.
#[derive(Debug, Clone, Serialize)]
pub struct HttpFilter {
    /// Filter name.
    pub name: String,
    /// Its configuration.
    pub typed_config: HttpFilterConfig,
}

/// The HTTP filter configurations used.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum HttpFilterConfig {
    /// `envoy.extensions.filters.http.wasm.v3.Wasm`.
    Wasm(WasmFilter),
    /// `envoy.extensions.filters.http.router.v3.Router`.
    Router(TypeOnly),
    /// `envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`.
    ExtAuthz(ExtAuthzFilter),
    /// `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`.
    DynamicModule(DynamicModuleFilter),
}

/// `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`.
#[derive(Debug, Clone, Serialize)]
pub struct DynamicModuleFilter {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// Which module.
    pub dynamic_module_config: DynamicModuleConfig,
    /// The module's filter.
    pub filter_name: String,
    /// The module's configuration, passed to it as raw bytes.
    pub filter_config: StringValue,
}

/// `envoy.extensions.dynamic_modules.v3.DynamicModuleConfig` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct DynamicModuleConfig {
    /// Where the `.so` is.
    pub module: DynamicModuleSource,
}

/// `config.core.v3.AsyncDataSource` (local only).
#[derive(Debug, Clone, Serialize)]
pub struct DynamicModuleSource {
    /// A local file.
    pub local: DataSource,
}

/// `envoy.extensions.filters.http.ext_authz.v3.ExtAuthz` (subset: an HTTP
/// service, the request body included).
#[derive(Debug, Clone, Serialize)]
pub struct ExtAuthzFilter {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// The authorization service.
    pub http_service: ExtAuthzHttpService,
    /// Request headers sent to the service besides Envoy's fixed set
    /// (`Host`, method, path, `Content-Length`, `Authorization`).
    pub allowed_headers: ListStringMatcher,
    /// Buffer the body and send it to the service.
    pub with_request_body: ExtAuthzBufferSettings,
    /// Refuse the request when the service fails (fail closed).
    pub failure_mode_allow: bool,
}

/// `ext_authz.v3.HttpService` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct ExtAuthzHttpService {
    /// The service's cluster and timeout.
    pub server_uri: HttpUri,
}

/// `config.core.v3.HttpUri`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpUri {
    /// URI (its host is only the `Host` of the check request).
    pub uri: String,
    /// Cluster to send to.
    pub cluster: String,
    /// Per-check timeout.
    pub timeout: String,
}

/// `type.matcher.v3.ListStringMatcher`.
#[derive(Debug, Clone, Serialize)]
pub struct ListStringMatcher {
    /// Any of these.
    pub patterns: Vec<StringMatcher>,
}

/// `type.matcher.v3.StringMatcher` (prefix or exact, case-insensitive names).
#[derive(Debug, Clone, Serialize)]
pub struct StringMatcher {
    /// Name prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Exact name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
}

/// `ext_authz.v3.BufferSettings`.
#[derive(Debug, Clone, Serialize)]
pub struct ExtAuthzBufferSettings {
    /// Largest body buffered for the check.
    pub max_request_bytes: u32,
    /// false: a larger body is refused with 413 instead of being cut.
    pub allow_partial_message: bool,
}

impl HttpFilter {
    fn wasm(
        name: &str,
        wasm: &std::path::Path,
        configuration: String,
        host_env_keys: Vec<String>,
        failure_policy: &'static str,
    ) -> Self {
        HttpFilter {
            name: "envoy.filters.http.wasm".into(),
            typed_config: HttpFilterConfig::Wasm(WasmFilter {
                kind: "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                config: WasmPluginConfig {
                    name: name.into(),
                    failure_policy,
                    configuration: StringValue {
                        kind: "type.googleapis.com/google.protobuf.StringValue",
                        value: configuration,
                    },
                    vm_config: VmConfig {
                        vm_id: name.into(),
                        runtime: "envoy.wasm.runtime.v8",
                        code: Code {
                            local: DataSource {
                                filename: wasm.display().to_string(),
                            },
                        },
                        environment_variables: (!host_env_keys.is_empty())
                            .then_some(EnvironmentVariables { host_env_keys }),
                    },
                },
            }),
        }
    }

    fn ext_authz(max_request_bytes: u32) -> Self {
        let header = |prefix: Option<&str>, exact: Option<&str>| StringMatcher {
            prefix: prefix.map(str::to_owned),
            exact: exact.map(str::to_owned),
        };
        HttpFilter {
            name: "envoy.filters.http.ext_authz".into(),
            typed_config: HttpFilterConfig::ExtAuthz(ExtAuthzFilter {
                kind: "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                http_service: ExtAuthzHttpService {
                    server_uri: HttpUri {
                        uri: format!("http://{EXT_AUTHZ_CLUSTER}"),
                        cluster: EXT_AUTHZ_CLUSTER.into(),
                        timeout: "1s".into(),
                    },
                },
                // What v1 and the RFC 9421 profile read.
                allowed_headers: ListStringMatcher {
                    patterns: vec![
                        header(Some("x-crawbl-"), None),
                        header(None, Some("signature")),
                        header(None, Some("signature-input")),
                        header(None, Some("content-digest")),
                        header(None, Some("content-type")),
                    ],
                },
                with_request_body: ExtAuthzBufferSettings {
                    max_request_bytes,
                    allow_partial_message: false,
                },
                failure_mode_allow: false,
            }),
        }
    }

    /// `envoy.filters.http.dynamic_modules` loading `module` by its path,
    /// with `config` as its `filter_config` (a `StringValue`).
    fn dynamic_module(module: &std::path::Path, filter_name: &str, config: String) -> Self {
        HttpFilter {
            name: "envoy.filters.http.dynamic_modules".into(),
            typed_config: HttpFilterConfig::DynamicModule(DynamicModuleFilter {
                kind: "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                dynamic_module_config: DynamicModuleConfig {
                    module: DynamicModuleSource {
                        local: DataSource {
                            filename: module.display().to_string(),
                        },
                    },
                },
                filter_name: filter_name.into(),
                filter_config: StringValue {
                    kind: "type.googleapis.com/google.protobuf.StringValue",
                    value: config,
                },
            }),
        }
    }

    fn router() -> Self {
        HttpFilter {
            name: "envoy.filters.http.router".into(),
            typed_config: HttpFilterConfig::Router(TypeOnly {
                kind: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            }),
        }
    }
}

/// A typed config with only its type URL.
#[derive(Debug, Clone, Serialize)]
pub struct TypeOnly {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
}

/// `envoy.extensions.filters.http.wasm.v3.Wasm`.
#[derive(Debug, Clone, Serialize)]
pub struct WasmFilter {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// Plugin configuration.
    pub config: WasmPluginConfig,
}

/// `envoy.extensions.wasm.v3.PluginConfig` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct WasmPluginConfig {
    /// Plugin name (log prefix).
    pub name: String,
    /// What happens when the VM fails.
    pub failure_policy: &'static str,
    /// The plugin configuration, passed as-is to `on_configure`.
    pub configuration: StringValue,
    /// VM configuration.
    pub vm_config: VmConfig,
}

/// `google.protobuf.StringValue` inside an `Any`.
#[derive(Debug, Clone, Serialize)]
pub struct StringValue {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// The string.
    pub value: String,
}

/// `VmConfig` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct VmConfig {
    /// VMs with the same id are shared by the plugins that use it.
    pub vm_id: String,
    /// `envoy.wasm.runtime.v8` (the only runtime of Envoy 1.40 builds).
    pub runtime: &'static str,
    /// Where the code is.
    pub code: Code,
    /// Host environment variables visible in the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<EnvironmentVariables>,
}

/// `AsyncDataSource` with a local file.
#[derive(Debug, Clone, Serialize)]
pub struct Code {
    /// Local file.
    pub local: DataSource,
}

/// `DataSource`.
#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    /// File path (relative paths are relative to Envoy's working directory).
    pub filename: String,
}

/// `EnvironmentVariables`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentVariables {
    /// Names of host variables passed into the VM.
    pub host_env_keys: Vec<String>,
}

/// `Cluster` (subset).
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Name.
    pub name: String,
    /// Discovery type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Connect timeout.
    pub connect_timeout: String,
    /// Endpoints.
    pub load_assignment: LoadAssignment,
    /// Upstream HTTP options (none: HTTP/1.1, Envoy's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typed_extension_protocol_options: Option<UpstreamProtocolOptions>,
}

impl Cluster {
    /// A cluster of one static endpoint.
    fn static_one(
        name: &str,
        address: SocketAddr,
        options: Option<UpstreamProtocolOptions>,
    ) -> Self {
        Cluster {
            name: name.into(),
            kind: "STATIC",
            connect_timeout: "1s".into(),
            load_assignment: LoadAssignment {
                cluster_name: name.into(),
                endpoints: vec![LocalityEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        endpoint: Endpoint {
                            address: Address::from(address),
                        },
                    }],
                }],
            },
            typed_extension_protocol_options: options,
        }
    }
}

/// `ClusterLoadAssignment`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadAssignment {
    /// Cluster name.
    pub cluster_name: String,
    /// Endpoints by locality.
    pub endpoints: Vec<LocalityEndpoints>,
}

/// `LocalityLbEndpoints`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalityEndpoints {
    /// Endpoints.
    pub lb_endpoints: Vec<LbEndpoint>,
}

/// `LbEndpoint`.
#[derive(Debug, Clone, Serialize)]
pub struct LbEndpoint {
    /// Endpoint.
    pub endpoint: Endpoint,
}

/// `Endpoint`.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// Address.
    pub address: Address,
}

/// `typed_extension_protocol_options` with `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamProtocolOptions {
    /// The options, under their extension name.
    #[serde(rename = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions")]
    pub http: UpstreamHttpOptions,
}

impl UpstreamProtocolOptions {
    /// HTTP/2 to the upstream, with the windows Envoy Gateway gives a
    /// GRPCRoute backend.
    fn http2() -> Self {
        UpstreamProtocolOptions {
            http: UpstreamHttpOptions {
                kind: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config: ExplicitHttpConfig {
                    http2_protocol_options: Http2Options {
                        max_concurrent_streams: None,
                        ..Http2Options::envoy_gateway()
                    },
                },
            },
        }
    }
}

/// `HttpProtocolOptions` for upstreams.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamHttpOptions {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// The upstream protocol.
    pub explicit_http_config: ExplicitHttpConfig,
}

/// `ExplicitHttpConfig` with HTTP/2.
#[derive(Debug, Clone, Serialize)]
pub struct ExplicitHttpConfig {
    /// HTTP/2 options.
    pub http2_protocol_options: Http2Options,
}

/// `overload.v3.OverloadManager` with a downstream connection limit.
#[derive(Debug, Clone, Serialize)]
pub struct OverloadManager {
    /// Resource monitors.
    pub resource_monitors: Vec<ResourceMonitor>,
}

impl Default for OverloadManager {
    fn default() -> Self {
        OverloadManager {
            resource_monitors: vec![ResourceMonitor {
                name: "envoy.resource_monitors.global_downstream_max_connections",
                typed_config: DownstreamConnections {
                    kind: "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    max_active_downstream_connections: 10_000,
                },
            }],
        }
    }
}

/// A resource monitor.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceMonitor {
    /// Monitor name.
    pub name: &'static str,
    /// Its configuration.
    pub typed_config: DownstreamConnections,
}

/// `DownstreamConnectionsConfig`.
#[derive(Debug, Clone, Serialize)]
pub struct DownstreamConnections {
    /// Type URL.
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// Connection limit across all listeners.
    pub max_active_downstream_connections: u64,
}
