//! Rendered configuration: snapshots of the checked-in files and
//! `envoy --mode validate` on every Envoy config the project ships or renders.
//! Set UPDATE_SNAPSHOTS=1 to rewrite the checked-in copies, then review the diff.

use std::path::Path;

use edge_hmac::render::envoy::{CHECKED_IN_PATH, checked_in};
use edge_hmac_tests::build::{filter_wasm, workspace};
use edge_hmac_tests::envoy::validate_file;
use edge_hmac_tests::secrets::secret;

/// Compares `rendered` with the checked-in file `rel` (or rewrites it when
/// UPDATE_SNAPSHOTS is set).
#[track_caller]
pub fn assert_snapshot(rel: &str, rendered: &str) {
    let path = workspace().join(rel);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{rel}: {e}; render it with UPDATE_SNAPSHOTS=1 cargo test -p edge-hmac-tests")
    });
    assert!(
        on_disk == rendered,
        "{rel} differs from what the renderer produces now; re-render it (UPDATE_SNAPSHOTS=1 cargo test -p edge-hmac-tests --test e2e render) and review the diff"
    );
}

/// envoy/envoy-local.yaml is exactly what the renderer produces.
#[test]
fn local_bootstrap_matches_renderer() {
    assert_snapshot(CHECKED_IN_PATH, &checked_in().to_yaml().unwrap());
}

/// The checked-in local bootstrap passes `envoy --mode validate`, which
/// loads the built filter and runs its on_configure.
#[test]
fn local_bootstrap_validates_in_envoy() {
    let wasm = filter_wasm();
    assert!(
        wasm.ends_with(Path::new(edge_hmac::render::envoy::DEFAULT_WASM)),
        "the checked-in bootstrap expects the filter at {}",
        edge_hmac::render::envoy::DEFAULT_WASM
    );
    let s = secret();
    let out = validate_file(
        &workspace().join(CHECKED_IN_PATH),
        &[("HMAC_SECRET", &s), ("HMAC_ENVIRONMENT", "dev")],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("edge-hmac: configured: environment=dev"),
        "{log}"
    );
    assert!(!log.contains(&s));
}
