//! Opening a connection to the upstream, with the contract's errors:
//! unresolvable or refused → 502, no connection within `--connect-timeout` → 504.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use proxy_core::{Authority, ProxyError};

/// Resolves `authority` and connects to the first address that answers,
/// all within `timeout`.
///
/// Name resolution is the one blocking call here without a deadline: the
/// standard library's `to_socket_addrs` calls `getaddrinfo`, which waits as
/// long as the system resolver does. For one thread serving one client at a
/// time that is acceptable; an event loop cannot afford it, which is why
/// phase 3 resolves on a helper thread.
pub fn connect(authority: &Authority, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (authority.host.as_str(), authority.port)
        .to_socket_addrs()
        .map_err(|e| ProxyError::BadGateway(format!("cannot resolve {authority}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(ProxyError::BadGateway(format!(
            "{authority} has no addresses"
        )));
    }
    let timed_out = || {
        ProxyError::GatewayTimeout(format!(
            "no connection to {authority} within {}s",
            timeout.as_secs()
        ))
    };
    let mut last_error = None;
    for addr in &addrs {
        // The budget is for the whole attempt, not per address: a name with
        // ten dead addresses must not cost ten timeouts.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(stream) => {
                // Heads and bodies go out in separate writes; without this,
                // Nagle's algorithm and delayed ACKs add ~40 ms to exchanges.
                stream.set_nodelay(true).ok();
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            timed_out()
        }
        Some(e) => ProxyError::BadGateway(format!("cannot connect to {authority}: {e}")),
        None => ProxyError::BadGateway(format!("cannot connect to {authority}")),
    })
}

/// Where a blocking phase gets its upstream connections. Phase 1 opens a
/// fresh one per exchange ([`FreshConnections`]); phase 2 keeps idle ones in a
/// pool and hands them out again.
pub trait Upstreams: Send + Sync + std::fmt::Debug {
    /// A connection to `authority`: an idle pooled one if there is one that
    /// is still alive, otherwise a new one (see [`connect`]).
    fn checkout(
        &self,
        authority: &Authority,
        timeout: Duration,
    ) -> Result<UpstreamConn, ProxyError>;

    /// Takes back a connection whose exchange completed cleanly (the whole
    /// response read, the upstream willing to keep it open).
    fn checkin(&self, authority: &Authority, stream: TcpStream);

    /// Whether connections are kept between exchanges at all. When false, the
    /// proxy asks the upstream to close (`Connection: close`).
    fn keeps_connections(&self) -> bool;
}

/// A connection to an upstream, and whether it was reused from a pool (then
/// the upstream may have closed it a moment ago; see `exchange::forward`).
#[derive(Debug)]
pub struct UpstreamConn {
    pub stream: TcpStream,
    pub reused: bool,
}

/// No pool: a new connection for every exchange, closed after it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FreshConnections;

impl Upstreams for FreshConnections {
    fn checkout(
        &self,
        authority: &Authority,
        timeout: Duration,
    ) -> Result<UpstreamConn, ProxyError> {
        Ok(UpstreamConn {
            stream: connect(authority, timeout)?,
            reused: false,
        })
    }

    fn checkin(&self, _authority: &Authority, _stream: TcpStream) {}

    fn keeps_connections(&self) -> bool {
        false
    }
}
