//! The command line, shared by every phase: bad flags are clap errors
//! (exit code 2, a message on stderr, never a panic), `--help` documents
//! every flag, and `--listen 127.0.0.1:0` reports the port it got.

use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

use crate::{Proxy, Suite};

/// Bounds every CLI run: a binary that ignores a bad flag and starts
/// serving would otherwise run forever.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

fn run(suite: &Suite, args: &[&str]) -> assert_cmd::assert::Assert {
    Command::new(&suite.bin)
        .args(args)
        .timeout(CLI_TIMEOUT)
        .assert()
}

pub fn unknown_flag_exits_2_with_message(suite: &Suite) {
    run(suite, &["--bogus"])
        .code(2)
        .stderr(predicate::str::contains("--bogus"));
}

/// Timeouts are whole seconds; `abc` is rejected by the parser, not at use.
pub fn non_numeric_timeout_exits_2(suite: &Suite) {
    run(suite, &["--upstream-timeout", "abc"])
        .code(2)
        .stderr(predicate::str::contains("--upstream-timeout"));
}

pub fn help_mentions_every_flag(suite: &Suite) {
    let mut help = run(suite, &["--help"]).success();
    for flag in [
        "--listen",
        "--upstream",
        "--workers",
        "--max-connections",
        "--header-timeout",
        "--idle-timeout",
        "--connect-timeout",
        "--upstream-timeout",
        "--max-header-bytes",
        "--access-log",
        "--log-level",
    ] {
        help = help.stdout(predicate::str::contains(flag));
    }
}

/// [`Proxy::spawn`] passes `--listen 127.0.0.1:0` and insists the first
/// stdout line is exactly `listening on IP:PORT`; the port must be the real
/// one, not 0. (Nothing listens on 127.0.0.1:1; no request is sent.)
pub fn listen_port_0_prints_bound_address(suite: &Suite) {
    let proxy = Proxy::spawn(
        &suite.bin,
        &["--upstream".to_string(), "127.0.0.1:1".to_string()],
    );
    let addr = proxy.addr();
    if addr.ip().to_string() != "127.0.0.1" || addr.port() == 0 {
        proxy.fail(format!(
            "printed `listening on {addr}`, expected 127.0.0.1 and a non-zero port"
        ));
    }
    // The printed port is the one really bound.
    let mut c = proxy.connect();
    c.shutdown_write();
}
