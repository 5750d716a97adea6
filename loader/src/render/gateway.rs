//! The cluster resources that put the filter at the Envoy Gateway edge, with
//! the secret flowing AWS Secrets Manager → External Secrets Operator →
//! Secret `hmac-wasm-config` → Envoy container environment → the filter (the
//! wasm VM through `env.hostKeys`, or the native module, which reads the
//! process environment itself).
//!
//! Rendered from Rust types into one multi-document YAML stream for
//! `kubectl apply -f`. Manifests carry references to secrets only.

use edge_hmac_core::config::PluginConfig;
use serde::Serialize;

use edge_hmac_core::config::buffer_limit_for;

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
}

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
            target_secret: "hmac-wasm-config".into(),
            rotation_secret: "hmac-wasm-config-rotation".into(),
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
        }
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
        vec![
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
            Resource::EnvoyProxy(Object {
                api_version: "gateway.envoyproxy.io/v1alpha1",
                kind: "EnvoyProxy",
                metadata: Metadata::namespaced(&self.envoy_proxy_name, &self.proxy_namespace),
                spec: Some(EnvoyProxySpec {
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
        ]
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
        const ROUTES: &str = "['HTTPRoute', 'GRPCRoute', 'TCPRoute', 'TLSRoute', 'UDPRoute']";
        // Whether any targetRef / targetRefs entry satisfies `pred` (about `r`).
        let any_ref = |pred: &str| {
            format!(
                "((has(object.spec.targetRef) && [object.spec.targetRef].exists(r, {pred})) || \
                 (has(object.spec.targetRefs) && object.spec.targetRefs.exists(r, {pred})))"
            )
        };
        let any_selector = |pred: &str| {
            format!(
                "(has(object.spec.targetSelectors) && object.spec.targetSelectors.exists(r, {pred}))"
            )
        };
        let is_kit = format!(
            "(object.metadata.namespace == '{ns}' && object.metadata.name == '{name}')",
            ns = self.gateway_namespace,
            name = self.envoy_proxy_name
        );
        let gw = format!("{}/{}", self.gateway_namespace, self.gateway_name);
        let kit = format!("{}/{}", self.gateway_namespace, self.envoy_proxy_name);
        let validations = vec![
            Validation {
                expression: format!(
                    "{is_kit} || object.metadata.namespace != '{ns}' || !{refs}",
                    ns = self.gateway_namespace,
                    refs = any_ref(&format!(
                        "r.kind == 'Gateway' && r.name == '{}'",
                        self.gateway_name
                    )),
                ),
                message: format!(
                    "only the EnvoyExtensionPolicy {kit} may target the edge Gateway {gw}: a second Gateway policy is Conflicted (only the oldest applies) and a listener policy replaces the edge-hmac signature check on that listener. Add your extension to {kit} instead."
                ),
                reason: "Forbidden",
            },
            Validation {
                expression: format!(
                    "{is_kit} || !({sel} || {refs})",
                    sel = any_selector("r.kind in ['Gateway', 'ListenerSet']"),
                    refs = any_ref("r.kind == 'ListenerSet'"),
                ),
                message: format!(
                    "EnvoyExtensionPolicies may not select Gateways or ListenerSets by label, nor target a ListenerSet: one could land on the edge Gateway {gw} and replace its edge-hmac signature check. Target a Gateway by name, or a route with mergeType."
                ),
                reason: "Forbidden",
            },
            Validation {
                expression: format!(
                    "{is_kit} || !({refs} || {sel}) || (has(object.spec.mergeType) && (!has(object.spec.wasm) || size(object.spec.wasm) == 0) && (!has(object.spec.dynamicModule) || size(object.spec.dynamicModule) == 0))",
                    refs = any_ref(&format!("r.kind in {ROUTES}")),
                    sel = any_selector(&format!("r.kind in {ROUTES}")),
                ),
                message: format!(
                    "an EnvoyExtensionPolicy on a route replaces the edge Gateway's edge-hmac signature check for that route unless it sets spec.mergeType (StrategicMerge or JSONMerge), and a merged policy may not carry a wasm or dynamicModule list (it would replace the edge-hmac module). Set mergeType, and put wasm and dynamic modules into {kit}."
                ),
                reason: "Forbidden",
            },
        ];
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

    fn namespaced(name: &str, namespace: &str) -> Self {
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
    /// Dynamic modules the proxies may load (the native module).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dynamic_modules: Vec<DynamicModuleEntry>,
    /// Provider.
    pub provider: ProxyProvider,
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
