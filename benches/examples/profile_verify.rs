#![allow(missing_docs)]
//! Profiling loop: `valgrind --tool=callgrind target/release/examples/profile_verify [SIZE]`.
use std::hint::black_box;
fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (v, _) = edge_hmac_benches::verifiers();
    let f = edge_hmac_benches::Fixture::signed(size, edge_hmac_benches::KEY);
    for _ in 0..20_000 {
        black_box(black_box(&f).verify(black_box(&v)).is_ok());
    }
}
