//! The state machine, driven by hand: fake sockets, a fake clock, and events
//! in orders a real network produces only now and then (readable and
//! hang-up together, writable before a connect has finished, a peer that
//! closes mid-head, writes that go out a few bytes at a time).

use std::time::Duration;

use super::*;
use crate::fake::{CLIENT_IP, FakeEnv, FakeSocket};

const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
const OK_5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/// A connection for a fresh client socket, and the test's handle on it.
fn accept(env: &FakeEnv) -> (Connection<FakeSocket>, FakeSocket) {
    let client = FakeSocket::connected();
    (Connection::new(client.clone(), CLIENT_IP, env.now), client)
}

/// epoll says: this socket is readable and writable.
fn event(conn: &mut Connection<FakeSocket>, env: &mut FakeEnv, peer: Peer) {
    conn.on_ready(env, peer, Readiness::BOTH);
}

/// The client sends `GET` and the upstream connect completes: returns the
/// upstream's handle, with the request head written to it.
fn request_reaches_upstream(
    conn: &mut Connection<FakeSocket>,
    env: &mut FakeEnv,
    client: &FakeSocket,
) -> FakeSocket {
    client.send(GET);
    event(conn, env, Peer::Client);
    let upstream = env.upstream(env.connects.len() - 1);
    upstream.wire().connected = true;
    event(conn, env, Peer::Upstream);
    assert!(
        upstream.written_text().starts_with("GET /x HTTP/1.1\r\n"),
        "{:?}",
        upstream.written_text()
    );
    upstream
}

fn state_name(conn: &Connection<FakeSocket>) -> &'static str {
    match conn.state {
        State::ReadingHead { .. } => "ReadingHead",
        State::Resolving(..) => "Resolving",
        State::Connecting(..) => "Connecting",
        State::SendingRequest(..) => "SendingRequest",
        State::ReadingResponseHead(..) => "ReadingResponseHead",
        State::RelayingResponse(..) => "RelayingResponse",
        State::Tunnel(..) => "Tunnel",
        State::Closing { .. } => "Closing",
        State::Lingering { .. } => "Lingering",
        State::Closed => "Closed",
    }
}

#[test]
fn a_get_goes_through_every_state_and_back_to_reading_head() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(GET);
    event(&mut conn, &mut env, Peer::Client);
    assert_eq!(state_name(&conn), "Connecting");
    assert_eq!(
        env.connects[0].0,
        "127.0.0.1:9".parse().unwrap(),
        "an IP upstream needs no DNS"
    );
    assert!(env.resolves.is_empty());

    let upstream = env.upstream(0);
    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(state_name(&conn), "ReadingResponseHead");
    let sent = upstream.written_text();
    assert!(
        sent.contains("\r\nVia: 1.1 proxy-ladder\r\n") && sent.ends_with("\r\n\r\n"),
        "{sent:?}"
    );

    upstream.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    let received = client.written_text();
    assert!(
        received.starts_with("HTTP/1.1 200 OK\r\n") && received.ends_with("\r\n\r\nhello"),
        "{received:?}"
    );
    assert_eq!(
        state_name(&conn),
        "ReadingHead",
        "keep-alive: wait for the next request"
    );
    assert_eq!(env.statuses(), vec![200]);
    assert_eq!(env.log[0].body_bytes, 5);
    assert_eq!(
        env.checked_in.len(),
        1,
        "the upstream connection went back to the pool"
    );
}

#[test]
fn readable_and_hang_up_together_serve_the_request_then_close() {
    // One event says: here is a whole request, and the client has shut
    // down its sending side (`printf 'GET...' | nc -N`).
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(GET);
    client.wire().eof = true;
    event(&mut conn, &mut env, Peer::Client);
    assert_eq!(
        state_name(&conn),
        "Connecting",
        "the half-closed client still gets its answer"
    );

    let upstream = env.upstream(0);
    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    upstream.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(client.written_text().ends_with("hello"));
    // No next request can come: close now, not after the idle timeout.
    assert!(conn.is_closed(), "state {}", state_name(&conn));
    assert!(client.wire().fin_sent);
    assert!(!client.wire().reset_on_close);
}

#[test]
fn writable_before_the_connect_completes_sends_nothing() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(GET);
    event(&mut conn, &mut env, Peer::Client);
    let upstream = env.upstream(0);
    // A wake-up while the handshake is still in flight.
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(state_name(&conn), "Connecting");
    assert!(
        upstream.written_text().is_empty(),
        "nothing may be written before the connect completes"
    );

    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(state_name(&conn), "ReadingResponseHead");
    assert!(upstream.written_text().starts_with("GET /x HTTP/1.1\r\n"));
}

#[test]
fn a_refused_connect_is_a_502() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(GET);
    event(&mut conn, &mut env, Peer::Client);
    env.upstream(0).wire().connect_error = Some(std::io::ErrorKind::ConnectionRefused);
    event(&mut conn, &mut env, Peer::Upstream);
    let answer = client.written_text();
    assert!(
        answer.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{answer:?}"
    );
    assert!(answer.contains("Connection: close"), "{answer:?}");
    assert_eq!(env.statuses(), vec![502]);
    assert!(client.wire().fin_sent, "FIN after the answer, then linger");
}

#[test]
fn a_connect_that_never_completes_is_a_504_at_the_connect_timeout() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(GET);
    event(&mut conn, &mut env, Peer::Client);
    let deadline = conn.deadline(&env.config).unwrap();
    assert_eq!(deadline, env.now + env.config.connect_timeout);
    env.advance(env.config.connect_timeout);
    conn.on_timer(&mut env);
    assert!(
        client
            .written_text()
            .starts_with("HTTP/1.1 504 Gateway Timeout\r\n")
    );
}

#[test]
fn a_peer_closing_mid_head_gets_no_answer_and_no_upstream() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(b"GET /x HTTP/1.1\r\nHo");
    client.wire().eof = true;
    event(&mut conn, &mut env, Peer::Client);
    assert!(conn.is_closed(), "state {}", state_name(&conn));
    assert!(
        env.connects.is_empty(),
        "half a head never reaches an upstream"
    );
    assert!(client.written_text().is_empty(), "nobody is left to answer");
    assert!(env.log.is_empty());
}

#[test]
fn a_head_split_over_many_events_is_assembled() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    for byte in GET {
        assert!(env.connects.is_empty());
        client.send(&[*byte]);
        event(&mut conn, &mut env, Peer::Client);
    }
    assert_eq!(env.connects.len(), 1);
}

#[test]
fn a_partial_head_gets_408_at_the_header_timeout_and_silence_just_a_close() {
    let mut env = FakeEnv::new();
    let (mut partial, client) = accept(&env);
    let (mut silent, quiet) = accept(&env);
    client.send(b"GET /x HT");
    event(&mut partial, &mut env, Peer::Client);
    event(&mut silent, &mut env, Peer::Client);
    env.advance(env.config.header_timeout - Duration::from_millis(1));
    partial.on_timer(&mut env);
    assert!(client.written_text().is_empty(), "not before the deadline");
    env.advance(Duration::from_millis(1));
    partial.on_timer(&mut env);
    silent.on_timer(&mut env);
    assert!(
        client
            .written_text()
            .starts_with("HTTP/1.1 408 Request Timeout\r\n")
    );
    assert!(quiet.written_text().is_empty());
    assert!(
        quiet.wire().fin_sent,
        "a silent connection is closed without an answer"
    );
}

#[test]
fn short_writes_are_resumed_on_the_next_writable_event() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(GET);
    event(&mut conn, &mut env, Peer::Client);
    let upstream = env.upstream(0);
    {
        let mut w = upstream.wire();
        w.connected = true;
        w.room = Some(7); // The kernel takes 7 bytes, then would block.
    }
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(upstream.written_text(), "GET /x ");
    assert_eq!(state_name(&conn), "SendingRequest");
    // Room again, one writable edge at a time.
    let mut events = 0;
    while state_name(&conn) == "SendingRequest" && events < 100 {
        upstream.wire().room = Some(7);
        event(&mut conn, &mut env, Peer::Upstream);
        events += 1;
    }
    assert_eq!(state_name(&conn), "ReadingResponseHead");
    let sent = upstream.written_text();
    assert!(
        sent.starts_with("GET /x HTTP/1.1\r\nHost: a\r\n") && sent.ends_with("\r\n\r\n"),
        "{sent:?}"
    );

    // The same towards a client that takes 3 bytes per writable edge.
    client.wire().room = Some(3);
    upstream.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(client.written_text(), "HTT");
    while state_name(&conn) == "RelayingResponse" && events < 1000 {
        client.wire().room = Some(3);
        event(&mut conn, &mut env, Peer::Client);
        events += 1;
    }
    assert!(client.written_text().ends_with("\r\n\r\nhello"));
    assert_eq!(state_name(&conn), "ReadingHead");
}

#[test]
fn a_client_that_does_not_read_stops_the_proxy_reading_the_upstream() {
    let mut env = FakeEnv::with_buffers(4096);
    let (mut conn, client) = accept(&env);
    client.wire().room = Some(0); // Never reads.
    let upstream = request_reaches_upstream(&mut conn, &mut env, &client);
    let body = vec![b'x'; 1024 * 1024];
    upstream.send(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    upstream.send(&body);
    for _ in 0..10 {
        event(&mut conn, &mut env, Peer::Upstream);
    }
    // Two 4 KiB buffers (from the upstream, to the client) is all it holds.
    let left = upstream.wire().incoming.len();
    assert!(
        left >= body.len() - 2 * 4096,
        "the proxy read {} bytes it could not send",
        body.len() + 50 - left
    );
    assert_eq!(state_name(&conn), "RelayingResponse");
    // The deadline is now the client's: it is the one not making progress.
    assert_eq!(
        conn.deadline(&env.config),
        Some(conn.client.last_write + env.config.idle_timeout)
    );
}

#[test]
fn pipelined_requests_are_answered_one_at_a_time_in_order() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    let two = [GET, b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n".as_slice()].concat();
    client.send(&two);
    event(&mut conn, &mut env, Peer::Client);
    let first = env.upstream(0);
    first.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(
        !first.written_text().contains("/y"),
        "the second request waits for the first response"
    );
    first.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    // The pool is empty in the fake, so the second request opens a new
    // connection, at once: its bytes were already buffered.
    let second = env.upstream(1);
    second.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(second.written_text().starts_with("GET /y HTTP/1.1\r\n"));
    second.send(b"HTTP/1.1 204 No Content\r\n\r\n");
    event(&mut conn, &mut env, Peer::Upstream);
    let out = client.written_text();
    let (a, b) = (
        out.find("200 OK").unwrap(),
        out.find("204 No Content").unwrap(),
    );
    assert!(a < b, "{out:?}");
    assert_eq!(env.statuses(), vec![200, 204]);
}

#[test]
fn a_stale_pooled_connection_is_retried_once_on_a_fresh_one() {
    let mut env = FakeEnv::new();
    let stale = FakeSocket::connected();
    env.pool.push(stale.clone());
    let (mut conn, client) = accept(&env);
    client.send(GET);
    event(&mut conn, &mut env, Peer::Client);
    assert!(
        stale.written_text().starts_with("GET /x"),
        "the pooled connection is used first"
    );
    assert!(env.connects.is_empty());
    // The upstream had closed it: the read after the request sees EOF.
    stale.wire().eof = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(
        env.connects.len(),
        1,
        "a GET with no response byte is retried"
    );
    let fresh = env.upstream(0);
    fresh.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    fresh.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(client.written_text().ends_with("hello"));
    assert_eq!(env.statuses(), vec![200]);
}

#[test]
fn a_post_on_a_stale_pooled_connection_is_not_retried() {
    let mut env = FakeEnv::new();
    let stale = FakeSocket::connected();
    env.pool.push(stale.clone());
    let (mut conn, client) = accept(&env);
    client.send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    event(&mut conn, &mut env, Peer::Client);
    stale.wire().eof = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(
        env.connects.is_empty(),
        "a POST may have been processed: never sent twice"
    );
    assert!(
        client
            .written_text()
            .starts_with("HTTP/1.1 502 Bad Gateway\r\n")
    );
}

#[test]
fn a_truncated_content_length_body_ends_with_a_fin_after_every_byte() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    let upstream = request_reaches_upstream(&mut conn, &mut env, &client);
    client.wire().room = Some(0); // Not reading at the moment.
    upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    upstream.wire().eof = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(env.checked_in.is_empty(), "a broken upstream is not pooled");
    // The head, 3 of 10 bytes and the upstream's FIN came in one event: the
    // bytes that did arrive are delivered first, and only then the FIN.
    assert!(
        !client.wire().fin_sent,
        "the bytes before the cut go out first"
    );
    client.wire().room = None;
    event(&mut conn, &mut env, Peer::Client);
    let received = client.written_text();
    assert!(received.ends_with("\r\n\r\nabc"), "{received:?}");
    assert!(
        client.wire().fin_sent,
        "3 of 10 announced bytes show the cut: a FIN keeps them all"
    );
    assert!(
        !client.wire().reset_on_close,
        "a reset could throw away bytes still in flight, even the head"
    );
}

#[test]
fn a_truncated_body_to_an_http10_client_ends_in_a_reset() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client.send(b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n");
    event(&mut conn, &mut env, Peer::Client);
    let upstream = env.upstream(env.connects.len() - 1);
    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    // Chunked from the upstream, de-chunked into a close-delimited body for
    // the HTTP/1.0 client: the last chunk never comes.
    upstream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    upstream.wire().eof = true;
    event(&mut conn, &mut env, Peer::Upstream);
    event(&mut conn, &mut env, Peer::Client);
    let received = client.written_text();
    assert!(received.ends_with("\r\n\r\nabc"), "{received:?}");
    assert!(conn.is_closed());
    assert!(
        client.wire().reset_on_close,
        "a clean close would make the 3 bytes look like the whole body"
    );
    assert!(!client.wire().fin_sent, "a reset, not a FIN");
}

#[test]
fn a_bad_request_body_gets_400_before_anything_else_is_sent() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client
        .send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n");
    event(&mut conn, &mut env, Peer::Client);
    let upstream = env.upstream(0);
    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(
        client
            .written_text()
            .starts_with("HTTP/1.1 400 Bad Request\r\n")
    );
    assert_eq!(env.statuses(), vec![400]);
}

#[test]
fn expect_100_continue_waits_for_the_upstream_then_sends_the_body() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    client
        .send(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    event(&mut conn, &mut env, Peer::Client);
    let upstream = env.upstream(0);
    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(
        conn.deadline(&env.config),
        Some(env.now + EXPECT_CONTINUE_WAIT)
    );
    upstream.send(b"HTTP/1.1 100 Continue\r\n\r\n");
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(client.written_text(), "HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"abc");
    event(&mut conn, &mut env, Peer::Client);
    assert!(upstream.written_text().ends_with("\r\n\r\nabc"));
    assert_eq!(state_name(&conn), "ReadingResponseHead");
}

#[test]
fn a_connect_tunnel_passes_bytes_and_half_closes_both_ways() {
    let mut env = FakeEnv::new();
    env.config.mode = proxy_core::Mode::Forward;
    let (mut conn, client) = accept(&env);
    client.send(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\nearly");
    event(&mut conn, &mut env, Peer::Client);
    let upstream = env.upstream(0);
    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(
        client.written_text(),
        String::from_utf8_lossy(answers::CONNECT_ESTABLISHED)
    );
    assert_eq!(
        upstream.written_text(),
        "early",
        "bytes sent before the 200 are tunnel bytes"
    );

    client.wire().eof = true;
    event(&mut conn, &mut env, Peer::Client);
    assert!(upstream.wire().fin_sent, "the client's FIN is passed on");
    assert!(!conn.is_closed(), "the other direction is still open");
    upstream.send(b"reply");
    upstream.wire().eof = true;
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(client.written_text().ends_with("reply"));
    assert!(client.wire().fin_sent);
    assert!(conn.is_closed());
    assert_eq!(env.statuses(), vec![200]);
}

#[test]
fn shutdown_closes_an_idle_connection_but_lets_an_exchange_finish_with_close() {
    let mut env = FakeEnv::new();
    let (mut idle, _idle_client) = accept(&env);
    let (mut busy, client) = accept(&env);
    let upstream = request_reaches_upstream(&mut busy, &mut env, &client);
    env.shutting_down = true;
    idle.on_shutdown(&mut env);
    busy.on_shutdown(&mut env);
    assert!(idle.is_closed());
    assert!(!busy.is_closed());
    upstream.send(OK_5);
    event(&mut busy, &mut env, Peer::Upstream);
    let out = client.written_text();
    assert!(
        out.contains("\r\nConnection: close\r\n") && out.ends_with("hello"),
        "{out:?}"
    );
}

#[test]
fn over_the_limit_a_client_gets_503_without_being_read() {
    let mut env = FakeEnv::new();
    let client = FakeSocket::connected();
    client.send(GET);
    let mut conn = Connection::overloaded(client.clone(), CLIENT_IP, &mut env);
    event(&mut conn, &mut env, Peer::Client);
    assert!(
        client
            .written_text()
            .starts_with("HTTP/1.1 503 Service Unavailable\r\n")
    );
    assert!(env.connects.is_empty());
    assert_eq!(env.statuses(), vec![503]);
    let body = client
        .written_text()
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .len() as u64;
    assert_eq!(env.log[0].body_bytes, body);
}

#[test]
fn a_response_after_a_long_idle_wait_gets_a_fresh_client_deadline() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    let upstream = request_reaches_upstream(&mut conn, &mut env, &client);
    upstream.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    // Idle for most of --idle-timeout, then a second request whose
    // response the client is slow to take.
    env.advance(env.config.idle_timeout - Duration::from_secs(1));
    client.wire().room = Some(0);
    let upstream = request_reaches_upstream(&mut conn, &mut env, &client);
    upstream.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(state_name(&conn), "RelayingResponse");
    assert_eq!(
        conn.deadline(&env.config),
        Some(env.now + env.config.idle_timeout),
        "the client's write clock starts with the response, not at its last write"
    );
}

#[test]
fn a_connection_waiting_for_its_next_request_holds_no_buffer() {
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    let upstream = request_reaches_upstream(&mut conn, &mut env, &client);
    upstream.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(state_name(&conn), "ReadingHead");
    for (name, buffer) in [
        ("from_client", &conn.from_client),
        ("to_upstream", &conn.to_upstream),
        ("from_upstream", &conn.from_upstream),
        ("to_client", &conn.to_client),
    ] {
        assert_eq!(buffer.space(), 0, "{name} still holds storage");
    }
    // What is left is the connection itself: this is what 10,000 idle
    // keep-alive clients cost (plus the kernel's socket buffers).
    let size = std::mem::size_of::<Connection<mio::net::TcpStream>>();
    assert!(size <= 512, "an idle connection takes {size} bytes");
}

#[test]
fn a_head_sent_one_byte_per_read_is_scanned_once() {
    // The parser resumes where the last partial parse stopped: after each
    // byte, the state records that everything so far has been checked, so
    // the next parse looks at the new byte only (proxy-core's `scan` tests
    // show it resumes there), instead of re-scanning the whole head.
    let mut env = FakeEnv::new();
    let (mut conn, client) = accept(&env);
    let head = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(2000)
    );
    for (i, byte) in head.bytes().enumerate() {
        client.send(&[byte]);
        event(&mut conn, &mut env, Peer::Client);
        if i + 1 < head.len() {
            let State::ReadingHead { scanned, .. } = conn.state else {
                panic!("left ReadingHead after {} bytes", i + 1);
            };
            assert_eq!(scanned, i + 1, "the parse of byte {i} starts over");
        }
    }
    assert_eq!(env.connects.len(), 1, "the whole head was parsed");

    // The same for a response head arriving one byte at a time.
    let upstream = env.upstream(0);
    upstream.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    let response = b"HTTP/1.1 204 No Content\r\nX-Pad: qqqqqqqqqqqqqqqq\r\n\r\n";
    for (i, byte) in response.iter().enumerate() {
        upstream.send(&[*byte]);
        event(&mut conn, &mut env, Peer::Upstream);
        if i + 1 < response.len() {
            let State::ReadingResponseHead(_, ref a) = conn.state else {
                panic!("left ReadingResponseHead after {} bytes", i + 1);
            };
            assert_eq!(a.scanned, i + 1, "the parse of byte {i} starts over");
        }
    }
    assert_eq!(env.statuses(), vec![204]);
}

#[test]
fn a_name_that_never_resolves_gets_504_at_the_connect_timeout() {
    // The fake resolver never answers, like a DNS server that is down.
    let mut env = FakeEnv::new();
    env.config.mode = proxy_core::Mode::Forward;
    let (mut conn, client) = accept(&env);
    client.send(b"GET http://slow.example/x HTTP/1.1\r\nHost: slow.example\r\n\r\n");
    event(&mut conn, &mut env, Peer::Client);
    assert_eq!(state_name(&conn), "Resolving");
    assert_eq!(env.resolves.len(), 1);
    assert_eq!(
        conn.deadline(&env.config),
        Some(env.now + env.config.connect_timeout),
        "a connection waiting for DNS has a deadline"
    );
    env.advance(env.config.connect_timeout - Duration::from_millis(1));
    conn.on_timer(&mut env);
    assert!(client.written_text().is_empty(), "not before the deadline");
    env.advance(Duration::from_millis(1));
    conn.on_timer(&mut env);
    let answer = client.written_text();
    assert!(
        answer.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{answer:?}"
    );
    // The answer comes after all: too late, it is dropped.
    conn.on_resolved(&mut env, Ok(vec!["127.0.0.1:80".parse().unwrap()]));
    assert!(env.connects.is_empty(), "no connect after the 504");
    assert_eq!(env.statuses(), vec![504]);
}

#[test]
fn resolving_and_connecting_share_one_connect_timeout() {
    let mut env = FakeEnv::new();
    env.config.mode = proxy_core::Mode::Forward;
    let (mut conn, client) = accept(&env);
    client.send(b"GET http://slow.example/x HTTP/1.1\r\nHost: slow.example\r\n\r\n");
    event(&mut conn, &mut env, Peer::Client);
    let budget_ends = env.now + env.config.connect_timeout;
    env.advance(env.config.connect_timeout / 2);
    conn.on_resolved(&mut env, Ok(vec!["127.0.0.1:80".parse().unwrap()]));
    assert_eq!(state_name(&conn), "Connecting");
    assert_eq!(
        conn.deadline(&env.config),
        Some(budget_ends),
        "the connect gets what the lookup left of the budget (phase 1's rule)"
    );
}

#[test]
fn a_retry_after_the_head_went_out_keeps_the_client_connection_alive() {
    let mut env = FakeEnv::new();
    let stale = FakeSocket::connected();
    stale.wire().room = Some(5); // The head goes out in two writes.
    env.pool.push(stale.clone());
    let (mut conn, client) = accept(&env);
    client.send(GET);
    event(&mut conn, &mut env, Peer::Client);
    assert_eq!(state_name(&conn), "SendingRequest");
    {
        // The rest of the head is accepted, then the upstream's reset shows.
        let mut w = stale.wire();
        w.room = None;
        w.read_reset = true;
    }
    event(&mut conn, &mut env, Peer::Upstream);
    assert!(
        stale.written_text().ends_with("\r\n\r\n"),
        "the head went out whole"
    );
    assert_eq!(
        env.connects.len(),
        1,
        "a GET with no response byte is retried"
    );
    let fresh = env.upstream(0);
    fresh.wire().connected = true;
    event(&mut conn, &mut env, Peer::Upstream);
    fresh.send(OK_5);
    event(&mut conn, &mut env, Peer::Upstream);
    let out = client.written_text();
    assert!(out.ends_with("hello"), "{out:?}");
    assert!(
        !out.contains("Connection: close"),
        "a bodiless request leaves nothing unread: no reason to close: {out:?}"
    );
    assert_eq!(state_name(&conn), "ReadingHead");
}

#[test]
fn a_last_chunk_waiting_for_room_counts_as_progress_once() {
    // A close-delimited response re-chunked for an HTTP/1.1 client: when
    // the upstream closes, the proxy owes the client a last chunk. If
    // `to_client` has no room for it, nothing can happen until the client
    // reads; counting "the upstream has closed" as progress on every pass
    // would make `drive` loop forever.
    let mut env = FakeEnv::with_buffers(4096);
    let (mut conn, client) = accept(&env);
    client.wire().room = Some(0); // Not reading at the moment.
    let upstream = request_reaches_upstream(&mut conn, &mut env, &client);
    upstream.send(b"HTTP/1.1 200 OK\r\n\r\nabc");
    event(&mut conn, &mut env, Peer::Upstream);
    assert_eq!(state_name(&conn), "RelayingResponse");
    // Leave `to_client` too little room for `0\r\n\r\n`, then the upstream closes.
    let filler = vec![b'.'; conn.to_client.space() - 2];
    assert!(conn.to_client.extend(&filler));
    if let Some(up) = conn.upstream.as_mut() {
        up.read_closed = true;
    }
    // Two decision steps, as `drive` would run them, without the I/O.
    let state = mem::replace(&mut conn.state, State::Closed);
    conn.state = conn.advance(&mut env, state);
    let after_finish = conn.progress;
    let state = mem::replace(&mut conn.state, State::Closed);
    conn.state = conn.advance(&mut env, state);
    assert_eq!(
        conn.progress, after_finish,
        "the second pass changed nothing and must not claim progress"
    );
    assert_eq!(state_name(&conn), "RelayingResponse");
    // The client reads: the last chunk goes out, and the exchange ends.
    client.wire().room = None;
    event(&mut conn, &mut env, Peer::Client);
    let out = client.written_text();
    assert!(
        out.ends_with("..0\r\n\r\n"),
        "the filler, then the last chunk"
    );
    assert_eq!(env.statuses(), vec![200]);
    assert_eq!(state_name(&conn), "ReadingHead");
}
