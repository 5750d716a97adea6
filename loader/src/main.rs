//! `edge-hmac`: fetch the edge HMAC secret from AWS Secrets Manager, run a
//! local Envoy with the filter, sign and check requests, render Envoy and
//! Envoy Gateway configuration. See `edge-hmac --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_hmac::error::{EXIT_CODES, Error};
use edge_hmac::{check, fetch, load, nonce_store, render, rotate, run, sign, verify};
use edge_hmac_core::config::{SHOWN_MAX_LEN, shown};

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
    /// Send signed load (each request signed afresh; bounded; loopback unless --allow-remote) and report latency and outcomes
    Load(Box<load::LoadArgs>),
    /// Rotate the key without a failed request: begin (stage AWSPENDING), promote, retire; status
    #[command(subcommand)]
    Rotate(Box<rotate::RotateCmd>),
    /// Render configuration
    #[command(subcommand)]
    Render(render::RenderCmd),
    /// Serve a tiny echo upstream (for local tries and benchmarks)
    EchoUpstream(run::EchoArgs),
    /// Claim nonces in Redis for every proxy replica (the shared replay store)
    NonceStore(nonce_store::NonceStoreArgs),
    /// Is the edge protected right now? Audit Secrets Manager, External Secrets, Envoy Gateway and the proxies (reads only, plus port-forwards to proxy pods without --admin; exit 0 when nothing failed, 30 when a check failed, 31 when one could not be made)
    Check(Box<check::CheckArgs>),
}

/// `message` with every command-line value longer than
/// [`SHOWN_MAX_LEN`] replaced by its length and fingerprint: a key pasted
/// into any flag is never echoed, by clap's errors or ours. A value that
/// names an existing file stays readable (it is a path, not a key).
fn redact_args(message: &str) -> String {
    let mut values: Vec<String> = Vec::new();
    for arg in std::env::args_os().skip(1) {
        let Some(arg) = arg.to_str() else { continue };
        values.push(arg.to_owned());
        if let Some((_, value)) = arg.strip_prefix("--").and_then(|a| a.split_once('=')) {
            values.push(value.to_owned());
        }
    }
    values.retain(|v| v.len() > SHOWN_MAX_LEN && !std::path::Path::new(v).exists());
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = message.to_owned();
    for v in &values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), &shown(v));
        }
    }
    out
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{}", redact_args(&e.render().to_string()));
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
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
            Command::Load(a) => load::run(*a).await.map(|()| ExitCode::SUCCESS),
            Command::Rotate(c) => rotate::run(*c).await.map(|()| ExitCode::SUCCESS),
            Command::Render(c) => render::run(c).map(|()| ExitCode::SUCCESS),
            Command::EchoUpstream(a) => run::echo(a).await.map(|()| ExitCode::SUCCESS),
            Command::NonceStore(a) => nonce_store::run(a).await.map(|()| ExitCode::SUCCESS),
            Command::Check(a) => check::run(*a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edge-hmac: error: {}", redact_args(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}
