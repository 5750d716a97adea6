//! The judgements of `edge-hmac check`, as pure functions of what the API
//! server, Envoy's admin interface and Secrets Manager returned (JSON and
//! text), so each is unit-tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::render::admission::{AdmissionRule, EdgePolicyNames, ROUTE_KINDS, target_refs};

/// One status condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `type`.
    pub kind: String,
    /// `status`: `True`, `False` or `Unknown`.
    pub status: String,
    /// `reason`.
    pub reason: String,
    /// `message`.
    pub message: String,
    /// `observedGeneration` (0 when absent).
    pub observed_generation: i64,
}

impl Condition {
    /// True when the condition was written for generation `generation`
    /// of its object or a later one (an older one is stale: whoever writes
    /// it has not looked at the object since it changed).
    pub fn is_current(&self, generation: i64) -> bool {
        self.observed_generation == 0 || self.observed_generation >= generation
    }

    /// True when the condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }

    /// `Reason: message`, for reports.
    pub fn describe(&self) -> String {
        if self.message.is_empty() {
            format!("{} {}", self.kind, self.reason)
        } else {
            format!("{} ({}): {}", self.kind, self.reason, self.message)
        }
    }
}

/// The conditions in a `conditions` list.
pub fn conditions(list: &Value) -> Vec<Condition> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            Condition {
                kind: s("type"),
                status: s("status"),
                reason: s("reason"),
                message: s("message"),
                observed_generation: c["observedGeneration"].as_i64().unwrap_or(0),
            }
        })
        .collect()
}

/// `metadata.generation` of an object (0 when absent).
pub fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"].as_i64().unwrap_or(0)
}

/// The condition of type `kind` in the object's `status.conditions`.
pub fn condition(obj: &Value, kind: &str) -> Option<Condition> {
    conditions(&obj["status"]["conditions"])
        .into_iter()
        .find(|c| c.kind == kind)
}

/// A policy's conditions for one ancestor (the edge Gateway), as the
/// Gateway API policy status lists them under `status.ancestors`.
pub fn ancestor_conditions(policy: &Value, gateway_ns: &str, gateway_name: &str) -> Vec<Condition> {
    let policy_ns = policy["metadata"]["namespace"].as_str().unwrap_or_default();
    policy["status"]["ancestors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let r = &a["ancestorRef"];
            r["name"].as_str() == Some(gateway_name)
                && r["namespace"].as_str().unwrap_or(policy_ns) == gateway_ns
                && r["kind"].as_str().is_none_or(|k| k == "Gateway")
        })
        .flat_map(|a| conditions(&a["conditions"]))
        .collect()
}

/// A route attached to the edge Gateway.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The routes of `kind` (objects as listed) whose `parentRefs` name the
/// edge Gateway.
pub fn attached_routes(
    kind: &str,
    routes: &[Value],
    gateway_ns: &str,
    gateway_name: &str,
) -> Vec<Route> {
    routes
        .iter()
        .filter(|r| {
            let ns = r["metadata"]["namespace"].as_str().unwrap_or_default();
            r["spec"]["parentRefs"].as_array().is_some_and(|refs| {
                refs.iter().any(|p| {
                    p["kind"].as_str().is_none_or(|k| k == "Gateway")
                        && p["name"].as_str() == Some(gateway_name)
                        && p["namespace"].as_str().unwrap_or(ns) == gateway_ns
                })
            })
        })
        .map(|r| Route {
            kind: kind.to_owned(),
            namespace: r["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            name: r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
        .collect()
}

/// A policy the admission policy's rules refuse, with the attached routes
/// it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    /// `namespace/name` of the EnvoyExtensionPolicy.
    pub policy: String,
    /// The rule it breaks.
    pub rule: AdmissionRule,
    /// Attached routes it targets (by name or label; empty for a Gateway
    /// or listener policy, which reaches every route of its listener).
    pub routes: Vec<Route>,
}

/// Every EnvoyExtensionPolicy in `eeps` that the kit's admission policy
/// would refuse (whenever it was created) and that can reach the edge
/// Gateway, with the attached routes (`routes`, with their labels) each
/// one reaches: a route policy only when it reaches one of them.
pub fn uncovered_by_objects(
    eeps: &[Value],
    routes: &[(Route, BTreeMap<String, String>)],
    names: &EdgePolicyNames,
) -> Vec<Uncovered> {
    let mut out = Vec::new();
    for eep in eeps {
        let Some(rule) = AdmissionRule::first_refusing(eep, names) else {
            continue;
        };
        let ns = eep["metadata"]["namespace"].as_str().unwrap_or_default();
        let spec = &eep["spec"];
        let reached: Vec<Route> = routes
            .iter()
            .filter(|(route, labels)| {
                if !ROUTE_KINDS.contains(&route.kind.as_str()) {
                    return false;
                }
                // A selector may reach other namespaces (`namespaces`):
                // judged without knowing them, as reaching every route.
                let any_namespace = spec["targetSelectors"]
                    .as_array()
                    .is_some_and(|sels| sels.iter().any(|sel| !sel["namespaces"].is_null()));
                if route.namespace != ns && !any_namespace {
                    return false;
                }
                let by_name = target_refs(spec).any(|r| {
                    r["kind"].as_str() == Some(route.kind.as_str())
                        && r["name"].as_str() == Some(route.name.as_str())
                });
                let by_label = spec["targetSelectors"].as_array().is_some_and(|sels| {
                    sels.iter().any(|sel| {
                        sel["kind"].as_str() == Some(route.kind.as_str()) && selects(sel, labels)
                    })
                });
                by_name || by_label
            })
            .map(|(r, _)| r.clone())
            .collect();
        // A route policy matters when it reaches a route of the edge
        // Gateway (the admission policy refuses it anywhere, as it cannot
        // see where a route attaches); the other rules are about the edge
        // Gateway itself, or may land on it.
        if rule == AdmissionRule::RoutePoliciesMerge && reached.is_empty() {
            continue;
        }
        out.push(Uncovered {
            policy: format!(
                "{ns}/{}",
                eep["metadata"]["name"].as_str().unwrap_or_default()
            ),
            rule,
            routes: reached,
        });
    }
    out
}

/// Whether a policy target selector's labels select `labels`
/// (`matchLabels` and `matchExpressions`; none selects everything, as in
/// Envoy Gateway). An operator it does not know selects (fail closed).
pub fn selects(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel["matchLabels"].as_object().is_none_or(|m| {
        m.iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    });
    let by_expressions = sel["matchExpressions"].as_array().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let value = labels.get(e["key"].as_str().unwrap_or_default());
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => value.is_some_and(|v| values.contains(&v.as_str())),
                Some("NotIn") => value.is_none_or(|v| !values.contains(&v.as_str())),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                _ => true,
            }
        })
    });
    by_labels && by_expressions
}

/// The kit's own entry in its policy: the `wasm` or `dynamicModule` entry
/// named `edge-hmac` (other entries are extensions added to the kit's
/// policy, as the admission policy asks), with its build and index.
pub fn kit_entry(spec: &Value) -> Result<(Build, usize, &Value), String> {
    let find = |list: &str| {
        spec[list]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .find(|(_, e)| e["name"].as_str() == Some(crate::render::gateway::NATIVE_MODULE_NAME))
    };
    match (find("wasm"), find("dynamicModule")) {
        (Some((i, e)), None) => Ok((Build::Wasm, i, e)),
        (None, Some((i, e))) => Ok((Build::Native, i, e)),
        (None, None) => Err(
            "has no wasm or dynamicModule entry named edge-hmac: nothing verifies signatures"
                .into(),
        ),
        (Some(_), Some(_)) => Err(
            "has both a wasm and a dynamicModule entry named edge-hmac; the kit renders one".into(),
        ),
    }
}

/// The listener buffer the Gateway's ClientTrafficPolicies give: the
/// smallest of the Gateway-wide and listener-level limits of the policies
/// Envoy Gateway did not refuse (`None`: no Gateway-wide limit, so some
/// listener keeps EG's 32 KiB), with the policy that sets it.
pub fn effective_buffer(ctps: &[Value], gateway_ns: &str, gateway: &str) -> Option<(u64, String)> {
    let mut gateway_wide: Option<(u64, String)> = None;
    let mut smallest_listener: Option<(u64, String)> = None;
    for c in ctps {
        let refused = ancestor_conditions(c, gateway_ns, gateway)
            .iter()
            .any(|k| k.kind == "Accepted" && k.status == "False");
        if refused {
            continue;
        }
        let Some(limit) = c["spec"]["connection"]["bufferLimit"]
            .as_str()
            .and_then(quantity_bytes)
        else {
            continue;
        };
        let name = c["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for r in target_refs(&c["spec"]) {
            if r["kind"] != "Gateway" || r["name"].as_str() != Some(gateway) {
                continue;
            }
            let slot = if r["sectionName"].is_string() {
                &mut smallest_listener
            } else {
                &mut gateway_wide
            };
            if slot.as_ref().is_none_or(|(l, _)| limit < *l) {
                *slot = Some((limit, name.clone()));
            }
        }
    }
    match (gateway_wide, smallest_listener) {
        (Some(g), Some(l)) if l.0 < g.0 => Some(l),
        (g, _) => g,
    }
}

/// What keeps the admission policy `vap` and its `binding` from refusing
/// what the kit's rules refuse, in words (empty: they deny as rendered).
pub fn admission_problems(
    vap: &Value,
    binding: &Value,
    names: &EdgePolicyNames,
    vap_name: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &vap["spec"];
    let have: Vec<&str> = spec["validations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["expression"].as_str())
        .collect();
    let missing = AdmissionRule::ALL
        .iter()
        .filter(|r| !have.contains(&r.validation(names).expression.as_str()))
        .count();
    if missing > 0 {
        out.push(format!(
            "{missing} of {} rules missing or changed",
            AdmissionRule::ALL.len()
        ));
    }
    if spec["failurePolicy"].as_str().is_some_and(|p| p != "Fail") {
        out.push("failurePolicy is not Fail".into());
    }
    let empty = |v: &Value| {
        v.is_null()
            || v.as_object().is_some_and(|m| m.is_empty())
            || v.as_array().is_some_and(Vec::is_empty)
    };
    if !empty(&spec["matchConditions"]) {
        out.push("it has matchConditions (they can exempt requests)".into());
    }
    let mc = &spec["matchConstraints"];
    for narrowing in [
        "namespaceSelector",
        "objectSelector",
        "excludeResourceRules",
    ] {
        if !empty(&mc[narrowing]) {
            out.push(format!("matchConstraints.{narrowing} narrows it"));
        }
    }
    let matches = mc["resourceRules"].as_array().is_some_and(|rules| {
        rules.iter().any(|r| {
            let has = |k: &str, v: &str| {
                r[k].as_array()
                    .is_some_and(|a| a.iter().any(|x| x == v || x == "*"))
            };
            has("apiGroups", "gateway.envoyproxy.io")
                && has("resources", "envoyextensionpolicies")
                && has("operations", "CREATE")
                && has("operations", "UPDATE")
        })
    });
    if !matches {
        out.push(
            "it does not match CREATE and UPDATE of gateway.envoyproxy.io envoyextensionpolicies"
                .into(),
        );
    }
    let b = &binding["spec"];
    if b["policyName"].as_str() != Some(vap_name) {
        out.push(format!("the binding names policy {}", b["policyName"]));
    }
    if !b["validationActions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "Deny"))
    {
        out.push("the binding does not Deny".into());
    }
    let mr = &b["matchResources"];
    for narrowing in [
        "namespaceSelector",
        "objectSelector",
        "excludeResourceRules",
        "resourceRules",
    ] {
        if !empty(&mr[narrowing]) {
            out.push(format!(
                "the binding's matchResources.{narrowing} narrows it"
            ));
        }
    }
    out
}

/// Which build of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Build {
    /// The proxy-wasm filter.
    Wasm,
    /// The native dynamic module.
    Native,
}

impl Build {
    /// How reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Build::Wasm => "wasm filter",
            Build::Native => "native module",
        }
    }
}

/// Whether `filter` is the name Envoy Gateway gives an HTTP filter of
/// policy `ns/name` of this build: `<filter type>/<kind>/<ns>/<name>/wasm/<i>`
/// (`.../dynamic-module/<i>` for the native module; `index`: only entry `i`
/// of the policy's list, the kit's own). EG v1.9 leaves `<kind>`
/// empty (`envoy.filters.http.wasm//edge/edge-hmac/wasm/0`, seen in a real
/// proxy's config dump); a later EG may write `envoyextensionpolicy`.
pub fn is_policy_filter(
    filter: &str,
    build: Build,
    ns: &str,
    name: &str,
    index: Option<usize>,
) -> bool {
    let (kind, list) = match build {
        Build::Wasm => ("envoy.filters.http.wasm/", "wasm"),
        Build::Native => ("envoy.filters.http.dynamic_modules/", "dynamic-module"),
    };
    filter
        .strip_prefix(kind)
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(_, rest)| rest.strip_prefix(&format!("{ns}/{name}/{list}/")))
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| index.is_none_or(|want| want == i))
}

/// What a proxy's `/config_dump` says about the kit's filter under the
/// edge Gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpView {
    /// Builds of the kit policy's filter in the listeners' HTTP filter
    /// chains.
    pub builds: BTreeSet<Build>,
    /// Routes of the edge Gateway's route configurations.
    pub routes: usize,
    /// Of those, the names of the ones the kit's filter is not enabled on.
    pub uncovered: Vec<String>,
}

/// Reads `dump` (Envoy's `/config_dump`) for the kit policy `policy_ns/policy`
/// on the Gateway `gateway_ns/gateway`: Envoy Gateway puts each policy's
/// filter into the listener's chain disabled and enables it per route with
/// `typed_per_filter_config`; its route configurations are named
/// `<gateway namespace>/<gateway name>/<listener>`.
pub fn read_config_dump(
    dump: &Value,
    gateway_ns: &str,
    gateway: &str,
    policy_ns: &str,
    policy: &str,
    entry: Option<(Build, usize)>,
) -> DumpView {
    let is_kit = |n: &str| {
        [Build::Wasm, Build::Native].into_iter().find(|b| {
            let index = entry.filter(|(eb, _)| eb == b).map(|(_, i)| i);
            // An entry of the other build than the policy's is never the
            // kit's (a team's module in the kit's policy).
            entry.is_none_or(|(eb, _)| eb == *b)
                && is_policy_filter(n, *b, policy_ns, policy, index)
        })
    };
    let mut view = DumpView::default();
    let route_config_prefix = format!("{gateway_ns}/{gateway}/");
    // EG names a Gateway's route configurations `<ns>/<name>/<listener>`,
    // or `http-<port>` with its XDSNameSchemeV2 flag: then every route
    // configuration counts (one proxy fleet per Gateway, EG's default).
    let all_configs: Vec<&Value> = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["@type"]
                .as_str()
                .unwrap_or_default()
                .ends_with("RoutesConfigDump")
        })
        .flat_map(|c| c["dynamic_route_configs"].as_array().into_iter().flatten())
        .map(|rc| &rc["route_config"])
        .collect();
    let named = all_configs.iter().any(|rc| {
        rc["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&route_config_prefix))
    });
    for config in dump["configs"].as_array().into_iter().flatten() {
        let kind = config["@type"].as_str().unwrap_or_default();
        if kind.ends_with("ListenersConfigDump") {
            let mut names = Vec::new();
            collect_filter_names(config, &mut names);
            view.builds.extend(names.iter().filter_map(|n| is_kit(n)));
        } else if kind.ends_with("RoutesConfigDump") {
            for rc in config["dynamic_route_configs"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let rc = &rc["route_config"];
                if named
                    && !rc["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&route_config_prefix))
                {
                    continue;
                }
                for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
                    for route in vh["routes"].as_array().into_iter().flatten() {
                        view.routes += 1;
                        let enabled = route["typed_per_filter_config"]
                            .as_object()
                            .is_some_and(|m| m.keys().any(|k| is_kit(k).is_some()));
                        if !enabled {
                            view.uncovered.push(
                                route["name"]
                                    .as_str()
                                    .unwrap_or("(unnamed route)")
                                    .to_owned(),
                            );
                        }
                    }
                }
            }
        }
    }
    view
}

/// Every `"name"` string of an object that also has a `typed_config` (an
/// HTTP filter or a network filter), anywhere under `v`.
fn collect_filter_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(n)), true) = (m.get("name"), m.contains_key("typed_config"))
            {
                out.push(n.clone());
            }
            for child in m.values() {
                collect_filter_names(child, out);
            }
        }
        Value::Array(a) => {
            for child in a {
                collect_filter_names(child, out);
            }
        }
        _ => {}
    }
}

/// The filter's counters and key gauges in one `/stats` read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Counter name (after `edge_hmac.`) → value, for both hosts'
    /// namespaces.
    pub counters: BTreeMap<String, u64>,
}

impl Stats {
    /// Parses Envoy's `/stats` text (`name: value` lines).
    pub fn parse(text: &str) -> Self {
        let mut counters = BTreeMap::new();
        for (name, value) in crate::rotate::edge_hmac_stats(text) {
            if !name.starts_with("key.") {
                *counters.entry(name.to_owned()).or_insert(0) += value;
            }
        }
        Self { counters }
    }

    /// A counter (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Rejections by code.
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        self.counters
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("rejected.").map(|c| (c.to_owned(), *v)))
            .collect()
    }
}

/// Requests verified and rejected (by code) between two reads; a counter
/// that went down (the proxy restarted) counts from zero.
pub fn window(before: &Stats, after: &Stats) -> (u64, BTreeMap<String, u64>) {
    let delta = |a: u64, b: u64| if b >= a { b - a } else { b };
    let verified = delta(before.get("verified"), after.get("verified"));
    let before_rejected = before.rejected();
    let rejected = after
        .rejected()
        .into_iter()
        .map(|(code, v)| {
            let d = delta(before_rejected.get(&code).copied().unwrap_or(0), v);
            (code, d)
        })
        .filter(|(_, v)| *v > 0)
        .collect();
    (verified, rejected)
}

/// Bytes in a Kubernetes quantity (`1088Ki`, `2Mi`, `1048576`, `1G`), or
/// `None` when it is not one.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    crate::render::gateway::parse_quantity(q)
}

/// Whether a wasm or module code source is pinned by a digest: an HTTP
/// source with `sha256`, an image by `@sha256:` or with `sha256`.
pub fn code_pinned(code: &Value) -> Result<String, String> {
    let kind = code["type"].as_str().unwrap_or_default();
    let (url, sha) = match kind {
        "HTTP" => (&code["http"]["url"], &code["http"]["sha256"]),
        "Image" => (&code["image"]["url"], &code["image"]["sha256"]),
        other => return Err(format!("code source type {other:?} is not HTTP or Image")),
    };
    let url = url.as_str().unwrap_or_default();
    let is_digest = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(sha) = sha.as_str().filter(|s| !s.is_empty()) {
        return if is_digest(sha) {
            Ok(format!("{kind} {url} with sha256 {}…", &sha[..12]))
        } else {
            Err(format!(
                "{kind} {url} with a sha256 that is not 64 hex digits"
            ))
        };
    }
    if kind == "Image"
        && let Some((_, digest)) = url.split_once("@sha256:")
        && is_digest(digest)
    {
        return Ok(format!("image {url}"));
    }
    Err(format!("{kind} {url} without a sha256"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> EdgePolicyNames {
        EdgePolicyNames::default()
    }

    /// Only routes whose parentRefs name the edge Gateway (namespace
    /// defaulting to the route's) count as attached.
    #[test]
    fn attached_routes_follow_parent_refs() {
        let routes = [
            json!({"metadata": {"namespace": "team", "name": "a"}, "spec": {"parentRefs": [{"name": "edge", "namespace": "edge"}]}}),
            json!({"metadata": {"namespace": "team", "name": "b"}, "spec": {"parentRefs": [{"name": "edge"}]}}),
            json!({"metadata": {"namespace": "edge", "name": "c"}, "spec": {"parentRefs": [{"name": "edge"}]}}),
            json!({"metadata": {"namespace": "team", "name": "d"}, "spec": {"parentRefs": [{"kind": "Service", "name": "edge", "namespace": "edge"}]}}),
        ];
        let got: Vec<String> = attached_routes("HTTPRoute", &routes, "edge", "edge")
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(got, ["a", "c"]);
    }

    /// A route policy without mergeType is reported with the routes of the
    /// edge Gateway it reaches by name and by label; a merged one is not,
    /// nor one on another Gateway's route; a second Gateway policy is,
    /// with no route (it reaches all of them).
    #[test]
    fn uncovered_routes_are_named_with_their_policy() {
        let route = |name: &str, app: &str| {
            (
                Route {
                    kind: "HTTPRoute".into(),
                    namespace: "team".into(),
                    name: name.into(),
                },
                BTreeMap::from([("app".to_owned(), app.to_owned())]),
            )
        };
        let routes = [route("a", "x"), route("b", "y"), route("c", "y")];
        let eeps = [
            json!({"metadata": {"namespace": "team", "name": "by-name"}, "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "a"}]}}),
            json!({"metadata": {"namespace": "team", "name": "by-label"}, "spec": {"targetSelectors": [{"kind": "HTTPRoute", "matchLabels": {"app": "y"}}]}}),
            json!({"metadata": {"namespace": "team", "name": "merged"}, "spec": {"mergeType": "StrategicMerge", "targetRefs": [{"kind": "HTTPRoute", "name": "a"}]}}),
            json!({"metadata": {"namespace": "other", "name": "elsewhere"}, "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "a"}]}}),
            json!({"metadata": {"namespace": "edge", "name": "second"}, "spec": {"targetRefs": [{"kind": "Gateway", "name": "edge"}]}}),
        ];
        let got = uncovered_by_objects(&eeps, &routes, &names());
        let summary: Vec<(String, Vec<String>)> = got
            .iter()
            .map(|u| {
                (
                    u.policy.clone(),
                    u.routes.iter().map(|r| r.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("team/by-name".to_owned(), vec!["a".to_owned()]),
                (
                    "team/by-label".to_owned(),
                    vec!["b".to_owned(), "c".to_owned()]
                ),
                ("edge/second".to_owned(), vec![]),
            ]
        );
    }

    /// The config dump view finds the kit's filter in the listener and
    /// names the routes of the edge Gateway it is not enabled on; routes
    /// of other Gateways do not count.
    #[test]
    fn config_dump_names_routes_without_the_filter() {
        // As EG v1.9 names it (the kind left empty).
        let wasm = "envoy.filters.http.wasm//edge/edge-hmac/wasm/0";
        let dump = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [{"active_state": {"listener": {
                "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {"http_filters": [
                    {"name": wasm, "typed_config": {}, "disabled": true},
                    {"name": "envoy.filters.http.router", "typed_config": {}}]}}]}]}}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": [
                {"route_config": {"name": "edge/edge/http", "virtual_hosts": [{"routes": [
                    {"name": "httproute/team/a/rule/0", "typed_per_filter_config": {wasm: {}}},
                    {"name": "httproute/team/b/rule/0", "typed_per_filter_config": {"envoy.filters.http.lua/envoyextensionpolicy/team/b-lua/lua/0": {}}},
                    {"name": "httproute/team/c/rule/0"}]}]}},
                {"route_config": {"name": "other/gw/http", "virtual_hosts": [{"routes": [{"name": "x"}]}]}}]}
        ]});
        let view = read_config_dump(
            &dump,
            "edge",
            "edge",
            "edge",
            "edge-hmac",
            Some((Build::Wasm, 0)),
        );
        assert_eq!(view.builds, BTreeSet::from([Build::Wasm]));
        assert_eq!(view.routes, 3);
        assert_eq!(
            view.uncovered,
            ["httproute/team/b/rule/0", "httproute/team/c/rule/0"]
        );
    }

    /// Window deltas: rejections by code between two reads, both hosts'
    /// names, a restarted proxy counting from zero.
    #[test]
    fn window_counts_between_reads() {
        let a = Stats::parse(
            "wasmcustom.edge_hmac.verified: 10\nwasmcustom.edge_hmac.rejected.invalid_signature: 2\nwasmcustom.edge_hmac.key.current.0a1b: 1\n",
        );
        let b = Stats::parse(
            "wasmcustom.edge_hmac.verified: 30\nwasmcustom.edge_hmac.rejected.invalid_signature: 7\nwasmcustom.edge_hmac.rejected.replayed_request: 1\n",
        );
        let (v, r) = window(&a, &b);
        assert_eq!(v, 20);
        assert_eq!(
            r,
            BTreeMap::from([
                ("invalid_signature".into(), 5),
                ("replayed_request".into(), 1)
            ])
        );
        let restarted = Stats::parse("dynamicmodulescustom.edge_hmac.verified: 3\n");
        assert_eq!(window(&b, &restarted).0, 3);
    }

    /// Filter names of the kit's policy, with or without the kind, and not
    /// another policy's (a name that merely starts alike).
    #[test]
    fn policy_filter_names() {
        let yes = |n: &str, b| is_policy_filter(n, b, "edge", "edge-hmac", None);
        assert!(yes(
            "envoy.filters.http.wasm//edge/edge-hmac/wasm/0",
            Build::Wasm
        ));
        assert!(yes(
            "envoy.filters.http.wasm/envoyextensionpolicy/edge/edge-hmac/wasm/1",
            Build::Wasm
        ));
        assert!(yes(
            "envoy.filters.http.dynamic_modules//edge/edge-hmac/dynamic-module/0",
            Build::Native
        ));
        assert!(!yes(
            "envoy.filters.http.wasm//edge/edge-hmac/wasm/0",
            Build::Native
        ));
        assert!(!yes(
            "envoy.filters.http.wasm//edge/edge-hmac-2/wasm/0",
            Build::Wasm
        ));
        assert!(!yes(
            "envoy.filters.http.wasm//team/edge-hmac/wasm/0",
            Build::Wasm
        ));
        assert!(!yes(
            "envoy.filters.http.lua//edge/edge-hmac/lua/0",
            Build::Wasm
        ));
        // Only the kit's entry when its index is known: not a team's module
        // added to the kit's policy.
        let at = |n: &str, i| is_policy_filter(n, Build::Wasm, "edge", "edge-hmac", Some(i));
        assert!(at("envoy.filters.http.wasm//edge/edge-hmac/wasm/1", 1));
        assert!(!at("envoy.filters.http.wasm//edge/edge-hmac/wasm/0", 1));
    }

    /// A code source is pinned by a 64-hex sha256 field or an image
    /// digest only.
    #[test]
    fn code_pinning() {
        let digest = "ab".repeat(32);
        let http = |sha: Option<&str>| {
            let mut c = json!({"type": "HTTP", "http": {"url": "https://x/f.wasm"}});
            if let Some(s) = sha {
                c["http"]["sha256"] = s.into();
            }
            code_pinned(&c)
        };
        assert!(http(Some(&digest)).is_ok());
        assert!(http(None).is_err());
        assert!(http(Some("ab")).is_err());
        assert!(http(Some(&"é".repeat(32))).is_err(), "no panic, not pinned");
        let image = |url: &str| code_pinned(&json!({"type": "Image", "image": {"url": url}}));
        assert!(image(&format!("r/f@sha256:{digest}")).is_ok());
        assert!(image("r/f@sha256:00").is_err());
        assert!(image("r/f:1.0").is_err());
    }

    /// Selectors: labels and expressions; none selects everything.
    #[test]
    fn selectors_follow_labels_and_expressions() {
        let labels = BTreeMap::from([("app".to_owned(), "x".to_owned())]);
        assert!(selects(&json!({"kind": "HTTPRoute"}), &labels));
        assert!(selects(&json!({"matchLabels": {"app": "x"}}), &labels));
        assert!(!selects(&json!({"matchLabels": {"app": "y"}}), &labels));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "z"]}]}),
            &labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}),
            &labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]}),
            &labels
        ));
    }

    /// A route policy selecting routes in other namespaces is judged as
    /// reaching the edge Gateway's routes.
    #[test]
    fn selectors_across_namespaces_reach_every_route() {
        let routes = [(
            Route {
                kind: "HTTPRoute".into(),
                namespace: "team".into(),
                name: "a".into(),
            },
            BTreeMap::new(),
        )];
        let eep = json!({"metadata": {"namespace": "other", "name": "wide"}, "spec": {"targetSelectors": [{"kind": "HTTPRoute", "namespaces": {"from": "All"}}]}});
        let got = uncovered_by_objects(&[eep], &routes, &names());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].routes.len(), 1);
    }

    /// The kit's entry is found by name, whatever its place; none or both
    /// builds is an error.
    #[test]
    fn kit_entry_by_name() {
        let spec = json!({"wasm": [{"name": "team"}, {"name": "edge-hmac", "failOpen": false}]});
        let (b, i, e) = kit_entry(&spec).unwrap();
        assert_eq!(
            (b, i, e["failOpen"].as_bool()),
            (Build::Wasm, 1, Some(false))
        );
        assert!(kit_entry(&json!({"wasm": [{"name": "team"}]})).is_err());
        assert!(
            kit_entry(
                &json!({"wasm": [{"name": "edge-hmac"}], "dynamicModule": [{"name": "edge-hmac"}]})
            )
            .is_err()
        );
        assert_eq!(
            kit_entry(&json!({"dynamicModule": [{"name": "edge-hmac"}]}))
                .unwrap()
                .0,
            Build::Native
        );
    }

    /// The buffer is the smallest of the Gateway-wide and listener limits
    /// of the policies EG did not refuse; none Gateway-wide is none.
    #[test]
    fn effective_buffer_is_the_smallest_accepted_limit() {
        let ctp = |name: &str, limit: &str, section: Option<&str>, accepted: Option<&str>| {
            let mut r = json!({"kind": "Gateway", "name": "edge"});
            if let Some(s) = section {
                r["sectionName"] = s.into();
            }
            let mut c = json!({"metadata": {"namespace": "edge", "name": name}, "spec": {"targetRefs": [r], "connection": {"bufferLimit": limit}}});
            if let Some(a) = accepted {
                c["status"] = json!({"ancestors": [{"ancestorRef": {"name": "edge"}, "conditions": [{"type": "Accepted", "status": a}]}]});
            }
            c
        };
        assert_eq!(
            effective_buffer(&[ctp("a", "2Mi", None, Some("True"))], "edge", "edge"),
            Some((2 << 20, "a".into()))
        );
        assert_eq!(
            effective_buffer(
                &[
                    ctp("a", "2Mi", None, None),
                    ctp("l", "64Ki", Some("https"), None)
                ],
                "edge",
                "edge"
            ),
            Some((64 << 10, "l".into()))
        );
        assert_eq!(
            effective_buffer(
                &[
                    ctp("big", "8Mi", None, Some("False")),
                    ctp("a", "1Mi", None, Some("True"))
                ],
                "edge",
                "edge"
            ),
            Some((1 << 20, "a".into()))
        );
        assert_eq!(
            effective_buffer(&[ctp("l", "8Mi", Some("https"), None)], "edge", "edge"),
            None
        );
    }

    /// The admission policy as rendered has no problem; each way of
    /// narrowing it, or a binding that does not deny, is named.
    #[test]
    fn admission_policy_structure() {
        let n = names();
        let vap = json!({"spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["gateway.envoyproxy.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["envoyextensionpolicies"]}], "namespaceSelector": {}, "objectSelector": {}},
            "validations": AdmissionRule::ALL.iter().map(|r| json!({"expression": r.validation(&n).expression})).collect::<Vec<_>>(),
        }});
        let binding = json!({"spec": {"policyName": "p", "validationActions": ["Deny"]}});
        assert!(admission_problems(&vap, &binding, &n, "p").is_empty());
        let mut narrowed = vap.clone();
        narrowed["spec"]["matchConditions"] = json!([{"name": "never", "expression": "false"}]);
        narrowed["spec"]["matchConstraints"]["namespaceSelector"] =
            json!({"matchLabels": {"x": "y"}});
        assert_eq!(admission_problems(&narrowed, &binding, &n, "p").len(), 2);
        let audit = json!({"spec": {"policyName": "p", "validationActions": ["Audit"]}});
        assert_eq!(
            admission_problems(&vap, &audit, &n, "p"),
            ["the binding does not Deny"]
        );
        let mut fewer = vap.clone();
        fewer["spec"]["validations"].as_array_mut().unwrap().pop();
        assert_eq!(
            admission_problems(&fewer, &binding, &n, "p"),
            ["1 of 3 rules missing or changed"]
        );
    }

    /// A condition written for an older generation is not current.
    #[test]
    fn stale_conditions() {
        let obj = json!({"metadata": {"generation": 3}, "status": {"conditions": [{"type": "Programmed", "status": "True", "observedGeneration": 2}]}});
        assert!(
            !condition(&obj, "Programmed")
                .unwrap()
                .is_current(generation(&obj))
        );
        assert!(condition(&obj, "Programmed").unwrap().is_current(2));
    }

    /// Ancestor conditions are those of the edge Gateway only.
    #[test]
    fn ancestor_conditions_of_the_edge_gateway() {
        let p = json!({"metadata": {"namespace": "edge"}, "status": {"ancestors": [
            {"ancestorRef": {"name": "edge", "kind": "Gateway"}, "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]},
            {"ancestorRef": {"name": "other", "namespace": "edge"}, "conditions": [{"type": "Accepted", "status": "False", "reason": "Conflicted"}]}]}});
        let c = ancestor_conditions(&p, "edge", "edge");
        assert_eq!(c.len(), 1);
        assert!(c[0].is_true());
    }
}
