//! What the engine's metrics must say after a scenario: its requests, provider attempts,
//! fallbacks, cache lookups and breaker transitions, counted exactly by the test's own recorder
//! ([`failover_testenv::recorded`]).

use std::collections::BTreeMap;

use failover_testenv::recorded;

/// The counter families of the request path that the seed's scenarios pin down.
pub const ENGINE_COUNTERS: &[&str] = &[
    "failover.requests",
    "failover.provider.attempts",
    "failover.fallbacks",
    "failover.coalesced",
    "failover.cache.hits",
    "failover.cache.misses",
    "failover.cache.errors",
    "failover.cache.timeouts",
    "failover.usage.rejected",
    "failover.breaker.transitions",
];

/// A counter series as the recorder names it: `name{key=value,…}`, labels sorted.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

/// `failover.requests` of the seed's (non-streamed) requests for `model` ending `outcome`.
pub fn requests(model: &str, outcome: &str) -> String {
    series(
        "failover.requests",
        &[
            ("failover.outcome", outcome),
            ("failover.stream", "false"),
            ("gen_ai.request.model", model),
        ],
    )
}

/// `failover.provider.attempts` of `provider` (chain name; its GenAI name is derived) on
/// `model` ending `outcome`, with `error` for failures.
pub fn attempts(provider: &str, model: &str, outcome: &str, error: Option<&str>) -> String {
    let mut labels = vec![
        ("failover.provider", provider),
        ("gen_ai.provider.name", gen_ai_name(provider)),
        ("gen_ai.request.model", model),
        ("failover.outcome", outcome),
    ];
    if let Some(kind) = error {
        labels.push(("error.type", kind));
    }
    series("failover.provider.attempts", &labels)
}

/// `failover.fallbacks` of answers by `provider` on `model`.
pub fn fallbacks(provider: &str, model: &str) -> String {
    series(
        "failover.fallbacks",
        &[
            ("failover.provider", provider),
            ("gen_ai.provider.name", gen_ai_name(provider)),
            ("gen_ai.request.model", model),
        ],
    )
}

/// `failover.breaker.transitions` of `provider`'s breaker from `from` to `to` (label
/// values: `closed`, `open`, `half_open`, `forced_open`, `forced_closed`).
pub fn transitions(provider: &str, from: &str, to: &str) -> String {
    series(
        "failover.breaker.transitions",
        &[
            ("failover.provider", provider),
            ("failover.breaker.from", from),
            ("failover.breaker.to", to),
        ],
    )
}

fn gen_ai_name(provider: &str) -> &str {
    match provider {
        crate::BEDROCK => "aws.bedrock",
        _ => "openai",
    }
}

/// Asserts that the engine's counters moved by exactly `expected` since the last snapshot
/// of this test (and takes a new one): every listed series by its count, and no other
/// series of [`ENGINE_COUNTERS`] at all.
#[track_caller]
pub fn assert_counted(expected: &[(String, u64)]) {
    let counted = recorded::snapshot().counted(ENGINE_COUNTERS);
    let expected: BTreeMap<String, u64> = expected.iter().cloned().collect();
    assert_eq!(
        counted, expected,
        "engine counters differ from the scenario's"
    );
}
