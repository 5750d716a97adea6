//! The verification pipeline both formats share: the order of the checks,
//! the clock, the key slots and the key loop.

use std::borrow::Cow;

use super::body::{BodyClaim, BodyVerifier};
use super::claim::{Claim, KeySelect};
pub use super::formats::{Format, Formats};
use super::head::RequestHead;
use super::key::{KeyUsed, SecretKey};
use super::names::SIGNATURE_INPUT_HEADER;
use super::outcome::{Detail, Reject, Rejection};
use super::{DEFAULT_CLOCK_SKEW_SECONDS, SchemeError, rfc9421, v1, validate_environment};

/// Options of a [`Verifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifierOptions {
    /// Allowed distance between timestamp and now, either direction.
    pub clock_skew_seconds: u64,
    /// Refuse requests without a nonce.
    pub require_nonce: bool,
    /// The wire formats accepted.
    pub formats: Formats,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
            require_nonce: false,
            formats: Formats::default(),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersVerified<'a> {
    /// The wire format the request was signed in.
    pub format: Format,
    /// The key that produced the tag.
    pub key: KeyUsed,
    /// The signed timestamp (v1 `x-crawbl-timestamp`, RFC 9421 `created`).
    pub timestamp: u64,
    /// The signed nonce, if any (still to be checked against the replay cache).
    pub nonce: Option<Cow<'a, str>>,
    /// What the signature says about the body.
    pub body: BodyClaim,
}

impl HeadersVerified<'_> {
    /// True when the signature says the body is empty.
    pub fn expects_empty_body(&self) -> bool {
        matches!(self.body, BodyClaim::Digests(d) if d.is_empty_body())
    }

    /// True when the body is not signed (it streams through unread).
    pub fn unsigned_payload(&self) -> bool {
        self.body == BodyClaim::Unsigned
    }

    /// A streaming check of the body against the signed digests, refusing
    /// more than `max_body_bytes`; `None` for an unsigned payload (nothing to
    /// check).
    pub fn body_verifier(&self, max_body_bytes: u64) -> Option<BodyVerifier> {
        match self.body {
            BodyClaim::Digests(d) => Some(BodyVerifier::for_digests(d, max_body_bytes)),
            BodyClaim::Unsigned => None,
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
        let claim = self.claim(head, unsigned_payload_allowed)?;
        // 3. stale_timestamp
        let delta = i128::from(claim.timestamp) - i128::from(now);
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
        if let Some(expires) = claim.expires
            && now > expires
        {
            return Err(Rejection::new(
                Reject::StaleTimestamp,
                Detail::Expired { ago: now - expires },
            ));
        }
        // 4. invalid_signature
        if !claim.environment_tag_ok {
            return Err(Rejection::new(
                Reject::InvalidSignature,
                Detail::WrongEnvironmentTag,
            ));
        }
        let message = claim.signed.message(self.environment.as_bytes());
        let mut keys_tried = 0u8;
        let mut matched = None;
        for slot in KeyUsed::ALL {
            let Some(key) = self.key(slot) else { continue };
            match claim.key_id {
                KeySelect::Any => {}
                KeySelect::Id(id) if key.has_id(&id) => {}
                KeySelect::Id(_) | KeySelect::Unknown => continue,
            }
            keys_tried += 1;
            if key.matches(&message, &claim.tag) {
                matched = Some(slot);
                break;
            }
        }
        let Some(key) = matched else {
            let detail = if keys_tried == 0 {
                Detail::UnknownKeyId
            } else {
                Detail::NoKeyMatched { keys_tried }
            };
            return Err(Rejection::new(Reject::InvalidSignature, detail));
        };
        Ok(HeadersVerified {
            format: claim.format(),
            key,
            timestamp: claim.timestamp,
            nonce: claim.nonce,
            body: claim.body,
        })
    }

    /// The string to sign this verifier computes for `head`, for debugging a
    /// client (compare it with the client's). Fails like
    /// [`Verifier::verify_headers`] when the headers are missing or malformed
    /// ([`UNSIGNED_PAYLOAD`] is shown, whatever the path). Never logged by
    /// the filter.
    pub fn string_to_sign(&self, head: &RequestHead<'_>) -> Result<String, Rejection> {
        Ok(self
            .claim(head, true)?
            .signed
            .to_text(self.environment.as_bytes()))
    }

    /// Steps 1 (missing) and 2 (malformed), by the format the request is
    /// signed in: RFC 9421 when that format is on and its headers are
    /// present, v1 otherwise.
    fn claim<'a>(
        &self,
        head: &RequestHead<'a>,
        unsigned_payload_allowed: bool,
    ) -> Result<Claim<'a>, Rejection> {
        let formats = self.options.formats;
        if formats.rfc9421 && head.has_rfc9421() {
            if formats.v1 && !head.signature.is_absent() {
                return Err(Rejection::new(
                    Reject::MalformedSignature,
                    Detail::TwoFormats,
                ));
            }
            return rfc9421::parse(
                head,
                &self.environment,
                self.options.require_nonce,
                unsigned_payload_allowed,
            );
        }
        // Signed, but in a format this verifier does not take: say so
        // instead of "missing" (a client pointed at the wrong listener, or
        // a filter whose `formats` leaves the client's format out).
        let unsupported = |format| {
            Err(Rejection::new(
                Reject::UnsupportedFormat,
                Detail::FormatNotAccepted(format),
            ))
        };
        if formats.v1 {
            if head.signature.is_absent() && head.has_rfc9421() {
                return unsupported(Format::Rfc9421);
            }
            return v1::parse(head, self.options.require_nonce, unsigned_payload_allowed);
        }
        if !head.signature.is_absent() {
            return unsupported(Format::V1);
        }
        Err(Rejection::new(
            Reject::MissingSignature,
            Detail::MissingHeader(SIGNATURE_INPUT_HEADER),
        ))
    }
}
