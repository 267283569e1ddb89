//! [`RedisFlights`]: the engine's [`SharedFlights`] on Redis — one lock per cache key, set
//! with `SET NX PX` (an expiry, so a replica that dies holding one delays the others by at
//! most the lock's life) and released by a compare-and-delete script (only the claim's own
//! value), in the background.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use failover_cache::CacheKey;
use failover_core::flights::{ClaimFuture, ClaimId, FlightClaim, HeldFuture, SharedFlights};
use redis::Script;

use crate::SharedError;
use crate::store::SharedStore;

static RELEASE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    // No clock: not one of ours with the prelude's arguments.
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

/// Settings of [`RedisFlights`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlightsConfig {
    /// How long a claim holds when its replica never releases it (it died). Default 30 s.
    pub lock: Duration,
    /// How long a request waits for another replica's answer. Default 10 s.
    pub wait: Duration,
    /// How often a waiting request looks in the cache. Default 20 ms.
    pub poll_interval: Duration,
}

impl Default for FlightsConfig {
    fn default() -> Self {
        Self {
            lock: Duration::from_secs(30),
            wait: Duration::from_secs(10),
            poll_interval: Duration::from_millis(20),
        }
    }
}

impl FlightsConfig {
    /// Sets how long an unreleased claim holds.
    pub fn with_lock(mut self, lock: Duration) -> Self {
        self.lock = lock;
        self
    }

    /// Sets how long a request waits for another replica's answer.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

/// Flights shared by every replica through Redis (see the [module docs](self)).
#[derive(Debug)]
pub struct RedisFlights {
    store: SharedStore,
    config: FlightsConfig,
    owner: String,
    next: AtomicU64,
    runtime: tokio::runtime::Handle,
}

impl RedisFlights {
    /// Flights on `store`; needs a Tokio runtime (releases run in the background).
    pub fn new(store: SharedStore, config: FlightsConfig) -> Result<Self, SharedError> {
        if config.lock.is_zero() || config.poll_interval.is_zero() {
            return Err(SharedError::Config(
                "flights: lock and poll_interval must be above zero".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SharedError::Config("RedisFlights needs a Tokio runtime".into()))?;
        Ok(Self {
            store,
            config,
            owner: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            next: AtomicU64::new(0),
            runtime,
        })
    }

    fn lock_key(&self, key: &CacheKey) -> String {
        self.store.key(&format!("flight:{}", key.to_hex()), "lock")
    }

    fn value(&self, claim: ClaimId) -> String {
        format!("{}:{}", self.owner, claim.0)
    }
}

impl SharedFlights for RedisFlights {
    fn claim<'a>(&'a self, key: &'a CacheKey) -> ClaimFuture<'a> {
        Box::pin(async move {
            let claim = ClaimId(self.next.fetch_add(1, Ordering::Relaxed));
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.lock_key(key))
                .arg(self.value(claim))
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(self.config.lock.as_millis()).unwrap_or(u64::MAX));
            match self.store.query::<Option<String>>(&cmd).await {
                Ok(Some(_)) => FlightClaim::Lead(claim),
                Ok(None) => FlightClaim::Busy,
                Err(error) => {
                    tracing::debug!(error = %error, "shared flights: cannot claim");
                    FlightClaim::Unavailable
                }
            }
        })
    }

    fn release(&self, key: &CacheKey, claim: ClaimId) {
        let mut invocation = RELEASE.prepare_invoke();
        invocation.key(self.lock_key(key)).arg(self.value(claim));
        let store = self.store.clone();
        self.runtime.spawn(async move {
            // Not released: it expires by itself.
            let _ = store.run_idempotent::<i64>(&invocation).await;
        });
    }

    fn held<'a>(&'a self, key: &'a CacheKey) -> HeldFuture<'a> {
        Box::pin(async move {
            let mut cmd = redis::cmd("EXISTS");
            cmd.arg(self.lock_key(key));
            // Unknown (Redis away) counts as held: the wait bound ends the wait.
            self.store.query::<i64>(&cmd).await.map_or(true, |n| n > 0)
        })
    }

    fn wait_bound(&self) -> Duration {
        self.config.wait
    }

    fn poll_interval(&self) -> Duration {
        self.config.poll_interval
    }
}
