//! Writes the profile vectors of the RFC 9421 `hmac-sha256` profile
//! (docs/signature-rfc9421-vectors.json).
//!
//! Run: `cargo run -q -p edge-hmac-core --example gen_vectors_rfc9421 > docs/signature-rfc9421-vectors.json`
//!
//! Every case starts from a request signed by the Rust signer
//! (`Signer::sign_rfc9421`) and is then changed the way a broken client or
//! an attacker would. The file is checked by the Rust verifier
//! (filter/tests/vectors.rs) and by an independent Python implementation
//! (tests/vectors/check_rfc9421_vectors.py).
#![allow(missing_docs)]

use edge_hmac_core::scheme::rfc9421::{Rfc9421Request, content_digest_header};
use edge_hmac_core::scheme::{
    Format, Formats, RequestHead, SecretKey, Signer, Verifier, VerifierOptions, fingerprint,
};
use serde_json::{Value, json};

const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const SECRET: &str = "vector-secret-current-0123456789abcdefghijklmnop";
const PREVIOUS: &str = "vector-secret-previous-0123456789abcdefghijklmno";
const PENDING: &str = "vector-secret-pending-0123456789abcdefghijklmnop";
const OTHER: &str = "vector-secret-unrelated-0123456789abcdefghijklmn";
const AUTHORITY: &str = "api.example.test";
const NONCE: &str = "n-2f1c9a7e4b3d8f60";

#[derive(Clone)]
struct Case {
    name: String,
    formats: Vec<&'static str>,
    require_nonce: bool,
    max_body_bytes: u64,
    unsigned_payload_allowed: bool,
    now: u64,
    seen_nonces: Vec<String>,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expected: String,
    key: Option<&'static str>,
    /// `:scheme` as the client sends it.
    scheme: &'static str,
    /// `:authority` as the client sends it.
    authority: String,
    /// Whether the proxy received the request over TLS (`None`: unknown,
    /// `:scheme` stands in).
    tls: Option<bool>,
}

/// What the client signs.
#[derive(Clone)]
struct Sign {
    secret: &'static str,
    environment: &'static str,
    method: &'static str,
    path: &'static str,
    created: u64,
    expires: Option<u64>,
    nonce: Option<&'static str>,
    body: Option<Vec<u8>>,
    fields: Vec<(&'static str, &'static str)>,
}

impl Default for Sign {
    fn default() -> Self {
        Sign {
            secret: SECRET,
            environment: "dev",
            method: "GET",
            path: "/v1/orders?limit=10",
            created: NOW,
            expires: None,
            nonce: None,
            body: None,
            fields: vec![],
        }
    }
}

fn signed(name: &str, s: &Sign) -> Case {
    let signer = Signer::new(
        SecretKey::new(s.secret.as_bytes(), "current").unwrap(),
        s.environment,
    )
    .unwrap();
    let digest = s.body.as_deref().map(content_digest_header);
    let h = signer
        .sign_rfc9421(&Rfc9421Request {
            method: s.method,
            scheme: "https",
            authority: AUTHORITY,
            path: s.path,
            created: s.created,
            expires: s.expires,
            nonce: s.nonce,
            content_digest: digest.as_deref(),
            fields: &s.fields,
        })
        .unwrap();
    let mut headers: Vec<(String, String)> = s
        .fields
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    if let Some(b) = &s.body {
        headers.push(("content-length".into(), b.len().to_string()));
    }
    headers.extend(
        h.pairs()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string())),
    );
    Case {
        name: name.into(),
        formats: vec!["rfc9421"],
        require_nonce: false,
        max_body_bytes: 1024 * 1024,
        unsigned_payload_allowed: false,
        now: NOW,
        seen_nonces: vec![],
        method: s.method.into(),
        path: s.path.into(),
        headers,
        body: s.body.clone().unwrap_or_default(),
        expected: "ok".into(),
        key: Some("current"),
        scheme: "https",
        authority: AUTHORITY.into(),
        tls: None,
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
    fn key(mut self, key: &'static str) -> Self {
        self.key = Some(key);
        self
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
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
    /// Edits the Signature-Input text (the signature no longer matches
    /// unless the check fails before the tag is compared).
    fn edit_input(self, from: &str, to: &str) -> Self {
        let v = self.header("signature-input");
        assert!(v.contains(from), "{from} not in {v}");
        self.set_header("signature-input", &v.replacen(from, to, 1))
    }

    fn to_json(&self) -> Value {
        let mut expected = json!({ "outcome": self.expected });
        if let Some(k) = self.key {
            expected["key"] = json!(k);
        }
        // The signature base the verifier computes from the request as
        // received (absent when the headers are missing or malformed).
        let verifier = Verifier::new(
            "dev",
            SecretKey::new(SECRET.as_bytes(), "current").unwrap(),
            None,
            VerifierOptions {
                formats: Formats::of(self.formats.iter().map(|f| Format::from_name(f).unwrap())),
                require_nonce: self.require_nonce,
                ..VerifierOptions::default()
            },
        )
        .unwrap();
        let mut pairs: Vec<(&str, &str)> = vec![
            (":method", &self.method),
            (":scheme", self.scheme),
            (":authority", &self.authority),
            (":path", &self.path),
        ];
        pairs.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let mut head = RequestHead::from_str_pairs(&pairs);
        head.tls = self.tls;
        if let Ok(base) = verifier.string_to_sign(&head) {
            expected["string_to_sign"] = json!(base);
        }
        json!({
            "name": self.name,
            "verifier": {
                "formats": self.formats,
                "secret": SECRET,
                "previous_secret": PREVIOUS,
                "pending_secret": PENDING,
                "environment": "dev",
                "clock_skew_seconds": 300,
                "require_nonce": self.require_nonce,
                "max_body_bytes": self.max_body_bytes,
                "unsigned_payload_allowed": self.unsigned_payload_allowed,
                "now": self.now,
                "seen_nonces": self.seen_nonces,
            },
            "request": {
                "method": self.method,
                "scheme": self.scheme,
                "authority": self.authority,
                "path": self.path,
                "headers": self.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "body": String::from_utf8(self.body.clone()).unwrap(),
            },
            "connection": match self.tls {
                Some(tls) => json!({ "tls": tls }),
                None => json!({}),
            },
            "expected": expected,
        })
    }
}

fn main() {
    let get = Sign::default();
    let body = br#"{"sku":"A-100","qty":2}"#.to_vec();
    let post = Sign {
        method: "POST",
        path: "/v1/orders",
        body: Some(body.clone()),
        fields: vec![("content-type", "application/json")],
        ..Sign::default()
    };
    let with_nonce = Sign {
        nonce: Some(NONCE),
        ..Sign::default()
    };
    let fp = fingerprint(SECRET.as_bytes());
    let mut cases = vec![
        // Valid requests.
        signed("GET with a query", &get),
        signed(
            "GET without a query (@query is ?)",
            &Sign {
                path: "/v1/orders",
                ..get.clone()
            },
        ),
        signed("POST with Content-Digest and a covered content-type", &post),
        signed("GET with a nonce", &with_nonce),
        signed(
            "GET with expires in the future",
            &Sign {
                expires: Some(NOW + 60),
                ..get.clone()
            },
        ),
        {
            let mut c = signed("GET accepted with both formats on", &get);
            c.formats = vec!["v1", "rfc9421"];
            c
        },
        // Rotation: keyid selects the slot.
        signed(
            "GET signed with the previous key",
            &Sign {
                secret: PREVIOUS,
                ..get.clone()
            },
        )
        .key("previous"),
        signed(
            "GET signed with the pending key",
            &Sign {
                secret: PENDING,
                ..get.clone()
            },
        )
        .key("pending"),
        signed(
            "keyid unknown",
            &Sign {
                secret: OTHER,
                ..get.clone()
            },
        )
        .expect("invalid_signature"),
        signed(
            "keyid of the current key, tag from the previous key",
            &Sign {
                secret: PREVIOUS,
                ..get.clone()
            },
        )
        .edit_input(&fingerprint(PREVIOUS.as_bytes()), &fp)
        .expect("invalid_signature"),
        // missing_signature
        signed("no Signature-Input", &get)
            .remove_header("signature-input")
            .expect("missing_signature"),
        signed("no Signature", &get)
            .remove_header("signature")
            .expect("missing_signature"),
        {
            let mut c = signed("no nonce while require_nonce", &get).expect("missing_signature");
            c.require_nonce = true;
            c
        },
        {
            let mut c =
                signed("RFC 9421 request with only v1 enabled", &get).expect("unsupported_format");
            c.formats = vec!["v1"];
            c
        },
        // malformed_signature: the profile.
        signed("Signature-Input not a dictionary", &get)
            .set_header("signature-input", "sig1=(\"@method\"")
            .expect("malformed_signature"),
        {
            let c = signed("two signatures", &get);
            let sig = c.header("signature");
            let input = c.header("signature-input");
            c.set_header(
                "signature-input",
                &format!("{input}, {}", input.replacen("sig1=", "sig2=", 1)),
            )
            .set_header(
                "signature",
                &format!("{sig}, {}", sig.replacen("sig1=", "sig2=", 1)),
            )
            .expect("malformed_signature")
        },
        {
            let c = signed("labels differ", &get);
            let sig = c.header("signature").replacen("sig1=", "other=", 1);
            c.set_header("signature", &sig)
                .expect("malformed_signature")
        },
        signed("@query not covered", &get)
            .edit_input(" \"@query\"", "")
            .expect("malformed_signature"),
        signed("@authority not covered", &get)
            .edit_input(" \"@authority\"", "")
            .expect("malformed_signature"),
        signed("no created", &get)
            .edit_input(&format!(";created={NOW}"), "")
            .expect("malformed_signature"),
        signed("no keyid", &get)
            .edit_input(&format!(";keyid=\"{fp}\""), "")
            .expect("malformed_signature"),
        signed("no tag", &get)
            .edit_input(";tag=\"dev\"", "")
            .expect("malformed_signature"),
        signed("alg is not hmac-sha256", &get)
            .edit_input("alg=\"hmac-sha256\"", "alg=\"ed25519\"")
            .expect("malformed_signature"),
        signed("created is a string", &get)
            .edit_input(&format!("created={NOW}"), &format!("created=\"{NOW}\""))
            .expect("malformed_signature"),
        signed(
            "nonce too short",
            &Sign {
                nonce: Some(NONCE),
                ..get.clone()
            },
        )
        .edit_input(NONCE, "short")
        .expect("malformed_signature"),
        // A repeated key is refused, not resolved "last one wins": an
        // application re-reading the header first-wins would see another
        // value than the edge checked.
        signed("created repeated (first value differs)", &get)
            .edit_input(
                &format!("created={NOW}"),
                &format!("created=1;created={NOW}"),
            )
            .expect("malformed_signature"),
        signed(
            "nonce repeated",
            &Sign {
                nonce: Some(NONCE),
                ..get.clone()
            },
        )
        .edit_input(
            &format!("nonce=\"{NONCE}\""),
            &format!("nonce=\"n-0000000000000000\";nonce=\"{NONCE}\""),
        )
        .expect("malformed_signature"),
        signed("covered component repeated", &get)
            .edit_input("\"@method\"", "\"@method\" \"@method\"")
            .expect("malformed_signature"),
        {
            let c = signed("Signature label repeated", &get);
            let sig = c.header("signature");
            c.set_header("signature", &format!("sig1=:{}=:, {sig}", "A".repeat(43)))
                .expect("malformed_signature")
        },
        {
            let c = signed("Content-Digest member repeated", &post);
            let cd = c.header("content-digest");
            c.set_header("content-digest", &format!("{cd}, {cd}"))
                .expect("malformed_signature")
        },
        signed("covered component with parameters", &get)
            .edit_input("\"@method\"", "\"@method\";req")
            .expect("malformed_signature"),
        signed("@status is not a request component", &get)
            .edit_input("\"@method\"", "\"@method\" \"@status\"")
            .expect("malformed_signature"),
        signed("covered field absent", &post)
            .remove_header("content-type")
            .expect("malformed_signature"),
        signed("body declared, content-digest not covered", &post)
            .edit_input(" \"content-digest\"", "")
            .expect("malformed_signature"),
        signed("Content-Digest without sha-256 or sha-512", &post)
            .set_header("content-digest", "md5=:AAAAAAAAAAAAAAAAAAAAAA==:")
            .expect("malformed_signature"),
        signed("Signature not 32 bytes", &get)
            .set_header("signature", "sig1=:AAAA:")
            .expect("malformed_signature"),
        {
            let c = signed("both v1 and RFC 9421 headers", &get)
                .set_header("x-crawbl-signature", &format!("v1={}", "0".repeat(64)));
            let mut c = c.expect("malformed_signature");
            c.formats = vec!["v1", "rfc9421"];
            c
        },
        // stale_timestamp
        signed(
            "created 301 s ago",
            &Sign {
                created: NOW - 301,
                ..get.clone()
            },
        )
        .expect("stale_timestamp"),
        signed(
            "created 301 s ahead",
            &Sign {
                created: NOW + 301,
                ..get.clone()
            },
        )
        .expect("stale_timestamp"),
        signed(
            "expired",
            &Sign {
                expires: Some(NOW - 1),
                ..get.clone()
            },
        )
        .expect("stale_timestamp"),
        // invalid_signature: tampering after signing.
        signed(
            "tag for another environment",
            &Sign {
                environment: "prod",
                ..get.clone()
            },
        )
        .expect("invalid_signature"),
        signed(
            "tag parameter changed to dev",
            &Sign {
                environment: "prod",
                ..get.clone()
            },
        )
        .edit_input("tag=\"prod\"", "tag=\"dev\"")
        .expect("invalid_signature"),
        // The scheme is the connection's, not the client's claim: a request
        // signed for https://api.example.test cannot pass a TLS listener as
        // `http` with `:80` (the port is not dropped there).
        {
            let mut c = signed("claimed http with :80 on a TLS connection", &get);
            c.scheme = "http";
            c.authority = format!("{AUTHORITY}:80");
            c.tls = Some(true);
            c.expect("invalid_signature")
        },
        {
            let mut c = signed("default port :443 on a TLS connection", &get);
            c.authority = format!("{AUTHORITY}:443");
            c.tls = Some(true);
            c
        },
        {
            let mut c = signed("claimed https with :443 on a plain connection", &get);
            c.authority = format!("{AUTHORITY}:443");
            c.tls = Some(false);
            c.expect("invalid_signature")
        },
        {
            let mut c = signed("path changed", &get);
            c.path = "/v1/orders/1?limit=10".into();
            c.expect("invalid_signature")
        },
        {
            let mut c = signed("query changed", &get);
            c.path = "/v1/orders?limit=1000".into();
            c.expect("invalid_signature")
        },
        {
            let mut c = signed("method changed", &post);
            c.method = "PUT".into();
            c.expect("invalid_signature")
        },
        signed("covered header changed", &post)
            .set_header("content-type", "text/plain")
            .expect("invalid_signature"),
        signed("Content-Digest changed with the body", &post)
            .set_header(
                "content-digest",
                &content_digest_header(br#"{"sku":"A-100","qty":9}"#),
            )
            .expect("invalid_signature"),
        signed("created changed", &get)
            .edit_input(&format!("created={NOW}"), &format!("created={}", NOW - 1))
            .expect("invalid_signature"),
        // replayed_request
        {
            let mut c = signed("nonce already seen", &with_nonce).expect("replayed_request");
            c.seen_nonces = vec![NONCE.into()];
            c
        },
        // content_mismatch / body_too_large
        {
            let mut c =
                signed("body changed, Content-Digest kept", &post).expect("content_mismatch");
            c.body = br#"{"sku":"A-100","qty":9}"#.to_vec();
            c
        },
        {
            let mut c =
                signed("body sent without content-digest covered", &get).expect("content_mismatch");
            c.body = b"surprise".to_vec();
            c
        },
        {
            let mut c = signed("body over max_body_bytes", &post).expect("body_too_large");
            c.max_body_bytes = 8;
            c
        },
        // Unsigned-payload paths: no content-digest, the body streams.
        {
            let mut c = signed(
                "unsigned-payload path, content-digest not covered",
                &Sign {
                    method: "PUT",
                    path: "/v1/uploads?part=1",
                    ..get.clone()
                },
            );
            c.unsigned_payload_allowed = true;
            c.body = b"chunk-1 chunk-2".to_vec();
            c.headers.insert(0, ("content-length".into(), "15".into()));
            c
        },
    ];
    for c in &mut cases {
        if c.expected != "ok" {
            c.key = None;
        }
    }
    let doc = json!({
        "scheme": "RFC9421-HMAC-SHA256-PROFILE-1",
        "description": "Vectors of the RFC 9421 hmac-sha256 profile (docs/signature-rfc9421.md). Each case: the verifier's configuration, the request as received (pseudo-headers as method/scheme/authority/path), and the expected outcome, key slot and signature base.",
        "cases": cases.iter().map(Case::to_json).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&doc).unwrap());
}
