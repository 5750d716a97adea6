//! `edge-hmac verify`: checks a request captured as raw HTTP/1.1 (v1 or RFC
//! 9421 signed) and says which rule of the spec it fails, for debugging a
//! client.

use std::path::PathBuf;

use edge_hmac_core::config::DEFAULT_MAX_BODY_BYTES;
use edge_hmac_core::scheme::{
    DEFAULT_CLOCK_SKEW_SECONDS, EMPTY_SHA256_HEX, Format, Formats, HeaderValue, Reject,
    RequestHead, SecretKey, Verifier, VerifierOptions,
};

use crate::error::{Error, Result, read_stdin};
use crate::keys::KeySource;
use crate::raw::{RawRequest, parse_raw};
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
    /// Refuse a request without a nonce (v1 x-crawbl-nonce, rfc9421 nonce parameter)
    #[arg(long)]
    pub require_nonce: bool,
    /// Formats accepted, as the filter's formats option (comma-separated)
    #[arg(long = "formats", value_name = "FORMAT", value_delimiter = ',', default_value = "v1,rfc9421", value_parser = crate::sign::parse_format)]
    pub formats: Vec<Format>,
    /// Scheme the request arrived with (decides the default port RFC 9421 drops from @authority) [default: the URL's, for an absolute target]
    #[arg(long, value_name = "SCHEME")]
    pub scheme: Option<String>,
    /// Treat the request's path as one of the filter's unsigned_payload_paths (accept x-crawbl-content-sha256: UNSIGNED-PAYLOAD; the body is then not checked)
    #[arg(long)]
    pub unsigned_payload_path: bool,
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
    let usage = |e: edge_hmac_core::scheme::SchemeError| Error::Usage(e.to_string());
    let current =
        SecretKey::new(secret.hmac_secret.expose().as_bytes(), "current").map_err(usage)?;
    let previous = match &args.previous_secret_env {
        None => None,
        Some(var) => {
            let v = std::env::var(var).map_err(|_| {
                Error::Usage(format!(
                    "environment variable {} is unset",
                    edge_hmac_core::config::shown_name(var)
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
            formats: Formats::of(args.formats.iter().copied()),
        },
    )
    .map_err(usage)?;

    // Origin-form target with Host, or absolute-form target.
    let (authority, path, url_scheme) = if req.target.starts_with('/') {
        let host = req.header("host").unwrap_or_default();
        (host, req.target.clone(), None)
    } else {
        let u = split_url(&req.target)?;
        (u.authority, u.path, Some(u.scheme))
    };
    let scheme = args.scheme.clone().or(url_scheme).unwrap_or_default();
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":method", req.method.as_bytes()),
        (b":authority", authority.as_bytes()),
        (b":path", path.as_bytes()),
    ];
    if !scheme.is_empty() {
        pairs.push((b":scheme", scheme.as_bytes()));
    }
    pairs.extend(
        req.headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
            .map(|(n, v)| (n.as_bytes(), v.as_slice())),
    );
    let head = RequestHead::from_pairs(&pairs);
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
        if args.formats.contains(&Format::Rfc9421) && head.has_rfc9421() {
            println!(
                "signature base (RFC 9421, as the verifier computes it; compare with your client's):"
            );
        } else {
            println!("string to sign (as the verifier computes it; compare with your client's):");
        }
        for line in sts.split('\n') {
            println!("  | {line}");
        }
    }
    let outcome = verifier
        .verify_headers_on(&head, now, args.unsigned_payload_path)
        .and_then(|ok| {
            // None: UNSIGNED-PAYLOAD, the body is not covered.
            if let Some(mut body) = ok.body_verifier(args.max_body_bytes) {
                body.update(&req.body)?;
                body.finish()?;
            }
            Ok((ok.format, ok.key))
        });
    match outcome {
        Ok((format, key)) => {
            println!(
                "result:      verified ({format}, {} key); a nonce, if any, was not checked against a replay cache",
                key.slot()
            );
            Ok(())
        }
        Err(rejection) => {
            println!(
                "result:      refused, HTTP {}: {}",
                rejection.reason.status(),
                rejection
            );
            if rejection.reason == Reject::ContentMismatch {
                print_body_mismatch(&req, &head);
            }
            Err(Error::Refused(rejection.reason.code().into()))
        }
    }
}

/// What `verify` read as the body and what the request signed, when they
/// differ: the hashes, the length and how the body was delimited.
fn print_body_mismatch(req: &RawRequest, head: &RequestHead<'_>) {
    let sha = edge_hmac_core::scheme::sha256(&req.body);
    println!(
        "body read:   {} bytes, delimited by {}",
        req.body.len(),
        req.framing
    );
    println!("  sha-256 computed: {} (hex)", hex::encode(sha));
    if let HeaderValue::One(v) = head.content_sha256 {
        println!(
            "  sha-256 signed:   {} (x-crawbl-content-sha256)",
            String::from_utf8_lossy(v)
        );
    } else if head.has_rfc9421() {
        if let Some(d) = head.field_value(b"content-digest") {
            println!(
                "  computed as content-digest: {}",
                edge_hmac_core::scheme::rfc9421::content_digest_header(&req.body)
            );
            println!(
                "  signed content-digest:      {}",
                String::from_utf8_lossy(&d)
            );
        } else {
            println!("  signed: no content-digest (an empty body)");
        }
    } else {
        println!(
            "  sha-256 signed:   {EMPTY_SHA256_HEX} (no x-crawbl-content-sha256: an empty body)"
        );
    }
    if req.body.ends_with(b"\n") {
        println!(
            "  hint: the body read ends with a newline; if your client signed it without one (a file saved by an editor, `echo`), send exactly the bytes you signed (`printf`, curl --data-binary)"
        );
    } else {
        println!(
            "  hint: sign exactly the bytes sent: a trailing newline, a re-encoded body (gzip, JSON re-serialized) or a different content-length changes the hash"
        );
    }
}
