//! What a format's parser hands to the shared pipeline: the claim (time,
//! nonce, body digests, tag, key selection) and the bytes the tag covers.

use std::borrow::Cow;

use super::TAG_LEN;
use super::body::BodyClaim;
use super::canonical::Canonical;
use super::formats::Format;

/// Which keys a claim may be verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySelect {
    /// Every configured key, in slot order (v1).
    Any,
    /// The keys with this fingerprint (an RFC 9421 `keyid`).
    Id([u8; 4]),
    /// None: the `keyid` is not a fingerprint.
    Unknown,
}

/// What a format's parser extracts from a request: everything the shared
/// checks need. No `Debug`: it holds the signed bytes.
pub(crate) struct Claim<'a> {
    /// Signed creation time.
    pub timestamp: u64,
    /// Signed expiry time, if any.
    pub expires: Option<u64>,
    /// Signed nonce, if any.
    pub nonce: Option<Cow<'a, str>>,
    /// What the signature says about the body.
    pub body: BodyClaim,
    /// The tag to check.
    pub tag: [u8; TAG_LEN],
    /// Which keys may have made it.
    pub key_id: KeySelect,
    /// False when the signed environment is not the verifier's (RFC 9421
    /// `tag`; v1 signs the verifier's own environment, so always true).
    pub environment_tag_ok: bool,
    /// The bytes the tag covers.
    pub signed: Signed<'a>,
}

impl Claim<'_> {
    /// The format the claim was parsed from.
    pub(crate) fn format(&self) -> Format {
        match self.signed {
            Signed::V1(_) => Format::V1,
            Signed::Base(_) => Format::Rfc9421,
        }
    }
}

/// The bytes a tag covers, per format.
pub(crate) enum Signed<'a> {
    /// v1's string to sign, fed without allocating.
    V1(Canonical<'a>),
    /// An RFC 9421 signature base.
    Base(Vec<u8>),
}

impl<'a> Signed<'a> {
    /// The message for a verifier of `environment`.
    pub(crate) fn message<'m>(&'m self, environment: &'m [u8]) -> Message<'m> {
        match self {
            Signed::V1(canonical) => Message::V1 {
                environment,
                canonical,
            },
            Signed::Base(base) => Message::Base(base),
        }
    }

    /// The message as text (for debugging a client; never logged).
    pub(crate) fn to_text(&self, environment: &[u8]) -> String {
        match self {
            Signed::V1(canonical) => canonical.to_text(environment),
            Signed::Base(base) => String::from_utf8_lossy(base).into_owned(),
        }
    }
}

/// The bytes a key MACs.
pub(crate) enum Message<'m> {
    /// A v1 string to sign.
    V1 {
        /// The environment signed in field 2.
        environment: &'m [u8],
        /// The other fields.
        canonical: &'m Canonical<'m>,
    },
    /// An RFC 9421 signature base.
    Base(&'m [u8]),
}

impl Message<'_> {
    /// Feeds the message to `sink`.
    pub(crate) fn feed(&self, mut sink: impl FnMut(&[u8])) {
        match self {
            Message::V1 {
                environment,
                canonical,
            } => canonical.feed(environment, sink),
            Message::Base(base) => sink(base),
        }
    }
}
