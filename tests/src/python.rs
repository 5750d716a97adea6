//! Helper scripts of `tests/support/`, run with the project venv's Python
//! (or Node, for the npm peer), JSON in and JSON out.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::build::{venv, workspace};

/// Runs `tests/support/<script>` with `args`, `input` as JSON on its
/// standard input, and returns the JSON it prints; panics (with its output)
/// if it does not finish within `timeout` or prints no JSON.
pub async fn run_json(
    script: &str,
    args: &[&str],
    input: &serde_json::Value,
    timeout: Duration,
) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new(venv().join("bin/python"));
    cmd.arg(workspace().join("tests/support").join(script))
        .args(args);
    json_io(
        cmd,
        script,
        args,
        input,
        timeout,
        "make venv installs its packages",
    )
    .await
}

/// Runs the Node script `tests/support/<script>` like [`run_json`]; its
/// packages come from `make node-peer` (`npm ci`).
pub async fn run_node_json(
    script: &str,
    input: &serde_json::Value,
    timeout: Duration,
) -> serde_json::Value {
    let path = workspace().join("tests/support").join(script);
    let modules = path
        .parent()
        .map(|d| d.join("node_modules"))
        .filter(|m| m.is_dir());
    assert!(
        modules.is_some(),
        "{script}: its node_modules is missing; run `make node-peer` (npm ci)"
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(path);
    json_io(
        cmd,
        script,
        &[],
        input,
        timeout,
        "is Node installed? make node-peer",
    )
    .await
}

/// Runs the program `bin` like [`run_json`] (a built test peer).
pub async fn run_bin_json(
    bin: &std::path::Path,
    input: &serde_json::Value,
    timeout: Duration,
) -> serde_json::Value {
    let name = bin.display().to_string();
    json_io(
        tokio::process::Command::new(bin),
        &name,
        &[],
        input,
        timeout,
        "built by the suite",
    )
    .await
}

async fn json_io(
    mut cmd: tokio::process::Command,
    script: &str,
    args: &[&str],
    input: &serde_json::Value,
    timeout: Duration,
    hint: &str,
) -> serde_json::Value {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {script} ({hint}): {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.to_string().as_bytes())
        .await
        .expect("write the request");
    drop(stdin);
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} {args:?} did not finish within {timeout:?}"))
        .expect("wait for the script");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} {args:?}: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// What `tests/support/h2_raw.py` saw.
#[derive(Debug, serde::Deserialize)]
pub struct H2Result {
    /// The response status, if one came.
    pub status: Option<u16>,
    /// The error code of a RST_STREAM from Envoy.
    pub reset_by_peer: Option<u32>,
    /// The error code of a GOAWAY from Envoy.
    pub goaway: Option<u32>,
    /// Envoy closed the connection.
    pub closed: bool,
    /// Set when h2 could not read Envoy's answer (shown on failure).
    #[serde(default)]
    #[allow(dead_code)]
    pub error: Option<String>,
}

/// Sends one HTTP/2 request exactly as given (see `tests/support/h2_raw.py`).
pub async fn raw_h2(
    addr: std::net::SocketAddr,
    headers: &[(&[u8], &[u8])],
    data: Option<&[u8]>,
    reset: bool,
) -> H2Result {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let request = serde_json::json!({
        "headers": headers.iter().map(|(n, v)| [hex(n), hex(v)]).collect::<Vec<_>>(),
        "data": data.map(hex),
        "end_stream": true,
        "reset": reset,
    });
    let port = addr.port().to_string();
    let out = run_json("h2_raw.py", &[&port], &request, Duration::from_secs(15)).await;
    serde_json::from_value(out.clone()).unwrap_or_else(|e| panic!("h2_raw.py: {e}: {out}"))
}
