//! The Redis URL: parsed once, kept with its password out of every
//! `Display`, `Debug`, log line and error message ([`RedisUrl::redacted`]).

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The environment variable a Redis URL (which may hold a password) is read
/// from when no flag names one.
pub const REDIS_URL_ENV: &str = "EDGE_HMAC_REDIS_URL";

/// Port of a Redis server when the URL names none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// Port of a Sentinel when the URL names none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Why a Redis URL was refused. No variant holds the URL or any part of its
/// credentials.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The URL cannot be parsed or uses something this service does not support.
    #[error(
        "invalid Redis URL ({redacted}): {why}; expected redis://[user:password@]host:port[/db] or redis+sentinel://[user:password@]host:port[,host:port...]/service-name[/db]"
    )]
    Invalid {
        /// What is wrong.
        why: String,
        /// The URL as far as it is safe to show.
        redacted: String,
    },
    /// `--redis-url` was given a URL with a password (it would sit in the
    /// process list and shell history).
    #[error(
        "--redis-url must not hold a password (it would show in the process list): put the URL in a file readable only by this service and pass --redis-url-file PATH, or set {REDIS_URL_ENV}"
    )]
    PasswordOnCommandLine,
    /// The URL file could not be read.
    #[error("cannot read the Redis URL file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// No URL anywhere.
    #[error(
        "no Redis URL: pass --redis-url-file PATH (a file holding redis://[user:password@]host:port), set {REDIS_URL_ENV}, or pass --redis-url redis://host:port when there is no password"
    )]
    Missing,
}

/// Where the service sends claims: one Redis server, or the primary that a
/// set of Sentinels names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://host:port`.
    Direct {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// `redis+sentinel://host:port,host:port/service`.
    Sentinel {
        /// The Sentinels, in the order given.
        nodes: Vec<(String, u16)>,
        /// The monitored master's name (`sentinel monitor <name> ...`).
        service: String,
    },
}

/// A parsed `redis://` or `redis+sentinel://` URL. Its `Debug` and
/// `Display` show [`RedisUrl::redacted`]: never the password (nor the user
/// name).
#[derive(Clone)]
pub struct RedisUrl {
    target: Target,
    username: Option<String>,
    password: Option<Zeroizing<String>>,
    db: i64,
}

impl RedisUrl {
    /// Parses `url`: `redis://[user:password@]host[:port][/db]` or
    /// `redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db]`.
    /// User and password may be percent-encoded; `redis://:password@host`
    /// is a password without a user. With Sentinel the credentials are those
    /// of the Redis servers; the Sentinels are asked without any.
    /// `rediss://` (TLS), unix sockets and query parameters are refused.
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let url = url.trim();
        let invalid = |why: &str| UrlError::Invalid {
            why: why.to_owned(),
            redacted: redact_unparsed(url),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid("no scheme (redis:// or redis+sentinel://)"));
        };
        let sentinel = match scheme.to_ascii_lowercase().as_str() {
            "redis" => false,
            "redis+sentinel" => true,
            "rediss" | "rediss+sentinel" => {
                return Err(invalid(
                    "TLS (rediss://) is not supported by edge-hmac nonce-store; reach Redis over a private network or a local TLS tunnel (stunnel, a service-mesh sidecar) and use redis://",
                ));
            }
            "unix" | "redis+unix" => return Err(invalid("unix sockets are not supported")),
            _ => return Err(invalid("unknown scheme (redis:// or redis+sentinel://)")),
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(invalid(
                "query parameters and fragments are not supported (put the database number in the path: /N)",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = percent_decode(user)
                    .ok_or_else(|| invalid("the user name is not valid percent-encoded UTF-8"))?;
                let pass = match pass {
                    Some(p) => Some(Zeroizing::new(percent_decode(p).ok_or_else(|| {
                        invalid("the password is not valid percent-encoded UTF-8")
                    })?)),
                    None => None,
                };
                (
                    (!user.is_empty()).then_some(user),
                    pass.filter(|p| !p.is_empty()),
                )
            }
        };
        let default_port = if sentinel {
            DEFAULT_SENTINEL_PORT
        } else {
            DEFAULT_REDIS_PORT
        };
        let mut nodes = Vec::new();
        for part in hosts.split(',') {
            nodes.push(parse_host_port(part, default_port).map_err(|why| invalid(&why))?);
        }
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let target = if sentinel {
            let service = segments.next().ok_or_else(|| {
                invalid("no service name: redis+sentinel://host:port/<service-name>")
            })?;
            let service = percent_decode(service)
                .filter(|s| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                })
                .ok_or_else(|| {
                    invalid("the service name must be letters, digits, '.', '_', '-'")
                })?;
            Target::Sentinel { nodes, service }
        } else {
            if nodes.len() != 1 {
                return Err(invalid(
                    "redis:// takes one host:port (several hosts: use redis+sentinel://; Redis Cluster is not supported)",
                ));
            }
            let (host, port) = nodes.remove(0);
            Target::Direct { host, port }
        };
        let db = match segments.next() {
            None => 0,
            Some(n) => n
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=1_000_000).contains(n))
                .ok_or_else(|| invalid("the database (the path) must be a number"))?,
        };
        if segments.next().is_some() {
            return Err(invalid("too many path segments"));
        }
        Ok(RedisUrl {
            target,
            username,
            password,
            db,
        })
    }

    /// Reads the URL from the first line of file `path` (surrounding
    /// whitespace ignored).
    pub fn from_file(path: &Path) -> Result<RedisUrl, UrlError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| UrlError::File {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        let line = text.lines().map(str::trim).find(|l| !l.is_empty());
        match line {
            Some(line) => RedisUrl::parse(line),
            None => Err(UrlError::Invalid {
                why: format!("the file {} is empty", path.display()),
                redacted: String::new(),
            }),
        }
    }

    /// Reads the URL from [`REDIS_URL_ENV`]; `Ok(None)` when it is unset or empty.
    pub fn from_env() -> Result<Option<RedisUrl>, UrlError> {
        match std::env::var(REDIS_URL_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                let v = Zeroizing::new(v);
                RedisUrl::parse(&v).map(Some)
            }
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(UrlError::Invalid {
                why: format!("{REDIS_URL_ENV} is not UTF-8"),
                redacted: String::new(),
            }),
        }
    }

    /// Parses a URL given on the command line: refused when it holds a
    /// password ([`UrlError::PasswordOnCommandLine`]).
    pub fn from_command_line(url: &str) -> Result<RedisUrl, UrlError> {
        let parsed = RedisUrl::parse(url)?;
        if parsed.has_password() {
            return Err(UrlError::PasswordOnCommandLine);
        }
        Ok(parsed)
    }

    /// True when the URL holds a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Where claims go.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The database number.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// The URL with its credentials replaced by `***`:
    /// `redis://***@host:port/db`, `redis+sentinel://h1:p1,h2:p2/service/db`.
    pub fn redacted(&self) -> String {
        let creds = if self.username.is_some() || self.password.is_some() {
            "***@"
        } else {
            ""
        };
        match &self.target {
            Target::Direct { host, port } => {
                format!("redis://{creds}{}/{}", host_port(host, *port), self.db)
            }
            Target::Sentinel { nodes, service } => {
                let nodes: Vec<String> = nodes.iter().map(|(h, p)| host_port(h, *p)).collect();
                format!(
                    "redis+sentinel://{creds}{}/{service}/{}",
                    nodes.join(","),
                    self.db
                )
            }
        }
    }

    /// The connection settings of a Redis server (not a Sentinel) at
    /// `host:port` with this URL's credentials and database.
    pub(crate) fn redis_settings(&self) -> redis::RedisConnectionInfo {
        let mut info = redis::RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            info = info.set_username(user);
        }
        if let Some(pass) = &self.password {
            info = info.set_password(pass.as_str());
        }
        info
    }

    /// The user name, if any (for the Sentinel client builder).
    pub(crate) fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if any (for the Sentinel client builder).
    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.as_str())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `host:port`, IPv6 in brackets.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An unparsed URL as far as it is safe to show: its scheme and hosts,
/// never what stands before an `@`.
fn redact_unparsed(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rfind('@') {
        Some(i) => format!("{scheme}://***@{}", &authority[i + 1..]),
        None if url.len() <= 200 => format!("{scheme}://{authority}"),
        None => format!("{scheme}://..."),
    }
}

fn parse_host_port(part: &str, default_port: u16) -> Result<(String, u16), String> {
    if part.is_empty() {
        return Err("a host is missing".into());
    }
    let (host, port) = if let Some(rest) = part.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address lacks its closing ']'")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("junk after an IPv6 address")?,
                ),
            ),
        }
    } else {
        match part.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (part, None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
    {
        return Err("a host name is empty or has characters a host name cannot have".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("a port is not a number in 1..=65535")?,
    };
    Ok((host.to_owned(), port))
}

/// Percent-decodes `s`; `None` when an escape is malformed or the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Plain, authenticated, IPv6 and database URLs parse; the redaction
    /// hides user and password and keeps host, port and database.
    #[test]
    fn direct_urls_parse_and_redact() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!(
            u.target(),
            &Target::Direct {
                host: "127.0.0.1".into(),
                port: 6380
            }
        );
        assert!(!u.has_password());
        assert_eq!(u.redacted(), "redis://127.0.0.1:6380/0");

        let u = RedisUrl::parse("redis://edge:s3cr%40t-pass@redis.internal/3").unwrap();
        assert_eq!(u.password(), Some("s3cr@t-pass"));
        assert_eq!(u.username(), Some("edge"));
        assert_eq!(u.db(), 3);
        assert_eq!(u.redacted(), "redis://***@redis.internal:6379/3");
        for shown in [format!("{u}"), format!("{u:?}"), format!("{:?}", Some(&u))] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(!shown.contains("edge"), "{shown}");
        }

        let u = RedisUrl::parse("redis://:only-a-password@[::1]:7000/").unwrap();
        assert_eq!(u.password(), Some("only-a-password"));
        assert_eq!(u.username(), None);
        assert_eq!(u.redacted(), "redis://***@[::1]:7000/0");
    }

    /// A Sentinel URL names several Sentinels (default port 26379), the
    /// service and a database.
    #[test]
    fn sentinel_urls_parse() {
        let u =
            RedisUrl::parse("redis+sentinel://:pw@s1:26380,s2,[fd00::2]:1/edge-nonces/2").unwrap();
        assert_eq!(
            u.target(),
            &Target::Sentinel {
                nodes: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), 26379),
                    ("fd00::2".into(), 1)
                ],
                service: "edge-nonces".into()
            }
        );
        assert_eq!(u.db(), 2);
        assert_eq!(
            u.redacted(),
            "redis+sentinel://***@s1:26380,s2:26379,[fd00::2]:1/edge-nonces/2"
        );
    }

    /// Unsupported and malformed URLs are refused, and the message never
    /// shows the password.
    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for url in [
            "rediss://:hunter2-secret@h:6379",
            "redis+sentinel://:hunter2-secret@h:26379",
            "redis://:hunter2-secret@h1:1,h2:2",
            "redis://:hunter2-secret@h:0",
            "redis://:hunter2-secret@h:99999",
            "redis://:hunter2-secret@h:1/x",
            "redis://:hunter2-secret@h:1/1/2",
            "redis://:hunter2-secret@h:1?db=2",
            "redis://:hunter2-secret@",
            "redis://:hunter2-secret%zz@h",
            "http://:hunter2-secret@h",
            "unix:///tmp/redis.sock",
            "hunter2-secret",
            "redis://:hunter2-secret@bad host",
        ] {
            let err = RedisUrl::parse(url).expect_err(url);
            let msg = err.to_string();
            assert!(!msg.contains("hunter2"), "{url}: {msg}");
            assert!(!format!("{err:?}").contains("hunter2"), "{url}: {err:?}");
        }
        let msg = RedisUrl::parse("rediss://h").unwrap_err().to_string();
        assert!(msg.contains("TLS"), "{msg}");
    }

    /// `--redis-url` takes no password; the file and the variable do.
    #[test]
    fn command_line_urls_hold_no_password() {
        assert!(RedisUrl::from_command_line("redis://h:1").is_ok());
        let err = RedisUrl::from_command_line("redis://u:pw@h:1").unwrap_err();
        assert!(matches!(err, UrlError::PasswordOnCommandLine));
        assert!(err.to_string().contains("--redis-url-file"));
        assert!(err.to_string().contains(REDIS_URL_ENV));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "\n  redis://:file-pw@h:2/1  \n").unwrap();
        let u = RedisUrl::from_file(&path).unwrap();
        assert_eq!(u.password(), Some("file-pw"));
        assert_eq!(u.db(), 1);
        std::fs::write(&path, "\n").unwrap();
        assert!(RedisUrl::from_file(&path).is_err());
        assert!(matches!(
            RedisUrl::from_file(&dir.path().join("missing")),
            Err(UrlError::File { .. })
        ));
    }
}
