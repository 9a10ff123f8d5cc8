//! Graceful shutdown for a server that spends its life blocked in `accept`.
//!
//! A blocking `accept()` cannot be interrupted by setting a flag: the thread
//! is asleep in the kernel. The classic trick, used here, is to set the flag
//! and then *connect to ourselves*: `accept` returns that connection, the loop
//! sees the flag and stops. No signal ever interrupts a read or write in
//! flight, so the exchange being served finishes normally.
//!
//! With keep-alive (phase 2), a worker may also be asleep in `read()` on an
//! idle connection, waiting for a next request that may come in 30 seconds
//! or never. The same idea applies: to wake a thread blocked on a socket,
//! shut the socket down. Connections register while they wait idle
//! ([`Shutdown::idle`]), and [`Shutdown::trigger`] shuts down their read
//! side, so the blocked `read()` returns 0 and the worker moves on.

use std::collections::HashMap;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A cloneable "please stop" handle for one listener.
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    /// Where to connect to wake the accept loop (the listener's address, with
    /// a wildcard IP replaced by loopback).
    wake_addr: SocketAddr,
    /// Connections waiting idle for their next request, by registration id.
    idle: Arc<Mutex<HashMap<u64, TcpStream>>>,
    next_id: Arc<AtomicU64>,
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
            idle: Arc::new(Mutex::new(HashMap::new())),
            next_id: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Asks the server to stop accepting; exchanges in flight finish, and
    /// connections waiting idle for a next request are closed.
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        for stream in self.idle_streams().drain().map(|(_, s)| s) {
            let _ = stream.shutdown(SocketShutdown::Read);
        }
        // Wake a blocked accept(). If the server is busy, this connection
        // waits in the backlog and is seen after the current exchange.
        let _ = TcpStream::connect_timeout(&self.wake_addr, Duration::from_secs(1));
    }

    /// Registers `stream` as idle (waiting for its next request) until the
    /// returned guard is dropped. Returns `None` if shutdown has already
    /// begun (the caller should close the connection) or the socket cannot be
    /// cloned.
    pub fn idle(&self, stream: &TcpStream) -> Option<IdleGuard> {
        let clone = stream.try_clone().ok()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.idle_streams().insert(id, clone);
        // Checked after registering: a trigger() in between has either seen
        // this stream or set the flag before we look at it.
        if self.is_triggered() {
            self.idle_streams().remove(&id);
            return None;
        }
        Some(IdleGuard {
            registry: Arc::clone(&self.idle),
            id,
        })
    }

    fn idle_streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TcpStream>> {
        // A panic while holding this lock leaves the map intact: keep going.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Keeps a connection registered as idle; dropping it unregisters.
#[derive(Debug)]
pub struct IdleGuard {
    registry: Arc<Mutex<HashMap<u64, TcpStream>>>,
    id: u64,
}

impl Drop for IdleGuard {
    fn drop(&mut self) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}
