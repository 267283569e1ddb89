//! What one adapter holds, shared by its clones and by every request in flight.
//!
//! A request flows through the modules in one direction: `complete` (or `stream`) prepares
//! it (`prepare`), runs the request layers around it (`request_scope`), tries the cache and
//! identical requests in flight (`reuse`), then walks the chain (`chain`), one `attempt`
//! per provider. None of them calls back up.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use failover_breaker::{Breaker, Clock};
use failover_provider::{Capabilities, Provider};

use crate::accounting::Ledger;
use crate::cache::TimeBoxedCache;
use crate::coalesce::Flights;
use crate::config::AdapterConfig;
use crate::flights::SharedFlights;
use crate::layers::{ProviderLayer, RequestLayer};
use crate::routing::Router;
use crate::telemetry::EngineMetrics;

/// One provider in the chain with its breaker.
#[derive(Debug)]
pub(crate) struct ProviderSlot {
    pub(crate) name: String,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) breaker: Arc<dyn Breaker>,
    pub(crate) capabilities: Capabilities,
}

/// The engine behind a [`FailoverAdapter`](crate::FailoverAdapter).
#[derive(Debug)]
pub(crate) struct Engine {
    /// The providers, in the order they are tried.
    pub(crate) chain: Vec<ProviderSlot>,
    pub(crate) router: Router,
    /// The breakers' clock: their `next_probe_at` instants are read against it.
    pub(crate) breaker_clock: Arc<dyn Clock>,
    pub(crate) cache: Option<TimeBoxedCache>,
    pub(crate) ledger: Ledger,
    pub(crate) config: AdapterConfig,
    pub(crate) flights: Arc<Flights>,
    /// Flights shared with other replicas, when registered.
    pub(crate) shared_flights: Option<Arc<dyn SharedFlights>>,
    /// Around each request, outermost first.
    pub(crate) request_layers: Vec<Arc<dyn RequestLayer>>,
    /// Around each provider call, outermost first.
    pub(crate) provider_layers: Vec<Arc<dyn ProviderLayer>>,
    /// Set by [`FailoverAdapter::shutdown`](crate::FailoverAdapter::shutdown): new requests
    /// are refused.
    pub(crate) shut_down: AtomicBool,
    /// Metric handles, each registered when its series first occurs.
    pub(crate) metrics: Arc<EngineMetrics>,
}
