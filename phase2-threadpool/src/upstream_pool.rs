//! Upstream connections kept open between exchanges and shared by all
//! workers: the pool *policy* is proxy-core's [`IdlePool`] (bounded per
//! upstream, last in first out, idle-expired); this file adds the lock and
//! the one check only a socket can answer: is this connection still alive?

use std::io;
use std::net::TcpStream;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use phase1_blocking::upstream::{self, UpstreamConn, Upstreams};
use proxy_core::pool::{self, IdlePool};
use proxy_core::{Authority, ProxyError};

/// A pool of idle upstream connections shared by every worker thread.
#[derive(Debug)]
pub struct PooledUpstreams {
    // A std Mutex: it is held for a HashMap lookup, never across I/O.
    idle: Mutex<IdlePool<Authority, TcpStream>>,
}

impl PooledUpstreams {
    pub fn new() -> PooledUpstreams {
        PooledUpstreams {
            idle: Mutex::new(IdlePool::new(
                pool::MAX_IDLE_PER_UPSTREAM,
                pool::IDLE_TIMEOUT,
            )),
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, IdlePool<Authority, TcpStream>> {
        // The pool holds no invariant a panicking holder could break.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every idle connection (at shutdown).
    pub fn close_idle(&self) {
        let drained = self.pool().drain();
        drop(drained);
    }
}

impl Default for PooledUpstreams {
    fn default() -> Self {
        PooledUpstreams::new()
    }
}

impl Upstreams for PooledUpstreams {
    fn checkout(
        &self,
        authority: &Authority,
        timeout: Duration,
    ) -> Result<UpstreamConn, ProxyError> {
        loop {
            // Take one under the lock, check it outside the lock.
            let Some(stream) = self.pool().take(authority, Instant::now()) else {
                break;
            };
            if is_alive(&stream) {
                return Ok(UpstreamConn {
                    stream,
                    reused: true,
                });
            }
            tracing::debug!(%authority, "dropping a pooled connection the upstream has closed");
        }
        Ok(UpstreamConn {
            stream: upstream::connect(authority, timeout)?,
            reused: false,
        })
    }

    fn checkin(&self, authority: &Authority, stream: TcpStream) {
        let now = Instant::now();
        let mut pool = self.pool();
        pool.expire(now);
        // A full pool hands the connection back: dropping it closes it.
        let _ = pool.put(authority.clone(), stream, now);
    }

    fn keeps_connections(&self) -> bool {
        true
    }
}

/// An idle connection should have nothing to read: no response is due. A
/// non-blocking peek tells the three cases apart without consuming anything:
/// `WouldBlock` (alive and quiet), `Ok(0)` (the upstream closed it), or bytes
/// or an error (broken; never reuse it).
fn is_alive(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let quiet = matches!(stream.peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && quiet
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn a_quiet_connection_is_alive() {
        let (client, _server) = pair();
        assert!(is_alive(&client));
        // And it is back in blocking mode.
        client
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut buf = [0u8; 1];
        let err = client.peek(&mut buf).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    }

    #[test]
    fn a_connection_closed_by_the_peer_is_not_alive() {
        let (client, server) = pair();
        drop(server);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!is_alive(&client));
    }

    #[test]
    fn a_connection_with_unexpected_bytes_is_not_alive() {
        let (client, mut server) = pair();
        server.write_all(b"HTTP/1.1 200 OK\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!is_alive(&client));
    }

    #[test]
    fn checkout_skips_dead_connections_and_reuses_live_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let authority = Authority {
            host: "127.0.0.1".into(),
            port: addr.port(),
        };
        let pool = PooledUpstreams::new();
        let live = TcpStream::connect(addr).unwrap();
        let (_live_server, _) = listener.accept().unwrap();
        let dead = TcpStream::connect(addr).unwrap();
        let (dead_server, _) = listener.accept().unwrap();
        let live_port = live.local_addr().unwrap().port();
        pool.checkin(&authority, live);
        pool.checkin(&authority, dead);
        drop(dead_server);
        std::thread::sleep(Duration::from_millis(50));
        // The dead one was returned last, so it is found first and skipped.
        let got = pool.checkout(&authority, Duration::from_secs(1)).unwrap();
        assert!(got.reused);
        assert_eq!(got.stream.local_addr().unwrap().port(), live_port);
        // The pool is now empty: the next checkout connects afresh.
        let fresh = pool.checkout(&authority, Duration::from_secs(1)).unwrap();
        assert!(!fresh.reused);
    }
}
