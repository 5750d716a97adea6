//! Locating the workspace and building what the tests run, once per test run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace().join(p)
            }
        })
        .unwrap_or_else(|| workspace().join("target"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo_build(args: &[&str], what: &str) {
    let status = Command::new(cargo())
        .arg("--quiet")
        .args(args)
        .current_dir(workspace())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(
        status.success(),
        "building {what} failed (cargo {}); run `make wasm` to see why",
        args.join(" ")
    );
}

/// The release filter, built once per test run
/// (`target/wasm32-wasip1/release/edge_hmac_filter.wasm`).
pub fn filter_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        // The same command as `make wasm`.
        cargo_build(
            &[
                "rustc",
                "-p",
                "edge-hmac-filter",
                "--target",
                "wasm32-wasip1",
                "--release",
                "--crate-type",
                "cdylib",
            ],
            "the wasm filter (needs `rustup target add wasm32-wasip1`)",
        );
        let path = target_dir().join("wasm32-wasip1/release/edge_hmac_filter.wasm");
        assert!(path.exists(), "{} missing after the build", path.display());
        path
    })
}

/// The `edge-hmac` CLI (debug build, shared with `cargo test`'s artifacts).
pub fn loader_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(
            &["build", "-p", "edge-hmac", "--bin", "edge-hmac"],
            "the edge-hmac CLI",
        );
        let path = target_dir().join("debug/edge-hmac");
        assert!(path.exists(), "{} missing after the build", path.display());
        path
    })
}

/// The benchmark's `ext_authz` peer, `edge-hmac-ext-authz` (debug build).
pub fn ext_authz_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cargo_build(
            &["build", "-p", "edge-hmac-ext-authz"],
            "the ext_authz service",
        );
        let path = target_dir().join("debug/edge-hmac-ext-authz");
        assert!(path.exists(), "{} missing after the build", path.display());
        path
    })
}

/// The project-local Python venv made by `make venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("EDGE_HMAC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv"))
}
