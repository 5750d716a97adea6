//! `edge-hmac check`: is the edge protected right now? Reads Secrets
//! Manager, the cluster (through the Kubernetes API, `kube` + `k8s-openapi`)
//! and each proxy's admin interface, and reports grouped checks, each ok,
//! warn, fail or unknown (could not be made: never a pass), with a hint and
//! the section of the docs that fixes it. It changes nothing: the only
//! write it makes is a port-forward to a proxy pod.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::aws::{AwsArgs, SecretArgs};
use crate::error::{Error, Result};

pub mod cluster;
pub mod judge;
pub mod proxy;
pub mod sm;

/// Exit code when a check failed.
pub const EXIT_FAILED: u8 = 30;
/// Exit code when nothing failed but a check could not be made.
pub const EXIT_UNKNOWN: u8 = 31;

/// Where each fix is documented.
pub mod doc {
    /// The secret and its value.
    pub const SECRET: &str = "docs/deploy.md#1-the-secret-in-secrets-manager";
    /// Publishing the module, pinned.
    pub const PUBLISH: &str = "docs/deploy.md#2-publish-the-filter";
    /// Rendering and applying the kit.
    pub const APPLY: &str = "docs/deploy.md#3-render-and-apply";
    /// What `edge-hmac check` checks and how to fix each.
    pub const CHECK: &str = "docs/deploy.md#10-check-the-deployment";
    /// The rotation steps on Envoy Gateway.
    pub const ROTATION: &str =
        "docs/rotation.md#on-envoy-gateway-environment-dev-replace-for-others";
    /// Troubleshooting.
    pub const TROUBLE: &str = "docs/deploy.md#8-troubleshooting";
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Grouped lines, ✔/‼/×/?, with hints (colour on a terminal only)
    Human,
    /// One JSON object (docs/deploy.md §10)
    Json,
}

/// `edge-hmac check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Which secret
    #[command(flatten)]
    pub secret: SecretArgs,
    /// How to reach AWS
    #[command(flatten)]
    pub aws: AwsArgs,
    /// kubeconfig file [default: KUBECONFIG, else ~/.kube/config, else in-cluster]
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context [default: its current context]
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Envoy admin interface of a proxy to check (repeat for each); without it, each proxy pod of the Gateway is reached by a port-forward through the API server (port 19000)
    #[arg(long = "admin", value_name = "HOST:PORT")]
    pub admin: Vec<String>,
    /// Which kit
    #[command(flatten)]
    pub names: NamesArgs,
    /// Time between the two reads of each proxy's counters (the rejection share is over this window)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::run::parse_duration)]
    pub window: Duration,
    /// Warn when more than this share of a proxy's requests in the window was refused
    #[arg(long, value_name = "SHARE", default_value_t = 0.05)]
    pub max_rejected_share: f64,
    /// ...and at least this many requests were refused in the window
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub min_rejected: u64,
    /// Warn when the TLS certificate expires within this many days
    #[arg(long, value_name = "DAYS", default_value_t = 14)]
    pub cert_warn_days: u64,
    /// Seconds allowed for each call to the API server (a proxy's admin interface gets 5 s per read; Secrets Manager calls follow --aws-timeout)
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
    /// Output format
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

/// The names of the kit's objects, as `render gateway` renders them (for
/// `check` and `render check-rbac`).
#[derive(Debug, Clone, clap::Args)]
pub struct NamesArgs {
    /// Gateway name
    #[arg(long, value_name = "NAME", default_value = "edge")]
    pub gateway_name: String,
    /// Gateway namespace (the kit's policies live there)
    #[arg(long, value_name = "NS", default_value = "edge")]
    pub gateway_namespace: String,
    /// Name of the kit's EnvoyExtensionPolicy and EnvoyProxy (the admission policy is <NAME>-keep-signature-check)
    #[arg(long, value_name = "NAME", default_value = "edge-hmac")]
    pub policy_name: String,
    /// Namespace of the proxies and of the Secrets ESO writes
    #[arg(long, value_name = "NS", default_value = "envoy-gateway-system")]
    pub proxy_namespace: String,
    /// Name of the ClusterSecretStore
    #[arg(long, value_name = "NAME", default_value = "aws-secretsmanager")]
    pub store_name: String,
}

/// A group of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// The secret in Secrets Manager.
    SecretsManager,
    /// The store and the ExternalSecrets, and the Secrets they wrote.
    ExternalSecrets,
    /// GatewayClass, Gateway, policies, admission policy.
    EnvoyGateway,
    /// Each proxy's admin interface.
    Proxies,
}

impl Group {
    fn title(self) -> &'static str {
        match self {
            Group::SecretsManager => "Secrets Manager",
            Group::ExternalSecrets => "External Secrets",
            Group::EnvoyGateway => "Envoy Gateway",
            Group::Proxies => "Proxies",
        }
    }
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but needs attention.
    Warn,
    /// Broken: the edge is not protected as configured, or will not be.
    Fail,
    /// Could not be checked (no access, timeout): never a pass.
    Unknown,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its group.
    pub group: Group,
    /// Stable name within the group (kebab-case).
    pub name: String,
    /// What it is about when there are several (a proxy's admin address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The outcome.
    pub status: Status,
    /// What was found, one line.
    pub message: String,
    /// What to do (not ok only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The section of the docs that fixes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<&'static str>,
}

impl Check {
    /// A check with `status` and `message`.
    pub fn new(group: Group, name: &str, status: Status, message: impl Into<String>) -> Self {
        Self {
            group,
            name: name.to_owned(),
            subject: None,
            status,
            message: message.into(),
            hint: None,
            doc: None,
        }
    }

    /// An ok check.
    pub fn ok(group: Group, name: &str, message: impl Into<String>) -> Self {
        Self::new(group, name, Status::Ok, message)
    }

    /// With a hint and a doc link (shown when not ok).
    pub fn fix(mut self, hint: impl Into<String>, doc: &'static str) -> Self {
        self.hint = Some(hint.into());
        self.doc = Some(doc);
        self
    }

    /// About `subject`.
    pub fn on(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

/// Everything `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Version of this JSON shape.
    pub version: u32,
    /// The environment checked.
    pub environment: Option<String>,
    /// The secret checked.
    pub secret_id: String,
    /// How many checks ended in each status.
    pub counts: Counts,
    /// The exit code.
    pub exit_code: u8,
    /// Every check, in group order.
    pub checks: Vec<Check>,
}

/// Checks per status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// ok.
    pub ok: usize,
    /// warn.
    pub warn: usize,
    /// fail.
    pub fail: usize,
    /// unknown.
    pub unknown: usize,
}

impl Report {
    /// Builds the report: counts and exit code from `checks`.
    pub fn new(environment: Option<String>, secret_id: String, mut checks: Vec<Check>) -> Self {
        checks.sort_by_key(|c| c.group);
        let mut counts = Counts::default();
        for c in &checks {
            match c.status {
                Status::Ok => counts.ok += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Unknown => counts.unknown += 1,
            }
        }
        let exit_code = if counts.fail > 0 {
            EXIT_FAILED
        } else if counts.unknown > 0 {
            EXIT_UNKNOWN
        } else {
            0
        };
        Self {
            version: 1,
            environment,
            secret_id,
            counts,
            exit_code,
            checks,
        }
    }

    /// The human report; `colour` adds ANSI colours.
    pub fn text(&self, colour: bool) -> String {
        let paint = |code: &str, s: &str| {
            if colour {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_owned()
            }
        };
        let mut out = String::new();
        let mut group = None;
        for c in &self.checks {
            if group != Some(c.group) {
                if group.is_some() {
                    out.push('\n');
                }
                let _ = writeln!(out, "{}", c.group.title());
                let _ = writeln!(out, "{}", "-".repeat(c.group.title().len()));
                group = Some(c.group);
            }
            let mark = match c.status {
                Status::Ok => paint("32", "✔"),
                Status::Warn => paint("33", "‼"),
                Status::Fail => paint("31", "×"),
                Status::Unknown => paint("35", "?"),
            };
            let subject = c
                .subject
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            let _ = writeln!(out, "{mark} {}{subject}: {}", c.name, c.message);
            if c.status != Status::Ok {
                if let Some(h) = &c.hint {
                    let _ = writeln!(out, "    hint: {h}");
                }
                if let Some(d) = c.doc {
                    let _ = writeln!(out, "    see:  {d}");
                }
            }
        }
        let n = self.counts;
        let verdict = match self.exit_code {
            0 if n.warn > 0 => paint("33", "the edge is protected, with warnings"),
            0 => paint("32", "the edge is protected"),
            EXIT_FAILED => paint("31", "the edge is NOT protected as configured"),
            _ => paint("35", "could not check everything: not a pass"),
        };
        let _ = writeln!(
            out,
            "\nStatus: {verdict} ({} ok, {} warn, {} fail, {} could not check)",
            n.ok, n.warn, n.fail, n.unknown
        );
        out
    }
}

/// What the checks are about, from the flags.
#[derive(Debug, Clone)]
pub struct Target {
    /// The environment (`--env`), if given.
    pub environment: Option<String>,
    /// The secret id.
    pub secret_id: String,
    /// Gateway, kit policy.
    pub names: crate::render::admission::EdgePolicyNames,
    /// Proxies' namespace.
    pub proxy_namespace: String,
    /// ClusterSecretStore.
    pub store_name: String,
    /// Secret with the current key.
    pub target_secret: String,
    /// Secret with the rotation keys.
    pub rotation_secret: String,
}

impl Target {
    /// The command that restarts the edge Gateway's proxies (a new pod
    /// loads the keys the Secrets hold now).
    pub fn restart_command(&self) -> String {
        format!(
            "kubectl -n {} rollout restart deployment -l gateway.envoyproxy.io/owning-gateway-name={},gateway.envoyproxy.io/owning-gateway-namespace={}",
            self.proxy_namespace, self.names.gateway_name, self.names.gateway_namespace
        )
    }
}

/// Runs `edge-hmac check`.
pub async fn run(args: CheckArgs) -> Result<ExitCode> {
    let secret_id = args.secret.id()?;
    if !(0.0..=1.0).contains(&args.max_rejected_share) {
        return Err(Error::Usage(format!(
            "--max-rejected-share {} must be between 0 and 1 (e.g. 0.05 for 5%)",
            args.max_rejected_share
        )));
    }
    let target = Target {
        environment: args.secret.environment.clone(),
        secret_id: secret_id.clone(),
        names: crate::render::admission::EdgePolicyNames {
            gateway_namespace: args.names.gateway_namespace.clone(),
            gateway_name: args.names.gateway_name.clone(),
            policy_name: args.names.policy_name.clone(),
        },
        proxy_namespace: args.names.proxy_namespace.clone(),
        store_name: args.names.store_name.clone(),
        target_secret: crate::render::gateway::TARGET_SECRET.into(),
        rotation_secret: crate::render::gateway::ROTATION_SECRET.into(),
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let started = tokio::time::Instant::now();

    let kube = cluster::connect(&args, timeout).await;
    let admins = proxy::admins(&args, &kube, &target).await;
    let first = proxy::read_stats(&admins).await;

    let sm = sm::SmCheck::new(&args.aws, &target).await;
    let (sm_facts, cluster_facts) = tokio::join!(sm.run(), cluster::run(&kube, &target, &args));

    let mut checks = sm_facts.checks.clone();
    checks.extend(cluster_facts.checks.clone());
    checks.extend(cluster::mirrors(&target, &sm_facts, &cluster_facts));

    tokio::time::sleep_until(started + args.window).await;
    let second = proxy::read_stats(&admins).await;
    checks.extend(
        proxy::checks(
            &args,
            &target,
            &admins,
            &first,
            &second,
            &sm_facts,
            &cluster_facts,
        )
        .await,
    );

    let report = Report::new(target.environment.clone(), secret_id, checks);
    match args.output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Other(format!("cannot write the report: {e}")))?;
            println!("{text}");
        }
        Output::Human => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print!("{}", report.text(colour));
        }
    }
    Ok(ExitCode::from(report.exit_code))
}

/// A proxy to read: what the user named it and where it answers.
#[derive(Debug, Clone)]
pub struct Admin {
    /// `--admin` as given, or `pod <namespace>/<name>`.
    pub label: String,
    /// Where its admin interface answers (a local forward for a pod), or
    /// why it cannot be reached.
    pub addr: std::result::Result<SocketAddr, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit codes: a failure wins over an unknown; warnings alone pass.
    #[test]
    fn exit_code_follows_the_worst_status() {
        let c = |s| Check::new(Group::Proxies, "x", s, "m");
        let code = |v: Vec<Check>| Report::new(None, "id".into(), v).exit_code;
        assert_eq!(code(vec![c(Status::Ok), c(Status::Warn)]), 0);
        assert_eq!(code(vec![c(Status::Ok), c(Status::Unknown)]), EXIT_UNKNOWN);
        assert_eq!(code(vec![c(Status::Unknown), c(Status::Fail)]), EXIT_FAILED);
    }

    /// The human report shows the hint and doc of a check that is not ok,
    /// and no colour unless asked.
    #[test]
    fn human_report_shows_hints_of_problems_only() {
        let report = Report::new(
            Some("dev".into()),
            "crawbl/dev/edge/hmac".into(),
            vec![
                Check::ok(Group::SecretsManager, "current-version", "fine")
                    .fix("never shown", doc::SECRET),
                Check::new(Group::Proxies, "keys", Status::Fail, "old key")
                    .on("127.0.0.1:19000")
                    .fix("restart", doc::ROTATION),
            ],
        );
        let text = report.text(false);
        assert!(text.contains("✔ current-version: fine"));
        assert!(!text.contains("never shown"));
        assert!(text.contains(
            "× keys [127.0.0.1:19000]: old key\n    hint: restart\n    see:  docs/rotation.md#"
        ));
        assert!(!text.contains('\x1b'));
        assert!(report.text(true).contains('\x1b'));
    }
}
