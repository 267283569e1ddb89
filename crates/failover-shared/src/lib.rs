//! State that must agree across llm-failover replicas, kept in Redis/ElastiCache:
//!
//! - [`SharedBreaker`]: one circuit breaker per provider for every replica (a
//!   [`Breaker`](failover_breaker::Breaker)), with HALF_OPEN probe leases that expire;
//! - [`TenantLimits`]: per-tenant budgets (USD per day and per month) and rate limits
//!   (requests and tokens per minute), a request layer of the engine: an estimate is
//!   reserved before the request as a lease that expires, and settled with the real cost
//!   after it, once per request id;
//! - [`RedisFlights`]: identical requests of one tenant on different replicas share one
//!   provider call (a lock with an expiry per cache key; the answer travels through the
//!   shared cache).
//!
//! Every change is one Lua script on the server's clock, and every key of one script
//! shares a hash tag (`{prefix:scope}`), so cluster mode works. When Redis does not
//! answer, a replica falls back to its local state (see each type).

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
