//! Running wrk and reading its report.
//!
//! ```text
//! Running 1s test @ http://127.0.0.1:19000/bytes/1024
//!   2 threads and 10 connections
//!   Thread Stats   Avg      Stdev     Max   +/- Stdev
//!     Latency   325.68us  659.65us   8.14ms   94.91%
//!     Req/Sec    23.69k     2.06k   27.04k    63.64%
//!   Latency Distribution
//!      50%  171.00us
//!      75%  279.00us
//!      90%  499.00us
//!      99%    3.71ms
//!   51861 requests in 1.10s, 56.09MB read
//!   Socket errors: connect 0, read 21, write 82664, timeout 0
//!   Non-2xx or 3xx responses: 32375
//! Requests/sec:  47156.78
//! Transfer/sec:     51.00MB
//! ```
//!
//! The last two lines of the middle block appear only when non-zero. Times
//! are `us`, `ms`, `s`, `m` or `h`; byte sizes use 1024-based `KB`, `MB`...

use std::time::Duration;

use anyhow::{Context as _, bail};

use super::{ToolResult, split_number};
use crate::process;
use crate::results::{ErrorCounts, Latency};

/// wrk's arguments. `close_each`: send `Connection: close` so every request
/// opens a new connection (wrk has no other way to do that).
pub fn args(
    url: &str,
    connections: u32,
    threads: u32,
    duration: Duration,
    timeout: Duration,
    close_each: bool,
) -> Vec<String> {
    // wrk needs at least one connection per thread.
    let threads = threads.clamp(1, connections.max(1));
    let mut args = vec![
        format!("-t{threads}"),
        format!("-c{connections}"),
        // wrk takes whole seconds only.
        format!("-d{}s", duration.as_secs_f64().ceil().max(1.0)),
        "--latency".to_string(),
        "--timeout".to_string(),
        format!("{}s", timeout.as_secs().max(1)),
    ];
    if close_each {
        args.push("-H".to_string());
        args.push("Connection: close".to_string());
    }
    args.push(url.to_string());
    args
}

/// Runs wrk and parses its report.
pub fn run(args: &[String], duration: Duration) -> anyhow::Result<ToolResult> {
    let limit = duration + Duration::from_secs(30);
    let output = process::run_tool("wrk", args, limit)?;
    if output.timed_out {
        bail!("wrk did not finish within {limit:?}");
    }
    parse(&format!("{}{}", output.stdout, output.stderr))
}

/// Parses wrk's report (stdout; stderr may be appended).
pub fn parse(text: &str) -> anyhow::Result<ToolResult> {
    if let Some(line) = text.lines().find(|l| l.starts_with("unable to connect")) {
        bail!("wrk: {}", line.trim());
    }
    let mut requests = None;
    let mut duration_s = None;
    let mut req_per_s = None;
    let mut bytes_per_s = None;
    let mut max_ms = None;
    let mut percentiles = [None; 3];
    let mut errors = ErrorCounts::default();

    for line in text.lines().map(str::trim) {
        if line.starts_with("Latency Distribution") {
            continue;
        } else if let Some(rest) = line.strip_prefix("Latency ") {
            // Avg, Stdev, Max, +/- Stdev.
            max_ms = rest.split_whitespace().nth(2).and_then(time_ms);
        } else if let Some((pct, value)) = line.split_once('%') {
            let slot = match pct {
                "50" => Some(0),
                "90" => Some(1),
                "99" => Some(2),
                _ => None,
            };
            if let Some(slot) = slot {
                percentiles[slot] = time_ms(value.trim());
            }
        } else if line.contains(" requests in ") {
            // "51861 requests in 1.10s, 56.09MB read"
            let mut words = line.split_whitespace();
            requests = words.next().and_then(|n| n.parse::<u64>().ok());
            duration_s = words
                .nth(2)
                .map(|d| d.trim_end_matches(','))
                .and_then(time_ms)
                .map(|ms| ms / 1000.0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let mut kv = part.split_whitespace();
                let (Some(kind), Some(n)) = (kv.next(), kv.next().and_then(|n| n.parse().ok()))
                else {
                    continue;
                };
                match kind {
                    "connect" => errors.connect = n,
                    "read" => errors.read = n,
                    "write" => errors.write = n,
                    "timeout" => errors.timeout = n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors.non_2xx = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            req_per_s = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("Transfer/sec:") {
            bytes_per_s = bytes(rest.trim());
        }
    }

    let Some(requests) = requests else {
        let first = text.lines().map(str::trim).find(|l| !l.is_empty());
        bail!(
            "wrk printed no `N requests in` line; it said: {}",
            first.unwrap_or("nothing")
        );
    };
    let latency_ms = match (percentiles, max_ms) {
        ([Some(p50), Some(p90), Some(p99)], Some(max)) if requests > 0 => {
            Some(Latency { p50, p90, p99, max })
        }
        _ => None,
    };
    Ok(ToolResult {
        requests,
        duration_s: duration_s.context("wrk printed no test duration")?,
        req_per_s: req_per_s.context("wrk printed no Requests/sec")?,
        mib_per_s: bytes_per_s.unwrap_or(0.0) / (1024.0 * 1024.0),
        latency_ms,
        errors,
    })
}

/// `171.00us`, `3.71ms`, `1.10s`, `1.00m`, `2.00h` in milliseconds.
fn time_ms(s: &str) -> Option<f64> {
    let (n, unit) = split_number(s)?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(n * factor)
}

/// `42.49KB`, `51.00MB`, `0.00B` in bytes (wrk's units are 1024-based).
fn bytes(s: &str) -> Option<f64> {
    let (n, unit) = split_number(s)?;
    let factor = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_converted() {
        assert_eq!(time_ms("171.00us"), Some(0.171));
        assert_eq!(time_ms("1.10s"), Some(1100.0));
        assert_eq!(time_ms("1.00m"), Some(60_000.0));
        assert_eq!(time_ms("fast"), None);
        assert_eq!(bytes("2.00KB"), Some(2048.0));
        assert_eq!(bytes("1.00GB"), Some(1024.0 * 1024.0 * 1024.0));
    }

    #[test]
    fn arguments_include_the_latency_table_and_close_when_asked() {
        let a = args(
            "http://127.0.0.1:1/x",
            100,
            2,
            Duration::from_secs(2),
            Duration::from_secs(5),
            true,
        );
        assert_eq!(
            a.join(" "),
            "-t2 -c100 -d2s --latency --timeout 5s -H Connection: close http://127.0.0.1:1/x"
        );
        // Never more threads than connections.
        let a = args(
            "u",
            1,
            4,
            Duration::from_millis(500),
            Duration::from_secs(5),
            false,
        );
        assert_eq!(a[0], "-t1");
        assert_eq!(a[2], "-d1s", "whole seconds, at least one");
    }
}
