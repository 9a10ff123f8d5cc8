//! The scenarios, and the runs (plans) each one expands into.
//!
//! | scenario | load | what it shows |
//! |---|---|---|
//! | `keepalive` | 1 KiB, 31 KiB, 1 MiB bodies at c = 10, 100, 1000, kept-alive connections | raw throughput, and how each model scales with clients |
//! | `newconn` | 31 KiB, a new connection per request, c = 10 (`ab -n 1000 -c 10`) and 500 | the cost of accept + connect per request |
//! | `slow` | a 50 ms origin at c = 100 | one thread vs many vs event loops: waiting is free only if waiting does not hold a thread |
//! | `slow-rate` | the same origin at a constant 1000 req/s (built-in generator) | latency measured without coordinated omission |
//! | `idle` | up to 10,000 kept-alive clients doing nothing | memory per connection; is one more client still served? |
//! | `connect` | 1 MiB bodies through CONNECT tunnels, c = 10 | tunnel throughput (phases 2-4) |

use std::fmt;
use std::time::Duration;

/// One scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scenario {
    Keepalive,
    Newconn,
    Slow,
    SlowRate,
    Idle,
    Connect,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Keepalive,
        Scenario::Newconn,
        Scenario::Slow,
        Scenario::SlowRate,
        Scenario::Idle,
        Scenario::Connect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Keepalive => "keepalive",
            Scenario::Newconn => "newconn",
            Scenario::Slow => "slow",
            Scenario::SlowRate => "slow-rate",
            Scenario::Idle => "idle",
            Scenario::Connect => "connect",
        }
    }

    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The heading in the report.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::Keepalive => "1. Keep-alive, fast origin",
            Scenario::Newconn => "2. A new connection per request",
            Scenario::Slow => "3. Slow origin (50 ms per response)",
            Scenario::SlowRate => "3b. Slow origin at a constant request rate",
            Scenario::Idle => "4. Idle connections",
            Scenario::Connect => "5. CONNECT tunnel throughput",
        }
    }

    /// What the scenario shows, for the report.
    pub fn explains(self) -> &'static str {
        match self {
            Scenario::Keepalive => {
                "Clients reuse their connections and the origin answers at once, so this is \
                 the proxy's own cost per exchange. Watch how req/s changes from c=10 to \
                 c=1000: a model that serves one connection at a time cannot use more clients, \
                 a thread pool runs out of threads, event loops keep going."
            }
            Scenario::Newconn => {
                "Every request opens a new TCP connection (ab without -k), so accept and \
                 connection setup are part of each exchange. c=10 is the classic \
                 `ab -n 1000 -c 10`; c=500 floods the accept queue."
            }
            Scenario::Slow => {
                "The origin waits 50 ms before each response, so each exchange is mostly \
                 waiting. With 100 clients the ideal is 100 / 0.05 s = 2000 req/s at p50 ≈ 50 ms. \
                 One thread waits for one exchange at a time (20 req/s); a pool waits on as \
                 many as it has threads; event loops wait on all of them at once."
            }
            Scenario::SlowRate => {
                "The same slow origin, but requests are sent on a fixed schedule (1000 req/s \
                 over 100 connections) and latency is measured from when each request should \
                 have been sent. A proxy that falls behind sees its latency grow for the whole \
                 run, instead of the closed loop quietly sending less (coordinated omission)."
            }
            Scenario::Idle => {
                "Clients make one request, then keep their connection open and do nothing. \
                 The memory the proxy gains, divided by the clients held, is its cost per idle \
                 connection; then one more client asks for something: is it served while all \
                 the others are held?"
            }
            Scenario::Connect => {
                "Clients open a CONNECT tunnel through the proxy (forward mode) to the origin \
                 and fetch 1 MiB bodies through it: raw byte relaying in both directions, \
                 no HTTP parsing inside the tunnel."
            }
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How much load a run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// For this long.
    For(Duration),
    /// This many requests (new-connection runs, like `ab -n`).
    Requests(u64),
}

/// One run of a scenario against one proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: Scenario,
    /// e.g. `31 KiB, c=100`.
    pub variant: String,
    pub concurrency: u32,
    pub payload: u64,
    pub keep_alive: bool,
    /// Origin delay before each response.
    pub delay_ms: u64,
    /// Constant-rate mode (built-in generator only).
    pub rate: Option<f64>,
    pub amount: Amount,
    /// Clients to hold in the `idle` scenario.
    pub idle_connections: usize,
}

impl Plan {
    /// The origin target this run requests.
    pub fn path(&self) -> String {
        if self.delay_ms > 0 {
            format!("/bytes/{}?delay={}", self.payload, self.delay_ms)
        } else {
            format!("/bytes/{}", self.payload)
        }
    }

    /// The duration of a timed run (or a stand-in for a count-limited one,
    /// for tools that only do timed runs).
    pub fn duration(&self, default: Duration) -> Duration {
        match self.amount {
            Amount::For(d) => d,
            Amount::Requests(_) => default,
        }
    }
}

/// What the suite is made of (the command line's choices).
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteOptions {
    pub scenarios: Vec<Scenario>,
    /// Seconds of load per timed run.
    pub duration: Duration,
    /// Keep-alive concurrencies.
    pub concurrency: Vec<u32>,
    /// Keep-alive payloads, bytes.
    pub payloads: Vec<u64>,
    /// New-connection runs: (concurrency, requests).
    pub newconn: Vec<(u32, u64)>,
    pub idle_connections: usize,
    /// Intended rate of `slow-rate`, requests per second.
    pub slow_rate: f64,
}

/// The 1 KiB / 31 KiB / 1 MiB bodies of the keep-alive scenario.
pub const DEFAULT_PAYLOADS: [u64; 3] = [1024, 31 * 1024, 1024 * 1024];
pub const DEFAULT_CONCURRENCY: [u32; 3] = [10, 100, 1000];

impl SuiteOptions {
    /// The default suite (about 3 minutes on 2 cores with four phases and
    /// two peers), or the `--quick` one (CI: seconds per phase).
    pub fn defaults(quick: bool) -> SuiteOptions {
        if quick {
            SuiteOptions {
                scenarios: Scenario::ALL.to_vec(),
                duration: Duration::from_millis(500),
                concurrency: vec![10, 100],
                payloads: vec![31 * 1024],
                newconn: vec![(10, 200)],
                idle_connections: 200,
                slow_rate: 1000.0,
            }
        } else {
            SuiteOptions {
                scenarios: Scenario::ALL.to_vec(),
                duration: Duration::from_secs(2),
                concurrency: DEFAULT_CONCURRENCY.to_vec(),
                payloads: DEFAULT_PAYLOADS.to_vec(),
                newconn: vec![(10, 1000), (500, 5000)],
                idle_connections: 10_000,
                slow_rate: 1000.0,
            }
        }
    }

    /// Every run, in order, for one proxy.
    pub fn plans(&self) -> Vec<Plan> {
        let mut plans = Vec::new();
        let timed = Amount::For(self.duration);
        for &scenario in &self.scenarios {
            match scenario {
                Scenario::Keepalive => {
                    for &payload in &self.payloads {
                        for &c in &self.concurrency {
                            plans.push(Plan {
                                scenario,
                                variant: format!("{}, c={c}", size(payload)),
                                concurrency: c,
                                payload,
                                keep_alive: true,
                                delay_ms: 0,
                                rate: None,
                                amount: timed,
                                idle_connections: 0,
                            });
                        }
                    }
                }
                Scenario::Newconn => {
                    for &(c, n) in &self.newconn {
                        plans.push(Plan {
                            scenario,
                            variant: format!("31 KiB, c={c}, n={n}"),
                            concurrency: c,
                            payload: 31 * 1024,
                            keep_alive: false,
                            delay_ms: 0,
                            rate: None,
                            amount: Amount::Requests(n),
                            idle_connections: 0,
                        });
                    }
                }
                Scenario::Slow | Scenario::SlowRate => {
                    let rate = (scenario == Scenario::SlowRate).then_some(self.slow_rate);
                    plans.push(Plan {
                        scenario,
                        variant: match rate {
                            Some(r) => format!("50 ms, c=100, {r} req/s"),
                            None => "50 ms, c=100".to_string(),
                        },
                        concurrency: 100,
                        payload: 1024,
                        keep_alive: true,
                        delay_ms: 50,
                        rate,
                        amount: timed,
                        idle_connections: 0,
                    });
                }
                Scenario::Idle => plans.push(Plan {
                    scenario,
                    variant: format!("{} clients", self.idle_connections),
                    concurrency: 0,
                    payload: 1,
                    keep_alive: true,
                    delay_ms: 0,
                    rate: None,
                    amount: timed,
                    idle_connections: self.idle_connections,
                }),
                Scenario::Connect => plans.push(Plan {
                    scenario,
                    variant: "1 MiB, c=10".to_string(),
                    concurrency: 10,
                    payload: 1024 * 1024,
                    keep_alive: true,
                    delay_ms: 0,
                    rate: None,
                    amount: timed,
                    idle_connections: 0,
                }),
            }
        }
        plans
    }
}

/// `1 KiB`, `31 KiB`, `1 MiB`, `1500 B`.
pub fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// `1024`, `1KiB`, `31k`, `1MiB`, `1M` to bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 1024, 31KiB, 1MiB)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("`{s}`: unknown unit (use B, KiB or MiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_and_parse() {
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(31 * 1024), "31 KiB");
        assert_eq!(size(1024 * 1024), "1 MiB");
        assert_eq!(size(1500), "1500 B");
        assert_eq!(parse_size("31KiB"), Ok(31 * 1024));
        assert_eq!(parse_size("1M"), Ok(1024 * 1024));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn the_default_suite_has_every_scenario_of_the_issue() {
        let plans = SuiteOptions::defaults(false).plans();
        let keepalive: Vec<_> = plans
            .iter()
            .filter(|p| p.scenario == Scenario::Keepalive)
            .collect();
        assert_eq!(keepalive.len(), 9, "3 payloads x 3 concurrencies");
        assert!(plans.iter().any(|p| p.scenario == Scenario::Newconn
            && p.concurrency == 10
            && p.amount == Amount::Requests(1000)));
        let slow = plans.iter().find(|p| p.scenario == Scenario::Slow).unwrap();
        assert_eq!(slow.path(), "/bytes/1024?delay=50");
        assert_eq!(slow.concurrency, 100);
        let idle = plans.iter().find(|p| p.scenario == Scenario::Idle).unwrap();
        assert_eq!(idle.idle_connections, 10_000);
        assert!(plans.iter().any(|p| p.scenario == Scenario::Connect));
        let rated = plans
            .iter()
            .find(|p| p.scenario == Scenario::SlowRate)
            .unwrap();
        assert_eq!(rated.rate, Some(1000.0));
    }

    #[test]
    fn scenarios_parse_by_name() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
    }
}
