//! AWS Secrets Manager through the official AWS SDK for Rust: client set-up
//! (standard credential chain, profile, region falling back to
//! `eu-central-1`, endpoint override), fetching the edge secret, and mapping
//! every failure to a precise [`Error`].

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Error, Result};
use crate::secret::{DEFAULT_NAME, DEFAULT_SCOPE, EdgeSecret, secret_id};

/// Region used when neither `--region` nor the SDK's chain gives one.
pub const DEFAULT_REGION: &str = "eu-central-1";

/// How to reach AWS.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// AWS region [default: from AWS_REGION / the profile, else eu-central-1]
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config (SSO profiles included) [default: AWS_PROFILE]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Secrets Manager endpoint, for emulators [default: AWS_ENDPOINT_URL_SECRETS_MANAGER / AWS_ENDPOINT_URL, else AWS]
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Seconds allowed for one attempt of an AWS call
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_AWS_TIMEOUT)]
    pub aws_timeout: u64,
    /// Attempts per AWS call (throttling, timeouts and network errors are retried with backoff)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_AWS_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub aws_max_attempts: u32,
}

/// Which secret: `--secret-id`, or the path convention from `--env`.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretArgs {
    /// Environment: selects crawbl/<ENV>/<scope>/<name> and must match the secret's "environment"
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
    /// Full secret id or ARN (instead of the path convention)
    #[arg(long, value_name = "ID")]
    pub secret_id: Option<String>,
    /// Scope part of the path convention
    #[arg(long, value_name = "SCOPE", default_value = DEFAULT_SCOPE)]
    pub scope: String,
    /// Name part of the path convention
    #[arg(long, value_name = "NAME", default_value = DEFAULT_NAME)]
    pub name: String,
}

/// Flags as `(flag, value)`, joined into a command line that can be pasted
/// (values shell-quoted).
pub fn join_flags(flags: &[(&str, String)]) -> String {
    flags
        .iter()
        .map(|(f, v)| format!(" {f} {}", crate::sign::shell_quote(v)))
        .collect()
}

/// Default of `--aws-timeout`.
const DEFAULT_AWS_TIMEOUT: u64 = 10;
/// Default of `--aws-max-attempts`.
const DEFAULT_AWS_MAX_ATTEMPTS: u32 = 4;

impl AwsArgs {
    /// The flags given on the command line (not defaults, not the
    /// environment), to repeat in a printed next step so it reaches the
    /// same place.
    pub fn given_flags(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (flag, value) in [
            ("--region", &self.region),
            ("--profile", &self.profile),
            ("--endpoint-url", &self.endpoint_url),
        ] {
            if let Some(v) = value {
                out.push((flag, v.clone()));
            }
        }
        if self.aws_timeout != DEFAULT_AWS_TIMEOUT {
            out.push(("--aws-timeout", self.aws_timeout.to_string()));
        }
        if self.aws_max_attempts != DEFAULT_AWS_MAX_ATTEMPTS {
            out.push(("--aws-max-attempts", self.aws_max_attempts.to_string()));
        }
        out
    }
}

impl SecretArgs {
    /// The flags given on the command line that select the secret (see
    /// [`AwsArgs::given_flags`]).
    pub fn given_flags(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(id) = &self.secret_id {
            out.push(("--secret-id", id.clone()));
        }
        if let Some(env) = &self.environment {
            out.push(("--env", env.clone()));
        }
        if self.secret_id.is_none() {
            if self.scope != DEFAULT_SCOPE {
                out.push(("--scope", self.scope.clone()));
            }
            if self.name != DEFAULT_NAME {
                out.push(("--name", self.name.clone()));
            }
        }
        out
    }

    /// The secret id to read.
    pub fn id(&self) -> Result<String> {
        match (&self.secret_id, &self.environment) {
            (Some(id), _) => Ok(id.clone()),
            (None, Some(env)) => Ok(secret_id(env, &self.scope, &self.name)),
            (None, None) => Err(Error::Usage(
                "say which secret: --env ENV (reads crawbl/ENV/edge/hmac) or --secret-id ID".into(),
            )),
        }
    }
}

/// A Secrets Manager client and what it was built from.
pub struct Sm {
    client: Client,
    region: String,
    endpoint: String,
    attempts: u32,
}

impl AwsArgs {
    /// Builds the client: the SDK's standard credential chain (environment,
    /// profile, SSO, web identity, ECS/IMDS), retries with backoff, timeouts.
    pub async fn client(&self) -> Sm {
        let mut region_chain = RegionProviderChain::first_try(self.region.clone().map(Region::new));
        let mut default_region = aws_config::default_provider::region::Builder::default();
        if let Some(profile) = &self.profile {
            default_region = default_region.profile_name(profile);
        }
        region_chain = region_chain
            .or_else(default_region.build())
            .or_else(Region::new(DEFAULT_REGION));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region_chain)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(self.aws_max_attempts)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(self.aws_timeout.clamp(1, 60)))
                    .operation_attempt_timeout(Duration::from_secs(self.aws_timeout.max(1)))
                    .build(),
            );
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| DEFAULT_REGION.into());
        let endpoint = config
            .endpoint_url()
            .map(str::to_owned)
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"));
        Sm {
            client: Client::new(&config),
            region,
            endpoint,
            attempts: self.aws_max_attempts,
        }
    }
}

/// The staging label of the key clients sign with.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label of the key before the last rotation.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// The staging label of the key staged for the next rotation.
pub const AWSPENDING: &str = "AWSPENDING";

/// Which versions carry the three stages the filter uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// Version id staged AWSCURRENT.
    pub current: String,
    /// Version id staged AWSPREVIOUS, if any.
    pub previous: Option<String>,
    /// Version id staged AWSPENDING, if any.
    pub pending: Option<String>,
}

/// Which version of a secret to read.
#[derive(Debug, Clone, Copy)]
enum Version<'a> {
    /// The one carrying this staging label.
    Stage(&'a str),
    /// This version id.
    Id(&'a str),
}

/// A secret version as read from Secrets Manager.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The id asked for.
    pub id: String,
    /// Its ARN.
    pub arn: Option<String>,
    /// The version read.
    pub version_id: Option<String>,
    /// That version's stages.
    pub stages: Vec<String>,
    /// The validated value.
    pub secret: EdgeSecret,
}

impl Sm {
    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Reads version stage `stage` of `id` and validates it (JSON object,
    /// string keys, length, environment).
    pub async fn fetch(
        &self,
        id: &str,
        stage: &str,
        expected_environment: Option<&str>,
    ) -> Result<Fetched> {
        self.get(id, Version::Stage(stage), expected_environment)
            .await
    }

    /// Reads version `version_id` of `id` and validates it like [`Sm::fetch`].
    pub async fn fetch_version(
        &self,
        id: &str,
        version_id: &str,
        expected_environment: Option<&str>,
    ) -> Result<Fetched> {
        self.get(id, Version::Id(version_id), expected_environment)
            .await
    }

    async fn get(
        &self,
        id: &str,
        version: Version<'_>,
        expected_environment: Option<&str>,
    ) -> Result<Fetched> {
        let request = self.client.get_secret_value().secret_id(id);
        let (request, what) = match version {
            Version::Stage(s) => (request.version_stage(s), s),
            Version::Id(v) => (request.version_id(v), v),
        };
        let out = request
            .send()
            .await
            .map_err(|e| self.map_error(e, id, what))?;
        let text = out
            .secret_string()
            .ok_or(Error::NotJson { id: id.into() })?;
        let secret = EdgeSecret::parse(id, text, expected_environment)?;
        Ok(Fetched {
            id: id.into(),
            arn: out.arn().map(str::to_owned),
            version_id: out.version_id().map(str::to_owned),
            stages: out.version_stages().to_vec(),
            secret,
        })
    }

    /// Like [`Sm::fetch`], `None` when the stage does not exist (a secret
    /// never rotated has no `AWSPREVIOUS`).
    pub async fn fetch_optional(
        &self,
        id: &str,
        stage: &str,
        expected_environment: Option<&str>,
    ) -> Result<Option<Fetched>> {
        match self.fetch(id, stage, expected_environment).await {
            Ok(f) => Ok(Some(f)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The version ids staged `AWSCURRENT`, `AWSPREVIOUS` and `AWSPENDING`
    /// (cheap: no secret value is read).
    pub async fn stages(&self, id: &str) -> Result<Stages> {
        let out = self
            .client
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| self.map_error(e, id, AWSCURRENT))?;
        let with = |stage: &str| {
            out.version_ids_to_stages().and_then(|m| {
                m.iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == stage))
                    .map(|(v, _)| v.clone())
            })
        };
        let current = with(AWSCURRENT).ok_or_else(|| Error::NotFound {
            id: id.into(),
            stage: AWSCURRENT.into(),
            region: self.region.clone(),
        })?;
        Ok(Stages {
            current,
            previous: with(AWSPREVIOUS),
            pending: with(AWSPENDING),
        })
    }

    /// The raw value of version `version_id` (for `rotate begin`, which
    /// keeps the current value's other keys). Never printed.
    pub async fn value(&self, id: &str, version_id: &str) -> Result<zeroize::Zeroizing<String>> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| self.map_error(e, id, version_id))?;
        out.secret_string()
            .map(|s| zeroize::Zeroizing::new(s.to_owned()))
            .ok_or(Error::NotJson { id: id.into() })
    }

    /// Stores `value` as a new version of `id` labelled only `AWSPENDING`;
    /// returns its version id.
    pub async fn put_pending(&self, id: &str, value: &str) -> Result<String> {
        let out = self
            .client
            .put_secret_value()
            .secret_id(id)
            .secret_string(value)
            .version_stages(AWSPENDING)
            .send()
            .await
            .map_err(|e| self.map_error(e, id, AWSPENDING))?;
        out.version_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::Other(format!("Secrets Manager gave no version id for {id}")))
    }

    /// Moves label `stage` to `to` (if given) and removes it from `from` (if
    /// given), in one call. Moving `AWSCURRENT` makes Secrets Manager label
    /// the version it leaves `AWSPREVIOUS`.
    pub async fn move_stage(
        &self,
        id: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<()> {
        self.client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_owned))
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.map_error(e, id, stage))?;
        Ok(())
    }

    fn map_error<E>(&self, err: SdkError<E, HttpResponse>, id: &str, stage: &str) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if let Some(detail) = credentials_problem(&err) {
            return Error::NoCredentials { detail };
        }
        if matches!(err.code(), Some("ExpiredTokenException" | "ExpiredToken")) {
            return Error::NoCredentials {
                detail: "the session token has expired; log in again (e.g. `aws sso login`)".into(),
            };
        }
        let network = |detail: String| Error::Network {
            endpoint: self.endpoint.clone(),
            detail,
        };
        match &err {
            SdkError::TimeoutError(_) => {
                return network(format!(
                    "no answer within the timeout ({} attempts)",
                    self.attempts
                ));
            }
            SdkError::DispatchFailure(d) => {
                let what = if d.is_timeout() {
                    "timed out"
                } else if d.is_io() {
                    "connection failed"
                } else {
                    "request could not be sent"
                };
                return network(format!(
                    "{what} ({} attempts): {}",
                    self.attempts,
                    chain(&err)
                ));
            }
            SdkError::ResponseError(_) => {
                return network(format!("unreadable response: {}", chain(&err)));
            }
            _ => {}
        }
        let (code, detail) = match err.code() {
            Some(code) => (code.to_owned(), err.message().unwrap_or("").to_owned()),
            // Not a JSON error body (some emulators and proxies answer in XML
            // or plain text): take the code from the body or the status.
            None => code_from_raw(err.raw_response()),
        };
        match code.as_str() {
            "ResourceNotFoundException" => Error::NotFound {
                id: id.into(),
                stage: stage.into(),
                region: self.region.clone(),
            },
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException" => Error::AccessDenied {
                id: id.into(),
                detail: format!("{code}: {detail}"),
            },
            "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "Throttling" => Error::Throttled {
                id: id.into(),
                attempts: self.attempts,
            },
            _ => Error::Service {
                id: id.into(),
                code,
                detail,
            },
        }
    }
}

/// Error code and message from a response the SDK could not parse.
fn code_from_raw(raw: Option<&HttpResponse>) -> (String, String) {
    let Some(raw) = raw else {
        return ("Unknown".into(), String::new());
    };
    let status = raw.status().as_u16();
    let body = raw
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let between = |open: &str, close: &str| {
        let start = body.find(open)? + open.len();
        let end = body[start..].find(close)? + start;
        Some(body[start..end].trim().to_owned())
    };
    let code = between("<Code>", "</Code>").unwrap_or_else(|| {
        match status {
            403 => "AccessDenied",
            404 => "ResourceNotFoundException",
            429 => "ThrottlingException",
            _ => "Unknown",
        }
        .to_owned()
    });
    let message = between("<Message>", "</Message>").unwrap_or_else(|| format!("HTTP {status}"));
    (code, message)
}

/// The credential chain's complaint, if the error comes from it.
fn credentials_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => {
                    "no provider in the chain had credentials".to_owned()
                }
                other => other.to_string(),
            });
        }
        cur = e.source();
    }
    None
}

/// An error and its sources on one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
