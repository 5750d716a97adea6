//! Decoding of the proxy-wasm header-map wire format without allocation per
//! entry and without assuming UTF-8 (header values may hold any byte Envoy
//! accepts; the SDK's `get_map` would panic on them).
//!
//! Layout: `u32` count, then `count` pairs of `u32` (name length, value
//! length), then each name and value followed by a NUL byte; all little-endian.

/// The `(name, value)` entries of a serialized header map, borrowed from
/// `bytes`, or `None` when the buffer is truncated or inconsistent.
pub fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut pos = sizes_end;
    for i in 0..count {
        let name_len = read_u32(bytes, 4 + i * 8)? as usize;
        let value_len = read_u32(bytes, 8 + i * 8)? as usize;
        let name = bytes.get(pos..pos.checked_add(name_len)?)?;
        pos = pos.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(pos..pos.checked_add(value_len)?)?;
        pos = pos.checked_add(value_len)?.checked_add(1)?;
        out.push((name, value));
    }
    if pos > bytes.len() {
        return None;
    }
    Some(out)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

/// Serializes pairs in the same format (for tests and benches).
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Round trip, including duplicate names and non-UTF-8 values.
    #[test]
    fn round_trip() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/a?b"),
            (b"x-crawbl-nonce", b"one"),
            (b"x-crawbl-nonce", b"two"),
            (b"x-odd", b"\xff\xfe"),
            (b"empty", b""),
        ];
        assert_eq!(parse(&serialize(&pairs)).unwrap(), pairs);
        assert_eq!(parse(&[]).unwrap(), Vec::<(&[u8], &[u8])>::new());
    }

    /// Truncated or lying buffers are refused, never read out of bounds.
    #[test]
    fn truncated_refused() {
        let full = serialize(&[(b"name", b"value")]);
        for cut in 1..full.len() - 1 {
            assert!(parse(&full[..cut]).is_none(), "cut at {cut}");
        }
        assert!(parse(&u32::MAX.to_le_bytes()).is_none());
    }

    proptest! {
        /// Arbitrary bytes never panic.
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }
    }
}
