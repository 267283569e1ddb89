//! Queries over usage records and their aggregation, written once for every backend.

use std::collections::BTreeMap;

use failover_provider::{TokenUsage, Usd};
use serde::{Deserialize, Serialize};

use crate::record::{UsageOutcome, UsageRecord};

/// Which records [`UsageSink::stats`](crate::UsageSink::stats) aggregates. Every set filter
/// must match; an empty query matches everything.
///
/// ```
/// use failover_usage::UsageQuery;
/// let q = UsageQuery::tenant("acme").with_agent("support-bot").between(1_000, 2_000);
/// assert_eq!(q.tenant_id.as_deref(), Some("acme"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageQuery {
    /// Only this tenant's records.
    pub tenant_id: Option<String>,
    /// Only this agent's records.
    pub agent_id: Option<String>,
    /// Only records with `timestamp_unix_ms >= from_unix_ms` (inclusive).
    pub from_unix_ms: Option<u64>,
    /// Only records with `timestamp_unix_ms < to_unix_ms` (exclusive).
    pub to_unix_ms: Option<u64>,
}

impl UsageQuery {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every record of one tenant.
    pub fn tenant(tenant_id: impl Into<String>) -> Self {
        Self::all().with_tenant(tenant_id)
    }

    /// Every record of one agent (of any tenant).
    pub fn agent(agent_id: impl Into<String>) -> Self {
        Self::all().with_agent(agent_id)
    }

    /// Restricts to one tenant.
    pub fn with_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Restricts to one agent.
    pub fn with_agent(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// Restricts to records at or after `from_unix_ms`.
    pub fn since(mut self, from_unix_ms: u64) -> Self {
        self.from_unix_ms = Some(from_unix_ms);
        self
    }

    /// Restricts to records before `to_unix_ms`.
    pub fn until(mut self, to_unix_ms: u64) -> Self {
        self.to_unix_ms = Some(to_unix_ms);
        self
    }

    /// Restricts to `from_unix_ms <= timestamp < to_unix_ms`.
    pub fn between(self, from_unix_ms: u64, to_unix_ms: u64) -> Self {
        self.since(from_unix_ms).until(to_unix_ms)
    }

    /// Whether `record` matches every set filter.
    pub fn matches(&self, record: &UsageRecord) -> bool {
        self.tenant_id
            .as_deref()
            .is_none_or(|t| t == record.tenant_id)
            && self
                .agent_id
                .as_deref()
                .is_none_or(|a| a == record.agent_id)
            && self
                .from_unix_ms
                .is_none_or(|from| record.timestamp_unix_ms >= from)
            && self
                .to_unix_ms
                .is_none_or(|to| record.timestamp_unix_ms < to)
    }
}

/// Totals of one group of records (one tenant, agent, provider or model).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBucket {
    /// Records in the group (provider calls and cache hits).
    pub calls: u64,
    /// Provider calls that succeeded.
    pub successes: u64,
    /// Provider calls that failed.
    pub failures: u64,
    /// Calls the caller cancelled.
    pub cancelled: u64,
    /// Answers served from the response cache.
    pub cache_hits: u64,
    /// Requests no provider could be called for (every breaker open).
    pub rejected: u64,
    /// Tokens consumed.
    pub tokens: TokenUsage,
    /// Exact cost.
    pub cost: Usd,
}

impl UsageBucket {
    /// Counts one record.
    pub fn add(&mut self, record: &UsageRecord) {
        self.calls += 1;
        match record.outcome {
            UsageOutcome::Success => self.successes += 1,
            UsageOutcome::Failed { .. } => self.failures += 1,
            UsageOutcome::Cancelled => self.cancelled += 1,
            UsageOutcome::CacheHit => self.cache_hits += 1,
            UsageOutcome::Rejected => self.rejected += 1,
        }
        self.tokens += record.usage;
        self.cost += record.cost;
    }

    /// Adds another bucket's totals.
    pub fn merge(&mut self, other: &UsageBucket) {
        self.calls += other.calls;
        self.successes += other.successes;
        self.failures += other.failures;
        self.cancelled += other.cancelled;
        self.cache_hits += other.cache_hits;
        self.rejected += other.rejected;
        self.tokens += other.tokens;
        self.cost += other.cost;
    }
}

/// Aggregated usage: totals and per-tenant, per-agent, per-provider and per-model buckets.
///
/// Every backend builds it with [`UsageStats::add`] (or [`UsageStats::merge`] of partial
/// results), so the arithmetic is written once. Costs add as exact decimals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageStats {
    /// Records counted.
    pub records: u64,
    /// Provider calls that succeeded.
    pub successes: u64,
    /// Provider calls that failed.
    pub failures: u64,
    /// Calls the caller cancelled.
    pub cancelled: u64,
    /// Answers served from the response cache.
    pub cache_hits: u64,
    /// Requests no provider could be called for (every breaker open).
    pub rejected: u64,
    /// Records on a provider after the first of the chain.
    pub fallbacks: u64,
    /// Records whose tokens are our estimate, not the provider's count.
    pub estimated: u64,
    /// Tokens consumed.
    pub tokens: TokenUsage,
    /// Exact total cost.
    pub cost: Usd,
    /// Per tenant id.
    pub by_tenant: BTreeMap<String, UsageBucket>,
    /// Per agent id.
    pub by_agent: BTreeMap<String, UsageBucket>,
    /// Per provider name.
    pub by_provider: BTreeMap<String, UsageBucket>,
    /// Per concrete model.
    pub by_model: BTreeMap<String, UsageBucket>,
}

impl UsageStats {
    /// Stats of nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Aggregates the records matching `query`.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a UsageRecord>,
        query: &UsageQuery,
    ) -> Self {
        let mut stats = Self::new();
        for record in records.into_iter().filter(|r| query.matches(r)) {
            stats.add(record);
        }
        stats
    }

    /// Counts one record. Deduplication is the sink's job: `add` counts what it is given.
    pub fn add(&mut self, record: &UsageRecord) {
        self.records += 1;
        match record.outcome {
            UsageOutcome::Success => self.successes += 1,
            UsageOutcome::Failed { .. } => self.failures += 1,
            UsageOutcome::Cancelled => self.cancelled += 1,
            UsageOutcome::CacheHit => self.cache_hits += 1,
            UsageOutcome::Rejected => self.rejected += 1,
        }
        self.fallbacks += u64::from(record.fallback_used);
        self.estimated += u64::from(record.usage_estimated);
        self.tokens += record.usage;
        self.cost += record.cost;
        bucket(&mut self.by_tenant, &record.tenant_id).add(record);
        bucket(&mut self.by_agent, &record.agent_id).add(record);
        bucket(&mut self.by_provider, &record.provider).add(record);
        bucket(&mut self.by_model, &record.model).add(record);
    }

    /// Adds another partial aggregate (e.g. one page or partition of a store).
    pub fn merge(&mut self, other: &UsageStats) {
        self.records += other.records;
        self.successes += other.successes;
        self.failures += other.failures;
        self.cancelled += other.cancelled;
        self.cache_hits += other.cache_hits;
        self.rejected += other.rejected;
        self.fallbacks += other.fallbacks;
        self.estimated += other.estimated;
        self.tokens += other.tokens;
        self.cost += other.cost;
        for (mine, theirs) in [
            (&mut self.by_tenant, &other.by_tenant),
            (&mut self.by_agent, &other.by_agent),
            (&mut self.by_provider, &other.by_provider),
            (&mut self.by_model, &other.by_model),
        ] {
            for (key, b) in theirs {
                bucket(mine, key).merge(b);
            }
        }
    }
}

fn bucket<'m>(map: &'m mut BTreeMap<String, UsageBucket>, key: &str) -> &'m mut UsageBucket {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), UsageBucket::default());
    }
    map.get_mut(key).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_provider::{ErrorKind, RequestId};
    use rust_decimal::Decimal;

    fn record(
        id: &str,
        tenant: &str,
        agent: &str,
        provider: &str,
        at: u64,
        outcome: UsageOutcome,
        cost: &str,
    ) -> UsageRecord {
        UsageRecord {
            request_id: RequestId::new(id),
            call_id: id.to_owned(),
            attempt: 1,
            tenant_id: tenant.into(),
            agent_id: agent.into(),
            timestamp_unix_ms: at,
            provider: provider.into(),
            model: format!("{provider}-model"),
            logical_model: "gpt-4".into(),
            usage: TokenUsage::new(10, 5),
            usage_estimated: outcome == UsageOutcome::Cancelled,
            cost: Usd::new(Decimal::from_str_exact(cost).unwrap()),
            latency_ms: 7,
            outcome,
            cached: outcome == UsageOutcome::CacheHit,
            fallback_used: provider == "openai",
            streamed: false,
        }
    }

    fn sample() -> Vec<UsageRecord> {
        let failed = UsageOutcome::Failed {
            kind: ErrorKind::Throttled,
        };
        vec![
            record("r1", "a", "x", "bedrock", 100, UsageOutcome::Success, "0.1"),
            record("r2", "a", "y", "bedrock", 200, failed, "0"),
            record("r2b", "a", "y", "openai", 210, UsageOutcome::Success, "0.2"),
            record(
                "r3",
                "b",
                "x",
                "bedrock",
                300,
                UsageOutcome::Cancelled,
                "0.05",
            ),
            record("r4", "b", "x", "bedrock", 400, UsageOutcome::CacheHit, "0"),
        ]
    }

    #[test]
    fn aggregates_totals_and_buckets() {
        let records = sample();
        let stats = UsageStats::from_records(&records, &UsageQuery::all());
        assert_eq!(stats.records, 5);
        assert_eq!(
            (
                stats.successes,
                stats.failures,
                stats.cancelled,
                stats.cache_hits
            ),
            (2, 1, 1, 1)
        );
        assert_eq!((stats.fallbacks, stats.estimated), (1, 1));
        assert_eq!(stats.tokens, TokenUsage::new(50, 25));
        assert_eq!(
            stats.cost,
            Usd::new(Decimal::from_str_exact("0.35").unwrap())
        );
        let a = &stats.by_tenant["a"];
        assert_eq!((a.calls, a.successes, a.failures), (3, 2, 1));
        assert_eq!(a.cost, Usd::new(Decimal::from_str_exact("0.3").unwrap()));
        let b = &stats.by_tenant["b"];
        assert_eq!((b.calls, b.cancelled, b.cache_hits), (2, 1, 1));
        assert_eq!(stats.by_agent["x"].calls, 3);
        assert_eq!(stats.by_provider["openai"].calls, 1);
        assert_eq!(stats.by_model["bedrock-model"].calls, 4);
    }

    #[test]
    fn filters_combine() {
        let records = sample();
        let count = |q: UsageQuery| UsageStats::from_records(&records, &q).records;
        assert_eq!(count(UsageQuery::tenant("a")), 3);
        assert_eq!(count(UsageQuery::agent("x")), 3);
        assert_eq!(count(UsageQuery::tenant("a").with_agent("x")), 1);
        assert_eq!(
            count(UsageQuery::all().between(200, 300)),
            2,
            "to is exclusive"
        );
        assert_eq!(count(UsageQuery::all().since(300)), 2, "from is inclusive");
        assert_eq!(count(UsageQuery::all().until(100)), 0);
        assert_eq!(count(UsageQuery::tenant("nobody")), 0);
    }

    #[test]
    fn merge_of_parts_equals_the_whole() {
        let records = sample();
        let whole = UsageStats::from_records(&records, &UsageQuery::all());
        let mut parts = UsageStats::from_records(&records[..2], &UsageQuery::all());
        parts.merge(&UsageStats::from_records(&records[2..], &UsageQuery::all()));
        assert_eq!(parts, whole);
    }

    #[test]
    fn serialises_costs_as_exact_strings() {
        let records = sample();
        let stats = UsageStats::from_records(&records, &UsageQuery::all());
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["cost"], "0.35");
        assert_eq!(json["by_tenant"]["a"]["calls"], 3);
    }
}
