//! Short constant-time check run by `make test` (optimized build): the filter's
//! verify must show no timing dependence on where the tag is wrong, and the
//! same harness, in the same loop, must detect a plain `==` on hex strings —
//! so the check is shown to be sensitive enough on this machine before its
//! verdict on the filter counts. Timings are collected in rounds until that
//! sensitivity is reached (a busy machine needs more samples). The
//! threshold is generous (20, against dudect's 4.5): code-layout and cache
//! effects alone give the filter |t| up to ~5 here, while the leaky compare
//! reaches 35-75 in one round; the full version is
//! `cargo bench -p edge-hmac-benches --bench constant_time`.

use std::process::ExitCode;

use edge_hmac_benches::{Comparison, Probe, Samples, collect};

const PER_ROUND: usize = 40_000;
const MAX_ROUNDS: usize = 20;
const BATCH: usize = 4;
const THRESHOLD: f64 = 20.0;

fn main() -> ExitCode {
    let mut probes = [
        Probe::new(Comparison::Filter),
        Probe::new(Comparison::EqHex),
    ];
    let mut samples = [Samples::default(), Samples::default()];
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    for round in 1..=MAX_ROUNDS {
        collect(&mut probes, &mut samples, PER_ROUND, BATCH, &mut seed);
        let (filter, leaky) = (samples[0].report(), samples[1].report());
        println!(
            "ct-check: round {round}: {} timings per class: filter |t| = {:.2}, leaky == on hex strings |t| = {:.2}",
            filter.n, filter.t, leaky.t
        );
        if filter.t >= THRESHOLD {
            println!("ct-check: the filter's verify time depends on where the tag is wrong");
            println!("ct-check: 0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
        if leaky.t > THRESHOLD {
            println!(
                "ct-check: sensitive enough (the leaky compare shows |t| > {THRESHOLD}) and the filter stays below {THRESHOLD}"
            );
            println!("ct-check: 1 passed, 0 failed");
            return ExitCode::SUCCESS;
        }
    }
    println!(
        "ct-check: could not reach the sensitivity to see a plain == after {} timings per class: the machine is too noisy; no verdict",
        PER_ROUND * MAX_ROUNDS
    );
    println!("ct-check: 0 passed, 1 failed");
    ExitCode::FAILURE
}
