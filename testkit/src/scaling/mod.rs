//! The scaling suite: what phases 2-4 promise beyond the conformance suite,
//! the behaviours that only exist once a proxy serves many connections at
//! once and keeps connections open: reusing upstream connections, bounded
//! memory for slow clients, thousands of idle keep-alive clients, load
//! shedding over `--max-connections`, a graceful shutdown with idle
//! connections around and one under load, hundreds of slowloris clients
//! cut off while others are served, tunnels whose two directions do not
//! wait for each other.
//!
//! Phase 1 does not run it: it has no keep-alive, no pool and no tunnel,
//! so most cases fail against it, which is what shows they test something
//! (see [`crate::Profile::PHASE1`]).
//!
//! A phase crate adds one file, `tests/scaling.rs`:
//!
//! ```text
//! testkit::scaling_suite!(env!("CARGO_BIN_EXE_phase3-epoll"), testkit::Scale::EVENT_LOOP);
//! ```
//!
//! and gets one `#[test]` per case, named `scaling::TOPIC::CASE`
//! (`cargo test -p phase3-epoll --test scaling scaling::capacity`).
//!
//! # Scale
//!
//! The phases differ in how much they can hold: a thread pool pins one
//! thread per open connection, an event loop or a runtime holds a few
//! kilobytes per connection. A [`Scale`] says how many connections the
//! many-connections case opens and which flags every case adds (phase 2
//! needs more workers than that case has connections).
//!
//! # Not performance tests
//!
//! Every bound here detects a missing behaviour, not a slow one: "at most
//! 4 upstream connections for 150 sequential requests" (a pool would need
//! 1; none needs 150), "RSS grew by less than 32 MiB while 64 MiB passed"
//! (a buffering proxy grows by ~64 MiB), "95% of slowloris clients cut
//! within 6 s" (a per-read timeout cuts none). Time limits only turn a hang
//! into a failure, or say a client was served rather than stuck.
//!
//! Cases read `/proc/PID/status`, so they need Linux (see [`crate::process`]).

pub mod backpressure;
pub mod capacity;
pub mod lifecycle;
pub mod pooling;
pub mod resources;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{Origin, OriginConfig, Profile, Proxy, Suite};

/// How much a phase is expected to hold, and the flags it needs for it.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Shown in failure messages.
    pub name: &'static str,
    /// How many keep-alive connections the many-connections case holds open at once.
    pub concurrent_connections: usize,
    /// Extra flags given to the proxy in every scaling case (phase 2 needs
    /// enough workers for the concurrent-connections case, e.g. ["--workers", "600"]).
    /// A case that sets one of these flags itself overrides it.
    pub extra_args: &'static [&'static str],
}

impl Scale {
    /// Phase 2: one worker thread per open connection, so 500 connections
    /// need more than 500 workers.
    pub const THREAD_POOL: Scale = Scale {
        name: "thread-pool",
        concurrent_connections: 500,
        extra_args: &["--workers", "600"],
    };

    /// Phase 3: a connection costs a slab entry and its buffers.
    pub const EVENT_LOOP: Scale = Scale {
        name: "event-loop",
        concurrent_connections: 5000,
        extra_args: &[],
    };

    /// Phase 4: a connection costs a task.
    pub const ASYNC: Scale = Scale {
        name: "async",
        concurrent_connections: 5000,
        extra_args: &[],
    };
}

/// One phase's binary and scale: what every scaling case receives.
#[derive(Debug, Clone)]
pub struct ScalingSuite {
    /// Path of the proxy binary (`env!("CARGO_BIN_EXE_...")`).
    pub bin: PathBuf,
    pub scale: Scale,
}

impl ScalingSuite {
    pub fn new(bin: impl Into<PathBuf>, scale: Scale) -> ScalingSuite {
        ScalingSuite {
            bin: bin.into(),
            scale,
        }
    }

    /// The conformance [`Suite`] for the same binary (phases 2-4 all have
    /// the full profile), for its origin and proxy helpers.
    fn suite(&self) -> Suite {
        Suite::new(self.bin.clone(), Profile::FULL)
    }

    /// An in-process origin with the default configuration, on port 0.
    #[track_caller]
    pub fn origin(&self) -> Origin {
        self.suite().origin()
    }

    /// An in-process origin with `config`, on port 0.
    #[track_caller]
    pub fn origin_with(&self, config: OriginConfig) -> Origin {
        self.suite().origin_with(config)
    }

    /// The proxy in reverse mode towards `origin`, with the scale's extra
    /// flags and the case's own `flags` (`--flag value` pairs).
    #[track_caller]
    pub fn reverse(&self, origin: &Origin, flags: &[&str]) -> Proxy {
        self.reverse_to(origin.addr(), flags)
    }

    /// The proxy in reverse mode towards any address.
    #[track_caller]
    pub fn reverse_to(&self, upstream: SocketAddr, flags: &[&str]) -> Proxy {
        let flags = self.flags(flags);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.suite().reverse_to(upstream, &flags)
    }

    /// The proxy in forward mode, with the scale's extra flags and `flags`.
    #[track_caller]
    pub fn forward(&self, flags: &[&str]) -> Proxy {
        let flags = self.flags(flags);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.suite().forward(&flags)
    }

    /// The scale's extra flags, then the case's own. clap refuses a flag
    /// given twice, so a `--flag value` pair of the scale whose flag the
    /// case sets itself is left out: the case knows what it is testing
    /// (`--max-connections 4` must be 4).
    fn flags(&self, own: &[&str]) -> Vec<String> {
        let mut flags = Vec::new();
        let mut extra = self.scale.extra_args.iter().peekable();
        while let Some(&flag) = extra.next() {
            let value = match extra.peek() {
                Some(v) if !v.starts_with("--") => extra.next().copied(),
                _ => None,
            };
            if !own.contains(&flag) {
                flags.push(flag.to_string());
                flags.extend(value.map(str::to_string));
            }
        }
        flags.extend(own.iter().map(|f| f.to_string()));
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_flag_overrides_the_same_scale_flag() {
        let suite = ScalingSuite::new("proxy", Scale::THREAD_POOL);
        assert_eq!(
            suite.flags(&["--max-connections", "4"]),
            ["--workers", "600", "--max-connections", "4"]
        );
        assert_eq!(suite.flags(&["--workers", "2"]), ["--workers", "2"]);
        assert!(ScalingSuite::new("p", Scale::ASYNC).flags(&[]).is_empty());
    }
}
