//! Where `sign` and `verify` get the key from: an environment variable, a
//! file, the local development secret, or Secrets Manager.

use std::path::PathBuf;

use crate::aws::{AwsArgs, SecretArgs};
use crate::error::{Error, Result};
use crate::secret::{EdgeSecret, existing_dev_secret};

/// Key source options shared by `sign` and `verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeySource {
    /// Read the secret from this environment variable (e.g. HMAC_SECRET); needs --env
    #[arg(long, value_name = "VAR", conflicts_with_all = ["secret_file", "dev"])]
    pub secret_env: Option<String>,
    /// Read the secret from a file: the Secrets Manager JSON ({"hmac_secret","environment"}) or the bare secret (one trailing newline is dropped)
    #[arg(long, value_name = "PATH", conflicts_with = "dev")]
    pub secret_file: Option<PathBuf>,
    /// Use the local development secret made by `edge-hmac run --dev` (refused, exit 25, until `run --dev` has made it)
    #[arg(long)]
    pub dev: bool,
    /// Which secret in Secrets Manager (used when no other source is given)
    #[command(flatten)]
    pub secret: SecretArgs,
    /// How to reach AWS
    #[command(flatten)]
    pub aws: AwsArgs,
}

impl KeySource {
    /// Resolves the key, checked against `--env` when given, and says on
    /// stderr where it came from and its fingerprint (never the value).
    pub async fn resolve(&self) -> Result<EdgeSecret> {
        let (secret, origin) = self.resolve_quietly().await?;
        eprintln!(
            "edge-hmac: key {} (environment {}) from {origin}",
            secret.fingerprint(),
            secret.environment
        );
        Ok(secret)
    }

    /// The key and where it came from.
    async fn resolve_quietly(&self) -> Result<(EdgeSecret, String)> {
        let env = self.secret.environment.as_deref();
        if let Some(var) = &self.secret_env {
            let env = env.ok_or_else(|| {
                Error::Usage("--secret-env needs --env ENV (the environment to sign for)".into())
            })?;
            let value = std::env::var(var).map_err(|_| {
                Error::Usage(format!(
                    "environment variable {} is unset or not UTF-8",
                    edge_hmac_core::config::shown_name(var)
                ))
            })?;
            let origin = format!("${}", edge_hmac_core::config::shown_name(var));
            let secret = EdgeSecret::new(&origin, value, env, None)?;
            return Ok((secret, format!("environment variable {origin}")));
        }
        if let Some(path) = &self.secret_file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let id = path.display().to_string();
            let origin = format!("file {id}");
            if text.trim_start().starts_with('{') {
                return Ok((EdgeSecret::parse(&id, &text, env)?, origin));
            }
            let env = env.ok_or_else(|| {
                Error::Usage("--secret-file with a bare secret needs --env ENV".into())
            })?;
            let value = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            return Ok((EdgeSecret::new(&id, value.to_owned(), env, None)?, origin));
        }
        if self.dev {
            let (secret, path) = existing_dev_secret()?;
            if let Some(env) = env
                && env != secret.environment
            {
                return Err(Error::EnvironmentMismatch {
                    id: path.display().to_string(),
                    expected: env.into(),
                    found: secret.environment,
                });
            }
            return Ok((secret, format!("the development secret {}", path.display())));
        }
        let id = self.secret.id()?;
        let sm = self.aws.client().await;
        let secret = sm.fetch(&id, "AWSCURRENT", env).await?.secret;
        Ok((
            secret,
            format!("Secrets Manager {id} (AWSCURRENT, {})", sm.region()),
        ))
    }
}
