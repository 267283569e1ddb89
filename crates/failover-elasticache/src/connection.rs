//! The connection: a tuned `ConnectionManager` for one node, a `ClusterConnection` for
//! cluster mode. Neither connects when it is built, so an application starts while the
//! cache is down; every operation is bounded by the caller's timeout.

use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisResult, TlsCertificates, Value,
};

use failover_provider::redact_url;

use crate::config::{ConfigError, ElastiCacheConfig, Endpoint};

pub(crate) enum Connection {
    Single(SingleNode),
    Cluster(ClusterNode),
}

pub(crate) struct SingleNode {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Replaced wholesale on a `READONLY` reply: the new manager opens a new socket, which
    /// resolves the endpoint's DNS name again (ElastiCache moves the primary endpoint's
    /// record on failover). Reading clones an `Arc`; the lock is held for nanoseconds.
    manager: RwLock<ConnectionManager>,
}

pub(crate) struct ClusterNode {
    client: ClusterClient,
    /// Established on first use (so building never blocks); redis-rs then follows
    /// `MOVED`/`ASK` redirects, refreshes the slot map and reconnects nodes by itself.
    connection: tokio::sync::OnceCell<ClusterConnection>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("Connection::Single"),
            Self::Cluster(_) => f.write_str("Connection::Cluster"),
        }
    }
}

fn invalid(error: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        setting: "endpoint",
        message: error.to_string(),
    }
}

fn connection_info(url: &str, config: &ElastiCacheConfig) -> Result<ConnectionInfo, ConfigError> {
    let info = url
        .into_connection_info()
        .map_err(|error| invalid(format!("{}: {error}", redact_url(url))))?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    Ok(info.set_redis_settings(settings))
}

fn root_certs(config: &ElastiCacheConfig) -> Option<TlsCertificates> {
    let pem = config.tls_root_cert_pem.as_ref()?;
    config.endpoint.uses_tls().then(|| TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.clone()),
    })
}

impl Connection {
    /// Builds the connection without touching the network. Needs a Tokio runtime.
    pub(crate) fn new(config: &ElastiCacheConfig) -> Result<Self, ConfigError> {
        if config.endpoint.uses_tls() && rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(ConfigError::Invalid {
                setting: "endpoint",
                message: "rediss:// needs a process-wide rustls CryptoProvider: install one at \
                          startup, e.g. `rustls::crypto::aws_lc_rs::default_provider()\
                          .install_default()`"
                    .to_owned(),
            });
        }
        match &config.endpoint {
            Endpoint::Single(url) => {
                let info = connection_info(url, config)?;
                let client = match root_certs(config) {
                    Some(certs) => redis::Client::build_with_tls(info, certs),
                    None => redis::Client::open(info),
                }
                .map_err(invalid)?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.operation_timeout))
                    .set_number_of_retries(config.reconnect_retries)
                    .set_min_delay(Duration::from_millis(5))
                    .set_max_delay(Duration::from_millis(50));
                let manager =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                        .map_err(invalid)?;
                Ok(Self::Single(SingleNode {
                    client,
                    config: manager_config,
                    manager: RwLock::new(manager),
                }))
            }
            Endpoint::Cluster(urls) => {
                let infos = urls
                    .iter()
                    .map(|url| connection_info(url, config))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClient::builder(infos)
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.operation_timeout)
                    .retries(u32::try_from(config.reconnect_retries).unwrap_or(u32::MAX))
                    .min_retry_wait(5)
                    .max_retry_wait(50);
                if let Some(username) = &config.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &config.password {
                    builder = builder.password(password);
                }
                if let Some(certs) = root_certs(config) {
                    builder = builder.certs(certs);
                }
                let client = builder.build().map_err(invalid)?;
                Ok(Self::Cluster(ClusterNode {
                    client,
                    connection: tokio::sync::OnceCell::new(),
                }))
            }
        }
    }

    /// Runs `cmd` wherever redis-rs routes it (the key's slot in cluster mode).
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Single(node) => {
                let mut manager = node.current();
                cmd.query_async(&mut manager).await
            }
            Self::Cluster(node) => {
                let mut connection = node.connection().await?;
                cmd.query_async(&mut connection).await
            }
        }
    }

    /// Runs `cmd` on the primary that owns `slot_key`'s slot. A `SCAN` must go to one node
    /// for its whole cursor walk; in cluster mode redis-rs would otherwise pick any node.
    pub(crate) async fn query_on_slot<T: FromRedisValue>(
        &self,
        cmd: Cmd,
        slot_key: &[u8],
    ) -> RedisResult<T> {
        match self {
            Self::Single(_) => self.query(&cmd).await,
            Self::Cluster(node) => {
                let mut connection = node.connection().await?;
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(slot_key, SlotAddr::Master),
                ));
                let value: Value = connection.route_command(cmd, routing).await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }

    /// Drops the current single-node connection and starts a fresh one (new socket, new
    /// DNS lookup). Cluster mode needs nothing: redis-rs refreshes its slot map on
    /// `READONLY`/`MOVED` by itself.
    pub(crate) fn reconnect(&self) -> bool {
        match self {
            Self::Single(node) => {
                match ConnectionManager::new_lazy_with_config(
                    node.client.clone(),
                    node.config.clone(),
                ) {
                    Ok(fresh) => {
                        *node
                            .manager
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                        true
                    }
                    Err(_) => false,
                }
            }
            Self::Cluster(_) => false,
        }
    }
}

impl SingleNode {
    fn current(&self) -> ConnectionManager {
        self.manager
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ClusterNode {
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}
