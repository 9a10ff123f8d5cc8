//! What a run measured, as data: the `results.json` schema and `results.csv`.
//!
//! Everything the report says comes from a [`Results`] value, and the report
//! can be redrawn from a saved `results.json` alone (that is how the report
//! tests work). The schema is versioned ([`SCHEMA_VERSION`]): a change that
//! renames or removes a field, or changes a unit, bumps it, so scripts that
//! compare runs over months can tell which layout they are reading. Adding an
//! optional field does not.
//!
//! Units are in the field names (`_ms`, `_s`, `_kib`, `_bytes`,
//! `mib_per_s`), so a reader never has to guess.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Version of the `results.json` layout.
pub const SCHEMA_VERSION: u32 = 1;

/// One whole harness run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Always [`SCHEMA_VERSION`] when written by this build.
    pub schema_version: u32,
    /// `bench-harness <version>`.
    pub generator: String,
    /// UTC, RFC 3339 (`2025-01-31T12:00:00Z`).
    pub started_utc: String,
    pub finished_utc: String,
    pub machine: Machine,
    pub settings: Settings,
    /// Every proxy that was measured, with the exact command that started it.
    pub proxies: Vec<ProxyInfo>,
    /// Proxies, scenarios or tools that were left out, and why.
    pub skipped: Vec<Skip>,
    pub runs: Vec<RunResult>,
}

/// Where the numbers come from: they only mean something next to this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_kib: u64,
    /// `wrk` / `ab` / `nginx` / `haproxy` versions, where installed.
    pub tools: Vec<String>,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started and ended:
    /// anything well above zero besides the run itself means the numbers
    /// were taken on a busy machine.
    #[serde(default)]
    pub load_average_start: Option<String>,
    #[serde(default)]
    pub load_average_end: Option<String>,
}

/// The options the suite ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub quick: bool,
    /// `auto`, `builtin`, `wrk` or `ab`.
    pub tool: String,
    /// Seconds of load per timed run.
    pub duration_s: f64,
    /// `--workers` given to every phase and peer, if any.
    pub workers: Option<u32>,
    /// Worker threads of the origin (a separate process).
    pub origin_workers: u32,
    /// Threads of the load generator (built-in and wrk).
    pub load_threads: u32,
    pub scenarios: Vec<String>,
    /// The harness's own command line.
    pub command: String,
}

/// A measured proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyInfo {
    pub name: String,
    /// `phase` or `peer`.
    pub kind: String,
    /// How it was started (reverse-proxy mode, with the origin's port as it was then).
    pub command: String,
}

/// Something the suite did not measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skip {
    pub proxy: String,
    /// The scenario, or `*` when the whole proxy was skipped.
    pub scenario: String,
    pub reason: String,
}

/// One load run: one proxy, one scenario variant, one tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `keepalive`, `newconn`, `slow`, `slow-rate`, `idle` or `connect`.
    pub scenario: String,
    /// The variant inside the scenario, e.g. `31KiB c=100`.
    pub variant: String,
    pub proxy: String,
    /// `builtin`, `wrk` or `ab`: which tool produced these numbers.
    pub tool: String,
    /// The exact load command (for builtin, its equivalent flags).
    pub command: String,
    pub concurrency: u32,
    pub payload_bytes: u64,
    pub keep_alive: bool,
    /// Origin delay per response, ms.
    pub delay_ms: u64,
    /// Intended requests per second (constant-rate mode), or none (closed loop).
    pub rate: Option<f64>,
    /// Seconds the load lasted.
    pub duration_s: f64,
    /// Completed responses (any status).
    pub requests: u64,
    pub req_per_s: f64,
    /// Response bytes (heads and bodies) per second, in MiB.
    pub mib_per_s: f64,
    /// None when no request completed.
    pub latency_ms: Option<Latency>,
    pub errors: ErrorCounts,
    /// Requests still in flight when a timed run ended (not in the latency).
    pub unfinished: u64,
    /// Clients (connections) that got no response at all during the run:
    /// their wait is in no percentile. Built-in generator only.
    #[serde(default)]
    pub starved: Option<u64>,
    /// The proxy process (tree) during the run.
    pub process: ProcessStats,
    /// Only for the `idle` scenario.
    pub idle: Option<IdleResult>,
    /// Why a number is missing or odd (a tool failed, the proxy died...).
    pub note: Option<String>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Failed or unwanted exchanges, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// The TCP connection (or the CONNECT tunnel) could not be opened.
    pub connect: u64,
    /// Reading the response failed: reset, closed early, malformed.
    pub read: u64,
    /// Sending the request failed.
    pub write: u64,
    /// No complete response within the request timeout.
    pub timeout: u64,
    /// A complete response whose status was not 2xx (wrk: 4xx and 5xx).
    pub non_2xx: u64,
    /// Anything else a tool reports (ab's length mismatches and exceptions).
    pub other: u64,
}

impl ErrorCounts {
    /// All errors, `non_2xx` included.
    pub fn total(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.non_2xx + self.other
    }

    /// `connect 3, timeout 2` or `0`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            ("connect", self.connect),
            ("read", self.read),
            ("write", self.write),
            ("timeout", self.timeout),
            ("non-2xx", self.non_2xx),
            ("other", self.other),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
        if parts.is_empty() {
            "0".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// What the proxy's processes used, read from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// User + system CPU seconds during the load.
    pub cpu_s: f64,
    /// Peak resident memory (all processes of the proxy added up), KiB.
    pub peak_rss_kib: u64,
    /// Most threads seen at once (all processes added up).
    pub threads: u64,
}

/// The `idle` scenario: many kept-alive clients that do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    /// Connections the harness tried to hold.
    pub target: u64,
    /// Connections open while memory was measured.
    pub held: u64,
    /// Of those, how many had their first request answered.
    pub answered: u64,
    /// Connections refused, reset or answered 503.
    pub refused: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (after − before) / held.
    pub rss_per_connection_bytes: f64,
    /// Did one more client, arriving while all were held, get its response?
    pub extra_client_served: bool,
    /// How long it took, if it was served.
    pub extra_client_ms: Option<f64>,
}

/// The CSV header, one column per scalar of [`RunResult`].
pub const CSV_HEADER: &str = "scenario,variant,proxy,tool,concurrency,payload_bytes,keep_alive,delay_ms,rate,duration_s,requests,req_per_s,mib_per_s,p50_ms,p90_ms,p99_ms,max_ms,err_connect,err_read,err_write,err_timeout,err_non_2xx,err_other,unfinished,starved,cpu_s,peak_rss_kib,threads,idle_held,idle_rss_per_conn_bytes,idle_extra_client_served,command";

/// `results.csv`: one line per run, for spreadsheets and scripts.
pub fn to_csv(results: &Results) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for r in &results.runs {
        let lat = r.latency_ms;
        let e = r.errors;
        let fields = [
            csv_field(&r.scenario),
            csv_field(&r.variant),
            csv_field(&r.proxy),
            csv_field(&r.tool),
            r.concurrency.to_string(),
            r.payload_bytes.to_string(),
            r.keep_alive.to_string(),
            r.delay_ms.to_string(),
            opt(r.rate),
            format!("{:.3}", r.duration_s),
            r.requests.to_string(),
            format!("{:.1}", r.req_per_s),
            format!("{:.3}", r.mib_per_s),
            opt(lat.map(|l| l.p50)),
            opt(lat.map(|l| l.p90)),
            opt(lat.map(|l| l.p99)),
            opt(lat.map(|l| l.max)),
            e.connect.to_string(),
            e.read.to_string(),
            e.write.to_string(),
            e.timeout.to_string(),
            e.non_2xx.to_string(),
            e.other.to_string(),
            r.unfinished.to_string(),
            r.starved.map(|n| n.to_string()).unwrap_or_default(),
            format!("{:.3}", r.process.cpu_s),
            r.process.peak_rss_kib.to_string(),
            r.process.threads.to_string(),
            r.idle.map(|i| i.held.to_string()).unwrap_or_default(),
            opt(r.idle.map(|i| i.rss_per_connection_bytes)),
            r.idle
                .map(|i| i.extra_client_served.to_string())
                .unwrap_or_default(),
            csv_field(&r.command),
        ];
        let _ = writeln!(out, "{}", fields.join(","));
    }
    out
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn error_summary_lists_only_nonzero_kinds() {
        let e = ErrorCounts {
            connect: 3,
            timeout: 2,
            ..ErrorCounts::default()
        };
        assert_eq!(e.summary(), "connect 3, timeout 2");
        assert_eq!(e.total(), 5);
        assert_eq!(ErrorCounts::default().summary(), "0");
    }
}
