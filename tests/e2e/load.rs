//! `edge-hmac load` against `edge-hmac run --dev` (a real Envoy with the
//! filter): every request signed afresh passes, the JSON adds up, a wrong
//! key is refused on every request, the progress line is for terminals only,
//! and the replay table holds its documented capacity.

use std::net::SocketAddr;
use std::process::Command;

use edge_hmac_tests::aws::cli;
use edge_hmac_tests::cli::run;
use edge_hmac_tests::client::{Req, send};
use edge_hmac_tests::secrets::secret;
use serde_json::Value;

use edge_hmac_tests::target::Target;

use crate::loader::{Running, home, run_cmd_on};

/// `edge-hmac load` in `home`, at `http://addr/v1/orders`, with `args`.
pub(crate) fn load_cmd(home: &std::path::Path, addr: SocketAddr, args: &[&str]) -> Command {
    let mut cmd = cli(home);
    cmd.arg("load")
        .args(["--url", &format!("http://{addr}/v1/orders?page=2")])
        .args(args);
    cmd
}

/// Runs `cmd` with `--output json`; returns the object (exit code 0).
async fn load_json(cmd: Command) -> Value {
    load_json_exit(cmd, 0).await
}

/// Runs `cmd` with `--output json`; returns the object, after checking the
/// exit code (4: no request got a 2xx).
pub(crate) async fn load_json_exit(mut cmd: Command, code: i32) -> Value {
    cmd.args(["--output", "json"]);
    let out = run(cmd).await;
    assert_eq!(out.code, code, "{}", out.all());
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The status counts of `report`, which must add up to `requests`.
fn statuses(report: &Value) -> Vec<(String, u64)> {
    let status: Vec<(String, u64)> = report["status"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    let sum: u64 = status.iter().map(|(_, n)| n).sum();
    assert_eq!(sum, report["requests"].as_u64().unwrap(), "{report}");
    status
}

/// `run --dev` with the filter options `args`; returns it and its listener.
pub(crate) async fn dev_proxy(home: &std::path::Path, args: &[&str]) -> (Running, SocketAddr) {
    dev_proxy_on(Target::WASM_1_40, home, args).await
}

/// [`dev_proxy`] on target `t`.
pub(crate) async fn dev_proxy_on(
    t: Target,
    home: &std::path::Path,
    args: &[&str],
) -> (Running, SocketAddr) {
    let mut cmd = run_cmd_on(home, t);
    cmd.arg("--dev").args(args);
    let mut running = Running::start(cmd);
    let addr = running.listener().await;
    (running, addr)
}

/// `load --dev --nonce` against `run --dev`: every request (a fresh
/// signature and nonce each, over HTTP/1.1 and HTTP/2) passes, and the JSON
/// counts add up.
async fn load_dev_nonce_passes_every_request(t: Target) {
    let h = home();
    let (running, addr) = dev_proxy_on(t, h.path(), &["--require-nonce"]).await;
    for extra in [&[][..], &["--http2"][..]] {
        let mut args = vec!["--dev", "--nonce", "-c", "4", "--requests", "600"];
        args.extend_from_slice(extra);
        let report = load_json(load_cmd(h.path(), addr, &args)).await;
        assert_eq!(report["requests"], 600, "{report}");
        assert_eq!(statuses(&report), [("200".to_owned(), 600)], "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        let l = &report["latency_us"];
        let p = |k: &str| l[k].as_u64().unwrap();
        assert!(
            0 < p("p50") && p("p50") <= p("p99") && p("p999") <= p("max"),
            "{l}"
        );
        assert!(report["rps"].as_f64().unwrap() > 0.0, "{report}");
        let http = if extra.is_empty() { "1.1" } else { "2" };
        assert_eq!(report["settings"]["http"], http, "{report}");
    }
    let (code, output) = running.terminate().await;
    assert_eq!(code, 0, "{output}");
}

/// Open loop at a fixed rate for a fixed time sends about rate × time
/// requests, all signed and accepted, and stops by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_open_loop_keeps_its_rate() {
    let h = home();
    let (running, addr) = dev_proxy(h.path(), &[]).await;
    let report = load_json(load_cmd(
        h.path(),
        addr,
        &["--dev", "--rate", "200", "--duration", "2s", "-c", "4"],
    ))
    .await;
    // Requests due in [0, 2 s) at 200/s: exactly 400 are started.
    assert_eq!(report["requests"], 400, "{report}");
    assert_eq!(statuses(&report), [("200".to_owned(), 400)], "{report}");
    assert_eq!(report["settings"]["loop"], "open", "{report}");
    running.terminate().await;
}

/// Signed with a key the proxy does not have, every request is refused with
/// 401 `invalid_signature`, counted by its error code, and `load` exits 4
/// (no request succeeded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_a_wrong_key_is_refused_every_time() {
    let h = home();
    let (running, addr) = dev_proxy(h.path(), &[]).await;
    let wrong = h.path().join("wrong.key");
    std::fs::write(&wrong, secret()).unwrap();
    let report = load_json_exit(
        load_cmd(
            h.path(),
            addr,
            &[
                "--secret-file",
                wrong.to_str().unwrap(),
                "--env",
                "dev",
                "--nonce",
                "-c",
                "2",
                "--requests",
                "200",
            ],
        ),
        4,
    )
    .await;
    assert_eq!(statuses(&report), [("401".to_owned(), 200)], "{report}");
    assert_eq!(
        report["errors"],
        serde_json::json!({"invalid_signature": 200}),
        "{report}"
    );
    running.terminate().await;
}

/// A server that answers every request `200` with `Connection: close` and
/// then closes (as a draining Envoy does on a rolling restart): `load`
/// sends each next request on a new connection, and none fails. (It used
/// to count one `http` failure per closed connection, issue 27.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reconnects_when_the_server_closes_after_a_response() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = std::sync::Arc::clone(&accepted);
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                // One request (no body: GET), one answer, then close.
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let h = home();
    let key = h.path().join("any.key");
    std::fs::write(&key, secret()).unwrap();
    let report = load_json(load_cmd(
        h.path(),
        addr,
        &[
            "--secret-file",
            key.to_str().unwrap(),
            "--env",
            "dev",
            "-c",
            "2",
            "--requests",
            "60",
        ],
    ))
    .await;
    server.abort();
    assert_eq!(statuses(&report), [("200".to_owned(), 60)], "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        60,
        "one connection per request"
    );
}

/// `load --replay` sends every signed request twice: each original passes
/// and each copy is refused `401 replayed_request`, also with two workers
/// and an odd `--requests` (the pair that does not fit is left out);
/// without `--nonce` the flag is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_replay_sends_each_request_twice() {
    let h = home();
    let (running, addr) = dev_proxy(h.path(), &["--require-nonce"]).await;
    let report = load_json(load_cmd(
        h.path(),
        addr,
        &[
            "--dev",
            "--nonce",
            "--replay",
            "-c",
            "2",
            "--requests",
            "41",
        ],
    ))
    .await;
    assert_eq!(
        statuses(&report),
        [("200".to_owned(), 20), ("401".to_owned(), 20)],
        "{report}"
    );
    assert_eq!(
        report["errors"],
        serde_json::json!({"replayed_request": 20}),
        "{report}"
    );
    let out = run(load_cmd(
        h.path(),
        addr,
        &["--dev", "--replay", "--requests", "2"],
    ))
    .await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--nonce"), "{}", out.stderr);
    running.terminate().await;
}

/// The live progress line goes to a terminal (run under `script`, which
/// gives the command a pty) and never into a pipe; the summary is printed
/// either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_line_only_on_a_terminal() {
    let h = home();
    let (running, addr) = dev_proxy(h.path(), &[]).await;
    let args = ["--dev", "--duration", "1500ms", "--rate", "100"];

    let piped = run(load_cmd(h.path(), addr, &args)).await;
    assert_eq!(piped.code, 0, "{}", piped.all());
    assert!(!piped.all().contains("[edge-hmac load]"), "{}", piped.all());
    assert!(piped.stdout.contains("requests/s"), "{}", piped.stdout);

    // The same command line, quoted for `script -c`.
    let inner = load_cmd(h.path(), addr, &args);
    let mut line = shell_quote(inner.get_program().to_str().unwrap());
    for a in inner.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(a.to_str().unwrap()));
    }
    // `script` gives the command a pty; it runs with the same environment.
    let env = cli(h.path());
    let mut tty = Command::new("script");
    tty.args(["-qefc", &line, "/dev/null"]);
    for (k, v) in env.get_envs() {
        match v {
            Some(v) => tty.env(k, v),
            None => tty.env_remove(k),
        };
    }
    let out = run(tty).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.all().contains("[edge-hmac load]"), "{}", out.all());
    assert!(out.all().contains("requests/s"), "{}", out.all());
    running.terminate().await;
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A target outside loopback is refused before any connection (exit 2,
/// naming --allow-remote); a dead loopback port ends with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_refuses_remote_targets_and_says_when_nothing_answers() {
    let h = home();
    let mut cmd = cli(h.path());
    cmd.args(["load", "--secret-env", "NONE", "--url", "http://192.0.2.1/"]);
    let out = run(cmd).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--allow-remote"), "{}", out.stderr);

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let key = h.path().join("some.key");
    std::fs::write(&key, secret()).unwrap();
    let key = key.to_str().unwrap();
    let args = ["--secret-file", key, "--env", "dev", "-n", "3"];
    let out = run(load_cmd(h.path(), port, &args)).await;
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("no request got a response"),
        "{}",
        out.stderr
    );
}

/// The replay table holds its documented capacity in a real Envoy: at the
/// sizing rule (capacity = 2 × nonce rate × (TTL + 1)), across two workers,
/// no nonce request is refused for a full table; at three times that rate
/// the same table refuses (503 `replay_cache_unavailable`, counted in
/// `nonce_cache_full`), so the run really filled it.
async fn replay_table_holds_its_capacity_in_envoy(t: Target) {
    const TTL: u64 = 4;
    const RATE: u64 = 500;
    let capacity = 2 * RATE * (TTL + 1);
    let h = home();
    let (running, addr) = dev_proxy_on(
        t,
        h.path(),
        &[
            "--clock-skew",
            "2",
            "--nonce-ttl",
            &TTL.to_string(),
            "--nonce-cache-max-entries",
            &capacity.to_string(),
        ],
    )
    .await;
    // Two TTLs: the table reaches its steady state and stays there.
    let at_sizing = load_json(load_cmd(
        h.path(),
        addr,
        &[
            "--dev",
            "--nonce",
            "-c",
            "8",
            "--rate",
            &RATE.to_string(),
            "--duration",
            &format!("{}s", 2 * TTL),
        ],
    ))
    .await;
    assert_eq!(at_sizing["requests"], RATE * 2 * TTL, "{at_sizing}");
    assert_eq!(
        statuses(&at_sizing),
        [("200".to_owned(), RATE * 2 * TTL)],
        "{at_sizing}"
    );
    assert_eq!(full_count(running.admin()).await, 0);

    let over = load_json(load_cmd(
        h.path(),
        addr,
        &[
            "--dev",
            "--nonce",
            "-c",
            "16",
            "--rate",
            &(3 * RATE).to_string(),
            "--duration",
            &format!("{}s", TTL + 2),
        ],
    ))
    .await;
    let refused = over["errors"]["replay_cache_unavailable"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused > 0, "{over}");
    let status = statuses(&over);
    assert!(
        status.iter().all(|(s, _)| s == "200" || s == "503"),
        "{over}"
    );
    assert_eq!(
        over["status"]["503"].as_u64().unwrap_or(0),
        refused,
        "{over}"
    );
    assert_eq!(full_count(running.admin()).await, refused);
    running.terminate().await;
}

/// Envoy's `nonce_cache_full` counter.
async fn full_count(admin: SocketAddr) -> u64 {
    let stats = send(admin, &Req::new("GET", "/stats?filter=nonce_cache_full")).await;
    let text = stats.text();
    text.lines()
        .find_map(|l| {
            // Either build's prefix.
            let (name, value) = l.split_once(": ")?;
            name.ends_with("custom.edge_hmac.nonce_cache_full")
                .then_some(value)
        })
        .map_or(0, |n| n.trim().parse().unwrap())
}

edge_hmac_tests::matrix!(
    load_dev_nonce_passes_every_request,
    replay_table_holds_its_capacity_in_envoy,
);
