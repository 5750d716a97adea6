//! Short constant-time check run by `make test` (optimized build): the filter's
//! verify must show no timing dependence on where the tag is wrong, while the
//! same harness must detect a plain `==` on hex strings — so the check itself
//! is shown to work in the same run. Thresholds are generous (10 either way,
//! against dudect's 4.5) to stay quiet on a busy CI machine; the full
//! version is `cargo bench -p edge-hmac-benches --bench constant_time`.

use std::process::ExitCode;

use edge_hmac_benches::{Comparison, first_vs_last_byte};

const N: usize = 100_000;
const THRESHOLD: f64 = 10.0;

fn main() -> ExitCode {
    let filter = first_vs_last_byte(N, Comparison::Filter);
    let leaky = first_vs_last_byte(N, Comparison::EqHex);
    println!(
        "ct-check: filter verify |t| = {:.2} (must be < {THRESHOLD})",
        filter.t
    );
    println!(
        "ct-check: leaky == on hex strings |t| = {:.2} (must be > {THRESHOLD})",
        leaky.t
    );
    let ok = filter.t < THRESHOLD && leaky.t > THRESHOLD;
    println!(
        "ct-check: {} passed, {} failed",
        u8::from(ok),
        u8::from(!ok)
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
