//! `render check-rbac`: exactly the access `edge-hmac check` uses, for one
//! identity. Reads only (`get` by name wherever the name is known, `list`
//! where the check must see every object: routes and extension policies in
//! all namespaces, ClientTrafficPolicies of the Gateway's namespace, proxy
//! pods), plus `create` on `pods/portforward` in the proxies' namespace to
//! reach each proxy's admin port. Secrets by name only: the current-key and
//! rotation Secrets (fingerprinted in memory, never printed) and the
//! listener's TLS Secret (only its certificate is parsed).

use serde::Serialize;

use crate::render::gateway::{Labels, ROTATION_SECRET, TARGET_SECRET};

/// Who runs `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user (as the API server authenticates it).
    User(String),
    /// A group.
    Group(String),
    /// A ServiceAccount `namespace/name`.
    ServiceAccount {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// The names the access is limited to (the flags `check` takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRbac {
    /// Who.
    pub subject: Subject,
    /// Name of the ClusterRole, Roles and bindings.
    pub name: String,
    /// Gateway name.
    pub gateway_name: String,
    /// Gateway namespace.
    pub gateway_namespace: String,
    /// The kit's EnvoyExtensionPolicy / EnvoyProxy name.
    pub policy_name: String,
    /// Proxies' namespace.
    pub proxy_namespace: String,
    /// ClusterSecretStore.
    pub store_name: String,
    /// TLS certificate Secrets of the HTTPS listener.
    pub tls_secrets: Vec<String>,
}

/// One RBAC rule.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    api_groups: Vec<&'static str>,
    resources: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resource_names: Vec<String>,
    verbs: Vec<&'static str>,
}

fn rule(
    group: &'static str,
    resources: &[&'static str],
    names: &[String],
    verbs: &[&'static str],
) -> Rule {
    Rule {
        api_groups: vec![group],
        resources: resources.to_vec(),
        resource_names: names.to_vec(),
        verbs: verbs.to_vec(),
    }
}

/// Object metadata.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    labels: Labels,
}

/// A Role or ClusterRole.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDoc {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    rules: Vec<Rule>,
}

/// A RoleBinding or ClusterRoleBinding.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingDoc {
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    role_ref: RoleRef,
    subjects: Vec<SubjectDoc>,
}

/// `roleRef`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    api_group: &'static str,
    kind: &'static str,
    name: String,
}

/// One subject.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectDoc {
    kind: &'static str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_group: Option<&'static str>,
}

const RBAC: &str = "rbac.authorization.k8s.io/v1";
const GW_API: &str = "gateway.networking.k8s.io";
const EG_API: &str = "gateway.envoyproxy.io";

impl CheckRbac {
    fn meta(&self, ns: Option<&str>) -> Meta {
        Meta {
            name: self.name.clone(),
            namespace: ns.map(str::to_owned),
            labels: Labels::from([(
                "app.kubernetes.io/part-of".to_owned(),
                "edge-hmac".to_owned(),
            )]),
        }
    }

    fn subjects(&self) -> Vec<SubjectDoc> {
        vec![match &self.subject {
            Subject::User(n) => SubjectDoc {
                kind: "User",
                name: n.clone(),
                namespace: None,
                api_group: Some("rbac.authorization.k8s.io"),
            },
            Subject::Group(n) => SubjectDoc {
                kind: "Group",
                name: n.clone(),
                namespace: None,
                api_group: Some("rbac.authorization.k8s.io"),
            },
            Subject::ServiceAccount { namespace, name } => SubjectDoc {
                kind: "ServiceAccount",
                name: name.clone(),
                namespace: Some(namespace.clone()),
                api_group: None,
            },
        }]
    }

    fn binding(&self, kind: &'static str, role_kind: &'static str, ns: Option<&str>) -> BindingDoc {
        BindingDoc {
            api_version: RBAC,
            kind,
            metadata: self.meta(ns),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io",
                kind: role_kind,
                name: self.name.clone(),
            },
            subjects: self.subjects(),
        }
    }

    /// The ClusterRole, the two Roles (Gateway namespace, proxies'
    /// namespace; one when they are the same) and their bindings, as YAML
    /// documents.
    pub fn to_yaml(&self, command: &str) -> Result<String, serde_norway::Error> {
        let one = |s: &str| vec![s.to_owned()];
        let cluster = RoleDoc {
            api_version: RBAC,
            kind: "ClusterRole",
            metadata: self.meta(None),
            rules: vec![
                rule(GW_API, &["gatewayclasses"], &[], &["get"]),
                rule(GW_API, &["httproutes", "grpcroutes"], &[], &["list"]),
                rule(EG_API, &["envoyextensionpolicies"], &[], &["list"]),
                rule(
                    "external-secrets.io",
                    &["clustersecretstores"],
                    &one(&self.store_name),
                    &["get"],
                ),
                rule(
                    "admissionregistration.k8s.io",
                    &[
                        "validatingadmissionpolicies",
                        "validatingadmissionpolicybindings",
                    ],
                    &one(&format!("{}-keep-signature-check", self.policy_name)),
                    &["get"],
                ),
            ],
        };
        let mut gw_rules = vec![
            rule(GW_API, &["gateways"], &one(&self.gateway_name), &["get"]),
            rule(
                EG_API,
                &["envoyextensionpolicies"],
                &one(&self.policy_name),
                &["get"],
            ),
            rule(EG_API, &["clienttrafficpolicies"], &[], &["list"]),
        ];
        if !self.tls_secrets.is_empty() {
            gw_rules.push(rule("", &["secrets"], &self.tls_secrets, &["get"]));
        }
        let proxy_rules = vec![
            rule(
                "external-secrets.io",
                &["externalsecrets"],
                &[TARGET_SECRET.to_owned(), ROTATION_SECRET.to_owned()],
                &["get"],
            ),
            rule(
                "",
                &["secrets"],
                &[TARGET_SECRET.to_owned(), ROTATION_SECRET.to_owned()],
                &["get"],
            ),
            rule(EG_API, &["envoyproxies"], &one(&self.policy_name), &["get"]),
            rule("", &["pods"], &[], &["list"]),
            rule("", &["pods/portforward"], &[], &["create", "get"]),
        ];
        let mut roles = Vec::new();
        if self.gateway_namespace == self.proxy_namespace {
            let mut all = gw_rules;
            all.extend(proxy_rules);
            roles.push((self.gateway_namespace.clone(), all));
        } else {
            roles.push((self.gateway_namespace.clone(), gw_rules));
            roles.push((self.proxy_namespace.clone(), proxy_rules));
        }
        let mut out = format!(
            "# The access `edge-hmac check` uses, for one identity (read-only but for\n\
             # port-forwards to the proxy pods). Rendered by: {command}\n"
        );
        fn push<T: Serialize>(out: &mut String, doc: &T) -> Result<(), serde_norway::Error> {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(doc)?);
            Ok(())
        }
        push(&mut out, &cluster)?;
        push(
            &mut out,
            &self.binding("ClusterRoleBinding", "ClusterRole", None),
        )?;
        for (ns, rules) in roles {
            push(
                &mut out,
                &RoleDoc {
                    api_version: RBAC,
                    kind: "Role",
                    metadata: self.meta(Some(&ns)),
                    rules,
                },
            )?;
            push(&mut out, &self.binding("RoleBinding", "Role", Some(&ns)))?;
        }
        Ok(out)
    }
}
