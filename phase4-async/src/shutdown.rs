//! Graceful shutdown: two cancellation tokens, one per stage.
//!
//! Phase 1 had to wake a thread blocked in `accept()` by connecting to
//! itself. In async code a wait is a future, and any future can lose a race:
//! `tokio::select!` between "the next connection" and "shutdown requested"
//! stops the accept loop without tricks. The same race, inside each
//! connection's task, is how an idle keep-alive connection stops waiting for
//! its next request.
//!
//! ```text
//! SIGTERM ──▶ run() stops accepting, drops the listener (new connections: refused)
//!             requested.cancel():  connections waiting for a request head close
//!                                  exchanges in flight carry on, answer with Connection: close
//!             TaskTracker::wait()  for at most --shutdown-grace
//! grace over ─▶ grace_over.cancel(): whatever still runs is dropped, its client reset
//! ```
//!
//! Why finish in-flight exchanges instead of cancelling them at once? A task
//! is cancelled by dropping its future: it simply never runs again, in the
//! middle of whatever `.await` it was parked on. A response half-written at
//! that moment stays half-written; if the connection were then closed with a
//! FIN, a client reading a close-delimited body (or an HTTP/1.0 one) would
//! take the truncated body for the whole thing. So in-flight exchanges get
//! the grace period to finish properly, and only what is still running after
//! it is cut, with a TCP reset that says "incomplete".

use std::future::Future;
use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The two stages of shutdown, shared by the accept loop and every task.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stage 1: stop accepting; idle connections close; no more keep-alive.
    requested: CancellationToken,
    /// Stage 2: the grace period is over; cut whatever is still running.
    grace_over: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Starts stage 1.
    pub fn request(&self) {
        self.requested.cancel();
    }

    /// True once stage 1 has started.
    pub fn is_requested(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// Completes when stage 1 starts (at once if it already has).
    pub async fn requested(&self) {
        self.requested.cancelled().await;
    }

    /// Starts stage 2.
    pub fn end_grace(&self) {
        self.grace_over.cancel();
    }

    /// Completes when stage 2 starts.
    pub async fn grace_over(&self) {
        self.grace_over.cancelled().await;
    }
}

/// Registers for SIGINT and SIGTERM now, and returns a future that completes
/// when the first of them arrives: the `shutdown` argument of [`crate::run`].
///
/// Registering early matters: until tokio installs its handler, SIGTERM
/// still has its default action (the process dies with the signal, not with
/// exit status 0). `main_from` calls this before printing `listening on`.
pub fn on_signals() -> io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: no new connections; finishing the exchanges in flight"
        );
    })
}
