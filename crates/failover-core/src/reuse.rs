//! Answers shared between requests: on the way in, the cache and identical requests in
//! flight may answer without a provider call; on the way out, a fresh answer is stored and
//! handed to the requests waiting for it.

use std::sync::Arc;
use std::time::Instant;

use failover_cache::{CacheKey, CachedCompletion};
use failover_provider::{FinishReason, TokenUsage, ToolCall, Usd};
use failover_usage::UsageOutcome;

use crate::accounting::{CallFacts, unix_ms_now};
use crate::cache::{CacheUnavailable, TimeBoxedCache};
use crate::coalesce::{Leader, Role, follow};
use crate::deadline;
use crate::engine::Engine;
use crate::flights::FlightClaim;
use crate::prepare::Prepared;

/// What the cache and the flights made of a request.
pub(crate) enum Lookup {
    /// Answered from the cache, or by an identical request that was in flight.
    Answered(CachedCompletion),
    /// The providers must answer; as the leader of a flight when it holds one (others
    /// then wait for this request's answer).
    Missed { leader: Option<Leader> },
}

/// Joins the flight for the request's key, then — as the flight's leader — looks it up in
/// the cache: an identical request of the same tenant already in flight answers this one.
///
/// The order matters. Reading the cache first lets a request miss it just before a leader
/// stores its answer and then find the flight gone, paying for a second provider call. A
/// leader stores its answer before it leaves the flight, so whoever leads next finds it.
pub(crate) async fn lookup(engine: &Engine, prepared: &mut Prepared) -> Lookup {
    let (Some(cache), Some(key)) = (&engine.cache, &prepared.cache_key) else {
        return Lookup::Missed { leader: None };
    };
    // Waiting for a leader and re-forming the flight when it ends without an answer: the
    // first follower to come back leads the next try and the rest follow it, so a failed
    // leader never releases all of them onto a provider that just failed.
    let leader = loop {
        match engine.flights.join(key) {
            Role::Leader(leader) => break Some(leader),
            // A stream follows nobody: waiting would make its time to first token the
            // leader's whole generation. It reads the cache and calls the providers itself.
            Role::Follower(_) if prepared.context.streamed => break None,
            Role::Follower(flight) => {
                match deadline::within(prepared.deadline, follow(flight)).await {
                    Some(Some(answer)) => {
                        cache.count_coalesced();
                        let answer = Arc::unwrap_or_clone(answer);
                        record_cache_hit(engine, prepared, &answer);
                        return Lookup::Answered(answer);
                    }
                    // The leader ended without an answer: join again.
                    Some(None) => continue,
                    // Our deadline came first: the walk will report it.
                    None => return Lookup::Missed { leader: None },
                }
            }
        }
    };
    match cache.lookup(key).await {
        Ok(Some(hit)) => {
            record_cache_hit(engine, prepared, &hit);
            // The followers that joined while we read get the hit too.
            if let Some(leader) = leader {
                leader.publish(hit.clone());
            }
            Lookup::Answered(hit)
        }
        Ok(None) => match leader {
            Some(leader) if !prepared.context.streamed => {
                across_replicas(engine, cache, key, prepared, leader).await
            }
            leader => Lookup::Missed { leader },
        },
        Err(CacheUnavailable) => {
            prepared.cache_usable = false;
            Lookup::Missed { leader }
        }
    }
}

/// A local leader's miss: with shared flights, claims the flight across replicas, or
/// waits (within the bound and the deadline) for the replica that holds it to store its
/// answer in the cache.
async fn across_replicas(
    engine: &Engine,
    cache: &TimeBoxedCache,
    key: &CacheKey,
    prepared: &Prepared,
    mut leader: Leader,
) -> Lookup {
    let Some(shared) = &engine.shared_flights else {
        return Lookup::Missed {
            leader: Some(leader),
        };
    };
    match deadline::within(prepared.deadline, shared.claim(key)).await {
        Some(FlightClaim::Lead(claim)) => {
            leader.hold_shared(Arc::clone(shared), claim);
            Lookup::Missed {
                leader: Some(leader),
            }
        }
        Some(FlightClaim::Busy) => {
            let bound = Instant::now() + shared.wait_bound();
            let until = prepared
                .deadline
                .map_or(bound, |deadline| deadline.min(bound));
            let interval = shared.poll_interval();
            let answered = deadline::within(Some(until), async {
                loop {
                    tokio::time::sleep(interval).await;
                    match cache.lookup(key).await {
                        Ok(Some(hit)) => return Some(hit),
                        // The holder stores its answer before it lets go: no claim and no
                        // answer is a holder that failed. Look once more (it may have
                        // stored and let go between the two reads), then stop waiting.
                        Ok(None) if !shared.held(key).await => {
                            return cache.lookup(key).await.ok().flatten();
                        }
                        Ok(None) => {}
                        Err(CacheUnavailable) => return None,
                    }
                }
            })
            .await
            .flatten();
            match answered {
                Some(hit) => {
                    cache.count_coalesced();
                    record_cache_hit(engine, prepared, &hit);
                    leader.publish(hit.clone());
                    Lookup::Answered(hit)
                }
                None => Lookup::Missed {
                    leader: Some(leader),
                },
            }
        }
        Some(FlightClaim::Unavailable) | None => Lookup::Missed {
            leader: Some(leader),
        },
    }
}

fn record_cache_hit(engine: &Engine, prepared: &Prepared, hit: &CachedCompletion) {
    if !engine.config.record_cache_hits {
        return;
    }
    let record = prepared.context.usage_record(CallFacts {
        attempt: 0,
        provider: &hit.provider,
        model: &hit.model,
        usage: hit.usage,
        usage_estimated: false,
        cost: Usd::ZERO,
        latency: prepared.started.elapsed(),
        outcome: UsageOutcome::CacheHit,
        fallback_used: false,
    });
    engine.ledger.record(record);
}

/// Whether a fresh answer should be built for [`remember`]: only when there is a cache
/// (and so maybe followers) to give it to.
pub(crate) fn wanted(prepared: &Prepared) -> bool {
    prepared.cache_key.is_some()
}

/// A fresh answer, as the cache and the followers receive it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fresh_answer(
    provider: &str,
    model: &str,
    content: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: FinishReason,
    usage: TokenUsage,
    estimated_cost: Usd,
) -> CachedCompletion {
    CachedCompletion {
        provider: provider.to_owned(),
        model: model.to_owned(),
        content,
        tool_calls,
        finish_reason,
        usage,
        estimated_cost,
        stored_at_unix_ms: unix_ms_now(),
    }
}

/// Stores a fresh answer and hands it to the followers of this request's flight —
/// unless the answer is not one to repeat: a content-filtered (refused or cut) answer,
/// or one that stopped for a reason we do not know, is neither cached nor shared.
pub(crate) async fn remember(
    engine: &Engine,
    prepared: &Prepared,
    answer: CachedCompletion,
    leader: Option<Leader>,
) {
    let repeatable = matches!(
        answer.finish_reason,
        FinishReason::Stop
            | FinishReason::Length
            | FinishReason::StopSequence
            | FinishReason::ToolUse
    );
    if !repeatable {
        return;
    }
    if let (Some(cache), Some(key), true) =
        (&engine.cache, &prepared.cache_key, prepared.cache_usable)
    {
        cache.store(key, answer.clone()).await;
    }
    if let Some(leader) = leader {
        leader.publish(answer);
    }
}
