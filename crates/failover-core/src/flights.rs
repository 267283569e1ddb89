//! Coalescing across processes: the seam through which identical requests on different
//! replicas share one provider call.
//!
//! Within one process, identical concurrent requests of one tenant (the same cache key)
//! already share a flight: one leader calls the providers, the others wait for its answer.
//! With [`SharedFlights`] registered
//! ([`AdapterBuilder::shared_flights`](crate::AdapterBuilder::shared_flights)), the local
//! leader, once the cache missed, also *claims* the flight across replicas (a lock with an
//! expiry in a shared store). If another replica holds it, the request waits — at most
//! [`SharedFlights::wait_bound`], and never past its deadline — for that replica's answer
//! to appear in the (shared) cache, looking every [`SharedFlights::poll_interval`]; if the
//! answer does not come, or the holder lets go without one (it failed), it calls the
//! providers itself. Streams never wait (their time to
//! first token would become the other request's whole generation).
//!
//! The answer travels through the cache, so shared flights only help with a cache every
//! replica reads (ElastiCache).

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use failover_cache::CacheKey;

/// A claim's identity, handed back to [`SharedFlights::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimId(pub u64);

/// What [`SharedFlights::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightClaim {
    /// This request leads the flight on every replica: release the claim when done.
    Lead(ClaimId),
    /// Another replica leads it: wait for its answer in the cache.
    Busy,
    /// The store cannot be asked: go on alone.
    Unavailable,
}

/// The future of a claim.
pub type ClaimFuture<'a> = Pin<Box<dyn Future<Output = FlightClaim> + Send + 'a>>;

/// The future of [`SharedFlights::held`].
pub type HeldFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Flights shared across replicas (see the [module docs](self)).
///
/// # Contract
/// - `claim` is bounded by the implementation's own time-out (the engine also bounds it
///   by the request's deadline); at most one claim of a key is held at a time, and a claim
///   expires by itself, so a replica that dies holding one delays the others by at most
///   the expiry.
/// - `release` must not block (hand the store call to a background task) and releases
///   only the claim it names.
pub trait SharedFlights: Send + Sync + fmt::Debug {
    /// Claims the flight of `key` for this request.
    fn claim<'a>(&'a self, key: &'a CacheKey) -> ClaimFuture<'a>;
    /// Releases a claim this process holds.
    fn release(&self, key: &CacheKey, claim: ClaimId);
    /// Whether some replica still holds the flight of `key`: a waiting request stops
    /// waiting when the holder let go without an answer (it failed). `true` when the store
    /// cannot tell (the wait bound then ends the wait).
    fn held<'a>(&'a self, key: &'a CacheKey) -> HeldFuture<'a>;
    /// How long a request waits for another replica's answer.
    fn wait_bound(&self) -> Duration;
    /// How often a waiting request looks in the cache.
    fn poll_interval(&self) -> Duration;
}
