//! The edge secret: its value (`{"hmac_secret": ..., "environment": ...}`),
//! validation, safe summaries, and the local development secret.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use edge_hmac_core::config::SecretString;
use edge_hmac_core::scheme::{MIN_SECRET_BYTES, fingerprint, validate_environment};

use crate::error::{Error, Result};

/// Default scope of the secret path convention.
pub const DEFAULT_SCOPE: &str = "edge";
/// Default name of the secret path convention.
pub const DEFAULT_NAME: &str = "hmac";

/// `crawbl/{environment}/{scope}/{name}`.
pub fn secret_id(environment: &str, scope: &str, name: &str) -> String {
    format!("crawbl/{environment}/{scope}/{name}")
}

/// A validated edge secret. `Debug` never shows the value.
#[derive(Debug, Clone)]
pub struct EdgeSecret {
    /// The HMAC key (UTF-8, used as-is).
    pub hmac_secret: SecretString,
    /// The environment it signs for.
    pub environment: String,
}

impl EdgeSecret {
    /// Length of the key in bytes.
    pub fn len(&self) -> usize {
        self.hmac_secret.expose().len()
    }

    /// Always false for a validated secret.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// First 8 hex of SHA-256 of the key.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.hmac_secret.expose().as_bytes())
    }

    /// Parses a SecretString (`id` names it in errors) and checks it against
    /// `expected_environment` when given.
    pub fn parse(id: &str, text: &str, expected_environment: Option<&str>) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| Error::NotJson { id: id.into() })?;
        let obj = value.as_object().ok_or(Error::NotJson { id: id.into() })?;
        let string = |key: &'static str| {
            obj.get(key)
                .and_then(serde_json::Value::as_str)
                .ok_or(Error::MissingKey { id: id.into(), key })
        };
        let hmac_secret = string("hmac_secret")?;
        let environment = string("environment")?;
        Self::new(
            id,
            hmac_secret.to_owned(),
            environment,
            expected_environment,
        )
    }

    /// Validates a secret given as parts.
    pub fn new(
        id: &str,
        hmac_secret: String,
        environment: &str,
        expected_environment: Option<&str>,
    ) -> Result<Self> {
        let hmac_secret = SecretString::new(hmac_secret);
        if hmac_secret.expose().len() < MIN_SECRET_BYTES {
            return Err(Error::TooShort {
                id: id.into(),
                len: hmac_secret.expose().len(),
            });
        }
        // Validate before comparing: an invalid value is never echoed (it
        // could be a key put under the wrong name).
        validate_environment(environment).map_err(|e| Error::InvalidKey {
            id: id.into(),
            key: "environment",
            why: e.to_string(),
        })?;
        if let Some(expected) = expected_environment
            && expected != environment
        {
            return Err(Error::EnvironmentMismatch {
                id: id.into(),
                expected: expected.into(),
                found: environment.into(),
            });
        }
        Ok(Self {
            hmac_secret,
            environment: environment.to_owned(),
        })
    }
}

/// Where the development secret lives: `$EDGE_HMAC_DEV_SECRET`, else
/// `$XDG_CONFIG_HOME/edge-hmac/dev-secret.json`, else
/// `~/.config/edge-hmac/dev-secret.json`.
pub fn dev_secret_path() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGE_HMAC_DEV_SECRET").filter(|v| !v.is_empty()) {
        return p.into();
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("edge-hmac/dev-secret.json")
}

/// The local development secret (environment `dev`): read from
/// [`dev_secret_path`], or generated there on first use (random 32 bytes as
/// 64 hex digits, file mode 0600). Refuses a file others can read.
pub fn dev_secret() -> Result<(EdgeSecret, PathBuf, bool)> {
    let path = dev_secret_path();
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::Usage(format!(
                    "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
            let secret = EdgeSecret::parse(&path.display().to_string(), &text, Some("dev"))?;
            Ok((secret, path, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = EdgeSecret::new(
                "dev secret",
                random_hex(32).map_err(|e| Error::Other(format!("no OS randomness: {e}")))?,
                "dev",
                None,
            )?;
            write_private(&path, &secret).map_err(io)?;
            Ok((secret, path, true))
        }
        Err(e) => Err(io(e)),
    }
}

/// The local development secret if `edge-hmac run --dev` made it; never
/// creates one (a key nothing verifies with would only give 401s).
pub fn existing_dev_secret() -> Result<(EdgeSecret, PathBuf)> {
    let path = dev_secret_path();
    if !path.exists() {
        return Err(Error::NoDevSecret { path });
    }
    let (secret, path, _) = dev_secret()?;
    Ok((secret, path))
}

fn write_private(path: &Path, secret: &EdgeSecret) -> std::io::Result<()> {
    // Create missing directories private (0700); never change an existing one.
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let text = serde_json::json!({
        "hmac_secret": secret.hmac_secret.expose(),
        "environment": secret.environment,
    });
    writeln!(file, "{text}")
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> std::result::Result<String, getrandom::Error> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef-unit";

    /// Every malformed secret value gets its own error, never echoing the key.
    #[test]
    fn parse_errors() {
        let ok = format!(r#"{{"hmac_secret":"{KEY}","environment":"dev"}}"#);
        let s = EdgeSecret::parse("id", &ok, Some("dev")).unwrap();
        assert_eq!(s.len(), KEY.len());
        assert!(!format!("{s:?}").contains(KEY));
        assert!(matches!(
            EdgeSecret::parse("id", "nope", None),
            Err(Error::NotJson { .. })
        ));
        assert!(matches!(
            EdgeSecret::parse("id", "[1]", None),
            Err(Error::NotJson { .. })
        ));
        assert!(matches!(
            EdgeSecret::parse("id", r#"{"environment":"dev"}"#, None),
            Err(Error::MissingKey {
                key: "hmac_secret",
                ..
            })
        ));
        assert!(matches!(
            EdgeSecret::parse(
                "id",
                &format!(r#"{{"hmac_secret":"{KEY}","environment":7}}"#),
                None
            ),
            Err(Error::MissingKey {
                key: "environment",
                ..
            })
        ));
        let short = r#"{"hmac_secret":"short","environment":"dev"}"#;
        let err = EdgeSecret::parse("id", short, None).unwrap_err();
        assert!(matches!(err, Error::TooShort { len: 5, .. }));
        assert!(!err.to_string().contains("short\""));
        assert!(matches!(
            EdgeSecret::parse("id", &ok, Some("prod")),
            Err(Error::EnvironmentMismatch { .. })
        ));
        // Found by fuzz/secret_json: a key given as the expected
        // environment (`--env`) was echoed by the mismatch error.
        let err = EdgeSecret::parse("id", &ok, Some(KEY)).unwrap_err();
        assert!(matches!(err, Error::EnvironmentMismatch { .. }));
        assert!(
            !err.to_string().contains(KEY),
            "the expected value is echoed"
        );
        // An environment that is not a name (here: a key under the wrong
        // name) is refused without echoing it.
        let swapped = format!(r#"{{"hmac_secret":"{KEY}","environment":"{KEY}"}}"#);
        let err = EdgeSecret::parse("id", &swapped, Some("dev")).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidKey {
                key: "environment",
                ..
            }
        ));
        assert!(!err.to_string().contains(KEY), "{err}");
    }

    /// The path convention.
    #[test]
    fn secret_path_convention() {
        assert_eq!(
            secret_id("dev", DEFAULT_SCOPE, DEFAULT_NAME),
            "crawbl/dev/edge/hmac"
        );
    }
}
