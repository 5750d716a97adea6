//! Property tests: a signed request verifies, and changing any one signed
//! field or any one body byte makes verification fail.

use edge_hmac_core::scheme::{
    Formats, Payload, Reject, RequestHead, SecretKey, SignRequest, SignedHeaders, Signer,
    TagEncoding, Verifier, VerifierOptions,
};
use proptest::prelude::*;

const SECRET: &[u8] = b"property-secret-0123456789abcdef-0123456789";
const SKEW: u64 = 300;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    authority: String,
    path: String,
    timestamp: u64,
    nonce: Option<String>,
    body: Vec<u8>,
    base64: bool,
}

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("PUT"),
            Just("DELETE"),
            Just("PATCH")
        ],
        "[a-z0-9.-]{1,30}(:[0-9]{1,5})?",
        "/[A-Za-z0-9/%._~?=&+-]{0,80}",
        1_000_000_000u64..100_000_000_000,
        proptest::option::of("[A-Za-z0-9._~-]{16,64}"),
        proptest::collection::vec(any::<u8>(), 0..512),
        any::<bool>(),
    )
        .prop_map(|(m, a, p, t, n, b, b64)| Req {
            method: m.to_string(),
            authority: a,
            path: p,
            timestamp: t,
            nonce: n,
            body: b,
            base64: b64,
        })
}

fn sign(r: &Req, environment: &str) -> SignedHeaders {
    let signer = Signer::new(SecretKey::new(SECRET, "current").unwrap(), environment).unwrap();
    signer
        .sign(
            &SignRequest {
                method: &r.method,
                authority: &r.authority,
                path: &r.path,
                timestamp: r.timestamp,
                nonce: r.nonce.as_deref(),
                payload: Payload::of(&r.body),
            },
            if r.base64 {
                TagEncoding::Base64
            } else {
                TagEncoding::Hex
            },
        )
        .unwrap()
}

/// Verifies `r` as received with `headers`, at the signing time. Returns the
/// outcome code, "ok" when headers and body pass.
fn verify(r: &Req, headers: &SignedHeaders) -> &'static str {
    let verifier = Verifier::new(
        "dev",
        SecretKey::new(SECRET, "current").unwrap(),
        None,
        VerifierOptions {
            clock_skew_seconds: SKEW,
            require_nonce: false,
            // Both formats: RFC 9421 being on must not change any v1 property.
            formats: Formats::BOTH,
        },
    )
    .unwrap();
    let mut pairs = vec![
        (":method", r.method.as_str()),
        (":authority", r.authority.as_str()),
        (":path", r.path.as_str()),
    ];
    pairs.extend(headers.pairs());
    let head = RequestHead::from_str_pairs(&pairs);
    let ok = match verifier.verify_headers(&head, r.timestamp) {
        Ok(ok) => ok,
        Err(rej) => return rej.reason.code(),
    };
    // The generator never signs UNSIGNED-PAYLOAD.
    let Some(mut body) = ok.body_verifier(u64::MAX) else {
        return "unsigned";
    };
    if let Err(rej) = body.update(&r.body) {
        return rej.reason.code();
    }
    match body.finish() {
        Ok(()) => "ok",
        Err(rej) => rej.reason.code(),
    }
}

const INVALID: &str = "invalid_signature";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any request signed by the signer verifies.
    #[test]
    fn signed_requests_verify(r in req_strategy()) {
        prop_assert_eq!(verify(&r, &sign(&r, "dev")), "ok");
    }

    /// Changing the method invalidates the tag.
    #[test]
    fn method_is_signed(r in req_strategy(), m in "[A-Z]{3,7}") {
        prop_assume!(m != r.method);
        let h = sign(&r, "dev");
        prop_assert_eq!(verify(&Req { method: m, ..r }, &h), INVALID);
    }

    /// Changing the authority (other than ASCII case) invalidates the tag.
    #[test]
    fn authority_is_signed(r in req_strategy(), a in "[a-z0-9.-]{1,30}") {
        prop_assume!(!a.eq_ignore_ascii_case(&r.authority));
        let h = sign(&r, "dev");
        prop_assert_eq!(verify(&Req { authority: a, ..r.clone() }, &h), INVALID);
        // ...while its ASCII case does not matter.
        let upper = r.authority.to_ascii_uppercase();
        prop_assert_eq!(verify(&Req { authority: upper, ..r }, &h), "ok");
    }

    /// Changing one byte of the path invalidates the tag.
    #[test]
    fn path_is_signed(r in req_strategy(), i in any::<prop::sample::Index>(), c in "[A-Za-z0-9%?=&]") {
        let h = sign(&r, "dev");
        let mut path: Vec<char> = r.path.chars().collect();
        let at = i.index(path.len());
        let c = c.chars().next().unwrap();
        prop_assume!(path[at] != c);
        path[at] = c;
        prop_assert_eq!(verify(&Req { path: path.into_iter().collect(), ..r }, &h), INVALID);
    }

    /// A timestamp moved within the skew invalidates the tag.
    #[test]
    fn timestamp_is_signed(r in req_strategy(), d in 1u64..SKEW) {
        let mut h = sign(&r, "dev");
        h.timestamp = (r.timestamp + d).to_string();
        prop_assert_eq!(verify(&r, &h), INVALID);
    }

    /// Adding, removing or changing the nonce invalidates the tag.
    #[test]
    fn nonce_is_signed(r in req_strategy(), n in "[A-Za-z0-9._~-]{16,64}") {
        prop_assume!(Some(&n) != r.nonce.as_ref());
        let mut h = sign(&r, "dev");
        h.nonce = Some(n);
        prop_assert_eq!(verify(&r, &h), INVALID);
        if r.nonce.is_some() {
            let mut h = sign(&r, "dev");
            h.nonce = None;
            prop_assert_eq!(verify(&r, &h), INVALID);
        }
    }

    /// A tag made for another environment does not verify.
    #[test]
    fn environment_is_signed(r in req_strategy(), e in "[a-z]{2,10}") {
        prop_assume!(e != "dev");
        prop_assert_eq!(verify(&r, &sign(&r, &e)), INVALID);
    }

    /// Changing any one body byte fails the body check.
    #[test]
    fn body_is_signed(
        r in req_strategy().prop_filter("needs a body", |r| !r.body.is_empty()),
        i in any::<prop::sample::Index>(),
        x in 1u8..=255,
    ) {
        let h = sign(&r, "dev");
        let mut body = r.body.clone();
        let at = i.index(body.len());
        body[at] ^= x;
        prop_assert_eq!(verify(&Req { body, ..r }, &h), "content_mismatch");
    }

    /// Changing any one bit of the tag invalidates it (hex and base64 alike).
    #[test]
    fn tag_bits_matter(r in req_strategy(), bit in 0usize..256) {
        let h = sign(&r, "dev");
        let encoded = &h.signature[3..];
        let mut raw = if r.base64 {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap()
        } else {
            hex::decode(encoded).unwrap()
        };
        raw[bit / 8] ^= 1 << (bit % 8);
        let flipped = if r.base64 {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw)
        } else {
            hex::encode(&raw)
        };
        let h = SignedHeaders { signature: format!("v1={flipped}"), ..h };
        prop_assert_eq!(verify(&r, &h), INVALID);
    }

    /// Arbitrary header values never panic the verifier and never verify.
    #[test]
    fn garbage_never_verifies(
        ts in proptest::collection::vec(any::<u8>(), 0..20),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        nonce in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..140)),
        content in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..70)),
    ) {
        let verifier = Verifier::new("dev", SecretKey::new(SECRET, "current").unwrap(), None, VerifierOptions::default()).unwrap();
        let mut pairs: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"), (b":authority", b"h"), (b":path", b"/"),
            (b"x-crawbl-timestamp", &ts), (b"x-crawbl-signature", &sig),
        ];
        if let Some(n) = &nonce { pairs.push((b"x-crawbl-nonce", n)); }
        if let Some(c) = &content { pairs.push((b"x-crawbl-content-sha256", c)); }
        let head = RequestHead::from_pairs(&pairs);
        let result = verifier.verify_headers(&head, 1_000_000);
        prop_assert!(result.is_err());
        let reason = result.unwrap_err().reason;
        prop_assert!(matches!(reason, Reject::MalformedSignature | Reject::StaleTimestamp | Reject::InvalidSignature), "{:?}", reason);
    }
}
