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

/// The native module, built once per test run as `make module` builds it
/// (`target/module/libedge-hmac.so`, absolute: Envoy loads it by path).
pub fn module_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        cargo_build(
            &[
                "rustc",
                "-p",
                "edge-hmac-module",
                "--profile",
                "module",
                "--crate-type",
                "cdylib",
            ],
            "the native module (`make module`)",
        );
        copy_module(&target_dir().join("module"), "libedge-hmac.so")
    })
}

/// The native module built with the test-only `panic-test` feature (a
/// request with `x-edge-hmac-test-panic` panics in the hook), in a target
/// directory of its own so it never replaces the real one.
pub fn module_so_panic_test() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let dir = target_dir().join("panic-test");
        let dir_arg = dir.display().to_string();
        cargo_build(
            &[
                "rustc",
                "-p",
                "edge-hmac-module",
                "--profile",
                "module",
                "--features",
                "panic-test",
                "--target-dir",
                &dir_arg,
                "--crate-type",
                "cdylib",
            ],
            "the native module with the panic-test feature",
        );
        copy_module(&dir.join("module"), "libedge-hmac-panic-test.so")
    })
}

fn copy_module(dir: &Path, name: &str) -> PathBuf {
    let built = dir.join("libedge_hmac_module.so");
    let path = dir.join(name);
    std::fs::copy(&built, &path)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", built.display(), path.display()));
    path
}

/// The debug build of binary `bin` of package `package`, built once per
/// test run (shared with `cargo test`'s artifacts); `what` names it in a
/// failed build's message.
fn debug_bin(package: &str, bin: &str, what: &str) -> PathBuf {
    cargo_build(&["build", "-p", package, "--bin", bin], what);
    let path = target_dir().join("debug").join(bin);
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}

/// The `edge-hmac` CLI (debug build, shared with `cargo test`'s artifacts).
pub fn loader_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| debug_bin("edge-hmac", "edge-hmac", "the edge-hmac CLI"))
}

/// The benchmark's `ext_authz` peer, `edge-hmac-ext-authz` (debug build).
pub fn ext_authz_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        debug_bin(
            "edge-hmac-ext-authz",
            "edge-hmac-ext-authz",
            "the ext_authz service",
        )
    })
}

/// The project-local Python venv made by `make venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("EDGE_HMAC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv"))
}

/// The Rust RFC 9421 test peer, `edge-hmac-rfc9421-rust-peer`
/// (`tests/support/rfc9421-rust`, debug build): signs with `httpsig-hyper`.
pub fn rfc9421_rust_peer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        debug_bin(
            "edge-hmac-rfc9421-rust-peer",
            "edge-hmac-rfc9421-rust-peer",
            "the Rust RFC 9421 peer (tests/support/rfc9421-rust)",
        )
    })
}
