//! `edge-hmac sign`: the signature headers for a request (v1 `x-crawbl-*`, or
//! RFC 9421 `Signature-Input` / `Signature` / `Content-Digest`), or a
//! complete curl command, made with the same core the filter verifies with.

use std::time::{SystemTime, UNIX_EPOCH};

use edge_hmac_core::scheme::rfc9421::{Rfc9421Request, content_digest_header};
use edge_hmac_core::scheme::{Format, Payload, SecretKey, SignRequest, Signer, TagEncoding};

use crate::error::{Error, Result, read_stdin};
use crate::keys::KeySource;
use crate::secret::{EdgeSecret, random_hex};

/// Arguments of `edge-hmac sign`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// HTTP method, sent and signed as given
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Full URL as the client sends it; authority and path+query are signed exactly as they go on the wire
    #[arg(long)]
    pub url: String,
    /// Body: @FILE, - for standard input, or the literal text
    #[arg(short = 'd', long, value_name = "DATA")]
    pub data: Option<String>,
    /// Signature format: v1 (x-crawbl-* headers, docs/signature-v1.md) or rfc9421 (Signature-Input, Signature and Content-Digest, docs/signature-rfc9421.md; the filter must list rfc9421 in its formats)
    #[arg(long, value_name = "FORMAT", default_value = "v1", value_parser = parse_format)]
    pub format: Format,
    /// Add a fresh random nonce (v1: x-crawbl-nonce; rfc9421: the nonce parameter)
    #[arg(long)]
    pub nonce: bool,
    /// Leave the body unsigned so it streams unchecked (v1: x-crawbl-content-sha256: UNSIGNED-PAYLOAD; rfc9421: no content-digest); accepted only on the filter's unsigned_payload_paths (401 malformed_signature elsewhere)
    #[arg(long)]
    pub unsigned_payload: bool,
    /// Write the v1 tag in base64 instead of hex (v1 only)
    #[arg(long)]
    pub base64: bool,
    /// rfc9421: also send and cover this header ("name: value"); repeatable
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Unix time to sign [default: now]
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<u64>,
    /// Print a complete curl command instead of the headers
    #[arg(long)]
    pub curl: bool,
    /// Where the key comes from
    #[command(flatten)]
    pub key: KeySource,
}

/// Parses a `--format` value.
pub fn parse_format(name: &str) -> std::result::Result<Format, String> {
    Format::from_name(name).ok_or_else(|| format!("unknown format {name:?}: use v1 or rfc9421"))
}

/// A URL split the way a client puts it on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireUrl {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and port as sent in `Host` (a default port is left out, as
    /// curl and browsers do).
    pub authority: String,
    /// Path and query, verbatim (`/` when the URL has none).
    pub path: String,
}

/// Splits `url` without normalizing anything but a default port.
pub fn split_url(url: &str) -> Result<WireUrl> {
    let bad = |why: &str| Error::Usage(format!("--url {url:?}: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected http://host/path or https://host/path"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad("only http and https URLs can be signed"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    let mut path = rest[end..].split('#').next().unwrap_or("").to_owned();
    if path.is_empty() {
        path = "/".into();
    } else if path.starts_with('?') {
        path.insert(0, '/');
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority
        .strip_suffix(default_port)
        .filter(|a| !a.ends_with(':'))
        .unwrap_or(authority)
        .to_owned();
    Ok(WireUrl {
        scheme,
        authority,
        path,
    })
}

/// The body bytes and how curl should send them.
pub(crate) struct BodyInput {
    pub(crate) bytes: Vec<u8>,
    curl_arg: Option<String>,
}

pub(crate) fn read_body(data: Option<&str>) -> Result<BodyInput> {
    match data {
        None => Ok(BodyInput {
            bytes: vec![],
            curl_arg: None,
        }),
        Some("-") => {
            let bytes = read_stdin()?;
            // curl cannot re-read our stdin: embed text bodies.
            let curl_arg = String::from_utf8(bytes.clone())
                .ok()
                .map(|t| shell_quote(&t));
            Ok(BodyInput { bytes, curl_arg })
        }
        Some(d) if d.starts_with('@') => {
            let path = &d[1..];
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                path: path.into(),
                source,
            })?;
            Ok(BodyInput {
                bytes,
                curl_arg: Some(shell_quote(d)),
            })
        }
        Some(literal) => Ok(BodyInput {
            bytes: literal.as_bytes().to_vec(),
            curl_arg: Some(shell_quote(literal)),
        }),
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A request to sign again and again with one key: everything but the time
/// and the nonce is fixed (`sign` signs it once, `load` once per request).
#[derive(Debug, Clone)]
pub struct SignPlan {
    signer: Signer,
    format: Format,
    method: String,
    url: WireUrl,
    /// v1: what `x-crawbl-content-sha256` says.
    payload: Option<Payload>,
    /// RFC 9421: the `Content-Digest` value, when the body is covered.
    content_digest: Option<String>,
    /// RFC 9421: further covered fields, sent as given.
    fields: Vec<(String, String)>,
    encoding: TagEncoding,
}

/// What a [`SignPlan`] signs besides the method and URL.
#[derive(Debug, Clone, Default)]
pub struct SignOptions<'a> {
    /// The body (empty: none).
    pub body: &'a [u8],
    /// Leave the body unsigned (v1 `UNSIGNED-PAYLOAD`; RFC 9421 without
    /// `content-digest`).
    pub unsigned_payload: bool,
    /// RFC 9421: headers to send and cover (lowercase names).
    pub fields: Vec<(String, String)>,
    /// v1: write the tag in base64.
    pub base64: bool,
}

impl SignPlan {
    /// A plan for `method` `url` in `format` with `secret`; refuses options
    /// the format has no place for.
    pub fn new(
        secret: &EdgeSecret,
        format: Format,
        method: &str,
        url: WireUrl,
        options: SignOptions<'_>,
    ) -> Result<Self> {
        let key = SecretKey::new(secret.hmac_secret.expose().as_bytes(), "current")
            .map_err(|e| Error::Usage(e.to_string()))?;
        let signer =
            Signer::new(key, &secret.environment).map_err(|e| Error::Usage(e.to_string()))?;
        let (payload, content_digest) = match format {
            Format::V1 => {
                if !options.fields.is_empty() {
                    return Err(Error::Usage(
                        "--header is for --format rfc9421 (v1 covers no other header)".into(),
                    ));
                }
                let payload = if options.unsigned_payload {
                    Some(Payload::Unsigned)
                } else {
                    Payload::of(options.body)
                };
                (payload, None)
            }
            Format::Rfc9421 => {
                if options.base64 {
                    return Err(Error::Usage(
                        "--base64 is for --format v1 (RFC 9421 signatures are always base64)"
                            .into(),
                    ));
                }
                // A body is covered by Content-Digest unless left unsigned.
                let covered = !options.unsigned_payload && !options.body.is_empty();
                (None, covered.then(|| content_digest_header(options.body)))
            }
        };
        Ok(Self {
            signer,
            format,
            method: method.to_owned(),
            url,
            payload,
            content_digest,
            fields: options.fields,
            encoding: if options.base64 {
                TagEncoding::Base64
            } else {
                TagEncoding::Hex
            },
        })
    }

    /// The headers to send (RFC 9421: the covered fields first) for a
    /// request signed at `timestamp` with `nonce`.
    pub fn headers(&self, timestamp: u64, nonce: Option<&str>) -> Result<Vec<(String, String)>> {
        let owned = |pairs: Vec<(&str, &str)>| {
            pairs
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect::<Vec<_>>()
        };
        match self.format {
            Format::V1 => {
                let signed = self
                    .signer
                    .sign(
                        &SignRequest {
                            method: &self.method,
                            authority: &self.url.authority,
                            path: &self.url.path,
                            timestamp,
                            nonce,
                            payload: self.payload,
                        },
                        self.encoding,
                    )
                    .map_err(|e| Error::Usage(e.to_string()))?;
                Ok(owned(signed.pairs()))
            }
            Format::Rfc9421 => {
                let fields: Vec<(&str, &str)> = self
                    .fields
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let signed = self
                    .signer
                    .sign_rfc9421(&Rfc9421Request {
                        method: &self.method,
                        scheme: &self.url.scheme,
                        authority: &self.url.authority,
                        path: &self.url.path,
                        created: timestamp,
                        expires: None,
                        nonce,
                        content_digest: self.content_digest.as_deref(),
                        fields: &fields,
                    })
                    .map_err(|e| Error::Usage(e.to_string()))?;
                let mut out = self.fields.clone();
                out.extend(owned(signed.pairs()));
                Ok(out)
            }
        }
    }
}

/// Splits a `--header "name: value"` argument; the name is lowercased (RFC
/// 9421 covers fields by lowercase name).
pub fn split_header(raw: &str) -> Result<(String, String)> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| Error::Usage(format!("--header {raw:?}: expected \"name: value\"")))?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name.starts_with(':') {
        return Err(Error::Usage(format!("--header {raw:?}: no header name")));
    }
    Ok((name, value.trim().to_owned()))
}

/// A curl command sending the signed request with `headers`.
pub fn curl_command(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let mut cmd = vec!["curl".to_owned(), "-sS".into(), "--path-as-is".into()];
    if method != "GET" || body.is_some() {
        cmd.push("-X".into());
        cmd.push(shell_quote(method));
    }
    for (name, value) in headers {
        cmd.push("-H".into());
        cmd.push(shell_quote(&format!("{name}: {value}")));
    }
    if let Some(b) = body {
        cmd.push("--data-binary".into());
        cmd.push(b.to_owned());
    }
    cmd.push(shell_quote(url));
    cmd.join(" ")
}

/// Runs `edge-hmac sign`.
pub async fn run(args: SignArgs) -> Result<()> {
    let url = split_url(&args.url)?;
    for warning in wire_warnings(&args.method, &url.path) {
        eprintln!("edge-hmac: warning: {warning}");
    }
    let body = read_body(args.data.as_deref())?;
    if args.curl && !body.bytes.is_empty() && body.curl_arg.is_none() {
        return Err(Error::Usage(
            "a binary body from standard input cannot go into a curl command: use --data @FILE"
                .into(),
        ));
    }
    let secret = args.key.resolve().await?;
    let timestamp = args.timestamp.unwrap_or_else(now);
    let nonce = if args.nonce {
        Some(random_hex(16).map_err(|e| Error::Other(format!("no OS randomness: {e}")))?)
    } else {
        None
    };
    let fields = args
        .headers
        .iter()
        .map(|h| split_header(h))
        .collect::<Result<Vec<_>>>()?;
    let plan = SignPlan::new(
        &secret,
        args.format,
        &args.method,
        url,
        SignOptions {
            body: &body.bytes,
            unsigned_payload: args.unsigned_payload,
            fields,
            base64: args.base64,
        },
    )?;
    let headers = plan.headers(timestamp, nonce.as_deref())?;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if args.curl {
        println!(
            "{}",
            curl_command(&args.method, &args.url, &pairs, body.curl_arg.as_deref())
        );
    } else {
        for (name, value) in pairs {
            println!("{name}: {value}");
        }
    }
    Ok(())
}

/// What is wrong with signing `method` and `path` as given: a path Envoy
/// rewrites before the verifier sees it (docs/signature-v1.md §7), or a
/// method not in upper case. The signature is still made, for the bytes
/// given (a test of the refusal may want exactly that).
pub fn wire_warnings(method: &str, path: &str) -> Vec<String> {
    let mut out: Vec<String> = edge_hmac_core::paths::normal_form_issues(path.as_bytes())
        .into_iter()
        .map(|issue| {
            format!(
                "the path has {issue}: the verifier sees the path after Envoy's normalization, so this signature will not match; sign the path in normal form (docs/signature-v1.md section 7)"
            )
        })
        .collect();
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        out.push(format!(
            "method {method:?} is not upper case: methods are case-sensitive and signed as sent; servers expect {:?}",
            method.to_ascii_uppercase()
        ));
    }
    out
}

/// Unix time now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URLs are split as they go on the wire: verbatim path and query,
    /// default port dropped like curl does, fragment never sent.
    #[test]
    fn split_urls() {
        let u = split_url("https://API.example.test:443/v1/a%2Fb/../c?q=1&r=%C3%A9#frag").unwrap();
        assert_eq!(u.authority, "API.example.test");
        assert_eq!(u.path, "/v1/a%2Fb/../c?q=1&r=%C3%A9");
        assert_eq!(split_url("http://h:8080").unwrap().path, "/");
        assert_eq!(split_url("http://h:8080").unwrap().authority, "h:8080");
        assert_eq!(split_url("http://h?x=1").unwrap().path, "/?x=1");
        assert_eq!(split_url("http://h:443/").unwrap().authority, "h:443");
        assert!(split_url("ftp://h/").is_err());
        assert!(split_url("h/x").is_err());
        assert!(split_url("http://u:p@h/").is_err());
    }

    /// Shell quoting survives quotes and spaces.
    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
