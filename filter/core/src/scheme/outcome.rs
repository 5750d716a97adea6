//! The outcome codes shared by both formats, and what exactly failed.

use core::fmt;

use super::names::{
    CONTENT_SHA256_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, UNSIGNED_PAYLOAD,
};
use super::{MAX_NONCE_LEN, MAX_TIMESTAMP_DIGITS, MIN_NONCE_LEN};

/// The outcome codes of the spec, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// No signature or timestamp header, or no nonce when one is required.
    MissingSignature,
    /// Signed in a wire format the verifier does not accept (its `formats`
    /// leave it out).
    UnsupportedFormat,
    /// A signature header repeated or not of the stated form.
    MalformedSignature,
    /// The timestamp is more than the allowed skew away from now.
    StaleTimestamp,
    /// No active key produces the tag.
    InvalidSignature,
    /// The nonce was already accepted within the replay window.
    ReplayedRequest,
    /// The body's SHA-256 differs from the signed one.
    ContentMismatch,
    /// The body is larger than the verifier accepts.
    BodyTooLarge,
    /// The replay cache cannot take the nonce (full or unusable): the request
    /// is refused rather than let through unchecked.
    ReplayCacheUnavailable,
}

impl Reject {
    /// Every outcome, in check order.
    pub const ALL: [Reject; 9] = [
        Reject::MissingSignature,
        Reject::UnsupportedFormat,
        Reject::MalformedSignature,
        Reject::StaleTimestamp,
        Reject::InvalidSignature,
        Reject::ReplayedRequest,
        Reject::ContentMismatch,
        Reject::BodyTooLarge,
        Reject::ReplayCacheUnavailable,
    ];

    /// Stable machine-readable code.
    pub const fn code(self) -> &'static str {
        match self {
            Reject::MissingSignature => "missing_signature",
            Reject::UnsupportedFormat => "unsupported_format",
            Reject::MalformedSignature => "malformed_signature",
            Reject::StaleTimestamp => "stale_timestamp",
            Reject::InvalidSignature => "invalid_signature",
            Reject::ReplayedRequest => "replayed_request",
            Reject::ContentMismatch => "content_mismatch",
            Reject::BodyTooLarge => "body_too_large",
            Reject::ReplayCacheUnavailable => "replay_cache_unavailable",
        }
    }

    /// HTTP status the filter answers with.
    pub const fn status(self) -> u32 {
        match self {
            Reject::BodyTooLarge => 413,
            Reject::ReplayCacheUnavailable => 503,
            _ => 401,
        }
    }

    /// The outcome with this code.
    pub fn from_code(code: &str) -> Option<Reject> {
        Reject::ALL.into_iter().find(|r| r.code() == code)
    }

    /// JSON body of the error response: `{"error":"<code>"}`.
    pub const fn response_body(self) -> &'static str {
        match self {
            Reject::MissingSignature => r#"{"error":"missing_signature"}"#,
            Reject::UnsupportedFormat => r#"{"error":"unsupported_format"}"#,
            Reject::MalformedSignature => r#"{"error":"malformed_signature"}"#,
            Reject::StaleTimestamp => r#"{"error":"stale_timestamp"}"#,
            Reject::InvalidSignature => r#"{"error":"invalid_signature"}"#,
            Reject::ReplayedRequest => r#"{"error":"replayed_request"}"#,
            Reject::ContentMismatch => r#"{"error":"content_mismatch"}"#,
            Reject::BodyTooLarge => r#"{"error":"body_too_large"}"#,
            Reject::ReplayCacheUnavailable => r#"{"error":"replay_cache_unavailable"}"#,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a request was refused: the outcome code and, for logs and client
/// debugging, which check failed. Never carries secrets, tags or the string
/// to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// The outcome code.
    pub reason: Reject,
    /// What exactly failed.
    pub detail: Detail,
}

/// What exactly failed, for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// A required header is absent.
    MissingHeader(&'static str),
    /// The request is signed in this format, which the verifier's
    /// `formats` leave out.
    FormatNotAccepted(super::formats::Format),
    /// A header occurs more than once.
    RepeatedHeader(&'static str),
    /// `x-crawbl-timestamp` is not 1 to 12 ASCII digits.
    BadTimestamp,
    /// `x-crawbl-nonce` is not 16 to 128 allowed characters.
    BadNonce,
    /// `x-crawbl-content-sha256` is not 64 hex digits (nor `UNSIGNED-PAYLOAD`).
    BadContentSha256,
    /// `x-crawbl-content-sha256: UNSIGNED-PAYLOAD` on a path that is not in
    /// `unsigned_payload_paths`.
    UnsignedPayloadNotAllowed,
    /// `x-crawbl-signature` does not start with `v1=`.
    UnknownScheme,
    /// The tag after `v1=` is neither 64 hex digits nor 44 padded base64 characters.
    BadTagEncoding,
    /// The timestamp is `delta` seconds from now (positive: in the future).
    Skew {
        /// Signed timestamp minus now, in seconds.
        delta: i64,
        /// Allowed absolute skew.
        allowed: u64,
    },
    /// No configured key produced the tag.
    NoKeyMatched {
        /// How many keys were tried.
        keys_tried: u8,
    },
    /// The nonce was seen before.
    NonceSeen,
    /// The body hash differs from `x-crawbl-content-sha256` (or from the empty
    /// hash when the header is absent).
    BodyHashDiffers,
    /// The body (or its declared `content-length`) exceeds the limit.
    BodyOverLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The replay cache bucket for this nonce is full.
    ReplayCacheFull,
    /// The replay cache could not be updated (contention or a host error).
    ReplayCacheError,
    /// The shared nonce store says another request (through any proxy)
    /// already used the nonce.
    NonceStoreReplayed,
    /// The shared nonce store did not answer (unavailable, timed out or
    /// unreachable); the nonce is not used up.
    NonceStoreUnavailable,
    /// Both formats are enabled and the request carries both v1 and RFC 9421
    /// signature headers: which one authorizes it would be ambiguous.
    TwoFormats,
    /// An RFC 9421 header is not the RFC 8941 structured field it must be.
    BadStructuredField(&'static str),
    /// An RFC 9421 header repeats a dictionary key or a parameter key
    /// (`;created=1;created=2`): which value counts would be ambiguous.
    RepeatedKey(&'static str),
    /// `Signature-Input` and `Signature` do not hold exactly one signature,
    /// under the same label.
    SignatureCount,
    /// A component the RFC 9421 profile requires is not covered.
    MissingComponent(&'static str),
    /// A parameter the RFC 9421 profile requires is absent.
    MissingParameter(&'static str),
    /// An RFC 9421 signature parameter has the wrong type or value.
    BadParameter(&'static str),
    /// A covered component is outside the profile: a derived component it
    /// does not define, a component with parameters, a name not in lowercase,
    /// or a component listed twice.
    UnsupportedComponent,
    /// A covered field is not in the request.
    CoveredFieldAbsent,
    /// `Content-Digest` is not a dictionary with a `sha-256` (32 bytes) or
    /// `sha-512` (64 bytes) byte sequence.
    BadContentDigest,
    /// The request declares a body (`content-length` above 0) and the RFC
    /// 9421 signature does not cover `content-digest`.
    ContentDigestNotCovered,
    /// The `Signature` member is not a 32-byte byte sequence.
    BadSignatureValue,
    /// The RFC 9421 `keyid` names none of the configured keys.
    UnknownKeyId,
    /// The RFC 9421 `tag` is not this verifier's environment.
    WrongEnvironmentTag,
    /// The RFC 9421 `expires` time has passed.
    Expired {
        /// Seconds since `expires`.
        ago: u64,
    },
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::MissingHeader(h) => write!(f, "header {h} is missing"),
            Detail::FormatNotAccepted(format) => write!(
                f,
                "the request is signed in the {format} format, which this verifier does not accept (see its formats setting)"
            ),
            Detail::RepeatedHeader(h) => write!(f, "header {h} occurs more than once"),
            Detail::BadTimestamp => write!(
                f,
                "{TIMESTAMP_HEADER} is not 1 to {MAX_TIMESTAMP_DIGITS} ASCII digits"
            ),
            Detail::BadNonce => write!(
                f,
                "{NONCE_HEADER} is not {MIN_NONCE_LEN} to {MAX_NONCE_LEN} characters from A-Z a-z 0-9 . _ ~ -"
            ),
            Detail::BadContentSha256 => {
                write!(
                    f,
                    "{CONTENT_SHA256_HEADER} is not 64 hex digits (nor {UNSIGNED_PAYLOAD})"
                )
            }
            Detail::UnsignedPayloadNotAllowed => write!(
                f,
                "{CONTENT_SHA256_HEADER}: {UNSIGNED_PAYLOAD} is only accepted on unsigned_payload_paths"
            ),
            Detail::UnknownScheme => write!(f, "{SIGNATURE_HEADER} does not start with v1="),
            Detail::BadTagEncoding => write!(
                f,
                "the tag after v1= is neither 64 hex digits nor 44 characters of padded base64"
            ),
            Detail::Skew { delta, allowed } => {
                let dir = if *delta > 0 { "ahead of" } else { "behind" };
                write!(
                    f,
                    "timestamp is {} s {dir} the verifier's clock; at most {allowed} s allowed",
                    delta.unsigned_abs()
                )
            }
            Detail::NoKeyMatched { keys_tried } => {
                write!(
                    f,
                    "the tag does not match any of the {keys_tried} active key(s)"
                )
            }
            Detail::NonceSeen => write!(f, "nonce was already accepted within the replay window"),
            Detail::BodyHashDiffers => write!(f, "body SHA-256 differs from the signed value"),
            Detail::BodyOverLimit { limit } => write!(f, "body exceeds {limit} bytes"),
            Detail::ReplayCacheFull => write!(f, "replay cache is full for this nonce"),
            Detail::ReplayCacheError => write!(f, "replay cache could not be updated"),
            Detail::NonceStoreReplayed => write!(
                f,
                "the nonce store says the nonce was already accepted (by this or another proxy)"
            ),
            Detail::NonceStoreUnavailable => write!(
                f,
                "the nonce store did not answer in time; sign again with a new nonce"
            ),
            Detail::TwoFormats => write!(
                f,
                "the request carries both {SIGNATURE_HEADER} and signature-input/signature; send one format"
            ),
            Detail::BadStructuredField(h) => {
                write!(f, "header {h} is not a valid RFC 8941 structured field")
            }
            Detail::RepeatedKey(h) => {
                write!(f, "header {h} repeats a member or parameter name")
            }
            Detail::SignatureCount => write!(
                f,
                "signature-input and signature must hold exactly one signature, under the same label"
            ),
            Detail::MissingComponent(c) => write!(f, "the signature does not cover {c}"),
            Detail::MissingParameter(p) => {
                write!(f, "the signature parameters have no {p}")
            }
            Detail::BadParameter(p) => write!(f, "signature parameter {p} is not valid"),
            Detail::UnsupportedComponent => write!(
                f,
                "a covered component is not supported (unknown derived component, component parameters, uppercase or repeated name)"
            ),
            Detail::CoveredFieldAbsent => write!(f, "a covered header field is not in the request"),
            Detail::BadContentDigest => write!(
                f,
                "content-digest has no valid sha-256 or sha-512 byte sequence"
            ),
            Detail::ContentDigestNotCovered => write!(
                f,
                "the request has a body and the signature does not cover content-digest"
            ),
            Detail::BadSignatureValue => {
                write!(f, "the signature is not a 32-byte byte sequence")
            }
            Detail::UnknownKeyId => write!(f, "keyid names none of the active keys"),
            Detail::WrongEnvironmentTag => {
                write!(f, "the tag parameter is not this verifier's environment")
            }
            Detail::Expired { ago } => write!(f, "the signature expired {ago} s ago"),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl Rejection {
    /// A rejection with this reason and detail.
    pub const fn new(reason: Reject, detail: Detail) -> Self {
        Self { reason, detail }
    }
}
