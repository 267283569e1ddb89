//! What the limits are: per tenant (a default and overrides), optionally per agent of a
//! tenant; what a check does when Redis is away; what a refusal says.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use failover_core::layers::{Rejection, RejectionKind};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::SharedError;

/// One tenant's limits; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Spend per UTC day, in USD (`"25.00"`).
    pub usd_per_day: Option<Decimal>,
    /// Spend per UTC calendar month, in USD.
    pub usd_per_month: Option<Decimal>,
    /// Requests per minute (a sliding minute).
    pub requests_per_minute: Option<u64>,
    /// Tokens (estimated in, `max_tokens` out) per minute (a sliding minute).
    pub tokens_per_minute: Option<u64>,
}

impl Limits {
    pub(crate) fn has_budget(&self) -> bool {
        self.usd_per_day.is_some() || self.usd_per_month.is_some()
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.has_budget() && self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }

    /// `self`, with every limit `overrides` sets taken from it.
    fn overridden_by(&self, overrides: &Limits) -> Limits {
        Limits {
            usd_per_day: overrides.usd_per_day.or(self.usd_per_day),
            usd_per_month: overrides.usd_per_month.or(self.usd_per_month),
            requests_per_minute: overrides.requests_per_minute.or(self.requests_per_minute),
            tokens_per_minute: overrides.tokens_per_minute.or(self.tokens_per_minute),
        }
    }
}

/// What a check does when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Admit the request (the limit is not enforced while Redis is away).
    Open,
    /// Refuse the request ([`RejectionKind::LimitUnavailable`]).
    Closed,
}

/// Settings of [`TenantLimits`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// The limits of every tenant without an override.
    #[serde(default)]
    pub default: Limits,
    /// Per-tenant overrides, each limit replacing the default's.
    #[serde(default)]
    pub tenants: HashMap<String, Limits>,
    /// Limits of one agent of one tenant, keyed `"tenant/agent"`, that apply on top of the
    /// tenant's: a request must fit both. No default: only the agents named here.
    #[serde(default)]
    pub agents: HashMap<String, Limits>,
    /// When Redis cannot be asked, for a tenant with a budget. Default: closed.
    #[serde(default = "closed")]
    pub budget_fail: FailMode,
    /// When Redis cannot be asked, for a tenant with rate limits only. Default: open.
    #[serde(default = "open")]
    pub rate_fail: FailMode,
    /// How long a reservation holds before it comes back unsettled, in seconds. Default
    /// 300 (longer than any request may take).
    #[serde(default = "default_lease_secs")]
    pub reservation_lease_secs: u64,
    /// The output tokens estimated for a request without `max_tokens`. Default 4,096.
    #[serde(default = "default_max_output")]
    pub default_max_output_tokens: u32,
}

fn closed() -> FailMode {
    FailMode::Closed
}
fn open() -> FailMode {
    FailMode::Open
}
fn default_lease_secs() -> u64 {
    300
}
fn default_max_output() -> u32 {
    4_096
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            default: Limits::default(),
            tenants: HashMap::new(),
            agents: HashMap::new(),
            budget_fail: closed(),
            rate_fail: open(),
            reservation_lease_secs: default_lease_secs(),
            default_max_output_tokens: default_max_output(),
        }
    }
}

impl LimitsConfig {
    /// The limits that apply to `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> Limits {
        match self.tenants.get(tenant) {
            Some(overrides) => self.default.overridden_by(overrides),
            None => self.default.clone(),
        }
    }

    /// The limits of `agent` of `tenant`, when it has its own.
    pub fn for_agent(&self, tenant: &str, agent: &str) -> Option<&Limits> {
        if self.agents.is_empty() {
            return None;
        }
        self.agents.get(&format!("{tenant}/{agent}"))
    }

    /// Checks every amount and every agent's key.
    pub fn validate(&self) -> Result<(), SharedError> {
        for key in self.agents.keys() {
            match key.split_once('/') {
                Some((tenant, agent)) if !tenant.is_empty() && !agent.is_empty() => {}
                _ => {
                    return Err(SharedError::Config(format!(
                        "agents.{key:?}: an agent's limits are keyed \"tenant/agent\""
                    )));
                }
            }
        }
        let all = std::iter::once(("default", &self.default))
            .chain(self.tenants.iter().map(|(t, l)| (t.as_str(), l)))
            .chain(self.agents.iter().map(|(a, l)| (a.as_str(), l)));
        for (who, limits) in all {
            for usd in [limits.usd_per_day, limits.usd_per_month]
                .into_iter()
                .flatten()
            {
                if usd.is_sign_negative() {
                    return Err(SharedError::Config(format!(
                        "limits of {who}: a budget cannot be negative ({usd})"
                    )));
                }
            }
        }
        if self.reservation_lease_secs == 0 {
            return Err(SharedError::Config(
                "reservation_lease_secs must be above zero".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Which limit stopped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// The USD budget of the UTC day.
    UsdPerDay,
    /// The USD budget of the UTC month.
    UsdPerMonth,
    /// Requests per minute.
    RequestsPerMinute,
    /// Tokens per minute.
    TokensPerMinute,
}

impl LimitKind {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "usd_per_day" => Self::UsdPerDay,
            "usd_per_month" => Self::UsdPerMonth,
            "requests_per_minute" => Self::RequestsPerMinute,
            "tokens_per_minute" => Self::TokensPerMinute,
            _ => return None,
        })
    }

    /// The setting's name (`usd_per_day`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsdPerDay => "usd_per_day",
            Self::UsdPerMonth => "usd_per_month",
            Self::RequestsPerMinute => "requests_per_minute",
            Self::TokensPerMinute => "tokens_per_minute",
        }
    }

    /// Whether it is a spend budget (rather than a rate).
    pub fn is_budget(self) -> bool {
        matches!(self, Self::UsdPerDay | Self::UsdPerMonth)
    }
}

/// A limit reached: whose, which, its value, what was used, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitExceeded {
    /// The tenant.
    pub tenant: String,
    /// The agent, when the limit is the agent's own.
    pub agent: Option<String>,
    /// Which limit.
    pub kind: LimitKind,
    /// The limit (USD for a budget, a count for a rate).
    pub limit: Decimal,
    /// What is used or reserved of it.
    pub used: Decimal,
    /// How long until it resets.
    pub resets_in: Duration,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.kind.is_budget() { "USD " } else { "" };
        match &self.agent {
            Some(agent) => write!(f, "agent {agent} of tenant {}", self.tenant)?,
            None => write!(f, "tenant {}", self.tenant)?,
        }
        write!(
            f,
            " reached its {} limit ({unit}{} used or reserved of {unit}{}); it resets in {} s",
            self.kind.as_str(),
            self.used,
            self.limit,
            self.resets_in.as_secs().max(1)
        )
    }
}

impl LimitExceeded {
    /// The engine's rejection for it.
    pub fn rejection(&self) -> Rejection {
        let kind = if self.kind.is_budget() {
            RejectionKind::BudgetExceeded
        } else {
            RejectionKind::RateLimited
        };
        Rejection::new(self.to_string())
            .with_kind(kind)
            .with_retry_after(self.resets_in)
    }
}
