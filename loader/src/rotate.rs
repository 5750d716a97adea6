//! `edge-hmac rotate`: key rotation the way Secrets Manager defines it. A new
//! version is staged `AWSPENDING` (`begin`), every proxy learns it, only then
//! does `AWSCURRENT` move to it (`promote`; the old version becomes
//! `AWSPREVIOUS`), and finally `AWSPREVIOUS` is retired (`retire`). Clients
//! keep reading `AWSCURRENT`, so at every step each proxy accepts every key a
//! client can obtain.
//!
//! The proxies are checked through their Envoy admin interface: the filter
//! keeps one gauge per loaded key (`wasmcustom.edge_hmac.key.<slot>.<fp>`)
//! and counts requests verified per slot. `promote` and `retire` refuse
//! (exit 5) while a proxy they can see would refuse a client's key, unless
//! `--force`. No secret value is ever printed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use edge_hmac_core::scheme::KeyUsed;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::aws::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, AwsArgs, SecretArgs, Sm, Stages, join_flags,
};
use crate::envoy::{Draining, admin_get, draining};
use crate::error::{Error, Result};
use crate::run::parse_duration;
use crate::secret::{EdgeSecret, random_hex};

/// Default of `--proxy-namespace`.
const DEFAULT_PROXY_NAMESPACE: &str = "envoy-gateway-system";
/// Default of `--target-secret`.
const DEFAULT_TARGET_SECRET: &str = "hmac-wasm-config";
/// Default of `--rotation-secret`.
const DEFAULT_ROTATION_SECRET: &str = "hmac-wasm-config-rotation";
/// Default of `--gateway-name` and `--gateway-namespace`.
const DEFAULT_GATEWAY: &str = "edge";

/// `edge-hmac rotate` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RotateCmd {
    /// Stage a new random key as AWSPENDING (the value is never printed)
    Begin(Gate),
    /// Make the pending key AWSCURRENT (the old one becomes AWSPREVIOUS), once every proxy holds it
    Promote(Gate),
    /// Remove AWSPREVIOUS, once no proxy verifies requests with it any more
    Retire(RetireArgs),
    /// Drop the pending key without promoting it
    Cancel(Common),
    /// Which version carries which label, their fingerprints, and which keys the proxies hold
    Status(StatusArgs),
}

/// Options every step takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Which secret
    #[command(flatten)]
    pub secret: SecretArgs,
    /// How to reach AWS
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Envoy admin address of a proxy to check, IP:PORT (repeatable; on Kubernetes through `kubectl port-forward`)
    #[arg(long = "admin", value_name = "ADDR", value_parser = parse_admin)]
    pub admins: Vec<SocketAddr>,
    /// Namespace of the proxies and of the synced Secrets (for the printed kubectl commands)
    #[arg(long, default_value = DEFAULT_PROXY_NAMESPACE)]
    pub proxy_namespace: String,
    /// ExternalSecret (and Secret) with the current key
    #[arg(long, default_value = DEFAULT_TARGET_SECRET)]
    pub target_secret: String,
    /// ExternalSecret (and Secret) with the previous and pending keys
    #[arg(long, default_value = DEFAULT_ROTATION_SECRET)]
    pub rotation_secret: String,
    /// Gateway whose proxies restart (for the printed kubectl commands)
    #[arg(long, default_value = DEFAULT_GATEWAY)]
    pub gateway_name: String,
    /// Its namespace
    #[arg(long, default_value = DEFAULT_GATEWAY)]
    pub gateway_namespace: String,
}

/// Options of `begin` and `promote`.
#[derive(Debug, Clone, clap::Args)]
pub struct Gate {
    /// Common options
    #[command(flatten)]
    pub common: Common,
    /// Go ahead even if the check fails (a proxy would refuse a key in use, no proxy was checked, or an unretired AWSPREVIOUS would be dropped)
    #[arg(long)]
    pub force: bool,
}

/// Options of `retire`.
#[derive(Debug, Clone, clap::Args)]
pub struct RetireArgs {
    /// Common options and --force
    #[command(flatten)]
    pub gate: Gate,
    /// How long to watch the proxies for requests still verified with the previous key
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub window: Duration,
}

/// Output formats of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON object.
    Json,
}

/// Options of `status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Common options
    #[command(flatten)]
    pub common: Common,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `IP:PORT`, with or without `http://` and a trailing `/`.
fn parse_admin(s: &str) -> std::result::Result<SocketAddr, String> {
    let bare = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    bare.parse().map_err(|_| {
        "expected IP:PORT of an Envoy admin interface, e.g. 127.0.0.1:19000".to_owned()
    })
}

fn say(msg: impl std::fmt::Display) {
    println!("{msg}");
}

/// The filter's stats in Envoy's `/stats` text (`name: value` lines): each
/// name after `edge_hmac.`, with its value, for either host's namespace
/// (`wasmcustom.` for proxy-wasm, `dynamicmodulescustom.` for the native
/// module). Other lines and non-integer values are skipped.
pub fn edge_hmac_stats(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let (name, value) = line.split_once(": ")?;
        let value = value.trim().parse::<u64>().ok()?;
        let name = ["wasmcustom.edge_hmac.", "dynamicmodulescustom.edge_hmac."]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))?;
        Some((name, value))
    })
}

/// What one proxy's admin interface says about the filter's keys.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProxyView {
    /// The admin address.
    pub admin: String,
    /// Fingerprints held, per slot (gauges above zero).
    pub keys: BTreeMap<String, Vec<String>>,
    /// Requests verified, per slot.
    pub verified: BTreeMap<String, u64>,
    /// A hot restart is draining: the keys shown include the previous
    /// epoch's until it exits.
    pub draining: Option<Draining>,
}

impl ProxyView {
    /// True when the proxy holds the key `fp` in any slot.
    pub fn holds(&self, fp: &str) -> bool {
        self.keys.values().any(|fps| fps.iter().any(|f| f == fp))
    }

    /// True when the proxy holds `fp` in `slot`.
    pub fn holds_in(&self, slot: KeyUsed, fp: &str) -> bool {
        self.keys
            .get(slot.slot())
            .is_some_and(|fps| fps.iter().any(|f| f == fp))
    }

    /// Parses `/stats` text output (`name: value` lines).
    pub fn parse(admin: &str, stats: &str) -> Self {
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut verified = BTreeMap::new();
        for (name, value) in edge_hmac_stats(stats) {
            if let Some(rest) = name.strip_prefix("key.")
                && let Some((slot, fp)) = rest.split_once('.')
            {
                if value > 0 {
                    keys.entry(slot.to_owned()).or_default().push(fp.to_owned());
                }
            } else if let Some(slot) = name
                .strip_prefix("verified_")
                .and_then(|n| n.strip_suffix("_key"))
            {
                verified.insert(slot.to_owned(), value);
            }
        }
        Self {
            admin: admin.to_owned(),
            keys,
            verified,
            draining: None,
        }
    }

    /// While a hot restart drains, the held keys that are not what Secrets
    /// Manager now labels for their slot (`expected`, by slot name): those
    /// are the previous epoch's and go when it exits. Empty otherwise.
    pub fn going(&self, expected: &BTreeMap<&str, String>) -> BTreeMap<String, Vec<String>> {
        if self.draining.is_none() {
            return BTreeMap::new();
        }
        self.keys
            .iter()
            .filter_map(|(slot, fps)| {
                let going: Vec<String> = fps
                    .iter()
                    .filter(|fp| expected.get(slot.as_str()) != Some(*fp))
                    .cloned()
                    .collect();
                (!going.is_empty()).then(|| (slot.clone(), going))
            })
            .collect()
    }
}

/// Reads one proxy's view.
async fn view(admin: SocketAddr) -> std::result::Result<ProxyView, String> {
    match admin_get(admin, "/stats?filter=custom%5C.edge_hmac%5C.").await {
        Ok((200, body)) => {
            let mut v = ProxyView::parse(&admin.to_string(), &body);
            v.draining = draining(admin).await;
            if v.keys.is_empty() {
                Err(format!(
                    "{admin} shows no edge-hmac key gauges: is the filter (this version or newer) loaded there?"
                ))
            } else {
                Ok(v)
            }
        }
        Ok((status, body)) => Err(not_admin(admin, status, &body)),
        Err(e) => Err(format!("cannot read {admin}/stats: {e}")),
    }
}

/// Why `admin` did not answer `/stats` as an Envoy admin interface does,
/// with a hint when it looks like the proxy's listener instead.
fn not_admin(admin: SocketAddr, status: u16, body: &str) -> String {
    let filter_answer = body.contains("\"error\":");
    if filter_answer || status == 401 || status == 404 {
        format!(
            "{admin} answered HTTP {status} for /stats: is this the admin port? That looks like a proxy listener{}; pass Envoy's admin interface (`edge-hmac run` prints `admin http://…`; on Envoy Gateway, port 19000 of the proxy pod through `kubectl port-forward`)",
            if filter_answer {
                " (the filter refused the unsigned request)"
            } else {
                ""
            }
        )
    } else {
        format!("{admin} answered HTTP {status} for /stats")
    }
}

/// The proxies' views, or the reasons they could not be read.
async fn views(admins: &[SocketAddr]) -> Vec<std::result::Result<ProxyView, String>> {
    let mut out = Vec::new();
    for &a in admins {
        out.push(view(a).await);
    }
    out
}

/// A version's fingerprint; `None` when its value is not a valid edge
/// secret (no proxy can hold it). Any other failure is an error: a step
/// never goes ahead on a check it could not make.
async fn fingerprint(sm: &Sm, id: &str, version: &str) -> Result<Option<String>> {
    match sm.fetch_version(id, version, None).await {
        Ok(f) => Ok(Some(f.secret.fingerprint())),
        Err(e) if e.is_invalid_value() => Ok(None),
        Err(e) => Err(e),
    }
}

impl Common {
    fn force_sync(&self, secrets: &[&str]) -> String {
        secrets
            .iter()
            .map(|s| {
                format!(
                    "  kubectl -n {} annotate externalsecret {s} force-sync=$(date +%s) --overwrite\n",
                    self.proxy_namespace
                )
            })
            .collect()
    }

    fn restart(&self) -> String {
        let selector = format!(
            "gateway.envoyproxy.io/owning-gateway-name={},gateway.envoyproxy.io/owning-gateway-namespace={}",
            self.gateway_name, self.gateway_namespace
        );
        format!(
            "  kubectl -n {ns} rollout restart deployment -l {selector}\n  kubectl -n {ns} rollout status deployment -l {selector}\n",
            ns = self.proxy_namespace
        )
    }

    /// Every flag given on this command line that says where to act —
    /// secret, AWS connection, and the names for the printed kubectl
    /// commands — to repeat in a printed next step so it reaches the same
    /// place (issue 25); the environment applies anyway.
    fn flags(&self) -> String {
        let mut flags = self.secret.given_flags();
        flags.extend(self.aws.given_flags());
        for (flag, value, default) in [
            (
                "--proxy-namespace",
                &self.proxy_namespace,
                DEFAULT_PROXY_NAMESPACE,
            ),
            (
                "--target-secret",
                &self.target_secret,
                DEFAULT_TARGET_SECRET,
            ),
            (
                "--rotation-secret",
                &self.rotation_secret,
                DEFAULT_ROTATION_SECRET,
            ),
            ("--gateway-name", &self.gateway_name, DEFAULT_GATEWAY),
            (
                "--gateway-namespace",
                &self.gateway_namespace,
                DEFAULT_GATEWAY,
            ),
        ] {
            if value != default {
                flags.push((flag, value.clone()));
            }
        }
        join_flags(&flags).trim_start().to_owned()
    }

    /// ` --admin A` for each admin address given.
    fn admin_flags(&self) -> String {
        self.admins
            .iter()
            .map(|a| format!(" --admin {a}"))
            .collect()
    }

    /// A printed `edge-hmac rotate <step>` with every flag of this command
    /// line. A step that checks the proxies (`status`, `promote`,
    /// `retire`) gets the `--admin` addresses given, or `--admin IP:PORT`
    /// to fill in when none was.
    fn command(&self, step: &str) -> String {
        let admins = if self.admins.is_empty() && matches!(step, "status" | "promote" | "retire") {
            " --admin IP:PORT".to_owned()
        } else {
            self.admin_flags()
        };
        format!("edge-hmac rotate {step} {}{admins}", self.flags())
    }

    /// A shell loop that waits until `key` of Secret `secret` has the
    /// fingerprint `fp` (`None`: until the key is gone). Shows fingerprints
    /// only, never a value.
    fn wait_for_key(&self, secret: &str, key: &str, fp: Option<&str>) -> String {
        let get = format!(
            "kubectl -n {} get secret {secret} -o jsonpath='{{.data.{key}}}'",
            self.proxy_namespace
        );
        match fp {
            Some(fp) => format!(
                "  until [ \"$({get} | base64 -d | sha256sum | cut -c1-8)\" = {fp} ]; do sleep 2; done\n"
            ),
            None => format!("  until [ -z \"$({get})\" ]; do sleep 2; done\n"),
        }
    }

    /// How every proxy learns the change: local and cluster. `waits` are
    /// the Secret contents to wait for between the sync and the restart
    /// (a pod started before ESO wrote them would miss a key).
    fn propagate(&self, secrets: &[&str], waits: &[(&str, &str, Option<&str>)]) -> String {
        let waits: String = waits
            .iter()
            .map(|(secret, key, fp)| self.wait_for_key(secret, key, *fp))
            .collect();
        format!(
            "Make every proxy load it:\n\
             - `edge-hmac run --watch` does it by itself within one interval;\n\
             - on Envoy Gateway, sync the Secrets, wait until ESO wrote them, and restart the proxies:\n{}{waits}{}",
            self.force_sync(secrets),
            self.restart()
        )
    }
}

/// Runs `edge-hmac rotate`.
pub async fn run(cmd: RotateCmd) -> Result<()> {
    match cmd {
        RotateCmd::Begin(g) => begin(&g).await,
        RotateCmd::Promote(g) => promote(&g).await,
        RotateCmd::Retire(r) => retire(&r).await,
        RotateCmd::Cancel(c) => cancel(&c).await,
        RotateCmd::Status(s) => status(&s).await,
    }
}

async fn connect(c: &Common) -> Result<(Sm, String, Stages)> {
    let id = c.secret.id()?;
    let sm = c.aws.client().await;
    let stages = sm.stages(&id).await?;
    Ok((sm, id, stages))
}

async fn begin(g: &Gate) -> Result<()> {
    let c = &g.common;
    let (sm, id, stages) = connect(c).await?;
    if let Some(p) = &stages.pending {
        let fp = fingerprint(&sm, &id, p)
            .await?
            .unwrap_or_else(|| "?".into());
        let what = if *p == stages.current {
            "a promotion was left half done: the AWSCURRENT version still carries AWSPENDING; finish it with"
        } else {
            "a rotation is already under way: promote it with"
        };
        return Err(Error::NotSafe(format!(
            "version {p} (key {fp}) is AWSPENDING; {what} `{}`, or drop it with `{}`",
            c.command("promote"),
            c.command("cancel")
        )));
    }
    if let Some(prev) = &stages.previous {
        let problem = format!(
            "version {prev} is still AWSPREVIOUS: promoting a new key would drop it without retire's check that no client uses it; run `{}` first",
            c.command("retire")
        );
        gate(g.force, 1, &[problem], "beginning")?;
    }
    let env = c.secret.environment.as_deref();
    // Validate the current value, then keep its other keys in the new one
    // (read by version id: the same version that was validated).
    let current = sm.fetch_version(&id, &stages.current, env).await?;
    let raw = sm.value(&id, &stages.current).await?;
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&raw).map_err(|_| Error::NotJson { id: id.clone() })?;
    let key =
        Zeroizing::new(random_hex(32).map_err(|e| Error::Other(format!("no OS randomness: {e}")))?);
    let new = EdgeSecret::new(&id, key.to_string(), &current.secret.environment, None)?;
    value.insert(
        "hmac_secret".into(),
        serde_json::Value::String(key.to_string()),
    );
    let text = Zeroizing::new(serde_json::Value::Object(value).to_string());
    let version = sm.put_pending(&id, &text).await?;
    let fp = new.fingerprint();
    say(format!(
        "staged a new key as AWSPENDING of {id}: version {version}, key {fp} (32 random bytes as hex; the value is not shown)"
    ));
    say(format!(
        "AWSCURRENT is still version {} (key {}): clients keep signing with it.",
        stages.current,
        current.secret.fingerprint()
    ));
    say(format!(
        "\nNext:\n{}",
        c.propagate(
            &[&c.rotation_secret],
            &[(&c.rotation_secret, "hmac_secret_pending", Some(&fp))]
        )
    ));
    say(format!(
        "Then check that every proxy holds key {fp}:\n  {}\nand promote it:\n  {}",
        c.command("status"),
        c.command("promote")
    ));
    Ok(())
}

/// Refuses, unless `force`, when `problems` is not empty or nothing was checked.
fn gate(force: bool, checked: usize, problems: &[String], what: &str) -> Result<()> {
    if problems.is_empty() && checked > 0 {
        return Ok(());
    }
    if force {
        for p in problems {
            say(format!("warning (--force): {p}"));
        }
        if checked == 0 {
            say("warning (--force): no proxy was checked");
        }
        return Ok(());
    }
    if checked == 0 && problems.is_empty() {
        return Err(Error::NotSafe(format!(
            "not {what}: no proxy was checked; pass --admin HOST:PORT for each proxy (Envoy admin interface), or --force if you have checked them another way"
        )));
    }
    Err(Error::NotSafe(format!(
        "not {what}: {}; fix that and run the step again (or --force)",
        problems.join("; ")
    )))
}

async fn promote(g: &Gate) -> Result<()> {
    let c = &g.common;
    let (sm, id, stages) = connect(c).await?;
    let Some(pending) = stages.pending.clone() else {
        return Err(Error::Usage(format!(
            "nothing to promote: no version of {id} is AWSPENDING; start with `{}`",
            c.command("begin")
        )));
    };
    if pending == stages.current {
        // A promotion that moved AWSCURRENT but did not remove AWSPENDING.
        sm.move_stage(&id, AWSPENDING, None, Some(&pending)).await?;
        say(format!(
            "finished a half-done promotion: version {pending} of {id} is AWSCURRENT and no longer AWSPENDING."
        ));
        return Ok(());
    }
    let env = c.secret.environment.as_deref();
    let current = sm.fetch_version(&id, &stages.current, env).await?;
    let next = sm
        .fetch_version(&id, &pending, Some(&current.secret.environment))
        .await?;
    let fp = next.secret.fingerprint();
    let old_fp = current.secret.fingerprint();
    let mut problems = Vec::new();
    let mut checked = 0;
    if let Some(prev) = &stages.previous {
        problems.push(format!(
            "version {prev} is still AWSPREVIOUS and the promotion would drop it without retire's check that no client uses it; run `{}` first",
            c.command("retire")
        ));
    }
    for v in views(&c.admins).await {
        match v {
            Ok(v) if v.holds(&fp) => checked += 1,
            Ok(v) => problems.push(format!(
                "proxy {} does not hold the pending key {fp} yet",
                v.admin
            )),
            Err(e) => problems.push(e),
        }
    }
    gate(g.force, checked, &problems, "promoting")?;
    // AWSCURRENT first: the old current becomes AWSPREVIOUS in the same
    // call, so no moment exists where a label a client or proxy reads
    // points nowhere.
    sm.move_stage(&id, AWSCURRENT, Some(&pending), Some(&stages.current))
        .await?;
    sm.move_stage(&id, AWSPENDING, None, Some(&pending))
        .await
        .map_err(|e| {
            Error::Other(format!(
                "AWSCURRENT of {id} moved to version {pending}, but its AWSPENDING label could not be removed ({e}); run `{}` again to finish",
                c.command("promote")
            ))
        })?;
    say(format!(
        "promoted: AWSCURRENT of {id} is now version {pending} (key {fp}); version {} (key {old_fp}) is AWSPREVIOUS, still accepted by the proxies.",
        stages.current,
    ));
    say("Clients that read AWSCURRENT sign with the new key from now on.");
    say(format!(
        "\nNext:\n{}",
        c.propagate(
            &[&c.target_secret, &c.rotation_secret],
            &[
                (&c.target_secret, "hmac_secret", Some(&fp)),
                (&c.rotation_secret, "hmac_secret_previous", Some(&old_fp)),
                (&c.rotation_secret, "hmac_secret_pending", None),
            ]
        )
    ));
    say(format!(
        "Then, once no client signs with the old key any more (counter edge_hmac.verified_previous_key stops rising), retire it:\n  {}",
        c.command("retire")
    ));
    Ok(())
}

async fn retire(r: &RetireArgs) -> Result<()> {
    let (g, window) = (&r.gate, r.window);
    let c = &g.common;
    let (sm, id, stages) = connect(c).await?;
    let Some(previous) = stages.previous.clone() else {
        return Err(Error::Usage(format!(
            "nothing to retire: no version of {id} is AWSPREVIOUS"
        )));
    };
    // An invalid previous value cannot be held by any proxy: nothing to watch.
    let old = fingerprint(&sm, &id, &previous).await?;
    let current = fingerprint(&sm, &id, &stages.current).await?;
    let mut problems = Vec::new();
    let mut checked = 0;
    if current.is_none() {
        problems.push(format!(
            "the AWSCURRENT version {} of {id} has no valid value: the proxies could not load it",
            stages.current
        ));
    }
    let mut watched = Vec::new();
    for (v, &addr) in views(&c.admins).await.into_iter().zip(&c.admins) {
        let v = match v {
            Ok(v) => v,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if let Some(cur) = &current
            && !v.holds_in(KeyUsed::Current, cur)
        {
            problems.push(format!(
                "proxy {} does not use the current key {cur} as its current key yet (sync and restart it after the promotion)",
                v.admin
            ));
            continue;
        }
        if let Some(old) = &old
            && v.holds(old)
        {
            watched.push((addr, v));
        } else {
            checked += 1;
        }
    }
    if !watched.is_empty() {
        say(format!(
            "watching {} prox{} for {} s for requests verified with the previous key {} ...",
            watched.len(),
            if watched.len() == 1 { "y" } else { "ies" },
            window.as_secs_f64(),
            old.as_deref().unwrap_or("?")
        ));
        tokio::time::sleep(window).await;
        for (addr, before) in watched {
            match view(addr).await {
                Ok(after) => {
                    let count = |v: &ProxyView| v.verified.get("previous").copied().unwrap_or(0);
                    let (b, a) = (count(&before), count(&after));
                    if a < b {
                        problems.push(format!(
                            "proxy {} restarted during the {} s window (its counters went back): run the step again",
                            after.admin,
                            window.as_secs_f64()
                        ));
                    } else if a > b {
                        problems.push(format!(
                            "proxy {} verified {} request(s) with the previous key in the last {} s: some clients still sign with it",
                            after.admin,
                            a - b,
                            window.as_secs_f64()
                        ));
                    } else {
                        checked += 1;
                    }
                }
                Err(e) => problems.push(e),
            }
        }
    }
    gate(g.force, checked, &problems, "retiring")?;
    sm.move_stage(&id, AWSPREVIOUS, None, Some(&previous))
        .await?;
    say(format!(
        "retired: version {previous} (key {}) of {id} is no longer AWSPREVIOUS; the proxies refuse it once they reload.",
        old.as_deref().unwrap_or("?")
    ));
    say(format!(
        "\nNext:\n{}",
        c.propagate(
            &[&c.rotation_secret],
            &[(&c.rotation_secret, "hmac_secret_previous", None)]
        )
    ));
    say(format!(
        "The rotation is complete; check with:\n  {}",
        c.command("status")
    ));
    Ok(())
}

async fn cancel(c: &Common) -> Result<()> {
    let (sm, id, stages) = connect(c).await?;
    let Some(pending) = stages.pending else {
        return Err(Error::Usage(format!(
            "nothing to cancel: no version of {id} is AWSPENDING"
        )));
    };
    sm.move_stage(&id, AWSPENDING, None, Some(&pending)).await?;
    say(format!(
        "dropped: version {pending} of {id} is no longer AWSPENDING; AWSCURRENT is unchanged."
    ));
    say(format!(
        "\nNext:\n{}",
        c.propagate(
            &[&c.rotation_secret],
            &[(&c.rotation_secret, "hmac_secret_pending", None)]
        )
    ));
    Ok(())
}

/// One labelled version, for `status`.
#[derive(Debug, Clone, Serialize)]
struct Labelled {
    version: String,
    fingerprint: Option<String>,
}

/// The whole picture, for `status --format json`.
#[derive(Debug, Clone, Serialize)]
struct Status {
    secret: String,
    region: String,
    current: Labelled,
    previous: Option<Labelled>,
    pending: Option<Labelled>,
    phase: &'static str,
    next: String,
    proxies: Vec<ProxyStatus>,
}

#[derive(Debug, Clone, Serialize)]
struct ProxyStatus {
    admin: String,
    error: Option<String>,
    keys: BTreeMap<String, Vec<String>>,
    verified: BTreeMap<String, u64>,
    /// Fingerprints of labelled versions this proxy does not hold.
    missing: Vec<String>,
    /// A hot restart is draining on this proxy.
    draining: Option<Draining>,
    /// While it drains: held keys of the previous epoch that go when it
    /// exits, per slot.
    going: BTreeMap<String, Vec<String>>,
    /// True when it holds the AWSCURRENT key, the one clients sign with.
    accepts_current: bool,
    /// What this proxy means for the next step.
    verdict: String,
}

async fn status(s: &StatusArgs) -> Result<()> {
    let c = &s.common;
    let (sm, id, stages) = connect(c).await?;
    let labelled = |version: &str, fp: Option<String>| Labelled {
        version: version.to_owned(),
        fingerprint: fp,
    };
    let current = labelled(
        &stages.current,
        fingerprint(&sm, &id, &stages.current).await?,
    );
    // A leftover AWSPENDING on the current version (a half-done promotion)
    // is not a pending key.
    let pending_version = stages.pending.clone().filter(|p| *p != stages.current);
    let mut optional = Vec::new();
    for v in [&stages.previous, &pending_version] {
        optional.push(match v {
            Some(v) => Some(labelled(v, fingerprint(&sm, &id, v).await?)),
            None => None,
        });
    }
    let pending = optional.pop().flatten();
    let previous = optional.pop().flatten();
    let (phase, next) = match (&pending, &previous) {
        (Some(_), _) => (
            "pending",
            format!(
                "load the pending key into every proxy, then `{}`",
                c.command("promote")
            ),
        ),
        (None, Some(_)) => (
            "promoted",
            format!(
                "once no client signs with the previous key, `{}`",
                c.command("retire")
            ),
        ),
        (None, None) => ("idle", format!("to rotate, `{}`", c.command("begin"))),
    };
    let next = if stages.pending.is_some() && pending_version.is_none() {
        format!(
            "a promotion was left half done (AWSPENDING is still on the AWSCURRENT version): `{}` finishes it; then {next}",
            c.command("promote")
        )
    } else {
        next
    };
    let fp_of = |l: &Option<Labelled>| l.as_ref().and_then(|l| l.fingerprint.clone());
    let (current_fp, previous_fp, pending_fp) = (
        current.fingerprint.clone(),
        fp_of(&previous),
        fp_of(&pending),
    );
    let verdict = |v: &ProxyView| -> String {
        let holds = |fp: &Option<String>| fp.as_ref().is_none_or(|f| v.holds(f));
        if !holds(&current_fp) {
            return "REFUSES the AWSCURRENT key clients sign with: sync and restart it".into();
        }
        match (&pending_fp, &previous_fp) {
            (Some(p), _) if v.holds(p) => "holds the pending key: ready to promote".into(),
            (Some(p), _) => format!("does not hold the pending key {p} yet: not ready to promote"),
            (None, Some(p)) if v.holds(p) => {
                "accepts the previous key too (clients not yet moved keep working)".into()
            }
            (None, Some(p)) => {
                format!("does not hold the previous key {p}: clients still on it are refused")
            }
            (None, None) => "holds the current key".into(),
        }
    };
    let all_keys: Vec<&String> = [Some(&current), previous.as_ref(), pending.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|l| l.fingerprint.as_ref())
        .collect();
    let expected: BTreeMap<&str, String> = [
        (KeyUsed::Current, &current_fp),
        (KeyUsed::Previous, &previous_fp),
        (KeyUsed::Pending, &pending_fp),
    ]
    .into_iter()
    .filter_map(|(slot, fp)| fp.clone().map(|fp| (slot.slot(), fp)))
    .collect();
    let proxies: Vec<ProxyStatus> = views(&c.admins)
        .await
        .into_iter()
        .zip(&c.admins)
        .map(|(v, admin)| match v {
            Ok(v) => ProxyStatus {
                missing: all_keys
                    .iter()
                    .filter(|fp| !v.holds(fp))
                    .map(|fp| (*fp).clone())
                    .collect(),
                accepts_current: current_fp.as_ref().is_none_or(|f| v.holds(f)),
                verdict: verdict(&v),
                draining: v.draining,
                going: v.going(&expected),
                admin: v.admin,
                error: None,
                keys: v.keys,
                verified: v.verified,
            },
            Err(e) => ProxyStatus {
                admin: admin.to_string(),
                error: Some(e),
                keys: BTreeMap::new(),
                verified: BTreeMap::new(),
                missing: Vec::new(),
                accepts_current: false,
                verdict: "not readable".into(),
                draining: None,
                going: BTreeMap::new(),
            },
        })
        .collect();
    let st = Status {
        secret: id,
        region: sm.region().to_owned(),
        current,
        previous,
        pending,
        phase,
        next,
        proxies,
    };
    match s.format {
        Format::Json => {
            let text = serde_json::to_string_pretty(&st)
                .map_err(|e| Error::Other(format!("cannot encode the status: {e}")))?;
            println!("{text}");
        }
        Format::Text => print_status(&st),
    }
    Ok(())
}

fn print_status(st: &Status) {
    let show = |l: &Option<Labelled>| match l {
        Some(l) => format!(
            "version {}  key {}",
            l.version,
            l.fingerprint.as_deref().unwrap_or("(value not valid)")
        ),
        None => "none".into(),
    };
    say(format!("secret {} ({})", st.secret, st.region));
    say(format!(
        "  AWSCURRENT   {}",
        show(&Some(st.current.clone()))
    ));
    say(format!("  AWSPREVIOUS  {}", show(&st.previous)));
    say(format!("  AWSPENDING   {}", show(&st.pending)));
    say(format!("phase: {}; next: {}", st.phase, st.next));
    for p in &st.proxies {
        if let Some(e) = &p.error {
            say(format!("proxy {}: not readable: {e}", p.admin));
            continue;
        }
        let going = |slot: &str, fp: &String| {
            if p.going.get(slot).is_some_and(|g| g.contains(fp)) {
                " (draining)"
            } else {
                ""
            }
        };
        let keys: Vec<String> = KeyUsed::ALL
            .iter()
            .filter_map(|slot| {
                p.keys.get(slot.slot()).map(|fps| {
                    let fps: Vec<String> = fps
                        .iter()
                        .map(|fp| format!("{fp}{}", going(slot.slot(), fp)))
                        .collect();
                    format!("{} {}", slot.slot(), fps.join(","))
                })
            })
            .collect();
        if let Some(d) = &p.draining {
            let which = if p.going.is_empty() {
                "none of the keys it shows goes then".to_owned()
            } else {
                let list: Vec<String> = p
                    .going
                    .iter()
                    .map(|(slot, fps)| format!("{slot} {}", fps.join(",")))
                    .collect();
                format!("then {} go (marked draining)", list.join(", "))
            };
            say(format!(
                "proxy {}: a hot restart is draining (epoch {}): until the previous epoch exits, within {} s, the keys shown include the ones it held; {which}",
                p.admin, d.epoch, d.seconds_left
            ));
        }
        let verified: Vec<String> = p.verified.iter().map(|(k, v)| format!("{k} {v}")).collect();
        say(format!(
            "proxy {}: holds {}; verified {}; {}",
            p.admin,
            keys.join(", "),
            verified.join(", "),
            p.verdict
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gauges above zero are held keys, per slot; counters per slot are read;
    /// other stats and zero gauges are ignored.
    #[test]
    fn parses_admin_stats() {
        let text = "wasmcustom.edge_hmac.key.current.1a2b3c4d: 2\n\
                    wasmcustom.edge_hmac.key.previous.00ff00ff: 0\n\
                    wasmcustom.edge_hmac.key.pending.deadbeef: 2\n\
                    wasmcustom.edge_hmac.verified: 9\n\
                    wasmcustom.edge_hmac.verified_current_key: 7\n\
                    wasmcustom.edge_hmac.verified_previous_key: 2\n\
                    wasmcustom.edge_hmac.rejected.invalid_signature: 3\n\
                    cluster.x.upstream_rq: 4\n";
        let v = ProxyView::parse("a", text);
        assert!(v.holds("1a2b3c4d") && v.holds("deadbeef") && !v.holds("00ff00ff"));
        assert!(v.holds_in(KeyUsed::Pending, "deadbeef"));
        assert!(!v.holds_in(KeyUsed::Current, "deadbeef"));
        assert_eq!(v.verified.get("previous"), Some(&2));
        assert_eq!(v.verified.get("current"), Some(&7));
        // The native module's stats read the same.
        let native = ProxyView::parse("b", &text.replace("wasmcustom.", "dynamicmodulescustom."));
        assert_eq!(native.keys, v.keys);
        assert_eq!(native.verified, v.verified);
        assert_eq!(v.verified.len(), 2);
    }

    /// While a hot restart drains, a held key that is not what Secrets
    /// Manager labels for its slot is the previous epoch's (issue 25);
    /// without a drain nothing is "going".
    #[test]
    fn draining_keys_are_told_apart() {
        let text = "wasmcustom.edge_hmac.key.current.aaaaaaaa: 2\n\
                    wasmcustom.edge_hmac.key.current.bbbbbbbb: 2\n\
                    wasmcustom.edge_hmac.key.previous.aaaaaaaa: 2\n\
                    wasmcustom.edge_hmac.key.pending.bbbbbbbb: 2\n";
        let mut v = ProxyView::parse("a", text);
        let expected = BTreeMap::from([
            ("current", "bbbbbbbb".to_owned()),
            ("previous", "aaaaaaaa".to_owned()),
        ]);
        assert!(v.going(&expected).is_empty());
        v.draining = Some(Draining {
            epoch: 2,
            seconds_left: 7,
        });
        assert_eq!(
            v.going(&expected),
            BTreeMap::from([
                ("current".to_owned(), vec!["aaaaaaaa".to_owned()]),
                ("pending".to_owned(), vec!["bbbbbbbb".to_owned()]),
            ])
        );
        let info = serde_json::json!({
            "uptime_current_epoch": "3s",
            "command_line_options": {"restart_epoch": 2, "parent_shutdown_time": "10s"}
        });
        assert_eq!(
            crate::envoy::draining_from(&info),
            Some(Draining {
                epoch: 2,
                seconds_left: 7
            })
        );
        let settled = serde_json::json!({
            "uptime_current_epoch": "12s",
            "command_line_options": {"restart_epoch": 2, "parent_shutdown_time": "10s"}
        });
        assert_eq!(crate::envoy::draining_from(&settled), None);
    }

    /// An `--admin` that is really the proxy's listener (the filter's 401)
    /// gets "is this the admin port?" (issue 25); another error does not.
    #[test]
    fn a_listener_is_not_an_admin_interface() {
        let a: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let msg = not_admin(a, 401, r#"{"error":"missing_signature"}"#);
        assert!(msg.contains("is this the admin port?"), "{msg}");
        assert!(msg.contains("filter refused"), "{msg}");
        let msg = not_admin(a, 503, "overloaded");
        assert!(!msg.contains("admin port"), "{msg}");
    }

    /// Admin addresses are taken with or without http:// and a slash.
    #[test]
    fn admin_addresses() {
        for s in [
            "127.0.0.1:9901",
            "http://127.0.0.1:9901/",
            "http://127.0.0.1:9901",
        ] {
            assert_eq!(parse_admin(s), Ok("127.0.0.1:9901".parse().unwrap()));
        }
        assert!(parse_admin("localhost").is_err());
    }

    /// The gate refuses with nothing checked or any problem, unless forced.
    #[test]
    fn gate_rules() {
        assert!(gate(false, 1, &[], "x").is_ok());
        assert!(matches!(gate(false, 0, &[], "x"), Err(Error::NotSafe(_))));
        assert!(matches!(
            gate(false, 2, &["p".into()], "x"),
            Err(Error::NotSafe(_))
        ));
        assert!(gate(true, 0, &["p".into()], "x").is_ok());
    }
}
