//! [`CircuitBreaker`]: the count-based breaker with a lock-free CLOSED hot path.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

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

/// A circuit breaker over a count-based sliding window (see the crate docs).
///
/// Cloning is cheap and clones share the same breaker.
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
    window: Window,
    locked: Mutex<Locked>,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    base: Instant,
}

struct Locked {
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
}

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
            window: Window::new(config.window_size),
            locked: Mutex::new(Locked {
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

    /// The configuration the breaker runs on.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.core.config
    }

    /// The current state, read without locking. An OPEN breaker whose period has ended still
    /// reads OPEN until the next [`try_acquire`](Breaker::try_acquire) moves it to HALF_OPEN.
    pub fn state(&self) -> BreakerState {
        state_of(self.shared.core.word.load(Ordering::Acquire))
    }

    fn permit(&self, generation: u64, probe: bool) -> Permit {
        let sink = Arc::clone(&self.shared.sinks[stripe_index() % STRIPES]);
        Permit::new(sink, PermitToken { generation, probe })
    }

    fn acquire_slow(&self) -> Result<Permit, Rejected> {
        let core = &*self.shared.core;
        let mut g = core.lock();
        let now = core.clock.now();
        let word = core.word.load(Ordering::Acquire);
        match state_of(word) {
            BreakerState::Closed => Ok(self.permit(generation_of(word), false)),
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
        self.permit(generation, true)
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
        let core = &*self.shared.core;
        let word = core.word.load(Ordering::Acquire);
        match state_of(word) {
            BreakerState::Closed => Ok(self.permit(generation_of(word), false)),
            BreakerState::ForcedClosed => Ok(Permit::detached()),
            BreakerState::ForcedOpen => Err(core.reject(BreakerState::ForcedOpen, None)),
            BreakerState::Open => {
                let at = core.instant(core.next_probe.load(Ordering::Acquire));
                if core.clock.now() < at && core.word.load(Ordering::Acquire) == word {
                    Err(core.reject(BreakerState::Open, Some(at)))
                } else {
                    self.acquire_slow()
                }
            }
            BreakerState::HalfOpen => self.acquire_slow(),
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
        g.trips = 0;
        g.last_error_kind = None;
        g.opened_at = None;
        core.set_state(&mut g, BreakerState::Closed, now);
    }

    fn snapshot(&self) -> BreakerSnapshot {
        let core = &*self.shared.core;
        let g = core.lock();
        let (successes, failures) = core.window.counts();
        let total = successes + failures;
        BreakerSnapshot {
            state: state_of(core.word.load(Ordering::Acquire)),
            successes: u64::from(successes),
            failures: u64::from(failures),
            consecutive_failures: core.consecutive.load(Ordering::Acquire),
            failure_rate: if total == 0 {
                0.0
            } else {
                f64::from(failures) / f64::from(total)
            },
            rejected: core.rejected.load(Ordering::Relaxed),
            trips: g.trips,
            last_error_kind: g.last_error_kind,
            opened_at: g.opened_at,
            next_probe_at: g.next_probe_at,
            recent_transitions: g.transitions.iter().cloned().collect(),
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &*self.shared.core;
        let (successes, failures) = core.window.counts();
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .field("successes", &successes)
            .field("failures", &failures)
            .field(
                "consecutive_failures",
                &core.consecutive.load(Ordering::Relaxed),
            )
            .field("config", &core.config)
            .finish_non_exhaustive()
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

    fn rate_trips(&self, successes: u32, failures: u32) -> bool {
        let total = successes + failures;
        total >= self.config.minimum_calls
            && f64::from(failures) / f64::from(total) >= self.config.failure_rate_threshold
    }

    #[inline]
    fn complete(&self, token: PermitToken, outcome: Outcome) {
        if token.probe {
            return self.complete_probe(token, outcome);
        }
        match outcome {
            Outcome::Ignored => {}
            Outcome::Success => self.closed_success(token.generation),
            Outcome::Failure { kind, retry_after } => {
                self.closed_failure(token.generation, kind, retry_after);
            }
            Outcome::NeedsOperator { kind } => {
                self.closed_failure(token.generation, kind, None);
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
        if self.rate_trips(successes, failures) {
            // Too few calls until now: this success completed `minimum_calls` outcomes of a
            // window that is failing.
            let mut g = self.lock();
            if generation_of(self.word.load(Ordering::Acquire)) != generation {
                return;
            }
            let (successes, failures) = self.window.counts();
            if self.rate_trips(successes, failures) {
                let now = self.clock.now();
                self.trip(&mut g, now);
            }
        }
    }

    fn closed_failure(&self, generation: u64, kind: &'static str, retry_after: Option<Duration>) {
        let mut g = self.lock();
        if generation_of(self.word.load(Ordering::Acquire)) != generation {
            return;
        }
        let now = self.clock.now();
        note_failure(&mut g, kind, retry_after, now);
        let consecutive = self
            .consecutive
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let (successes, failures) = self.window.push(FAILURE);
        let limit = self.config.consecutive_failures;
        if (limit > 0 && consecutive >= limit) || self.rate_trips(successes, failures) {
            self.trip(&mut g, now);
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
                self.trip(&mut g, now);
            }
        }
    }

    /// To OPEN, for the backed-off period and at least until every retry hint has elapsed.
    fn trip(&self, g: &mut Locked, now: Instant) {
        g.trips = g.trips.saturating_add(1);
        g.streak = g.streak.saturating_add(1);
        let period = self.open_period(g);
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
        match to {
            BreakerState::Closed => {
                // Cleared before the new generation is published, so that no success of the
                // new generation can be wiped.
                self.window.clear();
                self.consecutive.store(0, Ordering::Release);
                g.streak = 0;
                g.retry_not_before = None;
            }
            BreakerState::HalfOpen => g.probe_successes = 0,
            _ => {}
        }
        if to != BreakerState::Open {
            g.next_probe_at = None;
        }
        g.probes_in_flight = 0;
        let word = self.word.load(Ordering::Acquire);
        let from = state_of(word);
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

    fn force(&self, to: BreakerState) {
        let mut g = self.lock();
        if state_of(self.word.load(Ordering::Acquire)) != to {
            let now = self.clock.now();
            self.set_state(&mut g, to, now);
        }
    }
}

fn note_failure(g: &mut Locked, kind: &'static str, retry_after: Option<Duration>, now: Instant) {
    g.last_error_kind = Some(kind);
    if let Some(hint) = retry_after {
        let until = add(now, hint);
        g.retry_not_before = Some(g.retry_not_before.map_or(until, |t| t.max(until)));
    }
}
