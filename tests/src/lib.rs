//! The seed's test plan over the whole assembled system, offline and live: the suite's
//! [`Harness`], the views of what the stores hold ([`stores`]), the suite's runner
//! ([`runner`]: modes, tiers, skips, the live run's cost bound) and the assertions every
//! seed class makes on the stores (re-exported at the root). The tests themselves are in
//! `tests/suite/`, one module per seed class.

mod checks;
mod harness;
pub mod metrics;
pub mod runner;
pub mod stores;

pub use checks::*;
pub use failover_standin::seed::{
    AGENT, BEDROCK, BEDROCK_MODEL, MODEL, OPENAI, seed_breaker_config,
};
pub use harness::{Harness, HarnessError, HarnessOptions, Mode, Stores, in_tier};
