//! edge-hmac as a proxy-wasm filter for Envoy (V8): thin contexts over
//! [`edge_hmac_core`]. The contexts gather input through hostcalls, hand it
//! to [`edge_hmac_core::stream::Stream`] and carry out its verdict; nothing
//! about what is verified, counted, held or answered is decided here.
//!
//! - [`hostmap`]: the proxy-wasm header-map wire format, decoded without
//!   assuming UTF-8 (pure; fuzzed natively).
//! - `root` / `http` / `host` (wasm32 only): the proxy-wasm contexts.
//!
//! `make wasm` builds this crate as the cdylib Envoy loads
//! (`target/wasm32-wasip1/release/edge_hmac_filter.wasm`).
//!
//! The filter must never panic: the release profile aborts on panic, which
//! kills the VM and, with a fail-closed policy, every later request of the
//! worker. Hence the lints below.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod hostmap;

#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod root;

/// The VM entry point (`_initialize`).
#[cfg(target_arch = "wasm32")]
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
