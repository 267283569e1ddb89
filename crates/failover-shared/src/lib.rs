#![doc = include_str!("../README.md")]

mod breaker;
mod flights;
mod limits;
mod store;

pub use breaker::{SharedBreaker, SharedBreakerConfig};
pub use flights::{FlightsConfig, RedisFlights};
pub use limits::{
    FailMode, LimitExceeded, LimitKind, Limits, LimitsConfig, SEED_RETRY, TenantLimits,
    UsageEstimator,
};
pub use store::{SharedStore, StoreConfig};

use std::time::Duration;

/// What went wrong talking to the shared store, or building something on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// A setting is invalid.
    #[error("shared state: {0}")]
    Config(String),
    /// Redis answered with an error, or the connection failed.
    #[error("shared state: redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the operation time-out.
    #[error("shared state: redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A script's reply was not what this version expects.
    #[error("shared state: unexpected reply: {0}")]
    Protocol(String),
}
