//! Signs a request with a fresh random-looking key and verifies it, then
//! tampers with it: the scheme end to end, in one process.
//!
//! Run: `cargo run -q -p edge-hmac-core --example demo`
#![allow(missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

use edge_hmac_core::scheme::{
    Payload, RequestHead, SecretKey, SignRequest, Signer, TagEncoding, Verifier, VerifierOptions,
    sha256,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    // Demo key derived from the clock: never use anything like this for real.
    let secret = hex::encode(sha256(format!("demo-{now}").as_bytes()));
    let signer = Signer::new(SecretKey::new(secret.as_bytes(), "current")?, "dev")?;
    let body = br#"{"sku":"A-100","qty":2}"#;
    let request = SignRequest {
        method: "POST",
        authority: "api.example.test",
        path: "/v1/orders?dry_run=true",
        timestamp: now,
        nonce: Some("demo-nonce-000000001"),
        payload: Some(Payload::Sha256(sha256(body))),
    };
    let headers = signer.sign(&request, TagEncoding::Hex)?;
    println!("string to sign:\n{}\n", signer.string_to_sign(&request));
    println!("headers:");
    for (name, value) in headers.pairs() {
        println!("  {name}: {value}");
    }

    let verifier = Verifier::new(
        "dev",
        SecretKey::new(secret.as_bytes(), "current")?,
        None,
        VerifierOptions::default(),
    )?;
    for (label, path, sent_body) in [
        ("as signed", request.path, &body[..]),
        ("path changed", "/v1/orders?dry_run=false", &body[..]),
        (
            "body changed",
            request.path,
            &br#"{"sku":"A-100","qty":200}"#[..],
        ),
    ] {
        let mut pairs = vec![
            (":method", "POST"),
            (":authority", "api.example.test"),
            (":path", path),
        ];
        pairs.extend(headers.pairs());
        let head = RequestHead::from_str_pairs(&pairs);
        let outcome = verifier.verify_headers(&head, now).and_then(|ok| {
            // The demo signs a body hash, so there is always a check.
            let Some(mut check) = ok.body_verifier(1 << 20) else {
                return Ok(());
            };
            check.update(sent_body)?;
            check.finish()
        });
        match outcome {
            Ok(()) => println!("{label:>13}: verified"),
            Err(rejection) => println!("{label:>13}: refused ({rejection})"),
        }
    }
    Ok(())
}
