//! The command line every phase shares, and the configuration it produces.
//!
//! All four binaries accept exactly the same flags (the contract in
//! DESIGN.md), so the flags are declared once, here, with clap's derive API.
//! Only two things differ per phase: the default listen port (8001–8004, so
//! all four can run side by side) and the `--help` text; [`Phase`] carries
//! both. Timeouts are whole seconds because that is what people type
//! (`--upstream-timeout 2`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::target::Authority;

/// The four rungs of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Blocking,
    ThreadPool,
    Epoll,
    Async,
}

impl Phase {
    /// The binary's name, as in `cargo run -p NAME`.
    pub fn binary_name(self) -> &'static str {
        match self {
            Phase::Blocking => "phase1-blocking",
            Phase::ThreadPool => "phase2-threadpool",
            Phase::Epoll => "phase3-epoll",
            Phase::Async => "phase4-async",
        }
    }

    /// Each phase listens on its own port by default so all can run at once.
    pub fn default_port(self) -> u16 {
        match self {
            Phase::Blocking => 8001,
            Phase::ThreadPool => 8002,
            Phase::Epoll => 8003,
            Phase::Async => 8004,
        }
    }

    /// `127.0.0.1:800N`, as shown in `--help`.
    pub fn default_listen(self) -> &'static str {
        match self {
            Phase::Blocking => "127.0.0.1:8001",
            Phase::ThreadPool => "127.0.0.1:8002",
            Phase::Epoll => "127.0.0.1:8003",
            Phase::Async => "127.0.0.1:8004",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Phase::Blocking => "HTTP/1.1 proxy, rung 1: one thread, one connection at a time",
            Phase::ThreadPool => {
                "HTTP/1.1 proxy, rung 2: blocking I/O on a bounded pool of worker threads \
             (phase 2 also takes --pool threadpool|rayon)"
            }
            Phase::Epoll => "HTTP/1.1 proxy, rung 3: hand-written readiness event loops (mio)",
            Phase::Async => "HTTP/1.1 proxy, rung 4: tokio, a task per connection",
        }
    }
}

/// The flags, as clap sees them. Use [`Config::parse`] rather than this type:
/// it fills in the per-phase defaults.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed as `listening on IP:PORT`)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Reverse proxy to this upstream; without it the proxy is a forward proxy
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_upstream)]
    pub upstream: Option<Authority>,

    /// Worker threads or event loops (phases 2-4; the default depends on the phase)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,

    /// Connections served or queued at once; more get a fast 503 (phases 2-4)
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Seconds a client has to send a complete request head
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_timeout: u64,

    /// Seconds a keep-alive connection may stay idle between requests (and a
    /// body may stall) before the proxy closes it
    #[arg(long, value_name = "S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,

    /// Seconds to wait for a TCP connection to the upstream
    #[arg(long, value_name = "S", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub connect_timeout: u64,

    /// Seconds the upstream may stay silent (before its response head, or
    /// between two reads of its body) before the client gets a 504
    #[arg(long, value_name = "S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub upstream_timeout: u64,

    /// Largest request or response head accepted (larger heads get a 431)
    #[arg(long, value_name = "N", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1024 * 1024))]
    pub max_header_bytes: u32,

    /// Seconds in-flight exchanges get to finish after SIGINT/SIGTERM
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace: u64,

    /// Write one line per exchange (Common Log Format plus duration in ms) to stdout
    #[arg(long)]
    pub access_log: bool,

    /// Diagnostics on stderr: error, warn, info, debug or trace
    #[arg(long, value_name = "L", default_value = "info",
          value_parser = ["off", "error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
}

fn parse_upstream(s: &str) -> Result<Authority, String> {
    Authority::parse(s, None)
}

/// Reverse or forward proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every request goes to this upstream (`--upstream HOST:PORT`).
    Reverse { upstream: Authority },
    /// Each request names its own upstream in absolute-form; CONNECT opens tunnels.
    Forward,
}

/// The resolved configuration a phase's `run` receives.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub mode: Mode,
    /// `None`: the phase picks its own default (it knows whether its workers
    /// block on I/O or not).
    pub workers: Option<usize>,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub access_log: bool,
    pub log_level: String,
}

impl Config {
    /// Parses `std::env::args()`; on a bad flag prints clap's message and
    /// exits with status 2 (on `--help`, prints help and exits 0).
    pub fn parse(phase: Phase) -> Config {
        match Config::try_parse_from(phase, std::env::args_os()) {
            Ok(c) => c,
            Err(e) => e.exit(),
        }
    }

    /// Like [`Config::parse`], but returns the error (for tests).
    pub fn try_parse_from<I, T>(phase: Phase, args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Cli::command()
            .name(phase.binary_name())
            .about(phase.about())
            .mut_arg("listen", |a| a.default_value(phase.default_listen()));
        let matches = command.try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        Ok(Config::from_cli(phase, cli))
    }

    fn from_cli(phase: Phase, cli: Cli) -> Config {
        let listen = cli
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], phase.default_port())));
        Config {
            listen,
            mode: match cli.upstream {
                Some(upstream) => Mode::Reverse { upstream },
                None => Mode::Forward,
            },
            workers: cli.workers.map(|w| w as usize),
            max_connections: cli.max_connections as usize,
            header_timeout: Duration::from_secs(cli.header_timeout),
            idle_timeout: Duration::from_secs(cli.idle_timeout),
            connect_timeout: Duration::from_secs(cli.connect_timeout),
            upstream_timeout: Duration::from_secs(cli.upstream_timeout),
            max_header_bytes: cli.max_header_bytes as usize,
            shutdown_grace: Duration::from_secs(cli.shutdown_grace),
            access_log: cli.access_log,
            log_level: cli.log_level,
        }
    }

    /// The defaults, in the given mode: what a test or an example starts from.
    pub fn new(mode: Mode) -> Config {
        let mut c = Config::try_parse_from(Phase::Blocking, ["proxy"]).unwrap_or_else(|e| {
            // The defaults are constants of this file; a failure is a bug here.
            unreachable!("default flags do not parse: {e}")
        });
        c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.mode = mode;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_depend_on_the_phase() {
        let c = Config::try_parse_from(Phase::Blocking, ["p"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8001".parse().unwrap());
        assert_eq!(c.mode, Mode::Forward);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.max_header_bytes, 16384);
        let c = Config::try_parse_from(Phase::Async, ["p"]).unwrap();
        assert_eq!(c.listen.port(), 8004);
    }

    #[test]
    fn every_flag_is_parsed() {
        let c = Config::try_parse_from(
            Phase::ThreadPool,
            [
                "p",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "localhost:9000",
                "--workers",
                "3",
                "--max-connections",
                "7",
                "--header-timeout",
                "2",
                "--idle-timeout",
                "3",
                "--connect-timeout",
                "4",
                "--upstream-timeout",
                "5",
                "--max-header-bytes",
                "4096",
                "--shutdown-grace",
                "0",
                "--access-log",
                "--log-level",
                "debug",
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(
            c.mode,
            Mode::Reverse {
                upstream: Authority {
                    host: "localhost".into(),
                    port: 9000
                }
            }
        );
        assert_eq!(c.workers, Some(3));
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.idle_timeout, Duration::from_secs(3));
        assert_eq!(c.connect_timeout, Duration::from_secs(4));
        assert_eq!(c.upstream_timeout, Duration::from_secs(5));
        assert_eq!(c.max_header_bytes, 4096);
        assert_eq!(c.shutdown_grace, Duration::ZERO);
        assert!(c.access_log);
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn bad_flags_are_usage_errors_with_exit_code_2() {
        for args in [
            &["p", "--bogus"][..],
            &["p", "--upstream-timeout", "abc"],
            &["p", "--upstream-timeout", "0"],
            &["p", "--upstream", "no-port"],
            &["p", "--listen", "nonsense"],
            &["p", "--log-level", "loud"],
            &["p", "--workers", "0"],
        ] {
            let err = Config::try_parse_from(Phase::Blocking, args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn help_shows_the_phase_default_port() {
        let err = Config::try_parse_from(Phase::Epoll, ["p", "--help"]).unwrap_err();
        let help = err.to_string();
        assert!(help.contains("127.0.0.1:8003"), "{help}");
        assert!(help.contains("--upstream-timeout"), "{help}");
    }
}
