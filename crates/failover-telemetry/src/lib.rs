#![doc = include_str!("../README.md")]

pub mod names;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod tenants;

pub use tenants::{OTHER_TENANTS, TenantLabels};
