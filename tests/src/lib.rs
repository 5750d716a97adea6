//! End-to-end test harness: builds the filter once, starts a real Envoy on
//! loopback with it, a recording upstream, and (for the loader) moto's
//! Secrets Manager API server. Everything it starts is torn down on drop.
//!
//! Tests live in `tests/e2e/`, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws;
pub mod build;
pub mod client;
pub mod crd;
pub mod envoy;
pub mod secrets;
pub mod upstream;
