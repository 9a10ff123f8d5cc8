//! Capacity: thousands of keep-alive clients held open at once, and what
//! happens beyond `--max-connections` (a fast 503 or a wait in the backlog,
//! never unbounded growth, never a client left hanging forever).

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use origin::pattern;

use super::ScalingSuite;
use crate::Client;
use crate::cases::{check_answer, get};
use crate::process::raise_descriptor_limit;

/// Upper bound on the many-connections case: not a performance threshold
/// (it passes in seconds), but a clear failure instead of a hang.
const MANY_CONNECTIONS_LIMIT: Duration = Duration::from_secs(120);
/// Descriptors the test process needs besides two per connection.
const DESCRIPTOR_MARGIN: u64 = 1000;

/// Connects, retrying with a bounded backoff: with thousands of connects
/// in a row, the listen backlog may be full for a moment. Gives up after
/// 10 attempts or at `deadline`.
#[track_caller]
fn connect_with_retry(addr: SocketAddr, index: usize, deadline: Instant) -> Client {
    let mut backoff = Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match Client::try_connect(addr) {
            Ok(c) => return c,
            Err(e) if attempt >= 10 || Instant::now() >= deadline => {
                panic!(
                    "connection {index}: cannot connect to the proxy at {addr} after {attempt} attempts: {e}"
                )
            }
            Err(_) => {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                attempt += 1;
            }
        }
    }
}

/// `concurrent_connections` clients connect (all of them first), each sends
/// `GET /bytes/1024`, then every response is read while all connections
/// stay open; then a second request on each, read again: keep-alive works
/// at that scale. Sequential connects and reads keep the client simple;
/// the proxy is what must serve them all at once.
///
/// Each process needs two descriptors per connection: the proxy holds the
/// client side and an upstream connection, and this test process holds
/// the client side and, through the in-process origin, the upstream's
/// side. RLIMIT_NOFILE is raised to its hard limit; if that is below
/// 2 × connections + 1000, the case prints why and passes without running.
///
/// The proxy gets `--max-connections` above the connection count, and
/// header and idle timeouts of 120 s: connecting thousands of clients one
/// by one takes a while, and the first must not time out meanwhile.
pub fn many_concurrent_keep_alive_connections(suite: &ScalingSuite) {
    let n = suite.scale.concurrent_connections;
    let needed = 2 * n as u64 + DESCRIPTOR_MARGIN;
    if let Err(why) = raise_descriptor_limit(needed) {
        eprintln!(
            "SKIPPED many_concurrent_keep_alive_connections ({} scale, {n} connections): {why}",
            suite.scale.name
        );
        return;
    }
    let started = Instant::now();
    let deadline = started + MANY_CONNECTIONS_LIMIT;
    let origin = suite.origin();
    let max_connections = (n + 100).to_string();
    let proxy = suite.reverse(
        &origin,
        &[
            "--max-connections",
            &max_connections,
            "--header-timeout",
            "120",
            "--idle-timeout",
            "120",
        ],
    );
    let within_limit = |stage: &str| {
        if Instant::now() >= deadline {
            proxy.fail(format!(
                "{n} concurrent connections ({} scale): still {stage} after {:?}",
                suite.scale.name, MANY_CONNECTIONS_LIMIT
            ));
        }
    };

    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = connect_with_retry(proxy.addr(), i, deadline);
        // Every read of every client ends by the case's overall deadline.
        c.set_deadline(deadline.saturating_duration_since(Instant::now()));
        clients.push(c);
        if i % 100 == 0 {
            within_limit("connecting");
        }
    }
    let expected = pattern(1024);
    for round in 1..=2 {
        for c in &mut clients {
            c.send(&get("/bytes/1024"));
        }
        within_limit("sending requests");
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c.read_response();
            c.check_eq(
                r.status,
                200,
                &format!("status on connection {i} of {n} (round {round})"),
            );
            c.check_bytes(
                &r.body,
                &expected,
                &format!("body on connection {i} of {n} (round {round})"),
            );
            c.check(
                !r.says_close(),
                format_args!(
                    "connection {i} of {n} must stay open for a second request (round {round})"
                ),
            );
        }
        within_limit("reading responses");
    }
}

/// `--max-connections 4`, and four clients each make a request and stay
/// open, idle. A fifth connects and sends a request: within 2 s it either
/// gets a 503 answer (with `Connection: close`), or nothing at all (it
/// waits in the listen backlog). Then the four close. A fifth that got
/// nothing now gets its 200 (within 5 s), and a new client is served:
/// a connection over the limit is refused or delayed, never stuck forever.
pub fn over_max_connections_new_clients_get_503_or_wait(suite: &ScalingSuite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--max-connections", "4"]);
    let mut held = Vec::new();
    for i in 0..4 {
        let mut c = proxy.connect();
        c.send(&get("/bytes/10"));
        let r = c.read_response();
        c.check_bytes(
            &r.body,
            &pattern(10),
            &format!("body for held connection {i}"),
        );
        c.check(
            !r.says_close(),
            "a held connection must stay open (keep-alive)",
        );
        held.push(c);
    }

    let mut fifth = proxy.connect();
    // The proxy may answer 503 and close before reading the request.
    let _ = fifth.try_send(&get("/bytes/10"));
    let waiting = fifth.is_still_waiting(Duration::from_secs(2));
    if !waiting {
        let r = fifth.read_response();
        check_answer(&fifth, &r, 503);
        fifth.expect_close();
    }

    drop(held);
    if waiting {
        fifth.set_timeout(Duration::from_secs(5));
        let r = fifth.read_response();
        if r.status == 503 {
            // Shed after all, just later than 2 s (a loaded machine).
            check_answer(&fifth, &r, 503);
        } else {
            fifth.check_eq(
                r.status,
                200,
                "status for the fifth client once slots freed",
            );
            fifth.check_bytes(&r.body, &pattern(10), "body for the fifth client");
        }
    }
    drop(fifth);

    // The proxy notices the closes as soon as it reads the EOFs, not at one
    // precise moment: a 503 meanwhile is retried, for up to 5 s.
    let start = Instant::now();
    loop {
        let mut c = proxy.connect();
        c.set_timeout(Duration::from_secs(5));
        let _ = c.try_send(&get("/bytes/10"));
        let r = c.read_response();
        if r.status == 200 {
            c.check_bytes(
                &r.body,
                &pattern(10),
                "body for a new client after the closes",
            );
            break;
        }
        check_answer(&c, &r, 503);
        if start.elapsed() > Duration::from_secs(5) {
            c.fail("new clients still get 503 five seconds after the four held connections closed");
        }
        thread::sleep(Duration::from_millis(100));
    }
}
