//! `edge-hmac fetch`: reads the secret and prints a summary that never
//! contains it; the value itself only with `--reveal` in a machine format.

use crate::aws::{AwsArgs, SecretArgs};
use crate::error::{Error, Result};
use crate::sign::shell_quote;

/// Output formats of `fetch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable summary (never the secret)
    Summary,
    /// JSON object (the secret only with --reveal)
    Json,
    /// Shell `VAR=value` lines for HMAC_SECRET and HMAC_ENVIRONMENT (needs --reveal)
    Env,
}

/// Version stages that can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The current version
    #[value(name = "AWSCURRENT")]
    Current,
    /// The version before the last rotation
    #[value(name = "AWSPREVIOUS")]
    Previous,
    /// The version staged by `edge-hmac rotate begin`, not yet promoted
    #[value(name = "AWSPENDING")]
    Pending,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Current => "AWSCURRENT",
            Stage::Previous => "AWSPREVIOUS",
            Stage::Pending => "AWSPENDING",
        }
    }
}

/// Arguments of `edge-hmac fetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Version stage to read
    #[arg(long, value_enum, default_value = "AWSCURRENT")]
    pub version_stage: Stage,
    /// Output format
    #[arg(long, value_enum, default_value = "summary")]
    pub format: Format,
    /// Include the secret value itself (only with --format json or env)
    #[arg(long)]
    pub reveal: bool,
    /// Which secret
    #[command(flatten)]
    pub secret: SecretArgs,
    /// How to reach AWS
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// Runs `edge-hmac fetch`.
pub async fn run(args: FetchArgs) -> Result<()> {
    match (args.format, args.reveal) {
        (Format::Summary, true) => {
            return Err(Error::Usage(
                "--reveal prints the secret and needs a machine format: --format env or --format json".into(),
            ));
        }
        (Format::Env, false) => {
            return Err(Error::Usage(
                "--format env prints the secret; add --reveal to confirm (or use --format json for a summary)".into(),
            ));
        }
        _ => {}
    }
    let id = args.secret.id()?;
    let sm = args.aws.client().await;
    let f = sm
        .fetch(
            &id,
            args.version_stage.label(),
            args.secret.environment.as_deref(),
        )
        .await?;
    match args.format {
        Format::Summary => {
            println!("secret:      {}", f.id);
            if let Some(arn) = &f.arn {
                println!("arn:         {arn}");
            }
            println!(
                "version:     {} ({})",
                f.version_id.as_deref().unwrap_or("-"),
                f.stages.join(", ")
            );
            println!("region:      {}", sm.region());
            println!("environment: {}", f.secret.environment);
            println!("length:      {} bytes", f.secret.len());
            println!(
                "fingerprint: {} (first 8 hex of SHA-256 of hmac_secret)",
                f.secret.fingerprint()
            );
        }
        Format::Json => {
            let mut v = serde_json::json!({
                "secret_id": f.id,
                "arn": f.arn,
                "version_id": f.version_id,
                "version_stages": f.stages,
                "region": sm.region(),
                "environment": f.secret.environment,
                "length": f.secret.len(),
                "fingerprint": f.secret.fingerprint(),
            });
            if args.reveal {
                v["hmac_secret"] =
                    serde_json::Value::String(f.secret.hmac_secret.expose().to_owned());
            }
            println!("{v}");
        }
        Format::Env => {
            println!("HMAC_SECRET={}", shell_quote(f.secret.hmac_secret.expose()));
            println!("HMAC_ENVIRONMENT={}", shell_quote(&f.secret.environment));
        }
    }
    Ok(())
}
