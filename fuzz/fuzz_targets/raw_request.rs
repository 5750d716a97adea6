//! The raw HTTP/1.x request parser of `edge-hmac verify` on arbitrary bytes:
//! never panics; whatever it accepts, written out again (same request line
//! and fields, the body with its length), parses back to the same request.
#![no_main]

use edge_hmac::raw::parse_raw;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_raw(data) else {
        return;
    };
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method, req.target).into_bytes();
    let framing = |n: &str| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    };
    for (name, value) in req.headers.iter().filter(|(n, _)| !framing(n)) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", req.body.len()).as_bytes());
    out.extend_from_slice(&req.body);
    let again = match parse_raw(&out) {
        Ok(r) => r,
        Err(e) => panic!("an accepted request does not parse once written out: {e}"),
    };
    assert_eq!(again.method, req.method);
    assert_eq!(again.target, req.target);
    assert_eq!(again.body, req.body);
    let kept: Vec<_> = req.headers.iter().filter(|(n, _)| !framing(n)).collect();
    let back: Vec<_> = again.headers.iter().filter(|(n, _)| !framing(n)).collect();
    assert_eq!(kept, back);
});
