//! The processes the harness starts, and making sure none outlives it.
//!
//! Every proxy runs as its own process so that its CPU time, memory and
//! threads can be read from `/proc` without the harness's own mixed in.
//! Phases and the origin are the harness binary itself, re-executed in its
//! hidden `serve` mode ([`crate::serve`]); peers are the nginx / haproxy
//! binaries.
//!
//! Three layers make sure nothing is left running:
//!
//! 1. [`ChildProcess`] stops its process when dropped (SIGTERM, then SIGKILL
//!    after [`STOP_GRACE`]), so an early return or a panic unwinding through
//!    the suite cleans up.
//! 2. Ctrl-C: [`on_interrupt_stop_children`] handles SIGINT and SIGTERM by
//!    signalling every live child (peers run in their own process group, so
//!    nginx's workers go too), then exits with status 130.
//! 3. If the harness is killed outright (SIGKILL gives it no chance), each
//!    `serve` child notices that its stdin, a pipe from the harness, has
//!    closed, and exits (see [`crate::serve`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long a child gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How long a child may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Live children: (pid, runs in its own process group).
static LIVE: Mutex<Vec<(u32, bool)>> = Mutex::new(Vec::new());

fn register(pid: u32, group: bool) {
    if let Ok(mut live) = LIVE.lock() {
        live.push((pid, group));
    }
}

fn unregister(pid: u32) {
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|(p, _)| *p != pid);
    }
}

fn signal(pid: u32, group: bool, sig: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let pid = Pid::from_raw(raw);
    let _ = if group {
        killpg(pid, sig)
    } else {
        kill(pid, sig)
    };
}

/// Installs the Ctrl-C handler: SIGINT or SIGTERM stops every live child and
/// exits with 130. Call once, early.
pub fn on_interrupt_stop_children() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the Ctrl-C handler")?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
                eprintln!(
                    "\ninterrupted: stopping {} process(es) the harness started",
                    live.len()
                );
                for &(pid, group) in &live {
                    signal(pid, group, Signal::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline && live.iter().any(|&(pid, _)| is_running(pid)) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                for &(pid, group) in &live {
                    signal(pid, group, Signal::SIGKILL);
                }
                std::process::exit(130);
            }
        })
        .context("cannot start the Ctrl-C thread")?;
    Ok(())
}

/// Is there still a process with this pid (not yet reaped counts as gone
/// once it is a zombie)?
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// A process the harness started, listening on `addr`.
#[derive(Debug)]
pub struct ChildProcess {
    pub name: String,
    pub addr: SocketAddr,
    /// The command line, for the report.
    pub command: String,
    child: Child,
    /// In its own process group (peers): signals go to the whole group.
    group: bool,
    /// Held open so the child can tell that the harness is alive.
    _stdin: Option<ChildStdin>,
    stopped: bool,
}

impl ChildProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (crashed) already?
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL; reaps the process.
    pub fn stop(mut self) {
        self.stop_now();
    }

    /// SIGKILL at once, no grace (the soak's upstream restarts: a crash,
    /// not a shutdown); reaps the process.
    pub fn kill(mut self) {
        self.stopped = true;
        let pid = self.pid();
        signal(pid, self.group, Signal::SIGKILL);
        let _ = self.child.wait();
        unregister(pid);
    }

    fn stop_now(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = self.pid();
        if !self.has_exited() {
            signal(pid, self.group, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline && !self.has_exited() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !self.has_exited() {
                signal(pid, self.group, Signal::SIGKILL);
            }
        }
        let _ = self.child.wait();
        if self.group {
            // Workers of a master that died first may still be around.
            signal(pid, true, Signal::SIGKILL);
        }
        unregister(pid);
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts `bench-harness serve NAME -- ARGS...` and waits for its
/// `listening on IP:PORT` line. stderr goes to `log` (truncated first).
pub fn spawn_serve(name: &str, args: &[String], log: &Path) -> anyhow::Result<ChildProcess> {
    let stderr = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    spawn_serve_logging_to(name, args, log, stderr)
}

/// [`spawn_serve`], but stderr is appended to `log`: a process started
/// again and again (the soak's origin) keeps one log of all its lives.
pub fn spawn_serve_appending(
    name: &str,
    args: &[String],
    log: &Path,
) -> anyhow::Result<ChildProcess> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    spawn_serve_logging_to(name, args, log, stderr)
}

fn spawn_serve_logging_to(
    name: &str,
    args: &[String],
    log: &Path,
    stderr: File,
) -> anyhow::Result<ChildProcess> {
    let exe = std::env::current_exe().context("cannot find the harness's own executable")?;
    let mut command = Command::new(&exe);
    command
        .arg("serve")
        .arg(name)
        .arg("--")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    register(child.id(), false);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let mut process = ChildProcess {
        name: name.to_string(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        command: format!("{name} {}", args.join(" ")),
        child,
        group: false,
        _stdin: stdin,
        stopped: false,
    };
    let Some(stdout) = stdout else {
        bail!("{name}: no stdout pipe");
    };
    match wait_for_listening_line(stdout) {
        Ok(addr) => {
            process.addr = addr;
            Ok(process)
        }
        Err(e) => {
            process.stop_now();
            Err(e.context(format!("{name} did not start; its log: {}", tail(log))))
        }
    }
}

/// Reads stdout until `listening on IP:PORT`, then keeps draining it on a
/// thread (so a chatty child never blocks on a full pipe).
fn wait_for_listening_line(stdout: impl Read + Send + 'static) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("child-stdout".into())
        .spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().parse::<SocketAddr>().ok());
                        sent = true;
                    }
                }
            }
            if !sent {
                let _ = tx.send(None);
            }
        })
        .context("cannot start a thread")?;
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(anyhow!("it exited or printed no `listening on` line")),
        Err(_) => Err(anyhow!("no `listening on` line within {START_TIMEOUT:?}")),
    }
}

/// Starts an external program (a peer) in its own process group, with its
/// output to `log`, and waits until `addr` accepts connections.
pub fn spawn_program(
    name: &str,
    program: &Path,
    args: &[String],
    addr: SocketAddr,
    log: &Path,
) -> anyhow::Result<ChildProcess> {
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    register(child.id(), true);
    let mut process = ChildProcess {
        name: name.to_string(),
        addr,
        command: format!("{} {}", program.display(), args.join(" ")),
        child,
        group: true,
        _stdin: None,
        stopped: false,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(process);
        }
        if process.has_exited() || Instant::now() >= deadline {
            process.stop_now();
            bail!(
                "{name} did not start listening on {addr}; its log: {}",
                tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a load tool to completion (killed after `limit`), returning its
/// stdout and stderr. It is registered as a child while it runs, so Ctrl-C
/// stops it too.
pub fn run_tool(program: &str, args: &[String], limit: Duration) -> anyhow::Result<ToolOutput> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let pid = child.id();
    register(pid, false);
    // Read both pipes on threads: a tool that fills one pipe while we wait on
    // the other would otherwise deadlock.
    let stdout = child.stdout.take().map(read_on_thread);
    let stderr = child.stderr.take().map(read_on_thread);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    unregister(pid);
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let output = ToolOutput {
        stdout: collect(stdout),
        stderr: collect(stderr),
        success: status.is_some_and(|s| s.success()),
        timed_out: status.is_none(),
    };
    Ok(output)
}

fn read_on_thread(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A tool's report is small; cap it anyway.
        let _ = pipe.by_ref().take(4 * 1024 * 1024).read_to_end(&mut bytes);
        // Drain the rest so the tool never blocks on a full pipe.
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What a load tool printed.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub timed_out: bool,
}

/// The last lines of a log file, for error messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(8);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        format!("{} (empty)", log.display())
    } else {
        format!("{}:\n{tail}", log.display())
    }
}
