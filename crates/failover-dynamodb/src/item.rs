//! Pure mapping between usage records / aggregates and DynamoDB items. No I/O here.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use failover_provider::{ErrorKind, RequestId, TokenUsage, Usd};
use failover_usage::{UsageBucket, UsageOutcome, UsageRecord, UsageStats};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::error::DynamoDbError;

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// Partition key of the agent index.
pub const GSI1_PK: &str = "gsi1pk";
/// Sort key of the agent index.
pub const GSI1_SK: &str = "gsi1sk";
/// The agent index's name.
pub const AGENT_INDEX: &str = "by_agent";
/// The TTL attribute (epoch seconds) on raw records when retention is configured.
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Milliseconds per day.
pub(crate) const DAY_MS: u64 = 86_400_000;

/// Sort-key prefix of raw records.
pub(crate) const RECORD_PREFIX: &str = "TS#";
/// Sort-key prefix of daily aggregates.
pub(crate) const DAY_PREFIX: &str = "DAY#";

/// `TENANT#{tenant}`: every item of one tenant lives in one partition.
pub fn partition_key(tenant_id: &str) -> String {
    format!("TENANT#{tenant_id}")
}

/// `TS#{timestamp_ms:013}#{call_id}`: time-ordered, and deterministic per record — the
/// call id is the record's idempotency key, drawn once per provider call by the adapter
/// (a request id is caller-chosen and may be reused, so it is an attribute, not the key).
/// The timestamp has a fixed width, so everything after it is the call id, `#`s included.
pub fn record_sort_key(record: &UsageRecord) -> String {
    format!(
        "{RECORD_PREFIX}{:013}#{}",
        record.timestamp_unix_ms,
        record.idempotency_key()
    )
}

/// The agent index's partition key: tenant length-prefixed, so no pair of (tenant, agent)
/// ids can collide however they use `#`.
pub fn agent_partition_key(tenant_id: &str, agent_id: &str) -> String {
    format!("AGENT#{}#{tenant_id}#{agent_id}", tenant_id.len())
}

/// The sort-key bound of records at `ms`: `TS#{ms:013}` sorts before every record at `ms`
/// and after every record before it.
pub(crate) fn time_bound(ms: u64) -> String {
    format!("{RECORD_PREFIX}{ms:013}")
}

/// `DAY#YYYY-MM-DD` (UTC) of a day index (days since the epoch).
pub(crate) fn day_sort_key(day: u64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{DAY_PREFIX}{y:04}-{m:02}-{d:02}")
}

/// Howard Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The exact decimal as a DynamoDB Number: the `Decimal`'s own string, never an `f64`.
pub(crate) fn decimal_number(value: Decimal) -> AttributeValue {
    AttributeValue::N(value.normalize().to_string())
}

/// The raw item of a record.
pub fn record_to_item(
    record: &UsageRecord,
    ttl_days: Option<u32>,
) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::with_capacity(28);
    let sk = record_sort_key(record);
    item.insert(PK.into(), s(partition_key(&record.tenant_id)));
    item.insert(SK.into(), s(sk.clone()));
    item.insert(
        GSI1_PK.into(),
        s(agent_partition_key(&record.tenant_id, &record.agent_id)),
    );
    item.insert(GSI1_SK.into(), s(sk));
    item.insert("v".into(), n(1));
    item.insert("request_id".into(), s(record.request_id.as_str()));
    item.insert("call_id".into(), s(&record.call_id));
    item.insert("attempt".into(), n(record.attempt));
    item.insert("tenant_id".into(), s(&record.tenant_id));
    item.insert("agent_id".into(), s(&record.agent_id));
    item.insert("ts".into(), n(record.timestamp_unix_ms));
    item.insert("provider".into(), s(&record.provider));
    item.insert("model".into(), s(&record.model));
    item.insert("logical_model".into(), s(&record.logical_model));
    item.insert("input_tokens".into(), n(record.usage.input_tokens));
    item.insert("output_tokens".into(), n(record.usage.output_tokens));
    item.insert(
        "cache_read_tokens".into(),
        n(record.usage.cache_read_tokens),
    );
    item.insert(
        "cache_write_tokens".into(),
        n(record.usage.cache_write_tokens),
    );
    item.insert(
        "usage_estimated".into(),
        AttributeValue::Bool(record.usage_estimated),
    );
    item.insert("cost".into(), decimal_number(record.cost.amount()));
    item.insert("latency_ms".into(), n(record.latency_ms));
    item.insert("outcome".into(), s(record.outcome.as_str()));
    if let Some(kind) = record.outcome.error_kind() {
        item.insert("error_kind".into(), s(error_kind_name(kind)));
    }
    item.insert("cached".into(), AttributeValue::Bool(record.cached));
    item.insert(
        "fallback_used".into(),
        AttributeValue::Bool(record.fallback_used),
    );
    item.insert("streamed".into(), AttributeValue::Bool(record.streamed));
    if let Some(days) = ttl_days {
        let expires = record.timestamp_unix_ms / 1_000 + u64::from(days) * 86_400;
        item.insert(TTL_ATTRIBUTE.into(), n(expires));
    }
    item
}

fn error_kind_name(kind: ErrorKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{kind:?}"),
    }
}

type Item = HashMap<String, AttributeValue>;

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, DynamoDbError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        other => Err(DynamoDbError::Mapping(format!(
            "attribute `{name}` should be a string, found {other:?}"
        ))),
    }
}

fn get_n<'a>(item: &'a Item, name: &str) -> Result<&'a str, DynamoDbError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => Ok(v),
        other => Err(DynamoDbError::Mapping(format!(
            "attribute `{name}` should be a number, found {other:?}"
        ))),
    }
}

fn get_bool(item: &Item, name: &str) -> Result<bool, DynamoDbError> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        other => Err(DynamoDbError::Mapping(format!(
            "attribute `{name}` should be a boolean, found {other:?}"
        ))),
    }
}

/// Parses a DynamoDB Number exactly (plain or scientific notation).
pub(crate) fn parse_decimal(text: &str) -> Result<Decimal, DynamoDbError> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|e| DynamoDbError::Mapping(format!("number `{text}`: {e}")))
}

pub(crate) fn parse_u64(text: &str) -> Result<u64, DynamoDbError> {
    text.parse::<u64>().or_else(|_| {
        parse_decimal(text)?
            .to_u64()
            .ok_or_else(|| DynamoDbError::Mapping(format!("`{text}` is not a count")))
    })
}

fn get_u64(item: &Item, name: &str) -> Result<u64, DynamoDbError> {
    parse_u64(get_n(item, name)?)
}

/// A record from its raw item.
pub fn item_to_record(item: &Item) -> Result<UsageRecord, DynamoDbError> {
    let outcome = match get_s(item, "outcome")? {
        "success" => UsageOutcome::Success,
        "cancelled" => UsageOutcome::Cancelled,
        "cache_hit" => UsageOutcome::CacheHit,
        "rejected" => UsageOutcome::Rejected,
        "failed" => {
            let name = get_s(item, "error_kind")?;
            let kind: ErrorKind = serde_json::from_value(serde_json::Value::String(name.into()))
                .map_err(|e| DynamoDbError::Mapping(format!("error kind `{name}`: {e}")))?;
            UsageOutcome::Failed { kind }
        }
        other => return Err(DynamoDbError::Mapping(format!("outcome `{other}`"))),
    };
    Ok(UsageRecord {
        request_id: RequestId::new(get_s(item, "request_id")?),
        call_id: get_s(item, "call_id")?.to_owned(),
        attempt: u32::try_from(get_u64(item, "attempt")?)
            .map_err(|_| DynamoDbError::Mapping("attempt out of range".into()))?,
        tenant_id: get_s(item, "tenant_id")?.to_owned(),
        agent_id: get_s(item, "agent_id")?.to_owned(),
        timestamp_unix_ms: get_u64(item, "ts")?,
        provider: get_s(item, "provider")?.to_owned(),
        model: get_s(item, "model")?.to_owned(),
        logical_model: get_s(item, "logical_model")?.to_owned(),
        usage: TokenUsage {
            input_tokens: get_u64(item, "input_tokens")?,
            output_tokens: get_u64(item, "output_tokens")?,
            cache_read_tokens: get_u64(item, "cache_read_tokens")?,
            cache_write_tokens: get_u64(item, "cache_write_tokens")?,
        },
        usage_estimated: get_bool(item, "usage_estimated")?,
        cost: Usd::new(parse_decimal(get_n(item, "cost")?)?),
        latency_ms: get_u64(item, "latency_ms")?,
        outcome,
        cached: get_bool(item, "cached")?,
        fallback_used: get_bool(item, "fallback_used")?,
        streamed: get_bool(item, "streamed")?,
    })
}

// ----- Daily aggregates -------------------------------------------------------------------
//
// One item per (tenant, UTC day): `pk = TENANT#{tenant}`, `sk = DAY#YYYY-MM-DD`. Its number
// attributes are a flattened `UsageStats` of that tenant's records of that day:
// `tot#{field}` for the totals and `{p|m|a}#{name}#{field}` for the provider, model and
// agent buckets (the tenant bucket equals the totals). Names may contain `#`: a bucket
// attribute is split at its first and last `#`, and field names have none. Zero terms are
// not written (a missing attribute reads as zero), keeping update expressions short.

const TOTAL_FIELDS: usize = 13;
const BUCKET_FIELDS: usize = 11;

fn total_terms(stats: &UsageStats) -> [(&'static str, Decimal); TOTAL_FIELDS] {
    [
        ("records", stats.records.into()),
        ("ok", stats.successes.into()),
        ("fail", stats.failures.into()),
        ("cancel", stats.cancelled.into()),
        ("hit", stats.cache_hits.into()),
        ("rej", stats.rejected.into()),
        ("fallback", stats.fallbacks.into()),
        ("est", stats.estimated.into()),
        ("in", stats.tokens.input_tokens.into()),
        ("out", stats.tokens.output_tokens.into()),
        ("cr", stats.tokens.cache_read_tokens.into()),
        ("cw", stats.tokens.cache_write_tokens.into()),
        ("cost", stats.cost.amount()),
    ]
}

fn bucket_terms(bucket: &UsageBucket) -> [(&'static str, Decimal); BUCKET_FIELDS] {
    [
        ("calls", bucket.calls.into()),
        ("ok", bucket.successes.into()),
        ("fail", bucket.failures.into()),
        ("cancel", bucket.cancelled.into()),
        ("hit", bucket.cache_hits.into()),
        ("rej", bucket.rejected.into()),
        ("in", bucket.tokens.input_tokens.into()),
        ("out", bucket.tokens.output_tokens.into()),
        ("cr", bucket.tokens.cache_read_tokens.into()),
        ("cw", bucket.tokens.cache_write_tokens.into()),
        ("cost", bucket.cost.amount()),
    ]
}

/// The non-zero `(attribute, amount)` terms that add `delta` to an aggregate item.
pub(crate) fn aggregate_terms(delta: &UsageStats) -> Vec<(String, Decimal)> {
    let mut terms = Vec::new();
    for (field, value) in total_terms(delta) {
        if !value.is_zero() {
            terms.push((format!("tot#{field}"), value));
        }
    }
    for (kind, buckets) in [
        ("p", &delta.by_provider),
        ("m", &delta.by_model),
        ("a", &delta.by_agent),
    ] {
        for (name, bucket) in buckets {
            for (field, value) in bucket_terms(bucket) {
                if !value.is_zero() {
                    terms.push((format!("{kind}#{name}#{field}"), value));
                }
            }
        }
    }
    terms
}

/// The most terms one aggregate update carries, keeping its expression well inside
/// DynamoDB's 4 KB expression limit (`#nNNN :vNNN, ` is at most 13 bytes).
pub(crate) const MAX_AGGREGATE_TERMS: usize = 250;

/// An upper bound of the terms of `delta` (every field non-zero).
pub(crate) fn max_terms(delta: &UsageStats) -> usize {
    TOTAL_FIELDS
        + BUCKET_FIELDS * (delta.by_provider.len() + delta.by_model.len() + delta.by_agent.len())
}

/// The `UpdateExpression`, names and values of an `ADD` of `terms`.
pub(crate) fn add_expression(
    terms: &[(String, Decimal)],
) -> (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    let mut expression = String::from("ADD ");
    let mut names = HashMap::with_capacity(terms.len());
    let mut values = HashMap::with_capacity(terms.len());
    for (i, (attribute, amount)) in terms.iter().enumerate() {
        if i > 0 {
            expression.push_str(", ");
        }
        expression.push_str(&format!("#n{i} :v{i}"));
        names.insert(format!("#n{i}"), attribute.clone());
        values.insert(format!(":v{i}"), decimal_number(*amount));
    }
    (expression, names, values)
}

/// The `UsageStats` of one tenant held by an aggregate item.
pub(crate) fn item_to_aggregate(tenant_id: &str, item: &Item) -> Result<UsageStats, DynamoDbError> {
    let mut stats = UsageStats::new();
    let mut buckets: [BTreeMap<String, UsageBucket>; 3] = Default::default();
    for (attribute, value) in item {
        let AttributeValue::N(text) = value else {
            continue;
        };
        if let Some(field) = attribute.strip_prefix("tot#") {
            let amount = parse_decimal(text)?;
            let count = || {
                amount
                    .to_u64()
                    .ok_or_else(|| DynamoDbError::Mapping(format!("{attribute} = {text}")))
            };
            match field {
                "records" => stats.records = count()?,
                "ok" => stats.successes = count()?,
                "fail" => stats.failures = count()?,
                "cancel" => stats.cancelled = count()?,
                "hit" => stats.cache_hits = count()?,
                "rej" => stats.rejected = count()?,
                "fallback" => stats.fallbacks = count()?,
                "est" => stats.estimated = count()?,
                "in" => stats.tokens.input_tokens = count()?,
                "out" => stats.tokens.output_tokens = count()?,
                "cr" => stats.tokens.cache_read_tokens = count()?,
                "cw" => stats.tokens.cache_write_tokens = count()?,
                "cost" => stats.cost = Usd::new(amount),
                _ => {}
            }
            continue;
        }
        let index = match attribute.split_once('#') {
            Some(("p", _)) => 0,
            Some(("m", _)) => 1,
            Some(("a", _)) => 2,
            _ => continue,
        };
        let (Some(first), Some(last)) = (attribute.find('#'), attribute.rfind('#')) else {
            continue;
        };
        if last <= first {
            continue;
        }
        let name = &attribute[first + 1..last];
        let field = &attribute[last + 1..];
        let amount = parse_decimal(text)?;
        let count = || {
            amount
                .to_u64()
                .ok_or_else(|| DynamoDbError::Mapping(format!("{attribute} = {text}")))
        };
        let bucket = buckets[index].entry(name.to_owned()).or_default();
        match field {
            "calls" => bucket.calls = count()?,
            "ok" => bucket.successes = count()?,
            "fail" => bucket.failures = count()?,
            "cancel" => bucket.cancelled = count()?,
            "hit" => bucket.cache_hits = count()?,
            "rej" => bucket.rejected = count()?,
            "in" => bucket.tokens.input_tokens = count()?,
            "out" => bucket.tokens.output_tokens = count()?,
            "cr" => bucket.tokens.cache_read_tokens = count()?,
            "cw" => bucket.tokens.cache_write_tokens = count()?,
            "cost" => bucket.cost = Usd::new(amount),
            _ => {}
        }
    }
    let [by_provider, by_model, by_agent] = buckets;
    stats.by_provider = by_provider;
    stats.by_model = by_model;
    stats.by_agent = by_agent;
    if stats.records > 0 {
        stats.by_tenant.insert(
            tenant_id.to_owned(),
            UsageBucket {
                calls: stats.records,
                successes: stats.successes,
                failures: stats.failures,
                cancelled: stats.cancelled,
                cache_hits: stats.cache_hits,
                rejected: stats.rejected,
                tokens: stats.tokens,
                cost: stats.cost,
            },
        );
    }
    Ok(stats)
}

/// Turns a map of `terms` into the attributes of an item as DynamoDB would hold them after
/// the `ADD` (used by tests of the mapping).
#[cfg(test)]
pub(crate) fn terms_to_item(terms: &[(String, Decimal)]) -> Item {
    terms
        .iter()
        .map(|(name, amount)| (name.clone(), decimal_number(*amount)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_usage::UsageQuery;

    fn record(id: &str, attempt: u32, outcome: UsageOutcome) -> UsageRecord {
        UsageRecord {
            request_id: RequestId::new(id),
            call_id: format!("{id}#{attempt}"),
            attempt,
            tenant_id: "acme#1".into(),
            agent_id: "bot#x".into(),
            timestamp_unix_ms: 1_764_201_600_123,
            provider: "bedrock".into(),
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0".into(),
            logical_model: "gpt-4".into(),
            usage: TokenUsage {
                input_tokens: 10,
                output_tokens: 5,
                cache_read_tokens: 2,
                cache_write_tokens: 0,
            },
            usage_estimated: outcome == UsageOutcome::Cancelled,
            cost: Usd::new(Decimal::from_str_exact("0.000123456789012345678901").unwrap()),
            latency_ms: 17,
            outcome,
            cached: outcome == UsageOutcome::CacheHit,
            fallback_used: attempt > 1,
            streamed: true,
        }
    }

    #[test]
    fn keys_are_time_ordered_and_unique_per_attempt() {
        let r = record("req-1", 2, UsageOutcome::Success);
        assert_eq!(partition_key(&r.tenant_id), "TENANT#acme#1");
        assert_eq!(record_sort_key(&r), "TS#1764201600123#req-1#2");
        assert_eq!(r.idempotency_key(), "req-1#2");
        assert!(time_bound(1_764_201_600_123) < record_sort_key(&r));
        assert!(time_bound(1_764_201_600_124) > record_sort_key(&r));
        assert_ne!(
            agent_partition_key("a#b", "c"),
            agent_partition_key("a", "b#c")
        );
        assert_eq!(day_sort_key(0), "DAY#1970-01-01");
        assert_eq!(day_sort_key(1_764_201_600_123 / DAY_MS), "DAY#2025-11-27");
        assert_eq!(day_sort_key(11_016), "DAY#2000-02-29");
    }

    #[test]
    fn every_outcome_round_trips_with_exact_cost() {
        for outcome in [
            UsageOutcome::Success,
            UsageOutcome::Failed {
                kind: ErrorKind::Throttled,
            },
            UsageOutcome::Cancelled,
            UsageOutcome::CacheHit,
            UsageOutcome::Rejected,
        ] {
            let r = record("req-1", 1, outcome);
            let item = record_to_item(&r, Some(30));
            assert_eq!(
                item["cost"],
                AttributeValue::N("0.000123456789012345678901".into())
            );
            assert_eq!(
                item[TTL_ATTRIBUTE],
                AttributeValue::N((1_764_201_600 + 30 * 86_400).to_string())
            );
            assert_eq!(item_to_record(&item).unwrap(), r);
        }
        let mut broken = record_to_item(&record("r", 1, UsageOutcome::Success), None);
        broken.remove("tenant_id");
        assert!(item_to_record(&broken).is_err());
    }

    #[test]
    fn numbers_in_scientific_notation_parse_exactly() {
        assert_eq!(parse_decimal("1E+1").unwrap(), Decimal::TEN);
        assert_eq!(parse_decimal("0.010").unwrap(), Decimal::new(1, 2));
        assert_eq!(parse_u64("3E+2").unwrap(), 300);
    }

    #[test]
    fn aggregate_terms_round_trip_to_the_same_stats() {
        let records = vec![
            record("a", 1, UsageOutcome::Success),
            record(
                "a",
                2,
                UsageOutcome::Failed {
                    kind: ErrorKind::Unavailable,
                },
            ),
            record("b", 1, UsageOutcome::Cancelled),
            record("c", 1, UsageOutcome::CacheHit),
            record("d", 1, UsageOutcome::Rejected),
            record("e", 1, UsageOutcome::Rejected),
        ];
        let stats = UsageStats::from_records(&records, &UsageQuery::all());
        assert_eq!(stats.rejected, 2);
        let terms = aggregate_terms(&stats);
        assert!(terms.len() <= max_terms(&stats));
        assert!(terms.iter().all(|(_, v)| !v.is_zero()));
        let back = item_to_aggregate("acme#1", &terms_to_item(&terms)).unwrap();
        assert_eq!(back, stats);
        let (expression, names, values) = add_expression(&terms);
        assert!(expression.starts_with("ADD #n0 :v0, #n1 :v1"));
        assert_eq!((names.len(), values.len()), (terms.len(), terms.len()));
    }
}
