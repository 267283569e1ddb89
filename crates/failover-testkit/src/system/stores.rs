//! Views of what the stores hold, read around the system under test: Redis keys under a
//! harness's prefix (raw `SCAN`/`PTTL`/`GET` on a connection of their own) and the usage
//! items of a tenant in the DynamoDB table (a raw `Query`). The suite asserts on these, not
//! on the adapter's own account of what it wrote.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use failover_dynamodb::{PK, SK, item_to_record, partition_key};
use failover_usage::UsageRecord;

/// One Redis entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The Redis key.
    pub key: String,
    /// The time to live left; `None` when the key never expires.
    pub ttl: Option<Duration>,
    /// The stored bytes (sealed: the cache encrypts values).
    pub value: Vec<u8>,
}

/// The Redis keys under one harness's prefix, read on a connection of its own (with the
/// cache's AUTH and TLS settings; `Debug` shows neither the URL nor the credentials).
#[derive(Clone)]
pub struct CacheStore {
    url: String,
    username: Option<String>,
    password: Option<String>,
    tls_root_cert_pem: Option<Vec<u8>>,
    prefix: String,
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
            url,
            username,
            password,
            tls_root_cert_pem,
            prefix,
        }
    }

    /// The key prefix every entry of this harness starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        use redis::IntoConnectionInfo;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .expect("the cache URL parses");
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let info = info.set_redis_settings(settings);
        let client = match &self.tls_root_cert_pem {
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
        let mut connection = self.connection().await;
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

/// The usage items of the DynamoDB table behind a harness.
#[derive(Debug, Clone)]
pub struct UsageTable {
    client: Client,
    table: String,
}

impl UsageTable {
    /// A view of `table` through `client`.
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Every raw usage record item of `tenant_id` (its partition, sort keys `TS#…`),
    /// decoded, in time order. Read with a consistent `Query` straight to the table.
    pub async fn records(&self, tenant_id: &str) -> Vec<UsageRecord> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
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
