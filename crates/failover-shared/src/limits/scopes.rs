//! The limits script's calls: reserve, settle, seed and read, over the *scopes* a request
//! counts in — its tenant's, and its agent's when the agent has limits of its own. Every
//! scope's keys carry the tenant's hash tag, so one script covers them all in one slot.

use std::time::Duration;

use failover_provider::Usd;
use redis::{Script, ScriptInvocation, Value};
use rust_decimal::Decimal;

use super::config::{LimitExceeded, LimitKind, Limits};
use crate::SharedError;
use crate::store::SharedStore;

static SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| crate::store::script(include_str!("limits.lua")));

const NANOS_PER_USD: i64 = 1_000_000_000;

pub(super) fn nanos_of_usd(usd: Usd) -> i64 {
    i64::try_from(usd.nanos()).unwrap_or(i64::MAX)
}

fn usd_of(nanos: i64) -> Decimal {
    Decimal::from(nanos) / Decimal::from(NANOS_PER_USD)
}

/// Whose counters: the tenant's, or one of its agents'.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    pub(super) tenant: String,
    pub(super) agent: Option<String>,
    pub(super) limits: Limits,
}

impl Scope {
    fn keys(&self, store: &SharedStore) -> [String; 4] {
        let tag = format!("tenant:{}", self.tenant);
        let name = |what: &str| match &self.agent {
            Some(agent) => store.key(&tag, &format!("agent:{agent}:{what}")),
            None => store.key(&tag, what),
        };
        [
            name("spend"),
            name("reservations"),
            name("reserved"),
            name("rates"),
        ]
    }
}

/// What the reserve script answered.
pub(super) enum Reserved {
    Done(Result<(), LimitExceeded>),
    /// The scope's spend today was never seeded: read the ledger from these times.
    Unseeded {
        scope: usize,
        day_start: u64,
        month_start: u64,
    },
}

fn invocation(store: &SharedStore, scopes: &[Scope], op: &str) -> ScriptInvocation<'static> {
    let mut invocation = SCRIPT.prepare_invoke();
    for scope in scopes {
        for key in scope.keys(store) {
            invocation.key(key);
        }
    }
    invocation.arg(op).arg("");
    invocation
}

fn int(reply: &[Value], index: usize) -> Result<i64, SharedError> {
    reply
        .get(index)
        .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
        .ok_or_else(|| SharedError::Protocol(format!("limits reply {reply:?}")))
}

/// Reserves `estimate` under `call_id` in every scope, or says which limit refuses.
pub(super) async fn reserve(
    store: &SharedStore,
    scopes: &[Scope],
    call_id: &str,
    estimate: (Usd, u64),
    lease: Duration,
    seed: bool,
) -> Result<Reserved, SharedError> {
    let limit = |usd: Option<Decimal>| usd.map_or(-1, |usd| nanos_of_usd(Usd::new(usd)));
    let count = |n: Option<u64>| n.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut invocation = invocation(store, scopes, "reserve");
    invocation
        .arg(call_id)
        .arg(nanos_of_usd(estimate.0))
        .arg(estimate.1)
        .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
        .arg(if seed { "1" } else { "0" });
    for scope in scopes {
        invocation
            .arg(limit(scope.limits.usd_per_day))
            .arg(limit(scope.limits.usd_per_month))
            .arg(count(scope.limits.requests_per_minute))
            .arg(count(scope.limits.tokens_per_minute));
    }
    let reply: Vec<Value> = store.run_idempotent(&invocation).await?;
    match int(&reply, 0)? {
        1 => return Ok(Reserved::Done(Ok(()))),
        2 => {
            return Ok(Reserved::Unseeded {
                scope: usize::try_from(int(&reply, 1)? - 1).unwrap_or(0),
                day_start: int(&reply, 2)?.max(0) as u64,
                month_start: int(&reply, 3)?.max(0) as u64,
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
    let scope = usize::try_from(int(&reply, 5)? - 1)
        .ok()
        .and_then(|index| scopes.get(index))
        .ok_or_else(|| SharedError::Protocol(format!("limits reply {reply:?}")))?;
    let amount = |n: i64| {
        if kind.is_budget() {
            usd_of(n)
        } else {
            Decimal::from(n)
        }
    };
    Ok(Reserved::Done(Err(LimitExceeded {
        tenant: scope.tenant.clone(),
        agent: scope.agent.clone(),
        kind,
        limit: amount(int(&reply, 3)?),
        used: amount(int(&reply, 4)?),
        resets_in: Duration::from_millis(int(&reply, 2)?.max(0) as u64),
    })))
}

/// The settle call of `call_id` in every scope (run now, or moved into a background task).
pub(super) fn settle(
    store: &SharedStore,
    scopes: &[Scope],
    call_id: &str,
    cost_nanos: i64,
    tokens: u64,
) -> ScriptInvocation<'static> {
    let mut invocation = invocation(store, scopes, "settle");
    let tag = format!(
        "tenant:{}",
        scopes.first().map_or("", |s| s.tenant.as_str())
    );
    invocation.key(store.key(&tag, &format!("settled:{call_id}")));
    invocation.arg(call_id).arg(cost_nanos).arg(tokens);
    invocation
}

/// Raises the scope's day and month spend to the ledger's figures (and marks the day
/// seeded).
pub(super) async fn seed(
    store: &SharedStore,
    scope: &Scope,
    day: Usd,
    month: Usd,
) -> Result<(), SharedError> {
    let mut invocation = invocation(store, std::slice::from_ref(scope), "seed");
    invocation.arg(nanos_of_usd(day)).arg(nanos_of_usd(month));
    store
        .run_idempotent::<Vec<i64>>(&invocation)
        .await
        .map(drop)
}

/// The scope's spend today and this month, and what is reserved of each, in USD.
pub(super) async fn read(store: &SharedStore, scope: &Scope) -> Result<[Decimal; 4], SharedError> {
    let invocation = invocation(store, std::slice::from_ref(scope), "read");
    let reply: Vec<i64> = store.run_idempotent(&invocation).await?;
    let at = |i: usize| usd_of(reply.get(i).copied().unwrap_or(0));
    Ok([at(0), at(1), at(2), at(3)])
}
