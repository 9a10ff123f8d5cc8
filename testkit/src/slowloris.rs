//! A slowloris client: it connects, then sends a request head one byte at
//! a time, slowly enough never to finish, and notices when the proxy cuts
//! it off.
//!
//! The attack works on a server that times each *read* instead of the
//! whole head: every byte restarts the clock, so a byte a second holds a
//! connection (and, in a blocking server, a thread) for ever, and a few
//! hundred such clients take every slot. `--header-timeout` must be a
//! deadline for the complete head, counted from the accept.
//!
//! The socket is non-blocking, so one thread can drive hundreds of these
//! with [`SlowClient::tick`]; [`Client`](crate::Client) is not used because
//! it blocks on every read, and what matters here is the moment the
//! connection ends, not a response (there is none, or a 408).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The head the client never finishes (a byte a second would need 45 s).
const HEAD: &[u8] = b"GET /bytes/10 HTTP/1.1\r\nHost: origin.test\r\n\r\n";
/// The most of the proxy's answer kept (a 408 is far shorter).
const KEPT_ANSWER: usize = 1024;
/// How long connecting may take before the case fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One slow client connection.
#[derive(Debug)]
pub struct SlowClient {
    stream: TcpStream,
    /// Taken just before connecting. The proxy's header clock starts at
    /// its accept, later, so the proxy may cut the connection no earlier
    /// than this plus the header timeout.
    started: Instant,
    /// Bytes of [`HEAD`] sent so far.
    sent: usize,
    last_sent: Instant,
    /// What the proxy sent (at most [`KEPT_ANSWER`] bytes).
    answer: Vec<u8>,
    /// How long after `started` the connection was seen to end.
    cut_after: Option<Duration>,
}

impl SlowClient {
    /// Connects and sends the first byte of the head.
    pub fn connect(addr: SocketAddr) -> io::Result<SlowClient> {
        let started = Instant::now();
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.write_all(&HEAD[..1])?;
        stream.set_nonblocking(true)?;
        Ok(SlowClient {
            stream,
            started,
            sent: 1,
            last_sent: Instant::now(),
            answer: Vec::new(),
            cut_after: None,
        })
    }

    /// Notices whether the proxy has ended the connection (EOF or reset,
    /// after an answer or not) and, if not and `every` has passed since
    /// the last byte, sends the next byte of the head. Returns whether the
    /// connection is still open. Never blocks.
    pub fn tick(&mut self, every: Duration) -> Result<bool, String> {
        if self.cut_after.is_some() {
            return Ok(false);
        }
        self.read_available()?;
        if self.cut_after.is_some() {
            return Ok(false);
        }
        if self.last_sent.elapsed() >= every && self.sent < HEAD.len() {
            match self.stream.write(&HEAD[self.sent..=self.sent]) {
                Ok(n) => {
                    self.sent += n;
                    self.last_sent = Instant::now();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) if is_closed(&e) => self.cut(),
                Err(e) => return Err(format!("slow client: write failed: {e}")),
            }
        }
        Ok(self.cut_after.is_none())
    }

    /// Reads whatever the proxy sent, until nothing more is available.
    fn read_available(&mut self) -> Result<(), String> {
        let mut piece = [0u8; 512];
        loop {
            match self.stream.read(&mut piece) {
                Ok(0) => {
                    self.cut();
                    return Ok(());
                }
                Ok(n) => {
                    let room = KEPT_ANSWER.saturating_sub(self.answer.len()).min(n);
                    self.answer.extend_from_slice(&piece[..room]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if is_closed(&e) => {
                    self.cut();
                    return Ok(());
                }
                Err(e) => return Err(format!("slow client: read failed: {e}")),
            }
        }
    }

    fn cut(&mut self) {
        self.cut_after = Some(self.started.elapsed());
    }

    /// How long after the connect began the proxy was seen to end the
    /// connection (`None` while it is open). Seen at the last
    /// [`SlowClient::tick`], so at most one tick late.
    pub fn cut_after(&self) -> Option<Duration> {
        self.cut_after
    }

    /// How many bytes of the head were sent.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Checks what the proxy said before ending the connection: nothing,
    /// or a 408 answer. Anything else (a 400 for a head that was only
    /// incomplete, a 503, a response) is wrong.
    pub fn check_answer(&self) -> Result<(), String> {
        let answer = &self.answer;
        if answer.is_empty()
            || answer.starts_with(b"HTTP/1.1 408 ")
            || answer.starts_with(b"HTTP/1.0 408 ")
        {
            Ok(())
        } else {
            Err(format!(
                "a slow client (sent \"{}\") got \"{}\" instead of a 408 or nothing",
                HEAD[..self.sent].escape_ascii(),
                answer.escape_ascii()
            ))
        }
    }
}

/// The errors that mean the peer has closed or reset the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn a_slow_client_drips_its_head_and_sees_the_408_and_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = [0u8; 3];
            s.read_exact(&mut got).unwrap();
            s.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
                .unwrap();
            // A FIN, and no reset: read until the client has gone.
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let _ = s.read_to_end(&mut Vec::new());
            got
        });
        let mut c = SlowClient::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.tick(Duration::from_millis(10)).unwrap() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(c.cut_after().is_some());
        assert!(c.sent() >= 3);
        c.check_answer().unwrap();
        // The server drains until this client has gone.
        drop(c);
        assert_eq!(&server.join().unwrap(), b"GET");
    }

    #[test]
    fn anything_but_a_408_is_a_wrong_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.read_exact(&mut [0u8; 1]);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.read_to_end(&mut Vec::new());
        });
        let mut c = SlowClient::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.tick(Duration::from_secs(1)).unwrap() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(c.check_answer().unwrap_err().contains("400"));
    }
}
