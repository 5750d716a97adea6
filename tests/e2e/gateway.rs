//! The Envoy Gateway deployment kit: rendered manifests against the real CRD
//! schemas, the checked-in copy, no secrets, and the wiring they imply run in
//! a real Envoy.

use std::process::Command;

use edge_hmac::render::envoy::LocalEnvoy;
use edge_hmac::render::gateway::{
    CHECKED_IN_ARGS, CHECKED_IN_PATH, GatewayOptions, WasmCode, parse_quantity,
};
use edge_hmac_core::config::{PluginConfig, SecretString, parse};
use edge_hmac_tests::build::{filter_wasm, loader_bin};
use edge_hmac_tests::client::{Body, Req, send};
use edge_hmac_tests::envoy::{Envoy, validate};
use edge_hmac_tests::kit::{filter_entry, kind, render_cli, renderings};
use edge_hmac_tests::secrets::{assert_no_secret, secret};
use edge_hmac_tests::upstream::Upstream;
use edge_hmac_tests::yaml::documents;
use serde_json::Value;

use crate::render::assert_snapshot;

/// envoy/gateway/edge-hmac-dev.yaml is exactly `edge-hmac render gateway`
/// with the arguments in its header.
#[test]
fn checked_in_manifests_match_the_renderer() {
    let rendered = render_cli(CHECKED_IN_ARGS);
    assert!(rendered.contains(&format!(
        "# Rendered by: edge-hmac render gateway {CHECKED_IN_ARGS}"
    )));
    assert_snapshot(CHECKED_IN_PATH, &rendered);
}

/// The Gateway listens in HTTPS only by default (certificate from the
/// Secret `--tls-certificate-secret` names); plain HTTP only with
/// `--plain-http`, and HTTP alone only with `--no-https` on top; the flags
/// that make sense only with plain HTTP are refused without it.
#[test]
fn https_by_default_plain_http_only_when_asked() {
    let listeners = |args: &str| -> Vec<(String, u64, Option<String>)> {
        let docs = documents(&render_cli(&format!(
            "--env dev --wasm-image r.example.com/f@sha256:{} {args}",
            "a".repeat(64)
        )));
        kind(&docs, "Gateway")["spec"]["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["protocol"].as_str().unwrap().to_owned(),
                    l["port"].as_u64().unwrap(),
                    l["tls"]["certificateRefs"][0]["name"]
                        .as_str()
                        .map(str::to_owned),
                )
            })
            .collect()
    };
    let https = |name: &str, port| ("HTTPS".to_owned(), port, Some(name.to_owned()));
    let http = |port| ("HTTP".to_owned(), port, None);
    assert_eq!(listeners(""), [https("edge-tls", 443)]);
    assert_eq!(
        listeners("--tls-certificate-secret api-tls --https-port 8443"),
        [https("api-tls", 8443)]
    );
    assert_eq!(
        listeners("--plain-http"),
        [http(80), https("edge-tls", 443)]
    );
    assert_eq!(
        listeners("--plain-http --no-https --http-port 8080"),
        [http(8080)]
    );
    for refused in ["--no-https", "--http-port 8080"] {
        let out = Command::new(loader_bin())
            .args(["render", "gateway", "--env", "dev", "--wasm-image"])
            .arg(format!("r.example.com/f@sha256:{}", "a".repeat(64)))
            .args(refused.split_whitespace())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{refused}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--plain-http"),
            "{refused}"
        );
    }
}

/// The ClientTrafficPolicy raises the buffer of the Gateway the filter is
/// on above `max_body_bytes` (its schema is checked by the API server in
/// `cluster::apiserver_accepts_every_rendered_manifest`).
#[test]
fn ctp_buffer_limit_above_max_body() {
    for (what, yaml) in renderings() {
        let docs = documents(&yaml);
        let ctp = kind(&docs, "ClientTrafficPolicy");
        let limit = ctp["spec"]["connection"]["bufferLimit"].as_str().unwrap();
        let eep = kind(&docs, "EnvoyExtensionPolicy");
        let max = filter_entry(&docs)["config"]["max_body_bytes"]
            .as_u64()
            .unwrap();
        assert!(
            parse_quantity(limit).unwrap() > max,
            "{what}: {limit} <= {max}"
        );
        assert_eq!(
            ctp["spec"]["targetRefs"], eep["spec"]["targetRefs"],
            "{what}"
        );
        assert_eq!(
            ctp["metadata"]["namespace"],
            kind(&docs, "Gateway")["metadata"]["namespace"]
        );
    }
}

/// The wiring between the objects, which no schema sees: the GatewayClass's
/// EnvoyProxy maps exactly the host keys of the policy from the Secrets the
/// ExternalSecrets write in the proxies' namespace; the current key's sync
/// fails closed (Retain), the previous key's may be absent (Merge, optional
/// variable); the store serves only that namespace.
#[test]
fn resources_reference_each_other() {
    for (what, yaml) in renderings() {
        let docs = documents(&yaml);
        let eep = kind(&docs, "EnvoyExtensionPolicy");
        let native = eep["spec"]["wasm"].is_null();
        if native {
            // The native module has no fail-open setting, and it is always
            // a file on the proxy (Envoy loads a remote one fail-open); it
            // reads the EnvoyProxy's variables from the process itself.
            let deployment =
                &kind(&docs, "EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyDeployment"];
            let registered = &kind(&docs, "EnvoyProxy")["spec"]["dynamicModules"][0];
            assert_eq!(
                eep["spec"]["dynamicModule"][0]["name"], registered["name"],
                "{what}: the policy's module is registered in the EnvoyProxy"
            );
            assert_eq!(registered["source"]["type"], "Local", "{what}");
            let path = registered["source"]["local"]["path"].as_str().unwrap();
            if let Some(volume) = deployment["pod"]["volumes"].as_array() {
                // An image volume: mounted read-only where the path points.
                let mount = &deployment["container"]["volumeMounts"][0];
                assert_eq!(mount["name"], volume[0]["name"], "{what}");
                assert_eq!(mount["readOnly"], true, "{what}");
                assert_eq!(
                    format!("{}/libedge-hmac.so", mount["mountPath"].as_str().unwrap()),
                    path,
                    "{what}"
                );
                assert!(
                    volume[0]["image"]["reference"]
                        .as_str()
                        .unwrap()
                        .contains("@sha256:"),
                    "{what}"
                );
            }
        } else {
            assert_eq!(eep["spec"]["wasm"][0]["failOpen"], false);
        }
        let gc = kind(&docs, "GatewayClass");
        let ep = kind(&docs, "EnvoyProxy");
        assert_eq!(gc["spec"]["parametersRef"]["name"], ep["metadata"]["name"]);
        assert_eq!(
            gc["spec"]["parametersRef"]["namespace"],
            ep["metadata"]["namespace"]
        );
        assert_eq!(
            kind(&docs, "Gateway")["spec"]["gatewayClassName"],
            gc["metadata"]["name"]
        );
        let ess: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "ExternalSecret")
            .collect();
        assert_eq!(ess.len(), 2, "{what}");
        let css = kind(&docs, "ClusterSecretStore");
        let env = ep["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"]
            .as_array()
            .unwrap();
        if !native {
            let host_keys = eep["spec"]["wasm"][0]["env"]["hostKeys"]
                .as_array()
                .unwrap();
            assert_eq!(env.len(), host_keys.len());
        }
        for var in env {
            let r = &var["valueFrom"]["secretKeyRef"];
            let es = ess
                .iter()
                .find(|es| es["spec"]["target"]["name"] == r["name"])
                .unwrap_or_else(|| panic!("{what}: no ExternalSecret writes {}", r["name"]));
            assert_eq!(es["metadata"]["namespace"], ep["metadata"]["namespace"]);
            assert!(
                es["spec"]["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["secretKey"] == r["key"]),
                "{what}: {var}"
            );
            if !native {
                let host_keys = eep["spec"]["wasm"][0]["env"]["hostKeys"]
                    .as_array()
                    .unwrap();
                assert!(host_keys.contains(&var["name"]), "{what}: {var}");
            }
            let rotation = r["key"] == "hmac_secret_previous" || r["key"] == "hmac_secret_pending";
            // Only the previous and pending keys may be missing; only their
            // sync may skip.
            assert_eq!(r["optional"] == true, rotation, "{what}: {var}");
            assert_eq!(
                es["spec"]["target"]["deletionPolicy"],
                if rotation { "Merge" } else { "Retain" },
                "{what}: {var}"
            );
            assert_eq!(es["spec"]["secretStoreRef"]["kind"], "ClusterSecretStore");
            assert_eq!(
                es["spec"]["secretStoreRef"]["name"],
                css["metadata"]["name"]
            );
        }
        assert_eq!(
            css["spec"]["conditions"],
            serde_json::json!([{"namespaces": [ep["metadata"]["namespace"]]}]),
            "{what}"
        );
        assert_eq!(css["spec"]["provider"]["aws"]["region"], "eu-central-1");
        for r in ["accessKeyIDSecretRef", "secretAccessKeySecretRef"] {
            let s = &css["spec"]["provider"]["aws"]["auth"]["secretRef"][r];
            assert_eq!(s["name"], "aws-credentials");
            assert_eq!(s["namespace"], "external-secrets");
        }
    }
}

/// Each environment reads its own secret path.
#[test]
fn environments_render_their_own_secret_path() {
    let digest = "0".repeat(64);
    for env in ["dev", "prod"] {
        let yaml = render_cli(&format!(
            "--env {env} --wasm-image r.example.com/f@sha256:{digest}"
        ));
        let docs = documents(&yaml);
        for es in docs.iter().filter(|d| d["kind"] == "ExternalSecret") {
            for d in es["spec"]["data"].as_array().unwrap() {
                assert_eq!(d["remoteRef"]["key"], format!("crawbl/{env}/edge/hmac"));
            }
        }
        // The filter is pinned to the environment it was rendered for.
        let eep = kind(&docs, "EnvoyExtensionPolicy");
        assert_eq!(
            eep["spec"]["wasm"][0]["config"]["expected_environment"],
            env
        );
    }
    let refuse = |args: &[&str], needle: &str| {
        let out = Command::new(loader_bin())
            .args(["render", "gateway"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    // No module location; an image not pinned by digest; an HTTP URL
    // without a checksum.
    refuse(&["--env", "dev"], "--wasm-image");
    refuse(
        &["--env", "dev", "--wasm-image", "r.example.com/f:1"],
        "not pinned",
    );
    refuse(
        &["--env", "dev", "--wasm-url", "https://a.example.com/f.wasm"],
        "checksum",
    );
    // The native module: somewhere to find it; an image pinned by digest;
    // never a URL Envoy would download (and skip, fail-open, on a failure).
    refuse(&["--env", "dev", "--module", "native"], "--module-image");
    refuse(
        &[
            "--env",
            "dev",
            "--module",
            "native",
            "--module-image",
            "r.example.com/m:1",
        ],
        "not pinned",
    );
    refuse(
        &[
            "--env",
            "dev",
            "--module",
            "native",
            "--module-url",
            "https://a.example.com/libedge-hmac.so",
        ],
        "fail-open",
    );
    refuse(
        &["--env", "dev", "--module-path", "/m/libedge-hmac.so"],
        "add --module native",
    );
}

/// No secret value can appear in rendered manifests: the renderer never
/// receives one, the plugin config drops inline secrets, and every mention
/// of a secret is a reference.
#[test]
fn manifests_carry_references_only() {
    let key = secret();
    let plugin = PluginConfig {
        hmac_secret: Some(SecretString::new(key.clone())),
        ..PluginConfig::default()
    };
    let options = GatewayOptions::new(
        "dev",
        WasmCode::Image {
            url: "r.example.com/f:1".into(),
            sha256: None,
        },
        plugin,
    );
    let yaml = options.to_yaml("test").unwrap();
    assert_no_secret(&yaml, &[&key]);
    let mut all = renderings();
    all.push(("options".into(), yaml));
    for (what, yaml) in all {
        for doc in documents(&yaml) {
            assert_ne!(doc["kind"], "Secret", "{what}: renders a Secret");
            let text = doc.to_string();
            for field in ["\"stringData\"", "\"data\":{", "\"hmac_secret\":\""] {
                assert!(!text.contains(field), "{what}: {field} in {}", doc["kind"]);
            }
        }
    }
}

/// The policy's JSON config is accepted by the filter's own parser and
/// compiles with the variables the EnvoyProxy provides.
#[test]
fn policy_config_is_accepted_by_the_filter() {
    for (what, yaml) in renderings() {
        let docs = documents(&yaml);
        let config = &filter_entry(&docs)["config"];
        let parsed = parse(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let env = parsed
            .expected_environment
            .clone()
            .expect("expected_environment rendered");
        let key = secret();
        let compile = |environment: &str| {
            parsed.compile(|name| match name {
                "HMAC_SECRET" => Some(key.clone()),
                "HMAC_ENVIRONMENT" => Some(environment.to_owned()),
                _ => None,
            })
        };
        let compiled = compile(&env).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(compiled.verifier.environment(), env);
        // Handed another environment's secret, the filter refuses to start.
        assert!(
            compile("other").is_err(),
            "{what}: accepted another environment"
        );
    }
}

/// The Envoy-level wiring the manifests imply, in a real Envoy with an
/// equivalent bootstrap: the EnvoyProxy's variables from a Secret holding
/// what ESO writes, host keys and config from the EnvoyExtensionPolicy, fail
/// closed (failOpen: false), and the ClientTrafficPolicy's buffer limit —
/// large signed bodies reach the filter, whose own limit answers above
/// max_body_bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiring_runs_in_a_real_envoy() {
    let yaml = render_cli(CHECKED_IN_ARGS);
    let docs = documents(&yaml);
    let eep = &kind(&docs, "EnvoyExtensionPolicy")["spec"]["wasm"][0];
    let host_keys: Vec<String> = eep["env"]["hostKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let plugin = parse(eep["config"].to_string().as_bytes()).unwrap();
    let max = plugin.max_body_bytes;
    let buffer = parse_quantity(
        kind(&docs, "ClientTrafficPolicy")["spec"]["connection"]["bufferLimit"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let upstream = Upstream::start().await;
    let mut local = LocalEnvoy::single(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        upstream.addr,
        filter_wasm().to_path_buf(),
        plugin,
    );
    local.buffer_limit_bytes = buffer;
    local.failure_policy = if eep["failOpen"] == false {
        "FAIL_CLOSED"
    } else {
        "FAIL_OPEN"
    };
    let rendered = local.to_yaml().unwrap();
    for k in &host_keys {
        assert!(
            rendered.contains(&format!("- {k}\n")),
            "host key {k} not in the bootstrap"
        );
    }

    // The Secret as ESO writes it, mapped to variables as the EnvoyProxy says.
    let (current, previous) = (secret(), secret());
    let secret_data = |with_previous: bool| {
        let mut data = vec![
            ("hmac_secret", current.clone()),
            ("environment", "dev".to_string()),
        ];
        if with_previous {
            data.push(("hmac_secret_previous", previous.clone()));
        }
        data
    };
    let env_from = |data: &[(&str, String)]| -> Vec<(String, String)> {
        kind(&docs, "EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
            ["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let key = v["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
                data.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, val)| (v["name"].as_str().unwrap().to_owned(), val.clone()))
            })
            .collect()
    };

    // A secret never rotated: no previous key, the optional variable absent.
    let env = env_from(&secret_data(false));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let envoy = Envoy::start_yaml(&rendered, &env_refs).await;
    let addr = envoy.listener("edge_hmac").await;
    let body = vec![b'b'; max as usize];
    let ok = Req::new("POST", "/v1/upload")
        .body(Body::Full(body))
        .signed(&current, "dev");
    assert_eq!(
        send(addr, &ok).await.status,
        200,
        "a body of max_body_bytes must pass"
    );
    let over = Req::new("POST", "/v1/upload")
        .body(Body::Chunks {
            // max_body_bytes + 1 in chunks, without content-length: the
            // filter sees it stream in.
            chunks: {
                let mut c = vec![vec![b'c'; 64 * 1024]; (max / (64 * 1024)) as usize];
                c.push(vec![b'c'; 1]);
                c
            },
            delay: std::time::Duration::from_millis(1),
        })
        .signed(&current, "dev");
    let resp = send(addr, &over).await;
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.error_code().as_deref(),
        Some("body_too_large"),
        "the filter, not Envoy, must answer"
    );
    assert_eq!(send(addr, &Req::new("GET", "/v1/x")).await.status, 401);
    // Nothing is exempt unless asked for.
    assert_eq!(send(addr, &Req::new("GET", "/healthz")).await.status, 401);
    drop(envoy);

    // During a rotation the previous key from AWSPREVIOUS is accepted.
    let env = env_from(&secret_data(true));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let envoy = Envoy::start_yaml(&rendered, &env_refs).await;
    let addr = envoy.listener("edge_hmac").await;
    assert_eq!(
        send(addr, &Req::new("GET", "/v1/x").signed(&previous, "dev"))
            .await
            .status,
        200
    );
    assert_eq!(envoy.counter("verified_previous_key").await, 1);
    drop(envoy);

    // Without the secret (Secret not synced yet) Envoy refuses the filter:
    // fail closed, nothing served unverified.
    let out = validate(&rendered, &[("HMAC_ENVIRONMENT", "dev")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HMAC_SECRET is unset"));
}
