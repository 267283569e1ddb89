//! The names of every metric, label and span field llm-failover emits, in one place.
//!
//! Metric and attribute names from the OpenTelemetry GenAI semantic conventions are used as
//! they are (`gen_ai.*`, `error.type`); everything else is under `failover.`. Label values
//! are short, fixed vocabularies (outcomes, error kinds, provider and model names from the
//! configuration); prompts, answers and secrets are never a label or a field.
//! `docs/observability.md` documents each one.

use metrics::Unit;

/// The metric names.
pub mod metric {
    /// Counter: requests that ended, by `failover.outcome`, `failover.stream` and
    /// `gen_ai.request.model` (the logical model), plus `failover.tenant` when enabled.
    pub const REQUESTS: &str = "failover.requests";
    /// Histogram (seconds): a request from its arrival to its answer (a stream: to its end),
    /// by `failover.outcome`, `failover.stream` and `gen_ai.request.model`.
    pub const REQUEST_DURATION: &str = "failover.request.duration";
    /// Counter: requests answered by a provider other than the first one the chain tried for
    /// them, by the `failover.provider` that answered and `gen_ai.request.model`.
    pub const FALLBACKS: &str = "failover.fallbacks";
    /// Counter: requests answered by an identical request in flight (no call of their own).
    pub const COALESCED: &str = "failover.coalesced";
    /// Counter: provider attempts (calls and skips), by `failover.provider`,
    /// `gen_ai.provider.name`, `gen_ai.request.model` (concrete), `failover.outcome` and,
    /// for failures, `error.type` (the error kind).
    pub const PROVIDER_ATTEMPTS: &str = "failover.provider.attempts";
    /// Histogram (seconds): one provider call, GenAI convention; by `gen_ai.operation.name`,
    /// `gen_ai.provider.name`, `failover.provider`, `gen_ai.request.model` and, when it
    /// failed, `error.type`.
    pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// Histogram (tokens): input and output tokens of one provider call, GenAI convention;
    /// by `gen_ai.token.type`, `gen_ai.provider.name`, `failover.provider` and
    /// `gen_ai.request.model`. Its sum is the token total.
    pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Histogram (seconds): a stream's call start to its first chunk of content, GenAI
    /// convention; by `gen_ai.provider.name`, `failover.provider`, `gen_ai.request.model`.
    pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
    /// Histogram (seconds): the longest wait between two chunks of one stream, recorded when
    /// the stream ends; by `failover.provider` and `gen_ai.request.model`.
    pub const LONGEST_CHUNK_GAP: &str = "failover.stream.longest_chunk_gap";
    /// Counter (nano-dollars, USD × 10⁹, so sums stay exact): the cost of provider calls, by
    /// `failover.provider`, `gen_ai.request.model` and `failover.tenant` when enabled.
    pub const COST: &str = "failover.cost.nano_usd";
    /// Counter: cache lookups that found an answer.
    pub const CACHE_HITS: &str = "failover.cache.hits";
    /// Counter: cache lookups that found nothing (errors and time-outs included).
    pub const CACHE_MISSES: &str = "failover.cache.misses";
    /// Counter: cache operations that failed, by `failover.cache.operation`.
    pub const CACHE_ERRORS: &str = "failover.cache.errors";
    /// Counter: cache operations that ran out of their time budget, by
    /// `failover.cache.operation`.
    pub const CACHE_TIMEOUTS: &str = "failover.cache.timeouts";
    /// Gauge: 1 for a provider's current breaker state, 0 for the others; by
    /// `failover.provider` and `failover.breaker.state`.
    pub const BREAKER_STATE: &str = "failover.breaker.state";
    /// Counter: breaker transitions, by `failover.provider`, `failover.breaker.from` and
    /// `failover.breaker.to`.
    pub const BREAKER_TRANSITIONS: &str = "failover.breaker.transitions";
    /// Gauge: usage records accepted by a sink and not yet stored, by `failover.usage.sink`.
    pub const USAGE_QUEUE_DEPTH: &str = "failover.usage.queue_depth";
    /// Counter: usage records stored by a sink, by `failover.usage.sink`.
    pub const USAGE_WRITTEN: &str = "failover.usage.written";
    /// Counter: usage records written to the spill file (the store was down or the queue
    /// full), by `failover.usage.sink`.
    pub const USAGE_SPILLED: &str = "failover.usage.spilled";
    /// Counter: spilled usage records replayed into the store, by `failover.usage.sink`.
    pub const USAGE_REPLAYED: &str = "failover.usage.replayed";
    /// Counter: usage records a sink refused (each one also logged at `error`), by
    /// `failover.usage.sink`.
    pub const USAGE_REJECTED: &str = "failover.usage.rejected";
    /// Histogram (seconds): one DynamoDB call, by `failover.store.operation` and
    /// `failover.store.result`.
    pub const DYNAMODB_DURATION: &str = "failover.dynamodb.duration";
    /// Histogram (seconds): one Redis call, by `failover.store.operation` and
    /// `failover.store.result`.
    pub const REDIS_DURATION: &str = "failover.redis.duration";
}

/// Label (attribute) keys, shared by metrics and spans.
pub mod label {
    /// GenAI convention: the operation; always [`CHAT`](super::value::CHAT) here.
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// GenAI convention: the provider's well-known name (`aws.bedrock`, `openai`).
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// GenAI convention: the model asked for: the logical model on request metrics, the
    /// concrete (routed) model on provider metrics.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// GenAI convention: the model that served the answer, as the provider reports it.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// GenAI convention: `input` or `output`.
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    /// OpenTelemetry convention: the error kind of a failed call (`unavailable`, `timeout`…).
    pub const ERROR_TYPE: &str = "error.type";
    /// The provider's name in the chain (what breakers and admin routes use).
    pub const PROVIDER: &str = "failover.provider";
    /// How a request or an attempt ended.
    pub const OUTCOME: &str = "failover.outcome";
    /// `true` for a streamed request.
    pub const STREAM: &str = "failover.stream";
    /// The tenant, when tenant labels are enabled (see
    /// [`TenantLabels`](crate::TenantLabels)).
    pub const TENANT: &str = "failover.tenant";
    /// `lookup` or `store`.
    pub const CACHE_OPERATION: &str = "failover.cache.operation";
    /// A breaker state: `closed`, `open`, `half_open`, `forced_open`, `forced_closed`.
    pub const BREAKER_STATE: &str = "failover.breaker.state";
    /// The state a breaker left.
    pub const BREAKER_FROM: &str = "failover.breaker.from";
    /// The state a breaker entered.
    pub const BREAKER_TO: &str = "failover.breaker.to";
    /// The usage sink (`memory`, `dynamodb`).
    pub const USAGE_SINK: &str = "failover.usage.sink";
    /// A store's API operation (`BatchWriteItem`, `Query`, `GET`, `SET`…).
    pub const STORE_OPERATION: &str = "failover.store.operation";
    /// `ok` or `error`.
    pub const STORE_RESULT: &str = "failover.store.result";
}

/// Label values with a fixed vocabulary.
pub mod value {
    /// `gen_ai.operation.name` of a chat completion.
    pub const CHAT: &str = "chat";
    /// `gen_ai.token.type` of input tokens.
    pub const INPUT: &str = "input";
    /// `gen_ai.token.type` of output tokens.
    pub const OUTPUT: &str = "output";
    /// `failover.cache.operation` of a lookup.
    pub const LOOKUP: &str = "lookup";
    /// `failover.cache.operation` of a write.
    pub const STORE: &str = "store";
    /// `failover.store.result` of a call that succeeded.
    pub const OK: &str = "ok";
    /// `failover.store.result` of a call that failed.
    pub const ERROR: &str = "error";
}

/// Span names. Every span is created through `tracing` at DEBUG (so a service logging at
/// INFO pays nothing for them), and any subscriber that enables them sees them;
/// the `otel.name` field carries the GenAI convention's name (`chat {model}`) for
/// OpenTelemetry.
pub mod span {
    /// One request, from validation to its answer (DEBUG).
    pub const REQUEST: &str = "failover.request";
    /// One provider call (DEBUG).
    pub const ATTEMPT: &str = "failover.attempt";
    /// One cache lookup (DEBUG).
    pub const CACHE_LOOKUP: &str = "failover.cache.lookup";
    /// One cache write (DEBUG).
    pub const CACHE_STORE: &str = "failover.cache.store";
    /// One usage record handed to the sink (DEBUG).
    pub const USAGE_RECORD: &str = "failover.usage.record";
}

/// Bucket bounds (seconds) for durations: the GenAI convention's for
/// `gen_ai.client.operation.duration`, 10 ms to 82 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Bucket bounds (seconds) for store calls: 0.5 ms to 2.5 s.
pub const STORE_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Bucket bounds (tokens): the GenAI convention's for `gen_ai.client.token.usage`.
pub const TOKEN_BUCKETS: &[f64] = &[
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Every metric with its kind, unit, description and bucket bounds (histograms).
pub const CATALOGUE: &[MetricInfo] = &[
    MetricInfo::counter(
        metric::REQUESTS,
        Unit::Count,
        "Requests that ended, by outcome.",
    ),
    MetricInfo::histogram(
        metric::REQUEST_DURATION,
        Unit::Seconds,
        "A request from arrival to answer (a stream: to its end).",
        DURATION_BUCKETS,
    ),
    MetricInfo::counter(
        metric::FALLBACKS,
        Unit::Count,
        "Requests answered by a provider other than the first one tried.",
    ),
    MetricInfo::counter(
        metric::COALESCED,
        Unit::Count,
        "Requests answered by an identical request in flight.",
    ),
    MetricInfo::counter(
        metric::PROVIDER_ATTEMPTS,
        Unit::Count,
        "Provider attempts (calls and skips), by outcome and error kind.",
    ),
    MetricInfo::histogram(
        metric::OPERATION_DURATION,
        Unit::Seconds,
        "GenAI operation duration: one provider call.",
        DURATION_BUCKETS,
    ),
    MetricInfo::histogram(
        metric::TOKEN_USAGE,
        Unit::Count,
        "Input and output tokens of one provider call.",
        TOKEN_BUCKETS,
    ),
    MetricInfo::histogram(
        metric::TIME_TO_FIRST_CHUNK,
        Unit::Seconds,
        "A stream's call start to its first chunk of content.",
        DURATION_BUCKETS,
    ),
    MetricInfo::histogram(
        metric::LONGEST_CHUNK_GAP,
        Unit::Seconds,
        "The longest wait between two chunks of one stream.",
        DURATION_BUCKETS,
    ),
    MetricInfo::counter(
        metric::COST,
        Unit::Count,
        "Cost of provider calls in nano-dollars (USD x 1e9).",
    ),
    MetricInfo::counter(
        metric::CACHE_HITS,
        Unit::Count,
        "Cache lookups that found an answer.",
    ),
    MetricInfo::counter(
        metric::CACHE_MISSES,
        Unit::Count,
        "Cache lookups that found nothing (errors and time-outs included).",
    ),
    MetricInfo::counter(
        metric::CACHE_ERRORS,
        Unit::Count,
        "Cache operations that failed.",
    ),
    MetricInfo::counter(
        metric::CACHE_TIMEOUTS,
        Unit::Count,
        "Cache operations that ran out of their time budget.",
    ),
    MetricInfo::gauge(
        metric::BREAKER_STATE,
        Unit::Count,
        "1 for a provider's current breaker state, 0 for the others.",
    ),
    MetricInfo::counter(
        metric::BREAKER_TRANSITIONS,
        Unit::Count,
        "Breaker transitions between states.",
    ),
    MetricInfo::gauge(
        metric::USAGE_QUEUE_DEPTH,
        Unit::Count,
        "Usage records accepted by a sink and not yet stored.",
    ),
    MetricInfo::counter(
        metric::USAGE_WRITTEN,
        Unit::Count,
        "Usage records stored by a sink.",
    ),
    MetricInfo::counter(
        metric::USAGE_SPILLED,
        Unit::Count,
        "Usage records written to the spill file.",
    ),
    MetricInfo::counter(
        metric::USAGE_REPLAYED,
        Unit::Count,
        "Spilled usage records replayed into the store.",
    ),
    MetricInfo::counter(
        metric::USAGE_REJECTED,
        Unit::Count,
        "Usage records a sink refused.",
    ),
    MetricInfo::histogram(
        metric::DYNAMODB_DURATION,
        Unit::Seconds,
        "One DynamoDB call.",
        STORE_DURATION_BUCKETS,
    ),
    MetricInfo::histogram(
        metric::REDIS_DURATION,
        Unit::Seconds,
        "One Redis call.",
        STORE_DURATION_BUCKETS,
    ),
];

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution.
    Histogram,
}

/// What the catalogue says of one metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    /// The metric's name.
    pub name: &'static str,
    /// Its kind.
    pub kind: MetricKind,
    /// Its unit.
    pub unit: Unit,
    /// One line on what it counts.
    pub description: &'static str,
    /// Bucket bounds of a histogram; empty otherwise.
    pub buckets: &'static [f64],
}

impl MetricInfo {
    const fn counter(name: &'static str, unit: Unit, description: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Counter,
            unit,
            description,
            buckets: &[],
        }
    }

    const fn gauge(name: &'static str, unit: Unit, description: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Gauge,
            unit,
            description,
            buckets: &[],
        }
    }

    const fn histogram(
        name: &'static str,
        unit: Unit,
        description: &'static str,
        buckets: &'static [f64],
    ) -> Self {
        Self {
            name,
            kind: MetricKind::Histogram,
            unit,
            description,
            buckets,
        }
    }
}

/// Registers every metric's unit and description with the installed recorder (call it
/// once after installing one; exporters show them as `# HELP` lines).
pub fn describe() {
    for info in CATALOGUE {
        match info.kind {
            MetricKind::Counter => {
                metrics::describe_counter!(info.name, info.unit, info.description)
            }
            MetricKind::Gauge => metrics::describe_gauge!(info.name, info.unit, info.description),
            MetricKind::Histogram => {
                metrics::describe_histogram!(info.name, info.unit, info.description)
            }
        }
    }
}
