//! Unit tests of the shared pipeline and the v1 format.

use super::body::EMPTY_SHA256;
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
    let signer = Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
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
    fn pairs_of<'a>(ts: &'a str, sig: &'a str) -> [(&'a str, &'a str); 5] {
        [
            (":method", "GET"),
            (":authority", "api.test"),
            (":path", "/p"),
            ("x-crawbl-timestamp", ts),
            ("x-crawbl-signature", sig),
        ]
    }
    for (secret, slot) in [
        (SECRET, KeyUsed::Current),
        (prev, KeyUsed::Previous),
        (pend, KeyUsed::Pending),
    ] {
        let (ts, sig) = signed(secret);
        let pairs = pairs_of(&ts, &sig);
        let head = RequestHead::from_str_pairs(&pairs);
        assert_eq!(v.verify_headers(&head, 1000).unwrap().key, slot);
        // Without the pending slot, the pending key is refused.
        let without = verifier(Some(prev)).verify_headers(&head, 1000);
        assert_eq!(without.is_ok(), slot != KeyUsed::Pending, "{slot:?}");
    }
    let (ts, sig) = signed(other);
    let pairs = pairs_of(&ts, &sig);
    let head = RequestHead::from_str_pairs(&pairs);
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
    let head = RequestHead::from_str_pairs(&[
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
    let twice = RequestHead::from_str_pairs(&[("content-length", "1"), ("content-length", "1")]);
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
    let pairs = [
        ("x-crawbl-timestamp", "1000"),
        ("x-crawbl-signature", sig.as_str()),
    ];
    let head = RequestHead::from_str_pairs(&pairs);
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
    let signer = Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
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
    let head = RequestHead::from_str_pairs(&pairs);
    let v = verifier(None);
    assert_eq!(v.string_to_sign(&head).unwrap(), sts);
    let err = v.verify_headers(&head, 1000).unwrap_err();
    assert_eq!(err.reason, Reject::MalformedSignature);
    assert_eq!(err.detail, Detail::UnsignedPayloadNotAllowed);
    let ok = v.verify_headers_on(&head, 1000, true).unwrap();
    assert!(ok.unsigned_payload());
    assert!(!ok.expects_empty_body());
    assert!(ok.body_verifier(0).is_none());
    assert_eq!(Payload::of(b""), None);
    assert_eq!(Payload::EMPTY.header_value(), EMPTY_SHA256_HEX);
}

/// An upgrade is what Envoy treats as one: `Connection` with the
/// `upgrade` token and an `Upgrade` header, or `CONNECT`.
#[test]
fn upgrade_detection() {
    let head = |pairs: &[(&'static str, &'static str)]| RequestHead::from_str_pairs(pairs).upgrade;
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
