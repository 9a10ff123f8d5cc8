//! One client connection of the load generator: open it (through a CONNECT
//! tunnel if asked), send a request, read the whole response.
//!
//! The response is read with proxy-core's own head parser and body framer,
//! so the generator knows exactly where each response ends on a kept-alive
//! connection (Content-Length, chunked or close-delimited) without buffering
//! bodies: every read goes into one fixed buffer per connection and is
//! counted, then overwritten.

use std::net::SocketAddr;

use proxy_core::framing::{BodyFramer, BodyKind};
use proxy_core::{Parsed, parse_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Size of each connection's read buffer, and so the largest response head
/// accepted. Bodies of any size stream through it.
pub const READ_BUFFER: usize = 64 * 1024;

/// Why an exchange failed (the kinds of [`crate::results::ErrorCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Write,
    Read,
}

/// A complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Bytes read for it: head and body (framing included).
    pub bytes: u64,
    /// The connection may carry the next request.
    pub reusable: bool,
}

/// What a connection sends and where.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The request, ready to write (built once by [`request_bytes`]).
    pub request: Vec<u8>,
    /// `HOST:PORT` to open a CONNECT tunnel to before the first request.
    pub tunnel: Option<String>,
    /// Ask to keep the connection open between requests.
    pub keep_alive: bool,
}

/// `GET path HTTP/1.1` with a Host, and `Connection: close` when the
/// connection must not be reused (the "new connection per request" runs).
pub fn request_bytes(host: &str, path: &str, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: proxy-ladder-bench\r\n{connection}\r\n"
    )
    .into_bytes()
}

/// Opens a connection to the target, and the tunnel if the target has one.
pub async fn open(target: &Target, buf: &mut [u8]) -> Result<TcpStream, Failure> {
    let mut stream = TcpStream::connect(target.addr)
        .await
        .map_err(|_| Failure::Connect)?;
    // Requests are written whole; Nagle would only delay them.
    let _ = stream.set_nodelay(true);
    if let Some(authority) = &target.tunnel {
        let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        stream
            .write_all(connect.as_bytes())
            .await
            .map_err(|_| Failure::Connect)?;
        // A tunnel that is not established is a failure to connect: the
        // client never got a path to the origin.
        let (head, _, _) = read_head(&mut stream, buf)
            .await
            .map_err(|_| Failure::Connect)?;
        if head.status != 200 {
            return Err(Failure::Connect);
        }
    }
    Ok(stream)
}

/// The parts of a response head the generator needs.
#[derive(Debug, Clone, Copy)]
struct Head {
    status: u16,
    body: BodyKind,
    keeps_alive: bool,
}

/// Reads one final response head (skipping interim 1xx ones). Returns the
/// head, its length, and how many bytes of `buf` hold data after it.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(Head, u64, usize), Failure> {
    let mut filled = 0;
    let mut head_bytes = 0u64;
    loop {
        match parse_response(&buf[..filled], buf.len()) {
            Ok(Parsed::Complete { head, len }) => {
                head_bytes += len as u64;
                // Whatever follows the head is already body (or the next head).
                buf.copy_within(len..filled, 0);
                filled -= len;
                if head.is_interim() {
                    continue;
                }
                let parsed = Head {
                    status: head.status,
                    body: head.body_kind("GET"),
                    keeps_alive: head.upstream_keeps_alive(),
                };
                return Ok((parsed, head_bytes, filled));
            }
            Ok(Parsed::Partial) if filled < buf.len() => {
                let n = stream
                    .read(&mut buf[filled..])
                    .await
                    .map_err(|_| Failure::Read)?;
                if n == 0 {
                    return Err(Failure::Read);
                }
                filled += n;
            }
            // A head larger than the buffer, or malformed.
            Ok(Parsed::Partial) | Err(_) => return Err(Failure::Read),
        }
    }
}

/// Sends the request on `stream` and reads the whole response.
pub async fn exchange(
    stream: &mut TcpStream,
    target: &Target,
    buf: &mut [u8],
) -> Result<Response, Failure> {
    stream
        .write_all(&target.request)
        .await
        .map_err(|_| Failure::Write)?;
    let (head, head_bytes, mut filled) = read_head(stream, buf).await?;
    let mut framer = BodyFramer::new(head.body);
    let mut body_bytes = 0u64;
    loop {
        let advance = framer.advance(&buf[..filled]).map_err(|_| Failure::Read)?;
        body_bytes += advance.consumed as u64;
        if advance.done {
            break;
        }
        filled = stream.read(buf).await.map_err(|_| Failure::Read)?;
        if filled == 0 {
            // EOF: the end of a close-delimited body, a truncation otherwise.
            framer.finish().map_err(|_| Failure::Read)?;
            break;
        }
    }
    Ok(Response {
        status: head.status,
        bytes: head_bytes + body_bytes,
        reusable: target.keep_alive && head.keeps_alive && head.body != BodyKind::UntilClose,
    })
}
