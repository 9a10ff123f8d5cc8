//! A small streaming decoder for chunked request bodies (RFC 9112 §7.1).
//!
//! Why not reuse proxy-core's framer? The origin is the *second opinion*: the
//! proxy is tested against it, so it must not share the proxy's bugs. This
//! decoder is deliberately plain and strict (every line ends in CRLF, no bare
//! CR or LF, no NUL), so a proxy that re-chunks sloppily gets a 400 here.
//!
//! It is sans-IO: [`ChunkedDecoder::feed`] takes whatever bytes a read
//! returned, hands the body data to a callback and says how many input bytes
//! it used. It stops right after the final CRLF, so the bytes that follow (a
//! pipelined request) stay unconsumed for the caller. Memory is bounded: only
//! one size or trailer line is ever buffered.

/// Longest size line (`1a2b;ext=...\r\n`) or trailer line we buffer.
const MAX_LINE: usize = 8 * 1024;
/// Total bytes of trailer section we accept.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Where the decoder is inside the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading `HEX[;ext]\r\n`.
    SizeLine,
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// Expecting the `\r` that ends a chunk's data.
    DataCr,
    /// Expecting the `\n` that ends a chunk's data.
    DataLf,
    /// Reading trailer lines until the empty line.
    Trailers,
    /// The final CRLF has been consumed.
    Done,
}

/// Decodes one chunked body, fed in arbitrary pieces.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// The size or trailer line read so far (it may span several reads).
    line: Vec<u8>,
    trailers: Vec<(String, String)>,
    trailer_bytes: usize,
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        ChunkedDecoder {
            state: State::SizeLine,
            line: Vec::new(),
            trailers: Vec::new(),
            trailer_bytes: 0,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields received, in order (names with their case).
    pub(crate) fn into_trailers(self) -> Vec<(String, String)> {
        self.trailers
    }

    /// Consumes bytes from `input`, passing decoded body data to `on_data`.
    /// Returns how many bytes of `input` were used: all of them, unless the
    /// body ended inside `input`. An error means the body is malformed; the
    /// connection cannot be trusted after that.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, &'static str> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Data { remaining } => {
                    let available = &input[pos..];
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(available.len());
                    on_data(&available[..take]);
                    pos += take;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                }
                State::DataCr => {
                    if input[pos] != b'\r' {
                        return Err("chunk data not followed by CRLF");
                    }
                    pos += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if input[pos] != b'\n' {
                        return Err("chunk data not followed by CRLF");
                    }
                    pos += 1;
                    self.state = State::SizeLine;
                }
                State::SizeLine | State::Trailers => {
                    let Some(line_len) = self.take_line(&input[pos..])? else {
                        // The line continues in the next read.
                        pos = input.len();
                        break;
                    };
                    pos += line_len;
                    let line = std::mem::take(&mut self.line);
                    if self.state == State::SizeLine {
                        self.state = match parse_size_line(&line)? {
                            0 => State::Trailers,
                            size => State::Data { remaining: size },
                        };
                    } else if line.is_empty() {
                        self.state = State::Done;
                    } else {
                        self.trailer_bytes += line.len();
                        if self.trailer_bytes > MAX_TRAILER_BYTES {
                            return Err("trailer section too large");
                        }
                        self.trailers.push(parse_trailer_line(&line)?);
                    }
                    // Reuse the line's allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
            }
        }
        Ok(pos)
    }

    /// Appends input up to and including the next LF to `self.line`.
    /// Returns how many bytes were used if the line is now complete (the
    /// line is stored without its CRLF), or `None` if all of `input` was
    /// buffered and the line goes on.
    fn take_line(&mut self, input: &[u8]) -> Result<Option<usize>, &'static str> {
        let newline = input.iter().position(|&b| b == b'\n');
        let piece = match newline {
            Some(i) => &input[..i],
            None => input,
        };
        if self.line.len() + piece.len() > MAX_LINE {
            return Err("chunk size or trailer line too long");
        }
        self.line.extend_from_slice(piece);
        let Some(i) = newline else {
            return Ok(None);
        };
        // Strict CRLF: the LF must follow a CR, and no other CR may appear.
        if self.line.pop() != Some(b'\r') {
            return Err("bare LF in chunked framing");
        }
        if self.line.iter().any(|&b| b == b'\r' || b == 0) {
            return Err("bare CR or NUL in chunked framing");
        }
        Ok(Some(i + 1))
    }
}

/// Parses `HEX[ws;extension...]` into the chunk size.
fn parse_size_line(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("chunk size is not hexadecimal");
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        // `digits` only counts hex digits, so to_digit cannot fail.
        let value = char::from(b).to_digit(16).unwrap_or(0);
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(value)))
            .ok_or("chunk size overflows 64 bits")?;
    }
    // Anything after the digits must be a chunk extension (ignored).
    let rest = &line[digits..];
    let after_ws = rest.iter().skip_while(|&&b| b == b' ' || b == b'\t');
    match after_ws.clone().next() {
        None if rest.is_empty() => Ok(size),
        Some(b';') => Ok(size),
        _ => Err("junk after chunk size"),
    }
}

/// Parses one trailer field line `name: value`.
fn parse_trailer_line(line: &[u8]) -> Result<(String, String), &'static str> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or("trailer line without a colon")?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        // Also rejects whitespace before the colon and obs-fold lines.
        return Err("invalid trailer field name");
    }
    let value = line[colon + 1..].trim_ascii();
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// RFC 9110 `tchar`: the bytes allowed in a field name.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Body data, bytes consumed, trailers.
    type Decoded = (Vec<u8>, usize, Vec<(String, String)>);

    /// Feeds `input` split at `split` and decodes it.
    fn decode_split(input: &[u8], split: usize) -> Result<Decoded, &'static str> {
        let mut decoder = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut sink = |d: &[u8]| data.extend_from_slice(d);
        let first = decoder.feed(&input[..split], &mut sink)?;
        let mut consumed = first;
        if first == split && !decoder.is_done() {
            consumed += decoder.feed(&input[split..], &mut sink)?;
        }
        if !decoder.is_done() {
            return Err("incomplete");
        }
        Ok((data, consumed, decoder.into_trailers()))
    }

    #[test]
    fn decodes_chunks_and_trailers_split_at_every_offset() {
        let body = b"5\r\nhello\r\n7;name=v\r\n, world\r\n0\r\nX-Checksum: abc\r\nX-Two:  2 \r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for split in 0..=body.len() {
            let (data, consumed, trailers) = decode_split(body, split).unwrap();
            assert_eq!(data, b"hello, world", "split {split}");
            assert_eq!(consumed, end, "split {split}: pipelined bytes must stay");
            assert_eq!(
                trailers,
                vec![
                    ("X-Checksum".to_string(), "abc".to_string()),
                    ("X-Two".to_string(), "2".to_string())
                ]
            );
        }
    }

    #[test]
    fn rejects_malformed_framing() {
        let cases: &[&[u8]] = &[
            b"5\nhello\r\n0\r\n\r\n",     // bare LF after size
            b"5\r\nhelloX\r\n0\r\n\r\n",  // data longer than size
            b"5\r\nhello\n0\r\n\r\n",     // bare LF after data
            b"zz\r\n",                    // not hex
            b"\r\n",                      // empty size
            b"5 x\r\nhello\r\n0\r\n\r\n", // junk after size
            b"10000000000000000\r\n",     // 2^64 overflows
            b"0\r\nBad Name: x\r\n\r\n",  // space in trailer name
            b"0\r\nNoColon\r\n\r\n",      // trailer without colon
            b"0\r\n folded\r\n\r\n",      // obs-fold
        ];
        for case in cases {
            assert!(
                decode_split(case, case.len()).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn cr_inside_chunk_data_is_just_data() {
        let (data, _, _) = decode_split(b"5\r\nhe\rlo\r\n0\r\n\r\n", 3).unwrap();
        assert_eq!(data, b"he\rlo");
    }

    #[test]
    fn size_line_accepts_extension_after_whitespace_and_leading_zeros() {
        assert_eq!(parse_size_line(b"000a"), Ok(10));
        assert_eq!(parse_size_line(b"A ; ext"), Ok(10));
        assert_eq!(parse_size_line(b"ffffffffffffffff"), Ok(u64::MAX));
    }

    #[test]
    fn overlong_size_line_is_rejected_without_buffering_it_all() {
        let mut decoder = ChunkedDecoder::new();
        let junk = vec![b'0'; MAX_LINE + 1];
        assert!(decoder.feed(&junk, &mut |_| {}).is_err());
    }
}
