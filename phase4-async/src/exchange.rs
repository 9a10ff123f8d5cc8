//! One client connection, served start to finish by one task: phase 1's
//! blocking `exchange.rs` with `.await`.
//!
//! Diff this file against `phase1-blocking/src/exchange.rs`: the functions,
//! their names and their steps are the same.
//!
//! ```text
//! read request head ──▶ route ──▶ connect upstream ──▶ send head (+ wait for 100)
//!        │                  │  (pool)                          │
//!        ▼ (bad input:      ▼ CONNECT: tunnel                  ▼
//!   answer 4xx, close)                              relay request body
//!                                                              │
//!   next request ◀── relay response body ◀── read response head ◀┘
//!     (keep-alive)      (return upstream to the pool)
//! ```
//!
//! What changes is what a wait *is*. In phase 1 a wait is a thread asleep in
//! the kernel, bounded by a socket timeout. Here a wait is an `.await`: the
//! task's future returns `Pending`, the worker thread runs other tasks, and
//! the socket's readiness (through tokio's reactor, epoll underneath) wakes
//! the task again. Every wait is bounded with `tokio::time::timeout`, and a
//! wait can also lose a race (`tokio::select!`) against shutdown.
//!
//! What this phase adds to phase 1's exchange:
//! - keep-alive: the loop in [`serve_connection`] serves exchanges until the
//!   client closes, goes idle past `--idle-timeout`, or shutdown starts;
//! - a shared pool of upstream connections, with a retry when a pooled
//!   connection turns out to be dead (`may_retry`);
//! - CONNECT tunnels (`tokio::io::copy_bidirectional`, in [`crate::tunnel`]).
//!
//! Every failure becomes either an answer to the client (if no response has
//! started) or a reset connection (if one has: a truncated body must never
//! look complete).

use std::io;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use proxy_core::answers;
use proxy_core::framing::{BodyFramer, BodyKind};
use proxy_core::process;
use proxy_core::request::parse_request_from;
use proxy_core::response::parse_response_from;
use proxy_core::rewrite::{self, BodyRelay};
use proxy_core::target::{self, Route};
use proxy_core::{Authority, ProxyError, RequestHead, ResponseHead};

use crate::Context;
use crate::relay::{self, HeadError, RelayError, Timeouts};
use crate::tunnel::{self, TunnelEnd};
use crate::upstream::{self, UpstreamConn};

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

/// Serves every exchange on `client` until it closes. Never panics and never
/// returns an error: whatever happens to this connection is logged and stays
/// with this connection (and its task).
pub async fn serve_connection(client: TcpStream, ctx: &Context) {
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
    // Shutdown, stage 2: once the grace period is over, the exchanges'
    // future loses this race and is dropped wherever it was waiting. That is
    // all cancellation is in Rust: a future that is never polled again. The
    // connection is then reset, so a half-sent response cannot look complete.
    let after = tokio::select! {
        after = serve_exchanges(&mut conn, ctx) => after,
        () = ctx.shutdown.grace_over() => {
            tracing::debug!("grace period over: cutting the connection");
            After::Reset
        }
    };
    match after {
        After::Reset => reset(conn.stream),
        _ => close_gracefully(conn.stream).await,
    }
}

/// The keep-alive loop: one exchange after another, until one says stop.
async fn serve_exchanges(conn: &mut ClientConn, ctx: &Context) -> After {
    let mut first = true;
    loop {
        match serve_exchange(conn, ctx, first).await {
            After::KeepOpen => first = false,
            after => return after,
        }
    }
}

/// What happens to the client connection after an exchange.
enum After {
    /// Ready for the next request.
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
async fn close_gracefully(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match timeout_at(deadline, relay::read_some(&stream, |_| {})).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return,
            Ok(Ok(n)) => discarded += n,
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
async fn serve_exchange(conn: &mut ClientConn, ctx: &Context, first: bool) -> After {
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
    let deadline = started + budget;
    let max = config.max_header_bytes;
    // `scanned` makes parsing incremental: each byte is checked once, however
    // many reads the head takes.
    let mut scanned = 0;
    let mut parse = |b: &[u8]| parse_request_from(b, max, &mut scanned);
    // Shutdown, stage 1: a connection waiting for its next request stops
    // waiting and closes. But if a request has started to arrive (bytes in
    // `pending`, or waiting in the socket), it is in flight and is served:
    // read_head is cancel-safe (every byte it read is in `pending`), so
    // calling it again finishes that head within its deadline.
    let read = tokio::select! {
        read = relay::read_head(&conn.stream, &mut conn.pending, deadline, &mut parse) => read,
        () = ctx.shutdown.requested() => {
            if conn.pending.is_empty() && !relay::bytes_waiting(&conn.stream) {
                return After::Close;
            }
            relay::read_head(&conn.stream, &mut conn.pending, deadline, &mut parse).await
        }
    };
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
            answer_error(conn, ctx, &err, None, start_time, started).await;
            return After::Close;
        }
        Err(HeadError::Invalid(err)) => {
            answer_error(conn, ctx, &err, None, start_time, started).await;
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
    match forward(conn, ctx, &req).await {
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
        Err(Failure::Answer(err) | Failure::Retryable(err)) => {
            answer_error(conn, ctx, &err, Some(&req), start_time, started).await;
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
#[derive(Debug)]
enum Failure {
    /// Nothing has been sent to the client yet: answer with this error.
    Answer(ProxyError),
    /// Like `Answer`, but the upstream connection failed before a single
    /// byte of a response came back (the request head could not be written,
    /// or the upstream closed or reset the connection before answering).
    /// On a connection taken from the pool that usually means the upstream
    /// had closed it while it was idle: the request was never processed, and
    /// [`may_retry`] decides whether to send it again on a fresh connection.
    Retryable(ProxyError),
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

/// True if the request may be sent once more, on a fresh upstream
/// connection, after `failure`.
///
/// Only when all of these hold: the failed connection came from the pool
/// (a fresh connection that fails is the upstream's real answer), nothing
/// of a response came back (so the upstream did not act on the request, or
/// at least said nothing), and the request itself may be sent twice
/// ([`RequestHead::may_resend`]: idempotent, no body).
fn may_retry(req: &RequestHead, reused: bool, failure: &Failure) -> bool {
    reused && matches!(failure, Failure::Retryable(_)) && req.may_resend()
}

/// Routes, connects and relays one request and its response.
async fn forward(conn: &mut ClientConn, ctx: &Context, req: &RequestHead) -> Result<Done, Failure> {
    let config = &ctx.config;
    let authority = match target::route(req, &config.mode)? {
        Route::Upstream(a) => a,
        Route::Tunnel(a) => return open_tunnel(conn, ctx, &a).await,
    };
    // Keep the upstream connection open (no `Connection: close`): it may go
    // back to the pool after this exchange.
    let head = rewrite::upstream_request(req, &authority, conn.ip, true);
    let mut upstream = ctx
        .upstreams
        .checkout(&authority, config.connect_timeout)
        .await?;

    // The upstream's bytes, like the client's, are read into a buffer that
    // outlives one read.
    let mut from_upstream: Vec<u8> = Vec::new();
    let attempt = send_request(
        conn,
        ctx,
        req,
        &head,
        &mut upstream.stream,
        &mut from_upstream,
    )
    .await;
    let (resp, body_complete) = match attempt {
        // A pooled connection can die between two exchanges (the upstream
        // closed it just as it was handed out). See `may_retry` for when
        // sending the request again on a fresh connection is safe.
        Err(failure) if may_retry(req, upstream.reused, &failure) => {
            tracing::debug!(%authority, ?failure, "pooled upstream connection failed before answering; retrying on a fresh one");
            upstream = UpstreamConn {
                stream: upstream::connect(&authority, config.connect_timeout).await?,
                reused: false,
            };
            from_upstream.clear();
            send_request(
                conn,
                ctx,
                req,
                &head,
                &mut upstream.stream,
                &mut from_upstream,
            )
            .await?
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
    )
    .await?;
    // Back to the pool only if the connection is exactly at a message
    // boundary: the upstream keeps it open, it got the whole request, the
    // whole response was read, and nothing extra came (bytes after the
    // response's end would be mistaken for the next response).
    if upstream_keeps_alive && body_complete && done.upstream_reusable && from_upstream.is_empty() {
        ctx.upstreams.checkin(&authority, upstream.stream);
    }
    Ok(done)
}

/// Sends the request (head, then body) and reads up to the final response
/// head. Returns the head and whether the whole request body was sent.
///
/// If the body was not read to its end (the upstream answered before it was
/// sent, 417 or 401; or it stopped reading mid-way), the rest of it is still
/// on the client connection. Parsing it as the next request would be request
/// smuggling, so this connection closes after the response.
async fn send_request(
    conn: &mut ClientConn,
    ctx: &Context,
    req: &RequestHead,
    head: &[u8],
    upstream: &mut TcpStream,
    from_upstream: &mut Vec<u8>,
) -> Result<(ResponseHead, bool), Failure> {
    let config = &ctx.config;
    if let Err(e) = relay::write_all_within(upstream, head, config.upstream_timeout).await {
        return Err(Failure::Retryable(ProxyError::BadGateway(format!(
            "cannot send the request to the upstream: {e}"
        ))));
    }

    let mut early_response = None;
    if req.expect_continue && req.has_body() && conn.pending.is_empty() {
        early_response = await_continue(conn, ctx, req, upstream, from_upstream).await?;
    }
    match early_response {
        Some(resp) => Ok((resp, false)),
        None => {
            let complete = send_request_body(conn, ctx, req, upstream).await?;
            let resp = read_final_response(conn, ctx, req, upstream, from_upstream).await?;
            Ok((resp, complete))
        }
    }
}

/// `Expect: 100-continue`: waits briefly for the upstream's verdict. Returns
/// a final response if the upstream refused the body, `None` if the body
/// should be sent (a `100 Continue` was relayed, or the upstream said nothing).
async fn await_continue(
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
    })
    .await
    {
        Ok((resp, len)) => {
            from_upstream.drain(..len);
            if resp.is_interim() {
                // 100 Continue (or another 1xx, such as 103 Early Hints):
                // relay it; the body follows, then the final response.
                send_interim(conn, ctx, req, &resp).await?;
                Ok(None)
            } else {
                Ok(Some(resp))
            }
        }
        Err(HeadError::IdleTimeout | HeadError::PartialTimeout) => Ok(None),
        Err(e) => Err(e.upstream_failure(ctx.config.upstream_timeout).into()),
    }
}

async fn send_interim(
    conn: &mut ClientConn,
    ctx: &Context,
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
        relay::write_all_within(&mut conn.stream, &bytes, ctx.config.idle_timeout)
            .await
            .map_err(|e| Failure::Abort {
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
async fn send_request_body(
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
    let limits = Timeouts {
        read: ctx.config.idle_timeout,
        write: ctx.config.upstream_timeout,
    };
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
        limits,
    )
    .await;
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
async fn read_final_response(
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
    for relayed in 0..=MAX_INTERIM_RESPONSES {
        let mut scanned = 0;
        let read = relay::read_head(upstream, from_upstream, deadline, |b| {
            parse_response_from(b, max, &mut scanned)
        })
        .await;
        let (resp, len) = match read {
            Ok(found) => found,
            // Closed or reset before the first byte of any response: the
            // request may never have been processed (see Failure::Retryable).
            Err(e @ (HeadError::Closed | HeadError::Io(_)))
                if relayed == 0 && from_upstream.is_empty() =>
            {
                return Err(Failure::Retryable(
                    e.upstream_failure(ctx.config.upstream_timeout),
                ));
            }
            Err(e) => return Err(e.upstream_failure(ctx.config.upstream_timeout).into()),
        };
        from_upstream.drain(..len);
        if !resp.is_interim() {
            return Ok(resp);
        }
        send_interim(conn, ctx, req, &resp).await?;
    }
    Err(ProxyError::BadGateway(format!(
        "the upstream sent more than {MAX_INTERIM_RESPONSES} interim responses"
    ))
    .into())
}

/// Sends the response head and streams its body to the client.
async fn relay_response(
    conn: &mut ClientConn,
    ctx: &Context,
    req: &RequestHead,
    upstream: &mut TcpStream,
    from_upstream: &mut Vec<u8>,
    resp: ResponseHead,
    force_close: bool,
) -> Result<Done, Failure> {
    // Once shutdown has started, responses say `Connection: close`: the
    // client learns not to send another request on this connection.
    let keep_alive = !force_close && !ctx.shutdown.is_requested();
    let plan = rewrite::plan_response(req, &resp, keep_alive);
    let status = resp.status;
    relay::write_all_within(&mut conn.stream, &plan.head, ctx.config.idle_timeout)
        .await
        .map_err(|e| Failure::Abort {
            reset: true,
            status,
            body_bytes: 0,
            reason: format!("client write failed: {e}"),
        })?;
    let limits = Timeouts {
        read: ctx.config.upstream_timeout,
        write: ctx.config.idle_timeout,
    };
    let mut framer = BodyFramer::new(plan.upstream_body);
    match relay::relay_body(
        &mut framer,
        upstream,
        from_upstream,
        &mut conn.stream,
        plan.client_body,
        limits,
    )
    .await
    {
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

/// CONNECT: opens a tunnel to `authority` and relays raw bytes both ways
/// until both sides have closed (or it idles past `--idle-timeout`). Phase 1
/// answers 501 here: one blocking thread cannot wait on two sockets. A task
/// can, because `copy_bidirectional` is one future that polls both
/// directions (see [`crate::tunnel`]).
async fn open_tunnel(
    conn: &mut ClientConn,
    ctx: &Context,
    authority: &Authority,
) -> Result<Done, Failure> {
    let config = &ctx.config;
    // Never from the pool: a tunnel's connection is not HTTP afterwards.
    let mut upstream = upstream::connect(authority, config.connect_timeout).await?;
    let cut = |what: &str, e: io::Error| Failure::Abort {
        reset: true,
        status: 200,
        body_bytes: 0,
        reason: format!("tunnel to {authority}: {what}: {e}"),
    };
    relay::write_all_within(
        &mut conn.stream,
        answers::CONNECT_ESTABLISHED,
        config.idle_timeout,
    )
    .await
    .map_err(|e| cut("client write failed", e))?;
    // Bytes the client sent right after its CONNECT head were read with it:
    // they are the tunnel's first bytes.
    if !conn.pending.is_empty() {
        relay::write_all_within(&mut upstream, &conn.pending, config.upstream_timeout)
            .await
            .map_err(|e| cut("upstream write failed", e))?;
        conn.pending.clear();
    }
    match tunnel::relay(&mut conn.stream, &mut upstream, config.idle_timeout).await {
        Ok(TunnelEnd::Closed { to_client, .. }) => Ok(Done {
            status: 200,
            body_bytes: to_client,
            keep_alive: false,
            upstream_reusable: false,
        }),
        Ok(TunnelEnd::Idle) => {
            tracing::debug!(%authority, "tunnel idle past --idle-timeout; closing it");
            Ok(Done {
                status: 200,
                body_bytes: 0,
                keep_alive: false,
                upstream_reusable: false,
            })
        }
        Err(e) => Err(cut("relay failed", e)),
    }
}

/// Sends the answer for `err` (if the client is still there) and logs it.
async fn answer_error(
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
    if let Err(e) =
        relay::write_all_within(&mut conn.stream, &answer.bytes, ctx.config.idle_timeout).await
    {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_core::Parsed;

    fn req(raw: &str) -> RequestHead {
        match proxy_core::parse_request(raw.as_bytes(), 16 * 1024) {
            Ok(Parsed::Complete { head, .. }) => head,
            other => panic!("{other:?}"),
        }
    }

    fn dead() -> Failure {
        Failure::Retryable(ProxyError::BadGateway("closed".into()))
    }

    #[test]
    fn a_bodiless_get_on_a_dead_pooled_connection_is_retried() {
        let get = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(may_retry(&get, true, &dead()));
        let head = req("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(may_retry(&head, true, &dead()));
        let put_empty = req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert!(may_retry(&put_empty, true, &dead()));
    }

    #[test]
    fn a_fresh_connection_is_never_retried() {
        let get = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!may_retry(&get, false, &dead()));
    }

    #[test]
    fn non_idempotent_methods_are_never_retried() {
        let post = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert!(!may_retry(&post, true, &dead()));
        let patch = req("PATCH / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!may_retry(&patch, true, &dead()));
    }

    #[test]
    fn requests_with_a_body_are_never_retried() {
        let put = req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
        assert!(!may_retry(&put, true, &dead()));
        let chunked = req("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!may_retry(&chunked, true, &dead()));
    }

    #[test]
    fn only_failures_before_any_response_byte_are_retried() {
        let get = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let timeout = Failure::Answer(ProxyError::GatewayTimeout("slow".into()));
        assert!(!may_retry(&get, true, &timeout));
        let malformed = Failure::Answer(ProxyError::BadGateway("garbage".into()));
        assert!(!may_retry(&get, true, &malformed));
        let abort = abort(200, "mid-body");
        assert!(!may_retry(&get, true, &abort));
    }
}
