//! Constant-time check of the tag comparison (dudect style): many timings of
//! verify with a tag wrong at its first byte against one wrong at its last
//! byte, Welch's t between the two; |t| > 4.5 means a leak. The same harness
//! runs two deliberately leaky verifiers next to it, to show what a leak
//! looks like on this machine.
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
    println!("constant-time check, {n} timings per class (|t| > 4.5: timing depends on the tag)");
    for (label, c) in [
        ("filter (hmac verify_slice)", Comparison::Filter),
        ("leaky: == on raw tag bytes", Comparison::EqBytes),
        ("leaky: == on hex strings", Comparison::EqHex),
    ] {
        let r = first_vs_last_byte(n, c);
        println!(
            "{label:<28} |t| = {:>7.2}   median first-byte-wrong {:.0} ns, last-byte-wrong {:.0} ns{}",
            r.t,
            r.median_a_ns,
            r.median_b_ns,
            if r.t > 4.5 { "   LEAK" } else { "" }
        );
    }
}
