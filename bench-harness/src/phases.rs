//! The table of phases the harness knows. Adding a phase is one entry here
//! (and the crate in `Cargo.toml`): the suite, the `serve` mode and the
//! report all read this table.

use std::ffi::OsString;

/// A phase's whole program: its `main_from`, called with a command line
/// whose first item is the program name (see `phase1_blocking::main_from`).
pub type MainFrom = fn(Vec<OsString>) -> anyhow::Result<()>;

/// One rung of the ladder, as the harness sees it.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// The crate's name, also the name in reports.
    pub name: &'static str,
    /// One line: the concurrency model.
    pub model: &'static str,
    pub main_from: MainFrom,
    /// Keeps client connections open between requests. Phase 1 does not:
    /// it answers every request with `Connection: close`.
    pub keep_alive: bool,
    /// Opens CONNECT tunnels (phase 1 answers 501).
    pub connect: bool,
    /// The most idle keep-alive clients worth holding: 0 skips the idle
    /// scenario (without keep-alive there is no idle client).
    pub idle_max: usize,
}

/// Every phase, in ladder order.
pub const PHASES: &[Phase] = &[
    Phase {
        name: "phase1-blocking",
        model: "one thread, one connection at a time",
        main_from: phase1_blocking::main_from::<Vec<OsString>, OsString>,
        keep_alive: false,
        connect: false,
        idle_max: 0,
    },
    Phase {
        name: "phase2-threadpool",
        model: "blocking I/O on a bounded pool of worker threads",
        main_from: phase2_threadpool::main_from::<Vec<OsString>, OsString>,
        keep_alive: true,
        connect: true,
        // Each idle client pins a worker (128 by default) and the rest wait
        // in the queue: a thousand is plenty to show it, and quick to open.
        idle_max: 1000,
    },
    Phase {
        name: "phase3-epoll",
        model: "hand-written readiness event loops (mio), one per core",
        main_from: phase3_epoll::main_from::<Vec<OsString>, OsString>,
        keep_alive: true,
        connect: true,
        idle_max: 10_000,
    },
    Phase {
        name: "phase4-async",
        model: "tokio, a task per connection",
        main_from: phase4_async::main_from::<Vec<OsString>, OsString>,
        keep_alive: true,
        connect: true,
        idle_max: 10_000,
    },
];

/// Finds a phase by its name, its prefix (`phase1`) or its number (`1`).
pub fn find(name: &str) -> Option<&'static Phase> {
    PHASES.iter().find(|p| {
        p.name == name
            || p.name.split('-').next() == Some(name)
            || p.name
                .strip_prefix("phase")
                .and_then(|s| s.split('-').next())
                == Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_found_by_name_prefix_or_number() {
        for query in ["phase1-blocking", "phase1", "1"] {
            assert_eq!(find(query).map(|p| p.name), Some("phase1-blocking"));
        }
        assert!(find("phase9").is_none());
        assert!(find("blocking").is_none());
    }

    #[test]
    fn phase_names_are_unique() {
        let mut names: Vec<_> = PHASES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PHASES.len());
    }
}
