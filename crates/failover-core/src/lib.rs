#![doc = include_str!("../README.md")]

// A request goes through `adapter` → `complete` or `stream` → `prepare` → `request_scope`
// → `reuse` → `chain` → `attempt`, never back up; `engine` holds what they share and
// `layers` documents the order of the layers along that path.
mod accounting;
mod adapter;
mod attempt;
mod builder;
mod cache;
mod chain;
mod coalesce;
mod complete;
mod config;
mod deadline;
mod engine;
mod error;
pub mod flights;
mod health;
pub mod layers;
mod needs;
mod prepare;
mod request_scope;
mod reuse;
mod routing;
mod stream;
mod telemetry;
mod validate;

pub use adapter::FailoverAdapter;
pub use builder::{AdapterBuilder, BuildError};
pub use cache::CacheReport;
pub use config::AdapterConfig;
pub use error::FailoverError;
pub use health::{HealthReport, HealthStatus, ProviderHealth};
pub use needs::{Unserved, Unsupported};
pub use routing::{Route, Router, RoutingError};
pub use stream::{CompletionStream, OpenedStream};
pub use validate::{Limits, MAX_USER_LEN, TEMPERATURE_RANGE, ValidationError, validate};
