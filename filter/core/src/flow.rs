//! What the filter does with a request, as pure functions of the request and
//! the compiled configuration. The proxy-wasm contexts only collect input,
//! call these, and act on the answer.

use crate::config::FilterConfig;
use crate::replay::Nonces;
use crate::scheme::{BodyVerifier, Detail, Format, KeyUsed, Reject, Rejection, RequestHead};

/// Why a request passed without verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The path is in `exempt_paths`.
    ExemptPath,
    /// A CORS preflight, with `allow_cors_preflight` on.
    CorsPreflight,
}

/// Headers removed from a request that passes unsigned (an exempt path or a
/// CORS preflight) before it goes upstream: the well-known URL and method
/// override headers, which frameworks and proxies behind the edge honour to
/// route or dispatch a request as another path or method
/// (`X-Original-URL: /admin` on `GET /healthz`). A signed request keeps them:
/// its sender is authenticated.
pub const UNSIGNED_STRIPPED_HEADERS: [&str; 11] = [
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// The entries of [`UNSIGNED_STRIPPED_HEADERS`] that `head` carries (each
/// once, in the list's order), for the host to remove.
pub fn headers_to_strip(head: &RequestHead<'_>) -> Vec<&'static str> {
    let mut present = [false; UNSIGNED_STRIPPED_HEADERS.len()];
    head.fields.for_each(|name, _| {
        // Every listed name starts with "x-": skip the rest after one compare.
        if name.len() >= 12 && name[..2].eq_ignore_ascii_case(b"x-") {
            for (seen, listed) in present.iter_mut().zip(UNSIGNED_STRIPPED_HEADERS) {
                *seen |= name.eq_ignore_ascii_case(listed.as_bytes());
            }
        }
    });
    UNSIGNED_STRIPPED_HEADERS
        .into_iter()
        .zip(present)
        .filter_map(|(name, seen)| seen.then_some(name))
        .collect()
}

/// What happens to the request stream after its headers were verified.
#[derive(Debug)]
pub enum Body {
    /// The request has no body (end of stream at the headers).
    Empty,
    /// Hold the body back until its SHA-256 matches the signed one.
    Check(BodyVerifier),
    /// Signed as `UNSIGNED-PAYLOAD` on an unsigned-payload path: the body
    /// streams through unread.
    Unsigned,
    /// An upgrade (websocket, `CONNECT`): hold any request data until the
    /// upstream accepts the upgrade (see [`upgrade_accepted`]), then pass the
    /// stream through unread both ways. Data is dropped if it refuses.
    Upgrade {
        /// The request is a `CONNECT` (accepted by a 2xx, not only 101).
        connect: bool,
    },
}

/// The decision taken on the request headers.
#[derive(Debug)]
pub enum HeadersDecision {
    /// Let it through unverified.
    Skip(Skip),
    /// Answer with this rejection; nothing goes upstream.
    Reject(Rejection),
    /// Headers verified: continue them upstream, and treat the rest of the
    /// stream as `body` says.
    Verified {
        /// Which key matched.
        key: KeyUsed,
        /// What to do with the rest of the request stream.
        body: Body,
        /// The body is not signed (v1 `UNSIGNED-PAYLOAD`, or RFC 9421
        /// without `content-digest` on an unsigned-payload path).
        unsigned_payload: bool,
        /// The wire format the request was signed in.
        format: Format,
        /// The nonce the shared store must claim before the request is
        /// accepted (only with a `nonce_store`; the local table has no
        /// live entry for it).
        claim: Option<NonceClaim>,
    },
}

/// A nonce to be claimed in the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceClaim {
    /// The nonce as signed.
    pub nonce: String,
    /// The request's signed timestamp.
    pub timestamp: u64,
}

/// Decides on a request from its headers, at Unix time `now`.
/// `end_of_stream` is true when the request has no body.
pub fn on_request_headers(
    config: &FilterConfig,
    head: &RequestHead<'_>,
    now: u64,
    end_of_stream: bool,
    nonces: &mut impl Nonces,
) -> HeadersDecision {
    // Exempt paths and preflights are for requests that carry nothing: no
    // body and no upgraded stream. Anything else there is verified.
    let carries_nothing = end_of_stream && !head.upgrade;
    // Exempt paths are for health checks: GET and HEAD only. Any other
    // method on an exempt path is verified like every request.
    if carries_nothing && matches!(head.method, b"GET" | b"HEAD") && config.is_exempt(head.path) {
        return HeadersDecision::Skip(Skip::ExemptPath);
    }
    // A CORS preflight as browsers send it: OPTIONS with Origin and
    // Access-Control-Request-Method, and no body. Anything else is verified.
    if config.allow_cors_preflight
        && carries_nothing
        && head.method == b"OPTIONS"
        && head.cors_request_method
        && head.origin
    {
        return HeadersDecision::Skip(Skip::CorsPreflight);
    }
    let unsigned_allowed = config.allows_unsigned_payload(head.path);
    let verified = match config
        .verifier
        .verify_headers_on(head, now, unsigned_allowed)
    {
        Ok(v) => v,
        Err(rejection) => {
            return HeadersDecision::Reject(rejection);
        }
    };
    // The tag is valid: only now may the nonce take a place in the cache.
    // With a shared store, a nonce this process knows is refused at once;
    // any other is recorded here only once the store said it is fresh.
    let mut claim = None;
    if let Some(nonce) = &verified.nonce {
        if config.nonce_store.is_some() {
            match nonces.seen(nonce, now) {
                Ok(false) => {
                    claim = Some(NonceClaim {
                        nonce: nonce.to_string(),
                        timestamp: verified.timestamp,
                    });
                }
                Ok(true) => {
                    return HeadersDecision::Reject(Rejection::new(
                        Reject::ReplayedRequest,
                        Detail::NonceSeen,
                    ));
                }
                Err(err) => return HeadersDecision::Reject(err.rejection()),
            }
        } else if let Err(err) = nonces.claim(nonce, verified.timestamp, now) {
            return HeadersDecision::Reject(err.rejection());
        }
    }
    let key = verified.key;
    let format = verified.format;
    let unsigned_payload = verified.unsigned_payload();
    let verified_with = |body| HeadersDecision::Verified {
        key,
        body,
        unsigned_payload,
        format,
        claim,
    };
    let content_mismatch = || {
        HeadersDecision::Reject(Rejection::new(
            Reject::ContentMismatch,
            Detail::BodyHashDiffers,
        ))
    };
    if head.upgrade && !end_of_stream {
        // The upgraded stream is not a body: the handshake must sign the
        // empty body (or UNSIGNED-PAYLOAD where allowed).
        if !unsigned_payload && !verified.expects_empty_body() {
            return content_mismatch();
        }
        return verified_with(Body::Upgrade {
            connect: head.method == b"CONNECT",
        });
    }
    let Some(check) = verified.body_verifier(config.max_body_bytes) else {
        // UNSIGNED-PAYLOAD on an allowed path: no hash, no size limit.
        return verified_with(Body::Unsigned);
    };
    if end_of_stream {
        if !verified.expects_empty_body() {
            return content_mismatch();
        }
        return verified_with(Body::Empty);
    }
    // A declared length over the limit is refused before any byte is read.
    if head
        .content_length
        .is_some_and(|n| n > config.max_body_bytes)
    {
        return HeadersDecision::Reject(Rejection::new(
            Reject::BodyTooLarge,
            Detail::BodyOverLimit {
                limit: config.max_body_bytes,
            },
        ));
    }
    verified_with(Body::Check(check))
}

/// True when the upstream's response `status` accepts an upgrade:
/// `101 Switching Protocols` (Envoy shows an HTTP/2 extended CONNECT's `200`
/// as `101`), or a `2xx` when the request is a `CONNECT` (`connect`).
pub fn upgrade_accepted(connect: bool, status: u32) -> bool {
    status == 101 || (connect && (200..300).contains(&status))
}

/// Test helpers shared with the other modules' tests (`stream`).
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::compile;
    use crate::replay::MemoryStore;
    use crate::scheme::{Payload, SecretKey, SignRequest, Signer, TagEncoding, sha256};

    const SECRET: &str = "flow-test-secret-flow-test-secret-0001";
    pub(crate) const NOW: u64 = 1_800_000_000;

    pub(crate) fn config(extra: &str) -> FilterConfig {
        let raw = format!(r#"{{"hmac_secret":"{SECRET}","environment":"dev"{extra}}}"#);
        compile(raw.as_bytes(), |_| None).unwrap()
    }

    /// The pseudo-headers of a request to api.example.test.
    pub(super) fn head_pairs(method: &str, path: &str) -> Vec<(String, String)> {
        vec![
            (":method".to_string(), method.to_string()),
            (":authority".to_string(), "api.example.test".to_string()),
            (":path".to_string(), path.to_string()),
        ]
    }

    /// A request signed at NOW with `payload` (and `nonce`).
    pub(crate) fn signed_payload(
        method: &str,
        path: &str,
        payload: Option<Payload>,
        nonce: Option<&str>,
    ) -> Vec<(String, String)> {
        let signer =
            Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
        let h = signer
            .sign(
                &SignRequest {
                    method,
                    authority: "api.example.test",
                    path,
                    timestamp: NOW,
                    nonce,
                    payload,
                },
                TagEncoding::Hex,
            )
            .unwrap();
        let mut pairs = head_pairs(method, path);
        pairs.extend(
            h.pairs()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        pairs
    }

    /// A request signed with `body`'s hash, declaring its length.
    fn signed(
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        nonce: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut pairs = signed_payload(
            method,
            path,
            body.map(|b| Payload::Sha256(sha256(b))),
            nonce,
        );
        if let Some(b) = body {
            pairs.push(("content-length".into(), b.len().to_string()));
        }
        pairs
    }

    pub(super) fn decide(
        cfg: &FilterConfig,
        pairs: &[(String, String)],
        eos: bool,
        store: &mut MemoryStore,
    ) -> HeadersDecision {
        let head = RequestHead::from_string_pairs(pairs);
        on_request_headers(cfg, &head, NOW, eos, &mut cfg.replay.shared(store))
    }

    pub(super) fn reason(d: &HeadersDecision) -> Option<Reject> {
        match d {
            HeadersDecision::Reject(rejection) => Some(rejection.reason),
            _ => None,
        }
    }

    /// A signed GET with no body is verified with no body check pending.
    #[test]
    fn signed_get_passes() {
        let cfg = config("");
        let d = decide(
            &cfg,
            &signed("GET", "/v1/x", None, None),
            true,
            &mut MemoryStore::default(),
        );
        assert!(
            matches!(
                d,
                HeadersDecision::Verified {
                    key: KeyUsed::Current,
                    body: Body::Empty,
                    unsigned_payload: false,
                    format: Format::V1,
                    claim: None,
                }
            ),
            "{d:?}"
        );
    }

    /// An RFC 9421 request goes through the same flow once `formats` lists
    /// it: a covered body is held for its digest, a replayed nonce is
    /// refused by the shared cache, and without the format it is
    /// `unsupported_format`.
    #[test]
    fn rfc9421_through_the_same_flow() {
        use crate::scheme::rfc9421::{Rfc9421Request, content_digest_header};
        let signer =
            Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
        let body = b"{\"a\":1}";
        let digest = content_digest_header(body);
        let h = signer
            .sign_rfc9421(&Rfc9421Request {
                method: "POST",
                scheme: "https",
                authority: "api.example.test",
                path: "/v1/x?q=1",
                created: NOW,
                expires: None,
                nonce: Some("flow-nonce-0123456789"),
                content_digest: Some(&digest),
                fields: &[],
            })
            .unwrap();
        let mut pairs = head_pairs("POST", "/v1/x?q=1");
        pairs.push((":scheme".into(), "https".into()));
        pairs.extend(
            h.pairs()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        let both = config(r#","formats":["v1","rfc9421"]"#);
        let mut store = MemoryStore::default();
        both.replay.register(&mut store, 0).unwrap();
        let d = decide(&both, &pairs, false, &mut store);
        let HeadersDecision::Verified {
            body: Body::Check(mut check),
            format: Format::Rfc9421,
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        check.update(body).unwrap();
        assert_eq!(check.finish(), Ok(()));
        assert_eq!(
            reason(&decide(&both, &pairs, false, &mut store)),
            Some(Reject::ReplayedRequest)
        );
        let v1_only = config("");
        assert_eq!(
            reason(&decide(
                &v1_only,
                &pairs,
                false,
                &mut MemoryStore::default()
            )),
            Some(Reject::UnsupportedFormat)
        );
    }

    /// A signed POST leaves a body check that accepts exactly the signed body.
    #[test]
    fn signed_post_checks_body() {
        let cfg = config("");
        let body = b"{\"a\":1}";
        let d = decide(
            &cfg,
            &signed("POST", "/v1/x", Some(body), None),
            false,
            &mut MemoryStore::default(),
        );
        let HeadersDecision::Verified {
            body: Body::Check(mut check),
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        let mut other = check.clone();
        check.update(&body[..3]).unwrap();
        check.update(&body[3..]).unwrap();
        assert_eq!(check.finish(), Ok(()));
        other.update(b"{\"a\":2}").unwrap();
        assert_eq!(other.finish().unwrap_err().reason, Reject::ContentMismatch);
    }

    /// Headers-only request whose signature promises a body: content_mismatch.
    #[test]
    fn promised_body_missing() {
        let cfg = config("");
        let d = decide(
            &cfg,
            &signed("POST", "/v1/x", Some(b"data"), None),
            true,
            &mut MemoryStore::default(),
        );
        assert_eq!(reason(&d), Some(Reject::ContentMismatch));
    }

    /// Exempt paths and CORS preflights skip verification only when configured.
    #[test]
    fn skips() {
        let cfg = config(r#","exempt_paths":["/healthz"],"allow_cors_preflight":true"#);
        let mut store = MemoryStore::default();
        let get = |path: &str, method: &str, acrm: bool| {
            let mut p = vec![
                (":method".to_string(), method.to_string()),
                (":authority".to_string(), "h".to_string()),
                (":path".to_string(), path.to_string()),
            ];
            if acrm {
                p.push(("origin".into(), "https://app.example.test".into()));
                p.push(("access-control-request-method".into(), "POST".into()));
            }
            p
        };
        // Exempt paths: GET and HEAD only.
        assert!(matches!(
            decide(&cfg, &get("/healthz", "HEAD", false), true, &mut store),
            HeadersDecision::Skip(Skip::ExemptPath)
        ));
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            assert_eq!(
                reason(&decide(
                    &cfg,
                    &get("/healthz", method, false),
                    false,
                    &mut store
                )),
                Some(Reject::MissingSignature),
                "{method} /healthz"
            );
        }
        // Preflights: with a body, or without Origin, they are verified.
        assert_eq!(
            reason(&decide(
                &cfg,
                &get("/v1", "OPTIONS", true),
                false,
                &mut store
            )),
            Some(Reject::MissingSignature)
        );
        let no_origin: Vec<(String, String)> = get("/v1", "OPTIONS", true)
            .into_iter()
            .filter(|(n, _)| n != "origin")
            .collect();
        assert_eq!(
            reason(&decide(&cfg, &no_origin, true, &mut store)),
            Some(Reject::MissingSignature)
        );
        assert!(matches!(
            decide(&cfg, &get("/healthz?x=1", "GET", false), true, &mut store),
            HeadersDecision::Skip(Skip::ExemptPath)
        ));
        assert!(matches!(
            decide(&cfg, &get("/v1", "OPTIONS", true), true, &mut store),
            HeadersDecision::Skip(Skip::CorsPreflight)
        ));
        assert_eq!(
            reason(&decide(
                &cfg,
                &get("/v1", "OPTIONS", false),
                true,
                &mut store
            )),
            Some(Reject::MissingSignature)
        );
        let strict = config("");
        assert_eq!(
            reason(&decide(
                &strict,
                &get("/v1", "OPTIONS", true),
                true,
                &mut store
            )),
            Some(Reject::MissingSignature)
        );
        assert_eq!(
            reason(&decide(
                &strict,
                &get("/healthz", "GET", false),
                true,
                &mut store
            )),
            Some(Reject::MissingSignature)
        );
    }

    /// An unsigned request's URL and method override headers are listed for
    /// removal, whatever their case; other headers are not.
    #[test]
    fn override_headers_listed_for_removal() {
        let mut pairs = head_pairs("GET", "/healthz");
        for (n, v) in [
            ("X-Original-URL", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-forwarded-prefix", "/admin"),
            ("x-request-id", "1"),
            ("x-original-url", "/again"),
        ] {
            pairs.push((n.into(), v.into()));
        }
        let head = RequestHead::from_string_pairs(&pairs);
        assert_eq!(
            headers_to_strip(&head),
            [
                "x-original-url",
                "x-forwarded-prefix",
                "x-http-method-override"
            ]
        );
        let plain = head_pairs("GET", "/healthz");
        assert!(headers_to_strip(&RequestHead::from_string_pairs(&plain)).is_empty());
        // Every listed name is lowercase and at least 12 bytes (the fast path).
        for name in UNSIGNED_STRIPPED_HEADERS {
            assert!(
                name.len() >= 12 && name == name.to_ascii_lowercase(),
                "{name}"
            );
        }
    }

    /// A nonce is used up by the first valid request; the second is a replay.
    #[test]
    fn replay_refused() {
        let cfg = config("");
        let mut store = MemoryStore::default();
        cfg.replay.register(&mut store, 0).unwrap();
        let req = signed("GET", "/v1/x", None, Some("nonce-0123456789abcdef"));
        assert!(matches!(
            decide(&cfg, &req, true, &mut store),
            HeadersDecision::Verified { .. }
        ));
        assert_eq!(
            reason(&decide(&cfg, &req, true, &mut store)),
            Some(Reject::ReplayedRequest)
        );
    }

    /// A nonce is used up once its tag is valid, even when the body check
    /// fails afterwards: a retry must use a new nonce.
    #[test]
    fn nonce_used_up_even_if_body_fails() {
        let cfg = config("");
        let mut store = MemoryStore::default();
        cfg.replay.register(&mut store, 0).unwrap();
        let body = b"payload";
        let req = signed("POST", "/v1/x", Some(body), Some("nonce-body-fails-0001"));
        let HeadersDecision::Verified {
            body: Body::Check(mut check),
            ..
        } = decide(&cfg, &req, false, &mut store)
        else {
            panic!("headers should verify")
        };
        check.update(b"tampere").unwrap();
        assert_eq!(check.finish().unwrap_err().reason, Reject::ContentMismatch);
        assert_eq!(
            reason(&decide(&cfg, &req, false, &mut store)),
            Some(Reject::ReplayedRequest)
        );
    }

    /// An invalid tag never takes a place in the nonce cache.
    #[test]
    fn invalid_tag_does_not_consume_nonce() {
        let cfg = config("");
        let mut store = MemoryStore::default();
        cfg.replay.register(&mut store, 0).unwrap();
        let mut req = signed("GET", "/v1/x", None, Some("nonce-0123456789abcdef"));
        let good = req.clone();
        let sig = req
            .iter_mut()
            .find(|(n, _)| n == "x-crawbl-signature")
            .unwrap();
        sig.1 = format!("v1={}", "0".repeat(64));
        assert_eq!(
            reason(&decide(&cfg, &req, true, &mut store)),
            Some(Reject::InvalidSignature)
        );
        assert!(matches!(
            decide(&cfg, &good, true, &mut store),
            HeadersDecision::Verified { .. }
        ));
    }

    /// A declared content-length over the limit is refused at the headers.
    #[test]
    fn declared_length_over_limit() {
        let cfg = config(r#","max_body_bytes":4"#);
        let d = decide(
            &cfg,
            &signed("POST", "/v1", Some(b"12345"), None),
            false,
            &mut MemoryStore::default(),
        );
        assert_eq!(reason(&d), Some(Reject::BodyTooLarge));
        let d = decide(
            &cfg,
            &signed("POST", "/v1", Some(b"1234"), None),
            false,
            &mut MemoryStore::default(),
        );
        assert!(matches!(d, HeadersDecision::Verified { .. }));
    }
}
#[cfg(test)]
mod stream_tests {
    use super::tests::{config, decide, head_pairs, reason, signed_payload as signed};
    use super::*;
    use crate::replay::MemoryStore;
    use crate::scheme::{Payload, UNSIGNED_PAYLOAD, sha256};

    const WEBSOCKET: &[(&str, &str)] = &[("connection", "Upgrade"), ("upgrade", "websocket")];

    type Pairs = Vec<(String, String)>;

    fn with(mut pairs: Pairs, extra: &[(&str, &str)]) -> Pairs {
        pairs.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        pairs
    }

    /// An exempt path skips only requests that carry nothing: a GET with a
    /// body or an upgrade there is verified (and refused unsigned).
    #[test]
    fn exempt_path_with_body_or_upgrade_is_verified() {
        let cfg = config(r#","exempt_paths":["/healthz"],"allow_cors_preflight":true"#);
        let mut store = MemoryStore::default();
        let bare = head_pairs("GET", "/healthz");
        assert!(matches!(
            decide(&cfg, &bare, true, &mut store),
            HeadersDecision::Skip(Skip::ExemptPath)
        ));
        // A body (no end of stream at the headers).
        assert_eq!(
            reason(&decide(&cfg, &bare, false, &mut store)),
            Some(Reject::MissingSignature)
        );
        // An upgrade, whether or not the headers end the stream.
        let upgrade = with(bare.clone(), WEBSOCKET);
        for eos in [false, true] {
            assert_eq!(
                reason(&decide(&cfg, &upgrade, eos, &mut store)),
                Some(Reject::MissingSignature),
                "eos={eos}"
            );
        }
        // A preflight with an upgrade is verified too.
        let preflight = with(
            head_pairs("OPTIONS", "/v1"),
            &[
                ("origin", "https://app.example.test"),
                ("access-control-request-method", "GET"),
            ],
        );
        assert!(matches!(
            decide(&cfg, &preflight, true, &mut store),
            HeadersDecision::Skip(Skip::CorsPreflight)
        ));
        assert_eq!(
            reason(&decide(&cfg, &with(preflight, WEBSOCKET), true, &mut store)),
            Some(Reject::MissingSignature)
        );
        // A signed websocket handshake on the exempt path is an upgrade.
        let signed_ws = with(signed("GET", "/healthz", None, None), WEBSOCKET);
        assert!(matches!(
            decide(&cfg, &signed_ws, false, &mut store),
            HeadersDecision::Verified {
                body: Body::Upgrade { .. },
                ..
            }
        ));
    }

    /// A signed handshake (empty-body hash) is an upgrade; a handshake that
    /// signs a body hash is content_mismatch; unsigned is refused; `Upgrade`
    /// without the `Connection` token is an ordinary request.
    #[test]
    fn upgrades() {
        let cfg = config("");
        let mut store = MemoryStore::default();
        let ws = with(signed("GET", "/ws", None, None), WEBSOCKET);
        assert!(matches!(
            decide(&cfg, &ws, false, &mut store),
            HeadersDecision::Verified {
                body: Body::Upgrade { .. },
                unsigned_payload: false,
                ..
            }
        ));
        let hash = Some(Payload::Sha256(sha256(b"frames")));
        let with_hash = with(signed("GET", "/ws", hash, None), WEBSOCKET);
        assert_eq!(
            reason(&decide(&cfg, &with_hash, false, &mut store)),
            Some(Reject::ContentMismatch)
        );
        let unsigned = with(head_pairs("GET", "/ws"), WEBSOCKET);
        assert_eq!(
            reason(&decide(&cfg, &unsigned, false, &mut store)),
            Some(Reject::MissingSignature)
        );
        for connection in ["keep-alive", "upgraded", ""] {
            let not_upgrade = with(
                signed("POST", "/ws", None, None),
                &[("upgrade", "websocket"), ("connection", connection)],
            );
            assert!(
                matches!(
                    decide(&cfg, &not_upgrade, false, &mut store),
                    HeadersDecision::Verified {
                        body: Body::Check(_),
                        ..
                    }
                ),
                "connection: {connection}"
            );
        }
        let listed = with(
            signed("GET", "/ws", None, None),
            &[
                ("connection", "keep-alive, UPGRADE"),
                ("upgrade", "websocket"),
            ],
        );
        assert!(matches!(
            decide(&cfg, &listed, false, &mut store),
            HeadersDecision::Verified {
                body: Body::Upgrade { .. },
                ..
            }
        ));
        let connect = signed("CONNECT", "/", None, None);
        assert!(matches!(
            decide(&cfg, &connect, false, &mut store),
            HeadersDecision::Verified {
                body: Body::Upgrade { .. },
                ..
            }
        ));
        assert!(upgrade_accepted(false, 101));
        assert!(!upgrade_accepted(false, 200));
        assert!(upgrade_accepted(true, 200));
        assert!(!upgrade_accepted(true, 403));
        assert!(!upgrade_accepted(false, 401));
    }

    /// UNSIGNED-PAYLOAD streams unread, with no size limit, on an
    /// unsigned-payload path; anywhere else it is malformed_signature.
    #[test]
    fn unsigned_payload() {
        let cfg = config(r#","unsigned_payload_paths":["/upload/*"],"max_body_bytes":4"#);
        let mut store = MemoryStore::default();
        let unsigned = Some(Payload::Unsigned);
        let big = with(
            signed("POST", "/upload/big", unsigned, None),
            &[("content-length", "999999999")],
        );
        assert!(matches!(
            decide(&cfg, &big, false, &mut store),
            HeadersDecision::Verified {
                body: Body::Unsigned,
                unsigned_payload: true,
                ..
            }
        ));
        let headers_only = signed("GET", "/upload/x", unsigned, None);
        assert!(
            headers_only
                .iter()
                .any(|(n, v)| n == "x-crawbl-content-sha256" && v == UNSIGNED_PAYLOAD)
        );
        assert!(matches!(
            decide(&cfg, &headers_only, true, &mut store),
            HeadersDecision::Verified {
                body: Body::Unsigned,
                ..
            }
        ));
        let ws = with(signed("GET", "/upload/ws", unsigned, None), WEBSOCKET);
        assert!(matches!(
            decide(&cfg, &ws, false, &mut store),
            HeadersDecision::Verified {
                body: Body::Upgrade { .. },
                unsigned_payload: true,
                ..
            }
        ));
        let elsewhere = decide(
            &cfg,
            &signed("POST", "/v1/orders", unsigned, None),
            false,
            &mut store,
        );
        let HeadersDecision::Reject(rejection) = elsewhere else {
            panic!("{elsewhere:?}")
        };
        assert_eq!(rejection.reason, Reject::MalformedSignature);
        assert_eq!(rejection.detail, Detail::UnsignedPayloadNotAllowed);
        assert_eq!(
            reason(&decide(
                &config(""),
                &signed("POST", "/upload/big", unsigned, None),
                false,
                &mut store
            )),
            Some(Reject::MalformedSignature)
        );
    }

    /// A refused UNSIGNED-PAYLOAD claim never uses up its nonce.
    #[test]
    fn refused_unsigned_claim_keeps_the_nonce() {
        let cfg = config("");
        let mut store = MemoryStore::default();
        cfg.replay.register(&mut store, 0).unwrap();
        let nonce = Some("nonce-unsigned-claim-01");
        let refused = signed("GET", "/v1", Some(Payload::Unsigned), nonce);
        assert_eq!(
            reason(&decide(&cfg, &refused, true, &mut store)),
            Some(Reject::MalformedSignature)
        );
        assert!(matches!(
            decide(&cfg, &signed("GET", "/v1", None, nonce), true, &mut store),
            HeadersDecision::Verified { .. }
        ));
    }
}
