//! Why waiting for a head ended without one, and what each reason means for
//! the client (and why a body relay stopped early): the vocabulary every phase uses around its own way of waiting
//! (a blocking read with a deadline, a future with a timeout, a timer in an
//! event loop).

use std::io;
use std::time::Duration;

use crate::error::ProxyError;
use crate::framing::FramingError;

/// Why reading a head stopped without one.
#[derive(Debug)]
pub enum HeadError {
    /// The peer closed (or reset) before sending anything: not an error.
    Closed,
    /// Time ran out with nothing received (idle connection).
    IdleTimeout,
    /// Time ran out in the middle of a head.
    PartialTimeout,
    /// The peer closed after sending part of a head.
    ClosedMidHead,
    /// The bytes are not a valid head.
    Invalid(ProxyError),
    /// Any other I/O error.
    Io(io::Error),
}

impl HeadError {
    /// Time ran out with `pending` received so far: an idle connection if
    /// nothing came, else a head cut off mid-way.
    pub fn timed_out(pending: &[u8]) -> HeadError {
        if pending.is_empty() {
            HeadError::IdleTimeout
        } else {
            HeadError::PartialTimeout
        }
    }

    /// The answer an upstream that failed to send a response head earns:
    /// silence is a 504, anything else a 502 (`upstream_timeout` goes into
    /// the message).
    pub fn upstream_failure(self, upstream_timeout: Duration) -> ProxyError {
        match self {
            HeadError::IdleTimeout | HeadError::PartialTimeout => {
                ProxyError::GatewayTimeout(format!(
                    "the upstream did not answer within {}s",
                    upstream_timeout.as_secs()
                ))
            }
            HeadError::Invalid(err) => err,
            HeadError::Closed | HeadError::ClosedMidHead => ProxyError::BadGateway(
                "the upstream closed the connection without a complete response".into(),
            ),
            HeadError::Io(e) => {
                ProxyError::BadGateway(format!("reading the upstream's response failed: {e}"))
            }
        }
    }
}

/// Why a body relay stopped early.
#[derive(Debug)]
pub enum RelayError {
    /// Reading the source failed (including a read timeout).
    Read(io::Error),
    /// The source closed before the body's end.
    Truncated(FramingError),
    /// The body's framing is invalid (a bad chunk size, a bare LF, ...).
    Framing(FramingError),
    /// Writing to the sink failed (the other side went away or stalled).
    Write(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_idle_with_nothing_and_partial_with_something() {
        assert!(matches!(HeadError::timed_out(b""), HeadError::IdleTimeout));
        assert!(matches!(
            HeadError::timed_out(b"GE"),
            HeadError::PartialTimeout
        ));
    }

    #[test]
    fn upstream_failures_are_504_when_silent_and_502_otherwise() {
        let t = Duration::from_secs(3);
        assert_eq!(HeadError::IdleTimeout.upstream_failure(t).status(), 504);
        assert_eq!(HeadError::PartialTimeout.upstream_failure(t).status(), 504);
        assert_eq!(HeadError::Closed.upstream_failure(t).status(), 502);
        assert_eq!(HeadError::ClosedMidHead.upstream_failure(t).status(), 502);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(HeadError::Io(reset).upstream_failure(t).status(), 502);
        let bad = ProxyError::BadGateway("malformed".into());
        assert_eq!(HeadError::Invalid(bad.clone()).upstream_failure(t), bad);
        assert!(
            HeadError::IdleTimeout
                .upstream_failure(t)
                .to_string()
                .contains("3s")
        );
    }
}
