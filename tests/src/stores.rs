//! Views of what the stores hold, read around the system under test: Redis keys under a
//! harness's prefix (raw `SCAN`/`PTTL`/`GET` on a connection of their own) and the usage
//! items of a tenant in the DynamoDB table (a raw `Query`) — or, in the memory tier, the
//! entries of the `MemoryCache` and the records of the `MemoryUsageSink`, rendered the same
//! way. The suite asserts on these, not on the adapter's own account of what it wrote.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use failover_cache::MemoryCache;
use failover_dynamodb::{PK, SK, item_to_record, partition_key};
use failover_usage::{MemoryUsageSink, UsageRecord};

/// One cache entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The Redis key (`{prefix}:{<tenant tag>}:<digest>`); in the memory tier the entry's
    /// key rendered in the same layout.
    pub key: String,
    /// The time to live left; `None` when the key never expires.
    pub ttl: Option<Duration>,
    /// The stored bytes: sealed in Redis (the cache encrypts values); the entry's JSON in
    /// the memory tier.
    pub value: Vec<u8>,
}

/// The cache entries under one harness's prefix: Redis keys read on a connection of its
/// own (with the cache's AUTH and TLS settings; `Debug` shows neither the URL nor the
/// credentials), or a `MemoryCache`'s entries.
#[derive(Clone)]
pub struct CacheStore {
    backend: CacheBackend,
    prefix: String,
}

#[derive(Clone)]
enum CacheBackend {
    Redis {
        url: String,
        username: Option<String>,
        password: Option<String>,
        tls_root_cert_pem: Option<Vec<u8>>,
    },
    Memory(Arc<MemoryCache>),
}

impl std::fmt::Debug for CacheStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl CacheStore {
    /// A view of the keys under `prefix` at the Redis `url`, with optional AUTH settings and
    /// a private CA for `rediss://`.
    pub fn new(
        url: String,
        username: Option<String>,
        password: Option<String>,
        tls_root_cert_pem: Option<Vec<u8>>,
        prefix: String,
    ) -> Self {
        Self {
            backend: CacheBackend::Redis {
                url,
                username,
                password,
                tls_root_cert_pem,
            },
            prefix,
        }
    }

    /// A view of `cache`'s entries, their keys rendered under `prefix` in the Redis layout.
    pub fn memory(cache: Arc<MemoryCache>, prefix: String) -> Self {
        Self {
            backend: CacheBackend::Memory(cache),
            prefix,
        }
    }

    /// The key prefix every entry of this harness starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn connection(
        url: &str,
        username: &Option<String>,
        password: &Option<String>,
        tls_root_cert_pem: &Option<Vec<u8>>,
    ) -> redis::aio::MultiplexedConnection {
        use redis::IntoConnectionInfo;
        let info = url.into_connection_info().expect("the cache URL parses");
        let mut settings = info.redis_settings().clone();
        if let Some(username) = username {
            settings = settings.set_username(username);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        let info = info.set_redis_settings(settings);
        let client = match tls_root_cert_pem {
            // The same private CA the cache trusts (ELASTICACHE_TLS_CA_FILE).
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        };
        client
            .expect("the cache URL parses")
            .get_multiplexed_async_connection()
            .await
            .expect("a raw connection to the cache's Redis")
    }

    /// Every entry under the prefix, sorted by key.
    pub async fn entries(&self) -> Vec<StoredEntry> {
        let mut entries = match &self.backend {
            CacheBackend::Redis {
                url,
                username,
                password,
                tls_root_cert_pem,
            } => {
                let connection = Self::connection(url, username, password, tls_root_cert_pem).await;
                self.redis_entries(connection).await
            }
            CacheBackend::Memory(cache) => cache
                .entries()
                .into_iter()
                .map(|entry| StoredEntry {
                    key: format!(
                        "{}:{{{}",
                        self.prefix,
                        entry.key.to_hex().replacen(':', "}:", 1)
                    ),
                    ttl: Some(entry.ttl_left),
                    value: serde_json::to_vec(&entry.value).expect("a cached value serializes"),
                })
                .collect(),
        };
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }

    async fn redis_entries(
        &self,
        mut connection: redis::aio::MultiplexedConnection,
    ) -> Vec<StoredEntry> {
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let ttl_ms: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("PTTL");
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("GET");
            // -2: the key expired between SCAN and PTTL.
            if ttl_ms == -2 {
                continue;
            }
            entries.push(StoredEntry {
                key,
                ttl: u64::try_from(ttl_ms).ok().map(Duration::from_millis),
                value: value.unwrap_or_default(),
            });
        }
        entries
    }

    /// The entries of the tenant whose hex tag is `tenant_tag`
    /// (`{prefix}:{<tag>}:…`).
    pub async fn entries_of(&self, tenant_tag: &str) -> Vec<StoredEntry> {
        let start = format!("{}:{{{tenant_tag}}}:", self.prefix);
        self.entries()
            .await
            .into_iter()
            .filter(|entry| entry.key.starts_with(&start))
            .collect()
    }
}

/// The usage items of the DynamoDB table behind a harness, or the records of its
/// `MemoryUsageSink`.
#[derive(Debug, Clone)]
pub enum UsageTable {
    /// A DynamoDB table, read through a client of its own.
    DynamoDb {
        /// The client.
        client: Client,
        /// The table.
        table: String,
    },
    /// The memory tier's sink.
    Memory(Arc<MemoryUsageSink>),
}

impl UsageTable {
    /// A view of `table` through `client`.
    pub fn new(client: Client, table: String) -> Self {
        Self::DynamoDb { client, table }
    }

    /// Every usage record of `tenant_id`, in time order: in DynamoDB, the raw record items
    /// of its partition (sort keys `TS#…`), decoded, read with a consistent `Query`
    /// straight to the table.
    pub async fn records(&self, tenant_id: &str) -> Vec<UsageRecord> {
        let (client, table) = match self {
            Self::DynamoDb { client, table } => (client, table),
            Self::Memory(sink) => {
                let mut records: Vec<UsageRecord> = sink
                    .records()
                    .into_iter()
                    .filter(|record| record.tenant_id == tenant_id)
                    .collect();
                records.sort_by_key(|record| record.timestamp_unix_ms);
                return records;
            }
        };
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let page = client
                .query()
                .table_name(table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :ts)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", AttributeValue::S(partition_key(tenant_id)))
                .expression_attribute_values(":ts", AttributeValue::S("TS#".into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Query of the usage table");
            for item in page.items() {
                records.push(item_to_record(item).expect("a usage item decodes"));
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        records
    }
}
