//! The first step of every request: check it, and work out once what every later step
//! needs (its id, its deadline, its messages, its cache key).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use failover_cache::CacheKey;
use failover_provider::{CompletionRequest, Message, ProviderRequest, RequestId};

use crate::accounting::RequestContext;
use crate::deadline;
use crate::engine::Engine;
use crate::error::FailoverError;
use crate::needs::{RequestNeeds, Unserved};
use crate::validate::{ValidationError, validate};

/// A validated request, ready for the layers, the cache and the providers.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) request: CompletionRequest,
    /// What every usage record, and every layer, sees of the request.
    pub(crate) context: Arc<RequestContext>,
    pub(crate) messages: Vec<Message>,
    /// What a provider must take to serve the request (tools, images, …).
    pub(crate) needs: RequestNeeds,
    pub(crate) deadline: Option<Instant>,
    pub(crate) started: Instant,
    pub(crate) cache_key: Option<CacheKey>,
    /// Cleared when this request's cache lookup failed: a cache that is down costs a
    /// request at most one budget, so the write is skipped too.
    pub(crate) cache_usable: bool,
}

/// Validates `request` and prepares it under `request_id` (the caller's, or a fresh one). Nothing is touched before this succeeds: an
/// invalid request reaches no layer, cache, breaker or provider.
pub(crate) fn prepare(
    engine: &Engine,
    request: CompletionRequest,
    request_id: RequestId,
    streamed: bool,
) -> Result<Prepared, FailoverError> {
    let started = Instant::now();
    if engine.shut_down.load(Ordering::Acquire) {
        return Err(FailoverError::ShutDown);
    }
    validate(&request, &engine.config.limits)?;
    let messages = request.input.to_messages();
    let needs = RequestNeeds::of(&request, &messages, streamed);
    check_routes(engine, &request, &needs)?;
    let deadline = request.deadline.or_else(|| {
        engine
            .config
            .default_timeout
            .and_then(|timeout| started.checked_add(timeout))
    });
    let cache_key = engine
        .cache
        .as_ref()
        .map(|cache| cache.key(&request, &messages));
    let tenant_label = engine.metrics.tenant(&request.tenant_id);
    let context = Arc::new(RequestContext::new(
        &request,
        request_id,
        streamed,
        tenant_label,
    ));
    Ok(Prepared {
        request,
        context,
        messages,
        needs,
        deadline,
        started,
        cache_usable: cache_key.is_some(),
        cache_key,
    })
}

/// Refuses a request no provider of the chain routes (an unknown model), or that no
/// routed provider can serve (tools or images the providers or their models do not take),
/// naming every provider's reason: a request with images never silently becomes a
/// text-only call.
fn check_routes(
    engine: &Engine,
    request: &CompletionRequest,
    needs: &RequestNeeds,
) -> Result<(), ValidationError> {
    let mut routed = false;
    let mut unserved = Vec::new();
    for slot in &engine.chain {
        let Some(route) = engine.router.resolve_route(&request.model, &slot.name) else {
            continue;
        };
        routed = true;
        match needs.unmet(&slot.capabilities, route) {
            None => return Ok(()),
            Some(reason) => unserved.push(Unserved {
                provider: slot.name.clone(),
                reason,
            }),
        }
    }
    if routed {
        Err(ValidationError::NoCapableRoute {
            model: request.model.clone(),
            unserved,
        })
    } else {
        Err(ValidationError::UnknownModel {
            model: request.model.clone(),
        })
    }
}

impl Prepared {
    pub(crate) fn request_id(&self) -> &RequestId {
        &self.context.request_id
    }

    /// What the provider serving `model` receives.
    pub(crate) fn provider_request(&self, model: &str) -> ProviderRequest {
        ProviderRequest {
            request_id: self.context.request_id.clone(),
            model: model.to_owned(),
            messages: self.messages.clone(),
            temperature: self.request.temperature,
            max_tokens: self.request.max_tokens,
            stop: self.request.stop.clone(),
            response_format: self.request.response_format.clone(),
            tools: self.request.tools.clone(),
            sampling: self.request.sampling.clone(),
            deadline: self.deadline,
            attempt_deadline: None,
        }
    }

    pub(crate) fn deadline_passed(&self) -> bool {
        deadline::passed(self.deadline)
    }
}
