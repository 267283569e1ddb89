//! The breaker's metrics: one `failover.breaker.transitions` count per transition and the
//! one-hot `failover.breaker.state` gauge, for named breakers only; nothing on the CLOSED hot
//! path. Each test installs its own recorder on its thread (`with_local_recorder`): tests run
//! in parallel threads and a global recorder would mix their numbers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use failover_breaker::{
    Breaker, BreakerConfig, BreakerState, CircuitBreaker, ManualClock, Outcome,
};
use failover_telemetry::names::{label, metric};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

const OPEN: Duration = Duration::from_secs(10);

fn fail() -> Outcome {
    Outcome::Failure {
        kind: "server_error",
        retry_after: None,
    }
}

/// Trips on 2 consecutive failures, one probe closes it.
fn config() -> BreakerConfig {
    BreakerConfig::default()
        .with_consecutive_failures(2)
        .with_open_duration(OPEN)
        .with_jitter(0.0)
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1)
}

fn named(clock: &ManualClock, name: &str) -> CircuitBreaker {
    CircuitBreaker::with_clock(config(), Arc::new(clock.clone())).with_name(name)
}

/// The breaker metrics as an exporter would hold them: the transition counts by
/// `(provider, from, to)` and the state gauges by `(provider, state)`.
///
/// A `DebuggingRecorder` snapshot resets what it reads (gauges included), so each step runs
/// under a fresh recorder and its snapshot — exactly the series that step wrote — is merged
/// into the totals: counts add up, gauges take the value written last.
#[derive(Debug, Default, PartialEq)]
struct Metrics {
    transitions: BTreeMap<(String, String, String), u64>,
    states: BTreeMap<(String, String), f64>,
}

fn labels(key: &Key) -> BTreeMap<String, String> {
    key.labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect()
}

impl Metrics {
    /// Runs `step` with a recorder of its own on this thread and merges what it emitted.
    fn record<R>(&mut self, step: impl FnOnce() -> R) -> R {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let result = metrics::with_local_recorder(&recorder, step);
        self.merge(&snapshotter);
        result
    }

    fn merge(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let l = labels(&key);
            match (kind, key.name(), value) {
                (MetricKind::Counter, metric::BREAKER_TRANSITIONS, DebugValue::Counter(n)) => {
                    assert_eq!(l.len(), 3, "{l:?}");
                    let series = (
                        l[label::PROVIDER].clone(),
                        l[label::BREAKER_FROM].clone(),
                        l[label::BREAKER_TO].clone(),
                    );
                    *self.transitions.entry(series).or_default() += n;
                }
                (MetricKind::Gauge, metric::BREAKER_STATE, DebugValue::Gauge(v)) => {
                    assert_eq!(l.len(), 2, "{l:?}");
                    let series = (l[label::PROVIDER].clone(), l[label::BREAKER_STATE].clone());
                    self.states.insert(series, v.0);
                }
                (kind, name, value) => panic!("unexpected {kind:?} {name} = {value:?}"),
            }
        }
    }

    fn expect(transitions: &[(&str, &str, &str, u64)], states: &[(&str, &str)]) -> Self {
        Self {
            transitions: transitions
                .iter()
                .map(|&(p, f, t, n)| ((p.into(), f.into(), t.into()), n))
                .collect(),
            states: states
                .iter()
                .flat_map(|&(provider, current)| one_hot(provider, current))
                .collect(),
        }
    }
}

/// The five state series of `provider`, 1 for `current` and 0 for the rest.
fn one_hot(provider: &str, current: &str) -> BTreeMap<(String, String), f64> {
    [
        "closed",
        "open",
        "half_open",
        "forced_open",
        "forced_closed",
    ]
    .into_iter()
    .map(|s| {
        (
            (provider.to_owned(), s.to_owned()),
            if s == current { 1.0 } else { 0.0 },
        )
    })
    .collect()
}

#[test]
fn state_labels_are_snake_case() {
    let labels: Vec<_> = BreakerState::ALL.iter().map(|s| s.as_label()).collect();
    assert_eq!(
        labels,
        [
            "closed",
            "open",
            "half_open",
            "forced_open",
            "forced_closed"
        ]
    );
}

#[test]
fn naming_publishes_the_current_state_before_any_transition() {
    let mut m = Metrics::default();
    let clock = ManualClock::new();
    m.record(|| named(&clock, "bedrock"));
    assert_eq!(m, Metrics::expect(&[], &[("bedrock", "closed")]));
}

#[test]
fn closed_to_open_counts_one_transition_and_moves_the_gauge() {
    for config in [
        config(),
        config().with_window_duration(Some(Duration::from_secs(60))),
    ] {
        let mut m = Metrics::default();
        let clock = ManualClock::new();
        let b = m.record(|| {
            CircuitBreaker::with_clock(config, Arc::new(clock.clone())).with_name("bedrock")
        });
        m.record(|| b.try_acquire().unwrap().record(fail()));
        assert_eq!(
            m,
            Metrics::expect(&[], &[("bedrock", "closed")]),
            "a failure below the limit is no transition"
        );
        m.record(|| {
            b.try_acquire().unwrap().record(fail());
            assert_eq!(b.state(), BreakerState::Open);
            // Rejections are no transitions.
            for _ in 0..10 {
                b.try_acquire().unwrap_err();
            }
        });
        assert_eq!(
            m,
            Metrics::expect(&[("bedrock", "closed", "open", 1)], &[("bedrock", "open")])
        );
    }
}

#[test]
fn half_open_probes_close_or_reopen() {
    let mut m = Metrics::default();
    let clock = ManualClock::new();
    let b = m.record(|| {
        let b = named(&clock, "bedrock");
        b.try_acquire().unwrap().record(fail());
        b.try_acquire().unwrap().record(fail());
        b
    });

    clock.advance(OPEN);
    let probe = m.record(|| b.try_acquire().unwrap());
    assert_eq!(
        m,
        Metrics::expect(
            &[
                ("bedrock", "closed", "open", 1),
                ("bedrock", "open", "half_open", 1),
            ],
            &[("bedrock", "half_open")]
        )
    );
    m.record(|| probe.record(fail()));
    assert_eq!(
        m,
        Metrics::expect(
            &[
                ("bedrock", "closed", "open", 1),
                ("bedrock", "open", "half_open", 1),
                ("bedrock", "half_open", "open", 1),
            ],
            &[("bedrock", "open")]
        )
    );

    // The second open period is backed off to 2 × OPEN.
    clock.advance(OPEN * 2);
    m.record(|| b.try_acquire().unwrap().record(Outcome::Success));
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(
        m,
        Metrics::expect(
            &[
                ("bedrock", "closed", "open", 1),
                ("bedrock", "open", "half_open", 2),
                ("bedrock", "half_open", "open", 1),
                ("bedrock", "half_open", "closed", 1),
            ],
            &[("bedrock", "closed")]
        )
    );
}

#[test]
fn forced_states_and_reset_are_transitions_but_repeats_are_not() {
    let mut m = Metrics::default();
    let clock = ManualClock::new();
    let b = m.record(|| named(&clock, "openai"));
    m.record(|| {
        b.force_open();
        b.force_open();
    });
    assert_eq!(
        m,
        Metrics::expect(
            &[("openai", "closed", "forced_open", 1)],
            &[("openai", "forced_open")]
        )
    );
    m.record(|| b.force_close());
    assert_eq!(
        m,
        Metrics::expect(
            &[
                ("openai", "closed", "forced_open", 1),
                ("openai", "forced_open", "forced_closed", 1),
            ],
            &[("openai", "forced_closed")]
        )
    );
    m.record(|| {
        b.reset();
        b.reset();
    });
    assert_eq!(
        m,
        Metrics::expect(
            &[
                ("openai", "closed", "forced_open", 1),
                ("openai", "forced_open", "forced_closed", 1),
                ("openai", "forced_closed", "closed", 1),
            ],
            &[("openai", "closed")]
        ),
        "a reset from CLOSED is no transition"
    );
}

#[test]
fn two_named_breakers_keep_their_own_series() {
    let mut m = Metrics::default();
    let clock = ManualClock::new();
    m.record(|| {
        let bedrock = named(&clock, "bedrock");
        let _openai = named(&clock, "openai");
        bedrock.force_open();
    });
    assert_eq!(
        m,
        Metrics::expect(
            &[("bedrock", "closed", "forced_open", 1)],
            &[("bedrock", "forced_open"), ("openai", "closed")]
        )
    );
}

#[test]
fn naming_an_open_breaker_publishes_its_state_and_renaming_zeroes_the_old_name() {
    let mut m = Metrics::default();
    let clock = ManualClock::new();
    let b = m.record(|| {
        let b = named(&clock, "old");
        b.force_open();
        b.with_name("new")
    });
    assert_eq!(
        m,
        Metrics::expect(
            &[("old", "closed", "forced_open", 1)],
            // `none`: every series of the old name at 0.
            &[("old", "none"), ("new", "forced_open")]
        )
    );
    m.record(|| b.reset());
    assert_eq!(
        m,
        Metrics::expect(
            &[
                ("old", "closed", "forced_open", 1),
                ("new", "forced_open", "closed", 1),
            ],
            &[("old", "none"), ("new", "closed")]
        )
    );
}

#[test]
fn unnamed_breakers_emit_nothing() {
    let mut m = Metrics::default();
    let clock = ManualClock::new();
    m.record(|| {
        let b = CircuitBreaker::with_clock(config(), Arc::new(clock.clone()));
        b.try_acquire().unwrap().record(fail());
        b.try_acquire().unwrap().record(fail());
        clock.advance(OPEN);
        b.try_acquire().unwrap().record(Outcome::Success);
        b.force_open();
        b.reset();
        assert_eq!(b.snapshot().recent_transitions.len(), 5);
    });
    assert_eq!(m, Metrics::default());
}

/// Counts every call into the facade (registrations are how each macro reaches a recorder).
#[derive(Default)]
struct Calls(AtomicUsize);

impl Calls {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

impl Recorder for Calls {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        self.0.fetch_add(1, Ordering::SeqCst);
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        self.0.fetch_add(1, Ordering::SeqCst);
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        self.0.fetch_add(1, Ordering::SeqCst);
        Histogram::noop()
    }
}

#[test]
fn the_closed_hot_path_never_calls_the_facade() {
    let calls = Calls::default();
    let clock = ManualClock::new();
    metrics::with_local_recorder(&calls, || {
        let b = named(&clock, "bedrock");
        assert_eq!(calls.take(), 5, "naming sets the five state series");
        for _ in 0..1000 {
            b.try_acquire().unwrap().record(Outcome::Success);
            b.try_acquire_for("tenant")
                .unwrap()
                .record(Outcome::Success);
            drop(b.try_acquire().unwrap());
            b.try_acquire().unwrap().record(Outcome::Ignored);
        }
        // A failure below the trip limit takes the lock but is no transition either.
        b.try_acquire().unwrap().record(fail());
        b.try_acquire().unwrap().record(Outcome::Success);
        let _ = b.snapshot();
        assert_eq!(calls.take(), 0);
        b.force_open();
        assert_eq!(
            calls.take(),
            3,
            "a transition: the counter and two state series"
        );
    });
}
