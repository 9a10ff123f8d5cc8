//! The upstream side: connecting with the contract's errors, and one pool of
//! idle upstream connections shared by every task.
//!
//! **Connecting.** Unresolvable or refused → 502; no connection within
//! `--connect-timeout` → 504. Name resolution is `tokio::net::lookup_host`,
//! which runs the system's blocking `getaddrinfo` on tokio's blocking-thread
//! pool and awaits the result: the task waits, the worker thread does not.
//! (Phase 3 has to build that helper thread and its wake-up by hand.)
//!
//! **The pool.** The policy (per upstream, LIFO, bounded, idle-expired) is
//! proxy-core's [`IdlePool`]; this file adds the lock and the liveness check.
//! The lock is a `std::sync::Mutex`, not tokio's: it is held for a few
//! instructions (a `Vec::pop` or `push`) and never across an `.await`, and a
//! blocking mutex is both faster and simpler for that (tokio's docs say the
//! same). Settings:
//!
//! | setting | value | why |
//! |---|---|---|
//! | idle connections per upstream | [`MAX_IDLE_PER_UPSTREAM`] = 256 | at least the number of exchanges in flight at once: a smaller pool closes connections that the next request will open again (with 32, `wrk -c100` made the proxy open a new upstream connection for one request in four; see `docs/phase4-async.md`) |
//! | idle timeout | [`POOL_IDLE_TIMEOUT`] = 4 s | shorter than the most eager upstreams' keep-alive (Node.js and Apache close idle connections after 5 s, nginx after 75 s), so the proxy usually closes first |
//!
//! The bound is per upstream; in forward mode the whole pool holds at most
//! what the exchanges of the last 4 s returned to it.
//!
//! However short the idle timeout, an upstream may close a pooled
//! connection a moment before the proxy reuses it. Two defences, so that it
//! never becomes a 502: an [`is_alive`] check before reuse, and a retry on a fresh connection for
//! idempotent requests without a body (see `exchange::may_retry`).

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use proxy_core::pool::IdlePool;
use proxy_core::{Authority, ProxyError};

/// The bounds every phase uses (proxy-core explains why these values).
pub use proxy_core::pool::{IDLE_TIMEOUT as POOL_IDLE_TIMEOUT, MAX_IDLE_PER_UPSTREAM};

/// Resolves `authority` and connects to the first address that answers,
/// all within `timeout` (one budget for the whole attempt: a name with ten
/// dead addresses must not cost ten timeouts).
pub async fn connect(authority: &Authority, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let deadline = Instant::now() + timeout;
    // A resolver that does not answer in time has not resolved the name:
    // that is "unresolvable" (502), not a connect timeout.
    let addrs: Vec<SocketAddr> = match timeout_at(
        deadline,
        tokio::net::lookup_host((authority.host.as_str(), authority.port)),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            return Err(ProxyError::BadGateway(format!(
                "cannot resolve {authority}: {e}"
            )));
        }
        Err(_elapsed) => {
            return Err(ProxyError::BadGateway(format!(
                "cannot resolve {authority}: no answer within {}s",
                timeout.as_secs()
            )));
        }
    };
    if addrs.is_empty() {
        return Err(ProxyError::BadGateway(format!(
            "{authority} has no addresses"
        )));
    }
    let mut last_error = None;
    for addr in &addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Heads and bodies go out in separate writes; without this,
                // Nagle's algorithm and delayed ACKs add ~40 ms to exchanges.
                stream.set_nodelay(true).ok();
                return Ok(stream);
            }
            Ok(Err(e)) => last_error = Some(e),
            Err(_elapsed) => {
                return Err(ProxyError::GatewayTimeout(format!(
                    "no connection to {authority} within {}s",
                    timeout.as_secs()
                )));
            }
        }
    }
    Err(match last_error {
        Some(e) if e.kind() == io::ErrorKind::TimedOut => ProxyError::GatewayTimeout(format!(
            "no connection to {authority} within {}s",
            timeout.as_secs()
        )),
        Some(e) => ProxyError::BadGateway(format!("cannot connect to {authority}: {e}")),
        None => ProxyError::BadGateway(format!("cannot connect to {authority}")),
    })
}

/// A connection to an upstream, and whether it came from the pool.
#[derive(Debug)]
pub struct UpstreamConn {
    pub stream: TcpStream,
    /// True if it carried an earlier exchange: it may have been closed by
    /// the upstream since, which is what allows one retry.
    pub reused: bool,
}

/// Idle upstream connections, shared by every task (see the module docs).
#[derive(Debug)]
pub struct UpstreamPool {
    idle: Mutex<IdlePool<Authority, TcpStream>>,
}

impl Default for UpstreamPool {
    fn default() -> Self {
        UpstreamPool::new(MAX_IDLE_PER_UPSTREAM, POOL_IDLE_TIMEOUT)
    }
}

impl UpstreamPool {
    pub fn new(max_idle_per_upstream: usize, idle_timeout: Duration) -> Self {
        UpstreamPool {
            idle: Mutex::new(IdlePool::new(max_idle_per_upstream, idle_timeout)),
        }
    }

    /// A pooled connection to `authority` if a live one is idle, else a new one.
    pub async fn checkout(
        &self,
        authority: &Authority,
        connect_timeout: Duration,
    ) -> Result<UpstreamConn, ProxyError> {
        if let Some(stream) = self.take(authority) {
            return Ok(UpstreamConn {
                stream,
                reused: true,
            });
        }
        Ok(UpstreamConn {
            stream: connect(authority, connect_timeout).await?,
            reused: false,
        })
    }

    /// The most recently used idle connection to `authority` that is still
    /// alive. Dead ones found on the way are dropped (closed).
    pub fn take(&self, authority: &Authority) -> Option<TcpStream> {
        loop {
            // The lock guard is a temporary: it is released at the end of
            // this statement, before the liveness check and any drop.
            let stream = self.lock().take(authority, std::time::Instant::now())?;
            if is_alive(&stream) {
                return Some(stream);
            }
            tracing::debug!(%authority, "pooled upstream connection was closed; discarding it");
        }
    }

    /// Takes back a connection after a complete exchange (the caller checked
    /// that the upstream keeps it open and that nothing is left unread).
    pub fn checkin(&self, authority: &Authority, stream: TcpStream) {
        let now = std::time::Instant::now();
        let refused = {
            let mut idle = self.lock();
            idle.expire(now);
            idle.put(authority.clone(), stream, now)
        };
        // A full pool hands a connection back (this one, or its oldest): it
        // closes here, outside the lock.
        drop(refused);
    }

    /// How many idle connections the pool holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no connection is idle.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Closes every idle connection (at shutdown).
    pub fn clear(&self) {
        let all = self.lock().drain();
        drop(all);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdlePool<Authority, TcpStream>> {
        // A panic while holding the lock cannot leave the pool inconsistent
        // (each method is one call on IdlePool), so a poisoned lock is usable.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether an idle upstream connection can still carry a request.
///
/// An idle HTTP connection has nothing to say. If it is readable, the
/// upstream has closed it (a read would return 0), reset it (an error), or
/// sent bytes nobody asked for (which would be mistaken for the next
/// response): in all three cases it must not be used. Only "would block"
/// means alive.
///
/// The check asks the kernel directly (a non-blocking `MSG_PEEK` through
/// socket2), not tokio's `try_read`: `try_read` first consults the readiness
/// tokio has cached for the socket, and if the reactor has not yet processed
/// the upstream's FIN, it answers "would block" without asking the kernel.
pub fn is_alive(stream: &TcpStream) -> bool {
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(stream).peek(&mut probe) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A connected pair: (our side, the "upstream's" side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (ours, theirs)
    }

    /// Polls `is_alive` until it says false, for at most a second (a FIN
    /// takes a moment to arrive even on loopback).
    async fn becomes_dead(stream: &TcpStream) -> bool {
        for _ in 0..100 {
            if !is_alive(stream) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn an_open_quiet_connection_is_alive() {
        let (ours, _theirs) = pair().await;
        assert!(is_alive(&ours));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(is_alive(&ours), "still alive after a pause");
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_alive() {
        let (ours, theirs) = pair().await;
        drop(theirs);
        assert!(becomes_dead(&ours).await);
    }

    #[tokio::test]
    async fn a_connection_with_unexpected_bytes_is_not_alive() {
        let (ours, mut theirs) = pair().await;
        theirs.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert!(becomes_dead(&ours).await);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_reset_is_not_alive() {
        let (ours, theirs) = pair().await;
        socket2::SockRef::from(&theirs)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(theirs);
        assert!(becomes_dead(&ours).await);
    }

    #[tokio::test]
    async fn take_skips_dead_connections_and_hands_out_a_live_one() {
        let pool = UpstreamPool::default();
        let upstream = Authority {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let (live, _live_peer) = pair().await;
        let live_port = live.local_addr().unwrap().port();
        let (dead, dead_peer) = pair().await;
        pool.checkin(&upstream, live);
        pool.checkin(&upstream, dead);
        drop(dead_peer);
        // Give the FIN time to arrive (loopback: well under 100 ms).
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The dead one was returned last, so LIFO offers it first: take must
        // skip it and hand out the live one.
        let taken = pool.take(&upstream).expect("the live connection");
        assert_eq!(taken.local_addr().unwrap().port(), live_port);
        assert!(pool.take(&upstream).is_none());
        assert!(pool.is_empty());
    }

    #[tokio::test]
    async fn refused_connection_is_a_502() {
        // Bind and close to find a port where nothing listens.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let a = Authority {
            host: "127.0.0.1".into(),
            port,
        };
        let err = connect(&a, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.status(), 502, "{err}");
    }
}
