//! The streaming body check with arbitrary chunk splits: the same bytes split
//! differently always give the same verdict as one whole chunk, and a body
//! over the limit is refused however it is split.
#![no_main]

use arbitrary::Arbitrary;
use edge_hmac_core::scheme::{BodyVerifier, sha256};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    body: Vec<u8>,
    signed: Option<Vec<u8>>,
    cuts: Vec<u16>,
    limit: u16,
}

fn verdict(expected: [u8; 32], limit: u64, chunks: &[&[u8]]) -> Result<(), String> {
    let mut v = BodyVerifier::new(expected, limit);
    for c in chunks {
        v.update(c).map_err(|r| r.reason.code().to_owned())?;
    }
    v.finish().map_err(|r| r.reason.code().to_owned())
}

fuzz_target!(|input: Input| {
    let expected = sha256(input.signed.as_deref().unwrap_or(&input.body));
    let limit = u64::from(input.limit);
    let whole = verdict(expected, limit, &[&input.body]);
    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|c| usize::from(*c) % (input.body.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for c in cuts {
        chunks.push(&input.body[at..c]);
        at = c;
    }
    chunks.push(&input.body[at..]);
    let split = verdict(expected, limit, &chunks);
    assert_eq!(
        whole, split,
        "the verdict depends on how the body was split"
    );
    if input.body.len() as u64 > limit {
        assert_eq!(whole, Err("body_too_large".to_owned()));
    } else if input.signed.as_ref().is_none_or(|s| *s == input.body) {
        assert_eq!(whole, Ok(()));
    }
});
