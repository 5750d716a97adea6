//! Header verification from arbitrary header pairs and clock, built around a
//! validly signed request (structure-aware: the fuzzer edits, drops,
//! duplicates and adds headers, and moves the clock), through the filter's
//! own decision function with an in-memory replay store. The request is
//! signed with the current, previous or pending key (all three loaded).
//! Never panics; the untouched signed request at its own time always
//! verifies, with the key it was signed with, and any other outcome is one
//! of the spec's codes. UNSIGNED-PAYLOAD is accepted only on an
//! unsigned-payload path; an exempt path or preflight skips only requests
//! with no body and no upgrade; a verified upgrade is always passed as one.
//! Both formats are on: the request is signed as v1 or as RFC 9421, and the
//! same invariants hold for both.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use edge_hmac_core::config::{FilterConfig, compile};
use edge_hmac_core::flow::{Body, HeadersDecision, on_request_headers};
use edge_hmac_core::replay::MemoryStore;
use edge_hmac_core::scheme::rfc9421::{Rfc9421Request, content_digest_header};
use edge_hmac_core::scheme::{
    HeaderValue, KeyUsed, Payload, RequestHead, SecretKey, SignRequest, Signer, TagEncoding,
    sha256,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789abcdef";
const PREVIOUS: &str = "fuzz-previous-0123456789abcdef0123456789abcdef";
const PENDING: &str = "fuzz-pending-0123456789abcdef0123456789abcdef";
const T0: u64 = 1_800_000_000;

#[derive(Arbitrary, Debug)]
enum Edit {
    Drop(u8),
    Duplicate(u8),
    Replace(u8, Vec<u8>),
    Rename(u8, Vec<u8>),
    Add(Vec<u8>, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: Vec<u8>,
    body: Option<Vec<u8>>,
    nonce: bool,
    clock_offset: i32,
    edits: Vec<Edit>,
    end_of_stream: bool,
    repeat: bool,
    slot: u8,
    /// Sign UNSIGNED-PAYLOAD instead of the body hash.
    unsigned: bool,
    /// Add `connection: upgrade` and `upgrade: websocket`.
    upgrade: bool,
    /// Sign in the RFC 9421 profile instead of v1 (unsigned: no content-digest).
    rfc9421: bool,
}

/// Compiled once: configuration and signer are per filter instance, not
/// per request. One replay bucket (16 entries) keeps each run's table
/// initialisation (what `on_configure` does) cheap.
fn setup() -> &'static (FilterConfig, Vec<(KeyUsed, Signer)>) {
    static SETUP: OnceLock<(FilterConfig, Vec<(KeyUsed, Signer)>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config = compile(
            br#"{"environment": "fuzz", "exempt_paths": ["/healthz"], "allow_cors_preflight": true, "nonce_cache_max_entries": 16, "unsigned_payload_paths": ["/stream/*"], "formats": ["v1", "rfc9421"]}"#,
            |name| match name {
                "HMAC_SECRET" => Some(SECRET.to_owned()),
                "HMAC_SECRET_PREVIOUS" => Some(PREVIOUS.to_owned()),
                "HMAC_SECRET_PENDING" => Some(PENDING.to_owned()),
                _ => None,
            },
        );
        let Ok(config) = config else {
            panic!("the fuzz configuration must compile");
        };
        let signers = [
            (KeyUsed::Current, SECRET),
            (KeyUsed::Previous, PREVIOUS),
            (KeyUsed::Pending, PENDING),
        ]
        .into_iter()
        .map(|(slot, secret)| {
            match SecretKey::new(secret.as_bytes(), "current").and_then(|k| Signer::new(k, "fuzz")) {
                Ok(signer) => (slot, signer),
                Err(e) => panic!("fuzz signer: {e}"),
            }
        })
        .collect();
        (config, signers)
    })
}

fuzz_target!(|input: Input| {
    let (config, signers) = setup();
    let (slot, signer) = &signers[usize::from(input.slot) % signers.len()];
    let method = ["GET", "POST", "PUT", "OPTIONS", "HEAD"][usize::from(input.method) % 5];
    let path = String::from_utf8_lossy(&input.path);
    let path = if path.starts_with('/') {
        path.into_owned()
    } else {
        format!("/{path}")
    };
    let nonce = input.nonce.then_some("fuzz-nonce-0123456789");
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), method.as_bytes().to_vec()),
        (b":scheme".to_vec(), b"https".to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), b"api.example.test".to_vec()),
    ];
    let signed: Vec<(String, String)> = if input.rfc9421 {
        let digest = match (&input.body, input.unsigned) {
            (Some(b), false) => Some(content_digest_header(b)),
            _ => None,
        };
        let Ok(h) = signer.sign_rfc9421(&Rfc9421Request {
            method,
            scheme: "https",
            authority: "api.example.test",
            path: &path,
            created: T0,
            expires: None,
            nonce,
            content_digest: digest.as_deref(),
            fields: &[],
        }) else {
            return;
        };
        h.pairs().into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect()
    } else {
        let Ok(h) = signer.sign(
            &SignRequest {
                method,
                authority: "api.example.test",
                path: &path,
                timestamp: T0,
                nonce,
                payload: if input.unsigned {
                    Some(Payload::Unsigned)
                } else {
                    input.body.as_deref().map(|b| Payload::Sha256(sha256(b)))
                },
            },
            TagEncoding::Hex,
        ) else {
            return;
        };
        h.pairs().into_iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect()
    };
    for (n, v) in &signed {
        pairs.push((n.as_bytes().to_vec(), v.as_bytes().to_vec()));
    }
    if input.upgrade {
        pairs.push((b"connection".to_vec(), b"upgrade".to_vec()));
        pairs.push((b"upgrade".to_vec(), b"websocket".to_vec()));
    }
    let untouched = input.edits.is_empty() && input.clock_offset == 0;
    for edit in input.edits.iter().take(32) {
        let at = |i: &u8| usize::from(*i) % pairs.len().max(1);
        match edit {
            Edit::Drop(i) if !pairs.is_empty() => {
                pairs.remove(at(i));
            }
            Edit::Duplicate(i) if !pairs.is_empty() => {
                let p = pairs[at(i)].clone();
                pairs.push(p);
            }
            Edit::Replace(i, v) if !pairs.is_empty() => {
                let j = at(i);
                pairs[j].1 = v.clone();
            }
            Edit::Rename(i, n) if !pairs.is_empty() => {
                let j = at(i);
                pairs[j].0 = n.clone();
            }
            Edit::Add(n, v) => pairs.push((n.clone(), v.clone())),
            _ => {}
        }
    }
    let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
    let head = RequestHead::from_pairs(&refs);
    let now = T0.saturating_add_signed(i64::from(input.clock_offset));
    let mut store = MemoryStore::default();
    // What on_configure does before any request.
    if config.replay.register(&mut store, now).is_err() {
        panic!("the in-memory store cannot fail");
    }
    let first = on_request_headers(
        config,
        &head,
        now,
        input.end_of_stream,
        &mut config.replay.shared(&mut store),
    );
    match &first {
        HeadersDecision::Verified {
            body,
            unsigned_payload,
            ..
        } => {
            if *unsigned_payload || matches!(body, Body::Unsigned) {
                assert!(
                    config.allows_unsigned_payload(head.path),
                    "UNSIGNED-PAYLOAD accepted on {:?}",
                    String::from_utf8_lossy(head.path)
                );
            }
            if head.upgrade && !input.end_of_stream {
                assert!(
                    matches!(body, Body::Upgrade { .. }),
                    "an upgrade not passed as one: {body:?}"
                );
            }
        }
        HeadersDecision::Skip(_) => {
            assert!(
                input.end_of_stream && !head.upgrade,
                "a request with a body or an upgrade skipped verification"
            );
        }
        HeadersDecision::Reject(_) => {}
    }
    let unsigned_ok = !input.unsigned || config.allows_unsigned_payload(path.as_bytes());
    if untouched
        && input.body.is_none()
        && unsigned_ok
        && !input.upgrade
        && method != "OPTIONS"
        && path != "/healthz"
    {
        assert!(
            matches!(first, HeadersDecision::Verified { key, .. } if key == *slot),
            "a correctly signed request was refused or given the wrong key: {first:?} ({slot:?})"
        );
    }
    if let HeadersDecision::Reject(r) = &first
        && r.reason == edge_hmac_core::scheme::Reject::UnsupportedFormat
    {
        // Only a request signed in a format the configuration leaves out.
        let formats = config.verifier.options().formats;
        let v1 = !head.signature.is_absent();
        assert!(
            (v1 && !formats.v1) || (!v1 && head.has_rfc9421() && !formats.rfc9421),
            "unsupported_format for a format that is accepted ({formats:?})"
        );
    }
    if let HeadersDecision::Reject(r) = &first {
        // Every rejection maps to a code of the spec and back.
        let code = r.reason.code();
        assert_eq!(
            edge_hmac_core::scheme::Reject::from_code(code),
            Some(r.reason)
        );
    }
    if input.repeat {
        let again = on_request_headers(
            config,
            &head,
            now,
            input.end_of_stream,
            &mut config.replay.shared(&mut store),
        );
        if nonce.is_some()
            && matches!(first, HeadersDecision::Verified { .. })
            && (matches!(head.nonce, HeaderValue::One(_))
                || matches!(head.signature_input, HeaderValue::One(_)))
        {
            assert!(
                !matches!(again, HeadersDecision::Verified { .. }),
                "a nonce was accepted twice"
            );
        }
    }
});
