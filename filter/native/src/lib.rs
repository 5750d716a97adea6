//! edge-hmac as a native Envoy dynamic module
//! (`envoy.filters.http.dynamic_modules`): the verifier of
//! [`edge_hmac_core`] in Envoy's own process, with no wasm VM in between.
//!
//! - `ffi`: the ABI (v0.1.0, Envoy 1.39; Envoy 1.40 loads it too): our own
//!   declarations of the callbacks we use and the hooks Envoy requires, all
//!   the `unsafe` of the crate, each hook wrapped so that no panic crosses
//!   into Envoy (a request hook that panics answers `500`, a configuration
//!   hook refuses the configuration, a response hook resets its stream).
//! - [`module`]: the safe glue: configuration, per-request filter, and the
//!   [`module::Host`] trait through which it asks Envoy for anything (faked
//!   by the tests).
//!
//! The configuration (`filter_config`, a `StringValue`) is exactly the wasm
//! plugin's JSON, compiled by the same core with the same validation; keys
//! come from the same environment variables of the Envoy process.
//!
//! `make module` builds `target/module/libedge-hmac.so` (profile `module`:
//! the release profile with `panic = "unwind"`, so a panic can be caught).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod ffi;
pub mod module;

/// The module name Envoy and Envoy Gateway use for it (`lib<name>.so`).
pub const MODULE_NAME: &str = "edge-hmac";
/// The filter name in `filter_name` (informational: the module has one
/// filter).
pub const FILTER_NAME: &str = "edge-hmac";
/// The ABI this module is built against: Envoy 1.39's (supported by 1.39
/// and 1.40).
pub const ABI_VERSION: &str = "v0.1.0";
