//! `failover.redis.duration` against a real `redis-server`: one sample per Redis command,
//! labelled with the command and `ok`; a stopped server gives `error` samples, and so does
//! a call its time budget cuts short (a black-holed endpoint).
//!
//! Each test runs on a thread of its own, on a current-thread runtime, with a
//! `DebuggingRecorder` as that thread's recorder (`set_default_local_recorder`) — never a
//! global one: the tests of this binary run in parallel. Each owns its `redis-server`, so a
//! purge's `SCAN` walk sees only the test's own keys (one page).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use failover_cache::Cache;
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig};
use failover_telemetry::names::{label, metric, value};
use failover_testenv::recorded::with_thread_recorder;
use failover_testenv::require_service;
use failover_testenv::services::BlackHole;
use failover_testenv::services::redis as redis_service;
use failover_testkit::suites::cache::{World, sample_completion};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, Snapshotter};

failover_testenv::service_test_main! {
    service: "redis-server",
    available: failover_testenv::services::find_binary("redis-server", std::env::var_os("PATH").as_deref()).ok_or("`redis-server` was not found on PATH"),
    tests: [
        every_command_is_one_ok_sample_labelled_with_its_name,
        a_stopped_server_gives_error_samples_until_it_is_back,
        a_call_cut_by_its_timeout_is_an_error_sample_of_that_length,
    ],
}

const TTL: Duration = Duration::from_secs(300);

/// The `failover.redis.duration` samples since the previous snapshot (a snapshot empties
/// the histograms), by (command, result), leaving out those without any. Every other metric
/// is a failure: the cache emits nothing else.
fn samples(snapshotter: &Snapshotter) -> BTreeMap<(String, String), Vec<f64>> {
    let mut samples = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        assert_eq!(
            (kind, key.name()),
            (MetricKind::Histogram, metric::REDIS_DURATION)
        );
        let labels: BTreeMap<&str, &str> = key.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(labels.len(), 2, "{labels:?}");
        let DebugValue::Histogram(values) = value else {
            panic!("{value:?}")
        };
        if values.is_empty() {
            continue;
        }
        let values: Vec<f64> = values.into_iter().map(|v| v.0).collect();
        for v in &values {
            assert!(v.is_finite() && *v >= 0.0 && *v < 60.0, "{v}");
        }
        samples.insert(
            (
                labels[label::STORE_OPERATION].to_owned(),
                labels[label::STORE_RESULT].to_owned(),
            ),
            values,
        );
    }
    samples
}

/// How many samples each (command, result) has.
fn counts(snapshotter: &Snapshotter) -> BTreeMap<(String, String), usize> {
    samples(snapshotter)
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect()
}

fn expect(list: &[(&str, &str, usize)]) -> BTreeMap<(String, String), usize> {
    list.iter()
        .map(|&(command, result, n)| ((command.to_owned(), result.to_owned()), n))
        .collect()
}

/// A hit, a miss, a write, a zero-TTL write, a value that fails to open (deleted), a ping and
/// a purge: each Redis command they send is one `ok` sample under its own name.
async fn every_command_is_one_ok_sample_labelled_with_its_name() {
    let server = require_service!(redis_service::spawn_owned());
    with_thread_recorder(move |snapshotter| async move {
        let cache = common::cache(&server.url());
        let world = World::new();
        let key = world.key("tenant-a", "q");
        cache.put(&key, sample_completion("x"), TTL).await.unwrap();
        assert!(cache.get(&key).await.unwrap().is_some());
        assert!(
            cache
                .get(&world.key("tenant-a", "other"))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            counts(&snapshotter),
            expect(&[("SET", value::OK, 1), ("GET", value::OK, 2)])
        );

        cache
            .put(
                &world.key("tenant-a", "gone"),
                sample_completion("x"),
                Duration::ZERO,
            )
            .await
            .unwrap();
        cache.ping().await.unwrap();
        assert_eq!(
            counts(&snapshotter),
            expect(&[("DEL", value::OK, 1), ("PING", value::OK, 1)])
        );

        // Another request's value moved under this key (raw commands, not the cache's): it
        // fails to open, is a miss, and the cache deletes it.
        let moved = world.key("tenant-a", "moved");
        let mut raw = common::raw(&server.url()).await;
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(cache.redis_key(&key))
            .query_async(&mut raw)
            .await
            .unwrap();
        let () = redis::cmd("SET")
            .arg(cache.redis_key(&moved))
            .arg(stored)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(cache.get(&moved).await.unwrap().is_none());
        assert_eq!(cache.stats().rejected, 1);
        assert_eq!(
            counts(&snapshotter),
            expect(&[("GET", value::OK, 1), ("DEL", value::OK, 1)])
        );

        // The tenant's one entry: one SCAN page (this server holds nothing else), one UNLINK.
        assert_eq!(cache.purge_tenant(key.tenant()).await.unwrap(), 1);
        assert_eq!(
            counts(&snapshotter),
            expect(&[("SCAN", value::OK, 1), ("UNLINK", value::OK, 1)])
        );
        // Nothing left: a SCAN and no UNLINK.
        assert_eq!(cache.purge_tenant(key.tenant()).await.unwrap(), 0);
        assert_eq!(counts(&snapshotter), expect(&[("SCAN", value::OK, 1)]));
    });
}

/// The server killed: every operation is one `error` sample of its command, as many as the
/// cache's own error and time-out counters; restarted: `ok` again.
async fn a_stopped_server_gives_error_samples_until_it_is_back() {
    let server = require_service!(redis_service::spawn_owned());
    with_thread_recorder(move |snapshotter| async move {
        let cache = common::cache(&server.url());
        let world = World::new();
        let key = world.key("tenant-a", "q");
        cache.put(&key, sample_completion("x"), TTL).await.unwrap();
        assert_eq!(counts(&snapshotter), expect(&[("SET", value::OK, 1)]));

        server.stop();
        assert!(cache.get(&key).await.is_err());
        assert!(cache.put(&key, sample_completion("x"), TTL).await.is_err());
        assert!(cache.ping().await.is_err());
        assert!(cache.purge_tenant(key.tenant()).await.is_err());
        assert_eq!(
            counts(&snapshotter),
            expect(&[
                ("GET", value::ERROR, 1),
                ("SET", value::ERROR, 1),
                ("PING", value::ERROR, 1),
                ("SCAN", value::ERROR, 1),
            ])
        );
        let health = cache.health();
        assert_eq!(health.errors + health.timeouts, 4, "{health:?}");

        server.restart().unwrap();
        // The connection manager reconnects on its own; the first calls after a restart may
        // still fail while it does. Each call is one sample either way.
        let mut calls = 0;
        while cache.ping().await.is_err() {
            calls += 1;
            assert!(calls < 50, "the cache did not come back");
        }
        let back = counts(&snapshotter);
        assert_eq!(back.get(&("PING".into(), value::OK.into())), Some(&1));
        assert_eq!(
            back.get(&("PING".into(), value::ERROR.into()))
                .copied()
                .unwrap_or(0),
            calls
        );
        assert!(cache.get(&key).await.unwrap().is_none(), "restarted empty");
        assert_eq!(counts(&snapshotter), expect(&[("GET", value::OK, 1)]));
    });
}

/// An endpoint that accepts connections and never answers: the lookup is cut at the
/// operation timeout, and that is one `GET` `error` sample at least that long.
async fn a_call_cut_by_its_timeout_is_an_error_sample_of_that_length() {
    let hole = BlackHole::start().unwrap();
    let timeout = Duration::from_millis(150);
    with_thread_recorder(move |snapshotter| async move {
        let cache = ElastiCacheCache::new(
            ElastiCacheConfig::new(format!("redis://{}", hole.addr()), common::fresh_key())
                .with_key_prefix(common::fresh_prefix())
                .with_operation_timeout(timeout)
                .with_connect_timeout(timeout),
        )
        .unwrap();
        let key = World::new().key("tenant-a", "q");
        assert!(cache.get(&key).await.is_err());
        let samples = samples(&snapshotter);
        assert_eq!(
            samples.keys().collect::<Vec<_>>(),
            [&("GET".to_owned(), value::ERROR.to_owned())]
        );
        let cut = &samples[&("GET".to_owned(), value::ERROR.to_owned())];
        assert_eq!(cut.len(), 1);
        // Never shorter than the budget (tokio's timer does not fire early); a bound above
        // only for a machine that is not stalled.
        assert!(
            cut[0] >= timeout.as_secs_f64() * 0.95 && cut[0] < 10.0,
            "{cut:?}"
        );
        assert_eq!(cache.health().timeouts, 1);
        drop(hole);
    });
}
