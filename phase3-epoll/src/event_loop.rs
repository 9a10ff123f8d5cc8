//! One event loop: a thread that owns a listener, an epoll instance and
//! every connection it accepted, and serves them all by waiting for
//! readiness.
//!
//! ```text
//! loop {
//!     epoll_wait(timeout = the earliest deadline)      ◀── sockets, the waker, timers
//!     for each event: listener → accept all │ waker → DNS answers, shutdown │ socket → its connection
//!     connections that yielded → run again
//!     deadlines that passed → their connections
//! }
//! ```
//!
//! Each loop shares nothing with the others on the hot path: its own
//! listener (the kernel spreads new connections over the loops' listeners
//! with `SO_REUSEPORT`), its own connections in a `slab`, its own buffer
//! pool and idle upstream pool. The only shared things are the connection
//! count (`--max-connections` is per process), the resolver threads and the
//! shutdown flag.
//!
//! # Tokens
//!
//! epoll hands back a 64-bit token per event; mio calls it [`Token`]. A
//! connection stored at slab key `k` registers its client socket as token
//! `2k` and its upstream socket as `2k + 1`, so one division finds both the
//! connection and the side. Slab keys are reused as connections come and
//! go, so anything that refers to a connection from the outside (a timer, a
//! DNS answer) also carries the connection's unique id, and is ignored if
//! the slot now holds someone else.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use proxy_core::access_log::AccessRecord;
use proxy_core::pool::{self, IdlePool};
use proxy_core::{Authority, Config, ProxyError};
use slab::Slab;

use crate::buffer::BufferPool;
use crate::connection::{Connection, Env, Peer};
use crate::dns::{Inbox, Resolver};
use crate::shutdown::Shutdown;
use crate::socket::Readiness;
use crate::timer::Timers;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// Connections over the limit that may linger at once (each is being told
/// 503); past this, new ones are closed without a word.
const MAX_REJECTING: usize = 256;

/// How long to stop accepting after `accept` failed for lack of resources
/// (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often idle pooled upstream connections are checked for expiry.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

fn client_token(key: usize) -> Token {
    Token(key * 2)
}

fn upstream_token(key: usize) -> Token {
    Token(key * 2 + 1)
}

/// `--max-connections`, shared by every loop of the process.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    max: usize,
    count: Arc<AtomicUsize>,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            max,
            count: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A permit for one more connection, or `None` at the limit. The
    /// permit gives its place back when dropped (with its connection).
    fn try_acquire(&self) -> Option<Permit> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit {
            count: Arc::clone(&self.count),
        })
    }
}

#[derive(Debug)]
struct Permit {
    count: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection in the slab, with what the loop keeps about it.
#[derive(Debug)]
struct Slot {
    conn: Connection<TcpStream>,
    /// Unique over the loop's life (slab keys are not).
    id: u64,
    /// Its place under `--max-connections`; `None` for a connection that
    /// is only being told 503.
    permit: Option<Permit>,
    /// The timer entry that is current for this connection (see `timer.rs`).
    scheduled: Option<Instant>,
    /// Already in the list of connections to resume.
    queued: bool,
}

/// What connections reach through [`Env`]: everything of the loop except
/// the connection table itself.
#[derive(Debug)]
struct Shared {
    registry: Registry,
    config: Arc<Config>,
    /// Read once after each `epoll_wait`.
    now: Instant,
    shutting_down: bool,
    buffers: BufferPool,
    /// Idle upstream connections, deregistered while they wait.
    pool: IdlePool<Authority, TcpStream>,
    resolver: Resolver,
    inbox: Arc<Inbox>,
}

/// The [`Env`] of one connection: the loop's shared parts, plus who is asking.
struct LoopEnv<'a> {
    shared: &'a mut Shared,
    key: usize,
    id: u64,
}

impl Env for LoopEnv<'_> {
    type Socket = TcpStream;

    fn now(&self) -> Instant {
        self.shared.now
    }

    fn config(&self) -> &Config {
        &self.shared.config
    }

    fn shutting_down(&self) -> bool {
        self.shared.shutting_down
    }

    fn buffers(&mut self) -> &mut BufferPool {
        &mut self.shared.buffers
    }

    fn connect(&mut self, addr: std::net::SocketAddr) -> io::Result<TcpStream> {
        let mut stream = TcpStream::connect(addr)?;
        self.shared.registry.register(
            &mut stream,
            upstream_token(self.key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(stream)
    }

    fn resolve(&mut self, authority: &Authority) -> Result<(), ProxyError> {
        self.shared
            .resolver
            .resolve(authority, self.key, self.id, &self.shared.inbox)
    }

    fn checkout(&mut self, authority: &Authority) -> Option<TcpStream> {
        let now = self.shared.now;
        while let Some(mut stream) = self.shared.pool.take(authority, now) {
            // The upstream may have closed it while it sat in the pool: a
            // peek that would block means "alive, and nothing unexpected".
            let alive = matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
            if !alive {
                tracing::debug!(%authority, "dropping a pooled upstream connection the upstream closed");
                continue;
            }
            let registered = self.shared.registry.register(
                &mut stream,
                upstream_token(self.key),
                Interest::READABLE | Interest::WRITABLE,
            );
            if registered.is_ok() {
                return Some(stream);
            }
        }
        None
    }

    fn checkin(&mut self, authority: Authority, mut socket: TcpStream) {
        // Deregistered while idle: its events would otherwise go to
        // whichever connection holds this slab key next. (If that fails,
        // the socket is dropped here, and closing it removes it from epoll.)
        if self.shared.registry.deregister(&mut socket).is_ok() {
            // The pool may hand back a connection to close: this one (its
            // upstream already has the most idle connections allowed) or
            // the pool's oldest (the pool as a whole is full). Either is
            // deregistered already, as every pooled socket is; dropping it
            // closes it.
            if let Some(closed) = self.shared.pool.put(authority, socket, self.shared.now) {
                drop(closed);
            }
        }
    }

    fn access_log(&mut self, record: AccessRecord) {
        // Access lines go to stdout; a closed stdout must not stop the proxy.
        // This write is blocking: if stdout is a pipe nobody reads, it
        // blocks the whole loop once the pipe is full (64 KiB on Linux).
        // A bounded writer thread would fix that (dropping lines when it
        // falls behind); this teaching proxy accepts the risk, and the
        // chapter says so. Logging on stderr (`tracing`) has the same risk.
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{record}");
        let _ = out.flush();
    }
}

/// One loop and everything it owns.
pub struct EventLoop {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Slot>,
    shared: Shared,
    timers: Timers,
    /// Connections whose last `drive` yielded: run again before sleeping.
    runnable: Vec<(usize, u64)>,
    next_id: u64,
    limit: ConnectionLimit,
    /// Connections being told 503 (they hold no permit).
    rejecting: usize,
    shutdown: Shutdown,
    /// Set when shutdown began: the loop returns at this instant at the latest.
    shutdown_deadline: Option<Instant>,
    /// Set when `accept` failed for lack of resources: listener events are
    /// ignored until then, and the backlog is drained at that instant.
    accept_paused_until: Option<Instant>,
    next_housekeeping: Instant,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("index", &self.index)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl EventLoop {
    /// A loop serving `listener` (a non-blocking std listener).
    pub fn new(
        index: usize,
        listener: std::net::TcpListener,
        config: Arc<Config>,
        resolver: Resolver,
        limit: ConnectionLimit,
        shutdown: Shutdown,
    ) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Waker::new(&registry, WAKER)?);
        shutdown.add_waker(Arc::clone(&waker));
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        // Room for the largest head plus what the proxy adds to it, so a
        // head always fits in one buffer; at least 64 KiB for bodies.
        let buffer_size = (config.max_header_bytes + 4096).max(64 * 1024);
        let now = Instant::now();
        let shared = Shared {
            registry,
            now,
            shutting_down: false,
            buffers: BufferPool::new(buffer_size, 256),
            pool: IdlePool::new(pool::MAX_IDLE_PER_UPSTREAM, pool::IDLE_TIMEOUT),
            resolver,
            inbox: Inbox::new(waker),
            config,
        };
        Ok(EventLoop {
            index,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            shared,
            timers: Timers::new(),
            runnable: Vec::new(),
            next_id: 0,
            limit,
            rejecting: 0,
            shutdown,
            shutdown_deadline: None,
            accept_paused_until: None,
            next_housekeeping: now + HOUSEKEEPING,
        })
    }

    /// Serves until shutdown has finished (every connection done, or the
    /// grace period over).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if !self.shared.shutting_down && self.shutdown.is_triggered() {
                self.begin_shutdown();
            }
            if self.finished() {
                break;
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.shared.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.on_listener_event(),
                    WAKER => self.deliver_dns_answers(),
                    token => self.on_socket_event(token, Readiness::from_event(event)),
                }
            }
            self.resume_yielded();
            self.fire_timers();
            self.end_accept_pause();
            if self.shared.now >= self.next_housekeeping {
                self.shared.pool.expire(self.shared.now);
                self.next_housekeeping = self.shared.now + HOUSEKEEPING;
            }
        }
        tracing::debug!(
            event_loop = self.index,
            left = self.conns.len(),
            "event loop stopped"
        );
        Ok(())
    }

    fn finished(&self) -> bool {
        self.shared.shutting_down
            && (self.conns.is_empty()
                || self.shutdown_deadline.is_some_and(|d| Instant::now() >= d))
    }

    /// How long `epoll_wait` may sleep: until the earliest deadline, or not
    /// at all if a connection yielded with work left.
    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.runnable.is_empty() {
            return Some(Duration::ZERO);
        }
        let conns = &self.conns;
        while self.timers.drop_stale_top(|e| is_live(conns, e)) {}
        let mut wake = self.timers.next();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        consider(self.accept_paused_until);
        consider(self.shutdown_deadline);
        if !self.shared.pool.is_empty() {
            consider(Some(self.next_housekeeping));
        }
        // Round up: epoll counts milliseconds, and waking up a little early
        // for a deadline only means sleeping again.
        wake.map(|t| {
            let left = t.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000);
            Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
        })
    }

    /// New connections are waiting, unless accepting is paused: then the
    /// event is ignored, and `end_accept_pause` drains the backlog later.
    fn on_listener_event(&mut self) {
        if self.accept_paused_until.is_none() {
            self.accept();
        }
    }

    /// Once the pause after a failed `accept` is over, accepts whatever
    /// waits. The listener is edge-triggered: connections that arrived
    /// during the pause produced their events already (ignored), so
    /// without this call they would wait until someone else connects.
    fn end_accept_pause(&mut self) {
        if self
            .accept_paused_until
            .is_some_and(|t| t <= self.shared.now)
        {
            self.accept_paused_until = None;
            self.accept();
        }
    }

    /// Accepts until the listener would block (edge-triggered: the backlog
    /// must be drained, or the next event never comes).
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer.ip()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE and friends: the error belongs to one attempt,
                    // not to the server. Until a descriptor is freed every
                    // retry fails the same way, so pause for a moment
                    // (listener events are ignored meanwhile) rather than
                    // retry at once, or once per incoming connection.
                    tracing::warn!(error = %e, "accept failed");
                    self.accept_paused_until = Some(self.shared.now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// A new client connection: a slot in the slab, or a 503 when the
    /// process is at `--max-connections`.
    fn admit(&mut self, mut stream: TcpStream, ip: IpAddr) {
        let permit = self.limit.try_acquire();
        if permit.is_none() && self.rejecting >= MAX_REJECTING {
            return; // Dropped: closed without a word.
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= (usize::MAX - 2) / 2 {
            return; // Tokens would collide with LISTENER and WAKER.
        }
        let _ = stream.set_nodelay(true);
        let registered = self.shared.registry.register(
            &mut stream,
            client_token(key),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = registered {
            tracing::warn!(error = %e, "cannot register a client connection");
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut env = LoopEnv {
            shared: &mut self.shared,
            key,
            id,
        };
        let conn = if permit.is_some() {
            Connection::new(stream, ip, env.now())
        } else {
            tracing::debug!("at --max-connections: answering 503");
            self.rejecting += 1;
            Connection::overloaded(stream, ip, &mut env)
        };
        entry.insert(Slot {
            conn,
            id,
            permit,
            scheduled: None,
            queued: false,
        });
        self.after(key);
    }

    fn on_socket_event(&mut self, token: Token, ready: Readiness) {
        let key = token.0 / 2;
        let peer = if token.0 % 2 == 0 {
            Peer::Client
        } else {
            Peer::Upstream
        };
        let Some(slot) = self.conns.get_mut(key) else {
            return; // Closed earlier in this batch of events.
        };
        let mut env = LoopEnv {
            shared: &mut self.shared,
            key,
            id: slot.id,
        };
        slot.conn.on_ready(&mut env, peer, ready);
        self.after(key);
    }

    /// After any call into a connection: remove it if it closed, queue it if
    /// it yielded, and make sure its deadline has a timer.
    fn after(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if slot.conn.is_closed() {
            let slot = self.conns.remove(key);
            if slot.permit.is_none() {
                self.rejecting -= 1;
            }
            // Dropping the slot closes its sockets (which removes them from
            // epoll) and gives back its permit.
            return;
        }
        if slot.conn.yielded() && !slot.queued {
            slot.queued = true;
            self.runnable.push((key, slot.id));
        }
        if let Some(when) = slot.conn.deadline(&self.shared.config) {
            self.timers
                .schedule(key, slot.id, &mut slot.scheduled, when);
        }
    }

    fn resume_yielded(&mut self) {
        for (key, id) in std::mem::take(&mut self.runnable) {
            let Some(slot) = self.conns.get_mut(key).filter(|s| s.id == id) else {
                continue;
            };
            slot.queued = false;
            let mut env = LoopEnv {
                shared: &mut self.shared,
                key,
                id,
            };
            slot.conn.resume(&mut env);
            self.after(key);
        }
    }

    /// Runs the connections whose deadline has passed. Entries pushed while
    /// doing so wait for the next turn of the loop.
    fn fire_timers(&mut self) {
        let now = self.shared.now;
        let mut due = Vec::new();
        while let Some(entry) = self.timers.pop_due(now) {
            due.push(entry);
        }
        for entry in due {
            let Some(slot) = self.conns.get_mut(entry.key) else {
                continue;
            };
            if slot.id != entry.id || slot.scheduled != Some(entry.when) {
                continue; // Stale: a closed connection, or a deadline that moved.
            }
            slot.scheduled = None;
            let mut env = LoopEnv {
                shared: &mut self.shared,
                key: entry.key,
                id: entry.id,
            };
            slot.conn.on_timer(&mut env);
            self.after(entry.key);
        }
        if self.timers.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.timers.compact(|e| is_live(conns, e));
        }
    }

    fn deliver_dns_answers(&mut self) {
        for answer in self.shared.inbox.take() {
            let Some(slot) = self.conns.get_mut(answer.key).filter(|s| s.id == answer.id) else {
                continue; // The connection is gone.
            };
            let mut env = LoopEnv {
                shared: &mut self.shared,
                key: answer.key,
                id: answer.id,
            };
            slot.conn.on_resolved(&mut env, answer.result);
            self.after(answer.key);
        }
    }

    /// Stops accepting, drops idle connections (pooled upstreams and idle
    /// clients), and lets the others finish.
    fn begin_shutdown(&mut self) {
        self.shared.now = Instant::now();
        self.shared.shutting_down = true;
        self.shutdown_deadline = Some(self.shared.now + self.shared.config.shutdown_grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.shared.registry.deregister(&mut listener);
        }
        drop(self.shared.pool.drain());
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(slot) = self.conns.get_mut(key) {
                let mut env = LoopEnv {
                    shared: &mut self.shared,
                    key,
                    id: slot.id,
                };
                slot.conn.on_shutdown(&mut env);
                self.after(key);
            }
        }
        tracing::debug!(
            event_loop = self.index,
            in_flight = self.conns.len(),
            "shutdown begun"
        );
    }
}

/// Is this timer entry the current one of a live connection?
fn is_live(conns: &Slab<Slot>, entry: &crate::timer::Entry) -> bool {
    conns
        .get(entry.key)
        .is_some_and(|s| s.id == entry.id && s.scheduled == Some(entry.when))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_core::Mode;

    /// A loop on a listener of its own (not run: the test calls its steps).
    fn event_loop() -> (EventLoop, std::net::SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Authority {
            host: "127.0.0.1".into(),
            port: 9,
        };
        let config = Arc::new(Config::new(Mode::Reverse { upstream }));
        let event_loop = EventLoop::new(
            0,
            listener,
            config,
            Resolver::start(1, 1).unwrap(),
            ConnectionLimit::new(16),
            Shutdown::new(),
        )
        .unwrap();
        (event_loop, addr)
    }

    /// Waits (at most 5 s) for the listener's readiness event: a connection
    /// is in the backlog.
    fn wait_for_listener_event(event_loop: &mut EventLoop) {
        let mut events = Events::with_capacity(8);
        for _ in 0..50 {
            event_loop
                .poll
                .poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            if events.iter().any(|e| e.token() == LISTENER) {
                return;
            }
        }
        panic!("no listener event within 5 s");
    }

    #[test]
    fn listener_events_are_ignored_during_an_accept_pause_and_the_backlog_is_drained_after() {
        let (mut event_loop, addr) = event_loop();
        let now = event_loop.shared.now;
        // As after an EMFILE.
        event_loop.accept_paused_until = Some(now + ACCEPT_BACKOFF);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        wait_for_listener_event(&mut event_loop);
        event_loop.on_listener_event();
        assert_eq!(event_loop.conns.len(), 0, "accepted during the pause");
        event_loop.shared.now = now + ACCEPT_BACKOFF / 2;
        event_loop.end_accept_pause();
        assert_eq!(event_loop.conns.len(), 0, "accepted before the pause ended");
        // The pause is over: no new event will come for the waiting
        // connection (edge-triggered), so the loop accepts it on its own.
        event_loop.shared.now = now + ACCEPT_BACKOFF;
        event_loop.end_accept_pause();
        assert_eq!(event_loop.conns.len(), 1, "the backlog was not drained");
        assert_eq!(event_loop.accept_paused_until, None);
    }
}
