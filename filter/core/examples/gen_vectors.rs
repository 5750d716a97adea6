//! Writes the spec vectors of `CRAWBL-HMAC-SHA256-V1` (docs/signature-v1-vectors.json).
//!
//! Run: `cargo run -q -p edge-hmac-core --example gen_vectors > docs/signature-v1-vectors.json`
//!
//! Every case starts from a request signed by the Rust signer and is then
//! changed the way a broken client or an attacker would. The file is checked
//! by the Rust verifier (filter/tests/vectors.rs) and by an independent Python
//! implementation (tests/vectors/check_vectors.py), so a signer or verifier
//! bug shows up as a disagreement.
#![allow(missing_docs)]

use base64::Engine as _;
use edge_hmac_core::scheme::{
    Format, Formats, Payload, RequestHead, SecretKey, SignRequest, Signer, TagEncoding,
    UNSIGNED_PAYLOAD, Verifier, VerifierOptions, sha256,
};
use serde_json::{Value, json};

const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const SECRET: &str = "vector-secret-current-0123456789abcdefghijklmnop";
const PREVIOUS: &str = "vector-secret-previous-0123456789abcdefghijklmno";
const OTHER: &str = "vector-secret-unrelated-0123456789abcdefghijklmn";
const AUTHORITY: &str = "api.example.test";
const NONCE: &str = "n-2f1c9a7e4b3d8f60";

#[derive(Clone)]
struct Case {
    name: String,
    secret: String,
    previous_secret: Option<String>,
    environment: String,
    clock_skew_seconds: u64,
    require_nonce: bool,
    max_body_bytes: u64,
    unsigned_payload_allowed: bool,
    now: u64,
    seen_nonces: Vec<String>,
    method: String,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expected: String,
    key: Option<&'static str>,
    /// The verifier's `formats`, when not the default (v1 only).
    formats: Option<Vec<&'static str>>,
}

/// What the client signs (may differ from what is then sent).
#[derive(Clone)]
struct Sign {
    secret: String,
    environment: String,
    method: String,
    authority: String,
    path: String,
    timestamp: u64,
    nonce: Option<String>,
    body: Option<Vec<u8>>,
    /// Sign UNSIGNED-PAYLOAD instead of the body's hash.
    unsigned: bool,
    encoding: TagEncoding,
}

impl Default for Sign {
    fn default() -> Self {
        Sign {
            secret: SECRET.into(),
            environment: "dev".into(),
            method: "GET".into(),
            authority: AUTHORITY.into(),
            path: "/v1/orders?limit=10".into(),
            timestamp: NOW,
            nonce: None,
            body: None,
            unsigned: false,
            encoding: TagEncoding::Hex,
        }
    }
}

fn signed(name: &str, s: &Sign) -> Case {
    let signer = Signer::new(
        SecretKey::new(s.secret.as_bytes(), "current").unwrap(),
        &s.environment,
    )
    .unwrap();
    let req = SignRequest {
        method: &s.method,
        authority: &s.authority,
        path: &s.path,
        timestamp: s.timestamp,
        nonce: s.nonce.as_deref(),
        payload: if s.unsigned {
            Some(Payload::Unsigned)
        } else {
            s.body.as_deref().map(|b| Payload::Sha256(sha256(b)))
        },
    };
    let headers = signer.sign(&req, s.encoding).unwrap();
    Case {
        name: name.into(),
        secret: SECRET.into(),
        previous_secret: None,
        environment: "dev".into(),
        clock_skew_seconds: 300,
        require_nonce: false,
        max_body_bytes: 1024 * 1024,
        unsigned_payload_allowed: false,
        now: NOW,
        seen_nonces: vec![],
        method: s.method.clone(),
        authority: s.authority.clone(),
        path: s.path.clone(),
        headers: headers
            .pairs()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: s.body.clone().unwrap_or_default(),
        expected: "ok".into(),
        key: Some("current"),
        formats: None,
    }
}

impl Case {
    fn expect(mut self, outcome: &str) -> Self {
        self.expected = outcome.into();
        if outcome != "ok" {
            self.key = None;
        }
        self
    }
    fn set_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }
    fn remove_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
    fn duplicate_header(mut self, name: &str) -> Self {
        let found = self
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .cloned()
            .unwrap();
        self.headers.push(found);
        self
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    fn to_json(&self) -> Value {
        let body = match std::str::from_utf8(&self.body) {
            Ok(text) => json!({ "body": text }),
            Err(_) => {
                json!({ "body_base64": base64::engine::general_purpose::STANDARD.encode(&self.body) })
            }
        };
        let mut request = json!({
            "method": self.method,
            "authority": self.authority,
            "path": self.path,
            "headers": self.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        });
        if let (Value::Object(r), Value::Object(b)) = (&mut request, body) {
            r.extend(b);
        }
        let mut expected = json!({ "outcome": self.expected });
        if let Some(k) = self.key {
            expected["key"] = json!(k);
        }
        // What the verifier computes from the request as received (absent
        // when the signature headers are missing or malformed).
        let verifier = Verifier::new(
            &self.environment,
            SecretKey::new(self.secret.as_bytes(), "current").unwrap(),
            None,
            VerifierOptions {
                clock_skew_seconds: self.clock_skew_seconds,
                require_nonce: self.require_nonce,
                formats: match &self.formats {
                    Some(names) => Formats::of(names.iter().map(|n| Format::from_name(n).unwrap())),
                    None => Formats::default(),
                },
            },
        )
        .unwrap();
        let mut pairs: Vec<(&[u8], &[u8])> = vec![
            (b":method", self.method.as_bytes()),
            (b":authority", self.authority.as_bytes()),
            (b":path", self.path.as_bytes()),
        ];
        pairs.extend(
            self.headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        if let Ok(sts) = verifier.string_to_sign(&RequestHead::from_pairs(&pairs)) {
            expected["string_to_sign"] = json!(sts);
        }
        let mut case = json!({
            "name": self.name,
            "verifier": {
                "secret": self.secret,
                "previous_secret": self.previous_secret,
                "environment": self.environment,
                "clock_skew_seconds": self.clock_skew_seconds,
                "require_nonce": self.require_nonce,
                "max_body_bytes": self.max_body_bytes,
                "unsigned_payload_allowed": self.unsigned_payload_allowed,
                "now": self.now,
                "seen_nonces": self.seen_nonces,
            },
            "request": request,
            "expected": expected,
        });
        if let Some(formats) = &self.formats {
            case["verifier"]["formats"] = json!(formats);
        }
        case
    }
}

fn main() {
    let get = Sign::default();
    let post = Sign {
        method: "POST".into(),
        path: "/v1/orders".into(),
        body: Some(br#"{"sku":"A-100","qty":2}"#.to_vec()),
        ..Sign::default()
    };
    let with_nonce = Sign {
        nonce: Some(NONCE.into()),
        ..Sign::default()
    };
    let unsigned = Sign {
        method: "POST".into(),
        path: "/v1/uploads?part=1".into(),
        body: Some(b"chunk-1 chunk-2 chunk-3".to_vec()),
        unsigned: true,
        ..Sign::default()
    };
    let mut cases = vec![
        // Valid requests.
        signed("GET without body, hex tag", &get),
        signed(
            "GET without body, base64 tag",
            &Sign {
                encoding: TagEncoding::Base64,
                ..get.clone()
            },
        ),
        {
            let c = signed("GET, tag in uppercase hex", &get);
            let upper = c.header("x-crawbl-signature")[3..].to_uppercase();
            c.set_header("x-crawbl-signature", &format!("v1={upper}"))
        },
        signed("POST with JSON body, hex tag", &post),
        signed(
            "POST with JSON body, base64 tag",
            &Sign {
                encoding: TagEncoding::Base64,
                ..post.clone()
            },
        ),
        {
            let c = signed("POST, content hash sent in uppercase hex", &post);
            let upper = c.header("x-crawbl-content-sha256").to_uppercase();
            c.set_header("x-crawbl-content-sha256", &upper)
        },
        signed(
            "POST with binary body",
            &Sign {
                body: Some(vec![0, 159, 146, 150, 255, 10, 13]),
                ..post.clone()
            },
        ),
        signed(
            "POST with empty body and explicit empty-body hash",
            &Sign {
                body: Some(Vec::new()),
                ..post.clone()
            },
        ),
        signed("GET with nonce", &with_nonce),
        {
            let mut c = signed("nonce required and present", &with_nonce);
            c.require_nonce = true;
            c
        },
        signed(
            "percent-encoded path and query are signed verbatim",
            &Sign {
                path: "/v1/files/a%2Fb%20c?q=%C3%A9t%C3%A9&x=1%2B1".into(),
                ..get.clone()
            },
        ),
        signed(
            "non-ASCII UTF-8 path bytes are signed verbatim",
            &Sign {
                path: "/v1/caf\u{e9}/\u{65e5}\u{672c}".into(),
                ..get.clone()
            },
        ),
        signed(
            "authority with port is signed with the port",
            &Sign {
                authority: "api.example.test:8443".into(),
                ..get.clone()
            },
        ),
        {
            let c = signed(
                "authority is compared ASCII-lowercased",
                &Sign {
                    authority: "API.Example.TEST".into(),
                    ..get.clone()
                },
            );
            let mut c = c;
            c.authority = "api.EXAMPLE.test".into();
            c
        },
        signed(
            "timestamp exactly clock_skew_seconds in the past",
            &Sign {
                timestamp: NOW - 300,
                ..get.clone()
            },
        ),
        signed(
            "timestamp exactly clock_skew_seconds in the future",
            &Sign {
                timestamp: NOW + 300,
                ..get.clone()
            },
        ),
        {
            // Timestamps are signed verbatim: leading zeros are part of the string.
            let mut c = signed("timestamp with a leading zero, signed verbatim", &get);
            let signer =
                Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
            // Sign by hand through the primitive: the signer only emits canonical numbers.
            let sts = signer
                .string_to_sign(&SignRequest {
                    method: "GET",
                    authority: AUTHORITY,
                    path: &get.path,
                    timestamp: NOW,
                    nonce: None,
                    payload: None,
                })
                .replacen(&format!("\n{NOW}\n"), &format!("\n0{NOW}\n"), 1);
            let tag = edge_hmac_core::scheme::hmac_sha256(SECRET.as_bytes(), sts.as_bytes());
            c = c
                .set_header("x-crawbl-timestamp", &format!("0{NOW}"))
                .set_header("x-crawbl-signature", &format!("v1={}", hex::encode(tag)));
            c
        },
        {
            let mut c = signed(
                "header names in mixed case",
                &Sign {
                    nonce: Some(NONCE.into()),
                    ..post.clone()
                },
            );
            c.headers = c
                .headers
                .iter()
                .map(|(n, v)| {
                    let mixed = n
                        .split('-')
                        .map(|p| {
                            let mut cs = p.chars();
                            cs.next()
                                .map(|f| f.to_uppercase().collect::<String>() + cs.as_str())
                                .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join("-");
                    (mixed, v.clone())
                })
                .collect();
            c
        },
        signed(
            "secret longer than the SHA-256 block (hashed key)",
            &Sign {
                secret: "k".repeat(100),
                ..get.clone()
            },
        ),
        signed(
            "secret with non-ASCII UTF-8 characters",
            &Sign {
                secret: "cl\u{e9}-secr\u{e8}te-\u{1f511}-0123456789abcdef-xyz".into(),
                ..get.clone()
            },
        ),
        // Rotation.
        {
            let mut c = signed(
                "signed with the previous key during rotation",
                &Sign {
                    secret: PREVIOUS.into(),
                    ..get.clone()
                },
            );
            c.previous_secret = Some(PREVIOUS.into());
            c.key = Some("previous");
            c
        },
        {
            let mut c = signed(
                "signed with the current key while a previous key is set",
                &get,
            );
            c.previous_secret = Some(PREVIOUS.into());
            c
        },
        {
            let mut c = signed(
                "previous key no longer configured",
                &Sign {
                    secret: PREVIOUS.into(),
                    ..get.clone()
                },
            )
            .expect("invalid_signature");
            c.previous_secret = None;
            c
        },
        // missing_signature
        signed("no signature header", &get)
            .remove_header("x-crawbl-signature")
            .expect("missing_signature"),
        signed("no timestamp header", &get)
            .remove_header("x-crawbl-timestamp")
            .expect("missing_signature"),
        {
            let mut c = signed("nonce required but absent", &get).expect("missing_signature");
            c.require_nonce = true;
            c
        },
        // unsupported_format: signed, in a format the verifier leaves out.
        {
            let mut c = signed("v1 signature, verifier accepts rfc9421 only", &get)
                .expect("unsupported_format");
            c.formats = Some(vec!["rfc9421"]);
            c
        },
        signed("missing wins over malformed", &get)
            .remove_header("x-crawbl-signature")
            .set_header("x-crawbl-timestamp", "yesterday")
            .expect("missing_signature"),
        // malformed_signature
        signed("signature header twice", &get)
            .duplicate_header("x-crawbl-signature")
            .expect("malformed_signature"),
        signed("timestamp header twice", &get)
            .duplicate_header("x-crawbl-timestamp")
            .expect("malformed_signature"),
        signed("nonce header twice", &with_nonce)
            .duplicate_header("x-crawbl-nonce")
            .expect("malformed_signature"),
        signed("content hash header twice", &post)
            .duplicate_header("x-crawbl-content-sha256")
            .expect("malformed_signature"),
        {
            let c = signed("unknown scheme v2=", &get);
            let tag = c.header("x-crawbl-signature")[3..].to_string();
            c.set_header("x-crawbl-signature", &format!("v2={tag}"))
                .expect("malformed_signature")
        },
        {
            let c = signed("hex tag one digit short", &get);
            let tag = c.header("x-crawbl-signature")[..66].to_string();
            c.set_header("x-crawbl-signature", &tag)
                .expect("malformed_signature")
        },
        {
            let c = signed(
                "base64 tag without padding",
                &Sign {
                    encoding: TagEncoding::Base64,
                    ..get.clone()
                },
            );
            let tag = c
                .header("x-crawbl-signature")
                .trim_end_matches('=')
                .to_string();
            c.set_header("x-crawbl-signature", &tag)
                .expect("malformed_signature")
        },
        {
            let c = signed(
                "base64url alphabet instead of standard base64",
                &Sign {
                    encoding: TagEncoding::Base64,
                    ..get.clone()
                },
            );
            let tag = c
                .header("x-crawbl-signature")
                .replace('+', "-")
                .replace('/', "_");
            let c = c.set_header("x-crawbl-signature", &tag);
            // Only malformed when the tag really contains + or /.
            let outcome = if tag.contains('-') || tag.contains('_') {
                "malformed_signature"
            } else {
                "ok"
            };
            c.expect(outcome)
        },
        signed("timestamp with 13 digits", &get)
            .set_header("x-crawbl-timestamp", "1767225600000")
            .expect("malformed_signature"),
        signed("timestamp with a sign", &get)
            .set_header("x-crawbl-timestamp", "+1767225600")
            .expect("malformed_signature"),
        signed("timestamp in milliseconds with a fraction", &get)
            .set_header("x-crawbl-timestamp", "1767225600.5")
            .expect("malformed_signature"),
        signed("nonce of 15 characters", &get)
            .set_header("x-crawbl-nonce", "abcdefghijklmno")
            .expect("malformed_signature"),
        signed("nonce with a character outside the set", &get)
            .set_header("x-crawbl-nonce", "abcdefgh/ijklmnop")
            .expect("malformed_signature"),
        signed("nonce of 129 characters", &get)
            .set_header("x-crawbl-nonce", &"n".repeat(129))
            .expect("malformed_signature"),
        {
            let c = signed("content hash of 63 hex digits", &post);
            let h = c.header("x-crawbl-content-sha256")[..63].to_string();
            c.set_header("x-crawbl-content-sha256", &h)
                .expect("malformed_signature")
        },
        signed("malformed wins over stale", &get)
            .set_header("x-crawbl-timestamp", "1000")
            .set_header("x-crawbl-nonce", "short")
            .expect("malformed_signature"),
        // stale_timestamp
        signed(
            "timestamp one second beyond the skew in the past",
            &Sign {
                timestamp: NOW - 301,
                ..get.clone()
            },
        )
        .expect("stale_timestamp"),
        signed(
            "timestamp one second beyond the skew in the future",
            &Sign {
                timestamp: NOW + 301,
                ..get.clone()
            },
        )
        .expect("stale_timestamp"),
        signed(
            "stale wins over invalid",
            &Sign {
                timestamp: NOW - 3600,
                secret: OTHER.into(),
                ..get.clone()
            },
        )
        .expect("stale_timestamp"),
        // invalid_signature
        signed(
            "signed with an unrelated key",
            &Sign {
                secret: OTHER.into(),
                ..get.clone()
            },
        )
        .expect("invalid_signature"),
        signed(
            "signed for another environment",
            &Sign {
                environment: "prod".into(),
                ..get.clone()
            },
        )
        .expect("invalid_signature"),
        {
            let mut c = signed("path changed after signing", &get).expect("invalid_signature");
            c.path = "/v1/orders?limit=1000".into();
            c
        },
        {
            let mut c = signed(
                "query parameters reordered after signing",
                &Sign {
                    path: "/v1/orders?b=2&a=1".into(),
                    ..get.clone()
                },
            )
            .expect("invalid_signature");
            c.path = "/v1/orders?a=1&b=2".into();
            c
        },
        {
            let mut c = signed(
                "method case is significant",
                &Sign {
                    method: "get".into(),
                    ..get.clone()
                },
            )
            .expect("invalid_signature");
            c.method = "GET".into();
            c
        },
        {
            let mut c = signed("port added to the authority after signing", &get)
                .expect("invalid_signature");
            c.authority = "api.example.test:443".into();
            c
        },
        {
            let c = signed("timestamp changed after signing", &get);
            c.set_header("x-crawbl-timestamp", &(NOW + 1).to_string())
                .expect("invalid_signature")
        },
        {
            let c = signed("content hash header changed with the body", &post);
            let body = br#"{"sku":"A-100","qty":20}"#.to_vec();
            let mut c = c
                .set_header("x-crawbl-content-sha256", &hex::encode(sha256(&body)))
                .expect("invalid_signature");
            c.body = body;
            c
        },
        {
            let mut c = signed(
                "replayed nonce with an invalid tag is invalid, not replayed",
                &with_nonce,
            )
            .expect("invalid_signature");
            c.secret = OTHER.into();
            c.seen_nonces = vec![NONCE.into()];
            c
        },
        // replayed_request
        {
            let mut c = signed("nonce already accepted", &with_nonce).expect("replayed_request");
            c.seen_nonces = vec![NONCE.into()];
            c
        },
        // content_mismatch
        {
            let mut c = signed("body changed after signing", &post).expect("content_mismatch");
            c.body = br#"{"sku":"A-100","qty":9}"#.to_vec();
            c
        },
        {
            let mut c =
                signed("body sent without a content hash header", &get).expect("content_mismatch");
            c.method = "GET".into();
            c.body = b"unexpected".to_vec();
            c
        },
        {
            let mut c = signed("signed body missing", &post).expect("content_mismatch");
            c.body = Vec::new();
            c
        },
        // body_too_large
        {
            let mut c = signed("body one byte over max_body_bytes", &post).expect("body_too_large");
            c.max_body_bytes = c.body.len() as u64 - 1;
            c
        },
        {
            let mut c = signed("body exactly max_body_bytes", &post);
            c.max_body_bytes = c.body.len() as u64;
            c
        },
        // UNSIGNED-PAYLOAD (field 8 is the literal; the body is not covered).
        {
            let mut c = signed("UNSIGNED-PAYLOAD on an unsigned-payload path", &unsigned);
            c.unsigned_payload_allowed = true;
            c
        },
        {
            let mut c = signed(
                "UNSIGNED-PAYLOAD with a body over max_body_bytes on an unsigned-payload path",
                &unsigned,
            );
            c.unsigned_payload_allowed = true;
            c.max_body_bytes = 4;
            c
        },
        {
            let mut c = signed(
                "UNSIGNED-PAYLOAD body changed after signing on an unsigned-payload path",
                &unsigned,
            );
            c.unsigned_payload_allowed = true;
            c.body = b"another body entirely".to_vec();
            c
        },
        signed(
            "UNSIGNED-PAYLOAD on a path that does not allow it",
            &unsigned,
        )
        .expect("malformed_signature"),
        {
            let mut c = signed("UNSIGNED-PAYLOAD in lowercase", &unsigned)
                .set_header("x-crawbl-content-sha256", "unsigned-payload")
                .expect("malformed_signature");
            c.unsigned_payload_allowed = true;
            c
        },
        {
            // A body hash cannot be swapped for the literal to get out of the body check.
            let mut c = signed(
                "body hash replaced by UNSIGNED-PAYLOAD after signing",
                &post,
            )
            .set_header("x-crawbl-content-sha256", UNSIGNED_PAYLOAD)
            .expect("invalid_signature");
            c.unsigned_payload_allowed = true;
            c
        },
        {
            let mut c = signed(
                "UNSIGNED-PAYLOAD replaced by the body hash after signing",
                &unsigned,
            );
            let hash = hex::encode(sha256(&c.body));
            c = c
                .set_header("x-crawbl-content-sha256", &hash)
                .expect("invalid_signature");
            c.unsigned_payload_allowed = true;
            c
        },
    ];
    // Rotation cases carry their own secrets; unrelated-key cases are signed
    // with OTHER but verified with SECRET, which `signed` already arranges.
    for c in &mut cases {
        if c.name == "signed with the previous key during rotation" {
            c.secret = SECRET.into();
        }
        if c.name.starts_with("secret longer") {
            c.secret = "k".repeat(100);
        }
        if c.name.starts_with("secret with non-ASCII") {
            c.secret = "cl\u{e9}-secr\u{e8}te-\u{1f511}-0123456789abcdef-xyz".into();
        }
    }
    let doc = json!({
        "scheme": "CRAWBL-HMAC-SHA256-V1",
        "spec": "docs/signature-v1.md",
        "notes": "Each case: a verifier (keys, environment, options, clock, nonces already accepted; unsigned_payload_allowed: the request's path is one of unsigned_payload_paths) and a request as the verifier receives it. expected.outcome is 'ok' or the outcome code; expected.string_to_sign is given where the signature headers are well-formed. Bodies are UTF-8 text in 'body' or bytes in 'body_base64'.",
        "cases": cases.iter().map(Case::to_json).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}
