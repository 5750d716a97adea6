//! Secrets generated at test time (never real credentials).

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("OS randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh 48-character HMAC secret.
pub fn secret() -> String {
    format!("test-{}", random_hex(24))
}

/// A fresh nonce.
pub fn nonce() -> String {
    random_hex(16)
}

/// Asserts that none of `secrets` occurs in `text` (logs, command output,
/// rendered files, config dumps) — neither as written nor in the encodings
/// a leak usually takes: hex of its bytes and base64 (standard and URL-safe,
/// with or without padding; the form a Kubernetes Secret's `data` uses).
#[track_caller]
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for secret in secrets {
        let bytes = secret.as_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let forms = [
            ("as written", (*secret).to_owned()),
            ("hex", hex.clone()),
            ("HEX", hex.to_uppercase()),
            ("base64", STANDARD.encode(bytes)),
            ("base64 without padding", STANDARD_NO_PAD.encode(bytes)),
            ("base64url", URL_SAFE.encode(bytes)),
            ("base64url without padding", URL_SAFE_NO_PAD.encode(bytes)),
        ];
        for (how, form) in forms {
            assert!(
                !text.contains(&form),
                "a secret appears in output ({how}; {} bytes of output checked)",
                text.len()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan finds a secret in each encoding it claims to cover, and
    /// passes text without it.
    #[test]
    fn the_scan_sees_encoded_secrets() {
        use base64::Engine as _;
        let s = secret();
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        for leak in [s.clone(), hex.to_uppercase(), b64] {
            let text = format!("log line: {leak}\n");
            assert!(std::panic::catch_unwind(|| assert_no_secret(&text, &[&s])).is_err());
        }
        assert_no_secret("nothing here", &[&s]);
    }
}
