//! Plugin configuration: JSON → validated → compiled once into an immutable
//! [`FilterConfig`] that every request shares. Any problem is an error, so
//! `on_configure` fails and Envoy refuses the configuration (fail closed).

use core::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use crate::paths::PathMatch;
use crate::replay::{MAX_ENTRIES_LIMIT, MIN_ENTRIES, ReplayCache};
use crate::scheme::{
    DEFAULT_CLOCK_SKEW_SECONDS, Format, Formats, SchemeError, SecretKey, Verifier, VerifierOptions,
    validate_environment,
};
use crate::store::{MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, StoreConfigError};
pub use crate::store::{NonceStore, NonceStoreOptions, OnUnavailable};

/// Default for `hmac_secret_env`.
pub const DEFAULT_SECRET_ENV: &str = "HMAC_SECRET";
/// Default for `hmac_secret_previous_env`.
pub const DEFAULT_SECRET_PREVIOUS_ENV: &str = "HMAC_SECRET_PREVIOUS";
/// Default for `hmac_secret_pending_env`.
pub const DEFAULT_SECRET_PENDING_ENV: &str = "HMAC_SECRET_PENDING";
/// Default for `environment_env`.
pub const DEFAULT_ENVIRONMENT_ENV: &str = "HMAC_ENVIRONMENT";
/// Default for `max_body_bytes` (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Default for `nonce_cache_max_entries`.
pub const DEFAULT_NONCE_CACHE_MAX_ENTRIES: u64 = 100_000;
/// Largest accepted `clock_skew_seconds`.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 3600;
/// Largest accepted `max_body_bytes` (64 MiB: Envoy buffers the whole body).
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;
/// Largest accepted `nonce_ttl_seconds`.
pub const MAX_NONCE_TTL_SECONDS: u64 = 86_400;
/// Most entries in `exempt_paths`, and in `unsigned_payload_paths`.
pub const MAX_EXEMPT_PATHS: usize = 64;

/// A string that never shows its value in `Debug` and is wiped on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString(<{} bytes redacted>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Go through a JSON value so a wrong type never echoes the value in
        // serde's "invalid type: ..." message.
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(SecretString::new(s)),
            _ => Err(serde::de::Error::custom("must be a string")),
        }
    }
}

/// The plugin configuration as written in Envoy's `plugin_config` (JSON).
///
/// Serializing it (to render configuration) never writes `hmac_secret`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Environment variable holding the current secret.
    #[serde(default = "default_secret_env")]
    pub hmac_secret_env: String,
    /// Environment variable holding the previous secret (rotation); unset or
    /// empty means none.
    #[serde(default = "default_secret_previous_env")]
    pub hmac_secret_previous_env: String,
    /// Environment variable holding the pending secret (staged for the next
    /// rotation, tried last); unset or empty means none.
    #[serde(default = "default_secret_pending_env")]
    pub hmac_secret_pending_env: String,
    /// Environment variable holding the environment name.
    #[serde(default = "default_environment_env")]
    pub environment_env: String,
    /// Inline secret, for local runs only (wins over the variable). Envoy
    /// shows plugin configuration in `/config_dump`.
    #[serde(default, skip_serializing)]
    pub hmac_secret: Option<SecretString>,
    /// Inline environment name (wins over the variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// When set, the environment name (from the variable or inline) must be
    /// exactly this, or the configuration is refused: pins a deployment to
    /// its environment even if it is handed another environment's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_environment: Option<String>,
    /// Allowed distance between the signed timestamp and now.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Largest accepted body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Refuse requests without `x-crawbl-nonce`.
    #[serde(default)]
    pub require_nonce: bool,
    /// How long an accepted nonce is refused; default twice the skew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_ttl_seconds: Option<u64>,
    /// Upper bound on remembered nonces (memory bound of the replay cache).
    #[serde(default = "default_nonce_cache_max_entries")]
    pub nonce_cache_max_entries: u64,
    /// Paths where requests with no body and no upgrade skip verification:
    /// exact, or a prefix when ending in `*`.
    #[serde(default)]
    pub exempt_paths: Vec<String>,
    /// Paths (matched as `exempt_paths`) where a client may sign
    /// `x-crawbl-content-sha256: UNSIGNED-PAYLOAD`: the headers are verified
    /// and the body streams through unread, with no size limit.
    #[serde(default)]
    pub unsigned_payload_paths: Vec<String>,
    /// Let CORS preflights (`OPTIONS` with `Access-Control-Request-Method`) pass unsigned.
    #[serde(default)]
    pub allow_cors_preflight: bool,
    /// Wire formats accepted: `v1` (`CRAWBL-HMAC-SHA256-V1`) and/or `rfc9421`
    /// (the RFC 9421 `hmac-sha256` profile). Default `["v1"]`.
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
    /// A shared nonce store (`edge-hmac nonce-store`) every replica asks
    /// before it accepts a nonce: see [`crate::store`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_store: Option<NonceStoreOptions>,
}

fn default_secret_env() -> String {
    DEFAULT_SECRET_ENV.into()
}
fn default_secret_previous_env() -> String {
    DEFAULT_SECRET_PREVIOUS_ENV.into()
}
fn default_secret_pending_env() -> String {
    DEFAULT_SECRET_PENDING_ENV.into()
}
fn default_environment_env() -> String {
    DEFAULT_ENVIRONMENT_ENV.into()
}
fn default_clock_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}
fn default_max_body_bytes() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_formats() -> Vec<String> {
    vec![Format::V1.name().to_owned()]
}
fn default_nonce_cache_max_entries() -> u64 {
    DEFAULT_NONCE_CACHE_MAX_ENTRIES
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            hmac_secret_env: default_secret_env(),
            hmac_secret_previous_env: default_secret_previous_env(),
            hmac_secret_pending_env: default_secret_pending_env(),
            environment_env: default_environment_env(),
            hmac_secret: None,
            environment: None,
            expected_environment: None,
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            require_nonce: false,
            nonce_ttl_seconds: None,
            nonce_cache_max_entries: DEFAULT_NONCE_CACHE_MAX_ENTRIES,
            exempt_paths: Vec::new(),
            unsigned_payload_paths: Vec::new(),
            allow_cors_preflight: false,
            formats: default_formats(),
            nonce_store: None,
        }
    }
}

/// Why a configuration was refused. Messages name the setting and what to do,
/// never a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not valid JSON, an unknown field, or a value of the wrong type.
    #[error("{JSON_ERROR_PREFIX}{0}")]
    Json(String),
    /// The `nonce_store` option is not usable.
    #[error(transparent)]
    NonceStore(#[from] StoreConfigError),
    /// A setting is outside its range.
    #[error("{field} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// The rejected value.
        value: u64,
        /// What is accepted.
        expected: String,
    },
    /// An environment variable name is not usable.
    #[error(
        "{field} = {} is not a valid environment variable name (use A-Z, 0-9 and _)",
        shown(value)
    )]
    BadEnvName {
        /// The setting.
        field: &'static str,
        /// The rejected name (shown only through [`shown`]: it may be a
        /// secret pasted in by mistake).
        value: String,
    },
    /// No current secret.
    #[error(
        "no HMAC secret: environment variable {} is unset or empty (pass it to the VM with vm_config.environment_variables.host_env_keys / Envoy Gateway env.hostKeys, or set hmac_secret for local runs)",
        shown_name(env)
    )]
    MissingSecret {
        /// The variable looked at.
        env: String,
    },
    /// No environment name.
    #[error(
        "no environment name: environment variable {} is unset or empty (pass it with host_env_keys / env.hostKeys, or set environment)",
        shown_name(env)
    )]
    MissingEnvironment {
        /// The variable looked at.
        env: String,
    },
    /// A secret or the environment name was refused by the scheme.
    #[error("{source} ({origin})")]
    Scheme {
        /// What the scheme refused.
        source: SchemeError,
        /// Where the value came from.
        origin: String,
    },
    /// The environment name is not `expected_environment`.
    #[error(
        "the environment from {origin} is not expected_environment {}: this deployment was handed another environment's secret; check where {origin} comes from",
        shown(expected)
    )]
    EnvironmentMismatch {
        /// The expected name.
        expected: String,
        /// Where the actual name came from.
        origin: String,
    },
    /// An `exempt_paths` or `unsigned_payload_paths` entry is not usable.
    #[error(
        "{field} entry {} is not valid: it must be a plain path (start with '/'; no '?', ';', '\\', '//', '.' or '..' segment, or percent-encoded '.', '/', '\\', ';', '%') and may only end in '*'",
        shown(entry)
    )]
    BadPath {
        /// `exempt_paths` or `unsigned_payload_paths`.
        field: &'static str,
        /// The rejected entry (shown only through [`shown`]).
        entry: String,
    },
    /// `formats` is empty, repeats an entry, or names an unknown format.
    #[error(
        "formats = {} is not valid: list one or both of \"v1\" and \"rfc9421\", each once",
        shown(entry)
    )]
    BadFormats {
        /// The rejected entry, or `[]` (shown only through [`shown`]).
        entry: String,
    },
}

/// The configuration every request of one filter instance shares.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// The signature verifier (keys prepared once).
    pub verifier: Verifier,
    /// Largest accepted body.
    pub max_body_bytes: u64,
    /// Layout of the replay cache.
    pub replay: ReplayCache,
    /// Paths where requests with no body and no upgrade skip verification.
    pub exempt_paths: Vec<PathMatch>,
    /// Paths that accept `UNSIGNED-PAYLOAD`.
    pub unsigned_payload_paths: Vec<PathMatch>,
    /// Let CORS preflights pass unsigned.
    pub allow_cors_preflight: bool,
    /// The shared nonce store, when one is configured.
    pub nonce_store: Option<NonceStore>,
}

impl FilterConfig {
    /// True when `path` is an exempt path (a request there with no body
    /// and no upgrade skips verification).
    pub fn is_exempt(&self, path: &[u8]) -> bool {
        self.exempt_paths.iter().any(|m| m.matches(path))
    }

    /// True when `path` accepts `x-crawbl-content-sha256: UNSIGNED-PAYLOAD`.
    pub fn allows_unsigned_payload(&self, path: &[u8]) -> bool {
        self.unsigned_payload_paths.iter().any(|m| m.matches(path))
    }

    /// The per-stream buffer the host must allow for the body this
    /// configuration holds: `max_body_bytes` plus room for one more frame
    /// and the headers, at least Envoy's 1 MiB default. Below it, Envoy
    /// answers a plain `413` before the filter can decide.
    pub fn buffer_limit(&self) -> u64 {
        buffer_limit_for(self.max_body_bytes)
    }

    /// One log line describing the configuration, without secrets.
    pub fn summary(&self) -> String {
        let options = self.verifier.options();
        format!(
            "environment={} current_key={} previous_key={} pending_key={} clock_skew_seconds={} require_nonce={} nonce_ttl_seconds={} nonce_cache_capacity={} max_body_bytes={} exempt_paths={} unsigned_payload_paths={} allow_cors_preflight={} formats={}",
            self.verifier.environment(),
            self.verifier.current_fingerprint(),
            self.verifier
                .previous_fingerprint()
                .unwrap_or_else(|| "none".into()),
            self.verifier
                .pending_fingerprint()
                .unwrap_or_else(|| "none".into()),
            options.clock_skew_seconds,
            options.require_nonce,
            self.replay.ttl_seconds(),
            self.replay.capacity(),
            self.max_body_bytes,
            self.exempt_paths.len(),
            self.unsigned_payload_paths.len(),
            self.allow_cors_preflight,
            options.formats.names().join(","),
        ) + &self
            .nonce_store
            .as_ref()
            .map_or_else(String::new, |s| format!(" {}", s.summary()))
    }
}

/// The buffer a proxy must allow for a filter accepting `max_body_bytes`
/// (see [`FilterConfig::buffer_limit`]).
pub fn buffer_limit_for(max_body_bytes: u64) -> u64 {
    (max_body_bytes + 64 * 1024).max(1024 * 1024)
}

/// Parses the JSON configuration (empty means `{}`), without looking at the
/// environment.
pub fn parse(raw: &[u8]) -> Result<PluginConfig, ConfigError> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        raw
    };
    serde_json::from_slice(raw).map_err(|e| ConfigError::Json(json_error_message(&e, raw)))
}

/// How [`ConfigError::Json`] starts.
const JSON_ERROR_PREFIX: &str = "plugin configuration is not valid: ";

/// serde_json's message with quoted values passed through [`shown`]; if any
/// run of more than [`SHOWN_MAX_LEN`] bytes of the input — as written, or
/// of a key or string value once its escapes are decoded, which is how
/// serde quotes it — still appears in the error as displayed (quote
/// characters inside a value defeat the quoting; input that spells out
/// serde's own words matches them), only the error's kind and position.
fn json_error_message(e: &serde_json::Error, raw: &[u8]) -> String {
    let message = redact_quoted(&e.to_string());
    let window = SHOWN_MAX_LEN + 1;
    let displayed = format!("{JSON_ERROR_PREFIX}{message}");
    let value = serde_json::from_slice::<serde_json::Value>(raw).ok();
    let mut decoded = Vec::new();
    if let Some(value) = &value {
        collect_strings(value, &mut decoded);
    }
    let mut pieces: std::collections::HashSet<&[u8]> = raw.windows(window).collect();
    for s in &decoded {
        pieces.extend(s.as_bytes().windows(window));
    }
    let echoes_input = displayed
        .as_bytes()
        .windows(window)
        .any(|w| pieces.contains(w));
    if !echoes_input {
        return message;
    }
    let kind = match e.classify() {
        serde_json::error::Category::Io => JSON_ERROR_KINDS[0],
        serde_json::error::Category::Syntax => JSON_ERROR_KINDS[1],
        serde_json::error::Category::Data => JSON_ERROR_KINDS[2],
        serde_json::error::Category::Eof => JSON_ERROR_KINDS[3],
    };
    json_error_fallback(kind, e.line(), e.column())
}

/// The kinds of JSON error [`json_error_fallback`] names.
pub const JSON_ERROR_KINDS: [&str; 4] = [
    "read",
    "syntax",
    "unknown field or wrong type",
    "unexpected end",
];

/// What a JSON error says when serde's text would echo the input: only its
/// kind (one of [`JSON_ERROR_KINDS`]) and position, all fixed wording (the
/// fuzz target tells it apart from an echo with this).
pub fn json_error_fallback(kind: &str, line: usize, column: usize) -> String {
    format!(
        "{kind} error at line {line} column {column} (the offending text is not shown: it may be a secret)"
    )
}

/// Longest configuration string shown in an error: one byte shorter than
/// the shortest key the filter accepts, so a shown value is never a usable
/// secret.
pub const SHOWN_MAX_LEN: usize = crate::scheme::MIN_SECRET_BYTES - 1;

/// How a configuration value appears in an error: quoted when it is short
/// enough that it cannot be a key, else only its length and fingerprint
/// (first 8 hex of SHA-256, as `edge-hmac fetch` prints for keys), so a
/// secret pasted into the wrong field never reaches a log but can still be
/// recognised.
pub fn shown(value: &str) -> String {
    if value.len() <= SHOWN_MAX_LEN {
        format!("{value:?}")
    } else {
        format!(
            "<a value of {} bytes, fingerprint {}, not shown: it may be a secret>",
            value.len(),
            crate::scheme::fingerprint(value.as_bytes())
        )
    }
}

/// Every key and string value in `v`.
fn collect_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                out.push(k);
                collect_strings(x, out);
            }
        }
        _ => {}
    }
}

/// Like [`shown`] for a name (of an environment variable): a short one as
/// it is, unquoted; a long one only as its length and fingerprint.
pub fn shown_name(name: &str) -> String {
    if name.len() <= SHOWN_MAX_LEN {
        name.to_owned()
    } else {
        shown(name)
    }
}

/// `message` with every quoted piece (`"…"` or `` `…` ``, as serde_json
/// quotes values and field names) passed through [`shown`].
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        // Quotes are ASCII, so every offset below is a character boundary;
        // `get` keeps this panic-free regardless.
        let Some(start) = rest.find(['"', '`']) else {
            out.push_str(rest);
            break;
        };
        let quote = if rest.get(start..=start) == Some("`") {
            '`'
        } else {
            '"'
        };
        let after = rest.get(start + 1..).unwrap_or_default();
        let Some(len) = after.find(quote) else {
            // Unterminated: keep the tail only if it cannot hide a key.
            out.push_str(rest.get(..start).unwrap_or_default());
            out.push_str(&shown(after));
            break;
        };
        let inner = after.get(..len).unwrap_or_default();
        out.push_str(rest.get(..start).unwrap_or_default());
        if inner.len() <= SHOWN_MAX_LEN {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        } else {
            out.push_str(&shown(inner));
        }
        rest = after.get(len + 1..).unwrap_or_default();
    }
    out
}

/// Parses, validates and compiles the configuration, reading secrets through
/// `env` (the VM's environment in Envoy).
pub fn compile(
    raw: &[u8],
    env: impl Fn(&str) -> Option<String>,
) -> Result<FilterConfig, ConfigError> {
    parse(raw)?.compile(env)
}

fn check_env_name(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !value.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadEnvName {
            field,
            value: value.to_owned(),
        })
    }
}

fn range(field: &'static str, value: u64, lo: u64, hi: u64, why: &str) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            expected: format!("{lo} to {hi}{why}"),
        })
    }
}

impl PluginConfig {
    /// Validates every setting and prepares the keys.
    pub fn compile(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<FilterConfig, ConfigError> {
        check_env_name("hmac_secret_env", &self.hmac_secret_env)?;
        check_env_name("hmac_secret_previous_env", &self.hmac_secret_previous_env)?;
        check_env_name("hmac_secret_pending_env", &self.hmac_secret_pending_env)?;
        check_env_name("environment_env", &self.environment_env)?;
        range(
            "clock_skew_seconds",
            self.clock_skew_seconds,
            1,
            MAX_CLOCK_SKEW_SECONDS,
            "",
        )?;
        range(
            "max_body_bytes",
            self.max_body_bytes,
            0,
            MAX_BODY_BYTES_LIMIT,
            "",
        )?;
        let min_ttl = 2 * self.clock_skew_seconds;
        let ttl = self.nonce_ttl_seconds.unwrap_or(min_ttl);
        range(
            "nonce_ttl_seconds",
            ttl,
            min_ttl,
            MAX_NONCE_TTL_SECONDS.max(min_ttl),
            " (at least twice clock_skew_seconds, or a request could be replayed after its nonce is forgotten while its timestamp is still accepted)",
        )?;
        range(
            "nonce_cache_max_entries",
            self.nonce_cache_max_entries,
            MIN_ENTRIES,
            MAX_ENTRIES_LIMIT,
            "",
        )?;
        let paths = |field: &'static str, entries: &[String]| {
            if entries.len() > MAX_EXEMPT_PATHS {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: entries.len() as u64,
                    expected: format!("at most {MAX_EXEMPT_PATHS} entries"),
                });
            }
            entries
                .iter()
                .map(|p| PathMatch::parse(field, p))
                .collect::<Result<Vec<_>, _>>()
        };
        let exempt_paths = paths("exempt_paths", &self.exempt_paths)?;
        let unsigned_payload_paths = paths("unsigned_payload_paths", &self.unsigned_payload_paths)?;
        if self.formats.is_empty() {
            return Err(ConfigError::BadFormats { entry: "[]".into() });
        }
        let mut formats = Vec::with_capacity(self.formats.len());
        for name in &self.formats {
            match Format::from_name(name) {
                Some(f) if !formats.contains(&f) => formats.push(f),
                _ => {
                    return Err(ConfigError::BadFormats {
                        entry: name.clone(),
                    });
                }
            }
        }
        let formats = Formats::of(formats);

        // Secrets: inline wins over the variable; never echo a value.
        let (current, origin) = match &self.hmac_secret {
            Some(s) if !s.expose().is_empty() => (
                Zeroizing::new(s.expose().to_owned()),
                "inline hmac_secret".to_owned(),
            ),
            _ => match env(&self.hmac_secret_env).filter(|v| !v.is_empty()) {
                Some(v) => (
                    Zeroizing::new(v),
                    format!("environment variable {}", shown_name(&self.hmac_secret_env)),
                ),
                None => {
                    return Err(ConfigError::MissingSecret {
                        env: self.hmac_secret_env.clone(),
                    });
                }
            },
        };
        let current = SecretKey::new(current.as_bytes(), "current")
            .map_err(|source| ConfigError::Scheme { source, origin })?;
        let optional_key = |var: &str, which: &'static str| match env(var)
            .filter(|v| !v.is_empty())
            .map(Zeroizing::new)
        {
            None => Ok(None),
            Some(v) => SecretKey::new(v.as_bytes(), which)
                .map(Some)
                .map_err(|source| ConfigError::Scheme {
                    source,
                    origin: format!("environment variable {}", shown_name(var)),
                }),
        };
        let previous = optional_key(&self.hmac_secret_previous_env, "previous")?;
        let pending = optional_key(&self.hmac_secret_pending_env, "pending")?;
        let (environment, origin) = match &self.environment {
            Some(e) => (e.clone(), "inline environment".to_owned()),
            None => match env(&self.environment_env).filter(|v| !v.is_empty()) {
                Some(v) => (
                    v,
                    format!("environment variable {}", shown_name(&self.environment_env)),
                ),
                None => {
                    return Err(ConfigError::MissingEnvironment {
                        env: self.environment_env.clone(),
                    });
                }
            },
        };
        validate_environment(&environment).map_err(|source| ConfigError::Scheme {
            source,
            origin: origin.clone(),
        })?;
        if let Some(expected) = &self.expected_environment {
            validate_environment(expected).map_err(|source| ConfigError::Scheme {
                source,
                origin: "expected_environment".into(),
            })?;
            if *expected != environment {
                return Err(ConfigError::EnvironmentMismatch {
                    expected: expected.clone(),
                    origin,
                });
            }
        }
        let verifier = Verifier::new(
            &environment,
            current,
            previous,
            VerifierOptions {
                clock_skew_seconds: self.clock_skew_seconds,
                require_nonce: self.require_nonce,
                formats,
            },
        )
        .map_err(|source| ConfigError::Scheme { source, origin })?
        .with_pending(pending);
        let nonce_store = match &self.nonce_store {
            Some(options) => {
                range(
                    "nonce_store.timeout_ms",
                    options.timeout_ms,
                    MIN_TIMEOUT_MS,
                    MAX_TIMEOUT_MS,
                    "",
                )?;
                Some(
                    options
                        .compile(verifier.environment(), ttl)
                        .map_err(ConfigError::NonceStore)?,
                )
            }
            None => None,
        };
        Ok(FilterConfig {
            verifier,
            max_body_bytes: self.max_body_bytes,
            replay: ReplayCache::new(self.nonce_cache_max_entries, ttl, self.clock_skew_seconds),
            exempt_paths,
            unsigned_payload_paths,
            allow_cors_preflight: self.allow_cors_preflight,
            nonce_store,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

    fn env_with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn base_env() -> impl Fn(&str) -> Option<String> {
        env_with(&[("HMAC_SECRET", SECRET), ("HMAC_ENVIRONMENT", "dev")])
    }

    /// An empty configuration uses the documented defaults and the variables.
    #[test]
    fn defaults_from_environment() {
        let cfg = compile(b"", base_env()).unwrap();
        assert_eq!(cfg.verifier.environment(), "dev");
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        let o = cfg.verifier.options();
        assert_eq!(o.clock_skew_seconds, 300);
        assert!(!o.require_nonce);
        assert_eq!(cfg.replay.ttl_seconds(), 600);
        assert!(cfg.replay.capacity() >= DEFAULT_NONCE_CACHE_MAX_ENTRIES);
        assert!(cfg.verifier.previous_fingerprint().is_none());
        assert!(!cfg.allow_cors_preflight);
    }

    /// Unknown fields are refused, so a typo cannot silently disable a check.
    #[test]
    fn unknown_field_rejected() {
        let err = compile(br#"{"require_nonces": true}"#, base_env()).unwrap_err();
        assert!(err.to_string().contains("require_nonces"), "{err}");
    }

    /// A missing or short secret fails closed, naming the variable, not the value.
    #[test]
    fn missing_and_short_secret() {
        let err = compile(b"{}", env_with(&[("HMAC_ENVIRONMENT", "dev")])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingSecret { .. }));
        assert!(err.to_string().contains("HMAC_SECRET"));
        let err = compile(
            b"{}",
            env_with(&[
                ("HMAC_SECRET", "short-secret-value"),
                ("HMAC_ENVIRONMENT", "dev"),
            ]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("18 bytes"), "{msg}");
        assert!(!msg.contains("short-secret-value"), "{msg}");
    }

    /// The previous key: empty means none, short fails, valid is used.
    #[test]
    fn previous_key() {
        let prev = "previous-secret-previous-secret-previous";
        let cfg = compile(
            b"{}",
            env_with(&[
                ("HMAC_SECRET", SECRET),
                ("HMAC_SECRET_PREVIOUS", ""),
                ("HMAC_ENVIRONMENT", "dev"),
            ]),
        )
        .unwrap();
        assert!(cfg.verifier.previous_fingerprint().is_none());
        let cfg = compile(
            b"{}",
            env_with(&[
                ("HMAC_SECRET", SECRET),
                ("HMAC_SECRET_PREVIOUS", prev),
                ("HMAC_ENVIRONMENT", "dev"),
            ]),
        )
        .unwrap();
        assert_eq!(
            cfg.verifier.previous_fingerprint(),
            Some(crate::scheme::fingerprint(prev.as_bytes()))
        );
        let err = compile(
            b"{}",
            env_with(&[
                ("HMAC_SECRET", SECRET),
                ("HMAC_SECRET_PREVIOUS", "tiny"),
                ("HMAC_ENVIRONMENT", "dev"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("previous"), "{err}");
        assert!(err.to_string().contains("HMAC_SECRET_PREVIOUS"), "{err}");
    }

    /// The pending key: unset or empty means none, short fails naming the
    /// variable (not the value), valid is used and shown in the summary.
    #[test]
    fn pending_key() {
        let pend = "pending-secret-pending-secret-pending-secret";
        let with = |value: &str| {
            compile(
                b"{}",
                env_with(&[
                    ("HMAC_SECRET", SECRET),
                    ("HMAC_SECRET_PENDING", value),
                    ("HMAC_ENVIRONMENT", "dev"),
                ]),
            )
        };
        assert!(with("").unwrap().verifier.pending_fingerprint().is_none());
        let cfg = with(pend).unwrap();
        let fp = crate::scheme::fingerprint(pend.as_bytes());
        assert_eq!(cfg.verifier.pending_fingerprint(), Some(fp.clone()));
        assert!(cfg.summary().contains(&format!("pending_key={fp}")));
        assert!(!cfg.summary().contains(pend));
        let err = with("short-pending-secret").unwrap_err().to_string();
        assert!(
            err.contains("pending") && err.contains("HMAC_SECRET_PENDING"),
            "{err}"
        );
        assert!(!err.contains("short-pending-secret"), "{err}");
        let cfg = compile(
            br#"{"hmac_secret_pending_env":"NEXT_KEY"}"#,
            env_with(&[
                ("HMAC_SECRET", SECRET),
                ("NEXT_KEY", pend),
                ("HMAC_ENVIRONMENT", "dev"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.verifier.pending_fingerprint(), Some(fp));
    }

    /// Inline values win over variables, and custom variable names are read.
    #[test]
    fn inline_and_custom_names() {
        let inline = format!(r#"{{"hmac_secret":"{SECRET}-inline","environment":"local"}}"#);
        let cfg = compile(inline.as_bytes(), base_env()).unwrap();
        assert_eq!(cfg.verifier.environment(), "local");
        assert_eq!(
            cfg.verifier.current_fingerprint(),
            crate::scheme::fingerprint(format!("{SECRET}-inline").as_bytes())
        );
        let cfg = compile(
            br#"{"hmac_secret_env":"MY_KEY","environment_env":"MY_ENV"}"#,
            env_with(&[("MY_KEY", SECRET), ("MY_ENV", "prod")]),
        )
        .unwrap();
        assert_eq!(cfg.verifier.environment(), "prod");
    }

    /// A non-string inline secret is refused without echoing it.
    #[test]
    fn non_string_secret_not_echoed() {
        let err = compile(br#"{"hmac_secret": 98765432109876543210}"#, base_env()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("hmac_secret") || msg.contains("must be a string"),
            "{msg}"
        );
        assert!(!msg.contains("98765432109876543210"), "{msg}");
    }

    /// expected_environment pins the configuration to one environment.
    #[test]
    fn expected_environment() {
        let cfg = compile(br#"{"expected_environment":"dev"}"#, base_env()).unwrap();
        assert_eq!(cfg.verifier.environment(), "dev");
        let err = compile(br#"{"expected_environment":"prod"}"#, base_env()).unwrap_err();
        assert!(
            matches!(err, ConfigError::EnvironmentMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("HMAC_ENVIRONMENT"), "{err}");
    }

    /// A secret put in the environment variable by mistake is refused and
    /// never echoed (environment names are shorter than any valid secret).
    #[test]
    fn swapped_variables_not_echoed() {
        let err = compile(
            b"{}",
            env_with(&[("HMAC_SECRET", SECRET), ("HMAC_ENVIRONMENT", SECRET)]),
        )
        .unwrap_err();
        assert!(!err.to_string().contains(SECRET), "{err}");
    }

    /// Missing environment, bad environment names and bad variable names fail.
    #[test]
    fn environment_checks() {
        let err = compile(b"{}", env_with(&[("HMAC_SECRET", SECRET)])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingEnvironment { .. }));
        let err = compile(br#"{"environment":"dev\nprod"}"#, base_env()).unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
        let err = compile(br#"{"hmac_secret_env":"lower"}"#, base_env()).unwrap_err();
        assert!(matches!(err, ConfigError::BadEnvName { .. }));
    }

    /// Ranges: skew, TTL against skew, body limit, cache size.
    #[test]
    fn ranges() {
        for bad in [
            r#"{"clock_skew_seconds":0}"#,
            r#"{"clock_skew_seconds":100000}"#,
            r#"{"clock_skew_seconds":300,"nonce_ttl_seconds":599}"#,
            r#"{"max_body_bytes":1000000000}"#,
            r#"{"nonce_cache_max_entries":1}"#,
            r#"{"clock_skew_seconds":-1}"#,
        ] {
            assert!(
                compile(bad.as_bytes(), base_env()).is_err(),
                "{bad} accepted"
            );
        }
        let cfg = compile(
            br#"{"clock_skew_seconds":60,"max_body_bytes":0,"nonce_ttl_seconds":120}"#,
            base_env(),
        )
        .unwrap();
        assert_eq!(cfg.replay.ttl_seconds(), 120);
        assert_eq!(cfg.max_body_bytes, 0);
    }

    /// Exempt paths: exact, prefix with '*', query ignored, bad entries refused.
    #[test]
    fn exempt_paths() {
        let cfg = compile(br#"{"exempt_paths":["/healthz","/public/*"]}"#, base_env()).unwrap();
        assert!(cfg.is_exempt(b"/healthz"));
        assert!(cfg.is_exempt(b"/healthz?verbose=1"));
        assert!(!cfg.is_exempt(b"/healthz/more"));
        assert!(!cfg.is_exempt(b"/healthzz"));
        assert!(cfg.is_exempt(b"/public/"));
        assert!(cfg.is_exempt(b"/public/a/b?x"));
        assert!(!cfg.is_exempt(b"/publicx"));
        assert!(!cfg.is_exempt(b"/api?/healthz"));
        for field in ["exempt_paths", "unsigned_payload_paths"] {
            for bad in [
                r#"["healthz"]"#,
                r#"["/a*b"]"#,
                r#"["/a?b"]"#,
                r#"["/a**"]"#,
            ] {
                let raw = format!(r#"{{"{field}":{bad}}}"#);
                let err = compile(raw.as_bytes(), base_env()).unwrap_err();
                assert!(
                    matches!(&err, ConfigError::BadPath { field: f, .. } if *f == field),
                    "{field} {bad}: {err:?}"
                );
                assert!(err.to_string().starts_with(field), "{err}");
            }
        }
    }

    /// `formats` defaults to v1 alone; an empty, repeated or unknown entry
    /// refuses the configuration (fail closed), naming the setting.
    #[test]
    fn formats_option() {
        let f =
            |raw: &str| compile(raw.as_bytes(), base_env()).map(|c| c.verifier.options().formats);
        assert_eq!(f("{}").unwrap(), Formats::default());
        assert!(!f("{}").unwrap().rfc9421);
        assert_eq!(f(r#"{"formats":["rfc9421","v1"]}"#).unwrap(), Formats::BOTH);
        let only = f(r#"{"formats":["rfc9421"]}"#).unwrap();
        assert!(only.rfc9421 && !only.v1);
        for bad in [r#"[]"#, r#"["v1","v1"]"#, r#"["v2"]"#, r#"["RFC9421"]"#] {
            let err = f(&format!(r#"{{"formats":{bad}}}"#)).unwrap_err();
            assert!(
                matches!(err, ConfigError::BadFormats { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().starts_with("formats = "), "{err}");
        }
        let summary = compile(br#"{"formats":["v1","rfc9421"]}"#, base_env())
            .unwrap()
            .summary();
        assert!(summary.ends_with("formats=v1,rfc9421"), "{summary}");
    }

    /// Unsigned-payload paths match like exempt paths and are off by default.
    #[test]
    fn unsigned_payload_paths() {
        let cfg = compile(
            br#"{"unsigned_payload_paths":["/upload","/grpc.Echo/*"]}"#,
            base_env(),
        )
        .unwrap();
        assert!(cfg.allows_unsigned_payload(b"/upload?part=1"));
        assert!(cfg.allows_unsigned_payload(b"/grpc.Echo/Stream"));
        assert!(!cfg.allows_unsigned_payload(b"/upload/x"));
        assert!(!cfg.is_exempt(b"/upload"));
        let none = compile(b"{}", base_env()).unwrap();
        assert!(!none.allows_unsigned_payload(b"/upload"));
        let many: Vec<String> = (0..=MAX_EXEMPT_PATHS)
            .map(|i| format!("\"/p{i}\""))
            .collect();
        let raw = format!(r#"{{"unsigned_payload_paths":[{}]}}"#, many.join(","));
        assert!(matches!(
            compile(raw.as_bytes(), base_env()),
            Err(ConfigError::OutOfRange {
                field: "unsigned_payload_paths",
                ..
            })
        ));
    }

    /// Serializing a configuration (to render it) never writes the inline
    /// secret, and what it writes parses back to the same settings.
    #[test]
    fn serialize_omits_secret_and_round_trips() {
        let raw = format!(
            r#"{{"hmac_secret":"{SECRET}","environment":"dev","require_nonce":true,"exempt_paths":["/h"]}}"#
        );
        let parsed = parse(raw.as_bytes()).unwrap();
        let json = serde_json::to_string(&parsed).unwrap();
        assert!(!json.contains(SECRET), "{json}");
        let back = parse(json.as_bytes()).unwrap();
        assert_eq!(
            back,
            PluginConfig {
                hmac_secret: None,
                ..parsed
            }
        );
    }

    /// Debug output of the parsed and compiled configuration hides the secret.
    #[test]
    fn debug_hides_secret() {
        let raw = format!(r#"{{"hmac_secret":"{SECRET}","environment":"dev"}}"#);
        let parsed = parse(raw.as_bytes()).unwrap();
        let compiled = parsed.compile(|_| None).unwrap();
        for text in [
            format!("{parsed:?}"),
            format!("{compiled:?}"),
            compiled.summary(),
        ] {
            assert!(!text.contains(SECRET), "{text}");
        }
    }

    /// A secret pasted into any string setting of the plugin configuration
    /// (or as a value of the wrong type, or as a field name) never appears
    /// in the error Envoy logs; its fingerprint does, so it can be recognised.
    #[test]
    fn a_secret_in_the_wrong_field_is_never_echoed() {
        // Upper-case hex: it passes as an environment variable name too.
        let secret = "A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718";
        let fp = crate::scheme::fingerprint(secret.as_bytes());
        let key = "k".repeat(40);
        let env = |name: &str| match name {
            "HMAC_SECRET" => Some(key.clone()),
            "HMAC_ENVIRONMENT" => Some("dev".to_owned()),
            _ => None,
        };
        let configs = [
            format!(r#"{{"hmac_secret_env": "{secret}"}}"#),
            format!(r#"{{"hmac_secret_env": "x{secret}"}}"#),
            format!(r#"{{"hmac_secret_previous_env": "x-{secret}"}}"#),
            format!(
                r#"{{"hmac_secret_pending_env": "{}"}}"#,
                secret.to_lowercase()
            ),
            format!(r#"{{"environment_env": "{secret}"}}"#),
            format!(r#"{{"environment_env": "{}"}}"#, secret.to_lowercase()),
            format!(r#"{{"environment": "{secret}"}}"#),
            format!(r#"{{"expected_environment": "{secret}"}}"#),
            format!(r#"{{"exempt_paths": ["{secret}"]}}"#),
            format!(r#"{{"clock_skew_seconds": "{secret}"}}"#),
            format!(r#"{{"require_nonce": "{secret}"}}"#),
            format!(r#"{{"{secret}": 1}}"#),
            format!(r#"{{"hmac_secret_env": "{secret}"#),
        ];
        for config in &configs {
            let err = compile(config.as_bytes(), env)
                .err()
                .unwrap_or_else(|| panic!("accepted: {} bytes of config", config.len()));
            let msg = err.to_string();
            for form in [
                secret.to_owned(),
                secret.to_lowercase(),
                format!("x{secret}"),
            ] {
                assert!(
                    !msg.contains(&form),
                    "echoed in: {}",
                    msg.replace(secret, "<SECRET>")
                );
            }
            assert!(!msg.contains(&secret[..20]), "part of it echoed");
            if !msg.contains("EOF") {
                assert!(
                    msg.contains("not shown") || msg.contains("environment name ("),
                    "no redaction note: {msg}"
                );
            }
        }
        // The pasted value is recognisable by its fingerprint.
        let err = compile(configs[0].as_bytes(), env)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&fp), "{err}");
        // Short values (no key is under 32 bytes) are still shown as they are.
        let err = compile(br#"{"hmac_secret_env": "bad-name"}"#, env)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"bad-name\""), "{err}");
    }

    /// Regression (found by fuzz/config_compile): a field name with quote
    /// characters inside defeated the quoting in serde's message, which then
    /// echoed the name; such a message now shows only kind and position.
    #[test]
    fn a_quote_inside_a_value_does_not_defeat_the_redaction() {
        let long = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef";
        for config in [
            format!(r#"{{"`{long}`": 1}}"#),
            format!(r#"{{"x`{long}": 1}}"#),
            format!(r#"{{"clock_skew_seconds": "`{long}"}}"#),
            // Found by the fuzzer: an escaped quote spells the key
            // differently in the input than serde prints it.
            format!(r#"{{"a`b``{long}\"c": 1}}"#),
        ] {
            let msg = parse(config.as_bytes()).err().unwrap().to_string();
            assert!(!msg.contains(&long[..SHOWN_MAX_LEN + 1]), "echoed: {msg}");
            assert!(msg.contains("line 1"), "{msg}");
        }
        // Found by the fuzzer: input that spells out the error's own words,
        // across the prefix, is not shown either.
        for config in [
            " expected value at line 1 column",
            "not valid: expected value at line 1 column",
        ] {
            let msg = parse(config.as_bytes()).err().unwrap().to_string();
            for w in config.as_bytes().windows(SHOWN_MAX_LEN + 1) {
                assert!(
                    !msg.as_bytes().windows(w.len()).any(|m| m == w),
                    "echoed: {msg}"
                );
            }
            assert!(msg.contains("line 1"), "{msg}");
        }
    }
}
