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

/// Asserts that none of `secrets` occurs in `text` (logs, command output).
#[track_caller]
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a secret appears in output ({} bytes of output checked)",
            text.len()
        );
    }
}
