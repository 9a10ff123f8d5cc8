//! What a proxy process costs, read from `/proc` while the load runs.
//!
//! - **CPU seconds**: `utime + stime` (fields 14 and 15 of `/proc/PID/stat`,
//!   in clock ticks) at the end of the load minus at the start.
//! - **Peak RSS**: the largest `VmRSS` seen by a sampler thread (every
//!   [`SAMPLE_EVERY`]), or `VmHWM` (the kernel's own high-water mark) if larger.
//! - **Threads**: the largest `Threads` seen.
//! - **File descriptors** ([`fd_count`], for the soak): the entries of
//!   `/proc/PID/fd`, one per open socket, pipe or file; [`fd_kinds`] says
//!   what they are (a TCP socket's state and peer come from
//!   `/proc/PID/net/tcp`), so a count that grows can be told apart: idle
//!   pooled connections, or sockets in `CLOSE_WAIT` that nobody closed.
//!
//! A proxy is measured as a *process tree*: phases are one process, but
//! nginx is a master and its workers, so the numbers of all processes
//! descending from the one the harness started are added up.
//!
//! Linux only; elsewhere the numbers are zero and the report says so.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::results::ProcessStats;

/// How often the sampler looks at RSS and threads.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One look at a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    /// Sum of the processes' `VmHWM`.
    pub hwm_kib: u64,
    pub threads: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we know of).
pub fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// utime + stime from the text of `/proc/PID/stat`, and the parent's pid.
///
/// The second field is the command name in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state (field 3), ppid (4), ..., utime (14), stime (15).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `VmRSS`, `VmHWM` (KiB) and `Threads` from the text of `/proc/PID/status`.
pub fn parse_status(status: &str) -> (u64, u64, u64) {
    let mut rss = 0;
    let mut hwm = 0;
    let mut threads = 0;
    for line in status.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let value = value.parse().unwrap_or(0);
        match key {
            "VmRSS:" => rss = value,
            "VmHWM:" => hwm = value,
            "Threads:" => threads = value,
            _ => {}
        }
    }
    (rss, hwm, threads)
}

/// `root` and every process descending from it.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
                if let Some((ppid, _)) = parse_stat(&stat) {
                    parents.push((pid, ppid));
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    tree
}

/// Adds up the tree rooted at `root`. A process that exits meanwhile simply
/// stops counting.
pub fn sample_tree(root: u32) -> Sample {
    let mut sample = Sample::default();
    for pid in process_tree(root) {
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some((_, ticks)) = parse_stat(&stat) {
                sample.cpu_ticks += ticks;
            }
        }
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            let (rss, hwm, threads) = parse_status(&status);
            sample.rss_kib += rss;
            sample.hwm_kib += hwm;
            sample.threads += threads;
        }
    }
    sample
}

/// Open file descriptors of one process: the entries of `/proc/PID/fd`
/// (None if the process is gone or not ours to look at).
pub fn fd_count(pid: u32) -> Option<u64> {
    let entries = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.flatten().count() as u64)
}

/// One line of `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    pub local_port: u16,
    pub remote_port: u16,
    /// The kernel's state number (1 ESTABLISHED ... 10 LISTEN).
    pub state: u8,
    pub inode: u64,
}

/// Parses `/proc/PID/net/tcp` (or `tcp6`): `sl local rem st ... inode`,
/// addresses as `HEXADDR:HEXPORT`, the state in hex.
pub fn parse_tcp_table(text: &str) -> Vec<TcpEntry> {
    let port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(TcpEntry {
                local_port: port(fields.get(1)?)?,
                remote_port: port(fields.get(2)?)?,
                state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// The name of a TCP state number from `/proc/net/tcp`.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// What the descriptors of `pid` are, counted by kind: `tcp STATE to
/// upstream` (the remote port is `upstream_port`), `tcp STATE client` (the
/// local port is `listen_port`), `tcp LISTEN`, other TCP, `pipe`,
/// `anon_inode:[eventpoll]`, `unix socket`, files, ...
///
/// The descriptors are listed first and the TCP tables read after, so a
/// socket found in neither was closed in between (under load, connections
/// live for a millisecond), is a TCP socket whose connection has ended
/// (it leaves the tables once closed or reset), or is not TCP at all: it
/// is counted as `socket (closed, or not TCP)`. At rest the count is exact.
/// Unix sockets (`/proc/PID/net/unix`) are `unix socket`.
pub fn fd_kinds(pid: u32, listen_port: u16, upstream_port: u16) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return kinds;
    };
    let targets: Vec<String> = entries
        .flatten()
        .filter_map(|entry| fs::read_link(entry.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    let mut tcp: BTreeMap<u64, TcpEntry> = BTreeMap::new();
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            tcp.extend(parse_tcp_table(&text).into_iter().map(|e| (e.inode, e)));
        }
    }
    // `Num RefCount Protocol Flags Type St Inode Path`: the seventh field.
    let unix: std::collections::BTreeSet<u64> = fs::read_to_string(format!("/proc/{pid}/net/unix"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(6)?.parse().ok())
        .collect();
    for target in targets {
        let kind = if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            match tcp.get(&inode) {
                Some(e) if e.state == 10 => "tcp LISTEN".to_string(),
                Some(e) => {
                    let peer = if e.remote_port == upstream_port {
                        "to upstream"
                    } else if e.local_port == listen_port {
                        "client"
                    } else {
                        "other"
                    };
                    format!("tcp {} {peer}", tcp_state_name(e.state))
                }
                // signal-hook's self-pipe is a Unix socket pair.
                None if unix.contains(&inode) => "unix socket".to_string(),
                None => "socket (closed, or not TCP)".to_string(),
            }
        } else if target.starts_with("pipe:") {
            "pipe".to_string()
        } else if target.starts_with("anon_inode:") {
            target
        } else if target.starts_with("/dev/") {
            "device".to_string()
        } else {
            "file".to_string()
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

/// Watches a process tree from [`Sampler::start`] to [`Sampler::finish`].
#[derive(Debug)]
pub struct Sampler {
    root: u32,
    first: Sample,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u64, u64)>>,
}

impl Sampler {
    pub fn start(root: u32) -> Sampler {
        let first = sample_tree(root);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let (mut rss, mut threads) = (first.rss_kib, first.threads);
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(SAMPLE_EVERY);
                    let now = sample_tree(root);
                    rss = rss.max(now.rss_kib);
                    threads = threads.max(now.threads);
                }
                (rss, threads)
            })
            .ok();
        Sampler {
            root,
            first,
            stop,
            thread,
        }
    }

    /// Stops sampling; what the tree used since `start`.
    pub fn finish(mut self) -> ProcessStats {
        let last = sample_tree(self.root);
        self.stop.store(true, Ordering::Relaxed);
        let (rss, threads) = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((last.rss_kib, last.threads));
        let ticks = last.cpu_ticks.saturating_sub(self.first.cpu_ticks);
        ProcessStats {
            cpu_s: ticks as f64 / clock_ticks_per_second() as f64,
            peak_rss_kib: rss.max(last.rss_kib).max(last.hwm_kib),
            threads: threads.max(last.threads),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis in it.
        let stat = "4242 (we (ird) x) S 17 4242 4242 0 -1 4194560 520 0 0 0 250 75 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat(stat), Some((17, 325)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_rss_hwm_and_threads() {
        let status = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads:\t7\n";
        assert_eq!(parse_status(status), (1024, 2048, 7));
    }

    #[test]
    fn this_process_is_measured() {
        let me = std::process::id();
        let sample = sample_tree(me);
        assert!(sample.rss_kib > 0);
        assert!(sample.threads >= 1);
        // A busy loop of 300 ms shows up as CPU time.
        let sampler = Sampler::start(me);
        let until = std::time::Instant::now() + Duration::from_millis(300);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        let stats = sampler.finish();
        assert!(stats.cpu_s >= 0.1, "{stats:?}");
        assert!(stats.peak_rss_kib >= sample.rss_kib / 2);
    }

    #[test]
    fn fd_count_counts_this_process_and_not_a_missing_one() {
        // Other tests open and close descriptors meanwhile, so only bounds:
        // stdin, stdout and stderr at least; nothing for a pid that cannot exist.
        let me = std::process::id();
        assert!(fd_count(me).is_some_and(|n| n >= 3));
        assert_eq!(fd_count(u32::MAX), None);
    }

    #[test]
    fn tcp_table_lines_give_ports_state_and_inode() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 08 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1
";
        let entries = parse_tcp_table(text);
        assert_eq!(
            entries,
            vec![
                TcpEntry {
                    local_port: 8080,
                    remote_port: 0,
                    state: 10,
                    inode: 4242
                },
                TcpEntry {
                    local_port: 40000,
                    remote_port: 8080,
                    state: 8,
                    inode: 4343
                },
            ]
        );
        assert_eq!(tcp_state_name(8), "CLOSE_WAIT");
    }

    #[test]
    fn fd_kinds_sees_a_listener_and_a_connection_to_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let kinds = fd_kinds(std::process::id(), port, port);
        assert!(
            kinds.get("tcp LISTEN").is_some_and(|&n| n >= 1),
            "{kinds:?}"
        );
        // The client's socket has the listener's port as its remote port.
        assert!(
            kinds
                .get("tcp ESTABLISHED to upstream")
                .is_some_and(|&n| n >= 1),
            "{kinds:?}"
        );
    }

    #[test]
    fn a_child_process_is_part_of_the_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = process_tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree.contains(&child.id()), "{tree:?}");
    }
}
