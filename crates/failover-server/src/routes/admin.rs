//! Admin routes, behind the admin key (never a tenant's): a provider's breaker forced open,
//! forced closed or reset; a tenant's usage statistics; a tenant's cache purged.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use failover_usage::UsageQuery;
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::auth::{KeyHash, bearer};
use crate::error::ApiError;
use crate::state::AppState;

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(admin) = state.admin_key else {
        return Err(ApiError::not_found(
            "admin routes are off: the configuration sets no admin_key_hash",
            "admin_disabled",
        ));
    };
    if KeyHash::of(bearer(headers)?) != admin {
        return Err(ApiError::unauthorized("not the admin key"));
    }
    Ok(())
}

#[derive(Serialize)]
struct BreakerView {
    provider: String,
    state: failover_breaker::BreakerState,
}

/// `POST /admin/breakers/{provider}/{action}`, action `force-open`, `force-close` or
/// `reset`.
pub(crate) async fn breaker(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((provider, action)): Path<(String, String)>,
) -> Response {
    if let Err(error) = authorize(&state, &headers) {
        return error.into_response();
    }
    let Some(breaker) = state.adapter.breaker(&provider) else {
        return ApiError::not_found(
            format!("no provider named {provider:?}"),
            "unknown_provider",
        )
        .into_response();
    };
    match action.as_str() {
        "force-open" => breaker.force_open(),
        "force-close" => breaker.force_close(),
        "reset" => breaker.reset(),
        other => {
            return ApiError::not_found(
                format!("no breaker action {other:?}: force-open, force-close or reset"),
                "unknown_action",
            )
            .into_response();
        }
    }
    tracing::warn!(provider, action, "breaker changed by an operator");
    Json(BreakerView {
        state: breaker.snapshot().state,
        provider,
    })
    .into_response()
}

/// `GET /admin/tenants/{tenant}/usage`: the tenant's usage statistics from the ledger.
pub(crate) async fn usage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    if let Err(error) = authorize(&state, &headers) {
        return error.into_response();
    }
    match state.adapter.usage_stats(&UsageQuery::tenant(tenant)).await {
        Ok(stats) => Json(stats).into_response(),
        Err(error) => {
            ApiError::internal(format!("usage statistics unavailable: {error}")).into_response()
        }
    }
}

#[derive(Serialize)]
struct Purged {
    tenant: String,
    removed: u64,
}

/// `POST /admin/tenants/{tenant}/cache/purge`: every cached answer of the tenant removed.
pub(crate) async fn purge_cache(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    if let Err(error) = authorize(&state, &headers) {
        return error.into_response();
    }
    match state.adapter.purge_tenant_cache(&tenant).await {
        Ok(removed) => (StatusCode::OK, Json(Purged { tenant, removed })).into_response(),
        Err(error) => {
            ApiError::internal(format!("the cache could not be purged: {error}")).into_response()
        }
    }
}
