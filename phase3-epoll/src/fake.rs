//! In-memory sockets and an in-memory event loop environment, for driving
//! the connection state machine in unit tests with events in any order.
//!
//! A [`FakeSocket`] is a handle on a shared [`Wire`]: the connection holds
//! one handle, the test keeps another, puts bytes in (`incoming`), reads
//! what the proxy wrote (`written`), and decides what the "kernel" does:
//! how much room the send buffer has (short writes, `WouldBlock`), whether
//! the peer has closed or reset, whether a connect has completed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use proxy_core::access_log::AccessRecord;
use proxy_core::{Authority, Config, Mode, ProxyError};

use crate::buffer::BufferPool;
use crate::connection::Env;
use crate::socket::Socket;

/// What one end of a fake TCP connection looks like from the proxy's side.
#[derive(Debug, Default)]
pub struct Wire {
    /// Bytes the peer sent that the proxy has not read yet.
    pub incoming: VecDeque<u8>,
    /// The peer closed its sending side (a read returns 0 once `incoming`
    /// is empty).
    pub eof: bool,
    /// The peer reset the connection: reads fail with `ConnectionReset`,
    /// writes with `BrokenPipe`.
    pub reset: bool,
    /// Reads fail with `ConnectionReset` but writes still succeed: a reset
    /// that arrives just after the kernel accepted the proxy's last write.
    pub read_reset: bool,
    /// Every byte the proxy wrote.
    pub written: Vec<u8>,
    /// How many more bytes the peer accepts before writes would block
    /// (`None`: no limit).
    pub room: Option<usize>,
    /// The proxy sent FIN (`shutdown(Write)`).
    pub fin_sent: bool,
    /// Whether a connect has completed (`peer_addr` works).
    pub connected: bool,
    /// A connect that failed: `take_error` returns this once.
    pub connect_error: Option<io::ErrorKind>,
    /// The proxy asked for a reset on close (SO_LINGER 0).
    pub reset_on_close: bool,
    /// How many reads the proxy made (to show it stops reading).
    pub reads: usize,
}

/// A handle on a [`Wire`]; clones share it.
#[derive(Debug, Clone, Default)]
pub struct FakeSocket(pub Rc<RefCell<Wire>>);

impl FakeSocket {
    /// A connected socket.
    pub fn connected() -> FakeSocket {
        let s = FakeSocket::default();
        s.wire().connected = true;
        s
    }

    pub fn wire(&self) -> std::cell::RefMut<'_, Wire> {
        self.0.borrow_mut()
    }

    /// The peer sends `bytes`.
    pub fn send(&self, bytes: &[u8]) {
        self.wire().incoming.extend(bytes);
    }

    /// What the proxy has written, as text.
    pub fn written_text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow().written).into_owned()
    }
}

impl Read for FakeSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut w = self.wire();
        w.reads += 1;
        if w.reset || w.read_reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if w.incoming.is_empty() {
            return if w.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(w.incoming.len());
        for (slot, byte) in buf.iter_mut().zip(w.incoming.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for FakeSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut w = self.wire();
        if w.reset {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = match w.room {
            Some(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Some(room) => room.min(buf.len()),
            None => buf.len(),
        };
        if let Some(room) = w.room.as_mut() {
            *room -= n;
        }
        w.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for FakeSocket {
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.wire().connect_error.take().map(io::Error::from))
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        if self.0.borrow().connected {
            Ok(SocketAddr::from(([127, 0, 0, 1], 9)))
        } else {
            Err(io::ErrorKind::NotConnected.into())
        }
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.wire().fin_sent = true;
        Ok(())
    }
    fn set_nodelay(&self) -> io::Result<()> {
        Ok(())
    }
    fn reset_on_close(&self) {
        self.wire().reset_on_close = true;
    }
}

/// The upstream every fake environment proxies to.
pub fn upstream() -> Authority {
    Authority {
        host: "127.0.0.1".into(),
        port: 9,
    }
}

pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// An event loop's services, in memory: a clock the test moves, connects
/// that hand the test a handle on each new upstream socket, a pool the test
/// fills, an access log it reads.
#[derive(Debug)]
pub struct FakeEnv {
    pub now: Instant,
    pub config: Config,
    pub shutting_down: bool,
    pub buffers: BufferPool,
    /// Every connect the connection started, in order.
    pub connects: Vec<(SocketAddr, FakeSocket)>,
    pub resolves: Vec<Authority>,
    /// Idle connections `checkout` hands out.
    pub pool: Vec<FakeSocket>,
    pub checked_in: Vec<FakeSocket>,
    pub log: Vec<AccessRecord>,
}

impl FakeEnv {
    /// Reverse mode to [`upstream`], access log on, 64 KiB buffers.
    pub fn new() -> FakeEnv {
        FakeEnv::with_buffers(64 * 1024)
    }

    pub fn with_buffers(size: usize) -> FakeEnv {
        let mut config = Config::new(Mode::Reverse {
            upstream: upstream(),
        });
        config.access_log = true;
        config.max_header_bytes = config.max_header_bytes.min(size / 2);
        FakeEnv {
            now: Instant::now(),
            config,
            shutting_down: false,
            buffers: BufferPool::new(size, 16),
            connects: Vec::new(),
            resolves: Vec::new(),
            pool: Vec::new(),
            checked_in: Vec::new(),
            log: Vec::new(),
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// The upstream socket of the `n`th connect.
    pub fn upstream(&self, n: usize) -> FakeSocket {
        match self.connects.get(n) {
            Some((_, s)) => s.clone(),
            None => panic!("connect #{n} never happened: {:?}", self.connects.len()),
        }
    }

    /// Statuses logged so far.
    pub fn statuses(&self) -> Vec<u16> {
        self.log.iter().map(|r| r.status).collect()
    }
}

impl Env for FakeEnv {
    type Socket = FakeSocket;

    fn now(&self) -> Instant {
        self.now
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn shutting_down(&self) -> bool {
        self.shutting_down
    }
    fn buffers(&mut self) -> &mut BufferPool {
        &mut self.buffers
    }
    fn connect(&mut self, addr: SocketAddr) -> io::Result<FakeSocket> {
        let socket = FakeSocket::default();
        self.connects.push((addr, socket.clone()));
        Ok(socket)
    }
    fn resolve(&mut self, authority: &Authority) -> Result<(), ProxyError> {
        self.resolves.push(authority.clone());
        Ok(())
    }
    fn checkout(&mut self, _authority: &Authority) -> Option<FakeSocket> {
        self.pool.pop()
    }
    fn checkin(&mut self, _authority: Authority, socket: FakeSocket) {
        self.checked_in.push(socket);
    }
    fn access_log(&mut self, record: AccessRecord) {
        self.log.push(record);
    }
}
