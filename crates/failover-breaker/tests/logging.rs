//! Every transition is logged exactly once, at the right level, with its fields; rejections
//! and ordinary outcomes log nothing.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_breaker::{
    Breaker, BreakerConfig, BreakerState, CircuitBreaker, ManualClock, Outcome,
};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One captured event: its level and its fields, rendered.
#[derive(Debug, Clone)]
struct Captured {
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .unwrap_or_else(|| panic!("no field {name} in {self:?}"))
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            fields,
        });
    }
}

impl Capture {
    /// Runs `f` with this capture as the thread's subscriber.
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::with_default(subscriber, f)
    }

    /// The events captured since the last call, as `(level, from, to)`.
    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn transitions(events: &[Captured]) -> Vec<(Level, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.level,
                e.field("from").to_owned(),
                e.field("to").to_owned(),
            )
        })
        .collect()
}

fn fail() -> Outcome {
    Outcome::Failure {
        kind: "server_error",
        retry_after: None,
    }
}

const OPEN: Duration = Duration::from_secs(10);

fn breaker(clock: &ManualClock) -> CircuitBreaker {
    let config = BreakerConfig::default()
        .with_consecutive_failures(2)
        .with_open_duration(OPEN)
        .with_jitter(0.0)
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1);
    CircuitBreaker::with_clock(config, Arc::new(clock.clone())).with_name("bedrock")
}

#[test]
fn each_transition_logs_once_and_rejections_log_nothing() {
    let capture = Capture::default();
    let clock = ManualClock::new();
    capture.run(|| {
        let b = breaker(&clock);
        assert_eq!(&*b.name(), "bedrock");
        b.try_acquire().unwrap().record(Outcome::Success);
        b.try_acquire().unwrap().record(fail());
        assert!(
            capture.take().is_empty(),
            "outcomes without a transition log nothing"
        );

        b.try_acquire().unwrap().record(fail());
        let events = capture.take();
        assert_eq!(
            transitions(&events),
            [(Level::WARN, "CLOSED".into(), "OPEN".into())]
        );
        let open = &events[0];
        assert_eq!(open.field("breaker"), "bedrock");
        assert_eq!(open.field("trips"), "1");
        assert_eq!(open.field("last_error_kind"), "server_error");
        assert_eq!(open.field("failure_rate"), format!("{:?}", 2.0 / 3.0));
        assert_eq!(open.field("next_probe_in_ms"), "10000");
        assert_eq!(open.field("open_for_ms"), "0");
        assert_eq!(open.field("needs_operator"), "");

        for _ in 0..50 {
            assert_eq!(b.try_acquire().unwrap_err().state, BreakerState::Open);
        }
        let _ = b.snapshot();
        assert!(capture.take().is_empty(), "rejections log nothing");

        clock.advance(OPEN);
        let probe = b.try_acquire().unwrap();
        // HALF_OPEN with its one slot taken: rejections there log nothing either.
        assert_eq!(b.try_acquire().unwrap_err().state, BreakerState::HalfOpen);
        let events = capture.take();
        assert_eq!(
            transitions(&events),
            [(Level::INFO, "OPEN".into(), "HALF_OPEN".into())]
        );
        assert_eq!(events[0].field("open_for_ms"), "10000");

        probe.record(fail());
        let events = capture.take();
        assert_eq!(
            transitions(&events),
            [(Level::WARN, "HALF_OPEN".into(), "OPEN".into())]
        );
        assert_eq!(events[0].field("trips"), "2");
        assert_eq!(events[0].field("next_probe_in_ms"), "20000");

        clock.advance(OPEN * 2);
        b.try_acquire().unwrap().record(Outcome::Success);
        let events = capture.take();
        assert_eq!(
            transitions(&events),
            [
                (Level::INFO, "OPEN".into(), "HALF_OPEN".into()),
                (Level::INFO, "HALF_OPEN".into(), "CLOSED".into()),
            ]
        );
        assert_eq!(events[1].field("open_for_ms"), "30000");

        b.force_open();
        b.force_open();
        assert_eq!(b.try_acquire().unwrap_err().state, BreakerState::ForcedOpen);
        b.force_close();
        b.reset();
        b.reset();
        assert_eq!(
            transitions(&capture.take()),
            [
                (Level::WARN, "CLOSED".into(), "FORCED_OPEN".into()),
                (Level::INFO, "FORCED_OPEN".into(), "FORCED_CLOSED".into()),
                (Level::INFO, "FORCED_CLOSED".into(), "CLOSED".into()),
            ],
            "a repeated force or reset is no transition"
        );
    });
}

#[test]
fn a_configuration_fault_trip_logs_the_fault_and_the_long_hold() {
    let capture = Capture::default();
    let clock = ManualClock::new();
    capture.run(|| {
        let b = breaker(&clock);
        b.try_acquire().unwrap().record(fail());
        b.try_acquire().unwrap().record(Outcome::NeedsOperator {
            kind: "access_denied",
        });
        let events = capture.take();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].level, Level::WARN);
        assert_eq!(events[0].field("needs_operator"), "access_denied");
        assert_eq!(events[0].field("next_probe_in_ms"), "600000");
    });
}

#[test]
fn unnamed_breakers_log_as_unnamed() {
    let capture = Capture::default();
    capture.run(|| {
        let b = CircuitBreaker::new(BreakerConfig::default());
        b.force_open();
        let events = capture.take();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].field("breaker"), "unnamed");
    });
}
