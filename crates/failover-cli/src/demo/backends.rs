//! Where the demo keeps its cache and its usage ledger: Redis and DynamoDB when their
//! endpoints are given (`REDIS_URL`, `DYNAMODB_ENDPOINT`), memory otherwise.
//!
//! Runs never collide: the Redis keys of a run live under `failover-demo-<run>` and are
//! sealed with a key generated for the run (they expire with the cache TTL); the ledger's
//! records carry a tenant of the run's own, in a table several runs may share.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::Credentials;
use failover_cache::{Cache, KeyDeriver, MemoryCache};
use failover_dynamodb::{DynamoDbUsageSink, DynamoDbUsageSinkBuilder, TableOptions};
use failover_elasticache::{ElastiCacheCache, ElastiCacheConfig, EncryptionKey};
use failover_provider::redact_url;
use failover_usage::{MemoryUsageSink, UsageSink};

use super::DemoArgs;

/// The usage table when `FAILOVER_DYNAMODB_TABLE` names none.
pub(crate) const DEFAULT_TABLE: &str = "failover-demo-usage";

/// The region the DynamoDB client signs for when `AWS_REGION` names none.
const DEFAULT_REGION: &str = "us-east-1";

/// Raw usage records of the demo expire this many days after they were written, unless
/// `FAILOVER_DYNAMODB_TTL_DAYS` says otherwise (the table is created with TTL enabled).
const RECORD_TTL_DAYS: u32 = 1;

/// The cache and the usage sink of one run, with what to say about them.
pub(crate) struct Backends {
    /// The cache the adapter uses.
    pub(crate) cache: Arc<dyn Cache>,
    /// The secret its keys are derived with: `FAILOVER_CACHE_KEY` when set, else one drawn
    /// for this run (a shared cache must not run on the published default key).
    pub(crate) key_deriver: KeyDeriver,
    /// The usage sink the adapter records to.
    pub(crate) sink: Arc<dyn UsageSink>,
    /// One line naming the cache backend.
    pub(crate) cache_label: String,
    /// One line naming the usage backend.
    pub(crate) sink_label: String,
    /// The DynamoDB sink, to shut down before the ledger is read.
    dynamodb: Option<Arc<DynamoDbUsageSink>>,
}

/// A non-empty, trimmed value.
fn given(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl Backends {
    /// The backends `args` ask for; Redis is pinged and the DynamoDB table created when
    /// missing, so an unreachable endpoint fails the demo before any scenario runs.
    pub(crate) async fn from_args(args: &DemoArgs, run: &str) -> Result<Self, Box<dyn Error>> {
        let (cache, cache_label) = match given(args.redis_url.as_ref()) {
            Some(url) => redis_cache(url, run).await?,
            None => (
                Arc::new(MemoryCache::new()) as Arc<dyn Cache>,
                "cache: memory (MemoryCache; set REDIS_URL to use Redis)".to_owned(),
            ),
        };
        let (sink, dynamodb, sink_label) = match given(args.dynamodb_endpoint.as_ref()) {
            Some(endpoint) => {
                // An empty FAILOVER_DYNAMODB_TABLE means the default, not a nameless table.
                let table = given(Some(&args.dynamodb_table)).unwrap_or(DEFAULT_TABLE);
                let (sink, label) = dynamodb_sink(endpoint, table, run).await?;
                (sink.clone() as Arc<dyn UsageSink>, Some(sink), label)
            }
            None => (
                Arc::new(MemoryUsageSink::default()) as Arc<dyn UsageSink>,
                None,
                "usage: memory (MemoryUsageSink; set DYNAMODB_ENDPOINT to use DynamoDB)".to_owned(),
            ),
        };
        Ok(Self {
            cache,
            key_deriver: KeyDeriver::from_env()?.unwrap_or_else(crate::secrets::random_key_deriver),
            sink,
            cache_label,
            sink_label,
            dynamodb,
        })
    }

    /// Where the ledger is read from, for the report.
    pub(crate) fn ledger_source(&self) -> String {
        match &self.dynamodb {
            Some(sink) => format!("read back from DynamoDB table {}", sink.config().table_name),
            None => "in memory".to_owned(),
        }
    }

    /// Shuts the DynamoDB sink down: every record is written (or the error says where the
    /// rest waits). Nothing to do for the memory sink.
    pub(crate) async fn finish(&self) -> Result<(), Box<dyn Error>> {
        if let Some(sink) = &self.dynamodb {
            sink.shutdown().await.map_err(|error| {
                format!(
                    "the DynamoDB usage sink did not write everything ({error}); the rest is in {}",
                    sink.spill_path().display()
                )
            })?;
        }
        Ok(())
    }
}

async fn redis_cache(url: &str, run: &str) -> Result<(Arc<dyn Cache>, String), Box<dyn Error>> {
    let prefix = format!("failover-demo-{run}");
    let config = ElastiCacheConfig::new(url, EncryptionKey::generate()?)
        .with_key_prefix(prefix.clone())
        .with_connect_timeout(Duration::from_secs(2))
        .with_operation_timeout(Duration::from_secs(1));
    let cache = ElastiCacheCache::new(config)?;
    cache
        .ping()
        .await
        .map_err(|error| format!("the Redis at {} does not answer: {error}", redact_url(url)))?;
    let label = format!(
        "cache: redis at {} (ElastiCacheCache, key prefix {prefix}, values sealed with a key \
         generated for this run; entries expire with the cache TTL)",
        redact_url(url)
    );
    Ok((Arc::new(cache), label))
}

/// For an `https://` endpoint, `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/
/// `AWS_SESSION_TOKEN`) when both are set; otherwise — a plain-`http://` local endpoint
/// (moto, DynamoDB Local) — dummy keys, so real credentials are never sent in the clear.
/// Explicit credentials also keep the SDK from asking any other credential source (the
/// instance metadata service among them).
fn credentials(endpoint: &str) -> Credentials {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let secure = endpoint.trim_start().starts_with("https://");
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) if secure => Credentials::new(
            id,
            secret,
            var("AWS_SESSION_TOKEN"),
            None,
            "failover-demo-environment",
        ),
        _ => Credentials::new(
            "AKIDFAILOVERDEMO0000",
            "failover-demo-not-a-secret",
            None,
            None,
            "failover-demo",
        ),
    }
}

async fn dynamodb_sink(
    endpoint: &str,
    table: &str,
    run: &str,
) -> Result<(Arc<DynamoDbUsageSink>, String), Box<dyn Error>> {
    // The rest of the sink's settings (write mode, TTL days, spill path) from the
    // environment, as for any DynamoDbUsageSink.
    let mut builder = DynamoDbUsageSinkBuilder::from_env()?
        .endpoint_url(endpoint)
        .table_name(table)
        .credentials(credentials(endpoint))
        // One write in flight: moto does not isolate concurrent transactions.
        .max_in_flight(1)
        .linger(Duration::from_millis(5));
    let config = builder.config().clone();
    if config.region.is_none() {
        builder = builder.region(DEFAULT_REGION);
    }
    if config.ttl_days.is_none() {
        builder = builder.ttl_days(RECORD_TTL_DAYS);
    }
    if config.spill_path.is_none() {
        builder = builder.spill_path(spill_path(run));
    }
    let client = builder.build_client().await?;
    let created =
        failover_dynamodb::create_table_if_missing(&client, table, &TableOptions::default())
            .await
            .map_err(|error| {
                format!(
                    "DynamoDB table {table} at {}: {error}",
                    redact_url(endpoint)
                )
            })?;
    let sink = builder.build().await?;
    let label = format!(
        "usage: dynamodb at {} (DynamoDbUsageSink, table {table}{}, region {})",
        redact_url(endpoint),
        if created { ", created now" } else { "" },
        sink.config().region.as_deref().unwrap_or(DEFAULT_REGION)
    );
    Ok((Arc::new(sink), label))
}

/// The run's own spill file, in the temporary directory (created only if DynamoDB refuses
/// records).
fn spill_path(run: &str) -> PathBuf {
    std::env::temp_dir().join(format!("failover-demo-{run}.spill"))
}
