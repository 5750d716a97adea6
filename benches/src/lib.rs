//! Fixtures shared by the criterion benches, the constant-time check and the
//! wasm bench: signed requests of a given body size, verified exactly the way
//! the filter verifies them (headers, then the streamed body).

use std::hint::black_box;
use std::time::Instant;

use edge_hmac_core::scheme::rfc9421::{Rfc9421Request, content_digest_header};
use edge_hmac_core::scheme::{
    Formats, Payload, Rejection, RequestHead, SecretKey, SignRequest, Signer, TagEncoding,
    Verifier, VerifierOptions,
};

/// The current key of the fixtures.
pub const KEY: &[u8] = b"bench-current-key-0123456789abcdef-0123456789abcdef";
/// The previous key of the fixtures.
pub const PREVIOUS_KEY: &[u8] = b"bench-previous-key-0123456789abcdef-0123456789abcde";
/// The verifier clock of the fixtures.
pub const NOW: u64 = 1_767_225_600;
/// Body sizes benchmarked.
pub const BODY_SIZES: [usize; 4] = [0, 1024, 64 * 1024, 1024 * 1024];

/// A verifier with only the current key, and one with a previous key too.
pub fn verifiers() -> (Verifier, Verifier) {
    let make = |previous: bool| {
        Verifier::new(
            "dev",
            SecretKey::new(KEY, "current").expect("key"),
            previous.then(|| SecretKey::new(PREVIOUS_KEY, "previous").expect("key")),
            VerifierOptions::default(),
        )
        .expect("verifier")
    };
    (make(false), make(true))
}

/// A verifier with only the current key accepting both formats (what
/// `formats: ["v1", "rfc9421"]` compiles to).
pub fn verifier_both_formats() -> Verifier {
    Verifier::new(
        "dev",
        SecretKey::new(KEY, "current").expect("key"),
        None,
        VerifierOptions {
            formats: Formats::BOTH,
            ..VerifierOptions::default()
        },
    )
    .expect("verifier")
}

/// The request of every fixture: method, path and the headers a client
/// sends besides the signature (`content-type` when there is a body).
fn base_request(body: &[u8]) -> (&'static str, &'static str, Vec<(String, String)>) {
    let method = if body.is_empty() { "GET" } else { "POST" };
    let path = "/v1/orders/12345/items?expand=price&limit=50";
    let mut headers = vec![
        (":method".to_string(), method.to_string()),
        (":scheme".to_string(), "https".to_string()),
        (":authority".to_string(), "api.example.test".to_string()),
        (":path".to_string(), path.to_string()),
        ("user-agent".to_string(), "bench/1.0".to_string()),
        ("accept".to_string(), "application/json".to_string()),
        (
            "x-request-id".to_string(),
            "6f1c2a9e-5b0d-4c8e-9a31-2d7f0b6e4c11".to_string(),
        ),
    ];
    if !body.is_empty() {
        headers.push(("content-type".to_string(), "application/json".to_string()));
        headers.push(("content-length".to_string(), body.len().to_string()));
    }
    (method, path, headers)
}

/// A deterministic body of `len` bytes.
fn body_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A signed request: its headers (pseudo-headers included) and body.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// `(name, value)` header entries as Envoy hands them over.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Fixture {
    /// A POST (GET when `body_len` is 0) with a deterministic body, signed
    /// with `key`.
    pub fn signed(body_len: usize, key: &[u8]) -> Fixture {
        let body = body_of(body_len);
        let (method, path, headers) = base_request(&body);
        let signer =
            Signer::new(SecretKey::new(key, "current").expect("key"), "dev").expect("signer");
        let signed = signer
            .sign(
                &SignRequest {
                    method,
                    authority: "api.example.test",
                    path,
                    timestamp: NOW,
                    nonce: None,
                    payload: Payload::of(&body),
                },
                TagEncoding::Hex,
            )
            .expect("sign");
        Fixture::with_signature(headers, body, signed.pairs())
    }

    /// The same request signed in the RFC 9421 profile: the four required
    /// components, `content-digest` and `content-type` when there is a body
    /// (what the PyPI and npm libraries send), keyid, alg and tag.
    pub fn signed_rfc9421(body_len: usize, key: &[u8]) -> Fixture {
        let body = body_of(body_len);
        let (method, path, headers) = base_request(&body);
        let signer =
            Signer::new(SecretKey::new(key, "current").expect("key"), "dev").expect("signer");
        let digest = (!body.is_empty()).then(|| content_digest_header(&body));
        let fields: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        let signed = signer
            .sign_rfc9421(&Rfc9421Request {
                method,
                scheme: "https",
                authority: "api.example.test",
                path,
                created: NOW,
                expires: None,
                nonce: None,
                content_digest: digest.as_deref(),
                fields,
            })
            .expect("sign");
        Fixture::with_signature(headers, body, signed.pairs())
    }

    /// `headers` with the signature headers `pairs` appended.
    fn with_signature(
        mut headers: Vec<(String, String)>,
        body: Vec<u8>,
        pairs: Vec<(&str, &str)>,
    ) -> Fixture {
        headers.extend(
            pairs
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string())),
        );
        Fixture { headers, body }
    }

    /// The same request with the tag's byte `index` flipped (still valid hex).
    pub fn with_tag_byte_flipped(&self, index: usize) -> Fixture {
        let mut f = self.clone();
        for (n, v) in &mut f.headers {
            if n == "x-crawbl-signature" {
                let mut tag = hex::decode(&v[3..]).expect("hex tag");
                tag[index] ^= 0x01;
                *v = format!("v1={}", hex::encode(tag));
            }
        }
        f
    }

    /// The header entries as the filter sees them.
    pub fn head(&self) -> RequestHead<'_> {
        RequestHead::from_string_pairs(&self.headers)
    }

    /// Verifies headers then body, as the filter does: a request without a
    /// body ends at the headers; a body is hashed in 16 KiB chunks (Envoy's
    /// usual read size).
    pub fn verify(&self, verifier: &Verifier) -> Result<(), Rejection> {
        let head = self.head();
        let ok = verifier.verify_headers(&head, NOW)?;
        if self.body.is_empty() && ok.expects_empty_body() {
            return Ok(());
        }
        // The fixtures always sign a hash (never UNSIGNED-PAYLOAD).
        let Some(mut body) = ok.body_verifier(u64::MAX) else {
            return Ok(());
        };
        for chunk in self.body.chunks(16 * 1024) {
            body.update(chunk)?;
        }
        body.finish()
    }

    /// The string to sign (what a MAC peer has to hash).
    pub fn string_to_sign(&self, verifier: &Verifier) -> String {
        verifier.string_to_sign(&self.head()).expect("well-formed")
    }

    /// The tag in the signature header, decoded.
    pub fn tag(&self) -> Vec<u8> {
        let v = &self
            .headers
            .iter()
            .find(|(n, _)| n == "x-crawbl-signature")
            .expect("signature")
            .1;
        hex::decode(&v[3..]).expect("hex")
    }
}

/// Deliberately leaky verifiers, for showing that the timing check catches a
/// plain `==`. Never used by the filter.
pub mod leaky {
    use super::*;

    /// Computes the tag like the filter, then compares the raw tags with `==`.
    pub fn verify_eq_bytes(key: &SecretKey, string_to_sign: &str, tag: &[u8]) -> bool {
        key.mac(string_to_sign.as_bytes()).as_slice() == tag
    }

    /// Computes the tag, then compares hex strings with `==`.
    pub fn verify_eq_hex(key: &SecretKey, string_to_sign: &str, tag_hex: &str) -> bool {
        hex::encode(key.mac(string_to_sign.as_bytes())) == tag_hex
    }
}

/// Welch's t statistic between two samples.
pub fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let stats = |x: &[f64]| {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var)
    };
    let (na, ma, va) = stats(a);
    let (nb, mb, vb) = stats(b);
    (ma - mb) / (va / na + vb / nb).sqrt()
}

/// Result of a timing comparison between two input classes.
#[derive(Debug, Clone, Copy)]
pub struct TimingReport {
    /// Measurements per class.
    pub n: usize,
    /// Largest |t| over the cropped views (dudect's rule: > 4.5 is a leak).
    pub t: f64,
    /// Median time of class A, in ns per operation.
    pub median_a_ns: f64,
    /// Median time of class B, in ns per operation.
    pub median_b_ns: f64,
}

/// Which comparison a timing run goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// The filter's `Verifier::verify_headers` (constant-time tag check).
    Filter,
    /// Leaky: the tag computed, then `==` on the 32 raw bytes.
    EqBytes,
    /// Leaky: the tag computed, then `==` on the 64-character hex strings.
    EqHex,
    /// Calibration (A/A): the filter's verify with the same wrong tag in
    /// both classes. Any |t| here is the harness's own noise floor.
    FilterSameTag,
}

/// One verify path with its input switchable between "tag wrong at the first
/// byte" (class A) and "tag wrong at the last byte" (class B), always in the
/// same memory so only the data differs between the classes.
pub struct Probe {
    comparison: Comparison,
    verifier: Verifier,
    key: SecretKey,
    fixture: Fixture,
    sig_index: usize,
    sts: String,
    tags: [Vec<u8>; 2],
    hexes: [String; 2],
    raw_tag: Vec<u8>,
    hex_tag: String,
}

impl Probe {
    /// A probe through `comparison`.
    pub fn new(comparison: Comparison) -> Probe {
        let (verifier, _) = verifiers();
        let fixture = Fixture::signed(0, KEY);
        let sts = fixture.string_to_sign(&verifier);
        let sig_index = fixture
            .headers
            .iter()
            .position(|(n, _)| n == "x-crawbl-signature")
            .expect("signature header");
        let good = fixture.tag();
        let wrong = |index: usize| {
            let mut t = good.clone();
            t[index] ^= 0x01;
            t
        };
        let tags = if comparison == Comparison::FilterSameTag {
            [wrong(0), wrong(0)]
        } else {
            [wrong(0), wrong(31)]
        };
        let hexes = [hex::encode(&tags[0]), hex::encode(&tags[1])];
        Probe {
            comparison,
            verifier,
            key: SecretKey::new(KEY, "current").expect("key"),
            fixture,
            sig_index,
            sts,
            raw_tag: tags[0].clone(),
            hex_tag: hexes[0].clone(),
            tags,
            hexes,
        }
    }

    /// Puts class A (`true`) or B in place; not timed.
    pub fn set(&mut self, class_a: bool) {
        let i = usize::from(!class_a);
        match self.comparison {
            Comparison::Filter | Comparison::FilterSameTag => {
                let slot = &mut self.fixture.headers[self.sig_index].1;
                slot.truncate(3); // keep "v1="
                slot.push_str(&self.hexes[i]);
            }
            Comparison::EqBytes => self.raw_tag.copy_from_slice(&self.tags[i]),
            Comparison::EqHex => {
                self.hex_tag.clear();
                self.hex_tag.push_str(&self.hexes[i]);
            }
        }
    }

    /// One verification; what is timed.
    pub fn run(&self) {
        match self.comparison {
            Comparison::Filter | Comparison::FilterSameTag => {
                let r = black_box(&self.fixture).verify(black_box(&self.verifier));
                black_box(r.is_ok());
            }
            Comparison::EqBytes => {
                black_box(leaky::verify_eq_bytes(
                    &self.key,
                    black_box(&self.sts),
                    black_box(&self.raw_tag),
                ));
            }
            Comparison::EqHex => {
                black_box(leaky::verify_eq_hex(
                    &self.key,
                    black_box(&self.sts),
                    black_box(&self.hex_tag),
                ));
            }
        }
    }
}

/// Timings of one probe, per class, in ns per operation.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Samples {
    /// dudect's statistic over what was collected: Welch's t on the raw
    /// timings and on views cropped at several percentiles (which removes
    /// interrupt and scheduling outliers); the largest |t|.
    pub fn report(&self) -> TimingReport {
        let mut all: Vec<f64> = self.a.iter().chain(self.b.iter()).copied().collect();
        all.sort_by(f64::total_cmp);
        let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
        let mut t_max = welch_t(&self.a, &self.b).abs();
        for p in [0.5, 0.8, 0.9, 0.99] {
            let cut = pct(p);
            let ca: Vec<f64> = self.a.iter().copied().filter(|x| *x <= cut).collect();
            let cb: Vec<f64> = self.b.iter().copied().filter(|x| *x <= cut).collect();
            if ca.len() > 100 && cb.len() > 100 {
                t_max = t_max.max(welch_t(&ca, &cb).abs());
            }
        }
        let median = |x: &[f64]| {
            let mut x = x.to_vec();
            x.sort_by(f64::total_cmp);
            x[x.len() / 2]
        };
        TimingReport {
            n: self.a.len().min(self.b.len()),
            t: t_max,
            median_a_ns: median(&self.a),
            median_b_ns: median(&self.b),
        }
    }
}

/// Collects `n` more timings per class for every probe, all probes and
/// classes interleaved in pseudo-random order (so drift and noise hit them
/// alike). Each timing covers `batch` back-to-back operations of one class:
/// a systematic difference adds up over the batch while jitter averages out.
pub fn collect(
    probes: &mut [Probe],
    samples: &mut [Samples],
    n: usize,
    batch: usize,
    seed: &mut u64,
) {
    let slots = probes.len() * 2;
    let mut left = vec![n; slots];
    for p in probes.iter_mut() {
        for class_a in [true, false] {
            p.set(class_a);
            for _ in 0..200 {
                p.run();
            }
        }
    }
    let mut remaining = n * slots;
    while remaining > 0 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let mut slot = (*seed % slots as u64) as usize;
        while left[slot] == 0 {
            slot = (slot + 1) % slots;
        }
        left[slot] -= 1;
        remaining -= 1;
        let (probe, class_a) = (slot / 2, slot.is_multiple_of(2));
        probes[probe].set(class_a);
        let start = Instant::now();
        for _ in 0..batch {
            probes[probe].run();
        }
        let ns = start.elapsed().as_nanos() as f64 / batch as f64;
        let s = &mut samples[probe];
        if class_a { s.a.push(ns) } else { s.b.push(ns) }
    }
}

/// Timings of a verify whose tag is wrong at its first byte (class A)
/// against one wrong at its last byte (class B), through `comparison`.
pub fn first_vs_last_byte(n: usize, comparison: Comparison) -> TimingReport {
    let mut probes = [Probe::new(comparison)];
    let mut samples = [Samples::default()];
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    collect(&mut probes, &mut samples, n, 1, &mut seed);
    samples[0].report()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures verify, and a flipped tag byte does not.
    #[test]
    fn fixtures_verify() {
        let (v, vp) = verifiers();
        for size in BODY_SIZES {
            let f = Fixture::signed(size, KEY);
            assert!(f.verify(&v).is_ok());
            assert!(f.with_tag_byte_flipped(31).verify(&v).is_err());
            assert!(Fixture::signed(size, PREVIOUS_KEY).verify(&vp).is_ok());
        }
    }

    /// Welch's t: equal samples give 0, shifted samples a large value.
    #[test]
    fn welch() {
        let a: Vec<f64> = (0..1000).map(|i| (i % 10) as f64).collect();
        assert!(welch_t(&a, &a).abs() < 1e-9);
        let b: Vec<f64> = a.iter().map(|x| x + 1.0).collect();
        // Means differ by 1, both variances 8.2583 (n = 1000): t = -1/sqrt(2*8.2583/1000).
        let t = welch_t(&a, &b);
        assert!((t + 7.781).abs() < 0.01, "{t}");
    }
}
