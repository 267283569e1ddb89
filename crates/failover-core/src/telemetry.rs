//! What the engine tells `metrics` and `tracing`: the request span and its outcome, and the
//! metric handles of every (provider, model) pair and logical model.
//!
//! Each series' handle is registered with the recorder the first time the series occurs
//! and kept (per provider and model, per logical model), so the hot path does no registry
//! lookup, hashing or allocation per metric, and no series exists for a route or an
//! outcome that never occurred. Install the `metrics` recorder before the first request.
//! Only tenant-labelled series (off by default, bounded by [`TenantLabels`]) go through the
//! recorder on every request.
//!
//! No prompt, answer, key or upstream message is ever a label or a span field: labels are
//! provider and model names from the configuration and fixed vocabularies; errors are
//! their kind.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use failover_provider::{CompletionRequest, ErrorKind, Provider, RequestId, TokenUsage, Usd};
use failover_telemetry::TenantLabels;
use failover_telemetry::names::{label, metric, span, value};
use metrics::{Counter, Histogram, Label, SharedString};
use tracing::Span;
use tracing::field::Empty;

use crate::error::FailoverError;
use crate::routing::Router;

/// The `gen_ai.request.model` of requests for a model no route knows: the model a caller
/// sent is free text, so it never becomes a label value of its own.
const UNROUTED_MODEL: &str = "_unrouted";

/// How a request ended, as the `failover.outcome` of request metrics and spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestEnd {
    /// A provider answered.
    Success,
    /// The cache or an identical request in flight answered.
    Cached,
    Invalid,
    ShutDown,
    Rejected,
    Unavailable,
    AllFailed,
    Refused,
    Deadline,
    Interrupted,
    /// The caller went away first.
    Cancelled,
}

impl RequestEnd {
    const COUNT: usize = 11;

    fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RequestEnd::Success => "success",
            RequestEnd::Cached => "cached",
            RequestEnd::Invalid => "invalid",
            RequestEnd::ShutDown => "shut_down",
            RequestEnd::Rejected => "rejected",
            RequestEnd::Unavailable => "unavailable",
            RequestEnd::AllFailed => "all_failed",
            RequestEnd::Refused => "refused",
            RequestEnd::Deadline => "deadline",
            RequestEnd::Interrupted => "interrupted",
            RequestEnd::Cancelled => "cancelled",
        }
    }

    pub(crate) fn of_error(error: &FailoverError) -> Self {
        match error {
            FailoverError::Invalid(_) => RequestEnd::Invalid,
            FailoverError::ShutDown => RequestEnd::ShutDown,
            FailoverError::Rejected { .. } => RequestEnd::Rejected,
            FailoverError::Unavailable { .. } => RequestEnd::Unavailable,
            FailoverError::AllProvidersFailed { .. } => RequestEnd::AllFailed,
            FailoverError::Refused { .. } => RequestEnd::Refused,
            FailoverError::DeadlineExceeded { .. } => RequestEnd::Deadline,
            FailoverError::StreamInterrupted { .. } => RequestEnd::Interrupted,
        }
    }
}

/// How a provider attempt ended, as the `failover.outcome` of attempt metrics and spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    Success,
    Failure(ErrorKind),
    Cancelled,
    SkippedBreakerOpen,
    SkippedRejected,
    SkippedUnsupported,
}

impl AttemptEnd {
    /// How many outcomes are not a failure (their counters need no error kind).
    const NOT_FAILED: usize = 5;

    /// The index of an outcome that is not a failure; failures are counted per kind.
    fn index(self) -> usize {
        match self {
            AttemptEnd::Success | AttemptEnd::Failure(_) => 0,
            AttemptEnd::Cancelled => 1,
            AttemptEnd::SkippedBreakerOpen => 2,
            AttemptEnd::SkippedRejected => 3,
            AttemptEnd::SkippedUnsupported => 4,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AttemptEnd::Success => "success",
            AttemptEnd::Failure(_) => "failure",
            AttemptEnd::Cancelled => "cancelled",
            AttemptEnd::SkippedBreakerOpen => "skipped_breaker_open",
            AttemptEnd::SkippedRejected => "skipped_rejected",
            AttemptEnd::SkippedUnsupported => "skipped_unsupported",
        }
    }
}

/// Registers a counter with the current recorder.
fn counter(name: &'static str, labels: Vec<Label>) -> Counter {
    metrics::counter!(name, labels)
}

fn histogram(name: &'static str, labels: Vec<Label>) -> Histogram {
    metrics::histogram!(name, labels)
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// A metric handle registered with the recorder the first time it is used, so an adapter
/// with many routes keeps no series for the pairs and outcomes that never occur.
#[derive(Debug)]
struct Lazy<T>(OnceLock<T>);

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<T> Lazy<T> {
    fn get(&self, register: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(register)
    }
}

/// The metrics of one provider serving one concrete model.
#[derive(Debug)]
pub(crate) struct CallMetrics {
    provider: SharedString,
    gen_ai_provider: &'static str,
    model: SharedString,
    /// Attempts that did not fail, per outcome ([`AttemptEnd::index`]).
    attempts: [Lazy<Counter>; AttemptEnd::NOT_FAILED],
    /// Per error kind (in [`ErrorKind::ALL`] order): the attempts counter and the duration
    /// histogram labelled with it.
    failed: [Lazy<(Counter, Histogram)>; ErrorKind::ALL.len()],
    duration: Lazy<Histogram>,
    tokens: Lazy<(Histogram, Histogram)>,
    first_chunk: Lazy<Histogram>,
    longest_gap: Lazy<Histogram>,
    cost: Lazy<Counter>,
    fallbacks: Lazy<Counter>,
}

impl CallMetrics {
    fn new(provider: &str, gen_ai_provider: &'static str, model: &str) -> Self {
        Self {
            provider: SharedString::from(Arc::<str>::from(provider)),
            gen_ai_provider,
            model: SharedString::from(Arc::<str>::from(model)),
            attempts: std::array::from_fn(|_| Lazy::default()),
            failed: std::array::from_fn(|_| Lazy::default()),
            duration: Lazy::default(),
            tokens: Lazy::default(),
            first_chunk: Lazy::default(),
            longest_gap: Lazy::default(),
            cost: Lazy::default(),
            fallbacks: Lazy::default(),
        }
    }

    /// The labels every series of this pair has, and `extra`.
    fn labels(&self, extra: &[(&'static str, &'static str)]) -> Vec<Label> {
        let mut labels = vec![
            Label::new(label::PROVIDER, self.provider.clone()),
            Label::from_static_parts(label::PROVIDER_NAME, self.gen_ai_provider),
            Label::new(label::REQUEST_MODEL, self.model.clone()),
        ];
        labels.extend(
            extra
                .iter()
                .map(|(key, value)| Label::from_static_parts(key, value)),
        );
        labels
    }

    fn attempt(&self, end: AttemptEnd) -> &Counter {
        self.attempts[end.index()].get(|| {
            counter(
                metric::PROVIDER_ATTEMPTS,
                self.labels(&[(label::OUTCOME, end.as_str())]),
            )
        })
    }

    /// An attempt that never called the provider.
    pub(crate) fn skipped(&self, end: AttemptEnd) {
        self.attempt(end).increment(1);
    }

    /// A call that ended: its outcome, duration, tokens and cost (`tenant`: the tenant's
    /// label value when tenant labels are on).
    pub(crate) fn called(
        &self,
        end: AttemptEnd,
        latency: Duration,
        usage: &TokenUsage,
        cost: Usd,
        tenant: Option<SharedString>,
    ) {
        let duration = match end {
            AttemptEnd::Failure(kind) => {
                let (attempts, duration) = self.failure(kind);
                attempts.increment(1);
                duration
            }
            _ => {
                self.attempt(end).increment(1);
                self.duration.get(|| {
                    histogram(
                        metric::OPERATION_DURATION,
                        self.labels(&[(label::OPERATION_NAME, value::CHAT)]),
                    )
                })
            }
        };
        duration.record(seconds(latency));
        // Billed tokens only: a call refused before generating anything reports none.
        if usage.input_tokens > 0 || usage.output_tokens > 0 {
            let (input, output) = self.tokens.get(|| {
                let tokens = |kind| {
                    histogram(
                        metric::TOKEN_USAGE,
                        self.labels(&[
                            (label::OPERATION_NAME, value::CHAT),
                            (label::TOKEN_TYPE, kind),
                        ]),
                    )
                };
                (tokens(value::INPUT), tokens(value::OUTPUT))
            });
            input.record(usage.input_tokens as f64);
            output.record(usage.output_tokens as f64);
        }
        let nanos = cost.nanos();
        if nanos > 0 {
            match tenant {
                Some(tenant) => {
                    let mut labels = self.labels(&[]);
                    labels.push(Label::new(label::TENANT, tenant));
                    counter(metric::COST, labels).increment(nanos);
                }
                None => self
                    .cost
                    .get(|| counter(metric::COST, self.labels(&[])))
                    .increment(nanos),
            }
        }
    }

    fn failure(&self, kind: ErrorKind) -> &(Counter, Histogram) {
        let index = ErrorKind::ALL
            .iter()
            .position(|known| *known == kind)
            .unwrap_or(0);
        self.failed[index].get(|| {
            (
                counter(
                    metric::PROVIDER_ATTEMPTS,
                    self.labels(&[
                        (label::OUTCOME, AttemptEnd::Failure(kind).as_str()),
                        (label::ERROR_TYPE, kind.as_str()),
                    ]),
                ),
                histogram(
                    metric::OPERATION_DURATION,
                    self.labels(&[
                        (label::OPERATION_NAME, value::CHAT),
                        (label::ERROR_TYPE, kind.as_str()),
                    ]),
                ),
            )
        })
    }

    /// The answer came from this provider although an earlier one was tried or skipped.
    pub(crate) fn fell_back(&self) {
        self.fallbacks
            .get(|| counter(metric::FALLBACKS, self.labels(&[])))
            .increment(1);
    }

    /// A stream's first chunk of content arrived `after` its call started.
    pub(crate) fn first_chunk(&self, after: Duration) {
        self.first_chunk
            .get(|| {
                histogram(
                    metric::TIME_TO_FIRST_CHUNK,
                    self.labels(&[(label::OPERATION_NAME, value::CHAT)]),
                )
            })
            .record(seconds(after));
    }

    /// A stream ended; `gap` is the longest wait between two of its chunks.
    pub(crate) fn longest_gap(&self, gap: Duration) {
        self.longest_gap
            .get(|| histogram(metric::LONGEST_CHUNK_GAP, self.labels(&[])))
            .record(seconds(gap));
    }

    /// The attempt's span, a child of the request's: the GenAI conventions' client span
    /// (`chat {model}`), with how the attempt ended recorded by [`AttemptSpan`].
    pub(crate) fn span(&self, fallback: bool) -> Span {
        tracing::debug_span!(
            span::ATTEMPT,
            otel.name = %format_args!("{} {}", value::CHAT, &*self.model),
            otel.kind = "client",
            otel.status_code = Empty,
            gen_ai.operation.name = value::CHAT,
            gen_ai.provider.name = self.gen_ai_provider,
            failover.provider = &*self.provider,
            gen_ai.request.model = &*self.model,
            gen_ai.response.model = Empty,
            failover.attempt = Empty,
            failover.fallback = fallback,
            failover.outcome = Empty,
            error.type = Empty,
            failover.retry_after_ms = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
        )
    }
}

/// Numbers go to spans as `i64`: OpenTelemetry attributes have no unsigned integers, and
/// `tracing-opentelemetry` exports a `u64` field as a string.
pub(crate) fn as_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// Records how an attempt ended on its span.
pub(crate) fn end_attempt_span(
    span: &Span,
    end: AttemptEnd,
    usage: Option<&TokenUsage>,
    retry_after: Option<Duration>,
) {
    if span.is_disabled() {
        return;
    }
    span.record("failover.outcome", end.as_str());
    if let AttemptEnd::Failure(kind) = end {
        span.record("error.type", kind.as_str());
        span.record("otel.status_code", "ERROR");
    }
    if let Some(wait) = retry_after {
        span.record("failover.retry_after_ms", as_i64(wait.as_millis()));
    }
    if let Some(usage) = usage {
        span.record("gen_ai.usage.input_tokens", as_i64(usage.input_tokens));
        span.record("gen_ai.usage.output_tokens", as_i64(usage.output_tokens));
    }
}

/// The request metrics of one logical model.
#[derive(Debug)]
struct RequestMetrics {
    model: SharedString,
    /// Per (stream or not, outcome): the requests counter and the duration histogram.
    ended: [[Lazy<(Counter, Histogram)>; RequestEnd::COUNT]; 2],
}

impl RequestMetrics {
    fn new(model: &str) -> Self {
        Self {
            model: SharedString::from(Arc::<str>::from(model)),
            ended: std::array::from_fn(|_| std::array::from_fn(|_| Lazy::default())),
        }
    }

    fn series(&self, streamed: bool, end: RequestEnd) -> &(Counter, Histogram) {
        self.ended[usize::from(streamed)][end.index()].get(|| {
            let labels = vec![
                Label::from_static_parts(label::OUTCOME, end.as_str()),
                Label::from_static_parts(label::STREAM, stream_label(streamed)),
                Label::new(label::REQUEST_MODEL, self.model.clone()),
            ];
            (
                counter(metric::REQUESTS, labels.clone()),
                histogram(metric::REQUEST_DURATION, labels),
            )
        })
    }
}

/// Every metric handle of one engine.
#[derive(Debug)]
pub(crate) struct EngineMetrics {
    /// Per provider (in chain order), per concrete model.
    calls: Vec<HashMap<String, Arc<CallMetrics>>>,
    requests: HashMap<String, Arc<RequestMetrics>>,
    unrouted: Arc<RequestMetrics>,
    tenants: TenantLabels,
}

impl EngineMetrics {
    /// The metrics of every route of `router` on `providers`; each handle is registered
    /// with the recorder when its series first occurs.
    pub(crate) fn new(
        providers: &[Arc<dyn Provider>],
        router: &Router,
        tenant_series: usize,
    ) -> Self {
        let mut calls: Vec<HashMap<String, Arc<CallMetrics>>> =
            providers.iter().map(|_| HashMap::new()).collect();
        let mut requests = HashMap::new();
        for (logical, provider_name, model) in router.entries() {
            let Some(index) = providers.iter().position(|p| p.name() == provider_name) else {
                continue;
            };
            let provider = &providers[index];
            calls[index].entry(model.to_owned()).or_insert_with(|| {
                Arc::new(CallMetrics::new(
                    provider.name(),
                    provider.gen_ai_provider_name(),
                    model,
                ))
            });
            requests
                .entry(logical.to_owned())
                .or_insert_with(|| Arc::new(RequestMetrics::new(logical)));
        }
        Self {
            calls,
            requests,
            unrouted: Arc::new(RequestMetrics::new(UNROUTED_MODEL)),
            tenants: TenantLabels::new(tenant_series),
        }
    }

    /// The handles of provider `slot` serving `model`. Every route's pair has its metrics
    /// from the start; a pair that does not (none today) gets its own on the spot.
    pub(crate) fn call(&self, slot: &dyn Provider, index: usize, model: &str) -> Arc<CallMetrics> {
        match self.calls.get(index).and_then(|models| models.get(model)) {
            Some(found) => Arc::clone(found),
            None => Arc::new(CallMetrics::new(
                slot.name(),
                slot.gen_ai_provider_name(),
                model,
            )),
        }
    }

    /// The tenant's label value, when tenant labels are on.
    pub(crate) fn tenant(&self, tenant: &str) -> Option<SharedString> {
        self.tenants.label(tenant)
    }

    fn requests_of(&self, model: &str) -> &Arc<RequestMetrics> {
        self.requests.get(model).unwrap_or(&self.unrouted)
    }
}

/// One request's span and its metrics, from arrival to its end; dropped unfinished, the
/// request counts as cancelled (the caller went away).
#[derive(Debug)]
pub(crate) struct RequestTrace {
    span: Span,
    started: Instant,
    streamed: bool,
    requests: Arc<RequestMetrics>,
    /// The tenant's label value, when tenant labels are on.
    tenant: Option<SharedString>,
    ended: bool,
}

/// What a request's span shows of it.
pub(crate) struct RequestFacts<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) agent: &'a str,
    pub(crate) model: &'a str,
    pub(crate) streamed: bool,
}

impl<'a> RequestFacts<'a> {
    /// The facts of `request`, whose id is `id`.
    pub(crate) fn of(request: &'a CompletionRequest, id: &'a RequestId, streamed: bool) -> Self {
        Self {
            request_id: id.as_str(),
            tenant: &request.tenant_id,
            agent: &request.agent_id,
            model: &request.model,
            streamed,
        }
    }
}

impl RequestTrace {
    /// Opens the request span.
    pub(crate) fn start(metrics: &EngineMetrics, facts: &RequestFacts<'_>) -> Self {
        // DEBUG like its parts: a service logging at INFO pays nothing for spans (a
        // formatting subscriber costs microseconds per span); the OTLP exporter's filter
        // enables the engine's spans at DEBUG.
        let span = tracing::debug_span!(
            span::REQUEST,
            failover.request_id = facts.request_id,
            failover.tenant = facts.tenant,
            gen_ai.agent.id = facts.agent,
            gen_ai.request.model = facts.model,
            failover.stream = facts.streamed,
            failover.outcome = Empty,
            failover.provider = Empty,
            failover.cached = Empty,
            failover.attempts = Empty,
        );
        Self {
            span,
            started: Instant::now(),
            streamed: facts.streamed,
            requests: Arc::clone(metrics.requests_of(facts.model)),
            tenant: metrics.tenant(facts.tenant),
            ended: false,
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Ends the request: its outcome on the span and in the metrics. `answered`: the
    /// provider that answered and the attempts made.
    pub(crate) fn finish(&mut self, end: RequestEnd, answered: Option<(&str, usize)>) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        if !self.span.is_disabled() {
            self.span.record("failover.outcome", end.as_str());
            self.span
                .record("failover.cached", matches!(end, RequestEnd::Cached));
            if let Some((provider, attempts)) = answered {
                self.span.record("failover.provider", provider);
                self.span.record("failover.attempts", as_i64(attempts));
            }
        }
        let elapsed = seconds(self.started.elapsed());
        match self.tenant.take() {
            Some(tenant) => {
                let labels = [
                    Label::from_static_parts(label::OUTCOME, end.as_str()),
                    Label::from_static_parts(label::STREAM, stream_label(self.streamed)),
                    Label::new(label::REQUEST_MODEL, self.requests.model.clone()),
                    Label::new(label::TENANT, tenant),
                ];
                metrics::counter!(metric::REQUESTS, labels.iter()).increment(1);
                metrics::histogram!(metric::REQUEST_DURATION, labels.iter()).record(elapsed);
            }
            None => {
                let (count, duration) = self.requests.series(self.streamed, end);
                count.increment(1);
                duration.record(elapsed);
            }
        }
    }

    /// Ends the request with `result`'s outcome.
    pub(crate) fn finish_with<T>(
        &mut self,
        result: &Result<T, FailoverError>,
        answered: impl FnOnce(&T) -> (RequestEnd, Option<(&str, usize)>),
    ) {
        match result {
            Ok(value) => {
                let (end, by) = answered(value);
                self.finish(end, by);
            }
            Err(error) => self.finish(RequestEnd::of_error(error), None),
        }
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        self.finish(RequestEnd::Cancelled, None);
    }
}

fn stream_label(streamed: bool) -> &'static str {
    if streamed { "true" } else { "false" }
}
