//! Plugin configuration compile from arbitrary JSON and an arbitrary
//! environment: never panics, and no error message ever contains the
//! secret the environment holds, nor a long value of the input (what a
//! mistaken paste of a secret would look like; text that is the message's
//! own wording is told apart by changing it in the input).
#![no_main]

use arbitrary::Arbitrary;
use edge_hmac_core::config::{
    ConfigError, JSON_ERROR_KINDS, SHOWN_MAX_LEN, compile, json_error_fallback,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "FUZZSECRET0123456789ABCDEF0123456789ABCDEF";

#[derive(Arbitrary, Debug)]
struct Input {
    json: String,
    env: Vec<(String, String)>,
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

/// `text` with every ASCII letter and digit moved one step (a→b, z→a,
/// 9→0): the same shape, different words.
fn shifted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
            c => c,
        })
        .collect()
}

/// True when `head`, found in the error for `json`, is the error's own
/// fixed text rather than an echo of the input: the error for the same
/// input with `head` spelled differently still contains it. (The fuzzer
/// learns the messages' words and feeds them back.)
fn is_template_text(json: &str, head: &str, env: &impl Fn(&str) -> Option<String>) -> bool {
    let changed = json.replace(head, &shifted(head));
    compile(changed.as_bytes(), env)
        .err()
        .is_some_and(|e| e.to_string().contains(head))
}

/// True when `msg` is exactly the error that shows only a JSON error's
/// kind and position ([`json_error_fallback`]).
fn is_fallback(msg: &str) -> bool {
    let Some((_, rest)) = msg.split_once(" error at line ") else {
        return false;
    };
    let mut words = rest.split(' ');
    let (Some(line), Some("column"), Some(column)) = (words.next(), words.next(), words.next())
    else {
        return false;
    };
    let (Ok(line), Ok(column)) = (line.parse(), column.parse()) else {
        return false;
    };
    JSON_ERROR_KINDS
        .iter()
        .any(|k| ConfigError::Json(json_error_fallback(k, line, column)).to_string() == msg)
}

fuzz_target!(|input: Input| {
    let lookup = |name: &str| {
        if name == "HMAC_SECRET" {
            return Some(SECRET.to_owned());
        }
        input
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    match compile(input.json.as_bytes(), lookup) {
        Ok(config) => {
            let summary = config.summary();
            assert!(!summary.contains(SECRET), "the secret is in the summary");
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(!msg.contains(SECRET), "the secret is in an error");
            // An environment value is echoed when it is in this message
            // but not in the one the same JSON gives with no environment
            // (serde's own text may happen to contain it).
            let baseline = compile(input.json.as_bytes(), |name| {
                (name == "HMAC_SECRET").then(|| SECRET.to_owned())
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            for (_, v) in &input.env {
                if v.len() > SHOWN_MAX_LEN && !baseline.contains(v.as_str()) {
                    assert!(
                        !msg.contains(v.as_str()),
                        "an environment value is in an error"
                    );
                }
            }
            // The message that shows only the error's kind and position is
            // fixed wording throughout: nothing in it comes from the input
            // (input that spells out that wording matches it by design).
            if is_fallback(&msg) {
                return;
            }
            // No string of more than SHOWN_MAX_LEN bytes from the input is
            // echoed: neither a decoded key or value, nor a raw piece of
            // the text (where it has no escapes, whose spelling changes).
            let mut long: Vec<String> = Vec::new();
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&input.json) {
                collect_strings(&value, &mut long);
            }
            for piece in input.json.split(['"', '`']) {
                if !piece.contains('\\') {
                    long.push(piece.to_owned());
                }
            }
            for s in long.iter().filter(|s| s.len() > SHOWN_MAX_LEN) {
                let cut = (SHOWN_MAX_LEN + 1..=s.len())
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap_or(s.len());
                let head = &s[..cut];
                if msg.contains(head) && !is_template_text(&input.json, head, &lookup) {
                    panic!("a long configuration value is echoed: {msg}");
                }
            }
        }
    }
});
