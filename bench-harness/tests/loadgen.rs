//! The built-in load generator against the real origin (in-process, port 0):
//! are its counts, errors and percentiles right?

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use bench_harness::loadgen::idle::{self, IdleSpec};
use bench_harness::loadgen::{self, LoadSpec, Stop};
use origin::{Origin, OriginConfig};

fn origin() -> Origin {
    Origin::start_with(OriginConfig {
        workers: 2,
        ..OriginConfig::default()
    })
    .expect("origin starts")
}

fn spec(addr: SocketAddr, path: &str, connections: usize, stop: Stop) -> LoadSpec {
    LoadSpec {
        addr,
        host: addr.to_string(),
        path: path.to_string(),
        connections,
        threads: 2,
        keep_alive: true,
        stop,
        rate: None,
        timeout: Duration::from_secs(5),
        tunnel: None,
    }
}

fn count(n: u64) -> Stop {
    Stop::Requests {
        count: n,
        max_time: Duration::from_secs(20),
    }
}

#[test]
fn count_limited_run_sends_exactly_that_many_requests_on_kept_alive_connections() {
    let origin = origin();
    let report = loadgen::run(&spec(origin.addr(), "/bytes/1024", 4, count(200))).unwrap();
    assert_eq!(report.requests, 200);
    assert_eq!(report.starved, 0);
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(report.latency.len(), 200, "one latency per response");
    assert_eq!(origin.stats().requests_served(), 200);
    assert_eq!(
        origin.stats().connections_accepted(),
        4,
        "keep-alive: one connection per client"
    );
    // Each response: a head of some tens of bytes plus the 1024-byte body.
    assert!(
        report.bytes > 200 * 1024 && report.bytes < 200 * 1300,
        "{}",
        report.bytes
    );
}

#[test]
fn new_connection_mode_opens_one_connection_per_request() {
    let origin = origin();
    let mut spec = spec(origin.addr(), "/bytes/100", 3, count(30));
    spec.keep_alive = false;
    let report = loadgen::run(&spec).unwrap();
    assert_eq!(report.requests, 30);
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(origin.stats().connections_accepted(), 30);
}

#[test]
fn a_50ms_origin_gives_p50_of_at_least_50ms_and_bounded_throughput() {
    let origin = origin();
    let report = loadgen::run(&spec(
        origin.addr(),
        "/delay/50",
        4,
        Stop::After(Duration::from_secs(1)),
    ))
    .unwrap();
    let latency = report.latency_ms().expect("some requests completed");
    assert!(latency.p50 >= 50.0, "p50 {} ms", latency.p50);
    assert!(latency.max >= latency.p99 && latency.p99 >= latency.p90);
    assert!(latency.p90 >= latency.p50);
    // 4 connections, each at most one request per 50 ms, for 1 s.
    assert!(report.requests <= 4 * 20, "{}", report.requests);
    assert!(report.requests >= 4, "{}", report.requests);
    assert_eq!(report.elapsed, Duration::from_secs(1));
    assert!(report.req_per_s() <= 80.0 + f64::EPSILON);
}

#[test]
fn constant_rate_measures_latency_from_the_intended_send_time() {
    // One connection asked for 100 requests/s (one every 10 ms) of a 50 ms
    // origin: request k is due at 10k ms but can only finish at about
    // 50(k+1) ms. Measured from its intended send time its latency grows
    // by 40 ms per request; a closed loop would report 50 ms every time.
    let origin = origin();
    let mut rated = spec(
        origin.addr(),
        "/delay/50",
        1,
        Stop::After(Duration::from_secs(1)),
    );
    rated.rate = Some(100.0);
    let report = loadgen::run(&rated).unwrap();
    let latency = report.latency_ms().expect("some requests completed");
    assert!(latency.p50 >= 200.0, "p50 {} ms", latency.p50);
    assert!(latency.max >= 400.0, "max {} ms", latency.max);

    let closed = loadgen::run(&spec(
        origin.addr(),
        "/delay/50",
        1,
        Stop::After(Duration::from_secs(1)),
    ))
    .unwrap();
    let closed_p50 = closed.latency_ms().expect("completed").p50;
    assert!(
        closed_p50 < latency.p50 / 2.0,
        "closed loop p50 {closed_p50} ms vs constant rate {} ms",
        latency.p50
    );
}

#[test]
fn constant_rate_below_capacity_sends_about_the_requested_rate() {
    let origin = origin();
    let mut rated = spec(
        origin.addr(),
        "/bytes/10",
        4,
        Stop::After(Duration::from_secs(1)),
    );
    rated.rate = Some(200.0);
    let report = loadgen::run(&rated).unwrap();
    // Exactly 200 are due within the second; the last ones may be cut off
    // (more of them on a busy machine), but never more than 200 are sent.
    assert!(
        (180..=200).contains(&report.requests),
        "{} requests",
        report.requests
    );
}

#[test]
fn refused_connections_are_connect_errors() {
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let report = loadgen::run(&spec(closed_port, "/", 2, count(10))).unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors.connect, 10, "{:?}", report.errors);
    assert!(report.latency_ms().is_none());
}

#[test]
fn non_2xx_responses_are_counted_as_requests_and_as_non_2xx() {
    let origin = origin();
    let report = loadgen::run(&spec(origin.addr(), "/status/503", 2, count(10))).unwrap();
    assert_eq!(report.requests, 10);
    assert_eq!(report.errors.non_2xx, 10);
    assert_eq!(report.errors.total(), 10);
}

#[test]
fn a_silent_upstream_gives_timeouts_not_a_hang() {
    let origin = origin();
    let mut silent = spec(origin.addr(), "/fault/silent", 1, count(3));
    silent.timeout = Duration::from_millis(200);
    let report = loadgen::run(&silent).unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors.timeout, 3, "{:?}", report.errors);
}

#[test]
fn truncated_bodies_are_read_errors() {
    let origin = origin();
    let report = loadgen::run(&spec(origin.addr(), "/fault/truncate/1000", 1, count(4))).unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors.read, 4, "{:?}", report.errors);
}

#[test]
fn chunked_and_close_delimited_bodies_are_read_to_their_end() {
    let origin = origin();
    let chunked = loadgen::run(&spec(origin.addr(), "/chunked/100000", 2, count(20))).unwrap();
    assert_eq!(chunked.requests, 20);
    assert_eq!(chunked.errors.total(), 0);
    assert!(chunked.bytes >= 20 * 100_000);
    // Both connections stayed in use: the end of each chunked body was found.
    assert_eq!(origin.stats().connections_accepted(), 2);

    let close = loadgen::run(&spec(origin.addr(), "/close/5000", 1, count(5))).unwrap();
    assert_eq!(close.requests, 5);
    assert_eq!(close.errors.total(), 0);
    assert_eq!(origin.stats().connections_accepted(), 2 + 5);
}

#[test]
fn a_timed_run_abandons_requests_in_flight_at_the_end() {
    let origin = origin();
    let report = loadgen::run(&spec(
        origin.addr(),
        "/delay/2000",
        3,
        Stop::After(Duration::from_millis(300)),
    ))
    .unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.unfinished, 3);
    assert_eq!(report.starved, 3, "no connection got a response");
    assert_eq!(report.errors.total(), 0);
}

/// A minimal CONNECT proxy for the tunnel tests: answers 200 and relays, or
/// refuses every tunnel with 405.
fn connect_proxy(refuse: bool) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            std::thread::spawn(move || {
                client
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let authority = text.split(' ').nth(1).unwrap_or("").to_string();
                if refuse {
                    let _ = client.write_all(
                        b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let mut upstream = std::net::TcpStream::connect(authority).unwrap();
                client
                    .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .unwrap();
                let mut c2 = client.try_clone().unwrap();
                let mut u2 = upstream.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut client, &mut upstream);
                let _ = upstream.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn tunnel_mode_sends_requests_through_one_connect_tunnel_per_connection() {
    let origin = origin();
    let proxy = connect_proxy(false);
    let mut tunneled = spec(proxy, "/bytes/5000", 2, count(20));
    tunneled.tunnel = Some(origin.addr().to_string());
    tunneled.host = origin.addr().to_string();
    let report = loadgen::run(&tunneled).unwrap();
    assert_eq!(report.requests, 20);
    assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
    assert_eq!(origin.stats().requests_served(), 20);
    assert_eq!(origin.stats().connections_accepted(), 2);
}

#[test]
fn a_refused_tunnel_is_a_connect_error() {
    let origin = origin();
    let proxy = connect_proxy(true);
    let mut tunneled = spec(proxy, "/bytes/10", 1, count(3));
    tunneled.tunnel = Some(origin.addr().to_string());
    let report = loadgen::run(&tunneled).unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.errors.connect, 3, "{:?}", report.errors);
    assert_eq!(origin.stats().requests_served(), 0);
}

#[test]
fn idle_clients_are_held_after_one_exchange_and_one_more_is_served() {
    let origin = origin();
    let spec = IdleSpec {
        addr: origin.addr(),
        host: origin.addr().to_string(),
        path: "/bytes/1".to_string(),
        connections: 60,
        open_parallel: 16,
        answer_timeout: Duration::from_secs(5),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clients = runtime.block_on(idle::open(&spec));
    assert_eq!(clients.held, 60);
    assert_eq!(clients.answered, 60);
    assert_eq!(clients.refused, 0);
    assert_eq!(origin.stats().connections_accepted(), 60);
    let probe = runtime.block_on(idle::probe(&spec, Duration::from_secs(5)));
    assert!(probe.served);
    assert!(probe.latency.is_some());
    clients.close();
}

#[test]
fn idle_clients_to_a_closed_port_are_refused_and_the_probe_fails() {
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let spec = IdleSpec {
        addr: closed_port,
        host: "x".to_string(),
        path: "/".to_string(),
        connections: 5,
        open_parallel: 2,
        answer_timeout: Duration::from_secs(2),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clients = runtime.block_on(idle::open(&spec));
    assert_eq!(clients.held, 0);
    assert_eq!(clients.refused, 5);
    let probe = runtime.block_on(idle::probe(&spec, Duration::from_secs(2)));
    assert!(!probe.served);
}

#[test]
fn describe_reads_like_a_command_line() {
    let addr: SocketAddr = "127.0.0.1:8001".parse().unwrap();
    let mut s = spec(
        addr,
        "/bytes/1024",
        100,
        Stop::After(Duration::from_secs(2)),
    );
    s.rate = Some(500.0);
    assert_eq!(
        s.describe(),
        "builtin -c 100 -t 2 -d 2s --rate 500 --keep-alive --timeout 5s http://127.0.0.1:8001/bytes/1024"
    );
}
