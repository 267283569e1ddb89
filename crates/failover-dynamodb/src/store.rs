//! One write attempt against DynamoDB, per write mode. Retries, backoff and spilling are
//! the writer's job; a store call reports what it got done by shrinking `pending`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use failover_usage::{UsageRecord, UsageStats};

use crate::config::{DynamoDbConfig, WriteMode};
use crate::error::{DynamoDbError, classify, is_retryable_code};
use crate::item::{
    DAY_MS, MAX_AGGREGATE_TERMS, PK, SK, add_expression, aggregate_terms, day_sort_key, max_terms,
    partition_key, record_sort_key, record_to_item,
};
use crate::telemetry::StoreCall;
use crate::writer::Counters;

/// DynamoDB's limit of actions per transaction.
const MAX_TRANSACTION_ACTIONS: usize = 100;
/// DynamoDB's limit of requests per `BatchWriteItem`.
const MAX_BATCH_WRITE: usize = 25;

/// The key an item is stored under: (partition key, sort key).
pub(crate) type ItemKey = (String, String);

pub(crate) fn item_key(record: &UsageRecord) -> ItemKey {
    (partition_key(&record.tenant_id), record_sort_key(record))
}

/// Drops records whose item key appeared earlier in `records` (a batch may not name one
/// item twice); returns how many were dropped.
pub(crate) fn dedup(records: &mut Vec<UsageRecord>) -> usize {
    let before = records.len();
    let mut seen = HashSet::with_capacity(records.len());
    records.retain(|r| seen.insert(item_key(r)));
    before - records.len()
}

#[derive(Debug)]
pub(crate) struct Store {
    client: Client,
    table: String,
    mode: WriteMode,
    batch_size: usize,
    ttl_days: Option<u32>,
    counters: Arc<Counters>,
}

enum Transact {
    Done,
    /// The puts at these positions found their record already stored.
    Duplicates(Vec<usize>),
}

impl Store {
    pub(crate) fn new(client: Client, config: &DynamoDbConfig, counters: Arc<Counters>) -> Self {
        Self {
            client,
            table: config.table_name.clone(),
            mode: config.write_mode,
            batch_size: config.batch_size,
            ttl_days: config.ttl_days,
            counters,
        }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn table(&self) -> &str {
        &self.table
    }

    pub(crate) fn mode(&self) -> WriteMode {
        self.mode
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Writes `pending` (deduplicated by item key), removing every record that is stored —
    /// newly, or found already stored — from it. On error, what remains is still to do.
    pub(crate) async fn write(&self, pending: &mut Vec<UsageRecord>) -> Result<(), DynamoDbError> {
        match self.mode {
            WriteMode::Transactional => self.write_transactional(pending).await,
            WriteMode::RawBatch => self.write_raw_batch(pending).await,
        }
    }

    // ----- Transactional ------------------------------------------------------------------

    /// How many records from the front of `pending` go in one transaction: at most
    /// `batch_size`, within 100 actions, and no aggregate update over
    /// [`MAX_AGGREGATE_TERMS`].
    fn group_len(&self, pending: &[UsageRecord]) -> usize {
        let mut aggregates: HashMap<(&str, u64), UsageStats> = HashMap::new();
        let mut take = 0;
        for record in pending.iter().take(self.batch_size) {
            let key = (record.tenant_id.as_str(), record.timestamp_unix_ms / DAY_MS);
            let new_aggregate = !aggregates.contains_key(&key);
            if take + 1 + aggregates.len() + usize::from(new_aggregate) > MAX_TRANSACTION_ACTIONS {
                break;
            }
            let mut delta = aggregates.get(&key).cloned().unwrap_or_default();
            delta.add(record);
            if take > 0 && max_terms(&delta) > MAX_AGGREGATE_TERMS {
                break;
            }
            aggregates.insert(key, delta);
            take += 1;
        }
        take.max(1)
    }

    async fn write_transactional(
        &self,
        pending: &mut Vec<UsageRecord>,
    ) -> Result<(), DynamoDbError> {
        while !pending.is_empty() {
            let take = self.group_len(pending);
            match self.transact(&pending[..take]).await? {
                Transact::Done => {
                    pending.drain(..take);
                    self.counters.add_written(take as u64);
                }
                Transact::Duplicates(positions) => {
                    // Those records are stored already (a replay, or an earlier attempt
                    // whose acknowledgement was lost): drop them and send the rest again,
                    // at once — nothing failed.
                    self.counters.add_duplicates(positions.len() as u64);
                    let drop: HashSet<usize> = positions.into_iter().collect();
                    let mut index = 0;
                    pending.retain(|_| {
                        let keep = !drop.contains(&index);
                        index += 1;
                        keep
                    });
                }
            }
        }
        Ok(())
    }

    async fn transact(&self, group: &[UsageRecord]) -> Result<Transact, DynamoDbError> {
        let build_error =
            |e: aws_sdk_dynamodb::error::BuildError| DynamoDbError::Mapping(e.to_string());
        let mut aggregates: BTreeMap<(&str, u64), UsageStats> = BTreeMap::new();
        let mut actions = Vec::with_capacity(group.len() + 4);
        for record in group {
            aggregates
                .entry((record.tenant_id.as_str(), record.timestamp_unix_ms / DAY_MS))
                .or_default()
                .add(record);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(record_to_item(record, self.ttl_days)))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(build_error)?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for ((tenant, day), delta) in &aggregates {
            let (expression, names, values) = add_expression(&aggregate_terms(delta));
            let update = Update::builder()
                .table_name(&self.table)
                .key(PK, AttributeValue::S(partition_key(tenant)))
                .key(SK, AttributeValue::S(day_sort_key(*day)))
                .update_expression(expression)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(build_error)?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        self.counters.add_request();
        let request = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send();
        let result = self
            .counters
            .metrics
            .time(StoreCall::TransactWriteItems, request)
            .await;
        let error = match result {
            Ok(_) => return Ok(Transact::Done),
            Err(error) => error,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        {
            let reasons = cancelled.cancellation_reasons();
            let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
            let duplicates: Vec<usize> = codes
                .iter()
                .take(group.len())
                .enumerate()
                .filter(|(_, code)| **code == "ConditionalCheckFailed")
                .map(|(i, _)| i)
                .collect();
            if !duplicates.is_empty() {
                return Ok(Transact::Duplicates(duplicates));
            }
            let retryable = codes.is_empty()
                || codes.iter().any(|code| {
                    matches!(
                        *code,
                        "ThrottlingError" | "ProvisionedThroughputExceeded" | "TransactionConflict"
                    ) || is_retryable_code(code)
                });
            return Err(DynamoDbError::Sdk {
                operation: "TransactWriteItems",
                code: Some("TransactionCanceledException".into()),
                retryable,
                message: format!("transaction cancelled, reasons {codes:?}"),
            });
        }
        Err(classify("TransactWriteItems", &error))
    }

    // ----- Raw batch ----------------------------------------------------------------------

    async fn write_raw_batch(&self, pending: &mut Vec<UsageRecord>) -> Result<(), DynamoDbError> {
        while !pending.is_empty() {
            let take = pending.len().min(self.batch_size).min(MAX_BATCH_WRITE);
            let mut requests = Vec::with_capacity(take);
            for record in &pending[..take] {
                let put = PutRequest::builder()
                    .set_item(Some(record_to_item(record, self.ttl_days)))
                    .build()
                    .map_err(|e| DynamoDbError::Mapping(e.to_string()))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            self.counters.add_request();
            let request = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send();
            let output = self
                .counters
                .metrics
                .time(StoreCall::BatchWriteItem, request)
                .await
                .map_err(|e| classify("BatchWriteItem", &e))?;
            let returned: Vec<Option<ItemKey>> = output
                .unprocessed_items()
                .and_then(|items| items.get(&self.table))
                .map(|requests| {
                    requests
                        .iter()
                        .map(|r| {
                            let item = r.put_request()?.item();
                            match (item.get(PK), item.get(SK)) {
                                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                                    Some((pk.clone(), sk.clone()))
                                }
                                _ => None,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            // An unprocessed entry we cannot match to a record: keep the whole batch (a
            // re-put of a stored item is harmless; a lost one is not).
            let keep_all = returned.iter().any(Option::is_none);
            let unprocessed: HashSet<ItemKey> = returned.into_iter().flatten().collect();
            let mut index = 0;
            let mut done = 0;
            pending.retain(|record| {
                let in_batch = index < take;
                index += 1;
                let keep = !in_batch || keep_all || unprocessed.contains(&item_key(record));
                done += u64::from(!keep);
                keep
            });
            self.counters.add_written(done);
            if keep_all || !unprocessed.is_empty() {
                return Err(DynamoDbError::Sdk {
                    operation: "BatchWriteItem",
                    code: Some("UnprocessedItems".into()),
                    retryable: true,
                    message: format!("{} of {take} items unprocessed", unprocessed.len()),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
    use failover_provider::{RequestId, TokenUsage, Usd};
    use failover_usage::UsageOutcome;
    use rust_decimal::Decimal;

    fn store(batch_size: usize) -> Store {
        let client = Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let mut config = DynamoDbConfig::new("t");
        config.batch_size = batch_size;
        Store::new(client, &config, Arc::default())
    }

    fn record(i: usize, agent: &str, day: u64) -> UsageRecord {
        UsageRecord {
            request_id: RequestId::new(format!("r{i}")),
            call_id: format!("c{i}"),
            attempt: 1,
            tenant_id: "tenant".into(),
            agent_id: agent.into(),
            timestamp_unix_ms: day * DAY_MS + i as u64,
            provider: "bedrock".into(),
            model: "m".into(),
            logical_model: "gpt-4".into(),
            usage: TokenUsage::new(1, 1),
            usage_estimated: false,
            cost: Usd::new(Decimal::ONE),
            latency_ms: 1,
            outcome: UsageOutcome::Success,
            cached: false,
            fallback_used: false,
            streamed: false,
        }
    }

    #[test]
    fn groups_respect_batch_size_actions_and_expression_size() {
        let same: Vec<_> = (0..60).map(|i| record(i, "a", 1)).collect();
        assert_eq!(store(25).group_len(&same), 25);
        assert_eq!(store(50).group_len(&same), 50);
        // Every record on its own day: 2 actions each, 50 records = 100 actions.
        let days: Vec<_> = (0..60).map(|i| record(i, "a", i as u64)).collect();
        assert_eq!(store(50).group_len(&days), 50);
        // Many agents in one aggregate: cut before 250 terms (12 + 10 per bucket).
        let agents: Vec<_> = (0..60)
            .map(|i| record(i, &format!("agent{i}"), 1))
            .collect();
        let take = store(50).group_len(&agents);
        assert!(take < 50 && take > 10, "{take}");
        let mut delta = UsageStats::new();
        for r in &agents[..take] {
            delta.add(r);
        }
        assert!(max_terms(&delta) <= MAX_AGGREGATE_TERMS);
    }

    #[test]
    fn dedup_keeps_the_first_of_each_item_key() {
        let mut records = vec![record(1, "a", 1), record(2, "a", 1), record(1, "a", 1)];
        assert_eq!(dedup(&mut records), 1);
        assert_eq!(records.len(), 2);
        assert_eq!(item_key(&records[0]).1, format!("TS#{:013}#c1", DAY_MS + 1));
    }
}
