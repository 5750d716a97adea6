//! The client side's key holder, shared by both formats' signing code
//! (`v1::Signer::sign`, `rfc9421::Signer::sign_rfc9421`).

use super::key::SecretKey;
use super::{SchemeError, validate_environment};

/// Signs requests for one environment with one secret.
#[derive(Debug, Clone)]
pub struct Signer {
    pub(crate) key: SecretKey,
    pub(crate) environment: String,
}

impl Signer {
    /// A signer for `environment` with `key`.
    pub fn new(key: SecretKey, environment: &str) -> Result<Self, SchemeError> {
        validate_environment(environment)?;
        Ok(Self {
            key,
            environment: environment.to_owned(),
        })
    }

    /// The key's fingerprint.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }
}
