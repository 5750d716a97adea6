//! Thin access to the proxy-wasm host: header maps, time, shared data,
//! metrics and logging. Only compiled for wasm32.
//!
//! No request input can make the filter panic: the header map is read
//! through the raw ABI and decoded without assuming UTF-8 (the SDK's
//! `get_map` panics on non-UTF-8 values). The SDK's other hostcalls panic
//! only when the host answers with a status the ABI does not define for
//! that call — a host bug, not something a client can cause; the `Err` arms
//! below handle the statuses the SDK does return.

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType, MetricType, Status};

use crate::replay::{SharedStore, StoreError};
use crate::scheme::{Detail, KeyUsed, Reject, Rejection};

/// Raw proxy-wasm ABI imports the SDK does not expose panic-free.
#[allow(unsafe_code)]
mod abi {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }

    /// The serialized map of `map_type`, owned; `Err(status)` on a host error.
    pub fn header_map_pairs(map_type: u32) -> Result<Vec<u8>, u32> {
        let mut data: *mut u8 = core::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to `size` bytes it allocated
        // through this module's exported allocator (the SDK's
        // `proxy_on_memory_allocate`, a boxed slice of exactly `size` bytes),
        // and hands ownership to us.
        let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
        if status != 0 {
            return Err(status);
        }
        if data.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: see above; length and capacity are the allocation size.
        Ok(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

/// Map type of the request headers in the proxy-wasm ABI.
const REQUEST_HEADERS: u32 = 0;

/// The request headers' serialized map (decode with [`crate::hostmap::parse`]).
pub fn request_headers_raw() -> Result<Vec<u8>, String> {
    abi::header_map_pairs(REQUEST_HEADERS).map_err(|s| format!("host status {s}"))
}

/// Whether the downstream connection is TLS, from Envoy's
/// `connection.tls_version` attribute (set only on TLS connections);
/// `None` when the host does not answer.
pub fn downstream_tls() -> Option<bool> {
    match hostcalls::get_property(vec!["connection", "tls_version"]) {
        Ok(Some(version)) => Some(!version.is_empty()),
        Ok(None) => Some(false),
        Err(_) => None,
    }
}

/// Removes every entry of request header `name`.
pub fn remove_request_header(name: &str) -> Result<(), String> {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)
        .map_err(|s| format!("host status {s:?}"))
}

/// Current Unix time in seconds from the host clock (0 if the host ever
/// returned a time before the epoch, which makes every timestamp stale:
/// fail closed).
pub fn now_unix() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Logs `message` at `level` when Envoy's wasm log level lets it through.
/// `message` is only built when it will be written.
pub fn log(level: LogLevel, message: impl FnOnce() -> String) {
    let enabled = hostcalls::get_log_level()
        .map(|current| current as u32 <= level as u32)
        .unwrap_or(true);
    if enabled {
        let _ = hostcalls::log(level, &message());
    }
}

/// proxy-wasm shared data: one key-value store for every worker thread of
/// the process (per `vm_id`), holding the replay tables.
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((_, None)) => Ok(None),
            Ok((data, Some(cas))) => Ok(Some((data.unwrap_or_default(), cas))),
            Err(status) => Err(StoreError(format!("get_shared_data: {status:?}"))),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(true),
            Err(Status::CasMismatch) => Ok(false),
            Err(status) => Err(StoreError(format!("set_shared_data: {status:?}"))),
        }
    }
}

/// The filter's counters and gauges (Envoy shows them as
/// `wasmcustom.edge_hmac.*`).
#[derive(Debug, Default)]
pub struct Metrics {
    verified: Option<u32>,
    /// `verified_current_key`, `verified_previous_key`, `verified_pending_key`.
    verified_key: [Option<u32>; KeyUsed::ALL.len()],
    verified_unsigned_payload: Option<u32>,
    verified_upgrade: Option<u32>,
    verified_rfc9421: Option<u32>,
    exempt: Option<u32>,
    cors_preflight: Option<u32>,
    nonce_cache_full: Option<u32>,
    internal_error: Option<u32>,
    rejected: [Option<u32>; Reject::ALL.len()],
}

fn counter(name: &str) -> Option<u32> {
    metric(MetricType::Counter, name)
}

fn metric(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log(LogLevel::Warn, || {
                format!("edge-hmac: cannot define metric {name}: {status:?}")
            });
            None
        }
    }
}

impl Metrics {
    /// Defines every counter (idempotent in Envoy: same name, same counter).
    pub fn define() -> Self {
        let mut rejected = [None; Reject::ALL.len()];
        for (slot, reason) in rejected.iter_mut().zip(Reject::ALL) {
            *slot = counter(&format!("edge_hmac.rejected.{}", reason.code()));
        }
        let mut verified_key = [None; KeyUsed::ALL.len()];
        for (id, slot) in verified_key.iter_mut().zip(KeyUsed::ALL) {
            *id = counter(&format!("edge_hmac.verified_{}_key", slot.slot()));
        }
        Self {
            verified: counter("edge_hmac.verified"),
            verified_key,
            verified_unsigned_payload: counter("edge_hmac.verified_unsigned_payload"),
            verified_upgrade: counter("edge_hmac.verified_upgrade"),
            verified_rfc9421: counter("edge_hmac.verified_rfc9421"),
            exempt: counter("edge_hmac.exempt"),
            cors_preflight: counter("edge_hmac.cors_preflight"),
            nonce_cache_full: counter("edge_hmac.nonce_cache_full"),
            internal_error: counter("edge_hmac.internal_error"),
            rejected,
        }
    }

    fn bump(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// A request fully verified (headers and body) with the key in `slot`.
    pub fn verified(&self, slot: KeyUsed) {
        Self::bump(self.verified);
        // KeyUsed's discriminants are its index in KeyUsed::ALL.
        Self::bump(self.verified_key.get(slot as usize).copied().flatten());
    }

    /// A verified request whose body was signed as `UNSIGNED-PAYLOAD`
    /// (counted besides [`Metrics::verified`]).
    pub fn unsigned_payload(&self) {
        Self::bump(self.verified_unsigned_payload);
    }

    /// A request whose RFC 9421 signature headers verified (counted besides
    /// [`Metrics::verified`], which also counts the body check).
    pub fn rfc9421(&self) {
        Self::bump(self.verified_rfc9421);
    }

    /// A verified upgrade handshake (websocket, CONNECT), counted besides
    /// [`Metrics::verified`] when the headers verify.
    pub fn upgrade(&self) {
        Self::bump(self.verified_upgrade);
    }

    /// A request on an exempt path.
    pub fn exempt(&self) {
        Self::bump(self.exempt);
    }

    /// A CORS preflight let through.
    pub fn cors_preflight(&self) {
        Self::bump(self.cors_preflight);
    }

    /// A rejection (and, for a full nonce bucket, `nonce_cache_full`).
    pub fn rejected(&self, rejection: Rejection) {
        if let Some(i) = Reject::ALL.iter().position(|r| *r == rejection.reason) {
            Self::bump(self.rejected.get(i).copied().flatten());
        }
        if rejection.detail == Detail::ReplayCacheFull {
            Self::bump(self.nonce_cache_full);
        }
    }

    /// The filter could not read its input from the host.
    pub fn internal_error(&self) {
        Self::bump(self.internal_error);
    }
}

/// The gauges that say which keys a running proxy holds: one per loaded key,
/// `edge_hmac.key.<slot>.<fingerprint>`, counting the filter instances (one
/// per worker thread and configuration) that hold it. A proxy holds a key
/// while its gauge is above zero; `edge-hmac rotate status` reads them.
#[derive(Debug, Default)]
pub struct KeyGauges {
    ids: Vec<u32>,
}

impl KeyGauges {
    /// Raises the gauge of every `(slot, fingerprint)` by one.
    pub fn hold<'a>(keys: impl IntoIterator<Item = (KeyUsed, &'a str)>) -> Self {
        let ids = keys
            .into_iter()
            .filter_map(|(slot, fingerprint)| {
                metric(
                    MetricType::Gauge,
                    &format!("edge_hmac.key.{}.{fingerprint}", slot.slot()),
                )
            })
            .collect::<Vec<_>>();
        for &id in &ids {
            let _ = hostcalls::increment_metric(id, 1);
        }
        Self { ids }
    }

    /// Lowers them again (the filter instance is going away).
    pub fn release(&mut self) {
        for id in self.ids.drain(..) {
            let _ = hostcalls::increment_metric(id, -1);
        }
    }
}
