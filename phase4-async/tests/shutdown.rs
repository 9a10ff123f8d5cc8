//! Shutdown's second stage, tested in-process with `run`: what happens to
//! an exchange that is still running when `--shutdown-grace` is over.
//!
//! (The first stage, in-flight exchanges finishing within the grace period
//! and idle connections closing, is in the conformance and scaling suites.)
//! A task is cancelled by dropping its future, wherever it was waiting; the
//! proxy then resets the client connection, so that a client in the middle
//! of a response cannot mistake what it got for the whole response.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proxy_core::{Authority, Config, Mode};
use testkit::Origin;
use tokio::sync::oneshot;

/// Starts `run` on its own runtime thread, in reverse mode to `origin`, with
/// the given grace period. Returns the proxy's address, the shutdown
/// trigger, and a receiver that yields `run`'s result when it returns.
fn start_proxy(
    origin: &Origin,
    grace: Duration,
) -> (
    std::net::SocketAddr,
    oneshot::Sender<()>,
    std::sync::mpsc::Receiver<std::io::Result<()>>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(Mode::Reverse {
        upstream: Authority {
            host: "127.0.0.1".into(),
            port: origin.addr().port(),
        },
    });
    config.shutdown_grace = grace;
    let (stop, stopped) = oneshot::channel::<()>();
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = runtime.block_on(phase4_async::run(listener, config, async {
            let _ = stopped.await;
        }));
        let _ = done_tx.send(result);
    });
    (addr, stop, done)
}

#[test]
fn exchange_still_running_when_the_grace_period_ends_is_reset_and_run_returns() {
    let origin = Origin::start().unwrap();
    let (addr, stop, done) = start_proxy(&origin, Duration::from_secs(1));

    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The upstream takes 5 s: far longer than the 1 s grace period.
    client
        .write_all(b"GET /delay/5000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let in_flight = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        origin.stats().connections_accepted() >= 1
    });
    assert!(in_flight, "the proxy never connected upstream");

    let signalled = Instant::now();
    stop.send(()).unwrap();
    let mut got = Vec::new();
    let outcome = client.read_to_end(&mut got);
    let waited = signalled.elapsed();

    assert!(
        matches!(&outcome, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the client must see a reset, not a clean end: {outcome:?}, got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.is_empty(), "no response was sent: {got:?}");
    assert!(
        waited >= Duration::from_secs(1),
        "the exchange was cut after {waited:?}, before the 1 s grace period ended"
    );
    let result = done
        .recv_timeout(Duration::from_secs(5))
        .expect("run returned within 5 s of the grace period's end");
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn run_returns_without_waiting_out_the_grace_period_when_nothing_is_in_flight() {
    let origin = Origin::start().unwrap();
    // A grace period far longer than the test's own limits: if run waited
    // for it, recv_timeout below would fail.
    let (addr, stop, done) = start_proxy(&origin, Duration::from_secs(60));
    // One finished exchange: its connection is idle (keep-alive) at shutdown.
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(b"GET /bytes/10 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // Read the whole response: the head, then its 10-byte body.
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    let complete = |r: &[u8]| {
        r.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|end| r.len() >= end + 4 + 10)
    };
    while !complete(&response) {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed mid-response: {response:?}");
        response.extend_from_slice(&buf[..n]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));

    let signalled = Instant::now();
    stop.send(()).unwrap();
    // The idle connection is closed (EOF), not kept until --idle-timeout.
    let mut rest = Vec::new();
    let eof = client.read_to_end(&mut rest);
    assert!(matches!(eof, Ok(0)), "{eof:?} {rest:?}");
    drop(client);
    let result = done
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| {
            panic!(
                "run had not returned {:?} after shutdown with nothing in flight",
                signalled.elapsed()
            )
        });
    assert!(result.is_ok(), "{result:?}");
}
