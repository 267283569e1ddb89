//! The service harness reports tests of an unavailable service as ignored (or failed when
//! services are required) and runs them when it is available — checked through
//! libtest-mimic's own conclusion, so "ignored" is what the summary counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use failover_testenv::harness::libtest_mimic::{Arguments, run};
use failover_testenv::harness::{AsyncTest, trials};

/// The inner run's report goes to a log file, so its "FAILED" lines (the point of two of
/// these tests) never mix with this binary's own output.
fn quiet(name: &str) -> Arguments {
    let log = std::env::temp_dir().join(format!(
        "failover-harness-{name}-{}.log",
        std::process::id()
    ));
    Arguments {
        quiet: true,
        test_threads: Some(1),
        logfile: Some(log.to_string_lossy().into_owned()),
        ..Arguments::default()
    }
}

fn counting_tests(ran: &Arc<AtomicUsize>) -> Vec<AsyncTest> {
    (0..3)
        .map(|i| {
            let ran = ran.clone();
            AsyncTest::new(format!("test_{i}"), move || async move {
                ran.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect()
}

#[test]
fn an_unavailable_service_makes_every_test_ignored_and_none_run() {
    let ran = Arc::new(AtomicUsize::new(0));
    let conclusion = run(
        &quiet("ignored"),
        trials("redis", Err("not on PATH"), counting_tests(&ran), false),
    );
    assert_eq!(
        (
            conclusion.num_passed,
            conclusion.num_ignored,
            conclusion.num_failed
        ),
        (0, 3, 0)
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_required_unavailable_service_fails_every_test() {
    let ran = Arc::new(AtomicUsize::new(0));
    let conclusion = run(
        &quiet("failed"),
        trials("redis", Err("not on PATH"), counting_tests(&ran), true),
    );
    assert_eq!(
        (
            conclusion.num_passed,
            conclusion.num_ignored,
            conclusion.num_failed
        ),
        (0, 0, 3)
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn an_available_service_runs_every_test_and_a_panic_fails_it() {
    let ran = Arc::new(AtomicUsize::new(0));
    let mut tests = counting_tests(&ran);
    tests.push(AsyncTest::new("panics", || async {
        panic!("a real failure")
    }));
    let conclusion = run(
        &quiet("ran"),
        trials("redis", Ok::<(), &str>(()), tests, false),
    );
    assert_eq!(
        (
            conclusion.num_passed,
            conclusion.num_ignored,
            conclusion.num_failed
        ),
        (3, 0, 1)
    );
    assert_eq!(ran.load(Ordering::SeqCst), 3);
}
