//! Shared secrets, their fingerprints, and the rotation slots they sit in.

use core::fmt;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::claim::Message;
use super::{HmacSha256, MIN_SECRET_BYTES, SchemeError, TAG_LEN};

/// A shared secret, prepared once for HMAC-SHA256 (the inner and outer pads
/// are computed at construction and cloned per request).
///
/// `Debug` shows only the length and a short fingerprint.
#[derive(Clone)]
pub struct SecretKey {
    mac: HmacSha256,
    len: usize,
    fingerprint: [u8; 4],
}

impl SecretKey {
    /// Prepares `secret` (its bytes are used as-is) as the key named `which`
    /// (`"current"`, `"previous"` or `"pending"`, used in error messages).
    pub fn new(secret: &[u8], which: &'static str) -> Result<Self, SchemeError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SchemeError::SecretTooShort {
                which,
                len: secret.len(),
            });
        }
        // HMAC accepts keys of any length; this cannot fail, but stay total.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(secret).map_err(|_| {
            SchemeError::SecretTooShort {
                which,
                len: secret.len(),
            }
        })?;
        Ok(Self {
            mac,
            len: secret.len(),
            fingerprint: fingerprint_bytes(secret),
        })
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an empty secret cannot be built.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// First 8 hex digits of SHA-256(secret): enough to tell two secrets apart
    /// in logs, useless for recovering a random secret.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// HMAC-SHA256 of `data` from the prepared key state (what every request
    /// costs; compare [`hmac_sha256`], which keys from scratch).
    pub fn mac(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The tag of `message` (v1's string to sign or an RFC 9421 signature base).
    pub(crate) fn tag(&self, message: &Message<'_>) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        message.feed(|bytes| mac.update(bytes));
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against the MAC of `message`.
    pub(crate) fn matches(&self, message: &Message<'_>, tag: &[u8; TAG_LEN]) -> bool {
        let mut mac = self.mac.clone();
        message.feed(|bytes| mac.update(bytes));
        mac.verify_slice(tag).is_ok()
    }

    /// True when `id` is this key's fingerprint bytes (an RFC 9421 `keyid`).
    pub(crate) fn has_id(&self, id: &[u8; 4]) -> bool {
        self.fingerprint == *id
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("len", &self.len)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// First 8 hex digits of SHA-256 of `secret` (see [`SecretKey::fingerprint`]).
pub fn fingerprint(secret: &[u8]) -> String {
    hex::encode(fingerprint_bytes(secret))
}

fn fingerprint_bytes(secret: &[u8]) -> [u8; 4] {
    let digest = Sha256::digest(secret);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Which key produced a valid tag: the key slots, in the order they are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsed {
    /// The current key (Secrets Manager's `AWSCURRENT`).
    Current,
    /// The previous key, still accepted after a rotation (`AWSPREVIOUS`).
    Previous,
    /// The next key, staged before clients move to it (`AWSPENDING`).
    Pending,
}

impl KeyUsed {
    /// Every slot, in the order keys are tried (each at the index of its
    /// discriminant).
    pub const ALL: [KeyUsed; 3] = [KeyUsed::Current, KeyUsed::Previous, KeyUsed::Pending];

    /// The slot's name in metrics, logs and errors: `current`, `previous`, `pending`.
    pub fn slot(self) -> &'static str {
        match self {
            KeyUsed::Current => "current",
            KeyUsed::Previous => "previous",
            KeyUsed::Pending => "pending",
        }
    }
}
