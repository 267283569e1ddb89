//! `POST /v1/chat/completions`: plain and streamed.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use failover_provider::{CompletionRequest, RequestId};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;
use crate::sse::SseBody;
use crate::state::AppState;
use crate::wire::chunk::ChunkEncoder;
use crate::wire::request::{Addressee, ChatRequest};
use crate::wire::response::completion_body;

/// The header carrying the request id (the engine's, in every usage record and log).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The provider that answered.
pub const PROVIDER_HEADER: &str = "x-failover-provider";
/// `true` when the answer came from the cache or an identical request in flight.
pub const CACHED_HEADER: &str = "x-failover-cached";
/// The estimated cost in USD (plain answers; a stream's is in the ledger).
pub const COST_HEADER: &str = "x-failover-cost-usd";
/// How many providers were tried or skipped.
pub const ATTEMPTS_HEADER: &str = "x-failover-attempts";

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = RequestId::random();
    let mut response = match answer(&state, &headers, body, &request_id).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    request_id: &RequestId,
) -> Result<Response, ApiError> {
    if state.drain.is_draining() {
        return Err(ApiError::draining());
    }
    let permit = state.admit()?;
    let (caller, grant) = state.keys.caller(headers)?;
    let bytes = read_body(state, body).await?;
    let chat = ChatRequest::parse(&bytes)?;
    grant.check_model(&chat.model)?;
    let model = chat.model.clone();
    let stream = chat.stream;
    let include_usage = chat.include_usage();
    let mut request = chat.into_completion(Addressee {
        tenant_id: &caller.tenant_id,
        agent_id: &caller.agent_id,
    })?;
    request.request_id = Some(request_id.clone());
    request.deadline = Some(Instant::now() + state.limits.request_timeout());
    if stream {
        streamed(state, request, &model, include_usage, permit).await
    } else {
        plain(state, request, permit).await
    }
}

/// A `chat.completion` body, the extras in headers.
async fn plain(
    state: &AppState,
    request: CompletionRequest,
    permit: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let created = unix_now();
    let completion = tokio::select! {
        answered = state.adapter.generate_completion(request) => {
            answered.map_err(|error| ApiError::from_failover(&error))?
        }
        // Past the drain deadline a waiting caller is told, not cut off.
        () = state.drain.cut() => return Err(ApiError::draining()),
    };
    drop(permit);
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        completion_body(&completion, created),
    )
        .into_response();
    let extras = response.headers_mut();
    insert(extras, PROVIDER_HEADER, &completion.provider);
    insert(extras, CACHED_HEADER, flag(completion.cached));
    insert(
        extras,
        COST_HEADER,
        &completion.estimated_cost.to_string().replace('$', ""),
    );
    insert(
        extras,
        ATTEMPTS_HEADER,
        &completion.attempts.len().to_string(),
    );
    Ok(response)
}

/// Server-sent events from the commit point on; the extras known then in headers.
async fn streamed(
    state: &AppState,
    request: CompletionRequest,
    model: &str,
    include_usage: bool,
    permit: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let created = unix_now();
    let opened = tokio::select! {
        opened = state.adapter.open_stream(request) => {
            opened.map_err(|error| ApiError::from_failover(&error))?
        }
        () = state.drain.cut() => return Err(ApiError::draining()),
    };
    let encoder = ChunkEncoder::new(opened.request_id.as_str(), model, created, include_usage);
    let body = SseBody::new(opened.chunks, encoder, state.drain.cut(), permit);
    let mut response = Response::new(Body::from_stream(body));
    let extras = response.headers_mut();
    extras.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    extras.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    insert(extras, PROVIDER_HEADER, &opened.provider);
    insert(extras, CACHED_HEADER, flag(opened.cached));
    insert(extras, ATTEMPTS_HEADER, &opened.attempts.to_string());
    Ok(response)
}

fn flag(set: bool) -> &'static str {
    if set { "true" } else { "false" }
}

/// The body, within the size limit (413) and the body time-out (408).
///
/// A body over the limit is still read (and thrown away) up to a bound before the 413 is
/// sent: answering while the client is still writing makes the kernel reset the
/// connection, and the client would see a broken pipe instead of the 413.
async fn read_body(state: &AppState, body: Body) -> Result<bytes::Bytes, ApiError> {
    let limit = state.limits.body_bytes;
    let discard_up_to = limit.saturating_mul(4).saturating_add(1 << 20);
    let read = async move {
        let mut body = body;
        let mut kept = bytes::BytesMut::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                ApiError::invalid_request(
                    format!("the request body could not be read: {error}"),
                    None,
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen = seen.saturating_add(data.len());
            if seen > discard_up_to {
                break;
            }
            if seen <= limit {
                kept.extend_from_slice(&data);
            }
        }
        if seen > limit {
            return Err(ApiError::too_large(limit));
        }
        Ok(kept.freeze())
    };
    tokio::time::timeout(state.limits.body_timeout(), read)
        .await
        .map_err(|_| ApiError::body_timeout(state.limits.body_timeout()))?
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
