//! The proxy's end, with many connections: a graceful shutdown that
//! finishes what is in flight and does not wait for idle keep-alive
//! clients, and one that comes in the middle of a steady load and still
//! lets every response it started finish whole.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use origin::pattern;

use super::ScalingSuite;
use crate::Client;
use crate::cases::{check_answer, get, wait_until};

/// `--idle-timeout 60`, one idle keep-alive client (after one exchange) and
/// one exchange in flight (`GET /delay/1500`); SIGTERM 300 ms after the
/// in-flight request was sent. Then:
/// - the idle connection is closed by the proxy (EOF) within 5 s, long
///   before the 60 s idle timeout and the 30 s `--shutdown-grace` (so it is
///   not the process exiting at the end of the grace period that closes
///   it): a shutdown must not wait for clients that may never send again;
/// - a connection made after the signal is refused, or closed without a
///   response (it may sit in the backlog until the listener closes);
/// - the in-flight exchange completes (200, full body);
/// - the process exits with status 0 within 10 s.
pub fn shutdown_finishes_in_flight_refuses_new_and_exits_0(suite: &ScalingSuite) {
    let origin = suite.origin();
    let mut proxy = suite.reverse(&origin, &["--idle-timeout", "60", "--shutdown-grace", "30"]);
    let mut idle = proxy.connect();
    idle.send(&get("/bytes/10"));
    let r = idle.read_response();
    idle.check_bytes(&r.body, &pattern(10), "body before going idle");
    idle.check(
        !r.says_close(),
        "the idle client's connection must stay open (keep-alive)",
    );

    let mut in_flight = proxy.connect();
    in_flight.send(&get("/delay/1500"));
    std::thread::sleep(Duration::from_millis(300));
    proxy.terminate();

    // Far below the idle timeout and the grace period: only the shutdown
    // closing idle connections can close it this soon.
    idle.set_timeout(Duration::from_secs(5));
    idle.expect_close();

    // The idle close shows the shutdown has begun.
    if let Ok(mut late) = Client::try_connect(proxy.addr()) {
        late.set_timeout(Duration::from_secs(10));
        // It may already be closed (a reset): that is an allowed outcome.
        let _ = late.try_send(&get("/bytes/10"));
        if let Some(r) = late.read_response_or_close() {
            late.fail(format!(
                "a connection made after SIGTERM was answered ({} {}) instead of refused or closed",
                r.status, r.reason
            ));
        }
    }

    let r = in_flight.read_response();
    in_flight.check_eq(r.status, 200, "status of the exchange in flight at SIGTERM");
    in_flight.check_eq(
        r.body_text().as_str(),
        "delayed 1500 ms\n",
        "body of the exchange in flight at SIGTERM",
    );
    drop(in_flight);

    match proxy.wait_for_exit(Duration::from_secs(10)) {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => proxy.fail(format!(
            "after SIGTERM the proxy exited with {status}, not 0"
        )),
        None => proxy.fail("the proxy was still running 10 s after SIGTERM"),
    }
}

/// Clients in the shutdown-under-load case, each on its own keep-alive
/// connection, each sending its next request as soon as a response ends.
const LOAD_CLIENTS: usize = 20;
/// The body of every load request (`GET /bytes/65536`).
const LOAD_BODY: usize = 64 * 1024;
/// Half the load clients ask the origin to stall this long in the middle
/// of each body, so that at any moment, the signal's included, most of
/// their responses are half-sent: a proxy that drops responses in flight
/// cannot get away with it because its writes happened to be done.
const LOAD_STALL_MS: u64 = 200;
/// `--shutdown-grace` in the shutdown-under-load case: shorter than the
/// clients go on, so they see whatever the proxy does when it ends.
const LOAD_GRACE: Duration = Duration::from_secs(2);
/// How long after SIGTERM the load clients give up on the proxy ending
/// their connections (it must have, by the end of the grace period).
const LOAD_AFTER_SIGNAL: Duration = Duration::from_secs(5);
/// The case's own bound on the load, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(20);

/// What one load client saw.
#[derive(Debug)]
struct LoadOutcome {
    /// Complete responses received.
    exchanges: usize,
    /// True if the proxy ended the connection; false if the client gave up.
    ended_by_proxy: bool,
}

/// The state the load clients share with the case.
#[derive(Debug, Default)]
struct LoadState {
    /// When SIGTERM was sent (set just before sending it).
    signalled: OnceLock<Instant>,
    /// Clients that have completed at least one exchange.
    under_way: AtomicUsize,
    /// Connections the proxy has ended.
    ended: AtomicUsize,
    /// Set by the case to make every client stop.
    stop: AtomicBool,
}

/// One load client: back-to-back `GET target` (64 KiB) on one keep-alive
/// connection until the proxy ends it. Every response that starts must be
/// a complete 200 with the full body (or, after SIGTERM, a 503 answer); the
/// connection may end only after SIGTERM, and only between responses.
#[track_caller]
fn load_client(addr: SocketAddr, target: &str, expected: &[u8], state: &LoadState) -> LoadOutcome {
    let started = Instant::now();
    let mut c = Client::connect(addr);
    let mut exchanges = 0;
    loop {
        let signalled = state.signalled.get();
        if state.stop.load(Ordering::SeqCst)
            || signalled.is_some_and(|at| at.elapsed() > LOAD_AFTER_SIGNAL)
            || started.elapsed() > LOAD_LIMIT
        {
            return LoadOutcome {
                exchanges,
                ended_by_proxy: false,
            };
        }
        // After the signal the proxy may have closed: a failed send is then
        // the end of the connection, like an EOF.
        let response = match c.try_send(&get(target)) {
            Ok(()) => c.read_possibly_truncated_response_or_close(),
            Err(_) => None,
        };
        let Some(r) = response else {
            c.check(
                state.signalled.get().is_some(),
                "the proxy ended a busy keep-alive connection before SIGTERM",
            );
            state.ended.fetch_add(1, Ordering::SeqCst);
            return LoadOutcome {
                exchanges,
                ended_by_proxy: true,
            };
        };
        c.check(
            r.complete,
            format_args!(
                "a response that had started ({} {}) broke off after {} of its {LOAD_BODY} body \
                 bytes: a shutdown must let every response it started finish",
                r.status,
                r.reason,
                r.body.len()
            ),
        );
        if r.status == 503 && state.signalled.get().is_some() {
            // Refusing a new request during shutdown is allowed.
            check_answer(&c, &r, 503);
        } else {
            c.check_eq(r.status, 200, "status of a load request");
            c.check_bytes(&r.body, expected, "body of a load request");
            exchanges += 1;
            if exchanges == 1 {
                state.under_way.fetch_add(1, Ordering::SeqCst);
            }
        }
        if r.says_close() {
            c.check(
                state.signalled.get().is_some(),
                "a response said Connection: close on a busy keep-alive connection before SIGTERM",
            );
            c.expect_close();
            state.ended.fetch_add(1, Ordering::SeqCst);
            return LoadOutcome {
                exchanges,
                ended_by_proxy: true,
            };
        }
    }
}

/// 20 clients each send back-to-back keep-alive `GET /bytes/65536`; for
/// half of them the origin stalls 200 ms in the middle of every body, so
/// the signal finds responses half-sent. Once every client has had a
/// response and the load has run for a second, SIGTERM
/// (`--shutdown-grace 2`). Then:
/// - every response whose head arrived completes with its full body, on
///   every connection, before and after the signal: the proxy ends a
///   connection only between responses (a 503 answer to a request that
///   arrives during the shutdown is allowed);
/// - every connection is ended by the proxy (it stops taking requests),
///   and none before the signal;
/// - a connection made once the shutdown has visibly begun (a load
///   connection was ended) is refused, or closed without a response;
/// - the process exits with status 0 within the grace period + 5 s.
pub fn shutdown_under_load_completes_started_responses(suite: &ScalingSuite) {
    let origin = suite.origin();
    let grace = LOAD_GRACE.as_secs().to_string();
    let mut proxy = suite.reverse(&origin, &["--shutdown-grace", &grace]);
    let addr = proxy.addr();
    let expected = pattern(LOAD_BODY);
    let state = LoadState::default();
    let started = Instant::now();

    let (outcomes, under_way, begun, late_answer, exit) = thread::scope(|s| {
        let (state, expected) = (&state, &expected);
        let clients: Vec<_> = (0..LOAD_CLIENTS)
            .map(|i| {
                let target = if i % 2 == 0 {
                    format!("/bytes/{LOAD_BODY}")
                } else {
                    format!("/bytes/{LOAD_BODY}?stall={LOAD_STALL_MS}")
                };
                s.spawn(move || load_client(addr, &target, expected, state))
            })
            .collect();
        let under_way = wait_until(Duration::from_secs(10), || {
            state.under_way.load(Ordering::SeqCst) == LOAD_CLIENTS
        });
        let (mut begun, mut late_answer, mut exit) = (false, None, None);
        if under_way {
            thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
            let signalled = Instant::now();
            let _ = state.signalled.set(signalled);
            proxy.terminate();
            begun = wait_until(LOAD_GRACE + Duration::from_secs(3), || {
                state.ended.load(Ordering::SeqCst) > 0
            });
            if begun {
                if let Ok(mut late) = Client::try_connect(addr) {
                    late.set_timeout(LOAD_GRACE + Duration::from_secs(5));
                    // It may already be closed (a reset): an allowed outcome.
                    let _ = late.try_send(&get("/bytes/10"));
                    late_answer = late
                        .read_response_or_close()
                        .map(|r| format!("{} {}", r.status, r.reason));
                }
            }
            let exit_by = signalled + LOAD_GRACE + Duration::from_secs(5);
            exit = proxy.wait_for_exit(exit_by.saturating_duration_since(Instant::now()));
        }
        state.stop.store(true, Ordering::SeqCst);
        let outcomes: Vec<LoadOutcome> = clients
            .into_iter()
            .map(|c| {
                c.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (outcomes, under_way, begun, late_answer, exit)
    });

    if !under_way {
        proxy.fail(format!(
            "only {} of {LOAD_CLIENTS} load clients had a response within 10 s",
            state.under_way.load(Ordering::SeqCst)
        ));
    }
    if !begun {
        proxy.fail(format!(
            "no load connection was ended within {:?} of SIGTERM (--shutdown-grace {grace})",
            LOAD_GRACE + Duration::from_secs(3)
        ));
    }
    if let Some(answer) = late_answer {
        proxy.fail(format!(
            "a connection made after SIGTERM was answered ({answer}) instead of refused or closed"
        ));
    }
    match exit {
        Some(status) if status.code() == Some(0) => {}
        Some(status) => proxy.fail(format!(
            "after SIGTERM under load the proxy exited with {status}, not 0"
        )),
        None => proxy.fail(format!(
            "the proxy was still running {:?} after SIGTERM (--shutdown-grace {grace})",
            LOAD_GRACE + Duration::from_secs(5)
        )),
    }
    let still_served = outcomes.iter().filter(|o| !o.ended_by_proxy).count();
    if still_served > 0 {
        proxy.fail(format!(
            "{still_served} of {LOAD_CLIENTS} load connections were still being served \
             {LOAD_AFTER_SIGNAL:?} after SIGTERM, beyond the {LOAD_GRACE:?} grace period"
        ));
    }
    let total: usize = outcomes.iter().map(|o| o.exchanges).sum();
    eprintln!("shutdown under load: {total} complete exchanges on {LOAD_CLIENTS} connections");
}
