//! `GET /v1/models` and `GET /v1/models/{model}`: the logical models of the routing table
//! that the caller's key may use.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

fn model(id: &str) -> Model<'_> {
    Model {
        id,
        object: "model",
        created: 0,
        owned_by: "llm-failover",
    }
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let grant = match state.keys.grant(&headers) {
        Ok(grant) => grant,
        Err(error) => return error.into_response(),
    };
    let router = state.adapter.router();
    let data = router
        .logical_models()
        .into_iter()
        .filter(|id| grant.allows(id))
        .map(model)
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

pub(crate) async fn retrieve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let grant = match state.keys.grant(&headers) {
        Ok(grant) => grant,
        Err(error) => return error.into_response(),
    };
    if !state.adapter.router().knows(&id) {
        return ApiError::not_found(
            format!("the model {id:?} does not exist"),
            "model_not_found",
        )
        .into_response();
    }
    if let Err(error) = grant.check_model(&id) {
        return error.into_response();
    }
    Json(model(&id)).into_response()
}
