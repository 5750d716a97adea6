//! The committed spec vectors (docs/signature-v1-vectors.json and
//! docs/signature-rfc9421-vectors.json) hold for the Rust verifier: outcome,
//! matching key and string to sign (signature base) of every case.

use base64::Engine as _;
use edge_hmac_core::replay::{MemoryStore, ReplayCache};
use edge_hmac_core::scheme::{
    Format, Formats, Reject, RequestHead, SecretKey, Verifier, VerifierOptions,
};
use serde_json::Value;

fn load_file(file: &str, scheme: &str) -> Vec<Value> {
    let path = format!("{}/../../docs/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("read vectors");
    let doc: Value = serde_json::from_str(&text).expect("parse vectors");
    assert_eq!(doc["scheme"], scheme);
    doc["cases"].as_array().expect("cases").clone()
}

fn load() -> Vec<Value> {
    load_file("signature-v1-vectors.json", "CRAWBL-HMAC-SHA256-V1")
}

fn load_rfc9421() -> Vec<Value> {
    load_file(
        "signature-rfc9421-vectors.json",
        "RFC9421-HMAC-SHA256-PROFILE-1",
    )
}

/// The formats a case's verifier accepts (`formats`, default v1 only).
fn formats_of(v: &Value) -> Formats {
    match v.get("formats").and_then(Value::as_array) {
        None => Formats::default(),
        Some(names) => Formats::of(names.iter().map(|n| Format::from_name(s(n)).unwrap())),
    }
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected string, got {v}"))
}

/// Runs one case through the verifier exactly as the filter does: headers,
/// then the nonce cache, then the body. Returns (outcome, key, string to sign).
fn run(case: &Value, formats: Option<Formats>) -> (String, Option<&'static str>, Option<String>) {
    let v = &case["verifier"];
    let current = SecretKey::new(s(&v["secret"]).as_bytes(), "current").unwrap();
    let previous = v["previous_secret"]
        .as_str()
        .map(|p| SecretKey::new(p.as_bytes(), "previous").unwrap());
    let pending = v
        .get("pending_secret")
        .and_then(Value::as_str)
        .map(|p| SecretKey::new(p.as_bytes(), "pending").unwrap());
    let verifier = Verifier::new(
        s(&v["environment"]),
        current,
        previous,
        VerifierOptions {
            clock_skew_seconds: v["clock_skew_seconds"].as_u64().unwrap(),
            require_nonce: v["require_nonce"].as_bool().unwrap(),
            formats: formats.unwrap_or_else(|| formats_of(v)),
        },
    )
    .unwrap()
    .with_pending(pending);
    let now = v["now"].as_u64().unwrap();
    let r = &case["request"];
    let headers: Vec<(String, String)> = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (s(&p[0]).to_string(), s(&p[1]).to_string()))
        .collect();
    let body: Vec<u8> = match (r.get("body"), r.get("body_base64")) {
        (Some(b), _) => s(b).as_bytes().to_vec(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(s(b))
            .unwrap(),
        _ => Vec::new(),
    };
    let mut pairs: Vec<(&str, &str)> = vec![
        (":method", s(&r["method"])),
        (":authority", s(&r["authority"])),
        (":path", s(&r["path"])),
    ];
    if let Some(scheme) = r.get("scheme") {
        pairs.push((":scheme", s(scheme)));
    }
    pairs.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut head = RequestHead::from_str_pairs(&pairs);
    head.tls = case["connection"]["tls"].as_bool();
    let sts = verifier.string_to_sign(&head).ok();

    let unsigned_allowed = v["unsigned_payload_allowed"].as_bool().unwrap_or(false);
    let verified = match verifier.verify_headers_on(&head, now, unsigned_allowed) {
        Ok(v) => v,
        Err(rej) => return (rej.reason.code().to_string(), None, sts),
    };
    let cache = ReplayCache::new(1024, 600, 300);
    let mut store = MemoryStore::default();
    cache.register(&mut store, now).unwrap();
    for seen in v["seen_nonces"].as_array().unwrap() {
        cache.claim(&mut store, s(seen), now, now).unwrap();
    }
    if let Some(nonce) = &verified.nonce
        && let Err(e) = cache.claim(&mut store, nonce, verified.timestamp, now)
    {
        return (e.rejection().reason.code().to_string(), None, sts);
    }
    let Some(mut check) = verified.body_verifier(v["max_body_bytes"].as_u64().unwrap()) else {
        // UNSIGNED-PAYLOAD on an allowed path: the body is not checked.
        return ("ok".to_string(), Some(verified.key.slot()), sts);
    };
    // Feed the body in uneven chunks, as it arrives from the network.
    for chunk in body.chunks(7) {
        if let Err(rej) = check.update(chunk) {
            return (rej.reason.code().to_string(), None, sts);
        }
    }
    if let Err(rej) = check.finish() {
        return (rej.reason.code().to_string(), None, sts);
    }
    ("ok".to_string(), Some(verified.key.slot()), sts)
}

/// Every vector's outcome, key and string to sign match the Rust verifier.
#[test]
fn rust_verifier_agrees_with_vectors() {
    let cases = load();
    assert!(cases.len() >= 30, "only {} vectors", cases.len());
    check_all(&cases, None);
}

/// v1 vectors give the same outcomes with `formats: ["v1", "rfc9421"]`:
/// turning RFC 9421 on changes nothing for v1 clients (the cases that set
/// their own `formats` are about that setting and are left out).
#[test]
fn v1_vectors_hold_with_both_formats() {
    let cases: Vec<Value> = load()
        .into_iter()
        .filter(|c| c["verifier"].get("formats").is_none())
        .collect();
    check_all(&cases, Some(Formats::BOTH));
}

/// Every RFC 9421 profile vector's outcome, key and signature base match.
#[test]
fn rust_verifier_agrees_with_rfc9421_vectors() {
    let cases = load_rfc9421();
    assert!(cases.len() >= 25, "only {} vectors", cases.len());
    check_all(&cases, None);
}

/// The RFC 9421 vectors cover every outcome a request can get, rotation
/// (previous and pending keys), bodies and requests with and without a query.
#[test]
fn rfc9421_vectors_cover_the_profile() {
    let cases = load_rfc9421();
    assert_every_outcome(&cases);
    for key in ["current", "previous", "pending"] {
        assert!(
            cases.iter().any(|c| c["expected"]["key"] == key),
            "no {key} vector"
        );
    }
    let ok: Vec<&Value> = cases
        .iter()
        .filter(|c| c["expected"]["outcome"] == "ok")
        .collect();
    assert!(
        ok.iter().any(|c| s(&c["request"]["path"]).contains('?')),
        "no query"
    );
    assert!(
        ok.iter().any(|c| !s(&c["request"]["path"]).contains('?')),
        "no query-less path"
    );
    assert!(
        ok.iter().any(|c| c["request"].get("body").is_some()),
        "no body"
    );
}

/// `cases` hold a vector for "ok" and for every outcome a client's request
/// can get (all but the verifier's own `replay_cache_unavailable`).
fn assert_every_outcome(cases: &[Value]) {
    let codes = Reject::ALL
        .into_iter()
        .filter(|r| *r != Reject::ReplayCacheUnavailable)
        .map(Reject::code);
    for code in std::iter::once("ok").chain(codes) {
        assert!(
            cases.iter().any(|c| c["expected"]["outcome"] == code),
            "no vector for {code}"
        );
    }
}

fn check_all(cases: &[Value], formats: Option<Formats>) {
    let mut failures = Vec::new();
    for case in cases {
        let name = s(&case["name"]);
        let (outcome, key, sts) = run(case, formats);
        let exp = &case["expected"];
        if outcome != s(&exp["outcome"]) {
            failures.push(format!(
                "{name}: outcome {outcome}, expected {}",
                exp["outcome"]
            ));
        }
        if key != exp.get("key").and_then(Value::as_str) {
            failures.push(format!("{name}: key {key:?}, expected {}", exp["key"]));
        }
        if sts.as_deref() != exp.get("string_to_sign").and_then(Value::as_str) {
            failures.push(format!("{name}: string to sign differs"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The vectors cover every outcome code of the spec and both tag encodings.
#[test]
fn vectors_cover_every_outcome() {
    let cases = load();
    assert_every_outcome(&cases);
    let sigs: Vec<String> = cases
        .iter()
        .filter(|c| c["expected"]["outcome"] == "ok")
        .flat_map(|c| c["request"]["headers"].as_array().unwrap().clone())
        .filter(|p| {
            p[0].as_str()
                .unwrap()
                .eq_ignore_ascii_case("x-crawbl-signature")
        })
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect();
    assert!(sigs.iter().any(|s| s.len() == 67), "no valid hex vector");
    assert!(sigs.iter().any(|s| s.len() == 47), "no valid base64 vector");
    assert!(
        cases.iter().any(|c| c["expected"]["key"] == "previous"),
        "no rotation vector"
    );
}
