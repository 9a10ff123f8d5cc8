//! One slow exchange and another client, per profile. Phase 1 serves one
//! exchange at a time (the head-of-line blocking it exists to show);
//! concurrent phases let the second client through while the first waits.

use std::thread;
use std::time::{Duration, Instant};

use origin::pattern;

use super::{get, wait_until};
use crate::Suite;

/// Phase 1: two clients each GET /delay/300 at the same time; served one
/// after the other, together they take at least 600 ms (a lower bound that
/// proves serial service, not a performance threshold).
///
/// Concurrent profiles: while the first client waits on /fault/silent
/// (an upstream that never answers), a second client's GET completes, and
/// the first client has still received nothing.
pub fn slow_exchange_follows_concurrency_profile(suite: &Suite) {
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &[]);

    if !suite.profile.concurrent {
        let start = Instant::now();
        // Scoped threads: a failing client fails the case when the scope ends.
        thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut c = proxy.connect();
                    c.send(&get("/delay/300"));
                    let r = c.read_response();
                    c.check_eq(r.status, 200, "status");
                    c.check_eq(r.body_text().as_str(), "delayed 300 ms\n", "body");
                });
            }
        });
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(600),
            "two 300 ms exchanges took {took:?} together: the {} profile serves one at a time",
            suite.profile.name
        );
        return;
    }

    let mut stuck = proxy.connect();
    stuck.send(&get("/fault/silent"));
    // Wait until the proxy is busy with it: it has connected upstream.
    let busy = wait_until(Duration::from_secs(5), || {
        origin.stats().connections_accepted() >= 1
    });
    stuck.check(
        busy,
        "the proxy never connected upstream for the first client",
    );

    let mut other = proxy.connect();
    other.send(&get("/bytes/1024"));
    let r = other.read_response();
    other.check_bytes(
        &r.body,
        &pattern(1024),
        "second client's body, while the first is stuck",
    );
    let still_waiting = stuck.is_still_waiting(Duration::from_millis(100));
    stuck.check(
        still_waiting,
        "the stuck client should still be waiting for its upstream",
    );
}
