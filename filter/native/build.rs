//! Links the unwinder into the module instead of depending on
//! `libgcc_s.so.1`.
//!
//! The module unwinds (`panic = "unwind"`, so a panic in a hook is caught
//! instead of aborting Envoy), and Rust's `std` on `*-linux-gnu` links its
//! unwinder as `-lgcc_s`: a shared library that Envoy's own images do not
//! ship (`envoyproxy/envoy:distroless-*`, Envoy Gateway's default proxy, is
//! `distroless/base-nossl`: glibc only). There `dlopen` of the module would
//! fail. `-static-libgcc` does not reach an explicit `-lgcc_s`, so this
//! script puts a `libgcc_s.a` — the compiler's static unwinder
//! `libgcc_eh.a` (position-independent; what `gcc -shared -static-libgcc`
//! uses) — first on the library path, where `-lgcc_s` finds it. The
//! unwinder's symbols stay local to the module (a cdylib exports only its
//! hooks). `tests/e2e/native.rs` checks the result needs glibc alone.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|path| path.is_absolute() && path.is_file());
    let Some(gcc_eh) = found else {
        println!(
            "cargo:warning=no libgcc_eh.a from `{cc} -print-file-name=libgcc_eh.a`: the module will need libgcc_s.so.1 at run time (absent from Envoy's distroless images); install gcc"
        );
        return;
    };
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let dir = out_dir.join("static-unwinder");
    let lib = dir.join("libgcc_s.a");
    let copied = std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&gcc_eh, &lib));
    if let Err(err) = copied {
        println!(
            "cargo:warning=cannot copy {} to {}: {err}; the module will need libgcc_s.so.1",
            gcc_eh.display(),
            lib.display()
        );
        return;
    }
    println!("cargo:rerun-if-changed={}", gcc_eh.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
}
