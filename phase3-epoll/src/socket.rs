//! One end of a connection as the state machine sees it: a non-blocking
//! socket, what epoll last said about it, and the edge-triggered discipline
//! for reading and writing it.
//!
//! # Readiness is remembered, not re-asked
//!
//! mio registers sockets *edge-triggered*: epoll reports "this socket became
//! readable" once, when bytes arrive, and not again until more arrive. So a
//! connection must remember what it was told ([`Readiness`]) and keep going
//! until the kernel says `WouldBlock`; only then is the flag cleared. A
//! connection that stops reading early (its buffer is full: backpressure)
//! keeps the flag set and reads again as soon as the buffer drains, without
//! waiting for an event that would never come.
//!
//! Each socket is registered once, for both directions; what the connection
//! *does* with the readiness depends on its state (a connection relaying a
//! response does not read its client; a full buffer is not read into). That
//! filter lives in user space, as in sozu, instead of an `epoll_ctl` call
//! per state change.
//!
//! # A trait, so the state machine can be tested without sockets
//!
//! [`Socket`] is the little the state machine needs from a TCP stream. The
//! event loop uses `mio::net::TcpStream`; the unit tests use an in-memory
//! fake that can deliver bytes, `WouldBlock`, short writes, resets and
//! half-connected states in any order.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

/// What the connection needs from a socket, beyond `Read` and `Write`.
pub trait Socket: Read + Write {
    /// The pending socket error (`SO_ERROR`), if any: how a failed
    /// non-blocking connect reports itself.
    fn take_error(&self) -> io::Result<Option<io::Error>>;
    /// The peer's address; `NotConnected` while a connect is in progress.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
    /// Sends FIN: "no more bytes from me" (a half-close).
    fn shutdown_write(&self) -> io::Result<()>;
    /// Disables Nagle's algorithm (heads and bodies go out in separate writes).
    fn set_nodelay(&self) -> io::Result<()>;
    /// Makes the coming close send a reset (RST) instead of FIN: the only
    /// way to tell an HTTP/1.0 client that a body it got is incomplete.
    fn reset_on_close(&self);
}

impl Socket for mio::net::TcpStream {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        mio::net::TcpStream::take_error(self)
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        mio::net::TcpStream::peer_addr(self)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
    fn set_nodelay(&self) -> io::Result<()> {
        mio::net::TcpStream::set_nodelay(self, true)
    }
    fn reset_on_close(&self) {
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

/// What epoll has reported about a socket since the last `WouldBlock`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
}

impl Readiness {
    /// Readable and writable.
    pub const BOTH: Readiness = Readiness {
        readable: true,
        writable: true,
    };

    /// From a mio event. A hang-up or an error counts as both: the next read
    /// or write is what reports it (EOF, `ECONNRESET`, ...), so the state
    /// machine sees it through the same path as data.
    pub fn from_event(event: &mio::event::Event) -> Readiness {
        let trouble = event.is_error() || event.is_read_closed() || event.is_write_closed();
        Readiness {
            readable: event.is_readable() || trouble,
            writable: event.is_writable() || trouble,
        }
    }
}

/// The result of checking a non-blocking connect.
#[derive(Debug)]
pub enum ConnectCheck {
    Connected,
    /// Not yet: the wake-up was for something else (it happens).
    InProgress,
    Failed(io::Error),
}

/// One socket of a connection, with what is known about it.
#[derive(Debug)]
pub struct Side<S> {
    pub socket: S,
    pub ready: Readiness,
    /// The peer sent FIN (a read returned 0), or reading failed.
    pub read_closed: bool,
    /// The first error a read or write returned; the socket is not used
    /// for I/O after it.
    pub failed: Option<io::Error>,
    /// When a read or a write last moved bytes: stall timeouts count from here.
    pub last_read: Instant,
    pub last_write: Instant,
    /// Bytes written since the socket was attached.
    pub written: u64,
}

impl<S: Socket> Side<S> {
    pub fn new(socket: S, ready: Readiness, now: Instant) -> Side<S> {
        Side {
            socket,
            ready,
            read_closed: false,
            failed: None,
            last_read: now,
            last_write: now,
            written: 0,
        }
    }

    /// True if a read may return something: readiness not yet drained, no
    /// EOF, no error.
    pub fn can_read(&self) -> bool {
        self.ready.readable && !self.read_closed && self.failed.is_none()
    }

    /// Reads into `buf` until `WouldBlock`, EOF, an error, a full buffer or
    /// the end of `budget`. Returns whether anything happened (bytes, EOF
    /// or an error), and charges the bytes to `budget`.
    pub fn read_into(
        &mut self,
        buf: &mut crate::buffer::Buffer,
        budget: &mut usize,
        now: Instant,
    ) -> bool {
        let mut happened = false;
        while self.can_read() && buf.space() > 0 && *budget > 0 {
            match buf.read_from(&mut self.socket) {
                Ok(0) => {
                    self.read_closed = true;
                    happened = true;
                }
                Ok(n) => {
                    *budget = budget.saturating_sub(n);
                    self.last_read = now;
                    happened = true;
                }
                Err(e) => happened |= self.read_error(e),
            }
        }
        happened
    }

    /// Reads and throws away up to `limit` bytes (a lingering close).
    /// Returns how many bytes were read.
    pub fn discard(&mut self, scratch: &mut [u8], limit: usize, now: Instant) -> usize {
        let mut total = 0;
        while self.can_read() && total < limit {
            let max = scratch.len().min(limit - total);
            match self.socket.read(&mut scratch[..max]) {
                Ok(0) => self.read_closed = true,
                Ok(n) => {
                    total += n;
                    self.last_read = now;
                }
                Err(e) => {
                    self.read_error(e);
                }
            }
        }
        total
    }

    /// Writes from `buf` until it is empty, `WouldBlock` or an error.
    /// Returns whether anything happened.
    pub fn write_from(&mut self, buf: &mut crate::buffer::Buffer, now: Instant) -> bool {
        let mut happened = false;
        while self.ready.writable && self.failed.is_none() && !buf.is_empty() {
            match buf.write_to(&mut self.socket) {
                Ok(0) => {
                    self.failed = Some(io::ErrorKind::WriteZero.into());
                    happened = true;
                }
                Ok(n) => {
                    self.written += n as u64;
                    self.last_write = now;
                    happened = true;
                }
                // Short of room in the kernel's send buffer: keep the rest,
                // resume when epoll says writable again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = Some(e);
                    happened = true;
                }
            }
        }
        happened
    }

    /// Handles a read error; returns whether it changed anything.
    fn read_error(&mut self, e: io::Error) -> bool {
        match e.kind() {
            // Drained: wait for the next edge.
            io::ErrorKind::WouldBlock => {
                self.ready.readable = false;
                false
            }
            io::ErrorKind::Interrupted => false,
            _ => {
                self.read_closed = true;
                self.failed = Some(e);
                true
            }
        }
    }

    /// Checks a non-blocking connect (the recipe in mio's `TcpStream::connect`
    /// docs): a pending socket error means it failed; otherwise having a peer
    /// address means it succeeded, and `NotConnected` means not yet.
    pub fn check_connect(&mut self) -> ConnectCheck {
        match self.socket.take_error() {
            Ok(Some(e)) | Err(e) => return ConnectCheck::Failed(e),
            Ok(None) => {}
        }
        match self.socket.peer_addr() {
            Ok(_) => ConnectCheck::Connected,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                // A wake-up that was not the connect completing: wait for
                // the next writable edge.
                self.ready.writable = false;
                ConnectCheck::InProgress
            }
            Err(e) => ConnectCheck::Failed(e),
        }
    }
}
