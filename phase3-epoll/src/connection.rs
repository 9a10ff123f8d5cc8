//! One client connection as an explicit state machine.
//!
//! Phase 1 keeps the state of an exchange on a thread's stack: where it is
//! is simply which line of `serve_exchange` is running. An event loop serves
//! thousands of connections on one thread, so each connection's "where am
//! I" must live in data, and every event must be able to resume it. That
//! data is `State`:
//!
//! ```text
//!   ┌───────────────────────────────────── keep-alive: the next request (its bytes may already be here) ───────────────────────┐
//!   │  ┌────────────────────── a pooled upstream: no connect ───────────────┐                                                  │
//!   ▼  │                                                                    ▼                                                  │
//! ReadingHead ── an IP ─────▶ Connecting ───────────────────────────────▶ SendingRequest ─▶ ReadingResponseHead ─▶ RelayingResponse
//!   │     │                       ▲ │  ▲                                        │   │           │       │                │
//!   │     └─ a name ─▶ Resolving ─┘ │  │                                        │   │           │       │                │
//!   │                               │  └─ retry once (a pooled upstream died) ──┴───┼───────────┘       │                │
//!   │                               └─ CONNECT ─▶ Tunnel ─▶ Closed                  │                   │                │
//!   │                                                                               └─ abort ───────────┴────────────────┤
//!   └─ bad input, timeouts, upstream errors: answer ─▶ Closing ─▶ Lingering ─▶ Closed ◀─ Closing { reset } ◀─────────────┘
//! ```
//!
//! Most exchanges take the top row: a reverse proxy's `--upstream` is
//! usually an IP address, so `Resolving` is skipped. A retry goes back
//! through `Resolving` when the upstream is a name. An abort (a reset
//! instead of a FIN) comes from any state where the client may already have
//! part of a response or has gone: `SendingRequest` (the client vanished
//! mid-body), `ReadingResponseHead` (its socket failed, perhaps halfway
//! through an interim response) and `RelayingResponse` (but an upstream
//! that fails mid-body gets a FIN when the body's framing already shows
//! the cut: `cut_short`).
//!
//! (`docs/phase3-epoll.md` draws it larger, with the function for each
//! arrow.) The behaviour is phase 1's, rule for rule: the same statuses, the
//! same deadlines, the same "answer if nothing was sent, else reset". Only
//! the shape differs: phase 1's blocking calls become states, its socket
//! timeouts become deadlines ([`Connection::deadline`]), and its loops over
//! `read`/`write` become `Connection::drive`.
//!
//! # How an event moves a connection
//!
//! The event loop calls one of the `on_*` methods (a socket is ready, a
//! timer expired, a DNS answer arrived, shutdown began); each ends in
//! `drive`, which alternates two steps until neither makes progress:
//!
//! 1. **I/O** (`do_io`): read what the state wants read, write whatever is
//!    waiting to be written, each until `WouldBlock` (edge-triggered
//!    discipline, see [`crate::socket`]);
//! 2. **decide** (`advance`): look at the buffers and the sockets' news
//!    (EOF, errors) and move the state forward: parse a head, pump a body,
//!    connect, answer, finish the exchange.
//!
//! Everything the connection needs from its loop (a clock, buffers, new
//! upstream connections, the pool, the resolver, the access log) comes
//! through the [`Env`] trait, and its sockets are any [`Socket`], so the
//! unit tests (`connection/tests.rs`) drive it with fake sockets and feed it
//! events in orders a real network rarely produces.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use proxy_core::access_log::AccessRecord;
use proxy_core::answers;
use proxy_core::framing::BodyKind;
use proxy_core::rewrite::{self, BodyRelay};
use proxy_core::target::{self, Route};
use proxy_core::{
    Authority, Config, Parsed, ProxyError, RequestHead, ResponseHead, parse_request_from,
    parse_response_from,
};

use crate::buffer::{Buffer, BufferPool};
use crate::pump::BodyPump;
use crate::socket::{ConnectCheck, Readiness, Side, Socket};

/// How long to wait for an upstream's `100 Continue` before sending the
/// request body anyway (phase 1's constant).
const EXPECT_CONTINUE_WAIT: Duration = Duration::from_secs(1);

/// The most interim (1xx) responses relayed before the final one.
const MAX_INTERIM_RESPONSES: usize = 16;

/// After its last word, the proxy reads and discards what the client still
/// sends, for this long and this many bytes, so its response is not
/// destroyed by a reset (phase 1's `close_gracefully`).
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// Bytes one connection may read per `drive` before it yields to the others
/// (see [`Connection::yielded`]).
const DRIVE_BUDGET: usize = 512 * 1024;

/// What a connection needs from its event loop.
pub trait Env {
    type Socket: Socket;
    /// The loop's clock (read once per `epoll_wait`).
    fn now(&self) -> Instant;
    fn config(&self) -> &Config;
    /// True once graceful shutdown has begun.
    fn shutting_down(&self) -> bool;
    fn buffers(&mut self) -> &mut BufferPool;
    /// Starts a non-blocking connect and registers the socket as this
    /// connection's upstream.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Self::Socket>;
    /// Sends `authority` to the resolver threads; the answer comes back
    /// through [`Connection::on_resolved`].
    fn resolve(&mut self, authority: &Authority) -> Result<(), ProxyError>;
    /// An idle pooled connection to `authority` that is still alive,
    /// registered as this connection's upstream.
    fn checkout(&mut self, authority: &Authority) -> Option<Self::Socket>;
    /// Returns an upstream connection to the pool after a clean exchange.
    fn checkin(&mut self, authority: Authority, socket: Self::Socket);
    fn access_log(&mut self, record: AccessRecord);
}

/// Which socket of a connection an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Client,
    Upstream,
}

/// Where a connection is. Each variant holds what that step needs; the
/// exchange (request head, upstream, timings) travels from state to state
/// in a `Box`, so an idle connection stays small.
#[derive(Debug)]
enum State {
    /// Waiting for (the rest of) a request head. The first request has
    /// `--header-timeout` from `since` (accept); the next ones on a
    /// kept-alive connection have `--idle-timeout` from the previous
    /// response. `scanned`: how much of `from_client` the parser has
    /// already checked without finding the end of the head. The parser
    /// resumes there, so a head that trickles in one byte per read is
    /// scanned once, not once per read (which would cost time quadratic in
    /// its size, and this thread is serving everyone else too). It starts
    /// at 0 with each head, since the buffer then starts with a new one.
    ReadingHead {
        first: bool,
        since: Instant,
        scanned: usize,
    },
    /// Waiting for a resolver thread to answer, until the connect deadline:
    /// as in phase 1, resolving and connecting share one
    /// `--connect-timeout` budget, so a name whose DNS server never answers
    /// gets a 504 like an address that never answers.
    Resolving(Box<Exchange>, Instant),
    /// A non-blocking connect is in progress.
    Connecting(Box<Exchange>, Connect),
    /// Writing the request head and streaming the request body upstream
    /// (after `Expect: 100-continue`, first waiting for the upstream's verdict).
    SendingRequest(Box<Exchange>, Sending),
    /// Waiting for the final response head; interim ones are relayed.
    ReadingResponseHead(Box<Exchange>, AwaitingHead),
    /// Streaming the response body to the client.
    RelayingResponse(Box<Exchange>, Relaying),
    /// CONNECT: raw bytes both ways until both sides have closed.
    Tunnel(Box<Exchange>, Tunnel),
    /// Writing the last bytes (an answer, a response after which the
    /// connection closes, or the part of a body that arrived before its
    /// upstream died), then FIN; or, with `reset`, a reset: the only way
    /// left to tell the client that the body it got is incomplete.
    Closing { reset: bool },
    /// FIN sent; reading and discarding until the client closes too.
    Lingering { until: Instant, discarded: usize },
    /// Done: the loop removes the connection and closes its sockets.
    Closed,
}

/// One exchange: the request, where it goes, and what is known so far.
#[derive(Debug)]
struct Exchange {
    req: RequestHead,
    /// The upstream (or the tunnel's target).
    authority: Authority,
    tunnel: bool,
    started: Started,
    /// The upstream connection came from the pool: if it fails before any
    /// response byte, an idempotent bodiless request may be retried once.
    reused: bool,
    retried: bool,
    /// The request body was not read to its end (the upstream answered
    /// before it, or stopped reading it): the rest is still on the client
    /// connection, and parsing it as a request would be request smuggling,
    /// so the connection closes after the response.
    force_close: bool,
}

/// When an exchange started, for the access log.
#[derive(Debug, Clone, Copy)]
struct Started {
    at: Instant,
    wall: SystemTime,
}

impl Started {
    fn at(at: Instant, now: Instant) -> Started {
        let ago = now.saturating_duration_since(at);
        let wall = SystemTime::now();
        Started {
            at,
            wall: wall.checked_sub(ago).unwrap_or(wall),
        }
    }
}

/// A connect attempt over the addresses a name resolved to, with one
/// deadline for all of them (a name with ten dead addresses must not cost
/// ten timeouts).
#[derive(Debug)]
struct Connect {
    addrs: Vec<SocketAddr>,
    next: usize,
    deadline: Instant,
    last_error: Option<io::Error>,
}

#[derive(Debug)]
struct Sending {
    /// The upstream's `written` count once the whole head is out: until
    /// then a failure means the request never left.
    head_end: u64,
    /// `Expect: 100-continue`: the body waits until this instant, an
    /// interim response, or a final one (which means: no body).
    continue_until: Option<Instant>,
    /// How much of `from_upstream` the response parser has checked while
    /// waiting for the verdict (see `State::ReadingHead`).
    scanned: usize,
    body: BodyPump,
}

#[derive(Debug)]
struct AwaitingHead {
    /// One deadline for the final response however many 1xx come first.
    deadline: Instant,
    interims: usize,
    /// How much of `from_upstream` the parser has checked without finding
    /// the end of the head; back to 0 after each interim head is consumed.
    scanned: usize,
}

#[derive(Debug)]
struct Relaying {
    pump: BodyPump,
    status: u16,
    keep_alive: bool,
    /// The upstream said it keeps the connection open, and the request
    /// went out whole: the connection may go back to the pool.
    upstream_reusable: bool,
    /// The upstream has closed and the framer has been told
    /// (`BodyPump::finish`): done once, and counted as progress once, or
    /// `drive` would loop forever on a last chunk waiting for room.
    upstream_finished: bool,
    /// The client can tell a cut-short body from its framing (see
    /// `ResponsePlan::framing_shows_a_cut`): an upstream failure mid-body
    /// then ends with a FIN rather than a reset.
    cut_shows: bool,
}

#[derive(Debug, Default)]
struct Tunnel {
    /// The client's FIN has been passed on to the upstream.
    fin_to_upstream: bool,
    /// The upstream's FIN has been passed on to the client.
    fin_to_client: bool,
    bytes_down: u64,
}

/// A client connection: its sockets, four buffers (one per direction and
/// side), and its state.
#[derive(Debug)]
pub struct Connection<S> {
    client: Side<S>,
    client_ip: IpAddr,
    /// Present from the start of a connect until the exchange ends.
    upstream: Option<Side<S>>,
    /// Bytes read from the client not yet used: a head, body, or the next
    /// pipelined request.
    from_client: Buffer,
    /// The request head and body on their way upstream.
    to_upstream: Buffer,
    from_upstream: Buffer,
    /// Responses, interim responses and answers on their way to the client.
    to_client: Buffer,
    state: State,
    /// Counts anything that happens; `drive` stops when it stops moving.
    progress: u64,
    /// `drive` stopped because of its budget, not because it was done.
    yielded: bool,
}

impl<S: Socket> Connection<S> {
    /// A connection just accepted; it waits for its first request head.
    pub fn new(socket: S, client_ip: IpAddr, now: Instant) -> Connection<S> {
        Connection {
            client: Side::new(socket, Readiness::default(), now),
            client_ip,
            upstream: None,
            from_client: Buffer::new(),
            to_upstream: Buffer::new(),
            from_upstream: Buffer::new(),
            to_client: Buffer::new(),
            state: State::ReadingHead {
                first: true,
                since: now,
                scanned: 0,
            },
            progress: 0,
            yielded: false,
        }
    }

    /// A connection over `--max-connections`: it gets the 503 answer and is
    /// closed, without its request being read.
    pub fn overloaded<E: Env<Socket = S>>(
        socket: S,
        client_ip: IpAddr,
        env: &mut E,
    ) -> Connection<S> {
        let now = env.now();
        let mut conn = Connection::new(socket, client_ip, now);
        conn.to_client.ensure(env.buffers());
        let answer = answers::overloaded();
        if conn.to_client.extend(&answer) {
            // The access log counts body bytes: what follows the blank line.
            let head_len = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |p| p + 4);
            let body_len = (answer.len() - head_len) as u64;
            conn.log(env, None, Started::at(now, now), 503, body_len);
            conn.state = conn.close_gracefully(env);
        } else {
            conn.state = State::Closed;
        }
        conn
    }

    /// True once the connection is finished; the loop then drops it.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// True if the last `drive` stopped on its budget with work left: the
    /// loop must call [`Connection::resume`] soon, since no event will come
    /// for readiness that was never drained.
    pub fn yielded(&self) -> bool {
        self.yielded
    }

    /// A socket is ready.
    pub fn on_ready<E: Env<Socket = S>>(&mut self, env: &mut E, peer: Peer, ready: Readiness) {
        let side = match peer {
            Peer::Client => Some(&mut self.client),
            Peer::Upstream => self.upstream.as_mut(),
        };
        if let Some(side) = side {
            side.ready.readable |= ready.readable;
            side.ready.writable |= ready.writable;
        }
        self.drive(env);
    }

    /// Runs again after a `drive` that yielded.
    pub fn resume<E: Env<Socket = S>>(&mut self, env: &mut E) {
        self.drive(env);
    }

    /// The deadline may have passed.
    pub fn on_timer<E: Env<Socket = S>>(&mut self, env: &mut E) {
        let now = env.now();
        if self.deadline(env.config()).is_some_and(|d| d <= now) {
            let state = mem::replace(&mut self.state, State::Closed);
            self.state = self.on_deadline(env, state);
            self.progress += 1;
        }
        self.drive(env);
    }

    /// Shutdown has begun: an idle connection closes now; one in the middle
    /// of an exchange finishes it (its response says `Connection: close`).
    pub fn on_shutdown<E: Env<Socket = S>>(&mut self, env: &mut E) {
        self.drive(env);
    }

    /// The resolver's answer for this connection's upstream.
    pub fn on_resolved<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        result: Result<Vec<SocketAddr>, String>,
    ) {
        let state = mem::replace(&mut self.state, State::Closed);
        self.state = match state {
            State::Resolving(x, deadline) => match result {
                Ok(addrs) if !addrs.is_empty() => self.start_connect(env, x, addrs, deadline),
                Ok(_) => {
                    let err = ProxyError::BadGateway(format!("{} has no addresses", x.authority));
                    self.answer(env, &err, Some(&x.req), x.started)
                }
                Err(e) => {
                    let err =
                        ProxyError::BadGateway(format!("cannot resolve {}: {e}", x.authority));
                    self.answer(env, &err, Some(&x.req), x.started)
                }
            },
            // A late answer: the connection has moved on (its deadline
            // passed and it answered 504, or it closed).
            other => other,
        };
        self.progress += 1;
        self.drive(env);
    }

    /// When this connection next needs to run even if no event comes: the
    /// timeout of whatever it is waiting for.
    pub fn deadline(&self, config: &Config) -> Option<Instant> {
        let upstream = self.upstream.as_ref();
        match &self.state {
            State::ReadingHead { first, since, .. } => Some(
                *since
                    + if *first {
                        config.header_timeout
                    } else {
                        config.idle_timeout
                    },
            ),
            State::Resolving(_, deadline) => Some(*deadline),
            State::Closed => None,
            State::Connecting(_, c) => Some(c.deadline),
            State::SendingRequest(_, s) => match s.continue_until {
                Some(until) => Some(until),
                // Waiting to write upstream: the upstream is slow.
                None if !self.to_upstream.is_empty() => {
                    upstream.map(|u| u.last_write + config.upstream_timeout)
                }
                // Waiting for body bytes: the client is slow.
                None => Some(self.client.last_read + config.idle_timeout),
            },
            State::ReadingResponseHead(_, a) => Some(a.deadline),
            State::RelayingResponse(..) => {
                if self.to_client.is_empty() {
                    upstream.map(|u| u.last_read + config.upstream_timeout)
                } else {
                    Some(self.client.last_write + config.idle_timeout)
                }
            }
            State::Tunnel(..) => {
                let client = self.client.last_read.max(self.client.last_write);
                let up = upstream.map_or(client, |u| u.last_read.max(u.last_write));
                Some(client.max(up) + config.idle_timeout)
            }
            State::Closing { .. } => Some(self.client.last_write + config.idle_timeout),
            State::Lingering { until, .. } => Some(*until),
        }
    }

    /// Alternates I/O and decisions until neither makes progress (or the
    /// budget is spent), then gives back the buffers it no longer needs.
    fn drive<E: Env<Socket = S>>(&mut self, env: &mut E) {
        let mut budget = DRIVE_BUDGET;
        self.yielded = false;
        loop {
            let before = self.progress;
            if self.do_io(env, &mut budget) {
                self.progress += 1;
            }
            let state = mem::replace(&mut self.state, State::Closed);
            let was = mem::discriminant(&state);
            self.state = self.advance(env, state);
            if mem::discriminant(&self.state) != was {
                self.progress += 1;
            }
            if self.is_closed() || self.progress == before {
                break;
            }
            if budget == 0 {
                // Fairness: a fast peer on both sides could keep this loop
                // busy for a gigabyte while every other connection waits.
                self.yielded = true;
                break;
            }
        }
        let pool = env.buffers();
        for buffer in [
            &mut self.from_client,
            &mut self.to_upstream,
            &mut self.from_upstream,
            &mut self.to_client,
        ] {
            buffer.release(pool);
        }
    }

    /// Reads and writes what the state allows, each until `WouldBlock`.
    fn do_io<E: Env<Socket = S>>(&mut self, env: &mut E, budget: &mut usize) -> bool {
        let now = env.now();
        let mut happened = false;
        if self.reads_client() && self.client.can_read() {
            self.from_client.ensure(env.buffers());
            happened |= self.client.read_into(&mut self.from_client, budget, now);
        }
        let (writes_up, reads_up) = self.upstream_io();
        if let Some(up) = self.upstream.as_mut() {
            if writes_up {
                happened |= up.write_from(&mut self.to_upstream, now);
            }
            if reads_up && up.can_read() {
                self.from_upstream.ensure(env.buffers());
                happened |= up.read_into(&mut self.from_upstream, budget, now);
            }
        }
        happened |= self.client.write_from(&mut self.to_client, now);
        happened
    }

    /// Whether the state reads the client into `from_client`. While a
    /// response is relayed the client is not read: a pipelined request waits
    /// in the kernel (bounded), not in our memory.
    fn reads_client(&self) -> bool {
        match &self.state {
            State::ReadingHead { .. } => true,
            State::SendingRequest(_, s) => s.continue_until.is_none() && !s.body.is_done(),
            State::Tunnel(..) => true,
            _ => false,
        }
    }

    /// Whether the state writes to and reads from the upstream (only once
    /// it is connected). The upstream is read even while the request is
    /// still being sent: an early answer (a 413, say) must be in our buffer
    /// before the upstream's close turns into a reset that would discard it.
    fn upstream_io(&self) -> (bool, bool) {
        match &self.state {
            State::SendingRequest(..) | State::ReadingResponseHead(..) | State::Tunnel(..) => {
                (true, true)
            }
            State::RelayingResponse(_, r) => (true, !r.pump.is_done()),
            _ => (false, false),
        }
    }

    /// One decision step: the handler for the current state.
    fn advance<E: Env<Socket = S>>(&mut self, env: &mut E, state: State) -> State {
        match state {
            State::ReadingHead {
                first,
                since,
                scanned,
            } => self.reading_head(env, first, since, scanned),
            // Nothing to do until the answer (`on_resolved`) or the deadline.
            // The client is not read meanwhile (like phase 1, which is
            // blocked in `getaddrinfo`): if it goes away, that shows when
            // the answer is written, at the deadline at the latest.
            State::Resolving(x, deadline) => State::Resolving(x, deadline),
            State::Connecting(x, c) => self.connecting(env, x, c),
            State::SendingRequest(x, s) => self.sending_request(env, x, s),
            State::ReadingResponseHead(x, a) => self.reading_response_head(env, x, a),
            State::RelayingResponse(x, r) => self.relaying_response(env, x, r),
            State::Tunnel(x, t) => self.tunnel(env, x, t),
            State::Closing { reset } => self.closing(env, reset),
            State::Lingering { until, discarded } => self.lingering(env, until, discarded),
            State::Closed => State::Closed,
        }
    }

    // ----- reading the request head --------------------------------------

    fn reading_head<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        first: bool,
        since: Instant,
        mut scanned: usize,
    ) -> State {
        // Only new bytes can complete a head (after a partial parse,
        // `scanned` is the buffer's length).
        if self.from_client.len() > scanned {
            let max = env.config().max_header_bytes;
            match parse_request_from(self.from_client.data(), max, &mut scanned) {
                Ok(Parsed::Complete { head, len }) => {
                    self.from_client.consume(len);
                    return self.begin_exchange(env, head);
                }
                Ok(Parsed::Partial) => {}
                Err(err) => {
                    let started = Started::at(since, env.now());
                    return self.answer(env, &err, None, started);
                }
            }
        }
        if self.client.read_closed {
            // The client closed (or reset) between requests or in the
            // middle of a head: nothing to answer, nobody to answer to.
            if let Some(e) = &self.client.failed {
                tracing::debug!(error = %e, "client read failed");
                return State::Closed;
            }
            return self.close_gracefully(env);
        }
        if env.shutting_down() && self.from_client.is_empty() {
            return State::Closed;
        }
        State::ReadingHead {
            first,
            since,
            scanned,
        }
    }

    /// A complete request head: route it, then find an upstream for it.
    fn begin_exchange<E: Env<Socket = S>>(&mut self, env: &mut E, req: RequestHead) -> State {
        let now = env.now();
        let started = Started::at(now, now);
        tracing::debug!(request = %req.request_line(), "request head");
        let route = match target::route(&req, &env.config().mode) {
            Ok(route) => route,
            Err(err) => return self.answer(env, &err, Some(&req), started),
        };
        let (authority, tunnel) = match route {
            Route::Upstream(a) => (a, false),
            Route::Tunnel(a) => (a, true),
        };
        let mut x = Box::new(Exchange {
            req,
            authority,
            tunnel,
            started,
            reused: false,
            retried: false,
            force_close: false,
        });
        if !tunnel {
            if let Some(socket) = env.checkout(&x.authority) {
                // An idle connection has room in its send buffer: write the
                // head now rather than wait for the writable event.
                let ready = Readiness {
                    readable: false,
                    writable: true,
                };
                self.upstream = Some(Side::new(socket, ready, now));
                x.reused = true;
                return self.start_sending(env, x);
            }
        }
        self.find_upstream(env, x)
    }

    // ----- finding and connecting the upstream ---------------------------

    /// An IP address is connected to at once; a name goes to the resolver
    /// threads first (`getaddrinfo` blocks, see `dns.rs`). The
    /// `--connect-timeout` budget starts now and covers both, as in phase 1.
    fn find_upstream<E: Env<Socket = S>>(&mut self, env: &mut E, x: Box<Exchange>) -> State {
        let deadline = env.now() + env.config().connect_timeout;
        if let Ok(ip) = x.authority.host.parse::<IpAddr>() {
            let addr = SocketAddr::new(ip, x.authority.port);
            return self.start_connect(env, x, vec![addr], deadline);
        }
        match env.resolve(&x.authority) {
            Ok(()) => State::Resolving(x, deadline),
            Err(err) => self.answer(env, &err, Some(&x.req), x.started),
        }
    }

    /// Connects to `addrs` in turn, all by `deadline`.
    fn start_connect<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        addrs: Vec<SocketAddr>,
        deadline: Instant,
    ) -> State {
        let connect = Connect {
            addrs,
            next: 0,
            deadline,
            last_error: None,
        };
        self.connect_next(env, x, connect)
    }

    /// Starts a connect to the next address, or gives up with a 502.
    fn connect_next<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        mut c: Connect,
    ) -> State {
        self.upstream = None;
        while let Some(&addr) = c.addrs.get(c.next) {
            c.next += 1;
            match env.connect(addr) {
                Ok(socket) => {
                    self.upstream = Some(Side::new(socket, Readiness::default(), env.now()));
                    return State::Connecting(x, c);
                }
                Err(e) => c.last_error = Some(e),
            }
        }
        let err = ProxyError::BadGateway(match &c.last_error {
            Some(e) => format!("cannot connect to {}: {e}", x.authority),
            None => format!("cannot connect to {}", x.authority),
        });
        self.answer(env, &err, Some(&x.req), x.started)
    }

    /// A non-blocking connect finishes with a writable event; whether it
    /// succeeded is asked separately (mio's recipe, in `Side::check_connect`).
    fn connecting<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        mut c: Connect,
    ) -> State {
        let Some(up) = self.upstream.as_mut() else {
            return self.connect_next(env, x, c);
        };
        if !up.ready.writable {
            return State::Connecting(x, c);
        }
        match up.check_connect() {
            ConnectCheck::InProgress => State::Connecting(x, c),
            ConnectCheck::Failed(e) => {
                tracing::debug!(error = %e, authority = %x.authority, "connect failed");
                c.last_error = Some(e);
                self.connect_next(env, x, c)
            }
            ConnectCheck::Connected => {
                // Heads and bodies go out in separate writes; without this,
                // Nagle's algorithm and delayed ACKs add ~40 ms to exchanges.
                let _ = up.socket.set_nodelay();
                if x.tunnel {
                    self.start_tunnel(env, x)
                } else {
                    self.start_sending(env, x)
                }
            }
        }
    }

    // ----- sending the request ---------------------------------------------

    fn start_sending<E: Env<Socket = S>>(&mut self, env: &mut E, x: Box<Exchange>) -> State {
        let now = env.now();
        let head = rewrite::upstream_request(&x.req, &x.authority, self.client_ip, true);
        self.to_upstream.ensure(env.buffers());
        self.to_upstream.clear();
        if !self.to_upstream.extend(&head) {
            let err = ProxyError::HeaderTooLarge(
                "the rewritten request head does not fit the proxy's buffer".into(),
            );
            return self.answer(env, &err, Some(&x.req), x.started);
        }
        let Some(up) = self.upstream.as_mut() else {
            let err = ProxyError::BadGateway("no upstream connection".into());
            return self.answer(env, &err, Some(&x.req), x.started);
        };
        up.last_write = now;
        let head_end = up.written + head.len() as u64;
        self.client.last_read = now;
        // Like phase 1: wait for the verdict only if the client is waiting
        // too (it has sent nothing of the body yet).
        let wait = x.req.expect_continue && x.req.has_body() && self.from_client.is_empty();
        // A chunked body is re-chunked: only sizes and data go upstream,
        // never the client's chunk extensions or trailers.
        let relay = match x.req.body {
            BodyKind::Chunked => BodyRelay::Rechunk,
            _ => BodyRelay::Verbatim,
        };
        let sending = Sending {
            head_end,
            continue_until: wait.then(|| now + EXPECT_CONTINUE_WAIT),
            scanned: 0,
            body: BodyPump::new(x.req.body, relay),
        };
        // Whatever of the body is already here goes out with the head.
        self.sending_request(env, x, sending)
    }

    fn sending_request<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        mut x: Box<Exchange>,
        mut s: Sending,
    ) -> State {
        let (head_sent, upstream_failed) = match &self.upstream {
            Some(up) => (
                up.written >= s.head_end,
                up.failed.as_ref().map(|e| e.to_string()),
            ),
            None => (false, Some("no upstream connection".into())),
        };
        if let Some(e) = upstream_failed {
            if !head_sent {
                if self.can_retry(&x) {
                    return self.retry(env, x);
                }
                let err = ProxyError::BadGateway(format!(
                    "cannot send the request to {}: {e}",
                    x.authority
                ));
                return self.answer(env, &err, Some(&x.req), x.started);
            }
            // The upstream stopped reading the body: it may have answered
            // early (413...); read its response and close after it.
            tracing::debug!(error = %e, "upstream stopped reading the request body");
            x.force_close = true;
            return self.await_response_head(env, x);
        }

        if s.continue_until.is_some() {
            match self.await_continue(env, &x, &mut s) {
                Ok(None) => {}
                Ok(Some(resp)) => {
                    // A final answer before the body (417, 401...): the body
                    // stays unread, so the connection closes after it.
                    x.force_close = true;
                    return self.start_response(env, x, resp);
                }
                Err(err) => return self.answer(env, &err, Some(&x.req), x.started),
            }
            if s.continue_until.is_some() {
                return State::SendingRequest(x, s);
            }
        }

        if !s.body.is_done() {
            if let Some(e) = &self.client.failed {
                let reason = format!("client read failed mid-body: {e}");
                return self.abort(env, x, 0, 0, &reason);
            }
            // Buffers are lent only while needed (`drive` gives back empty
            // ones), so the sink is borrowed again before each pump.
            self.to_upstream.ensure(env.buffers());
            match s.body.pump(&mut self.from_client, &mut self.to_upstream) {
                Ok(n) => self.progress += n as u64,
                // The body is broken: nothing of the response has been sent,
                // so the client gets a 400, and the connection closes.
                Err(e) => {
                    return self.answer(
                        env,
                        &ProxyError::BadRequestBody(e),
                        Some(&x.req),
                        x.started,
                    );
                }
            }
            if !s.body.is_done() && self.from_client.is_empty() && self.client.read_closed {
                return self.abort(env, x, 0, 0, "client closed before the end of its body");
            }
        }
        if s.body.is_done() && self.to_upstream.is_empty() {
            return self.await_response_head(env, x);
        }
        State::SendingRequest(x, s)
    }

    /// `Expect: 100-continue`: looks for the upstream's verdict. `Ok(None)`
    /// with `continue_until` cleared: send the body (a 1xx was relayed).
    /// `Ok(Some(resp))`: a final response, the body is refused.
    fn await_continue<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: &Exchange,
        s: &mut Sending,
    ) -> Result<Option<ResponseHead>, ProxyError> {
        if !self.to_client.is_empty() {
            return Ok(None);
        }
        let max = env.config().max_header_bytes;
        match parse_response_from(self.from_upstream.data(), max, &mut s.scanned)? {
            Parsed::Complete { head, len } => {
                self.from_upstream.consume(len);
                s.scanned = 0;
                self.progress += 1;
                if !head.is_interim() {
                    return Ok(Some(head));
                }
                // 100 Continue (or 103 Early Hints): relay it; the body follows.
                self.relay_interim(env, &x.req, &head)?;
                s.continue_until = None;
                Ok(None)
            }
            Parsed::Partial => {
                if self.upstream.as_ref().is_none_or(|u| u.read_closed) {
                    return Err(self.upstream_closed_error());
                }
                Ok(None)
            }
        }
    }

    /// Queues an interim response for the client (HTTP/1.1 clients only).
    fn relay_interim<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        req: &RequestHead,
        resp: &ResponseHead,
    ) -> Result<(), ProxyError> {
        if resp.status == 101 {
            return Err(ProxyError::BadGateway(
                "upstream switched protocols although Upgrade was not forwarded".into(),
            ));
        }
        if let Some(bytes) = rewrite::interim_response(req, resp) {
            self.to_client.ensure(env.buffers());
            if !self.to_client.extend(&bytes) {
                return Err(ProxyError::BadGateway("interim response too large".into()));
            }
        }
        Ok(())
    }

    fn upstream_closed_error(&self) -> ProxyError {
        match self.upstream.as_ref().and_then(|u| u.failed.as_ref()) {
            Some(e) => {
                ProxyError::BadGateway(format!("reading the upstream's response failed: {e}"))
            }
            None => ProxyError::BadGateway(
                "the upstream closed the connection without a complete response".into(),
            ),
        }
    }

    /// A pooled connection that fails before any response byte was most
    /// likely closed by the upstream while idle; an idempotent request
    /// without a body can safely go again, once, on a fresh connection.
    fn can_retry(&self, x: &Exchange) -> bool {
        x.reused && !x.retried && x.req.may_resend() && self.from_upstream.is_empty()
    }

    fn retry<E: Env<Socket = S>>(&mut self, env: &mut E, mut x: Box<Exchange>) -> State {
        tracing::debug!(authority = %x.authority, "pooled upstream connection failed; retrying on a fresh one");
        self.upstream = None;
        self.from_upstream.clear();
        self.to_upstream.clear();
        x.retried = true;
        x.reused = false;
        // `sending_request` sets this when the dead upstream failed after
        // the head was written, for fear of an unread body. A retried
        // request has no body, so nothing is left unread: the fresh
        // exchange may keep the client connection alive.
        x.force_close = false;
        self.find_upstream(env, x)
    }

    // ----- reading the response head ---------------------------------------

    fn await_response_head<E: Env<Socket = S>>(&mut self, env: &mut E, x: Box<Exchange>) -> State {
        let awaiting = AwaitingHead {
            deadline: env.now() + env.config().upstream_timeout,
            interims: 0,
            scanned: 0,
        };
        State::ReadingResponseHead(x, awaiting)
    }

    fn reading_response_head<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        mut a: AwaitingHead,
    ) -> State {
        loop {
            if let Some(e) = &self.client.failed {
                let reason = format!("client write failed: {e}");
                return self.abort(env, x, 0, 0, &reason);
            }
            // An interim response still on its way out goes first: heads are
            // parsed one at a time, so `to_client` never holds more than one.
            if !self.to_client.is_empty() {
                return State::ReadingResponseHead(x, a);
            }
            let max = env.config().max_header_bytes;
            let parsed = parse_response_from(self.from_upstream.data(), max, &mut a.scanned);
            match parsed {
                Ok(Parsed::Complete { head, len }) => {
                    self.from_upstream.consume(len);
                    a.scanned = 0;
                    self.progress += 1;
                    if !head.is_interim() {
                        return self.start_response(env, x, head);
                    }
                    if a.interims == MAX_INTERIM_RESPONSES {
                        let err = ProxyError::BadGateway(format!(
                            "the upstream sent more than {MAX_INTERIM_RESPONSES} interim responses"
                        ));
                        return self.answer(env, &err, Some(&x.req), x.started);
                    }
                    a.interims += 1;
                    if let Err(err) = self.relay_interim(env, &x.req, &head) {
                        return self.answer(env, &err, Some(&x.req), x.started);
                    }
                }
                Ok(Parsed::Partial) => {
                    if self.upstream.as_ref().is_some_and(|u| !u.read_closed) {
                        return State::ReadingResponseHead(x, a);
                    }
                    if a.interims == 0 && self.can_retry(&x) {
                        return self.retry(env, x);
                    }
                    let err = self.upstream_closed_error();
                    return self.answer(env, &err, Some(&x.req), x.started);
                }
                Err(err) => return self.answer(env, &err, Some(&x.req), x.started),
            }
        }
    }

    /// The final response head: plan it, queue its head for the client.
    fn start_response<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        resp: ResponseHead,
    ) -> State {
        let keep_alive_allowed = !x.force_close && !env.shutting_down();
        let plan = rewrite::plan_response(&x.req, &resp, keep_alive_allowed);
        self.to_client.ensure(env.buffers());
        if !self.to_client.extend(&plan.head) {
            return self.abort(
                env,
                x,
                502,
                0,
                "the response head does not fit the proxy's buffer",
            );
        }
        // The stall clocks start now (the client's may date from a
        // previous exchange on this connection).
        let now = env.now();
        self.client.last_write = now;
        if let Some(up) = self.upstream.as_mut() {
            up.last_read = now;
        }
        let relaying = Relaying {
            pump: BodyPump::new(plan.upstream_body, plan.client_body),
            status: resp.status,
            keep_alive: plan.keep_alive,
            upstream_reusable: resp.upstream_keeps_alive() && !x.force_close,
            upstream_finished: false,
            cut_shows: plan.framing_shows_a_cut(),
        };
        // Whatever of the body is already here goes out with the head, in
        // the same write.
        self.relaying_response(env, x, relaying)
    }

    // ----- relaying the response body --------------------------------------

    fn relaying_response<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        mut r: Relaying,
    ) -> State {
        if let Some(e) = &self.client.failed {
            let reason = format!("client went away mid-body: {e}");
            return self.abort(env, x, r.status, r.pump.data_out(), &reason);
        }
        self.to_client.ensure(env.buffers());
        match r.pump.pump(&mut self.from_upstream, &mut self.to_client) {
            Ok(n) => self.progress += n as u64,
            Err(e) => {
                let reason = format!("upstream body broken: {e}");
                return self.cut_short(env, x, &r, &reason);
            }
        }
        if !r.pump.is_done() && self.from_upstream.is_empty() {
            let (closed, failed) = match &self.upstream {
                Some(up) => (up.read_closed, up.failed.as_ref().map(|e| e.to_string())),
                None => (true, Some("no upstream connection".into())),
            };
            if let Some(e) = failed {
                let reason = format!("upstream read failed mid-body: {e}");
                return self.cut_short(env, x, &r, &reason);
            }
            if closed && !r.upstream_finished {
                // The end of a close-delimited body, or a truncated one.
                r.upstream_finished = true;
                if let Err(e) = r.pump.finish() {
                    let reason = format!("upstream body broken: {e}");
                    return self.cut_short(env, x, &r, &reason);
                }
                self.progress += 1;
                // Adds the last chunk when re-chunking. If `to_client` has
                // no room for it yet, the pump at the top of this function
                // adds it once the client has taken some bytes.
                if let Err(e) = r.pump.pump(&mut self.from_upstream, &mut self.to_client) {
                    let reason = format!("upstream body broken: {e}");
                    return self.cut_short(env, x, &r, &reason);
                }
            }
        }
        if r.pump.is_done() && self.to_client.is_empty() {
            return self.finish_exchange(env, x, r);
        }
        State::RelayingResponse(x, r)
    }

    /// The response is out: log it, pool or close the upstream, and wait
    /// for the next request (whose bytes may already be here) or close.
    fn finish_exchange<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        r: Relaying,
    ) -> State {
        self.log(env, Some(&x.req), x.started, r.status, r.pump.data_out());
        if let Some(up) = self.upstream.take() {
            let clean = r.upstream_reusable
                && !r.pump.ends_at_close()
                && up.failed.is_none()
                && !up.read_closed
                && self.from_upstream.is_empty()
                && self.to_upstream.is_empty();
            if clean {
                env.checkin(x.authority, up.socket);
            }
        }
        self.from_upstream.clear();
        self.to_upstream.clear();
        if r.keep_alive {
            State::ReadingHead {
                first: false,
                since: env.now(),
                scanned: 0,
            }
        } else {
            self.close_gracefully(env)
        }
    }

    // ----- CONNECT tunnels ----------------------------------------------------

    fn start_tunnel<E: Env<Socket = S>>(&mut self, env: &mut E, x: Box<Exchange>) -> State {
        self.to_client.ensure(env.buffers());
        if !self.to_client.extend(answers::CONNECT_ESTABLISHED) {
            return State::Closed;
        }
        let now = env.now();
        self.client.last_read = now;
        State::Tunnel(x, Tunnel::default())
    }

    /// Bytes both ways, each direction bounded by its buffers; a half-close
    /// is passed on once everything before it has been delivered.
    fn tunnel<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        mut t: Tunnel,
    ) -> State {
        let Some(up) = self.upstream.as_mut() else {
            return State::Closed;
        };
        if let Some(e) = self.client.failed.as_ref().or(up.failed.as_ref()) {
            tracing::debug!(error = %e, "tunnel closed by an error");
            self.log(env, Some(&x.req), x.started, 200, t.bytes_down);
            return State::Closed;
        }
        let pool = env.buffers();
        self.to_upstream.ensure(pool);
        self.to_client.ensure(pool);
        self.progress += copy(&mut self.from_client, &mut self.to_upstream) as u64;
        let down = copy(&mut self.from_upstream, &mut self.to_client);
        t.bytes_down += down as u64;
        self.progress += down as u64;
        if self.client.read_closed
            && self.from_client.is_empty()
            && self.to_upstream.is_empty()
            && !t.fin_to_upstream
        {
            let _ = up.socket.shutdown_write();
            t.fin_to_upstream = true;
            self.progress += 1;
        }
        if up.read_closed
            && self.from_upstream.is_empty()
            && self.to_client.is_empty()
            && !t.fin_to_client
        {
            let _ = self.client.socket.shutdown_write();
            t.fin_to_client = true;
            self.progress += 1;
        }
        if t.fin_to_upstream && t.fin_to_client {
            self.log(env, Some(&x.req), x.started, 200, t.bytes_down);
            return State::Closed;
        }
        State::Tunnel(x, t)
    }

    // ----- closing --------------------------------------------------------------

    fn close_gracefully<E: Env<Socket = S>>(&mut self, env: &mut E) -> State {
        self.upstream = None;
        self.client.last_write = env.now();
        State::Closing { reset: false }
    }

    /// Once the last bytes are out, FIN, then linger: closing with unread
    /// bytes in the receive buffer would send a reset, which can destroy the
    /// response before the client reads it (RFC 9112 §9.6). Or, after an
    /// abort, the reset itself, once the bytes before it are delivered.
    fn closing<E: Env<Socket = S>>(&mut self, env: &mut E, reset: bool) -> State {
        if self.client.failed.is_some() {
            return State::Closed;
        }
        if !self.to_client.is_empty() {
            return State::Closing { reset };
        }
        if reset {
            self.client.socket.reset_on_close();
            return State::Closed;
        }
        if self.client.socket.shutdown_write().is_err() {
            return State::Closed;
        }
        State::Lingering {
            until: env.now() + LINGER_TIME,
            discarded: 0,
        }
    }

    fn lingering<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        until: Instant,
        mut discarded: usize,
    ) -> State {
        let now = env.now();
        let n = self
            .client
            .discard(env.buffers().scratch(), LINGER_BYTES - discarded, now);
        discarded += n;
        self.progress += n as u64;
        if self.client.read_closed || discarded >= LINGER_BYTES {
            return State::Closed;
        }
        State::Lingering { until, discarded }
    }

    // ----- deadlines -------------------------------------------------------------

    /// The deadline of `state` has passed.
    fn on_deadline<E: Env<Socket = S>>(&mut self, env: &mut E, state: State) -> State {
        let now = env.now();
        let config = env.config();
        let upstream_secs = config.upstream_timeout.as_secs();
        let connect_secs = config.connect_timeout.as_secs();
        match state {
            State::ReadingHead { since, .. } => {
                if self.from_client.is_empty() {
                    // Idle between requests, or never sent anything: close.
                    self.close_gracefully(env)
                } else {
                    let started = Started::at(since, now);
                    self.answer(env, &ProxyError::RequestTimeout, None, started)
                }
            }
            State::Resolving(x, _) => {
                // The resolver's answer, if it ever comes, finds the
                // connection in another state and is dropped (`on_resolved`).
                let err = ProxyError::GatewayTimeout(format!(
                    "no connection to {} within {connect_secs}s (its name was not resolved in time)",
                    x.authority
                ));
                self.answer(env, &err, Some(&x.req), x.started)
            }
            State::Connecting(x, _) => {
                let err = ProxyError::GatewayTimeout(format!(
                    "no connection to {} within {connect_secs}s",
                    x.authority
                ));
                self.answer(env, &err, Some(&x.req), x.started)
            }
            State::SendingRequest(mut x, mut s) => {
                if s.continue_until.is_some() {
                    // No verdict within the wait: send the body anyway.
                    s.continue_until = None;
                    return State::SendingRequest(x, s);
                }
                let head_sent = self
                    .upstream
                    .as_ref()
                    .is_some_and(|u| u.written >= s.head_end);
                if !self.to_upstream.is_empty() && !head_sent {
                    let err = ProxyError::BadGateway(format!(
                        "cannot send the request to {}: no progress within {upstream_secs}s",
                        x.authority
                    ));
                    self.answer(env, &err, Some(&x.req), x.started)
                } else if !self.to_upstream.is_empty() {
                    tracing::debug!("upstream stopped reading the request body");
                    x.force_close = true;
                    self.await_response_head(env, x)
                } else {
                    let err = ProxyError::BadRequest(
                        "the request body stalled past --idle-timeout".into(),
                    );
                    self.answer(env, &err, Some(&x.req), x.started)
                }
            }
            State::ReadingResponseHead(x, _) => {
                let err = ProxyError::GatewayTimeout(format!(
                    "the upstream did not answer within {upstream_secs}s"
                ));
                self.answer(env, &err, Some(&x.req), x.started)
            }
            State::RelayingResponse(x, r) => {
                if self.to_client.is_empty() {
                    self.cut_short(env, x, &r, "upstream stalled mid-body")
                } else {
                    let reason = "client stopped reading mid-body";
                    self.abort(env, x, r.status, r.pump.data_out(), reason)
                }
            }
            State::Tunnel(x, t) => {
                tracing::debug!("tunnel idle past --idle-timeout");
                self.log(env, Some(&x.req), x.started, 200, t.bytes_down);
                State::Closed
            }
            State::Closing { reset } => {
                if reset {
                    self.client.socket.reset_on_close();
                }
                State::Closed
            }
            State::Lingering { .. } => State::Closed,
            State::Closed => State::Closed,
        }
    }

    // ----- endings ---------------------------------------------------------------

    /// Answers `err` (nothing of a response has been sent), then closes.
    fn answer<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        err: &ProxyError,
        req: Option<&RequestHead>,
        started: Started,
    ) -> State {
        let is_head = req.is_some_and(|r| r.is_head());
        tracing::debug!(status = err.status(), error = %err, "answering with an error");
        let answer = answers::error_answer(err, is_head);
        self.log(env, req, started, err.status(), answer.body_len);
        self.to_client.ensure(env.buffers());
        if !self.to_client.extend(&answer.bytes) {
            return State::Closed;
        }
        self.close_gracefully(env)
    }

    /// Part of a response went out (or the client is gone): a reset is the
    /// only way left to say "this body is incomplete". What is already in
    /// `to_client` goes first (phase 1 had written it by then). A reset
    /// (`SO_LINGER` 0) throws away whatever still sits in the proxy's
    /// kernel send buffer, so the client gets every byte already delivered
    /// to *its* kernel, then the reset, not necessarily every byte the
    /// upstream sent; either way it cannot mistake the body for complete.
    fn abort<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        status: u16,
        body_bytes: u64,
        reason: &str,
    ) -> State {
        tracing::debug!(%reason, "exchange aborted");
        self.log(env, Some(&x.req), x.started, status, body_bytes);
        self.upstream = None;
        self.client.last_write = env.now();
        State::Closing { reset: true }
    }

    /// The upstream failed mid-body (closed early, reset, stalled, sent a
    /// broken chunk). When the body's framing shows the cut (a
    /// Content-Length not reached, no last chunk), the bytes already queued
    /// go out, then a FIN: the client keeps all of them and still knows the
    /// body is incomplete. Otherwise only a reset can say so ([`Self::abort`]).
    fn cut_short<E: Env<Socket = S>>(
        &mut self,
        env: &mut E,
        x: Box<Exchange>,
        r: &Relaying,
        reason: &str,
    ) -> State {
        if !r.cut_shows {
            return self.abort(env, x, r.status, r.pump.data_out(), reason);
        }
        tracing::debug!(%reason, "exchange cut short (its framing shows it)");
        self.log(env, Some(&x.req), x.started, r.status, r.pump.data_out());
        self.upstream = None;
        self.client.last_write = env.now();
        State::Closing { reset: false }
    }

    fn log<E: Env<Socket = S>>(
        &self,
        env: &mut E,
        req: Option<&RequestHead>,
        started: Started,
        status: u16,
        body_bytes: u64,
    ) {
        if !env.config().access_log {
            return;
        }
        let record = AccessRecord {
            client: self.client_ip,
            start: started.wall,
            request_line: req.map_or_else(|| "-".to_string(), |r| r.request_line()),
            status,
            body_bytes,
            duration: env.now().saturating_duration_since(started.at),
        };
        env.access_log(record);
    }
}

/// Moves as many bytes as fit from `from` to `to` (a tunnel's relay).
fn copy(from: &mut Buffer, to: &mut Buffer) -> usize {
    let n = from.len().min(to.space());
    if n > 0 && n == from.len() && to.is_empty() {
        return from.hand_over(to);
    }
    if n > 0 {
        let moved = to.extend(&from.data()[..n]);
        debug_assert!(moved);
        from.consume(n);
    }
    n
}

#[cfg(test)]
mod tests;
