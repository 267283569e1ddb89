//! A `metrics` recorder of the test's own: what a test's code emitted, and nothing any other
//! test running in parallel did.
//!
//! A global recorder would mix the counts of every test in the binary, so each test runtime
//! of [`harness`](crate::harness) gets a recorder of its own, installed as the thread-local
//! default on every thread of that runtime (workers and blocking threads) and on the thread
//! that drives it. Code under test registers its handles there, whatever task or thread of
//! the runtime it runs on; [`snapshot`] reads them from any of those threads.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

thread_local! {
    static CURRENT: RefCell<Option<Snapshotter>> = const { RefCell::new(None) };
}

/// One test's recorder.
#[derive(Debug, Clone, Copy)]
pub struct TestRecorder {
    recorder: &'static DebuggingRecorder,
}

impl TestRecorder {
    /// A fresh recorder. It lives until the process ends (a few bytes per test), so that
    /// threads of the test's runtime may keep it as their default for as long as they run.
    pub fn new() -> Self {
        Self {
            recorder: Box::leak(Box::new(DebuggingRecorder::new())),
        }
    }

    /// Makes this recorder the current thread's default for as long as the thread lives
    /// (for the threads of a test's runtime, which die with it).
    pub fn install_for_thread(self) {
        std::mem::forget(metrics::set_default_local_recorder(self.recorder));
        CURRENT.with(|current| *current.borrow_mut() = Some(self.recorder.snapshotter()));
    }

    /// Runs `body` with this recorder as the current thread's default, then restores the
    /// thread's previous state (for a thread that outlives the test).
    pub fn run<T>(self, body: impl FnOnce() -> T) -> T {
        let _guard = metrics::set_default_local_recorder(self.recorder);
        let previous =
            CURRENT.with(|current| current.borrow_mut().replace(self.recorder.snapshotter()));
        let result = body();
        CURRENT.with(|current| *current.borrow_mut() = previous);
        result
    }
}

impl Default for TestRecorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `test` on a thread of its own, on a current-thread runtime, with a fresh recorder as
/// that thread's default — so every task the test spawns reports to it and nothing of any
/// other test does — giving it the recorder's snapshotter. A panic of the test is re-raised.
/// For tests under the plain libtest harness, whose threads have no test recorder.
pub fn with_thread_recorder<F, Fut>(test: F)
where
    F: FnOnce(Snapshotter) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        let recorder = DebuggingRecorder::new();
        let _guard = metrics::set_default_local_recorder(&recorder);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
            .block_on(test(recorder.snapshotter()));
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// What the metrics of the current test changed since the last snapshot (counters and
/// gauges reset, histograms drained, at each snapshot), keyed `name{label=value,…}` with
/// labels sorted. Empty when the thread has no test recorder.
pub fn snapshot() -> Recorded {
    let Some(snapshotter) = CURRENT.with(|current| current.borrow().clone()) else {
        return Recorded::default();
    };
    let mut recorded = Recorded::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match value {
            DebugValue::Counter(count) => {
                recorded.counters.insert(name, count);
            }
            DebugValue::Gauge(gauge) => {
                recorded.gauges.insert(name, gauge.into_inner());
            }
            DebugValue::Histogram(samples) => {
                recorded
                    .histograms
                    .insert(name, samples.into_iter().map(|s| s.into_inner()).collect());
            }
        }
    }
    recorded
}

/// A snapshot of one test's metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recorded {
    /// Counters, by `name{labels}`.
    pub counters: BTreeMap<String, u64>,
    /// Gauges, by `name{labels}`.
    pub gauges: BTreeMap<String, f64>,
    /// Histogram samples, by `name{labels}`.
    pub histograms: BTreeMap<String, Vec<f64>>,
}

impl Recorded {
    /// The counters of the families `names` that are not zero.
    pub fn counted(&self, names: &[&str]) -> BTreeMap<String, u64> {
        self.counters
            .iter()
            .filter(|(key, count)| {
                **count > 0
                    && names.iter().any(|name| {
                        key.strip_prefix(name)
                            .is_some_and(|rest| rest.starts_with('{'))
                    })
            })
            .map(|(key, count)| (key.clone(), *count))
            .collect()
    }

    /// How many samples histograms of the family `name` received.
    pub fn samples(&self, name: &str) -> usize {
        self.histograms
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{'))
            })
            .map(|(_, samples)| samples.len())
            .sum()
    }
}
