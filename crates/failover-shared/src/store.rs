//! The connection to Redis/ElastiCache: a tuned `ConnectionManager` for one node, a
//! `ClusterConnection` in cluster mode. Neither connects when built, so a replica starts
//! while Redis is down; every call is bounded by the operation time-out.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, Script, ScriptInvocation};

use crate::SharedError;

/// Where the shared state lives, and how long a call to it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `redis://` / `rediss://` URL of one node (a primary endpoint), or several seed nodes
    /// of a cluster (cluster mode on when [`cluster`](Self::cluster) is set).
    pub urls: Vec<String>,
    /// Whether the URLs are nodes of a Redis Cluster (ElastiCache cluster mode enabled).
    pub cluster: bool,
    /// Prefix of every key (inside the hash tag).
    pub key_prefix: String,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long one script call may take; past it the replica falls back to its local state.
    pub operation_timeout: Duration,
}

impl StoreConfig {
    /// One node at `url`, prefix `lf`, connect time-out 250 ms, operation time-out 100 ms.
    pub fn single(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            cluster: false,
            key_prefix: "lf".to_owned(),
            connect_timeout: Duration::from_millis(250),
            operation_timeout: Duration::from_millis(100),
        }
    }

    /// A cluster reached through `seeds`, otherwise as [`single`](Self::single).
    pub fn cluster<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            urls: seeds.into_iter().map(Into::into).collect(),
            cluster: true,
            ..Self::single("")
        }
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the operation time-out.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }
}

/// A connection to the shared store, cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct SharedStore {
    connection: Connection,
    prefix: String,
    operation_timeout: Duration,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    /// Shared: the client is large, and a store is cloned into every background task.
    Cluster(std::sync::Arc<(ClusterClient, tokio::sync::OnceCell<ClusterConnection>)>),
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore")
            .field(
                "mode",
                &match self.connection {
                    Connection::Single(_) => "single",
                    Connection::Cluster(_) => "cluster",
                },
            )
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// Builds the connection without touching the network. Needs a Tokio runtime.
    pub fn new(config: &StoreConfig) -> Result<Self, SharedError> {
        let invalid = |e: redis::RedisError| SharedError::Config(e.to_string());
        if config.urls.is_empty() || config.urls.iter().any(|u| u.is_empty()) {
            return Err(SharedError::Config("no Redis URL given".to_owned()));
        }
        if !valid_prefix(&config.key_prefix) {
            return Err(SharedError::Config(format!(
                "key prefix {:?}: letters, digits and - _ . : only, not empty",
                config.key_prefix
            )));
        }
        let connection = if config.cluster {
            let client = ClusterClient::builder(config.urls.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.operation_timeout)
                .retries(1)
                .min_retry_wait(5)
                .max_retry_wait(50)
                .build()
                .map_err(invalid)?;
            Connection::Cluster(std::sync::Arc::new((client, Default::default())))
        } else {
            let client = redis::Client::open(config.urls[0].as_str()).map_err(invalid)?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.operation_timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(5))
                .set_max_delay(Duration::from_millis(50));
            Connection::Single(
                ConnectionManager::new_lazy_with_config(client, manager_config).map_err(invalid)?,
            )
        };
        Ok(Self {
            connection,
            prefix: config.key_prefix.clone(),
            operation_timeout: config.operation_timeout,
        })
    }

    /// `{prefix:scope}:name`: every key of one scope (a provider, a tenant) shares the hash
    /// tag, so one script's keys are in one cluster slot.
    pub(crate) fn key(&self, scope: &str, name: &str) -> String {
        format!("{{{}:{}}}:{}", self.prefix, scope, name)
    }

    /// Runs a prepared script invocation (EVALSHA, loading the script on NOSCRIPT), bounded
    /// by the operation time-out.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        self.bounded(async {
            let mut connection = self.connect().await?;
            invocation.invoke_async(&mut connection).await
        })
        .await
    }

    /// As [`run`](Self::run), for a script that may run twice with the same arguments
    /// without changing more than once: a connection that broke while idle (Redis
    /// restarted, a failover) is found by the first command on it, and the command is
    /// sent once more on the reconnected manager, within the same time-out. (Whether the
    /// first one ran is unknown, hence idempotent scripts only.)
    pub(crate) async fn run_idempotent<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        self.bounded(async {
            let mut connection = self.connect().await?;
            match invocation.invoke_async(&mut connection).await {
                Err(error) if error.is_io_error() || error.is_connection_dropped() => {
                    let mut connection = self.connect().await?;
                    invocation.invoke_async(&mut connection).await
                }
                result => result,
            }
        })
        .await
    }

    /// Runs one plain command, bounded by the operation time-out.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, SharedError> {
        self.bounded(async {
            let mut connection = self.connect().await?;
            cmd.query_async(&mut connection).await
        })
        .await
    }

    /// A raw `PING` round trip (the floor the benches compare against).
    pub async fn ping(&self) -> Result<(), SharedError> {
        self.query::<()>(&redis::cmd("PING")).await
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SharedError> {
        match tokio::time::timeout(self.operation_timeout, call).await {
            Ok(result) => result.map_err(SharedError::from),
            Err(_) => Err(SharedError::Timeout(self.operation_timeout)),
        }
    }

    async fn connect(&self) -> redis::RedisResult<Live> {
        Ok(match &self.connection {
            Connection::Single(manager) => Live::Single(manager.clone()),
            Connection::Cluster(cluster) => Live::Cluster(
                cluster
                    .1
                    .get_or_try_init(|| cluster.0.get_async_connection())
                    .await?
                    .clone(),
            ),
        })
    }
}

/// One handle on the live connection, whichever the mode.
enum Live {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Live {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Live::Single(c) => c.req_packed_command(cmd),
            Live::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Live::Single(c) => c.req_packed_commands(cmd, offset, count),
            Live::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Live::Single(c) => c.get_db(),
            Live::Cluster(c) => c.get_db(),
        }
    }
}

fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A script of ours, after the prelude every one of them shares (`clock.lua`: `now` in
/// milliseconds, from `ARGV[2]` or the server's `TIME`). Compiled (hashed) once per process.
pub(crate) fn script(source: &'static str) -> Script {
    Script::new(&format!("{}{source}", include_str!("clock.lua")))
}
