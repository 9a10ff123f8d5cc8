//! Running ApacheBench (ab) and reading its report.
//!
//! ```text
//! Time taken for tests:   0.035 seconds
//! Complete requests:      200
//! Failed requests:        400
//!    (Connect: 0, Receive: 200, Length: 0, Exceptions: 200)
//! Write errors:           3
//! Non-2xx responses:      500
//! Total transferred:      70500 bytes
//! Requests per second:    5664.76 [#/sec] (mean)
//! ...
//! Percentage of the requests served within a certain time (ms)
//!   50%      1
//!   90%      4
//!   99%      6
//!  100%      6 (longest request)
//! ```
//!
//! The breakdown, `Write errors` and `Non-2xx responses` lines appear only
//! when non-zero. See [`crate::tools`] for how ab's counts are read.

use std::time::Duration;

use anyhow::{Context as _, bail};

use super::ToolResult;
use crate::process;
use crate::results::{ErrorCounts, Latency};

/// How much load ab sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// `-n N`: this many requests.
    Requests(u64),
    /// `-t S`: for this long (with a very large `-n`, as `-t` alone caps at 50000).
    For(Duration),
}

/// ab's arguments: quiet, `-r` (carry on after receive errors), a socket
/// timeout, `-k` for keep-alive.
pub fn args(
    url: &str,
    connections: u32,
    amount: Amount,
    keep_alive: bool,
    timeout: Duration,
) -> Vec<String> {
    let mut args = vec![
        "-q".to_string(),
        "-r".to_string(),
        "-s".to_string(),
        timeout.as_secs().max(1).to_string(),
    ];
    if keep_alive {
        args.push("-k".to_string());
    }
    match amount {
        Amount::Requests(n) => {
            args.push("-n".to_string());
            args.push(n.max(u64::from(connections)).to_string());
        }
        Amount::For(d) => {
            args.push("-t".to_string());
            args.push(d.as_secs().max(1).to_string());
            args.push("-n".to_string());
            args.push("100000000".to_string());
        }
    }
    args.push("-c".to_string());
    args.push(connections.to_string());
    args.push(url.to_string());
    args
}

/// Runs ab and parses its report.
pub fn run(args: &[String], limit: Duration) -> anyhow::Result<ToolResult> {
    let output = process::run_tool("ab", args, limit)?;
    if output.timed_out {
        bail!("ab did not finish within {limit:?}");
    }
    parse(&format!("{}{}", output.stdout, output.stderr))
}

/// Parses ab's report (stdout; stderr may be appended).
pub fn parse(text: &str) -> anyhow::Result<ToolResult> {
    let mut complete = None;
    let mut seconds = None;
    let mut transferred = 0u64;
    let mut errors = ErrorCounts::default();
    let mut breakdown = (0u64, 0u64, 0u64, 0u64);
    let mut percentiles = [None; 4];

    for line in text.lines().map(str::trim) {
        let value = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        };
        if let Some(v) = value("Time taken for tests:") {
            seconds = v.parse::<f64>().ok();
        } else if let Some(v) = value("Complete requests:") {
            complete = v.parse::<u64>().ok();
        } else if let Some(v) = value("Write errors:") {
            errors.write = v.parse().unwrap_or(0);
        } else if let Some(v) = value("Non-2xx responses:") {
            errors.non_2xx = v.parse().unwrap_or(0);
        } else if let Some(v) = value("Total transferred:") {
            transferred = v.parse().unwrap_or(0);
        } else if let Some(inner) = line
            .strip_prefix("(Connect:")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            // "(Connect: 0, Receive: 200, Length: 0, Exceptions: 200)"
            let inner = format!("Connect:{inner}");
            for part in inner.split(',') {
                let Some((kind, n)) = part.split_once(':') else {
                    continue;
                };
                let n = n.trim().parse().unwrap_or(0);
                match kind.trim() {
                    "Connect" => breakdown.0 = n,
                    "Receive" => breakdown.1 = n,
                    "Length" => breakdown.2 = n,
                    "Exceptions" => breakdown.3 = n,
                    _ => {}
                }
            }
        } else if let Some((pct, rest)) = line.split_once('%') {
            let slot = match pct {
                "50" => Some(0),
                "90" => Some(1),
                "99" => Some(2),
                "100" => Some(3),
                _ => None,
            };
            if let Some(slot) = slot {
                percentiles[slot] = rest
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok());
            }
        }
    }

    let Some(complete) = complete else {
        // ab aborted (timeout, refused connection): its last words say why.
        let why = text
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        let why = why.rsplit("...").next().unwrap_or(why);
        bail!("ab stopped without a summary: {why}");
    };
    let seconds = seconds.context("ab printed no `Time taken for tests`")?;
    let (connect, receive, length, exceptions) = breakdown;
    errors.connect = connect;
    errors.read = receive;
    errors.other = length + exceptions;
    let requests = complete.saturating_sub(receive + connect);
    let per_second = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
    let latency_ms = match percentiles {
        [Some(p50), Some(p90), Some(p99), Some(max)] if requests > 0 => {
            Some(Latency { p50, p90, p99, max })
        }
        _ => None,
    };
    Ok(ToolResult {
        requests,
        duration_s: seconds,
        req_per_s: per_second(requests as f64),
        mib_per_s: per_second(transferred as f64 / (1024.0 * 1024.0)),
        latency_ms,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_for_the_classic_run() {
        let a = args(
            "http://127.0.0.1:1/bytes/31744",
            10,
            Amount::Requests(1000),
            false,
            Duration::from_secs(30),
        );
        assert_eq!(
            a.join(" "),
            "-q -r -s 30 -n 1000 -c 10 http://127.0.0.1:1/bytes/31744"
        );
    }

    #[test]
    fn timed_keep_alive_arguments_lift_the_50000_cap() {
        let a = args(
            "u",
            100,
            Amount::For(Duration::from_secs(2)),
            true,
            Duration::from_secs(5),
        );
        assert_eq!(a.join(" "), "-q -r -s 5 -k -t 2 -n 100000000 -c 100 u");
    }
}
