//! The failover engine: one request through validation, cache, breakers and providers.

use std::sync::Arc;
use std::time::Instant;

use failover_breaker::Breaker;
use failover_cache::{CacheKey, CachedCompletion};
use failover_provider::{
    AttemptOutcome, AttemptRecord, Capabilities, Completion, CompletionRequest, FinishReason,
    JsonModeSupport, Message, Provider, ProviderError, ProviderRequest, RequestId, ResponseFormat,
    Usd,
};
use failover_usage::{UsageOutcome, UsageQuery, UsageStats};

use crate::accounting::{CallFacts, Ledger, RequestContext, unix_ms_now};
use crate::builder::AdapterBuilder;
use crate::cache_layer::{CacheLayer, CacheUnavailable};
use crate::call::{Call, before_deadline, check_json};
use crate::coalesce::{Flights, Leader, Role, follow};
use crate::config::AdapterConfig;
use crate::error::FailoverError;
use crate::health::{HealthReport, ProviderHealth};
use crate::routing::Router;
use crate::validate::{ValidationError, validate};

/// One provider in the chain with its breaker.
#[derive(Debug)]
pub(crate) struct ProviderSlot {
    pub(crate) name: String,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) breaker: Arc<dyn Breaker>,
    pub(crate) capabilities: Capabilities,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) chain: Vec<ProviderSlot>,
    pub(crate) router: Router,
    pub(crate) cache: Option<CacheLayer>,
    pub(crate) ledger: Ledger,
    pub(crate) config: AdapterConfig,
    pub(crate) flights: Arc<Flights>,
}

/// A validated request, ready to try on providers.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) request: CompletionRequest,
    pub(crate) context: Arc<RequestContext>,
    pub(crate) messages: Vec<Message>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) started: Instant,
    pub(crate) cache_key: Option<CacheKey>,
    /// Cleared when this request's cache lookup failed: a cache that is down costs a
    /// request at most one budget, so the write is skipped too.
    pub(crate) cache_usable: bool,
}

impl Prepared {
    pub(crate) fn request_id(&self) -> &RequestId {
        &self.context.request_id
    }

    pub(crate) fn provider_request(&self, model: &str) -> ProviderRequest {
        ProviderRequest {
            request_id: self.context.request_id.clone(),
            model: model.to_owned(),
            messages: self.messages.clone(),
            temperature: self.request.temperature,
            max_tokens: self.request.max_tokens,
            stop: self.request.stop.clone(),
            response_format: self.request.response_format.clone(),
            deadline: self.deadline,
        }
    }

    pub(crate) fn deadline_passed(&self) -> bool {
        // tokio's clock, like the time-outs that enforce the deadline, so both agree (also
        // under a paused test clock).
        self.deadline.is_some_and(|deadline| {
            tokio::time::Instant::now() >= tokio::time::Instant::from_std(deadline)
        })
    }
}

impl Inner {
    pub(crate) fn prepare(
        &self,
        request: CompletionRequest,
        streamed: bool,
    ) -> Result<Prepared, FailoverError> {
        let started = Instant::now();
        validate(&request, &self.config.limits)?;
        if !self
            .chain
            .iter()
            .any(|slot| self.router.resolve(&request.model, &slot.name).is_some())
        {
            return Err(ValidationError::UnknownModel {
                model: request.model.clone(),
            }
            .into());
        }
        let request_id = request.request_id.clone().unwrap_or_else(RequestId::random);
        let deadline = request.deadline.or_else(|| {
            self.config
                .default_timeout
                .and_then(|timeout| started.checked_add(timeout))
        });
        let messages = request.input.to_messages();
        let cache_key = self
            .cache
            .as_ref()
            .map(|cache| cache.key(&request, &messages));
        let context = Arc::new(RequestContext::new(&request, request_id, streamed));
        Ok(Prepared {
            request,
            context,
            messages,
            deadline,
            started,
            cache_usable: cache_key.is_some(),
            cache_key,
        })
    }

    /// Answers without calling a provider when the cache or an identical request in flight
    /// can. Otherwise says whether this request leads a flight others will wait for.
    pub(crate) async fn shortcut(&self, prepared: &mut Prepared) -> Shortcut {
        let (Some(cache), Some(key)) = (&self.cache, &prepared.cache_key) else {
            return Shortcut::Call(None);
        };
        match cache.lookup(key).await {
            Ok(Some(hit)) => {
                self.record_cache_hit(prepared, &hit);
                return Shortcut::Answered(hit);
            }
            Ok(None) => {}
            Err(CacheUnavailable) => prepared.cache_usable = false,
        }
        match self.flights.join(key) {
            Role::Leader(leader) => Shortcut::Call(Some(leader)),
            Role::Follower(flight) => {
                let answer = match prepared.deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline.into(), follow(flight))
                        .await
                        .ok()
                        .flatten(),
                    None => follow(flight).await,
                };
                match answer {
                    Some(answer) => {
                        cache.count_coalesced();
                        let answer = Arc::unwrap_or_clone(answer);
                        self.record_cache_hit(prepared, &answer);
                        Shortcut::Answered(answer)
                    }
                    // The leader ended without an answer: try on our own.
                    None => Shortcut::Call(None),
                }
            }
        }
    }

    pub(crate) fn record_cache_hit(&self, prepared: &Prepared, hit: &CachedCompletion) {
        if !self.config.record_cache_hits {
            return;
        }
        let record = prepared.context.usage_record(CallFacts {
            attempt: 0,
            provider: &hit.provider,
            model: &hit.model,
            usage: hit.usage,
            usage_estimated: false,
            cost: Usd::ZERO,
            latency: prepared.started.elapsed(),
            outcome: UsageOutcome::CacheHit,
            fallback_used: false,
        });
        self.ledger.record(record);
    }

    pub(crate) fn cached_value(
        &self,
        provider: &str,
        model: &str,
        content: String,
        finish_reason: failover_provider::FinishReason,
        usage: failover_provider::TokenUsage,
        estimated_cost: Usd,
    ) -> CachedCompletion {
        CachedCompletion {
            provider: provider.to_owned(),
            model: model.to_owned(),
            content,
            finish_reason,
            usage,
            estimated_cost,
            stored_at_unix_ms: unix_ms_now(),
        }
    }
}

/// How a request gets its answer.
pub(crate) enum Shortcut {
    /// From the cache, or from an identical request that was in flight.
    Answered(CachedCompletion),
    /// From the providers; as the leader of a flight when it holds one.
    Call(Option<Leader>),
}

impl Prepared {
    /// A completion served without a provider call of its own.
    pub(crate) fn completion_from_cache(&self, hit: CachedCompletion) -> Completion {
        Completion {
            request_id: self.request_id().clone(),
            provider: hit.provider,
            model: hit.model,
            content: hit.content,
            finish_reason: hit.finish_reason,
            usage: hit.usage,
            estimated_cost: Usd::ZERO,
            cached: true,
            latency: self.started.elapsed(),
            attempts: Vec::new(),
        }
    }

    /// Stores a fresh answer and hands it to the followers of this request's flight —
    /// unless the answer is not one to repeat: a content-filtered (refused or cut) answer,
    /// or one that stopped for a reason we do not know, is neither cached nor shared.
    pub(crate) async fn remember(
        &self,
        inner: &Inner,
        answer: CachedCompletion,
        leader: Option<Leader>,
    ) {
        let repeatable = matches!(
            answer.finish_reason,
            FinishReason::Stop
                | FinishReason::Length
                | FinishReason::StopSequence
                | FinishReason::ToolUse
        );
        if !repeatable {
            return;
        }
        if let (Some(cache), Some(key), true) = (&inner.cache, &self.cache_key, self.cache_usable) {
            cache.store(key, answer.clone()).await;
        }
        if let Some(leader) = leader {
            leader.publish(answer);
        }
    }
}

/// The walk down the provider chain for one request: which provider to call next, and the
/// record of every provider tried or skipped. Shared by plain and streaming completions so
/// both apply the same rules.
pub(crate) struct ChainWalk {
    next_slot: usize,
    calls_made: u32,
    streaming: bool,
    attempts: Vec<AttemptRecord>,
}

impl ChainWalk {
    pub(crate) fn new(streaming: bool) -> Self {
        Self {
            next_slot: 0,
            calls_made: 0,
            streaming,
            attempts: Vec::new(),
        }
    }

    /// The next provider to call, with its admitted [`Call`]. Providers without a route are
    /// passed over; unsupported ones and open breakers are recorded as skipped. `None` once
    /// the chain or the deadline is exhausted.
    pub(crate) fn next_call(
        &mut self,
        inner: &Arc<Inner>,
        prepared: &Prepared,
    ) -> Option<(Arc<dyn Provider>, Call)> {
        while self.next_slot < inner.chain.len() && !prepared.deadline_passed() {
            let slot_index = self.next_slot;
            self.next_slot += 1;
            let slot = &inner.chain[slot_index];
            let Some(model) = inner.router.resolve(&prepared.request.model, &slot.name) else {
                continue;
            };
            let skip = match unsupported(
                &slot.capabilities,
                &prepared.request.response_format,
                self.streaming,
            ) {
                Some(reason) => Some(AttemptOutcome::SkippedUnsupported {
                    reason: reason.to_owned(),
                }),
                None => match slot.breaker.try_acquire() {
                    Err(_) => Some(AttemptOutcome::SkippedBreakerOpen),
                    Ok(permit) => {
                        self.calls_made += 1;
                        let call = Call::new(
                            Arc::clone(inner),
                            Arc::clone(&prepared.context),
                            permit,
                            self.calls_made,
                            &slot.name,
                            model,
                            slot_index > 0,
                        );
                        return Some((Arc::clone(&slot.provider), call));
                    }
                },
            };
            if let Some(outcome) = skip {
                self.attempts.push(AttemptRecord {
                    provider: slot.name.clone(),
                    model: model.to_owned(),
                    outcome,
                    latency: std::time::Duration::ZERO,
                });
            }
        }
        None
    }

    /// Records a successful call and returns its cost with every attempt made.
    pub(crate) fn succeeded(
        mut self,
        call: Call,
        usage: failover_provider::TokenUsage,
        usage_estimated: bool,
    ) -> (Usd, Vec<AttemptRecord>) {
        let (cost, record) = call.succeeded(usage, usage_estimated);
        self.attempts.push(record);
        (cost, self.attempts)
    }

    /// Records a failed call (`reported`: the usage the provider reported with a rejected
    /// answer). Returns the error to stop with when its kind does not fail over; otherwise
    /// the walk goes on.
    pub(crate) fn failed(
        &mut self,
        prepared: &Prepared,
        call: Call,
        error: &ProviderError,
        reported: Option<failover_provider::TokenUsage>,
    ) -> Result<(), FailoverError> {
        let provider = call.provider.clone();
        self.attempts.push(call.failed(error, reported));
        tracing::warn!(
            request_id = %prepared.request_id(),
            provider = %provider,
            kind = %error.kind(),
            streaming = self.streaming,
            %error,
            "provider call failed"
        );
        if error.kind().fails_over() {
            return Ok(());
        }
        Err(FailoverError::Refused {
            request_id: prepared.request_id().clone(),
            provider,
            kind: error.kind(),
            message: error.detail(),
            attempts: std::mem::take(&mut self.attempts),
        })
    }

    /// The error for a request no provider answered.
    pub(crate) fn exhausted(self, prepared: &Prepared) -> FailoverError {
        let request_id = prepared.request_id().clone();
        let attempts = self.attempts;
        if prepared.deadline_passed() {
            FailoverError::DeadlineExceeded {
                request_id,
                attempts,
            }
        } else {
            FailoverError::AllProvidersFailed {
                request_id,
                attempts,
            }
        }
    }
}

/// Why a provider cannot serve a request, if it cannot.
fn unsupported(
    capabilities: &Capabilities,
    format: &ResponseFormat,
    streaming: bool,
) -> Option<&'static str> {
    if streaming && !capabilities.streaming {
        return Some("streaming unsupported");
    }
    let json_support = match format {
        ResponseFormat::Text => JsonModeSupport::Native,
        ResponseFormat::JsonObject => capabilities.json_object,
        ResponseFormat::JsonSchema { .. } => capabilities.json_schema,
    };
    (json_support == JsonModeSupport::Unsupported).then_some("JSON mode unsupported")
}

/// Resilient, cost-aware access to an ordered chain of LLM providers.
///
/// Cheap to clone; clones share providers, breakers, cache and sink.
#[derive(Debug, Clone)]
pub struct FailoverAdapter {
    pub(crate) inner: Arc<Inner>,
}

impl FailoverAdapter {
    /// Starts a builder.
    pub fn builder() -> AdapterBuilder {
        AdapterBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Answers one request: validate, cache, then each provider in order until one answers.
    ///
    /// The seed's `generate_completion(prompt, agent_id, tenant_id, model, temperature,
    /// max_tokens, response_format)`; see [`CompletionRequest`].
    pub async fn generate_completion(
        &self,
        request: CompletionRequest,
    ) -> Result<Completion, FailoverError> {
        let inner = &self.inner;
        let mut prepared = inner.prepare(request, false)?;
        let leader = match inner.shortcut(&mut prepared).await {
            Shortcut::Answered(hit) => return Ok(prepared.completion_from_cache(hit)),
            Shortcut::Call(leader) => leader,
        };

        let mut walk = ChainWalk::new(false);
        while let Some((provider, call)) = walk.next_call(inner, &prepared) {
            let provider_request = prepared.provider_request(&call.model);
            let response =
                match before_deadline(prepared.deadline, provider.complete(provider_request)).await
                {
                    Ok(response) => response,
                    Err(error) => {
                        walk.failed(&prepared, call, &error, None)?;
                        continue;
                    }
                };
            if let Err(error) = check_json(&prepared.request.response_format, &response.content) {
                walk.failed(&prepared, call, &error, Some(response.usage))?;
                continue;
            }
            let (provider_name, model) = (call.provider.clone(), call.model.clone());
            let (cost, attempts) = walk.succeeded(call, response.usage, false);
            if prepared.cache_key.is_some() {
                let answer = inner.cached_value(
                    &provider_name,
                    &model,
                    response.content.clone(),
                    response.finish_reason.clone(),
                    response.usage,
                    cost,
                );
                prepared.remember(inner, answer, leader).await;
            }
            return Ok(Completion {
                request_id: prepared.request_id().clone(),
                provider: provider_name,
                model,
                content: response.content,
                finish_reason: response.finish_reason,
                usage: response.usage,
                estimated_cost: cost,
                cached: false,
                latency: prepared.started.elapsed(),
                attempts,
            });
        }
        Err(walk.exhausted(&prepared))
    }

    /// The health of every provider's breaker, the cache and the usage sink.
    pub fn health(&self) -> HealthReport {
        let inner = &self.inner;
        let providers = inner
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
            inner.cache.as_ref().map(CacheLayer::report),
            inner.ledger.sink.health(),
            inner.ledger.refused(),
        )
    }

    /// Usage statistics from the sink (the seed's usage statistics).
    pub async fn usage_stats(
        &self,
        query: &UsageQuery,
    ) -> Result<UsageStats, failover_usage::UsageError> {
        self.inner.ledger.sink.stats(query).await
    }

    /// Waits until every usage record so far is stored.
    pub async fn flush_usage(&self) -> Result<(), failover_usage::UsageError> {
        self.inner.ledger.sink.flush().await
    }

    /// The breaker of a provider, to force it open or closed (`force_open`, `force_close`,
    /// `reset`) or read its state.
    pub fn breaker(&self, provider: &str) -> Option<&Arc<dyn Breaker>> {
        self.inner
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
        match &self.inner.cache {
            Some(cache) => cache.purge_tenant(tenant_id).await,
            None => Ok(0),
        }
    }

    /// The names of the providers, in chain order.
    pub fn provider_names(&self) -> Vec<&str> {
        self.inner
            .chain
            .iter()
            .map(|slot| slot.name.as_str())
            .collect()
    }
}
