//! The cases, one module per topic. Each case is a function taking the
//! [`Suite`](crate::Suite); its name says what it proves, and its body is
//! meant to be read as the contract (shared/DESIGN.md) made executable.
//!
//! Conventions: requests are written out as raw bytes (that is the point:
//! the reader sees exactly what goes on the wire); `Host: origin.test` is an
//! arbitrary name (in reverse mode the proxy sends everything to
//! `--upstream` whatever the Host says); each case starts its own origin and
//! proxy, so cases are independent and run in parallel.

pub mod bad_input;
pub mod bodies;
pub mod cli;
pub mod concurrency;
pub mod forwarding;
pub mod lifecycle;
pub mod modes;
pub mod persistence;
pub mod resources;
pub mod robustness;
pub mod uploads;
pub mod upstream_faults;

use std::thread;
use std::time::{Duration, Instant};

use crate::{Client, Response};

/// A plain HTTP/1.1 GET for `target`.
pub fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: origin.test\r\n\r\n").into_bytes()
}

/// Checks an answer the proxy made itself (an error): the expected status,
/// `Connection: close`, and a short plain-text body saying what was wrong.
#[track_caller]
pub fn check_answer(c: &Client, r: &Response, status: u16) {
    c.check_eq(r.status, status, "status of the proxy's answer");
    c.check(r.says_close(), "an answer must say Connection: close");
    let content_type = r.header("Content-Type").unwrap_or_default();
    c.check(
        content_type.starts_with("text/plain"),
        format_args!("an answer's body is plain text, but Content-Type is {content_type:?}"),
    );
    let text_like = r
        .body
        .iter()
        .all(|&b| b.is_ascii_graphic() || b" \t\r\n".contains(&b) || b >= 0x80);
    c.check(
        !r.body.is_empty()
            && r.body.len() <= 1024
            && text_like
            && std::str::from_utf8(&r.body).is_ok(),
        "an answer's body is a short (1..=1024 bytes) text saying what was wrong",
    );
}

/// Polls `ready` every 10 ms until it is true or `limit` passes; returns
/// whether it became true. For facts that become true soon after an event
/// the case cannot observe directly (a log line written after the response).
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if ready() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*): upload bodies that are
/// not the origin's download pattern, so an upload cannot pass by accident
/// of a mix-up with a download.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// `body` in chunked framing with chunks of the given sizes (cycled), last
/// chunk and empty trailer section included.
pub fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(body.len() + body.len() / 8 + 16);
    let mut rest = body;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
        rest = tail;
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    wire
}

/// How long a case waits, after a client saw the end of its connection,
/// before asserting the origin served nothing more. A smuggled request
/// would reach the origin within microseconds; this only absorbs
/// scheduling on a loaded machine.
pub const SETTLE: Duration = Duration::from_millis(200);
