//! The CLI's parser of the Secrets Manager value (`{"hmac_secret": …,
//! "environment": …}`) on arbitrary text and an arbitrary expected
//! environment (input: `expected\ntext`; an empty first line expects none): never panics; what it accepts meets the rules (key of 32
//! bytes or more, a valid environment equal to the expected one); no error
//! and no `Debug` ever contains the key or any other long string of the input.
#![no_main]

use edge_hmac::secret::EdgeSecret;
use edge_hmac_core::config::SHOWN_MAX_LEN;
use edge_hmac_core::scheme::{MIN_SECRET_BYTES, validate_environment};
use libfuzzer_sys::fuzz_target;

struct Input<'a> {
    text: &'a str,
    expected: Option<&'a str>,
}

fn input(data: &[u8]) -> Option<Input<'_>> {
    let data = std::str::from_utf8(data).ok()?;
    let (expected, text) = data.split_once('\n')?;
    Some(Input {
        text,
        expected: (!expected.is_empty()).then_some(expected),
    })
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                collect_strings(x, out);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else {
        return;
    };
    const ID: &str = "crawbl/fuzz/edge/hmac";
    let mut strings = Vec::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(input.text) {
        collect_strings(&v, &mut strings);
    }
    // Long strings that are not the id or the expected environment (the
    // caller's own input, which an error may name).
    let long: Vec<&String> = strings
        .iter()
        .filter(|s| s.len() > SHOWN_MAX_LEN && !ID.contains(s.as_str()))
        .filter(|s| input.expected != Some(s.as_str()))
        .collect();
    match EdgeSecret::parse(ID, input.text, input.expected) {
        Ok(secret) => {
            assert!(secret.len() >= MIN_SECRET_BYTES, "a short key was accepted");
            assert!(validate_environment(&secret.environment).is_ok());
            if let Some(expected) = input.expected {
                assert_eq!(secret.environment, expected);
            }
            let debug = format!("{secret:?}");
            assert!(
                !debug.contains(secret.hmac_secret.expose()),
                "the key is in Debug"
            );
        }
        Err(err) => {
            let msg = err.to_string();
            for s in long {
                assert!(
                    !msg.contains(s.as_str()),
                    "a long input string is in an error: {msg}"
                );
            }
        }
    }
});
