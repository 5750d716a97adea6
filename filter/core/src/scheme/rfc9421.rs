//! Wire format: the RFC 9421 `hmac-sha256` profile
//! (`docs/signature-rfc9421.md`). `Signature-Input` and `Signature` are RFC
//! 8941 dictionaries, parsed by the `sfv` crate; `Content-Digest` is RFC 9530.
//!
//! This module only turns the headers into a claim (and builds the signature
//! base); the checks after parsing, the keys, the replay cache and the body
//! check are the ones v1 uses ([`super::verifier`], [`super::body`]).

use std::borrow::Cow;

use sfv::{BareItem, Dictionary, InnerList, Item, KeyRef, ListEntry, Parameters};

use super::body::{BodyClaim, Digests};
use super::claim::{Claim, KeySelect, Message, Signed};
use super::head::{HeaderValue, RequestHead};
pub use super::names::{CONTENT_DIGEST_HEADER, SIGNATURE_INPUT_HEADER, SIGNATURE_RFC9421_HEADER};
use super::outcome::{Detail, Reject, Rejection};
use super::sf::{self, SfError};
use super::signer::Signer;
use super::{SchemeError, TAG_LEN, is_valid_nonce};

/// The only algorithm of the profile (RFC 9421 §3.3.3).
pub const ALGORITHM: &str = "hmac-sha256";
/// Components every signature must cover.
pub const REQUIRED_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "@query"];
/// The label [`Signer::sign_rfc9421`] uses.
pub const DEFAULT_LABEL: &str = "sig1";
/// Most components one signature may cover.
pub const MAX_COMPONENTS: usize = 32;

/// A covered component the profile knows how to compute.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Component<'a> {
    Method,
    Authority,
    Path,
    Query,
    Scheme,
    TargetUri,
    RequestTarget,
    /// An HTTP field, by its lowercase name.
    Field(&'a str),
}

impl<'a> Component<'a> {
    /// The component an identifier names: a string, no parameters, a
    /// derived component of RFC 9421 §2.2 that a request has, or a
    /// lowercase field name.
    fn of(item: &'a Item) -> Result<Self, Rejection> {
        let unsupported =
            || Rejection::new(Reject::MalformedSignature, Detail::UnsupportedComponent);
        let Some(name) = item.bare_item.as_string() else {
            return Err(Rejection::new(
                Reject::MalformedSignature,
                Detail::BadStructuredField(SIGNATURE_INPUT_HEADER),
            ));
        };
        if !item.params.is_empty() {
            return Err(unsupported());
        }
        let name = name.as_str();
        Ok(match name {
            "@method" => Component::Method,
            "@authority" => Component::Authority,
            "@path" => Component::Path,
            "@query" => Component::Query,
            "@scheme" => Component::Scheme,
            "@target-uri" => Component::TargetUri,
            "@request-target" => Component::RequestTarget,
            _ if is_field_name(name) => Component::Field(name),
            _ => return Err(unsupported()),
        })
    }

    /// The component's value in `head` (RFC 9421 §2.1, §2.2).
    fn value(&self, head: &RequestHead<'_>, out: &mut Vec<u8>) -> Result<(), Rejection> {
        let (path, query) = split_query(head.path);
        match self {
            Component::Method => out.extend_from_slice(head.method),
            Component::Authority => push_authority(head, out),
            Component::Path => out.extend_from_slice(if path.is_empty() { b"/" } else { path }),
            Component::Query => {
                out.push(b'?');
                out.extend_from_slice(query.unwrap_or_default());
            }
            Component::Scheme => push_scheme(head, out)?,
            Component::TargetUri => {
                push_scheme(head, out)?;
                out.extend_from_slice(b"://");
                push_authority(head, out);
                out.extend_from_slice(head.path);
            }
            Component::RequestTarget => out.extend_from_slice(head.path),
            Component::Field(name) => {
                let value = head.field_value(name.as_bytes()).ok_or(Rejection::new(
                    Reject::MalformedSignature,
                    Detail::CoveredFieldAbsent,
                ))?;
                out.extend_from_slice(&value);
            }
        }
        Ok(())
    }
}

/// A field name as RFC 9421 covers it: a lowercase token (no pseudo-header).
fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// `:path` split at the first `?`: the path, and the query if there is one.
fn split_query(path: &[u8]) -> (&[u8], Option<&[u8]>) {
    match path.iter().position(|&b| b == b'?') {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    }
}

/// The request's scheme as the verifier establishes it: from the
/// connection when the host knows it ([`RequestHead::tls`]), else the
/// client's `:scheme` (lowercased by the callers).
fn scheme_of<'h>(head: &RequestHead<'h>) -> &'h [u8] {
    match head.tls {
        Some(true) => b"https",
        Some(false) => b"http",
        None => head.scheme,
    }
}

/// `@authority`: lowercased, without the default port of the scheme the
/// verifier establishes ([`scheme_of`]), never of the one the client claims.
fn push_authority(head: &RequestHead<'_>, out: &mut Vec<u8>) {
    let mut authority = head.authority;
    let scheme = scheme_of(head);
    let default_port: &[u8] = if scheme.eq_ignore_ascii_case(b"https") {
        b":443"
    } else if scheme.eq_ignore_ascii_case(b"http") {
        b":80"
    } else {
        b""
    };
    if !default_port.is_empty()
        && let Some(host) = authority.strip_suffix(default_port)
    {
        authority = host;
    }
    out.extend(authority.iter().map(u8::to_ascii_lowercase));
}

/// `@scheme`: the scheme the verifier establishes ([`scheme_of`]).
fn push_scheme(head: &RequestHead<'_>, out: &mut Vec<u8>) -> Result<(), Rejection> {
    let scheme = scheme_of(head);
    if scheme.is_empty() {
        return Err(Rejection::new(
            Reject::MalformedSignature,
            Detail::CoveredFieldAbsent,
        ));
    }
    out.extend(scheme.iter().map(u8::to_ascii_lowercase));
    Ok(())
}

/// Parses a header as an RFC 8941 dictionary, refusing a repeated key at
/// any level (a member, or a parameter of one member or item): the edge
/// and an application re-reading the header must see the same values.
fn dictionary(raw: &[u8], header: &'static str) -> Result<Dictionary, Rejection> {
    sf::parse_dictionary(raw).map_err(|e| {
        Rejection::new(
            Reject::MalformedSignature,
            match e {
                SfError::Syntax => Detail::BadStructuredField(header),
                SfError::RepeatedKey => Detail::RepeatedKey(header),
            },
        )
    })
}

/// The signature base of RFC 9421 §2.5 for the signature whose
/// `Signature-Input` member is `input`: one line per covered component, in
/// order, then `"@signature-params"`. Fails when a component is outside the
/// profile, repeated, or absent from the request. No profile rule (required
/// components or parameters) is checked here.
pub fn signature_base(head: &RequestHead<'_>, input: &InnerList) -> Result<Vec<u8>, Rejection> {
    let mut components = Vec::with_capacity(input.items.len());
    for item in &input.items {
        let component = Component::of(item)?;
        if components.contains(&component) {
            return Err(Rejection::new(
                Reject::MalformedSignature,
                Detail::UnsupportedComponent,
            ));
        }
        components.push(component);
    }
    let mut base = Vec::with_capacity(256);
    for (item, component) in input.items.iter().zip(&components) {
        push_identifier(item, &mut base);
        base.extend_from_slice(b": ");
        component.value(head, &mut base)?;
        base.push(b'\n');
    }
    base.extend_from_slice(b"\"@signature-params\": ");
    base.extend_from_slice(serialize_inner_list(input).as_bytes());
    Ok(base)
}

/// The component identifier as serialized: an sf-string with no
/// parameters. [`Component::of`] admitted only names made of token
/// characters, which an sf-string holds without escapes.
fn push_identifier(item: &Item, out: &mut Vec<u8>) {
    if let Some(name) = item.bare_item.as_string() {
        out.push(b'"');
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b'"');
    }
}

/// An inner list with its parameters, serialized per RFC 8941 §4.1.1.1
/// (by `sfv`, straight from the parsed list: no copy of it).
fn serialize_inner_list(input: &InnerList) -> String {
    let mut out = String::with_capacity(192);
    let mut ser = sfv::ListSerializer::with_buffer(&mut out);
    let mut inner = ser.inner_list();
    inner.items(&input.items);
    let _ = inner.finish().parameters(&input.params);
    drop(ser);
    out
}

/// Steps 1 (missing) and 2 (malformed) of the profile: the claim of a
/// request signed with `Signature-Input` / `Signature`.
pub(crate) fn parse<'a>(
    head: &RequestHead<'a>,
    environment: &str,
    require_nonce: bool,
    unsigned_payload_allowed: bool,
) -> Result<Claim<'a>, Rejection> {
    use Reject::*;
    let malformed = |detail| Rejection::new(MalformedSignature, detail);
    // 1. missing_signature
    for (value, name) in [
        (head.signature_input, SIGNATURE_INPUT_HEADER),
        (head.http_signature, SIGNATURE_RFC9421_HEADER),
    ] {
        if value.is_absent() {
            return Err(Rejection::new(
                MissingSignature,
                Detail::MissingHeader(name),
            ));
        }
    }
    // 2. malformed_signature: one line each, one signature, one label.
    let one = |value: HeaderValue<'a>, name: &'static str| match value {
        HeaderValue::One(v) => Ok(v),
        _ => Err(malformed(Detail::RepeatedHeader(name))),
    };
    let inputs = dictionary(
        one(head.signature_input, SIGNATURE_INPUT_HEADER)?,
        SIGNATURE_INPUT_HEADER,
    )?;
    let signatures = dictionary(
        one(head.http_signature, SIGNATURE_RFC9421_HEADER)?,
        SIGNATURE_RFC9421_HEADER,
    )?;
    if inputs.len() != 1 || signatures.len() != 1 {
        return Err(malformed(Detail::SignatureCount));
    }
    let Some((label, ListEntry::InnerList(input))) = inputs.first() else {
        return Err(malformed(Detail::BadStructuredField(
            SIGNATURE_INPUT_HEADER,
        )));
    };
    let Some(signature) = signatures.get(label) else {
        return Err(malformed(Detail::SignatureCount));
    };
    let tag: [u8; TAG_LEN] = match signature {
        ListEntry::Item(item) => item
            .bare_item
            .as_byte_sequence()
            .and_then(|b| b.try_into().ok())
            .ok_or(malformed(Detail::BadSignatureValue))?,
        ListEntry::InnerList(_) => return Err(malformed(Detail::BadSignatureValue)),
    };
    if input.items.len() > MAX_COMPONENTS {
        return Err(malformed(Detail::UnsupportedComponent));
    }
    let covers = |name: &str| {
        input
            .items
            .iter()
            .any(|i| i.bare_item.as_string().is_some_and(|s| s.as_str() == name))
    };
    for required in REQUIRED_COMPONENTS {
        if !covers(required) {
            return Err(malformed(Detail::MissingComponent(required)));
        }
    }
    let params = Params(&input.params);
    let created = params
        .integer("created")?
        .ok_or(malformed(Detail::MissingParameter("created")))?;
    let expires = params.integer("expires")?;
    let keyid = params
        .string("keyid")?
        .ok_or(malformed(Detail::MissingParameter("keyid")))?;
    let env_tag = params
        .string("tag")?
        .ok_or(malformed(Detail::MissingParameter("tag")))?;
    if let Some(alg) = params.string("alg")?
        && alg != ALGORITHM
    {
        return Err(malformed(Detail::BadParameter("alg")));
    }
    let nonce = match params.string("nonce")? {
        Some(n) if is_valid_nonce(n) => Some(Cow::Owned(n.to_owned())),
        Some(_) => return Err(malformed(Detail::BadNonce)),
        None if require_nonce => {
            return Err(Rejection::new(
                MissingSignature,
                Detail::MissingParameter("nonce"),
            ));
        }
        None => None,
    };
    let body = if covers(CONTENT_DIGEST_HEADER) {
        let value = head
            .field_value(CONTENT_DIGEST_HEADER.as_bytes())
            .ok_or(malformed(Detail::CoveredFieldAbsent))?;
        BodyClaim::Digests(content_digests(&value)?)
    } else if unsigned_payload_allowed {
        BodyClaim::Unsigned
    } else if head.content_length.is_some_and(|n| n > 0) {
        return Err(malformed(Detail::ContentDigestNotCovered));
    } else {
        BodyClaim::Digests(Digests::EMPTY)
    };
    let base = signature_base(head, input)?;
    Ok(Claim {
        timestamp: created,
        expires,
        nonce,
        body,
        tag,
        key_id: key_select(keyid),
        environment_tag_ok: env_tag == environment,
        signed: Signed::Base(base),
    })
}

/// The signature parameters, read by name.
struct Params<'p>(&'p Parameters);

impl<'p> Params<'p> {
    fn get(&self, name: &str) -> Option<&'p BareItem> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| v)
    }

    /// A non-negative integer parameter.
    fn integer(&self, name: &'static str) -> Result<Option<u64>, Rejection> {
        self.get(name)
            .map(|v| {
                v.as_integer()
                    .and_then(|i| u64::try_from(i64::from(i)).ok())
                    .ok_or(Rejection::new(
                        Reject::MalformedSignature,
                        Detail::BadParameter(name),
                    ))
            })
            .transpose()
    }

    /// A string parameter.
    fn string(&self, name: &'static str) -> Result<Option<&'p str>, Rejection> {
        self.get(name)
            .map(|v| {
                v.as_string().map(|s| s.as_str()).ok_or(Rejection::new(
                    Reject::MalformedSignature,
                    Detail::BadParameter(name),
                ))
            })
            .transpose()
    }
}

/// A `keyid` as the tools print fingerprints: 8 hex digits.
fn key_select(keyid: &str) -> KeySelect {
    let mut id = [0u8; 4];
    match hex::decode_to_slice(keyid, &mut id) {
        Ok(()) => KeySelect::Id(id),
        Err(_) => KeySelect::Unknown,
    }
}

/// The `sha-256` and `sha-512` members of a `Content-Digest` value (other
/// algorithms are ignored; at least one of the two is required).
pub fn content_digests(value: &[u8]) -> Result<Digests, Rejection> {
    let bad = Rejection::new(Reject::MalformedSignature, Detail::BadContentDigest);
    let dict = match sf::parse_dictionary(value) {
        Ok(dict) => dict,
        Err(SfError::RepeatedKey) => {
            return Err(Rejection::new(
                Reject::MalformedSignature,
                Detail::RepeatedKey(CONTENT_DIGEST_HEADER),
            ));
        }
        Err(SfError::Syntax) => return Err(bad),
    };
    let mut digests = Digests {
        sha256: None,
        sha512: None,
    };
    for (name, entry) in &dict {
        let bytes = match entry {
            ListEntry::Item(item) => item.bare_item.as_byte_sequence(),
            ListEntry::InnerList(_) => None,
        };
        match name.as_str() {
            "sha-256" => digests.sha256 = Some(bytes.and_then(|b| b.try_into().ok()).ok_or(bad)?),
            "sha-512" => digests.sha512 = Some(bytes.and_then(|b| b.try_into().ok()).ok_or(bad)?),
            _ => {}
        }
    }
    if digests.sha256.is_none() && digests.sha512.is_none() {
        return Err(bad);
    }
    Ok(digests)
}

/// The `Content-Digest` value a client sends for `body`: `sha-256=:…:`.
pub fn content_digest_header(body: &[u8]) -> String {
    let mut ser = sfv::DictSerializer::new();
    ser.bare_item(KeyRef::constant("sha-256"), &super::sha256(body)[..]);
    ser.finish().unwrap_or_default()
}

/// What a client signs in the RFC 9421 profile.
#[derive(Debug, Clone, Copy)]
pub struct Rfc9421Request<'a> {
    /// The HTTP method, as sent.
    pub method: &'a str,
    /// The scheme (`http` or `https`): it decides which port is the default.
    pub scheme: &'a str,
    /// The authority (`Host`), as sent.
    pub authority: &'a str,
    /// The path and query, exactly as sent.
    pub path: &'a str,
    /// `created`, Unix time in seconds.
    pub created: u64,
    /// `expires`, if any.
    pub expires: Option<u64>,
    /// `nonce`, if any (16 to 128 characters from `A-Z a-z 0-9 . _ ~ -`).
    pub nonce: Option<&'a str>,
    /// The `Content-Digest` value to send and cover (see
    /// [`content_digest_header`]); `None` covers no body, which then must be
    /// empty (or, on an unsigned-payload path, streams unsigned).
    pub content_digest: Option<&'a str>,
    /// More header fields to cover, `(lowercase name, value)`, sent as given.
    pub fields: &'a [(&'a str, &'a str)],
}

/// The headers an RFC 9421 client adds to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc9421Headers {
    /// Value of `Signature-Input`.
    pub signature_input: String,
    /// Value of `Signature`.
    pub signature: String,
    /// Value of `Content-Digest`, when the body is covered.
    pub content_digest: Option<String>,
}

impl Rfc9421Headers {
    /// The headers as `(name, value)` pairs, in a stable order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::with_capacity(3);
        if let Some(d) = &self.content_digest {
            out.push((CONTENT_DIGEST_HEADER, d.as_str()));
        }
        out.push((SIGNATURE_INPUT_HEADER, self.signature_input.as_str()));
        out.push((SIGNATURE_RFC9421_HEADER, self.signature.as_str()));
        out
    }
}

impl Signer {
    /// Signs `request` in the RFC 9421 profile: covers `@method`,
    /// `@authority`, `@path`, `@query`, `content-digest` when given, then
    /// `request.fields`; parameters `created`, `expires`, `nonce`, `keyid`
    /// (this key's fingerprint), `alg` and `tag` (the environment).
    pub fn sign_rfc9421(
        &self,
        request: &Rfc9421Request<'_>,
    ) -> Result<Rfc9421Headers, SchemeError> {
        let (input_value, base) = self.rfc9421_input_and_base(request)?;
        let tag = self.key.tag(&Message::Base(&base));
        let mut ser = sfv::DictSerializer::new();
        ser.bare_item(KeyRef::constant(DEFAULT_LABEL), &tag[..]);
        Ok(Rfc9421Headers {
            signature_input: input_value,
            signature: ser.finish().unwrap_or_default(),
            content_digest: request.content_digest.map(str::to_owned),
        })
    }

    /// The signature base of `request` (for documentation and client
    /// debugging; never logged by the filter).
    pub fn signature_base_rfc9421(
        &self,
        request: &Rfc9421Request<'_>,
    ) -> Result<String, SchemeError> {
        let (_, base) = self.rfc9421_input_and_base(request)?;
        Ok(String::from_utf8_lossy(&base).into_owned())
    }

    /// The `Signature-Input` value and the signature base, computed by the
    /// same code the verifier runs.
    fn rfc9421_input_and_base(
        &self,
        request: &Rfc9421Request<'_>,
    ) -> Result<(String, Vec<u8>), SchemeError> {
        let bad = |what: &'static str| SchemeError::BadRfc9421Request(what);
        let mut items: Vec<Item> = REQUIRED_COMPONENTS
            .iter()
            .map(|c| string_item(c))
            .collect::<Result<_, _>>()
            .map_err(|_| bad("component"))?;
        if request.content_digest.is_some() {
            items.push(string_item(CONTENT_DIGEST_HEADER).map_err(|_| bad("component"))?);
        }
        for (name, _) in request.fields {
            if !is_field_name(name) {
                return Err(bad("covered field names must be lowercase tokens"));
            }
            items.push(string_item(name).map_err(|_| bad("field name"))?);
        }
        let mut params = Parameters::new();
        let int = |v: u64| {
            sfv::Integer::try_from(v)
                .map(BareItem::Integer)
                .map_err(|_| SchemeError::BadTimestamp)
        };
        params.insert(
            KeyRef::constant("created").to_owned(),
            int(request.created)?,
        );
        if let Some(expires) = request.expires {
            params.insert(KeyRef::constant("expires").to_owned(), int(expires)?);
        }
        if let Some(nonce) = request.nonce {
            if !is_valid_nonce(nonce) {
                return Err(SchemeError::BadNonce);
            }
            params.insert(
                KeyRef::constant("nonce").to_owned(),
                string_bare(nonce).map_err(|_| SchemeError::BadNonce)?,
            );
        }
        params.insert(
            KeyRef::constant("keyid").to_owned(),
            string_bare(&self.key.fingerprint()).map_err(|_| bad("keyid"))?,
        );
        params.insert(
            KeyRef::constant("alg").to_owned(),
            string_bare(ALGORITHM).map_err(|_| bad("alg"))?,
        );
        params.insert(
            KeyRef::constant("tag").to_owned(),
            string_bare(&self.environment).map_err(|_| bad("tag"))?,
        );
        let input = InnerList { items, params };
        let mut ser = sfv::DictSerializer::new();
        ser.members([(
            KeyRef::constant(DEFAULT_LABEL),
            &ListEntry::InnerList(input.clone()),
        )]);
        let input_value = ser.finish().unwrap_or_default();
        let mut pairs: Vec<(&str, &str)> = vec![
            (":method", request.method),
            (":scheme", request.scheme),
            (":authority", request.authority),
            (":path", request.path),
        ];
        if let Some(d) = request.content_digest {
            pairs.push((CONTENT_DIGEST_HEADER, d));
        }
        pairs.extend(request.fields.iter().copied());
        let head = RequestHead::from_str_pairs(&pairs);
        let base = signature_base(&head, &input).map_err(|r| SchemeError::Rfc9421Base(r.detail))?;
        Ok((input_value, base))
    }
}

fn string_bare(s: &str) -> Result<BareItem, ()> {
    sfv::String::from_string(s.to_owned())
        .map(BareItem::String)
        .map_err(|_| ())
}

fn string_item(s: &str) -> Result<Item, ()> {
    string_bare(s).map(Item::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::{Formats, SecretKey, Verifier, VerifierOptions, hmac_sha256};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    /// RFC 9421 Appendix B.1.5: the shared secret of the `hmac-sha256` example.
    const B15_KEY: &str =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

    /// The test request of RFC 9421 Appendix B.2.
    const B2_REQUEST: [(&str, &str); 9] = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/foo?param=Value&Pet=dog"),
        ("host", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        (
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("content-length", "18"),
    ];

    /// The signature base and tag of RFC 9421 Appendix B.2.5 (hmac-sha256,
    /// key B.1.5) come out byte for byte; the B.2 body matches its sha-512.
    #[test]
    fn appendix_b25() {
        let input_value = r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#;
        let mut pairs = B2_REQUEST.to_vec();
        pairs.push(("signature-input", input_value));
        let head = RequestHead::from_str_pairs(&pairs);
        let dict = dictionary(input_value.as_bytes(), SIGNATURE_INPUT_HEADER).unwrap();
        let ListEntry::InnerList(input) = &dict[0] else {
            panic!("inner list")
        };
        let base = signature_base(&head, input).unwrap();
        let expected = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"";
        assert_eq!(String::from_utf8(base.clone()).unwrap(), expected);
        let key = BASE64.decode(B15_KEY).unwrap();
        let tag = hmac_sha256(&key, &base);
        assert_eq!(
            BASE64.encode(tag),
            "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8="
        );
        // The prepared key computes the same tag as keying from scratch.
        let prepared = SecretKey::new(&key, "current").unwrap();
        assert_eq!(prepared.tag(&Message::Base(&base)), tag);
        // The B.2 body and its Content-Digest (sha-512).
        let digests = content_digests(B2_REQUEST[7].1.as_bytes()).unwrap();
        let mut body = crate::scheme::BodyVerifier::for_digests(digests, 18);
        body.update(br#"{"hello": "world"}"#).unwrap();
        assert!(body.finish().is_ok());
    }

    /// Derived components follow RFC 9421 §2.2: the query alone (or `?`),
    /// the path without it, the authority lowercased without its default port.
    #[test]
    fn derived_components() {
        let base_of = |path: &str, authority: &str, scheme: &str| {
            let pairs = [
                (":path", path),
                (":authority", authority),
                (":scheme", scheme),
                (":method", "GET"),
            ];
            let head = RequestHead::from_str_pairs(&pairs);
            let dict = dictionary(
                br#"s=("@path" "@query" "@authority" "@target-uri" "@request-target")"#,
                "x",
            )
            .unwrap();
            let ListEntry::InnerList(input) = &dict[0] else {
                panic!()
            };
            String::from_utf8(signature_base(&head, input).unwrap()).unwrap()
        };
        let b = base_of("/a/b?x=1&y", "API.Example.test:443", "https");
        assert!(b.starts_with("\"@path\": /a/b\n\"@query\": ?x=1&y\n\"@authority\": api.example.test\n\"@target-uri\": https://api.example.test/a/b?x=1&y\n\"@request-target\": /a/b?x=1&y\n"), "{b}");
        let b = base_of("/a", "h:8443", "https");
        assert!(
            b.starts_with("\"@path\": /a\n\"@query\": ?\n\"@authority\": h:8443\n"),
            "{b}"
        );
        let b = base_of("/a?", "h:80", "http");
        assert!(
            b.starts_with("\"@path\": /a\n\"@query\": ?\n\"@authority\": h\n"),
            "{b}"
        );
    }

    /// Once the host knows the connection's scheme, the client's `:scheme`
    /// no longer decides which port `@authority` drops, nor `@scheme`: a
    /// request signed for `https://h/` cannot pass a TLS listener as
    /// `http` + `h:80` (issue 23).
    #[test]
    fn scheme_from_the_connection() {
        let base_of = |authority: &str, scheme: &str, tls: Option<bool>| {
            let pairs = [
                (":path", "/"),
                (":authority", authority),
                (":scheme", scheme),
                (":method", "GET"),
            ];
            let mut head = RequestHead::from_str_pairs(&pairs);
            head.tls = tls;
            let dict = dictionary(br#"s=("@authority" "@scheme")"#, "x").unwrap();
            let ListEntry::InnerList(input) = &dict[0] else {
                panic!()
            };
            String::from_utf8(signature_base(&head, input).unwrap()).unwrap()
        };
        let signed = "\"@authority\": h\n\"@scheme\": https\n";
        assert!(base_of("h:443", "https", Some(true)).starts_with(signed));
        assert!(base_of("h:443", "http", Some(true)).starts_with(signed));
        assert!(base_of("h", "http", Some(true)).starts_with(signed));
        let forged = base_of("h:80", "http", Some(true));
        assert!(
            forged.starts_with("\"@authority\": h:80\n\"@scheme\": https\n"),
            "{forged}"
        );
        let plain = base_of("h:80", "https", Some(false));
        assert!(
            plain.starts_with("\"@authority\": h\n\"@scheme\": http\n"),
            "{plain}"
        );
        // Unknown connection (the CLI): the claimed scheme stands in.
        assert!(base_of("h:80", "http", None).starts_with("\"@authority\": h\n"));
    }

    /// Components outside the profile, repeated or absent are refused as
    /// malformed; several field lines are joined with ", ".
    #[test]
    fn component_rules() {
        let pairs = [(":path", "/"), ("x-a", " one "), ("X-A", "two")];
        let head = RequestHead::from_str_pairs(&pairs);
        let base = |input: &str| {
            let dict = dictionary(input.as_bytes(), "x").unwrap();
            let ListEntry::InnerList(list) = &dict[0] else {
                panic!()
            };
            signature_base(&head, list)
                .map(|b| String::from_utf8(b).unwrap())
                .map_err(|r| r.detail)
        };
        assert!(
            base(r#"s=("x-a")"#)
                .unwrap()
                .starts_with("\"x-a\": one, two\n")
        );
        for bad in [
            r#"s=("@status")"#,
            r#"s=("X-A")"#,
            r#"s=("x-a";sf)"#,
            r#"s=("x-a" "x-a")"#,
            r#"s=("@query-param";name="a")"#,
            r#"s=(":path")"#,
        ] {
            assert_eq!(base(bad), Err(Detail::UnsupportedComponent), "{bad}");
        }
        assert_eq!(base(r#"s=("x-missing")"#), Err(Detail::CoveredFieldAbsent));
        assert_eq!(base(r#"s=("@scheme")"#), Err(Detail::CoveredFieldAbsent));
    }

    /// What the signer emits, the verifier accepts; the checks of the
    /// profile refuse each missing piece with the stated outcome.
    #[test]
    fn signer_round_trip_and_profile() {
        let secret = "rfc9421-unit-secret-0123456789abcdef";
        let key = SecretKey::new(secret.as_bytes(), "current").unwrap();
        let signer = Signer::new(key.clone(), "dev").unwrap();
        let options = VerifierOptions {
            formats: Formats::BOTH,
            ..VerifierOptions::default()
        };
        let verifier = Verifier::new("dev", key, None, options).unwrap();
        let body = br#"{"x":1}"#;
        let digest = content_digest_header(body);
        let request = Rfc9421Request {
            method: "POST",
            scheme: "http",
            authority: "api.test",
            path: "/v1/items?b=2&a=1",
            created: 1000,
            expires: None,
            nonce: Some("nonce-0123456789abcdef"),
            content_digest: Some(&digest),
            fields: &[("content-type", "application/json")],
        };
        let h = signer.sign_rfc9421(&request).unwrap();
        assert_eq!(
            h.signature_input,
            format!(
                r#"sig1=("@method" "@authority" "@path" "@query" "content-digest" "content-type");created=1000;nonce="nonce-0123456789abcdef";keyid="{}";alg="hmac-sha256";tag="dev""#,
                signer.fingerprint()
            )
        );
        let pairs_of = |h: &Rfc9421Headers| {
            let mut p: Vec<(String, String)> = [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "api.test"),
                (":path", "/v1/items?b=2&a=1"),
                ("content-type", "application/json"),
                ("content-length", "7"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            p.extend(
                h.pairs()
                    .into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string())),
            );
            p
        };
        let verify = |pairs: &[(String, String)], now: u64| {
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            let head = RequestHead::from_str_pairs(&refs);
            verifier
                .verify_headers(&head, now)
                .map(|v| (v.body, v.nonce.map(|n| n.into_owned())))
                .map_err(|r| (r.reason, r.detail))
        };
        let pairs = pairs_of(&h);
        let (body_claim, nonce) = verify(&pairs, 1000).unwrap();
        assert_eq!(nonce.as_deref(), Some("nonce-0123456789abcdef"));
        let BodyClaim::Digests(d) = body_claim else {
            panic!()
        };
        let mut check = crate::scheme::BodyVerifier::for_digests(d, 100);
        check.update(body).unwrap();
        assert!(check.finish().is_ok());
        // Each mutation and the outcome it must give.
        let with = |name: &str, value: &str| {
            let mut p = pairs.clone();
            p.iter_mut()
                .filter(|(n, _)| n == name)
                .for_each(|(_, v)| *v = value.to_string());
            p
        };
        let si =
            |from: &str, to: &str| with("signature-input", &h.signature_input.replace(from, to));
        use Reject::*;
        assert_eq!(
            verify(&with(":path", "/v1/items?b=2&a=2"), 1000)
                .unwrap_err()
                .0,
            InvalidSignature
        );
        assert_eq!(
            verify(&with(":method", "PUT"), 1000).unwrap_err().0,
            InvalidSignature
        );
        assert_eq!(
            verify(&with("content-type", "text/plain"), 1000)
                .unwrap_err()
                .0,
            InvalidSignature
        );
        assert_eq!(
            verify(&pairs, 1301).unwrap_err(),
            (
                StaleTimestamp,
                Detail::Skew {
                    delta: -301,
                    allowed: 300
                }
            )
        );
        assert_eq!(
            verify(&si("tag=\"dev\"", "tag=\"prod\""), 1000).unwrap_err(),
            (InvalidSignature, Detail::WrongEnvironmentTag)
        );
        assert_eq!(
            verify(&si(&signer.fingerprint(), "0badc0de"), 1000).unwrap_err(),
            (InvalidSignature, Detail::UnknownKeyId)
        );
        assert_eq!(
            verify(&si(&signer.fingerprint(), "not-hex"), 1000).unwrap_err(),
            (InvalidSignature, Detail::UnknownKeyId)
        );
        assert_eq!(
            verify(&si(";tag=\"dev\"", ""), 1000).unwrap_err(),
            (MalformedSignature, Detail::MissingParameter("tag"))
        );
        assert_eq!(
            verify(&si(";created=1000", ""), 1000).unwrap_err(),
            (MalformedSignature, Detail::MissingParameter("created"))
        );
        assert_eq!(
            verify(&si(" \"@query\"", ""), 1000).unwrap_err(),
            (MalformedSignature, Detail::MissingComponent("@query"))
        );
        assert_eq!(
            verify(&si("alg=\"hmac-sha256\"", "alg=\"rsa-pss-sha512\""), 1000).unwrap_err(),
            (MalformedSignature, Detail::BadParameter("alg"))
        );
        assert_eq!(
            verify(&si("created=1000", "created=\"1000\""), 1000).unwrap_err(),
            (MalformedSignature, Detail::BadParameter("created"))
        );
        assert_eq!(
            verify(&si(" \"content-digest\"", ""), 1000).unwrap_err(),
            (MalformedSignature, Detail::ContentDigestNotCovered)
        );
        assert_eq!(
            verify(&si("sig1=", "sig1=(\"@method\"), sig2="), 1000).unwrap_err(),
            (MalformedSignature, Detail::SignatureCount)
        );
        assert_eq!(
            verify(
                &with("signature", &h.signature.replace("sig1", "other")),
                1000
            )
            .unwrap_err(),
            (MalformedSignature, Detail::SignatureCount)
        );
        assert_eq!(
            verify(&with("signature", "sig1=:AAAA:"), 1000).unwrap_err(),
            (MalformedSignature, Detail::BadSignatureValue)
        );
        assert_eq!(
            verify(&with("signature-input", "sig1=(\"@method\""), 1000).unwrap_err(),
            (
                MalformedSignature,
                Detail::BadStructuredField(SIGNATURE_INPUT_HEADER)
            )
        );
        assert_eq!(
            verify(&with("content-digest", "md5=:AAAA:"), 1000).unwrap_err(),
            (MalformedSignature, Detail::BadContentDigest)
        );
        // A repeated parameter or dictionary member is malformed, not "last
        // one wins" (issue 23), whatever the repeated value.
        for (from, to) in [
            ("created=1000", "created=1;created=1000"),
            ("created=1000", "created=1000;created=1000"),
            (
                "nonce=\"nonce-0123456789abcdef\"",
                "nonce=\"nonce-0123456789abcdef\";nonce=\"nonce-other-0123456789\"",
            ),
        ] {
            assert_eq!(
                verify(&si(from, to), 1000).unwrap_err(),
                (
                    MalformedSignature,
                    Detail::RepeatedKey(SIGNATURE_INPUT_HEADER)
                ),
                "{to}"
            );
        }
        assert_eq!(
            verify(&with("signature", &format!("{0}, {0}", h.signature)), 1000).unwrap_err(),
            (
                MalformedSignature,
                Detail::RepeatedKey(SIGNATURE_RFC9421_HEADER)
            )
        );
        assert_eq!(
            verify(
                &with("content-digest", &format!("{digest}, {digest}")),
                1000
            )
            .unwrap_err(),
            (
                MalformedSignature,
                Detail::RepeatedKey(CONTENT_DIGEST_HEADER)
            )
        );
        // expires is honoured.
        let exp = signer
            .sign_rfc9421(&Rfc9421Request {
                expires: Some(1010),
                ..request
            })
            .unwrap();
        assert!(verify(&pairs_of(&exp), 1010).is_ok());
        assert_eq!(
            verify(&pairs_of(&exp), 1011).unwrap_err(),
            (StaleTimestamp, Detail::Expired { ago: 1 })
        );
        // Both formats at once are refused; v1 alone ignores RFC 9421 headers.
        let mut both = pairs.clone();
        both.push(("x-crawbl-signature".into(), "v1=00".into()));
        assert_eq!(
            verify(&both, 1000).unwrap_err(),
            (MalformedSignature, Detail::TwoFormats)
        );
        let v1_only = Verifier::new(
            "dev",
            SecretKey::new(secret.as_bytes(), "current").unwrap(),
            None,
            VerifierOptions::default(),
        )
        .unwrap();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let err = v1_only
            .verify_headers(&RequestHead::from_str_pairs(&refs), 1000)
            .unwrap_err();
        assert_eq!(
            (err.reason, err.detail),
            (
                UnsupportedFormat,
                Detail::FormatNotAccepted(crate::scheme::Format::Rfc9421)
            )
        );
        // And the other way round: v1 headers to an RFC 9421-only verifier.
        let rfc_only = Verifier::new(
            "dev",
            SecretKey::new(secret.as_bytes(), "current").unwrap(),
            None,
            VerifierOptions {
                formats: Formats::of([crate::scheme::Format::Rfc9421]),
                ..VerifierOptions::default()
            },
        )
        .unwrap();
        let v1_pairs = [
            (":method", "GET"),
            (":authority", "api.test"),
            (":path", "/"),
            ("x-crawbl-timestamp", "1000"),
            ("x-crawbl-signature", "v1=00"),
        ];
        let err = rfc_only
            .verify_headers(&RequestHead::from_str_pairs(&v1_pairs), 1000)
            .unwrap_err();
        assert_eq!(
            (err.reason, err.detail),
            (
                UnsupportedFormat,
                Detail::FormatNotAccepted(crate::scheme::Format::V1)
            )
        );
        let err = rfc_only
            .verify_headers(&RequestHead::from_str_pairs(&v1_pairs[..3]), 1000)
            .unwrap_err();
        assert_eq!(err.reason, MissingSignature);
    }
}
