//! The kit's External Secrets resources run by the real ESO controller
//! (v0.20.4) against a real API server, with moto as Secrets Manager.

use std::time::Duration;

use edge_hmac::render::gateway::{GatewayOptions, Resource, WasmCode};
use edge_hmac_core::config::PluginConfig;
use edge_hmac_tests::aws::{Moto, edge_value, unique_env};
use edge_hmac_tests::cluster::{Cluster, wait_for};
use edge_hmac_tests::eso::{
    Eso, create_aws_credentials, force_sync, secret_data, wait_external_secret,
};
use edge_hmac_tests::secrets::{assert_no_secret, secret};

/// The kit for environment `env`, with names of its own so tests can share
/// one cluster: its own proxy and credential namespaces and store.
pub(crate) fn kit(env: &str) -> GatewayOptions {
    let mut o = GatewayOptions::new(
        env,
        WasmCode::Http {
            url: "https://artifacts.example.com/f.wasm".into(),
            sha256: Some("0".repeat(64)),
        },
        PluginConfig::default(),
    );
    o.proxy_namespace = format!("{env}-proxies");
    o.credentials_namespace = format!("{env}-external-secrets");
    o.store_name = format!("{env}-aws-secretsmanager");
    o.gateway_namespace = format!("{env}-edge");
    o
}

/// Applies the kit's ESO resources (store and ExternalSecrets, exactly as
/// rendered) and the bootstrap credential they expect.
pub(crate) fn apply_secret_sync(cluster: &Cluster, o: &GatewayOptions) {
    create_aws_credentials(cluster, &o.credentials_namespace, &o.credentials_secret);
    cluster.namespace(&o.proxy_namespace);
    for r in o.resources() {
        if matches!(
            r,
            Resource::ClusterSecretStore(_) | Resource::ExternalSecret(_)
        ) {
            cluster.apply(&serde_json::to_string(&r).unwrap());
        }
    }
}

const SYNC: Duration = Duration::from_secs(90);

/// A fresh environment's secret in moto and the kit's ESO side applied,
/// synced once: `(cluster, moto, options, current key)`.
async fn synced_kit() -> (&'static Cluster, &'static Moto, GatewayOptions, String) {
    let cluster = Cluster::shared();
    let _eso = Eso::shared();
    let moto = Moto::shared();
    let o = kit(&unique_env());
    let key = secret();
    moto.create_secret(&o.secret_id, &edge_value(&key, &o.environment))
        .await;
    apply_secret_sync(cluster, &o);
    wait_external_secret(cluster, &o.proxy_namespace, &o.target_secret, "True", SYNC);
    (cluster, moto, o, key)
}

/// A copy of the kit's current-key ExternalSecret as `ns/name`, writing
/// Secret `name`, with `edit` applied to the copy.
fn copy_external_secret(
    cluster: &Cluster,
    o: &GatewayOptions,
    ns: &str,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let own = cluster
        .get_json("externalsecret", &o.proxy_namespace, &o.target_secret)
        .unwrap();
    let mut doc = serde_json::json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": own["spec"].clone(),
    });
    doc["spec"]["target"]["name"] = name.into();
    edit(&mut doc);
    cluster.apply(&doc.to_string());
}

/// ESO syncs crawbl/<env>/edge/hmac into hmac-wasm-config (hmac_secret,
/// environment) on the first sync with no AWSPREVIOUS; after a rotation in
/// Secrets Manager nothing changes until the seed's force-sync annotation,
/// which brings the new key and the previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eso_syncs_the_edge_secret_and_force_sync_rotates_it() {
    let cluster = Cluster::shared();
    let _eso = Eso::shared();
    let moto = Moto::shared();
    let env = unique_env();
    let o = kit(&env);
    let (k1, k2) = (secret(), secret());
    moto.create_secret(&o.secret_id, &edge_value(&k1, &env))
        .await;
    apply_secret_sync(cluster, &o);
    let ns = &o.proxy_namespace;

    let (reason, _) = wait_external_secret(cluster, ns, &o.target_secret, "True", SYNC);
    assert_eq!(reason, "SecretSynced");
    let data = secret_data(cluster, ns, &o.target_secret).expect("Secret written");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["environment", "hmac_secret"]
    );
    assert!(
        data["hmac_secret"] == k1,
        "hmac_secret is not the current key"
    );
    assert_eq!(data["environment"], env);
    // Never rotated: the previous key's sync succeeds without the key.
    let (reason, _) = wait_external_secret(cluster, ns, &o.rotation_secret, "True", SYNC);
    assert_eq!(reason, "SecretSynced");
    let prev = secret_data(cluster, ns, &o.rotation_secret).unwrap_or_default();
    assert!(!prev.contains_key("hmac_secret_previous"));

    // Rotation in Secrets Manager: the Secret keeps the old key (refresh is
    // 1h) until the force-sync annotation.
    moto.put_secret_value(&o.secret_id, &edge_value(&k2, &env))
        .await;
    std::thread::sleep(Duration::from_secs(3));
    assert!(secret_data(cluster, ns, &o.target_secret).unwrap()["hmac_secret"] == k1);
    force_sync(cluster, ns, &o.target_secret);
    force_sync(cluster, ns, &o.rotation_secret);
    let synced = wait_for(SYNC, || {
        let cur = secret_data(cluster, ns, &o.target_secret)?;
        let prev = secret_data(cluster, ns, &o.rotation_secret)?;
        (cur.get("hmac_secret") == Some(&k2) && prev.get("hmac_secret_previous") == Some(&k1))
            .then_some(())
    });
    assert!(
        synced.is_some(),
        "force-sync did not bring the rotated keys\n{}",
        Eso::shared().service.log_tail(30)
    );
    // What ESO logged and what the API reports carry no key.
    let es = cluster.kubectl_ok(&["-n", ns, "get", "externalsecret", "-o", "yaml"]);
    let events = cluster.kubectl_ok(&["-n", ns, "get", "events", "-o", "yaml"]);
    assert_no_secret(&Eso::shared().service.log_text(), &[&k1, &k2]);
    assert_no_secret(&es, &[&k1, &k2]);
    assert_no_secret(&events, &[&k1, &k2]);
}

/// A deleted (or renamed) current secret: with the kit's Retain the
/// ExternalSecret goes Ready=False (SecretSyncedError, a Warning event) and
/// the last good Secret is kept for the proxies — where Merge, the old
/// rendering, reported Ready with the keys gone (reproduced here first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_current_secret_fails_visibly_and_keeps_the_old_secret() {
    let (cluster, moto, o, key) = synced_kit().await;
    let env = &o.environment;
    let ns = &o.proxy_namespace;

    // The old rendering, one ExternalSecret with deletionPolicy Merge, as a
    // second object writing its own Secret.
    let merge_name = "old-merge-rendering";
    copy_external_secret(cluster, &o, ns, merge_name, |d| {
        d["spec"]["target"]["deletionPolicy"] = "Merge".into();
    });
    wait_external_secret(cluster, ns, merge_name, "True", SYNC);
    assert!(secret_data(cluster, ns, merge_name).unwrap()["hmac_secret"] == key);

    moto.call(
        "DeleteSecret",
        serde_json::json!({"SecretId": o.secret_id, "ForceDeleteWithoutRecovery": true}),
    )
    .await;
    force_sync(cluster, ns, &o.target_secret);
    force_sync(cluster, ns, merge_name);

    // Reproduced: Merge skips the missing secret and reports success with
    // an empty Secret (the next proxy pod would not start).
    let emptied = wait_for(SYNC, || {
        let d = secret_data(cluster, ns, merge_name)?;
        d.is_empty().then_some(())
    });
    assert!(emptied.is_some(), "Merge did not empty its Secret");
    let (reason, _) = wait_external_secret(cluster, ns, merge_name, "True", SYNC);
    assert_eq!(reason, "SecretSynced", "Merge reports success");

    // Closed: the kit's Retain fails visibly and keeps the old Secret.
    let (reason, message) = wait_external_secret(cluster, ns, &o.target_secret, "False", SYNC);
    assert_eq!(reason, "SecretSyncedError");
    assert!(message.contains("could not get secret data"), "{message}");
    let events = cluster.kubectl_ok(&[
        "-n",
        ns,
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={},type=Warning", o.target_secret),
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Secret does not exist"), "{events}");
    let kept = secret_data(cluster, ns, &o.target_secret).unwrap();
    assert!(kept["hmac_secret"] == key, "the last good key was not kept");
    assert_eq!(&kept["environment"], env);

    // ESO's own metric, which EdgeHmacExternalSecretNotReady
    // (docs/monitoring.md) watches, says so with the labels the rule selects.
    let metrics = edge_hmac_tests::client::get(Eso::shared().metrics, "/metrics")
        .await
        .unwrap()
        .text();
    let labels = [
        "condition=\"Ready\"".to_owned(),
        format!("name=\"{}\"", o.target_secret),
        format!("namespace=\"{ns}\""),
        "status=\"False\"".to_owned(),
    ];
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("externalsecret_status_condition{")
                && labels.iter().all(|x| l.contains(x.as_str()))
                && l.ends_with(" 1")),
        "ESO's metrics: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("externalsecret_status_condition"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The kit's store serves only the proxies' namespace: an ExternalSecret in
/// any other namespace that points at it gets nothing (Ready=False, no
/// Secret), while the kit's own sync works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_store_serves_only_the_proxy_namespace() {
    let (cluster, _, o, _) = synced_kit().await;
    let env = &o.environment;
    let thief_ns = format!("{env}-team");
    cluster.namespace(&thief_ns);
    copy_external_secret(cluster, &o, &thief_ns, "copy", |_| {});
    let (reason, _) = wait_external_secret(cluster, &thief_ns, "copy", "False", SYNC);
    assert_eq!(reason, "SecretSyncedError");
    let events = cluster.kubectl_ok(&[
        "-n",
        &thief_ns,
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=copy,type=Warning",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("denied by spec.condition"), "{events}");
    assert!(secret_data(cluster, &thief_ns, "copy").is_none());
}
