//! The cluster resources that put the filter at the Envoy Gateway edge, with
//! the secret flowing AWS Secrets Manager → External Secrets Operator →
//! Secret `hmac-wasm-config` → Envoy container environment → the filter (the
//! wasm VM through `env.hostKeys`, or the native module, which reads the
//! process environment itself).
//!
//! With [`GatewayOptions::nonce_store`], also `edge-hmac nonce-store` beside
//! the proxies (Deployment, Service, PodDisruptionBudget, NetworkPolicy), the
//! Envoy cluster the filter claims nonces through (merged into the proxies'
//! bootstrap by the EnvoyProxy) and the filter's `nonce_store` option.
//!
//! Rendered from Rust types into one multi-document YAML stream for
//! `kubectl apply -f`. Manifests carry references to secrets only.

use edge_hmac_core::config::PluginConfig;
use serde::Serialize;

pub use crate::render::admission::{AdmissionRule, EdgePolicyNames};

use edge_hmac_core::config::buffer_limit_for;

use crate::render::envoy::{
    Address, Endpoint, ExplicitHttpConfig, Http2Options, LayeredRuntime, LbEndpoint,
    LoadAssignment, LocalityEndpoints, SocketAddress, StatsConfig, UpstreamHttpOptions,
    UpstreamProtocolOptions,
};

/// Label maps (sorted, so renderings are stable).
pub type Labels = std::collections::BTreeMap<String, String>;

/// Where Envoy Gateway downloads the filter from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmCode {
    /// An HTTP(S) URL, with the file's SHA-256 (hex) so EG verifies it.
    Http {
        /// The URL.
        url: String,
        /// SHA-256 of the .wasm file.
        sha256: Option<String>,
    },
    /// An OCI image (`registry/repo:tag` or `registry/repo@sha256:...`).
    Image {
        /// The image reference.
        url: String,
        /// Digest of the image, when not in the reference.
        sha256: Option<String>,
    },
    /// The native module at an absolute path on every proxy (an image
    /// volume, an init container or a custom image puts it there).
    NativeLocal {
        /// Absolute path of `libedge-hmac.so` on the proxy.
        path: String,
    },
    /// The native module from an OCI image pinned by digest, mounted into
    /// every proxy pod as an image volume (Kubernetes ≥ 1.35, or 1.33+ with
    /// the `ImageVolume` feature gate): a pod whose image cannot be pulled
    /// does not start, so the module is never skipped. (No `Remote` source:
    /// Envoy skips a remote module whose download or checksum fails and
    /// lets requests through — `tests/e2e/native.rs`.)
    NativeImage {
        /// `registry/repo@sha256:DIGEST`, the `.so` at the image's root.
        reference: String,
    },
}

/// Where an image volume puts the native module in the proxy container.
pub const MODULE_IMAGE_MOUNT: &str = "/var/lib/edge-hmac/module";

/// The image volume holding the native module.
const MODULE_VOLUME: &str = "edge-hmac-module";

impl WasmCode {
    /// True for the native module.
    pub fn is_native(&self) -> bool {
        matches!(
            self,
            WasmCode::NativeLocal { .. } | WasmCode::NativeImage { .. }
        )
    }
}

/// Everything that varies between environments and clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOptions {
    /// Environment name (`dev`, `prod`, ...).
    pub environment: String,
    /// AWS region of the secret.
    pub region: String,
    /// Secret id in Secrets Manager.
    pub secret_id: String,
    /// Name of the ClusterSecretStore.
    pub store_name: String,
    /// Bootstrap AWS credential Secret (created outside this kit).
    pub credentials_secret: String,
    /// Its namespace.
    pub credentials_namespace: String,
    /// Key of the access key id in it.
    pub access_key_id_key: String,
    /// Key of the secret access key in it.
    pub secret_access_key_key: String,
    /// Secret written by ESO with the current key and the environment
    /// (required: a missing remote secret fails the sync and keeps it).
    pub target_secret: String,
    /// Secret written by ESO with the rotation keys, `hmac_secret_previous`
    /// (AWSPREVIOUS) and `hmac_secret_pending` (AWSPENDING), each optional:
    /// absent outside a rotation. (Two ExternalSecrets cannot own one
    /// Secret, and the current key's sync must fail where these may skip.)
    pub rotation_secret: String,
    /// Namespace of the Envoy proxy pods (Envoy Gateway's own by default).
    pub proxy_namespace: String,
    /// How often ESO re-reads Secrets Manager.
    pub refresh_interval: String,
    /// GatewayClass name.
    pub gateway_class: String,
    /// Gateway name.
    pub gateway_name: String,
    /// Gateway namespace (the policies live there too).
    pub gateway_namespace: String,
    /// Port of the plain-HTTP listener, when there is one (`plain_http`).
    pub http_port: u16,
    /// Also a plain-HTTP listener (off by default: signatures give no
    /// confidentiality, and a captured request can be replayed within the
    /// window on every replica).
    pub plain_http: bool,
    /// Port of the HTTPS listener.
    pub https_port: u16,
    /// TLS certificate Secret of the HTTPS listener (in the Gateway
    /// namespace); `None` leaves HTTPS out (then `plain_http` must be set).
    pub tls_certificate_secret: Option<String>,
    /// EnvoyProxy name.
    pub envoy_proxy_name: String,
    /// The filter module.
    pub code: WasmCode,
    /// The filter's configuration (never carries a secret).
    pub plugin: PluginConfig,
    /// The shared nonce store deployed beside the proxies (`None`: each
    /// proxy keeps its own replay table only). The plugin's `nonce_store`
    /// option is set by the caller ([`crate::run::FilterOpts::with_nonce_store`]).
    pub nonce_store: Option<NonceStoreDeployment>,
}

/// `edge-hmac nonce-store` as the kit deploys it: a Deployment behind a
/// ClusterIP Service in the proxies' namespace, reachable only from the
/// edge Gateway's proxy pods, and the Envoy cluster the filter claims
/// nonces through (merged into the proxies' bootstrap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceStoreDeployment {
    /// Secret in the proxies' namespace whose key [`NONCE_STORE_REDIS_URL_KEY`]
    /// holds the Redis URL (created outside the kit).
    pub secret: String,
    /// Image holding the `edge-hmac` binary on its `PATH`, pinned by digest.
    pub image: String,
    /// Replicas of the store.
    pub replicas: u16,
}

/// The Secret (and ExternalSecret) with the current key.
pub const TARGET_SECRET: &str = "hmac-wasm-config";
/// The Secret (and ExternalSecret) with the rotation keys.
pub const ROTATION_SECRET: &str = "hmac-wasm-config-rotation";

/// Name of the store's Deployment, Service, NetworkPolicy and
/// PodDisruptionBudget, and the `:authority` of its claims.
pub const NONCE_STORE_NAME: &str = "edge-hmac-nonce-store";
/// The store's port (`edge-hmac nonce-store`'s default port).
pub const NONCE_STORE_PORT: u16 = 9380;
/// Key of the Redis URL in the `--nonce-store-secret` Secret.
pub const NONCE_STORE_REDIS_URL_KEY: &str = "redis-url";
/// Default `--nonce-store-replicas`.
pub const DEFAULT_NONCE_STORE_REPLICAS: u16 = 2;
/// Seconds Kubernetes waits after SIGTERM before it kills the store: above
/// its shutdown grace, so in-flight claims finish and connections close
/// with a GOAWAY instead of a reset.
pub const NONCE_STORE_TERMINATION_GRACE_SECONDS: u64 =
    crate::nonce_store::DEFAULT_SHUTDOWN_GRACE_SECONDS + 5;
/// Connect timeout of the store's Envoy cluster: a pod in the same
/// cluster answers a SYN in well under a millisecond; the filter's claim
/// timeout (250 ms by default) bounds the request anyway.
pub const NONCE_STORE_CONNECT_TIMEOUT: &str = "0.5s";
/// The `app.kubernetes.io/component` label of the store's objects (apply
/// them first: `kubectl apply -f kit.yaml -l app.kubernetes.io/component=nonce-store`).
pub const NONCE_STORE_COMPONENT: &str = "nonce-store";

impl GatewayOptions {
    /// Defaults for `environment` with module `code` and filter `plugin`.
    pub fn new(environment: &str, code: WasmCode, plugin: PluginConfig) -> Self {
        Self {
            environment: environment.into(),
            region: crate::aws::DEFAULT_REGION.into(),
            secret_id: crate::secret::secret_id(
                environment,
                crate::secret::DEFAULT_SCOPE,
                crate::secret::DEFAULT_NAME,
            ),
            store_name: "aws-secretsmanager".into(),
            credentials_secret: "aws-credentials".into(),
            credentials_namespace: "external-secrets".into(),
            access_key_id_key: "access-key".into(),
            secret_access_key_key: "secret-access-key".into(),
            target_secret: TARGET_SECRET.into(),
            rotation_secret: ROTATION_SECRET.into(),
            proxy_namespace: "envoy-gateway-system".into(),
            refresh_interval: "1h".into(),
            gateway_class: "edge-hmac".into(),
            gateway_name: "edge".into(),
            gateway_namespace: "edge".into(),
            http_port: 80,
            plain_http: false,
            https_port: 443,
            tls_certificate_secret: Some("edge-tls".into()),
            envoy_proxy_name: "edge-hmac".into(),
            code,
            plugin,
            nonce_store: None,
        }
    }

    /// The store's Service name in cluster DNS, which the proxies' Envoy
    /// cluster resolves (`<name>.<proxy namespace>.svc.cluster.local`).
    pub fn nonce_store_host(&self) -> String {
        format!(
            "{NONCE_STORE_NAME}.{}.svc.cluster.local",
            self.proxy_namespace
        )
    }

    /// The EnvoyProxy `bootstrap`: `type: Merge`, so Envoy Gateway parses
    /// its default bootstrap and this value as `Bootstrap` protos and
    /// `proto.Merge`s them (a repeated field such as `stats_config.stats_tags`
    /// or `static_resources.clusters` is appended to), then validates the
    /// result (docs/deploy.md). It adds the labels of the filter's metrics
    /// ([`StatsConfig::edge_hmac`]) and, with a nonce store, its cluster.
    pub fn proxy_bootstrap(&self) -> ProxyBootstrap {
        ProxyBootstrap {
            kind: "Merge",
            value: BootstrapMerge {
                stats_config: StatsConfig::edge_hmac(),
                layered_runtime: LayeredRuntime::edge_hmac(),
                static_resources: self.nonce_store_static(),
            },
        }
    }

    /// The store's cluster, for the proxies' bootstrap (`None` without a
    /// store).
    pub fn nonce_store_static(&self) -> Option<BootstrapStatic> {
        self.nonce_store.as_ref()?;
        let name = crate::render::envoy::NONCE_STORE_CLUSTER;
        Some(BootstrapStatic {
            clusters: vec![StoreCluster {
                name: name.into(),
                kind: "STRICT_DNS",
                connect_timeout: NONCE_STORE_CONNECT_TIMEOUT.into(),
                dns_lookup_family: "V4_PREFERRED",
                load_assignment: LoadAssignment {
                    cluster_name: name.into(),
                    endpoints: vec![LocalityEndpoints {
                        lb_endpoints: vec![LbEndpoint {
                            endpoint: Endpoint {
                                address: Address {
                                    socket_address: SocketAddress {
                                        address: self.nonce_store_host(),
                                        port_value: NONCE_STORE_PORT,
                                    },
                                },
                            },
                        }],
                    }],
                },
                typed_extension_protocol_options: UpstreamProtocolOptions {
                    http: UpstreamHttpOptions {
                        kind: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        explicit_http_config: ExplicitHttpConfig {
                            // h2c with prior knowledge, the windows of
                            // `render envoy`'s store cluster.
                            http2_protocol_options: Http2Options {
                                max_concurrent_streams: None,
                                initial_stream_window_size: 64 * 1024,
                                initial_connection_window_size: 1024 * 1024,
                            },
                        },
                    },
                },
            }],
        })
    }

    /// The store's objects (Service, Deployment, PodDisruptionBudget,
    /// NetworkPolicy), empty without [`GatewayOptions::nonce_store`].
    fn nonce_store_resources(&self) -> Vec<Resource> {
        let Some(store) = &self.nonce_store else {
            return Vec::new();
        };
        let selector: Labels = [(
            "app.kubernetes.io/name".to_owned(),
            NONCE_STORE_NAME.to_owned(),
        )]
        .into_iter()
        .collect();
        let metadata = || {
            let mut m = Metadata::namespaced(NONCE_STORE_NAME, &self.proxy_namespace);
            m.labels.extend(selector.clone());
            m.labels.insert(
                "app.kubernetes.io/component".into(),
                NONCE_STORE_COMPONENT.into(),
            );
            m
        };
        let port_name = "h2c";
        let http_probe = |path: &str, period: u32, failures: u32| Probe {
            http_get: HttpGetAction {
                path: path.into(),
                port: port_name.into(),
            },
            period_seconds: period,
            timeout_seconds: 1,
            failure_threshold: failures,
        };
        // Envoy Gateway's labels on the proxy pods of this Gateway
        // (internal/infrastructure/kubernetes/proxy/resource.go
        // EnvoyAppLabel, internal/gatewayapi/helpers.go GatewayOwnerLabels).
        let proxies: Labels = [
            ("app.kubernetes.io/name", "envoy"),
            ("app.kubernetes.io/component", "proxy"),
            (
                "gateway.envoyproxy.io/owning-gateway-name",
                self.gateway_name.as_str(),
            ),
            (
                "gateway.envoyproxy.io/owning-gateway-namespace",
                self.gateway_namespace.as_str(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let pod_labels = metadata().labels;
        vec![
            Resource::Service(Object {
                api_version: "v1",
                kind: "Service",
                metadata: metadata(),
                spec: Some(ServiceSpec {
                    kind: "ClusterIP".into(),
                    selector: selector.clone(),
                    ports: vec![ServicePort {
                        name: port_name.into(),
                        protocol: "TCP".into(),
                        // Cleartext HTTP/2 with prior knowledge: what the
                        // proxies' cluster speaks.
                        app_protocol: "kubernetes.io/h2c".into(),
                        port: NONCE_STORE_PORT,
                        target_port: port_name.into(),
                    }],
                }),
            }),
            Resource::Deployment(Object {
                api_version: "apps/v1",
                kind: "Deployment",
                metadata: metadata(),
                spec: Some(DeploymentSpec {
                    replicas: store.replicas,
                    selector: LabelSelector {
                        match_labels: selector.clone(),
                    },
                    template: PodTemplate {
                        metadata: PodMetadata { labels: pod_labels },
                        spec: PodSpec {
                            termination_grace_period_seconds: NONCE_STORE_TERMINATION_GRACE_SECONDS,
                            automount_service_account_token: false,
                            enable_service_links: false,
                            security_context: PodSecurityContext {
                                run_as_non_root: true,
                                run_as_user: 65532,
                                run_as_group: 65532,
                                seccomp_profile: SeccompProfile {
                                    kind: "RuntimeDefault".into(),
                                },
                            },
                            // One replica per node where the scheduler can.
                            topology_spread_constraints: vec![TopologySpread {
                                max_skew: 1,
                                topology_key: "kubernetes.io/hostname".into(),
                                when_unsatisfiable: "ScheduleAnyway".into(),
                                label_selector: LabelSelector {
                                    match_labels: selector.clone(),
                                },
                            }],
                            containers: vec![Container {
                                name: "nonce-store".into(),
                                image: store.image.clone(),
                                image_pull_policy: "IfNotPresent".into(),
                                command: [
                                    "edge-hmac",
                                    "nonce-store",
                                    "--listen",
                                    &format!("0.0.0.0:{NONCE_STORE_PORT}"),
                                    "--shutdown-grace-seconds",
                                    &crate::nonce_store::DEFAULT_SHUTDOWN_GRACE_SECONDS.to_string(),
                                ]
                                .map(str::to_owned)
                                .to_vec(),
                                ports: vec![ContainerPort {
                                    name: port_name.into(),
                                    container_port: NONCE_STORE_PORT,
                                    protocol: "TCP".into(),
                                }],
                                env: vec![EnvVar {
                                    name: crate::nonce_store::REDIS_URL_ENV.into(),
                                    value_from: EnvVarSource {
                                        secret_key_ref: SecretKeySelector {
                                            name: store.secret.clone(),
                                            key: NONCE_STORE_REDIS_URL_KEY.into(),
                                            optional: None,
                                        },
                                    },
                                }],
                                // /readyz probes Redis (up, primary, no
                                // eviction): an unready pod leaves the
                                // Service. /healthz never touches Redis, so
                                // a Redis outage restarts nothing.
                                readiness_probe: http_probe("/readyz", 5, 2),
                                liveness_probe: http_probe("/healthz", 10, 3),
                                resources: ResourceRequirements {
                                    requests: [("cpu", "50m"), ("memory", "32Mi")]
                                        .into_iter()
                                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                                        .collect(),
                                    limits: [("memory", "128Mi")]
                                        .into_iter()
                                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                                        .collect(),
                                },
                                security_context: ContainerSecurityContext {
                                    allow_privilege_escalation: false,
                                    read_only_root_filesystem: true,
                                    run_as_non_root: true,
                                    capabilities: Capabilities {
                                        drop: vec!["ALL".into()],
                                    },
                                },
                            }],
                        },
                    },
                }),
            }),
            Resource::PodDisruptionBudget(Object {
                api_version: "policy/v1",
                kind: "PodDisruptionBudget",
                metadata: metadata(),
                spec: Some(PdbSpec {
                    max_unavailable: 1,
                    selector: LabelSelector {
                        match_labels: selector.clone(),
                    },
                }),
            }),
            Resource::NetworkPolicy(Object {
                api_version: "networking.k8s.io/v1",
                kind: "NetworkPolicy",
                metadata: metadata(),
                spec: Some(NetworkPolicySpec {
                    pod_selector: LabelSelector {
                        match_labels: selector,
                    },
                    // Ingress only: the store's egress (Redis, DNS) is not
                    // restricted here.
                    policy_types: vec!["Ingress".into()],
                    ingress: vec![NetworkPolicyIngress {
                        from: vec![NetworkPolicyPeer {
                            pod_selector: LabelSelector {
                                match_labels: proxies,
                            },
                        }],
                        ports: vec![NetworkPolicyPort {
                            protocol: "TCP".into(),
                            port: NONCE_STORE_PORT,
                        }],
                    }],
                }),
            }),
        ]
    }

    /// Listener buffer limit the ClientTrafficPolicy sets: above the
    /// filter's `max_body_bytes` (Envoy Gateway's default is 32 KiB).
    pub fn buffer_limit_bytes(&self) -> u64 {
        buffer_limit_for(self.plugin.max_body_bytes)
    }

    /// The resources, in apply order.
    pub fn resources(&self) -> Vec<Resource> {
        let env = |name: &str, secret: &str, key: &str, optional: bool| EnvVar {
            name: name.into(),
            value_from: EnvVarSource {
                secret_key_ref: SecretKeySelector {
                    name: secret.into(),
                    key: key.into(),
                    optional: optional.then_some(true),
                },
            },
        };
        let target_gateway = vec![TargetRef {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            name: self.gateway_name.clone(),
        }];
        let data = |secret_key: &str, property: &str, version: Option<&str>| EsData {
            secret_key: secret_key.into(),
            remote_ref: RemoteRef {
                key: self.secret_id.clone(),
                property: property.into(),
                version: version.map(str::to_owned),
            },
        };
        let mut listeners = Vec::new();
        if self.plain_http {
            listeners.push(GatewayListener {
                name: "http".into(),
                protocol: "HTTP".into(),
                port: self.http_port,
                tls: None,
                allowed_routes: AllowedRoutes::all(),
            });
        }
        if let Some(cert) = &self.tls_certificate_secret {
            listeners.push(GatewayListener {
                name: "https".into(),
                protocol: "HTTPS".into(),
                port: self.https_port,
                tls: Some(GatewayTls {
                    mode: "Terminate".into(),
                    certificate_refs: vec![ObjectRef {
                        kind: "Secret".into(),
                        name: cert.clone(),
                    }],
                }),
                allowed_routes: AllowedRoutes::all(),
            });
        }
        let location = |url: &String, sha256: &Option<String>| CodeLocation {
            url: url.clone(),
            sha256: sha256.clone(),
        };
        let wasm_code = match &self.code {
            WasmCode::Http { url, sha256 } => Some(Code {
                kind: "HTTP".into(),
                http: Some(location(url, sha256)),
                image: None,
            }),
            WasmCode::Image { url, sha256 } => Some(Code {
                kind: "Image".into(),
                http: None,
                image: Some(location(url, sha256)),
            }),
            WasmCode::NativeLocal { .. } | WasmCode::NativeImage { .. } => None,
        };
        let local_module = |path: String| {
            vec![DynamicModuleEntry {
                name: NATIVE_MODULE_NAME.into(),
                source: DynamicModuleSource {
                    kind: "Local".into(),
                    local: LocalModule { path },
                },
            }]
        };
        let dynamic_modules = match &self.code {
            WasmCode::NativeLocal { path } => local_module(path.clone()),
            WasmCode::NativeImage { .. } => {
                local_module(format!("{MODULE_IMAGE_MOUNT}/{NATIVE_MODULE_FILE}"))
            }
            WasmCode::Http { .. } | WasmCode::Image { .. } => Vec::new(),
        };
        let (volumes, volume_mounts) = match &self.code {
            WasmCode::NativeImage { reference } => (
                Some(vec![PodVolume {
                    name: MODULE_VOLUME.into(),
                    image: ImageVolumeSource {
                        reference: reference.clone(),
                        pull_policy: "IfNotPresent".into(),
                    },
                }]),
                vec![VolumeMount {
                    name: MODULE_VOLUME.into(),
                    mount_path: MODULE_IMAGE_MOUNT.into(),
                    read_only: true,
                }],
            ),
            _ => (None, Vec::new()),
        };
        let plugin_json = serde_json::to_value(&self.plugin).unwrap_or(serde_json::Value::Null);
        let mut host_keys: Vec<String> = Vec::new();
        for key in [
            &self.plugin.hmac_secret_env,
            &self.plugin.hmac_secret_previous_env,
            &self.plugin.hmac_secret_pending_env,
            &self.plugin.environment_env,
        ] {
            if !host_keys.contains(key) {
                host_keys.push(key.clone());
            }
        }

        let [vap, vap_binding] = self.admission_policy();
        let store = self.nonce_store_resources();
        let mut resources = vec![
            Resource::Namespace(Object {
                api_version: "v1",
                kind: "Namespace",
                metadata: Metadata::cluster(&self.gateway_namespace),
                spec: None::<()>,
            }),
            vap,
            vap_binding,
            Resource::ClusterSecretStore(Object {
                api_version: "external-secrets.io/v1",
                kind: "ClusterSecretStore",
                metadata: Metadata::cluster(&self.store_name),
                spec: Some(StoreSpec {
                    // Only ExternalSecrets in the proxies' namespace may read
                    // through this store; without conditions any namespace
                    // could copy the edge key out.
                    conditions: vec![StoreCondition {
                        namespaces: vec![self.proxy_namespace.clone()],
                    }],
                    provider: StoreProvider {
                        aws: AwsProvider {
                            service: "SecretsManager".into(),
                            region: self.region.clone(),
                            auth: AwsAuth {
                                secret_ref: AwsSecretRef {
                                    access_key_id_secret_ref: SecretSelector {
                                        name: self.credentials_secret.clone(),
                                        namespace: self.credentials_namespace.clone(),
                                        key: self.access_key_id_key.clone(),
                                    },
                                    secret_access_key_secret_ref: SecretSelector {
                                        name: self.credentials_secret.clone(),
                                        namespace: self.credentials_namespace.clone(),
                                        key: self.secret_access_key_key.clone(),
                                    },
                                },
                            },
                        },
                    },
                }),
            }),
            self.external_secret(
                &self.target_secret,
                // Retain: a NoSecretErr (the current secret deleted or
                // renamed) fails the sync visibly (Ready=False) and keeps the
                // last good Secret, so running and restarting proxies keep
                // their key. (Merge would skip the keys and report Ready.)
                "Retain",
                vec![
                    data("hmac_secret", "hmac_secret", None),
                    data("environment", "environment", None),
                ],
            ),
            self.external_secret(
                &self.rotation_secret,
                // Merge: AWSPREVIOUS does not exist before the first
                // rotation and after it is retired, AWSPENDING only between
                // `rotate begin` and `rotate promote`; a missing one is left
                // out (the proxy's variable is optional) instead of failing.
                "Merge",
                vec![
                    data("hmac_secret_previous", "hmac_secret", Some("AWSPREVIOUS")),
                    data("hmac_secret_pending", "hmac_secret", Some("AWSPENDING")),
                ],
            ),
        ];
        // The store before the EnvoyProxy that makes the proxies call it.
        resources.extend(store);
        resources.extend([
            Resource::EnvoyProxy(Object {
                api_version: "gateway.envoyproxy.io/v1alpha1",
                kind: "EnvoyProxy",
                metadata: Metadata::namespaced(&self.envoy_proxy_name, &self.proxy_namespace),
                spec: Some(EnvoyProxySpec {
                    bootstrap: Some(self.proxy_bootstrap()),
                    dynamic_modules: dynamic_modules.clone(),
                    provider: ProxyProvider {
                        kind: "Kubernetes".into(),
                        kubernetes: ProxyKubernetes {
                            envoy_deployment: ProxyDeployment {
                                pod: volumes.map(|volumes| ProxyPod { volumes }),
                                container: ProxyContainer {
                                    volume_mounts,
                                    env: vec![
                                        env(
                                            &self.plugin.hmac_secret_env,
                                            &self.target_secret,
                                            "hmac_secret",
                                            false,
                                        ),
                                        env(
                                            &self.plugin.hmac_secret_previous_env,
                                            &self.rotation_secret,
                                            "hmac_secret_previous",
                                            true,
                                        ),
                                        env(
                                            &self.plugin.hmac_secret_pending_env,
                                            &self.rotation_secret,
                                            "hmac_secret_pending",
                                            true,
                                        ),
                                        env(
                                            &self.plugin.environment_env,
                                            &self.target_secret,
                                            "environment",
                                            false,
                                        ),
                                    ],
                                },
                            },
                        },
                    },
                }),
            }),
            Resource::GatewayClass(Object {
                api_version: "gateway.networking.k8s.io/v1",
                kind: "GatewayClass",
                metadata: Metadata::cluster(&self.gateway_class),
                spec: Some(GatewayClassSpec {
                    controller_name: "gateway.envoyproxy.io/gatewayclass-controller".into(),
                    parameters_ref: ParametersRef {
                        group: "gateway.envoyproxy.io".into(),
                        kind: "EnvoyProxy".into(),
                        name: self.envoy_proxy_name.clone(),
                        namespace: self.proxy_namespace.clone(),
                    },
                }),
            }),
            Resource::Gateway(Object {
                api_version: "gateway.networking.k8s.io/v1",
                kind: "Gateway",
                metadata: Metadata::namespaced(&self.gateway_name, &self.gateway_namespace),
                spec: Some(GatewaySpec {
                    gateway_class_name: self.gateway_class.clone(),
                    listeners,
                }),
            }),
            Resource::ClientTrafficPolicy(Object {
                api_version: "gateway.envoyproxy.io/v1alpha1",
                kind: "ClientTrafficPolicy",
                metadata: Metadata::namespaced(
                    &format!("{}-body-buffer", self.envoy_proxy_name),
                    &self.gateway_namespace,
                ),
                spec: Some(CtpSpec {
                    target_refs: target_gateway.clone(),
                    connection: CtpConnection {
                        buffer_limit: quantity(self.buffer_limit_bytes()),
                    },
                }),
            }),
            Resource::EnvoyExtensionPolicy(Object {
                api_version: "gateway.envoyproxy.io/v1alpha1",
                kind: "EnvoyExtensionPolicy",
                metadata: Metadata::namespaced(&self.envoy_proxy_name, &self.gateway_namespace),
                spec: Some(EepSpec {
                    target_refs: target_gateway,
                    wasm: wasm_code
                        .map(|code| Wasm {
                            name: "edge-hmac".into(),
                            code,
                            config: plugin_json.clone(),
                            fail_open: false,
                            env: WasmEnv { host_keys },
                        })
                        .into_iter()
                        .collect(),
                    // The native module: registered in the EnvoyProxy by
                    // name, its configuration the same JSON (EG hands it to
                    // the module as a string).
                    dynamic_module: dynamic_modules
                        .iter()
                        .map(|m| DynamicModule {
                            name: m.name.clone(),
                            filter_name: NATIVE_MODULE_NAME.into(),
                            config: plugin_json.clone(),
                        })
                        .collect(),
                }),
            }),
        ]);
        resources
    }

    fn external_secret(&self, secret: &str, deletion_policy: &str, data: Vec<EsData>) -> Resource {
        Resource::ExternalSecret(Object {
            api_version: "external-secrets.io/v1",
            kind: "ExternalSecret",
            metadata: Metadata::namespaced(secret, &self.proxy_namespace),
            spec: Some(EsSpec {
                refresh_interval: self.refresh_interval.clone(),
                secret_store_ref: StoreRef {
                    name: self.store_name.clone(),
                    kind: "ClusterSecretStore".into(),
                },
                target: EsTarget {
                    name: secret.into(),
                    creation_policy: "Owner".into(),
                    deletion_policy: deletion_policy.into(),
                },
                data,
            }),
        })
    }

    /// Name of the admission policy that keeps the filter on every route.
    pub fn admission_policy_name(&self) -> String {
        format!("{}-keep-signature-check", self.envoy_proxy_name)
    }

    /// The names the admission rules are about.
    pub fn edge_policy_names(&self) -> EdgePolicyNames {
        EdgePolicyNames {
            gateway_namespace: self.gateway_namespace.clone(),
            gateway_name: self.gateway_name.clone(),
            policy_name: self.envoy_proxy_name.clone(),
        }
    }

    /// The `ValidatingAdmissionPolicy` (and its binding) that refuses every
    /// EnvoyExtensionPolicy able to take the signature check off a route
    /// under the edge Gateway. In Envoy Gateway a more specific policy
    /// *replaces* a less specific one (route over listener over Gateway;
    /// no merging unless the route policy sets `mergeType`), and of two
    /// policies on one Gateway only the oldest applies. So, for any policy
    /// but the kit's own:
    /// - none may target the edge Gateway (whole or one listener);
    /// - none may select Gateways or ListenerSets by label, or target a
    ///   ListenerSet (which Gateway they land on is not visible here);
    /// - a policy on a route must set `mergeType` (it is then merged into
    ///   the Gateway's policy) and bring no `wasm` or `dynamicModule` list
    ///   (a merge replaces lists, which would drop the edge-hmac module,
    ///   whichever build it is).
    fn admission_policy(&self) -> [Resource; 2] {
        let validations = AdmissionRule::ALL
            .iter()
            .map(|rule| rule.validation(&self.edge_policy_names()))
            .collect();
        let name = self.admission_policy_name();
        [
            Resource::ValidatingAdmissionPolicy(Object {
                api_version: "admissionregistration.k8s.io/v1",
                kind: "ValidatingAdmissionPolicy",
                metadata: Metadata::cluster(&name),
                spec: Some(VapSpec {
                    failure_policy: "Fail".into(),
                    match_constraints: MatchConstraints {
                        resource_rules: vec![ResourceRule {
                            api_groups: vec!["gateway.envoyproxy.io".into()],
                            api_versions: vec!["*".into()],
                            operations: vec!["CREATE".into(), "UPDATE".into()],
                            resources: vec!["envoyextensionpolicies".into()],
                        }],
                    },
                    validations,
                }),
            }),
            Resource::ValidatingAdmissionPolicyBinding(Object {
                api_version: "admissionregistration.k8s.io/v1",
                kind: "ValidatingAdmissionPolicyBinding",
                metadata: Metadata::cluster(&name),
                spec: Some(VapBindingSpec {
                    policy_name: name.clone(),
                    validation_actions: vec!["Deny".into()],
                }),
            }),
        ]
    }

    /// The YAML stream, with a header naming the command that made it.
    pub fn to_yaml(&self, command: &str) -> Result<String, serde_norway::Error> {
        let mut out = format!(
            "# Envoy Gateway + External Secrets resources for the edge-hmac filter ({env}).\n\
             # Rendered by: {command}\n\
             # Do not edit by hand; re-render (see docs/deploy.md). No secret values in here:\n\
             # {secret} ({region}) -> ExternalSecrets -> Secrets {ns}/{target} (current)\n\
             # and {ns}/{rotation} (previous, pending) -> EnvoyProxy env -> {path}\n\
             # -> the filter. The admission policy keeps other extension policies from replacing it.\n",
            path = if self.code.is_native() {
                "the native module (dynamicModules)"
            } else {
                "EnvoyExtensionPolicy env.hostKeys"
            },
            env = self.environment,
            secret = self.secret_id,
            region = self.region,
            ns = self.proxy_namespace,
            target = self.target_secret,
            rotation = self.rotation_secret,
        );
        if let Some(store) = &self.nonce_store {
            out.push_str(&format!(
                "# Shared nonce store: Secret {ns}/{secret} (key {key}, created by you) ->\n\
                 # Deployment {ns}/{name} ({image}) <- Envoy cluster {cluster}\n\
                 # (EnvoyProxy bootstrap) <- the filter's nonce_store option. Apply the store first:\n\
                 #   kubectl apply -f FILE -l app.kubernetes.io/component={component}\n",
                ns = self.proxy_namespace,
                secret = store.secret,
                key = NONCE_STORE_REDIS_URL_KEY,
                name = NONCE_STORE_NAME,
                image = store.image,
                cluster = crate::render::envoy::NONCE_STORE_CLUSTER,
                component = NONCE_STORE_COMPONENT,
            ));
        }
        for r in self.resources() {
            out.push_str("---\n");
            out.push_str(&r.to_yaml()?);
        }
        Ok(out)
    }
}

/// A Kubernetes quantity for `bytes`: `NMi`, `NKi` or plain bytes.
pub fn quantity(bytes: u64) -> String {
    if bytes > 0 && bytes.is_multiple_of(1024 * 1024) {
        format!("{}Mi", bytes / (1024 * 1024))
    } else if bytes > 0 && bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// Bytes of a quantity written by [`quantity`] (or plain `Gi`/`k`/`M`).
pub fn parse_quantity(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// One rendered resource.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Resource {
    /// The Gateway's namespace.
    Namespace(Object<()>),
    /// AWS Secrets Manager store for ESO.
    ClusterSecretStore(Object<StoreSpec>),
    /// Refuses extension policies that would take the filter off a route.
    ValidatingAdmissionPolicy(Object<VapSpec>),
    /// Puts that policy in force (`Deny`).
    ValidatingAdmissionPolicyBinding(Object<VapBindingSpec>),
    /// Sync of the secret into `hmac-wasm-config` (and `-rotation`).
    ExternalSecret(Object<EsSpec>),
    /// Envoy container environment from the Secret.
    EnvoyProxy(Object<EnvoyProxySpec>),
    /// Class whose proxies use the EnvoyProxy.
    GatewayClass(Object<GatewayClassSpec>),
    /// The edge Gateway.
    Gateway(Object<GatewaySpec>),
    /// Listener buffer limit above `max_body_bytes`.
    ClientTrafficPolicy(Object<CtpSpec>),
    /// The wasm filter itself.
    EnvoyExtensionPolicy(Object<EepSpec>),
    /// The nonce store's Service.
    Service(Object<ServiceSpec>),
    /// The nonce store.
    Deployment(Object<DeploymentSpec>),
    /// Keeps one store replica up through voluntary disruptions.
    PodDisruptionBudget(Object<PdbSpec>),
    /// Only the edge proxies reach the store.
    NetworkPolicy(Object<NetworkPolicySpec>),
}

impl Resource {
    /// `kind` of the resource.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Namespace(o) => o.kind,
            Resource::ValidatingAdmissionPolicy(o) => o.kind,
            Resource::ValidatingAdmissionPolicyBinding(o) => o.kind,
            Resource::ClusterSecretStore(o) => o.kind,
            Resource::ExternalSecret(o) => o.kind,
            Resource::EnvoyProxy(o) => o.kind,
            Resource::GatewayClass(o) => o.kind,
            Resource::Gateway(o) => o.kind,
            Resource::ClientTrafficPolicy(o) => o.kind,
            Resource::EnvoyExtensionPolicy(o) => o.kind,
            Resource::Service(o) => o.kind,
            Resource::Deployment(o) => o.kind,
            Resource::PodDisruptionBudget(o) => o.kind,
            Resource::NetworkPolicy(o) => o.kind,
        }
    }

    fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(self)
    }
}

/// A Kubernetes object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S> {
    /// `apiVersion`.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<S>,
}

/// `metadata`.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// Name.
    pub name: String,
    /// Namespace (absent for cluster-scoped objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Metadata {
    fn cluster(name: &str) -> Self {
        Self {
            name: name.into(),
            namespace: None,
            labels: Self::labels(),
        }
    }

    pub(crate) fn namespaced(name: &str, namespace: &str) -> Self {
        Self {
            name: name.into(),
            namespace: Some(namespace.into()),
            labels: Self::labels(),
        }
    }

    fn labels() -> std::collections::BTreeMap<String, String> {
        [(
            "app.kubernetes.io/part-of".to_owned(),
            "edge-hmac".to_owned(),
        )]
        .into_iter()
        .collect()
    }
}

/// ValidatingAdmissionPolicy spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VapSpec {
    /// `Fail`: if the policy cannot be evaluated, the request is refused.
    pub failure_policy: String,
    /// Which requests it sees.
    pub match_constraints: MatchConstraints,
    /// CEL checks.
    pub validations: Vec<Validation>,
}

/// Match constraints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchConstraints {
    /// Resource rules.
    pub resource_rules: Vec<ResourceRule>,
}

/// One resource rule.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    /// API groups.
    pub api_groups: Vec<String>,
    /// API versions.
    pub api_versions: Vec<String>,
    /// Operations.
    pub operations: Vec<String>,
    /// Resources (plural).
    pub resources: Vec<String>,
}

/// One CEL validation.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// CEL expression that must be true.
    pub expression: String,
    /// What the user is told.
    pub message: String,
    /// Status reason.
    pub reason: &'static str,
}

/// ValidatingAdmissionPolicyBinding spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VapBindingSpec {
    /// The policy.
    pub policy_name: String,
    /// `Deny`.
    pub validation_actions: Vec<String>,
}

/// ClusterSecretStore spec.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSpec {
    /// Namespaces whose ExternalSecrets may use the store.
    pub conditions: Vec<StoreCondition>,
    /// Provider.
    pub provider: StoreProvider,
}

/// One `spec.conditions` entry of a ClusterSecretStore.
#[derive(Debug, Clone, Serialize)]
pub struct StoreCondition {
    /// Namespaces allowed.
    pub namespaces: Vec<String>,
}

/// Store provider.
#[derive(Debug, Clone, Serialize)]
pub struct StoreProvider {
    /// AWS.
    pub aws: AwsProvider,
}

/// AWS provider.
#[derive(Debug, Clone, Serialize)]
pub struct AwsProvider {
    /// `SecretsManager`.
    pub service: String,
    /// Region.
    pub region: String,
    /// Credentials.
    pub auth: AwsAuth,
}

/// AWS auth.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsAuth {
    /// Static credentials from a Secret.
    pub secret_ref: AwsSecretRef,
}

/// Static AWS credentials.
#[derive(Debug, Clone, Serialize)]
pub struct AwsSecretRef {
    /// Access key id.
    #[serde(rename = "accessKeyIDSecretRef")]
    pub access_key_id_secret_ref: SecretSelector,
    /// Secret access key.
    #[serde(rename = "secretAccessKeySecretRef")]
    pub secret_access_key_secret_ref: SecretSelector,
}

/// A key in a Secret in a namespace.
#[derive(Debug, Clone, Serialize)]
pub struct SecretSelector {
    /// Secret name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
}

/// ExternalSecret spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EsSpec {
    /// Re-read interval.
    pub refresh_interval: String,
    /// The store.
    pub secret_store_ref: StoreRef,
    /// The Secret written.
    pub target: EsTarget,
    /// Keys.
    pub data: Vec<EsData>,
}

/// Store reference.
#[derive(Debug, Clone, Serialize)]
pub struct StoreRef {
    /// Store name.
    pub name: String,
    /// `ClusterSecretStore`.
    pub kind: String,
}

/// Target Secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EsTarget {
    /// Secret name.
    pub name: String,
    /// Ownership.
    pub creation_policy: String,
    /// What happens when remote data is missing.
    pub deletion_policy: String,
}

/// One key of the target Secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EsData {
    /// Key in the Secret.
    pub secret_key: String,
    /// Where it comes from.
    pub remote_ref: RemoteRef,
}

/// Remote reference.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteRef {
    /// Secret id.
    pub key: String,
    /// JSON key inside the value.
    pub property: String,
    /// Version stage (`AWSPREVIOUS`); absent means AWSCURRENT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// EnvoyProxy spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyProxySpec {
    /// Additions to the proxies' Envoy bootstrap (the nonce store's cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<ProxyBootstrap>,
    /// Dynamic modules the proxies may load (the native module).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dynamic_modules: Vec<DynamicModuleEntry>,
    /// Provider.
    pub provider: ProxyProvider,
}

/// `EnvoyProxy.spec.bootstrap` with `type: Merge`.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyBootstrap {
    /// `Merge`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The bootstrap fragment, written as the YAML string EG expects.
    #[serde(serialize_with = "yaml_string")]
    pub value: BootstrapMerge,
}

/// Serializes `value` as a YAML document inside a string.
fn yaml_string<S: serde::Serializer>(value: &BootstrapMerge, s: S) -> Result<S::Ok, S::Error> {
    let text = serde_norway::to_string(value).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

/// The bootstrap fragment merged into Envoy Gateway's default one.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapMerge {
    /// The labels of the filter's metrics (appended to EG's own tags).
    pub stats_config: StatsConfig,
    /// The native module's Prometheus names (a layer after EG's own).
    pub layered_runtime: LayeredRuntime,
    /// Static resources (appended to EG's own), with a nonce store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_resources: Option<BootstrapStatic>,
}

/// `static_resources` of the fragment.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapStatic {
    /// Clusters added to EG's `xds_cluster` (and the others it renders).
    pub clusters: Vec<StoreCluster>,
}

/// The Envoy cluster the filter claims nonces through.
#[derive(Debug, Clone, Serialize)]
pub struct StoreCluster {
    /// [`crate::render::envoy::NONCE_STORE_CLUSTER`].
    pub name: String,
    /// `STRICT_DNS`: the Service's name, re-resolved by Envoy.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Connect timeout.
    pub connect_timeout: String,
    /// `V4_PREFERRED`.
    pub dns_lookup_family: &'static str,
    /// The Service's address.
    pub load_assignment: LoadAssignment,
    /// HTTP/2 cleartext.
    pub typed_extension_protocol_options: UpstreamProtocolOptions,
}

/// `v1` Service spec.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSpec {
    /// `ClusterIP`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The pods behind it.
    pub selector: Labels,
    /// Ports.
    pub ports: Vec<ServicePort>,
}

/// A Service port.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Name.
    pub name: String,
    /// `TCP`.
    pub protocol: String,
    /// `kubernetes.io/h2c`.
    pub app_protocol: String,
    /// Service port.
    pub port: u16,
    /// The container port's name.
    pub target_port: String,
}

/// `apps/v1` Deployment spec.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentSpec {
    /// Replicas.
    pub replicas: u16,
    /// Its pods.
    pub selector: LabelSelector,
    /// The pod template.
    pub template: PodTemplate,
}

/// A label selector by labels alone.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must all match.
    pub match_labels: Labels,
}

/// A pod template.
#[derive(Debug, Clone, Serialize)]
pub struct PodTemplate {
    /// Its labels.
    pub metadata: PodMetadata,
    /// The pod.
    pub spec: PodSpec,
}

/// A pod template's metadata.
#[derive(Debug, Clone, Serialize)]
pub struct PodMetadata {
    /// Labels.
    pub labels: Labels,
}

/// Pod spec (what the store needs).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Above the store's shutdown grace.
    pub termination_grace_period_seconds: u64,
    /// The store calls no Kubernetes API.
    pub automount_service_account_token: bool,
    /// No `*_SERVICE_HOST` variables.
    pub enable_service_links: bool,
    /// Non-root, seccomp.
    pub security_context: PodSecurityContext,
    /// Spread over nodes.
    pub topology_spread_constraints: Vec<TopologySpread>,
    /// The store.
    pub containers: Vec<Container>,
}

/// Pod security context.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    /// Refuse to run as root.
    pub run_as_non_root: bool,
    /// UID (distroless `nonroot`).
    pub run_as_user: u32,
    /// GID.
    pub run_as_group: u32,
    /// `RuntimeDefault`.
    pub seccomp_profile: SeccompProfile,
}

/// Seccomp profile.
#[derive(Debug, Clone, Serialize)]
pub struct SeccompProfile {
    /// `RuntimeDefault`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A topology spread constraint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologySpread {
    /// 1.
    pub max_skew: u32,
    /// `kubernetes.io/hostname`.
    pub topology_key: String,
    /// `ScheduleAnyway`: a preference.
    pub when_unsatisfiable: String,
    /// The store's pods.
    pub label_selector: LabelSelector,
}

/// A container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Name.
    pub name: String,
    /// Image, pinned by digest.
    pub image: String,
    /// `IfNotPresent`: a digest never changes.
    pub image_pull_policy: String,
    /// The command (overrides the image's entrypoint).
    pub command: Vec<String>,
    /// Ports.
    pub ports: Vec<ContainerPort>,
    /// Environment.
    pub env: Vec<EnvVar>,
    /// Readiness.
    pub readiness_probe: Probe,
    /// Liveness.
    pub liveness_probe: Probe,
    /// Requests and limits.
    pub resources: ResourceRequirements,
    /// Container security context.
    pub security_context: ContainerSecurityContext,
}

/// A container port.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Name.
    pub name: String,
    /// Port.
    pub container_port: u16,
    /// `TCP`.
    pub protocol: String,
}

/// An HTTP probe.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// The request.
    pub http_get: HttpGetAction,
    /// Seconds between probes.
    pub period_seconds: u32,
    /// Seconds a probe may take.
    pub timeout_seconds: u32,
    /// Failures in a row before it counts.
    pub failure_threshold: u32,
}

/// `GET path` on a named port.
#[derive(Debug, Clone, Serialize)]
pub struct HttpGetAction {
    /// Path.
    pub path: String,
    /// The container port's name.
    pub port: String,
}

/// Requests and limits.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceRequirements {
    /// Requests.
    pub requests: Labels,
    /// Limits.
    pub limits: Labels,
}

/// Container security context.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecurityContext {
    /// No setuid gains.
    pub allow_privilege_escalation: bool,
    /// The store writes no file.
    pub read_only_root_filesystem: bool,
    /// Refuse to run as root.
    pub run_as_non_root: bool,
    /// Capabilities.
    pub capabilities: Capabilities,
}

/// Capabilities dropped.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    /// `ALL`.
    pub drop: Vec<String>,
}

/// `policy/v1` PodDisruptionBudget spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// At most one replica evicted at a time.
    pub max_unavailable: u32,
    /// The store's pods.
    pub selector: LabelSelector,
}

/// `networking.k8s.io/v1` NetworkPolicy spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// The store's pods.
    pub pod_selector: LabelSelector,
    /// `Ingress` only.
    pub policy_types: Vec<String>,
    /// Who may connect.
    pub ingress: Vec<NetworkPolicyIngress>,
}

/// One ingress rule.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkPolicyIngress {
    /// Peers.
    pub from: Vec<NetworkPolicyPeer>,
    /// Ports.
    pub ports: Vec<NetworkPolicyPort>,
}

/// Pods in the policy's namespace, by labels.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPeer {
    /// Their labels.
    pub pod_selector: LabelSelector,
}

/// A port.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkPolicyPort {
    /// `TCP`.
    pub protocol: String,
    /// Port.
    pub port: u16,
}

/// The name of the native module in Envoy Gateway (`EnvoyProxy`
/// `dynamicModules[].name`, which allows no `_`) and its filter.
pub const NATIVE_MODULE_NAME: &str = "edge-hmac";

/// The native module's file name (`make module` builds it; an image for
/// `--module-image` holds it at its root).
pub const NATIVE_MODULE_FILE: &str = "libedge-hmac.so";

/// `EnvoyProxy.spec.dynamicModules[]`.
#[derive(Debug, Clone, Serialize)]
pub struct DynamicModuleEntry {
    /// Name policies refer to.
    pub name: String,
    /// Where the `.so` comes from.
    pub source: DynamicModuleSource,
}

/// A dynamic module's source (always `Local`: Envoy loads a `Remote` one
/// fail-open).
#[derive(Debug, Clone, Serialize)]
pub struct DynamicModuleSource {
    /// `Local`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A path on the proxy.
    pub local: LocalModule,
}

/// `source.local`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalModule {
    /// Absolute path.
    pub path: String,
}

/// `EnvoyExtensionPolicy.spec.dynamicModule[]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicModule {
    /// The registered module.
    pub name: String,
    /// Its filter.
    pub filter_name: String,
    /// The filter's configuration.
    pub config: serde_json::Value,
}

/// Proxy provider.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyProvider {
    /// `Kubernetes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Kubernetes settings.
    pub kubernetes: ProxyKubernetes,
}

/// Kubernetes provider settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyKubernetes {
    /// The Envoy Deployment.
    pub envoy_deployment: ProxyDeployment,
}

/// Envoy Deployment settings.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyDeployment {
    /// Pod settings (the native module's image volume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<ProxyPod>,
    /// The `envoy` container.
    pub container: ProxyContainer,
}

/// Pod settings of the proxy Deployment.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyPod {
    /// Extra volumes.
    pub volumes: Vec<PodVolume>,
}

/// An image volume (`core/v1` `Volume` with `image`).
#[derive(Debug, Clone, Serialize)]
pub struct PodVolume {
    /// Volume name.
    pub name: String,
    /// The OCI image mounted read-only.
    pub image: ImageVolumeSource,
}

/// `ImageVolumeSource`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVolumeSource {
    /// Image reference, pinned by digest.
    pub reference: String,
    /// `IfNotPresent`: a digest never changes.
    pub pull_policy: String,
}

/// A volume mount of the `envoy` container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume.
    pub name: String,
    /// Where in the container.
    pub mount_path: String,
    /// Always read-only.
    pub read_only: bool,
}

/// The `envoy` container.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyContainer {
    /// Extra volume mounts (the native module's image).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Extra environment.
    pub env: Vec<EnvVar>,
}

/// A container environment variable from a Secret key.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Source.
    pub value_from: EnvVarSource,
}

/// Source of an environment variable.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// The Secret key.
    pub secret_key_ref: SecretKeySelector,
}

/// A key of a Secret in the pod's namespace.
#[derive(Debug, Clone, Serialize)]
pub struct SecretKeySelector {
    /// Secret name.
    pub name: String,
    /// Key.
    pub key: String,
    /// Start the pod even when the key is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// GatewayClass spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// Envoy Gateway's controller.
    pub controller_name: String,
    /// The EnvoyProxy.
    pub parameters_ref: ParametersRef,
}

/// GatewayClass parameters reference.
#[derive(Debug, Clone, Serialize)]
pub struct ParametersRef {
    /// `gateway.envoyproxy.io`.
    pub group: String,
    /// `EnvoyProxy`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (Envoy Gateway falls back to `default` without it).
    pub namespace: String,
}

/// Gateway spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Class.
    pub gateway_class_name: String,
    /// Listeners.
    pub listeners: Vec<GatewayListener>,
}

/// Gateway listener.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayListener {
    /// Name.
    pub name: String,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// Port.
    pub port: u16,
    /// TLS settings for HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTls>,
    /// Which routes may attach.
    pub allowed_routes: AllowedRoutes,
}

/// Listener TLS.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTls {
    /// `Terminate`.
    pub mode: String,
    /// Certificates.
    pub certificate_refs: Vec<ObjectRef>,
}

/// A local object reference.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectRef {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// Allowed routes.
#[derive(Debug, Clone, Serialize)]
pub struct AllowedRoutes {
    /// Namespaces.
    pub namespaces: RouteNamespaces,
}

impl AllowedRoutes {
    fn all() -> Self {
        Self {
            namespaces: RouteNamespaces { from: "All".into() },
        }
    }
}

/// Route namespaces.
#[derive(Debug, Clone, Serialize)]
pub struct RouteNamespaces {
    /// `All`.
    pub from: String,
}

/// A policy target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRef {
    /// Group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}

/// ClientTrafficPolicy spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CtpSpec {
    /// Targets.
    pub target_refs: Vec<TargetRef>,
    /// Connection settings.
    pub connection: CtpConnection,
}

/// Connection settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CtpConnection {
    /// Per-connection buffer limit (quantity).
    pub buffer_limit: String,
}

/// EnvoyExtensionPolicy spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EepSpec {
    /// Targets.
    pub target_refs: Vec<TargetRef>,
    /// Wasm extensions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wasm: Vec<Wasm>,
    /// Dynamic-module extensions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dynamic_module: Vec<DynamicModule>,
}

/// One wasm extension.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wasm {
    /// Name.
    pub name: String,
    /// Module location.
    pub code: Code,
    /// Plugin configuration (passed to the filter as JSON).
    pub config: serde_json::Value,
    /// Fail closed.
    pub fail_open: bool,
    /// Host environment passed into the VM.
    pub env: WasmEnv,
}

/// Module location.
#[derive(Debug, Clone, Serialize)]
pub struct Code {
    /// `HTTP` or `Image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// HTTP location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<CodeLocation>,
    /// OCI image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<CodeLocation>,
}

/// URL and checksum.
#[derive(Debug, Clone, Serialize)]
pub struct CodeLocation {
    /// URL or image reference.
    pub url: String,
    /// SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Wasm VM environment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmEnv {
    /// Host variables visible in the VM.
    pub host_keys: Vec<String>,
}

/// The checked-in copy: `envoy/gateway/edge-hmac-dev.yaml`.
pub const CHECKED_IN_PATH: &str = "envoy/gateway/edge-hmac-dev.yaml";
/// The arguments that render the checked-in copy (an example image, pinned
/// by digest as the renderer requires).
pub const CHECKED_IN_ARGS: &str = "--env dev --wasm-image registry.example.com/crawbl/edge-hmac-filter@sha256:5f0c4be3a3a2c4a2d5e9f0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1";

#[cfg(test)]
mod tests {
    use super::*;

    fn with_store() -> GatewayOptions {
        let mut o = GatewayOptions::new(
            "dev",
            WasmCode::Image {
                url: format!("r.example.com/f@sha256:{}", "a".repeat(64)),
                sha256: None,
            },
            PluginConfig::default(),
        );
        o.nonce_store = Some(NonceStoreDeployment {
            secret: "redis".into(),
            image: format!("r.example.com/edge-hmac@sha256:{}", "b".repeat(64)),
            replicas: 2,
        });
        o
    }

    /// The store is opt-in: without it nothing changes; with it its four
    /// objects come before the EnvoyProxy, whose bootstrap merges the
    /// cluster the filter calls.
    #[test]
    fn nonce_store_is_opt_in_and_applied_before_the_proxies() {
        let mut o = with_store();
        let kinds = |o: &GatewayOptions| -> Vec<&'static str> {
            o.resources().iter().map(Resource::kind).collect()
        };
        let all = kinds(&o);
        let at = |k: &str| all.iter().position(|x| *x == k).unwrap();
        for k in [
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ] {
            assert!(at(k) < at("EnvoyProxy"), "{k}: {all:?}");
        }
        let bootstrap = o.proxy_bootstrap();
        let value = serde_norway::to_string(&bootstrap.value).unwrap();
        let parsed: serde_json::Value = serde_norway::from_str(&value).unwrap();
        let cluster = &parsed["static_resources"]["clusters"][0];
        assert_eq!(cluster["name"], crate::render::envoy::NONCE_STORE_CLUSTER);
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["address"],
            "edge-hmac-nonce-store.envoy-gateway-system.svc.cluster.local"
        );
        o.nonce_store = None;
        assert_eq!(kinds(&o).len(), all.len() - 4);
        assert!(o.nonce_store_static().is_none());
        let yaml = o.to_yaml("x").unwrap();
        assert!(!yaml.contains("nonce-store") && !yaml.contains("nonce_store"));
    }

    /// Quantities round-trip and match the CRD pattern's forms.
    #[test]
    fn quantities() {
        assert_eq!(quantity(1024 * 1024 + 64 * 1024), "1088Ki");
        assert_eq!(quantity(4 * 1024 * 1024), "4Mi");
        assert_eq!(quantity(1000), "1000");
        for b in [1_114_112u64, 4 << 20, 1000, 32768] {
            assert_eq!(parse_quantity(&quantity(b)), Some(b));
        }
        assert_eq!(parse_quantity("2x"), None);
    }
}
