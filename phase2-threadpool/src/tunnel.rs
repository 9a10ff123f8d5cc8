//! CONNECT tunnels on blocking I/O: two directions, two threads.
//!
//! After `200 Connection Established` the connection carries raw bytes both
//! ways, and either side may speak at any time. A blocking `read()` waits on
//! one socket, so each direction gets its own thread: the worker copies
//! client → upstream, a helper thread copies upstream → client.
//!
//! When one side finishes sending (EOF), the copy passes that on with
//! `shutdown(Write)` on the other socket: a half-close, not a reset, so the
//! other direction can still deliver its last bytes (HTTP/1.0 clients and
//! many protocols send a request, half-close, then read the answer). An
//! error (a reset) ends both directions. A tunnel idle in both directions
//! for `--idle-timeout` is closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use phase1_blocking::exchange::TunnelBytes;
use proxy_core::Config;

/// How often a blocked direction wakes up to check whether the whole tunnel
/// has been idle too long.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Relays the tunnel until both directions are done (a [`Tunnel`] for
/// phase 1's shared exchange code).
///
/// [`Tunnel`]: phase1_blocking::exchange::Tunnel
pub fn relay(
    client: &TcpStream,
    pending: Vec<u8>,
    mut upstream: TcpStream,
    config: &Config,
) -> TunnelBytes {
    let activity = Activity::new();
    // Bytes the client sent right after its CONNECT head are the tunnel's first.
    if upstream.write_all(&pending).is_err() {
        return TunnelBytes::default();
    }
    let (Ok(client_in), Ok(client_out), Ok(upstream_in)) =
        (client.try_clone(), client.try_clone(), upstream.try_clone())
    else {
        return TunnelBytes::default();
    };
    let idle = config.idle_timeout;
    let down_activity = activity.clone();
    let downstream = std::thread::Builder::new()
        .name("tunnel".into())
        .spawn(move || copy_direction(upstream_in, client_out, &down_activity, idle));
    let Ok(downstream) = downstream else {
        // No thread for the second direction: close rather than half-serve.
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return TunnelBytes::default();
    };
    let to_upstream = pending.len() as u64 + copy_direction(client_in, upstream, &activity, idle);
    let to_client = downstream.join().unwrap_or(0);
    TunnelBytes {
        to_upstream,
        to_client,
    }
}

/// Copies `from` → `to` until `from` ends; returns the bytes copied.
fn copy_direction(
    mut from: TcpStream,
    mut to: TcpStream,
    activity: &Activity,
    idle: Duration,
) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    if from.set_read_timeout(Some(IDLE_CHECK.min(idle))).is_err() {
        return 0;
    }
    let _ = to.set_write_timeout(Some(idle));
    loop {
        match from.read(&mut buf) {
            // EOF: pass the half-close on; the other direction carries on.
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return copied;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                copied += n as u64;
                activity.touch();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if activity.idle_for() >= idle {
                    tracing::debug!(?idle, "tunnel idle; closing");
                    break;
                }
            }
            Err(_) => break,
        }
    }
    // An error or an idle tunnel ends both directions: shutting both sockets
    // down wakes the other thread from its blocking read.
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    copied
}

/// When either direction last moved a byte, shared by both threads.
#[derive(Debug, Clone)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}
