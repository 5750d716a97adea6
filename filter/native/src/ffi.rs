//! The dynamic-module ABI of Envoy 1.39 (`v0.1.0`; Envoy 1.40 loads it too):
//! our own declarations of the callbacks the module uses and the hooks Envoy
//! requires, written from the facts of Envoy's `abi.h` (layouts, enum values,
//! which hooks must exist), not from its text. Every `unsafe` of the crate
//! is here, each with a `// SAFETY:` note.
//!
//! Every exported hook runs its body under `catch_unwind`: a panic never
//! unwinds into Envoy (that would abort the proxy). A request hook that
//! panics answers that request `500` and keeps the rest of it back; a
//! configuration hook that panics refuses the configuration; a response
//! hook that panics resets its stream; a destroy hook that panics leaks.
//! The module is built with `panic = "unwind"` (profile `module`) for this.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use edge_hmac_core::metrics::{COUNTERS, Counter};
use edge_hmac_core::store::HEADER_CLAIM;
use edge_hmac_core::stream::{REPLY_CONTENT_TYPE, Reply};

use crate::module::{ConfigHost, Filter, Host, Level, ModuleConfig, Status, now_unix};

/// A byte buffer as the ABI passes it (`envoy_buffer` / `module_buffer`):
/// pointer first, then length.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Buf {
    ptr: *const u8,
    len: usize,
}

impl Buf {
    const EMPTY: Buf = Buf {
        ptr: core::ptr::null(),
        len: 0,
    };

    fn of(bytes: &[u8]) -> Buf {
        Buf {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes, borrowed for as long as the caller says Envoy keeps them.
    ///
    /// # Safety
    /// `ptr` is null, or points to `len` readable bytes that stay valid and
    /// unchanged for `'a`.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A header as the ABI passes it (`envoy_http_header` /
/// `module_http_header`): key pointer and length, value pointer and length.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Hdr {
    key_ptr: *const u8,
    key_len: usize,
    value_ptr: *const u8,
    value_len: usize,
}

impl Hdr {
    const EMPTY: Hdr = Hdr {
        key_ptr: core::ptr::null(),
        key_len: 0,
        value_ptr: core::ptr::null(),
        value_len: 0,
    };
}

// Enum values of the ABI (4-byte C enums, 0-based).
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const RECEIVED_REQUEST_BODY: u32 = 0;
const BUFFERED_REQUEST_BODY: u32 = 1;
const HEADERS_CONTINUE: u32 = 0;
const HEADERS_STOP_ITERATION: u32 = 1;
const BODY_CONTINUE: u32 = 0;
const BODY_STOP_AND_BUFFER: u32 = 1;
const BODY_STOP_NO_BUFFER: u32 = 3;
const TRAILERS_CONTINUE: u32 = 0;
const TRAILERS_STOP_ITERATION: u32 = 1;
const RESET_LOCAL: u32 = 0;
const CALLOUT_INIT_SUCCESS: u32 = 0;
const CALLOUT_SUCCESS: u32 = 0;
/// `connection.tls_version` among the attribute ids.
const ATTRIBUTE_CONNECTION_TLS_VERSION: u32 = 31;

fn level(l: Level) -> u32 {
    match l {
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
        Level::Critical => 5,
    }
}

unsafe extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: Buf);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: Buf,
        label_names: *const Buf,
        label_count: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: *mut c_void,
        name: Buf,
        label_names: *const Buf,
        label_count: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_gauge(
        config: *mut c_void,
        id: usize,
        label_values: *const Buf,
        label_count: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_decrement_gauge(
        config: *mut c_void,
        id: usize,
        label_values: *const Buf,
        label_count: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *const Buf,
        label_count: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: *mut c_void,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: u32,
        out: *mut Hdr,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        header_type: u32,
        key: Buf,
        out: *mut Buf,
        index: usize,
        count: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: u32,
        key: Buf,
        value: Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *const Hdr,
        header_count: usize,
        body: Buf,
        details: Buf,
    );
    fn envoy_dynamic_module_callback_http_get_body_size(
        filter: *mut c_void,
        body_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: *mut c_void,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: *mut c_void,
        body_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: *mut c_void,
        body_type: u32,
        out: *mut Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_buffer_limit(filter: *mut c_void) -> u64;
    fn envoy_dynamic_module_callback_http_set_buffer_limit(filter: *mut c_void, limit: u64);
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id: *mut u64,
        cluster: Buf,
        headers: *const Hdr,
        header_count: usize,
        body: Buf,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: *mut c_void,
        attribute: u32,
        out: *mut Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_reset_stream(
        filter: *mut c_void,
        reason: u32,
        details: Buf,
    );
}

/// Writes to Envoy's `dynamic_modules` log.
fn log(l: Level, message: &str) {
    // SAFETY: plain values in; the message is only read during the call.
    unsafe {
        if envoy_dynamic_module_callback_log_enabled(level(l)) {
            envoy_dynamic_module_callback_log(level(l), Buf::of(message.as_bytes()));
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Runs `f`, containing a panic: `None` (logged) if it panicked.
fn contained<T>(hook: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            // Logging must not panic again; a second panic is contained too.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                log(
                    Level::Critical,
                    &format!(
                        "edge-hmac: a panic in {hook} was contained: {}",
                        panic_message(&*payload)
                    ),
                );
            }));
            None
        }
    }
}

/// The configuration side of Envoy (`filter_config_envoy_ptr`), valid during
/// the configuration hook that got it.
struct ConfigFfi {
    config: *mut c_void,
}

/// Envoy's signature of the metric-defining callbacks.
type DefineMetric = unsafe extern "C" fn(*mut c_void, Buf, *const Buf, usize, *mut usize) -> u32;

impl ConfigFfi {
    /// Defines an unlabelled metric `name` through `define` (counter or
    /// gauge); its id, or `None` if Envoy refused.
    fn define(&self, define: DefineMetric, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: `define` is one of Envoy's define callbacks; `config` is
        // Envoy's pointer for this hook; no labels; `id` is a valid
        // out-parameter; the name is only read during the call.
        let result = unsafe {
            define(
                self.config,
                Buf::of(name.as_bytes()),
                core::ptr::null(),
                0,
                &mut id,
            )
        };
        (result == 0).then_some(id)
    }
}

impl ConfigHost for ConfigFfi {
    fn define_counter(&self, name: &str) -> Option<usize> {
        self.define(
            envoy_dynamic_module_callback_http_filter_config_define_counter,
            name,
        )
    }

    fn define_gauge(&self, name: &str) -> Option<usize> {
        self.define(
            envoy_dynamic_module_callback_http_filter_config_define_gauge,
            name,
        )
    }

    fn add_to_gauge(&self, id: usize, delta: i64) {
        // SAFETY: `config` is Envoy's pointer, `id` one it gave; no labels.
        unsafe {
            if delta >= 0 {
                envoy_dynamic_module_callback_http_filter_config_increment_gauge(
                    self.config,
                    id,
                    core::ptr::null(),
                    0,
                    delta.unsigned_abs(),
                );
            } else {
                envoy_dynamic_module_callback_http_filter_config_decrement_gauge(
                    self.config,
                    id,
                    core::ptr::null(),
                    0,
                    delta.unsigned_abs(),
                );
            }
        }
    }

    fn log(&self, l: Level, message: &str) {
        log(l, message);
    }
}

/// What `config_new` hands to Envoy: the shared configuration and Envoy's
/// pointer to its own config object (used again in `config_destroy`, on the
/// main thread, to lower the key gauges).
struct ConfigBox {
    module: Arc<ModuleConfig>,
    envoy: *mut c_void,
}

/// What `filter_new` hands to Envoy for one stream.
struct FilterBox {
    filter: Filter,
    config: Arc<ModuleConfig>,
    /// A hook of this stream panicked: answer nothing more.
    failed: bool,
}

/// One stream's side of Envoy (`filter_envoy_ptr`), valid during the hook
/// that got it.
struct StreamFfi<'a> {
    filter: *mut c_void,
    counters: &'a [Option<usize>; COUNTERS],
}

impl StreamFfi<'_> {
    /// Which of Envoy's request bodies hold the body so far, in order: the
    /// buffered one, then the frame being delivered — unless that frame *is*
    /// the buffer (an earlier filter buffered the body and resumed), which
    /// must be read once.
    fn request_bodies(&self) -> &'static [u32] {
        // SAFETY: `filter` is Envoy's pointer for this hook; a plain value.
        if unsafe { envoy_dynamic_module_callback_http_received_buffered_request_body(self.filter) }
        {
            &[BUFFERED_REQUEST_BODY]
        } else {
            &[BUFFERED_REQUEST_BODY, RECEIVED_REQUEST_BODY]
        }
    }
}

impl Host for StreamFfi<'_> {
    fn request_headers(&self) -> Vec<(&[u8], &[u8])> {
        // SAFETY: `filter` is Envoy's pointer for this hook; the out array
        // has room for the count Envoy just gave.
        let entries = unsafe {
            let size =
                envoy_dynamic_module_callback_http_get_headers_size(self.filter, REQUEST_HEADERS);
            let mut entries = vec![Hdr::EMPTY; size];
            if size > 0
                && !envoy_dynamic_module_callback_http_get_headers(
                    self.filter,
                    REQUEST_HEADERS,
                    entries.as_mut_ptr(),
                )
            {
                entries.clear();
            }
            entries
        };
        entries
            .iter()
            .map(|h| {
                // SAFETY: the pointers are into Envoy's request header map,
                // valid until this hook returns or the map is changed; the
                // slices are borrowed from `self`, which lives only during
                // the hook, and the glue drops them before removing a
                // header.
                unsafe {
                    (
                        Buf {
                            ptr: h.key_ptr,
                            len: h.key_len,
                        }
                        .bytes(),
                        Buf {
                            ptr: h.value_ptr,
                            len: h.value_len,
                        }
                        .bytes(),
                    )
                }
            })
            .collect()
    }

    fn downstream_tls(&self) -> Option<bool> {
        let mut out = Buf::EMPTY;
        // SAFETY: `filter` is Envoy's pointer; `out` a valid out-parameter.
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                ATTRIBUTE_CONNECTION_TLS_VERSION,
                &mut out,
            )
        };
        Some(found && out.len > 0)
    }

    fn remove_request_header(&mut self, name: &str) -> bool {
        // SAFETY: `filter` is Envoy's pointer; a null value removes the
        // header; the name is only read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.filter,
                REQUEST_HEADERS,
                Buf::of(name.as_bytes()),
                Buf::EMPTY,
            )
        }
    }

    fn send_reply(&self, reply: &Reply, grpc: bool) {
        let header = |key: &'static str, value: &'static str| Hdr {
            key_ptr: key.as_ptr(),
            key_len: key.len(),
            value_ptr: value.as_ptr(),
            value_len: value.len(),
        };
        // Envoy turns a gRPC call's local reply into a trailers-only gRPC
        // answer but, for a dynamic module, with grpc-status 0 (OK) unless
        // the module sets one: set the status Envoy gives the HTTP status.
        let mut headers = vec![header("content-type", REPLY_CONTENT_TYPE)];
        if grpc {
            headers.push(header("grpc-status", reply.grpc_status()));
        }
        if let Some(seconds) = reply.retry_after {
            headers.push(header("retry-after", seconds));
        }
        let details = match reply.rejection {
            Some(r) => format!("edge_hmac_{}", r.reason.code()),
            None => "edge_hmac_internal_error".to_owned(),
        };
        // SAFETY: `filter` is Envoy's pointer; the header array, body and
        // details outlive the call, which copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.filter,
                reply.status,
                headers.as_ptr(),
                headers.len(),
                Buf::of(reply.body.as_bytes()),
                Buf::of(details.as_bytes()),
            );
        }
    }

    fn raise_buffer_limit(&self, limit: u64) {
        // SAFETY: `filter` is Envoy's pointer; plain values.
        unsafe {
            let current = envoy_dynamic_module_callback_http_get_buffer_limit(self.filter);
            // 0 means no limit.
            if current != 0 && current < limit {
                envoy_dynamic_module_callback_http_set_buffer_limit(self.filter, limit);
            }
        }
    }

    fn request_body_len(&self) -> usize {
        self.request_bodies()
            .iter()
            // SAFETY: `filter` is Envoy's pointer for this hook; a plain value.
            .map(|&body| unsafe {
                envoy_dynamic_module_callback_http_get_body_size(self.filter, body)
            })
            .fold(0, usize::saturating_add)
    }

    fn request_body(&self) -> Vec<&[u8]> {
        let mut out = Vec::new();
        for &body in self.request_bodies() {
            // SAFETY: `filter` is Envoy's pointer; the out array has room
            // for the count Envoy just gave.
            let chunks = unsafe {
                let n = envoy_dynamic_module_callback_http_get_body_chunks_size(self.filter, body);
                let mut chunks = vec![Buf::EMPTY; n];
                if n > 0
                    && !envoy_dynamic_module_callback_http_get_body_chunks(
                        self.filter,
                        body,
                        chunks.as_mut_ptr(),
                    )
                {
                    chunks.clear();
                }
                chunks
            };
            // SAFETY: slices of Envoy's body buffers, valid until this hook
            // returns (the glue hashes them before it returns and never
            // changes the buffers).
            out.extend(chunks.into_iter().map(|c| unsafe { c.bytes() }));
        }
        out
    }

    fn response_status(&self) -> u32 {
        let mut out = Buf::EMPTY;
        let mut count = 0usize;
        // SAFETY: `filter` is Envoy's pointer; valid out-parameters; the key
        // is only read during the call; the value is read before returning.
        unsafe {
            if !envoy_dynamic_module_callback_http_get_header(
                self.filter,
                RESPONSE_HEADERS,
                Buf::of(b":status"),
                &mut out,
                0,
                &mut count,
            ) {
                return 0;
            }
            core::str::from_utf8(out.bytes())
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        }
    }

    fn continue_request(&self) {
        // SAFETY: `filter` is Envoy's pointer for this hook.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.filter) }
    }

    fn send_call(&self, cluster: &str, headers: &[(&str, &str)], timeout_ms: u64) -> bool {
        let headers: Vec<Hdr> = headers
            .iter()
            .map(|(k, v)| Hdr {
                key_ptr: k.as_ptr(),
                key_len: k.len(),
                value_ptr: v.as_ptr(),
                value_len: v.len(),
            })
            .collect();
        let mut id = 0u64;
        // SAFETY: `filter` is Envoy's pointer for this hook; the cluster
        // name and header array outlive the call, which copies them; `id`
        // is a valid out-parameter. The answer comes to
        // `on_http_filter_http_callout_done` of this stream (Envoy cancels
        // the call if the stream ends first).
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.filter,
                &mut id,
                Buf::of(cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                Buf::EMPTY,
                timeout_ms,
            )
        };
        result == CALLOUT_INIT_SUCCESS
    }

    fn count(&self, counter: Counter) {
        if let Some(id) = self.counters.get(counter.index()).copied().flatten() {
            // SAFETY: `filter` is Envoy's pointer; `id` an unlabelled counter
            // Envoy defined for this configuration; no labels.
            unsafe {
                envoy_dynamic_module_callback_http_filter_increment_counter(
                    self.filter,
                    id,
                    core::ptr::null(),
                    0,
                    1,
                );
            }
        }
    }

    fn log_enabled(&self, l: Level) -> bool {
        // SAFETY: a plain value.
        unsafe { envoy_dynamic_module_callback_log_enabled(level(l)) }
    }

    fn log(&self, l: Level, message: &str) {
        log(l, message);
    }
}

/// The ABI version this module is built for, NUL-terminated.
static ABI: &[u8] = b"v0.1.0\0";

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI.as_ptr().cast()
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    _name: Buf,
    config: Buf,
) -> *const c_void {
    contained("http_filter_config_new", || {
        log(Level::Info, &edge_hmac_core::startup_line("native module"));
        // SAFETY: Envoy's configuration bytes, valid during this call (the
        // core copies what it keeps).
        let raw = unsafe { config.bytes() };
        let host = ConfigFfi {
            config: config_envoy,
        };
        match ModuleConfig::new(raw, |name| std::env::var(name).ok(), now_unix(), &host) {
            Ok(module) => Box::into_raw(Box::new(ConfigBox {
                module: Arc::new(module),
                envoy: config_envoy,
            }))
            .cast_const()
            .cast::<c_void>(),
            Err(err) => {
                log(
                    Level::Critical,
                    &format!("edge-hmac: configuration rejected: {err}"),
                );
                core::ptr::null()
            }
        }
    })
    .unwrap_or(core::ptr::null())
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config_module: *const c_void) {
    if config_module.is_null() {
        return;
    }
    // SAFETY: `config_module` is the pointer `config_new` returned from
    // `Box::into_raw`; Envoy destroys it once, after its last filter.
    let boxed = unsafe { Box::from_raw(config_module.cast_mut().cast::<ConfigBox>()) };
    let _ = contained("http_filter_config_destroy", move || {
        let host = ConfigFfi {
            config: boxed.envoy,
        };
        if let Ok(module) = Arc::try_unwrap(boxed.module) {
            module.release(now_unix(), &host);
        }
    });
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: Buf,
    _config: Buf,
) -> *const c_void {
    let _ = contained("http_filter_per_route_config_new", || {
        log(
            Level::Critical,
            "edge-hmac: per-route configuration is not supported (configure the filter once, on the listener); refused",
        );
    });
    core::ptr::null()
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_config: *const c_void) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_module: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    if config_module.is_null() {
        return core::ptr::null();
    }
    // SAFETY: `config_module` is a live `ConfigBox` (Envoy keeps the
    // configuration alive while it creates filters from it).
    let boxed = unsafe { &*config_module.cast::<ConfigBox>() };
    contained("http_filter_new", || {
        let config = Arc::clone(&boxed.module);
        Box::into_raw(Box::new(FilterBox {
            filter: Filter::new(Arc::clone(&config)),
            config,
            failed: false,
        }))
        .cast_const()
        .cast::<c_void>()
    })
    .unwrap_or(core::ptr::null())
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: *const c_void) {
    if filter_module.is_null() {
        return;
    }
    // SAFETY: the pointer `filter_new` returned from `Box::into_raw`; Envoy
    // destroys each stream's filter once.
    let boxed = unsafe { Box::from_raw(filter_module.cast_mut().cast::<FilterBox>()) };
    let _ = contained("http_filter_destroy", move || drop(boxed));
}

/// Runs a request hook of the stream `filter_module` with panic
/// containment; a panic answers the request `500` (once) and discards the
/// rest of it.
fn request_hook(
    hook: &str,
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    op: impl FnOnce(&mut Filter, &mut StreamFfi<'_>) -> Status,
) -> Status {
    if filter_module.is_null() {
        return Status::Discard;
    }
    // SAFETY: the live `FilterBox` of this stream; Envoy runs all hooks of
    // one stream on one worker thread, one at a time, so this is the only
    // reference while the hook runs.
    let boxed = unsafe { &mut *filter_module.cast_mut().cast::<FilterBox>() };
    let FilterBox {
        filter,
        config,
        failed,
    } = boxed;
    if *failed {
        return Status::Discard;
    }
    let mut host = StreamFfi {
        filter: filter_envoy,
        counters: &config.counters,
    };
    match contained(hook, || op(filter, &mut host)) {
        Some(status) => status,
        None => {
            *failed = true;
            contained(hook, || filter.failed(&mut host)).unwrap_or_else(|| {
                reset(filter_envoy);
                Status::Discard
            })
        }
    }
}

/// Resets the stream (when not even a reply can be sent).
fn reset(filter_envoy: *mut c_void) {
    // SAFETY: Envoy's pointer for the current hook; the details outlive the
    // call.
    unsafe {
        envoy_dynamic_module_callback_http_filter_reset_stream(
            filter_envoy,
            RESET_LOCAL,
            Buf::of(b"edge_hmac_contained_panic"),
        );
    }
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    match request_hook("request_headers", filter_envoy, filter_module, |f, h| {
        f.on_request_headers(h, end_of_stream)
    }) {
        Status::Continue => HEADERS_CONTINUE,
        Status::Stop | Status::Buffer | Status::Discard => HEADERS_STOP_ITERATION,
    }
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    match request_hook("request_body", filter_envoy, filter_module, |f, h| {
        f.on_request_body(h, end_of_stream)
    }) {
        Status::Continue => BODY_CONTINUE,
        Status::Buffer => BODY_STOP_AND_BUFFER,
        Status::Stop | Status::Discard => BODY_STOP_NO_BUFFER,
    }
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
) -> u32 {
    match request_hook("request_trailers", filter_envoy, filter_module, |f, h| {
        f.on_request_trailers(h)
    }) {
        Status::Continue => TRAILERS_CONTINUE,
        Status::Stop | Status::Buffer | Status::Discard => TRAILERS_STOP_ITERATION,
    }
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    if filter_module.is_null() {
        return HEADERS_CONTINUE;
    }
    // SAFETY: as in `request_hook`.
    let boxed = unsafe { &mut *filter_module.cast_mut().cast::<FilterBox>() };
    let FilterBox {
        filter,
        config,
        failed,
    } = boxed;
    if *failed {
        return HEADERS_CONTINUE;
    }
    let mut host = StreamFfi {
        filter: filter_envoy,
        counters: &config.counters,
    };
    match contained("response_headers", || filter.on_response_headers(&mut host)) {
        Some(_) => HEADERS_CONTINUE,
        None => {
            *failed = true;
            reset(filter_envoy);
            HEADERS_STOP_ITERATION
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) -> u32 {
    TRAILERS_CONTINUE
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

/// The nonce store's answer to this stream's claim (the only call the
/// filter makes): a failed call (`result` not success) has no headers.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: *mut c_void,
    filter_module: *const c_void,
    _callout_id: u64,
    result: u32,
    headers: *const Hdr,
    header_count: usize,
    _chunks: *const Buf,
    _chunk_count: usize,
) {
    let headers: &[Hdr] = if result != CALLOUT_SUCCESS || headers.is_null() || header_count == 0 {
        &[]
    } else {
        // SAFETY: Envoy's array of `header_count` headers, valid during
        // this hook; only read here.
        unsafe { core::slice::from_raw_parts(headers, header_count) }
    };
    let find = |name: &[u8]| {
        headers.iter().find_map(|h| {
            // SAFETY: Envoy's key and value buffers, valid during this hook.
            let (k, v) = unsafe {
                let buf = |ptr, len| Buf { ptr, len };
                (
                    buf(h.key_ptr, h.key_len).bytes(),
                    buf(h.value_ptr, h.value_len).bytes(),
                )
            };
            k.eq_ignore_ascii_case(name).then_some(v)
        })
    };
    let status = find(b":status");
    let claim = find(HEADER_CLAIM.as_bytes());
    request_hook("http_callout_done", filter_envoy, filter_module, |f, h| {
        f.on_claim_answer(h, status, claim);
        Status::Continue
    });
}

// Hooks Envoy requires of every HTTP module; this filter opens no streams,
// schedules nothing and does not follow watermarks.

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _headers: *const Hdr,
    _header_count: usize,
    _end_stream: bool,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _data: *const Buf,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _trailers: *const Hdr,
    _trailer_count: usize,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
    _event_id: u64,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: *mut c_void,
    _filter_module: *const c_void,
) {
}
