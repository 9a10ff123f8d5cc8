//! A fast, deterministic HTTP/1.1 origin (upstream) server for the tests,
//! demos and benchmarks of proxy-ladder.
//!
//! # Why hand-written, and why not proxy-core
//!
//! The origin is written directly on [httparse] and tokio, not on hyper,
//! because a correct HTTP library will not misbehave on request: tests need
//! close-delimited bodies, a 304 that carries a `Content-Length`, malformed
//! and truncated responses, resets and silences. And `/echo` must show the
//! request *exactly* as the proxy sent it (header names with their case, in
//! order), which a library that normalises headers would hide.
//!
//! It shares no code with proxy-core either (it has its own small chunked
//! decoder): the proxy is tested against a second, independent reading of
//! the protocol, so a misunderstanding in proxy-core cannot hide behind the
//! same misunderstanding here.
//!
//! # Endpoints
//!
//! `GET` unless said; any method is accepted, and `HEAD` on any endpoint
//! gives the same status and header fields with no body. Every response
//! carries `Server: proxy-ladder-origin` and no `Date`, so responses are
//! byte-for-byte deterministic. Generated bodies are [`pattern`] bytes.
//!
//! | Endpoint | Response |
//! |---|---|
//! | `/bytes/N[?delay=MS][&stall=MS2]` | 200, `Content-Length: N`, `application/octet-stream`, body `pattern(N)`; waits MS ms before the head; `stall` sends the first N/2 body bytes, waits MS2 ms, then sends the rest |
//! | `/chunked/N[?chunk=K][&trailer=1]` | 200, `Transfer-Encoding: chunked`, `pattern(N)` in chunks of K bytes (default 8192); `trailer=1` adds a trailer `X-Checksum: <sha256_hex of the body>`. To an HTTP/1.0 client: close-delimited instead |
//! | `/close/N` | 200 with neither `Content-Length` nor `Transfer-Encoding`, `Connection: close`; body `pattern(N)`, then the connection closes (the FIN ends the body) |
//! | `/delay/MS` | waits MS ms (at most one hour), then 200 `delayed MS ms\n` |
//! | `/status/CODE` | CODE (200..=599) with body `status CODE\n`; **204**: no body, no `Content-Length`; **304**: no body but `Content-Length: 1234` and `ETag: "x"`; 100..=199 and anything else: 400 |
//! | `/echo`, `/echo/...` (any method, any query) | 200 `application/json`: an [`Echo`] of the request; the body (any size, `Content-Length` or chunked) is hashed while it streams, never stored |
//! | `/reject` | 417 `Expectation Failed` with `Connection: close`, without reading the request body; then the connection closes |
//! | `/headers?Name=value&...` | 200 `ok\n` with the given header fields added, in order (`%XX` decoded; CR, LF, NUL, a non-token name, `Content-Length` or `Transfer-Encoding` give 400). An added `Connection: close` is honoured |
//! | `/fault/malformed` | writes `HTTP/1.1 abc Broken\r\nno colon here\r\n\r\n` and closes |
//! | `/fault/truncate/N` | `Content-Length: N`, sends N/2 pattern bytes, closes |
//! | `/fault/truncate-chunked/N` | chunked, sends one chunk of N/2 bytes, closes without the last chunk |
//! | `/fault/silent` | reads the request, never answers; closes when the client does or after 60 s |
//! | `/fault/reset` | closes at once with a TCP reset (SO_LINGER 0), no response |
//! | `/fault/reset-mid-body/N` | 200 with neither `Content-Length` nor `Transfer-Encoding` (close-delimited), sends N/2 pattern bytes, then resets (SO_LINGER 0): only the reset says the body is incomplete |
//! | `/fault/interim-flood` | `HTTP/1.1 100 Continue` every 200 ms and never a final response; closes after 60 s (or when the client has gone) |
//! | anything else | 404 `not found\n` |
//!
//! Bad numbers in a path or query (`/bytes/x`, `?delay=soon`) get 400.
//!
//! # Protocol behaviour
//!
//! - HTTP/1.1 connections are persistent unless the request says
//!   `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` (the
//!   response then says `Connection: keep-alive`). Closing responses say
//!   `Connection: close`.
//! - Pipelined requests are answered in order; responses to requests that
//!   arrived together leave together in one write.
//! - `Expect: 100-continue` with a body: `HTTP/1.1 100 Continue` is sent
//!   before the body is read (except on `/reject`, which refuses it).
//! - Request heads up to 64 KiB (larger: 431 and close). A malformed head,
//!   ambiguous framing (conflicting `Content-Length`, `Transfer-Encoding`
//!   other than exactly `chunked`, or both) or broken chunked framing: 400
//!   and close. Request bodies of endpoints other than `/echo` are read and
//!   discarded, so the next pipelined request is found where it starts.
//! - [`OriginConfig::idle_timeout`] closes a connection on which nothing
//!   arrived for that long.
//!
//! # Use
//!
//! In-process (tests): [`Origin::start`] runs it on its own runtime, on
//! `127.0.0.1:0`; dropping the [`Origin`] stops it. As a program:
//! `cargo run --release -p origin -- --listen 127.0.0.1:9000`, then
//! `curl -i localhost:9000/bytes/300`.

mod chunked;
mod connection;
mod echo;
mod endpoints;
mod pattern;
mod request;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

pub use echo::Echo;
pub use pattern::{pattern, pattern_byte, sha256_hex};

use connection::{Connection, NextHead};
use endpoints::After;
use request::HeadError;

/// The listen backlog of [`Origin::start`]. A proxy under test may open
/// thousands of upstream connections at once (the scaling suite holds 5000
/// clients); with std's backlog of 128, a burst overflows the accept queue,
/// the kernel drops SYNs, and each dropped SYN costs the proxy a 1 s
/// retransmit, enough to look like an upstream that does not answer. The
/// kernel caps it at `net.core.somaxconn`. (The binary binds with tokio,
/// whose backlog is 1024.)
const LISTEN_BACKLOG: u32 = 4096;

/// Counters the tests read (connection reuse tests need connections_accepted).
#[derive(Debug, Default)]
pub struct Stats {
    connections_accepted: AtomicU64,
    requests_served: AtomicU64,
}

impl Stats {
    /// Connections accepted since the server started.
    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted.load(Ordering::SeqCst)
    }

    /// Final responses written since the server started (interim
    /// `100 Continue` is not counted; `/fault/silent`, `/fault/reset` and
    /// `/fault/interim-flood` write none).
    pub fn requests_served(&self) -> u64 {
        self.requests_served.load(Ordering::SeqCst)
    }

    pub(crate) fn count_request(&self) {
        self.requests_served.fetch_add(1, Ordering::SeqCst);
    }
}

/// How the origin behaves.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Close a keep-alive connection that has been idle this long (None: never).
    /// Phase-2+ tests use it to make pooled upstream connections go stale.
    pub idle_timeout: Option<Duration>,
    /// tokio worker threads for `Origin::start` (default 2).
    pub workers: usize,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            idle_timeout: None,
            workers: 2,
        }
    }
}

/// An origin running in-process on its own tokio runtime (background thread),
/// bound to 127.0.0.1:0. Dropping it stops the server.
///
/// It has its own runtime so that blocking tests (std::net, phase 1 and 2)
/// and async tests alike can use it without caring whose runtime is whose.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    stats: Arc<Stats>,
    /// Dropping the sender tells the server to stop.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    /// Starts an origin with the default config.
    pub fn start() -> io::Result<Origin> {
        Self::start_with(OriginConfig::default())
    }

    /// Starts an origin with `config` on 127.0.0.1 and a free port.
    pub fn start_with(config: OriginConfig) -> io::Result<Origin> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.workers.max(1))
            .thread_name("origin-worker")
            .enable_all()
            .build()?;
        // Bind here, not in the thread, so the port is known (and bind
        // errors are returned) before `start` returns.
        let listener = {
            let _context = runtime.enter();
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)))?;
            socket.listen(LISTEN_BACKLOG)?
        };
        let addr = listener.local_addr()?;

        let stats = Arc::new(Stats::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let server_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("origin".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = serve(listener, config, server_stats) => {}
                        // Resolves when the Origin drops the sender.
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cancels every connection task.
            })?;
        Ok(Origin {
            addr,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (127.0.0.1 and an ephemeral port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters, shared: read them at any time.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Wait, so the port and every connection are closed on return.
            let _ = thread.join();
        }
    }
}

/// Serve on an already-bound listener until the future is dropped (the binary uses this).
///
/// Each connection is a task in a [`JoinSet`] owned by this future, so
/// dropping the future also ends every connection. Accept errors never end
/// the server: a peer that resets during the handshake is not our problem,
/// and running out of file descriptors passes once connections close (we
/// back off briefly instead of spinning).
pub async fn serve(
    listener: TcpListener,
    config: OriginConfig,
    stats: Arc<Stats>,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    stats.connections_accepted.fetch_add(1, Ordering::SeqCst);
                    // Responses are written whole; don't let Nagle hold the
                    // tail of one back waiting for an ACK.
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(
                        stream,
                        config.idle_timeout,
                        Arc::clone(&stats),
                    ));
                }
                Err(error) if is_per_connection_error(&error) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // Reap finished connections so the set only holds live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Accept errors that concern one incoming connection, not the listener.
fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// One connection: read a head, serve the exchange, repeat while persistent.
async fn serve_connection(stream: TcpStream, idle_timeout: Option<Duration>, stats: Arc<Stats>) {
    let mut conn = Connection::new(stream, idle_timeout);
    loop {
        let request = match conn.read_head().await {
            NextHead::Head(request) => request,
            NextHead::Gone => return,
            NextHead::Invalid(error) => {
                let (code, why) = match error {
                    HeadError::Malformed(why) => (400, why),
                    HeadError::TooLarge => (431, "request head too large"),
                };
                stats.count_request();
                if endpoints::answer_bad_head(&mut conn, code, why)
                    .await
                    .is_ok()
                {
                    conn.close().await;
                }
                return;
            }
        };
        match endpoints::exchange(&mut conn, request, &stats).await {
            Ok(After::KeepAlive) => {}
            Ok(After::Close) => return conn.close().await,
            Ok(After::Reset) => return conn.reset().await,
            Ok(After::Drop) | Err(_) => return,
        }
    }
}
