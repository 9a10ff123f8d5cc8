//! Rung 4: tokio, a task per connection.
//!
//! ```text
//! accept loop (main thread):  permit ──▶ accept ──▶ spawn(serve_connection) ──┐
//!                                ▲                                            │
//!                                └────────────────────────────────────────────┘
//! tasks (thousands):   serve_connection: read head ─▶ forward ─▶ relay ─▶ read head ─▶ ...
//! runtime:             N worker threads poll whichever tasks are ready;
//!                      one reactor (epoll) turns socket readiness into wake-ups
//! ```
//!
//! The handler ([`exchange`]) reads like phase 1's blocking code with
//! `.await` after every wait, and that is the point of this rung: the
//! compiler turns each `async fn` into a state machine (an enum with one
//! variant per `.await` it can be suspended at), which is what phase 3
//! writes by hand. A waiting connection costs its task (a few KiB, see
//! `docs/phase4-async.md`), not a thread's stack.
//!
//! The pieces, each in the style of tokio's mini-redis:
//! - [`run`] takes the listener, the configuration and a `shutdown` future,
//!   so tests (and the bench harness) can run the proxy in-process;
//! - `--max-connections` is a [`Semaphore`]: a permit is taken *before*
//!   `accept`, moved into the connection's task and released when the task
//!   ends. At the limit the proxy simply stops accepting, and new clients
//!   wait in the kernel's backlog ([`LISTEN_BACKLOG`]) until a connection
//!   ends. Phase 2 answers 503 instead; here a waiting client costs the
//!   proxy nothing, not even a file descriptor;
//! - graceful shutdown: see [`shutdown`].
//!
//! SIGPIPE: Rust programs start with SIGPIPE ignored, so writing to a client
//! that has gone away is an `EPIPE` error for that connection's task, not
//! the death of the process.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod exchange;
pub mod relay;
pub mod shutdown;
pub mod tunnel;
pub mod upstream;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use proxy_core::Config;

pub use shutdown::Shutdown;
pub use upstream::UpstreamPool;

/// What every connection's task shares (behind one `Arc`).
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    /// Idle upstream connections, shared by all tasks.
    pub upstreams: UpstreamPool,
    /// The shutdown stages every task watches.
    pub shutdown: Shutdown,
}

impl Context {
    pub fn new(config: Config) -> Context {
        Context {
            config,
            upstreams: UpstreamPool::default(),
            shutdown: Shutdown::new(),
        }
    }
}

/// The whole program, from a command line: parse the flags (exiting with
/// clap's message and status 2 on bad ones), set up logging on stderr, build
/// the runtime, bind, print `listening on IP:PORT`, serve until SIGINT or
/// SIGTERM. `main.rs` calls it with the process's arguments; the bench
/// harness calls it from its own binary to run this phase as a child process.
pub fn main_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use anyhow::Context as _;

    let config = match Config::try_parse_from(proxy_core::Phase::Async, args) {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    proxy_core::process::init_logging(&config.log_level);

    // Default: one worker thread per core. Workers never block (every wait
    // is an .await), so more threads than cores would only add switching.
    let workers = config.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("phase4-worker")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;

    let result = runtime.block_on(async {
        let listener =
            bind(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // Before announcing the address: from then on a SIGTERM must mean
        // "shut down gracefully", not the default "die".
        let signals = shutdown::on_signals().context("cannot install signal handlers")?;
        proxy_core::process::announce(addr)?;
        tracing::info!(%addr, mode = ?config.mode, workers, "phase4-async ready");
        run(listener, config, signals).await?;
        anyhow::Ok(())
    });
    // `run` has waited for its tasks. What may remain are name lookups on
    // tokio's blocking pool (getaddrinfo cannot be cancelled): do not wait
    // for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The listen backlog: how many connections the kernel completes and queues
/// before the proxy accepts them. With `--max-connections` implemented as
/// "stop accepting", this queue is the waiting room, so it is set here
/// rather than left to the standard library's 128. (Linux caps it at
/// `net.core.somaxconn`, 4096 by default.)
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listener with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// `std::net::TcpListener::bind` does, so a restarted proxy can bind at once).
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves connections from `listener`, a task per connection, until
/// `shutdown` completes; then stops accepting, closes idle connections, lets
/// exchanges in flight finish within `config.shutdown_grace`, cuts the rest,
/// and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future) -> io::Result<()> {
    let grace = config.shutdown_grace;
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let ctx = Arc::new(Context::new(config));
    // A TaskTracker is a counter of live tasks that can be awaited: the
    // "wait until every handler is done" half of mini-redis's shutdown.
    let tasks = TaskTracker::new();
    tokio::pin!(shutdown);

    loop {
        // The permit first: at the limit, this waits, and nobody is accepted
        // until a connection ends. `biased`: shutdown wins every tie.
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break, // never closed; nothing left to serve
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _)) => {
                let ctx = Arc::clone(&ctx);
                tasks.spawn(async move {
                    exchange::serve_connection(client, &ctx).await;
                    // Released when the connection is done, not before.
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: the error belongs to one connection
                // attempt, not to the server. Back off briefly so a full fd
                // table does not turn into a busy loop.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // New connections are refused from here on.
    drop(listener);
    ctx.shutdown.request();
    tasks.close();
    tracing::info!(
        connections = tasks.len(),
        ?grace,
        "stopped accepting; waiting for exchanges in flight"
    );
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "grace period over; resetting the connections still busy"
        );
        ctx.shutdown.end_grace();
        // Each task now resets its connection and ends at its next poll.
        let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    }
    ctx.upstreams.clear();
    tracing::info!("all connections done; exiting");
    Ok(())
}
