//! The filter's side of the shared nonce store (`edge-hmac nonce-store`):
//! its configuration, the claim request both hosts send to it through an
//! Envoy cluster, and how its answer is read. One wire format, spelled out
//! here once and in `docs/nonce-store.md`:
//!
//! `POST /v1/claim` with [`HEADER_NONCE_ID`] (SHA-256 of the nonce, 64
//! lowercase hex), [`HEADER_ENVIRONMENT`] and [`HEADER_TTL_MS`]; the answer
//! is `200` with [`HEADER_CLAIM`] `fresh` or `replayed`, anything else
//! (a `503 unavailable`, a timeout, a reset, no such cluster) is
//! [`ClaimAnswer::Unavailable`].

use serde::Deserialize;

use crate::scheme::sha256;

/// Path of a claim.
pub const CLAIM_PATH: &str = "/v1/claim";
/// Request header: SHA-256 of the nonce, 64 lowercase hex digits.
pub const HEADER_NONCE_ID: &str = "x-edge-hmac-nonce-id";
/// Request header: the filter's environment (a key namespace in Redis).
pub const HEADER_ENVIRONMENT: &str = "x-edge-hmac-environment";
/// Request header: how long the nonce stays claimed, in milliseconds.
pub const HEADER_TTL_MS: &str = "x-edge-hmac-ttl-ms";
/// Response header: `fresh`, `replayed`, `unavailable` or `invalid`.
pub const HEADER_CLAIM: &str = "x-edge-hmac-claim";
/// Every Redis key the store writes starts with this, then
/// `{environment}:{nonce id}`.
pub const KEY_PREFIX: &str = "edge-hmac:nonce:v1:";
/// The longest claim the store accepts: the longest `nonce_ttl_seconds`.
pub const MAX_TTL_MS: u64 = crate::config::MAX_NONCE_TTL_SECONDS * 1000;
/// Default `authority` of a claim.
pub const DEFAULT_AUTHORITY: &str = "edge-hmac-nonce-store";
/// Default `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 250;
/// Smallest accepted `timeout_ms`.
pub const MIN_TIMEOUT_MS: u64 = 10;
/// Largest accepted `timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 5_000;

/// What a request gets when the store cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// `503 replay_cache_unavailable` with `Retry-After` (fail closed).
    #[default]
    Refuse,
    /// Fall back to this process's replay table (counted): a replay through
    /// another proxy is not caught while the store is down.
    Local,
}

/// The `nonce_store` plugin option, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NonceStoreOptions {
    /// The Envoy cluster that reaches `edge-hmac nonce-store`.
    pub cluster: String,
    /// `:authority` of the claims (default `edge-hmac-nonce-store`).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// How long a request waits for the store's answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `refuse` (default) or `local`.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
}

fn default_authority() -> String {
    DEFAULT_AUTHORITY.into()
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Why a `nonce_store` option was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreConfigError {
    /// The cluster or authority is empty or has characters Envoy would not
    /// take in a cluster name or a header.
    #[error(
        "nonce_store.{field} = {value:?} is not usable: 1 to 128 characters of A-Z a-z 0-9 . _ - : (the name of the Envoy cluster that reaches edge-hmac nonce-store, and its authority)"
    )]
    BadName {
        /// `cluster` or `authority`.
        field: &'static str,
        /// The value (a name, never a secret).
        value: String,
    },
}

/// A compiled `nonce_store` option: where claims go and what they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceStore {
    /// The Envoy cluster of the store.
    pub cluster: String,
    /// `:authority` of a claim.
    pub authority: String,
    /// How long a request waits for the answer.
    pub timeout_ms: u64,
    /// What happens when the store cannot answer.
    pub on_unavailable: OnUnavailable,
    environment: String,
    ttl_ms: String,
}

fn usable_name(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

impl NonceStoreOptions {
    /// Validates the option for a filter in `environment` whose nonces are
    /// refused for `ttl_seconds`. `timeout_ms` is checked by the caller's
    /// range rule (it names the field like every other range).
    pub fn compile(
        &self,
        environment: &str,
        ttl_seconds: u64,
    ) -> Result<NonceStore, StoreConfigError> {
        for (field, value) in [("cluster", &self.cluster), ("authority", &self.authority)] {
            if !usable_name(value) {
                return Err(StoreConfigError::BadName {
                    field,
                    value: value.clone(),
                });
            }
        }
        Ok(NonceStore {
            cluster: self.cluster.clone(),
            authority: self.authority.clone(),
            timeout_ms: self.timeout_ms,
            on_unavailable: self.on_unavailable,
            environment: environment.to_owned(),
            ttl_ms: ttl_seconds.saturating_mul(1000).to_string(),
        })
    }
}

/// One claim to send: the nonce's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// SHA-256 of the nonce, lowercase hex.
    pub nonce_id: String,
}

impl ClaimRequest {
    /// The claim of `nonce` (the store sees its SHA-256, never the nonce).
    pub fn of(nonce: &str) -> Self {
        Self {
            nonce_id: hex::encode(sha256(nonce.as_bytes())),
        }
    }
}

impl NonceStore {
    /// The headers of `claim` (an HTTP/2 or HTTP/1.1 `POST` without a body).
    pub fn headers<'a>(&'a self, claim: &'a ClaimRequest) -> [(&'static str, &'a str); 6] {
        [
            (":method", "POST"),
            (":path", CLAIM_PATH),
            (":authority", &self.authority),
            (HEADER_NONCE_ID, &claim.nonce_id),
            (HEADER_ENVIRONMENT, &self.environment),
            (HEADER_TTL_MS, &self.ttl_ms),
        ]
    }

    /// One log line describing it.
    pub fn summary(&self) -> String {
        format!(
            "nonce_store={}@{} timeout_ms={} on_unavailable={}",
            self.authority,
            self.cluster,
            self.timeout_ms,
            match self.on_unavailable {
                OnUnavailable::Refuse => "refuse",
                OnUnavailable::Local => "local",
            }
        )
    }
}

/// The store's answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAnswer {
    /// The nonce was not claimed before: it is now.
    Fresh,
    /// Another request (through any proxy) claimed it within its TTL.
    Replayed,
    /// No answer to rely on: the store said so, timed out, or the call
    /// failed.
    Unavailable,
}

impl ClaimAnswer {
    /// Reads a response: its `:status` (`None` when the call failed) and its
    /// [`HEADER_CLAIM`] value. Only a `200` with `fresh` or `replayed` is an
    /// answer; everything else is [`ClaimAnswer::Unavailable`] (fail closed).
    pub fn from_response(status: Option<&[u8]>, claim: Option<&[u8]>) -> Self {
        match (status, claim) {
            (Some(b"200"), Some(b"fresh")) => ClaimAnswer::Fresh,
            (Some(b"200"), Some(b"replayed")) => ClaimAnswer::Replayed,
            _ => ClaimAnswer::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> NonceStoreOptions {
        serde_json::from_str(json).unwrap()
    }

    /// Defaults: authority `edge-hmac-nonce-store`, 250 ms, refuse; the
    /// claim carries the nonce's SHA-256 (not the nonce), the environment
    /// and the TTL in milliseconds.
    #[test]
    fn claim_headers() {
        let store = options(r#"{"cluster":"nonce_store"}"#)
            .compile("dev", 600)
            .unwrap();
        assert_eq!(store.timeout_ms, 250);
        assert_eq!(store.on_unavailable, OnUnavailable::Refuse);
        let claim = ClaimRequest::of("nonce-0123456789abcdef");
        assert_eq!(
            claim.nonce_id,
            hex::encode(sha256(b"nonce-0123456789abcdef"))
        );
        assert_eq!(
            store.headers(&claim),
            [
                (":method", "POST"),
                (":path", "/v1/claim"),
                (":authority", "edge-hmac-nonce-store"),
                ("x-edge-hmac-nonce-id", claim.nonce_id.as_str()),
                ("x-edge-hmac-environment", "dev"),
                ("x-edge-hmac-ttl-ms", "600000"),
            ]
        );
    }

    /// A cluster or authority Envoy could not take is refused by name;
    /// unknown fields and unknown `on_unavailable` values are refused.
    #[test]
    fn bad_options_are_refused() {
        for bad in ["", "a b", "x/y", &"c".repeat(129)] {
            let o = NonceStoreOptions {
                cluster: bad.to_owned(),
                ..options(r#"{"cluster":"x"}"#)
            };
            let err = o.compile("dev", 60).unwrap_err();
            assert!(err.to_string().contains("nonce_store.cluster"), "{err}");
        }
        assert!(
            serde_json::from_str::<NonceStoreOptions>(r#"{"cluster":"x","on_unavailable":"open"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<NonceStoreOptions>(r#"{"cluster":"x","url":"y"}"#).is_err());
    }

    /// Only `200` with `fresh` or `replayed` is an answer: a `503`, a
    /// missing header, another status or a failed call is unavailable.
    #[test]
    fn answers_fail_closed() {
        use ClaimAnswer::*;
        type Case = (Option<&'static [u8]>, Option<&'static [u8]>, ClaimAnswer);
        let cases: [Case; 7] = [
            (Some(b"200"), Some(b"fresh"), Fresh),
            (Some(b"200"), Some(b"replayed"), Replayed),
            (Some(b"503"), Some(b"unavailable"), Unavailable),
            (Some(b"503"), Some(b"fresh"), Unavailable),
            (Some(b"200"), None, Unavailable),
            (Some(b"200"), Some(b"FRESH"), Unavailable),
            (None, None, Unavailable),
        ];
        for (status, claim, want) in cases {
            assert_eq!(
                ClaimAnswer::from_response(status, claim),
                want,
                "{status:?} {claim:?}"
            );
        }
    }
}
