//! The benchmark harness: one command that loads every phase of the ladder
//! (and nginx / HAProxy when installed) with the same scenarios, and writes
//! a report that puts them side by side.
//!
//! ```text
//! cargo run --release -p bench-harness             # the default suite, ~3 minutes
//! cargo run --release -p bench-harness -- --quick  # CI: every scenario, seconds
//! cargo run --release -p bench-harness -- --help   # phases, peers, scenarios, tool...
//! ```
//!
//! How a run goes ([`suite`]): the harness starts the origin, then for each
//! proxy and each scenario run starts a fresh proxy *process*, checks that
//! it answers, loads it with wrk, ab or the built-in generator
//! ([`loadgen`]), samples its CPU, memory and threads from `/proc`
//! ([`measure`]), and stops it. Phases run as the harness binary itself in
//! a hidden `serve` mode ([`serve`]: no separate build step, and the
//! measured binary is always the current code), peers as their own binaries
//! with configs the harness writes ([`peers`]). Nothing outlives the
//! harness, Ctrl-C included ([`process`]).
//!
//! Then [`report`] writes `bench-reports/<UTC time>/`: `report.md`,
//! `results.json` ([`results`], versioned), `results.csv` and SVG charts,
//! and points `bench-reports/latest` at it.
//!
//! `bench-harness soak --minutes N` ([`soak`]) asks another question: not
//! how fast, but whether each phase stays correct and bounded for minutes
//! of mixed traffic with faults injected (vanishing clients, malformed
//! requests, upstream faults, the origin killed and restarted every 30 s).
//!
//! | module | what it does |
//! |---|---|
//! | [`cli`] | the command line |
//! | [`phases`] | the table of phases: adding one is one entry |
//! | [`scenario`] | the scenarios and the runs they expand into |
//! | [`suite`] | running everything, choosing the tool per run |
//! | [`loadgen`] | the built-in load generator (closed loop and constant rate, idle clients, CONNECT) |
//! | [`tools`] | running wrk and ab and parsing their output |
//! | [`peers`] | nginx and HAProxy configs |
//! | [`process`] | child processes and cleanup |
//! | [`measure`] | CPU, RSS and threads from `/proc` |
//! | [`results`] | `results.json` and `results.csv` |
//! | [`report`] | `report.md` and the charts |
//! | [`soak`] | the soak: mixed traffic, faults, restarts, fd and RSS over time |

pub mod cli;
pub mod clock;
pub mod loadgen;
pub mod measure;
pub mod peers;
pub mod phases;
pub mod process;
pub mod report;
pub mod results;
pub mod scenario;
pub mod serve;
pub mod soak;
pub mod suite;
pub mod tools;

use std::ffi::OsString;

use clap::Parser;

/// The whole program: `serve` mode for the children, a soak, or a suite run.
pub fn main_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if args.get(1).is_some_and(|a| a == "serve") {
        return serve::main(args[2..].to_vec());
    }
    let command = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    let command = format!(
        "cargo run --release -p bench-harness{}{}",
        if command.is_empty() { "" } else { " -- " },
        suite::shell_words(&command)
    );
    let cli = cli::Cli::parse_from(args);
    if let Some(cli::Command::Soak(soak)) = &cli.command {
        let config = soak.soak(command)?;
        soak::run(&config)?;
        return Ok(());
    }
    if let Some(results_file) = &cli.report_from {
        let results = report::read_results(results_file)?;
        let dir = match &cli.out {
            Some(out) => out.clone(),
            None => results_file
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
        };
        report::write(&results, &dir)?;
        println!("{}", report::summary_text(&results));
        println!("report: {}", dir.join("report.md").display());
        return Ok(());
    }
    let config = cli.suite(command)?;
    suite::run(&config)?;
    Ok(())
}
