//! Deciding, for every exchange of a soak, whether what the client saw is
//! what the proxy contract promises.
//!
//! This is the part of the soak worth reading first, and it does no I/O:
//! the traffic code ([`super::traffic`]) reports what happened as an
//! [`Observed`], and [`classify`] compares it with the [`Expect`]ation of
//! that kind of exchange. Three verdicts:
//!
//! - **expected**: the designed outcome. A 200 whose body checks out byte
//!   for byte for ordinary traffic; the right 4xx for a malformed request;
//!   502, 504 or a visibly truncated body for an upstream fault.
//! - **tolerated**: a failure that looks like an upstream failure (502, 504,
//!   a truncated body, a tunnel cut) in an exchange that overlapped an
//!   upstream restart. The contract allows requests in flight when the
//!   origin dies to fail; it does not allow anything afterwards, so the
//!   window closes [`RESTART_GRACE`] after the new origin is listening.
//! - **unexpected**: everything else. Some outcomes are never excused, not
//!   even during a restart: a body with wrong bytes (or short but looking
//!   complete), a protocol violation, a hang past the deadline, a refused
//!   connection to the proxy itself, a proxy that closes without answering.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// After a restarted origin is listening again, failures are still
/// tolerated for this long: exchanges that were already past the proxy's
/// upstream connect when the new origin came up may still end in 502.
pub const RESTART_GRACE: Duration = Duration::from_secs(2);

/// The kinds of exchange a soak client performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `GET /bytes/1024`, kept alive.
    GetSmall,
    /// `GET /bytes/1048576`, kept alive.
    GetLarge,
    /// `GET /chunked/N?chunk=K`, random N and K.
    GetChunked,
    /// `GET /close/N`: a close-delimited upstream body.
    GetClose,
    /// `HEAD /bytes/1024` or `HEAD /chunked/N`: a head and no body.
    Head,
    /// `POST /echo` with `Content-Length`, sometimes `Expect: 100-continue`.
    UploadLength,
    /// `POST /echo` chunked.
    UploadChunked,
    /// `CONNECT` to the origin, two GETs inside (phase 1: 501).
    Tunnel,
    /// A client that sends part of a head or body, then vanishes.
    VanishMidRequest,
    /// A client that reads part of a large response, then vanishes.
    VanishMidResponse,
    /// A malformed request (one of [`super::traffic::MALFORMED`]).
    Malformed,
    /// `/fault/reset`: 502.
    UpstreamReset,
    /// `/fault/malformed`: 502.
    UpstreamMalformed,
    /// `/fault/truncate/N`, `/fault/truncate-chunked/N`,
    /// `/fault/reset-mid-body/N`: a body that visibly ends early.
    UpstreamTruncated,
    /// `/fault/silent` with a short `--upstream-timeout`: 504.
    UpstreamSilent,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::GetSmall,
        Kind::GetLarge,
        Kind::GetChunked,
        Kind::GetClose,
        Kind::Head,
        Kind::UploadLength,
        Kind::UploadChunked,
        Kind::Tunnel,
        Kind::VanishMidRequest,
        Kind::VanishMidResponse,
        Kind::Malformed,
        Kind::UpstreamReset,
        Kind::UpstreamMalformed,
        Kind::UpstreamTruncated,
        Kind::UpstreamSilent,
    ];

    /// The kind called `name` (as in the report and `--kinds`).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::GetSmall => "get-small",
            Kind::GetLarge => "get-large",
            Kind::GetChunked => "get-chunked",
            Kind::GetClose => "get-close",
            Kind::Head => "head",
            Kind::UploadLength => "upload-length",
            Kind::UploadChunked => "upload-chunked",
            Kind::Tunnel => "tunnel",
            Kind::VanishMidRequest => "vanish-mid-request",
            Kind::VanishMidResponse => "vanish-mid-response",
            Kind::Malformed => "malformed",
            Kind::UpstreamReset => "upstream-reset",
            Kind::UpstreamMalformed => "upstream-malformed",
            Kind::UpstreamTruncated => "upstream-truncated",
            Kind::UpstreamSilent => "upstream-silent",
        }
    }

    /// An injected fault: its expected outcome is an error of some kind.
    pub fn is_fault(self) -> bool {
        !matches!(
            self,
            Kind::GetSmall
                | Kind::GetLarge
                | Kind::GetChunked
                | Kind::GetClose
                | Kind::Head
                | Kind::UploadLength
                | Kind::UploadChunked
                | Kind::Tunnel
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an exchange of some kind is supposed to end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A complete 200 whose body (and framing) checked out.
    Success,
    /// [`Expect::Success`] for an exchange inside a CONNECT tunnel: the
    /// tunnel is raw bytes to the origin, so when the origin dies the
    /// client sees the connection end, and no one is there to answer 502.
    Tunneled,
    /// One of these statuses, as a complete response (the proxy's answer,
    /// checked for `Connection: close` and the close that follows).
    Answer(&'static [u16]),
    /// A 200 whose body visibly ends early, or a 502 if nothing had been
    /// relayed yet.
    Truncated,
    /// The client vanished on purpose; nothing to check on its side.
    Vanished,
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The proxy refused the connection (or it failed before a byte was sent).
    ConnectFailed(String),
    /// The connection ended or was reset before a complete response head.
    NoResponse(String),
    /// Bytes that are not a valid response head.
    BadResponse(String),
    /// A complete response. `problem`: what the client found wrong with it
    /// (body bytes, a missing `Connection: close`, bytes after an answer...),
    /// if anything.
    Complete {
        status: u16,
        problem: Option<String>,
    },
    /// A response whose body checked out byte for byte and ended where its
    /// framing said, but with `got` bytes where the origin sends `expected`:
    /// a body that looks complete and is not (or is too long).
    ShortBody {
        status: u16,
        got: u64,
        expected: u64,
    },
    /// A response head, then the body ended before its framing said so
    /// (`why`). `problem`: the bytes that did arrive were wrong.
    Truncated {
        status: u16,
        why: String,
        problem: Option<String>,
    },
    /// Nothing within the deadline.
    Hung,
    /// The client vanished as planned.
    Vanished,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::ConnectFailed(e) => write!(f, "could not connect to the proxy: {e}"),
            Observed::NoResponse(e) => write!(f, "no response: {e}"),
            Observed::BadResponse(e) => write!(f, "malformed response: {e}"),
            Observed::Complete {
                status,
                problem: None,
            } => write!(f, "{status}"),
            Observed::Complete {
                status,
                problem: Some(p),
            } => write!(f, "{status}, but {p}"),
            Observed::ShortBody {
                status,
                got,
                expected,
            } => write!(
                f,
                "{status} whose body looks complete at {got} bytes, but the origin sends {expected}"
            ),
            Observed::Truncated {
                status,
                why,
                problem,
            } => {
                write!(f, "{status} with a truncated body ({why})")?;
                if let Some(p) = problem {
                    write!(f, ", and {p}")?;
                }
                Ok(())
            }
            Observed::Hung => write!(f, "no outcome within the deadline"),
            Observed::Vanished => write!(f, "vanished as planned"),
        }
    }
}

/// Why an outcome was unexpected, in a few words (the report counts by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No outcome within the deadline.
    Hung,
    /// The proxy refused a connection.
    ConnectFailed,
    /// The proxy closed or reset without any response.
    NoResponse,
    /// Not a valid response head.
    BadResponse,
    /// Wrong body bytes, a body that looks complete but is short, a protocol
    /// violation (missing `Connection: close`, a second response...).
    WrongResponse,
    /// A truncated body where none was due.
    Truncated,
    /// A status the exchange should not have produced (a 502 outside a
    /// restart window, a 503, a 400 for a valid request, ...).
    Status,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Hung => "hung",
            Reason::ConnectFailed => "connect-failed",
            Reason::NoResponse => "no-response",
            Reason::BadResponse => "bad-response",
            Reason::WrongResponse => "wrong-response",
            Reason::Truncated => "truncated",
            Reason::Status => "status",
        }
    }
}

/// The verdict on one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Expected,
    /// A failure excused by an overlapping upstream restart.
    Tolerated,
    Unexpected(Reason),
}

/// Compares what was seen with what was expected. `in_restart`: the
/// exchange overlapped an upstream restart window (see [`overlaps_restart`]).
/// `close_delimited`: the origin ends this response's body by closing the
/// connection (`/close/N`, `/fault/reset-mid-body/N`). Killed mid-body, it
/// closes too, cleanly: the proxy sees the body's normal end and passes a
/// complete-looking short body on, which nobody could have told apart. So
/// a short body is tolerated for those, in a restart window only.
pub fn classify(
    expect: Expect,
    observed: &Observed,
    in_restart: bool,
    close_delimited: bool,
) -> Verdict {
    // Never excused, restart or not.
    match observed {
        Observed::Hung => return Verdict::Unexpected(Reason::Hung),
        Observed::ConnectFailed(_) => return Verdict::Unexpected(Reason::ConnectFailed),
        Observed::BadResponse(_) => return Verdict::Unexpected(Reason::BadResponse),
        Observed::Complete {
            problem: Some(_), ..
        }
        | Observed::Truncated {
            problem: Some(_), ..
        } => return Verdict::Unexpected(Reason::WrongResponse),
        Observed::ShortBody { got, expected, .. } => {
            return if in_restart && close_delimited && got < expected {
                Verdict::Tolerated
            } else {
                Verdict::Unexpected(Reason::WrongResponse)
            };
        }
        _ => {}
    }
    let as_designed = match (expect, observed) {
        (Expect::Success | Expect::Tunneled, Observed::Complete { status, .. }) => *status == 200,
        (Expect::Answer(statuses), Observed::Complete { status, .. }) => statuses.contains(status),
        (Expect::Truncated, Observed::Truncated { status, .. }) => *status == 200,
        (Expect::Truncated, Observed::Complete { status, .. }) => *status == 502,
        (Expect::Vanished, Observed::Vanished) => true,
        _ => false,
    };
    if as_designed {
        return Verdict::Expected;
    }
    let looks_like_upstream_failure = match observed {
        Observed::Complete { status, .. } => matches!(status, 502 | 504),
        Observed::Truncated { .. } => true,
        // Through the proxy, an upstream that dies before answering must
        // earn a 502, restart or not; only a tunnel may just end.
        Observed::NoResponse(_) => expect == Expect::Tunneled,
        _ => false,
    };
    if in_restart && looks_like_upstream_failure {
        return Verdict::Tolerated;
    }
    Verdict::Unexpected(match observed {
        Observed::NoResponse(_) => Reason::NoResponse,
        Observed::Truncated { .. } => Reason::Truncated,
        _ => Reason::Status,
    })
}

/// One upstream restart, as offsets from the start of the phase's load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Restart {
    /// When the old origin was killed.
    pub killed: Duration,
    /// When the new one was listening (None: not yet).
    pub ready: Option<Duration>,
}

/// Did an exchange that ran from `start` to `end` overlap a restart window,
/// `[killed, ready + RESTART_GRACE]`? A restart still under way (no `ready`
/// yet) extends to now, so it covers every exchange that ended after the kill.
pub fn overlaps_restart(restarts: &[Restart], start: Duration, end: Duration) -> bool {
    restarts.iter().any(|r| {
        let window_end = r.ready.map(|ready| ready + RESTART_GRACE);
        r.killed <= end && window_end.is_none_or(|w| start <= w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(status: u16) -> Observed {
        Observed::Complete {
            status,
            problem: None,
        }
    }

    fn truncated() -> Observed {
        Observed::Truncated {
            status: 200,
            why: "EOF".into(),
            problem: None,
        }
    }

    const MALFORMED_CL: Expect = Expect::Answer(&[400]);

    /// For a request whose upstream body is framed (not close-delimited).
    fn judge(expect: Expect, observed: &Observed, in_restart: bool) -> Verdict {
        classify(expect, observed, in_restart, false)
    }

    #[test]
    fn designed_outcomes_are_expected() {
        assert_eq!(
            judge(Expect::Success, &complete(200), false),
            Verdict::Expected
        );
        assert_eq!(
            judge(MALFORMED_CL, &complete(400), false),
            Verdict::Expected
        );
        assert_eq!(
            judge(Expect::Answer(&[504]), &complete(504), false),
            Verdict::Expected
        );
        assert_eq!(
            judge(Expect::Truncated, &truncated(), false),
            Verdict::Expected
        );
        // Nothing relayed yet when the upstream died: a 502 is the answer.
        assert_eq!(
            judge(Expect::Truncated, &complete(502), false),
            Verdict::Expected
        );
        assert_eq!(
            judge(Expect::Vanished, &Observed::Vanished, false),
            Verdict::Expected
        );
    }

    #[test]
    fn a_502_is_tolerated_only_inside_a_restart_window() {
        assert_eq!(
            judge(Expect::Success, &complete(502), true),
            Verdict::Tolerated
        );
        assert_eq!(
            judge(Expect::Success, &complete(502), false),
            Verdict::Unexpected(Reason::Status)
        );
        // A malformed request whose body was being relayed when the
        // upstream went away may get 502 instead of its 400, in a window.
        assert_eq!(
            judge(MALFORMED_CL, &complete(502), true),
            Verdict::Tolerated
        );
        assert_eq!(
            judge(Expect::Answer(&[504]), &complete(502), true),
            Verdict::Tolerated
        );
    }

    #[test]
    fn a_truncated_body_without_a_fault_is_unexpected_outside_a_restart() {
        assert_eq!(
            judge(Expect::Success, &truncated(), false),
            Verdict::Unexpected(Reason::Truncated)
        );
        assert_eq!(
            judge(Expect::Success, &truncated(), true),
            Verdict::Tolerated
        );
    }

    #[test]
    fn wrong_bodies_hangs_and_refusals_are_never_excused() {
        let wrong = Observed::Complete {
            status: 200,
            problem: Some("byte 4096 differs".into()),
        };
        for in_restart in [false, true] {
            assert_eq!(
                judge(Expect::Success, &wrong, in_restart),
                Verdict::Unexpected(Reason::WrongResponse)
            );
            assert_eq!(
                judge(Expect::Success, &Observed::Hung, in_restart),
                Verdict::Unexpected(Reason::Hung)
            );
            assert_eq!(
                judge(
                    Expect::Success,
                    &Observed::ConnectFailed("refused".into()),
                    in_restart
                ),
                Verdict::Unexpected(Reason::ConnectFailed)
            );
            // A truncation whose bytes were wrong is wrong, fault or not.
            let wrong_prefix = Observed::Truncated {
                status: 200,
                why: "EOF".into(),
                problem: Some("byte 7 differs".into()),
            };
            assert_eq!(
                judge(Expect::Truncated, &wrong_prefix, in_restart),
                Verdict::Unexpected(Reason::WrongResponse)
            );
        }
    }

    #[test]
    fn wrong_statuses_are_unexpected() {
        // The right answer to a malformed request is its 4xx, not another.
        assert_eq!(
            judge(MALFORMED_CL, &complete(200), false),
            Verdict::Unexpected(Reason::Status)
        );
        assert_eq!(
            judge(Expect::Answer(&[504]), &complete(200), true),
            Verdict::Unexpected(Reason::Status)
        );
        // Load shedding is not expected at the soak's concurrency.
        assert_eq!(
            judge(Expect::Success, &complete(503), true),
            Verdict::Unexpected(Reason::Status)
        );
        // A truncation fault must not produce a complete 200.
        assert_eq!(
            judge(Expect::Truncated, &complete(200), false),
            Verdict::Unexpected(Reason::Status)
        );
    }

    #[test]
    fn only_a_tunnel_may_end_without_a_response_during_a_restart() {
        let cut = Observed::NoResponse("EOF".into());
        assert_eq!(judge(Expect::Tunneled, &cut, true), Verdict::Tolerated);
        assert_eq!(
            judge(Expect::Tunneled, &cut, false),
            Verdict::Unexpected(Reason::NoResponse)
        );
        // Through the proxy, a dead upstream earns a 502, not silence.
        assert_eq!(
            judge(Expect::Success, &cut, true),
            Verdict::Unexpected(Reason::NoResponse)
        );
    }

    #[test]
    fn a_short_body_is_tolerated_only_when_an_origin_kill_may_have_ended_it() {
        let short = Observed::ShortBody {
            status: 200,
            got: 64_256,
            expected: 249_752,
        };
        // A close-delimited body ends at the origin's FIN, and a killed
        // origin sends one: during a restart the proxy cannot tell.
        assert_eq!(
            classify(Expect::Truncated, &short, true, true),
            Verdict::Tolerated
        );
        assert_eq!(
            classify(Expect::Success, &short, true, true),
            Verdict::Tolerated
        );
        // Outside a restart, or for a framed body, it is a body that lies.
        assert_eq!(
            classify(Expect::Truncated, &short, false, true),
            Verdict::Unexpected(Reason::WrongResponse)
        );
        assert_eq!(
            classify(Expect::Success, &short, true, false),
            Verdict::Unexpected(Reason::WrongResponse)
        );
        // Longer than sent is never an origin's doing.
        let long = Observed::ShortBody {
            status: 200,
            got: 300,
            expected: 200,
        };
        assert_eq!(
            classify(Expect::Success, &long, true, true),
            Verdict::Unexpected(Reason::WrongResponse)
        );
    }

    #[test]
    fn restart_windows_cover_the_kill_to_grace_after_ready() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let restarts = [Restart {
            killed: s(30),
            ready: Some(ms(30_200)),
        }];
        // In flight at the kill.
        assert!(overlaps_restart(&restarts, ms(29_900), ms(30_050)));
        // Started while the origin was down.
        assert!(overlaps_restart(&restarts, ms(30_100), ms(30_110)));
        // Started within the grace after ready.
        assert!(overlaps_restart(&restarts, ms(31_000), ms(31_010)));
        // Ended before the kill, started after the grace: outside.
        assert!(!overlaps_restart(&restarts, ms(29_000), ms(29_990)));
        let after = ms(30_200) + RESTART_GRACE + ms(1);
        assert!(!overlaps_restart(&restarts, after, after + ms(5)));
        // A restart under way covers everything that ended after the kill.
        let ongoing = [Restart {
            killed: s(60),
            ready: None,
        }];
        assert!(overlaps_restart(&ongoing, s(61), s(62)));
        assert!(!overlaps_restart(&ongoing, s(58), s(59)));
        assert!(!overlaps_restart(&[], s(1), s(2)));
    }
}
