//! edge-hmac's verifier core: everything the filter decides, with no host
//! types. Two hosts sit on it — the proxy-wasm filter (`filter/wasm`) and the
//! native Envoy dynamic module (`filter/native`) — and both only move bytes in
//! and carry out what it returns, so verdicts, outcome codes, JSON error
//! bodies, counter and gauge names, the configuration schema and the log
//! lines are the same in both by construction.
//!
//! - [`scheme`]: the two signature formats over one pipeline ([`scheme::Signer`],
//!   [`scheme::Verifier`], the streaming body check). Also used by the CLI,
//!   the tests and the benches.
//! - [`config`]: plugin configuration, parsed, validated and compiled once.
//! - [`paths`]: exempt and unsigned-payload path matching.
//! - [`replay`]: the bounded nonce tables (proxy-wasm shared data, or
//!   process memory).
//! - [`flow`]: the decision on the request headers.
//! - [`stream`]: the per-request state machine both hosts drive.
//! - [`metrics`]: counter and gauge names and when each one moves.
//!
//! Nothing here reads a clock, the environment or the network: callers pass
//! the time, the variables and the bytes in. It must never panic on request
//! input (the wasm build aborts on panic), hence the lints below.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod config;
pub mod flow;
pub mod metrics;
pub mod paths;
pub mod replay;
pub mod scheme;
pub mod store;
pub mod stream;

/// The version and commit in the first log line of either host.
pub fn startup_line(host: &str) -> String {
    format!(
        "edge-hmac filter {} ({}) starting ({host})",
        env!("CARGO_PKG_VERSION"),
        env!("EDGE_HMAC_GIT_HASH")
    )
}
