//! Helper scripts of `tests/support/` run with the project venv's Python.

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
    let mut child = tokio::process::Command::new(venv().join("bin/python"))
        .arg(workspace().join("tests/support").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run {script} (make venv installs its packages): {e}"));
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
