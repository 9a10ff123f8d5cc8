//! One client connection, served start to finish with blocking I/O.
//!
//! This is the code every blocking phase shares: phase 1 calls
//! [`serve_connection`] from its accept loop, one connection at a time;
//! phase 2 calls the same function from a pool of worker threads. The steps
//! of one exchange, each a function below:
//!
//! ```text
//! read request head ──▶ route ──▶ connect upstream ──▶ send head (+ wait for 100)
//!        │                                                     │
//!        ▼ (bad input: answer 4xx, close)                      ▼
//!   next request ◀── relay response body ◀── read response head ◀── relay request body
//! ```
//!
//! Every socket wait has a deadline (a timeout from the configuration), so a
//! silent peer costs at most that long. One wait does not: name resolution
//! (`getaddrinfo`) blocks for as long as the system resolver takes, which is
//! why phase 3 moves it to a helper thread. Every failure becomes either an
//! answer to the client (if no response has started) or a reset connection
//! (if one has: a truncated body must never look complete).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown as SocketShutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proxy_core::answers;
use proxy_core::framing::{BodyFramer, BodyKind};
use proxy_core::process;
use proxy_core::rewrite::{self, BodyRelay};
use proxy_core::target::{self, Route};
use proxy_core::{
    Authority, Config, ProxyError, RequestHead, ResponseHead, parse_request_from,
    parse_response_from,
};

use crate::relay::{self, HeadError, RelayError};
use crate::shutdown::Shutdown;
use crate::upstream::{self, FreshConnections, UpstreamConn, Upstreams};

/// How long to wait for an upstream's `100 Continue` before sending the
/// request body anyway (what curl does on the client side, for the same
/// reason: the upstream may not implement 100-continue).
const EXPECT_CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// The most interim (1xx) responses relayed before the final one; an
/// upstream that sends more is broken (or hostile) and earns a 502.
const MAX_INTERIM_RESPONSES: usize = 16;

/// How long, and how many bytes, the proxy keeps reading (and discarding)
/// after it has said its last word, so that its answer is not destroyed by a
/// reset (see `close_gracefully`).
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// What a blocking phase needs to serve a connection. Phase 1 and phase 2
/// run the same code with different contexts: that difference *is* the
/// difference between the two phases (besides the dispatch).
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
    /// Whether client connections may stay open between exchanges. Phase 1:
    /// false; every response says `Connection: close`.
    pub keep_alive: bool,
    /// Where upstream connections come from: phase 1 opens a fresh one per
    /// exchange, phase 2 reuses idle ones from a pool.
    pub upstreams: Arc<dyn Upstreams>,
    /// How to relay a CONNECT tunnel, if this phase can (phase 1 cannot: one
    /// thread cannot wait on two directions at once; it answers 501).
    pub tunnel: Option<Tunnel>,
    /// With keep-alive, idle connections register here so that shutdown can
    /// close them instead of waiting out `--idle-timeout`.
    pub shutdown: Option<Shutdown>,
}

impl Context {
    /// Phase 1's context: no keep-alive, a fresh upstream connection per
    /// exchange, no tunnels.
    pub fn single_exchange(config: Config) -> Context {
        Context {
            config,
            keep_alive: false,
            upstreams: Arc::new(FreshConnections),
            tunnel: None,
            shutdown: None,
        }
    }
}

/// Relays a CONNECT tunnel after `200 Connection Established` was sent:
/// `pending` holds bytes the client sent after its CONNECT head; returns the
/// bytes relayed in each direction.
pub type Tunnel =
    fn(client: &TcpStream, pending: Vec<u8>, upstream: TcpStream, config: &Config) -> TunnelBytes;

/// Bytes relayed through a tunnel, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelBytes {
    pub to_upstream: u64,
    pub to_client: u64,
}

/// Serves every exchange on `client` until it closes (phase 1: exactly one).
/// Never panics and never returns an error: whatever happens to this
/// connection is logged and stays with this connection.
pub fn serve_connection(client: TcpStream, ctx: &Context) {
    let client_ip = match client.peer_addr() {
        Ok(addr) => addr.ip(),
        Err(e) => {
            tracing::debug!(error = %e, "client vanished before it was served");
            return;
        }
    };
    client.set_nodelay(true).ok();
    let mut conn = ClientConn {
        stream: client,
        ip: client_ip,
        pending: Vec::new(),
    };
    let mut first = true;
    let after = loop {
        if ctx.shutdown.as_ref().is_some_and(Shutdown::is_triggered) && !first {
            break After::Close;
        }
        match serve_exchange(&mut conn, ctx, first) {
            After::KeepOpen if ctx.keep_alive => first = false,
            After::KeepOpen | After::Close => break After::Close,
            After::Reset => break After::Reset,
        }
    };
    match after {
        After::Reset => reset(conn.stream),
        _ => close_gracefully(conn.stream),
    }
}

/// True if the client has sent bytes that have not been read yet.
fn request_waiting(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let waiting = matches!(stream.peek(&mut byte), Ok(n) if n > 0);
    stream.set_nonblocking(false).is_ok() && waiting
}

/// What happens to the client connection after an exchange.
enum After {
    /// Ready for the next request (if the phase does keep-alive).
    KeepOpen,
    /// Close it, making sure the last response arrives.
    Close,
    /// Reset it: a response was cut short, and a reset is the only way to
    /// tell an HTTP/1.0 client (or one reading until close) that the body it
    /// got is incomplete. A clean close would make it look complete.
    Reset,
}

/// Closes a connection without destroying the last response: if the client
/// is still sending (a body the proxy refused, a pipelined request), closing
/// with unread bytes makes the kernel send a reset, which can discard the
/// response from the client's receive buffer before it reads it (RFC 9112
/// §9.6). So: send FIN, then read and discard for a short while.
fn close_gracefully(mut stream: TcpStream) {
    if stream.shutdown(SocketShutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut scratch = [0u8; 8 * 1024];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

/// Drops a connection with a TCP reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}

/// The client side of a connection: the socket, and bytes read but not yet
/// used (the start of a body, or of the next pipelined request).
struct ClientConn {
    stream: TcpStream,
    ip: IpAddr,
    pending: Vec<u8>,
}

/// One exchange, and what to do with the connection afterwards.
fn serve_exchange(conn: &mut ClientConn, ctx: &Context, first: bool) -> After {
    let config = &ctx.config;
    let started = Instant::now();
    let start_time = SystemTime::now();
    // The first request gets --header-timeout; on a kept-alive connection the
    // wait for the next one is --idle-timeout.
    let budget = if first {
        config.header_timeout
    } else {
        config.idle_timeout
    };
    let max = config.max_header_bytes;
    // While this connection waits for a request with nothing received yet, it
    // is idle: shutdown may close it (phase 2). The guard unregisters it.
    let idle = match (&ctx.shutdown, conn.pending.is_empty()) {
        (Some(shutdown), true) => match shutdown.idle(&conn.stream) {
            Some(guard) => Some(guard),
            // Shutting down: a request that has already arrived is served
            // (it is in flight); a connection with nothing to say is closed.
            None if request_waiting(&conn.stream) => None,
            None => return After::Close,
        },
        _ => None,
    };
    // Incremental parsing: each byte is checked once, however many reads.
    let mut scanned = 0;
    let read = relay::read_head(&mut conn.stream, &mut conn.pending, started + budget, |b| {
        parse_request_from(b, max, &mut scanned)
    });
    drop(idle);
    let (req, head_len) = match read {
        Ok(found) => found,
        Err(HeadError::Closed | HeadError::IdleTimeout | HeadError::ClosedMidHead) => {
            return After::Close;
        }
        Err(HeadError::Io(e)) => {
            tracing::debug!(error = %e, "client read failed");
            return After::Close;
        }
        Err(HeadError::PartialTimeout) => {
            let err = ProxyError::RequestTimeout;
            answer_error(conn, ctx, &err, None, start_time, started);
            return After::Close;
        }
        Err(HeadError::Invalid(err)) => {
            answer_error(conn, ctx, &err, None, start_time, started);
            return After::Close;
        }
    };
    conn.pending.drain(..head_len);
    tracing::debug!(request = %req.request_line(), "request head");

    let log = |conn: &ClientConn, status: u16, bytes: u64| {
        process::log_exchange(
            &ctx.config,
            conn.ip,
            start_time,
            started.elapsed(),
            &req.request_line(),
            status,
            bytes,
        );
    };
    match forward(conn, ctx, &req) {
        Ok(Done {
            status,
            body_bytes,
            keep_alive,
            ..
        }) => {
            log(conn, status, body_bytes);
            if keep_alive {
                After::KeepOpen
            } else {
                After::Close
            }
        }
        Err(Failure::Answer(err)) => {
            answer_error(conn, ctx, &err, Some(&req), start_time, started);
            After::Close
        }
        Err(Failure::Abort {
            status,
            body_bytes,
            reason,
            reset,
        }) => {
            tracing::debug!(%reason, reset, "exchange aborted");
            log(conn, status, body_bytes);
            if reset { After::Reset } else { After::Close }
        }
    }
}

/// A completed exchange.
struct Done {
    status: u16,
    body_bytes: u64,
    keep_alive: bool,
    /// The upstream connection ended at a message boundary (its body was
    /// delimited by length or chunks, not by closing).
    upstream_reusable: bool,
}

/// How an exchange failed.
enum Failure {
    /// Nothing has been sent to the client yet: answer with this error.
    Answer(ProxyError),
    /// Part of a response went out (or the client is gone): all that is left
    /// is to close the connection.
    Abort {
        status: u16,
        body_bytes: u64,
        reason: String,
        /// Close with a reset rather than a FIN: needed when the client
        /// could not otherwise tell that the body is incomplete (a body that
        /// ends when the connection closes, or a de-chunked one for an
        /// HTTP/1.0 client). When its framing already shows the cut (fewer
        /// bytes than Content-Length said, or no last chunk), a FIN is
        /// better: the client keeps every byte sent so far, where a reset
        /// would discard what is still in flight, sometimes the whole head.
        reset: bool,
    },
}

impl From<ProxyError> for Failure {
    fn from(e: ProxyError) -> Failure {
        Failure::Answer(e)
    }
}

/// Routes, connects and relays one request and its response.
fn forward(conn: &mut ClientConn, ctx: &Context, req: &RequestHead) -> Result<Done, Failure> {
    let config = &ctx.config;
    let authority = match target::route(req, &config.mode)? {
        Route::Upstream(a) => a,
        Route::Tunnel(a) => return open_tunnel(conn, ctx, &a),
    };
    let mut upstream = ctx.upstreams.checkout(&authority, config.connect_timeout)?;
    conn.stream
        .set_write_timeout(Some(config.idle_timeout))
        .ok();

    // The upstream's bytes, like the client's, are read into a buffer that
    // outlives one read.
    let mut from_upstream: Vec<u8> = Vec::new();
    let attempt = send_request(
        conn,
        ctx,
        req,
        &authority,
        &mut upstream.stream,
        &mut from_upstream,
    );
    let (resp, body_complete) = match attempt {
        // A pooled connection can die between two exchanges (the upstream
        // closed it while it sat idle) without the pool noticing in time.
        // If nothing but a head was sent, nothing of a response came back,
        // and the method is idempotent, sending it again on a fresh
        // connection is safe (RFC 9112 §9.3.1).
        Err(Failure::Answer(ProxyError::BadGateway(reason)))
            if upstream.reused && req.may_resend() && from_upstream.is_empty() =>
        {
            tracing::debug!(%reason, "pooled upstream connection failed; retrying on a fresh one");
            upstream = UpstreamConn {
                stream: upstream::connect(&authority, config.connect_timeout)?,
                reused: false,
            };
            from_upstream.clear();
            send_request(
                conn,
                ctx,
                req,
                &authority,
                &mut upstream.stream,
                &mut from_upstream,
            )?
        }
        other => other?,
    };
    let upstream_keeps_alive = resp.upstream_keeps_alive();
    let done = relay_response(
        conn,
        ctx,
        req,
        &mut upstream.stream,
        &mut from_upstream,
        resp,
        !body_complete,
    )?;
    // Back to the pool only if the connection is exactly at a message
    // boundary: whole request sent, whole response read, nothing extra.
    if ctx.upstreams.keeps_connections()
        && upstream_keeps_alive
        && body_complete
        && done.upstream_reusable
        && from_upstream.is_empty()
    {
        ctx.upstreams.checkin(&authority, upstream.stream);
    }
    Ok(done)
}

/// Sends the request (head, body) and reads the final response head.
/// Returns the head and whether the whole request body was sent.
fn send_request(
    conn: &mut ClientConn,
    ctx: &Context,
    req: &RequestHead,
    authority: &Authority,
    upstream: &mut TcpStream,
    from_upstream: &mut Vec<u8>,
) -> Result<(ResponseHead, bool), Failure> {
    let io_err =
        |what: &str, e: io::Error| ProxyError::BadGateway(format!("{what} {authority}: {e}"));
    upstream
        .set_write_timeout(Some(ctx.config.upstream_timeout))
        .map_err(|e| io_err("cannot configure connection to", e))?;
    let head =
        rewrite::upstream_request(req, authority, conn.ip, ctx.upstreams.keeps_connections());
    upstream
        .write_all(&head)
        .map_err(|e| io_err("cannot send the request to", e))?;

    let mut early_response = None;
    if req.expect_continue && req.has_body() && conn.pending.is_empty() {
        early_response = await_continue(conn, ctx, req, upstream, from_upstream)?;
    }
    // If the body was not read to its end (the upstream answered before it
    // was sent, 417 or 401; or it stopped reading mid-way), the rest of it is
    // still on the client connection. Parsing it as the next request would be
    // request smuggling, so this connection closes after the response.
    match early_response {
        Some(resp) => Ok((resp, false)),
        None => {
            let complete = send_request_body(conn, ctx, req, upstream)?;
            let resp = read_final_response(conn, ctx, req, upstream, from_upstream)?;
            Ok((resp, complete))
        }
    }
}

/// CONNECT: connect, say `200 Connection Established`, then relay raw bytes
/// both ways until both sides are done (if this phase has a [`Tunnel`]).
fn open_tunnel(
    conn: &mut ClientConn,
    ctx: &Context,
    authority: &Authority,
) -> Result<Done, Failure> {
    let Some(tunnel) = ctx.tunnel else {
        return Err(Failure::Answer(ProxyError::NotImplemented(
            "CONNECT tunnels need two directions at once, and phase 1 has one thread: use phase 2 or later"
                .into(),
        )));
    };
    let upstream = upstream::connect(authority, ctx.config.connect_timeout)?;
    conn.stream
        .write_all(answers::CONNECT_ESTABLISHED)
        .map_err(|e| abort(0, &format!("client gone before the tunnel opened: {e}")))?;
    let pending = std::mem::take(&mut conn.pending);
    let bytes = tunnel(&conn.stream, pending, upstream, &ctx.config);
    tracing::debug!(%authority, ?bytes, "tunnel closed");
    Ok(Done {
        status: 200,
        body_bytes: bytes.to_client,
        keep_alive: false,
        upstream_reusable: false,
    })
}

/// `Expect: 100-continue`: waits briefly for the upstream's verdict. Returns
/// a final response if the upstream refused the body, `None` if the body
/// should be sent (a `100 Continue` was relayed, or the upstream said nothing).
fn await_continue(
    conn: &mut ClientConn,
    ctx: &Context,
    req: &RequestHead,
    upstream: &mut TcpStream,
    from_upstream: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, Failure> {
    let max = ctx.config.max_header_bytes;
    let deadline = Instant::now() + EXPECT_CONTINUE_WAIT;
    let mut scanned = 0;
    match relay::read_head(upstream, from_upstream, deadline, |b| {
        parse_response_from(b, max, &mut scanned)
    }) {
        Ok((resp, len)) => {
            from_upstream.drain(..len);
            if resp.is_interim() {
                // 100 Continue (or another 1xx, such as 103 Early Hints):
                // relay it; the body follows, then the final response.
                send_interim(conn, req, &resp)?;
                Ok(None)
            } else {
                Ok(Some(resp))
            }
        }
        Err(HeadError::IdleTimeout | HeadError::PartialTimeout) => Ok(None),
        Err(e) => Err(e.upstream_failure(ctx.config.upstream_timeout).into()),
    }
}

fn send_interim(
    conn: &mut ClientConn,
    req: &RequestHead,
    resp: &ResponseHead,
) -> Result<(), Failure> {
    if resp.status == 101 {
        return Err(ProxyError::BadGateway(
            "upstream switched protocols although Upgrade was not forwarded".into(),
        )
        .into());
    }
    if let Some(bytes) = rewrite::interim_response(req, resp) {
        conn.stream.write_all(&bytes).map_err(|e| Failure::Abort {
            reset: true,
            status: resp.status,
            body_bytes: 0,
            reason: format!("client write failed: {e}"),
        })?;
    }
    Ok(())
}

/// Streams the request body to the upstream. Returns false if the upstream
/// stopped reading before the end (the rest of the body is then unread).
fn send_request_body(
    conn: &mut ClientConn,
    ctx: &Context,
    req: &RequestHead,
    upstream: &mut TcpStream,
) -> Result<bool, Failure> {
    let mut framer = BodyFramer::new(req.body);
    if framer.is_done() {
        return Ok(true);
    }
    // A client that stops sending its body mid-way is idle.
    conn.stream
        .set_read_timeout(Some(ctx.config.idle_timeout))
        .ok();
    // A chunked body is re-chunked: only sizes and data go upstream, never
    // the client's chunk extensions or trailers.
    let relay = match req.body {
        BodyKind::Chunked => BodyRelay::Rechunk,
        _ => BodyRelay::Verbatim,
    };
    let result = relay::relay_body(
        &mut framer,
        &mut conn.stream,
        &mut conn.pending,
        upstream,
        relay,
    );
    match result {
        Ok(_) => Ok(true),
        // The body is broken: nothing of the response has been sent, so the
        // client gets a 400, and the connection closes (after a framing error
        // we no longer know where the next request would start).
        Err(RelayError::Framing(e)) => Err(ProxyError::BadRequestBody(e).into()),
        Err(RelayError::Truncated(_)) => Err(abort(0, "client closed before the end of its body")),
        Err(RelayError::Read(e)) if relay::is_timeout(&e) => Err(ProxyError::BadRequest(
            "the request body stalled past --idle-timeout".into(),
        )
        .into()),
        Err(RelayError::Read(e)) => Err(abort(0, &format!("client read failed: {e}"))),
        // The upstream stopped reading: it may have answered early (413...);
        // the caller reads the response next and finds out.
        Err(RelayError::Write(e)) => {
            tracing::debug!(error = %e, "upstream stopped reading the request body");
            Ok(false)
        }
    }
}

fn abort(status: u16, reason: &str) -> Failure {
    Failure::Abort {
        reset: true,
        status,
        body_bytes: 0,
        reason: reason.to_string(),
    }
}

/// Reads response heads until a final one, relaying 1xx to the client.
fn read_final_response(
    conn: &mut ClientConn,
    ctx: &Context,
    req: &RequestHead,
    upstream: &mut TcpStream,
    from_upstream: &mut Vec<u8>,
) -> Result<ResponseHead, Failure> {
    let max = ctx.config.max_header_bytes;
    // One deadline for the final response, however many 1xx come first: an
    // upstream that sends `100 Continue` every second must still time out.
    let deadline = Instant::now() + ctx.config.upstream_timeout;
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let mut scanned = 0;
        let (resp, len) = relay::read_head(upstream, from_upstream, deadline, |b| {
            parse_response_from(b, max, &mut scanned)
        })
        .map_err(|e| Failure::from(e.upstream_failure(ctx.config.upstream_timeout)))?;
        from_upstream.drain(..len);
        if !resp.is_interim() {
            return Ok(resp);
        }
        send_interim(conn, req, &resp)?;
    }
    Err(ProxyError::BadGateway(format!(
        "the upstream sent more than {MAX_INTERIM_RESPONSES} interim responses"
    ))
    .into())
}

/// Sends the response head and streams its body to the client.
fn relay_response(
    conn: &mut ClientConn,
    ctx: &Context,
    req: &RequestHead,
    upstream: &mut TcpStream,
    from_upstream: &mut Vec<u8>,
    resp: ResponseHead,
    force_close: bool,
) -> Result<Done, Failure> {
    // During shutdown, responses say `Connection: close`, so that clients
    // open their next request elsewhere instead of losing it.
    let shutting_down = ctx.shutdown.as_ref().is_some_and(Shutdown::is_triggered);
    let plan = rewrite::plan_response(req, &resp, ctx.keep_alive && !force_close && !shutting_down);
    let status = resp.status;
    conn.stream
        .write_all(&plan.head)
        .map_err(|e| Failure::Abort {
            reset: true,
            status,
            body_bytes: 0,
            reason: format!("client write failed: {e}"),
        })?;
    upstream
        .set_read_timeout(Some(ctx.config.upstream_timeout))
        .ok();
    let mut framer = BodyFramer::new(plan.upstream_body);
    match relay::relay_body(
        &mut framer,
        upstream,
        from_upstream,
        &mut conn.stream,
        plan.client_body,
    ) {
        Ok(body_bytes) => Ok(Done {
            status,
            body_bytes,
            keep_alive: plan.keep_alive,
            upstream_reusable: plan.upstream_body != BodyKind::UntilClose,
        }),
        // Whatever went wrong, part of the response is out: closing the
        // connection is the only way to tell the client it is incomplete.
        Err(e) => Err(Failure::Abort {
            status,
            body_bytes: framer.data_seen(),
            reset: !plan.framing_shows_a_cut() || matches!(e, RelayError::Write(_)),
            reason: match e {
                RelayError::Read(e) if relay::is_timeout(&e) => "upstream stalled mid-body".into(),
                RelayError::Read(e) => format!("upstream read failed mid-body: {e}"),
                RelayError::Truncated(e) | RelayError::Framing(e) => {
                    format!("upstream body broken: {e}")
                }
                RelayError::Write(e) => format!("client went away mid-body: {e}"),
            },
        }),
    }
}

/// Sends the answer for `err` (if the client is still there) and logs it.
fn answer_error(
    conn: &mut ClientConn,
    ctx: &Context,
    err: &ProxyError,
    req: Option<&RequestHead>,
    start_time: SystemTime,
    started: Instant,
) {
    let is_head = req.is_some_and(|r| r.is_head());
    tracing::debug!(status = err.status(), error = %err, "answering with an error");
    let answer = answers::error_answer(err, is_head);
    conn.stream
        .set_write_timeout(Some(ctx.config.idle_timeout))
        .ok();
    if let Err(e) = conn.stream.write_all(&answer.bytes) {
        tracing::debug!(error = %e, "client gone before the answer");
    }
    let line = req.map_or_else(|| "-".to_string(), |r| r.request_line());
    process::log_exchange(
        &ctx.config,
        conn.ip,
        start_time,
        started.elapsed(),
        &line,
        err.status(),
        answer.body_len,
    );
}
