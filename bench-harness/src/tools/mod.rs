//! wrk and ab: the load tools the course and the seed reports use. The
//! harness runs them, parses what they print, and records the exact command
//! line next to every number they produced.
//!
//! Each tool counts a little differently, and the report keeps their numbers
//! as they are rather than pretending they agree:
//!
//! - **wrk** counts every complete response as a request, and responses
//!   with a status of 400 or more as "Non-2xx or 3xx"; its socket errors are
//!   connect / read / write / timeout. Latency is from send to response.
//! - **ab** speaks HTTP/1.0; `-k` asks for keep-alive. Its "Failed requests"
//!   breakdown (Connect, Receive, Length, Exceptions) often counts one
//!   failure under two kinds (a reset is a Receive *and* a Length failure),
//!   so the harness counts as requests `Complete − Receive − Connect` and
//!   reports the breakdown unchanged. Its percentiles are whole milliseconds.
//!   It aborts on a timeout (`-s`) or a refused connection, and then prints
//!   no summary: that run has no numbers, and the report says why.

pub mod ab;
pub mod wrk;

use crate::results::{ErrorCounts, Latency};

/// What a tool measured, in the harness's units.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub requests: u64,
    pub duration_s: f64,
    pub req_per_s: f64,
    pub mib_per_s: f64,
    pub latency_ms: Option<Latency>,
    pub errors: ErrorCounts,
}

/// Is `program` on the PATH?
pub fn installed(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// The first line of `program ARG`'s output (stdout or stderr): its version.
pub fn version(program: &str, arg: &str) -> Option<String> {
    let out = std::process::Command::new(program).arg(arg).output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(clean_version)
}

/// `wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer` →
/// `wrk debian/4.1.0-3+b2 [epoll]`; `This is ApacheBench, Version 2.3 <$Revision$>`
/// → `ApacheBench, Version 2.3` (no `<...>`: it would be HTML in Markdown).
fn clean_version(line: &str) -> String {
    let line = line.split(" Copyright").next().unwrap_or(line);
    let line = line.split(" <").next().unwrap_or(line);
    line.trim_start_matches("This is ").trim().to_string()
}

/// The number at the start of `s` (`"12.5ms"` → 12.5, `"ms"`), and the rest.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let number = s[..end].parse().ok()?;
    Some((number, s[end..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_lose_their_copyright_and_markup() {
        assert_eq!(
            clean_version("wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"),
            "wrk debian/4.1.0-3+b2 [epoll]"
        );
        assert_eq!(
            clean_version("This is ApacheBench, Version 2.3 <$Revision$>"),
            "ApacheBench, Version 2.3"
        );
    }
}
