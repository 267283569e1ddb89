//! Assembling a [`FailoverAdapter`].

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use failover_breaker::{Breaker, BreakerConfig, CircuitBreaker, Clock, SystemClock};

use crate::flights::SharedFlights;
use failover_cache::{Cache, KeyDeriver};
use failover_provider::Provider;
use failover_usage::{MemoryUsageSink, PricingTable, UsageSink};

use crate::accounting::Ledger;
use crate::adapter::FailoverAdapter;
use crate::cache::TimeBoxedCache;
use crate::config::AdapterConfig;
use crate::engine::{Engine, ProviderSlot};
use crate::layers::{ProviderLayer, RequestLayer};
use crate::routing::Router;
use crate::telemetry::EngineMetrics;

/// A configuration the adapter refuses to start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No provider was added.
    #[error("no providers configured")]
    NoProviders,
    /// Two providers share a name.
    #[error("provider name `{0}` is used twice")]
    DuplicateProvider(String),
    /// A breaker configuration is invalid.
    #[error("circuit breaker for `{provider}`: {message}")]
    Breaker {
        /// The provider.
        provider: String,
        /// What is wrong.
        message: String,
    },
    /// A setting of [`AdapterConfig`] is out of its range.
    #[error("adapter setting `{setting}`: {message}")]
    Config {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The cache is shared (Redis/ElastiCache) but keyed with the published default key:
    /// set a key secret of your own (`AdapterBuilder::key_deriver`, or `FAILOVER_CACHE_KEY`
    /// where the application reads it).
    #[error("cache: {0}")]
    Cache(String),
    /// A route targets a model the pricing table does not know.
    #[error(
        "no price for model `{model}` on `{provider}` (routed from `{logical}`); add it to the \
         pricing table or allow unpriced models"
    )]
    UnpricedRoute {
        /// The logical model.
        logical: String,
        /// The provider.
        provider: String,
        /// The concrete model.
        model: String,
    },
}

enum BreakerChoice {
    Config(BreakerConfig),
    Custom(Arc<dyn Breaker>),
}

/// Builds a [`FailoverAdapter`]. Providers are tried in the order they are added.
///
/// Defaults: the embedded routing and pricing tables, no cache, an in-memory usage sink,
/// the system clock, [`AdapterConfig::default`], no layers.
pub struct AdapterBuilder {
    providers: Vec<(Arc<dyn Provider>, BreakerChoice)>,
    router: Router,
    cache: Option<Arc<dyn Cache>>,
    key_deriver: KeyDeriver,
    sink: Option<Arc<dyn UsageSink>>,
    pricing: PricingTable,
    config: AdapterConfig,
    clock: Arc<dyn Clock>,
    request_layers: Vec<Arc<dyn RequestLayer>>,
    provider_layers: Vec<Arc<dyn ProviderLayer>>,
    shared_flights: Option<Arc<dyn SharedFlights>>,
}

impl Default for AdapterBuilder {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            router: Router::embedded(),
            cache: None,
            key_deriver: KeyDeriver::default(),
            sink: None,
            pricing: PricingTable::embedded(),
            config: AdapterConfig::default(),
            clock: Arc::new(SystemClock),
            request_layers: Vec::new(),
            provider_layers: Vec::new(),
            shared_flights: None,
        }
    }
}

impl AdapterBuilder {
    /// Appends a provider to the chain with its own circuit breaker.
    pub fn provider(mut self, provider: Arc<dyn Provider>, breaker: BreakerConfig) -> Self {
        self.providers
            .push((provider, BreakerChoice::Config(breaker)));
        self
    }

    /// Appends a provider guarded by a breaker built elsewhere.
    pub fn provider_with_breaker(
        mut self,
        provider: Arc<dyn Provider>,
        breaker: Arc<dyn Breaker>,
    ) -> Self {
        self.providers
            .push((provider, BreakerChoice::Custom(breaker)));
        self
    }

    /// Replaces the routing table.
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Shares flights of identical requests with other replicas (see
    /// [`flights`](crate::flights)); useful only with a cache every replica reads.
    pub fn shared_flights(mut self, flights: Arc<dyn SharedFlights>) -> Self {
        self.shared_flights = Some(flights);
        self
    }

    /// Uses a response cache.
    pub fn cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Sets the secret cache keys are derived with (shared by every replica of a shared cache).
    pub fn key_deriver(mut self, deriver: KeyDeriver) -> Self {
        self.key_deriver = deriver;
        self
    }

    /// Sets the usage sink.
    pub fn usage_sink(mut self, sink: Arc<dyn UsageSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Replaces the pricing table.
    pub fn pricing(mut self, pricing: PricingTable) -> Self {
        self.pricing = pricing;
        self
    }

    /// Sets the adapter settings.
    pub fn config(mut self, config: AdapterConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock of the breakers this builder creates.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a layer around every request, inside the layers added before it: it is asked
    /// after them and told after them how the request ended. Where request layers sit
    /// among the built-in steps is documented in [`layers`](crate::layers).
    pub fn request_layer(mut self, layer: Arc<dyn RequestLayer>) -> Self {
        self.request_layers.push(layer);
        self
    }

    /// Adds a layer around every provider call, inside the layers added before it and
    /// outside the provider's breaker. Where provider layers sit among the built-in steps
    /// is documented in [`layers`](crate::layers).
    pub fn provider_layer(mut self, layer: Arc<dyn ProviderLayer>) -> Self {
        self.provider_layers.push(layer);
        self
    }

    /// Checks the configuration and builds the adapter.
    pub fn build(self) -> Result<FailoverAdapter, BuildError> {
        if self.providers.is_empty() {
            return Err(BuildError::NoProviders);
        }
        let share = self.config.attempt_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(BuildError::Config {
                setting: "attempt_share",
                message: format!("must be above 0 and at most 1, got {share}"),
            });
        }
        let mut names = HashSet::new();
        let mut chain = Vec::with_capacity(self.providers.len());
        for (provider, choice) in self.providers {
            let name = provider.name().to_owned();
            if !names.insert(name.clone()) {
                return Err(BuildError::DuplicateProvider(name));
            }
            let breaker: Arc<dyn Breaker> = match choice {
                BreakerChoice::Custom(breaker) => breaker,
                BreakerChoice::Config(config) => Arc::new(
                    CircuitBreaker::try_with_clock(config, Arc::clone(&self.clock))
                        .map_err(|e| BuildError::Breaker {
                            provider: name.clone(),
                            message: e.to_string(),
                        })?
                        // Its transitions are logged under the provider's name.
                        .with_name(name.as_str()),
                ),
            };
            chain.push(ProviderSlot {
                name,
                capabilities: provider.capabilities(),
                provider,
                breaker,
            });
        }
        if !self.config.allow_unpriced_models {
            for (logical, provider, model) in self.router.entries() {
                if names.contains(provider) && self.pricing.price(provider, model).is_none() {
                    return Err(BuildError::UnpricedRoute {
                        logical: logical.to_owned(),
                        provider: provider.to_owned(),
                        model: model.to_owned(),
                    });
                }
            }
        }
        if let Some(cache) = &self.cache {
            failover_cache::check_key_deriver(cache.as_ref(), &self.key_deriver)
                .map_err(|error| BuildError::Cache(error.to_string()))?;
        }
        let cache = self.cache.map(|cache| {
            TimeBoxedCache::new(
                cache,
                self.key_deriver,
                self.config.cache_ttl,
                self.config.cache_lookup_budget,
                self.config.cache_write_budget,
            )
        });
        let sink = self
            .sink
            .unwrap_or_else(|| Arc::new(MemoryUsageSink::default()));
        let providers: Vec<_> = chain
            .iter()
            .map(|slot| Arc::clone(&slot.provider))
            .collect();
        let metrics = Arc::new(EngineMetrics::new(
            &providers,
            &self.router,
            self.config.metrics_tenant_limit,
        ));
        Ok(FailoverAdapter::from_engine(Engine {
            chain,
            router: self.router,
            breaker_clock: self.clock,
            cache,
            ledger: Ledger::new(sink, self.pricing),
            config: self.config,
            flights: Default::default(),
            shared_flights: self.shared_flights,
            request_layers: self.request_layers,
            provider_layers: self.provider_layers,
            shut_down: AtomicBool::new(false),
            metrics,
        }))
    }
}
