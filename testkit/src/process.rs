//! The kernel's view of a process: its resident memory and open file
//! descriptors (from `/proc`), and this test process's descriptor limit.
//!
//! The resource cases judge a proxy by what the kernel says it holds, not
//! by what the proxy reports about itself: a leaked socket or a buffer that
//! grows with the bytes moved shows up here whatever the code believes.
//! Linux only (`/proc/PID/status`, `/proc/PID/fd`).

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`), or `None` if
/// the process is gone or the field is missing.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// What each of the process's open file descriptors points to
/// (`socket:[1234]`, `anon_inode:[eventpoll]`, `/dev/null`, ...), from
/// `/proc/PID/fd`; `None` if it cannot be read.
pub fn open_descriptors(pid: u32) -> Option<Vec<String>> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .map(|entry| {
                std::fs::read_link(entry.path())
                    .map(|target| target.display().to_string())
                    // Closed between listing and reading: still counted.
                    .unwrap_or_else(|_| "(gone)".to_string())
            })
            .collect(),
    )
}

/// A short summary of descriptors by kind, for failure messages:
/// `{"socket": 40, "anon_inode:[eventpoll]": 2, ...}`.
pub fn describe_descriptors(descriptors: &[String]) -> String {
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for d in descriptors {
        let kind = match d.split_once(":[") {
            Some(("socket", _)) => "socket",
            Some(("pipe", _)) => "pipe",
            _ => d.as_str(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    format!("{kinds:?}")
}

/// Raises this process's RLIMIT_NOFILE soft limit to the hard limit (a
/// proxy spawned afterwards inherits it), for cases that hold hundreds or
/// thousands of sockets. `Err` says why the case cannot run here.
pub fn raise_descriptor_limit(needed: u64) -> Result<(), String> {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read RLIMIT_NOFILE: {e}"))?;
    if hard < needed {
        return Err(format!(
            "the hard RLIMIT_NOFILE is {hard}, below the {needed} descriptors needed; \
             raise it (ulimit -Hn) to run this case"
        ));
    }
    if soft < hard {
        Resource::NOFILE
            .set(hard, hard)
            .map_err(|e| format!("cannot raise RLIMIT_NOFILE from {soft} to {hard}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_size_and_descriptors() {
        let pid = std::process::id();
        assert!(proc_status_kib(pid, "VmRSS").is_some_and(|kib| kib > 0));
        assert!(proc_status_kib(pid, "VmHWM").is_some_and(|kib| kib > 0));
        let fds = open_descriptors(pid).unwrap_or_default();
        assert!(!fds.is_empty());
        assert!(!describe_descriptors(&fds).is_empty());
    }
}
