//! The Secrets Manager group: the secret's AWSCURRENT value is readable
//! and valid, and which versions carry AWSPREVIOUS and AWSPENDING. The
//! fingerprints found here are what the External Secrets group compares
//! the Kubernetes Secrets with.

use crate::aws::{AWSCURRENT, AWSPENDING, AWSPREVIOUS, AwsArgs, Fetched, Sm};
use crate::check::{Check, Group, Status, Target, doc};
use crate::error::Error;

/// The fingerprint of each stage, when read.
#[derive(Debug, Clone, Default)]
pub struct SmFacts {
    /// Checks made.
    pub checks: Vec<Check>,
    /// AWSCURRENT's fingerprint (`None`: could not be read).
    pub current: Option<String>,
    /// AWSPREVIOUS / AWSPENDING: `None` when the stages could not be read;
    /// `Some(None)` when the stage does not exist.
    pub previous: Option<Option<String>>,
    /// See `previous`.
    pub pending: Option<Option<String>>,
}

/// The Secrets Manager checks.
pub struct SmCheck<'a> {
    sm: Sm,
    target: &'a Target,
}

/// Whether `e` means the secret itself is wrong or missing (fail), rather
/// than that it could not be read (unknown).
fn is_about_the_secret(e: &Error) -> bool {
    e.is_invalid_value()
        || matches!(e, Error::NotFound { .. })
        || matches!(e, Error::Service { code, .. } if code == "InvalidRequestException")
}

impl<'a> SmCheck<'a> {
    /// A client for `aws` (no call made yet).
    pub async fn new(aws: &AwsArgs, target: &'a Target) -> Self {
        Self {
            sm: aws.client().await,
            target,
        }
    }

    /// Reads the three stages.
    pub async fn run(&self) -> SmFacts {
        let id = &self.target.secret_id;
        let env = self.target.environment.as_deref();
        let mut facts = SmFacts::default();
        let g = Group::SecretsManager;
        match self.sm.fetch(id, AWSCURRENT, env).await {
            Ok(f) => {
                facts.checks.push(Check::ok(
                    g,
                    "current-version",
                    format!(
                        "{id} ({}) AWSCURRENT is valid: {} bytes, environment {}, fingerprint {}{}",
                        self.sm.region(),
                        f.secret.len(),
                        f.secret.environment,
                        f.secret.fingerprint(),
                        version(&f)
                    ),
                ));
                facts.current = Some(f.secret.fingerprint());
            }
            Err(e) => {
                let status = if is_about_the_secret(&e) {
                    Status::Fail
                } else {
                    Status::Unknown
                };
                facts.checks.push(
                    Check::new(g, "current-version", status, format!("{id}: {e}")).fix(
                        if status == Status::Fail {
                            "every proxy restarted from now on fails to start or keeps an old key: restore the secret (or put a valid value) in Secrets Manager, then force-sync the ExternalSecret"
                        } else {
                            "could not read the secret: check the AWS flags, credentials and network, then run check again"
                        },
                        doc::SECRET,
                    ),
                );
                return facts;
            }
        }
        let stages = match self.sm.stages(id).await {
            Ok(s) => s,
            Err(e) => {
                facts.checks.push(
                    Check::new(g, "rotation-stages", Status::Unknown, format!("{id}: {e}")).fix(
                        "could not list the secret's versions (secretsmanager:DescribeSecret)",
                        doc::ROTATION,
                    ),
                );
                return facts;
            }
        };
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for (stage, version_id, slot) in [
            (AWSPREVIOUS, stages.previous.as_deref(), &mut facts.previous),
            (AWSPENDING, stages.pending.as_deref(), &mut facts.pending),
        ] {
            let Some(v) = version_id else {
                found.push(format!("no {stage}"));
                *slot = Some(None);
                continue;
            };
            match self.sm.fetch_version(id, v, env).await {
                Ok(f) => {
                    found.push(format!("{stage} {} (version {v})", f.secret.fingerprint()));
                    *slot = Some(Some(f.secret.fingerprint()));
                }
                Err(e) => problems.push((
                    stage,
                    is_about_the_secret(&e),
                    format!("{stage} (version {v}): {e}"),
                )),
            }
        }
        if problems.is_empty() {
            let rotating = if stages.pending.is_some() {
                ": a rotation is staged (`edge-hmac rotate status`)"
            } else {
                ""
            };
            facts.checks.push(Check::ok(
                g,
                "rotation-stages",
                format!("{}{rotating}", found.join(", ")),
            ));
        } else {
            let fail = problems.iter().any(|(_, about, _)| *about);
            let text: Vec<String> = problems.into_iter().map(|(_, _, t)| t).collect();
            facts.checks.push(
                Check::new(
                    g,
                    "rotation-stages",
                    if fail { Status::Fail } else { Status::Unknown },
                    text.join("; "),
                )
                .fix(
                    "a proxy restarted now would not load that key: fix or remove the stage (`edge-hmac rotate status` shows the steps)",
                    doc::ROTATION,
                ),
            );
        }
        facts
    }
}

fn version(f: &Fetched) -> String {
    f.version_id
        .as_deref()
        .map(|v| format!(", version {v}"))
        .unwrap_or_default()
}
