//! The proxy under test: the real binary, spawned on port 0.
//!
//! Cases run the *binary*, not the library, because the contract is what a
//! user sees: the command line, the `listening on` line, exit codes, signals,
//! the access log on stdout. Each case gets its own process, so a crash in
//! one case cannot hide in another, and cases run in parallel.
//!
//! Two threads drain the child's stdout and stderr into bounded buffers: a
//! chatty proxy must never block on a full pipe (that would look like a
//! proxy bug), and the access-log case and failure messages read them.
//! Dropping a [`Proxy`] kills the process; if the case is failing, the
//! proxy's stderr and stdout are printed first.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::process::{open_descriptors, proc_status_kib};

/// How long the binary may take to print `listening on ...`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of each output stream kept (later output is counted, not kept).
const OUTPUT_LIMIT: usize = 1024 * 1024;
/// How much of the output a failing case prints.
const PRINTED_OUTPUT: usize = 8 * 1024;

/// Output captured from one stream of the child.
#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: u64,
}

type Shared = Arc<Mutex<Captured>>;

/// A running proxy process.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    addr: SocketAddr,
    /// The command line, for failure messages.
    command: String,
    /// Everything after the `listening on` line.
    stdout: Shared,
    stderr: Shared,
}

impl Proxy {
    /// Spawns `bin` with `--listen 127.0.0.1:0` and `args`, and waits for it
    /// to print exactly `listening on IP:PORT` as its first stdout line.
    #[track_caller]
    pub fn spawn(bin: &Path, args: &[String]) -> Proxy {
        let mut all_args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        all_args.extend_from_slice(args);
        let mut child = Command::new(bin)
            .args(&all_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));

        let stdout: Shared = Arc::default();
        let stderr: Shared = Arc::default();
        let (line_tx, line_rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let sink = Arc::clone(&stdout);
            thread::spawn(move || {
                let mut out = BufReader::new(out);
                let mut first = Vec::new();
                // Ignore a failure to send: the case gave up waiting.
                let _ = match out.read_until(b'\n', &mut first) {
                    Ok(_) => line_tx.send(first),
                    Err(_) => line_tx.send(Vec::new()),
                };
                drain(out, &sink);
            });
        }
        if let Some(err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            thread::spawn(move || drain(err, &sink));
        }

        let mut proxy = Proxy {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            command: format!("{} {}", bin.display(), all_args.join(" ")),
            stdout,
            stderr,
        };
        let line = line_rx.recv_timeout(STARTUP_TIMEOUT).unwrap_or_default();
        let line = String::from_utf8_lossy(&line);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .filter(|a| format!("listening on {a}") == line);
        match addr {
            Some(addr) => proxy.addr = addr,
            None => {
                // If it is exiting, let the stderr thread catch the reason.
                let _ = proxy.wait_for_exit(Duration::from_secs(1));
                thread::sleep(Duration::from_millis(50));
                proxy.fail(format!(
                "expected the first stdout line to be exactly `listening on IP:PORT`, got {line:?}"
                ))
            }
        }
        proxy
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new client connection to the proxy.
    #[track_caller]
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (through `kill(1)`: `unsafe` is forbidden here, so no
    /// `libc::kill`).
    #[track_caller]
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            self.fail(format!("`kill -TERM {}` failed: {status:?}", self.pid()));
        }
    }

    /// Waits up to `limit` for the process to exit.
    #[track_caller]
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if start.elapsed() < limit => thread::sleep(Duration::from_millis(20)),
                Ok(None) => return None,
                Err(e) => self.fail(format!("cannot wait for the proxy: {e}")),
            }
        }
    }

    /// The proxy's resident set size now, in KiB (`VmRSS`).
    #[track_caller]
    pub fn resident_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
            .unwrap_or_else(|| self.fail("cannot read VmRSS from /proc/PID/status"))
    }

    /// The largest resident set size the proxy has had so far, in KiB
    /// (`VmHWM`, the "high water mark"): catches a buffer that grew and was
    /// freed between two samples of [`Proxy::resident_kib`].
    #[track_caller]
    pub fn peak_resident_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
            .unwrap_or_else(|| self.fail("cannot read VmHWM from /proc/PID/status"))
    }

    /// What each of the proxy's open descriptors points to (`/proc/PID/fd`).
    #[track_caller]
    pub fn descriptors(&self) -> Vec<String> {
        open_descriptors(self.pid())
            .unwrap_or_else(|| self.fail("cannot list /proc/PID/fd of the proxy"))
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the proxy wrote to stdout after the `listening on` line.
    pub fn stdout_text(&self) -> String {
        read_shared(&self.stdout)
    }

    /// What the proxy wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        read_shared(&self.stderr)
    }

    /// Fails the case, printing the command line and the proxy's output.
    #[track_caller]
    pub fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "{what}\n(proxy: {})\n--- proxy stderr ---\n{}\n--- proxy stdout ---\n{}",
            self.command,
            tail(&self.stderr_text()),
            tail(&self.stdout_text()),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            // The test harness shows this only for the failing case.
            eprintln!(
                "--- proxy ({}) stderr ---\n{}\n--- proxy stdout ---\n{}",
                self.command,
                tail(&self.stderr_text()),
                tail(&self.stdout_text()),
            );
        }
    }
}

/// Copies a child's output stream into `sink` until EOF, keeping at most
/// [`OUTPUT_LIMIT`] bytes.
fn drain(mut from: impl Read, sink: &Shared) {
    let mut piece = [0u8; 8192];
    while let Ok(n) = from.read(&mut piece) {
        if n == 0 {
            break;
        }
        let mut captured = sink.lock().unwrap_or_else(PoisonError::into_inner);
        let room = OUTPUT_LIMIT.saturating_sub(captured.bytes.len()).min(n);
        captured.bytes.extend_from_slice(&piece[..room]);
        captured.dropped += (n - room) as u64;
    }
}

fn read_shared(shared: &Shared) -> String {
    let captured = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let mut text = String::from_utf8_lossy(&captured.bytes).into_owned();
    if captured.dropped > 0 {
        text.push_str(&format!("\n[... {} more bytes not kept]", captured.dropped));
    }
    text
}

/// The last [`PRINTED_OUTPUT`] bytes of `text` (on a char boundary).
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(PRINTED_OUTPUT);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
