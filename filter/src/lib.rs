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
pub mod replay;
pub mod scheme;
