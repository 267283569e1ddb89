//! The time limits every provider call has.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Time limits of one provider call. Each provider states how it enforces them (its SDK or
/// HTTP client for `connect` and `attempt`, its own stream reader for `first_token` and
/// `stall`); the request's deadline
/// ([`ProviderRequest::deadline`](crate::ProviderRequest::deadline)) bounds everything on
/// top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CallTimeouts {
    /// Establishing the TCP/TLS connection.
    pub connect: Duration,
    /// One attempt: for a plain completion the whole answer, for a stream until the
    /// response headers (the stream itself is bounded by `first_token` and `stall`).
    pub attempt: Duration,
    /// From sending a streaming request to its first content delta (or its terminal event,
    /// for an empty answer).
    pub first_token: Duration,
    /// The longest gap between two events of a stream.
    pub stall: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(60),
            first_token: Duration::from_secs(20),
            stall: Duration::from_secs(20),
        }
    }
}
