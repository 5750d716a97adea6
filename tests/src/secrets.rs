//! Secrets generated at test time (never real credentials), and the one
//! leak scan of the suite.
//!
//! Every key made by [`secret`] (and every key the CLI generates for a test,
//! through [`register`]) is remembered for the life of the test process. The
//! harness scans what each component it started wrote against all of them,
//! without the test asking: Envoy's log and `/config_dump` when an [`Envoy`]
//! is dropped, the CLI's output in [`crate::cli`], rendered files in
//! [`crate::kit::render_cli`], moto's log after each CLI run, and Envoy
//! Gateway's, its Envoys', ESO's and kube-apiserver's logs when an
//! [`EnvoyGateway`] is dropped. A new test gets the scan by using the harness.
//!
//! [`Envoy`]: crate::envoy::Envoy
//! [`EnvoyGateway`]: crate::eg::EnvoyGateway

use std::sync::Mutex;

static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remembers `secret` for the suite-wide scan (keys not made by [`secret`]).
pub fn register(secret: &str) {
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == secret) {
        known.push(secret.to_owned());
    }
}

/// Every key this test process has generated or registered.
pub fn known() -> Vec<String> {
    KNOWN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Asserts that no key this process knows appears in `text` (in any of the
/// forms [`assert_no_secret`] covers); `what` names the output in the failure.
/// Skipped while the thread is already panicking (a failing test's dump).
#[track_caller]
pub fn assert_no_known_secret(what: &str, text: &str) {
    assert_no_known_secret_except(what, text, &[]);
}

/// Like [`assert_no_known_secret`], except for keys in `allowed` (ones the
/// test itself wrote into this input, such as a misplaced key it is testing).
#[track_caller]
pub fn assert_no_known_secret_except(what: &str, text: &str, allowed: &[String]) {
    if std::thread::panicking() {
        return;
    }
    let known: Vec<String> = known()
        .into_iter()
        .filter(|k| !allowed.contains(k))
        .collect();
    if let Some(how) = find_secret(text, &known.iter().map(String::as_str).collect::<Vec<_>>()) {
        panic!(
            "a test secret appears in {what} ({how}; {} bytes checked)",
            text.len()
        );
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("OS randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh 53-character HMAC secret, remembered for the suite-wide scan.
pub fn secret() -> String {
    let s = format!("test-{}", random_hex(24));
    register(&s);
    s
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
    if let Some(how) = find_secret(text, secrets) {
        panic!(
            "a secret appears in output ({how}; {} bytes of output checked)",
            text.len()
        );
    }
}

/// How the first of `secrets` found in `text` is written there.
fn find_secret(text: &str, secrets: &[&str]) -> Option<&'static str> {
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
            if text.contains(&form) {
                return Some(how);
            }
        }
    }
    None
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

    /// The suite-wide scan knows every key `secret()` made, and lets a test
    /// exempt the one it wrote into an input on purpose.
    #[test]
    fn the_suite_scan_knows_every_generated_key() {
        let a = secret();
        let b = secret();
        let text = format!("{a} and {b}");
        assert!(std::panic::catch_unwind(|| assert_no_known_secret("t", &text)).is_err());
        assert!(
            std::panic::catch_unwind(|| assert_no_known_secret_except(
                "t",
                &text,
                std::slice::from_ref(&a)
            ))
            .is_err()
        );
        assert_no_known_secret_except("t", &text, &[a.clone(), b.clone()]);
        assert_no_known_secret("t", "clean");
    }
}
