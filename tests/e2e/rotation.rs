//! Key rotation with `edge-hmac rotate` (AWSPENDING → AWSCURRENT →
//! retire) against moto and real Envoys started by `edge-hmac run`, with
//! clients that re-read AWSCURRENT before every request, as client teams do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_hmac_core::scheme::fingerprint;
use edge_hmac_tests::aws::{FaultyProxy, Moto, cli, edge_value, unique_env};
use edge_hmac_tests::cli::{Out, run};
use edge_hmac_tests::client::{Conn, Req, send};
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::upstream::Upstream;
use serde_json::Value;

use edge_hmac_tests::target::Target;

use crate::loader::{Running, home, run_cmd, run_cmd_on};

/// `edge-hmac rotate <args>` against `endpoint`.
async fn rotate(endpoint: &str, env: &str, args: &[&str]) -> Out {
    let h = home();
    let mut cmd = cli(h.path());
    cmd.arg("rotate")
        .args(args)
        .args(["--env", env, "--endpoint-url", endpoint]);
    run(cmd).await
}

/// `rotate status --format json` with `admins`.
async fn status(moto: &Moto, env: &str, admins: &[std::net::SocketAddr]) -> Value {
    let mut args = vec!["status".to_owned(), "--format".into(), "json".into()];
    for a in admins {
        args.extend(["--admin".to_owned(), a.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rotate(&moto.endpoint(), env, &args).await;
    assert_eq!(out.code, 0, "{}", out.all());
    serde_json::from_str(&out.stdout).unwrap()
}

/// A fresh environment and its secret in moto with a first key: (moto,
/// environment, secret id, key).
async fn new_secret() -> (&'static Moto, String, String, String) {
    let moto = Moto::shared();
    let env = unique_env();
    let id = format!("crawbl/{env}/edge/hmac");
    let k0 = secret();
    moto.create_secret(&id, &edge_value(&k0, &env)).await;
    (moto, env, id, k0)
}

fn fp(key: &str) -> String {
    fingerprint(key.as_bytes())
}

/// Clients that fetch AWSCURRENT from Secrets Manager before every request
/// and send it signed on a fresh connection; every status is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<(u16, String)>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(moto: &'static Moto, id: &str, env: &str, addr: std::net::SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..2)
            .map(|_| {
                let (stop, results) = (Arc::clone(&stop), Arc::clone(&results));
                let (id, env) = (id.to_owned(), env.to_owned());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let key = moto.key_at(&id, "AWSCURRENT").await.unwrap();
                        let mut r = Req::new("GET", "/v1/rotating");
                        r.authority = addr.to_string();
                        let req = r.signed(&key, &env);
                        let status = match Conn::h1(addr).await {
                            Ok(mut c) => c.send(&req).await.map(|r| r.status).unwrap_or(0),
                            Err(_) => 0,
                        };
                        results.lock().unwrap().push((status, fp(&key)));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            results,
            workers,
        }
    }

    async fn stop(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            w.await.unwrap();
        }
        self.results.lock().unwrap().clone()
    }
}

/// The whole rotation under load, locally: `rotate begin` stages a key that
/// `run --watch` loads as pending, `promote` (checked against the proxy)
/// moves AWSCURRENT, `retire` removes AWSPREVIOUS; clients that re-read
/// AWSCURRENT before every request see no failed request, `status` tells
/// the truth in each phase, and at the end the old key is refused.
async fn a_full_rotation_under_load_fails_no_request(t: Target) {
    let (moto, env, id, k0) = new_secret().await;
    let upstream = Upstream::start().await;
    let h = home();
    let mut cmd = run_cmd_on(h.path(), t);
    cmd.args(["--env", &env, "--endpoint-url", &moto.endpoint()])
        .args(["--upstream", &upstream.addr.to_string()])
        .args(["--watch", "500ms", "--drain-seconds", "2"]);
    let mut running = Running::start(cmd);
    let addr = running.listener().await;
    let admin = running.admin();
    let admin_flag = admin.to_string();

    let st = status(moto, &env, &[admin]).await;
    assert_eq!(st["phase"], "idle", "{st}");
    assert_eq!(st["current"]["fingerprint"], fp(&k0));
    assert_eq!(
        st["proxies"][0]["keys"],
        serde_json::json!({"current": [fp(&k0)]}),
        "{st}"
    );

    let load = Load::start(moto, &id, &env, addr);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. begin: a new key as AWSPENDING; its value is never printed (the
    //    leak scan of `run` knows it once the test reads it).
    let out = rotate(&moto.endpoint(), &env, &["begin"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let k1 = moto
        .key_at(&id, "AWSPENDING")
        .await
        .expect("AWSPENDING staged");
    assert!(!out.all().contains(&k1));
    assert!(out.stdout.contains(&fp(&k1)), "{}", out.stdout);
    assert!(
        out.stdout.contains("force-sync=$(date +%s)"),
        "{}",
        out.stdout
    );
    assert_eq!(moto.key_at(&id, "AWSCURRENT").await.unwrap(), k0);
    running
        .wait_for(
            &format!("previous key none, pending key {}", fp(&k1)),
            Duration::from_secs(30),
        )
        .await;
    let st = status(moto, &env, &[admin]).await;
    assert_eq!(st["phase"], "pending", "{st}");
    assert_eq!(st["pending"]["fingerprint"], fp(&k1));
    assert_eq!(st["proxies"][0]["missing"], serde_json::json!([]), "{st}");
    assert_eq!(
        st["proxies"][0]["verdict"],
        "holds the pending key: ready to promote"
    );
    assert!(
        st["proxies"][0]["keys"]["pending"]
            .as_array()
            .unwrap()
            .contains(&fp(&k1).into()),
        "{st}"
    );

    // 2. promote, checked against the proxy: clients move to k1 at once.
    let out = rotate(&moto.endpoint(), &env, &["promote", "--admin", &admin_flag]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(moto.key_at(&id, "AWSCURRENT").await.unwrap(), k1);
    assert_eq!(moto.key_at(&id, "AWSPREVIOUS").await.unwrap(), k0);
    assert_eq!(moto.key_at(&id, "AWSPENDING").await, None);
    running
        .wait_for(
            // Not the state between promote's two label moves (k1 still
            // pending too), which the watch may also load.
            &format!("previous key {}, pending key none", fp(&k0)),
            Duration::from_secs(30),
        )
        .await;
    let st = status(moto, &env, &[admin]).await;
    assert_eq!(st["phase"], "promoted", "{st}");
    // (The epoch still draining may add its own keys to these lists.)
    let holds = |slot: &str, key: &str| {
        st["proxies"][0]["keys"][slot]
            .as_array()
            .is_some_and(|a| a.contains(&fp(key).into()))
    };
    assert!(holds("current", &k1) && holds("previous", &k0), "{st}");

    // 3. retire: nobody signs with k0 any more, so the check passes.
    let out = rotate(
        &moto.endpoint(),
        &env,
        &["retire", "--admin", &admin_flag, "--window", "2s"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(moto.key_at(&id, "AWSPREVIOUS").await, None);
    let v1 = moto
        .stages(&id)
        .await
        .into_iter()
        .find(|(_, st)| st.iter().any(|s| s == "AWSCURRENT"))
        .unwrap()
        .0;
    running
        .wait_for(
            &format!(
                "current key {} (version {v1}), previous key none, pending key none",
                fp(&k1)
            ),
            Duration::from_secs(30),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = load.stop().await;

    let failed: Vec<_> = results.iter().filter(|(s, _)| *s != 200).collect();
    assert!(results.len() > 100, "only {} requests sent", results.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        results.len()
    );
    assert!(results.iter().any(|(_, f)| *f == fp(&k0)));
    assert!(results.iter().any(|(_, f)| *f == fp(&k1)));

    // The draining epoch still holds k0 (its gauges are merged into the
    // new epoch's stats until it exits, drain + 5 s); then only k1 is left.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(moto, &env, &[admin]).await;
        assert_eq!(st["phase"], "idle", "{st}");
        if st["proxies"][0]["keys"] == serde_json::json!({"current": [fp(&k1)]}) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "k0 still held: {st}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let signed = |key: &str| {
        let mut r = Req::new("GET", "/v1/after");
        r.authority = addr.to_string();
        r.signed(key, &env)
    };
    assert_eq!(
        send(addr, &signed(&k0)).await.status,
        401,
        "the retired key still works"
    );
    assert_eq!(send(addr, &signed(&k1)).await.status, 200);
    let (code, output) = running.terminate().await;
    assert_eq!(code, 0, "{output}");
}

/// The steps refuse what would fail a request: `promote` while a proxy
/// does not hold the pending key (or no proxy was checked), `retire` while
/// a proxy has not loaded the promoted key or still verifies requests with
/// the previous one; `begin` twice; `--force` overrides; `cancel` drops
/// the pending key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_refuse_what_would_fail_a_request() {
    let (moto, env, id, k0) = new_secret().await;
    let upstream = Upstream::start().await;
    let ep = moto.endpoint();
    // A proxy that does not follow Secrets Manager (no --watch).
    let start = |h: &tempfile::TempDir| {
        let mut cmd = run_cmd(h.path());
        cmd.args(["--env", &env, "--endpoint-url", &ep])
            .args(["--upstream", &upstream.addr.to_string()]);
        Running::start(cmd)
    };
    let h = home();
    let mut stale = start(&h);
    stale.listener().await;
    let admin = stale.admin().to_string();

    let out = rotate(&ep, &env, &["promote", "--admin", &admin]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("rotate begin"), "{}", out.stderr);
    let out = rotate(&ep, &env, &["begin"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let k1 = moto.key_at(&id, "AWSPENDING").await.unwrap();
    let out = rotate(&ep, &env, &["begin"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("already under way"), "{}", out.stderr);

    // The proxy lacks the pending key: promote refuses, status says so.
    let out = rotate(&ep, &env, &["promote", "--admin", &admin]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(
        out.stderr
            .contains(&format!("does not hold the pending key {}", fp(&k1))),
        "{}",
        out.stderr
    );
    let out = rotate(&ep, &env, &["promote"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(
        out.stderr.contains("no proxy was checked"),
        "{}",
        out.stderr
    );
    let st = status(moto, &env, &[stale.admin()]).await;
    assert_eq!(st["phase"], "pending", "{st}");
    assert_eq!(
        st["proxies"][0]["missing"],
        serde_json::json!([fp(&k1)]),
        "{st}"
    );
    assert_eq!(st["proxies"][0]["accepts_current"], true, "{st}");
    assert!(
        st["proxies"][0]["verdict"]
            .as_str()
            .unwrap()
            .contains("not ready to promote"),
        "{st}"
    );
    assert_eq!(
        moto.key_at(&id, "AWSCURRENT").await.unwrap(),
        k0,
        "promoted anyway"
    );

    // cancel drops it; a new begin stages another key.
    let out = rotate(&ep, &env, &["cancel"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(moto.key_at(&id, "AWSPENDING").await, None);
    let out = rotate(&ep, &env, &["begin"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let k2 = moto.key_at(&id, "AWSPENDING").await.unwrap();
    assert_ne!(k1, k2);

    // --force promotes regardless (the operator checked another way).
    let out = rotate(&ep, &env, &["promote", "--force", "--admin", &admin]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("warning (--force)"), "{}", out.stdout);
    assert_eq!(moto.key_at(&id, "AWSCURRENT").await.unwrap(), k2);
    // A new rotation before the old key is retired would drop it unchecked.
    let out = rotate(&ep, &env, &["begin"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("rotate retire"), "{}", out.stderr);

    // The stale proxy still has k0 as its current key: retire refuses.
    let out = rotate(&ep, &env, &["retire", "--admin", &admin, "--window", "1s"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(
        out.stderr.contains("does not use the current key"),
        "{}",
        out.stderr
    );
    let (code, output) = stale.terminate().await;
    assert_eq!(code, 0, "{output}");

    // A proxy with k2 current and k0 previous, still used by a client:
    // retire refuses while requests verify with k0.
    let h2 = home();
    let mut fresh = start(&h2);
    let addr = fresh.listener().await;
    let admin = fresh.admin().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let old_client = {
        let (stop, env, k0) = (Arc::clone(&stop), env.clone(), k0.clone());
        tokio::spawn(async move {
            let mut ok = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut r = Req::new("GET", "/v1/old-client");
                r.authority = addr.to_string();
                if send(addr, &r.signed(&k0, &env)).await.status == 200 {
                    ok += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ok
        })
    };
    let out = rotate(&ep, &env, &["retire", "--admin", &admin, "--window", "2s"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(
        out.stderr.contains("with the previous key in the last 2 s"),
        "{}",
        out.stderr
    );
    stop.store(true, Ordering::SeqCst);
    assert!(
        old_client.await.unwrap() > 0,
        "the old key was not accepted as previous"
    );
    let out = rotate(&ep, &env, &["retire", "--admin", &admin, "--window", "2s"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(moto.key_at(&id, "AWSPREVIOUS").await, None);
    let out = rotate(&ep, &env, &["retire", "--admin", &admin]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let (code, output) = fresh.terminate().await;
    assert_eq!(code, 0, "{output}");

    // A promotion left half done (AWSCURRENT moved, AWSPENDING not removed,
    // as if the second call had failed): status says so, promote finishes.
    let out = rotate(&ep, &env, &["begin"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let stages = moto.stages(&id).await;
    let with = |label: &str| {
        stages
            .iter()
            .find(|(_, st)| st.iter().any(|s| s == label))
            .map(|(v, _)| v.clone())
            .unwrap()
    };
    let (current, pending) = (with("AWSCURRENT"), with("AWSPENDING"));
    moto.call(
        "UpdateSecretVersionStage",
        serde_json::json!({"SecretId": id, "VersionStage": "AWSCURRENT", "MoveToVersionId": pending, "RemoveFromVersionId": current}),
    )
    .await;
    let st = status(moto, &env, &[]).await;
    assert!(st["next"].as_str().unwrap().contains("half done"), "{st}");
    assert_eq!(st["pending"], Value::Null, "{st}");
    let out = rotate(&ep, &env, &["begin"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("half done"), "{}", out.stderr);
    let out = rotate(&ep, &env, &["promote"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("finished a half-done promotion"),
        "{}",
        out.stdout
    );
    assert_eq!(moto.key_at(&id, "AWSPENDING").await, None);
}

/// A transient Secrets Manager failure while `run --watch` reads a staged
/// key (HTTP 500 on GetSecretValue, after DescribeSecret saw the new label)
/// is retried at the next poll, not remembered as a refused version: once
/// the service heals, the rotation is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_during_watch_does_not_block_a_later_rotation() {
    let (moto, env, id, _) = new_secret().await;
    let proxy = FaultyProxy::start(moto.addr).await;
    let upstream = Upstream::start().await;
    let h = home();
    let mut cmd = run_cmd(h.path());
    cmd.args(["--env", &env, "--endpoint-url", &proxy.endpoint()])
        .args(["--upstream", &upstream.addr.to_string()])
        .args([
            "--watch",
            "300ms",
            "--drain-seconds",
            "1",
            "--aws-max-attempts",
            "1",
        ]);
    let mut running = Running::start(cmd);
    let addr = running.listener().await;

    proxy.fail(Some("GetSecretValue"));
    let out = rotate(&moto.endpoint(), &env, &["begin"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let k1 = moto.key_at(&id, "AWSPENDING").await.unwrap();
    running
        .wait_for("trying again at the next poll", Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(proxy.failed() >= 2, "only {} failed reads", proxy.failed());
    assert!(
        !running.output().contains("rotation done"),
        "{}",
        running.output()
    );
    proxy.fail(None);
    running
        .wait_for("rotation done: epoch 1", Duration::from_secs(15))
        .await;
    let mut r = Req::new("GET", "/v1/pending");
    r.authority = addr.to_string();
    assert_eq!(send(addr, &r.signed(&k1, &env)).await.status, 200);
    let (code, output) = running.terminate().await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!("pending key {}", fp(&k1))),
        "{output}"
    );
}

edge_hmac_tests::matrix!(a_full_rotation_under_load_fails_no_request);
