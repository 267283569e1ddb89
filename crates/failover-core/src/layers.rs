//! The seam for concerns around a request and around each provider call: [`RequestLayer`]
//! and [`ProviderLayer`], registered with
//! [`AdapterBuilder::request_layer`](crate::AdapterBuilder::request_layer) and
//! [`AdapterBuilder::provider_layer`](crate::AdapterBuilder::provider_layer).
//!
//! A layer admits or rejects before (`before_request`, `before_call`) and observes after
//! (`after_request`, `after_call`). It cannot change the request or the answer, and it
//! cannot retry: the engine keeps one owner of each decision (the chain walk fails over,
//! providers retry), so a budget, a rate limit, a shared breaker or a metrics exporter is
//! added without a new branch in the walk.
//!
//! # Order
//!
//! Order is part of correctness. Layers nest like an onion around the built-in steps:
//! `before_*` in registration order (the first registered is the outermost), `after_*` in
//! reverse. One request goes through these steps, in this order:
//!
//! 1. **Preparation** (built in): validation, the routing check, the request id, the
//!    deadline, the cache key. An invalid request fails here with
//!    [`FailoverError::Invalid`] and no layer sees it: it is the caller's bug, and must not
//!    spend a budget or a rate limit.
//! 2. **Request layers**, `before_request` in registration order. A [`Rejection`] ends the
//!    request with [`FailoverError::Rejected`]: no cache, no provider, no breaker touched.
//! 3. **Cache lookup, then coalescing** (built in). A hit, or the answer of an identical
//!    request in flight, skips step 4 and 5. Request layers sit *outside* the cache on
//!    purpose: a tenant over its rate limit is refused even an answer the cache has, and a
//!    budget sees cached answers (at zero cost).
//! 4. **The chain walk**: for each provider in order that has a route and supports the
//!    request (others are never shown to layers):
//!    1. **Provider layers**, `before_call` in registration order. A [`Rejection`] skips
//!       this provider (recorded in the attempts) and the walk goes on to the next one.
//!    2. **The breaker** (built in, the innermost admission): open means skipped.
//!       Provider layers sit outside it so that a layer's refusal never takes a breaker
//!       permit — a half-open probe slot is scarce — and so that they see breaker skips.
//!    3. **The call** under the request's one deadline (built in: every attempt shares
//!       the time left), the JSON-mode check, the classification of the error.
//!    4. **The breaker's outcome, the price and the usage record** (built in), before
//!       any `after_call`: a layer observing a call sees the ledger's cost and a breaker
//!       that already counted the call.
//!    5. **Provider layers**, `after_call` in reverse registration order.
//! 5. **Cache write, hand-off to coalesced followers** (built in).
//! 6. **Request layers**, `after_request` in reverse registration order, before the caller
//!    gets the answer (or the error).
//!
//! For a stream (`stream_completion`) the order is the same; the call of step 4 ends at
//! the stream's terminal event, its interruption after the commit point, or the caller
//! dropping the stream, and step 6 comes with the stream's last item (or the drop). A
//! stream that fails before the commit point is a failed call like any other and the walk
//! goes on. A cached answer replayed to a stream runs step 6 when the stream is returned:
//! its items are already known.
//!
//! # Contract
//!
//! - `after_request` is called exactly once for every request the layer admitted, and
//!   `after_call` exactly once for every call it admitted, on every terminal path:
//!   answer, error, a refusal by a layer inside it, the deadline, and the caller dropping
//!   the future or the stream ([`RequestOutcome::Cancelled`], [`CallOutcome::Cancelled`],
//!   [`CallOutcome::Abandoned`]). A layer that rejected is not called after.
//! - `after_*` run synchronously on the request's path, and from `Drop` when the caller
//!   goes away: they must not block. Hand slow work (a Redis write) to a background task.
//! - `before_*` may await (a Redis budget, a shared probe lease); the wait is bounded by
//!   the request's deadline. A layer that decides at once returns [`Admission::admit`],
//!   [`Admission::admit_with`] or [`Admission::reject`]: no future is boxed, no timer set.
//! - What a layer needs to carry from `before_*` to `after_*` (a reservation, a lease, a
//!   start time) travels in its [`Ticket`].
//! - Hooks run on the request's task, so `tracing::Span::current()` is the caller's span.
//!   Layers do not wrap the provider's future: a span a layer opens in `before_call` (and
//!   keeps in its ticket) is not entered around the call; it can be closed in `after_call`
//!   with [`Spent::latency`].
//! - With no layer registered the engine runs no layer code and allocates nothing for them.
//!
//! # Worked example
//!
//! An adapter over `bedrock` then `openai`, with request layers `budget` then `metrics`
//! and provider layers `rate-limit` then `spans`. Bedrock is throttled, OpenAI answers:
//!
//! ```text
//! validate, route, deadline, cache key
//! budget.before_request         reserves the request's estimated cost    (Ticket: reservation)
//! metrics.before_request        notes the start                          (Ticket: Instant)
//! cache lookup: miss; join the flight for the key: leader
//!   bedrock  rate-limit.before_call   takes a token for (tenant, bedrock)
//!            spans.before_call
//!            breaker: permit
//!            bedrock.complete ─► throttled
//!            permit.record(failure); usage record (failed)
//!            spans.after_call(Failed)          sees the breaker already counting it
//!            rate-limit.after_call(Failed)
//!   openai   rate-limit.before_call ... openai.complete ─► answer; JSON check
//!            permit.record(success); usage record (success, cost)
//!            spans.after_call(Succeeded), rate-limit.after_call(Succeeded)
//! cache write, publish to followers
//! metrics.after_request(Completed)
//! budget.after_request(Completed)  settles the reservation with the answer's cost
//! ```
//!
//! Had `budget` rejected, the caller would get [`FailoverError::Rejected`] and nothing
//! else would run (not even `metrics`, which is inside it: register `metrics` first to
//! count rejections too). Had `rate-limit` rejected `bedrock`, `spans` and the breaker
//! would not have seen `bedrock`, the attempt would read `skipped, rejected by
//! rate-limit: …`, and the walk would have gone on to `openai`. Had the caller dropped the
//! future while OpenAI was answering, `spans` then `rate-limit` would get
//! [`CallOutcome::Cancelled`] with the estimated usage, then `metrics` then `budget`
//! [`RequestOutcome::Cancelled`].
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! use failover_core::FailoverAdapter;
//! use failover_core::layers::{
//!     Admission, Rejection, RequestInfo, RequestLayer, RequestOutcome, Ticket,
//! };
//! use failover_provider::CompletionRequest;
//!
//! /// Refuses every request once `limit` requests were answered by a provider.
//! #[derive(Debug)]
//! struct RequestQuota {
//!     limit: u64,
//!     answered: AtomicU64,
//! }
//!
//! impl RequestLayer for RequestQuota {
//!     fn name(&self) -> &str {
//!         "quota"
//!     }
//!
//!     fn before_request<'a>(
//!         &'a self,
//!         _info: RequestInfo<'a>,
//!         _request: &'a CompletionRequest,
//!     ) -> Admission<'a> {
//!         if self.answered.load(Ordering::Relaxed) >= self.limit {
//!             return Admission::reject(Rejection::new("request quota used up"));
//!         }
//!         Admission::admit()
//!     }
//!
//!     fn after_request(&self, _info: RequestInfo<'_>, _ticket: Ticket, outcome: &RequestOutcome<'_>) {
//!         if let RequestOutcome::Completed(completion) = outcome {
//!             if !completion.cached {
//!                 self.answered.fetch_add(1, Ordering::Relaxed);
//!             }
//!         }
//!     }
//! }
//!
//! let builder = FailoverAdapter::builder()
//!     .request_layer(Arc::new(RequestQuota { limit: 1_000, answered: AtomicU64::new(0) }));
//! # drop(builder);
//! ```
//!
//! [`FailoverError::Invalid`]: crate::FailoverError::Invalid
//! [`FailoverError::Rejected`]: crate::FailoverError::Rejected

use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::time::{Duration, Instant};

use failover_provider::{
    Completion, CompletionRequest, ProviderError, ProviderRequest, RequestId, StreamSummary,
    TokenUsage, Usd,
};

use crate::accounting::RequestContext;
use crate::error::FailoverError;

/// A concern around a whole request: a budget, a rate limit, a metrics exporter.
///
/// See the [module documentation](self) for where request layers sit in the order and
/// what the engine promises them.
pub trait RequestLayer: Send + Sync + fmt::Debug {
    /// A short, stable name, used in [`FailoverError::Rejected`] and in logs.
    fn name(&self) -> &str;

    /// Decides whether the request may proceed, before the cache and any provider. A
    /// [`Rejection`] ends the request with [`FailoverError::Rejected`]. The default admits
    /// without a ticket.
    fn before_request<'a>(
        &'a self,
        info: RequestInfo<'a>,
        request: &'a CompletionRequest,
    ) -> Admission<'a> {
        let _ = (info, request);
        Admission::admit()
    }

    /// Observes how a request this layer admitted ended, with the ticket its
    /// `before_request` gave. Called exactly once; must not block. The default does nothing.
    fn after_request(&self, info: RequestInfo<'_>, ticket: Ticket, outcome: &RequestOutcome<'_>) {
        let _ = (info, ticket, outcome);
    }
}

/// A concern around each provider call: a per-provider rate limit, a breaker shared across
/// replicas, spans and metrics per call.
///
/// See the [module documentation](self) for where provider layers sit in the order and
/// what the engine promises them.
pub trait ProviderLayer: Send + Sync + fmt::Debug {
    /// A short, stable name, used in attempt records and in logs.
    fn name(&self) -> &str;

    /// Decides whether `call` may be made, before the provider's breaker. A [`Rejection`]
    /// skips this provider and the walk goes on to the next. The default admits without a
    /// ticket.
    fn before_call<'a>(
        &'a self,
        call: CallInfo<'a>,
        request: &'a ProviderRequest,
    ) -> Admission<'a> {
        let _ = (call, request);
        Admission::admit()
    }

    /// Observes how a call this layer admitted ended, with the ticket its `before_call`
    /// gave. Called exactly once; must not block. The default does nothing.
    fn after_call(&self, call: CallInfo<'_>, ticket: Ticket, outcome: &CallOutcome<'_>) {
        let _ = (call, ticket, outcome);
    }
}

/// A layer's "no": why the request (or this provider, for a provider layer) must not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: String,
    retry_after: Option<Duration>,
    breaker_open: bool,
    kind: RejectionKind,
}

/// What kind of limit a [`Rejection`] enforces, so a front can answer with the right
/// status (the gateway: 402 for a budget, 429 for a rate limit, 503 for a store that
/// cannot be asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A layer's own reason (a quota, a policy): treated as a rate limit by the gateway.
    #[default]
    Other,
    /// A spend budget is used up until it resets.
    BudgetExceeded,
    /// A rate limit (requests or tokens per minute) is reached.
    RateLimited,
    /// The store the limit lives in cannot be asked, and the limit fails closed.
    LimitUnavailable,
}

impl Rejection {
    /// A rejection saying why, in words fit for the caller and the logs.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after: None,
            breaker_open: false,
            kind: RejectionKind::Other,
        }
    }

    /// Marks the rejection as enforcing a limit of `kind`.
    pub fn with_kind(mut self, kind: RejectionKind) -> Self {
        self.kind = kind;
        self
    }

    /// The kind of limit enforced.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// A provider layer's rejection that stands for an open circuit breaker (a breaker
    /// kept outside the engine, such as probe leases shared across replicas): the attempt
    /// is recorded as `skipped, circuit breaker open`, like the built-in breaker's.
    pub fn breaker_open(reason: impl Into<String>) -> Self {
        Self {
            breaker_open: true,
            ..Self::new(reason)
        }
    }

    /// Tells the caller when trying again may succeed (a front turns it into `Retry-After`).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// When trying again may succeed, if the layer knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the rejection stands for an open circuit breaker.
    pub fn is_breaker_open(&self) -> bool {
        self.breaker_open
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What a layer carries from its `before_*` to its `after_*` for one request or one call:
/// a budget reservation, a lease, a start time. Empty unless the layer puts a value in.
#[derive(Default)]
pub struct Ticket(Option<Box<dyn Any + Send + Sync>>);

impl Ticket {
    /// An empty ticket (allocates nothing).
    pub fn none() -> Self {
        Self(None)
    }

    /// A ticket holding `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Some(Box::new(value)))
    }

    /// The value, when the ticket holds a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_ref()?.downcast_ref()
    }

    /// Takes the value out, when the ticket holds a `T`.
    pub fn take<T: Any>(self) -> Option<T> {
        self.0?.downcast().ok().map(|value| *value)
    }

    /// Whether the ticket holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "Ticket(empty)"
        } else {
            "Ticket(..)"
        })
    }
}

type Decision<'a> = Pin<Box<dyn Future<Output = Result<Ticket, Rejection>> + Send + 'a>>;

/// A layer's answer to `before_*`: admitted (with a [`Ticket`]) or rejected, now or after
/// an await.
pub struct Admission<'a>(AdmissionKind<'a>);

enum AdmissionKind<'a> {
    Now(Result<Ticket, Rejection>),
    Later(Decision<'a>),
}

impl<'a> Admission<'a> {
    /// Admitted, with an empty ticket.
    pub fn admit() -> Self {
        Self(AdmissionKind::Now(Ok(Ticket::none())))
    }

    /// Admitted, with a ticket handed back to the layer's `after_*`.
    pub fn admit_with(ticket: Ticket) -> Self {
        Self(AdmissionKind::Now(Ok(ticket)))
    }

    /// Rejected.
    pub fn reject(rejection: Rejection) -> Self {
        Self(AdmissionKind::Now(Err(rejection)))
    }

    /// Decided once `decision` completes (a call to a shared store). The engine bounds the
    /// wait by the request's deadline.
    pub fn deferred(decision: impl Future<Output = Result<Ticket, Rejection>> + Send + 'a) -> Self {
        Self(AdmissionKind::Later(Box::pin(decision)))
    }

    /// The decision, waited for until `deadline`; `None` when the deadline came first.
    pub(crate) async fn decide(
        self,
        deadline: Option<Instant>,
    ) -> Option<Result<Ticket, Rejection>> {
        match self.0 {
            // No timer for a decision already made: the common case costs nothing.
            AdmissionKind::Now(decision) => Some(decision),
            AdmissionKind::Later(decision) => crate::deadline::within(deadline, decision).await,
        }
    }
}

impl From<Result<Ticket, Rejection>> for Admission<'_> {
    fn from(decision: Result<Ticket, Rejection>) -> Self {
        Self(AdmissionKind::Now(decision))
    }
}

impl fmt::Debug for Admission<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            AdmissionKind::Now(decision) => f.debug_tuple("Admission").field(decision).finish(),
            AdmissionKind::Later(_) => f.write_str("Admission(deferred)"),
        }
    }
}

/// What a layer sees of a request: who asks, for which logical model, until when.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    context: &'a RequestContext,
    deadline: Option<Instant>,
}

impl<'a> RequestInfo<'a> {
    pub(crate) fn new(context: &'a RequestContext, deadline: Option<Instant>) -> Self {
        Self { context, deadline }
    }

    /// The request's id (the caller's, or the one the adapter drew).
    pub fn request_id(&self) -> &'a RequestId {
        &self.context.request_id
    }

    /// The tenant the request is billed to.
    pub fn tenant_id(&self) -> &'a str {
        &self.context.tenant_id
    }

    /// The agent making the request.
    pub fn agent_id(&self) -> &'a str {
        &self.context.agent_id
    }

    /// The logical model asked for (`"gpt-4"`).
    pub fn model(&self) -> &'a str {
        &self.context.logical_model
    }

    /// Whether the request is a stream.
    pub fn is_streaming(&self) -> bool {
        self.context.streamed
    }

    /// When the whole request must be answered.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// What a provider layer sees of one call: the request, and which provider and model.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo<'a> {
    request: RequestInfo<'a>,
    provider: &'a str,
    model: &'a str,
    fallback: bool,
}

impl<'a> CallInfo<'a> {
    pub(crate) fn new(
        request: RequestInfo<'a>,
        provider: &'a str,
        model: &'a str,
        fallback: bool,
    ) -> Self {
        Self {
            request,
            provider,
            model,
            fallback,
        }
    }

    /// The request the call is made for.
    pub fn request(&self) -> RequestInfo<'a> {
        self.request
    }

    /// The provider's name.
    pub fn provider(&self) -> &'a str {
        self.provider
    }

    /// The concrete model routed to.
    pub fn model(&self) -> &'a str {
        self.model
    }

    /// Whether this provider is not the first of the chain (the usage record's
    /// `fallback_used`).
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }
}

/// What a provider call spent, as the usage record states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Spent {
    /// Tokens consumed.
    pub usage: TokenUsage,
    /// Whether `usage` is an estimate (the provider did not report it).
    pub usage_estimated: bool,
    /// The cost from the pricing table.
    pub cost: Usd,
    /// Time from admission by the breaker to the end of the call.
    pub latency: Duration,
}

/// How a call a provider layer admitted ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum CallOutcome<'a> {
    /// The provider answered (a stream: reached its terminal event) and the answer holds.
    Succeeded(Spent),
    /// The provider failed, or its answer broke the contract (JSON mode, a cut stream).
    Failed {
        /// The classified error.
        error: &'a ProviderError,
        /// What the call spent.
        spent: Spent,
    },
    /// The caller dropped the future or the stream while the provider was answering.
    Cancelled(Spent),
    /// A layer inside this one rejected the call: the provider was not called.
    Rejected {
        /// The rejecting layer's name.
        layer: &'a str,
        /// Its rejection.
        rejection: &'a Rejection,
    },
    /// The provider's breaker was open: the provider was not called.
    BreakerOpen,
    /// The deadline passed, or the caller went away, while layers inside this one were
    /// deciding: the provider was not called.
    Abandoned,
}

/// How a request a request layer admitted ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RequestOutcome<'a> {
    /// `generate_completion` answered (from a provider, the cache, or a coalesced request).
    Completed(&'a Completion),
    /// `stream_completion`'s stream ended with its summary.
    Streamed(&'a StreamSummary),
    /// The request failed with this error (the caller gets it too), including a stream
    /// interrupted after its first chunk and a rejection by a layer inside this one.
    Failed(&'a FailoverError),
    /// The caller dropped the future or the stream before the end.
    Cancelled,
}
