//! The origin's endpoints and protocol behaviour, checked over raw TCP.
//!
//! Every socket has a read timeout, so a server bug shows up as a failed
//! assertion, never as a hung test.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use origin::{Echo, Origin, OriginConfig, pattern, pattern_byte, sha256_hex};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A raw client that keeps unread bytes between responses (pipelining).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A response as it arrived.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
    /// How the body ended: "length", "chunked", "close" or "none".
    framing: &'static str,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn echo(&self) -> Echo {
        assert_eq!(self.status, 200, "echo failed: {self:?}");
        serde_json::from_slice(&self.body).expect("echo body is JSON")
    }
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to origin");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send request");
    }

    /// Reads more bytes; returns 0 at EOF.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).expect("read from origin");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads exactly `n` bytes.
    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "EOF after {} of {n} bytes", self.buf.len());
        }
        self.buf.drain(..n).collect()
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return line;
            }
            assert!(self.fill() > 0, "EOF inside a line: {:?}", self.buf);
        }
    }

    /// Reads a response head: status and fields.
    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut fields);
            match response
                .parse(&self.buf)
                .expect("well-formed response head")
            {
                httparse::Status::Complete(len) => {
                    let status = response.code.unwrap();
                    let headers = response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..len);
                    return (status, headers);
                }
                httparse::Status::Partial => {
                    assert!(self.fill() > 0, "EOF inside a head: {:?}", self.buf);
                }
            }
        }
    }

    /// Reads one whole response. `head_request`: the request was HEAD.
    fn response_to(&mut self, head_request: bool) -> Response {
        let (status, headers) = self.head();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
            framing: "none",
        };
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
        let length = response
            .header("content-length")
            .map(|v| v.parse::<usize>().expect("numeric Content-Length"));
        if head_request || status == 204 || status == 304 {
            return response;
        }
        if chunked {
            response.framing = "chunked";
            loop {
                let size_line = self.line();
                let size_text = String::from_utf8(size_line).unwrap();
                let size = usize::from_str_radix(&size_text, 16).expect("hex chunk size");
                if size == 0 {
                    break;
                }
                let data = self.take(size);
                response.body.extend_from_slice(&data);
                assert_eq!(self.take(2), b"\r\n", "chunk data ends with CRLF");
            }
            loop {
                let line = String::from_utf8(self.line()).unwrap();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').expect("trailer has a colon");
                response
                    .trailers
                    .push((name.to_string(), value.trim().to_string()));
            }
        } else if let Some(length) = length {
            response.framing = "length";
            response.body = self.take(length);
        } else {
            response.framing = "close";
            while self.fill() > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    fn response(&mut self) -> Response {
        self.response_to(false)
    }

    /// Sends a GET and reads the answer.
    fn get(&mut self, target: &str) -> Response {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: origin\r\n\r\n").as_bytes());
        self.response()
    }

    /// True if the server closed the connection (EOF or reset) with nothing
    /// left unread.
    fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => self.buf.is_empty(),
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

fn start() -> Origin {
    Origin::start().expect("start origin")
}

// ---------------------------------------------------------------- pattern

#[test]
fn pattern_is_a_prefix_of_one_sequence_with_prime_period() {
    let long = pattern(1000);
    assert_eq!(pattern(10), long[..10]);
    for (i, &b) in long.iter().enumerate() {
        assert_eq!(b, pattern_byte(i as u64));
    }
    // Period 251: repeats there, and nowhere a power of two would hide it.
    assert_eq!(long[..251], long[251..502]);
    assert_ne!(long[..256], long[256..512]);
    assert!(pattern(0).is_empty());
}

#[test]
fn sha256_hex_is_lowercase_hex_of_sha256() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(sha256_hex(b"hello").len(), 64);
}

// -------------------------------------------------------------- endpoints

#[test]
fn bytes_sends_pattern_with_content_length() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    for n in [0usize, 1, 300, 70_000, 1_000_003] {
        let response = client.get(&format!("/bytes/{n}"));
        assert_eq!(response.status, 200);
        assert_eq!(response.framing, "length");
        assert_eq!(
            response.header("content-length"),
            Some(n.to_string().as_str())
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(response.header("server"), Some("proxy-ladder-origin"));
        assert!(
            response.header("date").is_none(),
            "responses are deterministic"
        );
        assert!(
            response.body == pattern(n),
            "body of /bytes/{n} is the pattern"
        );
    }
}

#[test]
fn bytes_delay_waits_before_answering() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let started = Instant::now();
    let response = client.get("/bytes/5?delay=300");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.body, pattern(5));
}

#[test]
fn bytes_stall_sends_half_the_body_then_waits_then_the_rest() {
    let origin = start();
    let mut stream = TcpStream::connect(origin.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /bytes/100000?stall=1000 HTTP/1.1\r\nHost: origin\r\n\r\n")
        .unwrap();
    let mut received = Vec::new();
    let mut piece = [0u8; 65536];
    let head_end = |r: &[u8]| r.windows(4).position(|w| w == b"\r\n\r\n");
    // The head and the first half arrive...
    while head_end(&received).is_none_or(|end| received.len() < end + 4 + 50_000) {
        let n = stream.read(&mut piece).unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&piece[..n]);
    }
    let body_start = head_end(&received).unwrap() + 4;
    assert_eq!(
        received.len(),
        body_start + 50_000,
        "exactly half, then a stall"
    );
    // ...then nothing for a while (a short look, far inside the 1 s stall)...
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let during_stall = stream.read(&mut piece);
    assert!(
        matches!(&during_stall, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "{during_stall:?}"
    );
    // ...then the rest.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while received.len() < body_start + 100_000 {
        let n = stream.read(&mut piece).unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&piece[..n]);
    }
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(received[body_start..] == pattern(100_000)[..]);
}

#[test]
fn head_gets_the_same_head_and_no_body() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: o\r\n\r\n");
    let response = client.response_to(true);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("1000"));
    // If any body bytes had been sent, this next response would not parse.
    let next = client.get("/bytes/3");
    assert_eq!(next.body, pattern(3));
}

#[test]
fn chunked_sends_pattern_in_chunks_with_checksum_trailer() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /chunked/2500?chunk=1000&trailer=1 HTTP/1.1\r\nHost: o\r\n\r\n");
    let (status, headers) = client.head();
    assert_eq!(status, 200);
    assert!(headers.contains(&("Transfer-Encoding".into(), "chunked".into())));
    assert!(
        !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    );
    // Read the chunks by hand to see their sizes.
    let mut body = Vec::new();
    for expected in ["3e8", "3e8", "1f4"] {
        assert_eq!(client.line(), expected.as_bytes());
        let size = usize::from_str_radix(expected, 16).unwrap();
        body.extend(client.take(size));
        assert_eq!(client.take(2), b"\r\n");
    }
    assert_eq!(client.line(), b"0");
    let trailer = format!("X-Checksum: {}", sha256_hex(&pattern(2500)));
    assert_eq!(client.line(), trailer.as_bytes());
    assert_eq!(client.line(), b"");
    assert_eq!(body, pattern(2500));

    let default_chunks = client.get("/chunked/20000");
    assert_eq!(default_chunks.framing, "chunked");
    assert_eq!(default_chunks.body, pattern(20000));
    assert!(default_chunks.trailers.is_empty());
}

#[test]
fn chunked_to_an_http10_client_is_close_delimited() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /chunked/600 HTTP/1.0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.framing, "close");
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, pattern(600));
}

#[test]
fn close_sends_a_close_delimited_body_then_closes() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let response = client.get("/close/100000");
    assert_eq!(response.status, 200);
    assert_eq!(response.framing, "close");
    assert!(response.header("content-length").is_none());
    assert!(response.header("transfer-encoding").is_none());
    assert_eq!(response.header("connection"), Some("close"));
    assert!(response.body == pattern(100_000));
}

#[test]
fn delay_answers_after_at_least_the_delay() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let started = Instant::now();
    let response = client.get("/delay/250");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"delayed 250 ms\n");
}

#[test]
fn status_answers_any_final_code_with_a_body() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    for code in [200u16, 201, 302, 404, 418, 500, 503, 599] {
        let response = client.get(&format!("/status/{code}"));
        assert_eq!(response.status, code);
        assert_eq!(response.body, format!("status {code}\n").as_bytes());
    }
    for bad in [
        "/status/100",
        "/status/101",
        "/status/99",
        "/status/600",
        "/status/x",
    ] {
        assert_eq!(client.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn status_204_has_no_body_and_no_content_length() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    // Pipelined: the second response must start right after the 204 head.
    client.send(
        b"GET /status/204 HTTP/1.1\r\nHost: o\r\n\r\nGET /bytes/4 HTTP/1.1\r\nHost: o\r\n\r\n",
    );
    let (status, headers) = client.head();
    assert_eq!(status, 204);
    assert!(
        !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    );
    assert_eq!(client.response().body, pattern(4));
}

#[test]
fn status_304_has_content_length_1234_but_no_body() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(
        b"GET /status/304 HTTP/1.1\r\nHost: o\r\n\r\nGET /bytes/4 HTTP/1.1\r\nHost: o\r\n\r\n",
    );
    let (status, headers) = client.head();
    assert_eq!(status, 304);
    assert!(headers.contains(&("Content-Length".into(), "1234".into())));
    assert!(headers.contains(&("ETag".into(), "\"x\"".into())));
    // Had the origin sent a body, this would read its bytes instead.
    let next = client.response();
    assert_eq!(next.status, 200);
    assert_eq!(next.body, pattern(4));
}

#[test]
fn echo_reports_the_request_exactly_as_received() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(
        b"DELETE /echo/some/path?q=1&r=%20 HTTP/1.1\r\nHost: origin\r\nX-Mixed-Case: A\r\nx-lower: b\r\nX-Mixed-Case: C\r\n\r\n",
    );
    let echo = client.response().echo();
    assert_eq!(echo.method, "DELETE");
    assert_eq!(echo.target, "/echo/some/path?q=1&r=%20");
    assert_eq!(echo.version, "HTTP/1.1");
    assert_eq!(
        echo.headers,
        vec![
            ("Host".to_string(), "origin".to_string()),
            ("X-Mixed-Case".to_string(), "A".to_string()),
            ("x-lower".to_string(), "b".to_string()),
            ("X-Mixed-Case".to_string(), "C".to_string()),
        ]
    );
    assert_eq!(echo.header_values("x-mixed-case"), vec!["A", "C"]);
    assert_eq!(echo.body_framing, "none");
    assert_eq!(echo.body_len, 0);
    assert_eq!(echo.body_sha256, sha256_hex(b""));
}

#[test]
fn echo_hashes_a_content_length_body() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let body = pattern(3_000_000);
    client.send(
        format!(
            "PUT /echo HTTP/1.1\r\nHost: o\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    client.send(&body);
    let echo = client.response().echo();
    assert_eq!(echo.body_framing, "content-length");
    assert_eq!(echo.body_len, body.len() as u64);
    assert_eq!(echo.body_sha256, sha256_hex(&body));
}

#[test]
fn echo_decodes_a_chunked_body_with_trailers() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: abc\r\nX-Other: 2\r\n\r\n",
    );
    let echo = client.response().echo();
    assert_eq!(echo.body_framing, "chunked");
    assert_eq!(echo.body_len, 11);
    assert_eq!(echo.body_sha256, sha256_hex(b"hello world"));
    assert_eq!(
        echo.trailers,
        vec![
            ("X-Sum".to_string(), "abc".to_string()),
            ("X-Other".to_string(), "2".to_string())
        ]
    );
    // The connection is still usable: the decoder stopped at the body's end.
    assert_eq!(client.get("/bytes/2").body, pattern(2));
}

#[test]
fn echo_rejects_broken_chunked_framing_with_400_and_close() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"POST /echo HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    let response = client.response();
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed_by_server());
}

#[test]
fn expect_100_continue_gets_the_interim_response_before_the_body_is_sent() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    // Nothing of the body has been sent yet: the 100 must come first.
    let (status, _) = client.head();
    assert_eq!(status, 100);
    client.send(b"hello");
    let echo = client.response().echo();
    assert_eq!(echo.body_sha256, sha256_hex(b"hello"));
    assert_eq!(echo.header_values("expect"), vec!["100-continue"]);
}

#[test]
fn reject_answers_417_without_reading_the_body_and_closes() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"PUT /reject HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 417);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed_by_server());
    assert_eq!(origin.stats().requests_served(), 1);
}

#[test]
fn headers_adds_the_requested_fields_in_order() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let response =
        client.get("/headers?Connection=X-Secret&X-Secret=1&Keep-Alive=timeout%3D5&X-End=kept");
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok\n");
    let added: Vec<_> = response
        .headers
        .iter()
        .filter(|(n, _)| ["Connection", "X-Secret", "Keep-Alive", "X-End"].contains(&n.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        added,
        vec![
            ("Connection".to_string(), "X-Secret".to_string()),
            ("X-Secret".to_string(), "1".to_string()),
            ("Keep-Alive".to_string(), "timeout=5".to_string()),
            ("X-End".to_string(), "kept".to_string()),
        ]
    );
    for bad in [
        "/headers?X-Bad=a%0D%0AInjected:%201",
        "/headers?X=%00",
        "/headers?Bad%20Name=1",
    ] {
        assert_eq!(client.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn unknown_paths_get_404() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let response = client.get("/nothing/here");
    assert_eq!(response.status, 404);
    assert_eq!(response.body, b"not found\n");
}

// ------------------------------------------------------------------ faults

#[test]
fn fault_malformed_writes_a_broken_head_and_closes() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /fault/malformed HTTP/1.1\r\nHost: o\r\n\r\n");
    while client.fill() > 0 {}
    assert_eq!(client.buf, b"HTTP/1.1 abc Broken\r\nno colon here\r\n\r\n");
}

#[test]
fn fault_truncate_sends_half_the_promised_body_then_closes() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /fault/truncate/1000 HTTP/1.1\r\nHost: o\r\n\r\n");
    let (status, headers) = client.head();
    assert_eq!(status, 200);
    assert!(headers.contains(&("Content-Length".into(), "1000".into())));
    while client.fill() > 0 {}
    assert_eq!(client.buf, pattern(500));
}

#[test]
fn fault_truncate_chunked_closes_without_the_last_chunk() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /fault/truncate-chunked/1000 HTTP/1.1\r\nHost: o\r\n\r\n");
    let (_, headers) = client.head();
    assert!(headers.contains(&("Transfer-Encoding".into(), "chunked".into())));
    while client.fill() > 0 {}
    let mut expected = b"1f4\r\n".to_vec();
    expected.extend(pattern(500));
    expected.extend(b"\r\n");
    assert_eq!(client.buf, expected, "one chunk of N/2 and no last chunk");
}

#[test]
fn fault_silent_reads_the_request_and_never_answers() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    client.send(b"POST /fault/silent HTTP/1.1\r\nHost: o\r\nContent-Length: 3\r\n\r\nabc");
    let mut byte = [0u8; 1];
    let error = client
        .stream
        .read(&mut byte)
        .expect_err("no answer, no close");
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{error:?}"
    );
    assert_eq!(origin.stats().requests_served(), 0);
}

#[test]
fn fault_reset_resets_the_connection_without_a_response() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /fault/reset HTTP/1.1\r\nHost: o\r\n\r\n");
    let mut byte = [0u8; 1];
    let error = client.stream.read(&mut byte).expect_err("a reset, not EOF");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn fault_reset_mid_body_sends_half_a_close_delimited_body_then_resets() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /fault/reset-mid-body/1000 HTTP/1.1\r\nHost: o\r\n\r\n");
    let (status, headers) = client.head();
    assert_eq!(status, 200);
    let framing_field = headers.iter().find(|(name, _)| {
        name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
    });
    assert_eq!(framing_field, None, "the body must be close-delimited");
    // Read until the connection ends: it must end in a reset, not an EOF.
    let error = loop {
        let mut chunk = [0u8; 4096];
        match client.stream.read(&mut chunk) {
            Ok(0) => panic!(
                "a clean EOF after {} bytes: expected a reset",
                client.buf.len()
            ),
            Ok(n) => client.buf.extend_from_slice(&chunk[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error:?}");
    assert_eq!(
        client.buf,
        pattern(500),
        "N/2 pattern bytes before the reset"
    );
}

#[test]
fn fault_interim_flood_sends_100_continue_every_200_ms_and_no_final_response() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let start = Instant::now();
    client.send(b"GET /fault/interim-flood HTTP/1.1\r\nHost: o\r\n\r\n");
    let interim: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    // Five interim responses: the first at once, then one every 200 ms.
    while client.buf.len() < 5 * interim.len() {
        assert!(client.fill() > 0, "EOF during the flood: {:?}", client.buf);
    }
    let elapsed = start.elapsed();
    assert_eq!(client.buf, interim.repeat(5), "only interim responses");
    assert!(
        elapsed >= Duration::from_millis(800),
        "five interim responses came after {elapsed:?}, not 200 ms apart"
    );
    assert_eq!(origin.stats().requests_served(), 0, "no final response");
}

// ---------------------------------------------------------------- protocol

#[test]
fn two_pipelined_requests_in_one_write_are_answered_in_order() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    // The first carries a body that /bytes must read and discard.
    client.send(
        b"POST /bytes/7 HTTP/1.1\r\nHost: o\r\nContent-Length: 11\r\n\r\nGET /bogus!\
          GET /echo/second HTTP/1.1\r\nHost: o\r\n\r\n",
    );
    assert_eq!(client.response().body, pattern(7));
    assert_eq!(client.response().echo().target, "/echo/second");
    assert_eq!(origin.stats().connections_accepted(), 1);
}

#[test]
fn http10_without_keep_alive_is_answered_then_closed() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /bytes/5 HTTP/1.0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.body, pattern(5));
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed_by_server());
}

#[test]
fn http10_with_keep_alive_stays_open_and_says_so() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    for _ in 0..2 {
        client.send(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = client.response();
        assert_eq!(response.header("connection"), Some("keep-alive"));
        assert_eq!(response.echo().version, "HTTP/1.0");
    }
    assert_eq!(origin.stats().connections_accepted(), 1);
}

#[test]
fn connection_close_request_is_answered_with_close_then_closed() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /bytes/5 HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n");
    let response = client.response();
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed_by_server());
}

#[test]
fn malformed_request_gets_400_and_close() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(b"GET /bytes/5 HTTP/1.1\r\nBad Header : x\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed_by_server());
}

#[test]
fn ambiguous_request_framing_gets_400_and_close() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(client.response().status, 400);
    assert!(client.closed_by_server());
}

#[test]
fn request_head_over_64_kib_gets_431() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    let mut request = b"GET /bytes/1 HTTP/1.1\r\nHost: o\r\nX-Big: ".to_vec();
    request.resize(70 * 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    client.send(&request);
    let response = client.response();
    assert_eq!(response.status, 431);
    assert_eq!(response.header("connection"), Some("close"));
}

#[test]
fn idle_timeout_closes_an_idle_connection() {
    let origin = Origin::start_with(OriginConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..OriginConfig::default()
    })
    .unwrap();
    let mut client = Client::connect(origin.addr());
    assert_eq!(client.get("/bytes/1").status, 200);
    let idle_since = Instant::now();
    assert!(
        client.closed_by_server(),
        "closed within the 5 s read timeout"
    );
    assert!(idle_since.elapsed() >= Duration::from_millis(200));
}

#[test]
fn without_idle_timeout_an_idle_connection_stays_open() {
    let origin = start();
    let mut client = Client::connect(origin.addr());
    assert_eq!(client.get("/bytes/1").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.get("/bytes/2").body, pattern(2));
    assert_eq!(origin.stats().connections_accepted(), 1);
}

#[test]
fn counters_count_accepted_connections_and_served_requests() {
    let origin = start();
    let stats = origin.stats();
    let mut first = Client::connect(origin.addr());
    first.get("/bytes/1");
    first.get("/bytes/1");
    assert_eq!(stats.connections_accepted(), 1);
    assert_eq!(stats.requests_served(), 2);
    let mut second = Client::connect(origin.addr());
    second.get("/status/500");
    assert_eq!(stats.connections_accepted(), 2);
    assert_eq!(stats.requests_served(), 3);
}

#[test]
fn dropping_the_origin_stops_it() {
    let origin = start();
    let addr = origin.addr();
    let mut client = Client::connect(addr);
    assert_eq!(client.get("/bytes/1").status, 200);
    drop(origin);
    assert!(client.closed_by_server(), "open connections are closed");
    let refused = TcpStream::connect_timeout(&addr, TIMEOUT);
    assert!(refused.is_err(), "the port no longer accepts");
}

#[test]
fn a_client_that_vanishes_mid_upload_does_not_stop_the_server() {
    let origin = start();
    {
        let mut client = Client::connect(origin.addr());
        client.send(b"POST /echo HTTP/1.1\r\nHost: o\r\nContent-Length: 1000000\r\n\r\npartial");
        client.stream.shutdown(Shutdown::Both).unwrap();
    }
    let mut client = Client::connect(origin.addr());
    assert_eq!(client.get("/bytes/3").body, pattern(3));
}

// ------------------------------------------------------------------ binary

/// Kills the child if a test fails before it exits on its own.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
#[test]
fn binary_prints_its_address_serves_and_exits_0_on_ctrl_c() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let child = Command::new(env!("CARGO_BIN_EXE_origin"))
        .args(["--listen", "127.0.0.1:0", "--workers", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the origin binary");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    // If the binary never prints, the guard's kill ends this read with EOF;
    // a watchdog thread makes sure that happens.
    let pid = child.0.id();
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(TIMEOUT).is_err() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let _ = done.send(());
    let addr: SocketAddr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    assert_ne!(addr.port(), 0);

    let mut client = Client::connect(addr);
    assert_eq!(client.get("/bytes/9").body, pattern(9));

    let killed = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "origin did not exit on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn binary_rejects_a_bad_flag_with_exit_code_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_origin"))
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
