//! Opens N client connections to a proxy, makes one request on each (so
//! each is an idle keep-alive connection afterwards), and holds them all open
//! while printing the proxy's memory: the experiment "what does an idle
//! connection cost?" of `docs/phase4-async.md`.
//!
//! ```console
//! $ ulimit -n 20000        # in the shell of the proxy too
//! $ cargo run --release -p phase4-async --example idle_connections -- 127.0.0.1:8004 10000 PID
//! ```
//!
//! Arguments: the proxy's address, how many connections, and optionally the
//! proxy's process id (to read its VmRSS from /proc before and after). The
//! proxy must run in reverse mode (origin-form requests) with
//! `--max-connections` above N and `--idle-timeout` longer than the run.
//! Blocking std sockets, one after another: simple, and fast enough on
//! loopback. Every read has a timeout, so nothing here waits forever.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: idle_connections PROXY_ADDR COUNT [PROXY_PID]";
    let addr: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let count: usize = args.next().ok_or(usage)?.parse()?;
    let pid: Option<u32> = args.next().map(|p| p.parse()).transpose()?;

    let before = pid.and_then(rss_kib);
    let started = Instant::now();
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"GET /bytes/1 HTTP/1.1\r\nHost: idle.test\r\n\r\n")?;
        read_small_response(&mut stream).map_err(|e| format!("connection {i}: {e}"))?;
        held.push(stream);
    }
    println!(
        "{count} keep-alive connections open and idle after {:.1?}",
        started.elapsed()
    );
    // Let the proxy settle (tasks parked, buffers released) before sampling.
    std::thread::sleep(Duration::from_secs(2));
    if let (Some(pid), Some(before)) = (pid, before) {
        if let Some(after) = rss_kib(pid) {
            let per_conn = (after.saturating_sub(before) as f64 * 1024.0) / count as f64;
            println!(
                "proxy VmRSS: {before} KiB before, {after} KiB with {count} idle connections: {per_conn:.0} bytes per connection"
            );
        }
    }
    println!("holding them for 5 s (watch the proxy with ps, /proc/PID/status, ss)");
    std::thread::sleep(Duration::from_secs(5));
    drop(held);
    Ok(())
}

/// Reads one short response (head and a Content-Length body) in full.
fn read_small_response(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if !head.starts_with("http/1.1 200") {
                return Err(std::io::Error::other(format!(
                    "unexpected response: {head}"
                )));
            }
            if buf.len() >= end + 4 + len {
                return Ok(());
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("the proxy closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The resident set size of a process, from /proc (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
