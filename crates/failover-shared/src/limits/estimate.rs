//! What a request may cost, before it is made.

use failover_core::Router;
use failover_provider::{CompletionRequest, PromptInput, TokenUsage, Usd};
use failover_usage::PricingTable;

/// Bytes of text per estimated token (the engine's own rough rule).
const BYTES_PER_TOKEN: usize = 4;
/// Tokens estimated per image (the engine's figure for an unscaled picture).
const TOKENS_PER_IMAGE: u64 = 1_600;

/// Estimates a request's tokens and cost: input from its text, output at `max_tokens`,
/// priced at the dearest provider its logical model routes to (the request may end up on
/// any of them).
#[derive(Debug, Clone)]
pub struct UsageEstimator {
    router: Router,
    pricing: PricingTable,
    providers: Vec<String>,
}

impl UsageEstimator {
    /// An estimator over the engine's routes and prices, for the chain's `providers`.
    pub fn new(router: Router, pricing: PricingTable, providers: Vec<String>) -> Self {
        Self {
            router,
            pricing,
            providers,
        }
    }

    /// `(cost, tokens)` the request may use at most (its input being an estimate).
    pub fn estimate(
        &self,
        logical_model: &str,
        request: &CompletionRequest,
        default_max_output: u32,
    ) -> (Usd, u64) {
        let (bytes, images) = match &request.input {
            PromptInput::Prompt(prompt) => (prompt.len(), 0),
            PromptInput::Messages(messages) => messages.iter().fold((0, 0), |(b, i), m| {
                (b + m.text_len(), i + m.images().count() as u64)
            }),
        };
        let input = bytes.div_ceil(BYTES_PER_TOKEN) as u64 + images * TOKENS_PER_IMAGE;
        let output = u64::from(request.max_tokens.unwrap_or(default_max_output));
        let usage = TokenUsage::new(input, output);
        let cost = self
            .providers
            .iter()
            .filter_map(|provider| {
                let model = self.router.resolve(logical_model, provider)?;
                self.pricing.cost(provider, model, &usage)
            })
            .max()
            .unwrap_or(Usd::ZERO);
        (cost, usage.total_tokens())
    }
}
