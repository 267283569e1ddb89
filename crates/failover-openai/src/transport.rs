//! The HTTP side: the reqwest client, one attempt, the retry loop, and the [`Provider`]
//! implementation.

use failover_provider::{
    Capabilities, ErrorKind, ImageLimits, JsonModeSupport, MediaTypeSet, Provider, ProviderError,
    ProviderRequest, ProviderResponse, ProviderStream, ToolLimits,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use tokio::time::Instant;

use crate::config::{OpenAiConfig, OpenAiConfigBuilder};
use crate::error;
use crate::mapping::{JsonContract, WireOptions, chat_request, parse_response};
use crate::retry::{Decision, decide};
use crate::stream::{StreamLimits, provider_stream};

/// What OpenAI's chat completions take of tool calling: at most 128 tools a request
/// (the API reference of `tools`: "A max of 128 functions are supported", as OpenAI's
/// OpenAPI spec and the SDKs generated from it say), and `parallel_tool_calls`.
pub const OPENAI_TOOL_LIMITS: ToolLimits = ToolLimits {
    max_tools: 128,
    parallel_tool_calls: true,
};

/// What OpenAI's chat completions take of images, from the "Images and vision" guide's
/// input requirements: PNG, JPEG, WebP and non-animated GIF, "up to 20MB per image", "up
/// to 500 individual images per request" and "up to 50 MB image bytes per request".
///
/// The guide does not say whether "MB" is 10^6 or 2^20 bytes; 20 MiB is taken, as the
/// neutral [`Capabilities::FULL`] does. Neither the 50 MB total nor "non-animated" GIF can
/// be declared in an [`ImageLimits`]: a request past them reaches OpenAI and gets its 400
/// (`invalid_request`, the caller's mistake, not a failover).
pub const OPENAI_IMAGE_LIMITS: ImageLimits = ImageLimits {
    max_bytes: 20 * 1024 * 1024,
    max_images: 500,
    media_types: MediaTypeSet::ALL,
};

/// The OpenAI chat completions provider, for OpenAI and any OpenAI-compatible server.
///
/// Cheap to share behind an `Arc`; one connection pool per provider.
pub struct OpenAiProvider {
    config: OpenAiConfig,
    client: reqwest::Client,
    url: String,
    options: WireOptions,
    /// The API key, kept only to scrub it from messages a server might echo it in.
    scrub: Option<SecretString>,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("config", &self.config)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn config_error(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::AuthOrConfig, message)
}

fn header(name: &'static str, value: &str) -> Result<(HeaderName, HeaderValue), ProviderError> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| config_error(format!("the {name} header value is not valid")))?;
    Ok((HeaderName::from_static(name), value))
}

/// Which limit bounded an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Attempt,
    FirstToken,
    Deadline,
}

impl OpenAiProvider {
    /// A provider over `config`. Fails (as `auth_or_config`) when the configuration is
    /// invalid ([`OpenAiConfig::validate`]), the base URL is not an `http(s)` URL, a header
    /// value is invalid, or the HTTP client cannot be built.
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        config.validate()?;
        let url = config.chat_completions_url();
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| config_error(format!("the base URL is not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(config_error("the base URL must be http or https"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut scrub = None;
        if let Some(key) = &config.api_key {
            let key = key.expose_secret();
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| config_error("the API key contains invalid characters"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
            if key.len() >= 8 {
                scrub = Some(SecretString::from(key));
            }
        }
        if let Some(organization) = &config.organization {
            let (name, value) = header("openai-organization", organization)?;
            headers.insert(name, value);
        }
        if let Some(project) = &config.project {
            let (name, value) = header("openai-project", project)?;
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("llm-failover/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeouts.connect)
            .build()
            .map_err(|e| config_error(format!("the HTTP client cannot be built: {e}")))?;
        Ok(Self {
            options: WireOptions::from_config(&config),
            config,
            client,
            url,
            scrub,
        })
    }

    /// A provider configured from the environment (see [`OpenAiConfigBuilder::from_env`]).
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::new(OpenAiConfigBuilder::from_env().build())
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// One attempt up to a 2xx response's headers; an error status is read (at most
    /// `max_error_body_bytes` of it) and classified.
    async fn send(&self, body: &[u8]) -> Result<reqwest::Response, ProviderError> {
        let response = self
            .client
            .post(&self.url)
            .body(body.to_vec())
            .send()
            .await
            .map_err(error::from_reqwest)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        // The status and the first bytes are enough to classify; the rest is dropped.
        let (bytes, _) = read_capped(response, self.config.max_error_body_bytes).await?;
        Err(error::from_response(
            status.as_u16(),
            &headers,
            &bytes,
            self.config.max_retry_after,
        ))
    }

    /// One non-streaming attempt: the whole answer, at most `max_response_bytes` of it.
    async fn complete_once(
        &self,
        body: &[u8],
        model: &str,
    ) -> Result<ProviderResponse, ProviderError> {
        let response = self.send(body).await?;
        let max = self.config.max_response_bytes;
        let too_large = || {
            ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("the completion body is larger than {max} bytes"),
            )
        };
        if response
            .content_length()
            .is_some_and(|length| usize::try_from(length).map_or(true, |length| length > max))
        {
            return Err(too_large());
        }
        let (bytes, complete) = read_capped(response, max).await?;
        if !complete {
            return Err(too_large());
        }
        parse_response(&bytes, model)
    }

    /// The end of an attempt started now: the earliest of its own limit, the first-token
    /// limit (streams) and the call's deadline (the request's deadline, or this provider's
    /// share of it when earlier).
    fn attempt_end(&self, request: &ProviderRequest, streaming: bool) -> (Instant, Bound) {
        let now = Instant::now();
        let mut end = (now + self.config.timeouts.attempt, Bound::Attempt);
        if streaming && now + self.config.timeouts.first_token < end.0 {
            end = (now + self.config.timeouts.first_token, Bound::FirstToken);
        }
        if let Some(deadline) = request.call_deadline().map(Instant::from_std)
            && deadline <= end.0
        {
            end = (deadline, Bound::Deadline);
        }
        end
    }

    /// The error of an attempt cut at `bound`: at the call's deadline, the request's own
    /// deadline marker when that has passed (never this provider's fault), else the
    /// provider's time-out.
    fn timeout_error(&self, request: &ProviderRequest, bound: Bound) -> ProviderError {
        let message = match bound {
            Bound::Attempt => format!(
                "no answer within the attempt time-out of {} ms",
                self.config.timeouts.attempt.as_millis()
            ),
            Bound::FirstToken => format!(
                "no first token within {} ms",
                self.config.timeouts.first_token.as_millis()
            ),
            Bound::Deadline => return request.out_of_time(),
        };
        ProviderError::new(ErrorKind::Timeout, message)
    }

    /// Runs `attempt` under the retry policy until it succeeds, fails permanently, runs out
    /// of attempts, or the call's deadline leaves no room for another. No attempt and no
    /// backoff outlives the call's deadline.
    async fn with_retries<T, F, Fut>(
        &self,
        request: &ProviderRequest,
        streaming: bool,
        mut attempt: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut number = 1;
        loop {
            let (end, bound) = self.attempt_end(request, streaming);
            if end <= Instant::now() {
                return Err(request.out_of_time());
            }
            tracing::debug!(
                provider = %self.config.name,
                request_id = %request.request_id,
                model = %request.model,
                attempt = number,
                streaming,
                "sending chat completion"
            );
            let result = match tokio::time::timeout_at(end, attempt()).await {
                Ok(result) => result,
                Err(_) => Err(self.timeout_error(request, bound)),
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error::scrub(error, self.scrub.as_ref().map(|k| k.expose_secret())),
            };
            let decision = decide(
                &self.config.retry,
                number,
                &error,
                request.call_deadline(),
                std::time::Instant::now(),
                fastrand::f64(),
            );
            match decision {
                Decision::RetryAfter(wait) => {
                    tracing::warn!(
                        provider = %self.config.name,
                        request_id = %request.request_id,
                        attempt = number,
                        kind = %error.kind(),
                        status = error.http_status(),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "retrying chat completion"
                    );
                    if !wait.is_zero() {
                        // `decide` keeps the wait inside the deadline; the sleep is capped
                        // all the same, so no clock skew makes it outlive the call.
                        let mut wake = Instant::now() + wait;
                        if let Some(deadline) = request.call_deadline().map(Instant::from_std) {
                            wake = wake.min(deadline);
                        }
                        tokio::time::sleep_until(wake).await;
                    }
                    number += 1;
                }
                Decision::GiveUp(reason) => {
                    tracing::debug!(
                        provider = %self.config.name,
                        request_id = %request.request_id,
                        attempt = number,
                        kind = %error.kind(),
                        reason = reason.as_str(),
                        %error,
                        "chat completion failed"
                    );
                    return Err(error);
                }
            }
        }
    }

    fn body(&self, request: &ProviderRequest, streaming: bool) -> Result<Vec<u8>, ProviderError> {
        serde_json::to_vec(&chat_request(request, self.options, streaming)?).map_err(|e| {
            ProviderError::new(
                ErrorKind::InvalidRequest,
                format!("the request cannot be encoded: {e}"),
            )
        })
    }
}

/// Reads a body up to `max` bytes: the bytes read, and whether the body ended within them
/// (`false`: it was longer; the rest is left unread).
async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), ProviderError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(error::from_reqwest)? {
        let room = max.saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn gen_ai_provider_name(&self) -> &'static str {
        "openai"
    }

    fn capabilities(&self) -> Capabilities {
        let schema = if self.config.structured_outputs {
            JsonModeSupport::Native
        } else {
            JsonModeSupport::Emulated
        };
        Capabilities::FULL
            .with_json_schema(schema)
            .with_tools(self.config.tools.then_some(OPENAI_TOOL_LIMITS))
            .with_images(self.config.vision.then_some(OPENAI_IMAGE_LIMITS))
            .with_sampling(true, true, true)
    }

    async fn complete(&self, request: ProviderRequest) -> Result<ProviderResponse, ProviderError> {
        let contract = JsonContract::for_format(&request.response_format)?;
        let body = self.body(&request, false)?;
        let response = self
            .with_retries(&request, false, || {
                self.complete_once(&body, &request.model)
            })
            .await?;
        // An answer of tool calls is not the JSON answer: its text (often empty) is a
        // preamble, and the calls' arguments were checked as JSON objects.
        if let Some(contract) = contract.as_ref().filter(|_| response.tool_calls.is_empty()) {
            contract.check_text(&response.content).map_err(|error| {
                tracing::debug!(provider = %self.config.name, request_id = %request.request_id, %error, "JSON mode content refused");
                error
            })?;
        }
        Ok(response)
    }

    async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ProviderError> {
        let contract = JsonContract::for_format(&request.response_format)?;
        let body = self.body(&request, true)?;
        let (response, sent_at) = self
            .with_retries(&request, true, || async {
                let sent_at = Instant::now();
                self.send(&body).await.map(|response| (response, sent_at))
            })
            .await?;
        let limits = StreamLimits {
            first_token_at: sent_at + self.config.timeouts.first_token,
            first_token: self.config.timeouts.first_token,
            stall: self.config.timeouts.stall,
            deadline: request.call_deadline().map(Instant::from_std),
            max_event_bytes: self.config.max_stream_event_bytes,
            max_text_bytes: self.config.max_response_bytes,
        };
        Ok(provider_stream(
            response,
            limits,
            contract,
            self.config.name.clone(),
            self.scrub.clone(),
            request.deadlines(),
        ))
    }
}
