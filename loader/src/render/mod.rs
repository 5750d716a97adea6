//! Configuration rendered from Rust types: the local Envoy bootstrap and the
//! Envoy Gateway / External Secrets manifests.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::run::FilterOpts;

pub mod envoy;

/// What `edge-hmac render` can render.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RenderCmd {
    /// The Envoy bootstrap for local runs (envoy/envoy-local.yaml is this with no flags)
    Envoy(RenderEnvoyArgs),
}

/// Arguments of `edge-hmac render envoy`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderEnvoyArgs {
    /// Listener address
    #[arg(long, value_name = "ADDR", default_value = envoy::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Admin address
    #[arg(long, value_name = "ADDR", default_value = envoy::DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Upstream address
    #[arg(long, value_name = "ADDR", default_value = envoy::DEFAULT_UPSTREAM)]
    pub upstream: SocketAddr,
    /// Path of the filter as Envoy will see it (relative to Envoy's working directory)
    #[arg(long, value_name = "PATH", default_value = envoy::DEFAULT_WASM)]
    pub wasm: PathBuf,
    /// Filter options
    #[command(flatten)]
    pub filter: FilterOpts,
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `edge-hmac render ...`.
pub fn run(cmd: RenderCmd) -> Result<()> {
    let (text, output) = match cmd {
        RenderCmd::Envoy(a) => {
            let local = envoy::LocalEnvoy::single(
                a.listen,
                a.admin,
                a.upstream,
                a.wasm.clone(),
                a.filter.plugin_config()?,
            );
            let text = local
                .to_yaml()
                .map_err(|e| Error::Other(format!("cannot render: {e}")))?;
            (text, a.output)
        }
    };
    match output {
        None => print!("{text}"),
        Some(path) => std::fs::write(&path, text).map_err(|source| Error::Io { path, source })?,
    }
    Ok(())
}
