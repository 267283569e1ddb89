//! Request coalescing: identical concurrent requests of one tenant that miss the cache cause
//! one provider call, and every caller gets its answer.
//!
//! "Identical" means the same cache key, which binds the tenant: requests of two tenants
//! never share a flight. The first request becomes the leader; later ones follow and wait
//! for the leader's answer. A leader that fails, is cancelled or ends in a cut stream
//! publishes nothing: its followers then go to the providers themselves, so one caller's
//! failure (or impatience) is never imposed on another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use failover_cache::{CacheKey, CachedCompletion};
use tokio::sync::watch;

use crate::flights::{ClaimId, SharedFlights};

type Flight = watch::Receiver<Option<Arc<CachedCompletion>>>;

/// The requests in flight, by cache key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    in_flight: Mutex<HashMap<CacheKey, Flight>>,
}

/// What joining a flight made of this request.
pub(crate) enum Role {
    /// No identical request is in flight: this one calls the providers.
    Leader(Leader),
    /// An identical request is in flight: wait for its answer.
    Follower(Flight),
}

impl Flights {
    pub(crate) fn join(self: &Arc<Self>, key: &CacheKey) -> Role {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(flight) = in_flight.get(key) {
            return Role::Follower(flight.clone());
        }
        let (sender, receiver) = watch::channel(None);
        in_flight.insert(*key, receiver);
        Role::Leader(Leader {
            flights: Arc::clone(self),
            key: *key,
            sender,
            shared: None,
        })
    }
}

/// Waits for a leader's answer; `None` when the leader ended without one.
pub(crate) async fn follow(mut flight: Flight) -> Option<Arc<CachedCompletion>> {
    flight
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|answer| answer.clone())
}

/// The request others wait for. Dropping it without [`publish`](Leader::publish) releases
/// the followers to try on their own.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: CacheKey,
    sender: watch::Sender<Option<Arc<CachedCompletion>>>,
    /// The claim on the flight across replicas, released with this leader.
    shared: Option<(Arc<dyn SharedFlights>, ClaimId)>,
}

impl Leader {
    /// Holds `claim` on the flight across replicas until this leader ends.
    pub(crate) fn hold_shared(&mut self, flights: Arc<dyn SharedFlights>, claim: ClaimId) {
        self.shared = Some((flights, claim));
    }

    /// Hands the answer to every follower.
    pub(crate) fn publish(self, answer: CachedCompletion) {
        // Nobody listening is fine: there may be no followers.
        let _ = self.sender.send(Some(Arc::new(answer)));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Published or not, the answer (if any) is in the cache by now: other replicas
        // waiting on the shared claim read it there.
        if let Some((flights, claim)) = self.shared.take() {
            flights.release(&self.key, claim);
        }
        let mut in_flight = self
            .flights
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only remove our own flight (a new one may have started under the same key).
        if in_flight
            .get(&self.key)
            .is_some_and(|flight| flight.same_channel(&self.sender.subscribe()))
        {
            in_flight.remove(&self.key);
        }
    }
}
