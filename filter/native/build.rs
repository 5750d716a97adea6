//! Link settings of the module (Linux, glibc):
//!
//! - **The unwinder is linked in** instead of depending on
//!   `libgcc_s.so.1`. The module unwinds (`panic = "unwind"`, so a panic in
//!   a hook is caught instead of aborting Envoy), and Rust's `std` on
//!   `*-linux-gnu` links its unwinder as `-lgcc_s`: a shared library that
//!   Envoy's own images do not ship (`envoyproxy/envoy:distroless-*`, Envoy
//!   Gateway's default proxy, is `distroless/base-nossl`: glibc only), where
//!   `dlopen` of the module would fail. `-static-libgcc` does not reach an
//!   explicit `-lgcc_s`, so this script puts a `libgcc_s.a` — the target
//!   compiler's static unwinder `libgcc_eh.a` (position-independent; what
//!   `gcc -shared -static-libgcc` uses) — first on the library path, where
//!   `-lgcc_s` finds it. Its symbols stay local to the module (a cdylib
//!   exports only its hooks).
//! - **The module is never unloaded** (`-z nodelete`): the process-wide
//!   replay tables must outlive a listener that is removed and added again
//!   (Envoy unloads a module with its last configuration unless told
//!   otherwise), or nonces could be replayed within their window.
//!
//! `tests/e2e/native.rs` checks both on the built module.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    // (`rustc-link-arg`: the package declares only an rlib; `make module`
    // makes the cdylib with `cargo rustc --crate-type cdylib`. On the
    // package's test executables the flag means nothing.)
    println!("cargo:rustc-link-arg=-Wl,-z,nodelete");

    // The target's C compiler, as the `cc` crate looks it up.
    let target_var = format!("CC_{}", target.replace('-', "_"));
    let cc = [target_var.as_str(), "TARGET_CC", "CC"]
        .into_iter()
        .find_map(|var| {
            println!("cargo:rerun-if-env-changed={var}");
            std::env::var(var).ok().filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "cc".into());
    let found = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|path| path.is_absolute() && path.is_file());
    let Some(gcc_eh) = found else {
        panic!(
            "edge-hmac-module: `{cc} -print-file-name=libgcc_eh.a` names no file: install gcc (Debian: gcc, libgcc-12-dev) or set CC to the target's gcc; without it the module would need libgcc_s.so.1, which Envoy's distroless images lack"
        );
    };
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let dir = out_dir.join("static-unwinder");
    let lib = dir.join("libgcc_s.a");
    if let Err(err) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&gcc_eh, &lib)) {
        panic!(
            "edge-hmac-module: cannot copy {} to {}: {err}",
            gcc_eh.display(),
            lib.display()
        );
    }
    println!("cargo:rerun-if-changed={}", gcc_eh.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
}
