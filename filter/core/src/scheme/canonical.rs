//! v1's string to sign (`docs/signature-v1.md` §4), fed to the MAC piece by
//! piece: the message a v1 claim carries to the shared key loop.

use super::body::Payload;
use super::names::UNSIGNED_PAYLOAD;

/// First line of every string to sign.
pub const SCHEME: &str = "CRAWBL-HMAC-SHA256-V1";

/// The eight fields of the string to sign. Fed to the MAC piece by piece, so
/// verifying allocates nothing.
pub(crate) struct Canonical<'a> {
    pub(crate) timestamp: &'a [u8],
    pub(crate) nonce: &'a [u8],
    pub(crate) method: &'a [u8],
    pub(crate) authority: &'a [u8],
    pub(crate) path: &'a [u8],
    pub(crate) payload: Payload,
}

impl Canonical<'_> {
    /// Feeds the string to sign of `environment` to `sink`, piece by piece.
    pub(crate) fn feed(&self, environment: &[u8], mut sink: impl FnMut(&[u8])) {
        sink(SCHEME.as_bytes());
        sink(b"\n");
        sink(environment);
        sink(b"\n");
        sink(self.timestamp);
        sink(b"\n");
        sink(self.nonce);
        sink(b"\n");
        sink(self.method);
        sink(b"\n");
        // The authority is signed ASCII-lowercased; lowercase through a small
        // stack buffer instead of allocating.
        let mut buf = [0u8; 64];
        for chunk in self.authority.chunks(buf.len()) {
            let out = &mut buf[..chunk.len()];
            out.copy_from_slice(chunk);
            out.make_ascii_lowercase();
            sink(out);
        }
        sink(b"\n");
        sink(self.path);
        sink(b"\n");
        match self.payload {
            Payload::Sha256(hash) => sink(&hex_lower32(&hash)),
            Payload::Unsigned => sink(UNSIGNED_PAYLOAD.as_bytes()),
        }
    }

    /// The string to sign, as text (for debugging a client).
    pub(crate) fn to_text(&self, environment: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(160 + self.path.len() + self.authority.len());
        self.feed(environment, |b| bytes.extend_from_slice(b));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Lowercase hex of 32 bytes.
pub(crate) fn hex_lower32(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0F)];
    }
    out
}
