//! The wire names both formats and the shared checks use: header names and
//! the `UNSIGNED-PAYLOAD` literal. Their home is here, not in one format, so
//! the request head, the body check and the outcome texts depend on no
//! format module.

/// v1: header carrying the Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-crawbl-timestamp";
/// v1: header carrying the optional nonce.
pub const NONCE_HEADER: &str = "x-crawbl-nonce";
/// v1: header carrying the optional hex SHA-256 of the body.
pub const CONTENT_SHA256_HEADER: &str = "x-crawbl-content-sha256";
/// v1: header carrying `v1=<tag>`.
pub const SIGNATURE_HEADER: &str = "x-crawbl-signature";
/// v1: the `x-crawbl-content-sha256` value (and field 8 of the string to
/// sign) that claims no body hash: the body is not signed and streams
/// through. Accepted only on a verifier's `unsigned_payload_paths`.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// RFC 9421: header carrying the signature parameters (§4.1).
pub const SIGNATURE_INPUT_HEADER: &str = "signature-input";
/// RFC 9421: header carrying the signature (§4.2).
pub const SIGNATURE_RFC9421_HEADER: &str = "signature";
/// RFC 9530: header carrying the body digests.
pub const CONTENT_DIGEST_HEADER: &str = "content-digest";
