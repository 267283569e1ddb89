//! The provider: the SDK client, `Converse` and `ConverseStream` calls.

use std::fmt;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_bedrockruntime::config::{
    ConfigBag, Intercept, Region, RuntimeComponents, StalledStreamProtectionConfig,
};
use failover_provider::{
    Capabilities, ErrorKind, ImageLimits, JsonModeSupport, MediaTypeSet, Provider, ProviderError,
    ProviderRequest, ProviderResponse, ProviderStream, ToolLimits,
};
use tokio::time::Instant;

use crate::config::BedrockConfig;
use crate::error::from_operation_error;
use crate::mapping::{from_converse, to_converse};
use crate::stream::{StreamLimits, StreamMapper, event_stream};

/// What Converse takes of images, from the Converse API reference (`Message.content`:
/// "You can include up to 20 images. Each image's size, height, and width must be no more
/// than 3.75 MB, 8000 px, and 8000 px, respectively";
/// <https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Message.html>), in
/// PNG, JPEG, GIF or WebP (`ImageFormat`). "3.75 MB" is read as 3 750 000 bytes, the
/// smaller of the decimal and binary readings, so an image declared acceptable is never
/// refused for its size. The pixel limits are not checked here (that would mean decoding
/// the image).
pub const IMAGE_LIMITS: ImageLimits = ImageLimits {
    max_bytes: 3_750_000,
    max_images: 20,
    media_types: MediaTypeSet::ALL,
};

/// What the Bedrock provider declares by default ([`BedrockProvider::capabilities`] puts
/// in the configured [`BedrockConfig::max_tools`]): streaming with usage; JSON object and
/// JSON schema modes emulated with a forced tool (native structured output only for
/// configured models), with every JSON answer validated here before it is returned; tools
/// ([`DEFAULT_MAX_TOOLS`](crate::DEFAULT_MAX_TOOLS), and no `parallel_tool_calls`: Converse
/// has no such switch); images ([`IMAGE_LIMITS`]); `top_p`. Converse has no sampling seed,
/// and the end user's id is not passed on: Converse's only per-request free-form field,
/// `requestMetadata`, tags invocation logs (for cost attribution), which is not what the
/// id is given for, and a value outside its character set would fail the call.
pub const CAPABILITIES: Capabilities = Capabilities::FULL
    .with_json_object(JsonModeSupport::Emulated)
    .with_json_schema(JsonModeSupport::Emulated)
    .with_tools(Some(ToolLimits {
        max_tools: crate::config::DEFAULT_MAX_TOOLS,
        parallel_tool_calls: false,
    }))
    .with_images(Some(IMAGE_LIMITS))
    .with_sampling(true, false, false);

/// Amazon Bedrock through the Converse API: one request shape for every model family.
///
/// See the crate documentation for JSON mode, time-outs and retries.
#[derive(Clone)]
pub struct BedrockProvider {
    client: Client,
    config: BedrockConfig,
}

impl fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BedrockProvider {
    /// Builds the SDK client from `config` and the SDK's standard chain (credentials,
    /// region and profile files for whatever `config` leaves unset).
    pub async fn new(config: BedrockConfig) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(config.timeouts.connect)
                    .operation_attempt_timeout(config.timeouts.attempt)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.retry.max_attempts.max(1))
                    .with_initial_backoff(config.retry.initial_backoff)
                    .with_max_backoff(config.retry.max_backoff),
            )
            // This crate owns the stream time-outs (first token, stall); the SDK's own
            // stalled-stream guard would be a second, differently tuned owner.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(credentials) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.clone(),
                credentials.session_token.clone(),
                None,
                "failover-bedrock-static",
            ));
        }
        let sdk_config = loader.load().await;
        let client_config = aws_sdk_bedrockruntime::config::Builder::from(&sdk_config)
            .interceptor(DeclaredLengthLimit {
                max_bytes: config.max_response_bytes,
            })
            .build();
        Self {
            client: Client::from_conf(client_config),
            config,
        }
    }

    /// Wraps a client built elsewhere. Its own retry and time-out settings apply; `config`
    /// supplies the name, the stream time-outs and the JSON-mode settings.
    pub fn from_client(client: Client, config: BedrockConfig) -> Self {
        Self { client, config }
    }

    /// The configuration.
    pub fn config(&self) -> &BedrockConfig {
        &self.config
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Refuses a response whose declared length (`Content-Length`) exceeds
/// [`BedrockConfig::max_response_bytes`] before the SDK reads its body into memory. (The
/// SDK buffers a `Converse` body whole; an event stream is chunked and read frame by
/// frame.) The SDK reports the refusal as a response error: `malformed_response`.
#[derive(Debug)]
struct DeclaredLengthLimit {
    max_bytes: usize,
}

impl Intercept for DeclaredLengthLimit {
    fn name(&self) -> &'static str {
        "failover-bedrock declared length limit"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let declared = context
            .response()
            .headers()
            .get("content-length")
            .and_then(|length| length.trim().parse::<u64>().ok());
        let max = u64::try_from(self.max_bytes).unwrap_or(u64::MAX);
        match declared {
            Some(length) if length > max => Err(format!(
                "the response declares {length} bytes, more than max_response_bytes ({max})"
            )
            .into()),
            _ => Ok(()),
        }
    }
}

/// Runs an SDK call within the call's deadline
/// ([`ProviderRequest::call_deadline`]): past it the future is dropped (which cancels the
/// SDK's attempt and any retry it would still make) and the error is
/// [`ProviderRequest::out_of_time`] — the request's deadline marker when the caller's
/// budget ran out, else this provider's time-out.
async fn within_call_deadline<T>(
    request: &ProviderRequest,
    call: impl Future<Output = T>,
) -> Result<T, ProviderError> {
    match request.call_deadline() {
        Some(deadline) => tokio::time::timeout_at(Instant::from_std(deadline), call)
            .await
            .map_err(|_| request.out_of_time()),
        None => Ok(call.await),
    }
}

#[async_trait::async_trait]
impl Provider for BedrockProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn gen_ai_provider_name(&self) -> &'static str {
        "aws.bedrock"
    }

    fn capabilities(&self) -> Capabilities {
        // `max_tools = 0` turns tool support off.
        CAPABILITIES.with_tools((self.config.max_tools > 0).then_some(ToolLimits {
            max_tools: self.config.max_tools,
            parallel_tool_calls: false,
        }))
    }

    async fn complete(&self, request: ProviderRequest) -> Result<ProviderResponse, ProviderError> {
        let mapped = to_converse(&request, &self.config.json)?;
        let send = self
            .client
            .converse()
            .model_id(mapped.model_id.clone())
            .set_messages(Some(mapped.messages))
            .set_system((!mapped.system.is_empty()).then_some(mapped.system))
            .set_inference_config(mapped.inference)
            .set_tool_config(mapped.tool_config)
            .set_output_config(mapped.output_config)
            .send();
        let response = within_call_deadline(&request, send)
            .await?
            .map_err(|error| from_operation_error(error, self.config.max_retry_after))?;
        let answer = from_converse(&response, &mapped.plan)?;
        Ok(ProviderResponse {
            model: mapped.model_id,
            content: answer.content,
            tool_calls: answer.tool_calls,
            finish_reason: answer.finish_reason,
            usage: answer.usage,
        })
    }

    async fn stream(&self, request: ProviderRequest) -> Result<ProviderStream, ProviderError> {
        let timeouts = self.config.timeouts;
        let deadline = request.call_deadline().map(Instant::from_std);
        let limits = StreamLimits {
            first_token_by: Instant::now() + timeouts.first_token,
            first_token: timeouts.first_token,
            stall: timeouts.stall,
            deadline,
        };
        let mapped = to_converse(&request, &self.config.json)?;
        let send = self
            .client
            .converse_stream()
            .model_id(mapped.model_id)
            .set_messages(Some(mapped.messages))
            .set_system((!mapped.system.is_empty()).then_some(mapped.system))
            .set_inference_config(mapped.inference)
            .set_tool_config(mapped.tool_config)
            .set_output_config(mapped.output_config)
            .send();
        let open_by = match deadline {
            Some(deadline) if deadline < limits.first_token_by => deadline,
            _ => limits.first_token_by,
        };
        // Dropping the SDK's future on time-out cancels it, its retries included.
        let response = match tokio::time::timeout_at(open_by, send).await {
            Ok(result) => {
                result.map_err(|error| from_operation_error(error, self.config.max_retry_after))?
            }
            Err(_) if deadline.is_some_and(|deadline| deadline <= limits.first_token_by) => {
                return Err(request.out_of_time());
            }
            Err(_) => {
                return Err(ProviderError::new(
                    ErrorKind::Timeout,
                    format!(
                        "no response from Bedrock within the first-token time-out ({:?})",
                        timeouts.first_token
                    ),
                ));
            }
        };
        let mapper = StreamMapper::with_limit(mapped.plan, self.config.max_response_bytes);
        Ok(event_stream(response, mapper, limits, request.deadlines()))
    }
}
