//! Cost and usage records for every provider call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failover_provider::{CompletionRequest, PromptInput, RequestId, TokenUsage, Usd};
use failover_telemetry::names::{label, metric, span};
use failover_usage::{PricingTable, UsageOutcome, UsageRecord, UsageSink};
use metrics::SharedString;

/// Bytes per token assumed when a provider reported no usage (a cancelled or cut stream).
/// Four bytes per token is the usual English-text average of BPE tokenizers; records built
/// from it are flagged `usage_estimated`.
const BYTES_PER_ESTIMATED_TOKEN: usize = 4;

/// Input tokens estimated per image when the provider did not count them: Anthropic's
/// figure for an image at the largest size it takes unscaled (about 1.15 megapixels,
/// `width × height / 750`); OpenAI's high-detail tiles land in the same range. An
/// estimate only: the engine does not decode images to measure them.
pub(crate) const ESTIMATED_TOKENS_PER_IMAGE: u64 = 1_600;

/// A rough token count for text the provider did not count for us.
pub(crate) fn estimate_tokens(bytes: usize) -> u64 {
    bytes.div_ceil(BYTES_PER_ESTIMATED_TOKEN) as u64
}

/// Where usage records go, with the counters the health report shows.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) sink: Arc<dyn UsageSink>,
    pub(crate) pricing: PricingTable,
    refused: AtomicU64,
}

impl Ledger {
    pub(crate) fn new(sink: Arc<dyn UsageSink>, pricing: PricingTable) -> Self {
        Self {
            sink,
            pricing,
            refused: AtomicU64::new(0),
        }
    }

    /// The cost of `usage` on (`provider`, `model`); zero when the model is unpriced (the
    /// builder refuses unpriced routes unless told otherwise).
    pub(crate) fn cost(&self, provider: &str, model: &str, usage: &TokenUsage) -> Usd {
        self.pricing
            .cost(provider, model, usage)
            .unwrap_or(Usd::ZERO)
    }

    /// Hands a record to the sink without blocking. A refusal is logged and counted: the
    /// sink's contract is that it never drops silently, so a refusal is a visible event.
    pub(crate) fn record(&self, record: UsageRecord) {
        let _span = tracing::debug_span!(
            span::USAGE_RECORD,
            failover.usage.sink = self.sink.name(),
            failover.provider = %record.provider,
            failover.outcome = record.outcome.as_str(),
            failover.attempt = i64::from(record.attempt),
            failover.usage_estimated = record.usage_estimated,
        )
        .entered();
        if let Err(error) = self.sink.record(record) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(metric::USAGE_REJECTED, label::USAGE_SINK => self.sink.name().to_owned())
                .increment(1);
            tracing::error!(sink = self.sink.name(), %error, "usage record refused by the sink");
        }
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// What every usage record of one request shares.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    pub(crate) request_id: RequestId,
    pub(crate) tenant_id: String,
    pub(crate) agent_id: String,
    pub(crate) logical_model: String,
    pub(crate) streamed: bool,
    /// Bytes of the input's text, tool calls, results and tool definitions.
    pub(crate) input_bytes: usize,
    /// Images in the input.
    pub(crate) input_images: usize,
    /// The tenant's metrics label value, when tenant labels are on.
    pub(crate) tenant_label: Option<SharedString>,
}

impl RequestContext {
    pub(crate) fn new(
        request: &CompletionRequest,
        request_id: RequestId,
        streamed: bool,
        tenant_label: Option<SharedString>,
    ) -> Self {
        Self {
            tenant_label,
            request_id,
            tenant_id: request.tenant_id.clone(),
            agent_id: request.agent_id.clone(),
            logical_model: request.model.clone(),
            streamed,
            input_bytes: request.input.text_len() + tool_definition_bytes(request),
            input_images: match &request.input {
                PromptInput::Prompt(_) => 0,
                PromptInput::Messages(messages) => messages.iter().flat_map(|m| m.images()).count(),
            },
        }
    }
}

/// Bytes the tools offered add to the input (providers bill their definitions as input).
fn tool_definition_bytes(request: &CompletionRequest) -> usize {
    request
        .tools
        .tools
        .iter()
        .map(|tool| {
            tool.name.len()
                + tool.description.as_ref().map_or(0, String::len)
                + tool.input_schema.to_string().len()
        })
        .sum()
}

/// One provider call's facts, turned into a [`UsageRecord`].
#[derive(Debug, Clone)]
pub(crate) struct CallFacts<'a> {
    pub(crate) attempt: u32,
    pub(crate) provider: &'a str,
    pub(crate) model: &'a str,
    pub(crate) usage: TokenUsage,
    pub(crate) usage_estimated: bool,
    pub(crate) cost: Usd,
    pub(crate) latency: Duration,
    pub(crate) outcome: UsageOutcome,
    pub(crate) fallback_used: bool,
}

impl RequestContext {
    pub(crate) fn usage_record(&self, facts: CallFacts<'_>) -> UsageRecord {
        UsageRecord {
            request_id: self.request_id.clone(),
            call_id: uuid::Uuid::new_v4().to_string(),
            attempt: facts.attempt,
            tenant_id: self.tenant_id.clone(),
            agent_id: self.agent_id.clone(),
            timestamp_unix_ms: unix_ms_now(),
            provider: facts.provider.to_owned(),
            model: facts.model.to_owned(),
            logical_model: self.logical_model.clone(),
            usage: facts.usage,
            usage_estimated: facts.usage_estimated,
            cost: facts.cost,
            latency_ms: u64::try_from(facts.latency.as_millis()).unwrap_or(u64::MAX),
            outcome: facts.outcome,
            cached: matches!(facts.outcome, UsageOutcome::CacheHit),
            fallback_used: facts.fallback_used,
            streamed: self.streamed,
        }
    }

    /// Usage of a call cut short: the provider's figures when it gave them, else an
    /// estimate from the input and the text received.
    pub(crate) fn partial_usage(
        &self,
        reported: Option<TokenUsage>,
        received_bytes: usize,
    ) -> (TokenUsage, bool) {
        match reported {
            Some(usage) => (usage, false),
            None => (
                TokenUsage::new(
                    estimate_tokens(self.input_bytes)
                        + self.input_images as u64 * ESTIMATED_TOKENS_PER_IMAGE,
                    estimate_tokens(received_bytes),
                ),
                true,
            ),
        }
    }
}

pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_round_up() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(8), 2);
        assert_eq!(estimate_tokens(9), 3);
    }
}
