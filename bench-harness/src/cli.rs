//! The command line, and turning it into a [`SuiteConfig`] (the benchmark
//! suite, the default) or a [`SoakConfig`] (`bench-harness soak ...`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::peers::Peer;
use crate::phases::{self, PHASES};
use crate::results::{Settings, Skip};
use crate::scenario::{Scenario, SuiteOptions, parse_size};
use crate::soak::classify::Kind;
use crate::soak::{DEFAULT_MIX, SoakConfig, UPSTREAM_TIMEOUT_S};
use crate::suite::{Subject, SuiteConfig, ToolChoice};

/// Loads every phase of proxy-ladder (and nginx / HAProxy when installed)
/// with the same scenarios and writes a report to `bench-reports/<UTC time>/`.
#[derive(Debug, Parser)]
#[command(
    name = "bench-harness",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The short suite for CI: every scenario, smaller and shorter (well under a minute)
    #[arg(long)]
    pub quick: bool,

    /// Phases to measure, by name, prefix or number (`1,3` or `phase4-async`) [default: all]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub phases: Option<Vec<String>>,

    /// Peers to measure: `nginx,haproxy`, or `none` [default: those installed]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub peers: Option<Vec<String>>,

    /// Scenarios to run [default: all]
    #[arg(long, value_delimiter = ',', value_enum, value_name = "LIST")]
    pub scenarios: Option<Vec<Scenario>>,

    /// Load tool: `auto` uses wrk (keep-alive) and ab (new connections) when
    /// installed, the built-in generator otherwise
    #[arg(long, value_enum, default_value_t = ToolChoice::Auto)]
    pub tool: ToolChoice,

    /// Concurrent clients of the keep-alive scenario [default: 10,100,1000]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub concurrency: Option<Vec<u32>>,

    /// Body sizes of the keep-alive scenario [default: 1KiB,31KiB,1MiB]
    #[arg(long, value_delimiter = ',', value_parser = parse_size, value_name = "LIST")]
    pub payloads: Option<Vec<u64>>,

    /// Seconds of load per timed run [default: 2, --quick: 0.5]
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// Idle clients to hold (where the proxy allows) [default: 10000, --quick: 200]
    #[arg(long, value_name = "N")]
    pub idle_connections: Option<usize>,

    /// `--workers` for every phase and peer [default: phases choose; peers: one per core]
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,

    /// Worker threads of the origin (its own process)
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub origin_workers: u32,

    /// Threads of the load generator (built-in and wrk)
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub threads: u32,

    /// `--max-connections` of every phase (and the peers' limits)
    #[arg(long, default_value_t = 12_000, value_name = "N")]
    pub max_connections: u32,

    /// Seconds one request may take before it counts as a timeout
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,

    /// Where report directories go [default: bench-reports/ in the workspace]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Redraw a report from a results.json (into --out, or next to the file) and exit
    #[arg(long, value_name = "FILE")]
    pub report_from: Option<PathBuf>,
}

/// What to run instead of the benchmark suite.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mixed traffic with faults and upstream restarts, for minutes per phase
    ///
    /// Each phase in turn, as a forward proxy in front of the origin: keep-alive
    /// GETs, HEAD, uploads and tunnels mixed with vanishing clients, malformed
    /// requests and upstream faults, while the origin is killed and restarted
    /// on the same port every ~30 s. Every outcome is classified as expected,
    /// tolerated (overlapping a restart) or unexpected; the proxy's descriptors,
    /// RSS and threads are sampled. Report: bench-reports/<UTC time>-soak/.
    Soak(SoakArgs),
}

/// The soak's flags.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Minutes of load per phase [default: 10]
    #[arg(long, value_name = "N", conflicts_with = "seconds")]
    pub minutes: Option<f64>,

    /// Seconds of load per phase, for short runs (tests, trying it out)
    #[arg(long, value_name = "N")]
    pub seconds: Option<f64>,

    /// Phases to soak, one after the other, by name, prefix or number
    /// (`2,4,3`: in that order) [default: all, in ladder order]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub phases: Option<Vec<String>>,

    /// Concurrent clients
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub clients: usize,

    /// Only these kinds of exchange, e.g. `tunnel` or `get-small,upload-length`
    /// (to find which traffic makes a number grow) [default: the whole mix]
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub kinds: Option<Vec<String>>,

    /// Seconds between upstream restarts (each one ±20 %)
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub restart_every: f64,

    /// Seconds between samples of the proxy's descriptors, RSS and threads
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub sample_every: f64,

    /// The proxy's `--upstream-timeout` (the silent-upstream fault waits this long for its 504)
    #[arg(long, default_value_t = UPSTREAM_TIMEOUT_S, value_name = "SECONDS")]
    pub upstream_timeout: u64,

    /// Seed of the traffic's random choices [default: from the clock]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Worker threads of the origin (its own process)
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub origin_workers: u32,

    /// One more argument for every proxy soaked, after the soak's own
    /// (repeat it: `--proxy-arg=--workers --proxy-arg=16`)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub proxy_arg: Vec<String>,

    /// Where report directories go [default: bench-reports/ in the workspace]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl SoakArgs {
    /// The soak this command line asks for. `command`: the command line itself.
    pub fn soak(&self, command: String) -> anyhow::Result<SoakConfig> {
        let seconds = match (self.minutes, self.seconds) {
            (_, Some(s)) => s,
            (Some(m), None) => m * 60.0,
            (None, None) => 600.0,
        };
        if !(seconds.is_finite() && (1.0..=7.0 * 24.0 * 3600.0).contains(&seconds)) {
            bail!("the load per phase must be between 1 second and a week");
        }
        if self.clients == 0 || self.clients > 10_000 {
            bail!("--clients must be between 1 and 10000");
        }
        for (name, value) in [
            ("--restart-every", self.restart_every),
            ("--sample-every", self.sample_every),
        ] {
            if !(value.is_finite() && value >= 0.5) {
                bail!("{name} must be at least 0.5 seconds");
            }
        }
        if self.upstream_timeout == 0 {
            bail!("--upstream-timeout must be at least 1 second");
        }
        let phases = match &self.phases {
            None => PHASES.iter().collect(),
            Some(names) => names
                .iter()
                .map(|name| {
                    phases::find(name).ok_or_else(|| {
                        anyhow::anyhow!(
                            "no phase called `{name}`; known: {}",
                            PHASES.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        let mix = match &self.kinds {
            None => DEFAULT_MIX.to_vec(),
            Some(names) => {
                let mut wanted = Vec::new();
                for name in names {
                    match Kind::from_name(name) {
                        Some(kind) => wanted.push(kind),
                        None => bail!(
                            "no kind of exchange called `{name}`; known: {}",
                            Kind::ALL.map(Kind::name).join(", ")
                        ),
                    }
                }
                DEFAULT_MIX
                    .into_iter()
                    .filter(|(kind, _)| wanted.contains(kind))
                    .collect()
            }
        };
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        Ok(SoakConfig {
            phases,
            mix,
            duration: Duration::from_secs_f64(seconds),
            clients: self.clients,
            restart_every: Duration::from_secs_f64(self.restart_every),
            sample_every: Duration::from_secs_f64(self.sample_every),
            upstream_timeout_s: self.upstream_timeout,
            seed,
            origin_workers: self.origin_workers.max(1),
            proxy_args: self.proxy_arg.clone(),
            out: self.out.clone().unwrap_or_else(default_out_dir),
            command,
        })
    }
}

/// `bench-reports/` at the workspace root when run from the workspace (the
/// usual `cargo run`), else in the current directory.
pub fn default_out_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    match workspace {
        Some(root) if root.join("Cargo.toml").is_file() => root.join("bench-reports"),
        _ => PathBuf::from("bench-reports"),
    }
}

impl Cli {
    /// The suite this command line asks for. `command` is the command line
    /// itself, recorded in the results.
    pub fn suite(&self, command: String) -> anyhow::Result<SuiteConfig> {
        let mut skipped = Vec::new();
        let mut subjects = Vec::new();

        match &self.phases {
            None => subjects.extend(PHASES.iter().map(Subject::Phase)),
            Some(names) => {
                for name in names {
                    match phases::find(name) {
                        Some(phase) => subjects.push(Subject::Phase(phase)),
                        None => bail!(
                            "no phase called `{name}`; known: {}",
                            PHASES.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
                        ),
                    }
                }
            }
        }

        let wanted: Vec<Peer> = match &self.peers {
            None => Peer::ALL.to_vec(),
            Some(names) if names.iter().any(|n| n == "none") => Vec::new(),
            Some(names) => {
                let mut peers = Vec::new();
                for name in names {
                    match Peer::parse(name) {
                        Some(peer) => peers.push(peer),
                        None => bail!("no peer called `{name}`; known: nginx, haproxy, none"),
                    }
                }
                peers
            }
        };
        for peer in wanted {
            if peer.binary().is_some() {
                subjects.push(Subject::Peer(peer));
            } else {
                let package = match peer {
                    Peer::Nginx => "nginx-light",
                    Peer::Haproxy => "haproxy",
                };
                eprintln!(
                    "note: {peer} is not installed, so it is skipped (Debian/Ubuntu: apt-get install {package})"
                );
                skipped.push(Skip {
                    proxy: peer.name().to_string(),
                    scenario: "*".to_string(),
                    reason: format!("not installed (apt-get install {package})"),
                });
            }
        }

        let mut options = SuiteOptions::defaults(self.quick);
        if let Some(scenarios) = &self.scenarios {
            let mut scenarios = scenarios.clone();
            scenarios.sort();
            scenarios.dedup();
            options.scenarios = scenarios;
        }
        if let Some(c) = &self.concurrency {
            if c.contains(&0) {
                bail!("--concurrency values must be at least 1");
            }
            options.concurrency = c.clone();
        }
        if let Some(p) = &self.payloads {
            options.payloads = p.clone();
        }
        if let Some(d) = self.duration {
            if !(d.is_finite() && (0.1..=3600.0).contains(&d)) {
                bail!("--duration must be between 0.1 and 3600 seconds");
            }
            options.duration = Duration::from_secs_f64(d);
        }
        if let Some(n) = self.idle_connections {
            options.idle_connections = n;
        }

        let settings = Settings {
            quick: self.quick,
            tool: self.tool.name().to_string(),
            duration_s: options.duration.as_secs_f64(),
            workers: self.workers,
            origin_workers: self.origin_workers.max(1),
            load_threads: self.threads.max(1),
            scenarios: options
                .scenarios
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            command,
        };
        Ok(SuiteConfig {
            plans: options.plans(),
            subjects,
            tool: self.tool,
            workers: self.workers,
            origin_workers: self.origin_workers.max(1),
            load_threads: self.threads.max(1),
            max_connections: self.max_connections.max(1),
            out: self.out.clone().unwrap_or_else(default_out_dir),
            settings,
            skipped,
            request_timeout: Duration::from_secs(self.timeout.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("bench-harness").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_select_phases_scenarios_and_sizes() {
        let cli = parse(&[
            "--phases",
            "1",
            "--peers",
            "none",
            "--scenarios",
            "keepalive,slow-rate",
            "--payloads",
            "1KiB,2k",
            "--concurrency",
            "5",
            "--duration",
            "0.5",
        ]);
        let suite = cli.suite("test".into()).unwrap();
        assert_eq!(suite.subjects.len(), 1);
        assert_eq!(suite.subjects[0].name(), "phase1-blocking");
        assert!(
            suite
                .plans
                .iter()
                .all(|p| matches!(p.scenario, Scenario::Keepalive | Scenario::SlowRate))
        );
        let sizes: Vec<u64> = suite
            .plans
            .iter()
            .filter(|p| p.scenario == Scenario::Keepalive)
            .map(|p| p.payload)
            .collect();
        assert_eq!(sizes, vec![1024, 2048]);
        assert_eq!(suite.settings.duration_s, 0.5);
    }

    #[test]
    fn unknown_phases_and_peers_are_errors_that_name_the_known_ones() {
        let err = parse(&["--phases", "9"]).suite(String::new()).unwrap_err();
        assert!(err.to_string().contains("phase1-blocking"), "{err}");
        let err = parse(&["--peers", "envoy"])
            .suite(String::new())
            .unwrap_err();
        assert!(err.to_string().contains("nginx"), "{err}");
    }

    #[test]
    fn soak_flags_give_the_soak_its_phases_in_order_and_its_duration() {
        let cli = parse(&[
            "soak",
            "--minutes",
            "2",
            "--phases",
            "2,4,3",
            "--clients",
            "8",
        ]);
        let Some(Command::Soak(args)) = &cli.command else {
            panic!("{cli:?}")
        };
        let soak = args.soak("test".into()).unwrap();
        let names: Vec<_> = soak.phases.iter().map(|p| p.name).collect();
        assert_eq!(names, ["phase2-threadpool", "phase4-async", "phase3-epoll"]);
        assert_eq!(soak.duration, Duration::from_secs(120));
        assert_eq!(soak.clients, 8);
        assert_eq!(soak.restart_every, Duration::from_secs(30));

        let cli = parse(&["soak", "--seconds", "10"]);
        let Some(Command::Soak(args)) = &cli.command else {
            panic!("{cli:?}")
        };
        let soak = args.soak(String::new()).unwrap();
        assert_eq!(soak.duration, Duration::from_secs(10));
        assert_eq!(soak.phases.len(), PHASES.len());
    }

    #[test]
    fn soak_rejects_bad_values_and_suite_flags() {
        let soak = |args: &[&str]| {
            let cli = parse(
                &std::iter::once("soak")
                    .chain(args.iter().copied())
                    .collect::<Vec<_>>(),
            );
            match cli.command {
                Some(Command::Soak(a)) => a.soak(String::new()),
                None => panic!("not a soak"),
            }
        };
        assert!(soak(&["--clients", "0"]).is_err());
        assert!(soak(&["--seconds", "0"]).is_err());
        assert!(soak(&["--phases", "9"]).is_err());
        assert!(soak(&["--restart-every", "0"]).is_err());
        let extra = soak(&["--proxy-arg=--workers", "--proxy-arg", "16"]).unwrap();
        assert_eq!(extra.proxy_args, ["--workers", "16"]);
        let err = soak(&["--kinds", "get-small,teleport"]).unwrap_err();
        assert!(err.to_string().contains("upload-chunked"), "{err}");
        let only = soak(&["--kinds", "tunnel,get-small"]).unwrap();
        assert_eq!(only.mix, [(Kind::GetSmall, 22), (Kind::Tunnel, 5)]);
        assert!(
            Cli::try_parse_from(["bench-harness", "soak", "--minutes", "1", "--seconds", "5"])
                .is_err()
        );
        // The suite's flags belong to the suite.
        assert!(Cli::try_parse_from(["bench-harness", "--quick", "soak"]).is_err());
        assert!(Cli::try_parse_from(["bench-harness", "soak", "--quick"]).is_err());
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        assert!(Cli::try_parse_from(["bench-harness", "--scenarios", "everything"]).is_err());
        assert!(Cli::try_parse_from(["bench-harness", "--payloads", "huge"]).is_err());
        assert!(Cli::try_parse_from(["bench-harness", "--tool", "jmeter"]).is_err());
    }
}
