//! Library of the `edge-hmac` CLI: everything the binary does, usable by the
//! end-to-end tests. Without the default `cli` feature only the modules
//! free of the AWS SDK, network and Envoy remain (`error`, `raw`, `secret`).

#[cfg(feature = "cli")]
pub mod aws;
#[cfg(feature = "cli")]
pub mod check;
#[cfg(feature = "cli")]
pub mod envoy;
pub mod error;
#[cfg(feature = "cli")]
pub mod fetch;
#[cfg(feature = "cli")]
pub mod keys;
#[cfg(feature = "cli")]
pub mod load;
#[cfg(feature = "cli")]
pub mod nonce_store;
pub mod raw;
#[cfg(feature = "cli")]
pub mod render;
#[cfg(feature = "cli")]
pub mod rotate;
#[cfg(feature = "cli")]
pub mod run;
pub mod secret;
#[cfg(feature = "cli")]
pub mod sign;
#[cfg(feature = "cli")]
pub mod verify;
