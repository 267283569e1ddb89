//! [`TenantLimits`]: per-tenant budgets and rate limits shared by every replica.
//!
//! Registered as both a request layer and a provider layer of the engine:
//!
//! 1. `before_request` reserves the request's estimate — input tokens estimated from its
//!    text (4 bytes a token, 1,600 a picture), output at `max_tokens`
//!    ([`LimitsConfig::default_max_output_tokens`] when unset), priced at the dearest
//!    provider the logical model routes to — against the tenant's day and month budgets
//!    and counts one request and the estimated tokens against its per-minute limits. The
//!    reservation is a lease ([`LimitsConfig::reservation_lease`]): a replica that dies
//!    before settling gives it back when the lease runs out.
//! 2. `after_call` adds what each provider call really cost (failed and cancelled calls
//!    included, as the ledger records them).
//! 3. `after_request` settles, in the background, once per request id: the reservation is
//!    released and the real cost added to the day's and the month's spend.
//!
//! With a usage ledger ([`TenantLimits::with_ledger`], the DynamoDB sink in production),
//! the first reservation of a tenant on a day whose spend Redis does not know (a new day,
//! or a Redis that lost its data) first seeds the day's and the month's counters from the
//! ledger (each becomes the larger of the two), once for every replica; a ledger that does
//! not answer is asked again at most every [`SEED_RETRY`].
//!
//! A limit reached is a [`Rejection`] of kind [`RejectionKind::BudgetExceeded`] or
//! [`RejectionKind::RateLimited`] that names the limit and when it resets. When Redis does
//! not answer, the budget check fails closed and the rate limits fail open by default
//! ([`FailMode`]).

mod estimate;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use failover_core::layers::{
    Admission, CallInfo, CallOutcome, ProviderLayer, Rejection, RejectionKind, RequestInfo,
    RequestLayer, RequestOutcome, Ticket,
};
use failover_provider::{CompletionRequest, Usd};
use failover_usage::{UsageQuery, UsageSink};
use redis::Script;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::SharedError;
use crate::store::SharedStore;
pub use estimate::UsageEstimator;

static SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| crate::store::script(include_str!("limits.lua")));

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
    fn has_budget(&self) -> bool {
        self.usd_per_day.is_some() || self.usd_per_month.is_some()
    }

    fn is_empty(&self) -> bool {
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

    /// Checks every amount.
    pub fn validate(&self) -> Result<(), SharedError> {
        let all = std::iter::once(("default", &self.default))
            .chain(self.tenants.iter().map(|(t, l)| (t.as_str(), l)));
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
    fn parse(name: &str) -> Option<Self> {
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

/// A limit reached: which, its value, what was used, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitExceeded {
    /// The tenant.
    pub tenant: String,
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
        write!(
            f,
            "tenant {} reached its {} limit ({unit}{} used or reserved of {unit}{}); it resets in {} s",
            self.tenant,
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

const NANOS_PER_USD: i64 = 1_000_000_000;

/// How long a replica waits before asking a ledger that failed to seed a tenant again.
pub const SEED_RETRY: Duration = Duration::from_secs(10);

fn nanos_of(usd: Decimal) -> i64 {
    i64::try_from(Usd::new(usd).nanos()).unwrap_or(i64::MAX)
}

fn usd_of(nanos: i64) -> Decimal {
    Decimal::from(nanos) / Decimal::from(NANOS_PER_USD)
}

/// Budgets and rate limits per tenant, shared through Redis (see the [module docs](self)).
pub struct TenantLimits {
    store: SharedStore,
    config: LimitsConfig,
    estimator: UsageEstimator,
    /// What each request's provider calls cost so far, by request id, until it settles.
    spent: Mutex<HashMap<String, Spent>>,
    runtime: tokio::runtime::Handle,
    /// Where the day's and month's spend is read back after Redis lost it.
    ledger: Option<Arc<dyn UsageSink>>,
    /// Tenants whose seeding failed, and when.
    seed_failures: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    nanos: i64,
    tokens: u64,
}

/// The reserve script's answer.
enum Reserved {
    Done(Result<(), LimitExceeded>),
    /// The day's spend was never seeded: read the ledger from these times.
    Unseeded {
        day_start: u64,
        month_start: u64,
    },
}

/// What `before_request` hands to `after_request`.
struct Reservation {
    tenant: String,
    /// The reservation's own id: the request id and a random suffix, so that a caller
    /// reusing a request id cannot make two requests share one reservation or settle.
    call_id: String,
}

impl fmt::Debug for TenantLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLimits")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TenantLimits {
    /// The layer over `store`; needs a Tokio runtime (settling runs in the background).
    pub fn new(
        store: SharedStore,
        config: LimitsConfig,
        estimator: UsageEstimator,
    ) -> Result<Arc<Self>, SharedError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SharedError::Config("TenantLimits needs a Tokio runtime".into()))?;
        Ok(Arc::new(Self {
            store,
            config,
            estimator,
            spent: Mutex::new(HashMap::new()),
            runtime,
            ledger: None,
            seed_failures: Mutex::new(HashMap::new()),
        }))
    }

    /// The layer over `store`, seeding spend from `ledger` (see the [module docs](self)).
    pub fn with_ledger(
        store: SharedStore,
        config: LimitsConfig,
        estimator: UsageEstimator,
        ledger: Arc<dyn UsageSink>,
    ) -> Result<Arc<Self>, SharedError> {
        let mut limits = Self::new(store, config, estimator)?;
        Arc::get_mut(&mut limits)
            .expect("just built, not shared yet")
            .ledger = Some(ledger);
        Ok(limits)
    }

    /// Whether this replica should ask the ledger for `tenant` now.
    fn may_seed(&self, tenant: &str) -> bool {
        self.ledger.is_some()
            && self
                .seed_failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(tenant)
                .is_none_or(|failed| failed.elapsed() >= SEED_RETRY)
    }

    /// Reads the tenant's spend since `day_start` and since `month_start` from the ledger
    /// and seeds the counters with it.
    async fn seed(&self, tenant: &str, day_start: u64, month_start: u64) -> Result<(), String> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let spent = |from: u64| {
            let mut query = UsageQuery::tenant(tenant);
            query.from_unix_ms = Some(from);
            query.to_unix_ms = Some(now.max(from) + 1);
            async move { ledger.stats(&query).await.map(|stats| stats.cost) }
        };
        let day = spent(day_start).await.map_err(|e| e.to_string())?;
        let month = spent(month_start).await.map_err(|e| e.to_string())?;
        let mut invocation = SCRIPT.prepare_invoke();
        for key in self.keys(tenant) {
            invocation.key(key);
        }
        invocation
            .arg("seed")
            .arg("")
            .arg(i64::try_from(day.nanos()).unwrap_or(i64::MAX))
            .arg(i64::try_from(month.nanos()).unwrap_or(i64::MAX));
        self.store
            .run_idempotent::<Vec<i64>>(&invocation)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn keys(&self, tenant: &str) -> [String; 4] {
        let scope = format!("tenant:{tenant}");
        [
            self.store.key(&scope, "spend"),
            self.store.key(&scope, "reservations"),
            self.store.key(&scope, "reserved"),
            self.store.key(&scope, "rates"),
        ]
    }

    /// Reserves `estimate` for `call_id` against `tenant`'s limits.
    pub async fn reserve(
        &self,
        tenant: &str,
        call_id: &str,
        estimate: Usd,
        estimated_tokens: u64,
    ) -> Result<Result<(), LimitExceeded>, SharedError> {
        let mut seed = self.may_seed(tenant);
        loop {
            let reply = self
                .reserve_once(tenant, call_id, estimate, estimated_tokens, seed)
                .await?;
            match reply {
                Reserved::Done(done) => return Ok(done),
                Reserved::Unseeded {
                    day_start,
                    month_start,
                } => {
                    seed = false;
                    if let Err(error) = self.seed(tenant, day_start, month_start).await {
                        tracing::warn!(tenant = %tenant, error = %error,
                            "tenant limits: cannot seed the spend from the usage ledger");
                        self.seed_failures
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(tenant.to_owned(), Instant::now());
                    }
                }
            }
        }
    }

    async fn reserve_once(
        &self,
        tenant: &str,
        call_id: &str,
        estimate: Usd,
        estimated_tokens: u64,
        seed: bool,
    ) -> Result<Reserved, SharedError> {
        let limits = self.config.for_tenant(tenant);
        let limit = |usd: Option<Decimal>| usd.map_or(-1, nanos_of).to_string();
        let count = |n: Option<u64>| n.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut invocation = SCRIPT.prepare_invoke();
        for key in self.keys(tenant) {
            invocation.key(key);
        }
        invocation
            .arg("reserve")
            .arg("")
            .arg(call_id)
            .arg(i64::try_from(estimate.nanos()).unwrap_or(i64::MAX))
            .arg(estimated_tokens)
            .arg(self.config.reservation_lease_secs.saturating_mul(1000))
            .arg(limit(limits.usd_per_day))
            .arg(limit(limits.usd_per_month))
            .arg(count(limits.requests_per_minute))
            .arg(count(limits.tokens_per_minute))
            .arg(if seed { "1" } else { "0" });
        let reply: Vec<redis::Value> = self.store.run_idempotent(&invocation).await?;
        let int = |index: usize| -> Result<i64, SharedError> {
            reply
                .get(index)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                .ok_or_else(|| SharedError::Protocol(format!("limits reply {reply:?}")))
        };
        match int(0)? {
            1 => return Ok(Reserved::Done(Ok(()))),
            2 => {
                return Ok(Reserved::Unseeded {
                    day_start: int(1)?.max(0) as u64,
                    month_start: int(2)?.max(0) as u64,
                });
            }
            _ => {}
        }
        let name = reply
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default();
        let kind = LimitKind::parse(&name)
            .ok_or_else(|| SharedError::Protocol(format!("unknown limit {name:?}")))?;
        let amount = |n: i64| {
            if kind.is_budget() {
                usd_of(n)
            } else {
                Decimal::from(n)
            }
        };
        Ok(Reserved::Done(Err(LimitExceeded {
            tenant: tenant.to_owned(),
            kind,
            limit: amount(int(3)?),
            used: amount(int(4)?),
            resets_in: Duration::from_millis(int(2)?.max(0) as u64),
        })))
    }

    /// Settles `call_id`: releases its reservation and adds `cost` to the spend. Once per
    /// call id: `Ok(false)` when it was settled already (a repeat is recognised for ten
    /// minutes after the first settle, far longer than a retry takes).
    pub async fn settle(
        &self,
        tenant: &str,
        call_id: &str,
        cost: Usd,
        tokens: u64,
    ) -> Result<bool, SharedError> {
        let invocation = self.settle_invocation(
            tenant,
            call_id,
            i64::try_from(cost.nanos()).unwrap_or(i64::MAX),
            tokens,
        );
        let reply: Vec<i64> = self.store.run_idempotent(&invocation).await?;
        Ok(reply.first() == Some(&1))
    }

    fn settle_invocation(
        &self,
        tenant: &str,
        call_id: &str,
        nanos: i64,
        tokens: u64,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = SCRIPT.prepare_invoke();
        for key in self.keys(tenant) {
            invocation.key(key);
        }
        invocation.key(
            self.store
                .key(&format!("tenant:{tenant}"), &format!("settled:{call_id}")),
        );
        invocation
            .arg("settle")
            .arg("")
            .arg(call_id)
            .arg(nanos)
            .arg(tokens);
        invocation
    }

    /// The tenant's spend today and this month, and what is reserved of each, in USD.
    pub async fn spend(&self, tenant: &str) -> Result<[Decimal; 4], SharedError> {
        let mut invocation = SCRIPT.prepare_invoke();
        for key in self.keys(tenant) {
            invocation.key(key);
        }
        invocation.arg("read").arg("");
        let reply: Vec<i64> = self.store.run_idempotent(&invocation).await?;
        let at = |i: usize| usd_of(reply.get(i).copied().unwrap_or(0));
        Ok([at(0), at(1), at(2), at(3)])
    }

    async fn admit(
        &self,
        tenant: String,
        request_id: String,
        limits: Limits,
        estimate: (Usd, u64),
    ) -> Result<Ticket, Rejection> {
        let call_id = format!("{request_id}#{:016x}", fastrand::u64(..));
        match self
            .reserve(&tenant, &call_id, estimate.0, estimate.1)
            .await
        {
            Ok(Ok(())) => {
                self.spent
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(request_id, Spent::default());
                Ok(Ticket::new(Reservation { tenant, call_id }))
            }
            Ok(Err(exceeded)) => Err(exceeded.rejection()),
            Err(error) => {
                let mode = if limits.has_budget() {
                    self.config.budget_fail
                } else {
                    self.config.rate_fail
                };
                tracing::warn!(tenant = %tenant, error = %error, ?mode, "tenant limits: Redis cannot be asked");
                match mode {
                    FailMode::Open => Ok(Ticket::none()),
                    FailMode::Closed => Err(Rejection::new(format!(
                        "the limits of tenant {tenant} cannot be checked ({error}); \
                         refused while the limit store is unavailable"
                    ))
                    .with_kind(RejectionKind::LimitUnavailable)
                    .with_retry_after(Duration::from_secs(1))),
                }
            }
        }
    }
}

impl RequestLayer for TenantLimits {
    fn name(&self) -> &str {
        "tenant-limits"
    }

    fn before_request<'a>(
        &'a self,
        info: RequestInfo<'a>,
        request: &'a CompletionRequest,
    ) -> Admission<'a> {
        let limits = self.config.for_tenant(info.tenant_id());
        if limits.is_empty() {
            return Admission::admit();
        }
        let estimate =
            self.estimator
                .estimate(info.model(), request, self.config.default_max_output_tokens);
        Admission::deferred(self.admit(
            info.tenant_id().to_owned(),
            info.request_id().as_str().to_owned(),
            limits,
            estimate,
        ))
    }

    fn after_request(&self, info: RequestInfo<'_>, ticket: Ticket, _outcome: &RequestOutcome<'_>) {
        let Some(Reservation { tenant, call_id }) = ticket.take::<Reservation>() else {
            return;
        };
        let request_id = info.request_id().as_str().to_owned();
        let spent = self
            .spent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request_id)
            .unwrap_or_default();
        let store = self.store.clone();
        let invocation = self.settle_invocation(&tenant, &call_id, spent.nanos, spent.tokens);
        self.runtime.spawn(async move {
            if let Err(error) = store.run_idempotent::<Vec<i64>>(&invocation).await {
                // The reservation comes back when its lease runs out; the request's cost
                // is then missing from the counter (it is in the usage ledger, which
                // seeds the counters only when Redis lost them).
                tracing::warn!(tenant = %tenant, request_id = %request_id, error = %error,
                    "tenant limits: could not settle a request");
            }
        });
    }
}

impl ProviderLayer for TenantLimits {
    fn name(&self) -> &str {
        "tenant-limits"
    }

    fn after_call(&self, call: CallInfo<'_>, _ticket: Ticket, outcome: &CallOutcome<'_>) {
        let spent = match outcome {
            CallOutcome::Succeeded(spent)
            | CallOutcome::Failed { spent, .. }
            | CallOutcome::Cancelled(spent) => spent,
            _ => return,
        };
        let mut map = self.spent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(total) = map.get_mut(call.request().request_id().as_str()) {
            total.nanos = total
                .nanos
                .saturating_add(i64::try_from(spent.cost.nanos()).unwrap_or(i64::MAX));
            total.tokens = total.tokens.saturating_add(spent.usage.total_tokens());
        }
    }
}
