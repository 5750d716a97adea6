//! Measures the replay table's refusal rate in steady state against the
//! Erlang B prediction, at several fills (live nonces / capacity).
//!
//! `cargo run --release -p edge-hmac-core --example replay_fill [CLAIMS]`
//! (default 20,000,000 claims per fill at the documented sizing, 2,000,000
//! at the others).

use edge_hmac_core::replay::{SIZING_FACTOR, refusal_rate, steady_state_refusals};

fn main() {
    let claims: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(20_000_000);
    let buckets = 256;
    println!("buckets={buckets} x 64 entries, TTL 40 s, uniformly random nonces");
    println!("| fill | predicted refusal | claims | refused | measured |");
    println!("|---|---|---|---|---|");
    for fill in [1.0 / SIZING_FACTOR, 0.6, 0.75, 0.9] {
        let n = if fill == 1.0 / SIZING_FACTOR {
            claims
        } else {
            (claims / 10).max(1)
        };
        match steady_state_refusals(buckets, fill, n) {
            Ok(refused) => println!(
                "| {fill:.2} | {:.2e} | {n} | {refused} | {:.2e} |",
                refusal_rate(fill),
                refused as f64 / n as f64
            ),
            Err(err) => {
                eprintln!("replay_fill: the table failed: {err:?}");
                std::process::exit(1);
            }
        }
    }
}
