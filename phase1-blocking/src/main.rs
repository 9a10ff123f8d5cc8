//! `phase1-blocking`: parse the flags, bind, print the address, serve.

use std::io::{IsTerminal, Write};
use std::net::TcpListener;

use anyhow::Context as _;
use proxy_core::{Config, Phase};

fn main() -> anyhow::Result<()> {
    let config = Config::parse(Phase::Blocking);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_level))
        .init();

    let listener = TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, mode = ?config.mode, "phase1-blocking ready");

    let shutdown = phase1_blocking::Shutdown::new(&listener)?;
    phase1_blocking::shutdown::on_signals(shutdown.clone(), config.shutdown_grace)?;
    phase1_blocking::run(listener, config, shutdown)?;
    Ok(())
}
