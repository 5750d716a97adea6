//! edge-hmac: a proxy-wasm HTTP filter for Envoy that verifies
//! `CRAWBL-HMAC-SHA256-V1` request signatures, and the pure-Rust core it is
//! built on.
//!
//! - [`scheme`]: the signature scheme (string to sign, [`scheme::Signer`],
//!   [`scheme::Verifier`], streaming body check). Shared by the filter, the
//!   loader, the tests and the benches.
//! - [`config`]: plugin configuration, parsed, validated and compiled once.
//! - [`replay`]: the bounded, cross-worker nonce cache.
//! - [`flow`]: the per-request decisions, as pure functions.
//! - `root` / `http` / `host` (wasm32 only): thin proxy-wasm contexts.
//!
//! Built natively as an rlib; `make wasm` builds the same crate as the
//! cdylib Envoy loads (`cargo rustc --crate-type cdylib --target
//! wasm32-wasip1 --release`).
//!
//! The filter must never panic: the release profile aborts on panic, which
//! kills the VM and, with a fail-closed policy, every later request of the
//! worker. Hence the lints below.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
pub mod flow;
pub mod hostmap;
pub mod paths;
pub mod replay;
pub mod scheme;

#[cfg(all(target_arch = "wasm32", not(edge_hmac_core_only)))]
mod host;
#[cfg(all(target_arch = "wasm32", not(edge_hmac_core_only)))]
mod http;
#[cfg(all(target_arch = "wasm32", not(edge_hmac_core_only)))]
mod root;

/// The VM entry point (`_initialize`).
#[cfg(all(target_arch = "wasm32", not(edge_hmac_core_only)))]
#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        // Installs a panic hook that logs at critical level before the abort.
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(super::root::Root::default())
        });
    }}
}
