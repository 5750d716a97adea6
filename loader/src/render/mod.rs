//! Configuration rendered from Rust types: the local Envoy bootstrap and the
//! Envoy Gateway / External Secrets manifests.

pub mod envoy;
