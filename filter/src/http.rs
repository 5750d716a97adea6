//! HTTP context: collects the request's headers and body through hostcalls,
//! asks [`crate::flow`] what to do, and answers.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use crate::flow::{self, Body, HeadersDecision, Skip};
use crate::host::{self, SharedData};
use crate::hostmap;
use crate::root::Shared;
use crate::scheme::{BodyVerifier, Format, KeyUsed, Rejection, RequestHead};

/// What the context does with the request stream after the headers.
enum Stage {
    /// Nothing held: data passes (no body, exempt, unsigned payload, or an
    /// accepted upgrade).
    Pass,
    /// The body check still running, with the key that verified the headers.
    Checking(BodyVerifier, KeyUsed),
    /// A verified upgrade handshake waiting for the upstream's answer: any
    /// request data is held until it accepts. `connect` is the method.
    AwaitingUpgrade {
        /// The request is a `CONNECT` (accepted by a 2xx, not only 101).
        connect: bool,
        /// A body callback was paused and must be resumed on acceptance.
        held: bool,
    },
    /// The upstream refused the upgrade: request data is never forwarded.
    UpgradeRefused,
    /// A local reply was sent; ignore later callbacks.
    Answered,
}

/// Per-request state.
pub struct Http {
    shared: Rc<Shared>,
    stage: Stage,
}

impl Http {
    /// A context sharing `shared`.
    pub fn new(shared: Rc<Shared>) -> Self {
        Self {
            shared,
            stage: Stage::Pass,
        }
    }

    fn reject(&mut self, rejection: Rejection) -> Action {
        self.shared.metrics.rejected(rejection);
        host::log(LogLevel::Debug, || {
            format!("edge-hmac: rejected {rejection}")
        });
        self.stage = Stage::Answered;
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
        self.stage = Stage::Answered;
        let _ = hostcalls::send_http_response(
            500,
            vec![("content-type", "application/json")],
            Some(br#"{"error":"internal_error"}"#),
        );
        Action::Pause
    }

    /// End of the request body: compare the hash and release or refuse.
    fn finish_body(&mut self) -> Action {
        let Stage::Checking(check, key) = core::mem::replace(&mut self.stage, Stage::Pass) else {
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
        let mut head = RequestHead::from_pairs(&pairs);
        if head.has_rfc9421() {
            // Only RFC 9421 reads the scheme; one host call, not for v1.
            head.tls = host::downstream_tls();
        }
        let shared = Rc::clone(&self.shared);
        let mut store = SharedData;
        let now = host::now_unix();
        match flow::on_request_headers(&shared.config, &head, now, end_of_stream, &mut store) {
            HeadersDecision::Skip(skip) => {
                for name in flow::headers_to_strip(&head) {
                    if let Err(err) = host::remove_request_header(name) {
                        return self.internal_error(format!("cannot remove {name}: {err}"));
                    }
                }
                match skip {
                    Skip::ExemptPath => shared.metrics.exempt(),
                    Skip::CorsPreflight => shared.metrics.cors_preflight(),
                }
                Action::Continue
            }
            HeadersDecision::Reject(rejection) => self.reject(rejection),
            HeadersDecision::Verified {
                key,
                body,
                unsigned_payload,
                format,
            } => {
                if unsigned_payload {
                    shared.metrics.unsigned_payload();
                }
                if format == Format::Rfc9421 {
                    shared.metrics.rfc9421();
                }
                match body {
                    Body::Empty | Body::Unsigned => shared.metrics.verified(key),
                    Body::Upgrade { connect } => {
                        shared.metrics.verified(key);
                        shared.metrics.upgrade();
                        self.stage = Stage::AwaitingUpgrade {
                            connect,
                            held: false,
                        };
                    }
                    // Headers are authenticated and go upstream now; the body
                    // is held back (Pause in the body callback) until its
                    // hash is checked. Pausing here would hang without
                    // allow_on_headers_stop_iteration.
                    Body::Check(check) => self.stage = Stage::Checking(check, key),
                }
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let check = match &mut self.stage {
            Stage::Pass => return Action::Continue,
            Stage::Answered | Stage::UpgradeRefused => return Action::Pause,
            Stage::AwaitingUpgrade { held, .. } => {
                // Data before the upstream accepted the upgrade stays here
                // (an upstream that answers an ordinary response must never
                // read it as a next request).
                *held = true;
                return Action::Pause;
            }
            Stage::Checking(check, _) => check,
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
        match self.stage {
            Stage::Answered | Stage::UpgradeRefused | Stage::AwaitingUpgrade { .. } => {
                Action::Pause
            }
            Stage::Pass | Stage::Checking(..) => self.finish_body(),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Stage::AwaitingUpgrade { connect, held } = self.stage else {
            return Action::Continue;
        };
        let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|v| core::str::from_utf8(&v).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        if flow::upgrade_accepted(connect, status) {
            self.stage = Stage::Pass;
            if held && let Err(status) = hostcalls::resume_http_request() {
                host::log(LogLevel::Error, || {
                    format!("edge-hmac: cannot resume the upgraded stream: {status:?}")
                });
            }
        } else {
            self.stage = Stage::UpgradeRefused;
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
        let _ = hostcalls::send_http_response(
            500,
            vec![("content-type", "application/json")],
            Some(br#"{"error":"internal_error"}"#),
        );
        Action::Pause
    }
}
