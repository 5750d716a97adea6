//! What the filter does with a request, as pure functions of the request and
//! the compiled configuration. The proxy-wasm contexts only collect input,
//! call these, and act on the answer.

use crate::config::FilterConfig;
use crate::replay::BucketStore;
use crate::scheme::{BodyVerifier, Detail, KeyUsed, Reject, Rejection, RequestHead};

/// Why a request passed without verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The path is in `exempt_paths`.
    ExemptPath,
    /// A CORS preflight, with `allow_cors_preflight` on.
    CorsPreflight,
}

/// The decision taken on the request headers.
#[derive(Debug)]
pub enum HeadersDecision {
    /// Let it through unverified.
    Skip(Skip),
    /// Answer with this rejection; nothing goes upstream.
    Reject(Rejection),
    /// Headers verified: continue them upstream. `body` is the check still
    /// to run on the body (`None` when the request has no body).
    Verified {
        /// Which key matched.
        key: KeyUsed,
        /// The pending body check.
        body: Option<BodyVerifier>,
    },
}

/// Decides on a request from its headers, at Unix time `now`.
/// `end_of_stream` is true when the request has no body.
pub fn on_request_headers(
    config: &FilterConfig,
    head: &RequestHead<'_>,
    now: u64,
    end_of_stream: bool,
    store: &mut impl BucketStore,
) -> HeadersDecision {
    // Exempt paths are for health checks: GET and HEAD only. Any other
    // method on an exempt path is verified like every request.
    if matches!(head.method, b"GET" | b"HEAD") && config.is_exempt(head.path) {
        return HeadersDecision::Skip(Skip::ExemptPath);
    }
    // A CORS preflight as browsers send it: OPTIONS with Origin and
    // Access-Control-Request-Method, and no body. Anything else is verified.
    if config.allow_cors_preflight
        && head.method == b"OPTIONS"
        && head.cors_request_method
        && head.origin
        && end_of_stream
    {
        return HeadersDecision::Skip(Skip::CorsPreflight);
    }
    let verified = match config.verifier.verify_headers(head, now) {
        Ok(v) => v,
        Err(rejection) => {
            return HeadersDecision::Reject(rejection);
        }
    };
    // The tag is valid: only now may the nonce take a place in the cache.
    if let Some(nonce) = verified.nonce
        && let Err(err) = config.replay.claim(store, nonce, now)
    {
        return HeadersDecision::Reject(err.rejection());
    }
    if end_of_stream {
        if !verified.expects_empty_body() {
            return HeadersDecision::Reject(Rejection::new(
                Reject::ContentMismatch,
                Detail::BodyHashDiffers,
            ));
        }
        return HeadersDecision::Verified {
            key: verified.key,
            body: None,
        };
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
    HeadersDecision::Verified {
        key: verified.key,
        body: Some(verified.body_verifier(config.max_body_bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile;
    use crate::replay::MemoryStore;
    use crate::scheme::{SecretKey, SignRequest, Signer, TagEncoding, sha256};

    const SECRET: &str = "flow-test-secret-flow-test-secret-0001";
    const NOW: u64 = 1_800_000_000;

    fn config(extra: &str) -> FilterConfig {
        let raw = format!(r#"{{"hmac_secret":"{SECRET}","environment":"dev"{extra}}}"#);
        compile(raw.as_bytes(), |_| None).unwrap()
    }

    fn signed(
        method: &str,
        path: &str,
        body: Option<&[u8]>,
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
                    content_sha256: body.map(sha256),
                },
                TagEncoding::Hex,
            )
            .unwrap();
        let mut pairs = vec![
            (":method".to_string(), method.to_string()),
            (":authority".to_string(), "api.example.test".to_string()),
            (":path".to_string(), path.to_string()),
        ];
        if let Some(b) = body {
            pairs.push(("content-length".into(), b.len().to_string()));
        }
        pairs.extend(
            h.pairs()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        pairs
    }

    fn decide(
        cfg: &FilterConfig,
        pairs: &[(String, String)],
        eos: bool,
        store: &mut MemoryStore,
    ) -> HeadersDecision {
        let head = RequestHead::from_str_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        on_request_headers(cfg, &head, NOW, eos, store)
    }

    fn reason(d: &HeadersDecision) -> Option<Reject> {
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
                    body: None
                }
            ),
            "{d:?}"
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
            body: Some(mut check),
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

    /// A nonce is used up by the first valid request; the second is a replay.
    #[test]
    fn replay_refused() {
        let cfg = config("");
        let mut store = MemoryStore::default();
        cfg.replay.initialize(&mut store).unwrap();
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
        cfg.replay.initialize(&mut store).unwrap();
        let body = b"payload";
        let req = signed("POST", "/v1/x", Some(body), Some("nonce-body-fails-0001"));
        let HeadersDecision::Verified {
            body: Some(mut check),
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
        cfg.replay.initialize(&mut store).unwrap();
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
