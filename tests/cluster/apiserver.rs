//! The kit against a real kube-apiserver (1.34) with the real CRDs of the
//! pinned Envoy Gateway and External Secrets Operator releases: every
//! rendered manifest is accepted (schemas and CEL rules), invalid ones are
//! refused, and the kit's admission policy keeps the signature check on
//! every route under the edge Gateway.

use std::time::Duration;

use edge_hmac::render::gateway::CHECKED_IN_PATH;
use edge_hmac_tests::build::workspace;
use edge_hmac_tests::cluster::{Cluster, wait_for};
use edge_hmac_tests::yaml::documents;
use serde_json::Value;

use edge_hmac_tests::kit::{NONCE_STORE_ARGS, kind, render_cli, renderings};

/// The namespaces a cluster with Envoy Gateway and ESO installed has, plus
/// the ones a rendering creates itself, so a dry run can check the rest.
fn prepare_namespaces(cluster: &Cluster, docs: &[Value]) {
    let mut namespaces =
        std::collections::BTreeSet::from(["envoy-gateway-system", "external-secrets"]);
    for d in docs.iter().filter(|d| d["kind"] == "Namespace") {
        namespaces.insert(d["metadata"]["name"].as_str().unwrap());
    }
    // A non-default --proxy-namespace: where that cluster runs its proxies.
    namespaces.extend(
        docs.iter()
            .filter_map(|d| d["metadata"]["namespace"].as_str()),
    );
    for ns in namespaces {
        cluster.namespace(ns);
    }
}

/// `kubectl apply --server-side --dry-run=server --validate=strict` of
/// `docs`: the API server's own schema, CEL and admission checks, nothing
/// stored.
pub(crate) fn dry_run(cluster: &Cluster, docs: &[Value]) -> std::process::Output {
    let stream: String = docs
        .iter()
        .map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap()))
        .collect();
    cluster.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "--validate=strict",
            "--field-manager=edge-hmac-test",
            "-f",
            "-",
        ],
        &stream,
    )
}

/// Asserts the API server's server-side dry run accepts every one of `docs`.
pub(crate) fn assert_accepted(cluster: &Cluster, what: &str, docs: &[Value]) {
    let out = dry_run(cluster, docs);
    assert!(
        out.status.success(),
        "{what}: the API server refused it:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        accepted
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count(),
        docs.len(),
        "{what}: {accepted}"
    );
}

/// Every manifest `render gateway` emits (all option shapes, and the
/// checked-in copy) is accepted by the real API server, CEL rules included.
#[test]
fn apiserver_accepts_every_rendered_manifest() {
    let cluster = Cluster::shared();
    let checked_in = std::fs::read_to_string(workspace().join(CHECKED_IN_PATH)).unwrap();
    let mut all = vec![("checked-in copy".to_string(), checked_in)];
    all.extend(renderings());
    for (what, yaml) in &all {
        let docs = documents(yaml);
        // The nonce store adds its Service, Deployment, PodDisruptionBudget
        // and NetworkPolicy.
        let expected = if what.contains("--nonce-store-secret") {
            15
        } else {
            11
        };
        assert_eq!(docs.len(), expected, "{what}: resources rendered");
        prepare_namespaces(cluster, &docs);
        assert_accepted(cluster, what, &docs);
    }
}

/// The rollout's first step in docs/deploy.md, `kubectl apply -l
/// app.kubernetes.io/component=nonce-store`, applies the store's four
/// objects and nothing else (no EnvoyProxy, so no proxy calls it yet).
#[test]
fn the_store_applies_alone_with_its_label() {
    let cluster = Cluster::shared();
    let kit = render_cli(&format!(
        "{} {NONCE_STORE_ARGS}",
        edge_hmac::render::gateway::CHECKED_IN_ARGS
    ));
    prepare_namespaces(cluster, &documents(&kit));
    let out = cluster.kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=edge-hmac-test",
            "-l",
            "app.kubernetes.io/component=nonce-store",
            "-f",
            "-",
        ],
        &kit,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut applied: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("(server dry run)"))
        .filter_map(|l| l.split('/').next())
        .collect();
    applied.sort_unstable();
    assert_eq!(
        applied,
        [
            "deployment.apps",
            "networkpolicy.networking.k8s.io",
            "poddisruptionbudget.policy",
            "service"
        ],
        "{stdout}"
    );
}

/// What the API server refuses in the kit's resources — unknown fields,
/// wrong types, enums, required fields, patterns, bounds, scope and CRD CEL
/// rules — so a hand edit of a rendered file is caught at apply time.
#[test]
fn apiserver_rejects_invalid_manifests() {
    let cluster = Cluster::shared();
    let docs = documents(&render_cli(&format!(
        "{} {NONCE_STORE_ARGS}",
        edge_hmac::render::gateway::CHECKED_IN_ARGS
    )));
    prepare_namespaces(cluster, &docs);
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, &str, Mutation, &str)> = vec![
        (
            "unknown field",
            "EnvoyExtensionPolicy",
            Box::new(|d| d["spec"]["wasm"][0]["failClosed"] = true.into()),
            "failClosed",
        ),
        (
            "wrong type",
            "EnvoyExtensionPolicy",
            Box::new(|d| d["spec"]["wasm"][0]["failOpen"] = "no".into()),
            "failOpen",
        ),
        (
            "bad enum",
            "EnvoyExtensionPolicy",
            Box::new(|d| d["spec"]["wasm"][0]["code"]["type"] = "File".into()),
            "code.type",
        ),
        (
            "CEL: targetRef and targetRefs together",
            "EnvoyExtensionPolicy",
            Box::new(|d| {
                d["spec"]["targetRef"] = d["spec"]["targetRefs"][0].clone();
            }),
            "either targetRef or targetRefs",
        ),
        (
            "CEL: mergeType on a Gateway target",
            "EnvoyExtensionPolicy",
            Box::new(|d| d["spec"]["mergeType"] = "StrategicMerge".into()),
            "mergeType can only be used with xRoute targets",
        ),
        (
            "missing required",
            "ExternalSecret",
            Box::new(|d| {
                d["spec"]["data"][0]["remoteRef"]
                    .as_object_mut()
                    .unwrap()
                    .remove("key");
            }),
            "key",
        ),
        (
            "unknown nested field",
            "ExternalSecret",
            Box::new(|d| d["spec"]["target"]["optional"] = true.into()),
            "optional",
        ),
        (
            "bad enum",
            "ExternalSecret",
            Box::new(|d| d["spec"]["target"]["deletionPolicy"] = "Keep".into()),
            "deletionPolicy",
        ),
        (
            "version no longer served (ESO v0.20.4 serves v1 only)",
            "ExternalSecret",
            Box::new(|d| d["apiVersion"] = "external-secrets.io/v1beta1".into()),
            "v1beta1",
        ),
        (
            "bad enum",
            "ClusterSecretStore",
            Box::new(|d| d["spec"]["provider"]["aws"]["service"] = "SSM".into()),
            "service",
        ),
        (
            "unknown container field",
            "EnvoyProxy",
            Box::new(|d| {
                d["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["envFrom"] =
                    serde_json::json!([]);
            }),
            "envFrom",
        ),
        (
            "pattern",
            "Gateway",
            Box::new(|d| d["spec"]["listeners"][0]["name"] = "Not_A_Name".into()),
            "name",
        ),
        (
            "bound",
            "Gateway",
            Box::new(|d| d["spec"]["listeners"][0]["port"] = 70000.into()),
            "port",
        ),
        (
            "quantity pattern",
            "ClientTrafficPolicy",
            Box::new(|d| d["spec"]["connection"]["bufferLimit"] = "1 MiB".into()),
            "bufferLimit",
        ),
        (
            "CEL on the admission policy itself",
            "ValidatingAdmissionPolicy",
            Box::new(|d| d["spec"]["validations"][0]["expression"] = "object.spec.(".into()),
            "expression",
        ),
        (
            "CEL: a Merge bootstrap without its value",
            "EnvoyProxy",
            Box::new(|d| {
                d["spec"]["bootstrap"]
                    .as_object_mut()
                    .unwrap()
                    .remove("value");
            }),
            "provided bootstrap patch doesn't match the configured patch type",
        ),
        (
            "bad enum",
            "EnvoyProxy",
            Box::new(|d| d["spec"]["bootstrap"]["type"] = "Append".into()),
            "bootstrap.type",
        ),
        (
            "unknown container field",
            "Deployment",
            Box::new(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] =
                    serde_json::json!({});
            }),
            "readinesProbe",
        ),
        (
            "the selector must match the template",
            "Deployment",
            Box::new(|d| d["spec"]["template"]["metadata"]["labels"] = serde_json::json!({})),
            "selector",
        ),
        (
            "bound",
            "Service",
            Box::new(|d| d["spec"]["ports"][0]["port"] = 70000.into()),
            "port",
        ),
        (
            "unknown field",
            "NetworkPolicy",
            Box::new(|d| d["spec"]["ingress"][0]["from"][0]["podLabels"] = serde_json::json!({})),
            "podLabels",
        ),
    ];
    for (what, k, mutate, needle) in cases {
        let mut d = kind(&docs, k).clone();
        mutate(&mut d);
        let out = dry_run(cluster, &[d]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} on {k} accepted");
        assert!(err.contains(needle), "{what} on {k}: {err}");
    }
}

/// The example YAML in docs/deploy.md is accepted by the API server too.
#[test]
fn deploy_doc_yaml_is_accepted() {
    let cluster = Cluster::shared();
    let doc = std::fs::read_to_string(workspace().join("docs/deploy.md")).unwrap();
    let mut docs = Vec::new();
    for block in doc.split("```yaml\n").skip(1) {
        docs.extend(documents(block.split("```").next().unwrap()));
    }
    assert!(
        docs.iter().any(|d| d["kind"] == "HTTPRoute"),
        "expected the example HTTPRoute"
    );
    prepare_namespaces(cluster, &docs);
    let out = dry_run(cluster, &docs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn eep(ns: &str, name: &str, spec: Value) -> Value {
    serde_json::json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

fn lua() -> Value {
    serde_json::json!([{"type": "Inline", "inline": "function envoy_on_request(h) end"}])
}

/// The kit's admission policy, in force in a real API server, refuses every
/// EnvoyExtensionPolicy that would take the signature check off a route
/// under the edge Gateway (route policy without mergeType, merged route
/// policy with its own wasm list, a second or listener-level policy on the
/// edge Gateway, label selectors of Gateways, ListenerSets), and lets
/// through what keeps it (route policies that merge, other Gateways, the
/// kit's own policy). The Rust mirror of its rules, which `edge-hmac check`
/// applies to policies that already exist, gives the same verdict on each.
#[test]
fn admission_policy_keeps_the_filter_on_every_route() {
    let cluster = Cluster::shared();
    let yaml = render_cli(
        "--env dev --wasm-url https://artifacts.example.com/f.wasm --wasm-sha256 5f0c4be3a3a2c4a2d5e9f0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1 --gateway-namespace vap-edge",
    );
    let docs = documents(&yaml);
    prepare_namespaces(cluster, &docs);
    cluster.namespace("vap-team");
    for k in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        cluster.apply(&serde_json::to_string(kind(&docs, k)).unwrap());
    }
    let route = |kind: &str| serde_json::json!({"group": "gateway.networking.k8s.io", "kind": kind, "name": "api"});
    let gateway = |name: &str| serde_json::json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name});
    let try_create = |doc: &Value| dry_run(cluster, std::slice::from_ref(doc));

    // The bypass as a team would write it: Lua on its own HTTPRoute.
    let bypass = eep(
        "vap-team",
        "team-lua",
        serde_json::json!({"targetRefs": [route("HTTPRoute")], "lua": lua()}),
    );
    // The binding takes a moment to be in force.
    let refused = wait_for(Duration::from_secs(30), || {
        let out = try_create(&bypass);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .expect("the route-level policy without mergeType was accepted: admission policy not in force");
    assert!(refused.contains("mergeType"), "{refused}");
    assert!(
        refused.contains("edge-hmac-keep-signature-check"),
        "{refused}"
    );

    let must_refuse: Vec<(&str, Value, &str)> = vec![
        (
            "route policy, deprecated targetRef",
            eep(
                "vap-team",
                "a",
                serde_json::json!({"targetRef": route("GRPCRoute"), "lua": lua()}),
            ),
            "mergeType",
        ),
        (
            "route policy by label selector",
            eep(
                "vap-team",
                "b",
                serde_json::json!({"targetSelectors": [{"kind": "HTTPRoute", "matchLabels": {"team": "a"}}], "lua": lua()}),
            ),
            "mergeType",
        ),
        (
            "merged route policy with its own wasm list",
            eep(
                "vap-team",
                "c",
                serde_json::json!({"targetRefs": [route("HTTPRoute")], "mergeType": "StrategicMerge", "wasm": [{"name": "other", "code": {"type": "HTTP", "http": {"url": "https://x.example.com/o.wasm", "sha256": "0".repeat(64)}}}]}),
            ),
            "wasm",
        ),
        (
            "second policy on the edge Gateway",
            eep(
                "vap-edge",
                "other",
                serde_json::json!({"targetRefs": [gateway("edge")], "lua": lua()}),
            ),
            "only the EnvoyExtensionPolicy vap-edge/edge-hmac",
        ),
        (
            "listener-level policy on the edge Gateway",
            eep(
                "vap-edge",
                "listener",
                serde_json::json!({"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge", "sectionName": "http"}], "lua": lua()}),
            ),
            "only the EnvoyExtensionPolicy vap-edge/edge-hmac",
        ),
        (
            "Gateways by label selector",
            eep(
                "vap-edge",
                "sel",
                serde_json::json!({"targetSelectors": [{"kind": "Gateway", "matchLabels": {"app": "edge"}}], "lua": lua()}),
            ),
            "by label",
        ),
        (
            "a ListenerSet",
            eep(
                "vap-team",
                "ls",
                serde_json::json!({"targetRefs": [route("ListenerSet")], "lua": lua()}),
            ),
            "ListenerSet",
        ),
    ];
    let names = edge_hmac::render::admission::EdgePolicyNames {
        gateway_namespace: "vap-edge".into(),
        gateway_name: "edge".into(),
        policy_name: "edge-hmac".into(),
    };
    let mirror =
        |doc: &Value| edge_hmac::render::admission::AdmissionRule::first_refusing(doc, &names);
    for (what, doc, needle) in must_refuse {
        let out = try_create(&doc);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(err.contains(needle), "{what}: {err}");
        let rule =
            mirror(&doc).unwrap_or_else(|| panic!("{what}: the Rust mirror lets it through"));
        assert!(
            err.contains(&rule.validation(&names).message),
            "{what}: the Rust mirror names another rule ({rule:?}): {err}"
        );
    }

    let must_accept: Vec<(&str, Value)> = vec![
        (
            "route policy that merges (Lua added, edge-hmac kept)",
            eep(
                "vap-team",
                "merged",
                serde_json::json!({"targetRefs": [route("HTTPRoute")], "mergeType": "StrategicMerge", "lua": lua()}),
            ),
        ),
        (
            "a policy on another Gateway",
            eep(
                "vap-team",
                "internal",
                serde_json::json!({"targetRefs": [gateway("internal")], "lua": lua()}),
            ),
        ),
        (
            "the kit's own policy",
            kind(&docs, "EnvoyExtensionPolicy").clone(),
        ),
    ];
    for (what, doc) in must_accept {
        let out = try_create(&doc);
        assert!(
            out.status.success(),
            "{what}: refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(mirror(&doc), None, "{what}: the Rust mirror refuses it");
    }
}
