//! Request targets (RFC 9112 §3.2) and where an exchange goes.
//!
//! A request line names its target in one of four forms, and which form is
//! allowed depends on the method and on the proxy's mode:
//!
//! | form | example | used by |
//! |---|---|---|
//! | origin-form | `/search?q=rust` | ordinary requests to a server (reverse mode) |
//! | absolute-form | `http://example.com/search?q=rust` | requests to a forward proxy |
//! | authority-form | `example.com:443` | `CONNECT` only |
//! | asterisk-form | `*` | `OPTIONS *` only |
//!
//! [`route`] turns a parsed request and the proxy's [`Mode`] into a [`Route`]:
//! which upstream to connect to, or which tunnel to open, or the answer that
//! explains why neither.

use std::fmt;

use crate::config::Mode;
use crate::error::ProxyError;
use crate::request::RequestHead;

/// `host:port`, as in `--upstream` or a CONNECT target. The host is kept
/// without IPv6 brackets, so `(host.as_str(), port)` can be handed straight to
/// `ToSocketAddrs`; [`fmt::Display`] puts the brackets back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// Parses `host[:port]`. Without a port, `default_port` is used; if that
    /// is `None` the port is required.
    pub fn parse(s: &str, default_port: Option<u16>) -> Result<Authority, String> {
        if s.is_empty() {
            return Err("empty host".into());
        }
        if s.contains('@') {
            return Err("user information (user@host) is not allowed in a target".into());
        }
        // Split off the port: for `[v6]:port` the port follows the bracket.
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let close = rest.find(']').ok_or("unclosed '[' in host")?;
            let host = &rest[..close];
            let after = &rest[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("unexpected {after:?} after IPv6 host")),
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{host:?} is not an IPv6 address"));
            }
            (host, port)
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        // reg-name or IPv4: unreserved / pct-encoded / sub-delims (RFC 3986).
        let bracketed = s.starts_with('[');
        let valid_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
        if !bracketed && !host.bytes().all(valid_name) {
            return Err(format!("invalid character in host {host:?}"));
        }
        let port = match port {
            Some(p) => parse_port(p)?,
            None => {
                default_port.ok_or_else(|| format!("{s:?} has no port (expected HOST:PORT)"))?
            }
        };
        Ok(Authority {
            host: host.to_string(),
            port,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {p:?}"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port {p:?}")),
        Ok(n) => Ok(n),
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The request target, classified by form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/path?query`, kept byte-exact.
    Origin(String),
    /// `http://authority/path?query`. `path_and_query` is never empty (`/` if
    /// the target had no path) and is what goes upstream in origin-form.
    Absolute {
        authority: Authority,
        path_and_query: String,
    },
    /// `host:port`, for CONNECT.
    Authority(Authority),
    /// `*`, for `OPTIONS *`.
    Asterisk,
}

impl Target {
    /// Classifies the raw target of a request with the given method.
    pub fn parse(method: &str, raw: &str) -> Result<Target, ProxyError> {
        if method == "CONNECT" {
            return Authority::parse(raw, None)
                .map(Target::Authority)
                .map_err(|e| ProxyError::bad(format!("CONNECT needs a host:port target: {e}")));
        }
        if raw == "*" {
            return if method == "OPTIONS" {
                Ok(Target::Asterisk)
            } else {
                Err(ProxyError::bad(
                    "the '*' target is only allowed with OPTIONS",
                ))
            };
        }
        if raw.starts_with('/') {
            return Ok(Target::Origin(raw.to_string()));
        }
        // absolute-form: the scheme is case-insensitive.
        if let Some(scheme_end) = raw.find("://") {
            let scheme = &raw[..scheme_end];
            let rest = &raw[scheme_end + 3..];
            if !scheme.eq_ignore_ascii_case("http") {
                return Err(if scheme.eq_ignore_ascii_case("https") {
                    ProxyError::NotImplemented(
                        "https:// targets are not proxied in the clear; use CONNECT (curl -x does this for you)".into(),
                    )
                } else {
                    ProxyError::bad(format!("unsupported scheme {scheme:?} (only http)"))
                });
            }
            let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let authority = Authority::parse(&rest[..auth_end], Some(80))
                .map_err(|e| ProxyError::bad(format!("bad authority in target: {e}")))?;
            let tail = &rest[auth_end..];
            let path_and_query = if tail.is_empty() {
                "/".to_string()
            } else if tail.starts_with('?') {
                format!("/{tail}")
            } else {
                tail.to_string()
            };
            return Ok(Target::Absolute {
                authority,
                path_and_query,
            });
        }
        Err(ProxyError::bad(format!(
            "request target {raw:?} is neither origin-form (/path) nor absolute-form (http://host/path)"
        )))
    }

    /// The target as it is sent upstream (origin-form, or `*`).
    pub fn origin_form(&self) -> &str {
        match self {
            Target::Origin(p) => p,
            Target::Absolute { path_and_query, .. } => path_and_query,
            Target::Asterisk => "*",
            // CONNECT is never forwarded as a request.
            Target::Authority(_) => "/",
        }
    }
}

/// Where an exchange goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward the request to this upstream.
    Upstream(Authority),
    /// Open a CONNECT tunnel to this address.
    Tunnel(Authority),
}

/// The message a forward proxy sends to a client that talks to it as if it
/// were a server.
pub const FORWARD_PROXY_USAGE: &str = "this is a forward proxy: send the request in absolute-form \
(GET http://host:port/path HTTP/1.1), for example with curl -x http://PROXY http://host/path; \
start the proxy with --upstream HOST:PORT to use it as a reverse proxy";

/// Decides where a request goes in the given mode (see the module docs).
pub fn route(req: &RequestHead, mode: &Mode) -> Result<Route, ProxyError> {
    match (mode, &req.target) {
        (Mode::Reverse { .. }, Target::Authority(_)) => Err(ProxyError::MethodNotAllowed(
            "CONNECT is not allowed: this is a reverse proxy (start it without --upstream for a forward proxy)".into(),
        )),
        (Mode::Reverse { upstream }, _) => Ok(Route::Upstream(upstream.clone())),
        (Mode::Forward, Target::Authority(a)) => Ok(Route::Tunnel(a.clone())),
        (Mode::Forward, Target::Absolute { authority, .. }) => Ok(Route::Upstream(authority.clone())),
        (Mode::Forward, Target::Origin(_) | Target::Asterisk) => {
            Err(ProxyError::bad(FORWARD_PROXY_USAGE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(host: &str, port: u16) -> Authority {
        Authority {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn authority_parses_names_ipv4_and_ipv6() {
        assert_eq!(
            Authority::parse("example.com:8080", None),
            Ok(auth("example.com", 8080))
        );
        assert_eq!(
            Authority::parse("127.0.0.1:1", None),
            Ok(auth("127.0.0.1", 1))
        );
        assert_eq!(Authority::parse("[::1]:443", None), Ok(auth("::1", 443)));
        assert_eq!(
            Authority::parse("example.com", Some(80)),
            Ok(auth("example.com", 80))
        );
        assert_eq!(auth("::1", 443).to_string(), "[::1]:443");
        assert_eq!(auth("a.b", 80).to_string(), "a.b:80");
    }

    #[test]
    fn authority_rejects_missing_or_bad_ports_and_hosts() {
        for bad in [
            "example.com",
            ":80",
            "h:0",
            "h:65536",
            "h:+1",
            "h:",
            "u@h:80",
            "[::1",
            "[zz]:1",
            "a b:1",
            "h:1:2",
        ] {
            assert!(Authority::parse(bad, None).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn targets_are_classified_by_form() {
        assert_eq!(
            Target::parse("GET", "/a?b=c"),
            Ok(Target::Origin("/a?b=c".into()))
        );
        assert_eq!(Target::parse("OPTIONS", "*"), Ok(Target::Asterisk));
        assert_eq!(
            Target::parse("CONNECT", "example.com:443"),
            Ok(Target::Authority(auth("example.com", 443)))
        );
        assert_eq!(
            Target::parse("GET", "HTTP://example.com:81/x?y"),
            Ok(Target::Absolute {
                authority: auth("example.com", 81),
                path_and_query: "/x?y".into()
            })
        );
        let t = Target::parse("GET", "http://example.com?q=1").unwrap();
        assert_eq!(t.origin_form(), "/?q=1");
        let t = Target::parse("GET", "http://example.com").unwrap();
        assert_eq!(t.origin_form(), "/");
    }

    #[test]
    fn wrong_forms_are_rejected_with_the_right_status() {
        assert_eq!(Target::parse("GET", "*").unwrap_err().status(), 400);
        assert_eq!(Target::parse("CONNECT", "/x").unwrap_err().status(), 400);
        assert_eq!(
            Target::parse("GET", "https://x/").unwrap_err().status(),
            501
        );
        assert_eq!(Target::parse("GET", "ftp://x/").unwrap_err().status(), 400);
        assert_eq!(Target::parse("GET", "x").unwrap_err().status(), 400);
        assert_eq!(
            Target::parse("GET", "http://u@x/").unwrap_err().status(),
            400
        );
    }
}
