//! The External Secrets and Envoy Gateway groups, read through the
//! Kubernetes API (`kube`, with dynamic objects for the CRDs). Only `get`
//! and `list`; `render check-rbac` emits exactly the access used here.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::check::judge::{self, Build, Route};
use crate::check::sm::SmFacts;
use crate::check::{Check, CheckArgs, Group, Status, Target, doc};
use crate::render::admission::AdmissionRule;

/// The API server, or why it cannot be used.
pub type Kube = std::result::Result<Client, String>;

/// A client from the kubeconfig as `kubectl` finds it (or `--kubeconfig`,
/// `--context`), else the in-cluster service account.
pub async fn connect(args: &CheckArgs, timeout: Duration) -> Kube {
    let opts = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = if let Some(path) = &args.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| format!("cannot read --kubeconfig {}: {e}", path.display()))?;
        Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
    } else if args.context.is_some() {
        Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| format!("kubeconfig: {e}"))?
    } else {
        Config::infer()
            .await
            .map_err(|e| format!("no kubeconfig and not in a cluster: {e}"))?
    };
    let mut config = config;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Client::try_from(config).map_err(|e| format!("cannot build a Kubernetes client: {e}"))
}

/// A custom resource type.
struct Kind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
}

const GATEWAY_CLASS: Kind = Kind {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "GatewayClass",
    plural: "gatewayclasses",
};
const GATEWAY: Kind = Kind {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "Gateway",
    plural: "gateways",
};
const HTTP_ROUTE: Kind = Kind {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "HTTPRoute",
    plural: "httproutes",
};
const GRPC_ROUTE: Kind = Kind {
    group: "gateway.networking.k8s.io",
    version: "v1",
    kind: "GRPCRoute",
    plural: "grpcroutes",
};
const EEP: Kind = Kind {
    group: "gateway.envoyproxy.io",
    version: "v1alpha1",
    kind: "EnvoyExtensionPolicy",
    plural: "envoyextensionpolicies",
};
const CTP: Kind = Kind {
    group: "gateway.envoyproxy.io",
    version: "v1alpha1",
    kind: "ClientTrafficPolicy",
    plural: "clienttrafficpolicies",
};
const ENVOY_PROXY: Kind = Kind {
    group: "gateway.envoyproxy.io",
    version: "v1alpha1",
    kind: "EnvoyProxy",
    plural: "envoyproxies",
};
const STORE: Kind = Kind {
    group: "external-secrets.io",
    version: "v1",
    kind: "ClusterSecretStore",
    plural: "clustersecretstores",
};
const EXTERNAL_SECRET: Kind = Kind {
    group: "external-secrets.io",
    version: "v1",
    kind: "ExternalSecret",
    plural: "externalsecrets",
};
const VAP: Kind = Kind {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "ValidatingAdmissionPolicy",
    plural: "validatingadmissionpolicies",
};
const VAP_BINDING: Kind = Kind {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "ValidatingAdmissionPolicyBinding",
    plural: "validatingadmissionpolicybindings",
};

impl Kind {
    fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

/// Why a read gave nothing to judge: the object is missing (a finding) or
/// the read failed (unknown).
#[derive(Debug)]
pub enum ReadError {
    /// 404.
    Missing,
    /// Anything else: no access, timeout, no such API.
    Failed(String),
}

fn read_error(e: kube::Error, what: &str) -> ReadError {
    match e {
        kube::Error::Api(s) if s.code == 404 => ReadError::Missing,
        kube::Error::Api(s) if s.code == 403 => ReadError::Failed(format!(
            "no access to {what} ({}): apply `edge-hmac render check-rbac` for the identity check runs as",
            s.message
        )),
        other => ReadError::Failed(format!("cannot read {what}: {other}")),
    }
}

async fn get(
    client: &Client,
    kind: &Kind,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ReadError> {
    let ar = kind.resource();
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let what = match ns {
        Some(ns) => format!("{} {ns}/{name}", kind.kind),
        None => format!("{} {name}", kind.kind),
    };
    let obj = api.get(name).await.map_err(|e| read_error(e, &what))?;
    serde_json::to_value(obj).map_err(|e| ReadError::Failed(format!("{what}: {e}")))
}

async fn list(client: &Client, kind: &Kind, ns: Option<&str>) -> Result<Vec<Value>, ReadError> {
    let ar = kind.resource();
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let what = format!("{} objects", kind.kind);
    let objs = api
        .list(&ListParams::default())
        .await
        .map_err(|e| read_error(e, &what))?;
    objs.items
        .into_iter()
        .map(|o| serde_json::to_value(o).map_err(|e| ReadError::Failed(format!("{what}: {e}"))))
        .collect()
}

async fn secret(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = api
        .get(name)
        .await
        .map_err(|e| read_error(e, &format!("Secret {ns}/{name}")))?;
    Ok(s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// What the cluster said, for the other groups.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// Checks made.
    pub checks: Vec<Check>,
    /// Fingerprint of `hmac_secret` in the current-key Secret (`None`: not
    /// read); and its `environment`.
    pub current: Option<(String, String)>,
    /// Fingerprints in the rotation Secret, by key (`hmac_secret_previous`,
    /// `hmac_secret_pending`), when it was read (absent Secret: empty).
    pub rotation: Option<BTreeMap<String, String>>,
    /// The kit's entry in its policy (build, index in its list), when
    /// it was read.
    pub entry: Option<(Build, usize)>,
    /// The EnvoyProxy the Gateway runs with (`namespace`, `name`): the
    /// Gateway's `infrastructure.parametersRef`, else its class's.
    pub envoy_proxy: Option<(String, String)>,
    /// The kit policy's `max_body_bytes`.
    pub max_body_bytes: Option<u64>,
}

fn unknown(group: Group, name: &str, why: String) -> Check {
    Check::new(group, name, Status::Unknown, why).fix(
        "could not check: see the message (access, network), then run check again",
        doc::CHECK,
    )
}

/// `Missing` as a failure with `hint`, `Failed` as unknown.
fn read_failed(
    group: Group,
    name: &str,
    e: ReadError,
    missing: String,
    hint: &str,
    d: &'static str,
) -> Check {
    match e {
        ReadError::Missing => Check::new(group, name, Status::Fail, missing).fix(hint, d),
        ReadError::Failed(why) => unknown(group, name, why),
    }
}

/// The External Secrets and Envoy Gateway checks.
pub async fn run(kube: &Kube, t: &Target, args: &CheckArgs) -> ClusterFacts {
    let mut f = ClusterFacts::default();
    // One probe first: an unreachable API server is one finding per group,
    // not a timeout per object.
    let reachable = match kube {
        Ok(c) => match c.apiserver_version().await {
            Ok(_) => Ok(c),
            Err(e) => Err(format!("the API server does not answer: {e}")),
        },
        Err(why) => Err(why.clone()),
    };
    let client = match reachable {
        Ok(c) => c,
        Err(why) => {
            for (g, name) in [
                (Group::ExternalSecrets, "api-server"),
                (Group::EnvoyGateway, "api-server"),
            ] {
                f.checks.push(
                    Check::new(g, name, Status::Unknown, why.clone())
                        .fix("could not reach the API server: pass --kubeconfig/--context, or check the cluster is up", doc::CHECK),
                );
            }
            return f;
        }
    };
    external_secrets(client, t, &mut f).await;
    envoy_gateway(client, t, args, &mut f).await;
    f
}

async fn external_secrets(client: &Client, t: &Target, f: &mut ClusterFacts) {
    let g = Group::ExternalSecrets;
    // The store: Ready, and only the proxies' namespace may use it.
    match get(client, &STORE, None, &t.store_name).await {
        Ok(store) => {
            let ready = judge::condition(&store, "Ready");
            let conds = store["spec"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let only_proxies = !conds.is_empty()
                && conds.iter().all(|c| {
                    c["namespaceSelector"].is_null()
                        && c["namespaceRegexes"].is_null()
                        && c["namespaces"].as_array().is_some_and(|n| {
                            !n.is_empty()
                                && n.iter()
                                    .all(|n| n.as_str() == Some(t.proxy_namespace.as_str()))
                        })
                });
            let check = match (ready, only_proxies) {
                (Some(c), true) if c.is_true() => Check::ok(
                    g,
                    "store",
                    format!("ClusterSecretStore {} is Ready and serves only namespace {}", t.store_name, t.proxy_namespace),
                ),
                (Some(c), _) if !c.is_true() => Check::new(g, "store", Status::Fail, format!("ClusterSecretStore {} is not Ready: {}", t.store_name, c.describe()))
                    .fix("ESO cannot reach Secrets Manager with the bootstrap credential: check the aws-credentials Secret and the store's region", doc::APPLY),
                (None, _) => Check::new(g, "store", Status::Unknown, format!("ClusterSecretStore {} has no Ready condition: is the External Secrets Operator running?", t.store_name))
                    .fix("start ESO, or wait for it to validate the store", doc::APPLY),
                _ => Check::new(g, "store", Status::Fail, format!("ClusterSecretStore {} is Ready but not restricted to namespace {}: any namespace may read the edge key through it", t.store_name, t.proxy_namespace))
                    .fix("re-apply the store as `render gateway` renders it (spec.conditions[].namespaces)", doc::APPLY),
            };
            f.checks.push(check);
        }
        Err(e) => f.checks.push(read_failed(
            g,
            "store",
            e,
            format!("ClusterSecretStore {} does not exist", t.store_name),
            "apply the kit (`edge-hmac render gateway`)",
            doc::APPLY,
        )),
    }
    for (name, secret_name) in [
        ("external-secret-current", &t.target_secret),
        ("external-secret-rotation", &t.rotation_secret),
    ] {
        match get(
            client,
            &EXTERNAL_SECRET,
            Some(&t.proxy_namespace),
            secret_name,
        )
        .await
        {
            Ok(es) => {
                let synced = es["status"]["refreshTime"].as_str().unwrap_or("never");
                let check = match judge::condition(&es, "Ready") {
                    Some(c) if c.is_true() => Check::ok(g, name, format!("ExternalSecret {}/{secret_name} is Ready, last synced {synced}", t.proxy_namespace)),
                    Some(c) => Check::new(g, name, Status::Fail, format!("ExternalSecret {}/{secret_name} is not Ready ({}), last synced {synced}", t.proxy_namespace, c.describe()))
                        .fix("the Secret keeps its last value (Retain/Merge); fix the cause in Secrets Manager or the store, then force-sync", doc::ROTATION),
                    None => Check::new(g, name, Status::Unknown, format!("ExternalSecret {}/{secret_name} has no Ready condition yet", t.proxy_namespace))
                        .fix("is the External Secrets Operator running?", doc::APPLY),
                };
                f.checks.push(check);
            }
            Err(e) => f.checks.push(read_failed(
                g,
                name,
                e,
                format!(
                    "ExternalSecret {}/{secret_name} does not exist",
                    t.proxy_namespace
                ),
                "apply the kit (`edge-hmac render gateway`)",
                doc::APPLY,
            )),
        }
    }
    // The Secrets themselves (fingerprints only; the values stay here).
    match secret(client, &t.proxy_namespace, &t.target_secret).await {
        Ok(data) => {
            let key = data
                .get("hmac_secret")
                .map(|v| edge_hmac_core::scheme::fingerprint(v));
            let env = data
                .get("environment")
                .map(|v| String::from_utf8_lossy(v).into_owned());
            f.current = key.zip(env);
        }
        Err(ReadError::Missing) => f.current = None,
        Err(ReadError::Failed(why)) => f.checks.push(unknown(g, "secret-current", why)),
    }
    match secret(client, &t.proxy_namespace, &t.rotation_secret).await {
        Ok(data) => {
            f.rotation = Some(
                data.iter()
                    .map(|(k, v)| (k.clone(), edge_hmac_core::scheme::fingerprint(v)))
                    .collect(),
            );
        }
        Err(ReadError::Missing) => f.rotation = Some(BTreeMap::new()),
        Err(ReadError::Failed(why)) => f.checks.push(unknown(g, "secret-rotation", why)),
    }
}

/// The Secrets ESO wrote against the Secrets Manager versions they should
/// mirror: a rotation without a force-sync shows here.
pub fn mirrors(t: &Target, sm: &SmFacts, c: &ClusterFacts) -> Vec<Check> {
    let g = Group::ExternalSecrets;
    let mut out = Vec::new();
    let ns = &t.proxy_namespace;
    if c.checks.iter().any(|k| k.name == "api-server") {
        return out;
    }
    let cannot = |name: &str, why: &str| {
        Check::new(g, name, Status::Unknown, why.to_owned())
            .fix("fix the check this depends on first", doc::CHECK)
    };
    // Current key.
    if !c.checks.iter().any(|k| k.name == "secret-current") {
        out.push(match (&c.current, &sm.current) {
            (None, _) => Check::new(g, "secret-current", Status::Fail, format!("Secret {ns}/{} does not exist or lacks hmac_secret/environment: a proxy pod cannot start", t.target_secret))
                .fix("check the ExternalSecret's status and force-sync it", doc::ROTATION),
            (Some(_), None) => cannot("secret-current", "Secrets Manager's AWSCURRENT could not be read: nothing to compare with"),
            (Some((fp, env)), Some(want)) if fp == want => {
                match &t.environment {
                    Some(e) if e != env => Check::new(g, "secret-current", Status::Fail, format!(
                        "Secret {ns}/{} holds environment {}, expected {e:?}",
                        t.target_secret,
                        // Shown only when it is a valid environment name: a
                        // key stored under the wrong name is never echoed.
                        if edge_hmac_core::scheme::validate_environment(env).is_ok() { format!("{env:?}") } else { "(an invalid value, not shown)".to_owned() }
                    ))
                        .fix("the Secrets Manager value's environment is wrong: fix it and force-sync", doc::SECRET),
                    _ => Check::ok(g, "secret-current", format!("Secret {ns}/{} holds AWSCURRENT ({fp})", t.target_secret)),
                }
            }
            (Some((fp, _)), Some(want)) => Check::new(g, "secret-current", Status::Fail, format!("Secret {ns}/{} holds {fp}, but AWSCURRENT is {want}: the ExternalSecret has not synced since Secrets Manager changed", t.target_secret))
                .fix(format!("kubectl -n {ns} annotate externalsecret {} force-sync=$(date +%s) --overwrite, then restart the proxies", t.target_secret), doc::ROTATION),
        });
    }
    if !c.checks.iter().any(|k| k.name == "secret-rotation") {
        let Some(held) = &c.rotation else {
            return out;
        };
        let mut wrong = Vec::new();
        let mut seen = Vec::new();
        let mut unknown_stage = false;
        for (key, stage, want) in [
            ("hmac_secret_previous", "AWSPREVIOUS", &sm.previous),
            ("hmac_secret_pending", "AWSPENDING", &sm.pending),
        ] {
            let have = held.get(key);
            match want {
                None => unknown_stage = true,
                Some(want) if want.as_ref() == have => seen.push(format!(
                    "{key} {}",
                    have.map(String::as_str).unwrap_or("absent")
                )),
                Some(want) => wrong.push(format!(
                    "{key} is {} but {stage} is {}",
                    have.map(String::as_str).unwrap_or("absent"),
                    want.as_deref().unwrap_or("absent")
                )),
            }
        }
        out.push(if !wrong.is_empty() {
            Check::new(g, "secret-rotation", Status::Fail, format!("Secret {ns}/{}: {}", t.rotation_secret, wrong.join("; ")))
                .fix(format!("kubectl -n {ns} annotate externalsecret {} force-sync=$(date +%s) --overwrite, then restart the proxies", t.rotation_secret), doc::ROTATION)
        } else if unknown_stage {
            cannot("secret-rotation", "Secrets Manager's AWSPREVIOUS/AWSPENDING could not be read: nothing to compare with")
        } else {
            Check::ok(g, "secret-rotation", format!("Secret {ns}/{} mirrors Secrets Manager: {}", t.rotation_secret, seen.join(", ")))
        });
    }
    out
}

async fn envoy_gateway(client: &Client, t: &Target, args: &CheckArgs, f: &mut ClusterFacts) {
    let g = Group::EnvoyGateway;
    let n = &t.names;
    let gw_id = format!("{}/{}", n.gateway_namespace, n.gateway_name);
    // Gateway and its class.
    let gateway = get(
        client,
        &GATEWAY,
        Some(&n.gateway_namespace),
        &n.gateway_name,
    )
    .await;
    match &gateway {
        Ok(gw) => {
            let class = gw["spec"]["gatewayClassName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let infra = &gw["spec"]["infrastructure"]["parametersRef"];
            if infra["kind"] == "EnvoyProxy"
                && let Some(name) = infra["name"].as_str()
            {
                f.envoy_proxy = Some((n.gateway_namespace.clone(), name.to_owned()));
            }
            let gc = get(client, &GATEWAY_CLASS, None, &class).await;
            if let Ok(gc) = &gc {
                let r = &gc["spec"]["parametersRef"];
                if f.envoy_proxy.is_none()
                    && r["kind"] == "EnvoyProxy"
                    && let (Some(ns), Some(name)) = (r["namespace"].as_str(), r["name"].as_str())
                {
                    f.envoy_proxy = Some((ns.to_owned(), name.to_owned()));
                }
            }
            f.checks.push(match gc {
                Ok(gc) => match judge::condition(&gc, "Accepted") {
                    Some(c) if c.is_true() => Check::ok(
                        g,
                        "gateway-class",
                        format!("GatewayClass {class} is Accepted"),
                    ),
                    Some(c) => Check::new(
                        g,
                        "gateway-class",
                        Status::Fail,
                        format!("GatewayClass {class}: {}", c.describe()),
                    )
                    .fix(
                        "check Envoy Gateway's logs and the EnvoyProxy the class names",
                        doc::TROUBLE,
                    ),
                    None => Check::new(
                        g,
                        "gateway-class",
                        Status::Unknown,
                        format!("GatewayClass {class} has no status: is Envoy Gateway running?"),
                    )
                    .fix("start Envoy Gateway", doc::TROUBLE),
                },
                Err(e) => read_failed(
                    g,
                    "gateway-class",
                    e,
                    format!("GatewayClass {class} does not exist"),
                    "apply the kit",
                    doc::APPLY,
                ),
            });
            f.checks.push(match judge::condition(gw, "Programmed") {
                Some(c) if !c.is_current(judge::generation(gw)) => Check::new(
                    g,
                    "gateway",
                    Status::Unknown,
                    format!("Gateway {gw_id}'s status is for an older generation: Envoy Gateway has not looked at it since it changed (is it running?)"),
                )
                .fix("start Envoy Gateway, or wait for it", doc::TROUBLE),
                Some(c) if c.is_true() => {
                    Check::ok(g, "gateway", format!("Gateway {gw_id} is Programmed"))
                }
                Some(c) => Check::new(
                    g,
                    "gateway",
                    Status::Fail,
                    format!("Gateway {gw_id}: {}", c.describe()),
                )
                .fix(
                    "see the Gateway's conditions and Envoy Gateway's logs",
                    doc::TROUBLE,
                ),
                None => Check::new(
                    g,
                    "gateway",
                    Status::Unknown,
                    format!(
                        "Gateway {gw_id} has no Programmed condition: is Envoy Gateway running?"
                    ),
                )
                .fix("start Envoy Gateway", doc::TROUBLE),
            });
            f.checks
                .push(certificate(client, gw, &n.gateway_namespace, args.cert_warn_days).await);
        }
        Err(ReadError::Missing) => f.checks.push(
            Check::new(
                g,
                "gateway",
                Status::Fail,
                format!("Gateway {gw_id} does not exist"),
            )
            .fix(
                "apply the kit, or pass --gateway-name/--gateway-namespace",
                doc::APPLY,
            ),
        ),
        Err(ReadError::Failed(why)) => f.checks.push(unknown(g, "gateway", why.clone())),
    }
    // The kit's policy.
    let kit = get(client, &EEP, Some(&n.gateway_namespace), &n.policy_name).await;
    let kit_id = format!("{}/{}", n.gateway_namespace, n.policy_name);
    match &kit {
        Ok(p) => {
            let conds = judge::ancestor_conditions(p, &n.gateway_namespace, &n.gateway_name);
            let accepted = conds.iter().find(|c| c.kind == "Accepted");
            let stale = accepted.is_some_and(|c| !c.is_current(judge::generation(p)));
            let accepted = accepted.filter(|_| !stale);
            f.checks.push(match accepted {
                None if stale => Check::new(g, "extension-policy", Status::Unknown, format!("EnvoyExtensionPolicy {kit_id}'s status is for an older generation: Envoy Gateway has not looked at it since it changed (is it running?)")).fix("start Envoy Gateway, or wait for it", doc::TROUBLE),
                Some(c) if c.is_true() => Check::ok(g, "extension-policy", format!("EnvoyExtensionPolicy {kit_id} is Accepted on Gateway {gw_id}")),
                Some(c) => Check::new(g, "extension-policy", Status::Fail, format!("EnvoyExtensionPolicy {kit_id}: {}", c.describe()))
                    .fix("another policy may hold the Gateway (Conflicted: only the oldest applies); delete it", doc::APPLY),
                None => Check::new(g, "extension-policy", Status::Unknown, format!("EnvoyExtensionPolicy {kit_id} has no status for Gateway {gw_id}: is Envoy Gateway running?")).fix("start Envoy Gateway", doc::TROUBLE),
            });
            f.checks.push(match conds.iter().find(|c| c.kind == "Overridden" && c.is_true() && !stale) {
                Some(c) => Check::new(g, "routes-status", Status::Fail, format!("Envoy Gateway reports {kit_id} Overridden: {}", c.message))
                    .fix("a route policy replaces the signature check on those routes: give it mergeType and no wasm/dynamicModule, or delete it", doc::CHECK),
                None if accepted.is_some() => Check::ok(g, "routes-status", format!("Envoy Gateway reports no route overriding {kit_id}")),
                None => Check::new(g, "routes-status", Status::Unknown, format!("no current status from Envoy Gateway on {kit_id}")).fix("start Envoy Gateway", doc::TROUBLE),
            });
            module_checks(client, p, &kit_id, t, f).await;
        }
        Err(ReadError::Missing) => f.checks.push(
            Check::new(
                g,
                "extension-policy",
                Status::Fail,
                format!(
                    "EnvoyExtensionPolicy {kit_id} does not exist: nothing verifies signatures"
                ),
            )
            .fix("apply the kit, or pass --policy-name", doc::APPLY),
        ),
        Err(ReadError::Failed(why)) => f.checks.push(unknown(g, "extension-policy", why.clone())),
    }
    // Every route attached to the Gateway, judged from the objects.
    f.checks.push(routes_by_objects(client, t).await);
    f.checks.push(admission(client, t).await);
    f.checks.push(buffer(client, t, f.max_body_bytes).await);
}

async fn certificate(client: &Client, gw: &Value, gw_ns: &str, warn_days: u64) -> Check {
    let g = Group::EnvoyGateway;
    let mut refs = Vec::new();
    for l in gw["spec"]["listeners"].as_array().into_iter().flatten() {
        if l["protocol"].as_str() != Some("HTTPS") {
            continue;
        }
        for r in l["tls"]["certificateRefs"].as_array().into_iter().flatten() {
            if r["kind"].as_str().is_none_or(|k| k == "Secret") {
                let ns = r["namespace"].as_str().unwrap_or(gw_ns).to_owned();
                refs.push((ns, r["name"].as_str().unwrap_or_default().to_owned()));
            } else {
                return Check::new(
                    g,
                    "certificate",
                    Status::Unknown,
                    format!(
                        "the HTTPS listener's certificate is a {} (only Secrets are read)",
                        r["kind"].as_str().unwrap_or_default()
                    ),
                )
                .fix("check its expiry by hand", doc::APPLY);
            }
        }
    }
    if refs.is_empty() {
        return Check::ok(
            g,
            "certificate",
            "no HTTPS listener (TLS is terminated in front of the Gateway)",
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut found = Vec::new();
    let mut worst = Status::Ok;
    for (ns, name) in refs {
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let s = match api.get(&name).await {
            Ok(s) => s,
            Err(e) => {
                return read_failed(
                    g,
                    "certificate",
                    read_error(e, &format!("Secret {ns}/{name}")),
                    format!(
                        "the HTTPS listener's certificate Secret {ns}/{name} does not exist: the listener serves nothing"
                    ),
                    "create it (e.g. with cert-manager)",
                    doc::APPLY,
                );
            }
        };
        // Only tls.crt is looked at; the private key is never read.
        let crt = s
            .data
            .as_ref()
            .and_then(|d| d.get("tls.crt"))
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let not_after = x509_parser::pem::parse_x509_pem(&crt)
            .ok()
            .and_then(|(_, pem)| {
                pem.parse_x509()
                    .ok()
                    .map(|c| c.validity().not_after.timestamp())
            });
        let Some(not_after) = not_after else {
            return Check::new(
                g,
                "certificate",
                Status::Fail,
                format!("Secret {ns}/{name} holds no PEM certificate in tls.crt"),
            )
            .fix("re-issue the certificate", doc::APPLY);
        };
        let days = (not_after - now) / 86_400;
        let (status, text) = if not_after <= now {
            (
                Status::Fail,
                format!("{ns}/{name} expired {} days ago", -days),
            )
        } else if (days as u64) < warn_days {
            (Status::Warn, format!("{ns}/{name} expires in {days} days"))
        } else {
            (
                Status::Ok,
                format!("{ns}/{name} is valid for {days} more days"),
            )
        };
        worst = worst.max(status);
        found.push(text);
    }
    let c = Check::new(
        g,
        "certificate",
        worst,
        format!("HTTPS certificate {}", found.join("; ")),
    );
    if worst == Status::Ok {
        c
    } else {
        c.fix(
            "renew the certificate (cert-manager renews 30 days ahead by default: is it running?)",
            doc::APPLY,
        )
    }
}

/// Pinned module, fail closed, and the filter's configuration.
async fn module_checks(client: &Client, p: &Value, kit_id: &str, t: &Target, f: &mut ClusterFacts) {
    let g = Group::EnvoyGateway;
    let entry = match judge::kit_entry(&p["spec"]) {
        Ok((build, index, entry)) => {
            f.entry = Some((build, index));
            entry
        }
        Err(why) => {
            f.checks.push(
                Check::new(g, "module-pinned", Status::Fail, format!("{kit_id} {why}"))
                    .fix("re-render and re-apply the kit's policy", doc::APPLY),
            );
            return;
        }
    };
    match f.entry {
        Some((Build::Wasm, _)) => {
            f.checks.push(match judge::code_pinned(&entry["code"]) {
                Ok(what) => Check::ok(g, "module-pinned", format!("wasm filter from {what}")),
                Err(what) => Check::new(g, "module-pinned", Status::Fail, format!("{kit_id}: wasm filter from {what}: whatever the URL serves runs at the edge"))
                    .fix("re-render with --wasm-sha256/--wasm-file, or an image by digest", doc::PUBLISH),
            });
            f.checks.push(if entry["failOpen"].as_bool() == Some(true) {
                Check::new(
                    g,
                    "fail-closed",
                    Status::Fail,
                    format!(
                        "{kit_id}: failOpen is true: if the VM fails, requests pass unverified"
                    ),
                )
                .fix("set failOpen: false (re-render)", doc::APPLY)
            } else {
                Check::ok(
                    g,
                    "fail-closed",
                    "failOpen: false (a failed VM refuses requests)",
                )
            });
        }
        _ => {
            let (ns, name) = f
                .envoy_proxy
                .clone()
                .unwrap_or_else(|| (t.proxy_namespace.clone(), t.names.policy_name.clone()));
            f.checks
                .push(native_pinned(client, entry, &ns, &name).await)
        }
    }
    let config = serde_json::to_vec(&entry["config"]).unwrap_or_default();
    match edge_hmac_core::config::parse(&config) {
        Ok(c) => f.max_body_bytes = Some(c.max_body_bytes),
        Err(e) => f.checks.push(
            Check::new(
                g,
                "filter-config",
                Status::Fail,
                format!("{kit_id}: the filter's configuration is refused: {e}"),
            )
            .fix(
                "every request is refused (fail closed): re-render the policy",
                doc::APPLY,
            ),
        ),
    }
}

/// The native module's source in the EnvoyProxy: an image volume pinned by
/// digest, or a local path (pinned by the proxy image that carries it).
async fn native_pinned(client: &Client, m: &Value, ep_ns: &str, ep_name: &str) -> Check {
    let g = Group::EnvoyGateway;
    let name = m["name"].as_str().unwrap_or_default();
    let ep = match get(client, &ENVOY_PROXY, Some(ep_ns), ep_name).await {
        Ok(ep) => ep,
        Err(e) => {
            return read_failed(
                g,
                "module-pinned",
                e,
                format!("EnvoyProxy {ep_ns}/{ep_name} (the Gateway's) does not exist"),
                "apply the kit",
                doc::APPLY,
            );
        }
    };
    let Some(module) = ep["spec"]["dynamicModules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"].as_str() == Some(name))
    else {
        return Check::new(
            g,
            "module-pinned",
            Status::Fail,
            format!("EnvoyProxy {ep_ns}/{ep_name} registers no dynamic module {name:?}"),
        )
        .fix("re-render and re-apply the kit", doc::APPLY);
    };
    let src = &module["source"];
    if let Some(path) = src["local"]["path"].as_str() {
        // The image volume mounted where the module is, if any.
        let deployment = &ep["spec"]["provider"]["kubernetes"]["envoyDeployment"];
        let volume = deployment["container"]["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| {
                m["mountPath"]
                    .as_str()
                    .is_some_and(|mp| path.starts_with(&format!("{}/", mp.trim_end_matches('/'))))
            })
            .and_then(|m| m["name"].as_str());
        let image = deployment["pod"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| volume.is_some() && v["name"].as_str() == volume)
            .and_then(|v| v["image"]["reference"].as_str());
        return match image {
            Some(r)
                if r.split_once("@sha256:").is_some_and(|(_, d)| {
                    d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())
                }) =>
            {
                Check::ok(
                    g,
                    "module-pinned",
                    format!("native module {path} from image volume {r}"),
                )
            }
            Some(r) => Check::new(
                g,
                "module-pinned",
                Status::Fail,
                format!("native module {path} from image volume {r}, not pinned by digest"),
            )
            .fix(
                "re-render with --module-image REPO@sha256:DIGEST",
                doc::PUBLISH,
            ),
            None => Check::ok(
                g,
                "module-pinned",
                format!(
                    "native module at local path {path}, put there by the proxy image or an init container (not verified by check: pin that image by digest)"
                ),
            ),
        };
    }
    Check::new(g, "module-pinned", Status::Fail, format!("native module {name:?} has a remote source: Envoy skips a module whose download fails and lets requests through"))
        .fix("deliver it as an image volume or a local path (`render gateway --module native`)", doc::PUBLISH)
}

async fn routes_by_objects(client: &Client, t: &Target) -> Check {
    let g = Group::EnvoyGateway;
    let n = &t.names;
    let mut routes: Vec<(Route, BTreeMap<String, String>)> = Vec::new();
    for kind in [&HTTP_ROUTE, &GRPC_ROUTE] {
        let objs = match list(client, kind, None).await {
            Ok(o) => o,
            Err(ReadError::Missing) => Vec::new(),
            Err(ReadError::Failed(why)) => return unknown(g, "routes-objects", why),
        };
        for r in judge::attached_routes(kind.kind, &objs, &n.gateway_namespace, &n.gateway_name) {
            let labels = objs
                .iter()
                .find(|o| {
                    o["metadata"]["namespace"] == r.namespace.as_str()
                        && o["metadata"]["name"] == r.name.as_str()
                })
                .and_then(|o| o["metadata"]["labels"].as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            routes.push((r, labels));
        }
    }
    let eeps = match list(client, &EEP, None).await {
        Ok(e) => e,
        Err(ReadError::Missing) => Vec::new(),
        Err(ReadError::Failed(why)) => return unknown(g, "routes-objects", why),
    };
    let found = judge::uncovered_by_objects(&eeps, &routes, n);
    if found.is_empty() {
        return Check::ok(
            g,
            "routes-objects",
            format!(
                "{} route(s) on Gateway {}/{}; no EnvoyExtensionPolicy can take the signature check off any",
                routes.len(),
                n.gateway_namespace,
                n.gateway_name
            ),
        );
    }
    let text: Vec<String> = found
        .iter()
        .map(|u| {
            let on = if u.routes.is_empty() {
                String::new()
            } else {
                format!(
                    " on {}",
                    u.routes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            format!("policy {}{on}: {}", u.policy, rule_short(u.rule))
        })
        .collect();
    Check::new(g, "routes-objects", Status::Fail, text.join("; "))
        .fix("these policies are what the admission policy refuses now (created before it, or while it was absent): give route policies mergeType and no wasm/dynamicModule, move Gateway extensions into the kit's policy", doc::CHECK)
}

fn rule_short(rule: AdmissionRule) -> &'static str {
    match rule {
        AdmissionRule::NoSecondGatewayPolicy => {
            "a second policy on the edge Gateway (only the oldest applies)"
        }
        AdmissionRule::NoSelectedGateway => {
            "selects Gateways or ListenerSets by label, or targets a ListenerSet"
        }
        AdmissionRule::RoutePoliciesMerge => {
            "replaces the signature check on the route (no mergeType, or its own wasm/dynamicModule)"
        }
    }
}

async fn admission(client: &Client, t: &Target) -> Check {
    let g = Group::EnvoyGateway;
    let name = format!("{}-keep-signature-check", t.names.policy_name);
    let vap = match get(client, &VAP, None, &name).await {
        Ok(v) => v,
        Err(e) => {
            return read_failed(
                g,
                "admission-policy",
                e,
                format!(
                    "ValidatingAdmissionPolicy {name} does not exist: any team can take the signature check off its routes"
                ),
                "re-apply the kit (`render gateway`)",
                doc::APPLY,
            );
        }
    };
    let binding = match get(client, &VAP_BINDING, None, &name).await {
        Ok(b) => b,
        Err(e) => {
            return read_failed(
                g,
                "admission-policy",
                e,
                format!(
                    "ValidatingAdmissionPolicyBinding {name} does not exist: the policy is installed but enforces nothing"
                ),
                "re-apply the kit",
                doc::APPLY,
            );
        }
    };
    let problems = judge::admission_problems(&vap, &binding, &t.names, &name);
    if problems.is_empty() {
        Check::ok(
            g,
            "admission-policy",
            format!(
                "ValidatingAdmissionPolicy {name} and its binding are installed as rendered and deny"
            ),
        )
    } else {
        Check::new(g, "admission-policy", Status::Fail, format!("ValidatingAdmissionPolicy {name} does not refuse what the kit's does: {}", problems.join("; ")))
            .fix("re-apply the kit's admission policy and binding for these names (`render gateway` with the same --gateway-name/--gateway-namespace)", doc::APPLY)
    }
}

async fn buffer(client: &Client, t: &Target, max_body: Option<u64>) -> Check {
    let g = Group::EnvoyGateway;
    let n = &t.names;
    let Some(max_body) = max_body else {
        return Check::new(
            g,
            "body-buffer",
            Status::Unknown,
            "the filter's max_body_bytes is not known (the kit's policy could not be read)",
        )
        .fix("fix the extension-policy check first", doc::CHECK);
    };
    let need = edge_hmac_core::config::buffer_limit_for(max_body);
    let ctps = match list(client, &CTP, Some(&n.gateway_namespace)).await {
        Ok(c) => c,
        Err(ReadError::Missing) => Vec::new(),
        Err(ReadError::Failed(why)) => return unknown(g, "body-buffer", why),
    };
    match judge::effective_buffer(&ctps, &n.gateway_namespace, &n.gateway_name) {
        Some((l, name)) if l >= need => Check::ok(g, "body-buffer", format!("ClientTrafficPolicy {}/{name} buffers {l} bytes, enough for max_body_bytes {max_body} ({need} needed)", n.gateway_namespace)),
        Some((l, name)) => Check::new(g, "body-buffer", Status::Fail, format!("ClientTrafficPolicy {}/{name} buffers {l} bytes; max_body_bytes {max_body} needs {need}: larger signed bodies are refused by Envoy before the filter sees them", n.gateway_namespace))
            .fix("re-render and re-apply the kit (the ClientTrafficPolicy follows max_body_bytes)", doc::APPLY),
        None => Check::new(g, "body-buffer", Status::Fail, format!("no accepted ClientTrafficPolicy on Gateway {}/{} sets connection.bufferLimit for the whole Gateway: Envoy Gateway's 32 KiB default refuses larger signed bodies", n.gateway_namespace, n.gateway_name))
            .fix("apply the kit's ClientTrafficPolicy", doc::APPLY),
    }
}

/// The proxy pods of the edge Gateway, by the labels Envoy Gateway gives
/// them.
pub async fn proxy_pods(client: &Client, t: &Target) -> std::result::Result<Vec<String>, String> {
    let api: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), &t.proxy_namespace);
    let lp = ListParams::default().labels(&format!(
        "gateway.envoyproxy.io/owning-gateway-name={},gateway.envoyproxy.io/owning-gateway-namespace={}",
        t.names.gateway_name, t.names.gateway_namespace
    ));
    let pods = api
        .list(&lp)
        .await
        .map_err(|e| match read_error(e, "proxy pods") {
            ReadError::Missing => "no proxy pods".to_owned(),
            ReadError::Failed(w) => w,
        })?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name)
        .collect())
}
