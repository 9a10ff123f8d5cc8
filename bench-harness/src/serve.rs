//! The hidden `serve` mode: `bench-harness serve NAME -- ARGS...` runs one
//! phase (or the origin) as this process.
//!
//! Why re-execute itself rather than run `target/release/phase1-blocking`?
//! Because then `cargo run --release -p bench-harness` is the only build
//! step: every phase is a library dependency of the harness, so cargo's
//! dependency graph builds exactly what is measured, at the same
//! optimisation level, and a stale binary can never be benchmarked by
//! mistake. And each proxy still runs as its own process, so `/proc` shows
//! its CPU, memory and threads alone.
//!
//! The origin runs the same way (not in the harness's process) so its CPU
//! time does not mix with the load generator's; on a 2-core machine that
//! also lets the kernel schedule the three programs (load, proxy, origin)
//! independently, as they would be in real life.
//!
//! `serve origin -- --listen 127.0.0.1:PORT` binds a given port, so the
//! soak ([`crate::soak`]) can kill the origin and start it again where the
//! proxy expects it.
//!
//! A served child reads its stdin, a pipe from the harness, on a thread:
//! when it reaches EOF the harness is gone (even if it was SIGKILLed and
//! could not clean up), and the child exits.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::phases;

/// `args`: what follows `serve` on the command line (`NAME -- ARGS...`).
pub fn main(args: Vec<OsString>) -> anyhow::Result<()> {
    let mut args = args.into_iter();
    let Some(name) = args.next().and_then(|n| n.into_string().ok()) else {
        bail!("usage: bench-harness serve NAME -- ARGS...");
    };
    let rest: Vec<OsString> = args.skip_while(|a| a != "--").skip(1).collect();
    exit_when_stdin_closes();
    if name == "origin" {
        return serve_origin(&rest);
    }
    let Some(phase) = phases::find(&name) else {
        bail!("serve: no phase called {name}");
    };
    let argv = std::iter::once(OsString::from(phase.name))
        .chain(rest)
        .collect();
    (phase.main_from)(argv)
}

fn exit_when_stdin_closes() {
    let _ = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(|| {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            // Reads until EOF (or an error); anything written is ignored.
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
}

/// How long `serve origin --listen ADDR` keeps trying when the port is still
/// taken (a soak restarts the origin on the port its predecessor just left).
const BIND_RETRY_FOR: Duration = Duration::from_secs(5);

/// The origin; flags: `--workers N` and `--listen ADDR` (default 127.0.0.1:0).
///
/// The socket is bound with `SO_REUSEADDR` so that an origin restarted on
/// the same port (the soak does this every 30 s) is not refused because of
/// connections its killed predecessor left in TIME_WAIT.
fn serve_origin(args: &[OsString]) -> anyhow::Result<()> {
    let mut workers = 2usize;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--workers") => {
                workers = args
                    .next()
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse().ok())
                    .filter(|&w| w > 0)
                    .context("--workers needs a positive number")?;
            }
            Some("--listen") => {
                listen = args
                    .next()
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse().ok())
                    .context("--listen needs an IP:PORT")?;
            }
            _ => bail!("serve origin: unknown argument {arg:?}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("cannot start the origin's runtime")?;
    runtime.block_on(async move {
        let listener = bind_origin(listen).await?;
        let addr = listener.local_addr()?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        let config = origin::OriginConfig {
            idle_timeout: None,
            workers,
        };
        origin::serve(listener, config, Arc::new(origin::Stats::default())).await?;
        Ok(())
    })
}

/// Binds with `SO_REUSEADDR` and a large backlog, retrying "address in use"
/// for up to [`BIND_RETRY_FOR`].
async fn bind_origin(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let give_up = Instant::now() + BIND_RETRY_FOR;
    loop {
        let attempt = (|| {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            // The same backlog as origin::Origin::start: a burst of proxy
            // connections must not overflow the accept queue.
            socket.listen(4096)
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("origin: cannot bind {addr}")),
        }
    }
}
