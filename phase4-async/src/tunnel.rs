//! CONNECT tunnels: `tokio::io::copy_bidirectional`, plus the one thing it
//! does not do, an idle timeout.
//!
//! Phase 2 needs two threads for a tunnel (one per direction) and phase 3
//! two interests on one loop. Here it is one future: `copy_bidirectional`
//! polls both directions, and whichever socket is ready makes progress. When
//! one side finishes sending (EOF), it shuts down the other side's sending
//! half (a half-close is passed on, not turned into a reset), and it returns
//! when both directions are done. Each direction has one bounded buffer, so
//! a slow side applies backpressure to the fast one.
//!
//! A tunnel idle in both directions for `--idle-timeout` is closed, as in
//! phases 2 and 3. `copy_bidirectional` has no such timer, and a plain
//! `timeout` around it would cut busy tunnels too. So each socket is wrapped
//! in `Watched`, which notes the time of every byte moved, and the copy
//! races ([`tokio::select!`]) a watchdog that sleeps until "last activity +
//! idle timeout" and checks again: the same deadline-that-moves idea as a
//! keep-alive timer, built from two futures.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides finished sending: bytes relayed client → upstream and
    /// upstream → client.
    Closed { to_upstream: u64, to_client: u64 },
    /// Nothing moved either way for the idle timeout.
    Idle,
}

/// Buffer size per tunnel direction.
const TUNNEL_BUFFER: usize = 64 * 1024;

/// Relays raw bytes between `client` and `upstream` until both directions
/// are done, or until nothing has moved for `idle`.
pub async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
) -> io::Result<TunnelEnd> {
    let activity = Activity::new();
    let mut client = Watched {
        inner: client,
        activity: &activity,
    };
    let mut upstream = Watched {
        inner: upstream,
        activity: &activity,
    };
    // 64 KiB per direction, like the body relays: tokio's default (8 KiB)
    // means eight times the reads and writes per megabyte, which the bench
    // harness showed as a tunnel at a third of phase 2's and 3's throughput.
    tokio::select! {
        copied = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, TUNNEL_BUFFER, TUNNEL_BUFFER) => {
            let (to_upstream, to_client) = copied?;
            Ok(TunnelEnd::Closed { to_upstream, to_client })
        }
        () = activity.idle_for(idle) => Ok(TunnelEnd::Idle),
    }
}

/// The time of the last byte moved through a tunnel, in milliseconds since
/// the tunnel opened. Atomic because the futures sharing it must be `Send`
/// (a task may move between worker threads); they never run at the same
/// time, so `Relaxed` suffices.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Completes once nothing has moved for `idle`: sleeps until the
    /// deadline the last activity implies, then looks again (bytes may have
    /// moved meanwhile, pushing the deadline back).
    async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A socket that records in an [`Activity`] every time bytes move through it.
struct Watched<'a> {
    inner: &'a mut TcpStream,
    activity: &'a Activity,
}

impl AsyncRead for Watched<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = listener.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn an_idle_tunnel_ends_after_the_idle_timeout() {
        let (mut client, _client_peer) = pair().await;
        let (mut upstream, _upstream_peer) = pair().await;
        let started = std::time::Instant::now();
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            relay(&mut client, &mut upstream, Duration::from_millis(300)),
        )
        .await
        .expect("the idle timeout ended the tunnel")
        .unwrap();
        assert_eq!(end, TunnelEnd::Idle);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn traffic_keeps_a_tunnel_open_past_the_idle_timeout() {
        let (mut client, mut client_peer) = pair().await;
        let (mut upstream, mut upstream_peer) = pair().await;
        let idle = Duration::from_secs(1);
        let tunnel = tokio::spawn(async move { relay(&mut client, &mut upstream, idle).await });
        // A byte every 100 ms for 2.5 s: more than two idle timeouts' worth
        // of time, never idle for one.
        let mut relayed = [0u8; 1];
        for _ in 0..25 {
            client_peer.write_all(b"x").await.unwrap();
            upstream_peer.read_exact(&mut relayed).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!tunnel.is_finished(), "the busy tunnel was closed");
        // Both sides finish sending: the tunnel ends normally.
        client_peer.shutdown().await.unwrap();
        upstream_peer.shutdown().await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), tunnel)
            .await
            .expect("the tunnel ended after both half-closes")
            .unwrap()
            .unwrap();
        assert_eq!(
            end,
            TunnelEnd::Closed {
                to_upstream: 25,
                to_client: 0
            }
        );
    }
}
