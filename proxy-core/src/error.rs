//! One error type for everything that can go wrong in an exchange, and the
//! status code each failure earns.
//!
//! Why one enum: every phase must answer the same bad input with the same
//! status, so the decision "which status?" is made here, once, and the phases
//! only decide *when* to send it. The message is short plain text that ends up
//! in the answer's body (see [`crate::answers`]), so it is written for the
//! person at the other end of `curl -v`.

use crate::framing::FramingError;

/// Everything that ends an exchange early. Each variant maps to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The client sent something that is not a valid HTTP/1.1 request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request body's framing broke while it was being relayed.
    #[error("bad request body: {0}")]
    BadRequestBody(#[from] FramingError),
    /// The method is not allowed in this mode (CONNECT to a reverse proxy).
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// A partial request head arrived, but not all of it within `--header-timeout`.
    #[error("request timeout: the request head did not arrive in time")]
    RequestTimeout,
    /// The request body is larger than the proxy accepts.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// The request target is longer than [`crate::request::MAX_TARGET_BYTES`].
    #[error("URI too long: the request target exceeds {0} bytes")]
    UriTooLong(usize),
    /// The request head is larger than `--max-header-bytes`, or has more
    /// fields than [`crate::request::MAX_HEADERS`].
    #[error("request header fields too large: {0}")]
    HeaderTooLarge(String),
    /// A feature the proxy does not implement (an unknown transfer coding,
    /// CONNECT in phase 1).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The upstream could not be reached or answered with garbage.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// The proxy is at its connection limit.
    #[error("service unavailable: {0}")]
    ServiceUnavailable(String),
    /// The upstream did not answer within `--upstream-timeout` (or could not be
    /// connected to within `--connect-timeout`).
    #[error("gateway timeout: {0}")]
    GatewayTimeout(String),
    /// The request line names an HTTP version other than 1.0 or 1.1.
    #[error("HTTP version not supported: {0}")]
    VersionNotSupported(String),
}

impl ProxyError {
    /// The status code of the answer this error earns.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadRequestBody(_) => 400,
            ProxyError::MethodNotAllowed(_) => 405,
            ProxyError::RequestTimeout => 408,
            ProxyError::PayloadTooLarge(_) => 413,
            ProxyError::UriTooLong(_) => 414,
            ProxyError::HeaderTooLarge(_) => 431,
            ProxyError::NotImplemented(_) => 501,
            ProxyError::BadGateway(_) => 502,
            ProxyError::ServiceUnavailable(_) => 503,
            ProxyError::GatewayTimeout(_) => 504,
            ProxyError::VersionNotSupported(_) => 505,
        }
    }

    /// Shorthand used by the parsers.
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        ProxyError::BadRequest(msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_status() {
        let cases = [
            (ProxyError::bad("x"), 400),
            (ProxyError::MethodNotAllowed("CONNECT".into()), 405),
            (ProxyError::RequestTimeout, 408),
            (ProxyError::PayloadTooLarge("x".into()), 413),
            (ProxyError::UriTooLong(8192), 414),
            (ProxyError::HeaderTooLarge("x".into()), 431),
            (ProxyError::NotImplemented("x".into()), 501),
            (ProxyError::BadGateway("x".into()), 502),
            (ProxyError::ServiceUnavailable("x".into()), 503),
            (ProxyError::GatewayTimeout("x".into()), 504),
            (ProxyError::VersionNotSupported("HTTP/2.0".into()), 505),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), status, "{err}");
        }
    }
}
