#![doc = include_str!("../README.md")]

mod accounting;
mod adapter;
mod builder;
mod cache_layer;
mod call;
mod coalesce;
mod config;
mod error;
mod health;
mod routing;
mod stream;
mod validate;

pub use adapter::FailoverAdapter;
pub use builder::{AdapterBuilder, BuildError};
pub use cache_layer::CacheReport;
pub use config::AdapterConfig;
pub use error::FailoverError;
pub use health::{HealthReport, HealthStatus, ProviderHealth};
pub use routing::{Router, RoutingError};
pub use stream::CompletionStream;
pub use validate::{Limits, TEMPERATURE_RANGE, ValidationError, validate};
