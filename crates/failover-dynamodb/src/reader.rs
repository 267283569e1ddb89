//! Reading records and statistics back.
//!
//! - tenant + agent: one `Query` of the `by_agent` index over the time range;
//! - tenant: one `Query` of the tenant's partition over the time range;
//! - no tenant: a `Scan` (administration and tests; it reads the whole table);
//! - tenant statistics (transactional mode, no agent filter): the daily aggregates for
//!   the whole UTC days in the range, plus the raw records of the partial days at its
//!   edges — all added with `UsageStats::add` / `merge`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use failover_usage::{UsageQuery, UsageRecord, UsageStats};

use crate::config::WriteMode;
use crate::error::{DynamoDbError, classify};
use crate::item::{
    AGENT_INDEX, DAY_MS, DAY_PREFIX, GSI1_PK, GSI1_SK, PK, RECORD_PREFIX, SK, agent_partition_key,
    day_sort_key, item_to_aggregate, item_to_record, partition_key, time_bound,
};
use crate::store::Store;
use crate::telemetry::StoreCall;

type Item = HashMap<String, AttributeValue>;

/// The sort-key range `[lo, hi]` (BETWEEN is inclusive; `hi` = `TS#{to}` sorts before
/// every record at `to`, so `to` stays exclusive).
fn record_range(query: &UsageQuery) -> (String, String) {
    let lo = query
        .from_unix_ms
        .map(time_bound)
        .unwrap_or_else(|| RECORD_PREFIX.to_owned());
    let hi = query
        .to_unix_ms
        .map(time_bound)
        .unwrap_or_else(|| "TS$".to_owned());
    (lo, hi)
}

fn empty_range(query: &UsageQuery) -> bool {
    matches!((query.from_unix_ms, query.to_unix_ms), (Some(from), Some(to)) if from >= to)
}

/// Every item of a `Query` (all pages).
async fn query_all(
    store: &Store,
    index: Option<&str>,
    key_condition: &str,
    values: Vec<(&str, String)>,
    consistent: bool,
) -> Result<Vec<Item>, DynamoDbError> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut request = store
            .client()
            .query()
            .table_name(store.table())
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression(key_condition)
            .expression_attribute_names("#pk", if index.is_some() { GSI1_PK } else { PK })
            .expression_attribute_names("#sk", if index.is_some() { GSI1_SK } else { SK })
            .set_exclusive_start_key(start.take());
        if consistent && index.is_none() {
            request = request.consistent_read(true);
        }
        for (name, value) in &values {
            request = request.expression_attribute_values(*name, AttributeValue::S(value.clone()));
        }
        let output = store
            .counters()
            .metrics
            .time(StoreCall::Query, request.send())
            .await
            .map_err(|e| classify("Query", &e))?;
        items.extend(output.items().iter().cloned());
        match output.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return Ok(items),
        }
    }
}

/// Every raw record matching `query`.
pub(crate) async fn records(
    store: &Store,
    query: &UsageQuery,
    consistent: bool,
) -> Result<Vec<UsageRecord>, DynamoDbError> {
    if empty_range(query) {
        return Ok(Vec::new());
    }
    let (lo, hi) = record_range(query);
    let items = match (&query.tenant_id, &query.agent_id) {
        (Some(tenant), Some(agent)) => {
            query_all(
                store,
                Some(AGENT_INDEX),
                "#pk = :pk AND #sk BETWEEN :lo AND :hi",
                vec![
                    (":pk", agent_partition_key(tenant, agent)),
                    (":lo", lo),
                    (":hi", hi),
                ],
                false,
            )
            .await?
        }
        (Some(tenant), None) => {
            query_all(
                store,
                None,
                "#pk = :pk AND #sk BETWEEN :lo AND :hi",
                vec![(":pk", partition_key(tenant)), (":lo", lo), (":hi", hi)],
                consistent,
            )
            .await?
        }
        (None, _) => scan_records(store, consistent).await?,
    };
    let mut records = Vec::with_capacity(items.len());
    for item in &items {
        let record = item_to_record(item)?;
        if query.matches(&record) {
            records.push(record);
        }
    }
    Ok(records)
}

async fn scan_records(store: &Store, consistent: bool) -> Result<Vec<Item>, DynamoDbError> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let request = store
            .client()
            .scan()
            .table_name(store.table())
            .filter_expression("begins_with(#sk, :prefix)")
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":prefix", AttributeValue::S(RECORD_PREFIX.to_owned()))
            .consistent_read(consistent)
            .set_exclusive_start_key(start.take())
            .send();
        let output = store
            .counters()
            .metrics
            .time(StoreCall::Scan, request)
            .await
            .map_err(|e| classify("Scan", &e))?;
        items.extend(output.items().iter().cloned());
        match output.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => return Ok(items),
        }
    }
}

/// Statistics computed from the raw records only.
pub(crate) async fn stats_from_records(
    store: &Store,
    query: &UsageQuery,
    consistent: bool,
) -> Result<UsageStats, DynamoDbError> {
    let records = records(store, query, consistent).await?;
    let mut stats = UsageStats::new();
    for record in &records {
        stats.add(record);
    }
    Ok(stats)
}

/// Which UTC days of `query` are whole, as `[first, end)` day indexes; `None` for an open
/// side.
fn whole_days(query: &UsageQuery) -> (Option<u64>, Option<u64>) {
    (
        query.from_unix_ms.map(|from| from.div_ceil(DAY_MS)),
        query.to_unix_ms.map(|to| to / DAY_MS),
    )
}

/// Statistics: from the daily aggregates where the query allows, else from raw records.
pub(crate) async fn stats(
    store: &Store,
    query: &UsageQuery,
    consistent: bool,
) -> Result<UsageStats, DynamoDbError> {
    let tenant = match (&query.tenant_id, &query.agent_id, store.mode()) {
        (Some(tenant), None, WriteMode::Transactional) => tenant,
        _ => return stats_from_records(store, query, consistent).await,
    };
    if empty_range(query) {
        return Ok(UsageStats::new());
    }
    let (first, end) = whole_days(query);
    if let (Some(first), Some(end)) = (first, end)
        && first >= end
    {
        // No whole day in the range.
        return stats_from_records(store, query, consistent).await;
    }
    let lo = first
        .map(day_sort_key)
        .unwrap_or_else(|| DAY_PREFIX.to_owned());
    let hi = match end {
        Some(end) => day_sort_key(end - 1),
        None => "DAY$".to_owned(),
    };
    let items = query_all(
        store,
        None,
        "#pk = :pk AND #sk BETWEEN :lo AND :hi",
        vec![(":pk", partition_key(tenant)), (":lo", lo), (":hi", hi)],
        consistent,
    )
    .await?;
    let mut stats = UsageStats::new();
    for item in &items {
        stats.merge(&item_to_aggregate(tenant, item)?);
    }
    // The partial days at the edges, from the raw records.
    if let (Some(from), Some(first)) = (query.from_unix_ms, first)
        && from < first * DAY_MS
    {
        let head = UsageQuery::tenant(tenant).between(from, first * DAY_MS);
        stats.merge(&stats_from_records(store, &head, consistent).await?);
    }
    if let (Some(to), Some(end)) = (query.to_unix_ms, end)
        && to > end * DAY_MS
    {
        let tail = UsageQuery::tenant(tenant).between(end * DAY_MS, to);
        stats.merge(&stats_from_records(store, &tail, consistent).await?);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_days_of_a_range() {
        let q = UsageQuery::tenant("t").between(DAY_MS, 3 * DAY_MS);
        assert_eq!(whole_days(&q), (Some(1), Some(3)));
        let q = UsageQuery::tenant("t").between(DAY_MS + 1, 3 * DAY_MS - 1);
        assert_eq!(whole_days(&q), (Some(2), Some(2)));
        assert_eq!(whole_days(&UsageQuery::tenant("t")), (None, None));
    }

    #[test]
    fn record_range_keeps_to_exclusive() {
        let (lo, hi) = record_range(&UsageQuery::tenant("t").between(5, 9));
        assert_eq!(
            (lo.as_str(), hi.as_str()),
            ("TS#0000000000005", "TS#0000000000009")
        );
        let (lo, hi) = record_range(&UsageQuery::tenant("t"));
        assert!(lo.as_str() < "TS#0" && hi.as_str() > "TS#9999999999999#z#9");
        assert!(empty_range(&UsageQuery::all().between(5, 5)));
    }
}
