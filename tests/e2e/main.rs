//! End-to-end tests against a real Envoy and real services on loopback.
//! One binary; one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod cookbook;
mod escapes;
mod ext_authz;
mod filter;
mod gateway;
mod hostile;
mod load;
mod loader;
mod monitoring;
mod native;
mod newcomer;
mod nonce_store;
mod render;
mod replay_store;
mod rfc9421;
mod rotation;
mod streams;
