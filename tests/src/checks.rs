//! What the scenario suite's modules share: reading back what the stores hold after a
//! test, and the assertions every class makes on them. The system itself is assembled by
//! the [`Harness`], for whichever mode and tier the suite runs in.

use std::time::Duration;

use failover_core::FailoverAdapter;
use failover_provider::{Completion, CompletionRequest};
use failover_standin::{StandIns, Vendor};
use failover_usage::UsageRecord;

use crate::Harness;
use crate::stores::StoredEntry;

/// The adapter's default cache TTL (one hour): the longest TTL an entry written with the
/// suite's default settings may carry.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);

/// The harness's seed request ([`Harness::request`]) on behalf of `tenant_id`.
pub fn request_for(harness: &Harness, tenant_id: &str, prompt: &str) -> CompletionRequest {
    let mut request = harness.request(prompt);
    request.tenant_id = tenant_id.to_owned();
    request
}

/// Asserts that `completion` was served by the model its provider was routed to: the
/// completion names the model as the provider reported it — the routed one or a dated
/// version of it (`gpt-4-0613` for `gpt-4`) — and its last attempt the routed one.
pub fn assert_served_by_route(completion: &Completion) {
    let routed = &completion
        .attempts
        .last()
        .expect("a provider answered")
        .model;
    assert!(
        completion.model.starts_with(routed.as_str()),
        "served by {}, routed to {routed}",
        completion.model
    );
}

/// The usage items DynamoDB holds for `tenant_id` once `adapter` has flushed its queue, in
/// call order: by timestamp, then by attempt — a request's failed attempt and its fallback
/// often land in the same millisecond, where the table's own order (the random call id in
/// the sort key) would be arbitrary.
pub async fn stored_usage(
    harness: &Harness,
    adapter: &FailoverAdapter,
    tenant_id: &str,
) -> Vec<UsageRecord> {
    adapter
        .flush_usage()
        .await
        .expect("the usage queue flushes to DynamoDB");
    let mut records = harness.usage_table().records(tenant_id).await;
    records.sort_by_key(|record| (record.timestamp_unix_ms, record.attempt));
    records
}

/// The cache entries Redis holds for `tenant_id`, after checking what every entry of the
/// harness must satisfy: under the harness's prefix, a TTL set and no longer than
/// `max_ttl`, and no byte of any of `prompts` in the key or the (sealed) value.
pub async fn stored_cache_entries(
    harness: &Harness,
    tenant_id: &str,
    max_ttl: Duration,
    prompts: &[&str],
) -> Vec<StoredEntry> {
    let all = harness.cache_store().entries().await;
    for entry in &all {
        assert!(
            entry
                .key
                .starts_with(&format!("{}:{{", harness.cache_store().prefix())),
            "{entry:?}"
        );
        let ttl = entry
            .ttl
            .unwrap_or_else(|| panic!("no TTL on {}", entry.key));
        assert!(ttl <= max_ttl, "TTL {ttl:?} above {max_ttl:?}");
        for prompt in prompts {
            assert!(
                !entry.key.contains(prompt),
                "prompt text in key {}",
                entry.key
            );
            assert!(
                !contains(&entry.value, prompt.as_bytes()),
                "prompt text in the stored value of {}",
                entry.key
            );
        }
    }
    harness
        .cache_store()
        .entries_of(&harness.tenant_tag(tenant_id))
        .await
}

/// The request paths the Bedrock stand-in received, in order
/// (`/model/{percent-encoded model id}/converse…`; compare with
/// [`converse_path`](failover_standin::eventstream::converse_path)).
pub async fn bedrock_paths(standins: &StandIns) -> Vec<String> {
    standins
        .requests(Vendor::Bedrock)
        .await
        .iter()
        .map(|request| request.url.path().to_owned())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}
