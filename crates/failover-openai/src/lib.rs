#![doc = include_str!("../README.md")]

mod config;
mod error;
pub mod mapping;
pub mod retry;
#[doc(hidden)]
pub mod stream;
mod transport;

pub use config::{
    DEFAULT_BASE_URL, DEFAULT_MAX_ERROR_BODY_BYTES, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_STREAM_EVENT_BYTES, DEFAULT_NAME, ENV_API_KEY, ENV_BASE_URL, ENV_ORGANIZATION,
    ENV_PROJECT, MaxTokensField, OpenAiConfig, OpenAiConfigBuilder, OpenAiTimeouts, RetrySettings,
};
pub use error::{ApiError, classify_status, classify_stream_error, retry_after};
#[doc(hidden)]
pub use error::{from_error_object, from_response};
pub use transport::{OPENAI_IMAGE_LIMITS, OPENAI_TOOL_LIMITS, OpenAiProvider};
