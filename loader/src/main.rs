//! `edge-hmac`: fetch the edge HMAC secret from AWS Secrets Manager, run a
//! local Envoy with the filter, sign and check requests, render Envoy and
//! Envoy Gateway configuration. See `edge-hmac --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_hmac::error::{EXIT_CODES, Error};
use edge_hmac::{fetch, render, run, sign, verify};

/// Request signatures at the edge: the operator and developer CLI around the
/// edge-hmac Envoy filter.
#[derive(Debug, Parser)]
#[command(name = "edge-hmac", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read the secret from Secrets Manager and print a summary (never the secret unless --reveal)
    Fetch(fetch::FetchArgs),
    /// Run a local Envoy with the filter (--dev: no AWS needed)
    Run(Box<run::RunArgs>),
    /// Print the x-crawbl-* headers (or a curl command) for a request
    Sign(Box<sign::SignArgs>),
    /// Check a raw HTTP request and say which rule it fails
    Verify(Box<verify::VerifyArgs>),
    /// Render configuration
    #[command(subcommand)]
    Render(render::RenderCmd),
    /// Serve a tiny echo upstream (for local tries and benchmarks)
    EchoUpstream(run::EchoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-hmac: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<ExitCode, Error> = runtime.block_on(async {
        match cli.command {
            Command::Fetch(a) => fetch::run(a).await.map(|()| ExitCode::SUCCESS),
            Command::Run(a) => run::run(*a).await,
            Command::Sign(a) => sign::run(*a).await.map(|()| ExitCode::SUCCESS),
            Command::Verify(a) => verify::run(*a).await.map(|()| ExitCode::SUCCESS),
            Command::Render(c) => render::run(c).map(|()| ExitCode::SUCCESS),
            Command::EchoUpstream(a) => run::echo(a).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edge-hmac: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
