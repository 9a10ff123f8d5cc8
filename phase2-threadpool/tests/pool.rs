//! What is specific to phase 2's model: a bounded pool of blocking workers.
//! (The behaviour every phase shares is in the conformance suite.)

use std::time::{Duration, Instant};

use testkit::{Profile, Suite};

fn suite() -> Suite {
    Suite::new(env!("CARGO_BIN_EXE_phase2-threadpool"), Profile::FULL)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// A request after which the client closes, freeing its worker.
fn get_and_close(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

/// With 2 workers and room for 3 connections, a 4th connection arriving while
/// three slow exchanges are admitted is refused at once with a 503, not
/// queued without bound.
#[test]
fn a_full_queue_sheds_new_connections_with_503() {
    let suite = suite();
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--workers", "2", "--max-connections", "3"]);
    let mut slow: Vec<_> = (0..3)
        .map(|_| {
            let mut c = proxy.connect();
            // Connection: close, or the first two would keep their workers
            // and the third would never be served (see the next test).
            c.send(&get_and_close("/delay/1500"));
            c
        })
        .collect();
    // Give the accept thread time to admit the three.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut extra = proxy.connect();
    extra.send(&get("/bytes/10"));
    let r = extra.read_response();
    extra.check_eq(
        r.status,
        503,
        "status of a connection over --max-connections",
    );
    extra.check(r.says_close(), "the 503 says Connection: close");
    extra.check(
        started.elapsed() < Duration::from_millis(1000),
        format!(
            "the 503 came at once, not after the slow exchanges ({:?})",
            started.elapsed()
        ),
    );
    // The admitted ones are all served (two at once, the third when a worker frees).
    for c in &mut slow {
        let r = c.read_response();
        c.check_eq(r.status, 200, "status of an admitted slow exchange");
    }
}

/// The cost of the model: an idle keep-alive client pins its worker. With
/// 2 workers and 2 idle keep-alive clients, a third client waits (queued)
/// until one of them leaves, then it is served.
#[test]
fn idle_keep_alive_clients_pin_their_workers() {
    let suite = suite();
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--workers", "2"]);
    let mut idle: Vec<_> = (0..2)
        .map(|_| {
            let mut c = proxy.connect();
            c.send(&get("/bytes/10"));
            let r = c.read_response();
            c.check_eq(r.status, 200, "first response on an idle-to-be connection");
            c
        })
        .collect();
    let mut third = proxy.connect();
    third.send(&get("/bytes/10"));
    let waiting = third.is_still_waiting(Duration::from_millis(700));
    third.check(
        waiting,
        "with both workers pinned by idle clients, the third client is not served",
    );
    drop(idle.pop());
    let r = third.read_response();
    third.check_eq(r.status, 200, "status once a worker is free");
}

/// `--pool rayon` runs the same proxy on rayon's pool (the chapter's
/// experiment); it must be just as correct.
#[test]
fn the_rayon_pool_serves_correctly() {
    let suite = suite();
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--pool", "rayon", "--workers", "4"]);
    let mut c = proxy.connect();
    for _ in 0..3 {
        c.send(&get("/bytes/1024"));
        let r = c.read_response();
        c.check_eq(r.status, 200, "status through the rayon pool");
        c.check_bytes(
            &r.body,
            &origin::pattern(1024),
            "body through the rayon pool",
        );
    }
}

/// Blocking I/O needs one thread per connection being served: the process
/// has at least `--workers` threads.
#[test]
fn the_pool_has_the_requested_number_of_threads() {
    let suite = suite();
    let origin = suite.origin();
    let proxy = suite.reverse(&origin, &["--workers", "16"]);
    let threads = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    if threads().is_none() {
        eprintln!("skipped: no /proc on this system");
        return;
    }
    // The pool starts its threads just after the listening line is printed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads().unwrap_or(0) < 16 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = threads().unwrap_or(0);
    assert!(n >= 16, "expected at least 16 threads, found {n}");
}
