//! Request coalescing on the real system: identical concurrent requests of one tenant that
//! miss the cache cause one provider call and every caller gets its answer — never across
//! tenants. (The fine-grained cases — failed leaders, interrupted stream leaders — run with
//! scripted providers and paused time in `failover-core/tests/coalescing.rs`.)

use std::time::Duration;

use failover_core::FailoverAdapter;
use failover_provider::{Completion, CompletionRequest, StreamChunk};
use failover_scenarios::Harness;
use failover_scenarios::runner::SuiteTest;
use failover_scenarios::{CACHE_TTL, stored_cache_entries, stored_usage};
use failover_standin::{Fault, Vendor};
use futures::StreamExt;

pub(crate) fn tests() -> Vec<SuiteTest> {
    failover_scenarios::suite_tests! {
        both: [
            concurrent_identical_requests_cause_one_provider_call,
            tenants_never_share_a_provider_call,
        ],
        offline_only("slows the stand-in so every caller joins the flight"): [
            followers_wait_for_the_leaders_flight_and_share_its_answer,
            a_stream_leader_answers_waiting_plain_calls_and_streams_call_on_their_own,
        ],
    }
}

const CALLERS: usize = 8;

async fn concurrently(
    adapter: &FailoverAdapter,
    request: &CompletionRequest,
    callers: usize,
) -> Vec<Completion> {
    let calls = (0..callers).map(|_| adapter.generate_completion(request.clone()));
    futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Whether the callers joined the leader's flight or, arriving after it landed, read its
/// cache entry, the provider is called once and everyone gets the same answer.
async fn concurrent_identical_requests_cause_one_provider_call() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let request = harness.request("What is the tallest mountain on Earth?");
    let results = concurrently(&adapter, &request, CALLERS).await;
    assert!(
        results
            .iter()
            .all(|result| result.content == results[0].content)
    );
    assert_eq!(
        results.iter().filter(|result| !result.cached).count(),
        1,
        "one leader paid for the call"
    );
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(
        stored.len(),
        1,
        "one provider call, one usage item: {stored:?}"
    );
    let cache = adapter.health().cache.unwrap();
    assert_eq!(
        cache.coalesced + cache.hits,
        u64::try_from(CALLERS - 1).unwrap()
    );
    let entries = stored_cache_entries(&harness, &harness.tenant(), CACHE_TTL, &[]).await;
    assert_eq!(entries.len(), 1, "one answer, one entry: {entries:?}");
}

async fn tenants_never_share_a_provider_call() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let prompt = "What is the longest river in Africa?";
    let mut other = harness.request(prompt);
    other.tenant_id = harness.tenant_named("other_tenant");
    let (a, b) = tokio::join!(
        adapter.generate_completion(harness.request(prompt)),
        adapter.generate_completion(other.clone()),
    );
    assert!(!a.unwrap().cached && !b.unwrap().cached);
    assert_eq!(
        stored_usage(&harness, &adapter, &harness.tenant())
            .await
            .len(),
        1
    );
    assert_eq!(
        stored_usage(&harness, &adapter, &other.tenant_id)
            .await
            .len(),
        1
    );
    if let Some(standins) = harness.standins() {
        assert_eq!(standins.calls(Vendor::Bedrock).await, 2);
    }
}

async fn followers_wait_for_the_leaders_flight_and_share_its_answer() {
    let harness = Harness::start().await;
    harness
        .offline()
        .inject(Vendor::Bedrock, Fault::Slow(Duration::from_millis(500)), 1)
        .await;
    let adapter = harness.adapter();
    let request = harness.request("What is the deepest ocean trench?");
    let results = concurrently(&adapter, &request, CALLERS).await;
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 1);
    assert!(
        results
            .iter()
            .all(|result| result.content == results[0].content)
    );
    assert_eq!(
        adapter.health().cache.unwrap().coalesced,
        u64::try_from(CALLERS - 1).unwrap(),
        "every follower joined the flight (the answer took 500 ms)"
    );
    let stored = stored_usage(&harness, &adapter, &harness.tenant()).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let entries = stored_cache_entries(&harness, &harness.tenant(), CACHE_TTL, &[]).await;
    assert_eq!(entries.len(), 1);
}

/// A plain call waits for an identical stream in flight; a second stream does not (waiting
/// would make its time to first token the leader's whole generation): it calls on its own.
async fn a_stream_leader_answers_waiting_plain_calls_and_streams_call_on_their_own() {
    let harness = Harness::start().await;
    let adapter = harness.adapter();
    let stream_text = |request: CompletionRequest| {
        let adapter = adapter.clone();
        async move {
            adapter
                .stream_completion(request)
                .await
                .unwrap()
                .filter_map(|chunk| async move {
                    match chunk.unwrap() {
                        StreamChunk::Delta { text } => Some(text),
                        _ => None,
                    }
                })
                .collect::<String>()
                .await
        }
    };
    let reply = failover_standin::BEDROCK_REPLY;

    // A plain call joins the stream's flight.
    harness
        .offline()
        .inject(Vendor::Bedrock, Fault::Slow(Duration::from_millis(500)), 1)
        .await;
    let request = harness.request("Spell the word failover.");
    let (streamed, plain) = tokio::join!(stream_text(request.clone()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        adapter.generate_completion(request.clone()).await.unwrap()
    });
    assert_eq!((streamed.as_str(), plain.content.as_str()), (reply, reply));
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 1);
    assert_eq!(adapter.health().cache.unwrap().coalesced, 1);

    // A second stream does not wait for the first: it calls, and finishes, on its own.
    harness
        .offline()
        .inject(Vendor::Bedrock, Fault::Slow(Duration::from_millis(500)), 1)
        .await;
    let request = harness.request("Spell the word resilience.");
    let (slow, fast) = tokio::join!(stream_text(request.clone()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream_text(request.clone()).await
    });
    assert_eq!((slow.as_str(), fast.as_str()), (reply, reply));
    assert_eq!(harness.offline().calls(Vendor::Bedrock).await, 3);
    assert_eq!(adapter.health().cache.unwrap().coalesced, 1);
    assert_eq!(
        stored_usage(&harness, &adapter, &harness.tenant())
            .await
            .len(),
        3
    );
}
