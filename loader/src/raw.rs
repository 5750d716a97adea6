//! A request captured as raw HTTP/1.x (what `edge-hmac verify` reads),
//! parsed with `httparse` (the parser hyper uses), body de-chunked.
//!
//! Lenient where a capture tool is (bare LF line ends, a body longer than
//! `Content-Length`), strict where a wrong reading would change what is
//! verified (header syntax, a `Content-Length` that is not a number or
//! disagrees with another, a malformed chunk).

use crate::error::{Error, Result};

/// The most header fields accepted (Envoy's own default limit is 100).
pub const MAX_HEADERS: usize = 1024;

/// A parsed raw HTTP/1.x request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// Method.
    pub method: String,
    /// Request target as sent (path and query, or an absolute URL).
    pub target: String,
    /// Header fields in order, names as sent, values without surrounding
    /// whitespace.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// How the body was delimited.
    pub framing: Framing,
}

/// How the body of a [`RawRequest`] was delimited (what `verify` shows
/// when its hash does not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`; `ignored` bytes followed it in the input.
    ContentLength {
        /// The declared length.
        length: usize,
        /// Bytes after the body in the input, not part of it.
        ignored: usize,
    },
    /// `Transfer-Encoding: chunked`, de-chunked.
    Chunked,
    /// Neither: everything after the blank line.
    ToEnd,
}

impl std::fmt::Display for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Framing::ContentLength { length, ignored: 0 } => {
                write!(f, "content-length: {length}")
            }
            Framing::ContentLength { length, ignored } => write!(
                f,
                "content-length: {length} ({ignored} more byte(s) after it in the input, ignored)"
            ),
            Framing::Chunked => f.write_str("transfer-encoding: chunked (de-chunked)"),
            Framing::ToEnd => {
                f.write_str("to the end of the input (no content-length, no transfer-encoding)")
            }
        }
    }
}

impl RawRequest {
    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

fn bad(why: impl std::fmt::Display) -> Error {
    Error::Usage(format!(
        "not a raw HTTP request: {why} (expected: request line, header lines, blank line, body)"
    ))
}

/// Parses a raw HTTP/1.x request (CRLF or bare LF line ends).
pub fn parse_raw(raw: &[u8]) -> Result<RawRequest> {
    let mut slots = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(bad("the headers do not end with a blank line"));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(bad(format!("more than {MAX_HEADERS} header fields")));
        }
        Err(e) => return Err(bad(e)),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(bad("the first line must be METHOD TARGET HTTP/1.1"));
    };
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.trim_ascii().to_vec()))
        .collect();
    let mut request = RawRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: Vec::new(),
        framing: Framing::ToEnd,
    };
    let rest = raw.get(head_len..).unwrap_or_default();
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
    (request.body, request.framing) = if chunked {
        (dechunk(rest)?, Framing::Chunked)
    } else if let Some(len) = content_length(&request)? {
        let body = rest
            .get(..len)
            .ok_or_else(|| {
                bad(format!(
                    "the body has {} bytes, content-length says {len}",
                    rest.len()
                ))
            })?
            .to_vec();
        let framing = Framing::ContentLength {
            length: len,
            ignored: rest.len() - len,
        };
        (body, framing)
    } else {
        (rest.to_vec(), Framing::ToEnd)
    };
    Ok(request)
}

/// The `Content-Length`, if any; every occurrence must be the same number.
fn content_length(request: &RawRequest) -> Result<Option<usize>> {
    let mut found = None;
    for (_, value) in request
        .headers
        .iter()
        .filter(|(h, _)| h.eq_ignore_ascii_case("content-length"))
    {
        let len = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| bad("content-length is not a number"))?;
        if found.is_some_and(|f| f != len) {
            return Err(bad("two different content-length values"));
        }
        found = Some(len);
    }
    Ok(found)
}

/// `httparse::parse_chunk_size`, accepting a size line that ends in a bare LF.
fn chunk_size(raw: &[u8]) -> Result<httparse::Status<(usize, u64)>, httparse::InvalidChunkSize> {
    let Some(nl) = raw.iter().position(|&b| b == b'\n') else {
        return httparse::parse_chunk_size(raw);
    };
    if nl > 0 && raw[nl - 1] == b'\r' {
        return httparse::parse_chunk_size(raw);
    }
    let mut line = raw[..nl].to_vec();
    line.extend_from_slice(b"\r\n");
    Ok(match httparse::parse_chunk_size(&line)? {
        // One byte fewer was consumed from the input than from `line`.
        httparse::Status::Complete((used, size)) => {
            httparse::Status::Complete((used.saturating_sub(1), size))
        }
        httparse::Status::Partial => httparse::Status::Partial,
    })
}

/// Decodes a chunked body (trailers, if any, are ignored).
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        // httparse wants CRLF after the size line; a capture saved with bare
        // LF line ends gets one put back for the size line alone.
        let (skip, size) = match chunk_size(raw) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Err(bad("the chunked body is cut short")),
            Err(_) => return Err(bad("malformed chunk size in the chunked body")),
        };
        raw = raw.get(skip..).unwrap_or_default();
        if size == 0 {
            return Ok(out);
        }
        let size = usize::try_from(size).map_err(|_| bad("a chunk larger than memory"))?;
        let chunk = raw
            .get(..size)
            .ok_or_else(|| bad("the chunked body is cut short"))?;
        out.extend_from_slice(chunk);
        raw = raw.get(size..).unwrap_or_default();
        raw = raw
            .strip_prefix(b"\r\n")
            .or_else(|| raw.strip_prefix(b"\n"))
            .ok_or_else(|| bad("a chunk is not followed by a line end"))?;
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
    }

    /// What would change the verdict is refused with a reason, not guessed.
    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for (raw, why) in [
            (&b"GET /a HTTP/1.1\nHost: h\n"[..], "blank line"),
            (b"nonsense\n\n", "not a raw HTTP request"),
            (b"GET /a HTTP/1.1\nBad Name: x\n\n", "header name"),
            (
                b"POST /a HTTP/1.1\nContent-Length: +3\n\nabc",
                "not a number",
            ),
            (
                b"POST /a HTTP/1.1\nContent-Length: 3\nContent-Length: 2\n\nabc",
                "two different",
            ),
            (b"POST /a HTTP/1.1\nContent-Length: 9\n\nabc", "says 9"),
            (
                b"POST /a HTTP/1.1\nTransfer-Encoding: chunked\n\nzz\nabc\n0\n\n",
                "chunk size",
            ),
            (
                b"POST /a HTTP/1.1\nTransfer-Encoding: chunked\n\n5\nabc\n",
                "cut short",
            ),
        ] {
            let err = parse_raw(raw).unwrap_err().to_string();
            assert!(err.contains(why), "{err:?} lacks {why:?}");
        }
    }
}
