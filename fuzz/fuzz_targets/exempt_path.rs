//! The exempt-path matcher on arbitrary paths: a path it covers stays
//! covered however a later hop re-reads it (`..;` as `..`, one or two more
//! percent-decodings, `\` as `/`, dot segments resolved), for a prefix
//! entry with and without a trailing slash and an exact entry.
#![no_main]

use edge_hmac_core::paths::{PathMatch, second_hop_views};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for entry in ["/public/*", "/public*", "/public/a/*", "/healthz", "/*"] {
        let Ok(m) = PathMatch::parse("exempt_paths", entry) else {
            panic!("entry {entry} refused");
        };
        if m.matches(data) {
            for view in second_hop_views(data) {
                assert!(
                    m.covers(&view),
                    "{:?} is covered by {entry}, a later hop reads {:?}",
                    String::from_utf8_lossy(data),
                    String::from_utf8_lossy(&view)
                );
            }
        }
    }
});
