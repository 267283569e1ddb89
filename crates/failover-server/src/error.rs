//! Errors in OpenAI's shape — `{"error":{"message","type","param","code"}}` — with the
//! statuses and headers the official SDKs act on correctly.
//!
//! The SDKs map a status to an exception class (400 `BadRequestError`, 401
//! `AuthenticationError`, 403 `PermissionDeniedError`, 404 `NotFoundError`, 422
//! `UnprocessableEntityError`, 429 `RateLimitError`, ≥ 500 `InternalServerError`) and retry
//! 408, 409, 429 and ≥ 500 unless `x-should-retry: false`, waiting what `Retry-After` says
//! when it is at most 60 s. So: a wait we know goes in `Retry-After` (whole seconds,
//! rounded up, capped at [`MAX_RETRY_AFTER`]) and `retry-after-ms`; an error a retry cannot
//! cure soon says `x-should-retry: false`.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use failover_core::layers::RejectionKind;
use failover_core::{FailoverError, ValidationError};
use failover_provider::ErrorKind;
use http::{HeaderValue, StatusCode};
use serde::Serialize;

/// The longest `Retry-After` sent: the OpenAI SDKs ignore longer ones and fall back to
/// their own short backoff, so a longer wait would be retried too early anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
    param: Option<String>,
    retry_after: Option<Duration>,
    should_retry: Option<bool>,
    /// Close the connection after this answer (a draining gateway's).
    close: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: String,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message,
            param: None,
            retry_after: None,
            should_retry: None,
            close: false,
        }
    }

    /// 400: the request is malformed or asks for what cannot be served.
    pub fn invalid_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::invalid_request_owned(message.into(), param.map(str::to_owned))
    }

    pub(crate) fn invalid_request_owned(message: String, param: Option<String>) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        );
        error.param = param;
        error
    }

    /// 401: no key, or a key the gateway does not know.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            message.into(),
        )
    }

    /// 403: the key may not use this model (or agent, or tenant).
    pub fn forbidden(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut error = Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            Some("permission_denied"),
            message.into(),
        );
        error.param = param.map(str::to_owned);
        error
    }

    /// 404: an unknown model or route.
    pub fn not_found(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some(code),
            message.into(),
        )
    }

    /// 413: the body is over the configured limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!("the request body is larger than this gateway's limit of {limit} bytes"),
        )
        .no_retry()
    }

    /// 408: the body did not arrive within the time-out.
    pub fn body_timeout(limit: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            format!(
                "the request body did not arrive within {} ms",
                limit.as_millis()
            ),
        )
        .no_retry()
    }

    /// 503: too many requests in flight; retry shortly.
    pub fn overloaded(limit: usize) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("overloaded"),
            format!("the gateway is at its limit of {limit} requests in flight; retry shortly"),
        );
        error.retry_after = Some(Duration::from_secs(1));
        error
    }

    /// 503: the gateway is draining for shutdown; another replica can answer.
    pub fn draining() -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("shutting_down"),
            "the gateway is shutting down; retry on another replica".to_owned(),
        );
        error.retry_after = Some(Duration::from_secs(1));
        error.close = true;
        error
    }

    /// A stream that failed after its first byte (sent as its error frame).
    pub fn stream_interrupted(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            Some("stream_interrupted"),
            message.into(),
        )
    }

    /// 500: a fault of the gateway itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            message.into(),
        )
    }

    /// The engine's error, with the status an SDK acts on correctly.
    pub fn from_failover(error: &FailoverError) -> Self {
        let message = error.to_string();
        match error {
            FailoverError::Invalid(ValidationError::UnknownModel { .. }) => {
                Self::not_found(message, "model_not_found")
            }
            FailoverError::Invalid(invalid) => {
                Self::invalid_request_owned(message, param_of(invalid).map(str::to_owned))
            }
            FailoverError::ShutDown => Self::draining(),
            FailoverError::Rejected {
                retry_after, kind, ..
            } => {
                // A used-up budget is OpenAI's "insufficient_quota" (402: the SDK does not
                // retry it); a rate limit is 429 with Retry-After (the SDK waits and
                // retries); a limit whose store cannot be asked is a 503 worth a retry.
                let (status, error_type, code) = match kind {
                    RejectionKind::BudgetExceeded => (
                        StatusCode::PAYMENT_REQUIRED,
                        "insufficient_quota",
                        "budget_exceeded",
                    ),
                    RejectionKind::LimitUnavailable => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_error",
                        "limit_store_unavailable",
                    ),
                    _ => (
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        "rate_limit_exceeded",
                    ),
                };
                let mut rejected = Self::new(status, error_type, Some(code), message);
                rejected.retry_after = *retry_after;
                rejected
            }
            FailoverError::Unavailable { retry_after, .. } => {
                let mut unavailable = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("providers_unavailable"),
                    message,
                );
                match retry_after {
                    Some(wait) => unavailable.retry_after = Some(*wait),
                    // Forced open by an operator: nothing reopens by itself.
                    None => unavailable.should_retry = Some(false),
                }
                unavailable
            }
            FailoverError::AllProvidersFailed { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("upstream_error"),
                message,
            ),
            FailoverError::Refused { kind, .. } => match kind {
                ErrorKind::ContentFiltered => Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("content_filter"),
                    message,
                ),
                ErrorKind::ContextTooLong => Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("context_length_exceeded"),
                    message,
                ),
                ErrorKind::InvalidRequest => Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    message,
                ),
                // The model itself failed on this input: the content, not the syntax,
                // is what it could not process; another try would fail the same way.
                ErrorKind::ModelError => Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request_error",
                    Some("provider_refused"),
                    message,
                )
                .no_retry(),
                // Anything else the provider refused is not the caller's fault.
                _ => Self::new(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    Some("upstream_error"),
                    message,
                ),
            },
            FailoverError::DeadlineExceeded { .. } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                Some("deadline_exceeded"),
                message,
            ),
            FailoverError::StreamInterrupted { .. } => Self::stream_interrupted(message),
            _ => Self::internal(message),
        }
    }

    fn no_retry(mut self) -> Self {
        self.should_retry = Some(false);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault, when one is.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The `Retry-After` this error sends, in whole seconds.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(retry_after_secs)
    }

    /// The JSON body: `{"error":{…}}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        // A struct of strings always serialises.
        .unwrap_or_default()
    }

    /// The SSE frame a stream ends with when it fails after its first byte: one
    /// `data: {"error":…}` event (and never `[DONE]` after it).
    pub fn sse_frame(&self) -> Vec<u8> {
        let body = self.body();
        let mut frame = Vec::with_capacity(body.len() + 8);
        frame.extend_from_slice(b"data: ");
        frame.extend_from_slice(&body);
        frame.extend_from_slice(b"\n\n");
        frame
    }
}

/// Whole seconds, rounded up, at least 1 and at most [`MAX_RETRY_AFTER`].
fn retry_after_secs(wait: Duration) -> u64 {
    let wait = wait.min(MAX_RETRY_AFTER);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The request field a validation error is about, in OpenAI's naming.
fn param_of(error: &ValidationError) -> Option<&'static str> {
    Some(match error {
        ValidationError::Temperature { .. } => "temperature",
        ValidationError::TopP { .. } => "top_p",
        ValidationError::MaxTokens { .. } => "max_tokens",
        ValidationError::Stop { .. } => "stop",
        ValidationError::ResponseFormat { .. } => "response_format",
        ValidationError::EmptyPrompt
        | ValidationError::EmptyMessage { .. }
        | ValidationError::NoUserMessage
        | ValidationError::TooManyMessages { .. }
        | ValidationError::InputTooLarge { .. }
        | ValidationError::MalformedMessage { .. } => "messages",
        ValidationError::DuplicateToolName { .. }
        | ValidationError::ToolName { .. }
        | ValidationError::ToolSchema { .. }
        | ValidationError::TooManyTools { .. } => "tools",
        ValidationError::ToolChoiceUnknown { .. }
        | ValidationError::ToolChoiceWithoutTools { .. } => "tool_choice",
        // The tenant and the agent come from the key and its headers, not the body.
        ValidationError::IdTooLong { field, .. } if *field == "user" => "user",
        _ => return None,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(wait) = self.retry_after {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
            let millis = u64::try_from(wait.min(MAX_RETRY_AFTER).as_millis()).unwrap_or(u64::MAX);
            headers.insert("retry-after-ms", HeaderValue::from(millis.max(1)));
        }
        if self.close {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(retry) = self.should_retry {
            headers.insert(
                "x-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_capped_for_the_sdks() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_200)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3_600)), 60);
    }

    #[test]
    fn the_body_is_openais_shape() {
        let error = ApiError::invalid_request("bad temperature", Some("temperature"));
        let body: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "bad temperature", "type": "invalid_request_error", "param": "temperature", "code": null}})
        );
    }
}
