//! `origin`: the test origin as a program, for demos and benchmarks.
//!
//! Only parses arguments, binds, prints the address and serves; everything
//! else is the library (see its docs for the endpoint table).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use origin::{OriginConfig, Stats, serve};

/// A fast, deterministic HTTP/1.1 origin server (see `cargo doc -p origin`
/// for its endpoints).
#[derive(Debug, Parser)]
#[command(name = "origin", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// tokio worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// Close keep-alive connections idle this many milliseconds (default: never).
    #[arg(long, value_name = "MS")]
    idle_timeout_ms: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.workers))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Scripts read this line to learn the port, so flush it right away.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;

    let config = OriginConfig {
        idle_timeout: args.idle_timeout_ms.map(Duration::from_millis),
        workers: usize::from(args.workers),
    };
    tokio::select! {
        served = serve(listener, config, Arc::new(Stats::default())) => served?,
        signal = stop_signal() => signal?,
    }
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT), or SIGTERM on Unix (what `kill` and
/// benchmark harnesses send), so both end the program with exit code 0.
async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
