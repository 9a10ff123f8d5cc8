//! The process around the exchanges: graceful shutdown on SIGTERM, and the
//! access log on stdout.

use std::thread;
use std::time::Duration;

use origin::pattern;

use super::{SETTLE, get, wait_until};
use crate::Suite;

/// SIGTERM while a GET /delay/1000 is in flight: the proxy stops accepting
/// but lets the exchange finish (200, full body), then exits with status 0.
pub fn sigterm_lets_in_flight_exchange_finish_then_exits_0(suite: &Suite) {
    let origin = suite.origin();
    let mut proxy = suite.reverse(&origin, &[]);
    let mut c = proxy.connect();
    c.send(&get("/delay/1000"));
    // In flight means the proxy has connected upstream for it.
    let in_flight = wait_until(Duration::from_secs(5), || {
        origin.stats().connections_accepted() >= 1
    });
    c.check(
        in_flight,
        "the proxy never connected upstream for the request",
    );

    proxy.terminate();
    let r = c.read_response();
    c.check_eq(r.status, 200, "status of the exchange in flight at SIGTERM");
    c.check_eq(
        r.body_text().as_str(),
        "delayed 1000 ms\n",
        "body of the exchange in flight at SIGTERM",
    );
    // Done with the connection, as a client would be.
    drop(c);

    match proxy.wait_for_exit(Duration::from_secs(10)) {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => proxy.fail(format!(
            "after SIGTERM the proxy exited with {status}, not 0"
        )),
        None => {
            proxy.fail("the proxy was still running 10 s after SIGTERM and a finished exchange")
        }
    }
}

/// `--access-log`: one Common Log Format line per exchange on stdout, plus
/// the duration in ms:
/// `127.0.0.1 - - [23/Nov/2026:15:11:12 +0000] "GET /bytes/10 HTTP/1.1" 200 10 3`.
pub fn access_log_writes_one_line_per_exchange(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--access-log"]);
    let mut c = proxy.connect();
    c.send(&get("/bytes/10"));
    let r = c.read_response();
    c.check_bytes(&r.body, &pattern(10), "body");

    let request_and_status = "\"GET /bytes/10 HTTP/1.1\" 200 10 ";
    let log_lines = || -> Vec<String> {
        proxy
            .stdout_text()
            .split_inclusive('\n')
            .filter(|line| line.contains(request_and_status) && line.ends_with('\n'))
            .map(|line| line.trim_end().to_string())
            .collect()
    };
    // The line may be written just after the response.
    if !wait_until(Duration::from_secs(5), || !log_lines().is_empty()) {
        proxy.fail(format!(
            "no access log line containing {request_and_status:?} on stdout"
        ));
    }
    thread::sleep(SETTLE);
    let lines = log_lines();
    if lines.len() != 1 {
        proxy.fail(format!(
            "expected one access log line for one exchange, got {lines:?}"
        ));
    }
    let line = &lines[0];
    let duration = line.rsplit(' ').next().unwrap_or_default();
    let well_formed = line.starts_with("127.0.0.1 - - [")
        && line.contains("] \"GET /bytes/10 HTTP/1.1\" 200 10 ")
        && !duration.is_empty()
        && duration.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        proxy.fail(format!(
            "access log line {line:?} is not `127.0.0.1 - - [date] \"GET /bytes/10 HTTP/1.1\" 200 10 <ms>`"
        ));
    }
}
