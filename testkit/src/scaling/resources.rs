//! Resources under attack: hundreds of slowloris clients, each holding a
//! connection by sending its head a byte a second, are cut off by
//! `--header-timeout`, and ordinary clients are served meanwhile.
//!
//! (Descriptors and memory are checked on every phase, phase 1 included,
//! by the conformance suite's `resources` cases.)

use std::thread;
use std::time::{Duration, Instant};

use origin::pattern;

use super::ScalingSuite;
use crate::cases::get;
use crate::process::raise_descriptor_limit;
use crate::slowloris::SlowClient;

/// Slowloris connections held open at once.
const SLOW_CLIENTS: usize = 500;
/// The proxy's `--header-timeout` in the slowloris case.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Each slow client sends one byte of its head this often: far more often
/// than the header timeout, so a timeout restarted by every byte would
/// never fire.
const DRIP_EVERY: Duration = Duration::from_secs(1);
/// The slow clients stop sending this long after the first connected.
const DRIP_FOR: Duration = Duration::from_secs(6);
/// The share of slow clients the proxy must have cut by then, in percent.
const CUT_PERCENT: usize = 95;
/// Ordinary requests made while the slow clients hold their connections.
const NORMAL_REQUESTS: usize = 20;
/// How much earlier than its header timeout (counted from just before its
/// connect) a slow client may be cut. An event loop reads the clock once
/// per turn (phase 3 does, like nginx), so connections accepted late in a
/// turn get a start time a little before their real accept; 8 µs early
/// has been seen. A cut earlier than this is not clock granularity.
const CLOCK_TOLERANCE: Duration = Duration::from_millis(250);
/// How long each ordinary request may take, connect to last body byte: a
/// behaviour bound (served, not stuck behind the slow clients), generous
/// for a debug build on a busy machine.
const NORMAL_LIMIT: Duration = Duration::from_secs(2);

/// 500 slowloris clients connect (`--header-timeout 2`), each sending one
/// byte of its request head every second, for at most 6 s. Meanwhile, once
/// they are all connected, an ordinary client makes 20 requests, each on a
/// new connection, 100 ms apart: every one gets its 200 and full body
/// within 2 s. Before the slow clients stop sending, the proxy has cut at
/// least 95% of them (a 408 or a close, nothing else), and none before its
/// header timeout had passed since it connected (give or take 250 ms of
/// clock granularity).
///
/// A proxy that times each read instead of the whole head never cuts a
/// client that sends a byte a second; a blocking proxy with too few
/// threads, or an event loop stalled by them, fails the ordinary client.
/// The test process and the proxy each hold 500 sockets: RLIMIT_NOFILE is
/// raised to its hard limit, and if that is too low the case says why and
/// passes without running.
pub fn slowloris_is_cut_by_header_timeout_and_others_are_served(suite: &ScalingSuite) {
    if let Err(why) = raise_descriptor_limit(2 * SLOW_CLIENTS as u64 + 1000) {
        eprintln!("SKIPPED slowloris_is_cut_by_header_timeout_and_others_are_served: {why}");
        return;
    }
    let origin = suite.origin();
    let timeout = HEADER_TIMEOUT.as_secs().to_string();
    let proxy = suite.reverse(&origin, &["--header-timeout", &timeout]);

    let started = Instant::now();
    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for i in 0..SLOW_CLIENTS {
        match SlowClient::connect(proxy.addr()) {
            Ok(c) => slow.push(c),
            Err(e) => proxy.fail(format!("cannot connect slow client {i}: {e}")),
        }
    }
    let stop_sending = started + DRIP_FOR;

    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..NORMAL_REQUESTS {
                let begun = Instant::now();
                let mut c = proxy.connect();
                c.set_deadline(NORMAL_LIMIT);
                c.send(&get("/bytes/1024"));
                let r = c.read_response();
                c.check_eq(
                    r.status,
                    200,
                    &format!("status of ordinary request {i} among slow clients"),
                );
                c.check_bytes(&r.body, &pattern(1024), "body of an ordinary request");
                let took = begun.elapsed();
                c.check(
                    took <= NORMAL_LIMIT,
                    format_args!(
                        "ordinary request {i} took {took:?} among {SLOW_CLIENTS} slow clients \
                         (limit {NORMAL_LIMIT:?}): they are holding up the proxy"
                    ),
                );
                thread::sleep(Duration::from_millis(100));
            }
        });

        // One thread drives every slow client: poll, and drip when due.
        while Instant::now() < stop_sending {
            let mut open = 0;
            for c in &mut slow {
                if c.tick(DRIP_EVERY).unwrap_or_else(|e| proxy.fail(e)) {
                    open += 1;
                }
            }
            if open == 0 {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });

    let cut: Vec<&SlowClient> = slow.iter().filter(|c| c.cut_after().is_some()).collect();
    let cut_times: Vec<Duration> = cut.iter().filter_map(|c| c.cut_after()).collect();
    // Shown with --nocapture: the figures behind the verdict.
    eprintln!(
        "slowloris: {} of {SLOW_CLIENTS} cut, the first after {:?}, the last after {:?}",
        cut.len(),
        cut_times.iter().min(),
        cut_times.iter().max()
    );
    if cut.len() * 100 < SLOW_CLIENTS * CUT_PERCENT {
        proxy.fail(format!(
            "{DRIP_FOR:?} after the first of {SLOW_CLIENTS} slow clients connected (each \
             sending a byte every {DRIP_EVERY:?}), the proxy had cut only {} of them; with \
             --header-timeout {timeout} it must cut at least {CUT_PERCENT}%: the timeout \
             must bound the whole head, not each read",
            cut.len()
        ));
    }
    for c in &cut {
        c.check_answer().unwrap_or_else(|e| proxy.fail(e));
        let earliest = HEADER_TIMEOUT - CLOCK_TOLERANCE;
        if let Some(after) = c.cut_after().filter(|&after| after < earliest) {
            proxy.fail(format!(
                "a slow client was cut {after:?} after it connected, before the \
                 {HEADER_TIMEOUT:?} header timeout (give or take {CLOCK_TOLERANCE:?})"
            ));
        }
    }
}
