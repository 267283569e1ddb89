//! Configuration of the OpenAI provider: a serde [`OpenAiConfig`] and its fluent
//! [`OpenAiConfigBuilder`].

use std::fmt;
use std::time::Duration;

use failover_provider::retry_hint::{self, default_max_retry_after, deserialize_max_retry_after};
use failover_provider::{ErrorKind, ProviderError};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The provider's default name in routing, health and usage.
pub const DEFAULT_NAME: &str = "openai";

/// The default base URL: OpenAI's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "OPENAI_API_KEY";
/// Environment variable holding the base URL.
pub const ENV_BASE_URL: &str = "OPENAI_BASE_URL";
/// Environment variable holding the organization id (`OpenAI-Organization` header).
pub const ENV_ORGANIZATION: &str = "OPENAI_ORG_ID";
/// Environment variable holding the project id (`OpenAI-Project` header).
pub const ENV_PROJECT: &str = "OPENAI_PROJECT_ID";

/// The default largest successful (non-streaming) response body read: 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// The default largest error body read: 64 KiB (the rest is not needed to classify it).
pub const DEFAULT_MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The default largest server-sent event (one line, or one event's data): 1 MiB. A chat
/// completion chunk is a few hundred bytes.
pub const DEFAULT_MAX_STREAM_EVENT_BYTES: usize = 1024 * 1024;

/// Time limits of one OpenAI call: `connect` and `attempt` by the HTTP client, `first_token`
/// and `stall` by this crate's stream reader; all also bounded by the request's deadline.
pub type OpenAiTimeouts = failover_provider::CallTimeouts;

/// Bounded retries of one call, owned by this provider (the adapter never retries the
/// same provider; it fails over).
///
/// Only temporary errors are retried (`throttled`, `unavailable`, `timeout`, `network`),
/// and streams only until their response headers arrived. The wait before a retry is the
/// larger of an exponential backoff with full jitter and the server's hint
/// (`retry-after-ms`, `retry-after`). No retry starts when its wait would end past the
/// call's deadline ([`ProviderRequest::call_deadline`](failover_provider::ProviderRequest::call_deadline)),
/// or when the server's hint exceeds `max_hint_wait`: the error is returned at once, with
/// its hint, so the adapter fails over instead of sleeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RetrySettings {
    /// Total attempts per call, the first included (`1` disables retries).
    pub max_attempts: u32,
    /// The first backoff (before jitter); doubled on each retry.
    pub initial_backoff: Duration,
    /// The largest backoff.
    pub max_backoff: Duration,
    /// The longest server hint this provider will wait for before a retry (a longer one
    /// is returned with the error at once). Distinct from
    /// [`OpenAiConfig::max_retry_after`], the ceiling of every hint reported.
    pub max_hint_wait: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_hint_wait: Duration::from_secs(10),
        }
    }
}

/// Which request field carries the output token limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    /// `max_completion_tokens` when the base URL is OpenAI's own API, `max_tokens`
    /// otherwise.
    #[default]
    Auto,
    /// `max_completion_tokens`: OpenAI's current field, accepted by every OpenAI chat model
    /// (GPT-3.5, GPT-4, GPT-4o, GPT-4.1) and required by reasoning models (`o1`, `o3`, …),
    /// which reject `max_tokens`.
    MaxCompletionTokens,
    /// `max_tokens`: the deprecated field, the one every OpenAI-compatible server (vLLM,
    /// llama.cpp, Ollama, older gateways) understands.
    MaxTokens,
}

/// Settings of an [`OpenAiProvider`](crate::OpenAiProvider).
///
/// `Debug` never prints the API key, and serialization skips it: a config can be logged
/// or written out without leaking it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// The provider's name in routing, health and usage (default `"openai"`). Give each
    /// OpenAI-compatible server in one chain its own name.
    pub name: String,
    /// The API base URL, up to and including the version segment
    /// (`https://api.openai.com/v1`, `http://localhost:8000/v1` for vLLM,
    /// `http://localhost:11434/v1` for Ollama). `/chat/completions` is appended.
    pub base_url: String,
    /// The API key, sent as `Authorization: Bearer …`. `None` sends no `Authorization`
    /// header (local servers without auth).
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// The `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// The `OpenAI-Project` header.
    pub project: Option<String>,
    /// Time limits.
    pub timeouts: OpenAiTimeouts,
    /// Retries.
    pub retry: RetrySettings,
    /// Which field carries `max_tokens`.
    pub max_tokens_field: MaxTokensField,
    /// Whether JSON-schema requests are sent as `response_format: json_schema` (native
    /// structured outputs). `false` sends `json_object` instead, for servers without
    /// structured outputs; the content is validated against the schema either way.
    pub structured_outputs: bool,
    /// The `strict` flag of `json_schema` requests. Off by default: strict mode refuses
    /// schemas outside OpenAI's subset (every property required, `additionalProperties:
    /// false`) with a 400, and a fallback provider must not fail on a schema the primary
    /// accepted. Content is validated against the schema locally in either case.
    pub strict_json_schema: bool,
    /// The longest server retry hint (`retry-after-ms`, `retry-after`) this provider
    /// reports: a longer one (however absurd) is reported as this much. Default 5 minutes,
    /// at most 10 ([`retry_hint::MAX_RETRY_AFTER_LIMIT`]); a larger value is refused when
    /// deserialized and by [`validate`](Self::validate).
    #[serde(
        default = "default_max_retry_after",
        deserialize_with = "deserialize_max_retry_after"
    )]
    pub max_retry_after: Duration,
    /// Whether the server takes tool calling (default `true`). `false` declares no tool
    /// support in the provider's capabilities, so requests with tools are routed
    /// elsewhere: for OpenAI-compatible servers (or models) without function calling.
    pub tools: bool,
    /// Whether the server takes image input (default `true`). `false` declares no image
    /// support, so requests with images are routed elsewhere: for text-only models.
    pub vision: bool,
    /// The largest successful response body read, in bytes (default 8 MiB); a larger one
    /// is a `malformed_response`, and is not read further.
    pub max_response_bytes: usize,
    /// The largest error body read, in bytes (default 64 KiB); the rest is discarded and
    /// the error classified on what was read (its status first).
    pub max_error_body_bytes: usize,
    /// The largest line, or event data, of a stream, in bytes (default 1 MiB); a larger one
    /// is a `malformed_response`. A JSON-mode stream's whole text is also bounded by
    /// `max_response_bytes`, since it is kept to be checked at the end.
    pub max_stream_event_bytes: usize,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            organization: None,
            project: None,
            timeouts: OpenAiTimeouts::default(),
            retry: RetrySettings::default(),
            max_tokens_field: MaxTokensField::Auto,
            structured_outputs: true,
            strict_json_schema: false,
            tools: true,
            vision: true,
            max_retry_after: retry_hint::DEFAULT_MAX_RETRY_AFTER,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_error_body_bytes: DEFAULT_MAX_ERROR_BODY_BYTES,
            max_stream_event_bytes: DEFAULT_MAX_STREAM_EVENT_BYTES,
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "** redacted **"))
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("max_tokens_field", &self.max_tokens_field)
            .field("structured_outputs", &self.structured_outputs)
            .field("strict_json_schema", &self.strict_json_schema)
            .field("tools", &self.tools)
            .field("vision", &self.vision)
            .field("max_retry_after", &self.max_retry_after)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_error_body_bytes", &self.max_error_body_bytes)
            .field("max_stream_event_bytes", &self.max_stream_event_bytes)
            .finish()
    }
}

impl PartialEq for OpenAiConfig {
    fn eq(&self, other: &Self) -> bool {
        let keys_equal = match (&self.api_key, &other.api_key) {
            (None, None) => true,
            (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
            _ => false,
        };
        keys_equal
            && self.name == other.name
            && self.base_url == other.base_url
            && self.organization == other.organization
            && self.project == other.project
            && self.timeouts == other.timeouts
            && self.retry == other.retry
            && self.max_tokens_field == other.max_tokens_field
            && self.structured_outputs == other.structured_outputs
            && self.strict_json_schema == other.strict_json_schema
            && self.tools == other.tools
            && self.vision == other.vision
            && self.max_retry_after == other.max_retry_after
            && self.max_response_bytes == other.max_response_bytes
            && self.max_error_body_bytes == other.max_error_body_bytes
            && self.max_stream_event_bytes == other.max_stream_event_bytes
    }
}

impl OpenAiConfig {
    /// Starts a builder with the defaults.
    pub fn builder() -> OpenAiConfigBuilder {
        OpenAiConfigBuilder::default()
    }

    /// Checks the limits: `max_retry_after` in `(0, 10 min]`, every byte limit above
    /// zero. [`OpenAiProvider::new`](crate::OpenAiProvider::new) refuses a configuration
    /// that fails this, as `auth_or_config`.
    pub fn validate(&self) -> Result<(), ProviderError> {
        let invalid = |message: String| Err(ProviderError::new(ErrorKind::AuthOrConfig, message));
        if let Err(error) = retry_hint::check_max_retry_after(self.max_retry_after) {
            return invalid(error.to_string());
        }
        for (name, value) in [
            ("max_response_bytes", self.max_response_bytes),
            ("max_error_body_bytes", self.max_error_body_bytes),
            ("max_stream_event_bytes", self.max_stream_event_bytes),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be more than zero"));
            }
        }
        Ok(())
    }

    /// The chat completions endpoint: the base URL with `/chat/completions` appended.
    pub fn chat_completions_url(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }

    /// Whether the base URL is OpenAI's own API.
    pub fn is_openai_api(&self) -> bool {
        let rest = self
            .base_url
            .strip_prefix("https://")
            .unwrap_or(&self.base_url);
        rest == "api.openai.com" || rest.starts_with("api.openai.com/")
    }

    /// Whether `max_tokens` is sent as `max_completion_tokens`.
    pub fn uses_max_completion_tokens(&self) -> bool {
        match self.max_tokens_field {
            MaxTokensField::Auto => self.is_openai_api(),
            MaxTokensField::MaxCompletionTokens => true,
            MaxTokensField::MaxTokens => false,
        }
    }
}

/// Builds an [`OpenAiConfig`] fluently.
///
/// ```
/// use std::time::Duration;
/// use failover_openai::OpenAiConfig;
///
/// let config = OpenAiConfig::builder()
///     .api_key("sk-example")
///     .base_url("http://127.0.0.1:8000/v1")
///     .name("vllm")
///     .first_token_timeout(Duration::from_secs(5))
///     .build();
/// assert_eq!(config.chat_completions_url(), "http://127.0.0.1:8000/v1/chat/completions");
/// assert!(!format!("{config:?}").contains("sk-example"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct OpenAiConfigBuilder {
    config: OpenAiConfig,
}

impl OpenAiConfigBuilder {
    /// A builder seeded from the environment: `OPENAI_API_KEY`, `OPENAI_BASE_URL`,
    /// `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`. Unset or empty variables keep the defaults.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (tests,
    /// or a secrets manager).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut builder = Self::default();
        if let Some(key) = get(ENV_API_KEY) {
            builder = builder.api_key(key.trim().to_owned());
        }
        if let Some(url) = get(ENV_BASE_URL) {
            builder = builder.base_url(url.trim().to_owned());
        }
        if let Some(organization) = get(ENV_ORGANIZATION) {
            builder = builder.organization(organization);
        }
        if let Some(project) = get(ENV_PROJECT) {
            builder = builder.project(project);
        }
        builder
    }

    /// Sets the provider's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// Sets the API key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// Sets the organization header.
    pub fn organization(mut self, organization: impl Into<String>) -> Self {
        self.config.organization = Some(organization.into());
        self
    }

    /// Sets the project header.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.config.project = Some(project.into());
        self
    }

    /// Sets every time limit at once.
    pub fn timeouts(mut self, timeouts: OpenAiTimeouts) -> Self {
        self.config.timeouts = timeouts;
        self
    }

    /// Sets the connect time-out.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.connect = timeout;
        self
    }

    /// Sets the per-attempt time-out.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.attempt = timeout;
        self
    }

    /// Sets the time-to-first-token limit of streams.
    pub fn first_token_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.first_token = timeout;
        self
    }

    /// Sets the longest gap between two stream events.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.stall = timeout;
        self
    }

    /// Sets the retry settings.
    pub fn retry(mut self, retry: RetrySettings) -> Self {
        self.config.retry = retry;
        self
    }

    /// Sets the total attempts per call (`1` disables retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.retry.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first backoff and the largest one.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.retry.initial_backoff = initial;
        self.config.retry.max_backoff = max;
        self
    }

    /// Sets the longest server retry hint waited for before a retry
    /// ([`RetrySettings::max_hint_wait`]).
    pub fn max_hint_wait(mut self, max: Duration) -> Self {
        self.config.retry.max_hint_wait = max;
        self
    }

    /// Sets the ceiling of every retry hint reported ([`OpenAiConfig::max_retry_after`]).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// Sets the largest successful response body read.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.config.max_response_bytes = bytes;
        self
    }

    /// Sets the largest error body read.
    pub fn max_error_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_error_body_bytes = bytes;
        self
    }

    /// Sets the largest stream line or event.
    pub fn max_stream_event_bytes(mut self, bytes: usize) -> Self {
        self.config.max_stream_event_bytes = bytes;
        self
    }

    /// Chooses the field of the output token limit.
    pub fn max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.config.max_tokens_field = field;
        self
    }

    /// Turns native structured outputs on or off.
    pub fn structured_outputs(mut self, enabled: bool) -> Self {
        self.config.structured_outputs = enabled;
        self
    }

    /// Sets `strict` on `json_schema` requests.
    pub fn strict_json_schema(mut self, strict: bool) -> Self {
        self.config.strict_json_schema = strict;
        self
    }

    /// Declares tool calling supported or not ([`OpenAiConfig::tools`]).
    pub fn tools(mut self, enabled: bool) -> Self {
        self.config.tools = enabled;
        self
    }

    /// Declares image input supported or not ([`OpenAiConfig::vision`]).
    pub fn vision(mut self, enabled: bool) -> Self {
        self.config.vision = enabled;
        self
    }

    /// The configuration.
    pub fn build(self) -> OpenAiConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_serialization_hide_the_key() {
        let config = OpenAiConfig::builder()
            .api_key("sk-very-secret-0123456789")
            .organization("org-1")
            .build();
        let debug = format!("{config:?} {config:#?}");
        assert!(!debug.contains("sk-very-secret"), "{debug}");
        assert!(debug.contains("redacted") && debug.contains("org-1"));
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("sk-very-secret"), "{json}");
        assert!(!json.contains("api_key"), "{json}");
    }

    #[test]
    fn deserializes_with_a_key_and_defaults() {
        let config: OpenAiConfig = serde_json::from_str(
            r#"{"api_key": "sk-x", "base_url": "http://127.0.0.1:1/v1/", "timeouts": {"stall": {"secs": 2, "nanos": 0}}}"#,
        )
        .unwrap();
        assert_eq!(config.api_key.as_ref().unwrap().expose_secret(), "sk-x");
        assert_eq!(config.name, "openai");
        assert_eq!(config.timeouts.stall, Duration::from_secs(2));
        assert_eq!(config.timeouts.connect, OpenAiTimeouts::default().connect);
        assert_eq!(
            config.chat_completions_url(),
            "http://127.0.0.1:1/v1/chat/completions"
        );
    }

    #[test]
    fn from_lookup_reads_the_standard_variables() {
        let config = OpenAiConfigBuilder::from_lookup(|name| match name {
            ENV_API_KEY => Some(" sk-env ".to_owned()),
            ENV_BASE_URL => Some("http://localhost:11434/v1".to_owned()),
            ENV_PROJECT => Some(String::new()),
            _ => None,
        })
        .build();
        assert_eq!(config.api_key.as_ref().unwrap().expose_secret(), "sk-env");
        assert_eq!(config.base_url, "http://localhost:11434/v1");
        assert_eq!(config.project, None, "an empty variable is unset");
        assert_eq!(config.organization, None);
    }

    #[test]
    fn limits_have_defaults_and_are_validated() {
        let config: OpenAiConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.max_retry_after, Duration::from_secs(300));
        assert_eq!(config.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert!(config.validate().is_ok());
        let too_long = r#"{"max_retry_after": {"secs": 3600, "nanos": 0}}"#;
        assert!(serde_json::from_str::<OpenAiConfig>(too_long).is_err());
        let built = OpenAiConfig::builder()
            .max_retry_after(Duration::from_secs(601))
            .build();
        assert_eq!(
            built.validate().unwrap_err().kind(),
            ErrorKind::AuthOrConfig
        );
        assert!(
            OpenAiConfig::builder()
                .max_response_bytes(0)
                .build()
                .validate()
                .is_err()
        );
    }

    #[test]
    fn max_tokens_field_follows_the_server() {
        let openai = OpenAiConfig::default();
        assert!(openai.is_openai_api());
        assert!(openai.uses_max_completion_tokens());
        let local = OpenAiConfig::builder()
            .base_url("http://127.0.0.1:8000/v1")
            .build();
        assert!(!local.uses_max_completion_tokens());
        let forced = OpenAiConfig::builder()
            .base_url("http://127.0.0.1:8000/v1")
            .max_tokens_field(MaxTokensField::MaxCompletionTokens)
            .build();
        assert!(forced.uses_max_completion_tokens());
        let lookalike = OpenAiConfig::builder()
            .base_url("https://api.openai.com.evil.example/v1")
            .build();
        assert!(!lookalike.is_openai_api());
    }
}
