//! A proxy-wasm HTTP filter that answers Continue to every callback (the SDK's
//! defaults): what any wasm filter costs in Envoy before doing any work.
//! Built with the same profile as the real filter, for `benches/envoy-load.sh`.

#[cfg(target_arch = "wasm32")]
#[allow(missing_docs)]
mod entry {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::ContextType;

    struct Root;
    struct Http;

    impl Context for Root {}
    impl RootContext for Root {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Http))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }
    impl Context for Http {}
    impl HttpContext for Http {}

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}
}
