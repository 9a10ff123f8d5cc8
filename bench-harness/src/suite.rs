//! Running the suite: start the origin, then for every proxy and every plan
//! start a fresh proxy process, load it, measure it, stop it.
//!
//! A fresh process per run keeps runs independent: peak RSS is the peak of
//! that run (the kernel's `VmHWM` never goes down), CPU seconds start from
//! a known point, and a proxy that falls over under one load does not spoil
//! the next. Starting a proxy costs milliseconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::clock::Utc;
use crate::loadgen::{self, LoadSpec, Stop, idle};
use crate::measure::{self, Sampler};
use crate::peers::Peer;
use crate::phases::Phase;
use crate::process::{self, ChildProcess};
use crate::report;
use crate::results::{
    ErrorCounts, IdleResult, Machine, ProcessStats, ProxyInfo, Results, RunResult, SCHEMA_VERSION,
    Settings, Skip,
};
use crate::scenario::{Amount, Plan, Scenario};
use crate::tools::{self, ToolResult, ab, wrk};

/// Which load tool the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ToolChoice {
    /// wrk for keep-alive runs and ab for new-connection runs when installed,
    /// the built-in generator otherwise.
    Auto,
    Builtin,
    Wrk,
    Ab,
}

impl ToolChoice {
    pub fn name(self) -> &'static str {
        match self {
            ToolChoice::Auto => "auto",
            ToolChoice::Builtin => "builtin",
            ToolChoice::Wrk => "wrk",
            ToolChoice::Ab => "ab",
        }
    }
}

/// The tool one run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Builtin,
    Wrk,
    Ab,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Builtin => "builtin",
            Tool::Wrk => "wrk",
            Tool::Ab => "ab",
        }
    }
}

/// Picks the tool for a run. Idle clients, tunnels and constant-rate load
/// are things only the built-in generator does.
pub fn pick_tool(choice: ToolChoice, plan: &Plan, wrk_installed: bool, ab_installed: bool) -> Tool {
    if matches!(
        plan.scenario,
        Scenario::Idle | Scenario::Connect | Scenario::SlowRate
    ) {
        return Tool::Builtin;
    }
    match choice {
        ToolChoice::Builtin => Tool::Builtin,
        ToolChoice::Wrk if wrk_installed => Tool::Wrk,
        ToolChoice::Ab if ab_installed => Tool::Ab,
        ToolChoice::Wrk | ToolChoice::Ab => Tool::Builtin,
        ToolChoice::Auto => match (plan.keep_alive, wrk_installed, ab_installed) {
            (true, true, _) => Tool::Wrk,
            (false, _, true) => Tool::Ab,
            (false, true, false) => Tool::Wrk,
            _ => Tool::Builtin,
        },
    }
}

/// Something to measure: a phase or a peer.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    Phase(&'static Phase),
    Peer(Peer),
}

impl Subject {
    pub fn name(&self) -> &'static str {
        match self {
            Subject::Phase(p) => p.name,
            Subject::Peer(p) => p.name(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Subject::Phase(_) => "phase",
            Subject::Peer(_) => "peer",
        }
    }

    /// Why this subject sits a plan out, if it does.
    pub fn cannot_run(&self, plan: &Plan) -> Option<&'static str> {
        match (self, plan.scenario) {
            (Subject::Phase(p), Scenario::Idle) if p.idle_max == 0 => {
                Some("no keep-alive (every response closes the connection), so no idle clients")
            }
            (Subject::Phase(p), Scenario::Connect) if !p.connect => {
                Some("answers CONNECT with 501 (one blocking thread cannot relay two directions)")
            }
            (Subject::Peer(_), Scenario::Connect) => {
                Some("peers are set up as reverse proxies, without CONNECT")
            }
            _ => None,
        }
    }

    /// How many idle clients to hold, and why fewer than wanted.
    fn idle_max(&self, wanted: usize, max_connections: u32) -> (usize, &'static str) {
        match self {
            Subject::Phase(p) => (
                wanted.min(p.idle_max),
                "the phase's limit in the harness's table",
            ),
            // Leave room under the peer's connection limit for the extra client.
            Subject::Peer(_) => (
                wanted.min(
                    (crate::peers::connection_limit(max_connections) as usize).saturating_sub(16),
                ),
                "the peer's connection limit: two descriptors per connection within RLIMIT_NOFILE",
            ),
        }
    }
}

/// Everything the suite needs to know.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub plans: Vec<Plan>,
    pub subjects: Vec<Subject>,
    pub tool: ToolChoice,
    /// `--workers` for every phase and peer (None: phases pick their own;
    /// peers get one per core, as phases 3 and 4 do).
    pub workers: Option<u32>,
    pub origin_workers: u32,
    pub load_threads: u32,
    /// `--max-connections` of every phase, and the peers' connection limits.
    pub max_connections: u32,
    /// The report goes to `out/<UTC time>/`; `out/latest` points at it.
    pub out: PathBuf,
    pub settings: Settings,
    /// Peers or phases left out before the start, and why.
    pub skipped: Vec<Skip>,
    /// How long one request may take before it counts as a timeout.
    pub request_timeout: Duration,
}

/// Shared state of a running suite.
struct Context<'a> {
    config: &'a SuiteConfig,
    origin: SocketAddr,
    logs: PathBuf,
    wrk: bool,
    ab: bool,
    cores: u32,
}

/// Runs the suite, writes the report, returns its directory.
pub fn run(config: &SuiteConfig) -> anyhow::Result<PathBuf> {
    process::on_interrupt_stop_children()?;
    raise_fd_limit();
    let started = Utc::now();
    let load_at_start = load_average();
    let dir = config.out.join(started.dir_name());
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;

    let origin = process::spawn_serve(
        "origin",
        &["--workers".to_string(), config.origin_workers.to_string()],
        &logs.join("origin.log"),
    )?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2);
    let context = Context {
        config,
        origin: origin.addr,
        logs,
        wrk: tools::installed("wrk"),
        ab: tools::installed("ab"),
        cores,
    };
    eprintln!(
        "origin on {} ({} workers); report: {}",
        origin.addr,
        config.origin_workers,
        dir.display()
    );

    let mut runs = Vec::new();
    let mut skipped = config.skipped.clone();
    let mut commands: BTreeMap<&'static str, String> = BTreeMap::new();
    let total = (config.subjects.len() * config.plans.len()) as u64;
    let bar = progress_bar(total);
    let suite_started = Instant::now();

    for subject in &config.subjects {
        for plan in &config.plans {
            bar.set_message(format!(
                "{} {} {}",
                subject.name(),
                plan.scenario,
                plan.variant
            ));
            if let Some(reason) = subject.cannot_run(plan) {
                // Record the reason once per subject and scenario.
                if !skipped
                    .iter()
                    .any(|s| s.proxy == subject.name() && s.scenario == plan.scenario.name())
                {
                    skipped.push(Skip {
                        proxy: subject.name().to_string(),
                        scenario: plan.scenario.name().to_string(),
                        reason: reason.to_string(),
                    });
                }
                bar.inc(1);
                continue;
            }
            match run_plan(&context, subject, plan) {
                Ok((result, command)) => {
                    if plan.scenario != Scenario::Connect {
                        commands.entry(subject.name()).or_insert(command);
                    }
                    say(&bar, &one_line(&result));
                    runs.push(result);
                }
                Err(e) => {
                    say(
                        &bar,
                        &format!(
                            "{} {} {}: {e:#}",
                            subject.name(),
                            plan.scenario,
                            plan.variant
                        ),
                    );
                    skipped.push(Skip {
                        proxy: subject.name().to_string(),
                        scenario: plan.scenario.name().to_string(),
                        reason: format!("{}: failed: {e:#}", plan.variant),
                    });
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    origin.stop();

    let results = Results {
        schema_version: SCHEMA_VERSION,
        generator: format!("bench-harness {}", env!("CARGO_PKG_VERSION")),
        started_utc: started.rfc3339(),
        finished_utc: Utc::now().rfc3339(),
        machine: Machine {
            load_average_start: load_at_start,
            load_average_end: load_average(),
            ..machine()
        },
        settings: config.settings.clone(),
        proxies: config
            .subjects
            .iter()
            .map(|s| ProxyInfo {
                name: s.name().to_string(),
                kind: s.kind().to_string(),
                command: commands.get(s.name()).cloned().unwrap_or_default(),
            })
            .collect(),
        skipped,
        runs,
    };
    report::write(&results, &dir)?;
    point_latest_at(&config.out, &dir);
    println!("{}", report::summary_text(&results));
    println!(
        "suite took {:.0} s; report: {}",
        suite_started.elapsed().as_secs_f64(),
        dir.join("report.md").display()
    );
    Ok(dir)
}

fn progress_bar(total: u64) -> ProgressBar {
    use std::io::IsTerminal;
    let bar = ProgressBar::new(total);
    if std::io::stderr().is_terminal() {
        if let Ok(style) =
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// A line above the progress bar, or on stderr when there is no bar.
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn one_line(r: &RunResult) -> String {
    if let Some(i) = r.idle {
        return format!(
            "{:<18} {:<10} {:<26} held {} ({} answered, {} refused), {:.0} B of RSS each, one more client {}",
            r.proxy,
            r.scenario,
            r.variant,
            i.held,
            i.answered,
            i.refused,
            i.rss_per_connection_bytes,
            if i.extra_client_served {
                "served"
            } else {
                "NOT served"
            }
        );
    }
    let latency = r
        .latency_ms
        .map(|l| format!("p50 {:.2} ms p99 {:.2} ms", l.p50, l.p99))
        .unwrap_or_else(|| "no latency".into());
    let starved = r
        .starved
        .filter(|&n| n > 0)
        .map(|n| format!(", {n} of {} clients never answered", r.concurrency))
        .unwrap_or_default();
    format!(
        "{:<18} {:<10} {:<26} {:<7} {:>9.0} req/s {:>8.1} MiB/s {latency} errors {}{starved}",
        r.proxy,
        r.scenario,
        r.variant,
        r.tool,
        r.req_per_s,
        r.mib_per_s,
        r.errors.summary()
    )
}

/// Many idle clients need many descriptors: raise the soft limit to the hard one.
fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// Starts the subject for a plan: reverse proxy in front of the origin, or
/// forward proxy for CONNECT.
fn start(context: &Context<'_>, subject: &Subject, forward: bool) -> anyhow::Result<ChildProcess> {
    let config = context.config;
    match subject {
        Subject::Phase(phase) => {
            let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
            if !forward {
                args.push("--upstream".to_string());
                args.push(context.origin.to_string());
            }
            args.extend([
                "--max-connections".to_string(),
                config.max_connections.to_string(),
                "--idle-timeout".to_string(),
                "60".to_string(),
                "--log-level".to_string(),
                "warn".to_string(),
            ]);
            if let Some(workers) = config.workers {
                args.push("--workers".to_string());
                args.push(workers.to_string());
            }
            process::spawn_serve(
                phase.name,
                &args,
                &context.logs.join(format!("{}.log", phase.name)),
            )
        }
        Subject::Peer(peer) => peer.start(
            context.origin,
            config.workers.unwrap_or(context.cores),
            config.max_connections,
            &context.logs,
        ),
    }
}

/// One run: start, check, load, measure, stop.
fn run_plan(
    context: &Context<'_>,
    subject: &Subject,
    plan: &Plan,
) -> anyhow::Result<(RunResult, String)> {
    let forward = plan.scenario == Scenario::Connect;
    let mut child = start(context, subject, forward)?;
    let command = child.command.clone();
    let target = Target {
        proxy: child.addr,
        origin: context.origin,
        tunnel: forward,
    };
    // One request first: a proxy that cannot answer it is broken, and
    // loading it would only produce a table of errors.
    target
        .check(plan)
        .with_context(|| format!("{} did not answer a first request", subject.name()))?;

    let mut result = if plan.scenario == Scenario::Idle {
        run_idle(context, subject, plan, &child, &target)?
    } else {
        run_load(context, plan, &child, &target)
    };
    result.proxy = subject.name().to_string();
    if child.has_exited() {
        let note = "the proxy exited during the run";
        result.note = Some(match result.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note.to_string(),
        });
    }
    child.stop();
    Ok((result, command))
}

/// Where the load goes.
struct Target {
    proxy: SocketAddr,
    origin: SocketAddr,
    /// Through a CONNECT tunnel to the origin.
    tunnel: bool,
}

impl Target {
    fn spec(&self, plan: &Plan, path: String, connections: usize, stop: Stop) -> LoadSpec {
        LoadSpec {
            addr: self.proxy,
            host: if self.tunnel {
                self.origin.to_string()
            } else {
                self.proxy.to_string()
            },
            path,
            connections,
            threads: 2,
            keep_alive: plan.keep_alive,
            stop,
            rate: plan.rate,
            timeout: Duration::from_secs(10),
            tunnel: self.tunnel.then(|| self.origin.to_string()),
        }
    }

    fn check(&self, plan: &Plan) -> anyhow::Result<()> {
        let mut spec = self.spec(
            plan,
            "/bytes/16".to_string(),
            1,
            Stop::Requests {
                count: 1,
                max_time: Duration::from_secs(10),
            },
        );
        spec.rate = None;
        spec.threads = 1;
        spec.timeout = Duration::from_secs(5);
        let report = loadgen::run(&spec)?;
        if report.requests == 1 && report.errors.total() == 0 {
            Ok(())
        } else {
            anyhow::bail!("errors: {}", report.errors.summary())
        }
    }
}

fn empty_result(plan: &Plan, tool: Tool, command: String) -> RunResult {
    RunResult {
        scenario: plan.scenario.name().to_string(),
        variant: plan.variant.clone(),
        proxy: String::new(),
        tool: tool.name().to_string(),
        command,
        concurrency: plan.concurrency,
        payload_bytes: plan.payload,
        keep_alive: plan.keep_alive,
        delay_ms: plan.delay_ms,
        rate: plan.rate,
        duration_s: 0.0,
        requests: 0,
        req_per_s: 0.0,
        mib_per_s: 0.0,
        latency_ms: None,
        errors: ErrorCounts::default(),
        unfinished: 0,
        starved: None,
        process: ProcessStats::default(),
        idle: None,
        note: None,
    }
}

/// A load run with wrk, ab or the built-in generator. If wrk or ab fail
/// (ab aborts on a timeout), the run is measured again with the built-in
/// generator and the note says so.
fn run_load(
    context: &Context<'_>,
    plan: &Plan,
    child: &ChildProcess,
    target: &Target,
) -> RunResult {
    let config = context.config;
    let tool = pick_tool(config.tool, plan, context.wrk, context.ab);
    let url = format!("http://{}{}", target.proxy, plan.path());
    let duration = plan.duration(config.settings_duration());
    let timeout = config.request_timeout;

    let external = match tool {
        Tool::Wrk => {
            let args = wrk::args(
                &url,
                plan.concurrency,
                config.load_threads,
                duration,
                timeout,
                !plan.keep_alive,
            );
            Some(("wrk", args))
        }
        Tool::Ab => {
            let amount = match plan.amount {
                Amount::Requests(n) => ab::Amount::Requests(n),
                Amount::For(d) => ab::Amount::For(d),
            };
            Some((
                "ab",
                ab::args(&url, plan.concurrency, amount, plan.keep_alive, timeout),
            ))
        }
        Tool::Builtin => None,
    };

    let mut note = None;
    if let Some((program, args)) = external {
        let command = format!("{program} {}", shell_words(&args));
        let sampler = Sampler::start(child.pid());
        let outcome = match tool {
            Tool::Wrk => wrk::run(&args, duration),
            _ => ab::run(&args, Duration::from_secs(120)),
        };
        let process = sampler.finish();
        match outcome {
            Ok(measured) => return from_tool(plan, tool, command, measured, process),
            Err(e) => {
                note = Some(format!(
                    "{program} failed ({e:#}); measured with the built-in generator instead"
                ))
            }
        }
    }

    let stop = match plan.amount {
        Amount::For(d) => Stop::After(d),
        Amount::Requests(count) => Stop::Requests {
            count,
            max_time: Duration::from_secs(60),
        },
    };
    let mut spec = target.spec(plan, plan.path(), plan.concurrency as usize, stop);
    spec.threads = config.load_threads as usize;
    spec.timeout = timeout;
    let command = spec.describe();
    let sampler = Sampler::start(child.pid());
    let outcome = loadgen::run(&spec);
    let process = sampler.finish();
    let mut result = match outcome {
        Ok(report) => {
            let mut r = empty_result(plan, Tool::Builtin, command);
            r.duration_s = report.elapsed.as_secs_f64();
            r.requests = report.requests;
            r.req_per_s = report.req_per_s();
            r.mib_per_s = report.mib_per_s();
            r.latency_ms = report.latency_ms();
            r.errors = report.errors;
            r.unfinished = report.unfinished;
            r.starved = Some(report.starved);
            r.process = process;
            r
        }
        Err(e) => {
            let mut r = empty_result(plan, Tool::Builtin, command);
            r.note = Some(format!("the built-in generator failed: {e:#}"));
            r
        }
    };
    if let Some(note) = note {
        result.note = Some(match result.note.take() {
            Some(n) => format!("{note}; {n}"),
            None => note,
        });
    }
    result
}

fn from_tool(
    plan: &Plan,
    tool: Tool,
    command: String,
    measured: ToolResult,
    process: ProcessStats,
) -> RunResult {
    let mut r = empty_result(plan, tool, command);
    r.duration_s = measured.duration_s;
    r.requests = measured.requests;
    r.req_per_s = measured.req_per_s;
    r.mib_per_s = measured.mib_per_s;
    r.latency_ms = measured.latency_ms;
    r.errors = measured.errors;
    r.process = process;
    r
}

/// The idle scenario: hold clients, measure memory, probe one more client.
fn run_idle(
    context: &Context<'_>,
    subject: &Subject,
    plan: &Plan,
    child: &ChildProcess,
    target: &Target,
) -> anyhow::Result<RunResult> {
    let (connections, why_fewer) =
        subject.idle_max(plan.idle_connections, context.config.max_connections);
    let spec = idle::IdleSpec {
        addr: target.proxy,
        host: target.proxy.to_string(),
        path: "/bytes/1".to_string(),
        connections,
        open_parallel: 200,
        // Clients a proxy queues without answering (phase 2) wait this long
        // each, 200 at a time: keep it short.
        answer_timeout: Duration::from_secs(1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(context.config.load_threads.max(1) as usize)
        .enable_all()
        .build()
        .context("cannot start a runtime for the idle clients")?;
    // Let the proxy settle after the first request, then take its baseline.
    std::thread::sleep(Duration::from_millis(200));
    let before = measure::sample_tree(child.pid());
    let sampler = Sampler::start(child.pid());
    let opened_at = Instant::now();
    let clients = runtime.block_on(idle::open(&spec));
    let open_time = opened_at.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let after = measure::sample_tree(child.pid());
    let probe = runtime.block_on(idle::probe(&spec, Duration::from_secs(2)));
    let process = sampler.finish();
    let held = clients.held;
    let (answered, refused) = (clients.answered, clients.refused);
    clients.close();
    drop(runtime);

    let grown_kib = after.rss_kib.saturating_sub(before.rss_kib);
    let mut r = empty_result(
        plan,
        Tool::Builtin,
        format!(
            "builtin --idle {connections} --open-parallel {} http://{}/bytes/1",
            spec.open_parallel, target.proxy
        ),
    );
    r.concurrency = u32::try_from(connections).unwrap_or(u32::MAX);
    r.duration_s = open_time.as_secs_f64();
    r.requests = answered;
    r.errors.connect = refused;
    r.process = process;
    r.idle = Some(IdleResult {
        target: connections as u64,
        held,
        answered,
        refused,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        rss_per_connection_bytes: if held > 0 {
            grown_kib as f64 * 1024.0 / held as f64
        } else {
            0.0
        },
        extra_client_served: probe.served,
        extra_client_ms: probe.latency.map(|d| d.as_secs_f64() * 1000.0),
    });
    if connections < plan.idle_connections {
        r.note = Some(format!("held at most {connections} clients ({why_fewer})"));
    }
    Ok(r)
}

impl SuiteConfig {
    fn settings_duration(&self) -> Duration {
        Duration::from_secs_f64(self.settings.duration_s.max(0.1))
    }
}

/// Arguments joined for a shell, quoted where needed.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "\"'?&;$*".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `out/latest` → the newest report directory (a relative symlink).
fn point_latest_at(out: &Path, dir: &Path) {
    let Some(name) = dir.file_name() else { return };
    let link = out.join("latest");
    let temporary = out.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    if std::os::unix::fs::symlink(name, &temporary).is_ok() {
        // rename() replaces the old link in one step.
        if std::fs::rename(&temporary, &link).is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
    }
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    (fields.len() == 3).then(|| fields.join(" "))
}

/// What machine produced the numbers.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut tools = Vec::new();
    if tools::installed("wrk") {
        tools.extend(tools::version("wrk", "--version"));
    }
    if tools::installed("ab") {
        tools.extend(tools::version("ab", "-V"));
    }
    for peer in Peer::ALL {
        tools.extend(peer.version());
    }
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        memory_kib,
        tools,
        load_average_start: None,
        load_average_end: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::SuiteOptions;

    fn plan(scenario: Scenario) -> Plan {
        SuiteOptions::defaults(false)
            .plans()
            .into_iter()
            .find(|p| p.scenario == scenario)
            .unwrap()
    }

    #[test]
    fn auto_uses_wrk_for_keep_alive_and_ab_for_new_connections() {
        let ka = plan(Scenario::Keepalive);
        let nc = plan(Scenario::Newconn);
        assert_eq!(pick_tool(ToolChoice::Auto, &ka, true, true), Tool::Wrk);
        assert_eq!(pick_tool(ToolChoice::Auto, &nc, true, true), Tool::Ab);
        assert_eq!(pick_tool(ToolChoice::Auto, &nc, true, false), Tool::Wrk);
        assert_eq!(
            pick_tool(ToolChoice::Auto, &ka, false, false),
            Tool::Builtin
        );
        assert_eq!(pick_tool(ToolChoice::Wrk, &ka, false, true), Tool::Builtin);
    }

    #[test]
    fn only_the_builtin_generator_does_idle_tunnels_and_constant_rate() {
        for s in [Scenario::Idle, Scenario::Connect, Scenario::SlowRate] {
            assert_eq!(
                pick_tool(ToolChoice::Wrk, &plan(s), true, true),
                Tool::Builtin
            );
            assert_eq!(
                pick_tool(ToolChoice::Auto, &plan(s), true, true),
                Tool::Builtin
            );
        }
    }

    #[test]
    fn shell_words_quote_what_a_shell_would_split() {
        let args = vec![
            "-H".to_string(),
            "Connection: close".to_string(),
            "http://x/a?b=1".to_string(),
        ];
        assert_eq!(
            shell_words(&args),
            "-H 'Connection: close' 'http://x/a?b=1'"
        );
    }

    #[test]
    fn phase1_sits_out_idle_and_connect_and_peers_sit_out_connect() {
        let phase1 = Subject::Phase(&crate::phases::PHASES[0]);
        assert!(phase1.cannot_run(&plan(Scenario::Idle)).is_some());
        assert!(phase1.cannot_run(&plan(Scenario::Connect)).is_some());
        assert!(phase1.cannot_run(&plan(Scenario::Keepalive)).is_none());
        let nginx = Subject::Peer(Peer::Nginx);
        assert!(nginx.cannot_run(&plan(Scenario::Connect)).is_some());
        assert!(nginx.cannot_run(&plan(Scenario::Idle)).is_none());
    }
}
