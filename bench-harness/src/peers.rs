//! Production proxies to compare against: nginx and HAProxy, when installed.
//!
//! The harness writes their configuration itself, so that they do the same
//! job as the phases: a reverse proxy on 127.0.0.1 in front of the same
//! origin, with the same number of workers (nginx worker processes, HAProxy
//! threads), keep-alive to clients and a pool of idle upstream connections,
//! no access log, and responses streamed rather than buffered to disk
//! (nginx's `proxy_buffering off`), as the phases stream them. The configs
//! are written next to the logs and their paths are in the report, so a
//! reader can check every setting.
//!
//! Peers do not take part in the CONNECT scenario (neither does tunnels
//! without modules or extra setup).

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::process::{self, ChildProcess};

/// A peer proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Nginx,
    Haproxy,
}

impl Peer {
    pub const ALL: [Peer; 2] = [Peer::Nginx, Peer::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
        }
    }

    pub fn parse(name: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The binary, if installed (PATH, then the sbin directories that are
    /// often missing from a normal user's PATH).
    pub fn binary(self) -> Option<PathBuf> {
        let name = self.name();
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    }

    /// `nginx version: nginx/1.22.1`, `HAProxy version 2.6.12...`.
    pub fn version(self) -> Option<String> {
        let binary = self.binary()?;
        let out = Command::new(binary).arg("-v").output().ok()?;
        // nginx prints its version on stderr, HAProxy on stdout.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines().next().map(|l| l.trim().to_string())
    }

    /// Writes the config into `dir` and starts the peer on a free port.
    pub fn start(
        self,
        origin: SocketAddr,
        workers: u32,
        max_connections: u32,
        dir: &Path,
    ) -> anyhow::Result<ChildProcess> {
        let binary = self
            .binary()
            .with_context(|| format!("{} is not installed", self.name()))?;
        let listen = free_port()?;
        let dir = dir.join(self.name());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log = dir.join("output.log");
        // Each client may need an upstream connection too: two descriptors
        // per connection, within what this process may open.
        let max_connections = connection_limit(max_connections);
        let args = match self {
            Peer::Nginx => {
                let path = dir.join("nginx.conf");
                let config = nginx_config(listen, origin, workers, max_connections, &dir);
                std::fs::write(&path, config)?;
                let args = vec![
                    "-p".to_string(),
                    dir.display().to_string(),
                    "-e".to_string(),
                    dir.join("error.log").display().to_string(),
                    "-c".to_string(),
                    path.display().to_string(),
                ];
                args
            }
            Peer::Haproxy => {
                let path = dir.join("haproxy.cfg");
                std::fs::write(
                    &path,
                    haproxy_config(listen, origin, workers, max_connections),
                )?;
                vec![
                    "-db".to_string(),
                    "-f".to_string(),
                    path.display().to_string(),
                ]
            }
        };
        process::spawn_program(self.name(), &binary, &args, listen, &log)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The connection limit a peer is given: `max_connections`, or fewer when
/// the descriptor limit cannot hold two per connection.
pub fn connection_limit(max_connections: u32) -> u32 {
    max_connections.min(fd_budget() / 2)
}

/// Descriptors a peer may use: the hard `RLIMIT_NOFILE` (a peer running as
/// root tries to raise its limit, and fails to start if it cannot reach
/// what its config needs), less some for logs and listeners.
fn fd_budget() -> u32 {
    let hard = rlimit::Resource::NOFILE
        .get()
        .map(|(_, hard)| hard)
        .unwrap_or(1024);
    u32::try_from(hard.saturating_sub(256)).unwrap_or(u32::MAX)
}

/// A port nobody listens on right now (the kernel picks it).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}

/// nginx as a reverse proxy in front of `origin`.
pub fn nginx_config(
    listen: SocketAddr,
    origin: SocketAddr,
    workers: u32,
    max_connections: u32,
    dir: &Path,
) -> String {
    let dir = dir.display();
    // Each client connection may use one upstream connection too.
    let worker_connections = 2 * max_connections + 64;
    let nofile = worker_connections + 64;
    format!(
        "# Written by bench-harness: nginx doing what the phases do.
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections {worker_connections};
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    keepalive_requests 1000000;
    keepalive_timeout 60s;

    upstream origin {{
        server {origin};
        # Idle upstream connections kept per worker, like the phases' pool.
        keepalive 128;
    }}

    server {{
        listen {listen} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            # Stream responses as the phases do, never through temp files,
            # with a relay buffer of the phases' size.
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_busy_buffers_size 128k;
        }}
    }}
}}
",
    )
}

/// HAProxy as a reverse proxy in front of `origin`.
pub fn haproxy_config(
    listen: SocketAddr,
    origin: SocketAddr,
    workers: u32,
    max_connections: u32,
) -> String {
    format!(
        "# Written by bench-harness: HAProxy doing what the phases do.
global
    nbthread {workers}
    maxconn {max_connections}

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    # Keep-alive both ways; idle upstream connections are reused.
    option http-keep-alive
    http-reuse safe

frontend bench
    bind {listen}
    maxconn {max_connections}
    default_backend origin

backend origin
    server origin {origin}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        )
    }

    #[test]
    fn nginx_config_proxies_to_the_origin_with_the_same_worker_count() {
        let (listen, origin) = addrs();
        let config = nginx_config(listen, origin, 2, 1000, Path::new("/tmp/x"));
        assert!(config.contains("worker_processes 2;"));
        assert!(config.contains("server 127.0.0.1:9000;"));
        assert!(config.contains("listen 127.0.0.1:8080 backlog=4096;"));
        assert!(config.contains("proxy_buffering off;"));
        assert!(config.contains("worker_connections 2064;"));
        assert!(config.contains("worker_rlimit_nofile 2128;"));
        assert!(config.contains("pid /tmp/x/nginx.pid;"));
    }

    #[test]
    fn haproxy_config_proxies_to_the_origin_with_the_same_thread_count() {
        let (listen, origin) = addrs();
        let config = haproxy_config(listen, origin, 2, 1000);
        assert!(config.contains("nbthread 2"));
        assert!(config.contains("bind 127.0.0.1:8080"));
        assert!(config.contains("server origin 127.0.0.1:9000"));
        assert!(config.contains("maxconn 1000"));
    }

    #[test]
    fn peers_are_parsed_by_name() {
        assert_eq!(Peer::parse("nginx"), Some(Peer::Nginx));
        assert_eq!(Peer::parse("haproxy"), Some(Peer::Haproxy));
        assert_eq!(Peer::parse("envoy"), None);
    }
}
