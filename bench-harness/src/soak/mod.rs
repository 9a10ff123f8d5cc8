//! The soak: mixed traffic with faults injected, for minutes per phase,
//! watching for anything the contract does not allow and for descriptors
//! or memory that creep up.
//!
//! ```text
//! cargo run --release -p bench-harness -- soak --minutes 10          # every phase, 40 minutes
//! cargo run --release -p bench-harness -- soak --seconds 20 --phases 4
//! ```
//!
//! A benchmark asks "how fast"; a soak asks "for how long does it stay
//! correct". Each phase in turn runs as its own process (forward proxy, a
//! short `--upstream-timeout` so the silent-upstream fault ends in a 504
//! quickly) in front of the origin, and:
//!
//! - `--clients` tasks (32 by default) loop over a weighted mix of
//!   exchanges ([`traffic`]): keep-alive GETs of every body framing, HEAD,
//!   uploads with `Content-Length` and chunked (some with `Expect:
//!   100-continue`), CONNECT tunnels; and faults: clients that vanish
//!   mid-request or mid-response, malformed requests, upstream resets,
//!   garbage, truncations and silences;
//! - every `--restart-every` seconds (±20 %) the origin is killed (SIGKILL)
//!   and started again **on the same port**: requests in flight fail, the
//!   proxy's pooled upstream connections go stale, and the proxy must
//!   recover by itself;
//! - every outcome is classified ([`classify`]) as expected, tolerated (an
//!   upstream failure overlapping a restart) or unexpected;
//! - every `--sample-every` seconds the proxy's descriptors
//!   (`/proc/PID/fd`), RSS and threads are sampled.
//!
//! At the end of a phase the load stops, the proxy is left alone for
//! [`QUIET`] (longer than the upstream pool's idle timeout) and sampled once
//! more: descriptors at rest should be back near the baseline taken before
//! the first request. [`report`] writes `soak.md` and `soak.json` (and two
//! SVG charts) to `bench-reports/<UTC time>-soak/`.

pub mod classify;
pub mod report;
pub mod rng;
pub mod traffic;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::clock::Utc;
use crate::measure;
use crate::phases::Phase;
use crate::process::{self, ChildProcess};
use classify::{Kind, Observed, Reason, Restart, Verdict};
use report::{Example, KindTally, PhaseSoak, ReasonTally, SampleRow, SoakResults, Usage};
use rng::Rng;
use traffic::{Conn, Env};

/// No exchange may take longer than this (phase 1 serves one connection
/// at a time, so a client may wait behind all the others): past it, the
/// exchange counts as a hang.
pub const EXCHANGE_DEADLINE: Duration = Duration::from_secs(30);

/// After the load stops, the proxy is left idle this long before the "at
/// rest" sample: longer than the upstream pool's idle timeout
/// (`proxy_core::pool::IDLE_TIMEOUT`, 4 s), so idle upstream connections
/// are gone by then in a proxy that reaps them.
pub const QUIET: Duration = Duration::from_secs(6);

/// At most one `/fault/silent` starts per this interval: it holds its
/// client for `--upstream-timeout` seconds, and in phase 1 everybody else
/// too.
const SILENT_EVERY: Duration = Duration::from_secs(5);

/// The proxy's `--upstream-timeout` default for the soak, in seconds.
pub const UPSTREAM_TIMEOUT_S: u64 = 2;

/// At most this many unexpected outcomes are kept as examples per phase
/// (all of them are counted).
const MAX_EXAMPLES: usize = 25;

/// Weights of the kinds in the default mix (out of 100). `--kinds` keeps
/// some of them, with these weights relative to each other.
pub const DEFAULT_MIX: [(Kind, u64); 15] = [
    (Kind::GetSmall, 22),
    (Kind::GetLarge, 4),
    (Kind::GetChunked, 9),
    (Kind::GetClose, 4),
    (Kind::Head, 5),
    (Kind::UploadLength, 8),
    (Kind::UploadChunked, 6),
    (Kind::Tunnel, 5),
    (Kind::VanishMidRequest, 5),
    (Kind::VanishMidResponse, 4),
    (Kind::Malformed, 12),
    (Kind::UpstreamReset, 3),
    (Kind::UpstreamMalformed, 3),
    (Kind::UpstreamTruncated, 6),
    (Kind::UpstreamSilent, 4),
];

/// What a soak run does.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub phases: Vec<&'static Phase>,
    /// Kinds of exchange and their weights.
    pub mix: Vec<(Kind, u64)>,
    /// Load per phase.
    pub duration: Duration,
    pub clients: usize,
    pub restart_every: Duration,
    pub sample_every: Duration,
    pub upstream_timeout_s: u64,
    pub seed: u64,
    pub origin_workers: u32,
    /// Extra arguments for every proxy (after the soak's own).
    pub proxy_args: Vec<String>,
    /// The report goes to `out/<UTC time>-soak/`.
    pub out: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

/// Runs the soak for every phase in turn; returns the report directory.
pub fn run(config: &SoakConfig) -> anyhow::Result<PathBuf> {
    process::on_interrupt_stop_children()?;
    // Each client holds up to two descriptors; the default soft limit is
    // plenty, but a bigger --clients should not hit it.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let started = Utc::now();
    let load_at_start = load_average();
    let dir = config.out.join(format!("{}-soak", started.dir_name()));
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let origin_addr = pick_origin_addr(config.seed);
    eprintln!(
        "soak: {} per phase, {} clients, origin restarted every ~{} s on {origin_addr}; report: {}",
        minutes(config.duration),
        config.clients,
        config.restart_every.as_secs(),
        dir.display()
    );

    let mut phases = Vec::new();
    for (index, phase) in config.phases.iter().enumerate() {
        let seed = config.seed.wrapping_add(index as u64 * 1_000_003);
        let result = soak_phase(config, phase, origin_addr, &logs, seed)
            .with_context(|| format!("{}: the soak could not run", phase.name))?;
        eprintln!("{}", report::one_line(&result));
        phases.push(result);
        // Write what we have after every phase: a 40-minute run that is
        // interrupted keeps its finished phases.
        let partial = results(config, &started, load_at_start.clone(), &phases);
        report::write(&partial, &dir)?;
    }
    let results = results(config, &started, load_at_start, &phases);
    report::write(&results, &dir)?;
    println!("{}", report::summary_text(&results));
    println!("report: {}", dir.join("soak.md").display());
    Ok(dir)
}

fn results(
    config: &SoakConfig,
    started: &Utc,
    load_at_start: Option<String>,
    phases: &[PhaseSoak],
) -> SoakResults {
    let mut machine = crate::suite::machine();
    machine.load_average_start = load_at_start;
    machine.load_average_end = load_average();
    SoakResults {
        schema_version: report::SCHEMA_VERSION,
        generator: format!("bench-harness {}", env!("CARGO_PKG_VERSION")),
        started_utc: started.rfc3339(),
        finished_utc: Utc::now().rfc3339(),
        command: config.command.clone(),
        settings: report::Settings {
            load_per_phase_s: config.duration.as_secs_f64(),
            clients: config.clients,
            restart_every_s: config.restart_every.as_secs_f64(),
            restart_grace_s: classify::RESTART_GRACE.as_secs_f64(),
            sample_every_s: config.sample_every.as_secs_f64(),
            upstream_timeout_s: config.upstream_timeout_s,
            exchange_deadline_s: EXCHANGE_DEADLINE.as_secs_f64(),
            quiet_s: QUIET.as_secs_f64(),
            seed: config.seed,
            mix: config
                .mix
                .iter()
                .map(|(kind, weight)| (kind.name().to_string(), *weight))
                .collect(),
        },
        machine,
        phases: phases.to_vec(),
    }
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// A port for the origin outside the kernel's ephemeral range: restarting
/// it on the same port must not race with connections whose local port the
/// kernel picks from that range. Connecting to a port where nothing listens
/// can even end in a TCP *self-connect* (the SYN's source port happens to
/// be the destination port), and the proxy does connect to the origin's
/// port while it is down, hundreds of times per restart.
fn pick_origin_addr(seed: u64) -> SocketAddr {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32768u64);
    let mut rng = Rng::new(seed ^ u64::from(std::process::id()));
    if low > 10_100 {
        for _ in 0..100 {
            let port = rng.range(10_000, low - 1) as u16;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if TcpListener::bind(addr).is_ok() {
                return addr;
            }
        }
    }
    // No luck: let the kernel choose once, and keep that port.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 18_080)))
}

/// The origin, which the soak kills and restarts on the same address.
struct Upstream {
    addr: SocketAddr,
    workers: u32,
    log: PathBuf,
    child: Option<ChildProcess>,
}

impl Upstream {
    fn start(addr: SocketAddr, workers: u32, log: &Path) -> anyhow::Result<Upstream> {
        let mut upstream = Upstream {
            addr,
            workers,
            log: log.to_path_buf(),
            child: None,
        };
        upstream.spawn()?;
        Ok(upstream)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let args = [
            "--workers".to_string(),
            self.workers.to_string(),
            "--listen".to_string(),
            self.addr.to_string(),
        ];
        let child = process::spawn_serve_appending("origin", &args, &self.log)?;
        if child.addr != self.addr {
            bail!("the origin listens on {}, not {}", child.addr, self.addr);
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the origin (SIGKILL: a crash, not a shutdown) and starts it
    /// again on the same address, recording the window in `shared`.
    fn restart(&mut self, shared: &Shared) -> anyhow::Result<()> {
        let killed = shared.elapsed();
        shared.restarts().push(Restart {
            killed,
            ready: None,
        });
        if let Some(child) = self.child.take() {
            child.kill();
        }
        let mut attempt = 0;
        loop {
            match self.spawn() {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    eprintln!("soak: the origin did not restart ({e:#}); trying again");
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e.context("the origin could not be restarted")),
            }
        }
        let ready = shared.elapsed();
        if let Some(last) = shared.restarts().last_mut() {
            last.ready = Some(ready);
        }
        Ok(())
    }

    fn stop(mut self) {
        if let Some(child) = self.child.take() {
            child.stop();
        }
    }
}

/// What the clients and the supervising thread share during a phase.
#[derive(Debug)]
struct Shared {
    start: Instant,
    stop: AtomicBool,
    env: Env,
    mix: Vec<(Kind, u64)>,
    restarts: Mutex<Vec<Restart>>,
    tally: Mutex<Tally>,
    /// When the last `/fault/silent` started.
    last_silent: Mutex<Option<Instant>>,
}

/// Everything counted during a phase.
#[derive(Debug, Default)]
struct Tally {
    kinds: BTreeMap<Kind, KindTally>,
    reasons: BTreeMap<(Kind, Reason), u64>,
    examples: Vec<Example>,
    exchanges: u64,
    unexpected: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking client cannot leave the tallies half-written in a way
    // that matters to a report: carry on with what is there.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn restarts(&self) -> MutexGuard<'_, Vec<Restart>> {
        lock(&self.restarts)
    }

    /// Picks the next kind: by weight, but `/fault/silent` at most once per
    /// [`SILENT_EVERY`] (a plain GET instead).
    fn pick(&self, rng: &mut Rng) -> Kind {
        let total: u64 = self.mix.iter().map(|(_, w)| w).sum();
        let mut draw = rng.below(total);
        let mut kind = Kind::GetSmall;
        for &(k, weight) in &self.mix {
            if draw < weight {
                kind = k;
                break;
            }
            draw -= weight;
        }
        if kind == Kind::UpstreamSilent {
            let mut last = lock(&self.last_silent);
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < SILENT_EVERY) {
                return Kind::GetSmall;
            }
            *last = Some(now);
        }
        kind
    }

    fn record(
        &self,
        plan: &traffic::Plan,
        observed: &Observed,
        start: Duration,
        end: Duration,
    ) -> Verdict {
        let (in_restart, nearest) = {
            let restarts = self.restarts();
            let nearest = restarts.iter().map(|r| r.killed.abs_diff(start)).min();
            (classify::overlaps_restart(&restarts, start, end), nearest)
        };
        let verdict = classify::classify(plan.expect, observed, in_restart, plan.close_delimited);
        let mut tally = lock(&self.tally);
        tally.exchanges += 1;
        let counts = tally.kinds.entry(plan.kind).or_insert_with(|| KindTally {
            kind: plan.kind.name().to_string(),
            ..KindTally::default()
        });
        counts.total += 1;
        match verdict {
            Verdict::Expected => counts.expected += 1,
            Verdict::Tolerated => counts.tolerated += 1,
            Verdict::Unexpected(reason) => {
                counts.unexpected += 1;
                tally.unexpected += 1;
                *tally.reasons.entry((plan.kind, reason)).or_default() += 1;
                if tally.examples.len() < MAX_EXAMPLES {
                    let example = Example {
                        t_s: start.as_secs_f64(),
                        took_s: end.saturating_sub(start).as_secs_f64(),
                        kind: plan.kind.name().to_string(),
                        reason: reason.name().to_string(),
                        request: plan.detail.clone(),
                        observed: observed.to_string(),
                        in_restart_window: in_restart,
                        nearest_kill_s: nearest.map(|d| d.as_secs_f64()),
                    };
                    eprintln!(
                        "  UNEXPECTED at {:.1} s: {}: {} -> {}",
                        example.t_s, example.kind, example.request, example.observed
                    );
                    tally.examples.push(example);
                }
            }
        }
        verdict
    }
}

/// One client: exchange after exchange until told to stop.
async fn client(shared: Arc<Shared>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut kept: Option<Conn> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let kind = shared.pick(&mut rng);
        let plan = traffic::plan(kind, &shared.env, &mut rng);
        let start = shared.elapsed();
        let observed = match tokio::time::timeout(
            EXCHANGE_DEADLINE,
            traffic::execute(&plan, &shared.env, &mut kept),
        )
        .await
        {
            Ok(observed) => observed,
            Err(_) => {
                kept = None;
                Observed::Hung
            }
        };
        let end = shared.elapsed();
        shared.record(&plan, &observed, start, end);
    }
}

/// Runs the clients on a runtime of their own, on this thread, until they
/// have all stopped.
fn run_clients(shared: Arc<Shared>, clients: usize, seed: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("soak-client")
        .enable_all()
        .build()
        .context("cannot start the clients' runtime")?;
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..clients {
            let seed = seed.wrapping_add(index as u64).wrapping_mul(0x9e37_79b9);
            tasks.spawn(client(Arc::clone(&shared), seed));
        }
        while tasks.join_next().await.is_some() {}
    });
    Ok(())
}

fn usage(pid: u32) -> Usage {
    let (rss_kib, _, threads) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| measure::parse_status(&s))
        .unwrap_or_default();
    Usage {
        fds: measure::fd_count(pid).unwrap_or(0),
        rss_kib,
        threads,
    }
}

/// The restart interval, ±20 % so restarts do not fall into step with
/// anything periodic in the proxy (its pool's idle timeout, say).
fn jittered(every: Duration, rng: &mut Rng) -> Duration {
    let ms = every.as_millis() as u64;
    Duration::from_millis(rng.range(ms * 4 / 5, ms * 6 / 5).max(1))
}

fn soak_phase(
    config: &SoakConfig,
    phase: &Phase,
    origin_addr: SocketAddr,
    logs: &Path,
    seed: u64,
) -> anyhow::Result<PhaseSoak> {
    let mut rng = Rng::new(seed);
    let mut upstream =
        Upstream::start(origin_addr, config.origin_workers, &logs.join("origin.log"))?;
    let proxy_args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--upstream-timeout",
        &config.upstream_timeout_s.to_string(),
        "--idle-timeout",
        "60",
        "--log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(config.proxy_args.iter().cloned())
    .collect();
    let proxy_log = logs.join(format!("{}.log", phase.name));
    let mut proxy = process::spawn_serve(phase.name, &proxy_args, &proxy_log)?;
    let pid = proxy.pid();
    // Let it finish starting (phase 3 starts its event loops after the
    // `listening on` line) before the baseline.
    std::thread::sleep(Duration::from_millis(500));
    let listen_port = proxy.addr.port();
    let fd_kinds = |pid| measure::fd_kinds(pid, listen_port, origin_addr.port());
    let baseline = usage(pid);
    let fd_kinds_baseline = fd_kinds(pid);
    eprintln!(
        "{}: pid {pid}, {} fds, {} MiB at the start; {} of load",
        phase.name,
        baseline.fds,
        baseline.rss_kib / 1024,
        minutes(config.duration)
    );

    let shared = Arc::new(Shared {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        env: Env {
            proxy: proxy.addr,
            origin: origin_addr,
            connect: phase.connect,
        },
        mix: config.mix.clone(),
        restarts: Mutex::new(Vec::new()),
        tally: Mutex::new(Tally::default()),
        last_silent: Mutex::new(None),
    });
    let load = {
        let shared = Arc::clone(&shared);
        let clients = config.clients;
        std::thread::Builder::new()
            .name("soak-load".into())
            .spawn(move || run_clients(shared, clients, seed))
            .context("cannot start the load thread")?
    };

    let mut notes = Vec::new();
    let mut samples = Vec::new();
    let sample = |shared: &Shared| {
        let now = usage(pid);
        let close_wait = fd_kinds(pid)
            .iter()
            .filter(|(kind, _)| kind.contains("CLOSE_WAIT"))
            .map(|(_, n)| n)
            .sum();
        let tally = lock(&shared.tally);
        SampleRow {
            t_s: shared.elapsed().as_secs_f64(),
            fds: now.fds,
            close_wait,
            rss_kib: now.rss_kib,
            threads: now.threads,
            exchanges: tally.exchanges,
            unexpected: tally.unexpected,
        }
    };
    samples.push(sample(&shared));
    let end = shared.start + config.duration;
    let mut next_sample = shared.start + config.sample_every;
    let mut next_restart = shared.start + jittered(config.restart_every, &mut rng);
    let mut next_progress = shared.start + Duration::from_secs(60);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if proxy.has_exited() {
            notes.push(format!(
                "the proxy exited after {:.1} s of load (see logs/{}.log)",
                shared.elapsed().as_secs_f64(),
                phase.name
            ));
            break;
        }
        if now >= next_sample {
            samples.push(sample(&shared));
            next_sample += config.sample_every;
        }
        if now >= next_restart {
            if let Err(e) = upstream.restart(&shared) {
                notes.push(format!("{e:#}; the phase stopped early"));
                break;
            }
            next_restart = Instant::now() + jittered(config.restart_every, &mut rng);
        }
        if now >= next_progress {
            if let Some(last) = samples.last() {
                eprintln!(
                    "  {} {:>4.0} s: {} exchanges, {} unexpected, {} restarts, {} fds, {} MiB",
                    phase.name,
                    shared.elapsed().as_secs_f64(),
                    last.exchanges,
                    last.unexpected,
                    shared.restarts().len(),
                    last.fds,
                    last.rss_kib / 1024
                );
            }
            next_progress += Duration::from_secs(60);
        }
        let wake = end.min(next_sample).min(next_restart).min(next_progress);
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        );
    }
    let load_s = shared.elapsed().as_secs_f64();
    if !proxy.has_exited() {
        samples.push(sample(&shared));
    }
    let fd_kinds_end_of_load = fd_kinds(pid);
    shared.stop.store(true, Ordering::Relaxed);
    // Every client finishes its exchange (bounded by the deadline) and stops.
    match load.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => notes.push(format!("the load failed: {e:#}")),
        Err(_) => notes.push("the load thread panicked".to_string()),
    }
    let drained_s = shared.elapsed().as_secs_f64() - load_s;
    std::thread::sleep(QUIET);
    let at_rest = (!proxy.has_exited()).then(|| usage(pid));
    let fd_kinds_at_rest = fd_kinds(pid);
    let proxy_exited = proxy.has_exited();
    if proxy_exited && notes.iter().all(|n| !n.contains("exited")) {
        notes.push("the proxy exited after the load".to_string());
    }
    let proxy_command = proxy.command.clone();
    proxy.stop();
    upstream.stop();

    let restarts = shared.restarts().clone();
    let tally = std::mem::take(&mut *lock(&shared.tally));
    let mut kinds: Vec<KindTally> = Kind::ALL
        .iter()
        .filter_map(|k| tally.kinds.get(k).cloned())
        .collect();
    kinds.sort_by_key(|k| {
        Kind::ALL
            .iter()
            .position(|all| all.name() == k.kind)
            .unwrap_or(usize::MAX)
    });
    let (expected, tolerated) = kinds
        .iter()
        .fold((0, 0), |(e, t), k| (e + k.expected, t + k.tolerated));
    let faults_expected = kinds
        .iter()
        .filter(|k| {
            Kind::ALL
                .iter()
                .any(|all| all.name() == k.kind && all.is_fault())
        })
        .map(|k| k.expected)
        .sum();
    Ok(PhaseSoak {
        phase: phase.name.to_string(),
        model: phase.model.to_string(),
        proxy_command,
        origin: origin_addr.to_string(),
        load_s,
        drained_s,
        exchanges: tally.exchanges,
        expected,
        faults_expected,
        tolerated,
        unexpected: tally.unexpected,
        kinds,
        unexpected_by_reason: tally
            .reasons
            .iter()
            .map(|((kind, reason), count)| ReasonTally {
                kind: kind.name().to_string(),
                reason: reason.name().to_string(),
                count: *count,
            })
            .collect(),
        examples: tally.examples,
        restarts: restarts
            .iter()
            .map(|r| report::RestartRow {
                killed_s: r.killed.as_secs_f64(),
                ready_s: r.ready.map(|d| d.as_secs_f64()),
            })
            .collect(),
        baseline,
        at_rest,
        fd_kinds: report::FdKinds {
            before: fd_kinds_baseline,
            end_of_load: fd_kinds_end_of_load,
            at_rest: fd_kinds_at_rest,
        },
        fds: report::summarize(&samples, |s| s.fds as f64, report::FD_NOISE),
        rss_kib: report::summarize(&samples, |s| s.rss_kib as f64, report::RSS_NOISE_KIB),
        threads: report::summarize(&samples, |s| s.threads as f64, 0.0),
        samples,
        proxy_exited,
        log_lines: report::log_excerpt(&proxy_log),
        notes,
    })
}
