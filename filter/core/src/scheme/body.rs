//! What a signature says about the body, and the streaming check of the body
//! held back until it matches.

use core::fmt;

use sha2::{Digest, Sha256, Sha512};

use super::names::UNSIGNED_PAYLOAD;
use super::outcome::{Detail, Reject, Rejection};
use super::sha256;

/// SHA-256 of the empty string, signed when `x-crawbl-content-sha256` is absent.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub(crate) const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// What field 8 of the v1 string to sign says about the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The body's SHA-256 (the empty-body hash when the header is absent).
    Sha256([u8; 32]),
    /// [`UNSIGNED_PAYLOAD`]: the body is not covered by the signature.
    Unsigned,
}

impl Payload {
    /// The payload claim for `body`: `None` (header left out) when it is
    /// empty, its SHA-256 otherwise.
    pub fn of(body: &[u8]) -> Option<Payload> {
        (!body.is_empty()).then(|| Payload::Sha256(sha256(body)))
    }

    /// The claim of a request with no body.
    pub const EMPTY: Payload = Payload::Sha256(EMPTY_SHA256);

    /// The header value (and field 8): 64 lowercase hex digits or
    /// [`UNSIGNED_PAYLOAD`].
    pub fn header_value(&self) -> String {
        match self {
            Payload::Sha256(hash) => hex::encode(hash),
            Payload::Unsigned => UNSIGNED_PAYLOAD.to_owned(),
        }
    }
}

/// The body digests a signature covers: v1's SHA-256, or the `sha-256` and
/// `sha-512` members of an RFC 9530 `Content-Digest`. Every digest present
/// must match the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    /// SHA-256 of the body.
    pub sha256: Option<[u8; 32]>,
    /// SHA-512 of the body.
    pub sha512: Option<[u8; 64]>,
}

impl Digests {
    /// The digests of an empty body (what a signature covering no body claims).
    pub const EMPTY: Digests = Digests {
        sha256: Some(EMPTY_SHA256),
        sha512: None,
    };

    /// True when every digest present is the empty body's.
    pub fn is_empty_body(&self) -> bool {
        self.sha256.is_none_or(|h| h == EMPTY_SHA256)
            && self.sha512.is_none_or(|h| h[..] == Sha512::digest(b"")[..])
    }
}

/// What a verified signature says about the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyClaim {
    /// The body must have these digests (the empty body's when the signature
    /// covers none).
    Digests(Digests),
    /// Unsigned (v1 `UNSIGNED-PAYLOAD`, or an RFC 9421 signature without
    /// `content-digest` on an unsigned-payload path): the body streams
    /// through unread.
    Unsigned,
}

impl From<Payload> for BodyClaim {
    fn from(p: Payload) -> Self {
        match p {
            Payload::Sha256(h) => BodyClaim::Digests(Digests {
                sha256: Some(h),
                sha512: None,
            }),
            Payload::Unsigned => BodyClaim::Unsigned,
        }
    }
}

/// Streaming check of a request body against the signed digests.
#[derive(Clone)]
pub struct BodyVerifier {
    sha256: Option<(Sha256, [u8; 32])>,
    // Boxed: SHA-512 is rare here (RFC 9530 clients), and its state would
    // double the size of every held body's context.
    sha512: Option<Box<(Sha512, [u8; 64])>>,
    received: u64,
    max_body_bytes: u64,
}

impl fmt::Debug for BodyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyVerifier")
            .field("received", &self.received)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl BodyVerifier {
    /// A check expecting the SHA-256 `expected` and refusing more than
    /// `max_body_bytes`.
    pub fn new(expected: [u8; 32], max_body_bytes: u64) -> Self {
        Self::for_digests(
            Digests {
                sha256: Some(expected),
                sha512: None,
            },
            max_body_bytes,
        )
    }

    /// A check expecting every digest in `digests`. With none, `finish`
    /// always fails (closed).
    pub fn for_digests(digests: Digests, max_body_bytes: u64) -> Self {
        Self {
            sha256: digests.sha256.map(|h| (Sha256::new(), h)),
            sha512: digests.sha512.map(|h| Box::new((Sha512::new(), h))),
            received: 0,
            max_body_bytes,
        }
    }

    /// Bytes hashed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Hashes the next chunk. Fails with `body_too_large` as soon as the total
    /// exceeds the limit.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), Rejection> {
        let total = self.received.saturating_add(chunk.len() as u64);
        if total > self.max_body_bytes {
            return Err(Rejection::new(
                Reject::BodyTooLarge,
                Detail::BodyOverLimit {
                    limit: self.max_body_bytes,
                },
            ));
        }
        if let Some((h, _)) = &mut self.sha256 {
            h.update(chunk);
        }
        if let Some(state) = &mut self.sha512 {
            state.0.update(chunk);
        }
        self.received = total;
        Ok(())
    }

    /// Compares the digests of everything received with the signed values.
    pub fn finish(self) -> Result<(), Rejection> {
        let mut checked = false;
        let mut ok = true;
        if let Some((h, expected)) = self.sha256 {
            checked = true;
            ok &= h.finalize()[..] == expected[..];
        }
        if let Some(state) = self.sha512 {
            let (h, expected) = *state;
            checked = true;
            ok &= h.finalize()[..] == expected[..];
        }
        if checked && ok {
            Ok(())
        } else {
            Err(Rejection::new(
                Reject::ContentMismatch,
                Detail::BodyHashDiffers,
            ))
        }
    }
}
