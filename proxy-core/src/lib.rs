//! The HTTP/1.1 proxy, without the I/O.
//!
//! Every phase of proxy-ladder is the same proxy with a different concurrency
//! model. Everything that is *the proxy* (what is a valid request, where a
//! body ends, what goes upstream, which status a failure earns) lives here,
//! as pure functions and small state machines over byte slices. None of it
//! touches a socket, a thread or a runtime ("sans-IO"), which buys three
//! things:
//!
//! - the four phases cannot drift apart in behaviour, only in scheduling;
//! - every rule is unit-tested on raw bytes, including every message split at
//!   every offset, as sockets deliver them;
//! - a student reading a phase sees only its concurrency model.
//!
//! | module | what it decides |
//! |---|---|
//! | [`config`] | the shared command line |
//! | [`request`] | is this a valid request head? how is its body framed? |
//! | [`target`] | which form is the target, and where does the exchange go? |
//! | [`response`] | is this a valid response head? how is its body framed? |
//! | [`framing`] | where does a body end (streaming, any split) |
//! | [`rewrite`] | what goes upstream, what goes back |
//! | [`answers`] | the proxy's own responses |
//! | [`error`] | one error enum, each variant mapped to a status |
//! | [`access_log`] | one Common Log Format line per exchange |
//! | [`pool`] | the idle upstream connection pool's policy (phases 2-4) |
//! | [`process`] | logging setup, the `listening on` line, access-log lines |
//! | [`wait`] | why waiting for a head ended, and what that means for the client |
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access_log;
pub mod answers;
pub mod config;
pub mod error;
pub mod framing;
pub mod head;
pub mod pool;
pub mod process;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod target;
pub mod wait;

pub use config::{Config, Mode, Phase};
pub use error::ProxyError;
pub use framing::{BodyFramer, BodyKind};
pub use head::{Header, Parsed, Version};
pub use request::{RequestHead, parse_request, parse_request_from};
pub use response::{ResponseHead, parse_response, parse_response_from};
pub use target::{Authority, Route, Target};
