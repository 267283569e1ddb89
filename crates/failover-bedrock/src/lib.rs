#![doc = include_str!("../README.md")]

mod config;
pub mod error;
pub mod mapping;
pub mod stream;
mod transport;

pub use config::{
    BedrockConfig, BedrockConfigBuilder, BedrockTimeouts, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_TOOLS, DEFAULT_NAME, JsonModeConfig, RetrySettings, StaticCredentials,
};
pub use transport::{BedrockProvider, CAPABILITIES, IMAGE_LIMITS};
