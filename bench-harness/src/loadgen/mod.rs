//! The built-in load generator: what the harness uses when wrk or ab are not
//! installed, and for what they cannot do (CONNECT tunnels, idle clients,
//! constant-rate load).
//!
//! # Shape: wrk's, in tokio
//!
//! `threads` OS threads each run a single-threaded tokio runtime with its
//! share of the `connections`. Every connection is a task that loops:
//! send a request, read the whole response, record the latency, repeat.
//! Because a thread's tasks never leave it, they share that thread's
//! counters and its [`Histogram`] through an `Rc<RefCell<..>>`: recording a
//! latency is a plain memory write, with no lock and no atomic on the hot
//! path. The per-thread histograms are merged once, at the end. (A shared
//! histogram behind a mutex would make the generator's own contention part
//! of what it measures.)
//!
//! # Closed loop and constant rate
//!
//! By default each connection sends its next request as soon as the previous
//! response has arrived (a *closed loop*, like wrk and ab): latency is
//! measured from the moment the request is sent.
//!
//! That hides the worst of a stall. If the proxy freezes for one second, a
//! closed-loop client sends nothing during that second, so it records one
//! slow request instead of the hundreds that real users, who do not wait for
//! each other, would have suffered. Gil Tene called this *coordinated
//! omission*. With [`LoadSpec::rate`] the generator works like wrk2: every
//! request has an *intended* send time on a fixed schedule (`rate` requests
//! per second spread over the connections), and its latency is measured from
//! that intended time, so time spent waiting for a stalled connection counts
//! against the proxy, as it would for a user.
//!
//! # What counts
//!
//! A request counts once its whole response has been read (any status;
//! non-2xx ones are also counted in [`ErrorCounts::non_2xx`]). Failures are
//! sorted by where they happened ([`client::Failure`]) or counted as
//! timeouts; they have no latency. When a timed run ends, requests still in
//! flight are abandoned and counted in [`LoadReport::unfinished`] (wrk does
//! the same without telling you). In a closed loop every connection always
//! has a request in flight, so that number is normally the concurrency; the
//! telling one is [`LoadReport::starved`]: connections that got no response
//! at all during the run (a proxy that serves some clients and leaves the
//! others waiting in a queue or a backlog). Their wait is in no percentile.

pub mod client;
pub mod idle;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::task::LocalSet;

use crate::results::{ErrorCounts, Latency};
use client::{Failure, Target};

/// Latencies are recorded in microseconds, from 1 µs to one hour, with 3
/// significant digits (0.1% resolution at any magnitude).
const LATENCY_MAX_US: u64 = 3_600_000_000;
const LATENCY_SIGFIG: u8 = 3;

/// A connection that could not connect waits this long before trying again,
/// so a proxy that refuses connections is not hammered in a busy loop.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(5);

/// Threads start together, this long after [`run`] is called.
const START_DELAY: Duration = Duration::from_millis(20);

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long (wrk's `-d`).
    After(Duration),
    /// After this many requests in all, successful or not (ab's `-n`), or
    /// after `max_time`, whichever comes first.
    Requests { count: u64, max_time: Duration },
}

/// What to load, how hard, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where to connect (the proxy).
    pub addr: SocketAddr,
    /// The request's `Host` field.
    pub host: String,
    /// The request target, e.g. `/bytes/1024`.
    pub path: String,
    /// Concurrent connections (each with at most one request in flight).
    pub connections: usize,
    /// OS threads (at most `connections` are used).
    pub threads: usize,
    /// Reuse connections (keep-alive), or open a new one per request.
    pub keep_alive: bool,
    pub stop: Stop,
    /// Constant-rate mode: intended requests per second over all
    /// connections, latency measured from the intended send time.
    pub rate: Option<f64>,
    /// How long one request may take (connecting included).
    pub timeout: Duration,
    /// Send every request through a CONNECT tunnel to this `HOST:PORT`.
    pub tunnel: Option<String>,
}

impl LoadSpec {
    /// A command-line-like description for the report, e.g.
    /// `builtin -c 100 -t 2 -d 2s --keep-alive http://127.0.0.1:8001/bytes/1024`.
    pub fn describe(&self) -> String {
        let mut s = format!("builtin -c {} -t {}", self.connections, self.threads);
        match self.stop {
            Stop::After(d) => s.push_str(&format!(" -d {}s", d.as_secs_f64())),
            Stop::Requests { count, .. } => s.push_str(&format!(" -n {count}")),
        }
        if let Some(rate) = self.rate {
            s.push_str(&format!(" --rate {rate}"));
        }
        s.push_str(if self.keep_alive {
            " --keep-alive"
        } else {
            " --new-connection-per-request"
        });
        s.push_str(&format!(" --timeout {}s", self.timeout.as_secs_f64()));
        if let Some(tunnel) = &self.tunnel {
            s.push_str(&format!(" --connect-tunnel {tunnel}"));
        }
        s.push_str(&format!(" http://{}{}", self.addr, self.path));
        s
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Complete responses (any status).
    pub requests: u64,
    /// Bytes read for them (heads and bodies).
    pub bytes: u64,
    /// From the start to the end of the load.
    pub elapsed: Duration,
    pub errors: ErrorCounts,
    /// In flight when a timed run ended; not in `latency`.
    pub unfinished: u64,
    /// Connections that completed no exchange during the whole run.
    pub starved: u64,
    /// Latency of every complete response, in microseconds.
    pub latency: Histogram<u64>,
}

impl LoadReport {
    pub fn req_per_s(&self) -> f64 {
        per_second(self.requests as f64, self.elapsed)
    }

    pub fn mib_per_s(&self) -> f64 {
        per_second(self.bytes as f64 / (1024.0 * 1024.0), self.elapsed)
    }

    /// p50 / p90 / p99 / max in milliseconds, or None if nothing completed.
    pub fn latency_ms(&self) -> Option<Latency> {
        if self.latency.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            p50: ms(self.latency.value_at_quantile(0.50)),
            p90: ms(self.latency.value_at_quantile(0.90)),
            p99: ms(self.latency.value_at_quantile(0.99)),
            max: ms(self.latency.max()),
        })
    }
}

fn per_second(amount: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { amount / secs } else { 0.0 }
}

/// Runs the load described by `spec` and blocks until it is over.
pub fn run(spec: &LoadSpec) -> anyhow::Result<LoadReport> {
    if spec.connections == 0 {
        bail!("the load needs at least one connection");
    }
    if let Some(rate) = spec.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("the request rate must be a positive number, not {rate}");
        }
    }
    let threads = spec.threads.clamp(1, spec.connections);
    let empty = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGFIG)
        .map_err(|e| anyhow!("cannot create a latency histogram: {e}"))?;
    let target = Target {
        addr: spec.addr,
        request: client::request_bytes(&spec.host, &spec.path, spec.keep_alive),
        tunnel: spec.tunnel.clone(),
        keep_alive: spec.keep_alive,
    };
    let start = Instant::now() + START_DELAY;
    let deadline = start
        + match spec.stop {
            Stop::After(d) => d,
            Stop::Requests { max_time, .. } => max_time,
        };

    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let plan = ThreadPlan {
            target: target.clone(),
            // Connection j runs on thread j % threads.
            connections: (index..spec.connections).step_by(threads).collect(),
            total_connections: spec.connections,
            budget: match spec.stop {
                Stop::After(_) => None,
                Stop::Requests { count, .. } => {
                    let share = count / threads as u64;
                    Some(share + u64::from((index as u64) < count % threads as u64))
                }
            },
            rate: spec.rate,
            timeout: spec.timeout,
            start,
            deadline,
            histogram: empty.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("load-{index}"))
            .spawn(move || run_thread(plan))
            .context("cannot start a load generator thread")?;
        handles.push(handle);
    }

    let mut report = LoadReport {
        requests: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        errors: ErrorCounts::default(),
        unfinished: 0,
        starved: 0,
        latency: empty,
    };
    let mut end = start;
    for handle in handles {
        let tally = handle
            .join()
            .map_err(|_| anyhow!("a load generator thread panicked"))??;
        report.requests += tally.requests;
        report.bytes += tally.bytes;
        report.unfinished += tally.unfinished;
        report.starved += tally.starved;
        add_errors(&mut report.errors, &tally.errors);
        report
            .latency
            .add(&tally.histogram)
            .map_err(|e| anyhow!("cannot merge latency histograms: {e}"))?;
        end = end.max(tally.last_event);
    }
    report.elapsed = match spec.stop {
        Stop::After(d) => d,
        Stop::Requests { .. } => end.saturating_duration_since(start),
    };
    Ok(report)
}

fn add_errors(total: &mut ErrorCounts, more: &ErrorCounts) {
    total.connect += more.connect;
    total.read += more.read;
    total.write += more.write;
    total.timeout += more.timeout;
    total.non_2xx += more.non_2xx;
    total.other += more.other;
}

/// One thread's share of the work.
#[derive(Debug)]
struct ThreadPlan {
    target: Target,
    /// Global indexes of this thread's connections (they set the rate schedule).
    connections: Vec<usize>,
    total_connections: usize,
    /// Requests this thread may still start (None: until the deadline).
    budget: Option<u64>,
    rate: Option<f64>,
    timeout: Duration,
    start: Instant,
    deadline: Instant,
    histogram: Histogram<u64>,
}

/// Everything a thread counts. Only its own tasks touch it.
#[derive(Debug)]
struct Tally {
    requests: u64,
    bytes: u64,
    errors: ErrorCounts,
    unfinished: u64,
    starved: u64,
    histogram: Histogram<u64>,
    /// When the last request of this thread ended (for count-limited runs).
    last_event: Instant,
}

/// The state a thread's connection tasks share (single-threaded: `Rc`, `Cell`).
#[derive(Debug)]
struct ThreadShared {
    target: Target,
    total_connections: usize,
    budget: Cell<Option<u64>>,
    rate: Option<f64>,
    timeout: Duration,
    start: Instant,
    deadline: Instant,
    tally: RefCell<Tally>,
}

impl ThreadShared {
    /// Takes one request from the budget; false when it is spent.
    fn take_budget(&self) -> bool {
        match self.budget.get() {
            None => true,
            Some(0) => false,
            Some(n) => {
                self.budget.set(Some(n - 1));
                true
            }
        }
    }
}

fn run_thread(plan: ThreadPlan) -> anyhow::Result<Tally> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime for the load generator")?;
    let shared = Rc::new(ThreadShared {
        target: plan.target,
        total_connections: plan.total_connections,
        budget: Cell::new(plan.budget),
        rate: plan.rate,
        timeout: plan.timeout,
        start: plan.start,
        deadline: plan.deadline,
        tally: RefCell::new(Tally {
            requests: 0,
            bytes: 0,
            errors: ErrorCounts::default(),
            unfinished: 0,
            starved: 0,
            histogram: plan.histogram,
            last_event: plan.start,
        }),
    });
    let local = LocalSet::new();
    for index in plan.connections {
        local.spawn_local(connection_loop(Rc::clone(&shared), index));
    }
    // A LocalSet, awaited, runs until all its tasks have finished.
    runtime.block_on(local);
    let tally = match Rc::try_unwrap(shared) {
        Ok(shared) => shared.tally.into_inner(),
        // Every task has finished, so no other Rc is left; clone to be safe.
        Err(shared) => {
            let t = shared.tally.borrow();
            Tally {
                requests: t.requests,
                bytes: t.bytes,
                errors: t.errors,
                unfinished: t.unfinished,
                starved: t.starved,
                histogram: t.histogram.clone(),
                last_event: t.last_event,
            }
        }
    };
    Ok(tally)
}

/// How one exchange ended.
enum Outcome {
    Done(client::Response),
    Failed(Failure),
    TimedOut,
}

/// One connection's life: request after request until the run is over.
async fn connection_loop(shared: Rc<ThreadShared>, index: usize) {
    let mut buf = vec![0u8; client::READ_BUFFER];
    let mut stream: Option<TcpStream> = None;
    // Constant rate: this connection sends every `interval`, its schedule
    // offset by index/rate so the connections do not fire all at once.
    let interval = shared
        .rate
        .map(|rate| Duration::from_secs_f64(shared.total_connections as f64 / rate));
    let mut next_send = shared.start
        + shared
            .rate
            .map(|rate| Duration::from_secs_f64(index as f64 / rate))
            .unwrap_or_default();
    tokio::time::sleep_until(shared.start.into()).await;
    let mut answered = false;

    loop {
        if Instant::now() >= shared.deadline || !shared.take_budget() {
            break;
        }
        let intended = match interval {
            Some(interval) => {
                let at = next_send;
                next_send += interval;
                if at >= shared.deadline {
                    break;
                }
                // If we are behind schedule this returns at once: the
                // latency then includes the time the request waited to be
                // sent, which is the point.
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };

        let attempt = tokio::time::timeout(
            shared.timeout,
            one_exchange(&mut stream, &shared.target, &mut buf),
        );
        let outcome = tokio::select! {
            result = attempt => match result {
                Ok(Ok(response)) => Outcome::Done(response),
                Ok(Err(failure)) => Outcome::Failed(failure),
                Err(_elapsed) => Outcome::TimedOut,
            },
            _ = tokio::time::sleep_until(shared.deadline.into()) => {
                shared.tally.borrow_mut().unfinished += 1;
                break;
            }
        };

        let now = Instant::now();
        // The tally is borrowed only in this block, never across an await.
        let refused = {
            let mut tally = shared.tally.borrow_mut();
            tally.last_event = tally.last_event.max(now);
            match outcome {
                Outcome::Done(response) => {
                    answered = true;
                    tally.requests += 1;
                    tally.bytes += response.bytes;
                    if !(200..300).contains(&response.status) {
                        tally.errors.non_2xx += 1;
                    }
                    let micros = now.saturating_duration_since(intended).as_micros();
                    let micros = u64::try_from(micros).unwrap_or(u64::MAX).max(1);
                    tally.histogram.saturating_record(micros);
                    if !response.reusable {
                        stream = None;
                    }
                }
                Outcome::TimedOut => {
                    tally.errors.timeout += 1;
                    stream = None;
                }
                Outcome::Failed(failure) => {
                    stream = None;
                    match failure {
                        Failure::Connect => tally.errors.connect += 1,
                        Failure::Write => tally.errors.write += 1,
                        Failure::Read => tally.errors.read += 1,
                    }
                }
            }
            matches!(outcome, Outcome::Failed(Failure::Connect))
        };
        if refused {
            tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        }
    }
    if !answered {
        shared.tally.borrow_mut().starved += 1;
    }
}

/// Opens the connection if there is none, then runs one exchange on it.
async fn one_exchange(
    stream: &mut Option<TcpStream>,
    target: &Target,
    buf: &mut [u8],
) -> Result<client::Response, Failure> {
    let connection = match stream {
        Some(connection) => connection,
        None => stream.insert(client::open(target, buf).await?),
    };
    client::exchange(connection, target, buf).await
}
