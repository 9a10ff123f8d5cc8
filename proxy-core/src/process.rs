//! The two things every phase's `main` does the same way, apart from the
//! proxy itself: set up diagnostics on stderr, and announce the bound address
//! on stdout. (The one module here that touches the process's standard
//! streams; still no sockets, threads or runtime.)

use std::io::{self, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

/// Diagnostics (`tracing`) to stderr at `level` (`--log-level`), coloured
/// only when stderr is a terminal. Calling it twice keeps the first setup.
pub fn init_logging(level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .try_init();
}

/// Prints exactly `listening on IP:PORT` as one line on stdout and flushes:
/// tests, scripts and the bench harness wait for this line (with `--listen
/// 127.0.0.1:0` it is the only way to learn the port).
pub fn announce(addr: SocketAddr) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()
}

/// Writes one access-log line to stdout (`--access-log`). A closed or broken
/// stdout must not stop the proxy, so errors are ignored. It is a blocking
/// write under std's stdout lock (which keeps lines from different threads
/// whole): a reader that stops draining the pipe stalls the caller, which is
/// why phase 3's chapter discusses a bounded writer thread.
pub fn write_access_line(record: &crate::access_log::AccessRecord) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{record}");
    let _ = out.flush();
}

/// Logs one exchange when `--access-log` is on: `start` is its wall-clock
/// start for the line, `duration` how long it took. (Phase 3 builds its
/// record through its `Env`, whose clock tests can fake.)
pub fn log_exchange(
    config: &crate::Config,
    client: IpAddr,
    start: SystemTime,
    duration: Duration,
    request_line: &str,
    status: u16,
    body_bytes: u64,
) {
    if !config.access_log {
        return;
    }
    write_access_line(&crate::access_log::AccessRecord {
        client,
        start,
        request_line: request_line.to_string(),
        status,
        body_bytes,
        duration,
    });
}

/// Calls `trigger` on SIGINT or SIGTERM (from a small signal thread), then
/// exits the process with status 0 if the server has not stopped `backstop`
/// later: the phases enforce `--shutdown-grace` themselves, so the backstop
/// (the grace plus a margin) only catches a bug. Call
/// [`SignalThread::finish`] once the server has stopped, so the thread ends
/// before the process does. (Phase 4 waits for signals as a future instead.)
pub fn on_signals(
    trigger: impl FnOnce() + Send + 'static,
    backstop: Duration,
) -> io::Result<SignalThread> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // Ends when a signal arrives or when finish() closes the handle.
            if let Some(signal) = signals.forever().next() {
                tracing::info!(
                    signal,
                    "shutting down: no new connections; finishing the exchanges in flight"
                );
                trigger();
                // The server stopping in time ends this wait early.
                if done_rx.recv_timeout(backstop).is_err() {
                    tracing::warn!(?backstop, "the server did not stop in time; exiting");
                    std::process::exit(0);
                }
            }
        })?;
    Ok(SignalThread {
        handle,
        done: done_tx,
        thread,
    })
}

/// The running signal thread (see [`on_signals`]).
#[derive(Debug)]
pub struct SignalThread {
    handle: signal_hook::iterator::Handle,
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl SignalThread {
    /// The server has stopped: end the signal thread and wait for it, so that
    /// no thread outlives `main` (valgrind then reports nothing lost).
    pub fn finish(self) {
        let _ = self.done.send(());
        self.handle.close();
        let _ = self.thread.join();
    }
}
