//! The verification hot path, natively, with peers in the same groups.
//!
//! `cargo bench -p edge-hmac-benches --bench verify` (results in
//! docs/benchmarks.md; `python3 benches/report.py` prints the ratios).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use edge_hmac_benches::{BODY_SIZES, Fixture, KEY, PREVIOUS_KEY, verifier_both_formats, verifiers};
use edge_hmac_core::scheme::{SecretKey, hmac_sha256};
use sha2::Digest as _;

fn label(size: usize) -> String {
    match size {
        0 => "0".into(),
        s if s >= 1024 * 1024 => format!("{}MiB", s / (1024 * 1024)),
        s => format!("{}KiB", s / 1024),
    }
}

/// Verify a signed request (headers, then body), and the same bytes through
/// ring and through raw SHA-256 (the floor).
fn verify(c: &mut Criterion) {
    let (verifier, with_previous) = verifiers();
    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY);
    let mut group = c.benchmark_group("verify");
    for size in BODY_SIZES {
        let fixture = Fixture::signed(size, KEY);
        let invalid = fixture.with_tag_byte_flipped(31);
        let previous = Fixture::signed(size, PREVIOUS_KEY);
        let sts = fixture.string_to_sign(&verifier);
        let tag = fixture.tag();
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 64 * 1024 {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(3));
        } else {
            group
                .sample_size(60)
                .measurement_time(Duration::from_secs(2));
        }
        let id = |name: &str| BenchmarkId::new(name, label(size));
        group.bench_function(id("edge_hmac/valid"), |b| {
            b.iter(|| black_box(&fixture).verify(black_box(&verifier)).is_ok())
        });
        group.bench_function(id("edge_hmac/invalid_tag"), |b| {
            b.iter(|| black_box(&invalid).verify(black_box(&verifier)).is_err())
        });
        group.bench_function(id("edge_hmac/valid_previous_key"), |b| {
            b.iter(|| {
                black_box(&previous)
                    .verify(black_box(&with_previous))
                    .is_ok()
            })
        });
        // ring on the same bytes: the body digest (when there is a body, as
        // the filter) and the HMAC of the string to sign, given ready-made
        // (ring does none of the header parsing).
        let has_body = !fixture.body.is_empty();
        group.bench_function(id("ring/valid"), |b| {
            b.iter(|| {
                if has_body {
                    black_box(ring::digest::digest(
                        &ring::digest::SHA256,
                        black_box(&fixture.body),
                    ));
                }
                ring::hmac::verify(&ring_key, black_box(sts.as_bytes()), black_box(&tag)).is_ok()
            })
        });
        // Floor: raw SHA-256 of the same bytes plus HMAC's outer block.
        group.bench_function(id("sha256_floor"), |b| {
            b.iter(|| {
                if has_body {
                    black_box(sha2::Sha256::digest(black_box(&fixture.body)));
                }
                let inner = sha2::Sha256::digest(black_box(sts.as_bytes()));
                black_box(sha2::Sha256::digest(inner))
            })
        });
    }
    group.finish();
}

/// The two wire formats on the same request, verified by the same pipeline
/// (formats both): full verify per body size, and the header stage alone
/// without the MAC (`string_to_sign`: parse plus v1's string to sign or
/// RFC 9421's signature base), which is where the formats differ.
fn formats(c: &mut Criterion) {
    let verifier = verifier_both_formats();
    let mut group = c.benchmark_group("formats");
    for size in [0, 1024, 64 * 1024] {
        let v1 = Fixture::signed(size, KEY);
        let rfc = Fixture::signed_rfc9421(size, KEY);
        assert!(v1.verify(&verifier).is_ok() && rfc.verify(&verifier).is_ok());
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 64 * 1024 {
            group
                .sample_size(30)
                .measurement_time(Duration::from_secs(2));
        }
        group.bench_with_input(BenchmarkId::new("v1/verify", label(size)), &v1, |b, f| {
            b.iter(|| black_box(f).verify(&verifier))
        });
        group.bench_with_input(
            BenchmarkId::new("rfc9421/verify", label(size)),
            &rfc,
            |b, f| b.iter(|| black_box(f).verify(&verifier)),
        );
        group.bench_with_input(
            BenchmarkId::new("v1/parse_and_message", label(size)),
            &v1,
            |b, f| b.iter(|| verifier.string_to_sign(&black_box(f).head())),
        );
        group.bench_with_input(
            BenchmarkId::new("rfc9421/parse_and_message", label(size)),
            &rfc,
            |b, f| b.iter(|| verifier.string_to_sign(&black_box(f).head())),
        );
    }
    group.finish();
}

/// HMAC of a ~200-byte string to sign: key state prepared once (what the
/// filter does) against keying on every request, and ring; plus the previous
/// RustCrypto releases (hmac 0.12 / sha2 0.10) next to the ones in use.
fn key_state(c: &mut Criterion) {
    let (verifier, _) = verifiers();
    let sts = Fixture::signed(0, KEY).string_to_sign(&verifier);
    let msg = sts.as_bytes();
    let prepared = SecretKey::new(KEY, "current").expect("key");
    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY);
    use hmac012::Mac as _;
    let old012 = hmac012::Hmac::<sha2010::Sha256>::new_from_slice(KEY).expect("key");
    let mut group = c.benchmark_group("hmac_sha256_200B");
    group.throughput(Throughput::Bytes(msg.len() as u64));
    group
        .sample_size(60)
        .measurement_time(Duration::from_secs(2));
    group.bench_function("hmac0.13/prepared_key", |b| {
        b.iter(|| prepared.mac(black_box(msg)))
    });
    group.bench_function("hmac0.13/key_per_request", |b| {
        b.iter(|| hmac_sha256(black_box(KEY), black_box(msg)))
    });
    group.bench_function("hmac0.12/prepared_key", |b| {
        b.iter(|| {
            let mut m = old012.clone();
            m.update(black_box(msg));
            m.finalize().into_bytes()
        })
    });
    group.bench_function("hmac0.12/key_per_request", |b| {
        b.iter(|| {
            let mut m =
                hmac012::Hmac::<sha2010::Sha256>::new_from_slice(black_box(KEY)).expect("key");
            m.update(black_box(msg));
            m.finalize().into_bytes()
        })
    });
    group.bench_function("ring/prepared_key", |b| {
        b.iter(|| ring::hmac::sign(&ring_key, black_box(msg)))
    });
    group.finish();
}

/// Raw SHA-256 throughput: the floor for body hashing.
fn sha256(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group
            .sample_size(30)
            .measurement_time(Duration::from_secs(2));
        group.bench_with_input(BenchmarkId::new("sha2-0.11", label(size)), &data, |b, d| {
            b.iter(|| sha2::Sha256::digest(black_box(d)))
        });
        group.bench_with_input(BenchmarkId::new("sha2-0.10", label(size)), &data, |b, d| {
            use sha2010::Digest as _;
            b.iter(|| sha2010::Sha256::digest(black_box(d)))
        });
        group.bench_with_input(BenchmarkId::new("ring", label(size)), &data, |b, d| {
            b.iter(|| ring::digest::digest(&ring::digest::SHA256, black_box(d)))
        });
    }
    group.finish();
}

/// One nonce claim in the replay table natively, half full (the documented
/// sizing): the shared-data work a nonce request adds, before host-call
/// costs. `one_table` is steady state; `two_tables` is the transition after
/// a capacity change (the nonce goes into both).
fn replay(c: &mut Criterion) {
    use edge_hmac_core::replay::{BUCKET_CAPACITY, MemoryStore, ReplayCache};
    let mut group = c.benchmark_group("replay_claim");
    let now = 1_800_000_000u64;
    for (name, tables) in [("one_table", 1u64), ("two_tables", 2)] {
        let mut store = MemoryStore::default();
        let capacity = 1024 * BUCKET_CAPACITY as u64;
        let caches: Vec<ReplayCache> = (0..tables)
            .map(|i| ReplayCache::new(capacity + i * BUCKET_CAPACITY as u64, 600, 300))
            .collect();
        for cache in &caches {
            cache.register(&mut store, now).unwrap();
        }
        // Steady state at half full: capacity / 2 live nonces, each live
        // for TTL + 1 = 601 s, so capacity / 2 / 601 new nonces a second.
        let per_second = capacity / 2 / 601;
        let claim = |store: &mut MemoryStore, i: u64| {
            let t = now + i / per_second;
            caches[0].claim(store, &format!("nonce-{i:016}"), t, t)
        };
        let warm = 2 * 601 * per_second;
        for i in 0..warm {
            claim(&mut store, i).unwrap();
        }
        let mut i = warm;
        group.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                claim(&mut store, i)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify, formats, key_state, sha256, replay);
criterion_main!(benches);
