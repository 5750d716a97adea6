//! Constant-time check of the tag comparison (dudect style): many timings of
//! verify with a tag wrong at its first byte against one wrong at its last
//! byte, Welch's t between the two. The same harness runs an A/A calibration
//! (the same wrong tag in both classes: any |t| there is the harness's own
//! noise floor on this machine) and two deliberately leaky verifiers, to show
//! what a leak looks like.
//!
//! A result counts as a leak when |t| > 4.5 (dudect's threshold) and more
//! than three times the A/A floor: at a million timings per class a shared
//! VM's floor alone can pass 4.5.
//!
//! `cargo bench -p edge-hmac-benches --bench constant_time` (1,000,000
//! timings per class; `-- N` for another count).
#![allow(missing_docs)]

use edge_hmac_benches::{Comparison, first_vs_last_byte};

fn main() {
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(1_000_000);
    println!("constant-time check, {n} timings per class");
    let floor = first_vs_last_byte(n, Comparison::FilterSameTag).t;
    println!(
        "{:<28} |t| = {floor:>7.2}   (noise floor of the harness)",
        "calibration: filter, A/A"
    );
    for (label, c) in [
        ("filter (hmac verify_slice)", Comparison::Filter),
        ("leaky: == on raw tag bytes", Comparison::EqBytes),
        ("leaky: == on hex strings", Comparison::EqHex),
    ] {
        let r = first_vs_last_byte(n, c);
        let leak = r.t > 4.5 && r.t > 3.0 * floor;
        println!(
            "{label:<28} |t| = {:>7.2}   median first-byte-wrong {:.0} ns, last-byte-wrong {:.0} ns   {}",
            r.t,
            r.median_a_ns,
            r.median_b_ns,
            if leak { "LEAK" } else { "no leak" }
        );
    }
}
