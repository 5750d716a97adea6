//! End-to-end tests against the real cluster components users deploy with:
//! kube-apiserver + etcd, the External Secrets Operator and Envoy Gateway,
//! built from pinned releases (`tests/components/build.sh`), with moto as
//! Secrets Manager and Envoy 1.40 as the proxy.
//!
//! A binary of its own (cargo runs test binaries one after another):
//! Envoy Gateway binds fixed ports and its Envoy takes hot-restart base id 0,
//! so nothing else of the suite may run beside it, and the heavy components
//! do not compete with the rest of the suite for the machine's cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod apiserver;
mod check;
mod eso;
mod gateway;
mod monitoring;
