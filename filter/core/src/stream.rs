//! One request through the filter, as a state machine both hosts drive: the
//! host hands over what Envoy gives it (headers, new body bytes, the end of
//! the stream, the response status) and carries out the [`Verdict`]. Which
//! counters move, which headers go, what is held and what is answered is
//! decided here once, so the proxy-wasm filter and the native module behave
//! the same by construction.

use crate::config::{FilterConfig, OnUnavailable};
use crate::flow::{self, Body, HeadersDecision, NonceClaim, Skip};
use crate::metrics::{Counter, Counters};
use crate::replay::{ClaimError, Nonces};
use crate::scheme::{BodyVerifier, Detail, Format, KeyUsed, Reject, Rejection, RequestHead};
use crate::store::{ClaimAnswer, ClaimRequest};

/// The `content-type` of every local reply.
pub const REPLY_CONTENT_TYPE: &str = "application/json";
/// The body of the `500` a host sends when it cannot read its input.
pub const INTERNAL_ERROR_BODY: &str = r#"{"error":"internal_error"}"#;

/// A local reply: the request is answered by the filter and goes no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u32,
    /// `Retry-After` (seconds) to send with it: a `503` the client may retry
    /// at once with a new signature and nonce.
    pub retry_after: Option<&'static str>,
    /// JSON body (`content-type: application/json`).
    pub body: &'static str,
    /// The refusal it answers (`None` for an internal error).
    pub rejection: Option<Rejection>,
}

impl Reply {
    /// The answer to `rejection`: its status and `{"error":"<code>"}`.
    pub fn rejected(rejection: Rejection) -> Self {
        Self {
            status: rejection.reason.status(),
            body: rejection.reason.response_body(),
            retry_after: (rejection.reason == Reject::ReplayCacheUnavailable).then_some("1"),
            rejection: Some(rejection),
        }
    }

    /// `500 {"error":"internal_error"}`.
    pub const fn internal_error() -> Self {
        Self {
            status: 500,
            body: INTERNAL_ERROR_BODY,
            retry_after: None,
            rejection: None,
        }
    }

    /// The gRPC status a gRPC client gets for this reply: Envoy's mapping
    /// of the HTTP status (401 → 16 UNAUTHENTICATED, 503 → 14 UNAVAILABLE,
    /// 500 and 413 → 2 UNKNOWN), which the proxy-wasm host gets from Envoy
    /// and the native host must set itself (Envoy 1.39/1.40 give a dynamic
    /// module's local reply `grpc-status: 0`, OK, whatever its status).
    pub fn grpc_status(&self) -> &'static str {
        match self.status {
            400 => "13",
            401 => "16",
            403 => "7",
            404 => "12",
            429 | 502 | 503 | 504 => "14",
            _ => "2",
        }
    }

    /// The debug log line of a refusal (never a secret, a tag or the
    /// signed bytes), the same on both hosts.
    pub fn log_line(&self) -> Option<String> {
        self.rejection.map(|r| format!("edge-hmac: rejected {r}"))
    }
}

/// What the host does with the request stream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it go on (headers upstream, or held data released).
    Continue,
    /// Keep the data back for now: it goes upstream with a later
    /// `Continue` (or resume), or never.
    Hold,
    /// Keep the data back for good: it is never forwarded (a reply was sent,
    /// or the upstream refused an upgrade).
    Drop,
    /// Send this reply; nothing more of the request goes upstream.
    Reply(Reply),
}

/// The decision on the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersOutcome {
    /// What to do.
    pub verdict: Verdict,
    /// Headers to remove before the request goes upstream (an unsigned
    /// request's URL and method overrides, [`flow::UNSIGNED_STRIPPED_HEADERS`]).
    pub remove: Vec<&'static str>,
    /// The per-stream buffer limit the host must allow so that the body the
    /// filter holds (up to `max_body_bytes`) never hits Envoy's own `413`
    /// first; `None` when nothing is held.
    pub buffer_limit: Option<u64>,
    /// A claim the host must send to the nonce store
    /// ([`crate::config::FilterConfig::nonce_store`]) and whose answer it
    /// hands to [`Stream::on_claim_answer`]. If the call cannot be made, the
    /// host hands over [`ClaimAnswer::Unavailable`] at once.
    pub claim: Option<ClaimRequest>,
}

/// What waits for the nonce store's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parked {
    /// Nothing yet: the body is still being hashed.
    Nothing,
    /// The request headers (a request without a body, an upgrade, an
    /// unsigned payload), verified with this key and format.
    Headers(Signer),
    /// The end of a verified body, verified with this key and format.
    BodyEnd(Signer),
}

/// A nonce being claimed in the shared store.
#[derive(Debug)]
struct Pending {
    claim: NonceClaim,
    parked: Parked,
}

/// Where the request stream is.
#[derive(Debug, Default)]
enum Stage {
    /// Nothing held: data passes (no body, exempt, unsigned payload, or an
    /// accepted upgrade).
    #[default]
    Pass,
    /// The body check is running, with the key and format that verified
    /// the headers.
    Checking(BodyVerifier, Signer),
    /// A verified upgrade waits for the upstream's answer; request data is
    /// held until it accepts.
    AwaitingUpgrade {
        /// The request is a `CONNECT` (accepted by a 2xx, not only 101).
        connect: bool,
        /// Data was held and must be resumed on acceptance.
        held: bool,
    },
    /// The upstream refused the upgrade: request data is never forwarded.
    UpgradeRefused,
    /// A local reply was sent; later callbacks only drop data.
    Answered,
}

/// One request's state.
#[derive(Debug, Default)]
pub struct Stream {
    stage: Stage,
    pending: Option<Pending>,
}

impl Stream {
    /// A stream that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn reply(&mut self, reply: Reply, counters: &impl Counters) -> Verdict {
        if let Some(r) = reply.rejection {
            counters.count(Counter::Rejected(r.reason));
            if r.detail == Detail::ReplayCacheFull {
                counters.count(Counter::NonceCacheFull);
            }
        } else {
            counters.count(Counter::InternalError);
        }
        self.stage = Stage::Answered;
        self.pending = None;
        Verdict::Reply(reply)
    }

    /// The host could not give the filter its input: answer `500` and count
    /// it (fail closed).
    pub fn internal_error(&mut self, counters: &impl Counters) -> Verdict {
        self.reply(Reply::internal_error(), counters)
    }

    /// The request headers, at Unix time `now`; `end_of_stream` when there
    /// is no body. Nonces are claimed in `nonces`.
    pub fn on_request_headers(
        &mut self,
        config: &FilterConfig,
        head: &RequestHead<'_>,
        now: u64,
        end_of_stream: bool,
        nonces: &mut impl Nonces,
        counters: &impl Counters,
    ) -> HeadersOutcome {
        let outcome = |verdict| HeadersOutcome {
            verdict,
            remove: Vec::new(),
            buffer_limit: None,
            claim: None,
        };
        match flow::on_request_headers(config, head, now, end_of_stream, nonces) {
            HeadersDecision::Skip(skip) => {
                counters.count(match skip {
                    Skip::ExemptPath => Counter::Exempt,
                    Skip::CorsPreflight => Counter::CorsPreflight,
                });
                HeadersOutcome {
                    verdict: Verdict::Continue,
                    remove: flow::headers_to_strip(head),
                    buffer_limit: None,
                    claim: None,
                }
            }
            HeadersDecision::Reject(rejection) => {
                outcome(self.reply(Reply::rejected(rejection), counters))
            }
            HeadersDecision::Verified {
                key,
                body,
                unsigned_payload,
                format,
                claim,
            } => {
                if unsigned_payload {
                    counters.count(Counter::VerifiedUnsignedPayload);
                }
                let signer = Signer { key, format };
                let mut buffer_limit = None;
                // A claim holds the headers of a request whose data is not
                // held otherwise; a body being hashed is held at its end.
                let request = claim.as_ref().map(|c| ClaimRequest::of(&c.nonce));
                if let Some(claim) = claim {
                    counters.count(Counter::NonceStoreClaim);
                    let parked = match body {
                        Body::Check(_) => Parked::Nothing,
                        _ => Parked::Headers(signer),
                    };
                    self.pending = Some(Pending { claim, parked });
                }
                let held = self.pending.is_some();
                match body {
                    Body::Empty | Body::Unsigned => {
                        if !held {
                            verified(counters, signer);
                        }
                    }
                    Body::Upgrade { connect } => {
                        if !held {
                            verified(counters, signer);
                        }
                        counters.count(Counter::VerifiedUpgrade);
                        self.stage = Stage::AwaitingUpgrade {
                            connect,
                            held: false,
                        };
                    }
                    // The headers are authenticated and go upstream now; the
                    // body is held until its digest is checked (pausing the
                    // headers would hang under Envoy Gateway's wasm setup).
                    Body::Check(check) => {
                        buffer_limit = Some(config.buffer_limit());
                        self.stage = Stage::Checking(check, signer);
                    }
                }
                let verdict = match self.pending {
                    Some(Pending {
                        parked: Parked::Headers(_),
                        ..
                    }) => Verdict::Hold,
                    _ => Verdict::Continue,
                };
                HeadersOutcome {
                    verdict,
                    remove: Vec::new(),
                    buffer_limit,
                    claim: request,
                }
            }
        }
    }

    /// The nonce store's answer to the claim of [`HeadersOutcome::claim`],
    /// at Unix time `now`. `None`: nothing for the host to do now (the body
    /// is still arriving, or the request was answered meanwhile).
    /// `Some(Verdict::Continue)`: resume what was held. `Some(Verdict::Reply)`:
    /// send it. A fresh nonce, or one recorded locally under
    /// `on_unavailable: local`, enters this process's table.
    pub fn on_claim_answer(
        &mut self,
        config: &FilterConfig,
        answer: ClaimAnswer,
        now: u64,
        nonces: &mut impl Nonces,
        counters: &impl Counters,
    ) -> Option<Verdict> {
        let pending = self.pending.take()?;
        let claim = &pending.claim;
        match answer {
            ClaimAnswer::Fresh => {
                // The store is the authority: a full or failing local table
                // does not refuse a nonce it granted. A local replay means
                // another worker of this process won the same nonce.
                if let Err(ClaimError::Replayed) = nonces.claim(&claim.nonce, claim.timestamp, now)
                {
                    return Some(
                        self.reply(Reply::rejected(ClaimError::Replayed.rejection()), counters),
                    );
                }
            }
            ClaimAnswer::Replayed => {
                counters.count(Counter::NonceStoreReplayed);
                return Some(self.reply(
                    Reply::rejected(Rejection::new(
                        Reject::ReplayedRequest,
                        Detail::NonceStoreReplayed,
                    )),
                    counters,
                ));
            }
            ClaimAnswer::Unavailable => {
                counters.count(Counter::NonceStoreUnavailable);
                let local = config
                    .nonce_store
                    .as_ref()
                    .is_some_and(|s| s.on_unavailable == OnUnavailable::Local);
                if !local {
                    return Some(self.reply(
                        Reply::rejected(Rejection::new(
                            Reject::ReplayCacheUnavailable,
                            Detail::NonceStoreUnavailable,
                        )),
                        counters,
                    ));
                }
                counters.count(Counter::NonceStoreFallback);
                if let Err(err) = nonces.claim(&claim.nonce, claim.timestamp, now) {
                    return Some(self.reply(Reply::rejected(err.rejection()), counters));
                }
            }
        }
        match pending.parked {
            Parked::Nothing => None,
            Parked::Headers(signer) | Parked::BodyEnd(signer) => {
                verified(counters, signer);
                Some(Verdict::Continue)
            }
        }
    }

    fn headers_parked(&self) -> bool {
        matches!(
            self.pending,
            Some(Pending {
                parked: Parked::Headers(_),
                ..
            })
        )
    }

    /// True while a claim waits for the nonce store's answer.
    pub fn awaits_claim(&self) -> bool {
        self.pending.is_some()
    }

    /// How many body bytes the filter has already hashed: a host that is
    /// handed the whole buffer so far passes only what follows.
    pub fn body_bytes_seen(&self) -> u64 {
        match &self.stage {
            Stage::Checking(check, _) => check.received(),
            _ => 0,
        }
    }

    /// The verdict on a request body frame with `new_len` bytes not seen
    /// before, when it does not depend on the bytes themselves; `None` while
    /// the body is being hashed (then pass the bytes to
    /// [`Stream::on_request_body`]). Hosts ask this first, so a body that
    /// streams through (verified, unsigned payload, upgrade) is never read.
    pub fn on_request_body_unread(
        &mut self,
        new_len: usize,
        end_of_stream: bool,
    ) -> Option<Verdict> {
        if self.headers_parked() {
            // The headers wait for the nonce store: nothing passes them.
            return Some(Verdict::Hold);
        }
        match &mut self.stage {
            Stage::Pass => Some(Verdict::Continue),
            Stage::Answered | Stage::UpgradeRefused => Some(Verdict::Drop),
            // An empty data callback before the answer (Envoy 1.39 makes
            // one for an HTTP/1 upgrade) carries nothing to hold; pausing on
            // it would leave the upgraded stream stuck after the resume.
            Stage::AwaitingUpgrade { .. } if new_len == 0 && !end_of_stream => {
                Some(Verdict::Continue)
            }
            Stage::AwaitingUpgrade { held, .. } => {
                // Data before the upstream accepted the upgrade stays here
                // (an upstream that answers an ordinary response must never
                // read it as a next request).
                *held = true;
                Some(Verdict::Hold)
            }
            Stage::Checking(..) => None,
        }
    }

    /// Request body bytes not seen before (`new_bytes`); `end_of_stream`
    /// when they are the last.
    pub fn on_request_body(
        &mut self,
        new_bytes: &[u8],
        end_of_stream: bool,
        counters: &impl Counters,
    ) -> Verdict {
        if let Some(verdict) = self.on_request_body_unread(new_bytes.len(), end_of_stream) {
            return verdict;
        }
        let Stage::Checking(check, _) = &mut self.stage else {
            return Verdict::Continue;
        };
        if let Err(rejection) = check.update(new_bytes) {
            return self.reply(Reply::rejected(rejection), counters);
        }
        if end_of_stream {
            self.finish_body(counters)
        } else {
            Verdict::Hold
        }
    }

    /// The request trailers: the body has ended.
    pub fn on_request_trailers(&mut self, counters: &impl Counters) -> Verdict {
        if self.headers_parked() {
            return Verdict::Hold;
        }
        match &mut self.stage {
            Stage::Answered | Stage::UpgradeRefused => Verdict::Drop,
            // Held with the data before them, and resumed with it once the
            // upgrade is accepted.
            Stage::AwaitingUpgrade { held, .. } => {
                *held = true;
                Verdict::Hold
            }
            Stage::Pass | Stage::Checking(..) => self.finish_body(counters),
        }
    }

    fn finish_body(&mut self, counters: &impl Counters) -> Verdict {
        let Stage::Checking(check, signer) = core::mem::take(&mut self.stage) else {
            return Verdict::Continue;
        };
        match check.finish() {
            Ok(()) => {
                if let Some(pending) = &mut self.pending {
                    // The body is good; the nonce store has not answered yet.
                    pending.parked = Parked::BodyEnd(signer);
                    return Verdict::Hold;
                }
                verified(counters, signer);
                Verdict::Continue
            }
            Err(rejection) => self.reply(Reply::rejected(rejection), counters),
        }
    }

    /// True while an upgrade waits for the upstream's answer: only then does
    /// [`Stream::on_response_headers`] need the response's `:status` (hosts
    /// skip reading it for every other request).
    pub fn awaits_response_status(&self) -> bool {
        matches!(self.stage, Stage::AwaitingUpgrade { .. })
    }

    /// The response headers' `:status` (0 when unreadable): true when the
    /// host must resume request data it held for an upgrade now accepted.
    pub fn on_response_headers(&mut self, status: u32) -> bool {
        let Stage::AwaitingUpgrade { connect, held } = self.stage else {
            return false;
        };
        if flow::upgrade_accepted(connect, status) {
            self.stage = Stage::Pass;
            held
        } else {
            self.stage = Stage::UpgradeRefused;
            false
        }
    }

    /// True when the filter answered the request itself.
    pub fn answered(&self) -> bool {
        matches!(self.stage, Stage::Answered)
    }
}

/// What verified a request's headers: the key's slot and the wire format
/// (counted once the whole request is verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signer {
    key: KeyUsed,
    format: Format,
}

fn verified(counters: &impl Counters, signer: Signer) {
    counters.count(Counter::Verified);
    counters.count(Counter::VerifiedKey(signer.key));
    counters.count(Counter::VerifiedFormat(signer.format));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::tests::{NOW, config, signed_payload};
    use crate::metrics::CountingSink;
    use crate::replay::MemoryStore;
    use crate::scheme::{Payload, Reject, sha256};

    fn signed(method: &str, path: &str, body: Option<&[u8]>) -> Vec<(String, String)> {
        signed_payload(method, path, body.map(|b| Payload::Sha256(sha256(b))), None)
    }

    fn headers(
        s: &mut Stream,
        cfg: &FilterConfig,
        pairs: &[(String, String)],
        eos: bool,
        counters: &CountingSink,
    ) -> HeadersOutcome {
        let mut store = MemoryStore::default();
        cfg.replay.register(&mut store, 0).unwrap();
        let head = RequestHead::from_string_pairs(pairs);
        s.on_request_headers(
            cfg,
            &head,
            NOW,
            eos,
            &mut cfg.replay.shared(&mut store),
            counters,
        )
    }

    /// A signed body is held chunk by chunk and released at the end; the
    /// counters say verified with the current key; the host is told to
    /// allow the body in its buffer.
    #[test]
    fn a_body_is_held_then_released() {
        let cfg = config("");
        let c = CountingSink::default();
        let mut s = Stream::new();
        let out = headers(
            &mut s,
            &cfg,
            &signed("POST", "/x", Some(b"hello")),
            false,
            &c,
        );
        assert_eq!(out.verdict, Verdict::Continue);
        assert_eq!(out.buffer_limit, Some(cfg.buffer_limit()));
        assert_eq!(s.on_request_body(b"hel", false, &c), Verdict::Hold);
        assert_eq!(s.body_bytes_seen(), 3);
        assert_eq!(s.on_request_body(b"lo", true, &c), Verdict::Continue);
        assert_eq!(c.get(Counter::Verified), 1);
        assert_eq!(c.get(Counter::VerifiedKey(KeyUsed::Current)), 1);
        assert_eq!(c.get(Counter::VerifiedFormat(Format::V1)), 1);
        assert_eq!(c.get(Counter::VerifiedFormat(Format::Rfc9421)), 0);
    }

    /// A tampered body is answered `401 content_mismatch` (counted), and
    /// nothing after it is forwarded.
    #[test]
    fn a_tampered_body_is_answered() {
        let cfg = config("");
        let c = CountingSink::default();
        let mut s = Stream::new();
        headers(
            &mut s,
            &cfg,
            &signed("POST", "/x", Some(b"hello")),
            false,
            &c,
        );
        let Verdict::Reply(reply) = s.on_request_body(b"jello", true, &c) else {
            panic!("no reply")
        };
        assert_eq!(
            (reply.status, reply.body),
            (401, r#"{"error":"content_mismatch"}"#)
        );
        assert!(
            reply
                .log_line()
                .unwrap()
                .starts_with("edge-hmac: rejected content_mismatch")
        );
        assert_eq!(c.get(Counter::Rejected(Reject::ContentMismatch)), 1);
        assert_eq!(c.get(Counter::Verified), 0);
        assert_eq!(s.on_request_body(b"more", true, &c), Verdict::Drop);
        assert_eq!(s.on_request_trailers(&c), Verdict::Drop);
    }

    /// Unsigned requests are answered at the headers; exempt ones pass with
    /// their override headers listed for removal.
    #[test]
    fn refusals_and_skips_at_the_headers() {
        let cfg = config(r#","exempt_paths":["/healthz"]"#);
        let c = CountingSink::default();
        let unsigned = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), "/v1".to_owned()),
        ];
        let out = headers(&mut Stream::new(), &cfg, &unsigned, true, &c);
        assert!(matches!(
            out.verdict,
            Verdict::Reply(Reply { status: 401, .. })
        ));
        assert_eq!(c.get(Counter::Rejected(Reject::MissingSignature)), 1);
        let exempt = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), "/healthz".to_owned()),
            ("x-original-url".to_owned(), "/admin".to_owned()),
        ];
        let out = headers(&mut Stream::new(), &cfg, &exempt, true, &c);
        assert_eq!(out.verdict, Verdict::Continue);
        assert_eq!(out.remove, ["x-original-url"]);
        assert_eq!(c.get(Counter::Exempt), 1);
    }

    /// An upgrade holds request data until the upstream accepts (then the
    /// host resumes it) and drops it when the upstream refuses.
    #[test]
    fn upgrades_wait_for_the_upstream() {
        let cfg = config("");
        let c = CountingSink::default();
        let mut ws = signed("GET", "/ws", None);
        ws.push(("connection".into(), "upgrade".into()));
        ws.push(("upgrade".into(), "websocket".into()));
        let mut s = Stream::new();
        assert_eq!(
            headers(&mut s, &cfg, &ws, false, &c).verdict,
            Verdict::Continue
        );
        assert_eq!(c.get(Counter::VerifiedUpgrade), 1);
        // An empty data callback holds nothing (Envoy 1.39 makes one).
        assert_eq!(s.on_request_body(b"", false, &c), Verdict::Continue);
        assert_eq!(s.on_request_body(b"frame", false, &c), Verdict::Hold);
        assert!(s.on_response_headers(101));
        assert_eq!(s.on_request_body(b"frame", false, &c), Verdict::Continue);
        let mut refused = Stream::new();
        headers(&mut refused, &cfg, &ws, false, &c);
        assert!(!refused.on_response_headers(403));
        assert_eq!(refused.on_request_body(b"frame", false, &c), Verdict::Drop);
        // Trailers before the answer are held too, and resumed with it.
        let mut trailers = Stream::new();
        headers(&mut trailers, &cfg, &ws, false, &c);
        assert!(trailers.awaits_response_status());
        assert_eq!(trailers.on_request_trailers(&c), Verdict::Hold);
        assert!(trailers.on_response_headers(101));
        assert!(!trailers.awaits_response_status());
        // A frame's verdict without its bytes, outside the body check.
        assert_eq!(
            trailers.on_request_body_unread(5, false),
            Some(Verdict::Continue)
        );
        let mut checking = Stream::new();
        headers(
            &mut checking,
            &cfg,
            &signed("POST", "/x", Some(b"abc")),
            false,
            &c,
        );
        assert_eq!(checking.on_request_body_unread(3, true), None);
    }

    /// A refusal's gRPC status is the one Envoy gives the same HTTP status.
    #[test]
    fn grpc_statuses() {
        let of = |reason| Reply::rejected(Rejection::new(reason, Detail::NonceSeen)).grpc_status();
        assert_eq!(of(Reject::InvalidSignature), "16");
        assert_eq!(of(Reject::ReplayCacheUnavailable), "14");
        assert_eq!(of(Reject::BodyTooLarge), "2");
        assert_eq!(Reply::internal_error().grpc_status(), "2");
    }

    /// An internal error is a counted `500`.
    #[test]
    fn internal_errors_fail_closed() {
        let c = CountingSink::default();
        let mut s = Stream::new();
        assert_eq!(
            s.internal_error(&c),
            Verdict::Reply(Reply::internal_error())
        );
        assert_eq!(c.get(Counter::InternalError), 1);
        assert!(s.answered());
    }

    /// Store tests: a stream, its config with a nonce store, one shared
    /// local table.
    struct Store {
        cfg: FilterConfig,
        table: MemoryStore,
        c: CountingSink,
    }

    impl Store {
        fn new(on_unavailable: &str) -> Self {
            let cfg = config(&format!(
                r#","nonce_store":{{"cluster":"store","on_unavailable":"{on_unavailable}"}}"#
            ));
            let mut table = MemoryStore::default();
            cfg.replay.register(&mut table, 0).unwrap();
            Self {
                cfg,
                table,
                c: CountingSink::default(),
            }
        }

        fn headers(
            &mut self,
            s: &mut Stream,
            pairs: &[(String, String)],
            eos: bool,
        ) -> HeadersOutcome {
            let head = RequestHead::from_string_pairs(pairs);
            s.on_request_headers(
                &self.cfg,
                &head,
                NOW,
                eos,
                &mut self.cfg.replay.shared(&mut self.table),
                &self.c,
            )
        }

        fn answer(&mut self, s: &mut Stream, answer: ClaimAnswer) -> Option<Verdict> {
            s.on_claim_answer(
                &self.cfg,
                answer,
                NOW,
                &mut self.cfg.replay.shared(&mut self.table),
                &self.c,
            )
        }
    }

    fn get_with_nonce(nonce: &str) -> Vec<(String, String)> {
        signed_payload("GET", "/x", None, Some(nonce))
    }

    /// Under a store, a GET with a nonce is held while the store is asked
    /// (the claim carries the nonce's SHA-256), resumed on `fresh` and
    /// counted verified only then; the nonce then sits in the local table,
    /// so a second use is refused with no claim sent.
    #[test]
    fn a_fresh_nonce_is_held_then_resumed_and_remembered() {
        let mut st = Store::new("refuse");
        let mut s = Stream::new();
        let out = st.headers(&mut s, &get_with_nonce("store-nonce-000000001"), true);
        assert_eq!(out.verdict, Verdict::Hold);
        assert_eq!(out.claim, Some(ClaimRequest::of("store-nonce-000000001")));
        assert_eq!(st.c.get(Counter::NonceStoreClaim), 1);
        assert_eq!(st.c.get(Counter::Verified), 0);
        assert!(s.awaits_claim());
        assert_eq!(s.on_request_trailers(&st.c), Verdict::Hold);
        assert_eq!(
            st.answer(&mut s, ClaimAnswer::Fresh),
            Some(Verdict::Continue)
        );
        assert_eq!(st.c.get(Counter::Verified), 1);
        assert!(!s.awaits_claim());

        let mut again = Stream::new();
        let out = st.headers(&mut again, &get_with_nonce("store-nonce-000000001"), true);
        let Verdict::Reply(reply) = out.verdict else {
            panic!("{out:?}")
        };
        assert_eq!(reply.status, 401);
        assert_eq!(reply.rejection.unwrap().detail, Detail::NonceSeen);
        assert_eq!(out.claim, None);
        assert_eq!(st.c.get(Counter::NonceStoreClaim), 1);
    }

    /// The store's `replayed` is `401 replayed_request` (counted), and the
    /// nonce does not enter the local table... nor does an unanswered one.
    #[test]
    fn a_replay_found_by_the_store_is_refused() {
        let mut st = Store::new("refuse");
        let mut s = Stream::new();
        st.headers(&mut s, &get_with_nonce("store-nonce-000000002"), true);
        let Some(Verdict::Reply(reply)) = st.answer(&mut s, ClaimAnswer::Replayed) else {
            panic!("no reply")
        };
        assert_eq!(
            (reply.status, reply.body),
            (401, r#"{"error":"replayed_request"}"#)
        );
        assert_eq!(reply.rejection.unwrap().detail, Detail::NonceStoreReplayed);
        assert_eq!(st.c.get(Counter::NonceStoreReplayed), 1);
        assert_eq!(st.c.get(Counter::Rejected(Reject::ReplayedRequest)), 1);
        assert!(s.answered());
        assert!(
            !st.cfg
                .replay
                .seen(&mut st.table, "store-nonce-000000002", NOW)
                .unwrap()
        );
    }

    /// Unavailable (the default `refuse`): `503 replay_cache_unavailable`
    /// with `Retry-After`, counted, nonce not used up locally so nothing is
    /// lost; a late answer after a reply changes nothing.
    #[test]
    fn an_unavailable_store_fails_closed() {
        let mut st = Store::new("refuse");
        let mut s = Stream::new();
        st.headers(&mut s, &get_with_nonce("store-nonce-000000003"), true);
        let Some(Verdict::Reply(reply)) = st.answer(&mut s, ClaimAnswer::Unavailable) else {
            panic!("no reply")
        };
        assert_eq!(reply.status, 503);
        assert_eq!(reply.retry_after, Some("1"));
        assert_eq!(
            reply.rejection.unwrap().detail,
            Detail::NonceStoreUnavailable
        );
        assert_eq!(st.c.get(Counter::NonceStoreUnavailable), 1);
        assert_eq!(st.c.get(Counter::NonceStoreFallback), 0);
        assert_eq!(st.c.get(Counter::Verified), 0);
        assert_eq!(st.answer(&mut s, ClaimAnswer::Fresh), None);
        assert!(
            !st.cfg
                .replay
                .seen(&mut st.table, "store-nonce-000000003", NOW)
                .unwrap()
        );
    }

    /// `on_unavailable: local` accepts on the local table (counted as a
    /// fallback) and still refuses a local replay.
    #[test]
    fn local_fallback_uses_the_process_table() {
        let mut st = Store::new("local");
        let mut s = Stream::new();
        st.headers(&mut s, &get_with_nonce("store-nonce-000000004"), true);
        assert_eq!(
            st.answer(&mut s, ClaimAnswer::Unavailable),
            Some(Verdict::Continue)
        );
        assert_eq!(st.c.get(Counter::NonceStoreFallback), 1);
        assert_eq!(st.c.get(Counter::Verified), 1);
        let mut again = Stream::new();
        let out = st.headers(&mut again, &get_with_nonce("store-nonce-000000004"), true);
        assert!(
            matches!(out.verdict, Verdict::Reply(r) if r.status == 401),
            "{out:?}"
        );
    }

    /// A POST's headers go on at once (its body is held anyway); the end of
    /// a good body waits for the store, whichever comes first; a tampered
    /// body is answered without waiting.
    #[test]
    fn a_body_waits_for_the_claim_at_its_end() {
        let mut st = Store::new("refuse");
        let body = b"hello";
        let post = |nonce| {
            signed_payload(
                "POST",
                "/x",
                Some(Payload::Sha256(sha256(body))),
                Some(nonce),
            )
        };
        // Body first, then the answer.
        let mut s = Stream::new();
        let out = st.headers(&mut s, &post("store-nonce-000000005"), false);
        assert_eq!(out.verdict, Verdict::Continue);
        assert!(out.claim.is_some());
        assert_eq!(s.on_request_body(body, true, &st.c), Verdict::Hold);
        assert_eq!(st.c.get(Counter::Verified), 0);
        assert_eq!(
            st.answer(&mut s, ClaimAnswer::Fresh),
            Some(Verdict::Continue)
        );
        assert_eq!(st.c.get(Counter::Verified), 1);
        // The answer first, then the body.
        let mut s = Stream::new();
        st.headers(&mut s, &post("store-nonce-000000006"), false);
        assert_eq!(st.answer(&mut s, ClaimAnswer::Fresh), None);
        assert_eq!(s.on_request_body(body, true, &st.c), Verdict::Continue);
        assert_eq!(st.c.get(Counter::Verified), 2);
        // A tampered body is refused before the store answers.
        let mut s = Stream::new();
        st.headers(&mut s, &post("store-nonce-000000007"), false);
        assert!(matches!(
            s.on_request_body(b"jello", true, &st.c),
            Verdict::Reply(r) if r.status == 401
        ));
        assert_eq!(st.answer(&mut s, ClaimAnswer::Fresh), None);
    }

    /// Requests without a nonce never ask the store.
    #[test]
    fn no_nonce_no_claim() {
        let mut st = Store::new("refuse");
        let mut s = Stream::new();
        let out = st.headers(&mut s, &signed("GET", "/x", None), true);
        assert_eq!((out.verdict, out.claim), (Verdict::Continue, None));
        assert_eq!(st.c.get(Counter::NonceStoreClaim), 0);
    }
}
