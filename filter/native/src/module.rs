//! The safe glue of the native host: a configuration compiled once and
//! shared by every worker ([`ModuleConfig`]), a [`Filter`] per request that
//! drives the core's [`Stream`], and the [`Host`] / [`ConfigHost`] traits
//! through which they ask Envoy for anything. No `unsafe` here; the `ffi`
//! module implements the traits over the ABI, the tests over a fake.

use std::sync::Arc;

use edge_hmac_core::config::{self, ConfigError, FilterConfig};
use edge_hmac_core::metrics::{COUNTERS, Counter, Counters, key_gauge_name};
use edge_hmac_core::replay::native::{Holder, ProcessTables};
use edge_hmac_core::scheme::RequestHead;
use edge_hmac_core::store::ClaimAnswer;
use edge_hmac_core::stream::{Reply, Stream, Verdict};

/// Log levels, as Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Per-request detail (refusal reasons).
    Debug,
    /// Start-up and configuration lines.
    Info,
    /// Something the operator should look at.
    Warn,
    /// A request failed in the filter itself.
    Error,
    /// The filter cannot work (configuration refused, a contained panic).
    Critical,
}

/// What the configuration hooks ask of Envoy.
pub trait ConfigHost {
    /// Defines counter `name`; its id, or `None` if Envoy refused.
    fn define_counter(&self, name: &str) -> Option<usize>;
    /// Defines gauge `name`; its id, or `None` if Envoy refused.
    fn define_gauge(&self, name: &str) -> Option<usize>;
    /// Adds `delta` (±1) to gauge `id`.
    fn add_to_gauge(&self, id: usize, delta: i64);
    /// Writes `message` to Envoy's log at `level`.
    fn log(&self, level: Level, message: &str);
}

/// What the per-request hooks ask of Envoy for their stream.
pub trait Host {
    /// Every request header entry (pseudo-headers included, duplicates as
    /// separate entries, bytes as Envoy holds them).
    fn request_headers(&self) -> Vec<(&[u8], &[u8])>;
    /// Whether the downstream connection is TLS (`None`: cannot tell).
    fn downstream_tls(&self) -> Option<bool>;
    /// Removes request header `name`; false when Envoy refused. (`&mut`:
    /// the slices [`Host::request_headers`] lent point into the header map
    /// this changes, so none may be alive.)
    fn remove_request_header(&mut self, name: &str) -> bool;
    /// Sends `reply` as the local response; `grpc` when the request is a
    /// gRPC call (the reply then carries its gRPC status).
    fn send_reply(&self, reply: &Reply, grpc: bool);
    /// Makes sure the stream may buffer at least `limit` bytes.
    fn raise_buffer_limit(&self, limit: u64);
    /// How many request body bytes there are so far (what
    /// [`Host::request_body`] would return, without reading it).
    fn request_body_len(&self) -> usize;
    /// The request body bytes so far, in order: the buffered ones, then the
    /// frame being delivered (once, when that frame is the buffer itself).
    fn request_body(&self) -> Vec<&[u8]>;
    /// The response `:status` (0 when unreadable).
    fn response_status(&self) -> u32;
    /// Resumes request data held earlier.
    fn continue_request(&self);
    /// Sends an HTTP call with `headers` and no body to Envoy cluster
    /// `cluster`, answered within `timeout_ms` through
    /// [`Filter::on_claim_answer`]; false when Envoy refused to send it.
    fn send_call(&self, cluster: &str, headers: &[(&str, &str)], timeout_ms: u64) -> bool;
    /// Adds one to `counter`.
    fn count(&self, counter: Counter);
    /// True when a line at `level` would be written.
    fn log_enabled(&self, level: Level) -> bool;
    /// Writes `message` at `level`.
    fn log(&self, level: Level, message: &str);
}

/// The configuration every request of one filter instance shares (across
/// all workers: it is immutable but for the replay tables, which are a
/// concurrent structure).
#[derive(Debug)]
pub struct ModuleConfig {
    /// The compiled configuration (keys prepared once).
    pub config: FilterConfig,
    /// This configuration's hold on the process's replay tables.
    pub nonces: Holder,
    /// Envoy's counter id for each [`Counter`], at its index.
    pub counters: [Option<usize>; COUNTERS],
    /// The key gauges this configuration raised.
    pub key_gauges: Vec<usize>,
}

impl ModuleConfig {
    /// Compiles `raw` (the wasm plugin's JSON) with keys from `env`, defines
    /// the counters and raises the key gauges; any error refuses the
    /// configuration (fail closed).
    pub fn new(
        raw: &[u8],
        env: impl Fn(&str) -> Option<String>,
        now: u64,
        host: &impl ConfigHost,
    ) -> Result<Self, ConfigError> {
        let config = config::compile(raw, env)?;
        let counters = Counter::ALL.map(|c| {
            let id = host.define_counter(&c.name());
            if id.is_none() {
                host.log(
                    Level::Warn,
                    &format!("edge-hmac: cannot define metric {}", c.name()),
                );
            }
            id
        });
        let key_gauges = config
            .verifier
            .fingerprints()
            .iter()
            .filter_map(|(slot, fp)| host.define_gauge(&key_gauge_name(*slot, fp)))
            .collect::<Vec<_>>();
        for &id in &key_gauges {
            host.add_to_gauge(id, 1);
        }
        let nonces = ProcessTables::global().register(&config.replay, now);
        host.log(
            Level::Info,
            &format!("edge-hmac: configured: {}", config.summary()),
        );
        Ok(Self {
            config,
            nonces,
            counters,
            key_gauges,
        })
    }

    /// The configuration is going away: lower its key gauges and let go of
    /// its replay table (consulted until its nonces are stale).
    pub fn release(self, now: u64, host: &impl ConfigHost) {
        for &id in &self.key_gauges {
            host.add_to_gauge(id, -1);
        }
        self.nonces.release(now);
    }
}

/// How a hook answers Envoy (mapped to each hook's status codes by `ffi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Go on.
    Continue,
    /// Stop here (a local reply was sent).
    Stop,
    /// Keep the data in Envoy's buffer; it goes on later.
    Buffer,
    /// Keep the data back and drop it.
    Discard,
}

/// One request.
#[derive(Debug)]
pub struct Filter {
    config: Arc<ModuleConfig>,
    stream: Stream,
    /// The request is a gRPC call.
    grpc: bool,
}

/// The host as the core's counter sink.
struct Sink<'h, H>(&'h H);

impl<H: Host> Counters for Sink<'_, H> {
    fn count(&self, counter: Counter) {
        self.0.count(counter);
    }
}

impl Filter {
    /// A request of `config`.
    pub fn new(config: Arc<ModuleConfig>) -> Self {
        Self {
            config,
            stream: Stream::new(),
            grpc: false,
        }
    }

    /// Carries out `verdict`.
    fn act(&self, host: &impl Host, verdict: Verdict) -> Status {
        match verdict {
            Verdict::Continue => Status::Continue,
            Verdict::Hold => Status::Buffer,
            Verdict::Drop => Status::Discard,
            Verdict::Reply(reply) => {
                // The line is formatted only when it would be written.
                if host.log_enabled(Level::Debug)
                    && let Some(line) = reply.log_line()
                {
                    host.log(Level::Debug, &line);
                }
                host.send_reply(&reply, self.grpc);
                Status::Stop
            }
        }
    }

    /// The request headers (`end_of_stream`: no body follows).
    pub fn on_request_headers(&mut self, host: &mut impl Host, end_of_stream: bool) -> Status {
        let config = &self.config;
        let outcome = {
            let pairs = host.request_headers();
            #[cfg(feature = "panic-test")]
            if pairs
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(b"x-edge-hmac-test-panic"))
            {
                #[allow(clippy::panic)]
                {
                    panic!("edge-hmac: test panic requested by the request");
                }
            }
            let mut head = RequestHead::from_pairs(&pairs);
            self.grpc = head.grpc;
            if head.has_rfc9421() {
                head.tls = host.downstream_tls();
            }
            self.stream.on_request_headers(
                &config.config,
                &head,
                now_unix(),
                end_of_stream,
                &mut &config.nonces,
                &Sink(host),
            )
        };
        for name in &outcome.remove {
            if !host.remove_request_header(name) {
                host.log(Level::Error, &format!("edge-hmac: cannot remove {name}"));
                let verdict = self.stream.internal_error(&Sink(host));
                return self.act(host, verdict);
            }
        }
        if let Some(limit) = outcome.buffer_limit {
            host.raise_buffer_limit(limit);
        }
        if let Some(claim) = &outcome.claim
            && let Some(store) = &self.config.config.nonce_store
            && !host.send_call(&store.cluster, &store.headers(claim), store.timeout_ms)
        {
            host.log(
                Level::Warn,
                &format!(
                    "edge-hmac: cannot call the nonce store (cluster {})",
                    store.cluster
                ),
            );
            if let Some(verdict) = self.answer(host, ClaimAnswer::Unavailable) {
                return self.act(host, verdict);
            }
        }
        self.act(host, outcome.verdict)
    }

    fn answer(&mut self, host: &impl Host, answer: ClaimAnswer) -> Option<Verdict> {
        let config = &self.config;
        self.stream.on_claim_answer(
            &config.config,
            answer,
            now_unix(),
            &mut &config.nonces,
            &Sink(host),
        )
    }

    /// The nonce store's answer (the call's `:status` and
    /// `x-edge-hmac-claim`, `None` when the call failed): resumes what was
    /// held, or answers the request.
    pub fn on_claim_answer(
        &mut self,
        host: &mut impl Host,
        status: Option<&[u8]>,
        claim: Option<&[u8]>,
    ) {
        match self.answer(host, ClaimAnswer::from_response(status, claim)) {
            Some(Verdict::Continue) => host.continue_request(),
            Some(verdict @ Verdict::Reply(_)) => {
                self.act(host, verdict);
            }
            Some(Verdict::Hold | Verdict::Drop) | None => {}
        }
    }

    /// A request body frame (`end_of_stream`: the last).
    pub fn on_request_body(&mut self, host: &mut impl Host, end_of_stream: bool) -> Status {
        let seen = usize::try_from(self.stream.body_bytes_seen()).unwrap_or(usize::MAX);
        let new_len = host.request_body_len().saturating_sub(seen);
        if let Some(verdict) = self.stream.on_request_body_unread(new_len, end_of_stream) {
            return self.act(host, verdict);
        }
        let verdict = {
            // Everything so far, minus what was hashed already.
            let mut skip = seen;
            let mut new_bytes: Vec<&[u8]> = Vec::new();
            for chunk in host.request_body() {
                if skip >= chunk.len() {
                    skip -= chunk.len();
                    continue;
                }
                new_bytes.push(chunk.get(skip..).unwrap_or_default());
                skip = 0;
            }
            let mut verdict = Verdict::Continue;
            let last = new_bytes.len();
            if last == 0 {
                verdict = self.stream.on_request_body(&[], end_of_stream, &Sink(host));
            }
            for (i, bytes) in new_bytes.into_iter().enumerate() {
                verdict =
                    self.stream
                        .on_request_body(bytes, end_of_stream && i + 1 == last, &Sink(host));
                if matches!(verdict, Verdict::Reply(_) | Verdict::Drop) {
                    break;
                }
            }
            verdict
        };
        self.act(host, verdict)
    }

    /// The request trailers: the body has ended.
    pub fn on_request_trailers(&mut self, host: &mut impl Host) -> Status {
        let verdict = self.stream.on_request_trailers(&Sink(host));
        self.act(host, verdict)
    }

    /// The response headers: an upgrade accepted releases the request data
    /// held for it.
    pub fn on_response_headers(&mut self, host: &mut impl Host) -> Status {
        if self.stream.awaits_response_status()
            && self.stream.on_response_headers(host.response_status())
        {
            host.continue_request();
        }
        Status::Continue
    }

    /// A request hook panicked (contained by `ffi`): answer `500` unless a
    /// reply was already sent, and keep the rest of the request back.
    pub fn failed(&mut self, host: &mut impl Host) -> Status {
        if self.stream.answered() {
            return Status::Discard;
        }
        host.log(
            Level::Critical,
            "edge-hmac: a panic in the filter was contained; the request is answered 500",
        );
        let verdict = self.stream.internal_error(&Sink(host));
        self.act(host, verdict)
    }
}

/// Unix time in seconds from the process clock (0 before the epoch: every
/// timestamp is then stale, failing closed).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_hmac_core::scheme::{
        Payload, Reject, SecretKey, SignRequest, Signer, TagEncoding, sha256,
    };
    use std::cell::RefCell;

    const SECRET: &str = "native-glue-secret-native-glue-secret-1";

    #[derive(Default)]
    struct FakeConfigHost {
        gauges: RefCell<Vec<(String, i64)>>,
        lines: RefCell<Vec<String>>,
    }

    impl ConfigHost for FakeConfigHost {
        fn define_counter(&self, _name: &str) -> Option<usize> {
            Some(0)
        }
        fn define_gauge(&self, name: &str) -> Option<usize> {
            let mut g = self.gauges.borrow_mut();
            g.push((name.to_owned(), 0));
            Some(g.len() - 1)
        }
        fn add_to_gauge(&self, id: usize, delta: i64) {
            self.gauges.borrow_mut()[id].1 += delta;
        }
        fn log(&self, _level: Level, message: &str) {
            self.lines.borrow_mut().push(message.to_owned());
        }
    }

    /// A stream as Envoy would show it to the hooks.
    #[derive(Default)]
    struct FakeHost {
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Vec<Vec<u8>>,
        replies: RefCell<Vec<Reply>>,
        removed: RefCell<Vec<String>>,
        limit: RefCell<u64>,
        status: u32,
        resumed: RefCell<bool>,
        counts: RefCell<Vec<Counter>>,
        /// How often the body's bytes were read.
        body_reads: RefCell<usize>,
        /// Calls sent: cluster, headers, timeout.
        calls: RefCell<Vec<(String, Vec<String>, u64)>>,
        /// Envoy refuses to send calls.
        call_refused: bool,
    }

    impl Host for FakeHost {
        fn request_headers(&self) -> Vec<(&[u8], &[u8])> {
            self.headers
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .collect()
        }
        fn downstream_tls(&self) -> Option<bool> {
            Some(false)
        }
        fn remove_request_header(&mut self, name: &str) -> bool {
            self.removed.borrow_mut().push(name.to_owned());
            true
        }
        fn send_reply(&self, reply: &Reply, _grpc: bool) {
            self.replies.borrow_mut().push(*reply);
        }
        fn raise_buffer_limit(&self, limit: u64) {
            *self.limit.borrow_mut() = limit;
        }
        fn request_body_len(&self) -> usize {
            self.body.iter().map(Vec::len).sum()
        }
        fn request_body(&self) -> Vec<&[u8]> {
            *self.body_reads.borrow_mut() += 1;
            self.body.iter().map(Vec::as_slice).collect()
        }
        fn response_status(&self) -> u32 {
            self.status
        }
        fn continue_request(&self) {
            *self.resumed.borrow_mut() = true;
        }
        fn send_call(&self, cluster: &str, headers: &[(&str, &str)], timeout_ms: u64) -> bool {
            self.calls.borrow_mut().push((
                cluster.to_owned(),
                headers.iter().map(|(n, v)| format!("{n}: {v}")).collect(),
                timeout_ms,
            ));
            !self.call_refused
        }
        fn count(&self, counter: Counter) {
            self.counts.borrow_mut().push(counter);
        }
        fn log_enabled(&self, _level: Level) -> bool {
            true
        }
        fn log(&self, _level: Level, _message: &str) {}
    }

    fn config(extra: &str) -> (Arc<ModuleConfig>, FakeConfigHost) {
        let raw = format!(r#"{{"environment":"dev"{extra}}}"#);
        let host = FakeConfigHost::default();
        let env = |k: &str| (k == "HMAC_SECRET").then(|| SECRET.to_owned());
        let cfg = ModuleConfig::new(raw.as_bytes(), env, now_unix(), &host).unwrap();
        (Arc::new(cfg), host)
    }

    fn signed(method: &str, path: &str, body: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        signed_payload(method, path, body.map(|b| Payload::Sha256(sha256(b))), None)
    }

    fn signed_payload(
        method: &str,
        path: &str,
        payload: Option<Payload>,
        nonce: Option<&str>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let signer =
            Signer::new(SecretKey::new(SECRET.as_bytes(), "current").unwrap(), "dev").unwrap();
        let h = signer
            .sign(
                &SignRequest {
                    method,
                    authority: "h",
                    path,
                    timestamp: now_unix(),
                    nonce,
                    payload,
                },
                TagEncoding::Hex,
            )
            .unwrap();
        let mut out = vec![
            (b":method".to_vec(), method.as_bytes().to_vec()),
            (b":authority".to_vec(), b"h".to_vec()),
            (b":path".to_vec(), path.as_bytes().to_vec()),
        ];
        out.extend(
            h.pairs()
                .into_iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
        out
    }

    /// The configuration raises one gauge per key and lowers it on release;
    /// a bad configuration is refused with the core's error.
    #[test]
    fn configuration_lifecycle() {
        let (cfg, host) = config("");
        assert_eq!(host.gauges.borrow().len(), 1);
        assert!(
            host.gauges.borrow()[0]
                .0
                .starts_with("edge_hmac.key.current.")
        );
        assert_eq!(host.gauges.borrow()[0].1, 1);
        assert!(host.lines.borrow()[0].starts_with("edge-hmac: configured: environment=dev"));
        Arc::try_unwrap(cfg).unwrap().release(now_unix(), &host);
        assert_eq!(host.gauges.borrow()[0].1, 0);
        let err = ModuleConfig::new(br#"{"nope":1}"#, |_| None, 0, &host).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    /// Envoy hands the body as buffered chunks then the current frame, and
    /// on the last call everything may be in the buffer: each byte is hashed
    /// once, held until the end, then released.
    #[test]
    fn body_frames_are_hashed_once() {
        let (cfg, _) = config("");
        let mut host = FakeHost {
            headers: signed("POST", "/x", Some(b"hello world")),
            ..FakeHost::default()
        };
        let mut f = Filter::new(cfg);
        assert_eq!(f.on_request_headers(&mut host, false), Status::Continue);
        assert!(*host.limit.borrow() >= 1024 * 1024);
        host.body.push(b"hello".to_vec());
        assert_eq!(f.on_request_body(&mut host, false), Status::Buffer);
        host.body.push(b" wor".to_vec());
        assert_eq!(f.on_request_body(&mut host, false), Status::Buffer);
        // The final call: the last frame already moved into the buffer.
        host.body.push(b"ld".to_vec());
        assert_eq!(f.on_request_body(&mut host, true), Status::Continue);
        assert!(host.replies.borrow().is_empty());
        assert!(host.counts.borrow().contains(&Counter::Verified));
    }

    /// A tampered body gets the core's reply and is discarded.
    #[test]
    fn tampered_body_is_answered() {
        let (cfg, _) = config("");
        let mut host = FakeHost {
            headers: signed("POST", "/x", Some(b"hello")),
            ..FakeHost::default()
        };
        let mut f = Filter::new(cfg);
        f.on_request_headers(&mut host, false);
        host.body.push(b"jello".to_vec());
        assert_eq!(f.on_request_body(&mut host, true), Status::Stop);
        let reply = host.replies.borrow()[0];
        assert_eq!(reply.status, 401);
        assert_eq!(reply.rejection.unwrap().reason, Reject::ContentMismatch);
        assert_eq!(f.on_request_trailers(&mut host), Status::Discard);
    }

    /// After a contained panic the request is answered 500 once.
    #[test]
    fn a_failure_answers_500_once() {
        let (cfg, _) = config("");
        let mut host = FakeHost::default();
        let mut f = Filter::new(cfg);
        assert_eq!(f.failed(&mut host), Status::Stop);
        assert_eq!(host.replies.borrow()[0].status, 500);
        assert_eq!(f.failed(&mut host), Status::Discard);
        assert_eq!(host.replies.borrow().len(), 1);
        assert!(host.counts.borrow().contains(&Counter::InternalError));
    }

    /// Exempt requests lose their override headers.
    #[test]
    fn exempt_requests_lose_override_headers() {
        let (cfg, _) = config(r#","exempt_paths":["/healthz"]"#);
        let mut host = FakeHost {
            headers: vec![
                (b":method".to_vec(), b"GET".to_vec()),
                (b":path".to_vec(), b"/healthz".to_vec()),
                (b"x-http-method-override".to_vec(), b"DELETE".to_vec()),
            ],
            ..FakeHost::default()
        };
        assert_eq!(
            Filter::new(cfg).on_request_headers(&mut host, true),
            Status::Continue
        );
        assert_eq!(*host.removed.borrow(), ["x-http-method-override"]);
    }

    /// A body that streams through (an unsigned payload on its path) is
    /// passed on frame by frame and never read; a checked body is read.
    #[test]
    fn a_streamed_body_is_never_read() {
        let (cfg, _) = config(r#","unsigned_payload_paths":["/up"]"#);
        let mut host = FakeHost {
            headers: signed_payload("POST", "/up", Some(Payload::Unsigned), None),
            ..FakeHost::default()
        };
        let mut f = Filter::new(Arc::clone(&cfg));
        assert_eq!(f.on_request_headers(&mut host, false), Status::Continue);
        for last in [false, false, true] {
            host.body = vec![vec![b'x'; 16 * 1024]];
            assert_eq!(f.on_request_body(&mut host, last), Status::Continue);
        }
        assert_eq!(*host.body_reads.borrow(), 0);
        let mut checked = FakeHost {
            headers: signed("POST", "/x", Some(b"abc")),
            ..FakeHost::default()
        };
        let mut f = Filter::new(cfg);
        f.on_request_headers(&mut checked, false);
        checked.body.push(b"abc".to_vec());
        assert_eq!(f.on_request_body(&mut checked, true), Status::Continue);
        assert_eq!(*checked.body_reads.borrow(), 1);
    }

    /// Under a nonce store, a GET with a nonce stops at its headers while
    /// the call goes to the configured cluster with the claim's headers;
    /// `fresh` resumes it; the nonce is then refused locally with no call;
    /// a call Envoy refuses to send is `503` at once (fail closed).
    #[test]
    fn a_nonce_is_claimed_through_a_call() {
        let (cfg, _) = config(r#","nonce_store":{"cluster":"store","timeout_ms":150}"#);
        let get = || signed_payload("GET", "/x", None, Some("native-store-nonce-0001"));
        let mut host = FakeHost {
            headers: get(),
            ..FakeHost::default()
        };
        let mut f = Filter::new(Arc::clone(&cfg));
        assert_eq!(f.on_request_headers(&mut host, true), Status::Buffer);
        {
            let calls = host.calls.borrow();
            let (cluster, headers, timeout) = &calls[0];
            assert_eq!((cluster.as_str(), *timeout), ("store", 150));
            assert!(
                headers.contains(&"x-edge-hmac-environment: dev".to_owned()),
                "{headers:?}"
            );
        }
        f.on_claim_answer(&mut host, Some(b"200"), Some(b"fresh"));
        assert!(*host.resumed.borrow());
        assert!(host.counts.borrow().contains(&Counter::Verified));

        let mut again = FakeHost {
            headers: get(),
            ..FakeHost::default()
        };
        assert_eq!(
            Filter::new(Arc::clone(&cfg)).on_request_headers(&mut again, true),
            Status::Stop
        );
        assert_eq!(again.replies.borrow()[0].status, 401);
        assert!(again.calls.borrow().is_empty());

        let mut refused = FakeHost {
            headers: signed_payload("GET", "/x", None, Some("native-store-nonce-0002")),
            call_refused: true,
            ..FakeHost::default()
        };
        assert_eq!(
            Filter::new(cfg).on_request_headers(&mut refused, true),
            Status::Stop
        );
        let reply = refused.replies.borrow()[0];
        assert_eq!((reply.status, reply.retry_after), (503, Some("1")));
    }
}
