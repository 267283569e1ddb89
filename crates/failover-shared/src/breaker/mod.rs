//! [`SharedBreaker`]: one circuit breaker per provider for every replica, kept in
//! Redis/ElastiCache and changed only by an atomic script on the server's clock.
//!
//! # How a call is decided
//!
//! Each replica keeps a *view* of the shared record: the state, its generation and the end
//! of an open period. The view is refreshed by every script reply (each outcome returns
//! the record's state) and by a background read every
//! [`refresh_interval`](SharedBreakerConfig::refresh_interval).
//!
//! - CLOSED, FORCED_CLOSED, FORCED_OPEN and OPEN before its end are decided from the view
//!   at once: no round trip. A replica learns of a trip made by another replica with its
//!   next outcome reply or read, within one refresh interval.
//! - Once an open period has ended, and in HALF_OPEN, the decision is the script's: it
//!   moves the record to HALF_OPEN and hands out at most
//!   [`half_open_max_probes`](BreakerConfig::half_open_max_probes) probe *leases* across
//!   all replicas, each with an owner and an expiry
//!   ([`probe_lease`](SharedBreakerConfig::probe_lease)). A replica that dies holding a
//!   lease cannot leave the provider stuck: its lease expires and the slot is handed out
//!   again.
//! - Every outcome but an ignored non-probe call is one script call, sent in the
//!   background (the permit is recorded synchronously, as the engine requires).
//!
//! # When Redis is unreachable
//!
//! A call to Redis that fails or takes longer than the operation time-out puts the replica
//! in *local* mode: it decides with its own [`CircuitBreaker`] (same configuration, fed
//! with this replica's outcomes all along), so requests keep being answered and a dead
//! provider is still cut off. The background read keeps trying; when Redis answers again
//! the replica adopts the shared record (re-sync) and leaves local mode. Outcomes seen in
//! local mode are not replayed into the shared record.
//!
//! # Not supported
//!
//! The shared record keeps a count-based window: a time-based window
//! ([`window_duration`](BreakerConfig::window_duration)) and the per-tenant failure cap
//! ([`max_failures_per_tenant`](BreakerConfig::max_failures_per_tenant)) are refused by
//! [`SharedBreaker::new`].

mod view;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use failover_breaker::{
    Acquisition, Breaker, BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker, Clock,
    Outcome, Permit, PermitSink, PermitToken, Rejected, SystemClock,
};
use redis::Script;
use tokio::sync::Notify;

use crate::SharedError;
use crate::store::SharedStore;
use view::{Reply, View};

static SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| crate::store::script(include_str!("breaker.lua")));

/// Settings of a [`SharedBreaker`] beyond the breaker's own.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SharedBreakerConfig {
    /// The breaker's rules (the same on every replica).
    pub breaker: BreakerConfig,
    /// How long a HALF_OPEN probe lease lasts: the longest a probe call may take before
    /// its slot is handed to another probe. Default 30 s.
    pub probe_lease: Duration,
    /// How often the replica reads the shared record in the background (and, in local
    /// mode, tries Redis again). Default 100 ms.
    pub refresh_interval: Duration,
}

impl SharedBreakerConfig {
    /// The defaults over `breaker`.
    pub fn new(breaker: BreakerConfig) -> Self {
        Self {
            breaker,
            probe_lease: Duration::from_secs(30),
            refresh_interval: Duration::from_millis(100),
        }
    }

    /// Sets the probe lease.
    pub fn with_probe_lease(mut self, lease: Duration) -> Self {
        self.probe_lease = lease;
        self
    }

    /// Sets the refresh interval.
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }
}

/// A circuit breaker shared by every replica through Redis (see the [module docs](self)).
/// Cloning is cheap; clones share the breaker.
#[derive(Clone)]
pub struct SharedBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    /// The provider label of the breaker's metrics.
    metric_name: Arc<str>,
    store: SharedStore,
    keys: [String; 3],
    config: SharedBreakerConfig,
    /// The config as the script's ARGV[3..12].
    config_args: [String; 10],
    local: CircuitBreaker,
    clock: Arc<dyn Clock>,
    /// Whether the script gets its time from `clock` (tests) instead of the server.
    clock_time: bool,
    base: Instant,
    view: Mutex<View>,
    local_mode: AtomicBool,
    writes_in_flight: AtomicUsize,
    writes_done: Notify,
    rejected: AtomicU64,
    owner: String,
    next_lease: AtomicU64,
    rng: Mutex<fastrand::Rng>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for SharedBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("name", &self.inner.name)
            .field("local_mode", &self.is_local())
            .field("state", &self.view().state)
            .finish_non_exhaustive()
    }
}

impl SharedBreaker {
    /// A breaker for `provider` kept in `store`, on the server's clock. Starts its
    /// background read; needs a Tokio runtime.
    pub fn new(
        store: SharedStore,
        provider: &str,
        config: SharedBreakerConfig,
    ) -> Result<Self, SharedError> {
        Self::build(store, provider, config, Arc::new(SystemClock), false)
    }

    /// As [`new`](Self::new), but the script reads time from `clock` instead of the
    /// server's (`TIME`): for deterministic tests with a
    /// [`ManualClock`](failover_breaker::ManualClock). Every breaker on one record must
    /// then share the clock.
    pub fn with_clock(
        store: SharedStore,
        provider: &str,
        config: SharedBreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SharedError> {
        Self::build(store, provider, config, clock, true)
    }

    fn build(
        store: SharedStore,
        provider: &str,
        config: SharedBreakerConfig,
        clock: Arc<dyn Clock>,
        clock_time: bool,
    ) -> Result<Self, SharedError> {
        let rules = &config.breaker;
        rules
            .validate()
            .map_err(|e| SharedError::Config(format!("breaker `{provider}`: {e}")))?;
        if rules.window_duration.is_some() {
            return Err(SharedError::Config(format!(
                "breaker `{provider}`: a shared breaker keeps a count window; \
                 window_duration is not supported"
            )));
        }
        if rules.max_failures_per_tenant > 0 {
            return Err(SharedError::Config(format!(
                "breaker `{provider}`: max_failures_per_tenant is not supported by a shared breaker"
            )));
        }
        if config.probe_lease.is_zero() || config.refresh_interval.is_zero() {
            return Err(SharedError::Config(
                "probe_lease and refresh_interval must be above zero".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SharedError::Config("a SharedBreaker needs a Tokio runtime".into()))?;
        let local = CircuitBreaker::try_with_clock(rules.clone(), Arc::clone(&clock))
            .map_err(|e| SharedError::Config(e.to_string()))?;
        let scope = format!("breaker:{provider}");
        let keys = [
            store.key(&scope, "record"),
            store.key(&scope, "leases"),
            store.key(&scope, "transitions"),
        ];
        let millis = |d: Duration| d.as_millis().to_string();
        let config_args = [
            rules.window_size.to_string(),
            rules.minimum_calls.to_string(),
            rules.failure_rate_threshold.to_string(),
            rules.consecutive_failures.to_string(),
            millis(rules.open_duration),
            millis(rules.max_open_duration),
            rules.backoff_multiplier.to_string(),
            rules.half_open_max_probes.to_string(),
            rules.half_open_successes_to_close.to_string(),
            millis(rules.config_fault_open_duration),
        ];
        let rng = match rules.jitter_seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let base = clock.now();
        let metric_name: Arc<str> = Arc::from(provider);
        failover_breaker::telemetry::publish(&metric_name, BreakerState::Closed);
        let inner = Arc::new(Inner {
            name: provider.to_owned(),
            metric_name,
            store,
            keys,
            config,
            config_args,
            local,
            clock,
            clock_time,
            base,
            view: Mutex::new(View::default()),
            local_mode: AtomicBool::new(false),
            writes_in_flight: AtomicUsize::new(0),
            writes_done: Notify::new(),
            rejected: AtomicU64::new(0),
            owner: format!("{}-{:016x}", std::process::id(), fastrand::u64(..)),
            next_lease: AtomicU64::new(0),
            rng: Mutex::new(rng),
            runtime,
        });
        let refresher = Arc::downgrade(&inner);
        let interval = inner.config.refresh_interval;
        inner.runtime.spawn(refresh_loop(refresher, interval));
        Ok(Self { inner })
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the replica is deciding with its local breaker because Redis did not answer.
    pub fn is_local(&self) -> bool {
        self.inner.local_mode.load(Ordering::Acquire)
    }

    /// Waits until every outcome and forced change sent in the background has been
    /// answered (or failed).
    pub async fn flush(&self) {
        loop {
            let done = self.inner.writes_done.notified();
            if self.inner.writes_in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }

    /// Reads the shared record now (and leaves local mode when Redis answers).
    pub async fn refresh(&self) -> Result<(), SharedError> {
        self.inner.refresh().await
    }

    /// Opens the breaker on every replica until [`reset_shared`](Self::reset_shared).
    pub async fn force_open_shared(&self) -> Result<(), SharedError> {
        self.inner.local.force_open();
        self.inner.call("force_open", &[]).await.map(drop)
    }

    /// Disables the breaker on every replica until [`reset_shared`](Self::reset_shared).
    pub async fn force_close_shared(&self) -> Result<(), SharedError> {
        self.inner.local.force_close();
        self.inner.call("force_close", &[]).await.map(drop)
    }

    /// Returns the shared record to a fresh CLOSED.
    pub async fn reset_shared(&self) -> Result<(), SharedError> {
        self.inner.local.reset();
        self.inner.call("reset", &[]).await.map(drop)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.inner
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The decision this replica's view can make alone; `None` when only the shared record
    /// can decide (an open period has ended, or HALF_OPEN: a probe lease).
    fn decide_from_view(&self, tenant: &str) -> Option<Result<Permit, Rejected>> {
        let inner = &self.inner;
        if self.is_local() {
            return Some(inner.local.try_acquire_for(tenant));
        }
        // Copied out: the lock is not held while the permit is made.
        let (state, generation, open_until) = {
            let view = self.view();
            (view.state, view.generation, view.open_until)
        };
        let now = inner.clock.now();
        Some(match state {
            BreakerState::Closed => Ok(inner.permit(generation, None, tenant)),
            BreakerState::ForcedClosed => Ok(Permit::detached()),
            BreakerState::ForcedOpen => Err(inner.reject(BreakerState::ForcedOpen, None)),
            BreakerState::Open if open_until.is_some_and(|until| now < until) => {
                Err(inner.reject(BreakerState::Open, open_until))
            }
            BreakerState::Open | BreakerState::HalfOpen => return None,
        })
    }

    /// An operator's change: this replica's view at once (its next call obeys), the shared
    /// record in the background (every replica at its next read).
    fn operator(&self, op: &'static str, state: BreakerState) {
        self.view().state = state;
        let inner = Arc::clone(&self.inner);
        inner.begin_write();
        self.inner.runtime.spawn(async move {
            let _ = inner.call(op, &[]).await;
            inner.end_write();
        });
    }
}

impl Inner {
    fn now_arg(&self) -> String {
        if self.clock_time {
            self.clock
                .now()
                .saturating_duration_since(self.base)
                .as_millis()
                .to_string()
        } else {
            String::new()
        }
    }

    fn jitter(&self) -> String {
        let jitter = self.config.breaker.jitter;
        if jitter <= 0.0 {
            return "1".to_owned();
        }
        let draw = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .f64();
        (1.0 + jitter * (draw * 2.0 - 1.0)).to_string()
    }

    /// One script call; its reply updates the view. A failure puts the replica in local
    /// mode.
    async fn call(&self, op: &str, extra: &[&str]) -> Result<Reply, SharedError> {
        let mut invocation = SCRIPT.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation.arg(op).arg(self.now_arg());
        for value in &self.config_args {
            invocation.arg(value);
        }
        invocation.arg(self.jitter());
        for value in extra {
            invocation.arg(*value);
        }
        match self.store.run::<redis::Value>(&invocation).await {
            Ok(value) => {
                let reply = Reply::parse(value)?;
                self.adopt(&reply, op == "read");
                Ok(reply)
            }
            Err(error) => {
                self.enter_local_mode(&error);
                Err(error)
            }
        }
    }

    async fn refresh(&self) -> Result<(), SharedError> {
        self.call("read", &[]).await.map(drop)
    }

    /// Takes the record's state from a reply: always from a read (authoritative, also
    /// after Redis lost its data), otherwise only when it is not older than the view.
    fn adopt(&self, reply: &Reply, read: bool) {
        let local_now = self.clock.now();
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let before = view.state;
        if read || reply.generation >= view.generation {
            view.update(reply, local_now);
        }
        let after = view.state;
        drop(view);
        if before != after {
            // The record changed, here or on another replica: one line and one counted
            // transition per replica that sees it, `warn` when calls start being refused.
            failover_breaker::telemetry::transition(&self.metric_name, before, after);
            if matches!(after, BreakerState::Open | BreakerState::ForcedOpen) {
                tracing::warn!(breaker = %self.name, from = before.as_str(), to = after.as_str(),
                    "shared circuit breaker {}: {before} -> {after}", self.name);
            } else {
                tracing::info!(breaker = %self.name, from = before.as_str(), to = after.as_str(),
                    "shared circuit breaker {}: {before} -> {after}", self.name);
            }
        }
        if read && self.local_mode.swap(false, Ordering::AcqRel) {
            tracing::info!(
                breaker = %self.name,
                state = reply.state.as_str(),
                "shared circuit breaker {}: Redis answers again; re-synced with the shared record",
                self.name
            );
        }
    }

    fn enter_local_mode(&self, error: &SharedError) {
        if !self.local_mode.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                breaker = %self.name,
                error = %error,
                "shared circuit breaker {}: Redis unreachable; deciding with the local breaker",
                self.name
            );
        }
    }

    fn begin_write(&self) {
        self.writes_in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn end_write(&self) {
        if self.writes_in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.writes_done.notify_waiters();
        }
    }

    fn reject(&self, state: BreakerState, next_probe_at: Option<Instant>) -> Rejected {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Rejected {
            state,
            next_probe_at,
        }
    }

    /// A permit on the shared record, with a local permit when the local breaker admits
    /// too (so the local breaker knows this replica's recent outcomes if Redis goes away).
    fn permit(self: &Arc<Self>, generation: u64, lease: Option<String>, tenant: &str) -> Permit {
        let probe = lease.is_some();
        let sink = SharedPermit {
            inner: Arc::clone(self),
            lease,
            local: Mutex::new(self.local.try_acquire_for(tenant).ok()),
        };
        Permit::new(
            Arc::new(sink),
            PermitToken {
                generation,
                probe,
                tenant: 0,
            },
        )
    }

    async fn acquire_remote(self: Arc<Self>, tenant: String) -> Result<Permit, Rejected> {
        let lease = format!(
            "{}:{}",
            self.owner,
            self.next_lease.fetch_add(1, Ordering::Relaxed)
        );
        let ttl = self.config.probe_lease.as_millis().to_string();
        match self.call("acquire", &[&lease, &ttl]).await {
            Ok(reply) if reply.admitted => {
                Ok(self.permit(reply.generation, reply.probe.then_some(lease), &tenant))
            }
            Ok(reply) => {
                let next_probe_at = match reply.state {
                    BreakerState::Open => reply.open_until_at(self.clock.now()),
                    _ => None,
                };
                Err(self.reject(reply.state, next_probe_at))
            }
            Err(_) => self.local.try_acquire_for(&tenant),
        }
    }
}

/// Reads the record every `interval` while the breaker lives.
async fn refresh_loop(inner: Weak<Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let _ = inner.refresh().await;
    }
}

/// Where a shared permit reports: the local permit at once, the shared record in the
/// background.
struct SharedPermit {
    inner: Arc<Inner>,
    lease: Option<String>,
    local: Mutex<Option<Permit>>,
}

impl PermitSink for SharedPermit {
    fn complete(&self, token: PermitToken, outcome: Outcome) {
        if let Some(local) = self
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            local.record(outcome);
        }
        if matches!(outcome, Outcome::Ignored) && self.lease.is_none() {
            return;
        }
        let (code, kind, retry_after) = match outcome {
            Outcome::Success => ("s", "", Duration::ZERO),
            Outcome::Failure { kind, retry_after } => ("f", kind, retry_after.unwrap_or_default()),
            Outcome::NeedsOperator { kind } => ("n", kind, Duration::ZERO),
            Outcome::Ignored => ("i", "", Duration::ZERO),
        };
        let inner = Arc::clone(&self.inner);
        let lease = self.lease.clone().unwrap_or_default();
        inner.begin_write();
        self.inner.runtime.spawn(async move {
            let generation = token.generation.to_string();
            let probe = if token.probe { "1" } else { "0" };
            let retry = retry_after.as_millis().to_string();
            let _ = inner
                .call("record", &[&generation, probe, &lease, code, kind, &retry])
                .await;
            inner.end_write();
        });
    }
}

impl Breaker for SharedBreaker {
    fn try_acquire(&self) -> Result<Permit, Rejected> {
        self.try_acquire_for("")
    }

    /// Decides from this replica's view without waiting. Where only the shared record
    /// can decide (a probe lease), it refuses as HALF_OPEN; the engine calls
    /// [`acquire_for`](Breaker::acquire_for), which asks Redis.
    fn try_acquire_for(&self, tenant: &str) -> Result<Permit, Rejected> {
        self.decide_from_view(tenant)
            .unwrap_or_else(|| Err(self.inner.reject(BreakerState::HalfOpen, None)))
    }

    fn acquire_for<'a>(&'a self, tenant: &'a str) -> Acquisition<'a> {
        match self.decide_from_view(tenant) {
            Some(decision) => Acquisition::now(decision),
            None => Acquisition::later(Arc::clone(&self.inner).acquire_remote(tenant.to_owned())),
        }
    }

    fn force_open(&self) {
        self.inner.local.force_open();
        self.operator("force_open", BreakerState::ForcedOpen);
    }

    fn force_close(&self) {
        self.inner.local.force_close();
        self.operator("force_close", BreakerState::ForcedClosed);
    }

    fn reset(&self) {
        self.inner.local.reset();
        self.operator("reset", BreakerState::Closed);
    }

    /// The shared record as of the last reply or read; the local breaker's in local mode.
    fn snapshot(&self) -> BreakerSnapshot {
        if self.is_local() {
            return self.inner.local.snapshot();
        }
        self.view()
            .snapshot(self.inner.rejected.load(Ordering::Relaxed))
    }
}
