//! The rules of the kit's admission policy, once: each renders to the CEL
//! the API server evaluates on CREATE and UPDATE
//! ([`AdmissionRule::validation`]) and is mirrored in Rust
//! ([`AdmissionRule::refuses`]) so `edge-hmac check` can judge policies
//! that already exist, whenever they were created. A cluster test
//! (`tests/cluster/check.rs`) holds the two to the same verdicts on the
//! real kube-apiserver.

use serde_json::Value;

use crate::render::gateway::Validation;

/// The kinds of route an EnvoyExtensionPolicy can target.
pub const ROUTE_KINDS: [&str; 5] = ["HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute", "UDPRoute"];

/// What the rules are about: the edge Gateway and the kit's own policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgePolicyNames {
    /// Namespace of the edge Gateway (and of the kit's policy).
    pub gateway_namespace: String,
    /// Name of the edge Gateway.
    pub gateway_name: String,
    /// Name of the kit's EnvoyExtensionPolicy.
    pub policy_name: String,
}

impl Default for EdgePolicyNames {
    /// The names `render gateway` renders by default: Gateway `edge/edge`,
    /// policy `edge/edge-hmac`.
    fn default() -> Self {
        Self {
            gateway_namespace: "edge".into(),
            gateway_name: "edge".into(),
            policy_name: "edge-hmac".into(),
        }
    }
}

/// One rule of the admission policy. Every rule exempts the kit's own
/// policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionRule {
    /// No other policy in the Gateway's namespace may target the edge
    /// Gateway by name (whole or one listener).
    NoSecondGatewayPolicy,
    /// No policy may select Gateways or ListenerSets by label, or target a
    /// ListenerSet.
    NoSelectedGateway,
    /// A policy on a route must set `mergeType` and carry no `wasm` or
    /// `dynamicModule` list.
    RoutePoliciesMerge,
}

impl AdmissionRule {
    /// Every rule, in the order the policy lists them.
    pub const ALL: [AdmissionRule; 3] = [
        AdmissionRule::NoSecondGatewayPolicy,
        AdmissionRule::NoSelectedGateway,
        AdmissionRule::RoutePoliciesMerge,
    ];

    /// The CEL validation the API server evaluates.
    pub fn validation(self, n: &EdgePolicyNames) -> Validation {
        let routes = format!(
            "[{}]",
            ROUTE_KINDS
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
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
            ns = n.gateway_namespace,
            name = n.policy_name
        );
        let gw = format!("{}/{}", n.gateway_namespace, n.gateway_name);
        let kit = format!("{}/{}", n.gateway_namespace, n.policy_name);
        let (expression, message) = match self {
            AdmissionRule::NoSecondGatewayPolicy => (
                format!(
                    "{is_kit} || object.metadata.namespace != '{ns}' || !{refs}",
                    ns = n.gateway_namespace,
                    refs = any_ref(&format!(
                        "r.kind == 'Gateway' && r.name == '{}'",
                        n.gateway_name
                    )),
                ),
                format!(
                    "only the EnvoyExtensionPolicy {kit} may target the edge Gateway {gw}: a second Gateway policy is Conflicted (only the oldest applies) and a listener policy replaces the edge-hmac signature check on that listener. Add your extension to {kit} instead."
                ),
            ),
            AdmissionRule::NoSelectedGateway => (
                format!(
                    "{is_kit} || !({sel} || {refs})",
                    sel = any_selector("r.kind in ['Gateway', 'ListenerSet']"),
                    refs = any_ref("r.kind == 'ListenerSet'"),
                ),
                format!(
                    "EnvoyExtensionPolicies may not select Gateways or ListenerSets by label, nor target a ListenerSet: one could land on the edge Gateway {gw} and replace its edge-hmac signature check. Target a Gateway by name, or a route with mergeType."
                ),
            ),
            AdmissionRule::RoutePoliciesMerge => (
                format!(
                    "{is_kit} || !({refs} || {sel}) || (has(object.spec.mergeType) && (!has(object.spec.wasm) || size(object.spec.wasm) == 0) && (!has(object.spec.dynamicModule) || size(object.spec.dynamicModule) == 0))",
                    refs = any_ref(&format!("r.kind in {routes}")),
                    sel = any_selector(&format!("r.kind in {routes}")),
                ),
                format!(
                    "an EnvoyExtensionPolicy on a route replaces the edge Gateway's edge-hmac signature check for that route unless it sets spec.mergeType (StrategicMerge or JSONMerge), and a merged policy may not carry a wasm or dynamicModule list (it would replace the edge-hmac module). Set mergeType, and put wasm and dynamic modules into {kit}."
                ),
            ),
        };
        Validation {
            expression,
            message,
            reason: "Forbidden",
        }
    }

    /// True when this rule refuses the EnvoyExtensionPolicy `eep` (the
    /// whole object, as the API server returns it): the Rust mirror of
    /// [`AdmissionRule::validation`]'s expression.
    pub fn refuses(self, eep: &Value, n: &EdgePolicyNames) -> bool {
        let ns = eep["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = eep["metadata"]["name"].as_str().unwrap_or_default();
        if ns == n.gateway_namespace && name == n.policy_name {
            return false;
        }
        let spec = &eep["spec"];
        let any_ref = |pred: &dyn Fn(&Value) -> bool| target_refs(spec).any(pred);
        let any_selector = |pred: &dyn Fn(&Value) -> bool| {
            spec["targetSelectors"]
                .as_array()
                .is_some_and(|a| a.iter().any(pred))
        };
        fn kind_in<'a>(kinds: &'a [&'a str]) -> impl Fn(&Value) -> bool + 'a {
            move |r: &Value| r["kind"].as_str().is_some_and(|k| kinds.contains(&k))
        }
        match self {
            AdmissionRule::NoSecondGatewayPolicy => {
                ns == n.gateway_namespace
                    && any_ref(&|r| {
                        r["kind"] == "Gateway" && r["name"].as_str() == Some(&n.gateway_name)
                    })
            }
            AdmissionRule::NoSelectedGateway => {
                any_selector(&kind_in(&["Gateway", "ListenerSet"]))
                    || any_ref(&kind_in(&["ListenerSet"]))
            }
            AdmissionRule::RoutePoliciesMerge => {
                let on_route =
                    any_ref(&kind_in(&ROUTE_KINDS)) || any_selector(&kind_in(&ROUTE_KINDS));
                let empty = |key: &str| spec[key].as_array().is_none_or(Vec::is_empty);
                let merges = spec.get("mergeType").is_some_and(|m| !m.is_null())
                    && empty("wasm")
                    && empty("dynamicModule");
                on_route && !merges
            }
        }
    }

    /// The first rule that refuses `eep`, if any.
    pub fn first_refusing(eep: &Value, n: &EdgePolicyNames) -> Option<AdmissionRule> {
        Self::ALL.into_iter().find(|rule| rule.refuses(eep, n))
    }
}

/// `spec.targetRef` and every `spec.targetRefs` entry.
pub fn target_refs(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("targetRef")
        .filter(|r| r.is_object())
        .into_iter()
        .chain(spec["targetRefs"].as_array().into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> EdgePolicyNames {
        EdgePolicyNames::default()
    }

    fn eep(ns: &str, name: &str, spec: Value) -> Value {
        json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})
    }

    /// Each rule refuses what it is about and lets the rest (and the kit's
    /// own policy) through.
    #[test]
    fn the_rust_rules_refuse_what_the_cel_refuses() {
        let n = names();
        let route =
            json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "api"}]);
        let gateway = json!([{"kind": "Gateway", "name": "edge"}]);
        let cases = [
            (
                eep("edge", "edge-hmac", json!({"targetRefs": gateway})),
                None,
            ),
            (
                eep("edge", "other", json!({"targetRefs": gateway})),
                Some(AdmissionRule::NoSecondGatewayPolicy),
            ),
            (
                eep(
                    "edge",
                    "other",
                    json!({"targetRef": {"kind": "Gateway", "name": "edge"}}),
                ),
                Some(AdmissionRule::NoSecondGatewayPolicy),
            ),
            (eep("team", "other", json!({"targetRefs": gateway})), None),
            (
                eep(
                    "edge",
                    "other",
                    json!({"targetRefs": [{"kind": "Gateway", "name": "internal"}]}),
                ),
                None,
            ),
            (
                eep(
                    "team",
                    "sel",
                    json!({"targetSelectors": [{"kind": "Gateway", "matchLabels": {"a": "b"}}]}),
                ),
                Some(AdmissionRule::NoSelectedGateway),
            ),
            (
                eep(
                    "team",
                    "ls",
                    json!({"targetRefs": [{"kind": "ListenerSet", "name": "x"}]}),
                ),
                Some(AdmissionRule::NoSelectedGateway),
            ),
            (
                eep("team", "lua", json!({"targetRefs": route, "lua": []})),
                Some(AdmissionRule::RoutePoliciesMerge),
            ),
            (
                eep(
                    "team",
                    "lua",
                    json!({"targetRefs": route, "mergeType": "StrategicMerge"}),
                ),
                None,
            ),
            (
                eep(
                    "team",
                    "wasm",
                    json!({"targetRefs": route, "mergeType": "JSONMerge", "wasm": [{"name": "x"}]}),
                ),
                Some(AdmissionRule::RoutePoliciesMerge),
            ),
            (
                eep(
                    "team",
                    "wasm",
                    json!({"targetRefs": route, "mergeType": "JSONMerge", "wasm": []}),
                ),
                None,
            ),
            (
                eep(
                    "team",
                    "sel",
                    json!({"targetSelectors": [{"kind": "GRPCRoute", "matchLabels": {}}]}),
                ),
                Some(AdmissionRule::RoutePoliciesMerge),
            ),
        ];
        for (policy, expected) in cases {
            assert_eq!(
                AdmissionRule::first_refusing(&policy, &n),
                expected,
                "{policy}"
            );
        }
    }
}
