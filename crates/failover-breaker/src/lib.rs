#![doc = include_str!("../README.md")]

mod breaker;
mod clock;
mod config;
mod permit;
pub mod telemetry;
mod tenants;
mod time_window;
mod window;

pub use breaker::{CircuitBreaker, RECENT_TRANSITIONS};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    BreakerConfig, BreakerConfigError, MAX_FAILURES_PER_TENANT, MAX_WINDOW_DURATION,
    MAX_WINDOW_SIZE,
};
pub use permit::{Permit, PermitSink, PermitToken};

use std::fmt::Debug;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How a call that held a [`Permit`] ended, from the breaker's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answered.
    Success,
    /// The provider is at fault.
    Failure {
        /// A stable name of the error kind, kept for the health report.
        kind: &'static str,
        /// The provider's retry hint; an open period is never shorter than it.
        retry_after: Option<Duration>,
    },
    /// The provider is unusable until an operator acts (revoked credentials, an unknown
    /// model id, an exhausted account): a failure that, when it trips the breaker, holds
    /// it open for the configuration-fault period and marks it as needing an operator.
    NeedsOperator {
        /// A stable name of the error kind, kept for the health report.
        kind: &'static str,
    },
    /// Neither success nor failure (the caller's mistake, or a cancellation).
    Ignored,
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A bounded number of probe calls are admitted.
    HalfOpen,
    /// Opened by an operator; holds until [`Breaker::reset`].
    ForcedOpen,
    /// Disabled by an operator (always admits, counts nothing); holds until
    /// [`Breaker::reset`].
    ForcedClosed,
}

impl BreakerState {
    /// The seed's spelling: `CLOSED`, `OPEN`, `HALF_OPEN`, `FORCED_OPEN`, `FORCED_CLOSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
            BreakerState::ForcedOpen => "FORCED_OPEN",
            BreakerState::ForcedClosed => "FORCED_CLOSED",
        }
    }

    /// The metric label spelling (`failover.breaker.state`, `.from`, `.to`): `closed`,
    /// `open`, `half_open`, `forced_open`, `forced_closed`. Lower snake case, as every other
    /// label value, while [`as_str`](Self::as_str) keeps the seed's spelling for logs and
    /// the health report.
    pub fn as_label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::ForcedClosed => "forced_closed",
        }
    }

    /// Every state, in declaration order (the one-hot state gauge sets one series per state).
    pub const ALL: [BreakerState; 5] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::ForcedOpen,
        BreakerState::ForcedClosed,
    ];
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call was refused because the breaker does not admit it.
///
/// `next_probe_at` is set when the breaker knows when it will next admit a call: OPEN sets it
/// to the end of the open period. FORCED_OPEN (held until an operator resets it) and a
/// HALF_OPEN with every probe slot taken (a slot frees when a probe call ends, which no one
/// can predict) leave it `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state that refused.
    pub state: BreakerState,
    /// When a probe will next be admitted, if the breaker knows.
    pub next_probe_at: Option<Instant>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "circuit breaker is {}", self.state)
    }
}

impl std::error::Error for Rejected {}

/// One state change, kept in the snapshot's recent history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When, on the breaker's clock.
    pub at: Instant,
}

/// A point-in-time view of a breaker for the health report.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: BreakerState,
    /// Successes in the current window.
    pub successes: u64,
    /// Failures in the current window.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Failures / (successes + failures) in the window; 0 when empty.
    pub failure_rate: f64,
    /// Calls rejected since creation.
    pub rejected: u64,
    /// How many times the breaker tripped open since creation or the last reset.
    pub trips: u32,
    /// The kind of the last failure recorded.
    pub last_error_kind: Option<&'static str>,
    /// When it last opened.
    pub opened_at: Option<Instant>,
    /// When an open breaker will admit its first probe.
    pub next_probe_at: Option<Instant>,
    /// The most recent transitions, oldest first (bounded).
    pub recent_transitions: Vec<Transition>,
    /// Whether the breaker last tripped on a configuration fault ([`Outcome::NeedsOperator`]):
    /// set by that trip (or a probe failing with one), held through the long open period and
    /// the HALF_OPEN after it, and cleared when the breaker closes (probe successes or
    /// [`Breaker::reset`]) or re-trips on an ordinary failure.
    pub needs_operator: bool,
    /// The kind of the configuration fault while `needs_operator` is set.
    pub needs_operator_kind: Option<&'static str>,
    /// Failures not counted since creation because their tenant already had its cap of the
    /// window's failures ([`BreakerConfig::max_failures_per_tenant`]).
    pub tenant_capped_failures: u64,
}

/// A circuit breaker guarding one provider.
///
/// # Contract
/// - [`try_acquire`](Breaker::try_acquire) is the only way to call the provider: it returns
///   a [`Permit`] or a [`Rejected`]. Each permit reports exactly one [`Outcome`]
///   ([`Permit::record`]); a permit dropped without one reports [`Outcome::Ignored`].
/// - CLOSED → OPEN when the window's failure rate reaches the threshold after the minimum
///   number of calls, or after the configured number of consecutive failures.
/// - OPEN lasts a backed-off, jittered period that is never shorter than the largest
///   `retry_after` among the failures that tripped it; then HALF_OPEN.
/// - HALF_OPEN admits at most the configured number of probes at once; their successes
///   close the breaker, any failure reopens it.
/// - [`Outcome::NeedsOperator`] counts as a failure; when it trips the breaker (or fails a
///   probe) the open period is at least the configuration-fault hold and the snapshot
///   reports `needs_operator` until the breaker closes or re-trips on an ordinary failure.
/// - A rejection from OPEN carries `next_probe_at`; from FORCED_OPEN it carries `None`.
/// - Outcomes of permits issued before a transition change nothing after it.
/// - [`Outcome::Ignored`] counts neither way; an ignored or dropped probe frees its slot.
/// - `force_open` / `force_close` hold until `reset`, which returns to a fresh CLOSED.
pub trait Breaker: Send + Sync + Debug {
    /// Asks to make one call.
    fn try_acquire(&self) -> Result<Permit, Rejected>;
    /// Asks to make one call on behalf of `tenant`, so a breaker can cap how much of its
    /// window one tenant's failures make up. Breakers without such a cap ignore the tenant.
    fn try_acquire_for(&self, tenant: &str) -> Result<Permit, Rejected> {
        let _ = tenant;
        self.try_acquire()
    }
    /// Asks to make one call on behalf of `tenant`, waiting when the breaker keeps its
    /// state in a store shared with other processes (a probe lease taken across replicas).
    /// The engine calls this one. The default decides at once with
    /// [`try_acquire_for`](Breaker::try_acquire_for), without boxing a future.
    fn acquire_for<'a>(&'a self, tenant: &'a str) -> Acquisition<'a> {
        Acquisition::now(self.try_acquire_for(tenant))
    }
    /// Opens the breaker until [`reset`](Breaker::reset).
    fn force_open(&self);
    /// Disables the breaker (always admits) until [`reset`](Breaker::reset).
    fn force_close(&self);
    /// Returns to a fresh CLOSED state, releasing any forced state.
    fn reset(&self);
    /// The current state and counters.
    fn snapshot(&self) -> BreakerSnapshot;
}

type PendingAcquisition<'a> = Pin<Box<dyn Future<Output = Result<Permit, Rejected>> + Send + 'a>>;

/// A breaker's answer to [`Breaker::acquire_for`]: decided now, or once a shared store
/// answers.
pub struct Acquisition<'a>(AcquisitionKind<'a>);

enum AcquisitionKind<'a> {
    Now(Result<Permit, Rejected>),
    Later(PendingAcquisition<'a>),
}

impl<'a> Acquisition<'a> {
    /// Decided at once (no future is boxed).
    pub fn now(decision: Result<Permit, Rejected>) -> Self {
        Self(AcquisitionKind::Now(decision))
    }

    /// Decided when `decision` completes. The breaker bounds the wait itself (a shared
    /// breaker falls back to its local state when its store is slow).
    pub fn later(decision: impl Future<Output = Result<Permit, Rejected>> + Send + 'a) -> Self {
        Self(AcquisitionKind::Later(Box::pin(decision)))
    }

    /// The decision, awaited when it was not made at once.
    pub async fn decide(self) -> Result<Permit, Rejected> {
        match self.0 {
            AcquisitionKind::Now(decision) => decision,
            AcquisitionKind::Later(decision) => decision.await,
        }
    }
}

impl std::fmt::Debug for Acquisition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            AcquisitionKind::Now(decision) => f.debug_tuple("Acquisition").field(decision).finish(),
            AcquisitionKind::Later(_) => f.write_str("Acquisition(pending)"),
        }
    }
}
