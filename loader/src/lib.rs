//! Library of the `edge-hmac` CLI: everything the binary does, usable by the
//! end-to-end tests.

pub mod aws;
pub mod envoy;
pub mod error;
pub mod fetch;
pub mod keys;
pub mod render;
pub mod run;
pub mod secret;
pub mod sign;
pub mod verify;
