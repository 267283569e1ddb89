//! `GET /healthz` (the process answers), `GET /readyz` (send it traffic), `GET /health`
//! (what every part is doing) and `GET /metrics` (Prometheus). None makes a paid call.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use failover_breaker::BreakerState;
use failover_core::{CacheReport, HealthReport, HealthStatus};
use failover_usage::SinkHealth;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::state::AppState;

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// 503 while draining, or while the usage ledger is degraded (usage could be lost or is
/// spilling to disk): a load balancer then sends traffic to another replica.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.drain.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let report = state.adapter.health();
    if let Some(reason) = &report.usage.degraded {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("usage ledger degraded: {reason}\n"),
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

#[derive(Serialize)]
struct Health<'a> {
    status: HealthStatus,
    draining: bool,
    in_flight: usize,
    problems: &'a [String],
    providers: Vec<ProviderView<'a>>,
    cache: Option<&'a CacheReport>,
    ledger: &'a SinkHealth,
    usage_records_refused: u64,
}

#[derive(Serialize)]
struct ProviderView<'a> {
    name: &'a str,
    state: BreakerState,
    /// Why it is not closed: the last error's kind, or an operator's hold.
    reason: Option<&'a str>,
    /// Milliseconds until the breaker lets a probe through, when open.
    open_for_ms: Option<u64>,
    /// When that is, in Unix milliseconds.
    open_until_unix_ms: Option<u64>,
    needs_operator: bool,
    successes: u64,
    failures: u64,
    failure_rate: f64,
    trips: u32,
}

pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    let report: HealthReport = state.adapter.health();
    let now = Instant::now();
    let unix_now_ms = millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let providers = report
        .providers
        .iter()
        .map(|provider| {
            let breaker = &provider.breaker;
            let reason = match breaker.state {
                BreakerState::ForcedOpen => Some("forced open by an operator"),
                BreakerState::ForcedClosed => Some("forced closed by an operator"),
                BreakerState::Closed => None,
                _ => breaker.needs_operator_kind.or(breaker.last_error_kind),
            };
            let open_for_ms = breaker
                .next_probe_at
                .filter(|_| breaker.state == BreakerState::Open)
                .map(|at| millis(at.saturating_duration_since(now)));
            ProviderView {
                name: &provider.name,
                state: breaker.state,
                reason,
                open_for_ms,
                open_until_unix_ms: open_for_ms.map(|wait| unix_now_ms.saturating_add(wait)),
                needs_operator: breaker.needs_operator,
                successes: breaker.successes,
                failures: breaker.failures,
                failure_rate: breaker.failure_rate,
                trips: breaker.trips,
            }
        })
        .collect();
    let status = match report.status {
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    (
        status,
        Json(Health {
            status: report.status,
            draining: state.drain.is_draining(),
            in_flight: state.in_flight(),
            problems: &report.problems,
            providers,
            cache: report.cache.as_ref(),
            ledger: &report.usage,
            usage_records_refused: report.usage_records_refused,
        }),
    )
        .into_response()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(metrics) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            metrics.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process\n",
        )
            .into_response(),
    }
}
