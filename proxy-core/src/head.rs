//! What request and response heads have in common: finding where a head ends
//! in a buffer that fills up one read at a time, the byte-level checks that
//! httparse leaves to us, and the types for header fields.
//!
//! httparse is fast and careful, but lenient in places a proxy cannot be: it
//! accepts a bare LF as a line ending, for instance. Two parties that disagree
//! on where a line ends disagree on where a message ends, and that
//! disagreement is what request smuggling exploits. So before httparse sees a
//! head, [`scan`] insists on CRLF everywhere and rejects NUL bytes.

/// HTTP/1.0 or HTTP/1.1 (anything else is refused before a head exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }

    pub(crate) fn from_minor(minor: u8) -> Option<Version> {
        match minor {
            0 => Some(Version::Http10),
            1 => Some(Version::Http11),
            _ => None,
        }
    }
}

/// One header field, as received: the name keeps its case (the upstream sees
/// what the client wrote) and the value its bytes (values may carry obs-text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Case-insensitive name comparison (field names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value as text, if it is valid UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// The result of trying to parse a head from the bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole head: `len` bytes of the buffer belong to it; the rest is body
    /// (or the next request).
    Complete { head: T, len: usize },
    /// Not all of the head has arrived yet: read more and call again.
    Partial,
}

/// Where a head lies in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The head is `buf[start..end]`, `end` just after the blank line.
    /// `start` skips empty lines a client may send between requests.
    Complete {
        start: usize,
        end: usize,
    },
    Partial,
}

/// Why a head was refused before httparse saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    BareLf,
    BareCr,
    Nul,
    TooLarge,
}

impl ScanError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            ScanError::BareLf => "line ends in a bare LF (lines must end in CRLF)",
            ScanError::BareCr => "bare CR in the head (CR must be followed by LF)",
            ScanError::Nul => "NUL byte in the head",
            ScanError::TooLarge => "head too large",
        }
    }
}

/// Finds the end of a head (`CRLF CRLF`), checking every byte on the way:
/// each LF must follow a CR, each CR must precede an LF, no NUL anywhere.
/// At most `max` bytes (after leading empty lines) may make up the head.
///
/// `scanned` makes it incremental: it is how far into `buf` an earlier call
/// got without finding the end, and it is updated on `Partial`. A head that
/// arrives one byte per read is then scanned once in total, not once per
/// read (which would cost time quadratic in the head's size, on whatever
/// thread does the parsing: for phase 3, a whole event loop).
pub(crate) fn scan(buf: &[u8], max: usize, scanned: &mut usize) -> Result<Scan, ScanError> {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line received
    // before the request line (some clients send CRLF after a POST body).
    // Those empty lines count toward `max`, or a peer could send CRLFs forever.
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") {
        start += 2;
        if start >= max {
            return Err(ScanError::TooLarge);
        }
    }
    let head = &buf[start..];
    let max = max - start;
    let limit = head.len().min(max);
    // Resume one byte early: a CR at the end of the last read may now have
    // its LF (or not).
    let resume = scanned.saturating_sub(start).saturating_sub(1).min(limit);
    for i in resume..limit {
        match head[i] {
            0 => return Err(ScanError::Nul),
            b'\n' if i == 0 || head[i - 1] != b'\r' => return Err(ScanError::BareLf),
            b'\r' => match head.get(i + 1) {
                Some(b'\n') => {}
                Some(_) => return Err(ScanError::BareCr),
                None => {} // the LF may arrive with the next read
            },
            b'\n' if i >= 3 && &head[i - 3..i] == b"\r\n\r" => {
                return Ok(Scan::Complete {
                    start,
                    end: start + i + 1,
                });
            }
            _ => {}
        }
    }
    if head.len() >= max {
        Err(ScanError::TooLarge)
    } else {
        *scanned = start + limit;
        Ok(Scan::Partial)
    }
}

/// Checks a field value: HTAB, SP, visible ASCII and obs-text only (RFC 9110 §5.5).
pub(crate) fn valid_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80)
}

/// The comma-separated elements of all fields with this name, trimmed, empty
/// elements dropped (RFC 9110 §5.6.1).
pub(crate) fn list_elements<'a>(headers: &'a [Header], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.is(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
        .collect()
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Lower-cased tokens of the `Connection` field(s).
pub(crate) fn connection_tokens(headers: &[Header]) -> Vec<String> {
    list_elements(headers, "connection")
        .into_iter()
        .map(|t| String::from_utf8_lossy(t).to_ascii_lowercase())
        .collect()
}

/// Parses Content-Length field(s). Several fields, or a list in one field,
/// are accepted only if every value is the same (RFC 9112 §6.3); each value
/// must be plain decimal digits that fit in a u64.
pub(crate) fn content_length(headers: &[Header]) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for h in headers.iter().filter(|h| h.is("content-length")) {
        for element in h.value.split(|&b| b == b',') {
            let digits = trim_ows(element);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err("Content-Length is not a decimal number");
            }
            let mut n: u64 = 0;
            for &d in digits {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d - b'0')))
                    .ok_or("Content-Length is too large")?;
            }
            match found {
                Some(prev) if prev != n => return Err("conflicting Content-Length values"),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_the_end_of_a_head_and_skips_leading_empty_lines() {
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\n\r\nbody", 100, &mut 0),
            Ok(Scan::Complete { start: 0, end: 18 })
        );
        assert_eq!(
            scan(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 100, &mut 0),
            Ok(Scan::Complete { start: 4, end: 22 })
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 100, &mut 0),
            Ok(Scan::Partial)
        );
        assert_eq!(scan(b"GET / HTTP/1.1\r", 100, &mut 0), Ok(Scan::Partial));
    }

    #[test]
    fn scan_rejects_bare_lf_bare_cr_nul_and_oversize() {
        assert_eq!(
            scan(b"GET / HTTP/1.1\nHost: a\r\n\r\n", 100, &mut 0),
            Err(ScanError::BareLf)
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\n\n", 100, &mut 0),
            Err(ScanError::BareLf)
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 100, &mut 0),
            Err(ScanError::BareCr)
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 100, &mut 0),
            Err(ScanError::Nul)
        );
        assert_eq!(scan(&[b'a'; 100], 100, &mut 0), Err(ScanError::TooLarge));
        assert_eq!(scan(&[b'a'; 99], 100, &mut 0), Ok(Scan::Partial));
        // Empty lines before a head count toward the limit.
        assert_eq!(
            scan(&b"\r\n".repeat(50), 100, &mut 0),
            Err(ScanError::TooLarge)
        );
        let mut late = b"\r\n".repeat(40);
        late.extend_from_slice(&[b'a'; 20]);
        assert_eq!(scan(&late, 100, &mut 0), Err(ScanError::TooLarge));
    }

    #[test]
    fn scan_resumes_where_it_stopped_and_agrees_with_a_fresh_scan() {
        let raw = b"\r\nGET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\r\nrest";
        let mut scanned = 0;
        for k in 0..raw.len() {
            let incremental = scan(&raw[..k], 100, &mut scanned);
            assert_eq!(incremental, scan(&raw[..k], 100, &mut 0), "prefix of {k}");
            assert!(scanned <= k);
        }
        // A bare CR is caught when its next byte arrives, even across reads.
        let mut scanned = 0;
        assert_eq!(
            scan(b"GET / HTTP/1.1\r", 100, &mut scanned),
            Ok(Scan::Partial)
        );
        assert_eq!(
            scan(b"GET / HTTP/1.1\rX", 100, &mut scanned),
            Err(ScanError::BareCr)
        );
    }

    #[test]
    fn content_length_rules() {
        let cl = |vals: &[&str]| {
            let h: Vec<Header> = vals
                .iter()
                .map(|v| Header::new("Content-Length", v.as_bytes()))
                .collect();
            content_length(&h)
        };
        assert_eq!(cl(&[]), Ok(None));
        assert_eq!(cl(&["42"]), Ok(Some(42)));
        assert_eq!(cl(&["42", "42"]), Ok(Some(42)));
        assert_eq!(cl(&["7, 7"]), Ok(Some(7)));
        assert_eq!(cl(&["007"]), Ok(Some(7)));
        assert_eq!(cl(&["18446744073709551615"]), Ok(Some(u64::MAX)));
        for bad in [
            &["5", "6"][..],
            &["5, 6"],
            &["+5"],
            &["-5"],
            &["0x5"],
            &[""],
            &["5 5"],
            &["18446744073709551616"],
            &["99999999999999999999999"],
        ] {
            assert!(cl(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn list_elements_split_and_trim() {
        let h = vec![
            Header::new("Connection", "close, X-A"),
            Header::new("connection", " ,x-b "),
        ];
        assert_eq!(connection_tokens(&h), vec!["close", "x-a", "x-b"]);
    }
}
