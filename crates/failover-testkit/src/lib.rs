//! The shared test harness.
pub mod suites;
