//! [`TenantLimits`]: per-tenant (and per-agent) budgets and rate limits shared by every
//! replica.
//!
//! Registered as both a request layer and a provider layer of the engine:
//!
//! 1. `before_request` reserves the request's estimate — input tokens estimated from its
//!    text (4 bytes a token, 1,600 a picture), output at `max_tokens`
//!    ([`LimitsConfig::default_max_output_tokens`] when unset), priced at the dearest
//!    provider the logical model routes to — against the tenant's day and month budgets
//!    and counts one request and the estimated tokens against its per-minute limits — and
//!    against its agent's, when [`LimitsConfig::agents`] names it (a request must fit
//!    both; one script checks both before changing either). The reservation is a lease ([`LimitsConfig::reservation_lease_secs`]): a replica that dies
//!    before settling gives it back when the lease runs out.
//! 2. `after_call` adds what each provider call really cost (failed and cancelled calls
//!    included, as the ledger records them).
//! 3. `after_request` settles, in the background, once per reservation: the reservation is
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

mod config;
mod estimate;
mod scopes;

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
use rust_decimal::Decimal;

use crate::SharedError;
use crate::store::SharedStore;
pub use config::{FailMode, LimitExceeded, LimitKind, Limits, LimitsConfig};
pub use estimate::UsageEstimator;
use scopes::{Reserved, Scope};

/// How long a replica waits before asking a ledger that failed to seed a tenant again.
pub const SEED_RETRY: Duration = Duration::from_secs(10);

/// Budgets and rate limits per tenant (and agent), shared through Redis (see the
/// [module docs](self)).
pub struct TenantLimits {
    store: SharedStore,
    config: LimitsConfig,
    estimator: UsageEstimator,
    /// What each request's provider calls cost so far, by request id, until it settles.
    spent: Mutex<HashMap<String, Spent>>,
    runtime: tokio::runtime::Handle,
    /// Where the day's and month's spend is read back after Redis lost it.
    ledger: Option<Arc<dyn UsageSink>>,
    /// Scopes (`tenant` or `tenant/agent`) whose seeding failed, and when.
    seed_failures: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    nanos: i64,
    tokens: u64,
}

/// What `before_request` hands to `after_request`.
struct Reservation {
    scopes: Vec<Scope>,
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
        Self::build(store, config, estimator, None)
    }

    /// The layer over `store`, seeding spend from `ledger` (see the [module docs](self)).
    pub fn with_ledger(
        store: SharedStore,
        config: LimitsConfig,
        estimator: UsageEstimator,
        ledger: Arc<dyn UsageSink>,
    ) -> Result<Arc<Self>, SharedError> {
        Self::build(store, config, estimator, Some(ledger))
    }

    fn build(
        store: SharedStore,
        config: LimitsConfig,
        estimator: UsageEstimator,
        ledger: Option<Arc<dyn UsageSink>>,
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
            ledger,
            seed_failures: Mutex::new(HashMap::new()),
        }))
    }

    /// The scopes with limits a request of `agent` of `tenant` counts in: the tenant's, then
    /// the agent's.
    fn scopes(&self, tenant: &str, agent: &str) -> Vec<Scope> {
        let mut scopes = Vec::new();
        let limits = self.config.for_tenant(tenant);
        if !limits.is_empty() {
            scopes.push(Scope {
                tenant: tenant.to_owned(),
                agent: None,
                limits,
            });
        }
        if let Some(limits) = self.config.for_agent(tenant, agent)
            && !limits.is_empty()
        {
            scopes.push(Scope {
                tenant: tenant.to_owned(),
                agent: Some(agent.to_owned()),
                limits: limits.clone(),
            });
        }
        scopes
    }

    fn seed_name(scope: &Scope) -> String {
        match &scope.agent {
            Some(agent) => format!("{}/{agent}", scope.tenant),
            None => scope.tenant.clone(),
        }
    }

    /// Whether this replica should ask the ledger for `scopes` now.
    fn may_seed(&self, scopes: &[Scope]) -> bool {
        if self.ledger.is_none() {
            return false;
        }
        let failures = self
            .seed_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        scopes.iter().all(|scope| {
            failures
                .get(&Self::seed_name(scope))
                .is_none_or(|failed| failed.elapsed() >= SEED_RETRY)
        })
    }

    /// Reads the scope's spend since `day_start` and since `month_start` from the ledger
    /// and seeds its counters with it.
    async fn seed(&self, scope: &Scope, day_start: u64, month_start: u64) -> Result<(), String> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let spent = |from: u64| {
            let mut query = UsageQuery::tenant(scope.tenant.as_str());
            query.agent_id = scope.agent.clone();
            query.from_unix_ms = Some(from);
            query.to_unix_ms = Some(now.max(from) + 1);
            async move { ledger.stats(&query).await.map(|stats| stats.cost) }
        };
        let day = spent(day_start).await.map_err(|e| e.to_string())?;
        let month = spent(month_start).await.map_err(|e| e.to_string())?;
        scopes::seed(&self.store, scope, day, month)
            .await
            .map_err(|e| e.to_string())
    }

    /// Reserves `estimate` (cost and tokens) for `call_id` against the limits of `tenant`
    /// and of its `agent`: `Ok(Err(_))` names the limit that refuses.
    pub async fn reserve(
        &self,
        tenant: &str,
        agent: &str,
        call_id: &str,
        estimate: Usd,
        estimated_tokens: u64,
    ) -> Result<Result<(), LimitExceeded>, SharedError> {
        let scopes = self.scopes(tenant, agent);
        if scopes.is_empty() {
            return Ok(Ok(()));
        }
        self.reserve_in(&scopes, call_id, (estimate, estimated_tokens))
            .await
    }

    async fn reserve_in(
        &self,
        scopes: &[Scope],
        call_id: &str,
        estimate: (Usd, u64),
    ) -> Result<Result<(), LimitExceeded>, SharedError> {
        let lease = Duration::from_secs(self.config.reservation_lease_secs);
        let mut seed = self.may_seed(scopes);
        // One seed per scope at most: the loop ends.
        for _ in 0..=scopes.len() {
            match scopes::reserve(&self.store, scopes, call_id, estimate, lease, seed).await? {
                Reserved::Done(done) => return Ok(done),
                Reserved::Unseeded {
                    scope,
                    day_start,
                    month_start,
                } => {
                    let Some(scope) = scopes.get(scope) else {
                        break;
                    };
                    if let Err(error) = self.seed(scope, day_start, month_start).await {
                        tracing::warn!(scope = %Self::seed_name(scope), error = %error,
                            "tenant limits: cannot seed the spend from the usage ledger");
                        self.seed_failures
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(Self::seed_name(scope), Instant::now());
                        seed = false;
                    }
                }
            }
        }
        // Seeding did not take: reserve without it.
        match scopes::reserve(&self.store, scopes, call_id, estimate, lease, false).await? {
            Reserved::Done(done) => Ok(done),
            Reserved::Unseeded { .. } => Err(SharedError::Protocol(
                "the limits script asked to seed when told not to".to_owned(),
            )),
        }
    }

    /// Settles `call_id` for `tenant` and its `agent`: releases its reservation and adds
    /// `cost` to the spend. Once per call id: `Ok(false)` when it was settled already (a
    /// repeat is recognised for ten minutes after the first settle, far longer than a retry
    /// takes).
    pub async fn settle(
        &self,
        tenant: &str,
        agent: &str,
        call_id: &str,
        cost: Usd,
        tokens: u64,
    ) -> Result<bool, SharedError> {
        let scopes = self.scopes(tenant, agent);
        if scopes.is_empty() {
            return Ok(false);
        }
        let invocation = scopes::settle(
            &self.store,
            &scopes,
            call_id,
            scopes::nanos_of_usd(cost),
            tokens,
        );
        let reply: Vec<i64> = self.store.run_idempotent(&invocation).await?;
        Ok(reply.first() == Some(&1))
    }

    /// The spend today and this month of `tenant` (or of its `agent`), and what is
    /// reserved of each, in USD.
    pub async fn spend(
        &self,
        tenant: &str,
        agent: Option<&str>,
    ) -> Result<[Decimal; 4], SharedError> {
        let scope = Scope {
            tenant: tenant.to_owned(),
            agent: agent.map(str::to_owned),
            limits: Limits::default(),
        };
        scopes::read(&self.store, &scope).await
    }

    async fn admit(
        &self,
        scopes: Vec<Scope>,
        request_id: String,
        estimate: (Usd, u64),
    ) -> Result<Ticket, Rejection> {
        let call_id = format!("{request_id}#{:016x}", fastrand::u64(..));
        match self.reserve_in(&scopes, &call_id, estimate).await {
            Ok(Ok(())) => {
                self.spent
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(request_id, Spent::default());
                Ok(Ticket::new(Reservation { scopes, call_id }))
            }
            Ok(Err(exceeded)) => Err(exceeded.rejection()),
            Err(error) => {
                let budget = scopes.iter().any(|scope| scope.limits.has_budget());
                let mode = if budget {
                    self.config.budget_fail
                } else {
                    self.config.rate_fail
                };
                let who = Self::seed_name(&scopes[0]);
                tracing::warn!(scope = %who, error = %error, ?mode,
                    "tenant limits: Redis cannot be asked");
                match mode {
                    FailMode::Open => Ok(Ticket::none()),
                    FailMode::Closed => Err(Rejection::new(format!(
                        "the limits of {who} cannot be checked ({error}); refused while the \
                         limit store is unavailable"
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
        let scopes = self.scopes(info.tenant_id(), info.agent_id());
        if scopes.is_empty() {
            return Admission::admit();
        }
        let estimate =
            self.estimator
                .estimate(info.model(), request, self.config.default_max_output_tokens);
        Admission::deferred(self.admit(scopes, info.request_id().as_str().to_owned(), estimate))
    }

    fn after_request(&self, info: RequestInfo<'_>, ticket: Ticket, _outcome: &RequestOutcome<'_>) {
        let Some(Reservation { scopes, call_id }) = ticket.take::<Reservation>() else {
            return;
        };
        let spent = self
            .spent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(info.request_id().as_str())
            .unwrap_or_default();
        let store = self.store.clone();
        let invocation = scopes::settle(&self.store, &scopes, &call_id, spent.nanos, spent.tokens);
        let who = Self::seed_name(&scopes[0]);
        self.runtime.spawn(async move {
            if let Err(error) = store.run_idempotent::<Vec<i64>>(&invocation).await {
                // The reservation comes back when its lease runs out; the request's cost
                // is then missing from the counter (it is in the usage ledger, which
                // seeds the counters only when Redis lost them).
                tracing::warn!(scope = %who, call_id = %call_id, error = %error,
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
            total.nanos = total.nanos.saturating_add(scopes::nanos_of_usd(spent.cost));
            total.tokens = total.tokens.saturating_add(spent.usage.total_tokens());
        }
    }
}
