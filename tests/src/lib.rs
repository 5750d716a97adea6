//! End-to-end test harness: builds the filter once, starts a real Envoy on
//! loopback with it, a recording upstream, and (for the loader) moto's
//! Secrets Manager API server; and a real Kubernetes control plane with the
//! External Secrets Operator and Envoy Gateway built from pinned releases.
//! Everything it starts is torn down on drop or when the test process exits.
//!
//! Tests live in `tests/e2e/`, one module per area; those against the
//! control plane in `tests/cluster/`, those on a real node (`node`) in
//! `tests/k8s/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod aws;
pub mod build;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod eg;
pub mod egk8s;
pub mod envoy;
pub mod eso;
pub mod image;
pub mod kit;
pub mod node;
pub mod python;
pub mod redis;
pub mod secrets;
pub mod target;
pub mod upstream;
pub mod yaml;
