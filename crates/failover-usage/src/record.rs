//! One provider call (or cache hit), as accounted.

use failover_provider::{ErrorKind, RequestId, TokenUsage, Usd};
use serde::{Deserialize, Serialize};

/// How an accounted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum UsageOutcome {
    /// The provider answered (a stream that reached its end).
    Success,
    /// The provider failed with a classified error.
    Failed {
        /// The error's kind.
        kind: ErrorKind,
    },
    /// The caller went away mid-call (a dropped future or stream); tokens are partial.
    Cancelled,
    /// Served from the response cache: no provider call, zero cost.
    CacheHit,
    /// No provider could be called (every breaker open, or a layer refused every one):
    /// no call, zero cost, recorded so the ledger shows the outage.
    Rejected,
}

impl UsageOutcome {
    /// A stable snake_case name: `success`, `failed`, `cancelled`, `cache_hit`,
    /// `rejected`.
    pub fn as_str(&self) -> &'static str {
        match self {
            UsageOutcome::Success => "success",
            UsageOutcome::Failed { .. } => "failed",
            UsageOutcome::Cancelled => "cancelled",
            UsageOutcome::CacheHit => "cache_hit",
            UsageOutcome::Rejected => "rejected",
        }
    }

    /// The error kind of a failed call.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            UsageOutcome::Failed { kind } => Some(*kind),
            _ => None,
        }
    }
}

impl std::fmt::Display for UsageOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageOutcome::Failed { kind } => write!(f, "failed({kind})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// One provider call — or one cache hit — of one request.
///
/// `call_id` identifies it: the adapter draws a fresh one for every provider call, so two
/// calls are never confused even when a caller reuses a request id (a retry, or another
/// tenant's id). Sinks deduplicate on [`UsageRecord::idempotency_key`], so writing the same
/// record twice (a replay, a lost acknowledgement) never double-counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The request's id (the same for every attempt; chosen by the caller or drawn by the
    /// adapter), for correlation.
    pub request_id: RequestId,
    /// The unique id of this provider call (or cache hit), drawn by the adapter.
    pub call_id: String,
    /// 1-based index of the provider call within the request (0 for a cache hit).
    pub attempt: u32,
    /// The tenant billed.
    pub tenant_id: String,
    /// The agent that asked.
    pub agent_id: String,
    /// When the call ended, in milliseconds since the Unix epoch.
    pub timestamp_unix_ms: u64,
    /// The provider called (`"bedrock"`, `"openai"`); for a cache hit, the provider that
    /// originally answered.
    pub provider: String,
    /// The concrete model called.
    pub model: String,
    /// The logical model the caller asked for.
    pub logical_model: String,
    /// Tokens consumed (partial for a cancelled or cut call).
    pub usage: TokenUsage,
    /// Whether `usage` is our estimate (e.g. a cancelled stream the provider never
    /// reported usage for) rather than the provider's count.
    pub usage_estimated: bool,
    /// The call's cost from the pricing table; zero for a cache hit or an unpriced model.
    pub cost: Usd,
    /// Time the call took, in milliseconds.
    pub latency_ms: u64,
    /// How it ended.
    pub outcome: UsageOutcome,
    /// Whether the answer came from the response cache.
    pub cached: bool,
    /// Whether this call was on a provider after the first of the chain.
    pub fallback_used: bool,
    /// Whether the call was streamed.
    pub streamed: bool,
}

impl UsageRecord {
    /// The id sinks deduplicate on: the call id, fixed when the record is made, so every
    /// write of the same record carries the same key.
    pub fn idempotency_key(&self) -> &str {
        &self.call_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_and_serde_shape() {
        assert_eq!(UsageOutcome::Success.as_str(), "success");
        assert_eq!(UsageOutcome::CacheHit.as_str(), "cache_hit");
        assert_eq!(UsageOutcome::Cancelled.as_str(), "cancelled");
        let failed = UsageOutcome::Failed {
            kind: ErrorKind::Throttled,
        };
        assert_eq!(failed.as_str(), "failed");
        assert_eq!(failed.to_string(), "failed(throttled)");
        assert_eq!(failed.error_kind(), Some(ErrorKind::Throttled));
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"status":"failed","kind":"throttled"}"#
        );
        assert_eq!(
            serde_json::to_string(&UsageOutcome::CacheHit).unwrap(),
            r#"{"status":"cache_hit"}"#
        );
    }
}
