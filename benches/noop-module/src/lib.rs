//! A native Envoy HTTP filter module that does nothing: every hook Envoy
//! requires (ABI v0.1.0, as `filter/native`) is exported and answers
//! Continue. Its cost in Envoy is the floor of any native module; the load
//! benchmark puts it beside the real one.
//!
//! Exporting unmangled symbols is what `unsafe_code` flags; nothing else
//! here is unsafe (no pointer is ever dereferenced).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void};

/// A buffer as the ABI passes it (pointer, then length); never read.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buf {
    ptr: *const u8,
    len: usize,
}

static ABI: &[u8] = b"v0.1.0\0";
/// A non-null handle for Envoy to hand back; nothing is behind it.
static HANDLE: u8 = 0;

fn handle() -> *const c_void {
    (&raw const HANDLE).cast()
}

/// Program init: the ABI version.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI.as_ptr().cast()
}

/// Any configuration is accepted.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config: *mut c_void,
    _name: Buf,
    _raw: Buf,
) -> *const c_void {
    handle()
}

/// Nothing to free.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_config: *const c_void) {}

/// One (empty) filter per stream.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _config: *const c_void,
    _filter: *mut c_void,
) -> *const c_void {
    handle()
}

/// Nothing to free.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_filter: *const c_void) {}

macro_rules! continue_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*) -> u32;)*) => {$(
        /// Continue.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(_fe: *mut c_void, _fm: *const c_void $(, $arg: $ty)*) -> u32 {
            $(let _ = $arg;)*
            0
        }
    )*};
}

continue_hooks! {
    envoy_dynamic_module_on_http_filter_request_headers(eos: bool) -> u32;
    envoy_dynamic_module_on_http_filter_request_body(eos: bool) -> u32;
    envoy_dynamic_module_on_http_filter_request_trailers() -> u32;
    envoy_dynamic_module_on_http_filter_response_headers(eos: bool) -> u32;
    envoy_dynamic_module_on_http_filter_response_body(eos: bool) -> u32;
    envoy_dynamic_module_on_http_filter_response_trailers() -> u32;
}

macro_rules! empty_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        /// Nothing to do.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(_fe: *mut c_void, _fm: *const c_void $(, $arg: $ty)*) {
            $(let _ = $arg;)*
        }
    )*};
}

empty_hooks! {
    envoy_dynamic_module_on_http_filter_stream_complete();
    envoy_dynamic_module_on_http_filter_http_callout_done(id: u64, result: u32, headers: *const c_void, n: usize, chunks: *const c_void, m: usize);
    envoy_dynamic_module_on_http_filter_http_stream_headers(id: u64, headers: *const c_void, n: usize, end: bool);
    envoy_dynamic_module_on_http_filter_http_stream_data(id: u64, data: *const c_void, n: usize, end: bool);
    envoy_dynamic_module_on_http_filter_http_stream_trailers(id: u64, trailers: *const c_void, n: usize);
    envoy_dynamic_module_on_http_filter_http_stream_complete(id: u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(id: u64, reason: u32);
    envoy_dynamic_module_on_http_filter_scheduled(id: u64);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark();
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark();
}
