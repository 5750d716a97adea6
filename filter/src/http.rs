//! HTTP context: collects the request's headers and body through hostcalls,
//! asks [`crate::flow`] what to do, and answers.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};

use crate::flow::{self, HeadersDecision, Skip};
use crate::host::{self, SharedBuckets};
use crate::hostmap;
use crate::root::Shared;
use crate::scheme::{BodyVerifier, KeyUsed, Rejection, RequestHead};

/// Per-request state.
pub struct Http {
    shared: Rc<Shared>,
    /// The body check still running, with the key that verified the headers.
    pending: Option<(BodyVerifier, KeyUsed)>,
    /// A local reply was sent; ignore later callbacks.
    answered: bool,
}

impl Http {
    /// A context sharing `shared`.
    pub fn new(shared: Rc<Shared>) -> Self {
        Self {
            shared,
            pending: None,
            answered: false,
        }
    }

    fn reject(&mut self, rejection: Rejection) -> Action {
        self.shared.metrics.rejected(rejection);
        host::log(LogLevel::Debug, || {
            format!("edge-hmac: rejected {rejection}")
        });
        self.answered = true;
        self.pending = None;
        let reason = rejection.reason;
        let _ = hostcalls::send_http_response(
            reason.status(),
            vec![("content-type", "application/json")],
            Some(reason.response_body().as_bytes()),
        );
        Action::Pause
    }

    fn internal_error(&mut self, what: String) -> Action {
        self.shared.metrics.internal_error();
        host::log(LogLevel::Error, || format!("edge-hmac: {what}"));
        self.answered = true;
        self.pending = None;
        let _ = hostcalls::send_http_response(
            500,
            vec![("content-type", "application/json")],
            Some(br#"{"error":"internal_error"}"#),
        );
        Action::Pause
    }

    /// End of the request body: compare the hash and release or refuse.
    fn finish_body(&mut self) -> Action {
        let Some((check, key)) = self.pending.take() else {
            return Action::Continue;
        };
        match check.finish() {
            Ok(()) => {
                self.shared.metrics.verified(key);
                Action::Continue
            }
            Err(rejection) => self.reject(rejection),
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let raw = match host::request_headers_raw() {
            Ok(raw) => raw,
            Err(err) => return self.internal_error(format!("cannot read request headers: {err}")),
        };
        let Some(pairs) = hostmap::parse(&raw) else {
            return self.internal_error("request header map is malformed".into());
        };
        let head = RequestHead::from_pairs(pairs.iter().copied());
        let shared = Rc::clone(&self.shared);
        let mut store = SharedBuckets::new(&shared.bucket_prefix);
        let now = host::now_unix();
        match flow::on_request_headers(&shared.config, &head, now, end_of_stream, &mut store) {
            HeadersDecision::Skip(Skip::ExemptPath) => {
                shared.metrics.exempt();
                Action::Continue
            }
            HeadersDecision::Skip(Skip::CorsPreflight) => {
                shared.metrics.cors_preflight();
                Action::Continue
            }
            HeadersDecision::Reject(rejection) => self.reject(rejection),
            HeadersDecision::Verified { key, body: None } => {
                shared.metrics.verified(key);
                Action::Continue
            }
            HeadersDecision::Verified {
                key,
                body: Some(check),
            } => {
                // Headers are authenticated and go upstream now; the body is
                // held back (Pause in the body callback) until its hash is
                // checked. Pausing here would hang without
                // allow_on_headers_stop_iteration.
                self.pending = Some((check, key));
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Pause;
        }
        let Some((check, _)) = self.pending.as_mut() else {
            return Action::Continue;
        };
        // `body_size` is the size of everything buffered so far; hash only the
        // bytes not seen yet.
        let seen = usize::try_from(check.received()).unwrap_or(usize::MAX);
        if body_size > seen {
            match hostcalls::get_buffer(BufferType::HttpRequestBody, seen, body_size - seen) {
                Ok(Some(chunk)) => {
                    if let Err(rejection) = check.update(&chunk) {
                        return self.reject(rejection);
                    }
                }
                Ok(None) => {}
                Err(status) => {
                    return self.internal_error(format!("cannot read request body: {status:?}"));
                }
            }
        }
        if end_of_stream {
            self.finish_body()
        } else {
            // Keep buffering: nothing of the body goes upstream yet.
            Action::Pause
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.answered {
            return Action::Pause;
        }
        self.finish_body()
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
        let _ = hostcalls::send_http_response(
            500,
            vec![("content-type", "application/json")],
            Some(br#"{"error":"internal_error"}"#),
        );
        Action::Pause
    }
}
