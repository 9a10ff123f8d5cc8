//! The second defence against stale pooled connections, tested in-process.
//!
//! The liveness check catches an upstream that closed a pooled connection
//! while it sat idle. It cannot catch the race where the upstream closes it
//! just *after* the check, as the request arrives (its idle timer fired at
//! that moment). The proxy sees that as "closed before the first byte of a
//! response", and `may_retry` (in `src/exchange.rs`) decides: an idempotent
//! request without a body is sent again on a fresh connection; anything else
//! gets its 502.
//!
//! The upstream here is hand-written so it can stage exactly that race: on
//! its first connection it answers one request, then reads the next request
//! and closes without a word. Its later connections answer normally.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proxy_core::{Authority, Config, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// Every socket wait in these tests ends within this.
const WAIT: Duration = Duration::from_secs(5);

/// The upstream: counts connections; the first one answers one request and
/// then drops the connection when the second request arrives.
async fn flaky_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut served = 0;
                while let Some(request) = read_head(&mut stream, &mut pending).await {
                    if n == 1 && served == 1 {
                        // The race: the request arrived, the upstream closes
                        // (as if its idle timer had just fired).
                        return;
                    }
                    let body = format!(
                        "conn {n} req {served} {}",
                        request.lines().next().unwrap_or("")
                    );
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    served += 1;
                }
            });
        }
    });
    (addr, connections)
}

/// Reads one request head (bodies are skipped: the tests' bodies are tiny
/// and follow the head in the same write or are ignored).
async fn read_head(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = (end + 4 + body_len).min(pending.len());
            pending.drain(..total);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match timeout(WAIT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Starts the proxy in-process (reverse mode to `upstream`); returns its
/// address and the trigger that shuts it down.
async fn start_proxy(upstream: SocketAddr) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(Mode::Reverse {
        upstream: Authority {
            host: upstream.ip().to_string(),
            port: upstream.port(),
        },
    });
    config.shutdown_grace = Duration::from_secs(1);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        phase4_async::run(listener, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

/// Sends `request` and reads one response with a Content-Length body;
/// returns (status line, body).
async fn exchange(client: &mut TcpStream, request: &str) -> (String, String) {
    client.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                let status = head.lines().next().unwrap_or("").to_string();
                return (status, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = timeout(WAIT, client.read(&mut chunk))
            .await
            .expect("the proxy answered within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "the proxy closed before a complete response: {buf:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_retried_on_a_fresh_connection_when_a_pooled_one_dies_before_answering() {
    let (upstream, connections) = flaky_upstream().await;
    let (proxy, _stop) = start_proxy(upstream).await;
    let mut client = TcpStream::connect(proxy).await.unwrap();

    let (status, body) = exchange(&mut client, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "conn 1 req 0 GET /one HTTP/1.1");

    // The pooled connection 1 passes the liveness check (it is open), then
    // the upstream drops it on receiving the request: the proxy must retry.
    let (status, body) = exchange(&mut client, "GET /two HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "a retried GET is not a 502");
    assert_eq!(body, "conn 2 req 0 GET /two HTTP/1.1");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_not_retried_when_a_pooled_connection_dies_before_answering() {
    let (upstream, connections) = flaky_upstream().await;
    let (proxy, _stop) = start_proxy(upstream).await;
    let mut client = TcpStream::connect(proxy).await.unwrap();

    let (status, _) = exchange(&mut client, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");

    // Not idempotent: the upstream might have acted on it, so it is never
    // sent twice. The client gets the 502 and decides.
    let (status, _) = exchange(
        &mut client,
        "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "no second upstream connection: the POST was not sent again"
    );
}
