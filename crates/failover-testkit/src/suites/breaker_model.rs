//! A tiny single-threaded reference model of the [`Breaker`] contract, and the property
//! check that runs random operation sequences on a breaker and on the model.
//!
//! The model keeps the window as a literal `VecDeque` of outcomes — the last N, or those
//! recorded in the last N whole seconds — with the tenant of each failure, and follows the
//! README's rules step by step: the per-tenant cap counts the tenant's failures in that
//! literal window, the time window's run of consecutive failures is the failures since the
//! last success that are still in it, and a trip on a configuration fault holds for the
//! longer of the fault hold and the normal period. After every operation the breaker's
//! admit/reject decision, state, counts, trips, next probe time, `needs_operator` and capped
//! count must equal the model's. Jitter is off so the model is exact, and at most 3 tenants
//! fail at once (well within the breaker's table of tracked tenants), where the cap is exact.
//!
//! Run it with proptest over [`config_strategy`] and [`op_strategy`]: see
//! `failover-breaker/tests/model.rs` (the local breaker) and `failover-shared/tests/model.rs`
//! (the shared one).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use failover_breaker::{Breaker, BreakerConfig, BreakerState, ManualClock, Outcome, Permit};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One step of a generated sequence.
#[derive(Debug, Clone)]
pub enum Op {
    /// Asks for a permit.
    Acquire {
        /// 0 `try_acquire()`, 1..=3 a named tenant, 4 the empty (anonymous) tenant.
        tenant: u8,
    },
    /// Records an outcome on one outstanding permit.
    Record {
        /// Which permit (modulo the number outstanding).
        index: usize,
        /// The outcome.
        outcome: Outcome,
    },
    /// Drops one outstanding permit unrecorded.
    Drop {
        /// Which permit (modulo the number outstanding).
        index: usize,
    },
    /// Advances the clock.
    Advance {
        /// By this many milliseconds.
        millis: u64,
    },
    /// `force_open`.
    ForceOpen,
    /// `force_close`.
    ForceClose,
    /// `reset`.
    Reset,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    generation: u64,
    probe: bool,
    detached: bool,
    /// `None` for an anonymous caller.
    tenant: Option<u8>,
}

/// One outcome in the model's window.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failed: bool,
    tenant: Option<u8>,
    /// The whole second it was recorded in (time mode).
    second: u64,
}

#[derive(Debug)]
struct Model {
    config: BreakerConfig,
    multiplier: u32,
    now: Duration,
    state: BreakerState,
    generation: u64,
    /// Oldest first: the last `window_size` outcomes, or (time mode) every outcome still in
    /// the window, pruned before each use.
    window: VecDeque<Entry>,
    consecutive: u32,
    /// Time mode: the seconds of the failures since the last success.
    run: VecDeque<u64>,
    needs_operator: Option<&'static str>,
    tenant_capped: u64,
    trips: u32,
    streak: u32,
    next_probe: Option<Duration>,
    retry_not_before: Option<Duration>,
    probes_in_flight: u32,
    probe_successes: u32,
    rejected: u64,
}

impl Model {
    fn new(config: BreakerConfig, multiplier: u32) -> Self {
        Self {
            config,
            multiplier,
            now: Duration::ZERO,
            state: BreakerState::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            run: VecDeque::new(),
            needs_operator: None,
            tenant_capped: 0,
            trips: 0,
            streak: 0,
            next_probe: None,
            retry_not_before: None,
            probes_in_flight: 0,
            probe_successes: 0,
            rejected: 0,
        }
    }

    fn acquire(&mut self, tenant: u8) -> Result<Token, BreakerState> {
        let tenant = (1..=3).contains(&tenant).then_some(tenant);
        let token = |generation, probe| Token {
            generation,
            probe,
            detached: false,
            tenant: if probe { None } else { tenant },
        };
        match self.state {
            BreakerState::Closed => Ok(token(self.generation, false)),
            BreakerState::ForcedClosed => Ok(Token {
                generation: 0,
                probe: false,
                detached: true,
                tenant: None,
            }),
            BreakerState::ForcedOpen => self.reject(BreakerState::ForcedOpen),
            BreakerState::Open if self.now < self.next_probe.unwrap() => {
                self.reject(BreakerState::Open)
            }
            BreakerState::Open => {
                self.set_state(BreakerState::HalfOpen);
                self.probes_in_flight = 1;
                Ok(token(self.generation, true))
            }
            BreakerState::HalfOpen if self.probes_in_flight < self.config.half_open_max_probes => {
                self.probes_in_flight += 1;
                Ok(token(self.generation, true))
            }
            BreakerState::HalfOpen => self.reject(BreakerState::HalfOpen),
        }
    }

    fn reject(&mut self, state: BreakerState) -> Result<Token, BreakerState> {
        self.rejected += 1;
        Err(state)
    }

    fn complete(&mut self, token: Token, outcome: Outcome) {
        if token.detached || token.generation != self.generation {
            return;
        }
        if token.probe {
            self.probes_in_flight -= 1;
            match outcome {
                Outcome::Ignored => {}
                Outcome::Success => {
                    self.consecutive = 0;
                    self.run.clear();
                    self.probe_successes += 1;
                    if self.probe_successes >= self.config.half_open_successes_to_close {
                        self.set_state(BreakerState::Closed);
                    }
                }
                Outcome::Failure { .. } | Outcome::NeedsOperator { .. } => {
                    self.note(retry_hint(outcome));
                    self.consecutive += 1;
                    self.run.push_back(self.second());
                    self.trip(config_fault(outcome));
                }
            }
            return;
        }
        match outcome {
            Outcome::Ignored => {}
            Outcome::Success => {
                self.consecutive = 0;
                self.run.clear();
                self.push(false, token.tenant);
                if self.rate_trips() {
                    self.trip(None);
                }
            }
            Outcome::Failure { .. } | Outcome::NeedsOperator { .. } => {
                let cap = self.config.max_failures_per_tenant as usize;
                if let (true, Some(tenant)) = (cap > 0, token.tenant) {
                    self.prune();
                    // In a full count window the failure will evict the oldest outcome: the
                    // cap is on the window as it will be.
                    let evicted = usize::from(
                        self.config.window_duration.is_none()
                            && self.window.len() == self.config.window_size as usize,
                    );
                    let mine = self
                        .window
                        .iter()
                        .skip(evicted)
                        .filter(|e| e.failed && e.tenant == Some(tenant))
                        .count();
                    if mine >= cap {
                        self.tenant_capped += 1;
                        return;
                    }
                }
                self.note(retry_hint(outcome));
                self.consecutive += 1;
                self.run.push_back(self.second());
                self.push(true, token.tenant);
                let limit = self.config.consecutive_failures;
                if (limit > 0 && self.consecutive() >= limit) || self.rate_trips() {
                    self.trip(config_fault(outcome));
                }
            }
        }
    }

    fn second(&self) -> u64 {
        self.now.as_secs()
    }

    /// Time mode: drops what has left the window.
    fn prune(&mut self) {
        if let Some(d) = self.config.window_duration {
            let (now, n) = (self.second(), d.as_secs());
            self.window.retain(|e| e.second + n > now);
            self.run.retain(|&s| s + n > now);
        }
    }

    fn push(&mut self, failed: bool, tenant: Option<u8>) {
        self.prune();
        if self.config.window_duration.is_none()
            && self.window.len() == self.config.window_size as usize
        {
            self.window.pop_front();
        }
        let second = self.second();
        self.window.push_back(Entry {
            failed,
            tenant,
            second,
        });
    }

    fn counts(&mut self) -> (u64, u64) {
        self.prune();
        let failures = self.window.iter().filter(|e| e.failed).count() as u64;
        (self.window.len() as u64 - failures, failures)
    }

    /// The run of consecutive failures: all of it in count mode, what is still in the
    /// window in time mode.
    fn consecutive(&mut self) -> u32 {
        if self.config.window_duration.is_some() {
            self.prune();
            self.run.len() as u32
        } else {
            self.consecutive
        }
    }

    fn rate_trips(&mut self) -> bool {
        let (s, f) = self.counts();
        let total = s + f;
        total >= u64::from(self.config.minimum_calls)
            && f as f64 / total as f64 >= self.config.failure_rate_threshold
    }

    fn note(&mut self, retry_after: Option<Duration>) {
        if let Some(hint) = retry_after {
            let until = self.now + hint;
            self.retry_not_before = Some(self.retry_not_before.map_or(until, |t| t.max(until)));
        }
    }

    fn trip(&mut self, config_fault: Option<&'static str>) {
        self.trips += 1;
        self.streak += 1;
        let mut period = self.config.open_duration;
        for _ in 1..self.streak {
            period = period
                .saturating_mul(self.multiplier)
                .min(self.config.max_open_duration);
        }
        let mut period = period.min(self.config.max_open_duration);
        if config_fault.is_some() {
            period = period.max(self.config.config_fault_open_duration);
        }
        self.needs_operator = config_fault;
        let mut until = self.now + period;
        if let Some(hint) = self.retry_not_before {
            until = until.max(hint);
        }
        self.set_state(BreakerState::Open);
        self.next_probe = Some(until);
    }

    fn set_state(&mut self, to: BreakerState) {
        self.generation += 1;
        self.state = to;
        self.probes_in_flight = 0;
        self.next_probe = None;
        match to {
            BreakerState::Closed => {
                self.window.clear();
                self.run.clear();
                self.needs_operator = None;
                self.consecutive = 0;
                self.streak = 0;
                self.retry_not_before = None;
            }
            BreakerState::HalfOpen => self.probe_successes = 0,
            _ => {}
        }
    }

    fn force(&mut self, to: BreakerState) {
        if self.state != to {
            self.set_state(to);
        }
    }

    fn reset(&mut self) {
        self.trips = 0;
        self.set_state(BreakerState::Closed);
    }
}

/// Configurations (and their integral backoff multiplier) with `features`; no jitter.
pub fn config_strategy(features: ModelFeatures) -> impl Strategy<Value = (BreakerConfig, u32)> {
    (
        (
            1u32..=8,
            0u32..=8,
            prop_oneof![Just(0.25), Just(0.5), Just(1.0), 0.01f64..=1.0],
            0u32..=4,
            1u64..=50,
            1u32..=8,
            1u32..=3,
            1u32..=3,
            0u32..=3,
        ),
        // A time window of 1..=4 s in a third of the cases.
        if features.time_window {
            prop_oneof![2 => Just(None), 1 => (1u64..=4).prop_map(Some)].boxed()
        } else {
            Just(None).boxed()
        },
        // The tenant cap: off in half the cases.
        if features.tenant_cap {
            prop_oneof![Just(0u32), 1u32..=3].boxed()
        } else {
            Just(0u32).boxed()
        },
        // The configuration-fault hold: 0 to 2 s.
        0u64..=40,
    )
        .prop_map(
            |(
                (window, minimum, threshold, consecutive, open, cap, multiplier, probes, close),
                window_seconds,
                tenant_cap,
                hold,
            )| {
                let config = BreakerConfig {
                    failure_rate_threshold: threshold,
                    window_size: window,
                    minimum_calls: if window_seconds.is_some() {
                        minimum.max(1)
                    } else {
                        minimum.clamp(1, window)
                    },
                    window_duration: window_seconds.map(Duration::from_secs),
                    max_failures_per_tenant: tenant_cap,
                    config_fault_open_duration: Duration::from_millis(hold * 50),
                    consecutive_failures: consecutive,
                    open_duration: Duration::from_millis(open * 10),
                    max_open_duration: Duration::from_millis(open * 10 * u64::from(cap)),
                    backoff_multiplier: f64::from(multiplier),
                    jitter: 0.0,
                    jitter_seed: Some(0),
                    half_open_max_probes: probes,
                    half_open_successes_to_close: close.clamp(1, probes),
                };
                (config, multiplier)
            },
        )
}

fn outcome_strategy() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => Just(Outcome::Success),
        4 => proptest::option::weighted(0.3, 0u64..=1000).prop_map(|ms| Outcome::Failure {
            kind: "model",
            retry_after: ms.map(Duration::from_millis),
        }),
        1 => Just(Outcome::NeedsOperator { kind: "model_config" }),
        1 => Just(Outcome::Ignored),
    ]
}

/// Operations: acquire (anonymous, three tenants, the empty tenant), record, drop, time
/// passing, force open, force close, reset.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..=4).prop_map(|tenant| Op::Acquire { tenant }),
        10 => (any::<usize>(), outcome_strategy())
            .prop_map(|(index, outcome)| Op::Record { index, outcome }),
        2 => any::<usize>().prop_map(|index| Op::Drop { index }),
        4 => (0u64..=300).prop_map(|millis| Op::Advance { millis }),
        1 => (500u64..=3000).prop_map(|millis| Op::Advance { millis }),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClose),
        1 => Just(Op::Reset),
    ]
}

fn check(
    breaker: &dyn Breaker,
    model: &mut Model,
    base: Instant,
    step: usize,
) -> Result<(), TestCaseError> {
    let s = breaker.snapshot();
    let (successes, failures) = model.counts();
    let expected = (
        model.state,
        successes,
        failures,
        model.consecutive(),
        model.trips,
        model.next_probe.map(|d| base + d),
        model.rejected,
        (model.needs_operator.is_some(), model.needs_operator),
        model.tenant_capped,
    );
    let actual = (
        s.state,
        s.successes,
        s.failures,
        s.consecutive_failures,
        s.trips,
        s.next_probe_at,
        s.rejected,
        (s.needs_operator, s.needs_operator_kind),
        s.tenant_capped_failures,
    );
    prop_assert_eq!(actual, expected, "step {}: {:?}", step, model);
    Ok(())
}

/// Whether the generated configurations use a time window and a per-tenant failure cap
/// (a breaker that refuses them, such as the shared one, is checked without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFeatures {
    /// A time window of 1..=4 s in a third of the cases.
    pub time_window: bool,
    /// A tenant cap of 1..=3 in half the cases.
    pub tenant_cap: bool,
}

impl ModelFeatures {
    /// Every feature the reference model knows.
    pub const ALL: Self = Self {
        time_window: true,
        tenant_cap: true,
    };
    /// A count window and no tenant cap.
    pub const COUNT_WINDOW_ONLY: Self = Self {
        time_window: false,
        tenant_cap: false,
    };
}

/// Runs `ops` on `breaker` (built with `config` on `clock`, at the clock's time `base`) and
/// on the reference model, and fails at the first step where they differ: admit/reject,
/// the rejection's state and next probe, the state, counts, trips, next probe,
/// `needs_operator` and the capped count.
pub fn follows_the_reference_model(
    breaker: &dyn Breaker,
    clock: &ManualClock,
    base: Instant,
    (config, multiplier): (BreakerConfig, u32),
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut model = Model::new(config, multiplier);
    let mut outstanding: Vec<(Permit, Token)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Acquire { tenant } => match (acquire(breaker, tenant), model.acquire(tenant)) {
                (Ok(permit), Ok(token)) => {
                    prop_assert_eq!(permit.token().probe, token.probe, "step {}", step);
                    outstanding.push((permit, token));
                }
                (Err(rejected), Err(state)) => {
                    prop_assert_eq!(rejected.state, state, "step {}", step);
                    if state == BreakerState::Open {
                        prop_assert_eq!(
                            rejected.next_probe_at,
                            model.next_probe.map(|d| base + d),
                            "step {}",
                            step
                        );
                    }
                }
                (actual, expected) => {
                    prop_assert!(false, "step {step}: breaker {actual:?}, model {expected:?}");
                }
            },
            Op::Record { index, outcome } => {
                if !outstanding.is_empty() {
                    let (permit, token) = outstanding.swap_remove(index % outstanding.len());
                    permit.record(outcome);
                    model.complete(token, outcome);
                }
            }
            Op::Drop { index } => {
                if !outstanding.is_empty() {
                    let (permit, token) = outstanding.swap_remove(index % outstanding.len());
                    drop(permit);
                    model.complete(token, Outcome::Ignored);
                }
            }
            Op::Advance { millis } => {
                clock.advance(Duration::from_millis(millis));
                model.now += Duration::from_millis(millis);
            }
            Op::ForceOpen => {
                breaker.force_open();
                model.force(BreakerState::ForcedOpen);
            }
            Op::ForceClose => {
                breaker.force_close();
                model.force(BreakerState::ForcedClosed);
            }
            Op::Reset => {
                breaker.reset();
                model.reset();
            }
        }
        check(breaker, &mut model, base, step)?;
    }
    Ok(())
}

fn acquire(breaker: &dyn Breaker, tenant: u8) -> Result<Permit, failover_breaker::Rejected> {
    match tenant {
        0 => breaker.try_acquire(),
        4 => breaker.try_acquire_for(""),
        t => breaker.try_acquire_for(&format!("tenant-{t}")),
    }
}

fn config_fault(outcome: Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::NeedsOperator { kind } => Some(kind),
        _ => None,
    }
}

fn retry_hint(outcome: Outcome) -> Option<std::time::Duration> {
    match outcome {
        Outcome::Failure { retry_after, .. } => retry_after,
        _ => None,
    }
}
