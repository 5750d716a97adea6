//! Test peer: signs one request with the `httpsig` / `httpsig-hyper` crates
//! (RFC 9421, hmac-sha256), as a Rust client team would, and prints the
//! headers to send. The end-to-end tests (`tests/e2e/rfc9421.rs`) send them
//! through Envoy.
//!
//! Usage: `edge-hmac-rfc9421-rust-peer < spec.json` with
//!   `{"secret", "keyid", "method", "url", "headers": {..}, "body": str|null,
//!     "created": unix, "nonce": str|null, "tag": str, "mode": str|null}`
//! Prints `{"headers": [[name, value], ...]}`.
//!
//! `mode` (absent: our profile) reproduces a default of the library that the
//! profile refuses, and prints the headers the library made with it:
//! `random_nonce` (`set_random_nonce()`: base64 with `=`), `key_info`
//! (`set_key_info()`: the library's own keyid, base64 of SHA-256 of the key),
//! `created_only` (a bare `HttpSignatureParams::try_new`: `created` and
//! nothing else), `default_port` (the URL's port replaced by an explicit
//! `:80`) and `origin_form` (an origin-form URI and a `Host` header).
//!
//! The part between the `cookbook:` markers is included verbatim in
//! `docs/clients.md`; the harness (stdin, modes, overrides) stays outside.

use std::io::Read;

use serde::Deserialize;
use serde_json::{Map, Value, json};

// cookbook:start rust
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use httpsig_hyper::prelude::message_component::{HttpMessageComponentId, HttpMessageComponentName};
use httpsig_hyper::prelude::{AlgorithmName, HttpSignatureParams, SharedKey};
use httpsig_hyper::{
    ContentDigestType, HyperDigestError, MessageSignatureReq, RequestContentDigest,
};
use sha2::{Digest, Sha256};

/// An error while signing.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Signs requests for edge-hmac's RFC 9421 `hmac-sha256` profile
/// (docs/signature-rfc9421.md) with `httpsig-hyper`.
pub struct Signer {
    key: SharedKey,
    keyid: String,
    environment: String,
}

impl Signer {
    /// A signer for the shared secret `secret` and the environment
    /// `environment` (the `tag`: `dev`, `prod`, …).
    pub fn new(secret: &str, environment: &str) -> Signer {
        // keyid: the key's fingerprint, the first 8 hex digits of SHA-256.
        let keyid = hex::encode(&Sha256::digest(secret.as_bytes())[..4]);
        Signer {
            key: SharedKey::HmacSha256(secret.as_bytes().to_vec()),
            keyid,
            environment: environment.to_owned(),
        }
    }

    /// A signer for the secret in the environment variable `var`, e.g.
    /// `Signer::from_env("EDGE_HMAC_KEY", "prod")`.
    pub fn from_env(var: &str, environment: &str) -> Result<Signer, std::env::VarError> {
        Ok(Signer::new(&std::env::var(var)?, environment))
    }

    /// The profile's parameters: `@method @authority @path @query`, then
    /// `content-digest` when there is a body, then the header fields
    /// `fields`; `created` (Unix seconds; `None`: now), `keyid`, `alg`,
    /// `tag` and `nonce` (16–128 characters of `A-Z a-z 0-9 . _ ~ -`;
    /// `None`: 32 fresh random hex digits).
    pub fn params(
        &self,
        fields: &[&str],
        has_body: bool,
        created: Option<u64>,
        nonce: Option<&str>,
    ) -> Result<HttpSignatureParams, Error> {
        let digest = if has_body {
            &["content-digest"][..]
        } else {
            &[]
        };
        let components = ["@method", "@authority", "@path", "@query"]
            .iter()
            .chain(digest)
            .chain(fields)
            .map(|c| HttpMessageComponentId::try_from(*c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut params = HttpSignatureParams::try_new(&components)?;
        if let Some(created) = created {
            params.set_created(created);
        }
        let nonce = match nonce {
            Some(nonce) => nonce.to_owned(),
            None => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
                hex::encode(bytes)
            }
        };
        params
            .set_nonce(&nonce)
            .set_keyid(&self.keyid)
            .set_alg(&AlgorithmName::HmacSha256)
            .set_tag(&self.environment);
        Ok(params)
    }

    /// Signs `req` (an absolute URI, `https://api.example.com/v1/orders`)
    /// under `params`: adds `Content-Digest` (sha-256) when they cover it,
    /// then `Signature-Input` and `Signature` under the label `sig1`.
    pub async fn sign(
        &self,
        req: Request<Full<Bytes>>,
        params: &HttpSignatureParams,
    ) -> Result<Request<BoxBody<Bytes, HyperDigestError>>, Error> {
        let covers_digest = params.covered_components.iter().any(
            |c| matches!(&c.name, HttpMessageComponentName::HttpField(n) if n == "content-digest"),
        );
        let mut req = if covers_digest {
            req.set_content_digest(&ContentDigestType::Sha256).await?
        } else {
            req.map(|body| body.map_err(|never| match never {}).boxed())
        };
        req.set_message_signature(params, &self.key, Some("sig1"))
            .await?;
        Ok(req)
    }
}
// cookbook:end rust

/// What the test asks for (see the crate's doc).
#[derive(Deserialize)]
struct Spec {
    secret: String,
    keyid: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Map<String, Value>,
    body: Option<String>,
    created: u64,
    nonce: Option<String>,
    tag: String,
    mode: Option<String>,
}

/// `url` with its port replaced by `:80`, as a client writes
/// `http://host:80/…` (the library keeps the port in `@authority`).
fn with_port_80(url: &str) -> Result<String, Error> {
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or("the URL has no host")?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(format!("http://{host}:80{path}"))
}

async fn run(spec: Spec) -> Result<Value, Error> {
    let mode = spec.mode.as_deref().unwrap_or("profile");
    let signer = Signer::new(&spec.secret, &spec.tag);
    let fields: Vec<&str> = spec.headers.keys().map(String::as_str).collect();
    let has_body = spec.body.is_some();
    let mut builder = Request::builder().method(spec.method.as_str());
    builder = match mode {
        "default_port" => builder.uri(with_port_80(&spec.url)?),
        "origin_form" => {
            let uri: http::Uri = spec.url.parse()?;
            let authority = uri.authority().ok_or("the URL has no authority")?;
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            builder.uri(path).header("host", authority.as_str())
        }
        _ => builder.uri(spec.url.as_str()),
    };
    for (name, value) in &spec.headers {
        builder = builder.header(
            name.as_str(),
            value.as_str().ok_or("header values are strings")?,
        );
    }
    let req = builder.body(Full::new(Bytes::from(spec.body.unwrap_or_default())))?;

    let mut params = signer.params(&fields, has_body, Some(spec.created), spec.nonce.as_deref())?;
    // The test's override: a keyid that names another key (signed with this one).
    if spec.keyid != signer.keyid {
        params.set_keyid(&spec.keyid);
    }
    match mode {
        "profile" | "default_port" | "origin_form" => {}
        "random_nonce" => {
            params.set_random_nonce();
        }
        "key_info" => {
            params.set_key_info(&signer.key);
        }
        "created_only" => {
            params = HttpSignatureParams::try_new(&params.covered_components)?;
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    let req = signer.sign(req, &params).await?;
    let headers = req
        .headers()
        .iter()
        .filter(|(name, _)| *name != http::header::HOST)
        .map(|(name, value)| Ok(json!([name.as_str(), value.to_str()?])))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(json!({ "headers": headers }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let spec: Spec = serde_json::from_str(&input)?;
    println!("{}", run(spec).await?);
    Ok(())
}
