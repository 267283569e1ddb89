//! [`CircuitBreaker`]: the breaker over a count- or time-based window, with a lock-free
//! CLOSED hot path in count mode.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::telemetry;
use crate::tenants::{ANONYMOUS, TenantCap, tenant_key};
use crate::time_window::TimeWindow;
use crate::window::{FAILURE, SUCCESS, Window};
use crate::{
    Breaker, BreakerConfig, BreakerConfigError, BreakerSnapshot, BreakerState, Clock, Outcome,
    Permit, PermitSink, PermitToken, Rejected, SystemClock, Transition,
};

/// How many transitions a snapshot keeps.
pub const RECENT_TRANSITIONS: usize = 16;

/// Permits report through one of this many sinks, picked per thread, so that the reference
/// count a permit holds is not one cache line shared by every core.
const STRIPES: usize = 16;

const STATE_BITS: u64 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

fn state_code(state: BreakerState) -> u64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
        BreakerState::ForcedOpen => 3,
        BreakerState::ForcedClosed => 4,
    }
}

fn state_of(word: u64) -> BreakerState {
    match word & STATE_MASK {
        0 => BreakerState::Closed,
        1 => BreakerState::Open,
        2 => BreakerState::HalfOpen,
        3 => BreakerState::ForcedOpen,
        _ => BreakerState::ForcedClosed,
    }
}

fn generation_of(word: u64) -> u64 {
    word >> STATE_BITS
}

/// `at + d`, saturating at a far-future instant instead of overflowing.
fn add(at: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// A circuit breaker over a count-based or time-based sliding window (see the crate docs).
///
/// Cloning is cheap and clones share the same breaker (and its name).
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

struct Shared {
    core: Arc<Core>,
    sinks: Box<[Arc<Sink>]>,
}

/// One of the [`STRIPES`] permit sinks; aligned so its reference count has a line to itself.
struct Sink {
    core: CachePadded<Arc<Core>>,
}

struct Core {
    /// `generation << 3 | state`; written only under `locked`.
    word: CachePadded<AtomicU64>,
    /// Nanoseconds after `base` at which an OPEN breaker admits a probe; written under
    /// `locked` before `word` is published.
    next_probe: AtomicU64,
    consecutive: CachePadded<AtomicU32>,
    rejected: CachePadded<AtomicU64>,
    /// The count-based window (unused, one slot, in time mode).
    window: Window,
    /// The time window's length in seconds, in time mode.
    window_seconds: Option<u64>,
    locked: Mutex<Locked>,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    base: Instant,
}

struct Locked {
    /// The name in the transition logs (the provider's).
    name: Arc<str>,
    /// Whether `name` was given ([`CircuitBreaker::with_name`]): only named breakers emit
    /// metrics (see there).
    named: bool,
    rng: fastrand::Rng,
    trips: u32,
    /// Trips since the last close: the backoff exponent.
    streak: u32,
    last_error_kind: Option<&'static str>,
    opened_at: Option<Instant>,
    next_probe_at: Option<Instant>,
    /// The latest `failure time + retry_after` among failures since the window was cleared.
    retry_not_before: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
    transitions: VecDeque<Transition>,
    /// The time window, in time mode.
    time_window: Option<TimeWindow>,
    tenants: TenantCap,
    tenant_capped: u64,
    /// The configuration fault that caused the current trip, if one did.
    needs_operator: Option<&'static str>,
    /// When the breaker first opened since it was last CLOSED: how long the provider has been
    /// out, for the transition logs.
    outage_since: Option<Instant>,
}

/// The name of a breaker that was not given one.
const UNNAMED: &str = "unnamed";

impl CircuitBreaker {
    /// A breaker on the system clock.
    ///
    /// # Panics
    /// If `config` is invalid ([`BreakerConfig::validate`]); use
    /// [`try_new`](Self::try_new) to get the error instead.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A breaker on the given clock (a [`ManualClock`](crate::ManualClock) in tests).
    ///
    /// # Panics
    /// If `config` is invalid ([`BreakerConfig::validate`]); use
    /// [`try_with_clock`](Self::try_with_clock) to get the error instead.
    pub fn with_clock(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        match Self::try_with_clock(config, clock) {
            Ok(breaker) => breaker,
            Err(e) => panic!("{e}"),
        }
    }

    /// A breaker on the system clock, or the reason `config` is invalid.
    pub fn try_new(config: BreakerConfig) -> Result<Self, BreakerConfigError> {
        Self::try_with_clock(config, Arc::new(SystemClock))
    }

    /// A breaker on the given clock, or the reason `config` is invalid.
    pub fn try_with_clock(
        config: BreakerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        let rng = match config.jitter_seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let core = Arc::new(Core {
            word: CachePadded::new(AtomicU64::new(state_code(BreakerState::Closed))),
            next_probe: AtomicU64::new(0),
            consecutive: CachePadded::new(AtomicU32::new(0)),
            rejected: CachePadded::new(AtomicU64::new(0)),
            // In time mode the count window is never written: one slot keeps it small.
            window: Window::new(if config.window_duration.is_some() {
                1
            } else {
                config.window_size
            }),
            window_seconds: config.window_seconds(),
            locked: Mutex::new(Locked {
                name: Arc::from(UNNAMED),
                named: false,
                rng,
                trips: 0,
                streak: 0,
                last_error_kind: None,
                opened_at: None,
                next_probe_at: None,
                retry_not_before: None,
                probes_in_flight: 0,
                probe_successes: 0,
                transitions: VecDeque::with_capacity(RECENT_TRANSITIONS),
                time_window: config.window_seconds().map(TimeWindow::new),
                tenants: TenantCap::new(config.max_failures_per_tenant),
                tenant_capped: 0,
                needs_operator: None,
                outage_since: None,
            }),
            base: clock.now(),
            clock,
            config,
        });
        let sinks = (0..STRIPES)
            .map(|_| {
                Arc::new(Sink {
                    core: CachePadded::new(Arc::clone(&core)),
                })
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared { core, sinks }),
        })
    }

    /// Names the breaker (the provider it guards) in its transition logs and metrics; clones
    /// share the name. Unnamed breakers log as `unnamed`.
    ///
    /// Naming also starts the breaker's metrics, labelled `failover.provider = name`: the
    /// state gauge `failover.breaker.state` is published at once (1 for the current state, 0
    /// for the others), and from then on every transition counts in
    /// `failover.breaker.transitions` and moves the gauge. Unnamed breakers emit no metrics:
    /// their series would all be `unnamed`, where several breakers' one-hot gauges would
    /// overwrite each other. Renaming zeroes the old name's gauge. Names are meant to be
    /// unique per process (one breaker per provider), for the same reason.
    #[must_use]
    pub fn with_name(self, name: impl Into<Arc<str>>) -> Self {
        let core = &*self.shared.core;
        let mut g = core.lock();
        let name = name.into();
        if g.named && g.name != name {
            telemetry::retire(&g.name);
        }
        g.name = name;
        g.named = true;
        // Under the lock, which every transition holds: no transition can slip between
        // reading the state and publishing it.
        telemetry::publish(&g.name, state_of(core.word.load(Ordering::Acquire)));
        drop(g);
        self
    }

    /// The name in the transition logs.
    pub fn name(&self) -> Arc<str> {
        Arc::clone(&self.shared.core.lock().name)
    }

    /// The configuration the breaker runs on.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.core.config
    }

    /// The current state, read without locking. An OPEN breaker whose period has ended still
    /// reads OPEN until the next [`try_acquire`](Breaker::try_acquire) moves it to HALF_OPEN.
    pub fn state(&self) -> BreakerState {
        state_of(self.shared.core.word.load(Ordering::Acquire))
    }

    fn permit(&self, generation: u64, probe: bool, tenant: u64) -> Permit {
        let sink = Arc::clone(&self.shared.sinks[stripe_index() % STRIPES]);
        Permit::new(
            sink,
            PermitToken {
                generation,
                probe,
                tenant,
            },
        )
    }

    #[inline]
    fn acquire(&self, tenant: u64) -> Result<Permit, Rejected> {
        let core = &*self.shared.core;
        let word = core.word.load(Ordering::Acquire);
        match state_of(word) {
            BreakerState::Closed => Ok(self.permit(generation_of(word), false, tenant)),
            BreakerState::ForcedClosed => Ok(Permit::detached()),
            BreakerState::ForcedOpen => Err(core.reject(BreakerState::ForcedOpen, None)),
            BreakerState::Open => {
                let at = core.instant(core.next_probe.load(Ordering::Acquire));
                if core.clock.now() < at && core.word.load(Ordering::Acquire) == word {
                    Err(core.reject(BreakerState::Open, Some(at)))
                } else {
                    self.acquire_slow(tenant)
                }
            }
            BreakerState::HalfOpen => self.acquire_slow(tenant),
        }
    }

    fn acquire_slow(&self, tenant: u64) -> Result<Permit, Rejected> {
        let core = &*self.shared.core;
        let mut g = core.lock();
        let now = core.clock.now();
        let word = core.word.load(Ordering::Acquire);
        match state_of(word) {
            BreakerState::Closed => Ok(self.permit(generation_of(word), false, tenant)),
            BreakerState::ForcedClosed => Ok(Permit::detached()),
            BreakerState::ForcedOpen => Err(core.reject(BreakerState::ForcedOpen, None)),
            BreakerState::Open => match g.next_probe_at {
                Some(at) if now < at => Err(core.reject(BreakerState::Open, Some(at))),
                _ => {
                    let generation = core.set_state(&mut g, BreakerState::HalfOpen, now);
                    Ok(self.probe(&mut g, generation))
                }
            },
            BreakerState::HalfOpen => {
                if g.probes_in_flight < core.config.half_open_max_probes {
                    Ok(self.probe(&mut g, generation_of(word)))
                } else {
                    Err(core.reject(BreakerState::HalfOpen, None))
                }
            }
        }
    }

    fn probe(&self, g: &mut Locked, generation: u64) -> Permit {
        g.probes_in_flight += 1;
        // Probes are never capped: no tenant.
        self.permit(generation, true, ANONYMOUS)
    }
}

/// A small per-thread number, so threads spread over the sinks.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    STRIPE.with(|s| *s)
}

impl Breaker for CircuitBreaker {
    #[inline]
    fn try_acquire(&self) -> Result<Permit, Rejected> {
        self.acquire(ANONYMOUS)
    }

    /// As [`try_acquire`](Breaker::try_acquire), stamping the permit with a hash of `tenant`
    /// when [`max_failures_per_tenant`](BreakerConfig::max_failures_per_tenant) is set (the
    /// tenant is not even hashed otherwise). An empty tenant is anonymous.
    #[inline]
    fn try_acquire_for(&self, tenant: &str) -> Result<Permit, Rejected> {
        if self.shared.core.config.max_failures_per_tenant == 0 {
            self.acquire(ANONYMOUS)
        } else {
            self.acquire(tenant_key(tenant))
        }
    }

    fn force_open(&self) {
        self.shared.core.force(BreakerState::ForcedOpen);
    }

    fn force_close(&self) {
        self.shared.core.force(BreakerState::ForcedClosed);
    }

    fn reset(&self) {
        let core = &*self.shared.core;
        let mut g = core.lock();
        let now = core.clock.now();
        // The transition is logged with the trips and error it leaves behind.
        core.set_state(&mut g, BreakerState::Closed, now);
        g.trips = 0;
        g.last_error_kind = None;
        g.opened_at = None;
    }

    fn snapshot(&self) -> BreakerSnapshot {
        let core = &*self.shared.core;
        let mut g = core.lock();
        let now = core.clock.now();
        let (successes, failures) = core.counts(&mut g, now);
        let consecutive_failures = match core.second(now).zip(g.time_window.as_mut()) {
            Some((second, window)) => window.run(second),
            None => core.consecutive.load(Ordering::Acquire),
        };
        BreakerSnapshot {
            state: state_of(core.word.load(Ordering::Acquire)),
            successes,
            failures,
            consecutive_failures,
            failure_rate: rate(successes, failures),
            rejected: core.rejected.load(Ordering::Relaxed),
            trips: g.trips,
            last_error_kind: g.last_error_kind,
            opened_at: g.opened_at,
            next_probe_at: g.next_probe_at,
            recent_transitions: g.transitions.iter().cloned().collect(),
            needs_operator: g.needs_operator.is_some(),
            needs_operator_kind: g.needs_operator,
            tenant_capped_failures: g.tenant_capped,
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &*self.shared.core;
        let mut f = f.debug_struct("CircuitBreaker");
        f.field("state", &self.state());
        // Read without the lock (Debug must not block): the count window's atomics only;
        // a time window's buckets are behind the lock (see `snapshot`).
        if core.window_seconds.is_none() {
            let (successes, failures) = core.window.counts();
            f.field("successes", &successes)
                .field("failures", &failures)
                .field(
                    "consecutive_failures",
                    &core.consecutive.load(Ordering::Relaxed),
                );
        }
        f.field("config", &core.config).finish_non_exhaustive()
    }
}

impl PermitSink for Sink {
    #[inline]
    fn complete(&self, token: PermitToken, outcome: Outcome) {
        self.core.complete(token, outcome);
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, Locked> {
        // Nothing panics while holding the lock; if something did, the state is still
        // consistent enough to keep serving.
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn instant(&self, nanos: u64) -> Instant {
        add(self.base, Duration::from_nanos(nanos))
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn reject(&self, state: BreakerState, next_probe_at: Option<Instant>) -> Rejected {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Rejected {
            state,
            next_probe_at,
        }
    }

    fn rate_trips(&self, successes: u64, failures: u64) -> bool {
        // The threshold is > 0 (validated): no failures, no trip, and no division.
        failures > 0
            && successes + failures >= u64::from(self.config.minimum_calls)
            && rate(successes, failures) >= self.config.failure_rate_threshold
    }

    /// Whole seconds since creation, in time mode.
    fn second(&self, now: Instant) -> Option<u64> {
        self.window_seconds
            .map(|_| now.saturating_duration_since(self.base).as_secs())
    }

    /// The window's `(successes, failures)` at `now`.
    fn counts(&self, g: &mut Locked, now: Instant) -> (u64, u64) {
        match self.second(now).zip(g.time_window.as_mut()) {
            Some((second, window)) => window.counts_at(second),
            None => {
                let (successes, failures) = self.window.counts();
                (u64::from(successes), u64::from(failures))
            }
        }
    }

    #[inline]
    fn complete(&self, token: PermitToken, outcome: Outcome) {
        if token.probe {
            return self.complete_probe(token, outcome);
        }
        match outcome {
            Outcome::Ignored => {}
            Outcome::Success if self.window_seconds.is_some() => {
                self.timed_success(token.generation);
            }
            Outcome::Success => self.closed_success(token.generation),
            Outcome::Failure { kind, retry_after } => {
                self.closed_failure(token, kind, retry_after, false);
            }
            Outcome::NeedsOperator { kind } => {
                self.closed_failure(token, kind, None, true);
            }
        }
    }

    /// The hot path: no lock unless the success completes a window that must trip.
    #[inline]
    fn closed_success(&self, generation: u64) {
        if generation_of(self.word.load(Ordering::Acquire)) != generation {
            return;
        }
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.swap(0, Ordering::AcqRel);
        }
        if self.window.is_full_of_successes() {
            return;
        }
        let (successes, failures) = self.window.push(SUCCESS);
        if self.rate_trips(u64::from(successes), u64::from(failures)) {
            // Too few calls until now: this success completed `minimum_calls` outcomes of a
            // window that is failing.
            let mut g = self.lock();
            if generation_of(self.word.load(Ordering::Acquire)) != generation {
                return;
            }
            let (successes, failures) = self.window.counts();
            if self.rate_trips(u64::from(successes), u64::from(failures)) {
                let now = self.clock.now();
                self.trip(&mut g, now, None);
            }
        }
    }

    /// A CLOSED success in time mode, under the lock (the buckets are not atomic).
    fn timed_success(&self, generation: u64) {
        let mut g = self.lock();
        if generation_of(self.word.load(Ordering::Acquire)) != generation {
            return;
        }
        let now = self.clock.now();
        let Some((second, window)) = self.second(now).zip(g.time_window.as_mut()) else {
            return;
        };
        window.break_run();
        let (successes, failures) = window.push(second, false);
        if self.rate_trips(successes, failures) {
            self.trip(&mut g, now, None);
        }
    }

    /// A CLOSED failure: counted unless its tenant is at its cap; trips on the rules.
    fn closed_failure(
        &self,
        token: PermitToken,
        kind: &'static str,
        retry_after: Option<Duration>,
        config_fault: bool,
    ) {
        let mut g = self.lock();
        if generation_of(self.word.load(Ordering::Acquire)) != token.generation {
            return;
        }
        let now = self.clock.now();
        let (position, len) = match self.second(now) {
            Some(second) => (second, self.window_seconds.unwrap_or(1)),
            None => (self.window.cursor(), self.window.len()),
        };
        if !g.tenants.admit(token.tenant, position, len) {
            g.tenant_capped += 1;
            return;
        }
        note_failure(&mut g, kind, retry_after, now);
        let (consecutive, successes, failures) = match self.second(now).zip(g.time_window.as_mut())
        {
            Some((second, window)) => {
                let run = window.extend_run(second);
                let (successes, failures) = window.push(second, true);
                (run, successes, failures)
            }
            None => {
                let consecutive = self
                    .consecutive
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                let (successes, failures) = self.window.push(FAILURE);
                (consecutive, u64::from(successes), u64::from(failures))
            }
        };
        let limit = self.config.consecutive_failures;
        if (limit > 0 && consecutive >= limit) || self.rate_trips(successes, failures) {
            self.trip(&mut g, now, config_fault.then_some(kind));
        }
    }

    fn complete_probe(&self, token: PermitToken, outcome: Outcome) {
        let mut g = self.lock();
        if generation_of(self.word.load(Ordering::Acquire)) != token.generation {
            return;
        }
        g.probes_in_flight = g.probes_in_flight.saturating_sub(1);
        match outcome {
            Outcome::Ignored => {}
            Outcome::Success => {
                self.consecutive.store(0, Ordering::Release);
                if let Some(window) = g.time_window.as_mut() {
                    window.break_run();
                }
                g.probe_successes += 1;
                if g.probe_successes >= self.config.half_open_successes_to_close {
                    let now = self.clock.now();
                    self.set_state(&mut g, BreakerState::Closed, now);
                }
            }
            Outcome::Failure { kind, .. } | Outcome::NeedsOperator { kind } => {
                let retry_after = match outcome {
                    Outcome::Failure { retry_after, .. } => retry_after,
                    _ => None,
                };
                let now = self.clock.now();
                note_failure(&mut g, kind, retry_after, now);
                self.consecutive.fetch_add(1, Ordering::AcqRel);
                if let Some((second, window)) = self.second(now).zip(g.time_window.as_mut()) {
                    window.extend_run(second);
                }
                let config_fault = matches!(outcome, Outcome::NeedsOperator { .. });
                self.trip(&mut g, now, config_fault.then_some(kind));
            }
        }
    }

    /// To OPEN, for the backed-off period (at least the configuration-fault hold if
    /// `config_fault` names the tripping fault) and at least until every retry hint has
    /// elapsed.
    fn trip(&self, g: &mut Locked, now: Instant, config_fault: Option<&'static str>) {
        g.trips = g.trips.saturating_add(1);
        g.streak = g.streak.saturating_add(1);
        let mut period = self.open_period(g);
        if config_fault.is_some() {
            period = period.max(self.config.config_fault_open_duration);
        }
        g.needs_operator = config_fault;
        g.outage_since.get_or_insert(now);
        let mut until = add(now, period);
        if let Some(hint) = g.retry_not_before {
            until = until.max(hint);
        }
        g.opened_at = Some(now);
        g.next_probe_at = Some(until);
        self.next_probe.store(self.nanos(until), Ordering::Release);
        self.set_state(g, BreakerState::Open, now);
    }

    /// `open_duration × multiplier^(streak − 1)`, capped, then jittered and capped again.
    fn open_period(&self, g: &mut Locked) -> Duration {
        let cfg = &self.config;
        let exponent = i32::try_from(g.streak.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = cfg.max_open_duration.as_nanos() as f64;
        let base = cfg.open_duration.as_nanos() as f64;
        let mut nanos = if base == 0.0 {
            0.0
        } else {
            base * cfg.backoff_multiplier.powi(exponent)
        };
        if nanos.is_nan() || nanos > max {
            nanos = max;
        }
        if cfg.jitter > 0.0 {
            nanos *= 1.0 + cfg.jitter * (g.rng.f64() * 2.0 - 1.0);
            nanos = nanos.min(max);
        }
        // Exact for whole milliseconds below 2^53 ns (104 days); `as` saturates.
        Duration::from_nanos(nanos.round() as u64)
    }

    /// Moves to `to` (a new generation) and returns the new generation.
    fn set_state(&self, g: &mut Locked, to: BreakerState, now: Instant) -> u64 {
        let from = state_of(self.word.load(Ordering::Acquire));
        if from != to {
            self.log_transition(g, from, to, now);
        }
        match to {
            BreakerState::Closed => {
                // Cleared before the new generation is published, so that no success of the
                // new generation can be wiped.
                self.window.clear();
                if let Some(window) = g.time_window.as_mut() {
                    window.clear();
                }
                g.tenants.clear();
                self.consecutive.store(0, Ordering::Release);
                g.streak = 0;
                g.retry_not_before = None;
                g.needs_operator = None;
                g.outage_since = None;
            }
            BreakerState::HalfOpen => g.probe_successes = 0,
            _ => {}
        }
        if to != BreakerState::Open {
            g.next_probe_at = None;
        }
        g.probes_in_flight = 0;
        let word = self.word.load(Ordering::Acquire);
        let generation = generation_of(word) + 1;
        self.word
            .store(generation << STATE_BITS | state_code(to), Ordering::Release);
        if from != to {
            if g.transitions.len() == RECENT_TRANSITIONS {
                g.transitions.pop_front();
            }
            g.transitions.push_back(Transition { from, to, at: now });
        }
        generation
    }

    /// One line per transition: `warn` when calls start being refused (OPEN, FORCED_OPEN),
    /// `info` otherwise; and, for a named breaker, the transition counter and state gauge.
    /// Logged under the lock, so lines and gauge writes come in the order of the transitions
    /// (transitions are rare, and the CLOSED hot path never takes the lock).
    fn log_transition(&self, g: &mut Locked, from: BreakerState, to: BreakerState, now: Instant) {
        if g.named {
            telemetry::transition(&g.name, from, to);
        }
        let (successes, failures) = self.counts(g, now);
        let failure_rate = rate(successes, failures);
        let open_for_ms = g
            .outage_since
            .map_or(0, |since| millis(now.saturating_duration_since(since)));
        let next_probe_in_ms = match (to, g.next_probe_at) {
            (BreakerState::Open, Some(at)) => millis(at.saturating_duration_since(now)),
            _ => 0,
        };
        let name = &*g.name;
        let last_error_kind = g.last_error_kind.unwrap_or("");
        let needs_operator = g.needs_operator.unwrap_or("");
        macro_rules! transition {
            ($level:ident) => {
                tracing::$level!(
                    breaker = name,
                    from = from.as_str(),
                    to = to.as_str(),
                    trips = g.trips,
                    failure_rate,
                    last_error_kind,
                    open_for_ms,
                    next_probe_in_ms,
                    needs_operator,
                    "circuit breaker {name}: {from} -> {to}"
                )
            };
        }
        match to {
            BreakerState::Open | BreakerState::ForcedOpen => transition!(warn),
            _ => transition!(info),
        }
    }

    fn force(&self, to: BreakerState) {
        let mut g = self.lock();
        if state_of(self.word.load(Ordering::Acquire)) != to {
            let now = self.clock.now();
            self.set_state(&mut g, to, now);
        }
    }
}

/// `failures / (successes + failures)`; 0 when empty.
fn rate(successes: u64, failures: u64) -> f64 {
    let total = successes + failures;
    if total == 0 {
        0.0
    } else {
        failures as f64 / total as f64
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn note_failure(g: &mut Locked, kind: &'static str, retry_after: Option<Duration>, now: Instant) {
    g.last_error_kind = Some(kind);
    if let Some(hint) = retry_after {
        let until = add(now, hint);
        g.retry_not_before = Some(g.retry_not_before.map_or(until, |t| t.max(until)));
    }
}
