//! Graceful shutdown for a server that spends its life blocked in `accept`.
//!
//! A blocking `accept()` cannot be interrupted by setting a flag: the thread
//! is asleep in the kernel. The classic trick, used here, is to set the flag
//! and then *connect to ourselves*: `accept` returns that connection, the loop
//! sees the flag and stops. No signal ever interrupts a read or write in
//! flight, so the exchange being served finishes normally.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A cloneable "please stop" handle for one listener.
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    /// Where to connect to wake the accept loop (the listener's address, with
    /// a wildcard IP replaced by loopback).
    wake_addr: SocketAddr,
}

impl Shutdown {
    /// A handle for `listener`.
    pub fn new(listener: &TcpListener) -> std::io::Result<Shutdown> {
        let mut wake_addr = listener.local_addr()?;
        if wake_addr.ip().is_unspecified() {
            wake_addr.set_ip(match wake_addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Ok(Shutdown {
            requested: Arc::new(AtomicBool::new(false)),
            wake_addr,
        })
    }

    /// Asks the server to stop accepting; the exchange in flight finishes.
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        // Wake a blocked accept(). If the server is busy, this connection
        // waits in the backlog and is seen after the current exchange.
        let _ = TcpStream::connect_timeout(&self.wake_addr, Duration::from_secs(1));
    }

    /// True once [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Triggers `shutdown` on SIGINT or SIGTERM (from a small signal thread), and
/// exits the process with status 0 if in-flight work has not finished
/// `grace` later.
pub fn on_signals(shutdown: Shutdown, grace: Duration) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(
                    signal,
                    "shutting down: no new connections; finishing the exchange in flight"
                );
                shutdown.trigger();
                std::thread::sleep(grace);
                tracing::warn!(?grace, "grace period over; exiting with work in flight");
                std::process::exit(0);
            }
        })?;
    Ok(())
}
