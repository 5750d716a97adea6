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

use edge_hmac_core::metrics::{COUNTERS, Counter, Counters, key_gauge_name};
use edge_hmac_core::replay::{SharedStore, StoreError};
use edge_hmac_core::scheme::KeyUsed;

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

/// The filter's counters (Envoy shows them as `wasmcustom.edge_hmac.*`):
/// one proxy-wasm metric id per [`Counter`], at its index.
#[derive(Debug)]
pub struct Metrics {
    ids: [Option<u32>; COUNTERS],
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
        Self {
            ids: Counter::ALL.map(|c| metric(MetricType::Counter, &c.name())),
        }
    }
}

impl Counters for Metrics {
    fn count(&self, counter: Counter) {
        if let Some(id) = self.ids.get(counter.index()).copied().flatten() {
            let _ = hostcalls::increment_metric(id, 1);
        }
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
                metric(MetricType::Gauge, &key_gauge_name(slot, fingerprint))
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
