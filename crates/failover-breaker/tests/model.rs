//! Random operation sequences against a tiny single-threaded reference model.
//!
//! The model keeps the window as a literal `VecDeque` of the last N outcomes and follows the
//! README's rules step by step; after every operation the breaker's admit/reject decision,
//! state, counts, trips and next probe time must equal the model's. Jitter is off so the
//! model is exact.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_breaker::{
    Breaker, BreakerConfig, BreakerState, CircuitBreaker, Clock, ManualClock, Outcome, Permit,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Record { index: usize, outcome: Outcome },
    Drop { index: usize },
    Advance { millis: u64 },
    ForceOpen,
    ForceClose,
    Reset,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    generation: u64,
    probe: bool,
    detached: bool,
}

#[derive(Debug)]
struct Model {
    config: BreakerConfig,
    multiplier: u32,
    now: Duration,
    state: BreakerState,
    generation: u64,
    /// `true` is a failure; oldest first.
    window: VecDeque<bool>,
    consecutive: u32,
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
            trips: 0,
            streak: 0,
            next_probe: None,
            retry_not_before: None,
            probes_in_flight: 0,
            probe_successes: 0,
            rejected: 0,
        }
    }

    fn acquire(&mut self) -> Result<Token, BreakerState> {
        let token = |generation, probe| Token {
            generation,
            probe,
            detached: false,
        };
        match self.state {
            BreakerState::Closed => Ok(token(self.generation, false)),
            BreakerState::ForcedClosed => Ok(Token {
                generation: 0,
                probe: false,
                detached: true,
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
                    self.probe_successes += 1;
                    if self.probe_successes >= self.config.half_open_successes_to_close {
                        self.set_state(BreakerState::Closed);
                    }
                }
                Outcome::Failure { .. } | Outcome::NeedsOperator { .. } => {
                    self.note(retry_hint(outcome));
                    self.consecutive += 1;
                    self.trip();
                }
            }
            return;
        }
        match outcome {
            Outcome::Ignored => {}
            Outcome::Success => {
                self.consecutive = 0;
                self.push(false);
                if self.rate_trips() {
                    self.trip();
                }
            }
            Outcome::Failure { .. } | Outcome::NeedsOperator { .. } => {
                self.note(retry_hint(outcome));
                self.consecutive += 1;
                self.push(true);
                let limit = self.config.consecutive_failures;
                if (limit > 0 && self.consecutive >= limit) || self.rate_trips() {
                    self.trip();
                }
            }
        }
    }

    fn push(&mut self, failed: bool) {
        if self.window.len() == self.config.window_size as usize {
            self.window.pop_front();
        }
        self.window.push_back(failed);
    }

    fn counts(&self) -> (u64, u64) {
        let failures = self.window.iter().filter(|&&f| f).count() as u64;
        (self.window.len() as u64 - failures, failures)
    }

    fn rate_trips(&self) -> bool {
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

    fn trip(&mut self) {
        self.trips += 1;
        self.streak += 1;
        let mut period = self.config.open_duration;
        for _ in 1..self.streak {
            period = period
                .saturating_mul(self.multiplier)
                .min(self.config.max_open_duration);
        }
        let mut until = self.now + period.min(self.config.max_open_duration);
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

fn config_strategy() -> impl Strategy<Value = (BreakerConfig, u32)> {
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
    )
        .prop_map(
            |(window, minimum, threshold, consecutive, open, cap, multiplier, probes, close)| {
                let config = BreakerConfig {
                    failure_rate_threshold: threshold,
                    window_size: window,
                    minimum_calls: minimum.clamp(1, window),
                    consecutive_failures: consecutive,
                    open_duration: Duration::from_millis(open * 10),
                    max_open_duration: Duration::from_millis(open * 10 * u64::from(cap)),
                    backoff_multiplier: f64::from(multiplier),
                    jitter: 0.0,
                    jitter_seed: Some(0),
                    half_open_max_probes: probes,
                    half_open_successes_to_close: close.clamp(1, probes),
                    ..BreakerConfig::default()
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
        1 => Just(Outcome::Ignored),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => Just(Op::Acquire),
        10 => (any::<usize>(), outcome_strategy())
            .prop_map(|(index, outcome)| Op::Record { index, outcome }),
        2 => any::<usize>().prop_map(|index| Op::Drop { index }),
        4 => (0u64..=300).prop_map(|millis| Op::Advance { millis }),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::ForceClose),
        1 => Just(Op::Reset),
    ]
}

fn check(breaker: &CircuitBreaker, model: &Model, base: Instant, step: usize) {
    let s = breaker.snapshot();
    let (successes, failures) = model.counts();
    let expected = (
        model.state,
        successes,
        failures,
        model.consecutive,
        model.trips,
        model.next_probe.map(|d| base + d),
        model.rejected,
    );
    let actual = (
        s.state,
        s.successes,
        s.failures,
        s.consecutive_failures,
        s.trips,
        s.next_probe_at,
        s.rejected,
    );
    assert_eq!(actual, expected, "step {step}: {model:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaker_follows_the_reference_model(
        (config, multiplier) in config_strategy(),
        ops in proptest::collection::vec(op_strategy(), 1..200),
    ) {
        let clock = ManualClock::new();
        let base = clock.now();
        let breaker = CircuitBreaker::with_clock(config.clone(), Arc::new(clock.clone()));
        let mut model = Model::new(config, multiplier);
        let mut outstanding: Vec<(Permit, Token)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Acquire => match (breaker.try_acquire(), model.acquire()) {
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
                                "step {}", step
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
            check(&breaker, &model, base, step);
        }
    }
}

fn retry_hint(outcome: Outcome) -> Option<std::time::Duration> {
    match outcome {
        Outcome::Failure { retry_after, .. } => retry_after,
        _ => None,
    }
}
