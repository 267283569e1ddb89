#![doc = include_str!("../README.md")]

// A request goes `listen` (accept, time-outs, drain) → `routes` (one module per concern)
// → `auth` (key to tenant) and `wire` (OpenAI's format in and out) → the engine; `error`
// is how every failure is answered, `state` what the handlers share.
mod auth;
mod error;
mod listen;
mod routes;
mod settings;
mod sse;
mod state;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use failover_core::FailoverAdapter;
use failover_telemetry::prometheus::PrometheusMetrics;
use tokio::task::JoinHandle;

pub use auth::{AGENT_HEADER, Caller, KeyGrant, KeyHash, Keys, TENANT_HEADER};
pub use error::{ApiError, MAX_RETRY_AFTER};
pub use listen::{DrainReport, ShutdownHandle};
pub use routes::chat::{
    ATTEMPTS_HEADER, CACHED_HEADER, COST_HEADER, PROVIDER_HEADER, REQUEST_ID_HEADER,
};
pub use settings::{GatewayConfig, Limits};

use crate::state::AppState;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is inconsistent.
    #[error("gateway configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// An OpenAI-compatible gateway in front of a [`FailoverAdapter`].
#[derive(Debug)]
pub struct Gateway {
    state: Arc<AppState>,
    listen: SocketAddr,
}

impl Gateway {
    /// A gateway for `adapter` with `config`'s keys and limits; `metrics` is what
    /// `GET /metrics` renders (404 without).
    pub fn new(
        adapter: FailoverAdapter,
        config: GatewayConfig,
        metrics: Option<PrometheusMetrics>,
    ) -> Result<Self, GatewayError> {
        config.limits.validate().map_err(GatewayError::Config)?;
        let keys = Keys::new(config.keys).map_err(GatewayError::Config)?;
        if keys.is_empty() {
            return Err(GatewayError::Config(
                "no [[keys]]: nobody could call the gateway".to_owned(),
            ));
        }
        let state = AppState::new(adapter, keys, config.admin_key_hash, config.limits, metrics);
        Ok(Self {
            state: Arc::new(state),
            listen: config.listen,
        })
    }

    /// Binds the configured address and starts serving.
    pub async fn start(self) -> Result<RunningGateway, GatewayError> {
        let addr = self.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let router = routes::router(Arc::clone(&self.state));
        let task = tokio::spawn(listen::accept_loop(
            listener,
            router,
            Arc::clone(&self.state),
        ));
        Ok(RunningGateway {
            local_addr,
            shutdown: ShutdownHandle::new(self.state),
            task,
        })
    }
}

/// A gateway that is serving.
#[derive(Debug)]
pub struct RunningGateway {
    local_addr: SocketAddr,
    shutdown: ShutdownHandle,
    task: JoinHandle<DrainReport>,
}

impl RunningGateway {
    /// The address it listens on (the port chosen when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What starts the drain, for a signal handler.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Waits until the gateway has drained (after [`ShutdownHandle::drain`]).
    pub async fn wait(self) -> DrainReport {
        match self.task.await {
            Ok(report) => report,
            Err(error) => DrainReport {
                cut: true,
                all_closed: false,
                ledger: Err(format!("the accept loop ended abnormally: {error}")),
            },
        }
    }

    /// Drains and waits.
    pub async fn drain(self) -> DrainReport {
        self.shutdown.drain();
        self.wait().await
    }
}
