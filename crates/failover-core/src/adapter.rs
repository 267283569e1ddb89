//! The public face of the engine: [`FailoverAdapter`]. Each method hands over to the module
//! that owns the step (`complete`, `stream`, the health report, the ledger, the cache);
//! nothing here decides how a request is answered.

use std::sync::Arc;

use failover_breaker::Breaker;
use failover_provider::{Completion, CompletionRequest};
use failover_usage::{UsageQuery, UsageStats};

use crate::builder::AdapterBuilder;
use crate::cache::TimeBoxedCache;
use crate::engine::Engine;
use crate::error::FailoverError;
use crate::health::{HealthReport, ProviderHealth};
use crate::routing::Router;
use crate::stream::{CompletionStream, OpenedStream};

/// Resilient, cost-aware access to an ordered chain of LLM providers.
///
/// Cheap to clone; clones share providers, breakers, cache and sink.
#[derive(Debug, Clone)]
pub struct FailoverAdapter {
    engine: Arc<Engine>,
}

impl FailoverAdapter {
    /// Starts a builder.
    pub fn builder() -> AdapterBuilder {
        AdapterBuilder::default()
    }

    pub(crate) fn from_engine(engine: Engine) -> Self {
        Self {
            engine: Arc::new(engine),
        }
    }

    /// Answers one request: validate, request layers, cache, then each provider in order
    /// (through the provider layers and its breaker) until one answers.
    ///
    /// The seed's `generate_completion(prompt, agent_id, tenant_id, model, temperature,
    /// max_tokens, response_format)`; see [`CompletionRequest`].
    pub async fn generate_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<Completion, FailoverError> {
        crate::complete::generate(&self.engine, request).await
    }

    /// Streams one request. Errors before the first chunk (validation, a layer's rejection,
    /// every provider failing) are returned here; errors after it are the stream's last
    /// item.
    ///
    /// A usage record is written on every terminal path: done, error, or the caller
    /// dropping the stream (with the tokens consumed so far, estimated when the provider
    /// did not report them). Only a stream that ended cleanly is cached; a cache hit is
    /// replayed as one delta and a `Done`.
    pub async fn stream_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<CompletionStream, FailoverError> {
        Ok(self.open_stream(request).await?.chunks)
    }

    /// [`stream_completion`](Self::stream_completion), with what is known at the commit
    /// point: the request id, the streaming provider, whether it is a cache replay and the
    /// attempts so far — what a server sends as headers before the first chunk.
    pub async fn open_stream(
        &self,
        request: CompletionRequest,
    ) -> Result<OpenedStream, FailoverError> {
        crate::stream::stream(&self.engine, request).await
    }

    /// The health of every provider's breaker, the cache and the usage sink.
    pub fn health(&self) -> HealthReport {
        let engine = &self.engine;
        let providers = engine
            .chain
            .iter()
            .map(|slot| ProviderHealth {
                name: slot.name.clone(),
                capabilities: slot.capabilities,
                breaker: slot.breaker.snapshot(),
            })
            .collect();
        HealthReport::new(
            providers,
            engine.cache.as_ref().map(TimeBoxedCache::report),
            engine.ledger.sink.health(),
            engine.ledger.refused(),
        )
    }

    /// Usage statistics from the sink (the seed's usage statistics).
    pub async fn usage_stats(
        &self,
        query: &UsageQuery,
    ) -> Result<UsageStats, failover_usage::UsageError> {
        self.engine.ledger.sink.stats(query).await
    }

    /// Waits until every usage record so far is stored.
    pub async fn flush_usage(&self) -> Result<(), failover_usage::UsageError> {
        self.engine.ledger.sink.flush().await
    }

    /// Shuts the adapter down for process exit: new requests are refused with
    /// [`FailoverError::ShutDown`], and the usage sink keeps everything it accepted (flushed
    /// to its store, the rest spilled durably for the next start). Requests still in flight
    /// finish; their records are refused by the closed sink and logged, so call this once
    /// the server in front has drained. Idempotent; every clone of the adapter is shut.
    pub async fn shutdown(&self) -> Result<(), failover_usage::UsageError> {
        self.engine
            .shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        self.engine.ledger.sink.shutdown().await
    }

    /// The breaker of a provider, to force it open or closed (`force_open`, `force_close`,
    /// `reset`) or read its state.
    pub fn breaker(&self, provider: &str) -> Option<&Arc<dyn Breaker>> {
        self.engine
            .chain
            .iter()
            .find(|slot| slot.name == provider)
            .map(|slot| &slot.breaker)
    }

    /// Removes every cached answer of `tenant_id` (and no other tenant's); returns how many
    /// entries were removed where the backend knows. `Ok(0)` when no cache is configured.
    pub async fn purge_tenant_cache(
        &self,
        tenant_id: &str,
    ) -> Result<u64, failover_cache::CacheError> {
        match &self.engine.cache {
            Some(cache) => cache.purge_tenant(tenant_id).await,
            None => Ok(0),
        }
    }

    /// The routing table: the logical models callers may name, and what each provider
    /// serves them with.
    pub fn router(&self) -> &Router {
        &self.engine.router
    }

    /// The names of the providers, in chain order.
    pub fn provider_names(&self) -> Vec<&str> {
        self.engine
            .chain
            .iter()
            .map(|slot| slot.name.as_str())
            .collect()
    }
}
