//! What a proxy process costs, read from `/proc` while the load runs.
//!
//! - **CPU seconds**: `utime + stime` (fields 14 and 15 of `/proc/PID/stat`,
//!   in clock ticks) at the end of the load minus at the start.
//! - **Peak RSS**: the largest `VmRSS` seen by a sampler thread (every
//!   [`SAMPLE_EVERY`]), or `VmHWM` (the kernel's own high-water mark) if larger.
//! - **Threads**: the largest `Threads` seen.
//!
//! A proxy is measured as a *process tree*: phases are one process, but
//! nginx is a master and its workers, so the numbers of all processes
//! descending from the one the harness started are added up.
//!
//! Linux only; elsewhere the numbers are zero and the report says so.

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
