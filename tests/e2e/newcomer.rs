//! Issue 25: what a new user trips over, each fixed and tested as the user
//! met it (the CLI, a real Envoy, moto): a busy port, printed next steps that
//! lost their flags, a development key made out of thin air, hints naming
//! flags that do not exist, ignored flags, a format mismatch reported as a
//! missing signature, a body mismatch without the numbers, a stage `fetch`
//! refused, unchecked module locations, paths Envoy rewrites, a draining
//! restart read as a live key, and a usage error found after a fetch.

use std::process::Command;
use std::time::Duration;

use edge_hmac_core::scheme::fingerprint;
use edge_hmac_tests::aws::{Moto, cli, edge_value, unique_env};
use edge_hmac_tests::cli::{Out, run};
use edge_hmac_tests::client::{Req, send};
use edge_hmac_tests::secrets::secret;
use edge_hmac_tests::upstream::Upstream;

use crate::load::{dev_proxy, load_cmd, load_json_exit};
use crate::loader::{Running, home, run_cmd};

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `edge-hmac run` with Envoy and the filter, listen and admin as given.
fn run_at(home: &std::path::Path, listen: &str, admin: &str) -> Command {
    let mut cmd = cli(home);
    let envoy = edge_hmac_tests::envoy::envoy_bin();
    if envoy.prefix.is_empty() {
        cmd.env("ENVOY_BIN", &envoy.program);
    }
    cmd.arg("run")
        .args(["--listen", listen, "--admin", admin, "--concurrency", "2"])
        .arg("--wasm")
        .arg(edge_hmac_tests::build::filter_wasm());
    cmd
}

/// Writes the development secret `run --dev` would make (mode 0600).
pub(crate) fn write_dev_secret(home: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let key = secret();
    let dir = home.join(".config/edge-hmac");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dev-secret.json");
    std::fs::write(&path, edge_value(&key, "dev")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    key
}

/// 1. A second `run` on a listen address in use is refused at start (exit
/// 24, naming the address); the first proxy keeps every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_busy_address() {
    let h = home();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut first = Running::start({
        let mut c = run_at(h.path(), &listen, "127.0.0.1:0");
        c.arg("--dev");
        c
    });
    let addr = first.listener().await;
    let second = run({
        let mut c = run_at(h.path(), &listen, "127.0.0.1:0");
        c.arg("--dev");
        c
    })
    .await;
    assert_eq!(second.code, 24, "{}", second.all());
    assert!(
        second
            .stderr
            .contains(&format!("listener {listen} is already in use")),
        "{}",
        second.stderr
    );
    assert!(!second.all().contains("Envoy ready"), "{}", second.all());
    // The admin address too.
    let admin = first.admin();
    let third = run({
        let mut c = run_at(h.path(), "127.0.0.1:0", &admin.to_string());
        c.arg("--dev");
        c
    })
    .await;
    assert_eq!(third.code, 24, "{}", third.all());
    assert!(third.stderr.contains("admin interface"), "{}", third.stderr);
    // Every request signed with the first proxy's key passes: no second
    // Envoy shares the port.
    let key = std::fs::read_to_string(h.path().join(".config/edge-hmac/dev-secret.json")).unwrap();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let key = key["hmac_secret"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        let mut req = Req::new("GET", "/v1/x");
        req.authority = addr.to_string();
        let resp = send(addr, &req.signed(&key, "dev")).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    first.terminate().await;
}

/// The `edge-hmac …` commands in `out`'s output, as printed.
fn printed_commands(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim().trim_matches('`');
            let start = l.find("edge-hmac rotate ")?;
            let cmd = &l[start..];
            Some(cmd.split('`').next().unwrap_or(cmd).trim().to_owned())
        })
        .collect()
}

/// Runs a printed `edge-hmac …` line in `home` exactly as printed (through
/// the shell, the environment of the shell it was printed in).
async fn paste(home: &std::path::Path, line: &str) -> Out {
    let bin = edge_hmac_tests::build::loader_bin();
    let mut cmd = cli(home);
    let script = line.replacen("edge-hmac", &bin.display().to_string(), 1);
    cmd = {
        let mut sh = Command::new("sh");
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.args(["-c", &script]);
        sh
    };
    run(cmd).await
}

/// 2 and 12a. Every next step `rotate` prints, pasted as printed, reaches
/// the same secret (its region and endpoint, not the defaults) and the same
/// proxies: begin → status → promote → status → retire. `run` without
/// `--dev` checks its usage before any AWS call, and prints a signed curl
/// that passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_next_steps_reach_the_same_place() {
    let moto = Moto::shared();
    let h = home();
    let region = "us-west-2";
    let id = format!("team/stage/{}", unique_env());
    let k0 = secret();
    moto.create_secret_in(region, &id, &edge_value(&k0, "stage"))
        .await;
    let flags = [
        "--secret-id",
        id.as_str(),
        "--region",
        region,
        "--endpoint-url",
        &moto.endpoint(),
    ];
    // 12a: no --upstream is a usage error before Secrets Manager is asked
    // (an unreachable endpoint would otherwise say "network", exit 14).
    let mut cmd = run_cmd(h.path());
    cmd.args(["--secret-id", &id, "--endpoint-url", "http://127.0.0.1:9"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--upstream"), "{}", out.stderr);

    let upstream = Upstream::start().await;
    let mut cmd = run_cmd(h.path());
    cmd.args(flags)
        .args(["--upstream", &upstream.addr.to_string()])
        .args(["--watch", "500ms", "--drain-seconds", "1"]);
    let mut running = Running::start(cmd);
    let addr = running.listener().await;
    let admin = running.admin();
    // 12a: the signed curl it prints passes.
    let curl = running
        .wait_for("curl -sS --path-as-is", Duration::from_secs(5))
        .await;
    assert!(curl.contains("x-crawbl-signature"), "{curl}");
    let hint = running
        .wait_for("make fresh ones with", Duration::from_secs(5))
        .await;
    assert!(hint.contains(&format!("--region {region}")), "{hint}");

    let mut begin = cli(h.path());
    begin
        .args(["rotate", "begin"])
        .args(flags)
        .args(["--admin", &admin.to_string()]);
    let out = run(begin).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let steps = printed_commands(&out.stdout);
    assert_eq!(steps.len(), 2, "{}", out.stdout);
    for step in &steps {
        let region_flag = format!("--region {region}");
        for flag in [region_flag.as_str(), "--endpoint-url", "--secret-id"] {
            assert!(step.contains(flag), "{step} lacks {flag}");
        }
        assert!(step.contains(&format!("--admin {admin}")), "{step}");
    }
    let status = paste(h.path(), &steps[0]).await;
    assert_eq!(status.code, 0, "{}: {}", steps[0], status.all());
    // Wait until run --watch loaded the pending key, then promote as printed.
    let k1 = moto
        .key_at_in(region, &id, "AWSPENDING")
        .await
        .expect("a pending key");
    running
        .wait_for(
            &format!("pending key {}", fingerprint(k1.as_bytes())),
            Duration::from_secs(30),
        )
        .await;
    let promote = paste(h.path(), &steps[1]).await;
    assert_eq!(promote.code, 0, "{}: {}", steps[1], promote.all());
    let after = printed_commands(&promote.stdout);
    assert_eq!(after.len(), 1, "{}", promote.stdout);
    assert!(after[0].starts_with("edge-hmac rotate retire"), "{after:?}");
    assert!(after[0].contains(&format!("--admin {admin}")), "{after:?}");
    running
        .wait_for(
            &format!("previous key {}", fingerprint(k0.as_bytes())),
            Duration::from_secs(30),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let retire = paste(h.path(), &after[0]).await;
    assert_eq!(retire.code, 0, "{}: {}", after[0], retire.all());
    let mut req = Req::new("GET", "/v1/x");
    req.authority = addr.to_string();
    assert_eq!(send(addr, &req.signed(&k1, "stage")).await.status, 200);
    running.terminate().await;
}

/// 3. `sign`, `verify` and `load` with `--dev` refuse (exit 25, pointing at
/// `run --dev`) while no development secret exists, and make none; with
/// one, they say on stderr which file and fingerprint they used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_commands_never_invent_a_key() {
    let h = home();
    let request = h.path().join("request.http");
    std::fs::write(&request, "GET /v1/x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let commands: [Vec<String>; 3] = [
        vec![
            "sign".into(),
            "--dev".into(),
            "--url".into(),
            "http://127.0.0.1:1/x".into(),
        ],
        vec![
            "verify".into(),
            "--dev".into(),
            request.display().to_string(),
        ],
        vec![
            "load".into(),
            "--dev".into(),
            "--url".into(),
            "http://127.0.0.1:1/x".into(),
            "--requests".into(),
            "1".into(),
        ],
    ];
    for args in &commands {
        let mut cmd = cli(h.path());
        cmd.args(args);
        let out = run(cmd).await;
        assert_eq!(out.code, 25, "{args:?}: {}", out.all());
        assert!(out.stderr.contains("edge-hmac run --dev"), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?} printed {}", out.stdout);
    }
    assert!(!h.path().join(".config/edge-hmac/dev-secret.json").exists());
    let key = write_dev_secret(h.path());
    let mut cmd = cli(h.path());
    cmd.args(&commands[0]);
    let out = run(cmd).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let fp = fingerprint(key.as_bytes());
    assert!(
        out.stderr.contains(&format!(
            "key {fp} (environment dev) from the development secret"
        )) && out.stderr.contains("dev-secret.json"),
        "{}",
        out.stderr
    );
}

/// 4. The "no credentials" error of `fetch` and `rotate status` suggests
/// only commands that exist (`--dev` is not a flag of theirs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_hint_names_real_commands() {
    let h = home();
    for args in [
        vec!["fetch", "--env", "dev"],
        vec!["rotate", "status", "--env", "dev"],
    ] {
        let mut cmd = cli(h.path());
        cmd.args(&args)
            .args(["--endpoint-url", &Moto::shared().endpoint()])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        let out = run(cmd).await;
        assert_eq!(out.code, 10, "{args:?}: {}", out.all());
        assert!(!out.stderr.contains("use `--dev`"), "{}", out.stderr);
        assert!(
            out.stderr.contains("`edge-hmac run --dev`"),
            "{}",
            out.stderr
        );
        // The suggested command parses.
        let mut help = cli(h.path());
        help.args(["run", "--dev", "--help"]);
        assert_eq!(run(help).await.code, 0);
    }
}

/// 5. `run --dev` refuses Secrets Manager flags it would ignore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_dev_refuses_flags_it_would_ignore() {
    let h = home();
    for extra in [
        vec!["--env", "prod"],
        vec!["--secret-id", "team/prod/edge-key"],
        vec![
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--region",
            "us-west-2",
        ],
    ] {
        let mut cmd = run_cmd(h.path());
        cmd.arg("--dev").args(&extra);
        let out = run(cmd).await;
        assert_eq!(out.code, 2, "{extra:?}: {}", out.all());
        assert!(
            out.stderr.contains(extra[0]) && out.stderr.contains("drop --dev"),
            "{}",
            out.stderr
        );
    }
}

/// 6. A request signed in a format the filter leaves out is `401
/// unsupported_format` through Envoy (counted), `load` counts it and exits
/// 4; `run --dev` takes both formats unless told otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_mismatch_is_named() {
    let h = home();
    let (v1_only, addr) = dev_proxy(h.path(), &["--formats", "v1"]).await;
    let report = load_json_exit(
        load_cmd(
            h.path(),
            addr,
            &["--dev", "--format", "rfc9421", "--requests", "20"],
        ),
        4,
    )
    .await;
    assert_eq!(
        report["errors"],
        serde_json::json!({"unsupported_format": 20}),
        "{report}"
    );
    let stats = edge_hmac_tests::client::get(v1_only.admin(), "/stats?filter=edge_hmac.rejected")
        .await
        .unwrap()
        .text();
    assert!(
        stats.contains("edge_hmac.rejected.unsupported_format: 20"),
        "{stats}"
    );
    v1_only.terminate().await;
    // The default of run --dev: what `sign --format rfc9421` makes passes.
    let (both, addr) = dev_proxy(h.path(), &[]).await;
    let report = load_json_exit(
        load_cmd(
            h.path(),
            addr,
            &["--dev", "--format", "rfc9421", "--requests", "20"],
        ),
        0,
    )
    .await;
    assert_eq!(report["status"], serde_json::json!({"200": 20}), "{report}");
    both.terminate().await;
}

/// 7. `verify` on a body that does not match shows the hash it computed,
/// the signed one, the length it read, how it delimited the body, and the
/// trailing-newline hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_shows_the_body_it_hashed() {
    let h = home();
    write_dev_secret(h.path());
    let mut sign = cli(h.path());
    sign.args([
        "sign",
        "--dev",
        "-X",
        "POST",
        "--url",
        "http://api.example.test/v1/orders",
    ])
    .args(["-d", r#"{"qty":1}"#]);
    let signed = run(sign).await;
    assert_eq!(signed.code, 0, "{}", signed.all());
    let body = "{\"qty\":1}\n";
    let raw = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: api.example.test\r\n{}content-length: {}\r\n\r\n{body}",
        signed
            .stdout
            .lines()
            .map(|l| format!("{l}\r\n"))
            .collect::<String>(),
        body.len()
    );
    let file = h.path().join("request.http");
    std::fs::write(&file, raw).unwrap();
    let mut verify = cli(h.path());
    verify.args(["verify", "--dev"]).arg(&file);
    let out = run(verify).await;
    assert_eq!(out.code, 4, "{}", out.all());
    let computed = hex_sha256(body.as_bytes());
    let signed_hash = hex_sha256(br#"{"qty":1}"#);
    for needle in [
        "content_mismatch".to_owned(),
        format!(
            "body read:   {} bytes, delimited by content-length: {}",
            body.len(),
            body.len()
        ),
        format!("sha-256 computed: {computed}"),
        format!("sha-256 signed:   {signed_hash}"),
        "ends with a newline".to_owned(),
    ] {
        assert!(out.stdout.contains(&needle), "{needle}:\n{}", out.stdout);
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    edge_hmac_core::scheme::sha256(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 8. `fetch --version-stage AWSPENDING` reads what `rotate begin` staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_reads_the_pending_stage() {
    let moto = Moto::shared();
    let h = home();
    let env = unique_env();
    let id = format!("crawbl/{env}/edge/hmac");
    moto.create_secret(&id, &edge_value(&secret(), &env)).await;
    let mut begin = cli(h.path());
    begin
        .args([
            "rotate",
            "begin",
            "--env",
            &env,
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .arg("--force");
    assert_eq!(run(begin).await.code, 0);
    let pending = moto.key_at(&id, "AWSPENDING").await.unwrap();
    let mut fetch = cli(h.path());
    fetch
        .args(["fetch", "--env", &env, "--endpoint-url", &moto.endpoint()])
        .args(["--version-stage", "AWSPENDING"]);
    let out = run(fetch).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("AWSPENDING"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&fingerprint(pending.as_bytes())),
        "{}",
        out.stdout
    );
}

/// 9. `render gateway` refuses module locations that are not one (exit 2,
/// with the reason), and renders a real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_gateway_checks_module_locations() {
    let h = home();
    let digest = "b".repeat(64);
    for (flags, why) in [
        (
            vec![
                "--wasm-image".to_owned(),
                format!("url: registry.example.com/edge@sha256:{digest}"),
            ],
            "not an image reference",
        ),
        (
            vec![
                "--wasm-url".to_owned(),
                "ftp://x y".to_owned(),
                "--wasm-sha256".to_owned(),
                digest.clone(),
            ],
            "not a URL",
        ),
        (
            vec![
                "--wasm-url".to_owned(),
                "ftp://files.example.com/f.wasm".to_owned(),
                "--wasm-sha256".to_owned(),
                digest.clone(),
            ],
            "scheme \"ftp\"",
        ),
    ] {
        let mut cmd = cli(h.path());
        cmd.args(["render", "gateway", "--env", "dev"]).args(&flags);
        let out = run(cmd).await;
        assert_eq!(out.code, 2, "{flags:?}: {}", out.all());
        assert!(out.stderr.contains(why), "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    let mut ok = cli(h.path());
    ok.args(["render", "gateway", "--env", "dev", "--wasm-image"])
        .arg(format!("registry.example.com/edge/hmac@sha256:{digest}"));
    assert_eq!(run(ok).await.code, 0);
}

/// 10. `sign` warns on stderr about a path Envoy rewrites and a lowercase
/// method, naming the spec's rule, and still prints the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_warns_about_paths_envoy_rewrites() {
    let h = home();
    write_dev_secret(h.path());
    for (method, url, needle) in [
        ("GET", "http://h/v1/../v2/x", "'..'"),
        ("GET", "http://h/a%2Fb", "%2F"),
        ("GET", "http://h/caf%C3%A9/%7Euser", "unreserved"),
        ("get", "http://h/v1/x", "not upper case"),
    ] {
        let mut cmd = cli(h.path());
        cmd.args(["sign", "--dev", "-X", method, "--url", url]);
        let out = run(cmd).await;
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(
            out.stderr.contains("warning:") && out.stderr.contains(needle),
            "{url}: {}",
            out.stderr
        );
        assert!(out.stdout.contains("x-crawbl-signature"), "{}", out.stdout);
    }
    let mut clean = cli(h.path());
    clean.args(["sign", "--dev", "--url", "http://h/v1/orders?x=%2F..//"]);
    let out = run(clean).await;
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

/// 11 and 12d. Right after a hot restart, `rotate status` says a restart is
/// draining and marks the key that goes when it ends (here the old current
/// key, after Secrets Manager moved AWSCURRENT); an `--admin` that is the
/// listener gets "is this the admin port?".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tells_a_draining_restart_apart() {
    let moto = Moto::shared();
    let h = home();
    let env = unique_env();
    let id = format!("crawbl/{env}/edge/hmac");
    let (k0, k1) = (secret(), secret());
    moto.create_secret(&id, &edge_value(&k0, &env)).await;
    let upstream = Upstream::start().await;
    let mut cmd = run_cmd(h.path());
    cmd.args(["--env", &env, "--endpoint-url", &moto.endpoint()])
        .args(["--upstream", &upstream.addr.to_string()])
        .args(["--watch", "300ms", "--drain-seconds", "20"]);
    let mut running = Running::start(cmd);
    let listener = running.listener().await;
    moto.put_secret_value(&id, &edge_value(&k1, &env)).await;
    running
        .wait_for("rotation done: epoch 1", Duration::from_secs(30))
        .await;
    let admin = running.admin();
    let mut status = cli(h.path());
    status
        .args([
            "rotate",
            "status",
            "--env",
            &env,
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .args(["--admin", &admin.to_string()]);
    let out = run(status).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let (f0, f1) = (fingerprint(k0.as_bytes()), fingerprint(k1.as_bytes()));
    assert!(
        out.stdout.contains("a hot restart is draining (epoch 1)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("then current {f0} go")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{f0} (draining)")),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&format!("{f1} (draining)")),
        "{}",
        out.stdout
    );

    let mut wrong = cli(h.path());
    wrong
        .args([
            "rotate",
            "status",
            "--env",
            &env,
            "--endpoint-url",
            &moto.endpoint(),
        ])
        .args(["--admin", &listener.to_string()]);
    let out = run(wrong).await;
    assert!(
        out.all().contains("is this the admin port?"),
        "{}",
        out.all()
    );
    running.terminate().await;
}

/// 12e. The README's table of Envoy settings lists every variable the
/// filter reads a key from.
#[test]
fn readme_lists_every_host_env_key() {
    use edge_hmac_core::config::{
        DEFAULT_ENVIRONMENT_ENV, DEFAULT_SECRET_ENV, DEFAULT_SECRET_PENDING_ENV,
        DEFAULT_SECRET_PREVIOUS_ENV,
    };
    let readme =
        std::fs::read_to_string(edge_hmac_tests::build::workspace().join("README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `host_env_keys:"))
        .expect("the host_env_keys row");
    for var in [
        DEFAULT_SECRET_ENV,
        DEFAULT_SECRET_PREVIOUS_ENV,
        DEFAULT_SECRET_PENDING_ENV,
        DEFAULT_ENVIRONMENT_ENV,
    ] {
        assert!(row.contains(var), "{var} missing from: {row}");
    }
}
