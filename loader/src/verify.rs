//! `edge-hmac verify`: checks a request captured as raw HTTP/1.1 and says
//! which rule of the spec it fails, for debugging a client.

use std::path::PathBuf;

use edge_hmac_filter::config::DEFAULT_MAX_BODY_BYTES;
use edge_hmac_filter::scheme::{
    DEFAULT_CLOCK_SKEW_SECONDS, KeyUsed, RequestHead, SecretKey, Verifier, VerifierOptions,
};

use crate::error::{Error, Result, read_stdin};
use crate::keys::KeySource;
use crate::sign::{now, split_url};

/// Arguments of `edge-hmac verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// File with the raw request (request line, headers, blank line, body); - for standard input
    #[arg(default_value = "-")]
    pub input: String,
    /// Verifier clock as Unix time [default: now]
    #[arg(long, value_name = "SECONDS")]
    pub now: Option<u64>,
    /// Allowed clock skew in seconds
    #[arg(long, default_value_t = DEFAULT_CLOCK_SKEW_SECONDS)]
    pub clock_skew: u64,
    /// Refuse a request without x-crawbl-nonce
    #[arg(long)]
    pub require_nonce: bool,
    /// Largest accepted body
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: u64,
    /// Also accept the previous key from this environment variable (rotation)
    #[arg(long, value_name = "VAR")]
    pub previous_secret_env: Option<String>,
    /// Where the key comes from
    #[command(flatten)]
    pub key: KeySource,
}

/// A parsed raw HTTP/1.1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// Method.
    pub method: String,
    /// Request target as sent (path and query, or an absolute URL).
    pub target: String,
    /// Header fields in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// Parses a raw HTTP/1.1 request (CRLF or bare LF line ends).
pub fn parse_raw(raw: &[u8]) -> Result<RawRequest> {
    let bad = |why: &str| Error::Usage(format!("not a raw HTTP request: {why}"));
    let (head, rest) = split_head(raw).ok_or_else(|| bad("no blank line after the headers"))?;
    let head = std::str::from_utf8(head).map_err(|_| bad("headers are not UTF-8 text"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("the first line must be METHOD TARGET HTTP/1.1"));
    };
    if !version.starts_with("HTTP/") || method.is_empty() {
        return Err(bad("the first line must be METHOD TARGET HTTP/1.1"));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("header line without ':': {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().as_bytes().to_vec()));
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(n))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest).ok_or_else(|| bad("malformed chunked body"))?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad("content-length is not a number"))?;
        rest.get(..len)
            .ok_or_else(|| bad("body shorter than content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(RawRequest {
        method: method.into(),
        target: target.into(),
        headers,
        body,
    })
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    for (i, w) in raw.windows(2).enumerate() {
        if w == b"\n\n" {
            return Some((&raw[..i], &raw[i + 2..]));
        }
        if w == b"\n\r" && raw.get(i + 2) == Some(&b'\n') {
            return Some((&raw[..i], &raw[i + 3..]));
        }
    }
    None
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = raw.iter().position(|&b| b == b'\n')?;
        let size_line = std::str::from_utf8(&raw[..nl]).ok()?.trim();
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[nl + 1..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size..)?;
        raw = raw
            .strip_prefix(b"\r\n")
            .or_else(|| raw.strip_prefix(b"\n"))?;
    }
}

/// Runs `edge-hmac verify`: prints a report; refused requests exit 4.
pub async fn run(args: VerifyArgs) -> Result<()> {
    let raw = if args.input == "-" {
        read_stdin()?
    } else {
        let path = PathBuf::from(&args.input);
        std::fs::read(&path).map_err(|source| Error::Io { path, source })?
    };
    let req = parse_raw(&raw)?;
    let secret = args.key.resolve().await?;
    let usage = |e: edge_hmac_filter::scheme::SchemeError| Error::Usage(e.to_string());
    let current =
        SecretKey::new(secret.hmac_secret.expose().as_bytes(), "current").map_err(usage)?;
    let previous = match &args.previous_secret_env {
        None => None,
        Some(var) => {
            let v = std::env::var(var).map_err(|_| {
                Error::Usage(format!(
                    "environment variable {} is unset",
                    edge_hmac_filter::config::shown_name(var)
                ))
            })?;
            Some(SecretKey::new(v.as_bytes(), "previous").map_err(usage)?)
        }
    };
    let verifier = Verifier::new(
        &secret.environment,
        current,
        previous,
        VerifierOptions {
            clock_skew_seconds: args.clock_skew,
            require_nonce: args.require_nonce,
        },
    )
    .map_err(usage)?;

    // Origin-form target with Host, or absolute-form target.
    let (authority, path) = if req.target.starts_with('/') {
        let host = req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        (host, req.target.clone())
    } else {
        let u = split_url(&req.target)?;
        (u.authority, u.path)
    };
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":method", req.method.as_bytes()),
        (b":authority", authority.as_bytes()),
        (b":path", path.as_bytes()),
    ];
    pairs.extend(
        req.headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .map(|(n, v)| (n.as_bytes(), v.as_slice())),
    );
    let head = RequestHead::from_pairs(pairs);
    let now = args.now.unwrap_or_else(now);

    println!(
        "request:     {} {} {} ({} body bytes)",
        req.method,
        authority,
        path,
        req.body.len()
    );
    println!(
        "verifier:    environment {}, key {}, clock {now}, skew {} s",
        verifier.environment(),
        verifier.current_fingerprint(),
        args.clock_skew
    );
    if let Ok(sts) = verifier.string_to_sign(&head) {
        println!("string to sign (as the verifier computes it; compare with your client's):");
        for line in sts.split('\n') {
            println!("  | {line}");
        }
    }
    let outcome = verifier.verify_headers(&head, now).and_then(|ok| {
        let mut body = ok.body_verifier(args.max_body_bytes);
        body.update(&req.body)?;
        body.finish()?;
        Ok(ok.key)
    });
    match outcome {
        Ok(key) => {
            let which = match key {
                KeyUsed::Current => "current key",
                KeyUsed::Previous => "previous key",
            };
            println!(
                "result:      verified ({which}); a nonce, if any, was not checked against a replay cache"
            );
            Ok(())
        }
        Err(rejection) => {
            println!(
                "result:      refused, HTTP {}: {}",
                rejection.reason.status(),
                rejection
            );
            Err(Error::Refused(rejection.reason.code().into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw requests with CRLF or LF, content-length or chunked bodies.
    #[test]
    fn parses_raw_requests() {
        let r = parse_raw(b"POST /v1/x?y=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcdef")
            .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/v1/x?y=1");
        assert_eq!(r.body, b"abc");
        let r = parse_raw(
            b"PUT /c HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n3\nabc\n2;x=y\nde\n0\n\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_raw(b"GET /a HTTP/1.1\nX-A:  padded  \n\n").unwrap();
        assert_eq!(r.headers, vec![("X-A".to_string(), b"padded".to_vec())]);
        assert!(parse_raw(b"GET /a HTTP/1.1\nHost: h\n").is_err());
        assert!(parse_raw(b"nonsense\n\n").is_err());
    }
}
