//! Classification of OpenAI errors into [`ErrorKind`]s, once, at the boundary.
//!
//! OpenAI error bodies read `{"error": {"message", "type", "param", "code"}}`. The kind is
//! decided by the HTTP status and the error's `code` (then `type`); when `code` is null —
//! common on OpenAI-compatible servers and on some OpenAI errors — by the message. The full
//! table is in `docs/providers/openai.md`.

use std::time::{Duration, SystemTime};

use failover_provider::{ErrorKind, ProviderError, retry_hint};
use reqwest::header::HeaderMap;
use serde::Deserialize;

/// The longest error message (from a body) kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 512;

/// The `error` object of an OpenAI error body or stream frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// Human-readable text.
    #[serde(default)]
    pub message: Option<String>,
    /// The error's type (`invalid_request_error`, `insufficient_quota`, `server_error`, …).
    #[serde(default, rename = "type")]
    pub error_type: Option<String>,
    /// The error's code (`context_length_exceeded`, `rate_limit_exceeded`, …); a string,
    /// or a number on some compatible servers.
    #[serde(default, deserialize_with = "string_or_number")]
    pub code: Option<String>,
    /// The request parameter at fault.
    #[serde(default)]
    pub param: Option<String>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
    )
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorField,
}

/// `error` is an object on OpenAI; a bare string on some compatible servers.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(ApiError),
    Text(String),
}

impl ApiError {
    /// Reads an error body; `None` when it is not an OpenAI-shaped error.
    pub fn from_body(body: &[u8]) -> Option<ApiError> {
        match serde_json::from_slice::<ErrorEnvelope>(body).ok()?.error {
            ErrorField::Object(error) => Some(error),
            ErrorField::Text(message) => Some(ApiError {
                message: Some(message),
                ..ApiError::default()
            }),
        }
    }

    fn is(&self, name: &str) -> bool {
        self.code.as_deref() == Some(name) || self.error_type.as_deref() == Some(name)
    }

    fn message_lower(&self) -> String {
        self.message.as_deref().unwrap_or_default().to_lowercase()
    }
}

fn message_says_context_too_long(message: &str) -> bool {
    message.contains("context length")
        || message.contains("context_length")
        || message.contains("context window")
        || message.contains("too many tokens")
        || message.contains("prompt is too long")
}

fn message_says_quota(message: &str) -> bool {
    message.contains("exceeded your current quota")
        || message.contains("insufficient_quota")
        || message.contains("billing")
}

/// Codes that name a fault of this provider's configuration (the key, the account, the
/// model id), whatever the status they come with: another provider can serve the request.
const CONFIGURATION_CODES: [&str; 6] = [
    "invalid_api_key",
    "model_not_found",
    "insufficient_quota",
    "authentication_error",
    "permission_error",
    "account_deactivated",
];

fn is_configuration_fault(error: &ApiError) -> bool {
    CONFIGURATION_CODES.iter().any(|code| error.is(code))
}

fn message_says_content_filter(message: &str) -> bool {
    message.contains("content management policy") || message.contains("content filter")
}

/// The kind of an HTTP error response.
pub fn classify_status(status: u16, error: Option<&ApiError>) -> ErrorKind {
    let empty = ApiError::default();
    let error = error.unwrap_or(&empty);
    let message = error.message_lower();
    let code_known = error.code.is_some();
    match status {
        429 => {
            if error.is("insufficient_quota") || (!code_known && message_says_quota(&message)) {
                ErrorKind::AuthOrConfig
            } else {
                ErrorKind::Throttled
            }
        }
        // A body too large for the server is an input too large for the model's window.
        413 => ErrorKind::ContextTooLong,
        400 | 422 => {
            if is_configuration_fault(error) {
                // Compatible gateways answer an unknown model or a bad key with a 400.
                ErrorKind::AuthOrConfig
            } else if error.is("context_length_exceeded")
                || (!code_known && message_says_context_too_long(&message))
            {
                ErrorKind::ContextTooLong
            } else if error.is("content_filter")
                || error.is("content_policy_violation")
                || (!code_known && message_says_content_filter(&message))
            {
                ErrorKind::ContentFiltered
            } else {
                ErrorKind::InvalidRequest
            }
        }
        // 402 (payment required) is an account fault like 401/403/404.
        401..=404 => ErrorKind::AuthOrConfig,
        408 => ErrorKind::Timeout,
        409 => ErrorKind::Unavailable,
        500..=599 => ErrorKind::Unavailable,
        400..=499 => ErrorKind::InvalidRequest,
        // A 1xx/3xx that reached us (redirects are followed) is no answer we understand.
        _ => ErrorKind::MalformedResponse,
    }
}

/// The kind of an `error` frame inside a 200 stream (no HTTP status to go by).
pub fn classify_stream_error(error: &ApiError) -> ErrorKind {
    let message = error.message_lower();
    let code_known = error.code.is_some();
    if is_configuration_fault(error) {
        ErrorKind::AuthOrConfig
    } else if error.is("rate_limit_exceeded") || error.is("rate_limit_error") || error.is("tokens")
    {
        ErrorKind::Throttled
    } else if error.is("context_length_exceeded")
        || (!code_known && message_says_context_too_long(&message))
    {
        ErrorKind::ContextTooLong
    } else if error.is("content_filter") || error.is("content_policy_violation") {
        ErrorKind::ContentFiltered
    } else if error.is("invalid_request_error") && code_known {
        ErrorKind::InvalidRequest
    } else {
        // `server_error`, `overloaded_error`, or nothing said: the provider failed mid-way.
        ErrorKind::Unavailable
    }
}

/// The server's retry hint: `retry-after-ms` (OpenAI, milliseconds, may be fractional),
/// else `retry-after` (seconds, or an HTTP date); at most `max` (see
/// [`failover_provider::retry_hint`]: no value panics, a huge one is `max`).
pub fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    retry_hint::from_headers(
        |name| headers.get(name).and_then(|value| value.to_str().ok()),
        SystemTime::now(),
        max,
    )
}

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

/// Builds the classified error of an HTTP error response; its retry hint is at most
/// `max_retry_after`.
#[doc(hidden)]
pub fn from_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    max_retry_after: Duration,
) -> ProviderError {
    let api_error = ApiError::from_body(body);
    let kind = classify_status(status, api_error.as_ref());
    let message = match &api_error {
        Some(ApiError {
            message: Some(message),
            ..
        }) if !message.is_empty() => truncate(message),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("HTTP {status} without a body")
            } else {
                format!("HTTP {status}: {}", truncate(text))
            }
        }
    };
    let mut error = ProviderError::new(kind, message).with_http_status(status);
    if let Some(code) = api_error
        .as_ref()
        .and_then(|e| e.code.clone().or_else(|| e.error_type.clone()))
    {
        error = error.with_provider_code(code);
    }
    if let Some(wait) = retry_after(headers, max_retry_after) {
        error = error.with_retry_after(wait);
    }
    error
}

/// Builds the classified error of an error object without an error status (a stream's
/// `error` frame, an error body sent with a 2xx); `context` prefixes the message.
#[doc(hidden)]
pub fn from_error_object(error: &ApiError, context: &str) -> ProviderError {
    let kind = classify_stream_error(error);
    let message = error
        .message
        .as_deref()
        .filter(|m| !m.is_empty())
        .map(truncate)
        .unwrap_or_else(|| "no message".to_owned());
    let mut provider_error = ProviderError::new(kind, format!("{context}: {message}"));
    if let Some(code) = error.code.clone().or_else(|| error.error_type.clone()) {
        provider_error = provider_error.with_provider_code(code);
    }
    provider_error
}

/// Removes `secret` from an error's message, should a server have echoed it back.
pub(crate) fn scrub(error: ProviderError, secret: Option<&str>) -> ProviderError {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return error;
    };
    if !error.message().contains(secret) {
        return error;
    }
    let mut clean = ProviderError::new(error.kind(), error.message().replace(secret, "***"));
    if let Some(code) = error.provider_code() {
        clean = clean.with_provider_code(code);
    }
    if let Some(status) = error.http_status() {
        clean = clean.with_http_status(status);
    }
    if let Some(wait) = error.retry_after() {
        clean = clean.with_retry_after(wait);
    }
    clean
}

/// Classifies a transport error from reqwest. Its text never holds headers (hence never the
/// key); URLs are stripped all the same, they are configuration, not diagnosis.
pub(crate) fn from_reqwest(error: reqwest::Error) -> ProviderError {
    let kind = if error.is_timeout() {
        ErrorKind::Timeout
    } else if error.is_builder() {
        ErrorKind::AuthOrConfig
    } else if error.is_decode() {
        ErrorKind::MalformedResponse
    } else {
        ErrorKind::Network
    };
    let what = if error.is_connect() {
        "connecting failed"
    } else if error.is_timeout() {
        "the attempt timed out"
    } else if error.is_body() {
        "reading the body failed"
    } else if error.is_builder() {
        "the request could not be built (check the base URL)"
    } else {
        "the request failed"
    };
    let error = error.without_url();
    let detail = std::error::Error::source(&error)
        .map(|source| format!(": {source}"))
        .unwrap_or_default();
    ProviderError::new(kind, format!("{what}{detail}")).with_source(error)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    const MAX: Duration = retry_hint::DEFAULT_MAX_RETRY_AFTER;

    fn api(code: Option<&str>, error_type: Option<&str>, message: &str) -> ApiError {
        ApiError {
            message: Some(message.to_owned()),
            error_type: error_type.map(str::to_owned),
            code: code.map(str::to_owned),
            param: None,
        }
    }

    #[test]
    fn throttling_and_exhausted_quota_are_told_apart() {
        let rate = api(
            Some("rate_limit_exceeded"),
            Some("requests"),
            "Rate limit reached",
        );
        assert_eq!(classify_status(429, Some(&rate)), ErrorKind::Throttled);
        let quota = api(
            Some("insufficient_quota"),
            Some("insufficient_quota"),
            "You exceeded your current quota",
        );
        assert_eq!(classify_status(429, Some(&quota)), ErrorKind::AuthOrConfig);
        let quota_by_type = api(None, Some("insufficient_quota"), "no money");
        assert_eq!(
            classify_status(429, Some(&quota_by_type)),
            ErrorKind::AuthOrConfig
        );
        let quota_by_message = api(
            None,
            None,
            "You exceeded your current quota, please check your plan and billing details.",
        );
        assert_eq!(
            classify_status(429, Some(&quota_by_message)),
            ErrorKind::AuthOrConfig
        );
        assert_eq!(classify_status(429, None), ErrorKind::Throttled);
    }

    #[test]
    fn bad_requests_split_by_code_then_message() {
        let context = api(
            Some("context_length_exceeded"),
            Some("invalid_request_error"),
            "This model's maximum context length is 8192 tokens.",
        );
        assert_eq!(
            classify_status(400, Some(&context)),
            ErrorKind::ContextTooLong
        );
        let by_message = api(
            None,
            Some("invalid_request_error"),
            "This model's maximum context length is 8192 tokens. However, you requested 9000.",
        );
        assert_eq!(
            classify_status(400, Some(&by_message)),
            ErrorKind::ContextTooLong
        );
        let coded_other = api(
            Some("invalid_value"),
            Some("invalid_request_error"),
            "mentions context length but has a code",
        );
        assert_eq!(
            classify_status(400, Some(&coded_other)),
            ErrorKind::InvalidRequest,
            "a code wins over the message"
        );
        let other = api(None, Some("invalid_request_error"), "temperature too high");
        assert_eq!(
            classify_status(400, Some(&other)),
            ErrorKind::InvalidRequest
        );
        let filtered = api(Some("content_filter"), None, "filtered");
        assert_eq!(
            classify_status(400, Some(&filtered)),
            ErrorKind::ContentFiltered
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        for (status, kind) in [
            (401, ErrorKind::AuthOrConfig),
            (403, ErrorKind::AuthOrConfig),
            (404, ErrorKind::AuthOrConfig),
            (408, ErrorKind::Timeout),
            (409, ErrorKind::Unavailable),
            (500, ErrorKind::Unavailable),
            (502, ErrorKind::Unavailable),
            (503, ErrorKind::Unavailable),
            (504, ErrorKind::Unavailable),
            (418, ErrorKind::InvalidRequest),
            (422, ErrorKind::InvalidRequest),
            (413, ErrorKind::ContextTooLong),
            (402, ErrorKind::AuthOrConfig),
            (304, ErrorKind::MalformedResponse),
        ] {
            assert_eq!(classify_status(status, None), kind, "{status}");
        }
    }

    #[test]
    fn error_bodies_of_every_shape_are_read() {
        let body = br#"{"error":{"message":"m","type":"t","param":null,"code":429}}"#;
        let error = ApiError::from_body(body).unwrap();
        assert_eq!(error.code.as_deref(), Some("429"));
        let text = ApiError::from_body(br#"{"error":"model not found"}"#).unwrap();
        assert_eq!(text.message.as_deref(), Some("model not found"));
        assert!(ApiError::from_body(b"<html>bad gateway</html>").is_none());
    }

    #[test]
    fn response_errors_keep_code_status_and_hint() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        headers.insert("retry-after", HeaderValue::from_static("9"));
        let error = from_response(
            429,
            &headers,
            br#"{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            MAX,
        );
        assert_eq!(error.kind(), ErrorKind::Throttled);
        assert_eq!(error.http_status(), Some(429));
        assert_eq!(error.provider_code(), Some("rate_limit_exceeded"));
        assert_eq!(error.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(error.message(), "slow down");

        let html = from_response(502, &HeaderMap::new(), b"<html>Bad Gateway</html>", MAX);
        assert_eq!(html.kind(), ErrorKind::Unavailable);
        assert_eq!(html.message(), "HTTP 502: <html>Bad Gateway</html>");
        let empty = from_response(503, &HeaderMap::new(), b"", MAX);
        assert_eq!(empty.message(), "HTTP 503 without a body");
    }

    #[test]
    fn retry_after_reads_seconds_millis_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, MAX), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers, MAX), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("20.5"));
        assert_eq!(
            retry_after(&headers, MAX),
            Some(Duration::from_micros(20_500))
        );
        let mut dated = HeaderMap::new();
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        dated.insert("retry-after", HeaderValue::from_str(&soon).unwrap());
        let wait = retry_after(&dated, MAX).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        let mut junk = HeaderMap::new();
        junk.insert("retry-after", HeaderValue::from_static("soon"));
        junk.insert("retry-after-ms", HeaderValue::from_static("-4"));
        assert_eq!(retry_after(&junk, MAX), None);
    }

    #[test]
    fn huge_retry_hints_are_clamped_instead_of_panicking() {
        // `Duration::from_secs_f64(1e20)` panicked here before the shared reader.
        let mut headers = HeaderMap::new();
        headers.insert(
            "retry-after",
            HeaderValue::from_static("100000000000000000000"),
        );
        assert_eq!(retry_after(&headers, MAX), Some(MAX));
        headers.insert("retry-after-ms", HeaderValue::from_static("1e300"));
        assert_eq!(
            retry_after(&headers, MAX),
            Some(MAX),
            "1e300 is no hint; retry-after is"
        );
        let error = from_response(429, &headers, b"", Duration::from_secs(30));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn configuration_faults_are_auth_or_config_whatever_the_status() {
        for code in ["model_not_found", "invalid_api_key", "insufficient_quota"] {
            let error = api(Some(code), Some("invalid_request_error"), "m");
            assert_eq!(
                classify_status(400, Some(&error)),
                ErrorKind::AuthOrConfig,
                "{code}"
            );
            assert_eq!(
                classify_stream_error(&error),
                ErrorKind::AuthOrConfig,
                "{code}"
            );
        }
        let by_type = api(None, Some("authentication_error"), "bad key");
        assert_eq!(classify_stream_error(&by_type), ErrorKind::AuthOrConfig);
    }

    #[test]
    fn stream_error_frames_are_classified() {
        let server = api(None, Some("server_error"), "The server had an error");
        assert_eq!(classify_stream_error(&server), ErrorKind::Unavailable);
        let rate = api(Some("rate_limit_exceeded"), None, "slow");
        assert_eq!(classify_stream_error(&rate), ErrorKind::Throttled);
        let nothing = ApiError::default();
        assert_eq!(classify_stream_error(&nothing), ErrorKind::Unavailable);
        let error = from_error_object(&server, "stream error");
        assert_eq!(error.message(), "stream error: The server had an error");
        assert_eq!(error.provider_code(), Some("server_error"));
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(600);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
