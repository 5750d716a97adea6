//! The claim request: three headers, checked before anything reaches Redis.

use http::HeaderMap;

// The wire format is the filter's: one definition, in the core.
pub use edge_hmac_core::store::{
    HEADER_CLAIM, HEADER_ENVIRONMENT, HEADER_NONCE_ID, HEADER_TTL_MS, KEY_PREFIX, MAX_TTL_MS,
};

/// A valid claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// 64 lowercase hex characters.
    pub nonce_id: String,
    /// The environment.
    pub environment: String,
    /// Lifetime of the claim in milliseconds, 1..=[`MAX_TTL_MS`].
    pub ttl_ms: u64,
}

/// Why a claim is malformed: which header, and what it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {why}")]
pub struct InvalidClaim {
    /// The header that is wrong.
    pub header: &'static str,
    /// What it must be.
    pub why: &'static str,
}

impl ClaimRequest {
    /// Reads and checks the three claim headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<ClaimRequest, InvalidClaim> {
        let nonce_id = one(headers, HEADER_NONCE_ID)?;
        if nonce_id.len() != 64
            || !nonce_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(InvalidClaim {
                header: HEADER_NONCE_ID,
                why: "must be 64 lowercase hex characters (SHA-256 of the nonce)",
            });
        }
        let environment = one(headers, HEADER_ENVIRONMENT)?;
        if environment.is_empty()
            || environment.len() > 64
            || !environment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(InvalidClaim {
                header: HEADER_ENVIRONMENT,
                why: "must be 1 to 64 characters of a-z 0-9 . _ -",
            });
        }
        let ttl = one(headers, HEADER_TTL_MS)?;
        let ttl_ms = Some(ttl)
            .filter(|t| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| (1..=MAX_TTL_MS).contains(t))
            .ok_or(InvalidClaim {
                header: HEADER_TTL_MS,
                why: "must be a decimal integer in 1..=86400000",
            })?;
        Ok(ClaimRequest {
            nonce_id: nonce_id.to_owned(),
            environment: environment.to_owned(),
            ttl_ms,
        })
    }

    /// The Redis key: `edge-hmac:nonce:v1:{environment}:{nonce-id}`.
    pub fn key(&self) -> String {
        format!("{KEY_PREFIX}{}:{}", self.environment, self.nonce_id)
    }
}

/// The single value of header `name`.
fn one<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, InvalidClaim> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(InvalidClaim {
        header: name,
        why: "missing",
    })?;
    if values.next().is_some() {
        return Err(InvalidClaim {
            header: name,
            why: "given more than once",
        });
    }
    value.to_str().map_err(|_| InvalidClaim {
        header: name,
        why: "not visible ASCII",
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const ID: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, v.parse().unwrap());
        }
        h
    }

    fn good() -> Vec<(&'static str, String)> {
        vec![
            (HEADER_NONCE_ID, ID.to_owned()),
            (HEADER_ENVIRONMENT, "prod-eu.1_a".to_owned()),
            (HEADER_TTL_MS, "300000".to_owned()),
        ]
    }

    fn with(name: &'static str, value: Option<&str>) -> Result<ClaimRequest, InvalidClaim> {
        let mut pairs: Vec<(&'static str, String)> =
            good().into_iter().filter(|(n, _)| *n != name).collect();
        if let Some(v) = value {
            pairs.push((name, v.to_owned()));
        }
        let refs: Vec<(&'static str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        ClaimRequest::from_headers(&headers(&refs))
    }

    /// A well-formed claim parses and names its key.
    #[test]
    fn a_good_claim() {
        let c = with(HEADER_TTL_MS, Some("1")).unwrap();
        assert_eq!(c.ttl_ms, 1);
        assert_eq!(c.key(), format!("edge-hmac:nonce:v1:prod-eu.1_a:{ID}"));
        assert_eq!(
            with(HEADER_TTL_MS, Some("86400000")).unwrap().ttl_ms,
            MAX_TTL_MS
        );
    }

    /// Each malformed header is refused and named.
    #[test]
    fn malformed_claims_name_the_header() {
        let upper = ID.to_uppercase();
        let short = &ID[..63];
        let long = format!("{ID}0");
        let nonhex = format!("{}g", &ID[..63]);
        for bad in [
            None,
            Some(upper.as_str()),
            Some(short),
            Some(long.as_str()),
            Some(nonhex.as_str()),
            Some(""),
        ] {
            assert_eq!(
                with(HEADER_NONCE_ID, bad).unwrap_err().header,
                HEADER_NONCE_ID,
                "{bad:?}"
            );
        }
        let long_env = "a".repeat(65);
        for bad in [
            None,
            Some(""),
            Some("Prod"),
            Some("a b"),
            Some("a:b"),
            Some("a/b"),
            Some(long_env.as_str()),
        ] {
            assert_eq!(
                with(HEADER_ENVIRONMENT, bad).unwrap_err().header,
                HEADER_ENVIRONMENT,
                "{bad:?}"
            );
        }
        assert!(with(HEADER_ENVIRONMENT, Some(&"a".repeat(64))).is_ok());
        for bad in [
            None,
            Some("0"),
            Some("86400001"),
            Some("-1"),
            Some("+5"),
            Some("1.5"),
            Some(" 5"),
            Some("99999999999999999999"),
            Some(""),
        ] {
            assert_eq!(
                with(HEADER_TTL_MS, bad).unwrap_err().header,
                HEADER_TTL_MS,
                "{bad:?}"
            );
        }
        let mut twice = headers(&[(HEADER_ENVIRONMENT, "a"), (HEADER_TTL_MS, "5")]);
        twice.append(HEADER_NONCE_ID, ID.parse().unwrap());
        twice.append(HEADER_NONCE_ID, ID.parse().unwrap());
        let err = ClaimRequest::from_headers(&twice).unwrap_err();
        assert_eq!(err.header, HEADER_NONCE_ID);
        assert_eq!(err.why, "given more than once");
    }

    /// The claim the filter sends (the core's `NonceStore::headers`, both
    /// hosts) is the claim this service accepts, keyed by environment and
    /// the nonce's SHA-256, with the filter's TTL.
    #[test]
    fn the_filters_claim_is_accepted() {
        let options: edge_hmac_core::config::NonceStoreOptions =
            serde_json::from_str(r#"{"cluster":"edge_hmac_nonce_store"}"#).unwrap();
        let store = options.compile("dev", 600).unwrap();
        let claim = edge_hmac_core::store::ClaimRequest::of("nonce-0123456789abcdef");
        let pairs: Vec<(&'static str, &str)> = store
            .headers(&claim)
            .into_iter()
            .filter(|(n, _)| !n.starts_with(':'))
            .collect();
        let parsed = ClaimRequest::from_headers(&headers(&pairs)).unwrap();
        assert_eq!(parsed.ttl_ms, 600_000);
        assert_eq!(
            parsed.key(),
            format!("edge-hmac:nonce:v1:dev:{}", claim.nonce_id)
        );
    }
}
