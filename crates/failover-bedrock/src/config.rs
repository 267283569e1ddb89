//! Configuration of the Bedrock provider: a serde [`BedrockConfig`] and its fluent
//! [`BedrockConfigBuilder`].

use std::fmt;
use std::time::Duration;

use failover_provider::retry_hint::{self, default_max_retry_after, deserialize_max_retry_after};
use failover_provider::{ErrorKind, ProviderError};
use serde::{Deserialize, Serialize};

/// The provider's default name in routing, health and usage.
pub const DEFAULT_NAME: &str = "bedrock";

/// The default largest answer this crate keeps itself (a JSON-mode stream's text, checked
/// at its end): 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The default most tools in one request. Bedrock documents no limit of its own for
/// Converse (the models behind it have theirs); 128 is OpenAI's documented limit, so a
/// request that fits one provider fits the other. Configurable
/// ([`BedrockConfig::max_tools`]).
pub const DEFAULT_MAX_TOOLS: usize = 128;

/// Time limits of one Bedrock call: `connect` and `attempt` are enforced by the SDK (its
/// `connect_timeout` and `operation_attempt_timeout`), `first_token` and `stall` by this
/// crate's stream reader; the call's deadline
/// ([`ProviderRequest::call_deadline`](failover_provider::ProviderRequest::call_deadline))
/// bounds all of them, the SDK's retries included.
pub type BedrockTimeouts = failover_provider::CallTimeouts;

/// The SDK's retry policy: standard mode (exponential backoff with jitter and a client-side
/// retry quota), bounded attempts.
///
/// The SDK is the one owner of retries for a Bedrock call: the adapter never retries the
/// same provider, it fails over. Streams are retried only until their response headers
/// arrive; nothing is retried once events flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RetrySettings {
    /// Total attempts per call, the first included (`1` disables retries).
    pub max_attempts: u32,
    /// The first backoff (before jitter).
    pub initial_backoff: Duration,
    /// The largest backoff.
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// How JSON response formats are obtained from Bedrock (see the crate docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct JsonModeConfig {
    /// Models (exact ids, or prefixes ending in `*`) that get Bedrock's native structured
    /// output (`outputConfig.textFormat` with a JSON schema). Every other model gets the
    /// forced-tool emulation, which works on every model with tool use. Empty by default:
    /// native structured output is offered by a subset of models only.
    pub native_structured_output: Vec<String>,
}

impl JsonModeConfig {
    /// Whether `model` uses native structured output.
    pub fn is_native(&self, model: &str) -> bool {
        self.native_structured_output
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => model == pattern,
            })
    }
}

/// Static AWS credentials (tests, or explicit keys). Prefer the default credential chain.
///
/// `Debug` never prints the secret or the session token, and the struct is never
/// serialized with them.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct StaticCredentials {
    /// The access key id (not a secret on its own; printed truncated in `Debug`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// An optional session token.
    #[serde(default)]
    pub session_token: Option<String>,
}

impl StaticCredentials {
    /// Credentials from a key pair.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_prefix: String = self.access_key_id.chars().take(4).collect();
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &format_args!("{key_prefix}…"))
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// Settings of a [`BedrockProvider`](crate::BedrockProvider).
///
/// Everything not set here comes from the AWS SDK's standard chain: credentials from the
/// environment, the shared profile files, web identity (EKS/IRSA) or the instance metadata
/// service, cached and refreshed before they expire; the region from `AWS_REGION` or the
/// profile.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BedrockConfig {
    /// The provider's name in routing, health and usage (default `"bedrock"`).
    pub name: String,
    /// The AWS region; `None` lets the SDK's chain find it.
    pub region: Option<String>,
    /// The shared-config profile to use; `None` for the default (`AWS_PROFILE`).
    pub profile: Option<String>,
    /// An endpoint override (a VPC endpoint, a local test server); `None` for the
    /// region's endpoint.
    pub endpoint_url: Option<String>,
    /// Static credentials instead of the default chain. Never serialized.
    #[serde(skip_serializing)]
    pub credentials: Option<StaticCredentials>,
    /// Time limits.
    pub timeouts: BedrockTimeouts,
    /// The SDK's retry policy.
    pub retry: RetrySettings,
    /// JSON mode strategy per model.
    pub json: JsonModeConfig,
    /// The longest server retry hint (`retry-after`, `x-amzn-retry-after`) this provider
    /// reports: a longer one (however absurd) is reported as this much. Default 5 minutes,
    /// at most 10 ([`retry_hint::MAX_RETRY_AFTER_LIMIT`]): a larger value is refused when
    /// deserialized and by [`validate`](Self::validate), and clamped to the limit if set
    /// in code.
    #[serde(
        default = "default_max_retry_after",
        deserialize_with = "deserialize_max_retry_after"
    )]
    pub max_retry_after: Duration,
    /// The largest answer, in bytes (default 8 MiB): a `Converse` response declaring a
    /// longer body (`Content-Length`) is refused before the SDK reads it, and a JSON-mode
    /// stream's text, kept to be checked at its end, may not grow past it; either is a
    /// `malformed_response`. (A client given to
    /// [`BedrockProvider::from_client`](crate::BedrockProvider::from_client) keeps its own
    /// interceptors: only the stream limit applies.)
    pub max_response_bytes: usize,
    /// The most tools a request may offer (default [`DEFAULT_MAX_TOOLS`]), declared in the
    /// provider's capabilities: a request with more skips this provider. `0` declares no
    /// tool support at all.
    pub max_tools: usize,
}

impl Default for BedrockConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            region: None,
            profile: None,
            endpoint_url: None,
            credentials: None,
            timeouts: BedrockTimeouts::default(),
            retry: RetrySettings::default(),
            json: JsonModeConfig::default(),
            max_retry_after: retry_hint::DEFAULT_MAX_RETRY_AFTER,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_tools: DEFAULT_MAX_TOOLS,
        }
    }
}

impl fmt::Debug for BedrockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockConfig")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("profile", &self.profile)
            .field("endpoint_url", &self.endpoint_url)
            .field("credentials", &self.credentials)
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("json", &self.json)
            .field("max_retry_after", &self.max_retry_after)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_tools", &self.max_tools)
            .finish()
    }
}

impl BedrockConfig {
    /// Starts a builder from the defaults.
    pub fn builder() -> BedrockConfigBuilder {
        BedrockConfigBuilder::default()
    }

    /// Checks the limits: `max_retry_after` in `(0, 10 min]`, `max_response_bytes` above
    /// zero. An `auth_or_config` error says which is wrong.
    pub fn validate(&self) -> Result<(), ProviderError> {
        if let Err(error) = retry_hint::check_max_retry_after(self.max_retry_after) {
            return Err(ProviderError::new(
                ErrorKind::AuthOrConfig,
                error.to_string(),
            ));
        }
        if self.max_response_bytes == 0 {
            return Err(ProviderError::new(
                ErrorKind::AuthOrConfig,
                "max_response_bytes must be more than zero",
            ));
        }
        Ok(())
    }
}

/// Builds a [`BedrockConfig`].
///
/// ```
/// use std::time::Duration;
/// use failover_bedrock::BedrockConfig;
/// let config = BedrockConfig::builder()
///     .region("us-east-1")
///     .first_token_timeout(Duration::from_secs(10))
///     .max_attempts(3)
///     .build();
/// assert_eq!(config.region.as_deref(), Some("us-east-1"));
/// assert_eq!(config.name, "bedrock");
/// ```
#[derive(Debug, Clone, Default)]
pub struct BedrockConfigBuilder {
    config: BedrockConfig,
}

impl BedrockConfigBuilder {
    /// A builder seeded from the process environment: `AWS_REGION` (else
    /// `AWS_DEFAULT_REGION`), `AWS_PROFILE`, and the endpoint override
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (else `AWS_ENDPOINT_URL`). Credentials are not read
    /// here: the SDK's chain reads them (`AWS_ACCESS_KEY_ID`, …) when the provider is built.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let read = |names: &[&str]| {
            names
                .iter()
                .filter_map(|name| lookup(name))
                .map(|value| value.trim().to_owned())
                .find(|value| !value.is_empty())
        };
        let mut builder = Self::default();
        builder.config.region = read(&["AWS_REGION", "AWS_DEFAULT_REGION"]);
        builder.config.profile = read(&["AWS_PROFILE"]);
        builder.config.endpoint_url =
            read(&["AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL"]);
        builder
    }

    /// Sets the provider's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Sets the region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.region = Some(region.into());
        self
    }

    /// Sets the shared-config profile.
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.config.profile = Some(profile.into());
        self
    }

    /// Sets the endpoint override (how tests reach a local server).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.config.endpoint_url = Some(url.into());
        self
    }

    /// Uses static credentials instead of the default chain.
    pub fn credentials(mut self, credentials: StaticCredentials) -> Self {
        self.config.credentials = Some(credentials);
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

    /// Sets the longest gap allowed between two stream events.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeouts.stall = timeout;
        self
    }

    /// Sets the SDK's total attempts per call (`1` disables retries).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.retry.max_attempts = attempts.max(1);
        self
    }

    /// Sets the SDK's backoff bounds.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.retry.initial_backoff = initial;
        self.config.retry.max_backoff = max.max(initial);
        self
    }

    /// Sets the ceiling of every retry hint reported ([`BedrockConfig::max_retry_after`]).
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.config.max_retry_after = max;
        self
    }

    /// Sets the largest answer kept ([`BedrockConfig::max_response_bytes`]).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.config.max_response_bytes = bytes;
        self
    }

    /// Sets the most tools a request may offer ([`BedrockConfig::max_tools`]).
    pub fn max_tools(mut self, max_tools: usize) -> Self {
        self.config.max_tools = max_tools;
        self
    }

    /// Routes `model` (an exact id, or a prefix ending in `*`) to native structured output.
    pub fn native_json_model(mut self, model: impl Into<String>) -> Self {
        self.config.json.native_structured_output.push(model.into());
        self
    }

    /// The configuration.
    pub fn build(self) -> BedrockConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_secret() {
        let config = BedrockConfig::builder()
            .credentials(StaticCredentials {
                access_key_id: "AKIAEXAMPLEKEY".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                session_token: Some("FwoGZXIvYXdzEXAMPLETOKEN".into()),
            })
            .build();
        let printed = format!("{config:?}");
        assert!(!printed.contains("wJalrXUtnFEMI"), "{printed}");
        assert!(!printed.contains("FwoGZXIvYXdz"), "{printed}");
        assert!(!printed.contains("AKIAEXAMPLEKEY"), "{printed}");
        assert!(printed.contains("AKIA…"), "{printed}");
        let serialized = serde_json::to_string(&config).unwrap();
        assert!(!serialized.contains("wJalrXUtnFEMI"), "{serialized}");
    }

    #[test]
    fn from_env_reads_region_profile_and_endpoint() {
        let env = |name: &str| match name {
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_owned()),
            "AWS_PROFILE" => Some("prod".to_owned()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:4566".to_owned()),
            _ => None,
        };
        let config = BedrockConfigBuilder::from_lookup(env).build();
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.profile.as_deref(), Some("prod"));
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        let specific = BedrockConfigBuilder::from_lookup(|name| match name {
            "AWS_REGION" => Some("us-west-2".to_owned()),
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_owned()),
            _ => None,
        })
        .build();
        assert_eq!(specific.region.as_deref(), Some("us-west-2"));
        assert_eq!(specific.endpoint_url, None);
    }

    #[test]
    fn config_round_trips_through_serde_with_defaults_filled_in() {
        let config: BedrockConfig =
            serde_json::from_str(r#"{"region": "us-east-1", "retry": {"max_attempts": 4}}"#)
                .unwrap();
        assert_eq!(config.name, DEFAULT_NAME);
        assert_eq!(config.retry.max_attempts, 4);
        assert_eq!(
            config.retry.initial_backoff,
            RetrySettings::default().initial_backoff
        );
        assert_eq!(config.timeouts, BedrockTimeouts::default());
    }

    #[test]
    fn limits_have_defaults_and_are_validated() {
        let config: BedrockConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.max_retry_after, Duration::from_secs(300));
        assert_eq!(config.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(config.max_tools, DEFAULT_MAX_TOOLS);
        assert_eq!(BedrockConfig::builder().max_tools(3).build().max_tools, 3);
        assert!(config.validate().is_ok());
        let too_long = r#"{"max_retry_after": {"secs": 601, "nanos": 0}}"#;
        assert!(serde_json::from_str::<BedrockConfig>(too_long).is_err());
        let built = BedrockConfig::builder()
            .max_retry_after(Duration::ZERO)
            .build();
        assert_eq!(
            built.validate().unwrap_err().kind(),
            ErrorKind::AuthOrConfig
        );
        let built = BedrockConfig::builder().max_response_bytes(0).build();
        assert!(built.validate().is_err());
    }

    #[test]
    fn native_json_models_match_exactly_or_by_prefix() {
        let json = JsonModeConfig {
            native_structured_output: vec!["us.anthropic.claude-sonnet-4-5*".into(), "x".into()],
        };
        assert!(json.is_native("us.anthropic.claude-sonnet-4-5-20250929-v1:0"));
        assert!(json.is_native("x"));
        assert!(!json.is_native("xy"));
        assert!(!json.is_native("anthropic.claude-3-haiku-20240307-v1:0"));
    }
}
