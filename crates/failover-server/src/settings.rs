//! The gateway's own settings: where it listens, who may call it, and its limits. The
//! engine behind it (providers, routes, cache, ledger) is configured apart.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{KeyGrant, KeyHash};

/// `[server]`, `[[keys]]` and `[admin]` of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where it listens; `127.0.0.1:8080` unless set (port 0: any free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Its limits and time-outs.
    #[serde(default)]
    pub limits: Limits,
    /// The API keys, as hashes, with their grants.
    #[serde(default)]
    pub keys: Vec<KeyGrant>,
    /// The hash of the admin key (admin routes are off without one).
    #[serde(default)]
    pub admin_key_hash: Option<KeyHash>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            limits: Limits::default(),
            keys: Vec::new(),
            admin_key_hash: None,
        }
    }
}

/// Limits and time-outs (`[server.limits]`), each with a default a demanding deployment
/// can keep.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest request body accepted (413 beyond). Default 8 MiB: two Bedrock-sized
    /// images as base64 fit.
    pub body_bytes: usize,
    /// Requests answered at once; more are shed with a 503 and `Retry-After`.
    pub max_in_flight: usize,
    /// A connection must send a request's headers within this, whether it is new or idle
    /// between requests: the idle time-out and the slow-loris defence in one.
    pub header_timeout_ms: u64,
    /// A client must send a request's body within this (408 beyond).
    pub body_timeout_ms: u64,
    /// The whole answer, every provider attempt included (504 beyond).
    pub request_timeout_ms: u64,
    /// On shutdown, how long requests in flight may still finish before open streams get
    /// the error frame.
    pub drain_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 8 * 1024 * 1024,
            max_in_flight: 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 120_000,
            drain_timeout_ms: 25_000,
        }
    }
}

impl Limits {
    /// [`header_timeout_ms`](Self::header_timeout_ms) as a duration.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    /// [`body_timeout_ms`](Self::body_timeout_ms) as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// [`request_timeout_ms`](Self::request_timeout_ms) as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`drain_timeout_ms`](Self::drain_timeout_ms) as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// Every limit must be positive: a zero would refuse every request.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("body_bytes", self.body_bytes as u64),
            ("max_in_flight", self.max_in_flight as u64),
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("drain_timeout_ms", self.drain_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("server.limits.{name} must be positive"));
            }
        }
        Ok(())
    }
}
