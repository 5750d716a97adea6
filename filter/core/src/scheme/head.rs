//! The parts of a request the formats look at, borrowed from the caller's
//! header map.

use super::names::{
    CONTENT_SHA256_HEADER, NONCE_HEADER, SIGNATURE_HEADER, SIGNATURE_INPUT_HEADER,
    SIGNATURE_RFC9421_HEADER, TIMESTAMP_HEADER,
};

/// How often one of the signature headers occurred in a request.
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

    /// True when the header is not present.
    pub fn is_absent(&self) -> bool {
        matches!(self, HeaderValue::Absent)
    }
}

/// Every header entry of the request, as the caller holds them: an RFC 9421
/// signature may cover any field.
#[derive(Debug, Clone, Copy, Default)]
pub enum Fields<'a> {
    /// No header map kept (every covered field is then absent).
    #[default]
    None,
    /// Byte pairs, as Envoy hands them over.
    Bytes(&'a [(&'a [u8], &'a [u8])]),
    /// String pairs (tests, the CLI).
    Str(&'a [(&'a str, &'a str)]),
    /// Owned string pairs (fixtures).
    Strings(&'a [(String, String)]),
}

impl<'a> Fields<'a> {
    /// Calls `f` with each `(name, value)` entry, in order.
    pub fn for_each(&self, mut f: impl FnMut(&'a [u8], &'a [u8])) {
        match *self {
            Fields::None => {}
            Fields::Bytes(pairs) => pairs.iter().for_each(|&(n, v)| f(n, v)),
            Fields::Str(pairs) => pairs
                .iter()
                .for_each(|&(n, v)| f(n.as_bytes(), v.as_bytes())),
            Fields::Strings(pairs) => pairs
                .iter()
                .for_each(|(n, v)| f(n.as_bytes(), v.as_bytes())),
        }
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
    /// `:scheme` (empty when absent): what the client claims.
    pub scheme: &'a [u8],
    /// Whether the proxy received the request over TLS, as the host knows
    /// it from the connection (not from anything the client sent); `None`
    /// when the caller cannot tell (the CLI, tests), and then `:scheme`
    /// stands in. RFC 9421's `@scheme` and the default port `@authority`
    /// drops follow it, so a client's `:scheme: http` on a TLS listener
    /// cannot make `api.example.test:80` sign as `api.example.test`.
    pub tls: Option<bool>,
    /// `x-crawbl-timestamp`.
    pub timestamp: HeaderValue<'a>,
    /// `x-crawbl-nonce`.
    pub nonce: HeaderValue<'a>,
    /// `x-crawbl-content-sha256`.
    pub content_sha256: HeaderValue<'a>,
    /// `x-crawbl-signature`.
    pub signature: HeaderValue<'a>,
    /// `signature-input` (RFC 9421).
    pub signature_input: HeaderValue<'a>,
    /// `signature` (RFC 9421).
    pub http_signature: HeaderValue<'a>,
    /// `content-length`, when present once and numeric.
    pub content_length: Option<u64>,
    /// True when `access-control-request-method` is present (CORS preflight).
    pub cors_request_method: bool,
    /// True when `origin` is present.
    pub origin: bool,
    /// True when `content-type` is gRPC's (`application/grpc…`): a refusal
    /// must reach the client as a gRPC status.
    pub grpc: bool,
    /// True when Envoy treats the request as an upgrade (websocket, ...):
    /// `Connection` carries the `upgrade` token and `Upgrade` is present, or
    /// the method is `CONNECT`. Its stream is not a body.
    pub upgrade: bool,
    /// Every header entry, for the fields an RFC 9421 signature covers.
    pub fields: Fields<'a>,
}

impl<'a> RequestHead<'a> {
    /// Builds the head from every `(name, value)` entry of a header map, as
    /// Envoy hands them over (pseudo-headers included, duplicates as separate
    /// entries). Header names match case-insensitively.
    pub fn from_pairs(pairs: &'a [(&'a [u8], &'a [u8])]) -> Self {
        Self::build(Fields::Bytes(pairs))
    }

    /// Like [`RequestHead::from_pairs`], for string pairs.
    pub fn from_str_pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Self::build(Fields::Str(pairs))
    }

    /// Like [`RequestHead::from_pairs`], for owned string pairs.
    pub fn from_string_pairs(pairs: &'a [(String, String)]) -> Self {
        Self::build(Fields::Strings(pairs))
    }

    fn build(fields: Fields<'a>) -> Self {
        let mut head = RequestHead {
            fields,
            ..RequestHead::default()
        };
        let mut host = None;
        let mut content_length = HeaderValue::Absent;
        let (mut connection_upgrade, mut upgrade) = (false, false);
        fields.for_each(|name, value| {
            // Dispatch on the length first: most headers are skipped after
            // one comparison (Envoy hands names over lowercased; the case-
            // insensitive compare only runs for a candidate of the right size).
            let is = |expected: &[u8]| name.eq_ignore_ascii_case(expected);
            match name.len() {
                4 if is(b"host") => host = Some(value),
                6 if is(b"origin") => head.origin = true,
                12 if is(b"content-type") => {
                    head.grpc =
                        value.len() >= 16 && value[..16].eq_ignore_ascii_case(b"application/grpc");
                }
                7 if is(b"upgrade") => upgrade = true,
                7 if is(b":scheme") => head.scheme = value,
                9 if is(SIGNATURE_RFC9421_HEADER.as_bytes()) => head.http_signature.push(value),
                10 if is(b"connection") => connection_upgrade |= has_upgrade_token(value),
                5 if is(b":path") => head.path = value,
                7 if is(b":method") => head.method = value,
                10 if is(b":authority") => head.authority = value,
                14 if is(b"content-length") => content_length.push(value),
                14 if is(NONCE_HEADER.as_bytes()) => head.nonce.push(value),
                15 if is(SIGNATURE_INPUT_HEADER.as_bytes()) => head.signature_input.push(value),
                18 if is(TIMESTAMP_HEADER.as_bytes()) => head.timestamp.push(value),
                18 if is(SIGNATURE_HEADER.as_bytes()) => head.signature.push(value),
                23 if is(CONTENT_SHA256_HEADER.as_bytes()) => head.content_sha256.push(value),
                29 if is(b"access-control-request-method") => head.cors_request_method = true,
                _ => {}
            }
        });
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

    /// True when the request carries any RFC 9421 signature header.
    pub fn has_rfc9421(&self) -> bool {
        !self.signature_input.is_absent() || !self.http_signature.is_absent()
    }

    /// The value of the field `name` (lowercase) as RFC 9421 §2.1 defines it:
    /// each line trimmed, several lines joined with `", "`; `None` when the
    /// request has no such field. Pseudo-headers are not fields.
    pub fn field_value(&self, name: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        self.fields.for_each(|n, v| {
            if n.eq_ignore_ascii_case(name) {
                let v = v.trim_ascii();
                match &mut out {
                    None => out = Some(v.to_vec()),
                    Some(o) => {
                        o.extend_from_slice(b", ");
                        o.extend_from_slice(v);
                    }
                }
            }
        });
        out
    }
}

/// True when a `Connection` value lists the `upgrade` token
/// (comma-separated, case-insensitive, optional whitespace), as Envoy reads it.
fn has_upgrade_token(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
}
