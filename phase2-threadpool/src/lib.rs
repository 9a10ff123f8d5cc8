//! Rung 2: blocking I/O on a bounded pool of worker threads.
//!
//! ```text
//! accept thread:  accept ─▶ room? ──yes──▶ queue ─▶ worker 1: serve_connection (keep-alive loop)
//!                              │                   worker 2: serve_connection
//!                              no                  ...
//!                              ▼                   worker N: serve_connection
//!                       503, close (load shedding)
//! ```
//!
//! Phase 1's connection handler, unchanged, dispatched differently: the
//! accept thread hands each connection to a pool of `--workers` threads
//! (the Rust Book's `handle_connection` → `pool.execute`). Because waiting
//! now happens on many threads at once, phase 2 can afford what phase 1
//! could not:
//!
//! - **keep-alive**: a worker stays with its client between requests;
//! - **an upstream pool**: idle upstream connections are shared by all
//!   workers ([`upstream_pool`]);
//! - **CONNECT**: one more thread per tunnel relays the second direction
//!   ([`tunnel`]).
//!
//! What it costs: a thread per connection *being served*, and a client idle
//! between two requests still pins its worker. With `--workers 128`, 128 idle
//! keep-alive clients leave nobody to serve the 129th. `docs/phase2-threadpool.md`
//! has the experiments.
//!
//! **The queue policy** (written here by hand; it is the lesson): the
//! `threadpool` crate's job queue is unbounded, so the accept thread counts
//! admitted connections itself. At most `--max-connections` connections are
//! admitted (being served or queued for a worker); beyond that the accept
//! thread answers `503` at once and closes. A bounded queue turns overload
//! into a fast, clear refusal instead of ever-growing memory and latency.

#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod tunnel;
pub mod upstream_pool;

use std::io::{self, Read, Write};
use std::net::{Shutdown as SocketShutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use phase1_blocking::exchange::{self, Context};
use phase1_blocking::shutdown::Shutdown;
use proxy_core::{Config, answers};

use upstream_pool::PooledUpstreams;

/// Workers when `--workers` is not given. Blocking workers spend nearly all
/// their time waiting (on clients, on upstreams), not computing, so the right
/// number is "how many connections may be served at once", not "how many
/// cores": far more than the core count. Each costs a thread (a stack of
/// [`WORKER_STACK`] reserved, a few pages touched) and a slot in the
/// scheduler.
pub const DEFAULT_WORKERS: usize = 128;

/// Stack reserved per worker. The exchange code keeps its buffers on the
/// heap, so a small stack is enough; it bounds the address space 1,000
/// workers reserve (256 MiB instead of the default 2 GiB).
pub const WORKER_STACK: usize = 256 * 1024;

/// Which pool runs the connections (`--pool`, a phase-2-only experiment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// The `threadpool` crate: N threads pulling jobs from one queue. Built
    /// for jobs that block.
    ThreadPool,
    /// rayon's pool: N threads with work-stealing deques. Built for CPU-bound
    /// jobs that never block; see the chapter for what blocking I/O does to it.
    Rayon,
}

/// The worker pool, behind one interface.
enum Workers {
    ThreadPool(threadpool::ThreadPool),
    Rayon(rayon::ThreadPool),
}

impl Workers {
    fn new(kind: PoolKind, n: usize) -> io::Result<Workers> {
        Ok(match kind {
            PoolKind::ThreadPool => Workers::ThreadPool(
                threadpool::Builder::new()
                    .num_threads(n)
                    .thread_name("worker".into())
                    .thread_stack_size(WORKER_STACK)
                    .build(),
            ),
            PoolKind::Rayon => Workers::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .stack_size(WORKER_STACK)
                    .thread_name(|i| format!("rayon-{i}"))
                    .build()
                    .map_err(io::Error::other)?,
            ),
        })
    }

    fn execute(&self, job: impl FnOnce() + Send + 'static) {
        match self {
            Workers::ThreadPool(pool) => pool.execute(job),
            Workers::Rayon(pool) => pool.spawn(job),
        }
    }
}

/// Serves connections from `listener` on a pool of workers until `shutdown`
/// is triggered; then stops accepting, lets in-flight exchanges finish and
/// returns.
pub fn run(listener: TcpListener, config: Config, shutdown: Shutdown) -> io::Result<()> {
    run_with(listener, config, shutdown, PoolKind::ThreadPool)
}

/// [`run`], with a choice of pool.
pub fn run_with(
    listener: TcpListener,
    config: Config,
    shutdown: Shutdown,
    kind: PoolKind,
) -> io::Result<()> {
    let workers = config.workers.unwrap_or(DEFAULT_WORKERS);
    let limit = config.max_connections.max(1);
    let grace = config.shutdown_grace;
    let pool = Workers::new(kind, workers)?;
    let upstreams = Arc::new(PooledUpstreams::new());
    let ctx = Arc::new(Context {
        config,
        keep_alive: true,
        upstreams: upstreams.clone(),
        tunnel: Some(tunnel::relay),
        shutdown: Some(shutdown.clone()),
    });
    tracing::info!(workers, ?kind, max_connections = limit, "worker pool ready");

    // Connections admitted: queued for a worker or being served.
    let admitted = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if shutdown.is_triggered() {
            break;
        }
        let client = match stream {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if admitted.load(Ordering::Acquire) >= limit {
            shed(client);
            continue;
        }
        let slot = Slot::take(&admitted);
        let ctx = Arc::clone(&ctx);
        pool.execute(move || {
            let _slot = slot;
            exchange::serve_connection(client, &ctx);
        });
    }
    // Stop accepting: connections arriving from now on are refused.
    drop(listener);
    tracing::info!("stopped accepting; waiting for in-flight exchanges");
    let deadline = Instant::now() + grace;
    while admitted.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    upstreams.close_idle();
    tracing::info!(left = admitted.load(Ordering::Acquire), "exiting");
    Ok(())
}

/// One admitted connection; the count goes down when the job ends, however
/// it ends (a panic in a handler included).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(admitted: &Arc<AtomicUsize>) -> Slot {
        admitted.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(admitted))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Load shedding on the accept thread: a 503 and a close, without reading
/// the request and without ever blocking (the socket is non-blocking; a
/// fresh socket's send buffer always has room for 200 bytes).
fn shed(client: TcpStream) {
    tracing::debug!(peer = ?client.peer_addr().ok(), "over --max-connections: 503");
    if client.set_nonblocking(true).is_err() {
        return;
    }
    let _ = (&client).write_all(&answers::overloaded());
    let _ = client.shutdown(SocketShutdown::Write);
    // Discard what the client already sent, so that closing sends a FIN and
    // not a reset (which could destroy the 503 before the client reads it).
    let mut scratch = [0u8; 4096];
    while matches!((&client).read(&mut scratch), Ok(n) if n > 0) {}
}

/// The whole program from a command line (see `phase1_blocking::main_from`):
/// the shared flags, plus `--pool threadpool|rayon` (phase 2 only).
pub fn main_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let (args, kind) = take_pool_flag(args.into_iter().map(Into::into).collect())?;
    let started = phase1_blocking::start(proxy_core::Phase::ThreadPool, args)?;
    run_with(started.listener, started.config, started.shutdown, kind)?;
    started.signals.finish();
    Ok(())
}

/// Removes `--pool X` / `--pool=X` from the arguments (the shared command
/// line does not know it).
fn take_pool_flag(
    args: Vec<std::ffi::OsString>,
) -> anyhow::Result<(Vec<std::ffi::OsString>, PoolKind)> {
    let mut kind = PoolKind::ThreadPool;
    let mut rest = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let value = match arg.to_str() {
            Some("--pool") => iter.next().and_then(|v| v.into_string().ok()),
            Some(s) if s.starts_with("--pool=") => Some(s["--pool=".len()..].to_string()),
            _ => {
                rest.push(arg);
                continue;
            }
        };
        kind = match value.as_deref() {
            Some("threadpool") => PoolKind::ThreadPool,
            Some("rayon") => PoolKind::Rayon,
            other => {
                eprintln!(
                    "error: invalid value {other:?} for '--pool' [possible values: threadpool, rayon]"
                );
                std::process::exit(2);
            }
        };
    }
    Ok((rest, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(Into::into).collect()
    }

    #[test]
    fn pool_flag_is_taken_out_of_the_shared_flags() {
        let (rest, kind) = take_pool_flag(os(&["p", "--pool", "rayon", "--workers", "2"])).unwrap();
        assert_eq!(rest, os(&["p", "--workers", "2"]));
        assert_eq!(kind, PoolKind::Rayon);
        let (rest, kind) = take_pool_flag(os(&["p", "--pool=threadpool"])).unwrap();
        assert_eq!(rest, os(&["p"]));
        assert_eq!(kind, PoolKind::ThreadPool);
        let (_, kind) = take_pool_flag(os(&["p"])).unwrap();
        assert_eq!(kind, PoolKind::ThreadPool);
    }
}
