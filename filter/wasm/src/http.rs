//! HTTP context: collects the request's headers and body through hostcalls,
//! hands them to the core's [`Stream`] and carries out its verdict.

use std::rc::Rc;
use std::time::Duration;

use edge_hmac_core::scheme::RequestHead;
use edge_hmac_core::store::{ClaimAnswer, ClaimRequest, HEADER_CLAIM};
use edge_hmac_core::stream::{REPLY_CONTENT_TYPE, Reply, Stream, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use crate::host::{self, SharedData};
use crate::hostmap;
use crate::root::Shared;

/// Per-request state.
pub struct Http {
    shared: Rc<Shared>,
    stream: Stream,
}

impl Http {
    /// A context sharing `shared`.
    pub fn new(shared: Rc<Shared>) -> Self {
        Self {
            shared,
            stream: Stream::new(),
        }
    }

    /// Carries out `verdict` in a request callback.
    fn act(&mut self, verdict: Verdict) -> Action {
        match verdict {
            Verdict::Continue => Action::Continue,
            Verdict::Hold | Verdict::Drop => Action::Pause,
            Verdict::Reply(reply) => send(&reply),
        }
    }

    /// Sends `claim` to the nonce store; `Some` when it could not be sent
    /// (the verdict on the store's [`ClaimAnswer::Unavailable`]).
    fn send_claim(&mut self, claim: &ClaimRequest) -> Option<Verdict> {
        let shared = Rc::clone(&self.shared);
        let store = shared.config.nonce_store.as_ref()?;
        let sent = self.dispatch_http_call(
            &store.cluster,
            store.headers(claim).to_vec(),
            None,
            Vec::new(),
            Duration::from_millis(store.timeout_ms),
        );
        match sent {
            Ok(_) => None,
            Err(status) => {
                host::log(LogLevel::Warn, || {
                    format!(
                        "edge-hmac: cannot call the nonce store (cluster {}): {status:?}",
                        store.cluster
                    )
                });
                self.claim_answered(ClaimAnswer::Unavailable)
            }
        }
    }

    fn claim_answered(&mut self, answer: ClaimAnswer) -> Option<Verdict> {
        let shared = Rc::clone(&self.shared);
        let mut store = SharedData;
        self.stream.on_claim_answer(
            &shared.config,
            answer,
            host::now_unix(),
            &mut shared.config.replay.shared(&mut store),
            &shared.metrics,
        )
    }

    fn internal_error(&mut self, what: String) -> Action {
        host::log(LogLevel::Error, || format!("edge-hmac: {what}"));
        let verdict = self.stream.internal_error(&self.shared.metrics);
        self.act(verdict)
    }
}

/// Sends `reply` as a local response (and logs a refusal at debug level).
fn send(reply: &Reply) -> Action {
    if let Some(line) = reply.log_line() {
        host::log(LogLevel::Debug, || line);
    }
    let mut headers = vec![("content-type", REPLY_CONTENT_TYPE)];
    if let Some(seconds) = reply.retry_after {
        headers.push(("retry-after", seconds));
    }
    let _ = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
    Action::Pause
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        // A failed call (timeout, reset, no healthy host) has no headers.
        let answer = if num_headers == 0 {
            ClaimAnswer::Unavailable
        } else {
            // The SDK's getters unwrap a host error; these do not.
            let header = |name| {
                hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
                    .ok()
                    .flatten()
            };
            let status = header(":status");
            let claim = header(HEADER_CLAIM);
            ClaimAnswer::from_response(status.as_deref(), claim.as_deref())
        };
        match self.claim_answered(answer) {
            Some(Verdict::Continue) => {
                if let Err(status) = hostcalls::resume_http_request() {
                    host::log(LogLevel::Error, || {
                        format!("edge-hmac: cannot resume the request: {status:?}")
                    });
                }
            }
            Some(Verdict::Reply(reply)) => {
                send(&reply);
            }
            Some(Verdict::Hold | Verdict::Drop) | None => {}
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let raw = match host::request_headers_raw() {
            Ok(raw) => raw,
            Err(err) => return self.internal_error(format!("cannot read request headers: {err}")),
        };
        let Some(pairs) = hostmap::parse(&raw) else {
            return self.internal_error("request header map is malformed".into());
        };
        let mut head = RequestHead::from_pairs(&pairs);
        if head.has_rfc9421() {
            // Only RFC 9421 reads the scheme; one host call, not for v1.
            head.tls = host::downstream_tls();
        }
        let shared = Rc::clone(&self.shared);
        let mut store = SharedData;
        let outcome = self.stream.on_request_headers(
            &shared.config,
            &head,
            host::now_unix(),
            end_of_stream,
            &mut shared.config.replay.shared(&mut store),
            &shared.metrics,
        );
        for name in outcome.remove {
            if let Err(err) = host::remove_request_header(name) {
                return self.internal_error(format!("cannot remove {name}: {err}"));
            }
        }
        if let Some(claim) = &outcome.claim
            && let Some(verdict) = self.send_claim(claim)
        {
            return self.act(verdict);
        }
        // Headers continue (pausing them would hang a body without
        // allow_on_headers_stop_iteration, which Envoy Gateway does not
        // set; a body is held in the body callback), except those of a
        // request with no body to hold while the nonce store is asked.
        self.act(outcome.verdict)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // `body_size` is everything buffered so far; hash only what is new,
        // and read nothing when the verdict does not depend on the bytes.
        let seen = usize::try_from(self.stream.body_bytes_seen()).unwrap_or(usize::MAX);
        if let Some(verdict) = self
            .stream
            .on_request_body_unread(body_size.saturating_sub(seen), end_of_stream)
        {
            return self.act(verdict);
        }
        let chunk = if body_size > seen {
            match hostcalls::get_buffer(BufferType::HttpRequestBody, seen, body_size - seen) {
                Ok(bytes) => bytes.unwrap_or_default(),
                Err(status) => {
                    return self.internal_error(format!("cannot read request body: {status:?}"));
                }
            }
        } else {
            Vec::new()
        };
        let verdict = self
            .stream
            .on_request_body(&chunk, end_of_stream, &self.shared.metrics);
        self.act(verdict)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let verdict = self.stream.on_request_trailers(&self.shared.metrics);
        self.act(verdict)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.stream.awaits_response_status() {
            return Action::Continue;
        }
        let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|v| core::str::from_utf8(&v).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        if self.stream.on_response_headers(status)
            && let Err(status) = hostcalls::resume_http_request()
        {
            host::log(LogLevel::Error, || {
                format!("edge-hmac: cannot resume the upgraded stream: {status:?}")
            });
        }
        Action::Continue
    }
}

/// The context of a root that has no valid configuration: every request is
/// refused (fail closed).
pub struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        host::log(LogLevel::Error, || {
            "edge-hmac: request refused: the filter has no valid configuration".to_owned()
        });
        send(&Reply::internal_error())
    }
}
