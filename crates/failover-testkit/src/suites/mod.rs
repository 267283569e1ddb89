//! Behaviour suites generic over each trait: every backend runs the same checks.
pub mod breaker;
pub mod cache;
pub mod usage;
