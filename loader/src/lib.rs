//! Library of the `edge-hmac` CLI: everything the binary does, usable by the
//! end-to-end tests.

pub mod render;
