//! The JSON document `/echo` answers with: the request exactly as the origin
//! received it, so a test can see what the proxy really forwarded.
//!
//! The body is summarised by length and SHA-256 rather than returned, which
//! keeps the echo constant-size for a 1 GiB upload and still proves every
//! byte arrived in order.

use serde::{Deserialize, Serialize};

/// What /echo returns as JSON (serde Serialize + Deserialize, so tests parse it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The request method, as sent.
    pub method: String,
    /// Exactly as on the request line.
    pub target: String,
    /// `"HTTP/1.1"` or `"HTTP/1.0"`.
    pub version: String,
    /// In order, names with original case; values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// Length of the decoded body (after de-chunking).
    pub body_len: u64,
    /// [`sha256_hex`](crate::sha256_hex) of the decoded body.
    pub body_sha256: String,
    /// `"none"` | `"content-length"` | `"chunked"`.
    pub body_framing: String,
    /// Chunked trailers received, if any.
    pub trailers: Vec<(String, String)>,
}

impl Echo {
    /// All values of a header, case-insensitive name match.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }
}
