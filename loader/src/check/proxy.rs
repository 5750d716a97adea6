//! The Proxies group: each proxy's admin interface (`--admin`, or a
//! port-forward to each proxy pod of the Gateway through the API server):
//! the keys it holds, the filter build, the filter on every route of the
//! edge Gateway (`/config_dump`, the ground truth), internal errors, and
//! the share of refused requests over `--window`.

use std::net::SocketAddr;

use kube::Client;
use kube::api::Api;
use tokio::net::TcpListener;

use crate::check::cluster::{ClusterFacts, Kube, proxy_pods};
use crate::check::judge::{self, Stats};
use crate::check::sm::SmFacts;
use crate::check::{Admin, Check, CheckArgs, Group, Status, Target, doc};
use crate::envoy::admin_get;

/// Envoy Gateway's proxies serve their admin interface on this port,
/// inside the pod.
pub const PROXY_ADMIN_PORT: u16 = 19000;

/// The proxies to read: `--admin`, else a local port-forward to each proxy
/// pod.
pub async fn admins(args: &CheckArgs, kube: &Kube, t: &Target) -> Vec<Admin> {
    if !args.admin.is_empty() {
        let mut out = Vec::new();
        for a in &args.admin {
            let addr = match tokio::net::lookup_host(a.as_str()).await {
                Ok(mut addrs) => addrs
                    .next()
                    .ok_or_else(|| format!("{a} resolves to no address")),
                Err(e) => Err(format!("--admin {a} is not HOST:PORT ({e})")),
            };
            out.push(Admin {
                label: a.clone(),
                addr,
            });
        }
        return out;
    }
    let client = match kube {
        Ok(c) => c,
        Err(why) => {
            return vec![Admin {
                label: "proxies".into(),
                addr: Err(format!(
                    "no --admin and no API server to find the proxy pods: {why}"
                )),
            }];
        }
    };
    match proxy_pods(client, t).await {
        Ok(pods) if pods.is_empty() => vec![Admin {
            label: "proxies".into(),
            addr: Err(format!(
                "no running proxy pod of Gateway {}/{} in namespace {}",
                t.names.gateway_namespace, t.names.gateway_name, t.proxy_namespace
            )),
        }],
        Ok(pods) => {
            let mut out = Vec::new();
            for pod in pods {
                let addr = forward(client.clone(), &t.proxy_namespace, &pod).await;
                out.push(Admin {
                    label: format!("pod {}/{pod}", t.proxy_namespace),
                    addr,
                });
            }
            out
        }
        Err(why) => vec![Admin {
            label: "proxies".into(),
            addr: Err(why),
        }],
    }
}

/// A loopback listener whose connections are port-forwarded to the pod's
/// admin port (one port-forward per connection), for as long as check runs.
async fn forward(client: Client, ns: &str, pod: &str) -> std::result::Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback for the port-forward: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("port-forward listener: {e}"))?;
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, ns);
    let pod = pod.to_owned();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let api = api.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                let Ok(mut pf) = api.portforward(&pod, &[PROXY_ADMIN_PORT]).await else {
                    return;
                };
                if let Some(mut stream) = pf.take_stream(PROXY_ADMIN_PORT) {
                    let _ = tokio::io::copy_bidirectional(&mut sock, &mut stream).await;
                }
                pf.abort();
            });
        }
    });
    Ok(addr)
}

/// One `/stats` read of each proxy (in `admins` order).
pub async fn read_stats(admins: &[Admin]) -> Vec<std::result::Result<Stats, String>> {
    let mut out = Vec::new();
    for a in admins {
        out.push(match &a.addr {
            Ok(addr) => match admin_get(*addr, "/stats?filter=edge_hmac").await {
                Ok((200, body)) => Ok(Stats::parse(&body)),
                Ok((status, _)) => Err(format!(
                    "{} answered HTTP {status} for /stats: is it an Envoy admin interface?",
                    a.label
                )),
                Err(e) => Err(format!("cannot read {}/stats: {e}", a.label)),
            },
            Err(why) => Err(why.clone()),
        });
    }
    out
}

/// The checks of each proxy.
pub async fn checks(
    args: &CheckArgs,
    t: &Target,
    admins: &[Admin],
    first: &[std::result::Result<Stats, String>],
    second: &[std::result::Result<Stats, String>],
    sm: &SmFacts,
    c: &ClusterFacts,
) -> Vec<Check> {
    let g = Group::Proxies;
    let mut out = Vec::new();
    for (i, a) in admins.iter().enumerate() {
        let (Ok(addr), Some(Ok(before)), Some(Ok(after))) = (&a.addr, first.get(i), second.get(i))
        else {
            let why = match (&a.addr, first.get(i), second.get(i)) {
                (Err(w), _, _) | (_, Some(Err(w)), _) | (_, _, Some(Err(w))) => w.clone(),
                _ => "not read".into(),
            };
            out.push(
                Check::new(g, "reachable", Status::Unknown, why)
                    .on(&a.label)
                    .fix("could not read this proxy: check the address (Envoy's admin port) or the port-forward access", doc::CHECK),
            );
            continue;
        };
        let label = a.label.as_str();
        out.push(keys(*addr, label, t, sm, c).await);
        match admin_get(*addr, "/config_dump").await {
            Ok((200, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(dump) => out.extend(dump_checks(&dump, label, t, c)),
                Err(e) => out.push(
                    Check::new(
                        g,
                        "routes",
                        Status::Unknown,
                        format!("/config_dump is not JSON: {e}"),
                    )
                    .on(label)
                    .fix("is this an Envoy admin interface?", doc::CHECK),
                ),
            },
            Ok((status, _)) => out.push(
                Check::new(
                    g,
                    "routes",
                    Status::Unknown,
                    format!("/config_dump answered HTTP {status}"),
                )
                .on(label)
                .fix("is this an Envoy admin interface?", doc::CHECK),
            ),
            Err(e) => out.push(
                Check::new(
                    g,
                    "routes",
                    Status::Unknown,
                    format!("cannot read /config_dump: {e}"),
                )
                .on(label)
                .fix("check the proxy is up", doc::CHECK),
            ),
        }
        // Internal errors: any in the window fails; older ones warn.
        let (ie_before, ie_after) = (before.get("internal_error"), after.get("internal_error"));
        out.push(if ie_after > ie_before {
            Check::new(g, "internal-errors", Status::Fail, format!("{} internal errors in the last {}", ie_after - ie_before, humantime::format_duration(args.window)))
                .on(label)
                .fix("the filter refused requests with 500 internal_error: read the proxy's log for `edge-hmac`", doc::TROUBLE)
        } else if ie_after > 0 {
            Check::new(g, "internal-errors", Status::Warn, format!("{ie_after} internal errors since the proxy started, none in the window"))
                .on(label)
                .fix("read the proxy's log for `edge-hmac` around them", doc::TROUBLE)
        } else {
            Check::ok(g, "internal-errors", "no internal error").on(label)
        });
        // Rejections over the window.
        let (verified, rejected) = judge::window(before, after);
        let refused: u64 = rejected.values().sum();
        let total = verified + refused;
        let share = if total == 0 {
            0.0
        } else {
            refused as f64 / total as f64
        };
        let by_code = rejected
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let window = humantime::format_duration(args.window);
        out.push(if total == 0 {
            Check::ok(g, "rejections", format!("no signed or refused request in the last {window}")).on(label)
        } else if share > args.max_rejected_share && refused >= args.min_rejected {
            Check::new(g, "rejections", Status::Warn, format!("{:.1}% of {total} requests refused in the last {window}: {by_code}", share * 100.0))
                .on(label)
                .fix("invalid_signature from one client: wrong key or signing bug; expired_timestamp: client clocks; replayed_request: retries reusing nonces (docs/monitoring.md has a runbook per code)", doc::TROUBLE)
        } else {
            Check::ok(g, "rejections", format!("{:.1}% of {total} requests refused in the last {window}{}", share * 100.0, if by_code.is_empty() { String::new() } else { format!(": {by_code}") })).on(label)
        });
    }
    out
}

/// The proxy holds the key the current-key Secret holds (what it would
/// load on a restart), else Secrets Manager's AWSCURRENT; and the pending
/// key when one is staged.
async fn keys(addr: SocketAddr, label: &str, t: &Target, sm: &SmFacts, c: &ClusterFacts) -> Check {
    let g = Group::Proxies;
    let body = match admin_get(addr, "/stats?filter=custom%5C.edge_hmac%5C.key%5C.").await {
        Ok((200, b)) => b,
        Ok((s, _)) => {
            return Check::new(
                g,
                "keys",
                Status::Unknown,
                format!("/stats answered HTTP {s}"),
            )
            .on(label)
            .fix("is this an Envoy admin interface?", doc::CHECK);
        }
        Err(e) => {
            return Check::new(
                g,
                "keys",
                Status::Unknown,
                format!("cannot read /stats: {e}"),
            )
            .on(label)
            .fix("check the proxy is up", doc::CHECK);
        }
    };
    let view = crate::rotate::ProxyView::parse(label, &body);
    let (want, source) = match (&c.current, &sm.current) {
        (Some((fp, _)), _) => (fp.clone(), "the Secret ESO wrote"),
        (None, Some(fp)) => (fp.clone(), "Secrets Manager's AWSCURRENT"),
        (None, None) => {
            return Check::new(g, "keys", Status::Unknown, "neither the Secret nor Secrets Manager could be read: nothing to compare the proxy's key with").on(label).fix("fix those checks first", doc::CHECK);
        }
    };
    let held = |slot: &str| view.keys.get(slot).cloned().unwrap_or_default().join(",");
    if view.keys.is_empty() {
        return Check::new(
            g,
            "keys",
            Status::Fail,
            "no edge-hmac key gauge: the filter is not loaded here (or predates key gauges)",
        )
        .on(label)
        .fix("check the proxy runs the kit's filter", doc::TROUBLE);
    }
    if !view.keys.get("current").is_some_and(|f| f.contains(&want)) {
        return Check::new(g, "keys", Status::Fail, format!("current key {} but {source} holds {want}: the proxy was not restarted since the Secret changed", if held("current").is_empty() { "none".to_owned() } else { held("current") }))
            .on(label)
            .fix(t.restart_command(), doc::ROTATION);
    }
    // The pending key the proxy should hold: the rotation Secret's, else
    // (Secret not read) Secrets Manager's AWSPENDING.
    let pending = match &c.rotation {
        Some(r) => r.get("hmac_secret_pending").cloned().map(|p| (p, true)),
        None => sm.pending.clone().flatten().map(|p| (p, false)),
    };
    if let Some((p, in_secret)) = pending
        && !view.keys.get("pending").is_some_and(|f| f.contains(&p))
    {
        let (whose, hint) = if in_secret {
            (
                "the rotation Secret holds the pending key",
                format!(
                    "restart the proxies before `rotate promote`: {}",
                    t.restart_command()
                ),
            )
        } else {
            (
                "Secrets Manager stages the pending key",
                format!(
                    "force-sync the rotation ExternalSecret, then restart the proxies before `rotate promote`: {}",
                    t.restart_command()
                ),
            )
        };
        return Check::new(g, "keys", Status::Fail, format!("{whose} {p} but this proxy does not hold it: a client signing with it would be refused here"))
            .on(label)
            .fix(hint, doc::ROTATION);
    }
    Check::ok(
        g,
        "keys",
        format!(
            "holds the current key {want}{}",
            if held("pending").is_empty() {
                String::new()
            } else {
                format!(", pending {}", held("pending"))
            }
        ),
    )
    .on(label)
}

fn dump_checks(dump: &serde_json::Value, label: &str, t: &Target, c: &ClusterFacts) -> Vec<Check> {
    use judge::Build;
    let g = Group::Proxies;
    let n = &t.names;
    let read = |entry| {
        judge::read_config_dump(
            dump,
            &n.gateway_namespace,
            &n.gateway_name,
            &n.gateway_namespace,
            &n.policy_name,
            entry,
        )
    };
    // Which builds of the kit's policy run at all, then the kit's own entry.
    let any = read(None);
    let view = read(c.entry);
    let mut out = Vec::new();
    let builds: Vec<Build> = any.builds.iter().copied().collect();
    out.push(match (c.entry, builds.as_slice()) {
        (_, []) => Check::new(g, "filter", Status::Fail, format!("no filter of {}/{} in the listeners", n.gateway_namespace, n.policy_name))
            .on(label)
            .fix("this proxy does not run the kit's policy: is it a proxy of this Gateway? Check Envoy Gateway's status of the policy", doc::TROUBLE),
        (None, _) => Check::new(g, "filter", Status::Unknown, format!("runs the {}; the kit's policy could not be read to compare", builds.iter().map(|b| b.name()).collect::<Vec<_>>().join(" and ")))
            .on(label)
            .fix("fix the extension-policy check first", doc::CHECK),
        (Some((want, _)), [have]) if *have == want => Check::ok(g, "filter", format!("runs the {}, as the policy names", want.name())).on(label),
        (Some((want, _)), have) if have.contains(&want) => Check::new(g, "filter", Status::Warn, format!("runs both builds of {}/{}; the policy names the {}", n.gateway_namespace, n.policy_name, want.name()))
            .on(label)
            .fix("every request is verified twice: re-apply the kit's policy", doc::APPLY),
        (Some((want, _)), [have, ..]) => Check::new(g, "filter", Status::Fail, format!("runs the {} but the policy names the {}", have.name(), want.name()))
            .on(label)
            .fix("restart the proxy so it takes the current configuration", doc::TROUBLE),
    });
    out.push(if view.routes == 0 {
        Check::new(g, "routes", Status::Unknown, format!("no route of Gateway {}/{} in this proxy's /config_dump: nothing to judge", n.gateway_namespace, n.gateway_name))
            .on(label)
            .fix("nothing is served yet, or this proxy serves another Gateway (check --admin)", doc::CHECK)
    } else if view.uncovered.is_empty() {
        Check::ok(g, "routes", format!("the filter is enabled on all {} routes", view.routes)).on(label)
    } else {
        Check::new(g, "routes", Status::Fail, format!("the filter is NOT enabled on {} of {} routes: {}", view.uncovered.len(), view.routes, view.uncovered.join(", ")))
            .on(label)
            .fix("requests to these routes pass unsigned: find the EnvoyExtensionPolicy on them (routes-objects above) and give it mergeType, or delete it", doc::CHECK)
    });
    out
}
