//! Wire format `CRAWBL-HMAC-SHA256-V1` (`docs/signature-v1.md`): the
//! `x-crawbl-*` headers, the string to sign, and the v1 signer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::body::Payload;
use super::canonical::Canonical;
pub use super::canonical::SCHEME;
use super::claim::{Claim, KeySelect, Message, Signed};
use super::head::{HeaderValue, RequestHead};
pub use super::names::{
    CONTENT_SHA256_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, UNSIGNED_PAYLOAD,
};
use super::outcome::{Detail, Reject, Rejection};
pub use super::signer::Signer;
use super::{MAX_TIMESTAMP_DIGITS, SchemeError, TAG_LEN, is_valid_nonce};
use std::borrow::Cow;

/// Prefix of the `x-crawbl-signature` value for this scheme.
pub const SIGNATURE_PREFIX: &str = "v1=";

/// How the 32-byte tag is written after `v1=`.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagEncoding {
    /// 64 lowercase hex digits.
    #[default]
    Hex,
    /// Standard padded base64, 44 characters.
    Base64,
}

/// What a client signs.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The HTTP method, as sent.
    pub method: &'a str,
    /// The authority (`Host`), as sent, port included when it is sent.
    pub authority: &'a str,
    /// The path and query, exactly as sent.
    pub path: &'a str,
    /// Unix time in seconds.
    pub timestamp: u64,
    /// Optional nonce (16 to 128 characters from `A-Z a-z 0-9 . _ ~ -`).
    pub nonce: Option<&'a str>,
    /// What `x-crawbl-content-sha256` says: the body's SHA-256, or
    /// [`Payload::Unsigned`] for a stream on an unsigned-payload path; `None`
    /// leaves the header out, which means the body must be empty.
    pub payload: Option<Payload>,
}

/// The `x-crawbl-*` headers a client adds to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// Value of `x-crawbl-timestamp`.
    pub timestamp: String,
    /// Value of `x-crawbl-nonce`, when signed with one.
    pub nonce: Option<String>,
    /// Value of `x-crawbl-content-sha256`, when the body hash (or
    /// [`UNSIGNED_PAYLOAD`]) is sent.
    pub content_sha256: Option<String>,
    /// Value of `x-crawbl-signature`.
    pub signature: String,
}

impl SignedHeaders {
    /// The headers as `(name, value)` pairs, in a stable order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![(TIMESTAMP_HEADER, self.timestamp.as_str())];
        if let Some(nonce) = &self.nonce {
            out.push((NONCE_HEADER, nonce.as_str()));
        }
        if let Some(hash) = &self.content_sha256 {
            out.push((CONTENT_SHA256_HEADER, hash.as_str()));
        }
        out.push((SIGNATURE_HEADER, self.signature.as_str()));
        out
    }
}

impl Signer {
    /// Signs `request`, writing the tag as `encoding`.
    pub fn sign(
        &self,
        request: &SignRequest<'_>,
        encoding: TagEncoding,
    ) -> Result<SignedHeaders, SchemeError> {
        let timestamp = request.timestamp.to_string();
        if timestamp.len() > MAX_TIMESTAMP_DIGITS {
            return Err(SchemeError::BadTimestamp);
        }
        if let Some(nonce) = request.nonce
            && !is_valid_nonce(nonce)
        {
            return Err(SchemeError::BadNonce);
        }
        let canonical = self.canonical(request, &timestamp);
        let tag = self.key.tag(&Message::V1 {
            environment: self.environment.as_bytes(),
            canonical: &canonical,
        });
        let encoded = match encoding {
            TagEncoding::Hex => hex::encode(tag),
            TagEncoding::Base64 => BASE64.encode(tag),
        };
        Ok(SignedHeaders {
            timestamp,
            nonce: request.nonce.map(str::to_owned),
            content_sha256: request.payload.as_ref().map(Payload::header_value),
            signature: format!("{SIGNATURE_PREFIX}{encoded}"),
        })
    }

    /// The exact string to sign for `request` (for documentation and client
    /// debugging; never logged by the filter).
    pub fn string_to_sign(&self, request: &SignRequest<'_>) -> String {
        let timestamp = request.timestamp.to_string();
        self.canonical(request, &timestamp)
            .to_text(self.environment.as_bytes())
    }

    fn canonical<'a>(&'a self, request: &SignRequest<'a>, timestamp: &'a str) -> Canonical<'a> {
        Canonical {
            timestamp: timestamp.as_bytes(),
            nonce: request.nonce.unwrap_or("").as_bytes(),
            method: request.method.as_bytes(),
            authority: request.authority.as_bytes(),
            path: request.path.as_bytes(),
            payload: request.payload.unwrap_or(Payload::EMPTY),
        }
    }
}

/// Steps 1 (missing) and 2 (malformed) of the v1 spec: the claim of a
/// request signed with `x-crawbl-*` headers.
pub(crate) fn parse<'a>(
    head: &RequestHead<'a>,
    require_nonce: bool,
    unsigned_payload_allowed: bool,
) -> Result<Claim<'a>, Rejection> {
    use Reject::*;
    // 1. missing_signature
    if head.signature.is_absent() {
        return Err(Rejection::new(
            MissingSignature,
            Detail::MissingHeader(SIGNATURE_HEADER),
        ));
    }
    if head.timestamp.is_absent() {
        return Err(Rejection::new(
            MissingSignature,
            Detail::MissingHeader(TIMESTAMP_HEADER),
        ));
    }
    if require_nonce && head.nonce.is_absent() {
        return Err(Rejection::new(
            MissingSignature,
            Detail::MissingHeader(NONCE_HEADER),
        ));
    }
    // 2. malformed_signature: repeated headers first, then each form.
    let one = |value: HeaderValue<'a>, name: &'static str| match value {
        HeaderValue::Repeated => Err(Rejection::new(
            MalformedSignature,
            Detail::RepeatedHeader(name),
        )),
        HeaderValue::One(v) => Ok(Some(v)),
        HeaderValue::Absent => Ok(None),
    };
    let timestamp_raw = one(head.timestamp, TIMESTAMP_HEADER)?.unwrap_or_default();
    let nonce = one(head.nonce, NONCE_HEADER)?;
    let content_raw = one(head.content_sha256, CONTENT_SHA256_HEADER)?;
    let signature_raw = one(head.signature, SIGNATURE_HEADER)?.unwrap_or_default();
    let timestamp = parse_timestamp(timestamp_raw)
        .ok_or(Rejection::new(MalformedSignature, Detail::BadTimestamp))?;
    let nonce = match nonce {
        None => None,
        Some(n) => Some(
            core::str::from_utf8(n)
                .ok()
                .filter(|n| is_valid_nonce(n))
                .ok_or(Rejection::new(MalformedSignature, Detail::BadNonce))?,
        ),
    };
    let payload = match content_raw {
        None => Payload::EMPTY,
        Some(v) if v == UNSIGNED_PAYLOAD.as_bytes() => {
            if !unsigned_payload_allowed {
                return Err(Rejection::new(
                    MalformedSignature,
                    Detail::UnsignedPayloadNotAllowed,
                ));
            }
            Payload::Unsigned
        }
        Some(v) => Payload::Sha256(
            parse_hex32(v).ok_or(Rejection::new(MalformedSignature, Detail::BadContentSha256))?,
        ),
    };
    let tag = parse_signature(signature_raw)?;
    Ok(Claim {
        timestamp,
        expires: None,
        nonce: nonce.map(Cow::Borrowed),
        body: payload.into(),
        tag,
        key_id: KeySelect::Any,
        environment_tag_ok: true,
        signed: Signed::V1(Canonical {
            timestamp: timestamp_raw,
            nonce: nonce.unwrap_or("").as_bytes(),
            method: head.method,
            authority: head.authority,
            path: head.path,
            payload,
        }),
    })
}

fn parse_timestamp(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > MAX_TIMESTAMP_DIGITS {
        return None;
    }
    raw.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// Decodes exactly 64 hex digits (either case) into 32 bytes. Table-driven
/// and branch-free per digit: this runs on every request.
fn parse_hex32(raw: &[u8]) -> Option<[u8; 32]> {
    let raw: &[u8; 64] = raw.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(raw.chunks_exact(2)) {
        let hi = HEX_VALUE[usize::from(pair[0])];
        let lo = HEX_VALUE[usize::from(pair[1])];
        bad |= (hi | lo) & 0xF0;
        *o = (hi << 4) | (lo & 0x0F);
    }
    (bad == 0).then_some(out)
}

/// Value of each byte as a hex digit; 0xFF for non-digits.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

fn parse_signature(raw: &[u8]) -> Result<[u8; TAG_LEN], Rejection> {
    let Some(encoded) = raw.strip_prefix(SIGNATURE_PREFIX.as_bytes()) else {
        return Err(Rejection::new(
            Reject::MalformedSignature,
            Detail::UnknownScheme,
        ));
    };
    let bad = Rejection::new(Reject::MalformedSignature, Detail::BadTagEncoding);
    match encoded.len() {
        64 => parse_hex32(encoded).ok_or(bad),
        44 => {
            // 44 padded characters decode to at most 33 bytes; exactly 32 are required.
            let mut buf = [0u8; 33];
            match BASE64.decode_slice(encoded, &mut buf) {
                Ok(TAG_LEN) => {
                    let mut tag = [0u8; TAG_LEN];
                    tag.copy_from_slice(&buf[..TAG_LEN]);
                    Ok(tag)
                }
                _ => Err(bad),
            }
        }
        _ => Err(bad),
    }
}
