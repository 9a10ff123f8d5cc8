//! Opening a connection to the upstream, with the contract's errors:
//! unresolvable or refused → 502, no connection within `--connect-timeout` → 504.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use proxy_core::{Authority, ProxyError};

/// Resolves `authority` (blocking DNS: fine for one thread that serves one
/// client at a time; phase 3 must move this to a helper thread) and connects
/// to the first address that answers.
pub fn connect(authority: &Authority, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let addrs: Vec<SocketAddr> = (authority.host.as_str(), authority.port)
        .to_socket_addrs()
        .map_err(|e| ProxyError::BadGateway(format!("cannot resolve {authority}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(ProxyError::BadGateway(format!(
            "{authority} has no addresses"
        )));
    }
    let mut last_error = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
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
            ProxyError::GatewayTimeout(format!(
                "no connection to {authority} within {}s",
                timeout.as_secs()
            ))
        }
        Some(e) => ProxyError::BadGateway(format!("cannot connect to {authority}: {e}")),
        None => ProxyError::BadGateway(format!("cannot connect to {authority}")),
    })
}
