//! Runs of the `edge-hmac` CLI (commands from [`crate::aws::cli`]), with the
//! suite-wide leak scan applied to what each run printed and to moto's log;
//! a development secret the CLI generated for the run is registered for the
//! scan of everything that follows.

use std::process::Command;

use crate::secrets::{assert_no_known_secret, register};

/// A finished CLI run.
#[derive(Debug)]
pub struct Out {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Standard output and standard error.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The `XDG_CONFIG_HOME` a command from [`crate::aws::cli`] runs with.
pub fn config_home(cmd: &Command) -> Option<std::path::PathBuf> {
    cmd.get_envs()
        .find(|(k, _)| *k == "XDG_CONFIG_HOME")
        .and_then(|(_, v)| v.map(std::path::PathBuf::from))
}

/// Registers the development secret a run under `cmd`'s config home made.
pub fn register_dev_secret(cmd: &Command) {
    if let Some(dir) = config_home(cmd) {
        register_dev_secret_in(&dir);
    }
}

/// Registers the development secret in config home `dir`, if there is one.
pub fn register_dev_secret_in(dir: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(dir.join("edge-hmac/dev-secret.json")) else {
        return;
    };
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(key) = v["hmac_secret"].as_str()
    {
        register(key);
    }
}

/// Scans moto's log (when this process started one).
pub fn scan_moto_log() {
    if let Some(moto) = crate::aws::Moto::started() {
        assert_no_known_secret("moto's log", &moto.log_text());
    }
}

fn finish(cmd: &Command, out: std::process::Output) -> Out {
    register_dev_secret(cmd);
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Scans a finished run: all its output, or only standard error when the
/// run was asked to print the secret; then moto's log.
#[track_caller]
fn scanned(out: Out, revealing: bool) -> Out {
    if revealing {
        assert_no_known_secret("the CLI's standard error", &out.stderr);
    } else {
        assert_no_known_secret("the CLI's output", &out.all());
    }
    scan_moto_log();
    out
}

fn run_blocking(mut cmd: Command) -> Out {
    let out = cmd.output().expect("run edge-hmac");
    finish(&cmd, out)
}

/// Runs `cmd` to the end; no known key may appear in its output.
#[track_caller]
pub fn output(cmd: Command) -> Out {
    scanned(run_blocking(cmd), false)
}

/// Like [`output`], for a run asked to print the secret (`fetch --reveal`):
/// only its standard error is scanned.
#[track_caller]
pub fn output_revealing(cmd: Command) -> Out {
    scanned(run_blocking(cmd), true)
}

/// [`output`] off the async runtime's threads.
pub async fn run(cmd: Command) -> Out {
    let out = tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .unwrap();
    scanned(out, false)
}

/// [`output_revealing`] off the async runtime's threads.
pub async fn run_revealing(cmd: Command) -> Out {
    let out = tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .unwrap();
    scanned(out, true)
}
