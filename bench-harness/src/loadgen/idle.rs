//! Idle clients: open many keep-alive connections, make one exchange on each,
//! then hold them open doing nothing.
//!
//! This is the load an event loop shrugs off and a thread-per-connection
//! server cannot: every idle client of phase 2 pins a worker thread, while
//! for phases 3 and 4 it is a few hundred bytes of state. The harness
//! measures the proxy's memory before and while the clients are held, then
//! checks whether one more client is still served ([`probe`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::client::{self, Failure, Target};

/// How long one client may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to hold.
#[derive(Debug, Clone)]
pub struct IdleSpec {
    pub addr: SocketAddr,
    pub host: String,
    /// The first (and only) request of each client, e.g. `/bytes/1`.
    pub path: String,
    pub connections: usize,
    /// Connections being opened at the same time (keeps the proxy's accept
    /// backlog from overflowing).
    pub open_parallel: usize,
    /// How long a client waits for its first response before it is counted
    /// as unanswered (it stays open: a queued client is held too).
    pub answer_timeout: Duration,
}

/// The connections, held open until this is dropped.
#[derive(Debug)]
pub struct IdleClients {
    streams: Vec<TcpStream>,
    /// Connections open now.
    pub held: u64,
    /// Of those, how many got their first response.
    pub answered: u64,
    /// Refused, reset, or answered 503 / `Connection: close` (closed since).
    pub refused: u64,
}

impl IdleClients {
    /// Closes every connection.
    pub fn close(self) {
        drop(self.streams);
    }
}

/// One client's state after opening.
enum Opened {
    Answered(TcpStream),
    Unanswered(TcpStream),
    Refused,
}

/// Opens `spec.connections` clients, at most `open_parallel` at a time.
pub async fn open(spec: &IdleSpec) -> IdleClients {
    let target = Arc::new(Target {
        addr: spec.addr,
        request: client::request_bytes(&spec.host, &spec.path, true),
        tunnel: None,
        keep_alive: true,
    });
    let permits = Arc::new(Semaphore::new(spec.open_parallel.max(1)));
    let mut tasks = JoinSet::new();
    for _ in 0..spec.connections {
        let target = Arc::clone(&target);
        let permits = Arc::clone(&permits);
        let timeout = spec.answer_timeout;
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return Opened::Refused;
            };
            open_one(&target, timeout).await
        });
    }
    let mut clients = IdleClients {
        streams: Vec::with_capacity(spec.connections),
        held: 0,
        answered: 0,
        refused: 0,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Opened::Answered(stream)) => {
                clients.answered += 1;
                clients.streams.push(stream);
            }
            Ok(Opened::Unanswered(stream)) => clients.streams.push(stream),
            Ok(Opened::Refused) | Err(_) => clients.refused += 1,
        }
    }
    clients.held = clients.streams.len() as u64;
    clients
}

async fn open_one(target: &Target, timeout: Duration) -> Opened {
    // Connecting gets longer than answering: under a burst of connections a
    // full accept queue drops SYNs, and the kernel resends them after 1 s
    // and 3 s. Such a client is slow, not refused.
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr));
    let Ok(Ok(mut stream)) = connecting.await else {
        return Opened::Refused;
    };
    let _ = stream.set_nodelay(true);
    // A small buffer: ten thousand of these are alive at once.
    let mut buf = vec![0u8; 16 * 1024];
    match tokio::time::timeout(timeout, client::exchange(&mut stream, target, &mut buf)).await {
        Ok(Ok(response)) if response.status == 200 && response.reusable => Opened::Answered(stream),
        // 503 (load shedding), `Connection: close`, or a reset: not held.
        Ok(Ok(_)) | Ok(Err(_)) => Opened::Refused,
        // No answer yet: the proxy has the connection but is not serving it
        // (phase 2's queue). It is held all the same.
        Err(_elapsed) => Opened::Unanswered(stream),
    }
}

/// One more client, while the others are held: was it served, how fast?
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub served: bool,
    pub latency: Option<Duration>,
}

/// Sends one request on a new connection and waits at most `timeout`.
pub async fn probe(spec: &IdleSpec, timeout: Duration) -> Probe {
    let target = Target {
        addr: spec.addr,
        request: client::request_bytes(&spec.host, &spec.path, false),
        tunnel: None,
        keep_alive: false,
    };
    let started = Instant::now();
    let attempt = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut stream = client::open(&target, &mut buf).await?;
        client::exchange(&mut stream, &target, &mut buf).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(response)) if (200..300).contains(&response.status) => Probe {
            served: true,
            latency: Some(started.elapsed()),
        },
        Ok(Ok(_)) | Ok(Err(Failure::Connect | Failure::Read | Failure::Write)) | Err(_) => Probe {
            served: false,
            latency: None,
        },
    }
}
