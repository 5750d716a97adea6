//! The seed's flow on a real single-node Kubernetes (`edge_hmac_tests::node`):
//! Envoy Gateway's Kubernetes provider creates the proxy Deployment from the
//! kit's EnvoyProxy, the kubelet starts its pods with the keys from the
//! Secrets the real ESO synced from moto, and traffic reaches them through
//! kube-proxy.
//!
//! A binary of its own with its own runner (`harness = false`): it
//! re-executes itself in network, mount and PID namespaces of its own
//! (root), runs its tests one after another on one node there, and removes
//! what the namespaces leave behind. Arguments: substrings of test names to
//! run (all when none); `--list` lists them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::ExitCode;
use std::time::Instant;

mod edge;
mod rotation;

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    (
        "edge::the_kit_runs_on_a_node_with_the_keys_the_kubelet_injects",
        edge::the_kit_runs_on_a_node_with_the_keys_the_kubelet_injects,
    ),
    (
        "edge::the_native_module_runs_on_a_node_from_an_init_container",
        edge::the_native_module_runs_on_a_node_from_an_init_container,
    ),
    (
        "rotation::rotation_under_load_with_two_replicas_fails_no_request",
        rotation::rotation_under_load_with_two_replicas_fails_no_request,
    ),
    (
        "rotation::a_deleted_secret_keeps_the_edge_serving_through_a_restart",
        rotation::a_deleted_secret_keeps_the_edge_serving_through_a_restart,
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // libtest's flags are accepted and ignored (those with a value too).
    let mut filters: Vec<&str> = Vec::new();
    let mut it = args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        match a {
            "--test-threads" | "--skip" | "--format" | "--color" | "-Z" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => filters.push(a),
        }
    }
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        println!("running 0 tests");
        return ExitCode::SUCCESS;
    }
    if let Some(code) = edge_hmac_tests::node::isolated() {
        return code;
    }
    println!("running {} tests", selected.len());
    let start = Instant::now();
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let began = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        println!(
            "test {name} ... {} ({:.0} s)",
            if ok { "ok" } else { "FAILED" },
            began.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; finished in {:.1}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    for name in &failed {
        println!("    {name}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
