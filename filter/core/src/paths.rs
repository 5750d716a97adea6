//! Path entries of `exempt_paths` and `unsigned_payload_paths`, and the one
//! rule that decides whether a request path is covered by them.
//!
//! The filter sees `:path` after Envoy's normalization (dot segments
//! removed, slashes merged, encoded unreserved characters decoded). That is
//! not what every hop behind it sees: Tomcat, Spring and Jetty treat `..;`
//! as `..`, some backends decode a path twice, a sidecar may normalize
//! again. A byte-prefix test on the normalized path let
//! `/public/%2e%2e;/admin` through as "under `/public/`", and a second hop
//! then served `/admin` (issue 23). So a path is covered only when it is
//! **plain** ([`is_plain`]) and its segments match the entry's segments:
//!
//! - no `;`, `\`, `#`, no NUL or control byte;
//! - no percent-encoded `.`, `/`, `\`, `;` or `%` (`%2e %2f %5c %3b %25`,
//!   either case), no malformed `%` escape, and the path percent-decoded is
//!   valid UTF-8 (no overlong `%c0%ae`);
//! - no `.` or `..` segment and no empty segment (`//`), except the trailing
//!   one of a path ending in `/`;
//! - an exact entry equals the path (query removed); a prefix entry covers
//!   whole segments only: `/public/*` is `/public/` and everything below it,
//!   `/public*` is `/public` and everything below it, never `/publicity`.
//!
//! Anything else on an exempt path is verified like every request. This
//! module is pure: the flow asks it, both hosts share it.

use crate::config::ConfigError;

/// A compiled `exempt_paths` or `unsigned_payload_paths` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path without query equals this.
    Exact(String),
    /// The path without query is this, or below it: a string ending in `/`
    /// (covers it and everything after it), or not (covers it, and
    /// everything after it and a `/`).
    Prefix(String),
}

impl PathMatch {
    /// Parses an entry: `/exact`, `/prefix/*` or `/prefix*`. An entry must
    /// itself be a plain path ([`is_plain`]), with no `?` and no `*` but a
    /// final one.
    pub fn parse(field: &'static str, entry: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadPath {
            field,
            entry: entry.to_owned(),
        };
        if !entry.starts_with('/') || entry.contains('?') {
            return Err(bad());
        }
        let (base, prefix) = match entry.strip_suffix('*') {
            Some(base) => (base, true),
            None => (entry, false),
        };
        if base.contains('*') || !is_plain(base.as_bytes()) {
            return Err(bad());
        }
        Ok(if prefix {
            PathMatch::Prefix(base.to_owned())
        } else {
            PathMatch::Exact(base.to_owned())
        })
    }

    /// True when `path` (query string included or not) is covered: plain,
    /// and equal to the entry or below it segment by segment.
    pub fn matches(&self, path: &[u8]) -> bool {
        let path = without_query(path);
        self.covers(path) && is_plain(path)
    }

    /// The structural part of [`PathMatch::matches`]: segment-wise
    /// equality or prefix, with no look at the bytes inside segments.
    pub fn covers(&self, path: &[u8]) -> bool {
        match self {
            PathMatch::Exact(p) => path == p.as_bytes(),
            PathMatch::Prefix(base) => {
                let base = base.as_bytes();
                match path.strip_prefix(base) {
                    None => false,
                    // `/public/` + anything: the boundary is in the entry.
                    Some(_) if base.ends_with(b"/") => true,
                    // `/public` + nothing, or + `/…`; never `/publicity`.
                    Some(rest) => rest.is_empty() || rest.starts_with(b"/"),
                }
            }
        }
    }
}

/// `path` up to its first `?`.
pub fn without_query(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?') {
        Some(i) => path.get(..i).unwrap_or(path),
        None => path,
    }
}

/// Percent-encoded bytes that a later hop may turn into path structure:
/// `.`, `/`, `\`, `;` and `%` itself (a second decoding).
const STRUCTURAL_ESCAPES: [u8; 5] = [b'.', b'/', b'\\', b';', b'%'];

/// True when `path` (no query) reads the same to every hop: see the module
/// documentation for the rule.
pub fn is_plain(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        match b {
            b';' | b'\\' | b'#' => return false,
            _ if b < 0x20 || b == 0x7f => return false,
            b'%' => {
                let Some(byte) = path
                    .get(i + 1..i + 3)
                    .and_then(|hex| Some(hex_val(hex[0])? << 4 | hex_val(hex[1])?))
                else {
                    return false;
                };
                if STRUCTURAL_ESCAPES.contains(&byte) {
                    return false;
                }
                decoded.push(byte);
                i += 3;
                continue;
            }
            _ => decoded.push(b),
        }
        i += 1;
    }
    if core::str::from_utf8(&decoded).is_err() {
        return false;
    }
    // Segments after the leading '/': none empty (but a trailing one), none
    // a dot segment.
    let segments: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
    let last = segments.len().saturating_sub(1);
    segments
        .iter()
        .enumerate()
        .all(|(n, s)| !matches!(*s, b"." | b"..") && (!s.is_empty() || n == last))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Why a path is not in the normal form of `docs/signature-v1.md` §7: what
/// Envoy's normalization (as Envoy Gateway configures it) changes before the
/// verifier sees it, or what it refuses. A client signing such a path signs
/// bytes the verifier never sees.
pub fn normal_form_issues(path: &[u8]) -> Vec<&'static str> {
    let path = without_query(path);
    let mut out = Vec::new();
    let mut push = |issue| {
        if !out.contains(&issue) {
            out.push(issue);
        }
    };
    if path.first() != Some(&b'/') {
        push("the path does not start with '/'");
    }
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        match b {
            b'\\' => push("a backslash (Envoy turns it into '/')"),
            b'%' => match path
                .get(i + 1..i + 3)
                .and_then(|h| Some(hex_val(h[0])? << 4 | hex_val(h[1])?))
            {
                Some(b'/' | b'\\') => {
                    push("an encoded slash %2F or %5C (Envoy answers with a redirect)");
                }
                Some(c) if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                    push(
                        "a percent-encoded unreserved character such as %41 or %2E (Envoy decodes it)",
                    );
                }
                Some(_) => {}
                None => push("a '%' not followed by two hex digits"),
            },
            _ if b >= 0x80 => push("raw non-ASCII bytes (send them percent-encoded as UTF-8)"),
            _ if b <= 0x20 || b == 0x7f => push("a space or control character (percent-encode it)"),
            _ => {}
        }
        i += 1;
    }
    let segments: Vec<&[u8]> = path
        .get(1..)
        .unwrap_or_default()
        .split(|&b| b == b'/')
        .collect();
    let last = segments.len().saturating_sub(1);
    for (n, segment) in segments.iter().enumerate() {
        if matches!(*segment, b"." | b"..") {
            push("a '.' or '..' segment (Envoy removes it)");
        } else if segment.is_empty() && n != last {
            push("an empty segment '//' (Envoy merges the slashes)");
        }
    }
    out
}

/// How hops behind the edge may read `path` again, for tests and fuzzing:
/// the path itself, then after each of two further rounds of RFC 3986
/// normalization done the lenient way (percent-decode once, `\` as `/`,
/// `;…` path parameters dropped from each segment so `..;x` is `..`, dot
/// segments removed, slashes merged). A covered path must stay covered in
/// every view.
pub fn second_hop_views(path: &[u8]) -> Vec<Vec<u8>> {
    let mut views = vec![without_query(path).to_vec()];
    for _ in 0..2 {
        let Some(last) = views.last() else { break };
        let next = lenient_normalize(last);
        views.push(next);
    }
    views
}

fn lenient_normalize(path: &[u8]) -> Vec<u8> {
    // One round of percent-decoding (malformed escapes kept as they are).
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = path.get(i) {
        if b == b'%'
            && let Some(byte) = path
                .get(i + 1..i + 3)
                .and_then(|hex| Some(hex_val(hex[0])? << 4 | hex_val(hex[1])?))
        {
            decoded.push(byte);
            i += 3;
            continue;
        }
        decoded.push(if b == b'\\' { b'/' } else { b });
        i += 1;
    }
    let mut out: Vec<&[u8]> = Vec::new();
    let trailing = decoded.ends_with(b"/");
    for segment in decoded.split(|&b| b == b'/') {
        let segment = match segment.iter().position(|&b| b == b';') {
            Some(at) => &segment[..at],
            None => segment,
        };
        match segment {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut normalized = Vec::with_capacity(decoded.len() + 1);
    for s in &out {
        normalized.push(b'/');
        normalized.extend_from_slice(s);
    }
    if normalized.is_empty() || (trailing && !normalized.ends_with(b"/")) {
        normalized.push(b'/');
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(e: &str) -> PathMatch {
        PathMatch::parse("exempt_paths", e).unwrap()
    }

    /// Every red-team path of issue 23 is outside `/public/*`; legitimate
    /// exempt paths are inside.
    #[test]
    fn escapes_are_not_covered() {
        let public = entry("/public/*");
        for path in [
            "/public/%2e%2e;/admin",
            "/public/%2E%2E;/admin",
            "/public/.%2e;/admin",
            "/public/%2e.;/admin",
            "/public/%2e%2e;/%2e%2e;/admin",
            "/public/..;/admin",
            "/public/..%3b/admin",
            "/public/..%3B/admin",
            "/public/%252e%252e/admin",
            "/public/%2e%2e%3b/admin",
            "/public/%2e%2e/admin",
            "/public/../admin",
            "/public/./x",
            "/public/a/../../admin",
            "/public/%2fadmin",
            "/public/%5c..%5cadmin",
            "/public/..\\admin",
            "/public//admin",
            "/public/%c0%ae%c0%ae/admin",
            "/public/%e0%80%ae%e0%80%ae/admin",
            "/public/x;jsessionid=1",
            "/public/%zz",
            "/public/%2",
            "/public/a#b",
            "/publicity",
            "/public",
        ] {
            assert!(!public.matches(path.as_bytes()), "{path} is exempt");
        }
        for path in [
            "/public/",
            "/public/logo.png",
            "/public/a/b.c/d?x=%2e%2e;",
            "/public/caf%C3%A9",
            "/public/a%20b",
            "/public/...",
            "/public/..x",
        ] {
            assert!(public.matches(path.as_bytes()), "{path} is not exempt");
        }
    }

    /// Prefix entries cover whole segments; exact entries only themselves.
    #[test]
    fn segments() {
        let bare = entry("/public*");
        assert!(bare.matches(b"/public"));
        assert!(bare.matches(b"/public/"));
        assert!(bare.matches(b"/public/x"));
        assert!(!bare.matches(b"/publicity"));
        let root = entry("/*");
        assert!(root.matches(b"/"));
        assert!(root.matches(b"/anything/at/all"));
        assert!(!root.matches(b"/a/%2e%2e/b"));
        let exact = entry("/healthz");
        assert!(exact.matches(b"/healthz?x=1"));
        assert!(!exact.matches(b"/healthz/"));
        assert!(!exact.matches(b"/healthz;x"));
        assert!(!exact.matches(b"/healthzz"));
    }

    /// Paths Envoy rewrites or refuses are named; normal ones have nothing
    /// to report (the query is never looked at).
    #[test]
    fn normal_form() {
        for ok in [
            "/",
            "/v1/orders",
            "/a%20b/caf%C3%A9",
            "/x?y=%2F//../z",
            "/a/",
        ] {
            assert!(normal_form_issues(ok.as_bytes()).is_empty(), "{ok}");
        }
        for (path, issue) in [
            ("/v1/../v2/x", "'..'"),
            ("/v1/./x", "'.'"),
            ("/a//b", "'//'"),
            ("/a%2Fb", "%2F"),
            ("/a%5cb", "%2F or %5C"),
            ("/a\\b", "backslash"),
            ("/caf\u{e9}", "non-ASCII"),
            ("/%7Euser", "unreserved"),
            ("/a b", "space"),
            ("/a%zz", "two hex"),
        ] {
            let issues = normal_form_issues(path.as_bytes());
            assert!(
                issues.iter().any(|i| i.contains(issue)),
                "{path}: {issues:?}"
            );
        }
    }

    /// Entries that are not plain paths themselves are refused.
    #[test]
    fn entries_must_be_plain() {
        for bad in [
            "/a;b", "/a/../b", "/a/./*", "/a//b", "/%2e/*", "/a%2fb", "/a\\b", "a", "/a?b", "/a*b",
            "/a**",
        ] {
            assert!(
                PathMatch::parse("exempt_paths", bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    fn pieces() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "/", "public", "admin", "a", "..", ".", "%2e", "%2E", "%2e%2e", ";", "%3b", "%3B",
            "%25", "%252e", "2e", "\\", "%5c", "%2f", "%2F", "..;", ".%2e", "%c0%ae", "%00", "x=1",
            "%", "%41", "%u002e", "//",
        ]);
        prop::collection::vec(piece, 0..10).prop_map(|p| format!("/public/{}", p.concat()))
    }

    proptest! {
        /// No path that a second lenient normalization (`..;` as `..`, one
        /// or two extra percent-decodings) moves outside the entry is
        /// ever covered by it.
        #[test]
        fn covered_paths_stay_covered(path in pieces()) {
            for e in ["/public/*", "/public*", "/public/a*"] {
                let m = entry(e);
                if m.matches(path.as_bytes()) {
                    for view in second_hop_views(path.as_bytes()) {
                        prop_assert!(
                            m.covers(&view),
                            "{path} is covered by {e} but a later hop reads {}",
                            String::from_utf8_lossy(&view)
                        );
                    }
                }
            }
        }

        /// Arbitrary bytes never panic the matcher.
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = entry("/public/*").matches(&bytes);
            let _ = second_hop_views(&bytes);
        }
    }
}
