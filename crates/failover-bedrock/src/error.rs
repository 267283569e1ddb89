//! Classification of every Bedrock failure into a [`ErrorKind`], once, at the boundary.
//!
//! The pure part ([`classify_exception`], [`classify_status`]) works on the exception name,
//! its message and the HTTP status, so the same table serves `Converse`, `ConverseStream`
//! and exceptions that arrive *inside* an event stream. The table is documented in
//! `docs/providers/bedrock.md`.

use std::time::{Duration, SystemTime};

use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_smithy_types::event_stream::RawMessage;
use failover_provider::{ErrorKind, ProviderError, retry_hint};

/// Normalises an exception name as Bedrock spells it in the `x-amzn-ErrorType` header
/// (`ThrottlingException:http://internal…`), a JSON `__type` (`com.amazon…#Throttling…`) or
/// an event-stream `:exception-type` header (`throttlingException`): bare and lowercase.
fn normalise(code: &str) -> String {
    let code = code.split(':').next().unwrap_or(code);
    let code = code.rsplit('#').next().unwrap_or(code);
    code.trim().to_ascii_lowercase()
}

/// Phrases of a `ValidationException` message that mean the input does not fit the model.
const CONTEXT_PHRASES: [&str; 8] = [
    "input is too long",
    "prompt is too long",
    "too many input tokens",
    "context length",
    "context window",
    "maximum context",
    "input length",
    "exceeds the maximum number of tokens",
];

/// Phrases of a `ValidationException` message that mean this provider's configuration is
/// wrong for the request (model id, model access, operation or feature the model lacks),
/// not the request's content: another provider can serve it.
const CONFIGURATION_PHRASES: [&str; 11] = [
    "model identifier is invalid",
    "invalid model identifier",
    // "Could not resolve the foundation model from the provided model identifier."
    "could not resolve the foundation model",
    "on-demand throughput",
    "inference profile",
    "doesn't support",
    "does not support",
    "not supported",
    "unsupported",
    "access to the model",
    "end of its life",
];

/// The kind of a Bedrock exception, from its name (in any of Bedrock's spellings), its
/// message and, for names this table does not know, the HTTP status.
///
/// `None` for a name this table does not know and no status to fall back on.
pub fn classify_exception(code: &str, message: &str, status: Option<u16>) -> Option<ErrorKind> {
    let kind = match normalise(code).as_str() {
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => {
            ErrorKind::Throttled
        }
        "modelnotreadyexception"
        | "serviceunavailableexception"
        | "internalserverexception"
        | "internalfailure"
        | "serviceunavailable" => ErrorKind::Unavailable,
        "modeltimeoutexception" | "requesttimeout" | "requesttimeoutexception" => {
            ErrorKind::Timeout
        }
        "modelerrorexception" | "modelstreamerrorexception" => ErrorKind::ModelError,
        "validationexception" => classify_validation(message),
        "accessdeniedexception"
        | "resourcenotfoundexception"
        | "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignature"
        | "incompletesignatureexception"
        | "signaturedoesnotmatch"
        | "expiredtokenexception"
        | "expiredtoken"
        | "missingauthenticationtokenexception"
        | "missingauthenticationtoken"
        | "invalidclienttokenid"
        | "notauthorized" => ErrorKind::AuthOrConfig,
        // A request that conflicts with the resource's state (`ConflictException`) is no
        // fault of the caller's input: treat it as the service being unable to serve now.
        "conflictexception" => ErrorKind::Unavailable,
        _ => return status.map(|status| classify_status(status, message)),
    };
    Some(kind)
}

/// The kind of a `ValidationException`: the input is too long for the model's window
/// ([`ErrorKind::ContextTooLong`]), this provider's configuration cannot serve it
/// ([`ErrorKind::AuthOrConfig`]: wrong model id, a model that needs an inference profile, a
/// feature the model lacks), or the request's content is wrong
/// ([`ErrorKind::InvalidRequest`]).
pub fn classify_validation(message: &str) -> ErrorKind {
    let message = message.to_ascii_lowercase();
    if CONTEXT_PHRASES
        .iter()
        .any(|phrase| message.contains(phrase))
    {
        ErrorKind::ContextTooLong
    } else if CONFIGURATION_PHRASES
        .iter()
        .any(|phrase| message.contains(phrase))
    {
        ErrorKind::AuthOrConfig
    } else {
        ErrorKind::InvalidRequest
    }
}

/// The kind of an HTTP error status without a known exception name.
pub fn classify_status(status: u16, message: &str) -> ErrorKind {
    match status {
        400 | 422 => classify_validation(message),
        413 => ErrorKind::ContextTooLong,
        401 | 403 | 404 => ErrorKind::AuthOrConfig,
        408 | 504 => ErrorKind::Timeout,
        424 => ErrorKind::ModelError,
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::MalformedResponse,
    }
}

/// The longest message kept from an exception, in bytes: a message is for a log line, and
/// the body it came from is the server's (any size).
const MAX_MESSAGE_BYTES: usize = 512;

/// Cuts a message to [`MAX_MESSAGE_BYTES`] on a character boundary.
pub(crate) fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    format!("{}…", message.get(..end).unwrap_or_default())
}

/// Reads a response's retry hint (`retry-after`, else Amazon's `x-amzn-retry-after`):
/// delta seconds, possibly fractional, or an HTTP date; at most `max` (see
/// [`failover_provider::retry_hint`]: no value panics, a huge one is `max`).
pub(crate) fn retry_after(response: &HttpResponse, max: Duration) -> Option<Duration> {
    retry_hint::from_headers(|name| response.headers().get(name), SystemTime::now(), max)
}

fn exception_error(
    code: &str,
    message: &str,
    status: Option<u16>,
    fallback: ErrorKind,
) -> ProviderError {
    let kind = classify_exception(code, message, status).unwrap_or(fallback);
    let mut error = ProviderError::new(kind, truncate(message)).with_provider_code(truncate(code));
    if let Some(status) = status {
        error = error.with_http_status(status);
    }
    error
}

/// Classifies a failed `Converse` / `ConverseStream` call (the SDK's own retries, if any,
/// are already spent); its retry hint is at most `max_retry_after`.
#[doc(hidden)]
pub fn from_operation_error<E>(
    error: SdkError<E, HttpResponse>,
    max_retry_after: Duration,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let retry_after = retry_after(context.raw(), max_retry_after);
            let err = context.err();
            let code = err.code().unwrap_or("").to_owned();
            let message = err
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("Bedrock answered HTTP {status}"));
            let mut classified = if code.is_empty() {
                ProviderError::new(classify_status(status, &message), truncate(&message))
                    .with_http_status(status)
            } else {
                exception_error(&code, &message, Some(status), ErrorKind::Unavailable)
            };
            if let Some(retry_after) = retry_after {
                classified = classified.with_retry_after(retry_after);
            }
            classified.with_source(context.into_err())
        }
        SdkError::TimeoutError(_) => ProviderError::new(
            ErrorKind::Timeout,
            "Bedrock did not answer within the SDK's operation time-out",
        ),
        SdkError::DispatchFailure(failure) => {
            let (kind, what) = if failure.is_timeout() {
                (ErrorKind::Timeout, "timed out connecting or sending")
            } else if failure.is_user() {
                (ErrorKind::AuthOrConfig, "could not send the request")
            } else {
                (ErrorKind::Network, "connection failed")
            };
            let detail = failure
                .as_connector_error()
                .map(|e| aws_sdk_bedrockruntime::error::DisplayErrorContext(e).to_string())
                .unwrap_or_default();
            ProviderError::new(kind, format!("Bedrock {what}: {detail}"))
        }
        SdkError::ResponseError(context) => {
            let status = context.raw().status().as_u16();
            ProviderError::new(
                ErrorKind::MalformedResponse,
                "Bedrock's response could not be read",
            )
            .with_http_status(status)
        }
        SdkError::ConstructionFailure(_) => ProviderError::new(
            ErrorKind::AuthOrConfig,
            "the Bedrock request could not be built (credentials, region or endpoint \
             configuration)",
        ),
        other => ProviderError::new(
            ErrorKind::Unavailable,
            format!(
                "Bedrock call failed: {}",
                aws_sdk_bedrockruntime::error::DisplayErrorContext(&other)
            ),
        ),
    }
}

/// The exception name of a modeled in-stream exception.
fn stream_exception_code(error: &ConverseStreamOutputError) -> Option<&'static str> {
    Some(match error {
        ConverseStreamOutputError::InternalServerException(_) => "InternalServerException",
        ConverseStreamOutputError::ModelStreamErrorException(_) => "ModelStreamErrorException",
        ConverseStreamOutputError::ValidationException(_) => "ValidationException",
        ConverseStreamOutputError::ThrottlingException(_) => "ThrottlingException",
        ConverseStreamOutputError::ServiceUnavailableException(_) => "ServiceUnavailableException",
        _ => return None,
    })
}

/// Classifies a failure while receiving a `ConverseStream` event: a modeled exception
/// frame is classified like the same exception on a plain call; a transport failure in the
/// middle of the body (a connection reset, a frame cut short) is [`ErrorKind::StreamCut`]; a
/// complete frame whose event cannot be unmarshalled is [`ErrorKind::MalformedResponse`].
#[doc(hidden)]
pub fn from_stream_error(error: SdkError<ConverseStreamOutputError, RawMessage>) -> ProviderError {
    let detail = aws_sdk_bedrockruntime::error::DisplayErrorContext(&error).to_string();
    match error {
        SdkError::ServiceError(context) => {
            let err = context.err();
            // The SDK leaves the metadata code of in-stream exceptions empty: the variant
            // names the exception.
            let code = stream_exception_code(err)
                .or_else(|| err.code())
                .unwrap_or("")
                .to_owned();
            let message = err
                .message()
                .unwrap_or("exception in the event stream")
                .to_owned();
            let classified = if code.is_empty() {
                ProviderError::new(ErrorKind::ModelError, truncate(&message))
            } else {
                exception_error(&code, &message, None, ErrorKind::ModelError)
            };
            classified.with_source(context.into_err())
        }
        SdkError::TimeoutError(_) => {
            ProviderError::new(ErrorKind::Timeout, "the Bedrock event stream timed out")
        }
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            ProviderError::new(ErrorKind::Timeout, "the Bedrock event stream timed out")
        }
        // A complete frame whose event could not be unmarshalled: Bedrock sent something we
        // cannot read.
        SdkError::ResponseError(context) if matches!(context.raw(), RawMessage::Decoded(_)) => {
            ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("a Bedrock stream event could not be read: {detail}"),
            )
        }
        _ => ProviderError::new(
            ErrorKind::StreamCut,
            format!("the Bedrock event stream broke before messageStop: {detail}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bedrock_exception_has_its_kind() {
        let table = [
            ("ThrottlingException", ErrorKind::Throttled),
            ("ServiceQuotaExceededException", ErrorKind::Throttled),
            ("ModelNotReadyException", ErrorKind::Unavailable),
            ("ServiceUnavailableException", ErrorKind::Unavailable),
            ("InternalServerException", ErrorKind::Unavailable),
            ("ModelTimeoutException", ErrorKind::Timeout),
            ("ModelErrorException", ErrorKind::ModelError),
            ("ModelStreamErrorException", ErrorKind::ModelError),
            ("AccessDeniedException", ErrorKind::AuthOrConfig),
            ("ResourceNotFoundException", ErrorKind::AuthOrConfig),
            ("UnrecognizedClientException", ErrorKind::AuthOrConfig),
            ("ExpiredTokenException", ErrorKind::AuthOrConfig),
            ("ValidationException", ErrorKind::InvalidRequest),
        ];
        for (code, kind) in table {
            assert_eq!(classify_exception(code, "m", None), Some(kind), "{code}");
        }
    }

    #[test]
    fn every_spelling_of_a_name_is_the_same_exception() {
        for code in [
            "ThrottlingException",
            "throttlingException",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "com.amazon.bedrock#ThrottlingException",
        ] {
            assert_eq!(
                classify_exception(code, "", None),
                Some(ErrorKind::Throttled),
                "{code}"
            );
        }
    }

    #[test]
    fn validation_splits_into_content_context_and_configuration() {
        let cases = [
            (
                "Input is too long for requested model.",
                ErrorKind::ContextTooLong,
            ),
            (
                "prompt is too long: 215000 tokens > 200000 maximum",
                ErrorKind::ContextTooLong,
            ),
            (
                "The model returned the following errors: Input length exceeds context length",
                ErrorKind::ContextTooLong,
            ),
            (
                "The provided model identifier is invalid.",
                ErrorKind::AuthOrConfig,
            ),
            (
                "Invocation of model ID anthropic.claude-3-7-sonnet-20250219-v1:0 with on-demand \
                 throughput isn't supported. Retry your request with the ID or ARN of an \
                 inference profile that contains this model.",
                ErrorKind::AuthOrConfig,
            ),
            (
                "This model doesn't support the toolConfig.toolChoice.tool field.",
                ErrorKind::AuthOrConfig,
            ),
            (
                "A conversation must start with a user message.",
                ErrorKind::InvalidRequest,
            ),
            (
                "messages.0.content.0.text: text field is blank",
                ErrorKind::InvalidRequest,
            ),
        ];
        for (message, kind) in cases {
            assert_eq!(classify_validation(message), kind, "{message}");
        }
    }

    #[test]
    fn unknown_names_fall_back_to_the_status() {
        assert_eq!(
            classify_exception("SomethingNew", "", Some(503)),
            Some(ErrorKind::Unavailable)
        );
        assert_eq!(
            classify_exception("SomethingNew", "", Some(429)),
            Some(ErrorKind::Throttled)
        );
        assert_eq!(
            classify_exception("SomethingNew", "", Some(403)),
            Some(ErrorKind::AuthOrConfig)
        );
        assert_eq!(classify_exception("SomethingNew", "", None), None);
        assert_eq!(classify_status(418, ""), ErrorKind::MalformedResponse);
        assert_eq!(classify_status(408, ""), ErrorKind::Timeout);
    }

    fn response_with(headers: &[(&'static str, &'static str)]) -> HttpResponse {
        let mut response = HttpResponse::new(
            429.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        for (name, value) in headers {
            response.headers_mut().insert(*name, *value);
        }
        response
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_clamps() {
        let max = retry_hint::DEFAULT_MAX_RETRY_AFTER;
        let hint = |headers| retry_after(&response_with(headers), max);
        assert_eq!(hint(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            hint(&[("x-amzn-retry-after", " 1.5 ")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(hint(&[("retry-after", "-1")]), None);
        assert_eq!(
            hint(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
        // `Duration::from_secs_f64(1e20)` panicked here before the shared reader.
        assert_eq!(hint(&[("retry-after", "100000000000000000000")]), Some(max));
        assert_eq!(
            hint(&[("retry-after", "1e400")]),
            None,
            "not delta seconds (and infinite for a float parser)"
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(600);
        let error = exception_error(
            "ValidationException",
            &long,
            Some(400),
            ErrorKind::Unavailable,
        );
        assert!(error.message().len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    }

    #[test]
    fn an_unresolvable_model_id_is_configuration() {
        assert_eq!(
            classify_exception(
                "ValidationException",
                "Could not resolve the foundation model from the provided model identifier.",
                Some(400)
            ),
            Some(ErrorKind::AuthOrConfig)
        );
    }
}
