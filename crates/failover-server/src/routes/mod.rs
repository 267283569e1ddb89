//! The routes, one module per concern.

mod admin;
pub(crate) mod chat;
mod health;
mod models;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the gateway.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::retrieve))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/admin/breakers/{provider}/{action}", post(admin::breaker))
        .route("/admin/tenants/{tenant}/usage", get(admin::usage))
        .route(
            "/admin/tenants/{tenant}/cache/purge",
            post(admin::purge_cache),
        )
        .fallback(|| async { ApiError::not_found("no such route on this gateway", "unknown_url") })
        .with_state(state)
}
