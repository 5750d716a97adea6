//! The `edge-hmac` CLI against a real Secrets Manager API (moto in server
//! mode) and a real Envoy. Secrets are generated here; credentials are fake.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_hmac::render::envoy::Module;
use edge_hmac_core::scheme::fingerprint;
use edge_hmac_tests::aws::{FakeEndpoint, Misbehaviour, Moto, cli, edge_value, unique_env};
use edge_hmac_tests::build::{filter_wasm, module_so, workspace};
use edge_hmac_tests::cli::{
    config_home, register_dev_secret_in, run, run_revealing, scan_moto_log,
};
use edge_hmac_tests::client::{Body, Req, Resp, send};
use edge_hmac_tests::secrets::{assert_no_known_secret, assert_no_secret, secret};
use edge_hmac_tests::target::Target;
use edge_hmac_tests::upstream::Upstream;

pub(crate) fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Writes `dir/request.http`: the POST to `/v1/orders?dry_run=1` on `addr`
/// that `sign` made, as raw HTTP/1.1 (what `edge-hmac verify` reads), with
/// the header `lines` it printed and `body`.
pub(crate) fn raw_capture(
    dir: &std::path::Path,
    addr: SocketAddr,
    lines: &[&str],
    body: &str,
) -> std::path::PathBuf {
    let mut text = format!("POST /v1/orders?dry_run=1 HTTP/1.1\r\nHost: {addr}\r\n");
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let path = dir.join("request.http");
    std::fs::write(&path, text).unwrap();
    path
}

fn fetch_cmd(home: &std::path::Path, moto: &Moto, args: &[&str]) -> Command {
    let mut cmd = cli(home);
    cmd.arg("fetch")
        .args(["--endpoint-url", &moto.endpoint()])
        .args(args);
    cmd
}

/// `fetch` prints id, version and stages, environment, length and a
/// fingerprint — never the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_summary_never_shows_the_secret() {
    let moto = Moto::shared();
    let env = unique_env();
    let key = secret();
    let id = format!("crawbl/{env}/edge/hmac");
    let version = moto.create_secret(&id, &edge_value(&key, &env)).await;
    let h = home();
    let out = run(fetch_cmd(h.path(), moto, &["--env", &env])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        id.as_str(),
        version.as_str(),
        "AWSCURRENT",
        &format!("environment: {env}"),
        &format!("length:      {} bytes", key.len()),
        &fingerprint(key.as_bytes()),
        "eu-central-1",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            out.stdout
        );
    }
    assert_no_secret(&out.all(), &[&key]);
    // The machine summary has no secret either.
    let out = run(fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--format", "json"],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["fingerprint"], fingerprint(key.as_bytes()));
    assert!(v.get("hmac_secret").is_none());
    assert_no_secret(&out.all(), &[&key]);
}

/// The value itself needs --reveal and a machine format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_reveal_needs_flag_and_machine_format() {
    let moto = Moto::shared();
    let env = unique_env();
    let key = secret();
    moto.create_secret(&format!("crawbl/{env}/edge/hmac"), &edge_value(&key, &env))
        .await;
    let h = home();
    let refused = run(fetch_cmd(h.path(), moto, &["--env", &env, "--reveal"])).await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("--format env or --format json"),
        "{}",
        refused.stderr
    );
    let refused = run(fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--format", "env"],
    ))
    .await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("add --reveal"),
        "{}",
        refused.stderr
    );
    assert_no_secret(&refused.all(), &[&key]);
    let env_out = run_revealing(fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--format", "env", "--reveal"],
    ))
    .await;
    assert_eq!(env_out.code, 0);
    // Compared without printing: on failure the output would show the secret.
    assert!(
        env_out.stdout == format!("HMAC_SECRET={key}\nHMAC_ENVIRONMENT={env}\n"),
        "--format env --reveal output differs (not shown: it holds the secret)"
    );
    let json = run_revealing(fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--format", "json", "--reveal"],
    ))
    .await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        v["hmac_secret"] == key.as_str(),
        "--format json --reveal has the wrong secret (not shown)"
    );
}

/// Every way a secret can be wrong gets its own message and exit code, and
/// no message contains the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_failures_have_distinct_exit_codes() {
    let moto = Moto::shared();
    let key = secret();
    let short = "short-secret-0123456789";
    let cases: Vec<(&str, Option<String>, i32, &str)> = vec![
        ("not found", None, 12, "not found"),
        (
            "not JSON",
            Some(format!("{key} as plain text")),
            16,
            "not a JSON object",
        ),
        (
            "JSON array",
            Some(format!("[\"{key}\"]")),
            16,
            "not a JSON object",
        ),
        (
            "missing hmac_secret",
            Some(r#"{"environment":"ENV"}"#.into()),
            17,
            "\"hmac_secret\"",
        ),
        (
            "non-string environment",
            Some(format!(r#"{{"hmac_secret":"{key}","environment":1}}"#)),
            17,
            "\"environment\"",
        ),
        (
            "too short",
            Some(format!(
                r#"{{"hmac_secret":"{short}","environment":"ENV"}}"#
            )),
            18,
            "at least 32",
        ),
        (
            "environment mismatch",
            Some(format!(r#"{{"hmac_secret":"{key}","environment":"prod"}}"#)),
            19,
            "\"prod\"",
        ),
    ];
    let h = home();
    for (what, value, code, message) in cases {
        let env = unique_env();
        if let Some(v) = value {
            moto.create_secret(&format!("crawbl/{env}/edge/hmac"), &v.replace("ENV", &env))
                .await;
        }
        let out = run(fetch_cmd(h.path(), moto, &["--env", &env])).await;
        assert_eq!(out.code, code, "{what}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{what}: {}", out.stderr);
        assert_no_secret(&out.all(), &[&key, short]);
    }
    // No credentials anywhere in the chain.
    let mut cmd = fetch_cmd(h.path(), moto, &["--env", "dev"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = run(cmd).await;
    assert_eq!(out.code, 10, "{}", out.stderr);
    assert!(
        out.stderr.contains("no AWS credentials found"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("AWS_PROFILE"),
        "says what to do next: {}",
        out.stderr
    );
}

/// An identity without permission gets "access denied" (moto enforcing IAM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_is_reported() {
    let key = secret();
    let value = edge_value(&key, "denied");
    let moto = Moto::start(&["--deny", "crawbl/denied/edge/hmac", "--deny-value", &value]);
    let (id, secret_key) = moto.denied_user.clone().unwrap();
    let h = home();
    let mut cmd = fetch_cmd(h.path(), &moto, &["--env", "denied"]);
    cmd.env("AWS_ACCESS_KEY_ID", &id)
        .env("AWS_SECRET_ACCESS_KEY", &secret_key);
    let out = run(cmd).await;
    assert_eq!(out.code, 11, "{}", out.stderr);
    assert!(out.stderr.contains("access denied"), "{}", out.stderr);
    assert!(
        out.stderr.contains("secretsmanager:GetSecretValue"),
        "{}",
        out.stderr
    );
    assert_no_secret(&out.all(), &[&key, &secret_key]);
}

/// A stopped endpoint, a silent one and a throttling one: network errors
/// and throttling (after retries with backoff) get their own exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_slow_and_throttling_endpoints() {
    let h = home();
    let endpoint_cmd = |endpoint: &str| {
        let mut cmd = cli(h.path());
        cmd.args(["fetch", "--env", "dev", "--endpoint-url", endpoint])
            .args(["--aws-timeout", "1", "--aws-max-attempts", "3"]);
        cmd
    };
    // Stopped: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = run(endpoint_cmd(&format!("http://127.0.0.1:{port}"))).await;
    assert_eq!(out.code, 14, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach Secrets Manager"),
        "{}",
        out.stderr
    );
    // Slow: accepts, never answers.
    let silent = FakeEndpoint::start(Misbehaviour::Silent).await;
    let started = Instant::now();
    let out = run(endpoint_cmd(&silent.endpoint())).await;
    assert_eq!(out.code, 14, "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // Throttled: retried with backoff, then reported.
    let throttle = FakeEndpoint::start(Misbehaviour::Throttle).await;
    let out = run(endpoint_cmd(&throttle.endpoint())).await;
    assert_eq!(out.code, 13, "{}", out.stderr);
    assert!(out.stderr.contains("throttled"), "{}", out.stderr);
    assert_eq!(throttle.requests(), 3, "one request per attempt");
}

/// After PutSecretValue the new value is AWSCURRENT and the old one
/// AWSPREVIOUS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_stages_after_put_secret_value() {
    let moto = Moto::shared();
    let env = unique_env();
    let id = format!("crawbl/{env}/edge/hmac");
    let (k1, k2) = (secret(), secret());
    let v1 = moto.create_secret(&id, &edge_value(&k1, &env)).await;
    let h = home();
    let out = run(fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--version-stage", "AWSPREVIOUS"],
    ))
    .await;
    assert_eq!(
        out.code, 12,
        "a secret never rotated has no AWSPREVIOUS: {}",
        out.stderr
    );
    let v2 = moto.put_secret_value(&id, &edge_value(&k2, &env)).await;
    let json = |stage: &'static str| {
        let h = h.path().to_path_buf();
        let env = env.clone();
        async move {
            let out = run(fetch_cmd(
                &h,
                moto,
                &["--env", &env, "--format", "json", "--version-stage", stage],
            ))
            .await;
            assert_eq!(out.code, 0, "{}", out.stderr);
            serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let current = json("AWSCURRENT").await;
    assert_eq!(current["version_id"], v2.as_str());
    assert_eq!(current["fingerprint"], fingerprint(k2.as_bytes()));
    let previous = json("AWSPREVIOUS").await;
    assert_eq!(previous["version_id"], v1.as_str());
    assert_eq!(previous["fingerprint"], fingerprint(k1.as_bytes()));
    // Retiring the old key (docs/rotation.md step 5): remove the label.
    moto.call(
        "UpdateSecretVersionStage",
        serde_json::json!({"SecretId": id, "VersionStage": "AWSPREVIOUS", "RemoveFromVersionId": v1}),
    )
    .await;
    let out = run(fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--version-stage", "AWSPREVIOUS"],
    ))
    .await;
    assert_eq!(out.code, 12, "AWSPREVIOUS still there: {}", out.stdout);
    assert_eq!(json("AWSCURRENT").await["version_id"], v2.as_str());
}

/// Without --region the region falls back to eu-central-1 (moto keeps
/// secrets per region), and a named profile supplies credentials and region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_fallback_and_profile() {
    let moto = Moto::shared();
    let env = unique_env();
    let key = secret();
    moto.create_secret(&format!("crawbl/{env}/edge/hmac"), &edge_value(&key, &env))
        .await;
    let h = home();
    let out = run(fetch_cmd(h.path(), moto, &["--env", &env])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("region:      eu-central-1"),
        "{}",
        out.stdout
    );
    // The SDK's own endpoint variable works as well as --endpoint-url.
    let mut cmd = cli(h.path());
    cmd.args(["fetch", "--env", &env])
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint());
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Another region does not have it.
    let out = run(fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--region", "us-east-1"],
    ))
    .await;
    assert_eq!(out.code, 12, "{}", out.stderr);
    // A profile with its own (fake) keys and region.
    std::fs::write(
        h.path().join("aws-config"),
        "[profile edge-test]\nregion = eu-central-1\naws_access_key_id = profilekey\naws_secret_access_key = profilesecret\n",
    )
    .unwrap();
    let mut cmd = fetch_cmd(h.path(), moto, &["--env", &env, "--profile", "edge-test"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut cmd = fetch_cmd(
        h.path(),
        moto,
        &["--env", &env, "--profile", "missing-profile"],
    );
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let out = run(cmd).await;
    assert_eq!(out.code, 10, "{}", out.stderr);
}

/// A background `edge-hmac run` whose stderr is collected line by line.
pub(crate) struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
    config_home: Option<std::path::PathBuf>,
}

impl Running {
    pub(crate) fn start(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start edge-hmac run");
        let collect = |r: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        Running {
            child,
            stderr,
            stdout,
            config_home: config_home(&cmd),
        }
    }

    pub(crate) fn output(&self) -> String {
        format!(
            "{}\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    /// Waits for an output line containing `needle`; returns it.
    pub(crate) async fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            for lines in [&self.stderr, &self.stdout] {
                if let Some(line) = lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                    return line.clone();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "edge-hmac run exited ({status}) waiting for {needle:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} after {timeout:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The listener address from the "Envoy ready" line.
    pub(crate) async fn listener(&mut self) -> SocketAddr {
        let line = self.wait_for("Envoy ready", Duration::from_secs(60)).await;
        let url = line.split("listener http://").nth(1).unwrap();
        url.split_whitespace().next().unwrap().parse().unwrap()
    }

    pub(crate) fn admin(&self) -> SocketAddr {
        let lines = self.stderr.lock().unwrap();
        let line = lines
            .iter()
            .rev()
            .find(|l| l.contains("admin http://"))
            .unwrap();
        line.split("admin http://")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends SIGTERM and returns the exit code.
    pub(crate) async fn terminate(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // The suite-wide scan (edge_hmac_tests::secrets).
                if let Some(dir) = &self.config_home {
                    register_dev_secret_in(dir);
                }
                assert_no_known_secret("the output of edge-hmac run", &self.output());
                scan_moto_log();
                return (status.code().unwrap_or(-1), self.output());
            }
            assert!(Instant::now() < deadline, "edge-hmac run ignored SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn run_cmd(home: &std::path::Path) -> Command {
    run_cmd_on(home, Target::WASM_1_40)
}

/// `edge-hmac run` on target `t`: its Envoy (`ENVOY_BIN`) and its build of
/// the filter (`--module`, and the `.wasm` or `.so` the suite built).
pub(crate) fn run_cmd_on(home: &std::path::Path, t: Target) -> Command {
    let mut cmd = cli(home);
    let envoy = t.envoy.bin();
    if envoy.prefix.is_empty() {
        cmd.env("ENVOY_BIN", &envoy.program);
    }
    cmd.arg("run")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--concurrency",
            "2",
        ])
        .args(["--module", t.module_flag()]);
    match t.module {
        Module::Wasm => cmd.arg("--wasm").arg(filter_wasm()),
        Module::Native => cmd.arg("--module-path").arg(module_so()),
    };
    cmd
}

/// The README's main job: `edge-hmac run --dev` needs no AWS, creates a
/// private dev secret once and reuses it, prints a signed curl that passes
/// and an unsigned one that is refused, and stops with Envoy on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_dev_is_the_main_job() {
    let h = home();
    let mut cmd = run_cmd(h.path());
    cmd.arg("--dev");
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let mut running = Running::start(cmd);
    let addr = running.listener().await;
    running
        .wait_for("Press Ctrl-C", Duration::from_secs(5))
        .await;
    let secret_file = h.path().join(".config/edge-hmac/dev-secret.json");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&secret_file).unwrap()).unwrap();
    let key = stored["hmac_secret"].as_str().unwrap().to_owned();
    assert_eq!(stored["environment"], "dev");

    // Run the printed signed curl's request: same method, URL and headers.
    let printed = running.stdout.lock().unwrap().clone();
    let curl = printed
        .iter()
        .find(|l| l.contains("x-crawbl-signature"))
        .unwrap()
        .clone();
    let mut req = Req::new("GET", "/v1/hello?name=dev");
    req.authority = addr.to_string();
    for part in curl.split("-H '").skip(1) {
        let header = part.split('\'').next().unwrap();
        let (n, v) = header.split_once(": ").unwrap();
        req = req.header(n, v);
    }
    assert!(
        curl.contains(&format!("http://{addr}/v1/hello?name=dev")),
        "{curl}"
    );
    let resp = send(addr, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("edge-hmac dev echo"));
    let unsigned = send(addr, &Req::new("GET", "/v1/hello?name=dev")).await;
    assert_eq!(unsigned.status, 401);
    assert!(
        printed.iter().any(|l| l.contains("curl -sS -i")),
        "{printed:?}"
    );

    let (code, output) = running.terminate().await;
    assert_eq!(code, 0, "{output}");
    assert_no_secret(&output, &[&key]);
    assert!(output.contains("(created, mode 0600"), "{output}");

    // A second run reuses the same secret.
    let mut cmd = run_cmd(h.path());
    cmd.arg("--dev");
    let mut again = Running::start(cmd);
    again.listener().await;
    let (_, output) = again.terminate().await;
    assert!(output.contains("(reused, mode 0600"), "{output}");
    assert!(output.contains(&fingerprint(key.as_bytes())), "{output}");
}

/// `sign` makes headers the filter accepts (checked in a real Envoy) and a
/// curl command; `verify` accepts the same request and names the rule a
/// tampered one breaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_and_verify_commands() {
    let h = home();
    let key = secret();
    let upstream = Upstream::start().await;
    // Envoy from the harness with the same key.
    let local = edge_hmac::render::envoy::LocalEnvoy::single(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        upstream.addr,
        filter_wasm().to_path_buf(),
        edge_hmac_core::config::PluginConfig::default(),
    );
    let envoy = edge_hmac_tests::envoy::Envoy::start(
        &local,
        &[("HMAC_SECRET", &key), ("HMAC_ENVIRONMENT", "dev")],
    )
    .await;
    let addr = envoy.listener("edge_hmac").await;
    let url = format!("http://{addr}/v1/orders?dry_run=1");
    let sign = |extra: &[&str]| {
        let mut cmd = cli(h.path());
        cmd.env("HMAC_SECRET", &key)
            .args([
                "sign",
                "--secret-env",
                "HMAC_SECRET",
                "--env",
                "dev",
                "-X",
                "POST",
                "--url",
                &url,
            ])
            .args(["-d", r#"{"sku":"A-1"}"#, "--nonce"])
            .args(extra);
        cmd
    };
    let out = run(sign(&[])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut req =
        Req::new("POST", "/v1/orders?dry_run=1").body(Body::Full(br#"{"sku":"A-1"}"#.to_vec()));
    req.authority = addr.to_string();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    for line in &lines {
        let (n, v) = line.split_once(": ").unwrap();
        req = req.header(n, v);
    }
    let resp: Resp = send(addr, &req).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(upstream.records()[0].body, br#"{"sku":"A-1"}"#);
    assert_no_secret(&out.all(), &[&key]);

    let curl = run(sign(&["--curl", "--base64"])).await;
    assert!(
        curl.stdout
            .starts_with("curl -sS --path-as-is -X POST -H 'x-crawbl-timestamp: "),
        "{}",
        curl.stdout
    );
    assert!(
        curl.stdout.contains(r#"--data-binary '{"sku":"A-1"}'"#),
        "{}",
        curl.stdout
    );
    assert!(
        curl.stdout.trim_end().ends_with(&format!("'{url}'")),
        "{}",
        curl.stdout
    );

    // verify: the same request as raw HTTP.
    let raw = |body: &str| raw_capture(h.path(), addr, &lines, body);
    let verify = |path: std::path::PathBuf| {
        let mut cmd = cli(h.path());
        cmd.env("HMAC_SECRET", &key)
            .args(["verify", "--secret-env", "HMAC_SECRET", "--env", "dev"])
            .arg(path);
        cmd
    };
    let ok = run(verify(raw(r#"{"sku":"A-1"}"#))).await;
    assert_eq!(ok.code, 0, "{}", ok.all());
    assert!(ok.stdout.contains("result:      verified"), "{}", ok.stdout);
    assert!(
        ok.stdout.contains("  | CRAWBL-HMAC-SHA256-V1"),
        "{}",
        ok.stdout
    );
    let bad = run(verify(raw(r#"{"sku":"A-2"}"#))).await;
    assert_eq!(bad.code, 4, "{}", bad.all());
    assert!(
        bad.stdout.contains("refused, HTTP 401: content_mismatch"),
        "{}",
        bad.stdout
    );
    let mut wrong_key = verify(raw(r#"{"sku":"A-1"}"#));
    wrong_key.env("HMAC_SECRET", secret());
    let bad = run(wrong_key).await;
    assert_eq!(bad.code, 4);
    assert!(bad.stdout.contains("invalid_signature"), "{}", bad.stdout);
    assert_no_secret(&format!("{}{}", ok.all(), bad.all()), &[&key]);

    // --unsigned-payload signs the literal; verify accepts it (any body)
    // only with --unsigned-payload-path, as the filter does on those paths.
    let unsigned = run(sign(&["--unsigned-payload"])).await;
    assert_eq!(unsigned.code, 0, "{}", unsigned.stderr);
    assert!(
        unsigned
            .stdout
            .contains("x-crawbl-content-sha256: UNSIGNED-PAYLOAD\n"),
        "{}",
        unsigned.stdout
    );
    let mut text = format!("POST /v1/orders?dry_run=1 HTTP/1.1\r\nHost: {addr}\r\n");
    for line in unsigned.stdout.lines() {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 9\r\n\r\nany bytes");
    let path = h.path().join("unsigned.http");
    std::fs::write(&path, text).unwrap();
    let refused = run(verify(path.clone())).await;
    assert_eq!(refused.code, 4, "{}", refused.all());
    assert!(
        refused.stdout.contains("malformed_signature")
            && refused.stdout.contains("unsigned_payload_paths"),
        "{}",
        refused.stdout
    );
    let mut allowed = verify(path);
    allowed.arg("--unsigned-payload-path");
    let allowed = run(allowed).await;
    assert_eq!(allowed.code, 0, "{}", allowed.all());
    assert!(
        allowed.stdout.contains("  | UNSIGNED-PAYLOAD"),
        "{}",
        allowed.stdout
    );
}

/// `edge-hmac render envoy` with no flags prints envoy/envoy-local.yaml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_envoy_command_matches_checked_in_file() {
    let h = home();
    let mut cmd = cli(h.path());
    cmd.args(["render", "envoy"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let checked_in = std::fs::read_to_string(workspace().join("envoy/envoy-local.yaml")).unwrap();
    assert_eq!(out.stdout, checked_in);
    let mut bad = cli(h.path());
    bad.args(["render", "envoy", "--clock-skew", "0"]);
    let out = run(bad).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("clock_skew_seconds"), "{}", out.stderr);
}

/// `run` against Secrets Manager: starts with AWSCURRENT and AWSPREVIOUS;
/// with --watch, a PutSecretValue is picked up by a hot restart (new key
/// current, old key previous) while a client keeps sending signed requests
/// — and a slow upload spans the restart: zero failed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_watch_follows_rotation_without_failed_requests() {
    let moto = Moto::shared();
    let env = unique_env();
    let id = format!("crawbl/{env}/edge/hmac");
    let (k0, k1, k2) = (secret(), secret(), secret());
    moto.create_secret(&id, &edge_value(&k0, &env)).await;
    let v1 = moto.put_secret_value(&id, &edge_value(&k1, &env)).await;
    let upstream = Upstream::start().await;
    let h = home();
    let mut cmd = run_cmd(h.path());
    cmd.args(["--env", &env, "--endpoint-url", &moto.endpoint()])
        .args([
            "--upstream",
            &upstream.addr.to_string(),
            "--watch",
            "1s",
            "--drain-seconds",
            "2",
        ]);
    let mut running = Running::start(cmd);
    let addr = running.listener().await;
    let signed = |key: &str| {
        let mut r = Req::new("GET", "/v1/rotating");
        r.authority = addr.to_string();
        r.signed(key, &env)
    };
    // AWSPREVIOUS (k0) is accepted from the start, as is AWSCURRENT (k1).
    assert_eq!(send(addr, &signed(&k0)).await.status, 200);
    assert_eq!(send(addr, &signed(&k1)).await.status, 200);

    // Load: a steady stream of k1-signed requests on fresh connections.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::<u16>::new()));
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (stop, results, req) = (Arc::clone(&stop), Arc::clone(&results), signed(&k1));
        workers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let status = match edge_hmac_tests::client::Conn::h1(addr).await {
                    Ok(mut c) => c.send(&req).await.map(|r| r.status).unwrap_or(0),
                    Err(_) => 0,
                };
                results.lock().unwrap().push(status);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // A slow upload in flight across the restart.
    let mut slow = Req::new("POST", "/v1/upload").body(Body::Chunks {
        chunks: vec![vec![b'u'; 1024]; 12],
        delay: Duration::from_millis(250),
    });
    slow.authority = addr.to_string();
    let slow = slow.signed(&k1, &env);
    let slow_task = tokio::spawn(async move { send(addr, &slow).await.status });

    tokio::time::sleep(Duration::from_millis(300)).await;
    moto.put_secret_value(&id, &edge_value(&k2, &env)).await;
    running
        .wait_for("rotation done: epoch 1", Duration::from_secs(30))
        .await;
    // New current key works at once; the old one keeps working as previous.
    assert_eq!(send(addr, &signed(&k2)).await.status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        slow_task.await.unwrap(),
        200,
        "the upload spanning the restart failed"
    );
    let results = results.lock().unwrap().clone();
    let failed = results.iter().filter(|s| **s != 200).count();
    assert!(results.len() > 50, "only {} requests sent", results.len());
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed across the rotation: {results:?}",
        results.len()
    );
    // After the rotation k0 is no longer accepted (only one previous key).
    assert_eq!(send(addr, &signed(&k0)).await.status, 401);
    let admin = running.admin();
    let stats = edge_hmac_tests::client::get(admin, "/stats?filter=edge_hmac")
        .await
        .unwrap()
        .text();
    let previous_used: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("wasmcustom.edge_hmac.verified_previous_key: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // The k1 load after the rotation went through the previous key.
    assert!(previous_used > 0, "{stats}");
    // Retiring the old key (docs/rotation.md step 5) is followed too: the
    // AWSPREVIOUS label removed, the next epoch has no previous key.
    moto.call(
        "UpdateSecretVersionStage",
        serde_json::json!({"SecretId": id, "VersionStage": "AWSPREVIOUS", "RemoveFromVersionId": v1}),
    )
    .await;
    running
        .wait_for("rotation done: epoch 2", Duration::from_secs(30))
        .await;
    assert_eq!(send(addr, &signed(&k1)).await.status, 401);
    assert_eq!(send(addr, &signed(&k2)).await.status, 200);
    // A bad new version (too short) is refused: the running Envoy keeps its
    // keys and keeps serving.
    moto.put_secret_value(&id, &edge_value("too-short-to-use", &env))
        .await;
    running
        .wait_for(
            "secret refused, keeping the running Envoy",
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(send(addr, &signed(&k2)).await.status, 200);
    // Reported once, not on every poll.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reports = running
        .stderr
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("secret refused"))
        .count();
    assert_eq!(reports, 1, "{}", running.output());
    let (code, output) = running.terminate().await;
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains(&format!("previous key {}", fingerprint(k1.as_bytes()))),
        "{output}"
    );
    assert!(
        output.contains(&format!("current key {}", fingerprint(k2.as_bytes())))
            && output.contains("previous key none"),
        "{output}"
    );
    assert_no_secret(&output, &[&k0, &k1, &k2]);
}

/// A secret pasted where a variable name belongs (`sign --secret-env`,
/// `verify --previous-secret-env`) is refused without being echoed: the
/// error shows its length and fingerprint only, and exits non-zero.
#[test]
fn a_secret_given_as_a_variable_name_is_not_echoed() {
    let home = home();
    let pasted = secret().to_uppercase().replace('-', "_");
    let fp = fingerprint(pasted.as_bytes());
    let sign = cli(home.path())
        .args([
            "sign",
            "--env",
            "dev",
            "--url",
            "http://127.0.0.1/x",
            "--secret-env",
        ])
        .arg(&pasted)
        .output()
        .unwrap();
    let request = "GET /x HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let request_file = home.path().join("request.http");
    std::fs::write(&request_file, request).unwrap();
    let verify = cli(home.path())
        .env("GOOD_KEY", secret())
        .args([
            "verify",
            "--env",
            "dev",
            "--secret-env",
            "GOOD_KEY",
            "--previous-secret-env",
        ])
        .arg(&pasted)
        .arg(&request_file)
        .output()
        .unwrap();
    for (what, out) in [("sign", sign), ("verify", verify)] {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{what} accepted it");
        assert_no_secret(&text, &[&pasted, &pasted[..20]]);
        assert!(text.contains(&fp), "{what}: no fingerprint in the error");
    }
}

/// A key pasted into any flag of any command is never echoed: not by
/// clap's own errors (bad numbers, addresses, choices), not by ours (ids,
/// paths, environments), not on standard output. Flags whose value is the
/// output itself (the signed URL and body, the names and paths `render`
/// writes) are left out: they are written as given.
#[test]
fn a_secret_pasted_into_any_flag_is_not_echoed() {
    let moto = Moto::shared();
    let home = home();
    // Not registered for the suite-wide scan: pasted into --secret-id it is
    // the id the CLI was asked to read, so Secrets Manager (moto) sees it.
    let pasted = format!("pasted-{}", edge_hmac_tests::secrets::random_hex(24));
    let endpoint = moto.endpoint();
    let aws = [
        "--endpoint-url",
        endpoint.as_str(),
        "--aws-max-attempts",
        "1",
    ];
    let secret_flags = [
        "--env",
        "--secret-id",
        "--scope",
        "--name",
        "--region",
        "--profile",
        "--endpoint-url",
    ];
    let mut cases: Vec<(Vec<&str>, &str)> = Vec::new();
    for flag in secret_flags.iter().chain(&["--version-stage", "--format"]) {
        cases.push((vec!["fetch", "--env", "dev"], flag));
    }
    let sign = vec!["sign", "--env", "dev", "--url", "http://127.0.0.1/x"];
    for flag in secret_flags
        .iter()
        .chain(&["--secret-env", "--secret-file", "--timestamp"])
    {
        cases.push((sign.clone(), flag));
    }
    cases.push((
        vec!["sign", "--dev", "--url", "http://127.0.0.1/x"],
        "--env",
    ));
    for flag in secret_flags.iter().chain(&[
        "--secret-env",
        "--previous-secret-env",
        "--secret-file",
        "--now",
        "--clock-skew",
    ]) {
        cases.push((vec!["verify", "--env", "dev"], flag));
    }
    for flag in secret_flags.iter().chain(&[
        "--envoy",
        "--listen",
        "--admin",
        "--upstream",
        "--watch",
        "--log-level",
        "--concurrency",
        "--nonce-ttl",
    ]) {
        cases.push((
            vec!["run", "--env", "dev", "--wasm", "/nonexistent.wasm"],
            flag,
        ));
    }
    for flag in [
        "--listen",
        "--admin",
        "--upstream",
        "--failure-policy",
        "--clock-skew",
    ] {
        cases.push((vec!["render", "envoy"], flag));
    }
    for flag in secret_flags.iter().chain(&["--admin"]) {
        cases.push((vec!["rotate", "begin", "--env", "dev"], flag));
    }
    cases.push((vec!["rotate", "retire", "--env", "dev"], "--window"));
    cases.push((vec!["rotate", "status", "--env", "dev"], "--format"));
    cases.push((
        vec!["render", "gateway", "--wasm-url", "https://x/f.wasm"],
        "--env",
    ));
    cases.push((
        vec![
            "render",
            "gateway",
            "--env",
            "dev",
            "--wasm-url",
            "https://x/f.wasm",
        ],
        "--wasm-sha256",
    ));
    for (args, flag) in &cases {
        for joined in [false, true] {
            let mut cmd = cli(home.path());
            cmd.args(args);
            if args[0] != "render" {
                cmd.args(aws);
            }
            if joined {
                cmd.arg(format!("{flag}={pasted}"));
            } else {
                cmd.args([flag, pasted.as_str()]);
            }
            let out = cmd.output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let what = format!("{} {flag}", args.join(" "));
            assert!(!out.status.success(), "{what}: accepted a key as its value");
            let leaked = std::panic::catch_unwind(|| assert_no_secret(&text, &[&pasted]));
            assert!(leaked.is_ok(), "{what}: the pasted key is echoed");
        }
    }
}
