//! Signature scheme `CRAWBL-HMAC-SHA256-V1`: the string to sign, signing and
//! header verification. The normative description is `docs/signature-v1.md`;
//! this module is its only implementation, shared by the filter, the loader,
//! the tests and the benches.
//!
//! Nothing here knows about proxy-wasm, clocks or I/O: callers pass the request
//! parts and the current Unix time in.

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// First line of every string to sign.
pub const SCHEME: &str = "CRAWBL-HMAC-SHA256-V1";
/// Prefix of the `x-crawbl-signature` value for this scheme.
pub const SIGNATURE_PREFIX: &str = "v1=";
/// Header carrying the Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-crawbl-timestamp";
/// Header carrying the optional nonce.
pub const NONCE_HEADER: &str = "x-crawbl-nonce";
/// Header carrying the optional hex SHA-256 of the body.
pub const CONTENT_SHA256_HEADER: &str = "x-crawbl-content-sha256";
/// Header carrying `v1=<tag>`.
pub const SIGNATURE_HEADER: &str = "x-crawbl-signature";
/// The `x-crawbl-content-sha256` value (and field 8 of the string to sign)
/// that claims no body hash: the body is not signed and streams through.
/// Accepted only on a verifier's `unsigned_payload_paths`.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// SHA-256 of the empty string, signed when `x-crawbl-content-sha256` is absent.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
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

const TAG_LEN: usize = 32;
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

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
}

/// What field 8 of the string to sign says about the body.
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

    fn tag(&self, canonical: &Canonical<'_>) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        canonical.feed(|bytes| mac.update(bytes));
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against the MAC of the string to sign.
    fn matches(&self, canonical: &Canonical<'_>, tag: &[u8; TAG_LEN]) -> bool {
        let mut mac = self.mac.clone();
        canonical.feed(|bytes| mac.update(bytes));
        mac.verify_slice(tag).is_ok()
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

/// SHA-256 of `body`.
pub fn sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Checks an environment name: 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
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

/// True when `nonce` is 16 to 128 characters from `A-Z a-z 0-9 . _ ~ -`.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// The eight fields of the string to sign. Fed to the MAC piece by piece, so
/// verifying allocates nothing.
struct Canonical<'a> {
    environment: &'a [u8],
    timestamp: &'a [u8],
    nonce: &'a [u8],
    method: &'a [u8],
    authority: &'a [u8],
    path: &'a [u8],
    payload: &'a Payload,
}

impl Canonical<'_> {
    fn feed(&self, mut sink: impl FnMut(&[u8])) {
        sink(SCHEME.as_bytes());
        sink(b"\n");
        sink(self.environment);
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
            Payload::Sha256(hash) => sink(&hex_lower32(hash)),
            Payload::Unsigned => sink(UNSIGNED_PAYLOAD.as_bytes()),
        }
    }

    fn to_text(&self) -> String {
        let mut bytes = Vec::with_capacity(160 + self.path.len() + self.authority.len());
        self.feed(|b| bytes.extend_from_slice(b));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

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

/// Signs requests for one environment with one secret.
#[derive(Debug, Clone)]
pub struct Signer {
    key: SecretKey,
    environment: String,
}

impl Signer {
    /// A signer for `environment` with `key`.
    pub fn new(key: SecretKey, environment: &str) -> Result<Self, SchemeError> {
        validate_environment(environment)?;
        Ok(Self {
            key,
            environment: environment.to_owned(),
        })
    }

    /// The key's fingerprint.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }

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
        let content = request.payload.unwrap_or(Payload::EMPTY);
        let tag = self.key.tag(&self.canonical(request, &timestamp, &content));
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
        let content = request.payload.unwrap_or(Payload::EMPTY);
        self.canonical(request, &timestamp, &content).to_text()
    }

    fn canonical<'a>(
        &'a self,
        request: &SignRequest<'a>,
        timestamp: &'a str,
        payload: &'a Payload,
    ) -> Canonical<'a> {
        Canonical {
            environment: self.environment.as_bytes(),
            timestamp: timestamp.as_bytes(),
            nonce: request.nonce.unwrap_or("").as_bytes(),
            method: request.method.as_bytes(),
            authority: request.authority.as_bytes(),
            path: request.path.as_bytes(),
            payload,
        }
    }
}

/// How often one of the `x-crawbl-*` headers occurred in a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    /// Not present.
    #[default]
    Absent,
    /// Present exactly once, with this value.
    One(&'a [u8]),
    /// Present more than once (malformed).
    Repeated,
}

impl<'a> HeaderValue<'a> {
    fn push(&mut self, value: &'a [u8]) {
        *self = match self {
            HeaderValue::Absent => HeaderValue::One(value),
            _ => HeaderValue::Repeated,
        };
    }

    fn is_absent(&self) -> bool {
        matches!(self, HeaderValue::Absent)
    }
}

/// The parts of a request the scheme looks at, borrowed from the caller's
/// header map. Values are bytes: header values are not always UTF-8, and the
/// scheme signs them exactly as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a [u8],
    /// `:authority` (or `Host` when there is no `:authority`).
    pub authority: &'a [u8],
    /// `:path`, query included.
    pub path: &'a [u8],
    /// `x-crawbl-timestamp`.
    pub timestamp: HeaderValue<'a>,
    /// `x-crawbl-nonce`.
    pub nonce: HeaderValue<'a>,
    /// `x-crawbl-content-sha256`.
    pub content_sha256: HeaderValue<'a>,
    /// `x-crawbl-signature`.
    pub signature: HeaderValue<'a>,
    /// `content-length`, when present once and numeric.
    pub content_length: Option<u64>,
    /// True when `access-control-request-method` is present (CORS preflight).
    pub cors_request_method: bool,
    /// True when `origin` is present.
    pub origin: bool,
    /// True when Envoy treats the request as an upgrade (websocket, ...):
    /// `Connection` carries the `upgrade` token and `Upgrade` is present, or
    /// the method is `CONNECT`. Its stream is not a body.
    pub upgrade: bool,
}

impl<'a> RequestHead<'a> {
    /// Builds the head from every `(name, value)` entry of a header map, as
    /// Envoy hands them over (pseudo-headers included, duplicates as separate
    /// entries). Header names match case-insensitively.
    pub fn from_pairs<I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut head = RequestHead::default();
        let mut host = None;
        let mut content_length = HeaderValue::Absent;
        let (mut connection_upgrade, mut upgrade) = (false, false);
        for (name, value) in pairs {
            // Dispatch on the length first: most headers are skipped after
            // one comparison (Envoy hands names over lowercased; the case-
            // insensitive compare only runs for a candidate of the right size).
            let is = |expected: &[u8]| name.eq_ignore_ascii_case(expected);
            match name.len() {
                4 if is(b"host") => host = Some(value),
                6 if is(b"origin") => head.origin = true,
                7 if is(b"upgrade") => upgrade = true,
                10 if is(b"connection") => connection_upgrade |= has_upgrade_token(value),
                5 if is(b":path") => head.path = value,
                7 if is(b":method") => head.method = value,
                10 if is(b":authority") => head.authority = value,
                14 if is(b"content-length") => content_length.push(value),
                14 if is(NONCE_HEADER.as_bytes()) => head.nonce.push(value),
                18 if is(TIMESTAMP_HEADER.as_bytes()) => head.timestamp.push(value),
                18 if is(SIGNATURE_HEADER.as_bytes()) => head.signature.push(value),
                23 if is(CONTENT_SHA256_HEADER.as_bytes()) => head.content_sha256.push(value),
                29 if is(b"access-control-request-method") => head.cors_request_method = true,
                _ => {}
            }
        }
        if head.authority.is_empty()
            && let Some(host) = host
        {
            head.authority = host;
        }
        if let HeaderValue::One(v) = content_length {
            head.content_length = core::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
        }
        head.upgrade = (connection_upgrade && upgrade) || head.method == b"CONNECT";
        head
    }

    /// Like [`RequestHead::from_pairs`], for string pairs.
    pub fn from_str_pairs<I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        Self::from_pairs(pairs.into_iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }
}

/// True when a `Connection` value lists the `upgrade` token
/// (comma-separated, case-insensitive, optional whitespace), as Envoy reads it.
fn has_upgrade_token(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
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

/// The outcome codes of the spec, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// No signature or timestamp header, or no nonce when one is required.
    MissingSignature,
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
    pub const ALL: [Reject; 8] = [
        Reject::MissingSignature,
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
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Detail::MissingHeader(h) => write!(f, "header {h} is missing"),
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

/// Options of a [`Verifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Allowed distance between timestamp and now, either direction.
    pub clock_skew_seconds: u64,
    /// Refuse requests without a nonce.
    pub require_nonce: bool,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
            require_nonce: false,
        }
    }
}

/// A verifier compiled once from configuration and shared by all requests.
#[derive(Debug, Clone)]
pub struct Verifier {
    environment: String,
    current: SecretKey,
    previous: Option<SecretKey>,
    pending: Option<SecretKey>,
    options: VerifierOptions,
}

/// A request whose headers passed every header-level check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadersVerified<'a> {
    /// The key that produced the tag.
    pub key: KeyUsed,
    /// The signed timestamp.
    pub timestamp: u64,
    /// The signed nonce, if any (still to be checked against the replay cache).
    pub nonce: Option<&'a str>,
    /// The signed payload claim (the empty-body hash when the header is absent).
    pub payload: Payload,
}

impl HeadersVerified<'_> {
    /// True when the signature says the body is empty.
    pub fn expects_empty_body(&self) -> bool {
        self.payload == Payload::EMPTY
    }

    /// A streaming check of the body against the signed hash, refusing more
    /// than `max_body_bytes`; `None` for an unsigned payload (nothing to check).
    pub fn body_verifier(&self, max_body_bytes: u64) -> Option<BodyVerifier> {
        match self.payload {
            Payload::Sha256(hash) => Some(BodyVerifier::new(hash, max_body_bytes)),
            Payload::Unsigned => None,
        }
    }
}

impl Verifier {
    /// A verifier for `environment` accepting tags from `current` and, during
    /// a rotation, `previous`.
    pub fn new(
        environment: &str,
        current: SecretKey,
        previous: Option<SecretKey>,
        options: VerifierOptions,
    ) -> Result<Self, SchemeError> {
        validate_environment(environment)?;
        Ok(Self {
            environment: environment.to_owned(),
            current,
            previous,
            pending: None,
            options,
        })
    }

    /// The same verifier also accepting tags from `pending`, the key staged
    /// for the next rotation (tried after current and previous).
    pub fn with_pending(mut self, pending: Option<SecretKey>) -> Self {
        self.pending = pending;
        self
    }

    /// The environment signed into every request.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The options this verifier was built with.
    pub fn options(&self) -> VerifierOptions {
        self.options
    }

    /// Fingerprint of the current key.
    pub fn current_fingerprint(&self) -> String {
        self.current.fingerprint()
    }

    /// Fingerprint of the previous key, if one is configured.
    pub fn previous_fingerprint(&self) -> Option<String> {
        self.previous.as_ref().map(SecretKey::fingerprint)
    }

    /// Fingerprint of the pending key, if one is configured.
    pub fn pending_fingerprint(&self) -> Option<String> {
        self.pending.as_ref().map(SecretKey::fingerprint)
    }

    /// The key in `slot`, if one is configured.
    fn key(&self, slot: KeyUsed) -> Option<&SecretKey> {
        match slot {
            KeyUsed::Current => Some(&self.current),
            KeyUsed::Previous => self.previous.as_ref(),
            KeyUsed::Pending => self.pending.as_ref(),
        }
    }

    /// The configured slots with their keys' fingerprints, in the order
    /// they are tried (what an operator compares with Secrets Manager).
    pub fn fingerprints(&self) -> Vec<(KeyUsed, String)> {
        KeyUsed::ALL
            .iter()
            .filter_map(|&slot| self.key(slot).map(|k| (slot, k.fingerprint())))
            .collect()
    }

    /// Runs the header-level checks of the spec in order (missing, malformed,
    /// stale, invalid) against the Unix time `now`, for a path that does not
    /// accept [`UNSIGNED_PAYLOAD`]. Replay and body checks follow, by the
    /// caller, on success.
    pub fn verify_headers<'a>(
        &self,
        head: &RequestHead<'a>,
        now: u64,
    ) -> Result<HeadersVerified<'a>, Rejection> {
        self.verify_headers_on(head, now, false)
    }

    /// [`Verifier::verify_headers`], on a path where `unsigned_payload_allowed`
    /// says whether [`UNSIGNED_PAYLOAD`] is accepted (one of the
    /// configuration's `unsigned_payload_paths`). Elsewhere the claim is
    /// `malformed_signature`.
    pub fn verify_headers_on<'a>(
        &self,
        head: &RequestHead<'a>,
        now: u64,
        unsigned_payload_allowed: bool,
    ) -> Result<HeadersVerified<'a>, Rejection> {
        let parsed = self.parse(head, unsigned_payload_allowed)?;
        // 3. stale_timestamp
        let delta = i128::from(parsed.timestamp) - i128::from(now);
        if delta.unsigned_abs() > u128::from(self.options.clock_skew_seconds) {
            let delta = i64::try_from(delta).unwrap_or(if delta > 0 { i64::MAX } else { i64::MIN });
            return Err(Rejection::new(
                Reject::StaleTimestamp,
                Detail::Skew {
                    delta,
                    allowed: self.options.clock_skew_seconds,
                },
            ));
        }
        // 4. invalid_signature
        let canonical = parsed.canonical(self, head);
        let mut keys_tried = 0u8;
        let mut matched = None;
        for slot in KeyUsed::ALL {
            let Some(key) = self.key(slot) else { continue };
            keys_tried += 1;
            if key.matches(&canonical, &parsed.tag) {
                matched = Some(slot);
                break;
            }
        }
        let Some(key) = matched else {
            return Err(Rejection::new(
                Reject::InvalidSignature,
                Detail::NoKeyMatched { keys_tried },
            ));
        };
        Ok(HeadersVerified {
            key,
            timestamp: parsed.timestamp,
            nonce: parsed.nonce,
            payload: parsed.payload,
        })
    }

    /// The string to sign this verifier computes for `head`, for debugging a
    /// client (compare it with the client's). Fails like
    /// [`Verifier::verify_headers`] when the headers are missing or malformed
    /// ([`UNSIGNED_PAYLOAD`] is shown, whatever the path). Never logged by
    /// the filter.
    pub fn string_to_sign(&self, head: &RequestHead<'_>) -> Result<String, Rejection> {
        Ok(self.parse(head, true)?.canonical(self, head).to_text())
    }

    /// Steps 1 (missing) and 2 (malformed) of the spec.
    fn parse<'a>(
        &self,
        head: &RequestHead<'a>,
        unsigned_payload_allowed: bool,
    ) -> Result<Parsed<'a>, Rejection> {
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
        if self.options.require_nonce && head.nonce.is_absent() {
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
                parse_hex32(v)
                    .ok_or(Rejection::new(MalformedSignature, Detail::BadContentSha256))?,
            ),
        };
        let tag = parse_signature(signature_raw)?;
        Ok(Parsed {
            timestamp_raw,
            timestamp,
            nonce,
            payload,
            tag,
        })
    }
}

/// Signature headers that passed the form checks.
struct Parsed<'a> {
    timestamp_raw: &'a [u8],
    timestamp: u64,
    nonce: Option<&'a str>,
    payload: Payload,
    tag: [u8; TAG_LEN],
}

impl<'a> Parsed<'a> {
    fn canonical<'s>(&'s self, verifier: &'s Verifier, head: &RequestHead<'a>) -> Canonical<'s>
    where
        'a: 's,
    {
        Canonical {
            environment: verifier.environment.as_bytes(),
            timestamp: self.timestamp_raw,
            nonce: self.nonce.unwrap_or("").as_bytes(),
            method: head.method,
            authority: head.authority,
            path: head.path,
            payload: &self.payload,
        }
    }
}

/// HMAC-SHA256 of `data` under `key`, keyed from scratch (the primitive the
/// scheme uses; [`SecretKey`] prepares the key once instead). For tests and
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

/// Lowercase hex of 32 bytes.
fn hex_lower32(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0F)];
    }
    out
}

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

/// Streaming check of a request body against the signed SHA-256.
#[derive(Clone)]
pub struct BodyVerifier {
    hasher: Sha256,
    expected: [u8; 32],
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
    /// A check expecting `expected` and refusing more than `max_body_bytes`.
    pub fn new(expected: [u8; 32], max_body_bytes: u64) -> Self {
        Self {
            hasher: Sha256::new(),
            expected,
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
        self.hasher.update(chunk);
        self.received = total;
        Ok(())
    }

    /// Compares the hash of everything received with the signed value.
    pub fn finish(self) -> Result<(), Rejection> {
        let actual: [u8; 32] = self.hasher.finalize().into();
        if actual == self.expected {
            Ok(())
        } else {
            Err(Rejection::new(
                Reject::ContentMismatch,
                Detail::BodyHashDiffers,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-0123456789abcdef-unit";

    fn verifier(previous: Option<&str>) -> Verifier {
        Verifier::new(
            "dev",
            SecretKey::new(SECRET.as_bytes(), "current").unwrap(),
            previous.map(|p| SecretKey::new(p.as_bytes(), "previous").unwrap()),
            VerifierOptions::default(),
        )
        .unwrap()
    }

    /// Keys, signers and verifiers never print the secret.
    #[test]
    fn debug_never_shows_secret() {
        let v = verifier(Some("previous-secret-0123456789abcdef-prev"));
        let signer =
            Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
        for text in [format!("{v:?}"), format!("{signer:?}")] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains("previous-secret"), "{text}");
            assert!(text.contains(&fingerprint(SECRET.as_bytes())), "{text}");
        }
    }

    /// Each slot's key verifies and is reported as that slot; the pending
    /// key is tried last, and a key in no slot matches none of them.
    #[test]
    fn key_slots() {
        let (prev, pend, other) = (
            "previous-secret-0123456789abcdef-prev",
            "pending-secret-0123456789abcdef-pending",
            "another-secret-0123456789abcdef-another",
        );
        // The metrics index per-slot counters by discriminant.
        for (i, slot) in KeyUsed::ALL.iter().enumerate() {
            assert_eq!(*slot as usize, i);
        }
        let v = verifier(Some(prev))
            .with_pending(Some(SecretKey::new(pend.as_bytes(), "pending").unwrap()));
        assert_eq!(
            v.fingerprints(),
            vec![
                (KeyUsed::Current, fingerprint(SECRET.as_bytes())),
                (KeyUsed::Previous, fingerprint(prev.as_bytes())),
                (KeyUsed::Pending, fingerprint(pend.as_bytes())),
            ]
        );
        let signed = |secret: &str| {
            let signer =
                Signer::new(SecretKey::new(secret.as_bytes(), "current").unwrap(), "dev").unwrap();
            let h = signer
                .sign(
                    &SignRequest {
                        method: "GET",
                        authority: "api.test",
                        path: "/p",
                        timestamp: 1000,
                        nonce: None,
                        payload: None,
                    },
                    TagEncoding::Hex,
                )
                .unwrap();
            (h.timestamp, h.signature)
        };
        fn head_of<'a>(ts: &'a str, sig: &'a str) -> RequestHead<'a> {
            RequestHead::from_str_pairs([
                (":method", "GET"),
                (":authority", "api.test"),
                (":path", "/p"),
                ("x-crawbl-timestamp", ts),
                ("x-crawbl-signature", sig),
            ])
        }
        for (secret, slot) in [
            (SECRET, KeyUsed::Current),
            (prev, KeyUsed::Previous),
            (pend, KeyUsed::Pending),
        ] {
            let (ts, sig) = signed(secret);
            let head = head_of(&ts, &sig);
            assert_eq!(v.verify_headers(&head, 1000).unwrap().key, slot);
            // Without the pending slot, the pending key is refused.
            let without = verifier(Some(prev)).verify_headers(&head, 1000);
            assert_eq!(without.is_ok(), slot != KeyUsed::Pending, "{slot:?}");
        }
        let (ts, sig) = signed(other);
        let head = head_of(&ts, &sig);
        let err = v.verify_headers(&head, 1000).unwrap_err();
        assert_eq!(err.detail, Detail::NoKeyMatched { keys_tried: 3 });
        assert!(!format!("{v:?}").contains(pend));
    }

    /// Secrets under 32 bytes are refused with the length, never the value.
    #[test]
    fn short_secret_refused() {
        let err = SecretKey::new(b"0123456789abcdef0123456789abcde", "previous").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("previous") && msg.contains("31 bytes"),
            "{msg}"
        );
        assert!(!msg.contains("0123456789abcdef"), "{msg}");
        assert!(SecretKey::new(&[7u8; 32], "current").is_ok());
    }

    /// Duplicates are seen whatever the header-name case; Host stands in for
    /// a missing :authority; content-length is parsed only when single.
    #[test]
    fn head_from_pairs() {
        let head = RequestHead::from_str_pairs([
            (":method", "POST"),
            ("Host", "Example.test"),
            (":path", "/p"),
            ("X-Crawbl-Signature", "a"),
            ("x-crawbl-signature", "b"),
            ("x-crawbl-timestamp", "1"),
            ("x-crawbl-other", "ignored"),
            ("content-length", "12"),
        ]);
        assert_eq!(head.authority, b"Example.test");
        assert_eq!(head.signature, HeaderValue::Repeated);
        assert_eq!(head.timestamp, HeaderValue::One(b"1"));
        assert_eq!(head.content_length, Some(12));
        let v = verifier(None);
        let err = v.verify_headers(&head, 1).unwrap_err();
        assert_eq!(err.reason, Reject::MalformedSignature);
        assert_eq!(err.detail, Detail::RepeatedHeader(SIGNATURE_HEADER));
        let twice = RequestHead::from_str_pairs([("content-length", "1"), ("content-length", "1")]);
        assert_eq!(twice.content_length, None);
    }

    /// Codes, statuses and JSON bodies are stable and consistent.
    #[test]
    fn reject_codes() {
        for r in Reject::ALL {
            assert_eq!(Reject::from_code(r.code()), Some(r));
            assert_eq!(r.response_body(), format!("{{\"error\":\"{}\"}}", r.code()));
        }
        assert_eq!(Reject::BodyTooLarge.status(), 413);
        assert_eq!(Reject::InvalidSignature.status(), 401);
        assert_eq!(Reject::ReplayCacheUnavailable.status(), 503);
    }

    /// The body check stops at the limit and needs the exact signed bytes.
    #[test]
    fn body_verifier_limits() {
        let body = b"0123456789";
        let mut ok = BodyVerifier::new(sha256(body), 10);
        ok.update(&body[..4]).unwrap();
        ok.update(&body[4..]).unwrap();
        assert_eq!(ok.received(), 10);
        assert!(ok.finish().is_ok());
        let mut over = BodyVerifier::new(sha256(body), 9);
        over.update(&body[..9]).unwrap();
        let err = over.update(&body[9..]).unwrap_err();
        assert_eq!(err.reason, Reject::BodyTooLarge);
        let empty = BodyVerifier::new(EMPTY_SHA256, 0);
        assert!(empty.finish().is_ok());
        assert_eq!(hex::encode(EMPTY_SHA256), EMPTY_SHA256_HEX);
    }

    /// A stale rejection reports the signed direction and distance.
    #[test]
    fn stale_detail() {
        let v = verifier(None);
        let sig = format!("v1={}", "0".repeat(64));
        let head = RequestHead::from_str_pairs([
            ("x-crawbl-timestamp", "1000"),
            ("x-crawbl-signature", sig.as_str()),
        ]);
        let err = v.verify_headers(&head, 2000).unwrap_err();
        assert_eq!(
            err.detail,
            Detail::Skew {
                delta: -1000,
                allowed: 300
            }
        );
        assert!(err.to_string().contains("1000 s behind"), "{err}");
    }

    /// UNSIGNED-PAYLOAD is field 8 verbatim and the header value; it
    /// verifies only where allowed, and then leaves no body check.
    #[test]
    fn unsigned_payload_claim() {
        let signer =
            Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
        let request = SignRequest {
            method: "PUT",
            authority: "api.test",
            path: "/upload",
            timestamp: 1000,
            nonce: None,
            payload: Some(Payload::Unsigned),
        };
        let sts = signer.string_to_sign(&request);
        assert!(sts.ends_with("\n/upload\nUNSIGNED-PAYLOAD"), "{sts}");
        let h = signer.sign(&request, TagEncoding::Hex).unwrap();
        assert_eq!(h.content_sha256.as_deref(), Some(UNSIGNED_PAYLOAD));
        let mut pairs = vec![
            (":method", "PUT"),
            (":authority", "api.test"),
            (":path", "/upload"),
        ];
        pairs.extend(h.pairs());
        let head = RequestHead::from_str_pairs(pairs.iter().copied());
        let v = verifier(None);
        assert_eq!(v.string_to_sign(&head).unwrap(), sts);
        let err = v.verify_headers(&head, 1000).unwrap_err();
        assert_eq!(err.reason, Reject::MalformedSignature);
        assert_eq!(err.detail, Detail::UnsignedPayloadNotAllowed);
        let ok = v.verify_headers_on(&head, 1000, true).unwrap();
        assert_eq!(ok.payload, Payload::Unsigned);
        assert!(!ok.expects_empty_body());
        assert!(ok.body_verifier(0).is_none());
        assert_eq!(Payload::of(b""), None);
        assert_eq!(Payload::EMPTY.header_value(), EMPTY_SHA256_HEX);
    }

    /// An upgrade is what Envoy treats as one: `Connection` with the
    /// `upgrade` token and an `Upgrade` header, or `CONNECT`.
    #[test]
    fn upgrade_detection() {
        let head = |pairs: &[(&'static str, &'static str)]| {
            RequestHead::from_str_pairs(pairs.iter().copied()).upgrade
        };
        assert!(head(&[
            (":method", "GET"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket")
        ]));
        assert!(head(&[
            (":method", "GET"),
            ("Connection", "keep-alive , upgrade"),
            ("Upgrade", "x")
        ]));
        assert!(head(&[(":method", "CONNECT")]));
        assert!(!head(&[(":method", "GET"), ("upgrade", "websocket")]));
        assert!(!head(&[(":method", "GET"), ("connection", "upgrade")]));
        assert!(!head(&[
            (":method", "GET"),
            ("connection", "upgrades"),
            ("upgrade", "ws")
        ]));
        assert!(!head(&[(":method", "connect")]));
    }

    /// Environment names are limited to a safe character set (no newlines
    /// that could shift fields of the string to sign).
    #[test]
    fn environment_names() {
        for good in ["dev", "prod-eu", "stage_2", "a.b"] {
            assert!(validate_environment(good).is_ok(), "{good}");
        }
        for bad in ["", "dev\nprod", "dev prod", "dév", &"x".repeat(32)] {
            assert!(validate_environment(bad).is_err(), "{bad:?}");
        }
    }
}
