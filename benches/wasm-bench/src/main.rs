//! The hot path, timed from inside the program so the same code runs
//! natively and as wasm32-wasip1 in a wasm runtime (node's V8, the engine
//! Envoy uses). Prints one JSON object per case.
//!
//! `benches/wasm-bench.sh` builds it three ways (native, wasm, wasm with
//! +simd128) and prints the comparison.

use std::hint::black_box;
use std::time::{Duration, Instant};

use edge_hmac_benches::{BODY_SIZES, Fixture, KEY, verifier_both_formats, verifiers};
use edge_hmac_core::scheme::SecretKey;
use sha2::Digest as _;

/// Runs `op` repeatedly for at least `budget`, returns ns per call (best of
/// three rounds, to skip warm-up and tiering).
fn time_per_op(budget: Duration, mut op: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut iters: u64 = 0;
        let start = Instant::now();
        while start.elapsed() < budget {
            for _ in 0..16 {
                op();
            }
            iters += 16;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / iters as f64);
    }
    best
}

fn report(case: &str, bytes: usize, ns: f64) {
    let gbps = if bytes > 0 { bytes as f64 / ns } else { 0.0 };
    println!(r#"{{"case":"{case}","bytes":{bytes},"ns_per_op":{ns:.1},"gb_per_s":{gbps:.3}}}"#);
}

fn main() {
    let budget = Duration::from_millis(
        std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(400),
    );
    let (verifier, _) = verifiers();
    for size in BODY_SIZES {
        let fixture = Fixture::signed(size, KEY);
        let ns = time_per_op(budget, || {
            black_box(black_box(&fixture).verify(black_box(&verifier)).is_ok());
        });
        report(&format!("verify/{size}"), size, ns);
    }
    // The same requests in both formats, through a verifier accepting both.
    let both = verifier_both_formats();
    for size in [0, 1024, 64 * 1024] {
        for (name, fixture) in [
            ("v1", Fixture::signed(size, KEY)),
            ("rfc9421", Fixture::signed_rfc9421(size, KEY)),
        ] {
            let ns = time_per_op(budget, || {
                black_box(black_box(&fixture).verify(black_box(&both)).is_ok());
            });
            report(&format!("formats_{name}/{size}"), size, ns);
        }
    }
    let invalid = Fixture::signed(0, KEY).with_tag_byte_flipped(31);
    let ns = time_per_op(budget, || {
        black_box(black_box(&invalid).verify(black_box(&verifier)).is_err());
    });
    report("verify_invalid_tag/0", 0, ns);
    let sts = Fixture::signed(0, KEY).string_to_sign(&verifier);
    let key = SecretKey::new(KEY, "current").expect("key");
    let ns = time_per_op(budget, || {
        black_box(key.mac(black_box(sts.as_bytes())));
    });
    report("hmac0.13_prepared/200B", sts.len(), ns);
    {
        use hmac012::Mac as _;
        let key012 = hmac012::Hmac::<sha2010::Sha256>::new_from_slice(KEY).expect("key");
        let ns = time_per_op(budget, || {
            let mut m = key012.clone();
            m.update(black_box(sts.as_bytes()));
            black_box(m.finalize().into_bytes());
        });
        report("hmac0.12_prepared/200B", sts.len(), ns);
    }
    let data = vec![0x5au8; 1024 * 1024];
    let ns = time_per_op(budget, || {
        black_box(sha2::Sha256::digest(black_box(&data)));
    });
    report("sha256_0.11/1MiB", data.len(), ns);
    let ns = time_per_op(budget, || {
        use sha2010::Digest as _;
        black_box(sha2010::Sha256::digest(black_box(&data)));
    });
    report("sha256_0.10/1MiB", data.len(), ns);
}
