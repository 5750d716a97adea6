//! The signature core: one verification pipeline, two wire formats.
//!
//! - [`v1`]: `CRAWBL-HMAC-SHA256-V1` (`docs/signature-v1.md`), the
//!   `x-crawbl-*` headers and their string to sign.
//! - [`rfc9421`]: the RFC 9421 `hmac-sha256` profile
//!   (`docs/signature-rfc9421.md`), `Signature-Input` / `Signature` /
//!   `Content-Digest` and their signature base.
//!
//! Each format only parses its headers into a claim (timestamp, nonce, body
//! digests, tag, the bytes the tag covers). Everything else is shared and
//! lives here once: the wire names ([`names`]), keys and rotation slots
//! ([`key`]), the signer's key holder ([`signer`]), the request head
//! ([`head`]), the outcome codes ([`outcome`]), the claim a format hands over
//! (`claim`), the order of the checks and the key loop ([`verifier`]), and
//! the held-body check ([`body`]). No shared module imports a format module:
//! the imports run one way, names → head/body/outcome → claim → formats →
//! verifier.
//!
//! This is the only implementation of both formats, shared by the filter,
//! the loader, the tests and the benches. Nothing here knows about
//! proxy-wasm, clocks or I/O: callers pass the request parts and the current
//! Unix time in.

pub mod body;
mod canonical;
mod claim;
pub mod error;
mod formats;
pub mod head;
pub mod key;
pub mod names;
pub mod outcome;
pub mod rfc9421;
pub mod sf;
pub mod signer;
pub mod v1;
pub mod verifier;

#[cfg(test)]
mod tests;

pub use body::{BodyClaim, BodyVerifier, Digests, EMPTY_SHA256_HEX, Payload};
pub use error::SchemeError;
pub use head::{HeaderValue, RequestHead};
pub use key::{KeyUsed, SecretKey, fingerprint};
pub use names::{
    CONTENT_DIGEST_HEADER, CONTENT_SHA256_HEADER, NONCE_HEADER, SIGNATURE_HEADER,
    SIGNATURE_INPUT_HEADER, SIGNATURE_RFC9421_HEADER, TIMESTAMP_HEADER, UNSIGNED_PAYLOAD,
};
pub use outcome::{Detail, Reject, Rejection};
pub use signer::Signer;
pub use v1::{SCHEME, SIGNATURE_PREFIX, SignRequest, SignedHeaders, TagEncoding};
pub use verifier::{Format, Formats, HeadersVerified, Verifier, VerifierOptions};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Most digits a timestamp may have.
pub const MAX_TIMESTAMP_DIGITS: usize = 12;
/// Shortest accepted nonce.
pub const MIN_NONCE_LEN: usize = 16;
/// Longest accepted nonce.
pub const MAX_NONCE_LEN: usize = 128;
/// Allowed distance between the signed timestamp and the verifier's clock, by default.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 300;
/// Longest accepted environment name. Shorter than [`MIN_SECRET_BYTES`], so
/// a secret put in the environment variable by mistake can never pass as an
/// environment name (and be logged as one).
pub const MAX_ENVIRONMENT_LEN: usize = 31;

/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// SHA-256 of `body`.
pub fn sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// HMAC-SHA256 of `data` under `key`, keyed from scratch (the primitive both
/// formats use; [`SecretKey`] prepares the key once instead). For tests and
/// benchmarks.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length.
        Err(_) => [0; 32],
    }
}

/// Checks an environment name: 1 to [`MAX_ENVIRONMENT_LEN`] characters from
/// `A-Z a-z 0-9 . _ -`.
pub fn validate_environment(environment: &str) -> Result<(), SchemeError> {
    let ok = !environment.is_empty()
        && environment.len() <= MAX_ENVIRONMENT_LEN
        && environment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SchemeError::BadEnvironment {
            len: environment.len(),
        })
    }
}

/// True when `nonce` is 16 to 128 characters from `A-Z a-z 0-9 . _ ~ -`
/// (the same rule in both formats).
pub fn is_valid_nonce(nonce: &str) -> bool {
    (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}
