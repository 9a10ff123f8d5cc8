//! Rung 3: hand-written readiness event loops on mio (epoll on Linux).
//!
//! ```text
//! thread loop-0: epoll_wait ─▶ accept / read / parse / connect / write ... ─▶ epoll_wait ─▶ ...
//! thread loop-1: epoll_wait ─▶ ...                (one loop per core, each with its own
//! thread loop-N: epoll_wait ─▶ ...                 SO_REUSEPORT listener and connections)
//! resolver-N:    getaddrinfo (blocking) ─▶ answer + Waker ─▶ the loop that asked
//!                (4 threads, up to 64 while lookups are slow)
//! signals:       SIGINT/SIGTERM ─▶ flag + every loop's Waker
//! ```
//!
//! Phases 1 and 2 wait by *blocking*: a thread sleeps inside `read()` until
//! its one socket has bytes. This phase waits by asking the kernel which of
//! its thousands of sockets are *ready* (`epoll_wait`), then does only the
//! I/O that will not block. One thread can then serve any number of
//! connections, and a slow peer costs a few hundred bytes of state instead
//! of a thread. The price is that nothing waits on a stack any more: each
//! connection's progress is an explicit state machine
//! ([`connection`]), every timeout is a deadline in a heap ([`timer`]),
//! and the one call that cannot be made non-blocking, name resolution, runs
//! on helper threads ([`dns`]). nginx and HAProxy are built this way.
//!
//! | file | what it shows |
//! |---|---|
//! | `lib.rs` | binding N listeners with `SO_REUSEPORT`, one thread per loop |
//! | [`event_loop`] | `epoll_wait`, tokens, accept, dispatch, timers, the waker |
//! | [`connection`] | the per-connection state machine (`enum State`) |
//! | [`socket`] | edge-triggered reads and writes, remembered readiness |
//! | [`buffer`] | fixed-size buffers lent by a per-loop pool (backpressure) |
//! | [`pump`] | a body through the framer, buffer to buffer |
//! | [`timer`] | the deadline heap that sets `epoll_wait`'s timeout |
//! | [`dns`] | `getaddrinfo` on helper threads, answers via `mio::Waker` |
//! | [`shutdown`] | SIGINT/SIGTERM: flag + wakers, then a grace period |
//!
//! Behaviour is the proxy contract with the FULL profile (keep-alive,
//! CONNECT tunnels, concurrent exchanges); `docs/phase3-epoll.md` has the
//! state diagram, an annotated `strace`, and the experiments.
//!
//! # One loop per core, `SO_REUSEPORT`
//!
//! Each loop binds its own listening socket to the same address with
//! `SO_REUSEPORT`; the kernel hashes each new connection to one of them, so
//! the loops never hand sockets to each other and share no lock on the hot
//! path. The alternative, one acceptor thread handing accepted sockets to
//! loops over channels (what tokio does, and HAProxy without
//! `SO_REUSEPORT`), balances load better when connections differ a lot in
//! cost, at the price of a cross-thread hand-off per connection. The doc
//! discusses both.
//!
//! # `--max-connections`
//!
//! One count for the whole process (an atomic shared by the loops). A
//! connection over the limit is accepted, told `503` at once
//! ([`proxy_core::answers::overloaded`]) and closed, rather than left in the
//! backlog: the client learns something immediately, and the proxy's
//! memory stays bounded (a few hundred such connections linger at most).
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod buffer;
pub mod connection;
pub mod dns;
pub mod event_loop;
pub mod pump;
pub mod shutdown;
pub mod socket;
pub mod timer;

#[cfg(test)]
mod fake;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use proxy_core::Config;

pub use shutdown::Shutdown;

/// The whole program, from a command line: parse the flags (exiting with
/// clap's message and status 2 on bad ones), set up logging on stderr, bind
/// one listener per loop, print `listening on IP:PORT`, install the signal
/// handlers, serve. `main.rs` calls it with the process's arguments; the
/// bench harness calls it from its own binary to run this phase.
pub fn main_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use anyhow::Context as _;

    let config = match Config::try_parse_from(proxy_core::Phase::Epoll, args) {
        Ok(config) => config,
        Err(e) => e.exit(),
    };
    proxy_core::process::init_logging(&config.log_level);
    let loops = config.workers.unwrap_or_else(default_loops);
    let listeners = Listeners::bind(config.listen, loops)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listeners.local_addr();
    proxy_core::process::announce(addr)?;
    tracing::info!(%addr, loops, mode = ?config.mode, "phase3-epoll ready");

    let shutdown = Shutdown::new();
    // The loops enforce the grace period themselves; the signal thread's
    // backstop, two seconds later, only catches a loop that never returns.
    let trigger = shutdown.clone();
    let signals = proxy_core::process::on_signals(
        move || trigger.trigger(),
        config.shutdown_grace + std::time::Duration::from_secs(2),
    )?;
    run(listeners, config, shutdown)?;
    signals.finish();
    tracing::info!("every event loop has stopped; exiting");
    Ok(())
}

/// One loop per available core.
pub fn default_loops() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The listening sockets, one per loop, all bound to the same address with
/// `SO_REUSEPORT`.
#[derive(Debug)]
pub struct Listeners {
    listeners: Vec<std::net::TcpListener>,
    addr: SocketAddr,
}

impl Listeners {
    /// Binds `count` listeners to `addr`. With port 0 the first one picks
    /// the port and the others join it.
    pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Listeners> {
        let first = bind_reuseport(addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..count.max(1) {
            listeners.push(bind_reuseport(addr)?);
        }
        Ok(Listeners { listeners, addr })
    }

    /// The address every listener is bound to (the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many loops these listeners feed.
    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    // The kernel spreads incoming connections over every socket bound to
    // the address with this option (same user only).
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // The kernel caps this at net.core.somaxconn.
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Serves on every listener, one event loop thread each, until `shutdown`
/// is triggered and the loops have finished their exchanges (or the grace
/// period has passed).
pub fn run(listeners: Listeners, mut config: Config, shutdown: Shutdown) -> io::Result<()> {
    config.workers = Some(listeners.len());
    let config = Arc::new(config);
    // Resolver threads: a slow DNS answer holds one of them, not a loop.
    let resolver = dns::Resolver::start(dns::MIN_THREADS, dns::MAX_THREADS)?;
    let limit = event_loop::ConnectionLimit::new(config.max_connections);
    let mut threads = Vec::new();
    for (index, listener) in listeners.listeners.into_iter().enumerate() {
        let (config, resolver, limit, shutdown) = (
            Arc::clone(&config),
            resolver.clone(),
            limit.clone(),
            shutdown.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("loop-{index}"))
            .spawn(move || {
                let mut guard = StopTheOthers {
                    shutdown: shutdown.clone(),
                    armed: true,
                };
                let result =
                    event_loop::EventLoop::new(index, listener, config, resolver, limit, shutdown)
                        .and_then(event_loop::EventLoop::run);
                guard.armed = result.is_err();
                result
            })?;
        threads.push(thread);
    }
    // The resolver threads stop once every loop has dropped its handle.
    drop(resolver);
    let mut result = Ok(());
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "an event loop failed");
                result = Err(e);
            }
            Err(_) => {
                tracing::error!("an event loop panicked");
                result = Err(io::Error::other("an event loop panicked"));
            }
        }
    }
    result
}

/// Held by each loop thread: if the loop ends early (an error, a panic),
/// shutdown is triggered, or the other loops would wait for a signal that
/// may never come while `run` waits for them.
struct StopTheOthers {
    shutdown: Shutdown,
    armed: bool,
}

impl Drop for StopTheOthers {
    fn drop(&mut self) {
        if self.armed {
            self.shutdown.trigger();
        }
    }
}
