//! The proxy-wasm header-map decoder on arbitrary bytes: never panics, and
//! whatever it accepts re-encodes to a prefix of the input it came from.
#![no_main]

use edge_hmac_filter::hostmap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(pairs) = hostmap::parse(data)
        && !data.is_empty()
    {
        // Separators are not checked by the decoder, so compare with them
        // taken from the input.
        let again = hostmap::serialize(&pairs);
        assert!(again.len() <= data.len());
        let mut masked = data[..again.len()].to_vec();
        let mut pos = 4 + 8 * pairs.len();
        for (n, v) in &pairs {
            pos += n.len();
            masked[pos] = 0;
            pos += 1 + v.len();
            masked[pos] = 0;
            pos += 1;
        }
        assert_eq!(masked, again);
    }
});
