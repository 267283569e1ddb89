//! The sink's configuration and its builder.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::config::Credentials;
use serde::{Deserialize, Serialize};

use crate::error::DynamoDbError;

/// How records are written, and therefore where statistics come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WriteMode {
    /// Each batch is one `TransactWriteItems`: a conditional put
    /// (`attribute_not_exists`) of every raw record plus one atomic `ADD` per
    /// (tenant, day) aggregate item. A record already stored cancels its put, so it is
    /// dropped from the batch and its tokens are never added twice. Tenant statistics are
    /// served from the aggregates. The default.
    #[default]
    Transactional,
    /// Raw records only, with `BatchWriteItem` (≤ 25 puts, unprocessed items resent):
    /// half the write cost, no aggregate items; statistics are computed from the raw
    /// records at read time. A replayed put overwrites an identical item, so nothing
    /// double-counts.
    RawBatch,
}

/// Configuration of a [`DynamoDbUsageSink`](crate::DynamoDbUsageSink).
///
/// Durations are in milliseconds so the struct reads and writes as plain TOML/JSON.
/// Credentials are not part of it: they come from the standard AWS chain (or
/// [`DynamoDbUsageSinkBuilder::credentials`] in tests).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DynamoDbConfig {
    /// The table (see [`create_table`](crate::create_table) for its schema).
    pub table_name: String,
    /// The AWS region; the standard chain's when `None` (`us-east-1` when only an
    /// endpoint override is given).
    pub region: Option<String>,
    /// An endpoint override (moto, DynamoDB Local, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// How records are written.
    pub write_mode: WriteMode,
    /// Raw records get an `expires_at` attribute this many days after their timestamp
    /// (enable TTL on it to expire them); `None` keeps them. Aggregates never expire.
    pub ttl_days: Option<u32>,
    /// Records held in memory between `record` and the writer. When full, `record` hands
    /// the record to the background spill writer instead.
    pub queue_capacity: usize,
    /// Records waiting for the background spill writer (the overflow of a full queue),
    /// which appends them to the spill file in batches, one fsync each. When this is full
    /// too, `record` refuses with `UsageError::Overloaded`.
    pub spill_queue_capacity: usize,
    /// Records read from the spill file into memory at once during a replay.
    pub replay_batch_size: usize,
    /// How long `shutdown` keeps writing to DynamoDB before it spills what is left.
    pub shutdown_timeout_ms: u64,
    /// Records per write request (1..=50; 25 by default).
    pub batch_size: usize,
    /// How long the writer waits for a batch to fill.
    pub linger_ms: u64,
    /// Write requests in flight at once.
    pub max_in_flight: usize,
    /// How long one batch is retried (with exponential backoff and jitter) before its
    /// records go to the spill file.
    pub spill_after_ms: u64,
    /// First backoff delay.
    pub backoff_base_ms: u64,
    /// Longest backoff delay.
    pub backoff_max_ms: u64,
    /// How often the writer tries to replay the spill file.
    pub replay_interval_ms: u64,
    /// The spill file; `failover-dynamodb-{table}.spill` in the working directory when
    /// `None`. Use a persistent disk, one file per process.
    pub spill_path: Option<PathBuf>,
    /// Strongly consistent reads on the base table (the agent index is always eventually
    /// consistent on real DynamoDB).
    pub consistent_reads: bool,
    /// Timeout of one HTTP attempt.
    pub attempt_timeout_ms: u64,
}

impl Default for DynamoDbConfig {
    fn default() -> Self {
        Self {
            table_name: String::new(),
            region: None,
            endpoint_url: None,
            write_mode: WriteMode::default(),
            ttl_days: None,
            queue_capacity: 100_000,
            spill_queue_capacity: 100_000,
            replay_batch_size: 1_000,
            shutdown_timeout_ms: 10_000,
            batch_size: 25,
            linger_ms: 5,
            max_in_flight: 4,
            spill_after_ms: 10_000,
            backoff_base_ms: 25,
            backoff_max_ms: 2_000,
            replay_interval_ms: 5_000,
            spill_path: None,
            consistent_reads: true,
            attempt_timeout_ms: 5_000,
        }
    }
}

impl fmt::Debug for DynamoDbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so that an endpoint with user info (`https://user:pass@host`) never
        // shows its password.
        f.debug_struct("DynamoDbConfig")
            .field("table_name", &self.table_name)
            .field("region", &self.region)
            .field(
                "endpoint_url",
                &self.endpoint_url.as_deref().map(redact_userinfo),
            )
            .field("write_mode", &self.write_mode)
            .field("ttl_days", &self.ttl_days)
            .field("queue_capacity", &self.queue_capacity)
            .field("spill_queue_capacity", &self.spill_queue_capacity)
            .field("replay_batch_size", &self.replay_batch_size)
            .field("shutdown_timeout_ms", &self.shutdown_timeout_ms)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("spill_after_ms", &self.spill_after_ms)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("replay_interval_ms", &self.replay_interval_ms)
            .field("spill_path", &self.spill_path)
            .field("consistent_reads", &self.consistent_reads)
            .field("attempt_timeout_ms", &self.attempt_timeout_ms)
            .finish()
    }
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The most records one transaction may carry: each record is a put, and with its
/// aggregate update at most two actions, within DynamoDB's limit of 100.
pub const MAX_BATCH_SIZE: usize = 50;

impl DynamoDbConfig {
    /// A configuration for `table_name` with the defaults.
    pub fn new(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            ..Self::default()
        }
    }

    /// Reads `FAILOVER_DYNAMODB_TABLE`, `DYNAMODB_ENDPOINT`, `AWS_REGION`,
    /// `FAILOVER_DYNAMODB_SPILL_PATH`, `FAILOVER_DYNAMODB_TTL_DAYS` and
    /// `FAILOVER_DYNAMODB_WRITE_MODE` (`transactional` or `raw_batch`) over the defaults.
    pub fn from_env() -> Result<Self, DynamoDbError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DynamoDbError> {
        let mut config = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(table) = get("FAILOVER_DYNAMODB_TABLE") {
            config.table_name = table;
        }
        config.endpoint_url = get("DYNAMODB_ENDPOINT");
        config.region = get("AWS_REGION");
        config.spill_path = get("FAILOVER_DYNAMODB_SPILL_PATH").map(PathBuf::from);
        if let Some(days) = get("FAILOVER_DYNAMODB_TTL_DAYS") {
            config.ttl_days = Some(days.trim().parse().map_err(|_| {
                DynamoDbError::Config(format!(
                    "FAILOVER_DYNAMODB_TTL_DAYS must be a number of days, got `{days}`"
                ))
            })?);
        }
        if let Some(mode) = get("FAILOVER_DYNAMODB_WRITE_MODE") {
            config.write_mode = match mode.trim() {
                "transactional" => WriteMode::Transactional,
                "raw_batch" => WriteMode::RawBatch,
                other => {
                    return Err(DynamoDbError::Config(format!(
                        "FAILOVER_DYNAMODB_WRITE_MODE must be `transactional` or `raw_batch`, got `{other}`"
                    )));
                }
            };
        }
        Ok(config)
    }

    /// Checks the values the sink cannot work with.
    pub fn validate(&self) -> Result<(), DynamoDbError> {
        let fail = |m: String| Err(DynamoDbError::Config(m));
        if self.table_name.trim().is_empty() {
            return fail("a table name is required (FAILOVER_DYNAMODB_TABLE)".into());
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return fail(format!(
                "batch_size must be 1..={MAX_BATCH_SIZE}, got {}",
                self.batch_size
            ));
        }
        if self.write_mode == WriteMode::RawBatch && self.batch_size > 25 {
            return fail(format!(
                "batch_size must be at most 25 with BatchWriteItem, got {}",
                self.batch_size
            ));
        }
        if self.queue_capacity == 0
            || self.spill_queue_capacity == 0
            || self.replay_batch_size == 0
            || self.max_in_flight == 0
        {
            return fail(
                "queue_capacity, spill_queue_capacity, replay_batch_size and max_in_flight must be at least 1"
                    .into(),
            );
        }
        if self.backoff_base_ms == 0 || self.backoff_max_ms < self.backoff_base_ms {
            return fail("backoff_base_ms must be > 0 and <= backoff_max_ms".into());
        }
        Ok(())
    }

    /// The spill file's path.
    pub fn spill_path(&self) -> PathBuf {
        self.spill_path.clone().unwrap_or_else(|| {
            let safe: String = self
                .table_name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            PathBuf::from(format!("failover-dynamodb-{safe}.spill"))
        })
    }

    pub(crate) fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    pub(crate) fn spill_after(&self) -> Duration {
        Duration::from_millis(self.spill_after_ms)
    }

    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// Records in memory above which the sink reports itself degraded: 80 % of the queue.
    pub(crate) fn queue_high_water(&self) -> u64 {
        (self.queue_capacity as u64).saturating_mul(4) / 5
    }

    pub(crate) fn replay_interval(&self) -> Duration {
        Duration::from_millis(self.replay_interval_ms.max(1))
    }

    /// The delay before retry number `attempt` (1-based): exponential from
    /// `backoff_base_ms`, capped at `backoff_max_ms`, with full jitter in its upper half.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.backoff_max_ms);
        let half = cap / 2;
        Duration::from_millis(half + fastrand::u64(0..=cap - half))
    }
}

/// Builds a [`DynamoDbUsageSink`](crate::DynamoDbUsageSink): a [`DynamoDbConfig`] plus
/// what is not configuration (explicit credentials).
#[derive(Debug, Clone, Default)]
pub struct DynamoDbUsageSinkBuilder {
    pub(crate) config: DynamoDbConfig,
    pub(crate) credentials: Option<Credentials>,
}

impl DynamoDbUsageSinkBuilder {
    /// A builder over the defaults (no table yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder over [`DynamoDbConfig::from_env`].
    pub fn from_env() -> Result<Self, DynamoDbError> {
        Ok(Self::from_config(DynamoDbConfig::from_env()?))
    }

    /// A builder over a configuration.
    pub fn from_config(config: DynamoDbConfig) -> Self {
        Self {
            config,
            credentials: None,
        }
    }

    /// The configuration built so far.
    pub fn config(&self) -> &DynamoDbConfig {
        &self.config
    }

    /// Sets the table.
    pub fn table_name(mut self, table: impl Into<String>) -> Self {
        self.config.table_name = table.into();
        self
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.region = Some(region.into());
        self
    }

    /// Points the client at another endpoint (moto, DynamoDB Local, a VPC endpoint).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.config.endpoint_url = Some(url.into());
        self
    }

    /// Uses these credentials instead of the standard chain (tests against moto).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets how records are written.
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.config.write_mode = mode;
        self
    }

    /// Expires raw records `days` after their timestamp (TTL attribute `expires_at`).
    pub fn ttl_days(mut self, days: u32) -> Self {
        self.config.ttl_days = Some(days);
        self
    }

    /// Sets the in-memory queue's bound.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = capacity;
        self
    }

    /// Sets the bound of the spill writer's queue (the overflow of a full queue).
    pub fn spill_queue_capacity(mut self, capacity: usize) -> Self {
        self.config.spill_queue_capacity = capacity;
        self
    }

    /// Sets how many spilled records a replay holds in memory at once.
    pub fn replay_batch_size(mut self, size: usize) -> Self {
        self.config.replay_batch_size = size;
        self
    }

    /// Sets how long `shutdown` keeps writing to DynamoDB before spilling the rest.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout_ms = duration_ms(timeout);
        self
    }

    /// Sets the records per write request.
    pub fn batch_size(mut self, size: usize) -> Self {
        self.config.batch_size = size;
        self
    }

    /// Sets how long the writer waits for a batch to fill.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger_ms = duration_ms(linger);
        self
    }

    /// Sets the number of write requests in flight.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// Sets how long a batch is retried before it is spilled.
    pub fn spill_after(mut self, bound: Duration) -> Self {
        self.config.spill_after_ms = duration_ms(bound);
        self
    }

    /// Sets the backoff's first and longest delay.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff_base_ms = duration_ms(base).max(1);
        self.config.backoff_max_ms = duration_ms(max);
        self
    }

    /// Sets how often the spill file is replayed.
    pub fn replay_interval(mut self, interval: Duration) -> Self {
        self.config.replay_interval_ms = duration_ms(interval);
        self
    }

    /// Sets the spill file.
    pub fn spill_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.spill_path = Some(path.into());
        self
    }

    /// Sets the timeout of one HTTP attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout_ms = duration_ms(timeout);
        self
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_env_reads_the_documented_variables() {
        let env = |name: &str| {
            Some(
                match name {
                    "FAILOVER_DYNAMODB_TABLE" => "usage",
                    "DYNAMODB_ENDPOINT" => "http://127.0.0.1:8000",
                    "AWS_REGION" => "eu-west-1",
                    "FAILOVER_DYNAMODB_TTL_DAYS" => "90",
                    "FAILOVER_DYNAMODB_WRITE_MODE" => "raw_batch",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let config = DynamoDbConfig::from_lookup(env).unwrap();
        assert_eq!(config.table_name, "usage");
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.ttl_days, Some(90));
        assert_eq!(config.write_mode, WriteMode::RawBatch);
        config.validate().unwrap();
        let bad = DynamoDbConfig::from_lookup(|n| {
            (n == "FAILOVER_DYNAMODB_TTL_DAYS").then(|| "soon".to_owned())
        });
        assert!(bad.is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let missing = DynamoDbConfig::default().validate().unwrap_err();
        assert!(missing.to_string().contains("table name"), "{missing}");
        let mut config = DynamoDbConfig::new("t");
        config.batch_size = 51;
        assert!(config.validate().is_err());
        config.batch_size = 30;
        config.write_mode = WriteMode::RawBatch;
        assert!(config.validate().is_err());
    }

    #[test]
    fn debug_hides_endpoint_credentials_and_serde_round_trips() {
        let mut config = DynamoDbConfig::new("t");
        config.endpoint_url = Some("https://user:secret@example.com".into());
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("***@example.com"), "{debug}");
        let json = serde_json::to_string(&config).unwrap();
        let back: DynamoDbConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = DynamoDbConfig::default();
        for attempt in 1..30 {
            let d = config.backoff(attempt).as_millis() as u64;
            let cap = (25u64 << (attempt - 1).min(20)).min(2_000);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d} vs {cap}");
        }
    }

    #[test]
    fn default_spill_path_is_derived_from_the_table() {
        assert_eq!(
            DynamoDbConfig::new("usage/prod").spill_path(),
            PathBuf::from("failover-dynamodb-usage_prod.spill")
        );
    }
}
