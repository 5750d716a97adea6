//! An HTTP authorization service for Envoy's `ext_authz` filter that
//! verifies each request with the filter's own core (`edge_hmac_core::flow`,
//! the same decision the wasm filter takes), with the replay tables the
//! native module uses (`edge_hmac_core::replay::native`, process memory). It is the benchmark's peer of the wasm filter: what a team would
//! build for "Envoy Gateway SecurityPolicy extAuth" in its best case (same
//! machine, no TLS, one hop on loopback). It is not a supported deployment.

use edge_hmac_core::config::{ConfigError, FilterConfig};
use edge_hmac_core::flow::{Body, HeadersDecision, on_request_headers};
use edge_hmac_core::replay::native::{Holder, ProcessTables};
use edge_hmac_core::scheme::{Rejection, RequestHead};

/// The answer to one check request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200 allows the request; anything else is sent to the client by Envoy.
    pub status: u16,
    /// The JSON error body of a refusal (empty when allowed).
    pub body: &'static str,
}

impl Answer {
    const ALLOW: Answer = Answer {
        status: 200,
        body: "",
    };

    fn refuse(rejection: Rejection) -> Answer {
        Answer {
            status: rejection.reason.status() as u16,
            body: rejection.reason.response_body(),
        }
    }
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The plugin configuration (or its keys) is invalid.
    #[error("configuration refused: {0}")]
    Config(#[from] ConfigError),
}

/// Verifies check requests.
pub struct Authorizer {
    config: FilterConfig,
    nonces: Holder,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorizer { .. }")
    }
}

impl Authorizer {
    /// The service for a plugin configuration (the filter's JSON), reading
    /// keys through `env` exactly as the filter does, at Unix time `now`.
    pub fn new(
        raw_config: &[u8],
        env: impl Fn(&str) -> Option<String>,
        now: u64,
    ) -> Result<Self, StartError> {
        let config = edge_hmac_core::config::compile(raw_config, env)?;
        let nonces = ProcessTables::global().register(&config.replay, now);
        Ok(Self { config, nonces })
    }

    /// Decides on the original request Envoy describes: its method,
    /// authority, path, other headers and (buffered) body, at `now`.
    pub fn check(
        &self,
        method: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        now: u64,
    ) -> Answer {
        let mut pairs: Vec<(&[u8], &[u8])> = Vec::with_capacity(headers.len() + 3);
        pairs.push((b":method", method.as_bytes()));
        pairs.push((b":authority", authority.as_bytes()));
        pairs.push((b":path", path.as_bytes()));
        pairs.extend(headers.iter().map(|(n, v)| (n.as_bytes(), *v)));
        let head = RequestHead::from_pairs(&pairs);
        let decision =
            on_request_headers(&self.config, &head, now, body.is_empty(), &mut &self.nonces);
        match decision {
            HeadersDecision::Skip(_) => Answer::ALLOW,
            HeadersDecision::Reject(r) => Answer::refuse(r),
            HeadersDecision::Verified { body: plan, .. } => match plan {
                Body::Check(mut verifier) => {
                    match verifier.update(body).and_then(|()| verifier.finish()) {
                        Ok(()) => Answer::ALLOW,
                        Err(r) => Answer::refuse(r),
                    }
                }
                Body::Empty | Body::Unsigned | Body::Upgrade { .. } => Answer::ALLOW,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use edge_hmac_core::scheme::{Payload, SecretKey, SignRequest, Signer, TagEncoding};

    const SECRET: &str = "0123456789abcdef0123456789abcdef-ext-authz";
    const NOW: u64 = 1_800_000_000;

    fn authz() -> Authorizer {
        let env = |k: &str| match k {
            "HMAC_SECRET" => Some(SECRET.to_owned()),
            "HMAC_ENVIRONMENT" => Some("dev".to_owned()),
            _ => None,
        };
        Authorizer::new(br#"{"clock_skew_seconds":60}"#, env, NOW).unwrap()
    }

    /// Signed headers for `method path` with `body` and `nonce`.
    fn signed(method: &str, path: &str, body: &[u8], nonce: Option<&str>) -> Vec<(String, String)> {
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
                    payload: Payload::of(body),
                },
                TagEncoding::Hex,
            )
            .unwrap();
        h.pairs()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn check(
        a: &Authorizer,
        method: &str,
        path: &str,
        h: &[(String, String)],
        body: &[u8],
    ) -> Answer {
        let headers: Vec<(&str, &[u8])> =
            h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        a.check(method, "api.example.test", path, &headers, body, NOW)
    }

    /// A request signed with the key passes; unsigned, tampered or replayed
    /// ones get the filter's status and error code.
    #[test]
    fn same_decisions_as_the_filter() {
        let a = authz();
        let body = br#"{"qty":1}"#;
        let h = signed("POST", "/v1/orders", body, Some("nonce-0123456789abcdef"));
        assert_eq!(check(&a, "POST", "/v1/orders", &h, body), Answer::ALLOW);
        let replay = check(&a, "POST", "/v1/orders", &h, body);
        assert_eq!(
            (replay.status, replay.body),
            (401, r#"{"error":"replayed_request"}"#)
        );

        let h = signed("POST", "/v1/orders", body, None);
        let tampered = check(&a, "POST", "/v1/orders", &h, br#"{"qty":9}"#);
        assert_eq!(
            (tampered.status, tampered.body),
            (401, r#"{"error":"content_mismatch"}"#)
        );
        let moved = check(&a, "POST", "/v1/other", &h, body);
        assert_eq!(
            (moved.status, moved.body),
            (401, r#"{"error":"invalid_signature"}"#)
        );
        let none = check(&a, "GET", "/v1/orders", &[], b"");
        assert_eq!(
            (none.status, none.body),
            (401, r#"{"error":"missing_signature"}"#)
        );
    }

    /// Without its key the service does not start (fail closed).
    #[test]
    fn refuses_to_start_without_a_key() {
        let err = Authorizer::new(b"{}", |_| None, NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HMAC_SECRET"), "{err}");
    }
}
