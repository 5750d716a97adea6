//! Errors building keys, signers and verifiers.

use super::outcome::Detail;
use super::{
    MAX_ENVIRONMENT_LEN, MAX_NONCE_LEN, MAX_TIMESTAMP_DIGITS, MIN_NONCE_LEN, MIN_SECRET_BYTES,
};

/// Errors building keys, signers and verifiers. Messages never contain secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "the {which} HMAC secret is {len} bytes long; at least {MIN_SECRET_BYTES} bytes are required (generate one with `openssl rand -hex 32`)"
    )]
    SecretTooShort {
        /// `current`, `previous` or `pending`.
        which: &'static str,
        /// Length of the rejected secret.
        len: usize,
    },
    /// The environment name is empty, too long or has characters outside
    /// `A-Z a-z 0-9 . _ -`. The value is not echoed: it may be a secret put
    /// in the wrong variable.
    #[error(
        "environment name ({len} bytes) is not valid: use 1 to {MAX_ENVIRONMENT_LEN} characters from A-Z a-z 0-9 . _ -"
    )]
    BadEnvironment {
        /// Length of the rejected name.
        len: usize,
    },
    /// The nonce given to the signer is not of the form the spec requires.
    #[error("nonce must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN} characters from A-Z a-z 0-9 . _ ~ -")]
    BadNonce,
    /// The timestamp given to the signer has more than 12 digits.
    #[error("timestamp must have at most {MAX_TIMESTAMP_DIGITS} digits")]
    BadTimestamp,
    /// An RFC 9421 request to sign is not one the profile can express.
    #[error("cannot sign this request in the RFC 9421 profile: {0}")]
    BadRfc9421Request(&'static str),
    /// The signature base of an RFC 9421 request cannot be built.
    #[error("cannot build the RFC 9421 signature base: {0}")]
    Rfc9421Base(Detail),
}
