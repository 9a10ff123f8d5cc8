//! Rung 1: one thread, one connection at a time.
//!
//! ```text
//! loop {
//!     accept ──▶ read request ──▶ connect upstream ──▶ relay ──▶ close
//! }
//! ```
//!
//! The simplest proxy that is correct: the accept loop calls
//! [`exchange::serve_connection`] and only accepts again when it returns. It
//! needs no locks, no pools, no state machine, and it is easy to follow in a
//! debugger. It is also the baseline that shows why the next rungs exist:
//! while one exchange waits on a slow upstream, every other client waits in
//! the kernel's accept backlog (head-of-line blocking). `docs/phase1-blocking.md`
//! has the experiments.
//!
//! Documented differences from the later phases (the conformance suite's
//! `Profile::PHASE1`): every response carries `Connection: close` (a kept-alive
//! idle client would block everyone else), and CONNECT gets 501 (a tunnel
//! relays two directions at once, which one blocking thread cannot do).
//!
//! SIGPIPE: Rust programs start with SIGPIPE ignored, so writing to a client
//! that has gone away is an `EPIPE` error for that connection, not the death
//! of the process.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod exchange;
pub mod relay;
pub mod shutdown;
pub mod upstream;

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use proxy_core::Config;

pub use exchange::Context;
pub use shutdown::Shutdown;

/// The whole program, from a command line: [`start`], then [`run`].
/// `main.rs` calls it with the process's arguments; the bench harness calls
/// it from its own binary to run this phase as a child process.
pub fn main_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let started = start(proxy_core::Phase::Blocking, args)?;
    run(started.listener, started.config, started.shutdown)?;
    started.signals.finish();
    Ok(())
}

/// What every blocking phase does before serving: parse the flags (exiting
/// with clap's message and status 2 on bad ones), set up logging, bind,
/// print `listening on IP:PORT`, and install the SIGINT/SIGTERM handler.
pub fn start<I, T>(phase: proxy_core::Phase, args: I) -> anyhow::Result<Started>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use anyhow::Context as _;

    let config = match Config::try_parse_from(phase, args) {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    proxy_core::process::init_logging(&config.log_level);
    let listener = TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    proxy_core::process::announce(addr)?;
    tracing::info!(%addr, mode = ?config.mode, "{} ready", phase.binary_name());

    let shutdown = Shutdown::new(&listener)?;
    // A backstop: the phase's run() stops waiting after the grace period
    // itself; if something is still stuck two seconds later, exit anyway.
    let trigger = shutdown.clone();
    let signals = proxy_core::process::on_signals(
        move || trigger.trigger(),
        config.shutdown_grace + Duration::from_secs(2),
    )?;
    Ok(Started {
        listener,
        config,
        shutdown,
        signals,
    })
}

/// A bound, announced server, ready to [`run`]. Call
/// `signals.finish()` after it has stopped.
#[derive(Debug)]
pub struct Started {
    pub listener: TcpListener,
    pub config: Config,
    pub shutdown: Shutdown,
    pub signals: proxy_core::process::SignalThread,
}

/// Serves connections from `listener`, one at a time, until `shutdown` is
/// triggered; then returns (the exchange in flight, if any, is finished first).
pub fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<()> {
    let ctx = Context::single_exchange(config);
    for stream in listener.incoming() {
        if shutdown.is_triggered() {
            break;
        }
        match stream {
            Ok(client) => exchange::serve_connection(client, &ctx),
            Err(e) => {
                // EMFILE and friends: the error belongs to one connection
                // attempt, not to the server. Back off briefly so a full fd
                // table does not turn into a busy loop.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    tracing::info!("stopped accepting; exiting");
    Ok(())
}
