//! Root context: compiles the configuration once per VM and hands it to every
//! HTTP context.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use edge_hmac_core::config::{self, FilterConfig};

use crate::host::{self, KeyGauges, Metrics, SharedData};
use crate::http::{Http, Unconfigured};

/// What every HTTP context of one filter instance shares.
pub struct Shared {
    /// The compiled configuration.
    pub config: FilterConfig,
    /// The counters.
    pub metrics: Metrics,
}

/// The root context.
#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// The key gauges this instance raised.
    keys: KeyGauges,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        self.keys.release();
        self.release_replay_table();
        true
    }
}

impl Root {
    /// Lets go of the replay table this instance held (a new configuration
    /// holds its own; the old table stays consulted until its nonces are
    /// stale).
    fn release_replay_table(&mut self) {
        if let Some(shared) = self.shared.take()
            && let Err(err) = shared
                .config
                .replay
                .unregister(&mut SharedData, host::now_unix())
        {
            host::log(LogLevel::Warn, || {
                format!("edge-hmac: cannot release the replay table: {err}")
            });
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        host::log(LogLevel::Info, || {
            edge_hmac_core::startup_line("proxy-wasm")
        });
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let raw = if plugin_configuration_size == 0 {
            Vec::new()
        } else {
            match hostcalls::get_buffer(
                BufferType::PluginConfiguration,
                0,
                plugin_configuration_size,
            ) {
                Ok(bytes) => bytes.unwrap_or_default(),
                Err(status) => {
                    host::log(LogLevel::Critical, || {
                        format!("edge-hmac: cannot read plugin configuration: {status:?}")
                    });
                    return false;
                }
            }
        };
        let config = match config::compile(&raw, |name| std::env::var(name).ok()) {
            Ok(config) => config,
            Err(err) => {
                host::log(LogLevel::Critical, || {
                    format!("edge-hmac: configuration rejected: {err}")
                });
                return false;
            }
        };
        // Create the replay buckets and hold the table before traffic, so
        // request-time updates are always compare-and-swap on an existing
        // entry and other instances also write their nonces into it.
        if let Err(err) = config.replay.register(&mut SharedData, host::now_unix()) {
            host::log(LogLevel::Critical, || {
                format!("edge-hmac: cannot initialise the replay cache: {err}")
            });
            return false;
        }
        host::log(LogLevel::Info, || {
            format!("edge-hmac: configured: {}", config.summary())
        });
        let fingerprints = config.verifier.fingerprints();
        self.keys.release();
        self.release_replay_table();
        self.keys = KeyGauges::hold(fingerprints.iter().map(|(slot, fp)| (*slot, fp.as_str())));
        self.shared = Some(Rc::new(Shared {
            config,
            metrics: Metrics::define(),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a valid configuration on_configure failed and Envoy refused
        // the filter, so this should not happen; if it does, refuse every
        // request (returning None would make the SDK panic).
        Some(match self.shared.clone() {
            Some(shared) => Box::new(Http::new(shared)),
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
