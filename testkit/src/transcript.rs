//! What went over one client connection, kept small enough to print.
//!
//! When a case fails, the most useful thing to see is the conversation: the
//! exact bytes the client sent and the exact bytes the proxy answered, with
//! `\r\n` visible (a missing `\r` is a classic bug). But a case may move
//! 8 MiB, so each run of bytes in one direction keeps only its first
//! [`HEAD_BYTES`] and last [`TAIL_BYTES`], plus its real length. Memory stays
//! bounded however much the case transfers, and the printout stays readable.

use std::fmt;

/// Bytes kept from the start of each run (where heads and framing live).
const HEAD_BYTES: usize = 2048;
/// Bytes kept from the end of each run (where a body ends or breaks off).
const TAIL_BYTES: usize = 512;
/// Long lines (bodies) are wrapped after this many bytes.
const WRAP_BYTES: usize = 100;

/// Which way bytes went, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to proxy.
    Sent,
    /// Proxy to client.
    Received,
}

/// One consecutive run of bytes in one direction, or one event.
#[derive(Debug)]
enum Entry {
    Bytes {
        direction: Direction,
        total: u64,
        head: Vec<u8>,
        /// The last bytes beyond `head` (at most `TAIL_BYTES`).
        tail: Vec<u8>,
    },
    Event(String),
}

/// The conversation on one connection, in order.
#[derive(Debug, Default)]
pub struct Transcript {
    entries: Vec<Entry>,
    sent: u64,
    received: u64,
}

impl Transcript {
    /// Records bytes, merging them into the current run if the direction is
    /// the same (reads arrive in arbitrary pieces; the reader cares about the
    /// stream, not about how the kernel cut it).
    pub fn record(&mut self, direction: Direction, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match direction {
            Direction::Sent => self.sent += bytes.len() as u64,
            Direction::Received => self.received += bytes.len() as u64,
        }
        let same_run = matches!(
            self.entries.last(),
            Some(Entry::Bytes { direction: d, .. }) if *d == direction
        );
        if !same_run {
            self.entries.push(Entry::Bytes {
                direction,
                total: 0,
                head: Vec::new(),
                tail: Vec::new(),
            });
        }
        if let Some(Entry::Bytes {
            total, head, tail, ..
        }) = self.entries.last_mut()
        {
            *total += bytes.len() as u64;
            let into_head = bytes.len().min(HEAD_BYTES - head.len());
            head.extend_from_slice(&bytes[..into_head]);
            let rest = &bytes[into_head..];
            if rest.len() >= TAIL_BYTES {
                tail.clear();
                tail.extend_from_slice(&rest[rest.len() - TAIL_BYTES..]);
            } else {
                tail.extend_from_slice(rest);
                let excess = tail.len().saturating_sub(TAIL_BYTES);
                tail.drain(..excess);
            }
        }
    }

    /// Records something that is not bytes: EOF, a reset, a half-close.
    pub fn note(&mut self, event: impl Into<String>) {
        self.entries.push(Entry::Event(event.into()));
    }

    /// Total bytes the client sent.
    pub fn sent_total(&self) -> u64 {
        self.sent
    }

    /// Total bytes the client received.
    pub fn received_total(&self) -> u64 {
        self.received
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--- transcript: sent {} bytes, received {} bytes ---",
            self.sent, self.received
        )?;
        for entry in &self.entries {
            match entry {
                Entry::Event(event) => writeln!(f, "   [{event}]")?,
                Entry::Bytes {
                    direction,
                    total,
                    head,
                    tail,
                } => {
                    let arrow = match direction {
                        Direction::Sent => ">> client sent",
                        Direction::Received => "<< client received",
                    };
                    writeln!(f, "{arrow} {total} bytes:")?;
                    write_escaped(f, head)?;
                    let shown = (head.len() + tail.len()) as u64;
                    if *total > shown {
                        writeln!(f, "   ... {} bytes not shown ...", total - shown)?;
                    }
                    write_escaped(f, tail)?;
                }
            }
        }
        write!(f, "--- end of transcript ---")
    }
}

/// Prints bytes one line per `\n` (long lines wrapped every
/// [`WRAP_BYTES`]), escaped so `\r`, `\n`, `\0` and binary bytes are
/// visible, each printed line prefixed with `   |`. A real line end always
/// shows as a trailing `\n`, so wrapping cannot be mistaken for one.
fn write_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        for piece in line.chunks(WRAP_BYTES) {
            writeln!(f, "   |{}", piece.escape_ascii())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_reads_merge_into_one_run_with_escapes_visible() {
        let mut t = Transcript::default();
        t.record(Direction::Sent, b"GET / HTTP/1.1\r\n");
        t.record(Direction::Sent, b"\r\n");
        t.record(Direction::Received, b"HTTP/1.1 200 OK\r\n\r\n");
        t.note("EOF");
        let text = t.to_string();
        assert!(text.contains(">> client sent 18 bytes:"), "{text}");
        assert!(text.contains(r"   |GET / HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("<< client received 19 bytes:"), "{text}");
        assert!(text.contains("[EOF]"), "{text}");
        assert_eq!((t.sent_total(), t.received_total()), (18, 19));
    }

    #[test]
    fn long_runs_keep_only_head_and_tail_with_the_real_length() {
        let mut t = Transcript::default();
        let body: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for piece in body.chunks(333) {
            t.record(Direction::Received, piece);
        }
        let text = t.to_string();
        assert!(text.contains("received 10000 bytes:"), "{text}");
        let hidden = 10_000 - HEAD_BYTES - TAIL_BYTES;
        assert!(text.contains(&format!("... {hidden} bytes not shown ...")));
        // The tail really is the end of the stream: its last printed line.
        let last_line = match TAIL_BYTES % WRAP_BYTES {
            0 => WRAP_BYTES,
            r => r,
        };
        let last = std::str::from_utf8(&body[body.len() - last_line..]).unwrap();
        let last = format!("   |{last}\n");
        assert!(text.contains(&last), "{text}");
    }
}
